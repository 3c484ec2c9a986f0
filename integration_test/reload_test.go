package integration_test

import (
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/amobridge/amobridge/integration_test/fakeamocrm"
)

// TestRejectedReloadKeepsRunningConfig reloads with another client_secret
// in a configuration that Caddy refuses, once at a later module's Provision
// (a reverse_proxy whose client certificate is missing) and once at an
// app's Start (a listen address in use). The running configuration stays
// in force: the next cold user's exchange and the next refresh of a warm
// user are made with the running secret, which amoCRM accepts.
func TestRejectedReloadKeepsRunningConfig(t *testing.T) {
	needCaddy(t)
	for _, tc := range []struct {
		name    string
		breakIt func(t *testing.T, caddyfile string) string
	}{
		{"provision", func(t *testing.T, cf string) string {
			// A route after amocrm_auth's (handle sorts after it), so the
			// handler has been provisioned when this one fails.
			return strings.Replace(cf, "\treverse_proxy ", `	handle /never/* {
		reverse_proxy https://127.0.0.1:1 {
			transport http {
				tls_client_auth /nonexistent/client.crt /nonexistent/client.key
			}
		}
	}
	reverse_proxy `, 1)
		}},
		{"start", func(t *testing.T, cf string) string {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { ln.Close() })
			return cf + fmt.Sprintf("\nhttp://%s {\n\trespond \"busy\"\n}\n", ln.Addr())
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			const second = "second@example.com"
			var secondKey string
			e := NewEnv(t, EnvOptions{
				Fake: func(o *fakeamocrm.Options) {
					o.AccessTTL = 4 * time.Second
					secondKey = randomHex(t, 20)
					o.Users = append(o.Users, fakeamocrm.User{Account: testAccount, Login: second, APIKey: secondKey})
				},
				Site: tlNoLimit("refresh_ahead 2s"),
			})
			warm := tlUser{Login: testLogin, Key: e.APIKey}
			if r := tlGet(e, warm); r.Status != 200 {
				t.Fatalf("first request: %d %.200s", r.Status, r.Body)
			}
			good := e.Caddyfile()
			bad := strings.Replace(good, "client_secret {env.AMOCRM_CLIENT_SECRET}", "client_secret not-the-secret-"+randomHex(t, 8), 1)
			if bad == good {
				t.Fatal("the test's Caddyfile has no client_secret line to change")
			}
			bad = tc.breakIt(t, bad)
			out, err := e.Caddy.Reload(bad)
			if err == nil {
				t.Fatalf("Caddy accepted the broken configuration:\n%s", tail(out, 10))
			}
			t.Logf("reload refused as it should be: %s", lastLine(out))

			before := e.Fake.Stats()
			if r := tlGet(e, tlUser{Login: second, Key: secondKey}); r.Status != 200 {
				t.Errorf("cold user after the refused reload: %d %.200s", r.Status, r.Body)
			}
			time.Sleep(2500 * time.Millisecond) // the warm user's token is now due
			if r := tlGet(e, warm); r.Status != 200 {
				t.Errorf("warm user after the refused reload: %d %.200s", r.Status, r.Body)
			}
			after := e.Fake.Stats()
			if after.Exchanges-before.Exchanges != 1 || after.ExchangeRejected != before.ExchangeRejected {
				t.Errorf("exchanges %d→%d, rejected %d→%d: want one accepted exchange (the running secret)",
					before.Exchanges, after.Exchanges, before.ExchangeRejected, after.ExchangeRejected)
			}
			if after.Refreshes-before.Refreshes < 1 || after.RefreshErrors != before.RefreshErrors {
				t.Errorf("refreshes %d→%d, refresh errors %d→%d: want the warm user refreshed with the running secret",
					before.Refreshes, after.Refreshes, before.RefreshErrors, after.RefreshErrors)
			}
			// The running configuration can still be replaced normally.
			if out, err := e.Caddy.Reload(good); err != nil {
				t.Fatalf("reloading the running configuration again: %v\n%s", err, tail(out, 10))
			}
			if r := tlGet(e, warm); r.Status != 200 {
				t.Errorf("after a good reload: %d %.200s", r.Status, r.Body)
			}
			assertNoPanic(t, e.Caddy.Logs())
			e.AssertNoViolations()
		})
	}
}

// lastLine returns s's last non-empty line.
func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}

// assertNoPanic fails t if Caddy's output shows a panic (Go's, or one
// Caddy recovered and logged).
func assertNoPanic(t *testing.T, logs string) {
	t.Helper()
	for _, l := range strings.Split(logs, "\n") {
		if strings.Contains(l, "panic") || strings.HasPrefix(l, "goroutine ") {
			t.Errorf("Caddy panicked:\n%s", tail(grepLines(logs, "panic"), 10))
			return
		}
	}
}

// twoIntegrations is a Caddyfile with two sites, each in front of its own
// fake amoCRM with its own integration, and no store line.
const twoIntegrations = `{
	admin 127.0.0.1:%[1]d
	default_bind 127.0.0.1
	storage file_system %[2]s
	auto_https off
	persist_config off
}

http://127.0.0.1:%[3]d {
	amocrm_auth {
		client_id %[4]s
		client_secret %[5]s
		redirect_uri http://127.0.0.1:%[3]d/amocrm/oauth/callback
		subdomain acme
		api_base %[6]s/_acct/{subdomain}
		rate_limit 0
	}
	reverse_proxy %[6]s {
		header_up Host acme.amocrm.ru
	}
}

http://127.0.0.1:%[7]d {
	amocrm_auth {
		client_id %[8]s
		client_secret %[9]s
		redirect_uri http://127.0.0.1:%[7]d/amocrm/oauth/callback
		subdomain acme
		api_base %[10]s/_acct/{subdomain}
		rate_limit 0
	}
	reverse_proxy %[10]s {
		header_up Host acme.amocrm.ru
	}
}
`

// TestTwoIntegrationsDefaultStores: two sites with two integrations and no
// store line each get their own store and serve their own users.
func TestTwoIntegrationsDefaultStores(t *testing.T) {
	needCaddy(t)
	dir := testDir(t)
	adminPort, portA, portB := freePort(t), freePort(t), freePort(t)
	type side struct {
		port           int
		client, secret string
		key            string
		fake           *fakeamocrm.Server
		url            string
	}
	sides := []*side{
		{port: portA, client: "aaaaaaaa-1111-4111-8111-aaaaaaaaaaaa"},
		{port: portB, client: "bbbbbbbb-2222-4222-8222-bbbbbbbbbbbb"},
	}
	for _, s := range sides {
		s.secret, s.key = "cs-"+randomHex(t, 16), randomHex(t, 20)
		s.fake = fakeamocrm.New(fakeamocrm.Options{
			ClientID: s.client, ClientSecret: s.secret,
			RedirectURI:   fmt.Sprintf("http://127.0.0.1:%d/amocrm/oauth/callback", s.port),
			Users:         []fakeamocrm.User{{Account: testAccount, Login: testLogin, APIKey: s.key}},
			CallbackDelay: 20 * time.Millisecond,
		})
		srv := httptest.NewServer(s.fake)
		t.Cleanup(func() {
			s.fake.Close()
			srv.Close()
		})
		s.url = srv.URL
	}
	c := NewCaddy(t, dir, adminPort, portA, nil)
	c.Start(fmt.Sprintf(twoIntegrations, adminPort, filepath.Join(dir, "data"),
		portA, sides[0].client, sides[0].secret, sides[0].url,
		portB, sides[1].client, sides[1].secret, sides[1].url))
	for _, s := range sides {
		url := fmt.Sprintf("http://127.0.0.1:%d/api/v2/account?USER_LOGIN=%s&USER_HASH=%s", s.port, testLogin, s.key)
		for i := range 2 {
			res, err := http.Get(url)
			if err != nil {
				t.Fatal(err)
			}
			res.Body.Close()
			if res.StatusCode != 200 {
				t.Errorf("site of %s, request %d: %d", s.client, i+1, res.StatusCode)
			}
		}
		if st := s.fake.Stats(); st.Exchanges != 1 || st.ExchangeRejected != 0 || st.Violations != 0 {
			t.Errorf("fake of %s: %d exchanges, %d rejected, %d violations; want 1, 0, 0", s.client, st.Exchanges, st.ExchangeRejected, st.Violations)
		}
		store := filepath.Join(dir, "xdg-data", "caddy", "amobridge", s.client)
		if _, err := os.Stat(filepath.Join(store, "MANIFEST")); err != nil {
			t.Errorf("no store of its own for %s: %v", s.client, err)
		}
	}
	if t.Failed() {
		t.Logf("Caddy's output:\n%s", tail(c.Logs(), 40))
	}
	assertNoPanic(t, c.Logs())
}

// TestUpgradeMovesOldDefaultStore: a store in amobridge/ itself, where
// earlier versions kept the default store, is moved into the integration's
// own directory when Caddy starts without a store line; its tokens are
// kept (no new exchange) and the log says so.
func TestUpgradeMovesOldDefaultStore(t *testing.T) {
	needCaddy(t)
	e := NewEnv(t, EnvOptions{Site: func(s *SiteConfig) {
		s.StoreDir = "" // filled below: the old default directory
	}, NoStart: true})
	oldDir := filepath.Join(e.Dir, "xdg-data", "caddy", "amobridge")
	e.Site.StoreDir = oldDir
	e.Caddy.Start(e.Caddyfile())
	firstCall(t, e)
	e.Caddy.Stop()

	cf := e.Caddyfile()
	cf = strings.Replace(cf, "\t\t\tpath "+oldDir+"\n", "", 1)
	if strings.Contains(cf, oldDir) {
		t.Fatal("the store path is still in the Caddyfile")
	}
	e.Caddy.Start(cf)
	callAgain(t, e, "after the upgrade to per-integration default directories")
	if _, err := os.Stat(filepath.Join(oldDir, testClient, "MANIFEST")); err != nil {
		t.Errorf("the store was not moved into %s: %v", filepath.Join(oldDir, testClient), err)
	}
	if _, err := os.Stat(filepath.Join(oldDir, "MANIFEST")); err == nil {
		t.Error("a store is still in the old default directory")
	}
	if !strings.Contains(e.Caddy.Logs(), "moved the token store from the previous default directory") {
		t.Error("the log does not say that the store was moved")
	}
	e.AssertNoViolations()
}

// TestRateLimitSharedAcrossHandlers: one snippet imported in two handle
// blocks, rate_limit 2: one budget for the account, so amoCRM never sees
// more than 2 requests in any second.
func TestRateLimitSharedAcrossHandlers(t *testing.T) {
	needCaddy(t)
	e := NewEnv(t, EnvOptions{Site: func(s *SiteConfig) { s.Debug = false; s.Extra = "rate_limit 2" }, NoStart: true})
	cf := e.Caddyfile()
	// Turn the site's two directives into a snippet used by two handle blocks.
	start := strings.Index(cf, "\tamocrm_auth {")
	end := strings.Index(cf[start:], "\n\t}\n") + start + len("\n\t}\n")
	auth := cf[start:end]
	cf = cf[:start] + "\thandle /api/v2/* {\n\t\timport amo\n\t}\n\thandle {\n\t\timport amo\n\t}\n" + cf[end:]
	proxyStart := strings.Index(cf, "\treverse_proxy ")
	proxyEnd := strings.Index(cf[proxyStart:], "\n\t}\n") + proxyStart + len("\n\t}\n")
	proxy := cf[proxyStart:proxyEnd]
	cf = cf[:proxyStart] + cf[proxyEnd:]
	siteStart := strings.Index(cf, "\nhttp://")
	cf = cf[:siteStart] + "\n(amo) {\n" + auth + proxy + "}\n" + cf[siteStart:]
	e.Caddy.Start(cf)

	u := tlUser{Login: testLogin, Key: e.APIKey}
	if r := tlGet(e, u); r.Status != 200 {
		t.Fatalf("first request: %d %.200s", r.Status, r.Body)
	}
	var wg sync.WaitGroup
	var st tlStatuses
	deadline := time.Now().Add(4 * time.Second)
	for i := range 8 {
		path := "/api/v2/account?"
		if i%2 == 1 {
			path = "/api/v4/leads?"
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Now().Before(deadline) {
				st.add(tlSend(nil, e, http.MethodGet, path+u.query(""), nil, nil))
			}
		}()
	}
	wg.Wait()
	fs := e.Fake.Stats()
	t.Logf("8 clients over two handle blocks for 4 s: %s; amoCRM's most in a sliding second: %d", &st, fs.MaxPerSlidingSecond[testAccount])
	if n := fs.MaxPerSlidingSecond[testAccount]; n > 2 {
		t.Errorf("amoCRM saw %d requests of the account in one second; rate_limit 2 is one budget for both handle blocks", n)
	}
	if st.get(200) < 4 {
		t.Errorf("only %d requests served in 4 s at 2 per second", st.get(200))
	}
	e.AssertNoViolations()
}
