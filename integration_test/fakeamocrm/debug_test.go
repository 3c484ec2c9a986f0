package fakeamocrm

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
)

func TestDebugEndpoints(t *testing.T) {
	e := newEnv(t, nil)
	p := e.pair("acme", "user@example.com", acmeKey)
	e.api(http.MethodGet, "acme", "/api/v2/leads?USER_LOGIN=u&USER_HASH=hashvalue123&x=1", p.AccessToken, nil,
		"Cookie", "a=1; session_id=sessvalue123")
	e.api(http.MethodPost, "acme", "/api/v2/leads", p.AccessToken, []byte("USER_HASH=bodyvalue123"))
	e.api(http.MethodPost, "acme", "/api/v2/leads", p.AccessToken, []byte(`{"plain":"body"}`))

	var st Stats
	if err := json.Unmarshal(e.send(http.MethodGet, e.srv.URL+"/_fake/stats", "", nil).body, &st); err != nil {
		t.Fatal(err)
	}
	if st.Exchanges != 1 || st.CodeGrants != 1 || st.APIRequests != 3 || st.Violations != 4 || st.MaxPerSecond["acme"] == 0 {
		t.Errorf("stats %+v", st)
	}

	a := e.send(http.MethodGet, e.srv.URL+"/_fake/requests", "", nil)
	var views []requestView
	if err := json.Unmarshal(a.body, &views); err != nil {
		t.Fatal(err)
	}
	if len(views) != 5 {
		t.Fatalf("%d requests", len(views))
	}
	for _, secret := range []string{p.AccessToken, p.RefreshToken, acmeKey, testClientSecret, "hashvalue123", "sessvalue123", "bodyvalue123"} {
		if strings.Contains(string(a.body), secret) {
			t.Errorf("/_fake/requests shows a secret (%.8s…)", secret)
		}
	}
	v := views[2]
	if auth := v.Header["Authorization"][0]; auth != "Bearer "+p.AccessToken[:8]+"…" {
		t.Errorf("Authorization shown as %q", auth)
	}
	if v.RawQuery != "USER_LOGIN=u&USER_HASH=REDACTED&x=1" || v.Header["Cookie"][0] != "a=1; session_id=REDACTED" {
		t.Errorf("view %+v", v)
	}
	if views[0].BodyWithheld == "" || views[3].BodyWithheld == "" || views[4].Body != `{"plain":"body"}` || views[4].BodySHA256 == "" {
		t.Errorf("bodies %+v", views)
	}

	var vs []Violation
	if err := json.Unmarshal(e.send(http.MethodGet, e.srv.URL+"/_fake/violations", "", nil).body, &vs); err != nil || len(vs) != 4 {
		t.Errorf("violations %v %+v", err, vs)
	}
	var cbs []CallbackResult
	if err := json.Unmarshal(e.send(http.MethodGet, e.srv.URL+"/_fake/callbacks", "", nil).body, &cbs); err != nil {
		t.Error(err)
	}

	if a := e.send(http.MethodPost, e.srv.URL+"/_fake/reset", "", nil); a.status != http.StatusNoContent {
		t.Fatalf("reset: %d", a.status)
	}
	if st := e.fake.Stats(); st.Exchanges != 0 || len(e.fake.Requests()) != 0 || len(e.fake.Violations()) != 0 {
		t.Errorf("after reset %+v", st)
	}
	if a := e.api(http.MethodGet, "acme", "/api/v4/account", p.AccessToken, nil); a.status != 401 {
		t.Errorf("a token survived reset: %d", a.status)
	}
	if a := e.send(http.MethodGet, e.srv.URL+"/_fake/nope", "", nil); a.status != 404 {
		t.Errorf("unknown debug endpoint: %d", a.status)
	}
}

func TestDebugKnobs(t *testing.T) {
	e := newEnv(t, func(o *Options) { o.ExchangeInterval = -1 })
	post := func(path string, form url.Values) int {
		t.Helper()
		return e.send(http.MethodPost, e.srv.URL+"/_fake/"+path, "application/x-www-form-urlencoded", []byte(form.Encode())).status
	}
	if st := post("drop-callbacks", url.Values{"n": {"1"}}); st != 204 {
		t.Fatalf("drop-callbacks: %d", st)
	}
	e.exchange("acme", exchangeBody("user@example.com", acmeKey, "s"))
	if st := e.fake.Stats(); st.CallbacksDropped != 1 {
		t.Errorf("dropped %d", st.CallbacksDropped)
	}
	post("hold-callbacks", url.Values{"on": {"true"}})
	e.exchange("acme", exchangeBody("user@example.com", acmeKey, "s"))
	a := e.send(http.MethodPost, e.srv.URL+"/_fake/deliver-pending", "", nil)
	if a.status != 200 || a.json(t)["delivered"] != float64(1) {
		t.Errorf("deliver-pending: %d %s", a.status, a.body)
	}
	e.sink.next(t)
	post("hold-callbacks", url.Values{"on": {"false"}})

	post("token-failure", url.Values{"status": {"500"}, "body": {"x"}})
	if a := e.tokenForm("acme", e.codeGrantValues("c")); a.status != 500 {
		t.Errorf("token failure: %d", a.status)
	}
	post("token-failure", url.Values{"status": {"0"}})
	post("exchange-failure", url.Values{"status": {"503"}})
	if a := e.exchange("acme", exchangeBody("user@example.com", acmeKey, "s")); a.status != 503 {
		t.Errorf("exchange failure: %d", a.status)
	}
	post("exchange-failure", url.Values{"status": {"0"}})
	post("fail-all", url.Values{"status": {"502"}})
	if a := e.api(http.MethodGet, "acme", "/api/v4/account", "", nil); a.status != 502 {
		t.Errorf("fail-all: %d", a.status)
	}
	post("fail-all", url.Values{"status": {"0"}})
	post("delay", url.Values{"d": {"1ms"}})
	post("callback-delay", url.Values{"d": {"1ms"}})
	post("down", url.Values{"on": {"0"}})

	p := e.pair("acme", "user@example.com", acmeKey)
	if st := post("expire-access", url.Values{"account": {"acme"}, "login": {"user@example.com"}}); st != 204 {
		t.Errorf("expire-access: %d", st)
	}
	if a := e.api(http.MethodGet, "acme", "/api/v4/account", p.AccessToken, nil); a.status != 401 {
		t.Errorf("after expire-access: %d", a.status)
	}
	if st := post("revoke", url.Values{"account": {"acme"}, "login": {"user@example.com"}}); st != 204 {
		t.Errorf("revoke: %d", st)
	}
	if a := e.tokenForm("acme", e.refreshValues(p.RefreshToken)); a.status != 401 {
		t.Errorf("after revoke: %d", a.status)
	}
	if st := post("api-key", url.Values{"account": {"acme"}, "login": {"user@example.com"}, "key": {"k2"}}); st != 204 {
		t.Errorf("api-key: %d", st)
	}
	if a := e.exchange("acme", exchangeBody("user@example.com", "k2", "s")); a.status != 202 {
		t.Errorf("new key: %d", a.status)
	}
	if st := post("revoke", url.Values{"account": {"acme"}, "login": {"ghost"}}); st != 404 {
		t.Errorf("revoke unknown: %d", st)
	}
	if st := post("delay", url.Values{"d": {"soon"}}); st != 400 {
		t.Errorf("bad duration: %d", st)
	}
}

// TestNoSecretAtRest checks that nothing the fake keeps, other than what the
// API requests themselves carried, holds a key, code, token or client secret.
func TestNoSecretAtRest(t *testing.T) {
	e := newEnv(t, nil)
	p := e.pair("acme", "user@example.com", acmeKey)
	n := decodeToken(t, e.tokenForm("acme", e.refreshValues(p.RefreshToken)))
	e.tokenForm("acme", e.refreshValues(p.RefreshToken)) // reuse: a violation
	e.waitStats(func(s Stats) bool { return s.CallbacksDelivered == 1 })

	e.fake.mu.Lock()
	state := fmt.Sprintf("%+v %+v %+v %+v %+v %+v %+v", e.fake.users, e.fake.codes, e.fake.access, e.fake.refresh,
		e.fake.violations, e.fake.callbacks, e.fake.st)
	for _, u := range e.fake.users {
		state += fmt.Sprintf("%+v", *u)
	}
	e.fake.mu.Unlock()
	state += fmt.Sprintf("%+v", e.fake.Requests())
	for _, secret := range []string{acmeKey, testClientSecret, p.AccessToken, p.RefreshToken, n.AccessToken, n.RefreshToken} {
		if strings.Contains(state, secret) {
			t.Errorf("the fake keeps a secret in plain form (%.8s…)", secret)
		}
	}
}
