package integration_test

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// malformedCase is one malformed request and the statuses it may get.
type malformedCase struct {
	name     string
	method   string
	target   string
	header   http.Header
	body     string
	statuses []int // allowed; the first is the module's own (legacy shape)
}

// TestMalformedInput sends malformed legacy input through Caddy: each gets a
// clear 400 in the legacy shape (or Caddy's own 431 for headers over its
// limit), never a 5xx; Caddy keeps running; nothing reaches amoCRM; and the
// stored token is intact (the next good request needs no new exchange).
func TestMalformedInput(t *testing.T) {
	needCaddy(t)
	e := NewEnv(t, EnvOptions{Site: func(s *SiteConfig) { s.Extra = "rate_limit 0" }})
	if resp := e.Get("/api/v2/leads?" + e.LegacyQuery("")); resp.Status != 200 {
		t.Fatalf("first request: status %d; body %.300s", resp.Status, resp.Body)
	}
	token := bearerOf(lastRequest(t, e))
	st1 := e.Fake.Stats()

	key := e.APIKey
	form := http.Header{"Content-Type": {"application/x-www-form-urlencoded"}}
	jsonCT := http.Header{"Content-Type": {"application/json"}}
	bad := []int{http.StatusBadRequest}
	tooBig := []int{http.StatusBadRequest, http.StatusRequestHeaderFieldsTooLarge}
	manyParams := strings.Repeat("p&", 10001)
	cases := []malformedCase{
		// Broken percent-encoding.
		{"broken escape in USER_HASH", "GET", "/api/v2/leads?USER_LOGIN=" + loginQ + "&USER_HASH=" + key + "%G1", nil, "", bad},
		{"truncated escape in USER_HASH", "GET", "/api/v2/leads?USER_LOGIN=" + loginQ + "&USER_HASH=" + key + "%4", nil, "", bad},
		{"broken escape in USER_LOGIN", "GET", "/api/v2/leads?USER_LOGIN=user%ZZexample.com&USER_HASH=" + key, nil, "", bad},
		{"broken escape in a form body", "POST", "/api/v2/leads", form, "USER_LOGIN=" + loginQ + "&USER_HASH=%%" + key, bad},
		// Invalid JSON carrying credentials.
		{"invalid JSON, trailing comma", "POST", "/private/api/v2/json/leads/set", jsonCT, `{"USER_LOGIN":"` + testLogin + `","USER_HASH":"` + key + `",}`, bad},
		{"invalid JSON, truncated, untyped", "POST", "/private/api/v2/json/leads/set", nil, `{"USER_LOGIN":"` + testLogin + `","USER_HASH":"` + key, bad},
		{"invalid JSON, key not a string", "POST", "/private/api/v2/json/leads/set", jsonCT, `{"USER_LOGIN":"` + testLogin + `","USER_HASH":12345}`, bad},
		{"invalid JSON, two objects", "POST", "/private/api/v2/json/leads/set", jsonCT, `{"a":1}{"USER_LOGIN":"` + testLogin + `","USER_HASH":"` + key + `"}`, bad},
		// Half credentials.
		{"login without hash, query", "GET", "/api/v2/leads?USER_LOGIN=" + loginQ + "&x=1", nil, "", bad},
		{"login without hash, form", "POST", "/api/v2/leads", form, "USER_LOGIN=" + loginQ + "&name=x", bad},
		{"login without hash, JSON", "POST", "/api/v2/leads", jsonCT, `{"USER_LOGIN":"` + testLogin + `"}`, bad},
		{"hash without login", "GET", "/api/v2/leads?USER_HASH=" + key, nil, "", bad},
		{"empty hash", "GET", "/api/v2/leads?USER_LOGIN=" + loginQ + "&USER_HASH=", nil, "", bad},
		{"unsorted login without api_key", "GET", "/api/unsorted/list/?login=" + loginQ, nil, "", bad},
		// Copies that disagree.
		{"two different hashes in the query", "GET", "/api/v2/leads?" + e.LegacyQuery("USER_HASH="+randomHex(t, 20)), nil, "", bad},
		{"two different logins in the query", "GET", "/api/v2/leads?" + e.LegacyQuery("USER_LOGIN=other%40example.com"), nil, "", bad},
		{"query and form body disagree", "POST", "/api/v2/leads?" + e.LegacyQuery(""), form, "USER_HASH=" + randomHex(t, 20), bad},
		{"query and JSON body disagree", "POST", "/api/v2/leads?" + e.LegacyQuery(""), jsonCT, `{"USER_LOGIN":"other@example.com"}`, bad},
		{"USER_HASH and api_key disagree on unsorted", "GET", "/api/unsorted/list/?" + e.LegacyQuery("api_key="+randomHex(t, 20)), nil, "", bad},
		{"two different session cookies", "GET", "/api/v2/leads", http.Header{"Cookie": {"session_id=" + randomHex(t, 32) + "; session_id=" + randomHex(t, 32)}}, "", bad},
		{"an array", "POST", "/api/v2/leads", form, "USER_LOGIN=" + loginQ + "&USER_HASH%5B%5D=" + key, bad},
		// NUL and other control bytes.
		{"NUL in USER_HASH", "GET", "/api/v2/leads?USER_LOGIN=" + loginQ + "&USER_HASH=" + key + "%00", nil, "", bad},
		{"NUL in USER_LOGIN", "GET", "/api/v2/leads?USER_LOGIN=user%00%40example.com&USER_HASH=" + key, nil, "", bad},
		{"raw NUL in a form body", "POST", "/api/v2/leads", form, "USER_LOGIN=" + loginQ + "&USER_HASH=" + key[:20] + "\x00" + key[20:], bad},
		{"NUL in a JSON body", "POST", "/api/v2/leads", jsonCT, `{"USER_LOGIN":"` + testLogin + `","USER_HASH":"\u0000` + key + `"}`, bad},
		{"newline in USER_HASH", "GET", "/api/v2/leads?USER_LOGIN=" + loginQ + "&USER_HASH=" + key + "%0D%0AX-Injected:%201", nil, "", bad},
		// Sizes.
		{"USER_HASH of 4 KiB", "GET", "/api/v2/leads?USER_LOGIN=" + loginQ + "&USER_HASH=" + strings.Repeat("a", 4096), nil, "", bad},
		{"session cookie of 8 KiB", "GET", "/api/v2/leads", http.Header{"Cookie": {"session_id=" + strings.Repeat("a", 8192)}}, "", bad},
		// Caddy's own header limit (16 KiB by default) comes first here.
		{"10001 parameters and credentials", "GET", "/api/v2/leads?" + manyParams + e.LegacyQuery(""), nil, "", tooBig},
		{"10001 form fields and credentials", "POST", "/api/v2/leads", form, manyParams + e.LegacyQuery(""), bad},
		{"query of 2 MiB", "GET", "/api/v2/leads?" + e.LegacyQuery("pad="+strings.Repeat("a", 2<<20)), nil, "", tooBig},
		{"Cookie of 2 MiB", "GET", "/api/v2/leads?" + e.LegacyQuery(""), http.Header{"Cookie": {"a=" + strings.Repeat("b", 2<<20)}}, "", tooBig},
		{"Cookie of 2 MiB with a session", "GET", "/api/v2/leads", http.Header{"Cookie": {"session_id=" + randomHex(t, 32) + "; a=" + strings.Repeat("b", 2<<20)}}, "", tooBig},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			n := requestCount(e)
			status, hdr, body, err := rawDo(e, c.method, c.target, c.header, c.body)
			if err != nil {
				// Only a request over Caddy's header limit may be cut short.
				if c.statuses[len(c.statuses)-1] != http.StatusRequestHeaderFieldsTooLarge {
					t.Fatalf("no answer: %v", err)
				}
				t.Logf("no answer (the server closed the connection over its header limit): %v", err)
			} else {
				checkMalformedAnswer(t, e, c, status, hdr, body)
			}
			if requestCount(e) != n {
				r := lastRequest(t, e)
				t.Errorf("a malformed request reached amoCRM: %s %s", r.Method, r.Path)
			}
			if !e.Caddy.Running() {
				t.Fatalf("Caddy exited")
			}
		})
	}

	t.Run("raw bytes", func(t *testing.T) {
		for _, raw := range []string{
			"GET /api/v2/leads?USER_LOGIN=" + loginQ + "&USER_HASH=\x00" + key + " HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n",
			"GET /api/v2/leads HTTP/1.1\r\nHost: {host}\r\nCookie: session_id=\x00abc\r\nConnection: close\r\n\r\n",
			"POST /api/v2/leads HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\nContent-Length: 10\r\nConnection: close\r\n\r\n{\"USER_LOG",
			"POST /api/v2/leads HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\nzz\r\n{}\r\n0\r\n\r\n",
			"GET /api/v2/leads?USER_LOGIN=" + loginQ + "&USER_HASH=" + key + " HTTP/1.1\r\nHost: {host}\r\nContent-Length: -1\r\nConnection: close\r\n\r\n",
		} {
			n := requestCount(e)
			status, err := rawTCP(e, raw)
			switch {
			case err != nil:
				t.Logf("%.40q: no answer (%v)", raw, err)
			case status >= 500:
				t.Errorf("%.40q: status %d", raw, status)
			case status != http.StatusBadRequest:
				t.Errorf("%.40q: status %d; want 400", raw, status)
			}
			if requestCount(e) != n {
				t.Errorf("%.40q reached amoCRM", raw)
			}
		}
	})

	t.Run("large headers within Caddy's limit", func(t *testing.T) {
		resp := e.Do(http.MethodPost, authPHP+"?type=json", jsonCT,
			strings.NewReader(`{"USER_LOGIN":"`+testLogin+`","USER_HASH":"`+key+`"}`))
		parseAuthOK(t, resp, true)
		sid := sessionCookie(t, resp).Value
		var before, after []string
		for i := 0; i < 150; i++ {
			before = append(before, fmt.Sprintf("c%03d=%s", i, strings.Repeat("v", 24)))
			after = append(after, fmt.Sprintf("d%03d=%s", i, strings.Repeat("w", 24)))
		}
		others := strings.Join(before, "; ") + "; " + strings.Join(after, "; ")
		line := strings.Join(before, "; ") + "; session_id=" + sid + "; " + strings.Join(after, "; ")
		for _, c := range []struct {
			name, cookie, query string
		}{
			{"credentials in the query", others, "?" + e.LegacyQuery("")},
			{"a session among 300 cookies", line, ""},
		} {
			resp := e.Do(http.MethodGet, "/api/v2/leads"+c.query, http.Header{"Cookie": {c.cookie}}, nil)
			if resp.Status != http.StatusOK {
				t.Fatalf("%s (Cookie of %d bytes): status %d; body %.300s", c.name, len(c.cookie), resp.Status, resp.Body)
			}
			r := lastRequest(t, e)
			if got := r.Header.Values("Cookie"); len(got) != 1 || got[0] != others {
				t.Errorf("%s: amoCRM did not receive the other cookies byte for byte (%d lines)", c.name, len(got))
			}
			assertBearerOnly(t, c.name, r)
			if bearerOf(r) != token {
				t.Errorf("%s: another token than the user's", c.name)
			}
		}
	})

	if !e.Caddy.Running() {
		t.Fatal("Caddy exited")
	}
	// The token is intact: the next good request needs nothing from amoCRM.
	resp := e.Get("/api/v2/leads?" + e.LegacyQuery(""))
	if resp.Status != http.StatusOK {
		t.Fatalf("a good request after the malformed ones: status %d; body %.300s", resp.Status, resp.Body)
	}
	if bearerOf(lastRequest(t, e)) != token {
		t.Errorf("the stored token changed")
	}
	if st2 := e.Fake.Stats(); st2.ExchangeCalls != st1.ExchangeCalls || st2.TokenCalls != st1.TokenCalls {
		t.Errorf("malformed input caused calls to amoCRM: exchanges %d→%d, token calls %d→%d",
			st1.ExchangeCalls, st2.ExchangeCalls, st1.TokenCalls, st2.TokenCalls)
	}
	if strings.Contains(e.Caddy.Logs(), "panic") {
		t.Errorf("Caddy's log mentions a panic:\n%s", grepLines(e.Caddy.Logs(), "panic"))
	}
	e.AssertNoViolations()
	assertNoSecretsAnywhere(e)
}

// TestMalformedAuthPHP: malformed auth.php logins get 400 in auth.php's own
// error shape (JSON with type=json), never a 5xx.
func TestMalformedAuthPHP(t *testing.T) {
	needCaddy(t)
	e := NewEnv(t, EnvOptions{})
	key := e.APIKey
	for _, c := range []struct{ name, method, target, ct, body string }{
		{"invalid JSON", "POST", authPHP + "?type=json", "application/json", `{"USER_LOGIN":"` + testLogin + `","USER_HASH":"` + key + `"`},
		{"login without hash", "POST", authPHP + "?type=json", "application/json", `{"USER_LOGIN":"` + testLogin + `"}`},
		{"broken escape", "GET", authPHP + "?type=json&USER_LOGIN=" + loginQ + "&USER_HASH=" + key + "%G", "", ""},
		{"NUL", "POST", authPHP + "?type=json", "application/x-www-form-urlencoded", "USER_LOGIN=" + loginQ + "&USER_HASH=%00" + key},
		{"disagreeing copies", "POST", authPHP + "?type=json&USER_LOGIN=" + loginQ + "&USER_HASH=" + key, "application/x-www-form-urlencoded", "USER_HASH=" + randomHex(t, 20)},
	} {
		t.Run(c.name, func(t *testing.T) {
			h := http.Header{}
			if c.ct != "" {
				h.Set("Content-Type", c.ct)
			}
			status, hdr, body, err := rawDo(e, c.method, c.target, h, c.body)
			if err != nil {
				t.Fatal(err)
			}
			if status != http.StatusBadRequest {
				t.Errorf("status %d; want 400; body %.300s", status, body)
			}
			if !strings.HasPrefix(hdr.Get("Content-Type"), "application/json") ||
				!strings.Contains(string(body), `"auth":false`) || !strings.Contains(string(body), `"error_code"`) {
				t.Errorf("auth.php with type=json: answer %q %s; want its JSON error shape", hdr.Get("Content-Type"), body)
			}
			e.AssertNoSecrets("the answer", string(body))
		})
	}
	if st := e.Fake.Stats(); st.ExchangeCalls != 0 {
		t.Errorf("malformed logins caused %d exchange calls", st.ExchangeCalls)
	}
	noAuthPHPReached(t, e)
	e.AssertNoViolations()
	assertNoSecretsAnywhere(e)
}

func checkMalformedAnswer(t *testing.T, e *Env, c malformedCase, status int, hdr http.Header, body []byte) {
	t.Helper()
	if status >= 500 {
		t.Fatalf("status %d (a 5xx for malformed input); body %.300s", status, body)
	}
	ok := false
	for _, s := range c.statuses {
		ok = ok || s == status
	}
	if !ok {
		t.Errorf("status %d; want one of %v; body %.300s", status, c.statuses, body)
		return
	}
	e.AssertNoSecrets("the answer", string(body))
	if status == c.statuses[0] {
		text := assertLegacyError(t, c.name, &Response{Status: status, Header: hdr, Body: body}, status, "")
		if text != "" {
			t.Logf("answer: %d %s", status, text)
		}
	}
}

// rawClient is client without its timeout, for requests that may be cut short.
var rawClient = &http.Client{
	Timeout:       30 * time.Second,
	Transport:     &http.Transport{Proxy: nil, DisableKeepAlives: true},
	CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
}

// rawDo sends a request and returns its answer, or the transport's error
// (the test decides whether that may happen).
func rawDo(e *Env, method, target string, header http.Header, body string) (int, http.Header, []byte, error) {
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, e.Caddy.BaseURL()+target, rd)
	if err != nil {
		return 0, nil, nil, fmt.Errorf("building the request: %w", err)
	}
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := rawClient.Do(req)
	if err != nil {
		return 0, nil, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, b, err
}

// rawTCP writes raw to Caddy's port and returns the answer's status; "{host}"
// in raw stands for the site's host:port (another Host matches no route).
func rawTCP(e *Env, raw string) (int, error) {
	conn, err := net.DialTimeout("tcp", strings.TrimPrefix(e.Caddy.BaseURL(), "http://"), 5*time.Second)
	if err != nil {
		return 0, err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(20 * time.Second))
	raw = strings.ReplaceAll(raw, "{host}", conn.RemoteAddr().String())
	if _, err := io.WriteString(conn, raw); err != nil {
		return 0, err
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	return resp.StatusCode, nil
}
