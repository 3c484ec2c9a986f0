package integration_test

import (
	"bytes"
	"encoding/xml"
	"math"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"
)

const authPHP = "/private/api/auth.php"

// authJSON is auth.php's JSON success answer, as strict legacy clients read it.
type authJSON struct {
	Response struct {
		Auth     *bool `json:"auth"`
		Accounts []struct {
			ID        int64  `json:"id"`
			Name      string `json:"name"`
			Subdomain string `json:"subdomain"`
			Language  string `json:"language"`
			Timezone  string `json:"timezone"`
		} `json:"accounts"`
		User *struct {
			ID       int64  `json:"id"`
			Language string `json:"language"`
		} `json:"user"`
		ServerTime int64 `json:"server_time"`
	} `json:"response"`
}

// authXML is auth.php's XML success answer.
type authXML struct {
	XMLName  xml.Name `xml:"root"`
	Auth     string   `xml:"auth"`
	Accounts []struct {
		ID        int64  `xml:"id"`
		Name      string `xml:"name"`
		Subdomain string `xml:"subdomain"`
		Language  string `xml:"language"`
		Timezone  string `xml:"timezone"`
	} `xml:"accounts>account"`
	UserID       int64  `xml:"user>id"`
	UserLanguage string `xml:"user>language"`
	ServerTime   int64  `xml:"server_time"`
}

// authAnswer is what a test checks of an auth.php success answer.
type authAnswer struct {
	accountID                           int64
	name, subdomain, language, timezone string
	userID                              int64
	userLanguage                        string
	serverTime                          int64
}

// parseAuthOK parses an auth.php success answer in JSON or XML.
func parseAuthOK(t testing.TB, resp *Response, wantJSON bool) authAnswer {
	t.Helper()
	if resp.Status != http.StatusOK {
		t.Fatalf("auth.php: status %d; body: %.300s", resp.Status, resp.Body)
	}
	ct := resp.Header.Get("Content-Type")
	var a authAnswer
	if wantJSON {
		if !strings.HasPrefix(ct, "application/json") {
			t.Errorf("auth.php with type=json: Content-Type %q", ct)
		}
		var j authJSON
		resp.JSON(t, &j)
		r := j.Response
		if r.Auth == nil || !*r.Auth || len(r.Accounts) != 1 || r.User == nil {
			t.Fatalf("auth.php JSON answer lacks auth:true, one account or the user block: %s", resp.Body)
		}
		ac := r.Accounts[0]
		a = authAnswer{ac.ID, ac.Name, ac.Subdomain, ac.Language, ac.Timezone, r.User.ID, r.User.Language, r.ServerTime}
	} else {
		if !strings.Contains(ct, "xml") {
			t.Errorf("auth.php without type=json: Content-Type %q; want XML", ct)
		}
		var x authXML
		if err := xml.Unmarshal(resp.Body, &x); err != nil {
			t.Fatalf("auth.php without type=json: the answer is not XML: %v\n%s", err, resp.Body)
		}
		if x.Auth != "true" || len(x.Accounts) != 1 {
			t.Fatalf("auth.php XML answer lacks <auth>true</auth> or one account: %s", resp.Body)
		}
		ac := x.Accounts[0]
		a = authAnswer{ac.ID, ac.Name, ac.Subdomain, ac.Language, ac.Timezone, x.UserID, x.UserLanguage, x.ServerTime}
	}
	if d := time.Since(time.Unix(a.serverTime, 0)); d < -time.Minute || d > time.Minute {
		t.Errorf("auth.php: server_time %d is not now", a.serverTime)
	}
	return a
}

// wantAuth is the auth.php answer the fake's data calls for.
func wantAuth(t testing.TB, e *Env, account, login string) authAnswer {
	t.Helper()
	aid, err := e.Fake.AccountID(account)
	if err != nil {
		t.Fatal(err)
	}
	uid, err := e.Fake.UserID(account, login)
	if err != nil {
		t.Fatal(err)
	}
	return authAnswer{accountID: aid, name: strings.ToUpper(account[:1]) + account[1:], subdomain: account,
		language: "ru", timezone: "Europe/Moscow", userID: uid, userLanguage: "ru"}
}

// sessionCookie returns the session_id cookie the answer sets, checking its
// attributes and its randomness (at least 128 bits by its length and alphabet).
func sessionCookie(t testing.TB, resp *Response) *http.Cookie {
	t.Helper()
	var sc *http.Cookie
	for _, c := range (&http.Response{Header: resp.Header}).Cookies() {
		if c.Name == "session_id" {
			if sc != nil {
				t.Errorf("auth.php set session_id twice")
			}
			sc = c
		}
	}
	if sc == nil {
		t.Fatalf("auth.php set no session_id cookie (Set-Cookie: %q)", resp.Header.Values("Set-Cookie"))
	}
	if sc.Path != "/" || !sc.HttpOnly {
		t.Errorf("session_id cookie: path %q, HttpOnly %v; want /, true", sc.Path, sc.HttpOnly)
	}
	if bits := randomBits(sc.Value); bits < 128 {
		t.Errorf("session_id has %d characters, at most %.0f bits; want at least 128", len(sc.Value), bits)
	}
	return sc
}

var (
	hexRE    = regexp.MustCompile(`^[0-9a-fA-F]+$`)
	base64RE = regexp.MustCompile(`^[A-Za-z0-9_\-+/]+=*$`)
)

// randomBits is an upper bound of the entropy of an id of this length and
// alphabet.
func randomBits(v string) float64 {
	switch {
	case hexRE.MatchString(v):
		return float64(len(v)) * 4
	case base64RE.MatchString(v):
		return float64(len(strings.TrimRight(v, "="))) * 6
	}
	return float64(len(v)) * math.Log2(94)
}

// noAuthPHPReached fails t if amoCRM received a call to auth.php.
func noAuthPHPReached(t testing.TB, e *Env) {
	t.Helper()
	for _, r := range e.Fake.Requests() {
		if strings.HasPrefix(r.Path, authPHP) {
			t.Errorf("auth.php was forwarded to amoCRM (%s %s)", r.Method, r.Path)
		}
	}
}

// authPHPLogin is one way of calling auth.php.
type authPHPLogin struct {
	name, method, target, ct, body string
	json                           bool
}

func authPHPLogins(e *Env) []authPHPLogin {
	form := "USER_LOGIN=" + loginQ + "&USER_HASH=" + e.APIKey
	js := `{"USER_LOGIN":"` + testLogin + `","USER_HASH":"` + e.APIKey + `"}`
	return []authPHPLogin{
		{"POST form, type=json", http.MethodPost, authPHP + "?type=json", "application/x-www-form-urlencoded", form, true},
		{"POST form, XML", http.MethodPost, authPHP, "application/x-www-form-urlencoded", form, false},
		{"POST form, type=json in the form", http.MethodPost, authPHP, "application/x-www-form-urlencoded", form + "&type=json", true},
		{"POST JSON, type=json", http.MethodPost, authPHP + "?type=json", "application/json", js, true},
		{"POST JSON without Content-Type, type=json", http.MethodPost, authPHP + "?type=json", "", js, true},
		{"POST JSON with a misspelled Content-Type, type=json", http.MethodPost, authPHP + "?type=json", "aplication/json", js, true},
		{"POST JSON, XML", http.MethodPost, authPHP, "application/json", js, false},
		{"GET query, type=json", http.MethodGet, authPHP + "?" + form + "&type=json", "", "", true},
		{"GET query, XML", http.MethodGet, authPHP + "?" + form, "", "", false},
	}
}

// authPHPDo calls auth.php one way.
func authPHPDo(e *Env, l authPHPLogin, extra http.Header) *Response {
	e.T.Helper()
	h := http.Header{}
	for k, v := range extra {
		h[k] = v
	}
	if l.ct != "" {
		h.Set("Content-Type", l.ct)
	}
	if l.body == "" {
		return e.Do(l.method, l.target, h, nil)
	}
	return e.Do(l.method, l.target, h, strings.NewReader(l.body))
}

// TestAuthPHP logs in through auth.php every way legacy clients do: the
// module answers it itself in JSON or XML, with the account and user blocks
// filled from /api/v4/account and a random session cookie; amoCRM never sees
// the call. Then the cookie alone, among other cookies, and as a raw
// Set-Cookie line gets the user's Bearer token, and never reaches amoCRM.
func TestAuthPHP(t *testing.T) {
	needCaddy(t)
	e := NewEnv(t, EnvOptions{Site: func(s *SiteConfig) { s.Extra = "rate_limit 0" }})
	want := wantAuth(t, e, testAccount, testLogin)

	// The user's token, as a key request gets it.
	if resp := e.Get("/api/v2/account?" + e.LegacyQuery("")); resp.Status != 200 {
		t.Fatalf("first request: status %d; body %.300s", resp.Status, resp.Body)
	}
	userToken := bearerOf(lastRequest(t, e))

	seen := map[string]bool{}
	var sid string
	for _, l := range authPHPLogins(e) {
		t.Run(l.name, func(t *testing.T) {
			n := requestCount(e)
			resp := authPHPDo(e, l, nil)
			got := parseAuthOK(t, resp, l.json)
			got.serverTime = 0
			if got != want {
				t.Errorf("auth.php answered %+v; want %+v\n%s", got, want, resp.Body)
			}
			c := sessionCookie(t, resp)
			if seen[c.Value] {
				t.Errorf("auth.php gave the same session id twice")
			}
			seen[c.Value] = true
			sid = c.Value
			// Nothing reached amoCRM but, at most, the account info.
			for _, r := range e.Fake.Requests()[n:] {
				if r.Path != "/api/v4/account" {
					t.Errorf("auth.php caused a request to amoCRM's %s %s", r.Method, r.Path)
				}
			}
			e.AssertNoSecrets("auth.php's answer", string(resp.Body)+strings.Join(resp.Header.Values("Set-Cookie"), "\n"))
		})
	}
	if sid == "" {
		t.Fatal("no session")
	}
	noAuthPHPReached(t, e)

	body := []byte(`{"request":{"leads":{"add":[{"name":"from a session"}]}}}`)
	cases := []struct {
		name       string
		cookies    []string // Cookie lines sent
		wantCookie []string // Cookie lines amoCRM must receive
	}{
		{"cookie alone", []string{"session_id=" + sid}, nil},
		{"among other cookies", []string{"lang=ru; session_id=" + sid + "; _ga=GA1.2.3"}, []string{"lang=ru; _ga=GA1.2.3"}},
		{"in its own Cookie line", []string{"lang=ru", "session_id=" + sid, `x="a,b"`}, []string{"lang=ru", `x="a,b"`}},
		{"raw Set-Cookie line", []string{"session_id=" + sid + "; path=/; secure; HttpOnly"}, nil},
		// PHP splits at ';' only and reads "HttpOnly, lang=ru" as one cookie
		// (HttpOnly,_lang): the proxy keeps that item as PHP would read it.
		{"raw Set-Cookie lines joined by commas", []string{"session_id=" + sid + "; path=/; secure; HttpOnly, lang=ru; path=/"}, []string{"HttpOnly, lang=ru; path=/"}},
		{"raw Set-Cookie line after another cookie", []string{"lang=ru; session_id=" + sid + "; path=/; HttpOnly"}, []string{"lang=ru"}},
		{"raw Set-Cookie line with an Expires date", []string{"session_id=" + sid + "; expires=Wed, 21 Oct 2037 07:28:00 GMT; Max-Age=900; path=/; HttpOnly, lang=ru"}, []string{"HttpOnly, lang=ru"}},
		{"quoted", []string{`session_id="` + sid + `"; lang=ru`}, []string{"lang=ru"}},
	}
	for _, c := range cases {
		t.Run("session "+c.name, func(t *testing.T) {
			nv := len(e.Fake.Violations())
			for _, method := range []string{http.MethodGet, http.MethodPost} {
				h := http.Header{"Cookie": c.cookies}
				var resp *Response
				if method == http.MethodGet {
					resp = e.Do(method, "/private/api/v2/json/accounts/current?x=1", h, nil)
				} else {
					h.Set("Content-Type", "application/json")
					resp = e.Do(method, "/private/api/v2/json/leads/set", h, bytes.NewReader(body))
				}
				if resp.Status != http.StatusOK {
					t.Fatalf("%s with the session: status %d; body %.300s", method, resp.Status, resp.Body)
				}
				r := lastRequest(t, e)
				assertBearerOnly(t, c.name, r)
				if bearerOf(r) != userToken {
					t.Errorf("%s with the session: amoCRM received another token than the user's", method)
				}
				if !strings.EqualFold(r.Login, testLogin) {
					t.Errorf("%s with the session: amoCRM saw user %q", method, r.Login)
				}
				if got := r.Header.Values("Cookie"); strings.Join(got, "\n") != strings.Join(c.wantCookie, "\n") {
					t.Errorf("%s: amoCRM received Cookie %q; want %q", method, got, c.wantCookie)
				}
				if method == http.MethodPost && !bytes.Equal(r.Body, body) {
					t.Errorf("POST with the session: amoCRM received the body %q; want %q", r.Body, body)
				}
				if method == http.MethodGet && r.RawQuery != "x=1" {
					t.Errorf("GET with the session: amoCRM received ?%q", r.RawQuery)
				}
			}
			newViolations(t, e, nv, c.name)
		})
	}

	t.Run("unknown session", func(t *testing.T) {
		n := requestCount(e)
		resp := e.Do(http.MethodGet, "/private/api/v2/json/accounts/current", http.Header{"Cookie": {"session_id=" + randomHex(t, 32)}}, nil)
		assertLegacyError(t, "an unknown session", resp, http.StatusUnauthorized, "110")
		if requestCount(e) != n {
			t.Errorf("a request with an unknown session reached amoCRM")
		}
	})

	if st := e.Fake.Stats(); st.ExchangeCalls != 1 || st.CodeGrants != 1 {
		t.Errorf("%d exchange calls, %d code grants; one user wants one of each", st.ExchangeCalls, st.CodeGrants)
	}
	e.AssertNoViolations()
	assertNoSecretsAnywhere(e)
	// A session id is a credential too (it stands for the user's token).
	logs := e.Caddy.Logs() + e.AccessLog()
	for id := range seen {
		if strings.Contains(logs, id) {
			t.Errorf("a log holds a session id: %s", strings.ReplaceAll(grepLines(logs, id), id, "<session id>"))
			break
		}
	}
}

// TestAuthPHPFirstLogin: auth.php as a user's very first request (no token
// yet) exchanges the key, then answers; and a wrong key gets the auth.php
// error shape with code 110.
func TestAuthPHPFirstLogin(t *testing.T) {
	needCaddy(t)
	e := NewEnv(t, EnvOptions{})
	l := authPHPLogins(e)[3] // POST JSON, type=json
	resp := authPHPDo(e, l, nil)
	got := parseAuthOK(t, resp, true)
	got.serverTime = 0
	if want := wantAuth(t, e, testAccount, testLogin); got != want {
		t.Errorf("auth.php answered %+v; want %+v", got, want)
	}
	sid := sessionCookie(t, resp).Value
	if st := e.Fake.Stats(); st.Exchanges != 1 || st.CodeGrants != 1 {
		t.Errorf("first login: %d exchanges, %d code grants; want 1 and 1", st.Exchanges, st.CodeGrants)
	}

	wrong := randomHex(t, 20)
	for _, c := range []struct {
		name     string
		l        authPHPLogin
		wantJSON bool
	}{
		{"JSON", authPHPLogin{method: http.MethodPost, target: authPHP + "?type=json", ct: "application/json",
			body: `{"USER_LOGIN":"` + testLogin + `","USER_HASH":"` + wrong + `"}`}, true},
		{"XML", authPHPLogin{method: http.MethodPost, target: authPHP, ct: "application/x-www-form-urlencoded",
			body: "USER_LOGIN=" + loginQ + "&USER_HASH=" + wrong}, false},
		{"login without key", authPHPLogin{method: http.MethodGet, target: authPHP + "?type=json&USER_LOGIN=" + loginQ}, true},
	} {
		t.Run("wrong key "+c.name, func(t *testing.T) {
			resp := authPHPDo(e, c.l, nil)
			if c.name == "login without key" {
				if resp.Status != http.StatusBadRequest && resp.Status != http.StatusUnauthorized {
					t.Errorf("status %d; want 400 or 401", resp.Status)
				}
			} else if resp.Status != http.StatusUnauthorized {
				t.Errorf("status %d; want 401; body %.300s", resp.Status, resp.Body)
			}
			if len(resp.Header.Values("Set-Cookie")) != 0 {
				t.Errorf("a failed login set a cookie")
			}
			if c.wantJSON {
				var j struct {
					Response struct {
						Auth      *bool  `json:"auth"`
						Error     string `json:"error"`
						ErrorCode string `json:"error_code"`
					} `json:"response"`
				}
				resp.JSON(t, &j)
				if j.Response.Auth == nil || *j.Response.Auth || j.Response.Error == "" {
					t.Errorf("auth.php error answer: %s", resp.Body)
				}
				if c.name != "login without key" && j.Response.ErrorCode != "110" {
					t.Errorf("error_code %q; want 110", j.Response.ErrorCode)
				}
			} else {
				var x struct {
					XMLName   xml.Name `xml:"root"`
					Auth      string   `xml:"auth"`
					ErrorCode string   `xml:"error_code"`
				}
				if err := xml.Unmarshal(resp.Body, &x); err != nil || x.Auth != "false" || x.ErrorCode != "110" {
					t.Errorf("auth.php XML error answer (%v): %s", err, resp.Body)
				}
			}
		})
	}
	// The session of the right key still works.
	if resp := e.Do(http.MethodGet, "/api/v2/account", http.Header{"Cookie": {"session_id=" + sid}}, nil); resp.Status != 200 {
		t.Errorf("the session after wrong logins: status %d; body %.300s", resp.Status, resp.Body)
	}
	if st := e.Fake.Stats(); st.CodeGrants != 1 {
		t.Errorf("%d code grants; the wrong keys must not get a token", st.CodeGrants)
	}
	noAuthPHPReached(t, e)
	e.AssertNoViolations()
	assertNoSecretsAnywhere(e)
	if strings.Contains(e.Caddy.Logs()+e.AccessLog(), wrong) {
		t.Errorf("a log holds the wrong key")
	}
}

// TestAuthPHPSessionExpires: with session_ttl 2s, the session works at first
// and gets 401 (legacy shape, code 110) once it is over.
func TestAuthPHPSessionExpires(t *testing.T) {
	needCaddy(t)
	e := NewEnv(t, EnvOptions{Site: func(s *SiteConfig) { s.Extra = "session_ttl 2s" }})
	resp := authPHPDo(e, authPHPLogins(e)[0], nil)
	parseAuthOK(t, resp, true)
	sid := sessionCookie(t, resp).Value
	opened := time.Now()
	h := http.Header{"Cookie": {"session_id=" + sid}}
	if resp := e.Do(http.MethodGet, "/api/v2/account", h, nil); resp.Status != 200 {
		t.Fatalf("the fresh session: status %d; body %.300s", resp.Status, resp.Body)
	}
	time.Sleep(time.Until(opened.Add(3 * time.Second)))
	n := requestCount(e)
	resp = e.Do(http.MethodGet, "/api/v2/account", h, nil)
	assertLegacyError(t, "an expired session", resp, http.StatusUnauthorized, "110")
	if requestCount(e) != n {
		t.Errorf("a request with an expired session reached amoCRM")
	}
	// Logging in again opens a new session; the token is still there.
	resp = authPHPDo(e, authPHPLogins(e)[0], nil)
	parseAuthOK(t, resp, true)
	if sid2 := sessionCookie(t, resp).Value; sid2 == sid {
		t.Errorf("a new login got the expired session's id")
	}
	if st := e.Fake.Stats(); st.ExchangeCalls != 1 {
		t.Errorf("%d exchange calls; logging in again must use the stored token", st.ExchangeCalls)
	}
	noAuthPHPReached(t, e)
	e.AssertNoViolations()
	assertNoSecretsAnywhere(e)
}

// TestAuthPHPSessionSurvivesRestart: a session opened before Caddy restarts
// (gracefully, then killed) still works after, with no new exchange.
func TestAuthPHPSessionSurvivesRestart(t *testing.T) {
	needCaddy(t)
	e := NewEnv(t, EnvOptions{})
	resp := authPHPDo(e, authPHPLogins(e)[3], nil)
	parseAuthOK(t, resp, true)
	sid := sessionCookie(t, resp).Value
	h := http.Header{"Cookie": {"session_id=" + sid}}
	if resp := e.Do(http.MethodGet, "/api/v2/account", h, nil); resp.Status != 200 {
		t.Fatalf("the fresh session: status %d; body %.300s", resp.Status, resp.Body)
	}
	token := bearerOf(lastRequest(t, e))
	for _, kill := range []bool{false, true} {
		e.Caddy.Restart(kill)
		resp := e.Do(http.MethodGet, "/api/v2/account", h, nil)
		if resp.Status != http.StatusOK {
			t.Fatalf("the session after a restart (kill=%v): status %d; body %.300s", kill, resp.Status, resp.Body)
		}
		r := lastRequest(t, e)
		assertBearerOnly(t, "after restart", r)
		if bearerOf(r) != token {
			t.Errorf("after a restart (kill=%v) the session got another token", kill)
		}
	}
	if st := e.Fake.Stats(); st.ExchangeCalls != 1 || st.TokenCalls != 1 {
		t.Errorf("%d exchange calls, %d token calls; the restarts must not need new ones", st.ExchangeCalls, st.TokenCalls)
	}
	noAuthPHPReached(t, e)
	e.AssertNoViolations()
	assertNoSecretsAnywhere(e)
}

// TestAuthPHPReauthorizesRefusedToken: amoCRM refuses the stored access
// token (revoked on its side before its expiry): auth.php refreshes the
// pair and answers, as a forwarded request is replayed, instead of saying
// that amoCRM is unreachable.
func TestAuthPHPReauthorizesRefusedToken(t *testing.T) {
	needCaddy(t)
	e := NewEnv(t, EnvOptions{Site: func(s *SiteConfig) { s.Extra = "rate_limit 0" }})
	want := wantAuth(t, e, testAccount, testLogin)
	if resp := e.Get("/api/v2/account?" + e.LegacyQuery("")); resp.Status != 200 {
		t.Fatalf("first request: status %d; body %.300s", resp.Status, resp.Body)
	}
	if err := e.Fake.ExpireAccess(testAccount, testLogin); err != nil {
		t.Fatal(err)
	}
	before := e.Fake.Stats()
	l := authPHPLogins(e)[0]
	resp := authPHPDo(e, l, nil)
	got := parseAuthOK(t, resp, l.json)
	got.serverTime = 0
	if got != want {
		t.Errorf("auth.php answered %+v; want %+v\n%s", got, want, resp.Body)
	}
	sessionCookie(t, resp)
	after := e.Fake.Stats()
	if after.Refreshes-before.Refreshes != 1 || after.Exchanges != before.Exchanges {
		t.Errorf("refreshes %d→%d, exchanges %d→%d: want one refresh and no exchange",
			before.Refreshes, after.Refreshes, before.Exchanges, after.Exchanges)
	}
	e.AssertNoViolations()
}
