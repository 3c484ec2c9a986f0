package integration_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"text/template"
	"time"

	"github.com/amobridge/amobridge/integration_test/fakeamocrm"
)

// This file holds the harness of the cluster tests (cluster_test.go, issue
// 11): Debian's redis-server run by the test, several real Caddy processes
// sharing it through `store redis`, the fake amoCRM behind a front that
// knows which instance made each OAuth call, and a forwarder, registered as
// the integration's Redirect URI, that delivers each callback to an
// instance the test chooses. Every helper is prefixed cl.

// clRequireRedisEnv makes a missing redis-server fail the cluster tests
// instead of skipping them (.ci/run sets it).
const clRequireRedisEnv = "AMOBRIDGE_REQUIRE_REDIS"

// clRedis is a redis-server run by a test on a free 127.0.0.1 port, its
// files in a directory of the test, AOF on (appendonly yes, appendfsync
// everysec: the settings the docs ask for).
type clRedis struct {
	t    testing.TB
	Port int
	Dir  string

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{}
}

// clStartRedis starts a redis-server for t, or skips t if none is
// installed (fails instead with AMOBRIDGE_REQUIRE_REDIS=1).
func clStartRedis(t testing.TB, dir string) *clRedis {
	t.Helper()
	if _, err := exec.LookPath("redis-server"); err != nil {
		if os.Getenv(clRequireRedisEnv) == "1" {
			t.Fatalf("redis-server is not installed, and %s=1: %v", clRequireRedisEnv, err)
		}
		t.Skipf("redis-server is not installed (apt-get install redis-server); set %s=1 to fail instead", clRequireRedisEnv)
	}
	r := &clRedis{t: t, Dir: dir}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	var err error
	for range 5 { // a port free a moment ago may be taken by the time Redis binds it
		r.Port = freePort(t)
		if err = r.tryStart(); err == nil {
			t.Cleanup(r.Stop)
			return r
		}
	}
	t.Fatalf("starting redis-server: %v", err)
	return nil
}

// Addr is the server's 127.0.0.1:PORT.
func (r *clRedis) Addr() string { return fmt.Sprintf("127.0.0.1:%d", r.Port) }

// Start starts the server again after Stop or Kill, on the same port and
// directory: it reloads its data from the AOF.
func (r *clRedis) Start() {
	r.t.Helper()
	var err error
	for range 3 {
		if err = r.tryStart(); err == nil {
			return
		}
		time.Sleep(200 * time.Millisecond)
	}
	r.t.Fatalf("restarting redis-server: %v", err)
}

func (r *clRedis) tryStart() error {
	cmd := exec.Command("redis-server",
		"--port", strconv.Itoa(r.Port), "--bind", "127.0.0.1", "--dir", r.Dir,
		"--appendonly", "yes", "--appendfsync", "everysec", "--save", "",
		"--daemonize", "no", "--logfile", filepath.Join(r.Dir, "redis.log"))
	if err := cmd.Start(); err != nil {
		return err
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	deadline := time.Now().Add(10 * time.Second)
	for {
		select {
		case <-done:
			return fmt.Errorf("redis-server on port %d exited at start: %s", r.Port, r.logTail())
		default:
		}
		if clRedisPing(r.Addr()) {
			r.mu.Lock()
			r.cmd, r.done = cmd, done
			r.mu.Unlock()
			return nil
		}
		if time.Now().After(deadline) {
			_ = cmd.Process.Kill()
			<-done
			return fmt.Errorf("redis-server on port %d not answering after 10 s: %s", r.Port, r.logTail())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Stop shuts the server down (SIGTERM: it flushes its AOF) and waits.
func (r *clRedis) Stop() { r.signal(syscall.SIGTERM) }

// Kill kills the server with SIGKILL, as a crash would.
func (r *clRedis) Kill() { r.signal(syscall.SIGKILL) }

func (r *clRedis) signal(sig syscall.Signal) {
	r.mu.Lock()
	cmd, done := r.cmd, r.done
	r.cmd, r.done = nil, nil
	r.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Signal(sig)
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		_ = cmd.Process.Kill()
		<-done
	}
}

func (r *clRedis) logTail() string {
	b, _ := os.ReadFile(filepath.Join(r.Dir, "redis.log"))
	return tail(string(b), 5)
}

// clRedisPing reports whether a Redis answers PING at addr.
func clRedisPing(addr string) bool {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return false
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(time.Second))
	if _, err := c.Write([]byte("PING\r\n")); err != nil {
		return false
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	return err == nil && strings.HasPrefix(line, "+PONG")
}

// clOAuthCall is one OAuth call the fake received through the front.
type clOAuthCall struct {
	Instance int    // the instance that made it (-1: unknown)
	Kind     string // "exchange", "code", "refresh", "account", "other"
	State    string // the exchange's state
	Start    time.Time
	Done     time.Time
	Status   int
}

// clFront stands in front of the fake amoCRM. Each instance's api_base is
// FAKE/_inst/N/_acct/{subdomain}: the front strips /_inst/N, so that the
// fake sees what it always sees, and records which instance made each
// OAuth call. It can also hold refresh grants (HoldRefreshes), which then
// never reach the fake.
type clFront struct {
	next http.Handler

	mu      sync.Mutex
	calls   []clOAuthCall
	byState map[string]int // exchange state -> instance that asked
	hold    int            // refresh grants still to hold
	held    chan int       // the instance of each held refresh grant
}

func newClFront(next http.Handler) *clFront {
	return &clFront{next: next, byState: map[string]int{}, held: make(chan int, 16)}
}

// HoldRefreshes makes the next n refresh grants hang, unanswered and never
// passed to the fake, until their client goes away (or 2 minutes pass);
// each sends its instance on Held().
func (f *clFront) HoldRefreshes(n int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.hold = n
}

// Held delivers the instance of each refresh grant held.
func (f *clFront) Held() <-chan int { return f.held }

// Exchanger returns the instance that asked for the exchange of state, or -1.
func (f *clFront) Exchanger(state string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	if i, ok := f.byState[state]; ok {
		return i
	}
	return -1
}

// Calls returns the OAuth calls so far.
func (f *clFront) Calls() []clOAuthCall {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]clOAuthCall(nil), f.calls...)
}

// CountBy returns, per instance (index n: unknown), how many OAuth calls
// of kind answered 2xx.
func (f *clFront) CountBy(kind string, n int) []int {
	out := make([]int, n+1)
	for _, c := range f.Calls() {
		if c.Kind != kind || c.Status/100 != 2 {
			continue
		}
		if c.Instance >= 0 && c.Instance < n {
			out[c.Instance]++
		} else {
			out[n]++
		}
	}
	return out
}

func (f *clFront) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	inst := -1
	if rest, ok := strings.CutPrefix(r.URL.Path, "/_inst/"); ok {
		num, after, _ := strings.Cut(rest, "/")
		if n, err := strconv.Atoi(num); err == nil {
			inst = n
			r.URL.Path = "/" + after
			r.URL.RawPath = ""
		}
	}
	kind := ""
	var body map[string]any
	switch {
	case strings.HasSuffix(r.URL.Path, "/oauth2/exchange_api_key"):
		kind = "exchange"
	case strings.HasSuffix(r.URL.Path, "/oauth2/access_token"):
		kind = "code"
	case strings.HasSuffix(r.URL.Path, "/api/v4/account") && inst >= 0:
		kind = "account"
	}
	if kind == "exchange" || kind == "code" {
		b, _ := io.ReadAll(r.Body)
		r.Body = io.NopCloser(bytes.NewReader(b))
		if json.Unmarshal(b, &body) != nil {
			body = map[string]any{}
			if q, err := url.ParseQuery(string(b)); err == nil {
				for k := range q {
					body[k] = q.Get(k)
				}
			}
		}
		if kind == "code" && body["grant_type"] == "refresh_token" {
			kind = "refresh"
		}
	}
	if kind == "" {
		f.next.ServeHTTP(w, r)
		return
	}
	call := clOAuthCall{Instance: inst, Kind: kind, Start: time.Now()}
	if s, ok := body["state"].(string); ok && kind == "exchange" {
		call.State = s
		f.mu.Lock()
		f.byState[s] = inst
		f.mu.Unlock()
	}
	if kind == "refresh" {
		f.mu.Lock()
		hold := f.hold > 0
		if hold {
			f.hold--
		}
		f.mu.Unlock()
		if hold {
			f.held <- inst
			select {
			case <-r.Context().Done():
			case <-time.After(2 * time.Minute):
				http.Error(w, "held", http.StatusGatewayTimeout)
			}
			call.Kind, call.Done = "held", time.Now()
			f.mu.Lock()
			f.calls = append(f.calls, call)
			f.mu.Unlock()
			return
		}
	}
	rec := &clStatusWriter{ResponseWriter: w, status: http.StatusOK}
	f.next.ServeHTTP(rec, r)
	call.Done, call.Status = time.Now(), rec.status
	f.mu.Lock()
	f.calls = append(f.calls, call)
	f.mu.Unlock()
}

// clStatusWriter remembers the status written.
type clStatusWriter struct {
	http.ResponseWriter
	status int
}

func (w *clStatusWriter) WriteHeader(code int) {
	w.status = code
	w.ResponseWriter.WriteHeader(code)
}

// clCallback is one callback the forwarder delivered.
type clCallback struct {
	State    string
	From, To int // the instance that asked for the exchange (-1: unknown), and the one called back
	Start    time.Time
	Done     time.Time // when the instance's answer was read
	Status   int       // 0: a transport error
}

// clRoute chooses the instance that gets a callback, given the instance
// that asked for the exchange (-1: unknown), the number of instances and
// the number of callbacks delivered before.
type clRoute func(from, n, seq int) int

// clRouteNext delivers each callback to the instance after the one that
// asked for the exchange (round robin when that is unknown).
func clRouteNext(from, n, seq int) int {
	if from < 0 {
		return seq % n
	}
	return (from + 1) % n
}

// clRouteSame delivers each callback to the instance that asked.
func clRouteSame(from, n, seq int) int {
	if from < 0 {
		return seq % n
	}
	return from
}

// ClusterOptions adjust a Cluster before it starts.
type ClusterOptions struct {
	Instances int                       // default 3
	Users     int                       // legacy users in the fake; default 1 (users[0] is testLogin)
	Fake      func(*fakeamocrm.Options) // adjusts the fake's options
	Extra     []string                  // more amocrm_auth lines
	Debug     bool                      // Caddy's debug log
	Route     clRoute                   // default clRouteNext
	Stopped   bool                      // prepare the instances but do not start them
}

// Cluster is one cluster test's world: a redis-server, the fake amoCRM
// behind its front, the callback forwarder, and Instances Caddy processes
// sharing the Redis store.
type Cluster struct {
	T     testing.TB
	Dir   string
	Redis *clRedis
	Fake  *fakeamocrm.Server
	Front *clFront
	FakeS *httptest.Server
	Fwd   *httptest.Server
	Nodes []*Caddy
	Users []tlUser

	ClientSecret string
	StoreKey     string
	KeyPrefix    string

	opts  ClusterOptions
	cbMu  sync.Mutex
	cbs   []clCallback
	route clRoute
	cbHC  *http.Client
}

// NewCluster starts Redis, the fake amoCRM, the forwarder and the Caddys.
func NewCluster(t *testing.T, o ClusterOptions) *Cluster {
	t.Helper()
	needCaddy(t)
	if o.Instances == 0 {
		o.Instances = 3
	}
	if o.Users == 0 {
		o.Users = 1
	}
	if o.Route == nil {
		o.Route = clRouteNext
	}
	dir := testDir(t)
	c := &Cluster{
		T: t, Dir: dir, opts: o, route: o.Route,
		ClientSecret: "cs-" + randomHex(t, 16),
		StoreKey:     randomHex(t, 32),
		KeyPrefix:    "amobridge-test:",
		cbHC: &http.Client{
			Timeout:       5 * time.Second,
			Transport:     &http.Transport{Proxy: nil, DisableKeepAlives: true},
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
	}
	c.Redis = clStartRedis(t, filepath.Join(dir, "redis"))
	c.Users = tlUsers(t, o.Users, "")
	c.Users[0].Login = testLogin

	c.Fwd = httptest.NewServer(http.HandlerFunc(c.forward))
	t.Cleanup(c.Fwd.Close)
	fo := fakeamocrm.Options{
		ClientID:      testClient,
		ClientSecret:  c.ClientSecret,
		RedirectURI:   c.Fwd.URL + "/amocrm/oauth/callback",
		CallbackDelay: 100 * time.Millisecond,
	}
	for _, u := range c.Users {
		fo.Users = append(fo.Users, fakeamocrm.User{Account: testAccount, Login: u.Login, APIKey: u.Key})
	}
	if o.Fake != nil {
		o.Fake(&fo)
	}
	c.Fake = fakeamocrm.New(fo)
	c.Front = newClFront(c.Fake)
	c.FakeS = httptest.NewServer(c.Front)
	t.Cleanup(func() {
		c.Fake.Close()
		c.FakeS.Close()
	})

	for i := range o.Instances {
		ndir := filepath.Join(dir, fmt.Sprintf("caddy%d", i))
		if err := os.MkdirAll(ndir, 0o700); err != nil {
			t.Fatal(err)
		}
		n := NewCaddy(t, ndir, freePort(t), freePort(t), map[string]string{
			"AMOCRM_CLIENT_ID":     testClient,
			"AMOCRM_CLIENT_SECRET": c.ClientSecret,
			"AMOBRIDGE_STORE_KEY":  c.StoreKey,
			"AMOBRIDGE_ACCESS_LOG": filepath.Join(ndir, "access.log"),
		})
		c.Nodes = append(c.Nodes, n)
	}
	if !o.Stopped {
		for i, n := range c.Nodes {
			n.Start(c.Caddyfile(i))
		}
	}
	t.Cleanup(func() {
		if !t.Failed() {
			return
		}
		for i, n := range c.Nodes {
			t.Logf("Caddy #%d's output (tail):\n%s", i, tail(n.Logs(), 40))
		}
		t.Logf("redis-server's log (tail):\n%s", c.Redis.logTail())
	})
	return c
}

var clCaddyfileTmpl = template.Must(template.New("Caddyfile").Parse(`{
{{- if .Debug}}
	debug
{{- end}}
	admin {{.Admin}}
	default_bind 127.0.0.1
	storage file_system {{.DataDir}}
	http_port {{.HTTPPort}}
	https_port {{.HTTPSPort}}
	auto_https off
	persist_config off
}

{{.AccessLog}}

http://127.0.0.1:{{.HTTPPort}} {
	import amobridge_access_log

	amocrm_auth {
		client_id {env.AMOCRM_CLIENT_ID}
		client_secret {env.AMOCRM_CLIENT_SECRET}
		redirect_uri {{.RedirectURI}}
		subdomain {{.Subdomain}}
		api_base {{.FakeURL}}/_inst/{{.Index}}/_acct/{subdomain}
		store redis {
			address {{.RedisAddr}}
			key_prefix {{.KeyPrefix}}
			encryption_key {env.AMOBRIDGE_STORE_KEY}
		}
{{- range .Extra}}
		{{.}}
{{- end}}
	}

	reverse_proxy {{.FakeURL}} {
		header_up Host {{.Subdomain}}.amocrm.ru
	}
}
`))

// Caddyfile renders instance i's Caddyfile.
func (c *Cluster) Caddyfile(i int) string {
	c.T.Helper()
	n := c.Nodes[i]
	var b bytes.Buffer
	err := clCaddyfileTmpl.Execute(&b, map[string]any{
		"Debug":       c.opts.Debug,
		"Admin":       n.AdminAddr,
		"DataDir":     filepath.Join(n.Dir, "data"),
		"HTTPPort":    n.HTTPPort,
		"HTTPSPort":   freePort(c.T),
		"AccessLog":   exampleSnippet(c.T, "amobridge_access_log"),
		"RedirectURI": c.Fwd.URL + "/amocrm/oauth/callback",
		"Subdomain":   testAccount,
		"FakeURL":     c.FakeS.URL,
		"Index":       i,
		"RedisAddr":   c.Redis.Addr(),
		"KeyPrefix":   c.KeyPrefix,
		"Extra":       c.opts.Extra,
	})
	if err != nil {
		c.T.Fatal(err)
	}
	return b.String()
}

// forward delivers amoCRM's callback to the instance the route chooses.
func (c *Cluster) forward(w http.ResponseWriter, r *http.Request) {
	state := r.URL.Query().Get("state")
	from := c.Front.Exchanger(state)
	c.cbMu.Lock()
	to := c.route(from, len(c.Nodes), len(c.cbs))
	c.cbMu.Unlock()
	cb := clCallback{State: state, From: from, To: to, Start: time.Now()}
	defer func() {
		c.cbMu.Lock()
		c.cbs = append(c.cbs, cb)
		c.cbMu.Unlock()
	}()
	req, err := http.NewRequest(r.Method, c.Nodes[to].BaseURL()+r.URL.RequestURI(), nil)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	resp, err := c.cbHC.Do(req)
	if err != nil {
		cb.Done = time.Now()
		http.Error(w, "instance unreachable", http.StatusBadGateway)
		return
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	cb.Done, cb.Status = time.Now(), resp.StatusCode
	for k, v := range resp.Header {
		w.Header()[k] = v
	}
	w.WriteHeader(resp.StatusCode)
	_, _ = w.Write(b)
}

// Callbacks returns the callbacks delivered so far.
func (c *Cluster) Callbacks() []clCallback {
	c.cbMu.Lock()
	defer c.cbMu.Unlock()
	return append([]clCallback(nil), c.cbs...)
}

// AssertCallbacksElsewhere fails the test unless every callback went to an
// instance other than the one that asked for the exchange, and was taken.
func (c *Cluster) AssertCallbacksElsewhere(want int) {
	c.T.Helper()
	cbs := c.Callbacks()
	if len(cbs) != want {
		c.T.Errorf("%d callbacks delivered; want %d", len(cbs), want)
	}
	for _, cb := range cbs {
		if cb.From < 0 || cb.From == cb.To {
			c.T.Errorf("a callback asked for by instance %d went to instance %d; want another instance", cb.From, cb.To)
		}
		if cb.Status != http.StatusOK {
			c.T.Errorf("the callback delivered to instance %d was answered %d; want 200", cb.To, cb.Status)
		}
	}
	// The code is redeemed by the instance that took the callback. (The
	// grant goes to the exchanger's api_base, which the pending exchange
	// records, so the front cannot tell: each instance's log says.)
	toBy := map[int]int{}
	for _, cb := range cbs {
		toBy[cb.To]++
	}
	for i, n := range c.Nodes {
		if got := strings.Count(n.Logs(), `"msg":"tokens obtained"`); got != toBy[i] {
			c.T.Errorf("instance %d took %d callbacks but logged %d \"tokens obtained\"", i, toBy[i], got)
		}
	}
}

// AssertNoViolations fails the test if the fake saw anything the proxy must
// never do, or a refresh token spent twice.
func (c *Cluster) AssertNoViolations() {
	c.T.Helper()
	for _, v := range c.Fake.Violations() {
		c.T.Errorf("fake amoCRM violation: %s %s %s (%s in %s) %s", v.Kind, v.Method, v.Path, v.Name, v.Where, v.Detail)
	}
	if n := c.Fake.Stats().RefreshReuse; n != 0 {
		c.T.Errorf("amoCRM saw %d reuses of a spent refresh token; want 0", n)
	}
}

// AssertNoSecrets fails the test if an instance's log holds a secret.
func (c *Cluster) AssertNoSecrets() {
	c.T.Helper()
	secrets := map[string]string{"client_secret": c.ClientSecret, "encryption key": c.StoreKey}
	for _, u := range c.Users {
		secrets["USER_HASH of "+u.Login] = u.Key
	}
	for i, n := range c.Nodes {
		logs := n.Logs()
		for name, v := range secrets {
			if strings.Contains(logs, v) {
				c.T.Errorf("Caddy #%d's log contains the %s", i, name)
			}
		}
	}
}

// clSend sends one request to base (an instance's BaseURL) with hc
// (tlLoadClient if nil). It is safe from any goroutine.
func clSend(hc *http.Client, base, method, path string, header http.Header, body []byte) tlResult {
	if hc == nil {
		hc = tlLoadClient
	}
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	start := time.Now()
	req, err := http.NewRequest(method, base+path, rd)
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

// Get is a legacy GET of /api/v2/account for u through instance i.
func (c *Cluster) Get(i int, u tlUser) tlResult {
	return clSend(nil, c.Nodes[i].BaseURL(), http.MethodGet, "/api/v2/account?"+u.query(""), nil, nil)
}

// Admin calls instance i's admin API.
func (c *Cluster) Admin(i int, method, path string) tlResult {
	return clSend(client, "http://"+c.Nodes[i].AdminAddr, method, path, nil, nil)
}

// clBearersAfter returns the Bearer tokens of the API requests the fake
// received at or after since, with their times.
func clBearersAfter(reqs []fakeamocrm.Recorded, since time.Time) map[string][]time.Time {
	out := map[string][]time.Time{}
	for _, r := range reqs {
		if r.Time.Before(since) {
			continue
		}
		if tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer "); ok && tok != "" {
			out[tok] = append(out[tok], r.Time)
		}
	}
	return out
}

// clPercentiles returns the p50, p99 and max of ds.
func clPercentiles(ds []time.Duration) (p50, p99, top time.Duration) {
	if len(ds) == 0 {
		return 0, 0, 0
	}
	d := append([]time.Duration(nil), ds...)
	sort.Slice(d, func(i, j int) bool { return d[i] < d[j] })
	return d[len(d)/2], d[min(len(d)-1, (len(d)*99+99)/100-1)], d[len(d)-1]
}
