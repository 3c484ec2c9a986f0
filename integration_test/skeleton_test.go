package integration_test

import (
	"net/url"
	"strings"
	"testing"

	"github.com/amobridge/amobridge/integration_test/fakeamocrm"
)

// echo is the part of the fake's answers that tells what amoCRM received.
type echo struct {
	Fake struct {
		Method   string `json:"method"`
		Path     string `json:"path"`
		RawQuery string `json:"raw_query"`
		Account  string `json:"account"`
		Login    string `json:"login"`
	} `json:"_fake"`
}

// TestWalkingSkeleton is a legacy client's first and second call through the
// proxy, over HTTP only: the first exchanges the key (one exchange_api_key, the
// code comes back through the callback), the second uses the stored token; a
// forged callback is refused; amoCRM never sees a legacy credential.
func TestWalkingSkeleton(t *testing.T) {
	needCaddy(t)
	e := NewEnv(t, EnvOptions{})

	// 1. A user never seen before.
	resp := e.Get("/api/v2/account?" + e.LegacyQuery("foo=bar"))
	if resp.Status != 200 {
		t.Fatalf("first legacy request: status %d, want 200; body: %s", resp.Status, resp.Body)
	}
	var ec echo
	resp.JSON(t, &ec)
	if ec.Fake.Path != "/api/v2/account" || ec.Fake.Account != testAccount || !strings.EqualFold(ec.Fake.Login, testLogin) {
		t.Errorf("amoCRM saw path %q account %q as %q; want /api/v2/account, %s, %s",
			ec.Fake.Path, ec.Fake.Account, ec.Fake.Login, testAccount, testLogin)
	}
	q, err := url.ParseQuery(ec.Fake.RawQuery)
	if err != nil {
		t.Fatalf("amoCRM saw a malformed query %q: %v", ec.Fake.RawQuery, err)
	}
	if q.Has("USER_LOGIN") || q.Has("USER_HASH") {
		t.Errorf("amoCRM saw legacy credentials in the query: %q", ec.Fake.RawQuery)
	}
	if got := q.Get("foo"); got != "bar" || len(q) != 1 {
		t.Errorf("amoCRM saw query %q; want exactly foo=bar", ec.Fake.RawQuery)
	}

	st := e.Fake.Stats()
	if st.ExchangeCalls != 1 || st.Exchanges != 1 {
		t.Errorf("after the first request: %d exchange_api_key calls (%d accepted); want exactly 1", st.ExchangeCalls, st.Exchanges)
	}
	if st.CodeGrants != 1 {
		t.Errorf("after the first request: %d code grants; want 1", st.CodeGrants)
	}
	if st.CallbacksDelivered != 1 {
		t.Errorf("callbacks delivered: %d; want 1 (callbacks: %+v)", st.CallbacksDelivered, e.Fake.Callbacks())
	}
	for _, cb := range e.Fake.Callbacks() {
		if cb.Outcome != "delivered" || cb.Status != 200 {
			t.Errorf("callback for %s/%s: outcome %q status %d; want delivered, 200", cb.Account, cb.Login, cb.Outcome, cb.Status)
		}
	}

	// What amoCRM received: a Bearer token, no legacy credential.
	api := apiRequests(e)
	if len(api) != 1 {
		t.Fatalf("amoCRM received %d API requests; want 1", len(api))
	}
	if auth := api[0].Header.Values("Authorization"); len(auth) != 1 || !strings.HasPrefix(auth[0], "Bearer ") {
		t.Errorf("amoCRM received %d Authorization headers (first %.7q); want one Bearer token", len(auth), auth)
	}
	if strings.Contains(api[0].RawQuery, "USER_") {
		t.Errorf("amoCRM received the query %q", api[0].RawQuery)
	}

	// 2. The same user again: the stored token, no new exchange.
	resp = e.Get("/api/v2/account?" + e.LegacyQuery("foo=baz"))
	if resp.Status != 200 {
		t.Fatalf("second legacy request: status %d, want 200; body: %s", resp.Status, resp.Body)
	}
	st2 := e.Fake.Stats()
	if st2.ExchangeCalls != 1 || st2.TokenCalls != st.TokenCalls {
		t.Errorf("the second request called amoCRM's OAuth endpoints: exchanges %d→%d, token calls %d→%d",
			st.ExchangeCalls, st2.ExchangeCalls, st.TokenCalls, st2.TokenCalls)
	}
	if api := apiRequests(e); len(api) != 2 || api[1].Header.Get("Authorization") != api[0].Header.Get("Authorization") {
		t.Errorf("the second request did not reach amoCRM with the same Bearer token")
	}

	// 3. A callback with a state nobody issued: 400, nothing exchanged.
	forged := "def50200" + randomHex(t, 40)
	resp = e.Get("/amocrm/oauth/callback?code=" + forged + "&state=" + randomHex(t, 16) +
		"&from_exchange=1&client_id=" + testClient + "&referer=acme.amocrm.ru")
	if resp.Status != 400 {
		t.Errorf("callback with an unknown state: status %d; want 400; body: %s", resp.Status, resp.Body)
	}
	if strings.Contains(string(resp.Body), forged) {
		t.Errorf("the answer to a forged callback echoes its code")
	}
	st3 := e.Fake.Stats()
	if st3.TokenCalls != st2.TokenCalls || st3.CodeGrants != st2.CodeGrants {
		t.Errorf("a callback with an unknown state reached amoCRM's token endpoint (%d→%d calls)", st2.TokenCalls, st3.TokenCalls)
	}

	// 4. Nothing amoCRM must never see, nothing secret in the logs.
	e.AssertNoViolations()
	e.AssertNoSecrets("Caddy's log (debug level)", e.Caddy.Logs())
	e.AssertNoSecrets("the access log", e.AccessLog())
	if strings.Contains(e.Caddy.Logs()+e.AccessLog(), forged) {
		t.Errorf("a log holds the forged callback's code")
	}
	if !strings.Contains(e.AccessLog(), "/api/v2/account") {
		t.Errorf("the access log has no line for the legacy request:\n%s", tail(e.AccessLog(), 10))
	}
}

// apiRequests returns the fake's recorded requests to its API (not OAuth).
func apiRequests(e *Env) []fakeamocrm.Recorded {
	var out []fakeamocrm.Recorded
	for _, r := range e.Fake.Requests() {
		if strings.HasPrefix(r.Path, "/api/") || strings.HasPrefix(r.Path, "/private/") {
			out = append(out, r)
		}
	}
	return out
}
