package fakeamocrm

import (
	"net/http"
	"strings"
	"testing"
	"time"
)

func TestExchangeHappyPath(t *testing.T) {
	e := newEnv(t, nil)
	a := e.exchange("acme", exchangeBody("user@example.com", acmeKey, "state-123"))
	if a.status != http.StatusAccepted || len(a.body) != 0 {
		t.Fatalf("exchange: %d %q, want 202 with no body", a.status, a.body)
	}
	q := e.sink.next(t)
	if len(q.Get("code")) < 32 {
		t.Errorf("code %q too short", q.Get("code"))
	}
	want := map[string]string{
		"state": "state-123", "from_exchange": "1", "client_id": testClientID, "referer": "acme.amocrm.ru",
	}
	for k, v := range want {
		if q.Get(k) != v {
			t.Errorf("callback %s = %q, want %q", k, q.Get(k), v)
		}
	}
	st := e.waitStats(func(s Stats) bool { return s.CallbacksDelivered == 1 })
	if st.ExchangeCalls != 1 || st.Exchanges != 1 || st.ExchangeRejected != 0 || st.CallbacksFailed != 0 {
		t.Errorf("stats: %+v", st)
	}
	cb := e.fake.Callbacks()
	if len(cb) != 1 || cb[0].Outcome != "delivered" || cb[0].Status != 200 || cb[0].State != "state-123" ||
		cb[0].Account != "acme" || cb[0].Login != "user@example.com" {
		t.Errorf("callbacks: %+v", cb)
	}
	// The code is good for a token pair, once.
	if a := e.tokenForm("acme", e.codeGrantValues(q.Get("code"))); a.status != http.StatusOK {
		t.Fatalf("code grant: %d %s", a.status, a.body)
	}
	e.sink.none(t, 50*time.Millisecond) // delivered once, never again
}

func TestExchangeWithoutStateOmitsIt(t *testing.T) {
	e := newEnv(t, nil)
	b := exchangeBody("user@example.com", acmeKey, "")
	delete(b, "state")
	if a := e.exchange("acme", b); a.status != http.StatusAccepted {
		t.Fatalf("exchange: %d %s", a.status, a.body)
	}
	if q := e.sink.next(t); q.Has("state") || q.Get("code") == "" {
		t.Errorf("callback query %v", q)
	}
}

func TestExchangeTooOftenIs429(t *testing.T) {
	e := newEnv(t, nil)
	if a := e.exchange("acme", exchangeBody("user@example.com", acmeKey, "a")); a.status != http.StatusAccepted {
		t.Fatalf("first: %d", a.status)
	}
	e.sink.next(t)
	e.clk.Advance(4*time.Minute + 59*time.Second)
	// The login is matched case-insensitively: still the same user.
	if a := e.exchange("acme", exchangeBody("USER@example.com", acmeKey, "b")); a.status != http.StatusTooManyRequests {
		t.Fatalf("second inside 5m: %d %s, want 429", a.status, a.body)
	}
	// Another user, or the same login in another account, is not limited.
	if a := e.exchange("other", exchangeBody("boss@example.com", otherKey, "c")); a.status != http.StatusAccepted {
		t.Fatalf("other user: %d %s", a.status, a.body)
	}
	e.sink.next(t)
	e.clk.Advance(time.Second)
	if a := e.exchange("acme", exchangeBody("user@example.com", acmeKey, "d")); a.status != http.StatusAccepted {
		t.Fatalf("after 5m: %d %s", a.status, a.body)
	}
	e.sink.next(t)
	st := e.fake.Stats()
	if st.Exchange429 != 1 || st.Exchanges != 3 {
		t.Errorf("stats %+v", st)
	}
	v := e.fake.Violations()
	if len(v) != 1 || v[0].Kind != ViolationExchangeTooOften || v[0].Account != "acme" {
		t.Errorf("violations %+v", v)
	}
}

func TestExchangeRejectedAttemptAlsoCountsTowardInterval(t *testing.T) {
	e := newEnv(t, nil)
	if a := e.exchange("acme", exchangeBody("user@example.com", "wrong", "a")); a.status != http.StatusBadRequest {
		t.Fatalf("wrong key: %d", a.status)
	}
	if a := e.exchange("acme", exchangeBody("user@example.com", acmeKey, "b")); a.status != http.StatusTooManyRequests {
		t.Fatalf("right key right after: %d, want 429", a.status)
	}
}

func TestExchangeIntervalDisabled(t *testing.T) {
	e := newEnv(t, func(o *Options) { o.ExchangeInterval = -1 })
	for i := 0; i < 2; i++ {
		if a := e.exchange("acme", exchangeBody("user@example.com", acmeKey, "s")); a.status != http.StatusAccepted {
			t.Fatalf("exchange %d: %d", i, a.status)
		}
		e.sink.next(t)
	}
}

func TestExchangeRejections(t *testing.T) {
	cases := []struct {
		name        string
		acct        string
		contentType string
		body        map[string]any
		raw         string
		status      int
		hint        string
	}{
		{name: "wrong key", body: exchangeBody("user@example.com", "nope", "s"), status: 400, hint: "Invalid login or api_key"},
		{name: "unknown login", body: exchangeBody("ghost@example.com", acmeKey, "s"), status: 400, hint: "Invalid login or api_key"},
		{name: "key of another account", acct: "other", body: exchangeBody("user@example.com", acmeKey, "s"), status: 400},
		{name: "client_id instead of client_uuid", body: map[string]any{
			"login": "user@example.com", "api_key": acmeKey, "client_id": testClientID, "client_secret": testClientSecret,
		}, status: 400, hint: "client_uuid"},
		{name: "unknown client", body: map[string]any{
			"login": "user@example.com", "api_key": acmeKey, "client_uuid": "x", "client_secret": testClientSecret,
		}, status: 400, hint: "client_uuid"},
		{name: "wrong secret", body: map[string]any{
			"login": "user@example.com", "api_key": acmeKey, "client_uuid": testClientID, "client_secret": "x",
		}, status: 403},
		{name: "no login", body: map[string]any{
			"api_key": acmeKey, "client_uuid": testClientID, "client_secret": testClientSecret,
		}, status: 400},
		{name: "form body", contentType: "application/x-www-form-urlencoded",
			raw: "login=user%40example.com&api_key=" + acmeKey + "&client_uuid=" + testClientID, status: 400, hint: "Content-Type"},
		{name: "json without content type", contentType: "-", body: exchangeBody("user@example.com", acmeKey, "s"), status: 400},
		{name: "not an object", raw: `["a"]`, status: 400},
		{name: "number where a string belongs", raw: `{"login":1}`, status: 400},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e := newEnv(t, nil)
			acct := c.acct
			if acct == "" {
				acct = "acme"
			}
			ct := c.contentType
			switch ct {
			case "":
				ct = "application/json; charset=utf-8"
			case "-":
				ct = ""
			}
			body := []byte(c.raw)
			if c.body != nil {
				body = jsonBody(c.body)
			}
			a := e.send(http.MethodPost, e.base(acct)+"/oauth2/exchange_api_key", ct, body)
			if a.status != c.status {
				t.Fatalf("status %d %s, want %d", a.status, a.body, c.status)
			}
			if h := hint(t, a); !strings.Contains(h, c.hint) {
				t.Errorf("hint %q, want it to contain %q", h, c.hint)
			}
			st := e.fake.Stats()
			if st.ExchangeRejected != 1 || st.Exchanges != 0 {
				t.Errorf("stats %+v", st)
			}
			e.sink.none(t, 20*time.Millisecond)
		})
	}
}

func TestExchangeOnlyPOST(t *testing.T) {
	e := newEnv(t, nil)
	if a := e.send(http.MethodGet, e.base("acme")+"/oauth2/exchange_api_key", "", nil); a.status != http.StatusMethodNotAllowed {
		t.Fatalf("GET: %d", a.status)
	}
}

func TestExchangeAfterPasswordChange(t *testing.T) {
	e := newEnv(t, nil)
	if err := e.fake.SetAPIKey("acme", "user@example.com", "new-key"); err != nil {
		t.Fatal(err)
	}
	if a := e.exchange("acme", exchangeBody("user@example.com", acmeKey, "s")); a.status != http.StatusBadRequest {
		t.Fatalf("old key: %d", a.status)
	}
	e.clk.Advance(5 * time.Minute)
	if a := e.exchange("acme", exchangeBody("user@example.com", "new-key", "s")); a.status != http.StatusAccepted {
		t.Fatalf("new key: %d", a.status)
	}
	e.sink.next(t)
	if err := e.fake.SetAPIKey("acme", "nobody@example.com", "k"); err == nil {
		t.Error("SetAPIKey of an unknown user: no error")
	}
}
