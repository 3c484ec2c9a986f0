package integration_test

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/amobridge/amobridge/integration_test/fakeamocrm"
)

// keyQuery is a legacy query with testLogin and key.
func keyQuery(key string) string {
	return "USER_LOGIN=" + loginQ + "&USER_HASH=" + key
}

// TestWrongKeyKeepsToken: a wrong key for a user who has a token gets 401
// with legacy code 110, in every shape, and neither gets nor evicts the
// user's token: the right key goes on with the same token, and amoCRM was
// asked for nothing (the last exchange is within the exchange interval).
func TestWrongKeyKeepsToken(t *testing.T) {
	needCaddy(t)
	e := NewEnv(t, EnvOptions{Site: func(s *SiteConfig) { s.Extra = "rate_limit 0" }})
	if resp := e.Get("/api/v2/leads?" + e.LegacyQuery("")); resp.Status != 200 {
		t.Fatalf("first request: status %d; body %.300s", resp.Status, resp.Body)
	}
	token := bearerOf(lastRequest(t, e))
	st1 := e.Fake.Stats()

	wrong := randomHex(t, 20)
	almost := e.APIKey[:39] + string("0123456789abcdef"[(strings.IndexByte("0123456789abcdef", e.APIKey[39])+1)%16])
	for _, key := range []struct{ name, v string }{{"random", wrong}, {"one digit off", almost}, {"upper-cased", strings.ToUpper(e.APIKey)}} {
		if key.v == e.APIKey {
			continue
		}
		t.Run(key.name, func(t *testing.T) {
			n := requestCount(e)
			resp := e.Get("/api/v2/leads?" + keyQuery(key.v))
			assertLegacyError(t, "query", resp, http.StatusUnauthorized, "110")
			resp = e.Do(http.MethodPost, "/api/v2/leads", http.Header{"Content-Type": {"application/x-www-form-urlencoded"}},
				strings.NewReader(keyQuery(key.v)+"&name=x"))
			assertLegacyError(t, "form body", resp, http.StatusUnauthorized, "110")
			resp = e.Do(http.MethodPost, "/private/api/v2/json/leads/set", http.Header{"Content-Type": {"application/json"}},
				strings.NewReader(`{"USER_LOGIN":"`+testLogin+`","USER_HASH":"`+key.v+`","request":{}}`))
			assertLegacyError(t, "JSON body", resp, http.StatusUnauthorized, "110")
			if requestCount(e) != n {
				t.Errorf("a request with a wrong key reached amoCRM")
			}
			e.AssertNoSecrets("the answer", string(resp.Body))
		})
	}

	// The right key: the same token, nothing asked of amoCRM.
	resp := e.Get("/api/v2/leads?" + e.LegacyQuery(""))
	if resp.Status != http.StatusOK {
		t.Fatalf("the right key after wrong ones: status %d; body %.300s", resp.Status, resp.Body)
	}
	if bearerOf(lastRequest(t, e)) != token {
		t.Errorf("the right key got another token after wrong keys")
	}
	st2 := e.Fake.Stats()
	if st2.ExchangeCalls != st1.ExchangeCalls || st2.TokenCalls != st1.TokenCalls {
		t.Errorf("wrong keys within the exchange interval called amoCRM: exchange calls %d→%d, token calls %d→%d",
			st1.ExchangeCalls, st2.ExchangeCalls, st1.TokenCalls, st2.TokenCalls)
	}
	e.AssertNoViolations()
	assertNoSecretsAnywhere(e)
	for _, k := range []string{wrong, almost} {
		if strings.Contains(e.Caddy.Logs()+e.AccessLog(), k) {
			t.Errorf("a log holds a wrong key")
		}
	}
}

// TestWrongKeyUnknownUser: a login amoCRM does not know gets one exchange
// attempt (rejected) and 401/110; the rejection is remembered, so the next
// try does not call amoCRM again.
func TestWrongKeyUnknownUser(t *testing.T) {
	needCaddy(t)
	e := NewEnv(t, EnvOptions{})
	q := "USER_LOGIN=nobody%40example.com&USER_HASH=" + randomHex(t, 20)
	for i := 0; i < 3; i++ {
		assertLegacyError(t, "unknown user", e.Get("/api/v2/leads?"+q), http.StatusUnauthorized, "110")
	}
	if st := e.Fake.Stats(); st.ExchangeCalls != 1 || st.ExchangeRejected != 1 || st.CodeGrants != 0 {
		t.Errorf("unknown user: %d exchange calls (%d rejected), %d code grants; want 1 (1), 0",
			st.ExchangeCalls, st.ExchangeRejected, st.CodeGrants)
	}
	e.AssertNoViolations()
	assertNoSecretsAnywhere(e)
}

// TestChangedKeyReplacesToken: with a 2s exchange interval (module and fake),
// a wrong key after the interval is tried once with amoCRM, rejected, and
// the user's token stays; after a password change (a new key amoCRM accepts)
// the new key's exchange replaces the token, and the old key is wrong.
func TestChangedKeyReplacesToken(t *testing.T) {
	needCaddy(t)
	const interval = 2 * time.Second
	e := NewEnv(t, EnvOptions{
		Fake: func(o *fakeamocrm.Options) { o.ExchangeInterval = interval },
		Site: func(s *SiteConfig) { s.Extra = "exchange_interval 2s\n\t\trate_limit 0" },
	})
	oldKey := e.APIKey
	get := func(key string) *Response {
		t.Helper()
		return e.Get("/api/v2/leads?" + keyQuery(key))
	}
	wait := func() { time.Sleep(interval + 700*time.Millisecond) }

	if resp := get(oldKey); resp.Status != 200 {
		t.Fatalf("first request: status %d; body %.300s", resp.Status, resp.Body)
	}
	tokenA := bearerOf(lastRequest(t, e))

	// 1. After the interval, a wrong key is tried once with amoCRM and refused.
	wait()
	wrong := randomHex(t, 20)
	assertLegacyError(t, "a wrong key after the interval", get(wrong), http.StatusUnauthorized, "110")
	if st := e.Fake.Stats(); st.ExchangeCalls != 2 || st.ExchangeRejected != 1 || st.CodeGrants != 1 {
		t.Errorf("after a wrong key: %d exchange calls (%d rejected), %d code grants; want 2 (1), 1",
			st.ExchangeCalls, st.ExchangeRejected, st.CodeGrants)
	}
	// ... and the right key still has its token.
	if resp := get(oldKey); resp.Status != 200 {
		t.Fatalf("the right key after a rejected one: status %d; body %.300s", resp.Status, resp.Body)
	}
	if bearerOf(lastRequest(t, e)) != tokenA {
		t.Errorf("a key amoCRM rejected evicted the user's token")
	}

	// 2. The user changes the password: amoCRM takes only the new key.
	newKey := randomHex(t, 20)
	if err := e.Fake.SetAPIKey(testAccount, testLogin, newKey); err != nil {
		t.Fatal(err)
	}
	e.APIKey = newKey // AssertNoSecrets looks for it too
	wait()
	resp := doAfterLimit(e, http.MethodGet, "/api/v2/leads?"+keyQuery(newKey), nil, nil, 5)
	if resp.Status != http.StatusOK {
		t.Fatalf("the new key: status %d; body %.300s", resp.Status, resp.Body)
	}
	tokenB := bearerOf(lastRequest(t, e))
	if tokenB == "" || tokenB == tokenA {
		t.Errorf("the new key did not get a new token")
	}
	st := e.Fake.Stats()
	if st.Exchanges != 2 || st.CodeGrants != 2 {
		t.Errorf("after the new key: %d accepted exchanges, %d code grants; want 2 and 2", st.Exchanges, st.CodeGrants)
	}

	// 3. The old key is wrong now (within the interval: without asking amoCRM) ...
	assertLegacyError(t, "the old key", get(oldKey), http.StatusUnauthorized, "110")
	if st2 := e.Fake.Stats(); st2.ExchangeCalls != st.ExchangeCalls {
		t.Errorf("the old key within the interval called exchange_api_key")
	}
	// ... and after it, amoCRM refuses it, which evicts nothing.
	wait()
	assertLegacyError(t, "the old key after the interval", get(oldKey), http.StatusUnauthorized, "110")
	for i := 0; i < 2; i++ {
		if resp := get(newKey); resp.Status != 200 {
			t.Fatalf("the new key again: status %d; body %.300s", resp.Status, resp.Body)
		}
		if bearerOf(lastRequest(t, e)) != tokenB {
			t.Errorf("the new key's token changed")
		}
	}
	if st3 := e.Fake.Stats(); st3.CodeGrants != 2 || st3.Exchange429 != 0 {
		t.Errorf("%d code grants (want 2), %d exchanges inside amoCRM's interval (want 0)", st3.CodeGrants, st3.Exchange429)
	}
	e.AssertNoViolations()
	assertNoSecretsAnywhere(e)
	if strings.Contains(e.Caddy.Logs()+e.AccessLog(), oldKey) {
		t.Errorf("a log holds the old key")
	}
}

// TestLoginCaseVariantsShareOneExchange: amoCRM logins are e-mail addresses, matched without
// regard to case (the fake does so too). A legacy client that writes the
// login in another case is the same amoCRM user: it must not cause a second
// exchange_api_key for that user within amoCRM's interval.
func TestLoginCaseVariantsShareOneExchange(t *testing.T) {
	needCaddy(t)
	e := NewEnv(t, EnvOptions{Site: func(s *SiteConfig) { s.Extra = "rate_limit 0" }})
	if resp := e.Get("/api/v2/leads?" + e.LegacyQuery("")); resp.Status != 200 {
		t.Fatalf("first request: status %d; body %.300s", resp.Status, resp.Body)
	}
	for _, login := range []string{"User@Example.com", "USER@EXAMPLE.COM"} {
		n := requestCount(e)
		resp := e.Get("/api/v2/leads?USER_LOGIN=" + strings.ReplaceAll(login, "@", "%40") + "&USER_HASH=" + e.APIKey)
		if resp.Status >= 500 {
			t.Errorf("login %q: status %d; body %.300s", login, resp.Status, resp.Body)
		}
		if resp.Status == http.StatusOK {
			assertBearerOnly(t, login, lastRequest(t, e))
		} else if requestCount(e) != n && lastRequest(t, e).Path == "/api/v2/leads" {
			t.Errorf("login %q: status %d but the request reached amoCRM", login, resp.Status)
		}
		t.Logf("login %q: status %d", login, resp.Status)
	}
	st := e.Fake.Stats()
	if st.ExchangeCalls != 1 || st.Exchange429 != 0 {
		t.Errorf("one amoCRM user under three spellings of its login: %d exchange_api_key calls (%d inside amoCRM's interval); want 1",
			st.ExchangeCalls, st.Exchange429)
	}
	e.AssertNoViolations()
	assertNoSecretsAnywhere(e)
}
