package integration_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/amobridge/amobridge/integration_test/fakeamocrm"
)

// firstCall makes the test user's first legacy call and checks it exchanged once.
func firstCall(t *testing.T, e *Env) {
	t.Helper()
	resp := e.Get("/api/v2/account?" + e.LegacyQuery(""))
	if resp.Status != 200 {
		t.Fatalf("first legacy request: status %d; want 200; body: %s", resp.Status, resp.Body)
	}
	if st := e.Fake.Stats(); st.Exchanges != 1 || st.CodeGrants != 1 {
		t.Fatalf("first legacy request: %d exchanges, %d code grants; want 1 and 1", st.Exchanges, st.CodeGrants)
	}
}

// callAgain makes another legacy call that must be served from the stored
// token: 200 and no new exchange or code grant.
func callAgain(t *testing.T, e *Env, when string) {
	t.Helper()
	before := e.Fake.Stats()
	resp := e.Get("/api/v2/account?" + e.LegacyQuery(""))
	if resp.Status != 200 {
		t.Fatalf("%s: status %d; want 200; body: %s", when, resp.Status, resp.Body)
	}
	after := e.Fake.Stats()
	if after.ExchangeCalls != before.ExchangeCalls || after.CodeGrants != before.CodeGrants {
		t.Errorf("%s: the token was not kept: exchange calls %d→%d, code grants %d→%d",
			when, before.ExchangeCalls, after.ExchangeCalls, before.CodeGrants, after.CodeGrants)
	}
}

// TestTokensSurviveRestart stops Caddy gracefully, then kills it with SIGKILL
// right after a request: both times the token is still in the store.
func TestTokensSurviveRestart(t *testing.T) {
	needCaddy(t)
	e := NewEnv(t, EnvOptions{})
	firstCall(t, e)

	e.Caddy.Restart(false)
	callAgain(t, e, "after a graceful restart")

	e.Caddy.Restart(true)
	callAgain(t, e, "after kill -9 and a restart")

	e.AssertNoViolations()
	e.AssertNoSecrets("Caddy's log", e.Caddy.Logs())
	e.AssertNoSecrets("the access log", e.AccessLog())
}

// TestKillRightAfterExchange kills Caddy as soon as the first answer is out:
// the token pair must already be on disk (written synced before use).
func TestKillRightAfterExchange(t *testing.T) {
	needCaddy(t)
	e := NewEnv(t, EnvOptions{})
	firstCall(t, e)
	e.Caddy.Kill()
	e.Caddy.Start(e.Caddy.Config())
	callAgain(t, e, "after kill -9 straight after the exchange")
	e.AssertNoViolations()
}

// TestReload reloads Caddy with a changed configuration: the store (locked by
// Badger) moves to the new configuration and the token is kept. A bad config is
// refused by `caddy reload`, naming the option, and the running one keeps serving.
func TestReload(t *testing.T) {
	needCaddy(t)
	e := NewEnv(t, EnvOptions{})
	firstCall(t, e)

	e.Site.Extra = "session_ttl 20m"
	if out, err := e.Caddy.Reload(e.Caddyfile()); err != nil {
		t.Fatalf("caddy reload: %v\n%s", err, tail(out, 20))
	}
	callAgain(t, e, "after a reload")

	e.Site.Extra = "frobnicate 1"
	out, err := e.Caddy.Reload(e.Caddyfile())
	if err == nil {
		t.Errorf("caddy reload accepted an unknown option")
	} else if !strings.Contains(out, "frobnicate") {
		t.Errorf("caddy reload's error does not name the unknown option:\n%s", tail(out, 10))
	}
	callAgain(t, e, "after a refused reload")

	// Reloading the same configuration again must not break the store either.
	e.Site.Extra = ""
	if out, err := e.Caddy.Reload(e.Caddyfile()); err != nil {
		t.Fatalf("caddy reload (back to the first config): %v\n%s", err, tail(out, 20))
	}
	callAgain(t, e, "after a second reload")
	if strings.Contains(e.Caddy.Logs(), `"level":"error"`) {
		t.Errorf("Caddy logged errors during the reloads:\n%s", grepLines(e.Caddy.Logs(), `"level":"error"`))
	}
	e.AssertNoViolations()
}

// TestValidateWhileRunning runs `caddy validate` on the running configuration,
// store included: validation must not take the store away from the running Caddy.
func TestValidateWhileRunning(t *testing.T) {
	needCaddy(t)
	e := NewEnv(t, EnvOptions{})
	firstCall(t, e)
	path := filepath.Join(e.Dir, "Caddyfile.validate")
	if err := os.WriteFile(path, []byte(e.Caddy.Config()), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := e.Caddy.Command("validate", "--adapter", "caddyfile", "--config", path)
	if err != nil || !strings.Contains(out, "Valid configuration") {
		t.Errorf("caddy validate of the running config: %v\n%s", err, tail(out, 20))
	}
	e.AssertNoSecrets("caddy validate's output", out)
	if !e.Caddy.Running() {
		t.Fatal("Caddy exited")
	}
	callAgain(t, e, "after caddy validate")
}

// TestPlaceholderSubdomain serves two accounts from one site, the account taken
// from the Host the legacy client called (the DNS-override deployment).
func TestPlaceholderSubdomain(t *testing.T) {
	needCaddy(t)
	betaKey := ""
	e := NewEnv(t, EnvOptions{
		Fake: func(o *fakeamocrm.Options) {
			betaKey = strings.Repeat("b", 40)
			o.Users = append(o.Users, fakeamocrm.User{Account: "beta", Login: testLogin, APIKey: betaKey})
		},
		Site: func(s *SiteConfig) {
			s.SiteAddress = fmt.Sprintf("http://:%d", s.HTTPPort)
			s.Subdomain = "{http.request.host.labels.2}"
			s.HostHeader = "{http.request.host}"
		},
	})
	for _, c := range []struct{ account, key string }{{testAccount, e.APIKey}, {"beta", betaKey}} {
		host := c.account + ".amocrm.ru"
		q := "USER_LOGIN=" + strings.ReplaceAll(testLogin, "@", "%40") + "&USER_HASH=" + c.key
		resp := e.Do(http.MethodGet, "/api/v2/account?"+q, http.Header{"Host": {host}}, nil)
		if resp.Status != 200 {
			t.Fatalf("request for %s: status %d; body: %s", host, resp.Status, resp.Body)
		}
		var ec echo
		resp.JSON(t, &ec)
		if ec.Fake.Account != c.account {
			t.Errorf("request for %s reached amoCRM's account %q", host, ec.Fake.Account)
		}
	}
	if st := e.Fake.Stats(); st.Exchanges != 2 || st.CodeGrants != 2 {
		t.Errorf("two accounts: %d exchanges, %d code grants; want 2 and 2", st.Exchanges, st.CodeGrants)
	}
	e.AssertNoViolations()
}

// TestAccessLogFilter checks Caddyfile.example's log snippet (the module's
// amocrm_credentials filter) through a Caddy without amocrm_auth: the
// credentials (under every name PHP reads as one) and the callback's code are
// deleted from the logged URI, other parameters stay as they were, and Caddy
// redacts the Authorization and Cookie headers.
func TestAccessLogFilter(t *testing.T) {
	needCaddy(t)
	dir := testDir(t)
	accessLog := filepath.Join(dir, "access.log")
	adminPort, httpPort := freePort(t), freePort(t)
	c := NewCaddy(t, dir, adminPort, httpPort, map[string]string{"AMOBRIDGE_ACCESS_LOG": accessLog})
	c.Start(fmt.Sprintf(`{
	admin 127.0.0.1:%d
	default_bind 127.0.0.1
	storage file_system %s
	http_port %d
	auto_https off
	persist_config off
}

%s

http://127.0.0.1:%d {
	import amobridge_access_log
	respond 200
}
`, adminPort, filepath.Join(dir, "data"), httpPort, exampleSnippet(t, "amobridge_access_log"), httpPort))

	cases := []struct {
		query, want string // want: the logged query ("": no query at all)
	}{
		{"USER_LOGIN=user%40example.com&USER_HASH=@1&keep=1", "keep=1"},
		{"keep=1&login=user%40example.com&api_key=@1", "keep=1"},
		{"a=1&USER_HASH=@1&b=2&USER_LOGIN=u&c=3", "a=1&b=2&c=3"},
		{"code=@1&state=abc&from_exchange=1", "state=abc&from_exchange=1"},
		{"USER.LOGIN=u&USER.HASH=@1", ""},
		{"USER+HASH=@1&USER%20LOGIN=u", ""},
		{"USER[HASH=@1&x=2", "x=2"},
		{"USER%5FHASH=@1", ""},
		{"%55SER_%48ASH=@1", ""},
		{"USER_HASH[]=@1&USER_HASH[0]=@1", ""},
		// Names PHP reads case-sensitively are not credentials to amoCRM; the
		// module forwards them as they are, and the log keeps them too.
		{"user_hash=x&Api_Key=y", "user_hash=x&Api_Key=y"},
		{"+USER_HASH=@1", ""},
		{"USER_HASH=@1=@1&a=b", "a=b"},
		{"filter[status]=142&limit=250&with=contacts", "filter[status]=142&limit=250&with=contacts"},
	}
	header := map[string]string{"Authorization": "Bearer " + randomHex(t, 30), "Cookie": "session_id=" + randomHex(t, 16)}
	var secrets []string
	for i := range cases {
		key := randomHex(t, 20)
		secrets = append(secrets, key)
		q := strings.ReplaceAll(cases[i].query, "@1", key)
		req, err := http.NewRequest(http.MethodGet, c.BaseURL()+"/private/api/v2/json/leads/list?"+q, nil)
		if err != nil {
			t.Fatal(err)
		}
		for k, v := range header {
			req.Header.Set(k, v)
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	c.Stop() // flushes the log

	b, err := os.ReadFile(accessLog)
	if err != nil {
		t.Fatalf("no access log: %v", err)
	}
	for i, v := range secrets {
		if strings.Contains(string(b), v) {
			t.Errorf("the access log holds the secret of case %q", cases[i].query)
		}
	}
	for name, v := range header {
		if strings.Contains(string(b), v) {
			t.Errorf("the access log holds the %s header", name)
		}
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) != len(cases) {
		t.Fatalf("the access log has %d lines; want %d", len(lines), len(cases))
	}
	for i, line := range lines {
		var entry struct {
			Request struct {
				URI     string              `json:"uri"`
				Headers map[string][]string `json:"headers"`
			} `json:"request"`
		}
		if err := json.Unmarshal([]byte(line), &entry); err != nil {
			t.Fatalf("the access log is not JSON lines: %v\n%s", err, line)
		}
		want := "/private/api/v2/json/leads/list"
		if cases[i].want != "" {
			want += "?" + cases[i].want
		}
		if entry.Request.URI != want {
			t.Errorf("logged uri %q; want %q", entry.Request.URI, want)
		}
		for _, h := range []string{"Authorization", "Cookie"} {
			if got := entry.Request.Headers[h]; len(got) != 1 || got[0] != "REDACTED" {
				t.Errorf("logged %s header: %q; want [REDACTED]", h, got)
			}
		}
	}
}

// grepLines returns the lines of s that contain sub.
func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
