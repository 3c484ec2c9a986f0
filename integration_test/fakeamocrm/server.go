package fakeamocrm

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"
)

// User is an amoCRM user of an account who has a legacy API key.
type User struct {
	Account string // the account's subdomain, e.g. "acme"
	Login   string // e-mail; matched case-insensitively
	APIKey  string // the legacy key (USER_HASH)
	UserID  int64  // 0: one is assigned
}

// Account describes an amoCRM account. Accounts named by Users but not listed in
// Options.Accounts get the defaults shown on the fields.
type Account struct {
	Name     string // subdomain, e.g. "acme"
	ID       int64  // 0: one is assigned (30000001, 30000002, ... in order of appearance)
	Title    string // display name; default: Name with its first letter upper-cased
	Timezone string // default "Europe/Moscow"
	Country  string // default "RU"
	Currency string // default "RUB"
	Language string // used only by the legacy accounts/current answer; default "ru"
}

// Options configures a Server. Zero durations take the defaults shown.
type Options struct {
	// The integration registered in every account. RedirectURI must match
	// exactly (trailing slash included) wherever it is sent.
	ClientID, ClientSecret, RedirectURI string

	Users    []User
	Accounts []Account // optional details; accounts are created from Users anyway

	// DefaultAccount is the account of a request that names none (see the package
	// doc). Empty: the only configured account, if there is exactly one.
	DefaultAccount string

	BaseDomain string // "amocrm.ru": used in referer, _links and the JWT
	APIDomain  string // the JWT's api_domain claim; default "api-b.amocrm.ru"

	AccessTTL        time.Duration // access token lifetime; default 24h
	RefreshTTL       time.Duration // refresh token lifetime; default 90 days
	CodeTTL          time.Duration // authorization code lifetime; default 20m
	ExchangeInterval time.Duration // min time between two exchanges of one user; default 5m; < 0 disables

	// CallbackDelay is the time between a 202 from exchange_api_key and the call to
	// RedirectURI; default 200ms, < 0 means none.
	CallbackDelay time.Duration
	// CallbackClient delivers callbacks. Default: no proxy, no redirects followed,
	// TLS verification off (tests use self-signed certificates). Whatever the
	// client, each call is bounded by CallbackTimeout and never retried.
	CallbackClient  *http.Client
	CallbackTimeout time.Duration // default 3s

	// RateLimit is the number of API requests (/api/..., /private/...) per account
	// per wall-clock second answered normally; past it, 429. 0 = unlimited. The
	// highest count seen in any second is recorded in Stats.MaxPerSecond anyway.
	RateLimit int

	// MaxBody is the largest request body read; larger gets 413. Default 32 MiB.
	MaxBody int64

	Now func() time.Time // default time.Now; drives token, code and exchange-interval times
}

// Server is the fake amoCRM. It is an http.Handler; all methods are safe for
// concurrent use.
type Server struct {
	opts    Options
	now     func() time.Time
	wallNow func() time.Time // rate windows: real wall-clock time (replaced in tests)
	client  *http.Client
	signKey []byte

	baseCtx context.Context
	cancel  context.CancelFunc
	wg      sync.WaitGroup

	mu           sync.Mutex
	closed       bool
	gen          uint64        // bumped by Reset: late callback results are ignored
	stopCh       chan struct{} // closed by Reset and Close: pending deliveries stop
	accounts     map[string]*account
	accountOrder []string
	users        map[string]*user // by userKey(account, login)
	codes        map[string]*authCode
	access       map[string]*accessToken
	refresh      map[string]*refreshToken
	lastExchange map[string]time.Time
	st           Stats
	rate         map[string]*rateWindow
	requests     []*Recorded
	violations   []Violation
	callbacks    []CallbackResult
	held         []*pendingCallback
	nextID       int64
	k            knobs
}

type knobs struct {
	dropCallbacks int
	holdCallbacks bool
	callbackDelay time.Duration
	tokenFailure  injected
	exchFailure   injected
	delay         time.Duration
	down          bool
	failAll       int
}

type injected struct {
	status int
	body   string
}

type account struct {
	Account
}

type user struct {
	account string
	login   string
	keyHash [32]byte
	id      int64
}

// userKey is the map key of a user: logins are compared case-insensitively.
func userKey(acct, login string) string {
	return acct + "\x00" + strings.ToLower(login)
}

// New returns a Server configured by o.
func New(o Options) *Server {
	if o.AccessTTL <= 0 {
		o.AccessTTL = 24 * time.Hour
	}
	if o.RefreshTTL <= 0 {
		o.RefreshTTL = 90 * 24 * time.Hour
	}
	if o.CodeTTL <= 0 {
		o.CodeTTL = 20 * time.Minute
	}
	if o.ExchangeInterval == 0 {
		o.ExchangeInterval = 5 * time.Minute
	}
	if o.CallbackDelay == 0 {
		o.CallbackDelay = 200 * time.Millisecond
	}
	if o.CallbackDelay < 0 {
		o.CallbackDelay = 0
	}
	if o.CallbackTimeout <= 0 {
		o.CallbackTimeout = 3 * time.Second
	}
	if o.BaseDomain == "" {
		o.BaseDomain = "amocrm.ru"
	}
	if o.APIDomain == "" {
		o.APIDomain = "api-b." + o.BaseDomain
	}
	if o.MaxBody <= 0 {
		o.MaxBody = 32 << 20
	}
	s := &Server{opts: o, now: o.Now, wallNow: time.Now, client: o.CallbackClient}
	if s.now == nil {
		s.now = time.Now
	}
	if s.client == nil {
		s.client = defaultCallbackClient()
	}
	s.signKey = make([]byte, 32)
	if _, err := rand.Read(s.signKey); err != nil {
		panic(fmt.Sprintf("fakeamocrm: reading random bytes: %v", err))
	}
	s.baseCtx, s.cancel = context.WithCancel(context.Background())
	s.mu.Lock()
	s.resetLocked()
	s.mu.Unlock()
	return s
}

func defaultCallbackClient() *http.Client {
	return &http.Client{
		Transport: &http.Transport{
			Proxy:             nil,
			DialContext:       (&net.Dialer{Timeout: 3 * time.Second}).DialContext,
			TLSClientConfig:   &tls.Config{InsecureSkipVerify: true}, //nolint:gosec // a test fake calling test servers
			DisableKeepAlives: true,
		},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// resetLocked (re)builds the whole state from the options. s.mu must be held.
func (s *Server) resetLocked() {
	s.gen++
	if s.stopCh != nil {
		close(s.stopCh)
	}
	s.stopCh = make(chan struct{})
	s.accounts = make(map[string]*account)
	s.accountOrder = nil
	s.users = make(map[string]*user)
	s.codes = make(map[string]*authCode)
	s.access = make(map[string]*accessToken)
	s.refresh = make(map[string]*refreshToken)
	s.lastExchange = make(map[string]time.Time)
	s.st = Stats{}
	s.rate = make(map[string]*rateWindow)
	s.requests = nil
	s.violations = nil
	s.callbacks = nil
	s.held = nil
	s.nextID = 0
	s.k = knobs{callbackDelay: s.opts.CallbackDelay}

	for _, a := range s.opts.Accounts {
		s.addAccount(a)
	}
	nextUserID := int64(5000001)
	for _, u := range s.opts.Users {
		s.addAccount(Account{Name: u.Account})
		id := u.UserID
		if id == 0 {
			id = nextUserID
			nextUserID++
		}
		s.users[userKey(u.Account, u.Login)] = &user{account: u.Account, login: u.Login, keyHash: sum(u.APIKey), id: id}
	}
	nextAcctID := int64(30000001)
	for _, name := range s.accountOrder {
		a := s.accounts[name]
		if a.ID == 0 {
			a.ID = nextAcctID
			nextAcctID++
		}
	}
}

// addAccount adds a (defaulted), unless an account of that name exists.
func (s *Server) addAccount(a Account) {
	if a.Name == "" {
		return
	}
	if _, ok := s.accounts[a.Name]; ok {
		return
	}
	if a.Title == "" {
		a.Title = strings.ToUpper(a.Name[:1]) + a.Name[1:]
	}
	if a.Timezone == "" {
		a.Timezone = "Europe/Moscow"
	}
	if a.Country == "" {
		a.Country = "RU"
	}
	if a.Currency == "" {
		a.Currency = "RUB"
	}
	if a.Language == "" {
		a.Language = "ru"
	}
	s.accounts[a.Name] = &account{a}
	s.accountOrder = append(s.accountOrder, a.Name)
}

// Close stops pending callback deliveries, cancels those in flight and waits for
// them. The Server still answers requests afterwards but delivers no callbacks.
func (s *Server) Close() {
	s.mu.Lock()
	if !s.closed {
		s.closed = true
		close(s.stopCh)
		s.stopCh = make(chan struct{})
	}
	s.mu.Unlock()
	s.cancel()
	s.wg.Wait()
}

// Reset forgets every token, code, exchange, record and counter, restores the
// users' original API keys and sets every knob back to normal.
func (s *Server) Reset() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.resetLocked()
}

// statusWriter remembers the status written.
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

// request is one request as the handlers see it.
type request struct {
	*http.Request
	acct    *account // nil only for unknown accounts (never reaches a handler)
	path    string   // after the /_acct/ prefix is stripped
	body    []byte
	now     time.Time
	rec     *Recorded
	isAPI   bool
	isOAuth bool
}

// ServeHTTP implements http.Handler.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if strings.HasPrefix(r.URL.Path, debugPrefix) {
		s.serveDebug(w, r)
		return
	}

	s.mu.Lock()
	k := s.k
	s.mu.Unlock()
	if k.down {
		if hj, ok := w.(http.Hijacker); ok {
			if conn, _, err := hj.Hijack(); err == nil {
				_ = conn.Close()
				return
			}
		}
		writeProblem(w, http.StatusServiceUnavailable, "Service Unavailable", "", "amoCRM is down")
		return
	}
	if k.delay > 0 {
		t := time.NewTimer(k.delay)
		select {
		case <-t.C:
		case <-r.Context().Done():
			t.Stop()
			return
		}
	}
	if k.failAll != 0 {
		writeProblem(w, k.failAll, http.StatusText(k.failAll), "", "injected failure")
		return
	}

	acctName, path := s.route(r)
	rq := &request{Request: r, path: path, now: s.now()}
	rq.isAPI = strings.HasPrefix(path, "/api/") || strings.HasPrefix(path, "/private/")
	rq.isOAuth = strings.HasPrefix(path, "/oauth2/")

	body, err := io.ReadAll(io.LimitReader(r.Body, s.opts.MaxBody+1))
	if err != nil {
		writeProblem(w, http.StatusBadRequest, "Bad Request", "", "reading the request body failed")
		return
	}
	if int64(len(body)) > s.opts.MaxBody {
		writeProblem(w, http.StatusRequestEntityTooLarge, "Request Entity Too Large", "", "body too large")
		return
	}
	rq.body = body
	r.Body = io.NopCloser(bytes.NewReader(body))

	findings := inspect(r.URL.RawQuery, r.Header, path, body)

	sw := &statusWriter{ResponseWriter: w}
	s.mu.Lock()
	rq.rec = s.recordLocked(rq, acctName)
	for _, f := range findings {
		s.violateLocked(rq, acctName, f.kind, f.name, f.where, "")
	}
	rq.acct = s.accounts[acctName]
	if rq.acct == nil {
		s.violateLocked(rq, acctName, ViolationUnknownAccount, "", "", "no such account")
	}
	limited := false
	if rq.isAPI && rq.acct != nil {
		s.st.APIRequests++
		limited = s.countRateLocked(acctName)
	}
	s.mu.Unlock()

	defer func() {
		s.mu.Lock()
		rq.rec.Status = sw.status
		s.mu.Unlock()
	}()

	switch {
	case rq.acct == nil:
		writeProblem(sw, http.StatusNotFound, "Not Found", "Account not found", "no such account")
	case limited:
		writeProblem(sw, http.StatusTooManyRequests, "Too Many Requests", "", "too many requests per second")
	default:
		s.dispatch(sw, rq)
	}
}

// route finds the account of r and the path to handle.
func (s *Server) route(r *http.Request) (acct, path string) {
	path = r.URL.Path
	if rest, ok := strings.CutPrefix(path, "/_acct/"); ok {
		name, tail, _ := strings.Cut(rest, "/")
		return name, "/" + tail
	}
	host := r.Host
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	host = strings.TrimSuffix(host, ".")
	if net.ParseIP(strings.Trim(host, "[]")) == nil {
		if labels := strings.Split(host, "."); len(labels) >= 3 && labels[0] != "" {
			return strings.ToLower(labels[0]), path
		}
	}
	return s.defaultAccount(), path
}

func (s *Server) defaultAccount() string {
	if s.opts.DefaultAccount != "" {
		return s.opts.DefaultAccount
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.accountOrder) == 1 {
		return s.accountOrder[0]
	}
	return ""
}

// dispatch sends rq to its endpoint.
func (s *Server) dispatch(w http.ResponseWriter, rq *request) {
	p := rq.path
	switch {
	case p == "/oauth2/exchange_api_key":
		s.handleExchange(w, rq)
	case p == "/oauth2/access_token":
		s.handleAccessToken(w, rq)
	case p == "/private/api/auth.php":
		s.handleAuthPHP(w, rq)
	case rq.isAPI:
		s.handleAPI(w, rq)
	default:
		writeProblem(w, http.StatusNotFound, "Not Found", "", "no such endpoint")
	}
}

// errUnknownUser is returned by the knobs that name a user who does not exist.
var errUnknownUser = errors.New("fakeamocrm: no such user")
