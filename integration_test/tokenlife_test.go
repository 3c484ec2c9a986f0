package integration_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/amobridge/amobridge/integration_test/fakeamocrm"
)

// This file holds issue 4's token-lifecycle tests (single flight, refresh
// under load, replay after a 401, dead refresh tokens, the keeper) and the
// helpers the other files (faults_test.go, ratelimit_test.go) share.
// Every helper is prefixed tl so as not to collide with other files.

// tlUser is one legacy user of a test.
type tlUser struct{ Login, Key string }

// tlUsers returns n users with distinct logins and random keys; the first is
// the Env's own test user when key0 is given.
func tlUsers(t testing.TB, n int, key0 string) []tlUser {
	t.Helper()
	us := make([]tlUser, n)
	for i := range us {
		us[i] = tlUser{Login: fmt.Sprintf("user%03d@example.com", i), Key: randomHex(t, 20)}
	}
	if n > 0 && key0 != "" {
		us[0] = tlUser{Login: testLogin, Key: key0}
	}
	return us
}

// tlAddUsers adds users (other than the Env's own, testLogin) to the fake.
func tlAddUsers(us []tlUser) func(*fakeamocrm.Options) {
	return func(o *fakeamocrm.Options) {
		for _, u := range us {
			if u.Login != testLogin {
				o.Users = append(o.Users, fakeamocrm.User{Account: testAccount, Login: u.Login, APIKey: u.Key})
			}
		}
	}
}

// query is the legacy query of u, with extra appended.
func (u tlUser) query(extra string) string {
	q := "USER_LOGIN=" + url.QueryEscape(u.Login) + "&USER_HASH=" + u.Key
	if extra != "" {
		q += "&" + extra
	}
	return q
}

// tlResult is one answer read whole, or the error that prevented it. It is
// safe to produce from any goroutine (no testing.T involved).
type tlResult struct {
	Status int
	Header http.Header
	Body   []byte
	Err    error
	Took   time.Duration
}

// tlLoadClient keeps connections alive: load tests would otherwise run the
// machine out of ephemeral ports.
var tlLoadClient = &http.Client{
	Timeout:       90 * time.Second,
	Transport:     &http.Transport{Proxy: nil, MaxIdleConns: 512, MaxIdleConnsPerHost: 512},
	CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
}

// tlSend sends one request to Caddy with hc (tlLoadClient if nil).
func tlSend(hc *http.Client, e *Env, method, path string, header http.Header, body []byte) tlResult {
	if hc == nil {
		hc = tlLoadClient
	}
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	start := time.Now()
	req, err := http.NewRequest(method, e.Caddy.BaseURL()+path, rd)
	if err != nil {
		return tlResult{Err: err}
	}
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := hc.Do(req)
	if err != nil {
		// The URL holds a legacy key: keep only the transport error's kind.
		if ue, ok := err.(*url.Error); ok {
			err = fmt.Errorf("%s %s: %v", method, redactQuery(path), ue.Err)
		}
		return tlResult{Err: err, Took: time.Since(start)}
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return tlResult{Status: resp.StatusCode, Header: resp.Header, Body: b, Err: err, Took: time.Since(start)}
}

// tlGet is a legacy GET of /api/v2/account for u.
func tlGet(e *Env, u tlUser) tlResult {
	return tlSend(nil, e, http.MethodGet, "/api/v2/account?"+u.query(""), nil, nil)
}

// tlLegacyError fails t unless r is a module error in the legacy JSON shape
// {"response":{"error","error_code","server_time"}} with status.
func tlLegacyError(t testing.TB, what string, r tlResult, status int) {
	t.Helper()
	if r.Err != nil {
		t.Errorf("%s: %v", what, r.Err)
		return
	}
	if r.Status != status {
		t.Errorf("%s: status %d, want %d; body: %.300s", what, r.Status, status, r.Body)
		return
	}
	if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Errorf("%s: Content-Type %q, want application/json", what, ct)
	}
	var le struct {
		Response struct {
			Error      *string         `json:"error"`
			ErrorCode  json.RawMessage `json:"error_code"`
			ServerTime *int64          `json:"server_time"`
		} `json:"response"`
	}
	if err := json.Unmarshal(r.Body, &le); err != nil || le.Response.Error == nil || *le.Response.Error == "" ||
		len(le.Response.ErrorCode) == 0 || le.Response.ServerTime == nil {
		t.Errorf("%s: not the legacy error shape (%v): %.300s", what, err, r.Body)
	}
}

// tlRetryAfter fails t unless r has a Retry-After of a positive number of seconds.
func tlRetryAfter(t testing.TB, what string, r tlResult) int {
	t.Helper()
	ra := r.Header.Get("Retry-After")
	n, err := strconv.Atoi(ra)
	if err != nil || n <= 0 {
		t.Errorf("%s: Retry-After %q; want a positive number of seconds", what, ra)
	}
	return n
}

// tlSHA is the hex SHA-256 of b.
func tlSHA(b []byte) string {
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:])
}

// tlStatuses counts results by status (0: a transport error).
type tlStatuses struct {
	mu     sync.Mutex
	counts map[int]int
	errs   []string
	bodies map[int]string // one body per status other than 200
	took   []time.Duration
}

func (s *tlStatuses) add(r tlResult) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.counts == nil {
		s.counts, s.bodies = map[int]int{}, map[int]string{}
	}
	s.counts[r.Status]++
	s.took = append(s.took, r.Took)
	if r.Err != nil && len(s.errs) < 5 {
		s.errs = append(s.errs, r.Err.Error())
	}
	if r.Status != 200 && r.Status != 0 {
		if _, ok := s.bodies[r.Status]; !ok {
			s.bodies[r.Status] = fmt.Sprintf("%.200s", r.Body)
		}
	}
}

func (s *tlStatuses) total() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, c := range s.counts {
		n += c
	}
	return n
}

func (s *tlStatuses) get(status int) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.counts[status]
}

// String reports the counts, latency percentiles, and a sample of each failure.
func (s *tlStatuses) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var keys []int
	for k := range s.counts {
		keys = append(keys, k)
	}
	sort.Ints(keys)
	var b strings.Builder
	for _, k := range keys {
		fmt.Fprintf(&b, "%d×%d ", k, s.counts[k])
	}
	if len(s.took) > 0 {
		d := append([]time.Duration(nil), s.took...)
		sort.Slice(d, func(i, j int) bool { return d[i] < d[j] })
		fmt.Fprintf(&b, "latency p50 %v p99 %v max %v", d[len(d)/2].Round(time.Millisecond),
			d[len(d)*99/100].Round(time.Millisecond), d[len(d)-1].Round(time.Millisecond))
	}
	for k, v := range s.bodies {
		fmt.Fprintf(&b, "\n  sample %d: %s", k, v)
	}
	for _, e := range s.errs {
		fmt.Fprintf(&b, "\n  error: %s", e)
	}
	return b.String()
}

// tlWaitFor polls cond every 50ms until it holds or d passes.
func tlWaitFor(d time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(d)
	for {
		if cond() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// tlNoLimit turns the module's rate limit off.
func tlNoLimit(extra ...string) func(*SiteConfig) {
	return func(s *SiteConfig) {
		s.Debug = false // hundreds of requests: keep Caddy's log small
		s.Extra = strings.Join(append([]string{"rate_limit 0"}, extra...), "\n\t\t")
	}
}

// TestColdStampedeOneUser sends 200 concurrent requests of one user who has
// no token yet: one exchange_api_key call, all 200 served.
func TestColdStampedeOneUser(t *testing.T) {
	needCaddy(t)
	e := NewEnv(t, EnvOptions{Site: tlNoLimit()})
	u := tlUser{Login: testLogin, Key: e.APIKey}
	var st tlStatuses
	var wg sync.WaitGroup
	start := make(chan struct{})
	for range 200 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			st.add(tlGet(e, u))
		}()
	}
	close(start)
	wg.Wait()
	t.Logf("200 cold requests of one user: %s", &st)
	if st.get(200) != 200 {
		t.Errorf("%d of 200 cold requests answered 200; want all: %s", st.get(200), &st)
	}
	fs := e.Fake.Stats()
	t.Logf("fake: exchange calls %d, code grants %d, API requests %d", fs.ExchangeCalls, fs.CodeGrants, fs.APIRequests)
	if fs.ExchangeCalls != 1 || fs.CodeGrants != 1 {
		t.Errorf("200 cold requests of one user: %d exchange_api_key calls, %d code grants; want 1 and 1", fs.ExchangeCalls, fs.CodeGrants)
	}
	e.AssertNoViolations()
	e.AssertNoSecrets("Caddy's log", e.Caddy.Logs())
}

// TestColdStampedeManyUsers sends the first request of 100 users at once: one
// exchange each, all served.
func TestColdStampedeManyUsers(t *testing.T) {
	needCaddy(t)
	var users []tlUser
	e := NewEnv(t, EnvOptions{
		Fake: func(o *fakeamocrm.Options) {
			users = tlUsers(t, 100, "")
			tlAddUsers(users)(o)
		},
		Site: tlNoLimit(),
	})
	var st tlStatuses
	var wg sync.WaitGroup
	start := make(chan struct{})
	for _, u := range users {
		for range 2 { // two requests per user: the second joins the first's flight
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				st.add(tlGet(e, u))
			}()
		}
	}
	close(start)
	wg.Wait()
	t.Logf("100 users × 2 cold requests: %s", &st)
	if st.get(200) != 200 {
		t.Errorf("%d of 200 requests of 100 cold users answered 200; want all: %s", st.get(200), &st)
	}
	fs := e.Fake.Stats()
	t.Logf("fake: exchange calls %d (accepted %d, 429 %d), code grants %d", fs.ExchangeCalls, fs.Exchanges, fs.Exchange429, fs.CodeGrants)
	if fs.ExchangeCalls != 100 || fs.Exchanges != 100 || fs.CodeGrants != 100 {
		t.Errorf("100 cold users: %d exchange calls, %d accepted, %d code grants; want 100 each", fs.ExchangeCalls, fs.Exchanges, fs.CodeGrants)
	}
	e.AssertNoViolations()
}

// tlSoakDuration is the refresh soak's length: AMOBRIDGE_SOAK (e.g. 5m) or 75s.
func tlSoakDuration(t *testing.T) time.Duration {
	if v := os.Getenv("AMOBRIDGE_SOAK"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			t.Fatalf("AMOBRIDGE_SOAK=%q is not a duration", v)
		}
		return d
	}
	return 75 * time.Second
}

// TestRefreshUnderLoad runs several clients for a few users against 3-second
// access tokens refreshed 1 s ahead: amoCRM must never see a spent refresh
// token again, nor anything else it forbids, and clients must see no 5xx.
// AMOBRIDGE_SOAK=5m makes it longer.
func TestRefreshUnderLoad(t *testing.T) {
	needCaddy(t)
	dur := tlSoakDuration(t)
	var users []tlUser
	e := NewEnv(t, EnvOptions{
		Fake: func(o *fakeamocrm.Options) {
			o.AccessTTL = 3 * time.Second
			users = tlUsers(t, 4, o.Users[0].APIKey)
			tlAddUsers(users)(o)
		},
		Site: tlNoLimit("refresh_ahead 1s"),
	})
	var st tlStatuses
	var wg sync.WaitGroup
	stop := time.Now().Add(dur)
	const clients = 8
	for i := range clients {
		u := users[i%len(users)]
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n := 0; time.Now().Before(stop); n++ {
				var r tlResult
				if n%3 == 0 {
					body := []byte(fmt.Sprintf(`{"n":%d}`, n))
					r = tlSend(nil, e, http.MethodPost, "/api/v2/leads?"+u.query(""), http.Header{"Content-Type": {"application/json"}}, body)
				} else {
					r = tlGet(e, u)
				}
				st.add(r)
				time.Sleep(20 * time.Millisecond)
			}
		}()
	}
	wg.Wait()
	fs := e.Fake.Stats()
	t.Logf("%v of load, %d clients, %d users: %s", dur, clients, len(users), &st)
	t.Logf("fake: exchanges %d, refreshes %d, refresh reuse %d, refresh errors %d, API requests %d (401: %d), max/s %v",
		fs.Exchanges, fs.Refreshes, fs.RefreshReuse, fs.RefreshErrors, fs.APIRequests, fs.API401, fs.MaxPerSecond)
	if fs.RefreshReuse != 0 {
		t.Errorf("amoCRM saw %d reuses of a spent refresh token; want 0", fs.RefreshReuse)
	}
	if fs.Exchanges != len(users) {
		t.Errorf("%d exchanges for %d users; want one each (no user lost its pair)", fs.Exchanges, len(users))
	}
	// 3 s tokens refreshed 1 s ahead: about one refresh per user every 2 s.
	if min := len(users) * int(dur/(4*time.Second)); fs.Refreshes < min {
		t.Errorf("%d refreshes in %v for %d users; want at least %d", fs.Refreshes, dur, len(users), min)
	}
	if n := st.total() - st.get(200); n != 0 {
		t.Errorf("%d of %d requests were not answered 200: %s", n, st.total(), &st)
	}
	e.AssertNoViolations()
	e.AssertNoSecrets("Caddy's log", e.Caddy.Logs())
}

// TestReplayAfter401 makes amoCRM reject the current access token: a POST
// with a JSON body is replayed once, body intact, with a fresh token. When
// amoCRM keeps answering 401 the client gets that 401 after one replay at most.
func TestReplayAfter401(t *testing.T) {
	needCaddy(t)
	e := NewEnv(t, EnvOptions{Site: func(s *SiteConfig) { s.Extra = "exchange_interval 2s" },
		Fake: func(o *fakeamocrm.Options) { o.ExchangeInterval = 2 * time.Second }})
	u := tlUser{Login: testLogin, Key: e.APIKey}
	if r := tlGet(e, u); r.Status != 200 {
		t.Fatalf("first request: %d %v %.200s", r.Status, r.Err, r.Body)
	}

	if err := e.Fake.ExpireAccess(testAccount, testLogin); err != nil {
		t.Fatal(err)
	}
	before := len(e.Fake.Requests())
	refreshes := e.Fake.Stats().Refreshes
	body := []byte(`{"add":[{"name":"Deal Ω","price":1500,"custom_fields":[{"id":1,"values":[{"value":"x"}]}]}]}`)
	r := tlSend(nil, e, http.MethodPost, "/api/v2/leads?"+u.query("x=1"), http.Header{"Content-Type": {"application/json"}}, body)
	if r.Status != 200 {
		t.Errorf("POST after the access token was expired at amoCRM: %d %v %.300s", r.Status, r.Err, r.Body)
	}
	var posts []fakeamocrm.Recorded
	for _, rec := range e.Fake.Requests()[before:] {
		if rec.Method == http.MethodPost && rec.Path == "/api/v2/leads" {
			posts = append(posts, rec)
		}
	}
	if len(posts) != 2 {
		t.Fatalf("amoCRM received the POST %d times; want 2 (the 401 and one replay)", len(posts))
	}
	if posts[0].Status != 401 || posts[1].Status != 200 {
		t.Errorf("amoCRM answered the POST %d then %d; want 401 then 200", posts[0].Status, posts[1].Status)
	}
	for i, p := range posts {
		if tlSHA(p.Body) != tlSHA(body) {
			t.Errorf("POST #%d reached amoCRM with a different body (%d bytes, want %d)", i+1, len(p.Body), len(body))
		}
	}
	a0, a1 := posts[0].Header.Get("Authorization"), posts[1].Header.Get("Authorization")
	if !strings.HasPrefix(a1, "Bearer ") || a0 == a1 {
		t.Errorf("the replay did not carry a new Bearer token")
	}
	if got := e.Fake.Stats().Refreshes - refreshes; got != 1 {
		t.Errorf("%d refreshes for the replay; want 1", got)
	}

	// amoCRM keeps refusing: the token and the refresh token are revoked.
	if err := e.Fake.RevokeUser(testAccount, testLogin); err != nil {
		t.Fatal(err)
	}
	before = len(e.Fake.Requests())
	r = tlSend(nil, e, http.MethodPost, "/api/v2/leads?"+u.query(""), http.Header{"Content-Type": {"application/json"}}, body)
	posts = posts[:0]
	for _, rec := range e.Fake.Requests()[before:] {
		if rec.Method == http.MethodPost && rec.Path == "/api/v2/leads" {
			posts = append(posts, rec)
		}
	}
	t.Logf("revoked user: client got %d; amoCRM received the POST %d times", r.Status, len(posts))
	if len(posts) < 1 || len(posts) > 2 {
		t.Errorf("amoCRM received the POST %d times after the user was revoked; want 1 or 2 (one replay at most)", len(posts))
	}
	if r.Status == 200 {
		// Allowed only if the module exchanged again (contract 4: a dead
		// refresh token leads to a new exchange) before replaying.
		if e.Fake.Stats().Exchanges < 2 {
			t.Errorf("a revoked user was served 200 without a new exchange")
		}
	} else if r.Status != 401 {
		t.Errorf("revoked user: status %d; want amoCRM's 401 as it is; body %.300s", r.Status, r.Body)
	} else if last := posts[len(posts)-1]; last.Status != 401 {
		t.Errorf("the client got 401 but amoCRM's last answer was %d", last.Status)
	}
	e.AssertNoViolations()
	e.AssertNoSecrets("Caddy's log", e.Caddy.Logs())
}

// TestDeadRefreshTokenExchangesAgain revokes a user's tokens at amoCRM while
// the stored access token is near expiry: the next requests lead to a new
// exchange (after exchange_interval) and the user is served again.
func TestDeadRefreshTokenExchangesAgain(t *testing.T) {
	needCaddy(t)
	e := NewEnv(t, EnvOptions{
		Site: func(s *SiteConfig) { s.Extra = "exchange_interval 2s\n\t\trefresh_ahead 1s" },
		Fake: func(o *fakeamocrm.Options) {
			o.ExchangeInterval = 2 * time.Second
			o.AccessTTL = 3 * time.Second
		},
	})
	u := tlUser{Login: testLogin, Key: e.APIKey}
	if r := tlGet(e, u); r.Status != 200 {
		t.Fatalf("first request: %d %v %.200s", r.Status, r.Err, r.Body)
	}
	if err := e.Fake.RevokeUser(testAccount, testLogin); err != nil {
		t.Fatal(err)
	}
	time.Sleep(3 * time.Second) // the access token is now in its refresh window (or expired)

	var st tlStatuses
	served := tlWaitFor(30*time.Second, func() bool {
		r := tlGet(e, u)
		st.add(r)
		if r.Status == 503 || r.Status == 401 || r.Status == 502 || r.Status == 504 {
			time.Sleep(500 * time.Millisecond)
		}
		return r.Status == 200
	})
	fs := e.Fake.Stats()
	t.Logf("after revocation: %s; fake: exchanges %d, refresh errors %d, refreshes %d", &st, fs.Exchanges, fs.RefreshErrors, fs.Refreshes)
	if !served {
		t.Fatalf("the user was not served again within 30 s of a dead refresh token: %s", &st)
	}
	if fs.Exchanges != 2 {
		t.Errorf("%d exchanges; want 2 (the first, and one after the refresh token died)", fs.Exchanges)
	}
	if r := tlGet(e, u); r.Status != 200 {
		t.Errorf("the request after recovery: %d", r.Status)
	}
	e.AssertNoViolations()
	e.AssertNoSecrets("Caddy's log", e.Caddy.Logs())
}

// TestKeeperRefreshesIdlePairs sets keep_alive to 3 s and waits, without any
// request, for the keeper to refresh the idle pair. The keeper runs every
// minute (exchange.Config.KeeperInterval, not a Caddyfile option), so this
// takes up to about 70 s; it is skipped in -short mode.
func TestKeeperRefreshesIdlePairs(t *testing.T) {
	needCaddy(t)
	e := NewEnv(t, EnvOptions{Site: func(s *SiteConfig) { s.Extra = "keep_alive 3s\nkeeper_interval 1s" }})
	u := tlUser{Login: testLogin, Key: e.APIKey}
	if r := tlGet(e, u); r.Status != 200 {
		t.Fatalf("first request: %d %v %.200s", r.Status, r.Err, r.Body)
	}
	start := time.Now()
	var refreshed atomic.Bool
	ok := tlWaitFor(30*time.Second, func() bool {
		if e.Fake.Stats().Refreshes >= 1 {
			refreshed.Store(true)
		}
		return refreshed.Load()
	})
	if !ok {
		t.Fatalf("the keeper did not refresh a pair idle past keep_alive (3s) within 30 s")
	}
	t.Logf("keeper refreshed the idle pair %v after the exchange", time.Since(start).Round(time.Second))
	// The refreshed pair is stored: requests use it, with no exchange. The
	// fake counts the refresh when it answers; the keeper then writes the
	// pair (a synced write) before requests see it, and the old access
	// token is still valid meanwhile: so poll until a request carries the
	// new one.
	before := e.Fake.Stats()
	newToken := tlWaitFor(10*time.Second, func() bool {
		if r := tlGet(e, u); r.Status != 200 {
			t.Fatalf("request after the keeper's refresh: %d %.200s", r.Status, r.Body)
		}
		api := apiRequests(e)
		return len(api) >= 2 && api[len(api)-1].Header.Get("Authorization") != api[0].Header.Get("Authorization")
	})
	after := e.Fake.Stats()
	if after.ExchangeCalls != before.ExchangeCalls || after.RefreshReuse != 0 {
		t.Errorf("after the keeper's refresh: exchange calls %d→%d, refresh reuse %d", before.ExchangeCalls, after.ExchangeCalls, after.RefreshReuse)
	}
	if !newToken {
		t.Errorf("requests for 10 s after the keeper's refresh all used the old access token")
	}
	e.AssertNoViolations()
}
