package fakeamocrm

import (
	"net/http"
	"testing"
	"time"
)

func TestRouting(t *testing.T) {
	e := newEnv(t, nil)
	p := e.pair("acme", "user@example.com", acmeKey)
	o := e.pair("other", "boss@example.com", otherKey)
	cases := []struct {
		name, url, host, token string
		want                   int
		acct                   string
	}{
		{"prefix", e.srv.URL + "/_acct/other/api/v4/account", "", o.AccessToken, 200, "other"},
		{"prefix wins over host", e.srv.URL + "/_acct/other/api/v4/account", "acme.amocrm.ru", o.AccessToken, 200, "other"},
		{"host", e.srv.URL + "/api/v4/account", "other.amocrm.ru", o.AccessToken, 200, "other"},
		{"host with port and upper case", e.srv.URL + "/api/v4/account", "OTHER.kommo.com:8443", o.AccessToken, 200, "other"},
		{"IP host: default account", e.srv.URL + "/api/v4/account", "", p.AccessToken, 200, "acme"},
		{"two labels: default account", e.srv.URL + "/api/v4/account", "localhost.localdomain", p.AccessToken, 200, "acme"},
		{"token of another account", e.srv.URL + "/api/v4/account", "other.amocrm.ru", p.AccessToken, 401, "other"},
	}
	for _, c := range cases {
		req, _ := http.NewRequest(http.MethodGet, c.url, nil)
		if c.host != "" {
			req.Host = c.host
		}
		req.Header.Set("Authorization", "Bearer "+c.token)
		a := e.do(req)
		if a.status != c.want {
			t.Errorf("%s: %d %s, want %d", c.name, a.status, a.body, c.want)
			continue
		}
		if c.want == 200 {
			if sub := a.json(t)["subdomain"]; sub != c.acct {
				t.Errorf("%s: answered for %v, want %s", c.name, sub, c.acct)
			}
		}
		recs := e.fake.Requests()
		if r := recs[len(recs)-1]; r.Account != c.acct || r.Path != "/api/v4/account" {
			t.Errorf("%s: recorded %s %s", c.name, r.Account, r.Path)
		}
	}
	if v := e.fake.Violations(); len(v) != 0 {
		t.Errorf("violations %+v", v)
	}
}

func TestUnknownAccount(t *testing.T) {
	e := newEnv(t, nil)
	for _, u := range []string{e.base("nope") + "/api/v4/account", e.base("www") + "/oauth2/access_token"} {
		if a := e.send(http.MethodPost, u, "application/json", []byte("{}")); a.status != 404 || hint(t, a) != "Account not found" {
			t.Errorf("%s: %d %s", u, a.status, a.body)
		}
	}
	v := e.fake.Violations()
	if len(v) != 2 || v[0].Kind != ViolationUnknownAccount || v[0].Account != "nope" || v[1].Account != "www" {
		t.Errorf("violations %+v", v)
	}
	if st := e.fake.Stats(); st.APIRequests != 0 || st.TokenCalls != 0 {
		t.Errorf("stats %+v", st)
	}
}

func TestDefaultAccountIsTheOnlyOne(t *testing.T) {
	e := newEnv(t, func(o *Options) {
		o.Users = o.Users[:1]
		o.DefaultAccount = ""
	})
	if a := e.send(http.MethodGet, e.srv.URL+"/api/v4/account", "", nil); a.status != 401 {
		t.Errorf("status %d (want 401 from the only account, not 404)", a.status)
	}
	if r := e.fake.Requests(); r[0].Account != "acme" {
		t.Errorf("account %q", r[0].Account)
	}
}

// fakeWall is a settable wall clock for the rate windows.
func (e *env) fakeWall(start time.Time) *clock {
	c := &clock{t: start}
	e.fake.mu.Lock()
	e.fake.wallNow = c.Now
	e.fake.mu.Unlock()
	return c
}

func TestRateCounting(t *testing.T) {
	e := newEnv(t, nil)
	wall := e.fakeWall(time.Unix(1_700_000_000, 100))
	p := e.pair("acme", "user@example.com", acmeKey)
	o := e.pair("other", "boss@example.com", otherKey)
	for i := 0; i < 5; i++ {
		e.api(http.MethodGet, "acme", "/api/v4/account", p.AccessToken, nil)
	}
	e.api(http.MethodGet, "other", "/api/v4/account", o.AccessToken, nil)
	wall.Advance(999_999_800 * time.Nanosecond) // still the same second
	e.api(http.MethodGet, "acme", "/api/v4/account", "", nil)
	wall.Advance(time.Millisecond) // the next second
	for i := 0; i < 3; i++ {
		e.api(http.MethodGet, "acme", "/private/api/v2/json/leads/list", p.AccessToken, nil)
	}
	st := e.fake.Stats()
	if st.MaxPerSecond["acme"] != 6 || st.MaxPerSecond["other"] != 1 || st.APIRequests != 10 || st.RateLimited != 0 {
		t.Errorf("stats %+v", st)
	}
	// No one-second interval holds more than the first wall-clock second did.
	if st.MaxPerSlidingSecond["acme"] != 6 {
		t.Errorf("sliding max %d (the first second still holds 6)", st.MaxPerSlidingSecond["acme"])
	}
}

func TestSlidingSecond(t *testing.T) {
	e := newEnv(t, nil)
	wall := e.fakeWall(time.Unix(1_700_000_000, 500_000_000))
	p := e.pair("acme", "user@example.com", acmeKey)
	// 4 requests at x.5 and 4 at (x+1).4: no wall-clock second holds more than 4,
	// but the second from x.5 to (x+1).5 holds 8.
	for i := 0; i < 4; i++ {
		e.api(http.MethodGet, "acme", "/api/v2/leads", p.AccessToken, nil)
	}
	wall.Advance(900 * time.Millisecond)
	for i := 0; i < 4; i++ {
		e.api(http.MethodGet, "acme", "/api/v2/leads", p.AccessToken, nil)
	}
	wall.Advance(100 * time.Millisecond) // the first four leave the window
	e.api(http.MethodGet, "acme", "/api/v2/leads", p.AccessToken, nil)
	st := e.fake.Stats()
	if st.MaxPerSecond["acme"] != 5 || st.MaxPerSlidingSecond["acme"] != 8 {
		t.Errorf("fixed %d, sliding %d; want 5 and 8", st.MaxPerSecond["acme"], st.MaxPerSlidingSecond["acme"])
	}
}

func TestRateLimit(t *testing.T) {
	e := newEnv(t, func(o *Options) { o.RateLimit = 3 })
	wall := e.fakeWall(time.Unix(1_700_000_000, 0))
	p := e.pair("acme", "user@example.com", acmeKey) // oauth2 calls are not API requests
	var statuses []int
	for i := 0; i < 5; i++ {
		statuses = append(statuses, e.api(http.MethodGet, "acme", "/api/v2/leads", p.AccessToken, nil).status)
	}
	wall.Advance(time.Second)
	statuses = append(statuses, e.api(http.MethodGet, "acme", "/api/v2/leads", p.AccessToken, nil).status)
	want := []int{200, 200, 200, 429, 429, 200}
	for i := range want {
		if statuses[i] != want[i] {
			t.Fatalf("statuses %v, want %v", statuses, want)
		}
	}
	if st := e.fake.Stats(); st.RateLimited != 2 || st.MaxPerSecond["acme"] != 5 {
		t.Errorf("stats %+v", st)
	}
}
