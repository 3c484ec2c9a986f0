package fakeamocrm

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

const (
	testClientID     = "11111111-2222-3333-4444-555555555555"
	testClientSecret = "client-secret-do-not-leak"
	acmeKey          = "acme-api-key-0123456789abcdef0123456789"
	otherKey         = "other-api-key-abcdef0123456789abcdef01"
)

// clock is a settable time source.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// sink is the integration's Redirect URI: it records every callback.
type sink struct {
	srv    *httptest.Server
	calls  chan *http.Request
	status atomic.Int64 // answer; default 200
	hold   atomic.Int64 // time.Duration to wait before answering
}

func newSink(t *testing.T) *sink {
	t.Helper()
	s := &sink{calls: make(chan *http.Request, 16)}
	s.status.Store(http.StatusOK)
	s.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if hold := time.Duration(s.hold.Load()); hold > 0 {
			select {
			case <-time.After(hold):
			case <-r.Context().Done():
			}
		}
		s.calls <- r
		w.WriteHeader(int(s.status.Load()))
	}))
	t.Cleanup(s.srv.Close)
	return s
}

func (s *sink) redirectURI() string { return s.srv.URL + "/amocrm/oauth/callback/" }

// next waits for the next callback; the deadline only stops a hung test.
func (s *sink) next(t *testing.T) url.Values {
	t.Helper()
	select {
	case r := <-s.calls:
		if r.URL.Path != "/amocrm/oauth/callback/" || r.Method != http.MethodGet {
			t.Errorf("callback: %s %s", r.Method, r.URL.Path)
		}
		return r.URL.Query()
	case <-time.After(10 * time.Second):
		t.Fatal("no callback arrived")
		return nil
	}
}

func (s *sink) none(t *testing.T, wait time.Duration) {
	t.Helper()
	select {
	case r := <-s.calls:
		t.Fatalf("unexpected callback %s", r.URL.Path)
	case <-time.After(wait):
	}
}

// env is a fake amoCRM on a local port, with a callback sink and a clock.
type env struct {
	t    *testing.T
	fake *Server
	srv  *httptest.Server
	sink *sink
	clk  *clock
}

func newEnv(t *testing.T, mod func(*Options)) *env {
	t.Helper()
	e := &env{t: t, sink: newSink(t), clk: &clock{t: time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)}}
	o := Options{
		ClientID: testClientID, ClientSecret: testClientSecret, RedirectURI: e.sink.redirectURI(),
		Users: []User{
			{Account: "acme", Login: "user@example.com", APIKey: acmeKey, UserID: 777},
			{Account: "other", Login: "boss@example.com", APIKey: otherKey},
		},
		DefaultAccount: "acme",
		CallbackDelay:  time.Millisecond,
		Now:            e.clk.Now,
	}
	if mod != nil {
		mod(&o)
	}
	e.fake = New(o)
	e.srv = httptest.NewServer(e.fake)
	t.Cleanup(func() {
		e.srv.Close()
		e.fake.Close()
	})
	return e
}

// base is the api_base of an account, as the proxy is configured in tests.
func (e *env) base(acct string) string { return e.srv.URL + "/_acct/" + acct }

type answer struct {
	status int
	header http.Header
	body   []byte
}

func (a answer) json(t *testing.T) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(a.body, &m); err != nil {
		t.Fatalf("answer is not JSON: %v: %q", err, a.body)
	}
	return m
}

func (e *env) do(req *http.Request) answer {
	e.t.Helper()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatalf("%s %s: %v", req.Method, req.URL.Path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return answer{status: resp.StatusCode, header: resp.Header, body: b}
}

func (e *env) send(method, u, contentType string, body []byte, hdr ...string) answer {
	e.t.Helper()
	req, err := http.NewRequest(method, u, bytes.NewReader(body))
	if err != nil {
		e.t.Fatal(err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Add(hdr[i], hdr[i+1])
	}
	return e.do(req)
}

func jsonBody(v any) []byte {
	b, _ := json.Marshal(v)
	return b
}

func (e *env) exchange(acct string, body map[string]any) answer {
	e.t.Helper()
	return e.send(http.MethodPost, e.base(acct)+"/oauth2/exchange_api_key", "application/json", jsonBody(body))
}

func exchangeBody(login, key, state string) map[string]any {
	return map[string]any{"login": login, "api_key": key, "client_uuid": testClientID, "client_secret": testClientSecret, "state": state}
}

func (e *env) tokenForm(acct string, v url.Values) answer {
	e.t.Helper()
	return e.send(http.MethodPost, e.base(acct)+"/oauth2/access_token", "application/x-www-form-urlencoded", []byte(v.Encode()))
}

func (e *env) codeGrantValues(code string) url.Values {
	return url.Values{
		"client_id": {testClientID}, "client_secret": {testClientSecret}, "grant_type": {"authorization_code"},
		"code": {code}, "redirect_uri": {e.sink.redirectURI()},
	}
}

func (e *env) refreshValues(rt string) url.Values {
	return url.Values{
		"client_id": {testClientID}, "client_secret": {testClientSecret}, "grant_type": {"refresh_token"},
		"refresh_token": {rt}, "redirect_uri": {e.sink.redirectURI()},
	}
}

// pair runs a whole exchange for the user and returns the tokens.
func (e *env) pair(acct, login, key string) tokenAnswer {
	e.t.Helper()
	if a := e.exchange(acct, exchangeBody(login, key, "st-"+acct)); a.status != http.StatusAccepted {
		e.t.Fatalf("exchange: %d %s", a.status, a.body)
	}
	q := e.sink.next(e.t)
	a := e.tokenForm(acct, e.codeGrantValues(q.Get("code")))
	if a.status != http.StatusOK {
		e.t.Fatalf("code grant: %d %s", a.status, a.body)
	}
	var tok tokenAnswer
	if err := json.Unmarshal(a.body, &tok); err != nil {
		e.t.Fatal(err)
	}
	return tok
}

func (e *env) api(method, acct, pathAndQuery, access string, body []byte, hdr ...string) answer {
	e.t.Helper()
	if access != "" {
		hdr = append(hdr, "Authorization", "Bearer "+access)
	}
	return e.send(method, e.base(acct)+pathAndQuery, "", body, hdr...)
}

// waitStats polls until cond holds; the deadline only stops a hung test.
func (e *env) waitStats(cond func(Stats) bool) Stats {
	e.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		st := e.fake.Stats()
		if cond(st) {
			return st
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("stats never reached the expected state: %+v", st)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func hint(t *testing.T, a answer) string {
	t.Helper()
	if ct := a.header.Get("Content-Type"); !strings.HasPrefix(ct, "application/problem+json") {
		t.Errorf("error Content-Type = %q, want application/problem+json", ct)
	}
	m := a.json(t)
	for _, k := range []string{"title", "type", "status", "detail"} {
		if _, ok := m[k]; !ok {
			t.Errorf("problem body lacks %q: %s", k, a.body)
		}
	}
	if st, _ := m["status"].(float64); int(st) != a.status {
		t.Errorf("problem status %v != HTTP status %d", m["status"], a.status)
	}
	h, _ := m["hint"].(string)
	return h
}
