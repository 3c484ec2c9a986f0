package integration_test

import (
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/amobridge/amobridge/integration_test/fakeamocrm"
)

// TestManyAccounts serves two amoCRM accounts from one site, the account
// taken from the Host the client called (acme.proxy.test, other.proxy.test →
// {http.request.host.labels.2}). The same login, with the same key, in both
// accounts gets two separate exchanges and tokens; an auth.php session of one
// account is refused on the other.
func TestManyAccounts(t *testing.T) {
	needCaddy(t)
	const other = "other"
	e := NewEnv(t, EnvOptions{
		Fake: func(o *fakeamocrm.Options) {
			o.Accounts = []fakeamocrm.Account{{Name: testAccount}, {Name: other, Title: "Other Ltd", Timezone: "Asia/Yekaterinburg"}}
			o.Users = append(o.Users, fakeamocrm.User{Account: other, Login: testLogin, APIKey: o.Users[0].APIKey})
		},
		Site: func(s *SiteConfig) {
			s.SiteAddress = fmt.Sprintf("http://:%d", s.HTTPPort)
			s.Subdomain = "{http.request.host.labels.2}"
			s.HostHeader = "{http.request.host.labels.2}.amocrm.ru"
		},
	})
	host := func(acct string) http.Header { return http.Header{"Host": {acct + ".proxy.test"}} }
	accounts := []string{testAccount, other}
	tokens := map[string]string{}

	// Each account: its own exchange, its own token, its own user.
	for round := 0; round < 2; round++ {
		for _, acct := range accounts {
			resp := e.Do(http.MethodGet, "/api/v2/account?"+e.LegacyQuery("r="+fmt.Sprint(round)), host(acct), nil)
			if resp.Status != http.StatusOK {
				t.Fatalf("%s, round %d: status %d; body %.300s", acct, round, resp.Status, resp.Body)
			}
			var ec fakeEcho
			resp.JSON(t, &ec)
			uid, _ := e.Fake.UserID(acct, testLogin)
			r := lastRequest(t, e)
			if ec.Fake.Account != acct || r.Account != acct || ec.Fake.UserID != uid || r.UserID != uid {
				t.Errorf("%s: amoCRM saw account %q (routed %q), user %d (%d); want %s, user %d",
					acct, ec.Fake.Account, r.Account, ec.Fake.UserID, r.UserID, acct, uid)
			}
			assertBearerOnly(t, acct, r)
			tok := bearerOf(r)
			if round == 0 {
				tokens[acct] = tok
			} else if tokens[acct] != tok {
				t.Errorf("%s: the token changed between rounds", acct)
			}
		}
		if round == 0 {
			st := e.Fake.Stats()
			if st.Exchanges != 2 || st.CodeGrants != 2 {
				t.Errorf("one login in two accounts: %d exchanges, %d code grants; want 2 and 2", st.Exchanges, st.CodeGrants)
			}
		}
	}
	if tokens[testAccount] == tokens[other] {
		t.Errorf("both accounts got the same token")
	}
	if st := e.Fake.Stats(); st.Exchanges != 2 || st.CodeGrants != 2 || st.ExchangeCalls != 2 {
		t.Errorf("after the second round: %d exchange calls, %d code grants; want 2 and 2", st.ExchangeCalls, st.CodeGrants)
	}
	cbAccounts := map[string]int{}
	for _, cb := range e.Fake.Callbacks() {
		cbAccounts[cb.Account]++
	}
	if cbAccounts[testAccount] != 1 || cbAccounts[other] != 1 {
		t.Errorf("callbacks by account: %v; want one each", cbAccounts)
	}

	// auth.php per account, and sessions bound to their account.
	sessions := map[string]string{}
	for _, acct := range accounts {
		h := host(acct)
		h.Set("Content-Type", "application/json")
		resp := e.Do(http.MethodPost, authPHP+"?type=json", h,
			strings.NewReader(`{"USER_LOGIN":"`+testLogin+`","USER_HASH":"`+e.APIKey+`"}`))
		got := parseAuthOK(t, resp, true)
		aid, _ := e.Fake.AccountID(acct)
		uid, _ := e.Fake.UserID(acct, testLogin)
		if got.subdomain != acct || got.accountID != aid || got.userID != uid {
			t.Errorf("auth.php on %s answered account %q (id %d), user %d; want %s (%d), %d",
				acct, got.subdomain, got.accountID, got.userID, acct, aid, uid)
		}
		sessions[acct] = sessionCookie(t, resp).Value
	}
	if sessions[testAccount] == sessions[other] {
		t.Fatalf("the two accounts got the same session id")
	}
	for _, from := range accounts {
		for _, to := range accounts {
			h := host(to)
			h.Set("Cookie", "session_id="+sessions[from])
			n := requestCount(e)
			resp := e.Do(http.MethodGet, "/private/api/v2/json/accounts/current", h, nil)
			if from != to {
				assertLegacyError(t, fmt.Sprintf("a session of %s used on %s", from, to), resp, http.StatusUnauthorized, "110")
				if requestCount(e) != n {
					t.Errorf("a session of %s used on %s reached amoCRM", from, to)
				}
				continue
			}
			if resp.Status != http.StatusOK {
				t.Errorf("the session of %s on %s: status %d; body %.300s", from, to, resp.Status, resp.Body)
				continue
			}
			r := lastRequest(t, e)
			if r.Account != to || bearerOf(r) != tokens[to] {
				t.Errorf("the session of %s reached account %q with another token", to, r.Account)
			}
			assertBearerOnly(t, "session", r)
		}
	}

	// A Host that names no valid account: a clear 400, nothing forwarded.
	for _, bad := range []string{"proxy.test", "bad_name.proxy.test", "-x.proxy.test"} {
		n := requestCount(e)
		resp := e.Do(http.MethodGet, "/api/v2/account?"+e.LegacyQuery(""), http.Header{"Host": {bad}}, nil)
		if resp.Status >= 500 || resp.Status == http.StatusOK {
			t.Errorf("Host %s: status %d; want a 4xx", bad, resp.Status)
		} else if resp.Status == http.StatusBadRequest {
			assertLegacyError(t, "Host "+bad, resp, http.StatusBadRequest, "")
		}
		if requestCount(e) != n {
			t.Errorf("a request for Host %s reached amoCRM", bad)
		}
	}

	if st := e.Fake.Stats(); st.ExchangeCalls != 2 {
		t.Errorf("%d exchange calls in all; want 2", st.ExchangeCalls)
	}
	e.AssertNoViolations()
	assertNoSecretsAnywhere(e)
}
