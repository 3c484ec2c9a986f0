package integration_test

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"text/template"
	"time"

	"github.com/amobridge/amobridge/integration_test/fakeamocrm"
)

// Test identities. The secrets are random per test so that a search of the
// logs for them cannot match anything else.
const (
	testAccount = "acme"
	testLogin   = "user@example.com"
	testClient  = "5e6f7a8b-1c2d-4e3f-9a0b-c1d2e3f4a5b6"
)

// randomHex returns n random bytes as hex.
func randomHex(t testing.TB, n int) string {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

// testDir returns a directory for one test: t.TempDir(), or with
// AMOBRIDGE_KEEP_TEST_DIRS=1 a directory that is kept (and named in the log).
func testDir(t testing.TB) string {
	t.Helper()
	if os.Getenv("AMOBRIDGE_KEEP_TEST_DIRS") != "1" {
		return t.TempDir()
	}
	dir, err := os.MkdirTemp("", "amobridge-it-")
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("test directory kept: %s", dir)
	return dir
}

// Env is one test's world: the fake amoCRM served in-process on 127.0.0.1,
// and a Caddy with the module in front of it.
type Env struct {
	T     testing.TB
	Dir   string
	Fake  *fakeamocrm.Server
	FakeS *httptest.Server
	Caddy *Caddy
	Site  SiteConfig

	ClientSecret string
	APIKey       string // testLogin's legacy key (USER_HASH)
	StoreKey     string // hex; the store's encryption key

	codes *codeRecorder
}

// EnvOptions adjust an Env before it starts.
type EnvOptions struct {
	// Fake adjusts the fake's options (users, delays, ...) before New.
	Fake func(*fakeamocrm.Options)
	// Site adjusts the generated Caddyfile's settings.
	Site func(*SiteConfig)
	// NoStart leaves Caddy stopped: the test calls e.Caddy.Start(e.Caddyfile()).
	NoStart bool
}

// NewEnv starts the fake amoCRM and Caddy in front of it.
func NewEnv(t testing.TB, o EnvOptions) *Env {
	t.Helper()
	dir := testDir(t)
	e := &Env{
		T:            t,
		Dir:          dir,
		ClientSecret: "cs-" + randomHex(t, 16),
		APIKey:       randomHex(t, 20), // 40 hex digits, like a real USER_HASH
		StoreKey:     randomHex(t, 32),
		codes:        &codeRecorder{},
	}
	adminPort, httpPort := freePort(t), freePort(t)

	fo := fakeamocrm.Options{
		ClientID:      testClient,
		ClientSecret:  e.ClientSecret,
		RedirectURI:   fmt.Sprintf("http://127.0.0.1:%d/amocrm/oauth/callback", httpPort),
		Users:         []fakeamocrm.User{{Account: testAccount, Login: testLogin, APIKey: e.APIKey}},
		CallbackDelay: 50 * time.Millisecond,
	}
	fo.CallbackClient = &http.Client{
		Transport:     &recordingTransport{codes: e.codes, next: &http.Transport{Proxy: nil, DisableKeepAlives: true}},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	if o.Fake != nil {
		o.Fake(&fo)
	}
	e.Fake = fakeamocrm.New(fo)
	e.FakeS = httptest.NewServer(e.Fake) // listens on 127.0.0.1
	t.Cleanup(func() {
		e.Fake.Close()
		e.FakeS.Close()
	})

	e.Site = SiteConfig{
		AdminPort:   adminPort,
		HTTPPort:    httpPort,
		HTTPSPort:   freePort(t),
		FakeURL:     e.FakeS.URL,
		DataDir:     filepath.Join(dir, "data"),
		StoreDir:    filepath.Join(dir, "store"),
		RedirectURI: fo.RedirectURI,
		Subdomain:   testAccount,
		HostHeader:  testAccount + ".amocrm.ru",
		Encrypt:     true,
		Debug:       true,
	}
	if o.Site != nil {
		o.Site(&e.Site)
	}
	e.Caddy = NewCaddy(t, dir, adminPort, httpPort, map[string]string{
		"AMOCRM_CLIENT_ID":     testClient,
		"AMOCRM_CLIENT_SECRET": e.ClientSecret,
		"AMOBRIDGE_STORE_KEY":  e.StoreKey,
		"AMOBRIDGE_ACCESS_LOG": e.AccessLogPath(),
	})
	if !o.NoStart {
		e.Caddy.Start(e.Caddyfile())
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("Caddy's output (tail):\n%s", tail(e.Caddy.Logs(), 80))
		}
	})
	return e
}

// AccessLogPath is where the site's access log goes.
func (e *Env) AccessLogPath() string { return filepath.Join(e.Dir, "access.log") }

// AccessLog returns the access log so far.
func (e *Env) AccessLog() string {
	b, _ := os.ReadFile(e.AccessLogPath())
	return string(b)
}

// Caddyfile renders the Caddyfile for e.Site.
func (e *Env) Caddyfile() string {
	e.T.Helper()
	return renderCaddyfile(e.T, e.Site)
}

// Codes returns the authorization codes the fake has delivered to Caddy.
func (e *Env) Codes() []string { return e.codes.all() }

// Secrets returns every secret value the test knows of: the API key, the client
// secret, the store key, every access token amoCRM received, every code it
// delivered. None may appear in a log or a response.
func (e *Env) Secrets() map[string]string {
	s := map[string]string{
		"USER_HASH (API key)": e.APIKey,
		"client_secret":       e.ClientSecret,
		"encryption key":      e.StoreKey,
	}
	for i, c := range e.Codes() {
		s[fmt.Sprintf("authorization code #%d", i+1)] = c
	}
	for i, tok := range e.AccessTokens() {
		s[fmt.Sprintf("access token #%d", i+1)] = tok
	}
	return s
}

// AccessTokens returns the distinct Bearer tokens the fake received.
func (e *Env) AccessTokens() []string {
	seen := map[string]bool{}
	var out []string
	for _, r := range e.Fake.Requests() {
		for _, v := range r.Header.Values("Authorization") {
			if tok, ok := strings.CutPrefix(v, "Bearer "); ok && tok != "" && !seen[tok] {
				seen[tok] = true
				out = append(out, tok)
			}
		}
	}
	return out
}

// AssertNoSecrets fails t if text, described by where, holds any secret.
func (e *Env) AssertNoSecrets(where, text string) {
	e.T.Helper()
	for name, v := range e.Secrets() {
		if v != "" && strings.Contains(text, v) {
			e.T.Errorf("%s contains the %s", where, name)
		}
	}
}

// codeRecorder keeps the codes of the callbacks the fake delivers.
type codeRecorder struct {
	mu    sync.Mutex
	codes []string
}

func (c *codeRecorder) add(code string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.codes = append(c.codes, code)
}

func (c *codeRecorder) all() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string(nil), c.codes...)
}

// recordingTransport records the code of each callback, then delivers it.
type recordingTransport struct {
	codes *codeRecorder
	next  http.RoundTripper
}

func (rt *recordingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	if code := r.URL.Query().Get("code"); code != "" {
		rt.codes.add(code)
	}
	return rt.next.RoundTrip(r)
}

// SiteConfig is what the generated Caddyfile is made of.
type SiteConfig struct {
	AdminPort, HTTPPort, HTTPSPort int
	FakeURL                        string // http://127.0.0.1:PORT of the fake
	DataDir                        string // Caddy's storage
	StoreDir                       string // the token store
	RedirectURI                    string
	Subdomain                      string // literal or placeholder
	HostHeader                     string // Host sent to the fake (it routes by the first label)
	Encrypt                        bool   // encryption_key {env.AMOBRIDGE_STORE_KEY}
	Debug                          bool   // Caddy's debug logging
	Extra                          string // more amocrm_auth lines
	AccessLog                      string // the log snippet's body; default: Caddyfile.example's
	SiteAddress                    string // default http://127.0.0.1:HTTPPort; http://:HTTPPort serves any Host
}

var caddyfileTmpl = template.Must(template.New("Caddyfile").Parse(`{
{{- if .Debug}}
	debug
{{- end}}
	admin 127.0.0.1:{{.AdminPort}}
	default_bind 127.0.0.1
	storage file_system {{.DataDir}}
	http_port {{.HTTPPort}}
	https_port {{.HTTPSPort}}
	auto_https off
	persist_config off
}

{{.AccessLog}}

{{.SiteAddress}} {
	import amobridge_access_log

	amocrm_auth {
		client_id {env.AMOCRM_CLIENT_ID}
		client_secret {env.AMOCRM_CLIENT_SECRET}
		redirect_uri {{.RedirectURI}}
		subdomain {{.Subdomain}}
		api_base {{.FakeURL}}/_acct/{subdomain}
		store badger {
			path {{.StoreDir}}
{{- if .Encrypt}}
			encryption_key {env.AMOBRIDGE_STORE_KEY}
{{- end}}
		}
{{- if .Extra}}
		{{.Extra}}
{{- end}}
	}

	reverse_proxy {{.FakeURL}} {
		header_up Host {{.HostHeader}}
	}
}
`))

func renderCaddyfile(t testing.TB, s SiteConfig) string {
	t.Helper()
	if s.AccessLog == "" {
		s.AccessLog = exampleSnippet(t, "amobridge_access_log")
	}
	if s.SiteAddress == "" {
		s.SiteAddress = fmt.Sprintf("http://127.0.0.1:%d", s.HTTPPort)
	}
	var b bytes.Buffer
	if err := caddyfileTmpl.Execute(&b, s); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

// exampleSnippet returns the snippet (name) { ... } of Caddyfile.example, so
// that the tests run the very log filter the example ships.
func exampleSnippet(t testing.TB, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(repoRoot, "Caddyfile.example"))
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(string(b), "\n")
	for i, l := range lines {
		if l != "("+name+") {" {
			continue
		}
		for j := i + 1; j < len(lines); j++ {
			if lines[j] == "}" {
				return strings.Join(lines[i:j+1], "\n")
			}
		}
	}
	t.Fatalf("Caddyfile.example has no snippet (%s) { ... } ending in a lone }", name)
	return ""
}

// client is the legacy client's HTTP client: no proxy from the environment, no
// connection reuse (Caddy restarts between requests), no redirects followed.
var client = &http.Client{
	Timeout:       90 * time.Second,
	Transport:     &http.Transport{Proxy: nil, DisableKeepAlives: true},
	CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
}

// Response is an answer read whole.
type Response struct {
	Status int
	Header http.Header
	Body   []byte
}

// JSON decodes the body into v, failing t if it is not JSON.
func (r *Response) JSON(t testing.TB, v any) {
	t.Helper()
	if err := json.Unmarshal(r.Body, v); err != nil {
		t.Fatalf("answer (status %d) is not JSON: %v\n%s", r.Status, err, r.Body)
	}
}

// Do sends a request to Caddy and reads the answer. path includes the query;
// a "Host" entry in header sets the request's Host.
func (e *Env) Do(method, path string, header http.Header, body io.Reader) *Response {
	e.T.Helper()
	req, err := http.NewRequest(method, e.Caddy.BaseURL()+path, body)
	if err != nil {
		e.T.Fatal(err)
	}
	for k, v := range header {
		if k == "Host" {
			req.Host = v[0]
			continue
		}
		req.Header[k] = v
	}
	resp, err := client.Do(req)
	if err != nil {
		// A *url.Error repeats the URL, query and key included: keep its cause.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		e.T.Fatalf("%s %s: %v", method, redactQuery(path), err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		e.T.Fatalf("%s %s: reading the answer: %v", method, redactQuery(path), err)
	}
	return &Response{Status: resp.StatusCode, Header: resp.Header, Body: b}
}

// Get is Do for GET without a body.
func (e *Env) Get(path string) *Response {
	e.T.Helper()
	return e.Do(http.MethodGet, path, nil, nil)
}

// redactQuery keeps a request's path for messages, without its query.
func redactQuery(path string) string {
	if p, _, ok := strings.Cut(path, "?"); ok {
		return p + "?…"
	}
	return path
}

// AssertNoViolations fails t if the fake saw anything the proxy must never do.
func (e *Env) AssertNoViolations() {
	e.T.Helper()
	for _, v := range e.Fake.Violations() {
		e.T.Errorf("fake amoCRM violation: %s %s %s (%s in %s) %s", v.Kind, v.Method, v.Path, v.Name, v.Where, v.Detail)
	}
}

// LegacyQuery is the query of a legacy call with the test user's credentials.
func (e *Env) LegacyQuery(extra string) string {
	q := "USER_LOGIN=" + strings.ReplaceAll(testLogin, "@", "%40") + "&USER_HASH=" + e.APIKey
	if extra != "" {
		q += "&" + extra
	}
	return q
}
