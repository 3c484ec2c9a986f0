package integration_test

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	mathrand "math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// TestPHPOracle makes PHP itself the judge of what the proxy lets through
// (issue 10). PHP's built-in server (`php -S`, the same SAPI and rfc1867
// code as PHP-FPM) runs a router that answers with what PHP read: $_GET,
// $_POST, $_COOKIE, $_FILES, php://input, and what an amoCRM endpoint may
// read from it (a JSON object; a form on methods PHP does not parse).
// Caddy with amocrm_auth (OAuth against the fake amoCRM) reverse-proxies to
// that PHP server. Every generated request goes both straight to PHP and
// through the proxy (over HTTP/1.1, or h2c for some, GET/HEAD bodies
// without content-length among them); the test fails if PHP, through the
// proxy, reads USER_LOGIN, USER_HASH, login/api_key (on /api/unsorted/) or
// the session cookie, or reads anything else differently from the direct
// request. Requests the proxy refuses itself (400, 401, 413, ...) pass,
// as long as PHP never sees them. Entries that carry a secret (the key, the
// login, the session id) inside another name or value may differ.
//
// It also replays legacy's FuzzPHPParity corpus. php-cli must be installed
// (Debian: apt-get install php-cli); without it the test skips, unless
// AMOBRIDGE_REQUIRE_PHP=1 (CI) makes it fail. AMOBRIDGE_PHP_SEED picks the
// generator's seed (logged), AMOBRIDGE_PHP_REQUESTS the number of requests.
func TestPHPOracle(t *testing.T) {
	needCaddy(t)
	php := needPHP(t)
	phpAddr := startPHP(t, php)

	e := NewEnv(t, EnvOptions{NoStart: true, Site: func(s *SiteConfig) {
		s.Debug = false
		s.Extra = "rate_limit 0" // the upstream is PHP, not amoCRM
	}})
	cf := e.Caddyfile()
	proxyLine := "reverse_proxy " + e.FakeS.URL + " {"
	if !strings.Contains(cf, proxyLine) || !strings.HasPrefix(cf, "{\n") {
		t.Fatalf("the generated Caddyfile changed shape:\n%s", cf)
	}
	cf = strings.Replace(cf, proxyLine, "reverse_proxy "+phpAddr+" {", 1)
	cf = strings.Replace(cf, "{\n", "{\n\tservers {\n\t\tprotocols h1 h2c\n\t}\n", 1)
	e.Caddy.Start(cf)

	o := &phpOracle{t: t, e: e, phpURL: "http://" + phpAddr, proxyURL: e.Caddy.BaseURL(),
		login: testLogin, key: e.APIKey}
	o.direct = &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{Proxy: nil, MaxIdleConnsPerHost: 16}}
	o.h1 = &http.Client{Timeout: 60 * time.Second, Transport: &http.Transport{Proxy: nil, MaxIdleConnsPerHost: 16}}
	h2t := &http.Transport{Proxy: nil, MaxIdleConnsPerHost: 16, Protocols: new(http.Protocols)}
	h2t.Protocols.SetUnencryptedHTTP2(true)
	o.h2 = &http.Client{Timeout: 60 * time.Second, Transport: h2t}
	for _, c := range []*http.Client{o.direct, o.h1, o.h2} {
		c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	}

	// Warm up: the user's key is exchanged once, and auth.php gives a session.
	warm := o.run(phpCase{method: "GET", path: "/api/v2/leads", query: "a=1&" + e.LegacyQuery("")}, true)
	if !warm.forwarded {
		t.Fatalf("a plain legacy request was not forwarded: %d %s", warm.status, warm.body)
	}
	r := e.Get("/private/api/auth.php?" + e.LegacyQuery("type=json"))
	for _, c := range (&http.Response{Header: r.Header}).Cookies() {
		if c.Name == "session_id" {
			o.sid = c.Value
		}
	}
	if r.Status != 200 || o.sid == "" {
		t.Fatalf("auth.php: %d, no session cookie: %s", r.Status, r.Body)
	}
	if res := o.run(phpCase{method: "GET", path: "/api/v2/leads", cookies: []string{"a=1; session_id=" + o.sid}}, true); !res.forwarded {
		t.Fatalf("a session request was not forwarded: %d %s", res.status, res.body)
	}

	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv("AMOBRIDGE_PHP_SEED"); s != "" {
		seed, _ = strconv.ParseUint(s, 10, 64)
	}
	n := 5000
	if s := os.Getenv("AMOBRIDGE_PHP_REQUESTS"); s != "" {
		n, _ = strconv.Atoi(s)
	}
	t.Logf("generator seed %d (AMOBRIDGE_PHP_SEED=%d repeats this run)", seed, seed)
	gen := &phpGen{rng: mathrand.New(mathrand.NewPCG(seed, seed>>1)), o: o}
	cases := o.corpus()
	t.Logf("replaying %d inputs of legacy's FuzzPHPParity corpus", len(cases))
	for range n {
		cases = append(cases, gen.next())
	}

	start := time.Now()
	var wg sync.WaitGroup
	work := make(chan phpCase)
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for c := range work {
				o.run(c, false)
			}
		}()
	}
	for _, c := range cases {
		if t.Failed() && o.failures() >= 10 {
			break
		}
		work <- c
	}
	close(work)
	wg.Wait()
	st := o.stats()
	t.Logf("%d requests in %v: %d sent (%d over h2c), %d skipped (not sendable), %d forwarded (%d with credentials or a session removed), %d answered by the proxy %v",
		len(cases), time.Since(start).Round(time.Millisecond), st.sent, st.h2, st.skipped, st.forwarded, st.stripped, st.refused, st.statuses)
	if st.forwarded < st.sent/4 || st.stripped < st.sent/10 {
		t.Errorf("too few requests were forwarded (%d) or stripped (%d) of %d for the test to mean much", st.forwarded, st.stripped, st.sent)
	}
	e.AssertNoViolations()
}

// needPHP returns the php binary, or skips t (fails it with
// AMOBRIDGE_REQUIRE_PHP=1).
func needPHP(t *testing.T) string {
	t.Helper()
	php, err := exec.LookPath("php")
	if err != nil {
		if os.Getenv("AMOBRIDGE_REQUIRE_PHP") == "1" {
			t.Fatalf("php is not installed (apt-get install php-cli) and AMOBRIDGE_REQUIRE_PHP=1")
		}
		t.Skip("php is not installed (apt-get install php-cli): the PHP oracle test is skipped")
	}
	return php
}

// startPHP runs `php -S 127.0.0.1:PORT router.php` with a few workers and
// returns its address once it answers.
func startPHP(t *testing.T, php string) string {
	t.Helper()
	addr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	router := filepath.Join(repoRoot, "integration_test", "testdata", "php", "router.php")
	logf, err := os.Create(filepath.Join(t.TempDir(), "php.log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(php, "-n", "-d", "display_errors=0", "-d", "log_errors=0", "-d", "html_errors=0",
		"-d", "variables_order=EGPCS", "-d", "request_order=GP", "-S", addr, router)
	cmd.Env = append(os.Environ(), "PHP_CLI_SERVER_WORKERS=4")
	cmd.Stdout, cmd.Stderr = logf, logf
	// php -S forks its workers: give them a process group of their own, so
	// that they all end with the test (killing the parent alone leaves
	// them running).
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		_ = cmd.Wait()
		logf.Close()
	})
	deadline := time.Now().Add(20 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return addr
		}
		if time.Now().After(deadline) {
			b, _ := os.ReadFile(logf.Name())
			t.Fatalf("php -S did not start on %s: %v\n%s", addr, err, b)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// phpCase is one request, sent straight to PHP and through the proxy.
type phpCase struct {
	label   string
	method  string
	path    string
	query   string
	ct      []string // Content-Type lines
	cookies []string // Cookie lines
	body    []byte
	hasBody bool
	h2      bool // through the proxy over h2c, without content-length
	chunked bool // Transfer-Encoding: chunked (HTTP/1.1)
}

func (c phpCase) unsorted() bool {
	return strings.Contains(c.path, "/api/unsorted/") || strings.HasSuffix(c.path, "/api/unsorted")
}

// phpView is what the router answers: hex keys, hex(serialize()) scalars.
type phpView struct {
	PHP    int             `json:"php"`
	Method string          `json:"method"`
	Get    map[string]any  `json:"get"`
	Post   map[string]any  `json:"post"`
	Cookie map[string]any  `json:"cookie"`
	Files  map[string]any  `json:"files"`
	Input  string          `json:"input"`
	JSON   json.RawMessage `json:"json"`
	Form   map[string]any  `json:"form"`
}

type phpResult struct {
	forwarded bool
	status    int
	body      string
	view      *phpView
}

type phpStats struct {
	sent, h2, skipped, forwarded, stripped, refused int
	statuses                                        map[int]int
}

type phpOracle struct {
	t                *testing.T
	e                *Env
	phpURL, proxyURL string
	login, key, sid  string
	direct, h1, h2   *http.Client
	mu               sync.Mutex
	st               phpStats
	nfail            int
}

func (o *phpOracle) stats() phpStats {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.st
}

func (o *phpOracle) failures() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.nfail
}

// secrets are the values that may not be compared where they hide in
// another name or value.
func (o *phpOracle) secrets() []string {
	// PHP mangles '.' in names: the login may hide in a name as user@example_com.
	s := []string{o.key, o.login, url.QueryEscape(o.login), strings.ReplaceAll(o.login, ".", "_")}
	if o.sid != "" {
		s = append(s, o.sid)
	}
	return s
}

// redact hides the key and the session id in a failure message.
func (o *phpOracle) redact(s string) string {
	s = strings.ReplaceAll(s, o.key, "<KEY>")
	if o.sid != "" {
		s = strings.ReplaceAll(s, o.sid, "<SID>")
	}
	return s
}

func (o *phpOracle) fail(c phpCase, format string, args ...any) {
	o.mu.Lock()
	o.nfail++
	n := o.nfail
	o.mu.Unlock()
	if n > 10 {
		return
	}
	o.t.Errorf("%s\n  request: %s", o.redact(fmt.Sprintf(format, args...)), o.redact(c.String()))
}

func (c phpCase) String() string {
	via := "HTTP/1.1"
	if c.h2 {
		via = "h2c"
	}
	if c.chunked {
		via += " chunked"
	}
	return fmt.Sprintf("[%s] %s %s?%s via %s, Content-Type %q, Cookie %q, body(%v) %q",
		c.label, c.method, c.path, c.query, via, c.ct, c.cookies, c.hasBody, c.body)
}

// sendable reports whether Go's client can send c as it is.
func (c phpCase) sendable() bool {
	for _, v := range append(append([]string(nil), c.ct...), c.cookies...) {
		if strings.TrimSpace(v) == "" {
			return false
		}
		for i := 0; i < len(v); i++ {
			if b := v[i]; b < ' ' && b != '\t' || b == 0x7f {
				return false // Go's client refuses control characters in a header
			}
		}
	}
	for i := 0; i < len(c.query); i++ {
		if b := c.query[i]; b <= ' ' || b >= 0x7f || b == '#' {
			return false
		}
	}
	return true
}

func (o *phpOracle) request(c phpCase, base string, h2 bool) (*http.Request, error) {
	u := base + c.path
	if c.query != "" {
		u += "?" + c.query
	}
	var body io.Reader
	if c.hasBody {
		body = bytes.NewReader(c.body)
	}
	req, err := http.NewRequest(c.method, u, body)
	if err != nil {
		return nil, err
	}
	if c.query != "" {
		req.URL.RawQuery = c.query
	}
	if c.hasBody {
		req.ContentLength = int64(len(c.body))
		if h2 || c.chunked {
			req.ContentLength = -1 // h2: no content-length; HTTP/1.1: chunked
		}
	}
	if len(c.ct) > 0 {
		req.Header["Content-Type"] = c.ct
	}
	if len(c.cookies) > 0 {
		req.Header["Cookie"] = c.cookies
	}
	return req, nil
}

func (o *phpOracle) do(cl *http.Client, req *http.Request) (phpResult, error) {
	resp, err := cl.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return phpResult{}, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return phpResult{}, err
	}
	res := phpResult{status: resp.StatusCode, body: string(b)}
	raw := b
	if req.Method == http.MethodHead {
		raw, _ = base64.StdEncoding.DecodeString(resp.Header.Get("X-PHP-View"))
	}
	var v phpView
	if json.Unmarshal(raw, &v) == nil && v.PHP == 1 {
		res.forwarded, res.view = true, &v
	}
	return res, nil
}

// run sends c straight to PHP and through the proxy, and checks the two
// readings. With mustSend, a request that cannot be sent fails the test.
func (o *phpOracle) run(c phpCase, mustSend bool) phpResult {
	if !c.sendable() {
		o.mu.Lock()
		o.st.skipped++
		o.mu.Unlock()
		return phpResult{}
	}
	dreq, err := o.request(c, o.phpURL, false)
	if err != nil {
		o.mu.Lock()
		o.st.skipped++
		o.mu.Unlock()
		return phpResult{}
	}
	if c.h2 {
		// PHP's server speaks HTTP/1.1 only: send what Caddy's HTTP/2 server
		// hands on, a body with its length and the Cookie fields joined
		// with "; " (RFC 9113 8.2.3).
		if c.hasBody {
			dreq.ContentLength = int64(len(c.body))
		}
		if len(c.cookies) > 1 {
			dreq.Header["Cookie"] = []string{strings.Join(c.cookies, "; ")}
		}
	}
	direct, err := o.do(o.direct, dreq)
	if err != nil || !direct.forwarded {
		if mustSend {
			o.t.Fatalf("straight to PHP: %v (%d %s)", err, direct.status, direct.body)
		}
		o.mu.Lock()
		o.st.skipped++ // PHP's server itself refuses it
		o.mu.Unlock()
		return phpResult{}
	}
	preq, _ := o.request(c, o.proxyURL, c.h2)
	cl := o.h1
	if c.h2 {
		cl = o.h2
	}
	proxied, err := o.do(cl, preq)
	if err != nil {
		o.fail(c, "through the proxy: %v", err)
		return phpResult{}
	}
	o.mu.Lock()
	o.st.sent++
	if c.h2 {
		o.st.h2++
	}
	if o.st.statuses == nil {
		o.st.statuses = map[int]int{}
	}
	if !proxied.forwarded {
		o.st.refused++
		o.st.statuses[proxied.status]++
	} else {
		o.st.forwarded++
	}
	o.mu.Unlock()
	if !proxied.forwarded {
		if proxied.status < 400 {
			o.fail(c, "the proxy answered %d without PHP: %s", proxied.status, proxied.body)
		}
		return proxied
	}
	if o.compare(c, direct.view, proxied.view) {
		o.mu.Lock()
		o.st.stripped++
		o.mu.Unlock()
	}
	return proxied
}

// compare checks the proxied reading against the direct one; it reports
// whether the direct one held a credential or the session.
func (o *phpOracle) compare(c phpCase, d, p *phpView) (held bool) {
	creds := []string{"USER_LOGIN", "USER_HASH"}
	if c.unsorted() {
		creds = append(creds, "login", "api_key")
	}
	var dJSON, pJSON map[string]any
	_ = json.Unmarshal(d.JSON, &dJSON)
	_ = json.Unmarshal(p.JSON, &pJSON)
	sections := []struct {
		name  string
		d, p  map[string]any
		creds []string
	}{
		{"$_GET", d.Get, p.Get, creds},
		{"$_POST", d.Post, p.Post, creds},
		{"$_COOKIE", d.Cookie, p.Cookie, []string{"session_id"}},
		{"$_FILES", d.Files, p.Files, nil},
		{"json_decode(php://input)", dJSON, pJSON, []string{"USER_LOGIN", "USER_HASH"}},
		{"parse_str(php://input)", d.Form, p.Form, creds},
	}
	for _, s := range sections {
		secretKeys, cookieAttrs := false, false
		for _, name := range s.creds {
			k := hex.EncodeToString([]byte(name))
			if _, ok := s.d[k]; ok {
				held, secretKeys = true, true
			}
			if _, ok := s.p[k]; ok {
				o.fail(c, "LEAK: through the proxy PHP reads %s in %s", name, s.name)
			}
			delete(s.d, k)
		}
		// Entries whose name or value carries a secret may change: the
		// proxy strips the secret wherever it can read it (a JSON body
		// sent as a form, the session cookie inside another cookie's
		// value); so may Set-Cookie attributes that go with a session
		// cookie. Every other entry must be read the same; the proxied
		// reading may hold more only where the direct one held secrets.
		dd, pp := map[string]any{}, map[string]any{}
		for k, v := range s.d {
			if o.holdsSecret(k) || o.holdsSecret(v) {
				secretKeys = true
				continue
			}
			dd[k] = v
		}
		if s.name == "$_COOKIE" && secretKeys {
			for k := range dd {
				name, _ := hex.DecodeString(k)
				if isSetCookieAttr(string(name)) {
					delete(dd, k)
					cookieAttrs = true
				}
			}
		}
		for k, v := range s.p {
			if _, ok := s.d[k]; ok && o.holdsSecret(s.d[k]) {
				continue
			}
			if o.holdsSecret(k) || o.holdsSecret(v) {
				continue
			}
			if name, _ := hex.DecodeString(k); cookieAttrs && isSetCookieAttr(string(name)) {
				continue
			}
			pp[k] = v
		}
		if secretKeys {
			for k := range pp {
				if _, ok := dd[k]; !ok {
					delete(pp, k)
				}
			}
		}
		if s.name == "$_COOKIE" && len(c.cookies) > 1 && !c.h2 && (secretKeys || mentionsSession(c.cookies)) {
			// Several Cookie lines: PHP's front servers join them apart
			// (php -S with ", ", nginx and HTTP/2 with "; "), so no rewrite
			// of the line that held the session reads the same behind both;
			// only the leak check holds here.
			continue
		}
		if !reflect.DeepEqual(dd, pp) {
			o.fail(c, "through the proxy PHP reads %s differently:\n  direct:  %s\n  proxied: %s", s.name, phpShow(dd), phpShow(pp))
		}
	}
	din, _ := hex.DecodeString(d.Input)
	pin, _ := hex.DecodeString(p.Input)
	secret := false
	for _, s := range o.secrets() {
		secret = secret || bytes.Contains(din, []byte(s))
	}
	if !secret && !bytes.Equal(din, pin) {
		o.fail(c, "php://input changed although it held no credential: %q -> %q", din, pin)
	}
	return held
}

// mentionsSession reports whether a Cookie line names something PHP may
// read as session_id, which the proxy may take out of its line.
func mentionsSession(lines []string) bool {
	r := strings.NewReplacer(".", "_", " ", "_", "[", "_")
	for _, l := range lines {
		if strings.Contains(r.Replace(l), "session_id") {
			return true
		}
	}
	return false
}

// isSetCookieAttr reports whether a cookie name (as PHP reads it) is a
// Set-Cookie attribute, which the proxy removes with the session cookie
// that an old client re-sent as a raw Set-Cookie line.
func isSetCookieAttr(name string) bool {
	switch strings.ToLower(name) {
	case "expires", "max-age", "max_age", "domain", "path", "secure", "httponly", "samesite", "partitioned",
		"priority", "comment", "version":
		return true
	}
	return false
}

func (o *phpOracle) holdsSecret(v any) bool {
	switch x := v.(type) {
	case string:
		b, _ := hex.DecodeString(x)
		for _, s := range o.secrets() {
			if bytes.Contains(b, []byte(s)) {
				return true
			}
		}
	case map[string]any:
		for k, y := range x {
			if o.holdsSecret(k) || o.holdsSecret(y) {
				return true
			}
		}
	}
	return false
}

// phpShow prints a view section with its names and values decoded.
func phpShow(m map[string]any) string {
	var parts []string
	for k, v := range m {
		name, _ := hex.DecodeString(k)
		var val string
		switch x := v.(type) {
		case string:
			b, _ := hex.DecodeString(x)
			val = string(b)
		case map[string]any:
			val = phpShow(x)
		}
		parts = append(parts, fmt.Sprintf("%q: %s", name, val))
	}
	sort.Strings(parts)
	return "{" + strings.Join(parts, ", ") + "}"
}

// corpus reads legacy's FuzzPHPParity corpus into cases, built as
// legacy/phpfuzz_test.go builds its requests (keep the two in step).
func (o *phpOracle) corpus() []phpCase {
	dir := filepath.Join(repoRoot, "legacy", "testdata", "fuzz", "FuzzPHPParity")
	files, err := filepath.Glob(filepath.Join(dir, "*"))
	if err != nil || len(files) == 0 {
		o.t.Fatalf("legacy's FuzzPHPParity corpus: %v (%d files in %s)", err, len(files), dir)
	}
	sort.Strings(files)
	subst := strings.NewReplacer("{LOGINQ}", url.QueryEscape(o.login), "{LOGIN}", o.login, "{KEY}", o.key, "{SID}", o.sid)
	methods := []string{"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD"}
	paths := []string{"/api/v2/leads", "/api/unsorted/add/", "/private/api/v2/json/leads/set"}
	var cases []phpCase
	for _, f := range files {
		vals, err := readFuzzFile(f)
		if err != nil || len(vals) != 5 {
			o.t.Fatalf("%s: %v (%d values, want 5)", f, err, len(vals))
		}
		sel, _ := strconv.ParseUint(vals[0], 10, 8)
		c := phpCase{
			label:  "corpus " + filepath.Base(f),
			method: methods[int(sel&7)%len(methods)],
			path:   paths[int(sel>>3&3)%len(paths)],
			query:  subst.Replace(vals[1]),
			body:   []byte(subst.Replace(vals[4])),
			h2:     sel&0x20 != 0,
		}
		c.chunked = !c.h2 && sel&0x40 != 0
		c.hasBody = len(c.body) > 0
		if ct := subst.Replace(vals[2]); ct != "" {
			c.ct = strings.Split(ct, "\n")
		}
		if ck := subst.Replace(vals[3]); ck != "" {
			c.cookies = strings.Split(ck, "\n")
		}
		cases = append(cases, c)
	}
	return cases
}

// readFuzzFile reads a "go test fuzz v1" file: one value a line, as
// T(literal); it returns the literals, strings unquoted.
func readFuzzFile(path string) ([]string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	if !sc.Scan() || sc.Text() != "go test fuzz v1" {
		return nil, errors.New("not a go test fuzz v1 file")
	}
	var vals []string
	for sc.Scan() {
		line := sc.Text()
		open := strings.IndexByte(line, '(')
		if open < 0 || !strings.HasSuffix(line, ")") {
			return nil, fmt.Errorf("bad line %q", line)
		}
		lit := line[open+1 : len(line)-1]
		if strings.HasPrefix(lit, `"`) || strings.HasPrefix(lit, "`") {
			s, err := strconv.Unquote(lit)
			if err != nil {
				return nil, fmt.Errorf("bad literal %q: %v", lit, err)
			}
			lit = s
		}
		vals = append(vals, lit)
	}
	return vals, sc.Err()
}

// phpGen generates requests: query strings, urlencoded, JSON and multipart
// bodies, odd Content-Types and boundaries, cookies, every method, GET and
// HEAD with bodies, h2c and chunked transfers; credentials in every name
// PHP reads as one, mostly right (so that the proxy forwards), sometimes
// wrong, half or repeated.
type phpGen struct {
	rng *mathrand.Rand
	o   *phpOracle
	n   int
}

func (g *phpGen) pick(xs ...string) string { return xs[g.rng.IntN(len(xs))] }
func (g *phpGen) chance(p float64) bool    { return g.rng.Float64() < p }

var (
	phpLoginNames = []string{"USER_LOGIN", "USER.LOGIN", "USER%5FLOGIN", "USER+LOGIN", "USER%20LOGIN", "+USER_LOGIN",
		"%20USER_LOGIN", "USER[LOGIN", "USER_LOGIN%00x", "USER_LOGIN[]", "user_login", "USER_LOGIN_"}
	phpKeyNames = []string{"USER_HASH", "USER.HASH", "USER%5FHASH", "USER+HASH", "USER%20HASH", "+USER_HASH",
		"%20USER_HASH", "USER[HASH", "USER_HASH%00x", "USER_HASH[x]", "user_hash", "XUSER_HASH"}
	phpBenign = []string{"a=1", "b=%2F", "c[]=x", "c[]=y", "d[k]=v", "e.f=2", "g+h=3", "q=100%", "r=%zz", "empty=",
		"flag", "x=a%26b", "arr[0][1]=z", "u=%E2%9C%93", "limit_rows=5", "type=json", "login=x", "api_key=y", "code=1",
		"%5Bweird=1", "a=1;b=2", "semi;USER_HASH=k", "with=contacts", "page=2"}
	phpFormTypes = []string{"application/x-www-form-urlencoded", "application/x-www-form-urlencoded; charset=UTF-8",
		"application/x-www-form-urlencoded,text/plain", "application/x-www-form-urlencoded text/plain",
		"application/x-www-form-urlencoded,", "APPLICATION/X-WWW-FORM-URLENCODED", "Application/X-Www-Form-Urlencoded;",
		"application/x-www-form-urlencoded\t;charset=x", "text/plain", "text/plain;charset=utf-8", "", "application/json",
		"application/octet-stream", "text/html", "application/x-www-form-urlencodedx", "x-www-form-urlencoded"}
	phpJSONTypes = []string{"application/json", "application/json; charset=utf-8", "text/json", "application/hal+json",
		"", "text/plain", "application/octet-stream", "application/x-www-form-urlencoded", "aplication/json"}
	phpMethods = []string{"POST", "POST", "POST", "POST", "GET", "GET", "PUT", "PATCH", "DELETE", "HEAD"}
	phpPaths   = []string{"/api/v2/leads", "/private/api/v2/json/leads/set", "/api/unsorted/add/", "/api/v4/leads"}
)

// cred returns a credential pair name=value, mostly right.
func (g *phpGen) cred(login, unsorted bool) string {
	var name, val string
	switch {
	case login && unsorted && g.chance(0.4):
		name = "login"
	case login:
		name = g.pick(phpLoginNames...)
	case unsorted && g.chance(0.4):
		name = "api_key"
	default:
		name = g.pick(phpKeyNames...)
	}
	if login {
		val = g.pick(url.QueryEscape(g.o.login), g.o.login, strings.ReplaceAll(url.QueryEscape(g.o.login), "%40", "%40"))
	} else {
		val = g.o.key
		if g.chance(0.03) {
			val = "0000" + val[4:] // a wrong key
		}
	}
	return name + "=" + val
}

// pairs returns a query or form of benign pairs, with a credential pair
// (both halves, sometimes repeated or only one) when creds.
func (g *phpGen) pairs(creds, unsorted bool) string {
	var ps []string
	for range g.rng.IntN(4) {
		ps = append(ps, g.pick(phpBenign...))
	}
	if creds {
		ps = append(ps, g.cred(true, unsorted))
		if !g.chance(0.03) {
			ps = append(ps, g.cred(false, unsorted))
		}
		if g.chance(0.1) {
			ps = append(ps, g.cred(g.chance(0.5), unsorted))
		}
	}
	g.rng.Shuffle(len(ps), func(i, j int) { ps[i], ps[j] = ps[j], ps[i] })
	return strings.Join(ps, "&")
}

func (g *phpGen) multipart(creds bool) (ct string, body []byte) {
	b := g.pick("AAA", "x", "----WebKitFormBoundary7MA4YWxkTrZu0gW", "a b", "", "q;q", "B=C", "--")
	quoted := strings.ContainsAny(b, ";,") || g.chance(0.2)
	val := b
	if quoted {
		val = `"` + b + `"`
	}
	ct = g.pick(
		"multipart/form-data; boundary="+val,
		"multipart/form-data; boundary="+val+"; foo",
		"multipart/form-data; boundary="+val+"; boundary=OTHER",
		"multipart/form-data; boundary="+val+",OTHER",
		"multipart/form-data, boundary="+val,
		"multipart/form-data; xboundary="+val+"; boundary=OTHER",
		"multipart/form-data; charset=boundary; x="+val,
		"Multipart/Form-Data;BOUNDARY="+val,
		"multipart/form-data boundary="+val,
		"multipart/mixed; boundary="+val,
	)
	if strings.ContainsAny(b, ";,") && !quoted {
		ct = "multipart/form-data; boundary=\"" + b + "\""
	}
	nl := g.pick("\r\n", "\r\n", "\n")
	var w strings.Builder
	if g.chance(0.2) {
		w.WriteString("preamble" + nl)
	}
	part := func(disp, content string) {
		w.WriteString("--" + b + g.pick("", "", "", " ", "\x00z") + nl)
		if g.chance(0.2) {
			w.WriteString("Content-Type: text/plain" + nl)
		}
		w.WriteString(disp + nl + nl + content + nl)
	}
	name := func(n string) string {
		switch g.rng.IntN(5) {
		case 0:
			return "Content-Disposition: form-data; name=" + n
		case 1:
			return "content-disposition: form-data; name='" + n + "'"
		case 2:
			return "Content-Disposition: form-data;" + nl + " name=\"" + n + "\""
		}
		return "Content-Disposition: form-data; name=\"" + n + "\""
	}
	var parts []func()
	for range g.rng.IntN(3) {
		n := g.pick("a", "b[]", "c.d", "note", "USER_LOGINX")
		v := g.pick("1", "hello world", "--"+b+"x", "ü", "")
		parts = append(parts, func() { part(name(n), v) })
	}
	if g.chance(0.2) {
		parts = append(parts, func() {
			part("Content-Disposition: form-data; name=\""+g.pick("file", "USER_HASH")+"\"; filename=\"f.txt\"", "file content")
		})
	}
	if creds {
		ln := g.pick("USER_LOGIN", "USER.LOGIN", "USER LOGIN", " USER_LOGIN", "USER[LOGIN")
		kn := g.pick("USER_HASH", "USER.HASH", "USER HASH", "USER[HASH")
		parts = append(parts, func() { part(name(ln), g.o.login) }, func() { part(name(kn), g.o.key) })
	}
	g.rng.Shuffle(len(parts), func(i, j int) { parts[i], parts[j] = parts[j], parts[i] })
	for _, p := range parts {
		p()
	}
	w.WriteString("--" + b + "--" + nl)
	if g.chance(0.1) {
		w.WriteString("epilogue" + nl)
	}
	return ct, []byte(w.String())
}

func (g *phpGen) cookies() []string {
	sid := g.o.sid
	var items []string
	for range g.rng.IntN(3) {
		items = append(items, g.pick("a=1", "b=x%20y", "c", "d=\"q\"", "theme=dark", "session_idx=1", "xsession_id=2", "session%5Fid=3"))
	}
	if g.chance(0.6) {
		items = append(items, g.pick("session_id=", "session.id=", "session id=", "\tsession_id=", "session[id=", "session_id[]=",
			"session_id=\"")+sid+g.pick("", "", "; path=/", "; path=/; secure; HttpOnly", "; Expires=Wed, 21 Oct 2037 07:28:00 GMT"))
	}
	g.rng.Shuffle(len(items), func(i, j int) { items[i], items[j] = items[j], items[i] })
	if len(items) == 0 {
		return nil
	}
	if len(items) > 1 && g.chance(0.2) {
		k := 1 + g.rng.IntN(len(items)-1)
		return []string{strings.Join(items[:k], "; "), strings.Join(items[k:], g.pick("; ", ", "))}
	}
	return []string{strings.Join(items, g.pick("; ", ";", ", "))}
}

func (g *phpGen) next() phpCase {
	g.n++
	c := phpCase{label: fmt.Sprintf("gen #%d", g.n), method: g.pick(phpMethods...), path: g.pick(phpPaths...)}
	unsorted := c.unsorted()
	where := g.rng.IntN(5) // 0: query, 1: form, 2: JSON, 3: multipart, 4: cookie only
	c.query = g.pairs(where == 0 || g.chance(0.05), unsorted)
	switch where {
	case 1:
		c.body, c.hasBody = []byte(g.pairs(true, unsorted)), true
		if ct := g.pick(phpFormTypes...); ct != "" {
			c.ct = []string{ct}
		}
	case 2:
		c.body = []byte(g.pick(" ", "", "\n") + `{"USER_LOGIN":"` + g.o.login + `","request":{"leads":{"add":[{"name":"x"}]}},"USER_HASH":"` + g.o.key + `"}`)
		c.hasBody = true
		if ct := g.pick(phpJSONTypes...); ct != "" {
			c.ct = []string{ct}
		}
	case 3:
		ct, body := g.multipart(true)
		c.ct, c.body, c.hasBody = []string{ct}, body, true
	default:
		if g.chance(0.3) {
			c.body, c.hasBody = []byte(g.pairs(false, unsorted)), true
			c.ct = []string{g.pick(phpFormTypes...)}
		}
	}
	if where == 4 || g.chance(0.2) {
		c.cookies = g.cookies()
	}
	if len(c.ct) == 1 && g.chance(0.03) {
		c.ct = append(c.ct, g.pick("text/plain", "multipart/form-data; boundary=ZZZ"))
	}
	c.h2 = g.chance(0.3)
	if c.method == "GET" || c.method == "HEAD" {
		c.h2 = c.h2 || c.hasBody && g.chance(0.5)
	}
	c.chunked = !c.h2 && c.hasBody && g.chance(0.1)
	return c
}
