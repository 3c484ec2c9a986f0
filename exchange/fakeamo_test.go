package exchange

import (
	"encoding/json"
	"fmt"
	"mime"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeAmo is a small, strict amoCRM: exchange_api_key with its 5-minute
// limit and an asynchronous callback, single-use codes, single-use rotating
// refresh tokens (reuse is counted), and /api/v4/account. Hooks let a test
// make it fail.
type fakeAmo struct {
	t        testing.TB
	srv      *httptest.Server
	clock    *clock
	clientID string
	secret   string
	redirect string

	interval  time.Duration // amoCRM's exchange limit per user
	expiresIn int64         // access token lifetime, seconds

	// deliver is called with the callback query (the broker's
	// HandleCallback), callbackDelay after a 202, unless noCallback.
	deliver       func(url.Values) error
	callbackDelay time.Duration
	noCallback    bool

	// Hooks: if set and returning true, they have answered the request.
	exchangeHook func(w http.ResponseWriter, login string) bool
	tokenHook    func(w http.ResponseWriter, grantType string) bool
	accountHook  func(w http.ResponseWriter) bool

	wg sync.WaitGroup // callbacks under way

	mu           sync.Mutex
	keys         map[string]string    // login → its valid API key
	lastExchange map[string]time.Time // login → last exchange_api_key call
	codes        map[string]*codeRec
	refreshes    map[string]*refreshRec
	access       map[string]accessRec
	deadUsers    map[string]bool // refresh tokens of these logins are revoked

	exchanges     int // exchange_api_key calls
	exchangesBy   map[string]int
	limitHits     int // exchange_api_key calls within the interval (the broker must make none)
	rejections    int
	codeGrants    int
	refreshCount  int // successful refreshes
	reuses        int // refresh tokens presented twice
	badGrants     int // grants with a bad client, secret, redirect_uri or code
	accountCalls  int
	tokenCalls    map[string]int // token endpoint calls by grant_type, hooks included
	lastQuery     url.Values     // the last callback query made (delivered or not)
	callbackErrs  []error
	violations    []string
	lastAPIHeader http.Header
}

type codeRec struct {
	login   string
	used    bool
	expires time.Time
}

type refreshRec struct {
	login string
	used  bool
}

type accessRec struct {
	login   string
	expires time.Time
}

func newFakeAmo(t testing.TB, c *clock, clientID, secret, redirect string) *fakeAmo {
	f := &fakeAmo{
		t: t, clock: c, clientID: clientID, secret: secret, redirect: redirect,
		interval: 5 * time.Minute, expiresIn: 86400, callbackDelay: 20 * time.Millisecond,
		keys: map[string]string{}, lastExchange: map[string]time.Time{},
		codes: map[string]*codeRec{}, refreshes: map[string]*refreshRec{},
		access: map[string]accessRec{}, deadUsers: map[string]bool{},
		exchangesBy: map[string]int{}, tokenCalls: map[string]int{},
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/oauth2/exchange_api_key", f.handleExchange)
	mux.HandleFunc("/oauth2/access_token", f.handleToken)
	mux.HandleFunc("/api/v4/account", f.handleAccount)
	f.srv = httptest.NewServer(mux) // listens on 127.0.0.1
	return f
}

func (f *fakeAmo) URL() string { return f.srv.URL }

func (f *fakeAmo) wait() { f.wg.Wait() }

func (f *fakeAmo) close() {
	f.srv.Close()
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, v := range f.violations {
		f.t.Errorf("fake amoCRM: protocol violation: %s", v)
	}
}

func (f *fakeAmo) setKey(login, key string) {
	noteSecret(key)
	f.mu.Lock()
	f.keys[login] = key
	f.mu.Unlock()
}

// kill revokes every refresh token of login.
func (f *fakeAmo) kill(login string) {
	f.mu.Lock()
	f.deadUsers[login] = true
	f.mu.Unlock()
}

// stat reads counters under the lock.
func (f *fakeAmo) stat(fn func(f *fakeAmo) int) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return fn(f)
}

func (f *fakeAmo) violate(format string, args ...any) {
	f.violations = append(f.violations, fmt.Sprintf(format, args...))
}

func writeProblem(w http.ResponseWriter, status int, hint string) {
	w.Header().Set("Content-Type", "application/problem+json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(map[string]any{"title": http.StatusText(status), "type": "https://httpstatus.es/" + strconv.Itoa(status), "status": status, "detail": hint, "hint": hint})
}

func (f *fakeAmo) handleExchange(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		http.Error(w, "method", http.StatusMethodNotAllowed)
		return
	}
	if ct, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); ct != "application/json" {
		f.mu.Lock()
		f.violate("exchange_api_key with Content-Type %q", ct)
		f.mu.Unlock()
		writeProblem(w, 400, "content type")
		return
	}
	var body struct {
		Login        string `json:"login"`
		APIKey       string `json:"api_key"`
		ClientUUID   string `json:"client_uuid"`
		ClientSecret string `json:"client_secret"`
		State        string `json:"state"`
	}
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(&body); err != nil {
		f.mu.Lock()
		f.violate("exchange_api_key body: %v", err)
		f.mu.Unlock()
		writeProblem(w, 400, "bad body")
		return
	}
	noteSecret(body.State)
	now := f.clock.Now()
	f.mu.Lock()
	f.exchanges++
	f.exchangesBy[body.Login]++
	if body.ClientUUID != f.clientID || body.ClientSecret != f.secret || body.Login == "" || body.APIKey == "" || len(body.State) < 22 {
		f.violate("exchange_api_key with a bad client, login, key or state")
		f.mu.Unlock()
		writeProblem(w, 400, "Check the client_uuid parameter")
		return
	}
	if last, ok := f.lastExchange[body.Login]; ok && now.Sub(last) < f.interval {
		f.limitHits++
		left := f.interval - now.Sub(last)
		f.mu.Unlock()
		w.Header().Set("Retry-After", strconv.Itoa(int(left.Seconds())+1))
		writeProblem(w, 429, "Too many requests")
		return
	}
	f.lastExchange[body.Login] = now
	hook := f.exchangeHook
	f.mu.Unlock()
	if hook != nil && hook(w, body.Login) {
		return
	}
	f.mu.Lock()
	if want, ok := f.keys[body.Login]; !ok || want != body.APIKey {
		f.rejections++
		f.mu.Unlock()
		writeProblem(w, 400, "Invalid api key for login "+body.Login+" key "+body.APIKey)
		return
	}
	code := "code" + randHex(24)
	noteSecret(code)
	f.codes[code] = &codeRec{login: body.Login, expires: now.Add(20 * time.Minute)}
	q := url.Values{"code": {code}, "state": {body.State}, "from_exchange": {"1"}, "client_id": {f.clientID}, "referer": {"acme.amocrm.ru"}}
	f.lastQuery = q
	delay, skip, deliver := f.callbackDelay, f.noCallback, f.deliver
	f.mu.Unlock()
	w.WriteHeader(http.StatusAccepted)
	if skip || deliver == nil {
		return
	}
	f.wg.Add(1)
	go func() {
		defer f.wg.Done()
		time.Sleep(delay)
		err := deliver(q)
		noteErr(err)
		if err != nil {
			f.mu.Lock()
			f.callbackErrs = append(f.callbackErrs, err)
			f.mu.Unlock()
		}
	}()
}

// query returns a copy of the last callback query.
func (f *fakeAmo) query() url.Values {
	f.mu.Lock()
	defer f.mu.Unlock()
	q := url.Values{}
	for k, v := range f.lastQuery {
		q[k] = append([]string(nil), v...)
	}
	return q
}

// sendCallback delivers a callback for code now (tests of late codes).
func (f *fakeAmo) sendCallback(q url.Values) error {
	err := f.deliver(q)
	noteErr(err)
	return err
}

func (f *fakeAmo) issue(login string, now time.Time) map[string]any {
	acc, ref := "acc"+randHex(24), "ref"+randHex(24)
	noteSecret(acc)
	noteSecret(ref)
	f.access[acc] = accessRec{login: login, expires: now.Add(time.Duration(f.expiresIn) * time.Second)}
	f.refreshes[ref] = &refreshRec{login: login}
	return map[string]any{"token_type": "Bearer", "expires_in": f.expiresIn, "server_time": now.Unix(), "access_token": acc, "refresh_token": ref}
}

func (f *fakeAmo) handleToken(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		http.Error(w, "method", http.StatusMethodNotAllowed)
		return
	}
	var g struct {
		ClientID     string `json:"client_id"`
		ClientSecret string `json:"client_secret"`
		GrantType    string `json:"grant_type"`
		Code         string `json:"code"`
		RefreshToken string `json:"refresh_token"`
		RedirectURI  string `json:"redirect_uri"`
	}
	ct, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	switch ct {
	case "application/json":
		if err := json.NewDecoder(r.Body).Decode(&g); err != nil {
			writeProblem(w, 400, "bad json")
			return
		}
	case "application/x-www-form-urlencoded":
		if err := r.ParseForm(); err != nil {
			writeProblem(w, 400, "bad form")
			return
		}
		g.ClientID, g.ClientSecret, g.GrantType = r.PostForm.Get("client_id"), r.PostForm.Get("client_secret"), r.PostForm.Get("grant_type")
		g.Code, g.RefreshToken, g.RedirectURI = r.PostForm.Get("code"), r.PostForm.Get("refresh_token"), r.PostForm.Get("redirect_uri")
	default:
		writeProblem(w, 400, "content type")
		return
	}
	f.mu.Lock()
	hook := f.tokenHook
	f.tokenCalls[g.GrantType]++
	f.mu.Unlock()
	if hook != nil && hook(w, g.GrantType) {
		return
	}
	now := f.clock.Now()
	f.mu.Lock()
	defer f.mu.Unlock()
	if g.ClientID != f.clientID || g.ClientSecret != f.secret {
		f.badGrants++
		f.violate("grant with a bad client_id or secret")
		writeProblem(w, 400, "Check the `client_id` parameter")
		return
	}
	if g.RedirectURI != f.redirect {
		f.badGrants++
		f.violate("grant %s without the exact redirect_uri", g.GrantType)
		writeProblem(w, 400, "Redirect URI is not associated with client")
		return
	}
	switch g.GrantType {
	case "authorization_code":
		c := f.codes[g.Code]
		switch {
		case c == nil:
			f.badGrants++
			writeProblem(w, 400, "Authorization code has been revoked")
			return
		case c.used:
			f.badGrants++
			f.violate("authorization code used twice")
			writeProblem(w, 400, "Authorization code has been revoked")
			return
		case now.After(c.expires):
			writeProblem(w, 400, "Authorization code has expired")
			return
		}
		c.used = true
		f.codeGrants++
		json.NewEncoder(w).Encode(f.issue(c.login, now))
	case "refresh_token":
		rr := f.refreshes[g.RefreshToken]
		switch {
		case rr == nil:
			writeProblem(w, 400, "Invalid refresh token")
			return
		case rr.used:
			f.reuses++
			writeProblem(w, 401, "Token has been revoked")
			return
		case f.deadUsers[rr.login]:
			writeProblem(w, 401, "Token has been revoked")
			return
		}
		rr.used = true
		f.refreshCount++
		json.NewEncoder(w).Encode(f.issue(rr.login, now))
	default:
		writeProblem(w, 400, "unsupported grant_type")
	}
}

func (f *fakeAmo) handleAccount(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	hook := f.accountHook
	f.mu.Unlock()
	if hook != nil && hook(w) {
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.accountCalls++
	f.lastAPIHeader = r.Header.Clone()
	tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	rec, known := f.access[tok]
	if !ok || !known || f.clock.Now().After(rec.expires) {
		writeProblem(w, 401, "Unauthorized")
		return
	}
	if r.URL.Query().Get("with") != "datetime_settings" {
		f.violate("account info without with=datetime_settings")
	}
	w.Header().Set("Content-Type", "application/hal+json")
	fmt.Fprintf(w, `{"id":123,"name":"Acme","subdomain":"acme","current_user_id":%d,"country":"RU","currency":"RUB","_embedded":{"datetime_settings":{"date_pattern":"d.m.Y H:i","timezone":"Europe/Kaliningrad","timezone_offset":"+02:00"}}}`, 400+len(rec.login))
}

// set changes the fake's knobs under its lock.
func (f *fakeAmo) set(fn func(f *fakeAmo)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	fn(f)
}
