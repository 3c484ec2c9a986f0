package integration_test

import (
	"bytes"
	"context"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/amobridge/amobridge/tokenstore"
)

// Secrets hygiene through the real Caddy: after a workload that goes through
// every path of the module (exchange, hits, every credential shape, auth.php
// and its session, wrong keys, malformed input, a forged callback, a code
// that comes late, a refresh, amoCRM down, a bulk migration, the admin API
// and the `caddy amocrm` and `caddy validate`/`adapt` commands), with Caddy
// at debug level, access logs on through Caddyfile.example's filter, and
// secrets given as {env.VAR}, no API key, access or refresh token,
// authorization code, client secret, encryption key or session id issued in
// the run appears in anything Caddy printed or answered. Debug is Caddy's
// most verbose level, so this covers every level. The store's files hold no
// token either, with encryption_key set.

// secretSet names every secret value the scan looks for.
type secretSet map[string]string

func (s secretSet) add(name, v string) {
	if len(v) >= 8 { // shorter values would match by chance
		s[name] = v
	}
}

// find returns the names of the secrets text holds.
func (s secretSet) find(text string) []string {
	var out []string
	for name, v := range s {
		if strings.Contains(text, v) {
			out = append(out, name)
		}
	}
	return out
}

func TestNoSecretsInLogsOrAnswers(t *testing.T) {
	needCaddy(t)
	migrants := newOpsUsers(t, "secret-bulk", 2)
	late := newOpsUsers(t, "secret-late", 1)[0]
	shapes := newOpsUsers(t, "secret-shapes", 1)[0]
	all := append([]opsUser{late, shapes}, migrants...)
	e := NewEnv(t, EnvOptions{
		Fake: addToFake(all, nil),
		Site: func(s *SiteConfig) { s.Extra = "exchange_timeout 2s" },
	})
	if cfg := e.Caddy.Config(); !strings.Contains(cfg, "client_secret {env.AMOCRM_CLIENT_SECRET}") ||
		!strings.Contains(cfg, "encryption_key {env.AMOBRIDGE_STORE_KEY}") || !strings.Contains(cfg, "\tdebug\n") {
		t.Fatalf("the test's Caddyfile must give the secrets as {env.VAR} at debug level:\n%s", cfg)
	}
	tr := &transcript{}
	secrets := secretSet{}
	var sessions []string
	form := http.Header{"Content-Type": {"application/x-www-form-urlencoded"}}
	do := func(what, method, path string, h http.Header, body string) *Response {
		t.Helper()
		var rd io.Reader
		if body != "" {
			rd = strings.NewReader(body)
		}
		r := e.Do(method, path, h, rd)
		tr.addResponse(what, r)
		for _, c := range (&http.Response{Header: r.Header}).Cookies() {
			if c.Name == "session_id" && c.Value != "" {
				sessions = append(sessions, c.Value)
			}
		}
		return r
	}
	want := func(what string, r *Response, status int) {
		t.Helper()
		if r.Status != status {
			t.Errorf("%s: status %d; want %d; body: %s", what, r.Status, status, r.Body)
		}
	}

	// Requests in every credential shape.
	q := e.LegacyQuery("")
	want("first request (exchange)", do("first request", http.MethodGet, "/api/v2/account?"+q, nil, ""), 200)
	want("hit", do("hit", http.MethodGet, "/private/api/v2/json/accounts/current?"+q, nil, ""), 200)
	want("form body", do("form body", http.MethodPost, "/private/api/v2/json/leads/set", form, q+"&request%5Bleads%5D%5Badd%5D%5B0%5D%5Bname%5D=x"), 200)
	want("JSON body", do("JSON body", http.MethodPost, "/api/v2/leads", http.Header{"Content-Type": {"application/json"}},
		fmt.Sprintf(`{"USER_LOGIN":%q,"USER_HASH":%q,"add":[{"name":"x"}]}`, testLogin, e.APIKey)), 200)
	do("unsorted", http.MethodGet, "/api/unsorted/list?login="+strings.ReplaceAll(testLogin, "@", "%40")+"&api_key="+e.APIKey, nil, "")
	// A second user in every shape, for its exchange.
	want("second user", do("second user", http.MethodPost, "/private/api/v2/json/leads/set", form, legacyQueryFor(shapes.Login, shapes.Key)), 200)
	// auth.php, its session, and its errors.
	want("auth.php form", do("auth.php", http.MethodPost, "/private/api/auth.php?type=json", form, q), 200)
	want("auth.php XML", do("auth.php XML", http.MethodGet, "/private/api/auth.php?"+q, nil, ""), 200)
	if len(sessions) == 0 {
		t.Fatal("auth.php set no session cookie")
	}
	want("session", do("session", http.MethodGet, "/api/v2/account", http.Header{"Cookie": {"session_id=" + sessions[0]}}, ""), 200)
	wrongKey := randomHex(t, 20)
	secrets.add("a wrong API key", wrongKey)
	want("auth.php wrong key", do("auth.php wrong key", http.MethodPost, "/private/api/auth.php?type=json", form,
		legacyQueryFor(testLogin, wrongKey)), 401)
	want("wrong key", do("wrong key", http.MethodGet, "/api/v2/account?"+legacyQueryFor(testLogin, wrongKey), nil, ""), 401)
	want("half credential", do("half credential", http.MethodGet, "/api/v2/account?USER_HASH="+e.APIKey, nil, ""), 400)
	want("unknown session", do("unknown session", http.MethodGet, "/api/v2/account", http.Header{"Cookie": {"session_id=" + randomHex(t, 16)}}, ""), 401)
	// A forged callback: its code must not be echoed or logged.
	forged := "def50200" + randomHex(t, 40)
	secrets.add("a forged code", forged)
	want("forged callback", do("forged callback", http.MethodGet, "/amocrm/oauth/callback?code="+forged+"&state="+randomHex(t, 16)+
		"&from_exchange=1&client_id="+testClient, nil, ""), 400)
	// A code that comes after the request gave up (504), then completes.
	e.Fake.SetHoldCallbacks(true)
	want("held callback", do("held callback", http.MethodGet, "/api/v2/account?"+legacyQueryFor(late.Login, late.Key), nil, ""), 504)
	e.Fake.SetHoldCallbacks(false)
	if n := e.Fake.DeliverPending(); n != 1 {
		t.Errorf("%d held callbacks delivered; want 1", n)
	}
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(string(admin(e, tr, http.MethodGet, "/amocrm/tokens", "", nil).Body), late.Login) {
		if time.Now().After(deadline) {
			t.Fatal("the late code never completed the exchange")
		}
		time.Sleep(50 * time.Millisecond)
	}
	want("after the late code", do("after the late code", http.MethodGet, "/api/v2/account?"+legacyQueryFor(late.Login, late.Key), nil, ""), 200)
	// A refresh: amoCRM refuses the access token, the module refreshes and
	// replays. (The answer itself is not asserted here: TestMetricsReplay.)
	if err := e.Fake.ExpireAccess(testAccount, testLogin); err != nil {
		t.Fatal(err)
	}
	if resp, err := client.Get(e.Caddy.BaseURL() + "/api/v2/account?" + q); err == nil {
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		tr.addResponse("replay", &Response{Status: resp.StatusCode, Header: resp.Header, Body: b})
	}
	if e.Fake.Stats().Refreshes != 1 {
		t.Errorf("amoCRM saw %d refreshes; want 1", e.Fake.Stats().Refreshes)
	}
	// amoCRM down.
	e.Fake.SetDown(true)
	want("amoCRM down", do("amoCRM down", http.MethodGet, "/api/v2/account?"+legacyQueryFor(shapes.Login, shapes.Key), nil, ""), 502)
	e.Fake.SetDown(false)

	// Operations: a migration, the admin API, the commands.
	var csv strings.Builder
	for _, u := range migrants {
		fmt.Fprintf(&csv, "%s,%s,%s\n", testAccount, u.Login, u.Key)
	}
	if out, code := amocrmCommand(e, tr, e.Caddy.AdminAddr, "migrate", "--file", writeFile(e, "users.csv", csv.String()), "--poll", "100ms"); code != 0 {
		t.Errorf("migrate: exit %d\n%s", code, out)
	}
	admin(e, tr, http.MethodGet, "/amocrm/migrations", "", nil)
	admin(e, tr, http.MethodGet, "/amocrm/tokens", "", nil)
	admin(e, tr, http.MethodGet, "/config/", "", nil)
	admin(e, tr, http.MethodGet, "/metrics", "", nil)
	admin(e, tr, http.MethodPost, "/amocrm/migrations", "text/csv", strings.NewReader("acme,x@example.com\n")) // 400
	amocrmCommand(e, tr, e.Caddy.AdminAddr, "tokens")
	amocrmCommand(e, tr, e.Caddy.AdminAddr, "tokens", "--json")
	amocrmCommand(e, tr, e.Caddy.AdminAddr, "revoke", "--account", testAccount, "--login", migrants[1].Login)
	cfgPath := writeFile(e, "Caddyfile.check", e.Caddyfile())
	for _, args := range [][]string{
		{"adapt", "--adapter", "caddyfile", "--config", cfgPath},
		{"validate", "--adapter", "caddyfile", "--config", cfgPath},
	} {
		out, err := e.Caddy.Command(args...)
		tr.add("caddy "+args[0], out)
		if err != nil {
			t.Errorf("caddy %s: %v\n%s", args[0], err, out)
		}
	}

	// Stop Caddy: every log line is written, and the store can be read.
	e.Caddy.Stop()
	logs, access := e.Caddy.Logs(), e.AccessLog()
	if !strings.Contains(access, "/api/v2/account") || !strings.Contains(logs, `"level":"debug"`) {
		t.Fatalf("the logs are not what the test needs: access log %d bytes, Caddy's log without debug lines", len(access))
	}

	// Every secret of the run.
	for name, v := range e.Secrets() {
		secrets.add(name, v)
	}
	for _, u := range all {
		secrets.add("API key of "+u.Login, u.Key)
	}
	for i, s := range sessions {
		secrets.add(fmt.Sprintf("session id #%d", i+1), s)
	}
	stored := storedTokens(t, e)
	for i, tk := range stored {
		secrets.add(fmt.Sprintf("stored access token #%d (%s)", i+1, tk.Login), tk.AccessToken)
		secrets.add(fmt.Sprintf("stored refresh token #%d (%s)", i+1, tk.Login), tk.RefreshToken)
	}
	if len(stored) < 4 || len(e.Codes()) < 5 {
		t.Errorf("the run made %d stored tokens and %d codes; the workload did not go as planned", len(stored), len(e.Codes()))
	}
	t.Logf("scanning for %d secrets: %d log bytes, %d access-log bytes, %d answers and outputs",
		len(secrets), len(logs), len(access), len(tr.all()))

	// Session ids belong in Set-Cookie answers; nowhere else.
	for _, x := range tr.all() {
		for _, name := range secrets.find(x.text) {
			if strings.HasPrefix(name, "session id") && strings.Contains(x.text, "Set-Cookie: session_id=") {
				continue
			}
			t.Errorf("%s holds the %s", x.where, name)
		}
	}
	for _, name := range secrets.find(logs) {
		t.Errorf("Caddy's log holds the %s: %s", name, firstLineWith(logs, secrets[name]))
	}
	for _, name := range secrets.find(access) {
		t.Errorf("the access log holds the %s: %s", name, firstLineWith(access, secrets[name]))
	}
	for _, s := range []string{"USER_HASH=", "api_key=", "code=def50200"} {
		if strings.Contains(access, s) {
			t.Errorf("the access log holds %q: %s", s, firstLineWith(access, s))
		}
	}

	// The encrypted store's files hold no token, key or secret.
	for _, hit := range scanDir(t, e.Site.StoreDir, secrets) {
		t.Errorf("the encrypted store: %s", hit)
	}
	if strings.Contains(logs, "token store is not encrypted") {
		t.Errorf("Caddy warned that an encrypted store is not encrypted")
	}
	e.AssertNoViolations()
}

// TestStoreWithoutEncryptionKey: without encryption_key Caddy warns at start,
// and the store's files hold the tokens readable (which the warning is
// about) but never an API key or the client secret.
func TestStoreWithoutEncryptionKey(t *testing.T) {
	needCaddy(t)
	e := NewEnv(t, EnvOptions{Site: func(s *SiteConfig) { s.Encrypt = false }})
	if r := e.Get("/api/v2/account?" + e.LegacyQuery("")); r.Status != http.StatusOK {
		t.Fatalf("legacy request: status %d; body %s", r.Status, r.Body)
	}
	e.Caddy.Stop()
	logs := e.Caddy.Logs()
	warning := firstLineWith(logs, "token store is not encrypted at rest")
	if warning == "" {
		t.Fatalf("Caddy logged no warning about the unencrypted store:\n%s", tail(logs, 40))
	}
	for _, want := range []string{`"level":"warn"`, `"logger":"http.handlers.amocrm_auth"`, e.Site.StoreDir, "encryption_key"} {
		if !strings.Contains(warning, want) {
			t.Errorf("the warning lacks %s: %s", want, warning)
		}
	}
	stored := storedTokens(t, e)
	if len(stored) != 1 {
		t.Fatalf("%d stored tokens; want 1", len(stored))
	}
	keys := secretSet{}
	keys.add("API key", e.APIKey)
	keys.add("client secret", e.ClientSecret)
	for _, hit := range scanDir(t, e.Site.StoreDir, keys) {
		t.Errorf("the plain store: %s", hit)
	}
	// The scan does see plain bytes: the access token is there.
	tokens := secretSet{}
	tokens.add("access token", stored[0].AccessToken)
	if hits := scanDir(t, e.Site.StoreDir, tokens); len(hits) == 0 {
		t.Errorf("the access token is not found in the plain store's files: the scan of the encrypted store proves nothing")
	}
}

// storedTokens opens the test's token store (Caddy must be stopped) and
// returns its tokens.
func storedTokens(t *testing.T, e *Env) []tokenstore.Token {
	t.Helper()
	o := tokenstore.Options{Path: e.Site.StoreDir}
	if e.Site.Encrypt {
		k, err := hex.DecodeString(e.StoreKey)
		if err != nil {
			t.Fatal(err)
		}
		o.EncryptionKey = k
	}
	s, err := tokenstore.Open(o)
	if err != nil {
		t.Fatalf("opening the store after Caddy stopped: %v", err)
	}
	defer s.Close()
	var out []tokenstore.Token
	err = s.List(context.Background(), func(tk *tokenstore.Token) error {
		out = append(out, *tk)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// scanDir reads every file under dir and reports which secrets it holds as
// plain bytes (tokenstore turns Badger's compression off, so a value written
// unencrypted is found as it is).
func scanDir(t *testing.T, dir string, secrets secretSet) []string {
	t.Helper()
	var hits []string
	files := 0
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		files++
		for name, v := range secrets {
			if bytes.Contains(b, []byte(v)) {
				hits = append(hits, fmt.Sprintf("%s holds the %s", filepath.Base(p), name))
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if files == 0 {
		t.Fatalf("no file in the store directory %s", dir)
	}
	return hits
}

// firstLineWith returns the first line of text containing s, with s masked.
func firstLineWith(text, s string) string {
	for _, l := range strings.Split(text, "\n") {
		if strings.Contains(l, s) {
			if len(s) >= 8 {
				l = strings.ReplaceAll(l, s, "[SECRET]")
			}
			return l
		}
	}
	return ""
}
