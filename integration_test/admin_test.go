package integration_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/amobridge/amobridge/integration_test/fakeamocrm"
)

// The admin API (admin.api.amocrm) and the `caddy amocrm` command that
// drives it, through the real Caddy: listing tokens, revoking one, and bulk
// migrations from CSV and JSON lists.

// tokenFields are the fields of a listed token: nothing else may appear.
var tokenFields = map[string]bool{"store": true, "account": true, "login": true, "access_expiry": true,
	"issued_at": true, "refresh_age": true, "last_used": true}

// TestAdminTokensAndRevoke lists the stored tokens through the admin API and
// `caddy amocrm tokens`, revokes one user's token through `caddy amocrm
// revoke`, and checks that the user's next request needs a new exchange,
// which amoCRM's interval then governs.
func TestAdminTokensAndRevoke(t *testing.T) {
	needCaddy(t)
	second := newOpsUsers(t, "admin", 1)[0]
	e := NewEnv(t, EnvOptions{
		// A short exchange interval so that the re-exchange after the revoke
		// happens within the test; the fake's own limit stays under it.
		Fake: addToFake([]opsUser{second}, func(o *fakeamocrm.Options) { o.ExchangeInterval = time.Second }),
		Site: func(s *SiteConfig) { s.Extra = "exchange_interval 3s\n\t\trate_limit 0" },
	})
	tr := &transcript{}
	start := time.Now()
	for _, u := range []opsUser{{testLogin, e.APIKey}, second} {
		r := e.Get("/api/v2/account?" + legacyQueryFor(u.Login, u.Key))
		tr.addResponse("legacy request", r)
		if r.Status != http.StatusOK {
			t.Fatalf("first request of %s: status %d; body: %s", u.Login, r.Status, r.Body)
		}
	}
	firstExchange := time.Now()

	// GET /amocrm/tokens: both users, the documented fields only.
	r := admin(e, tr, http.MethodGet, "/amocrm/tokens", "", nil)
	if r.Status != http.StatusOK {
		t.Fatalf("GET /amocrm/tokens: status %d; body: %s", r.Status, r.Body)
	}
	if cc := r.Header.Get("Cache-Control"); cc != "no-store" {
		t.Errorf("GET /amocrm/tokens: Cache-Control %q; want no-store", cc)
	}
	var raw []map[string]any
	r.JSON(t, &raw)
	if len(raw) != 2 {
		t.Fatalf("GET /amocrm/tokens listed %d tokens; want 2:\n%s", len(raw), r.Body)
	}
	for _, m := range raw {
		for k := range m {
			if !tokenFields[k] {
				t.Errorf("a listed token has the field %q; the admin API shows only %v", k, tokenFields)
			}
		}
	}
	var list []struct {
		Account      string     `json:"account"`
		Login        string     `json:"login"`
		AccessExpiry time.Time  `json:"access_expiry"`
		IssuedAt     time.Time  `json:"issued_at"`
		RefreshAge   string     `json:"refresh_age"`
		LastUsed     *time.Time `json:"last_used"`
	}
	r.JSON(t, &list)
	wantLogins := []string{second.Login, testLogin} // sorted by account, then login
	for i, tk := range list {
		if tk.Account != testAccount || tk.Login != wantLogins[i] {
			t.Errorf("token %d: %s/%s; want %s/%s", i, tk.Account, tk.Login, testAccount, wantLogins[i])
		}
		if d := time.Until(tk.AccessExpiry); d < 23*time.Hour || d > 25*time.Hour {
			t.Errorf("%s: access_expiry %v is not about 24 h ahead", tk.Login, tk.AccessExpiry)
		}
		if tk.IssuedAt.Before(start.Add(-time.Second)) || tk.IssuedAt.After(time.Now()) {
			t.Errorf("%s: issued_at %v is not the time of its exchange", tk.Login, tk.IssuedAt)
		}
		if d, err := time.ParseDuration(tk.RefreshAge); err != nil || d < 0 || d > time.Minute {
			t.Errorf("%s: refresh_age %q; want a short duration", tk.Login, tk.RefreshAge)
		}
		if tk.LastUsed == nil || tk.LastUsed.Before(start.Add(-time.Second)) {
			t.Errorf("%s: last_used %v; want the time of its request", tk.Login, tk.LastUsed)
		}
	}
	// ?account= filters.
	if r := admin(e, tr, http.MethodGet, "/amocrm/tokens?account=acme", "", nil); strings.Count(string(r.Body), `"login"`) != 2 {
		t.Errorf("GET /amocrm/tokens?account=acme: %s", r.Body)
	}
	if r := admin(e, tr, http.MethodGet, "/amocrm/tokens?account=other", "", nil); r.Status != http.StatusOK || strings.TrimSpace(string(r.Body)) != "[]" {
		t.Errorf("GET /amocrm/tokens?account=other: status %d %s; want 200 []", r.Status, r.Body)
	}

	// caddy amocrm tokens: a table and JSON.
	out, code := amocrmCommand(e, tr, e.Caddy.AdminAddr, "tokens")
	if code != 0 {
		t.Fatalf("caddy amocrm tokens: exit %d\n%s", code, out)
	}
	for _, want := range []string{"ACCOUNT", "LOGIN", "ACCESS EXPIRES", testLogin, second.Login, "2 token(s)"} {
		if !strings.Contains(out, want) {
			t.Errorf("caddy amocrm tokens: no %q in\n%s", want, out)
		}
	}
	out, code = amocrmCommand(e, tr, e.Caddy.AdminAddr, "tokens", "--json", "--account", testAccount)
	var fromCmd []map[string]any
	if code != 0 || json.Unmarshal([]byte(out), &fromCmd) != nil || len(fromCmd) != 2 {
		t.Errorf("caddy amocrm tokens --json: exit %d, want a JSON list of 2:\n%s", code, out)
	}

	// caddy amocrm revoke: the second user's token is gone.
	out, code = amocrmCommand(e, tr, e.Caddy.AdminAddr, "revoke", "--account", testAccount, "--login", second.Login)
	if code != 0 || !strings.Contains(out, "revoked") {
		t.Fatalf("caddy amocrm revoke: exit %d\n%s", code, out)
	}
	r = admin(e, tr, http.MethodGet, "/amocrm/tokens", "", nil)
	if strings.Contains(string(r.Body), second.Login) || !strings.Contains(string(r.Body), testLogin) {
		t.Errorf("after revoking %s, the list is:\n%s", second.Login, r.Body)
	}
	// Revoking again: nothing to revoke, exit 1 with the reason.
	out, code = amocrmCommand(e, tr, e.Caddy.AdminAddr, "revoke", "--account", testAccount, "--login", second.Login)
	if code != 1 || !strings.Contains(out, "404") {
		t.Errorf("revoking a revoked token: exit %d; want 1 and the admin API's 404:\n%s", code, out)
	}
	out, code = amocrmCommand(e, tr, e.Caddy.AdminAddr, "revoke", "--account", testAccount)
	if code != 1 || !strings.Contains(out, "--login") {
		t.Errorf("revoke without --login: exit %d; want 1 naming --login:\n%s", code, out)
	}
	if r := admin(e, tr, http.MethodDelete, "/amocrm/tokens?account=acme", "", nil); r.Status != http.StatusBadRequest {
		t.Errorf("DELETE /amocrm/tokens without login: status %d; want 400", r.Status)
	}
	if r := admin(e, tr, http.MethodPut, "/amocrm/tokens", "", nil); r.Status != http.StatusMethodNotAllowed {
		t.Errorf("PUT /amocrm/tokens: status %d; want 405", r.Status)
	}

	// The revoked user's next request needs a new exchange. Within the
	// exchange interval it is refused (503 + Retry-After) without calling
	// amoCRM; the old token is not used.
	st := e.Fake.Stats()
	apiBefore := len(apiRequests(e))
	if time.Since(firstExchange) < 2*time.Second {
		r = e.Get("/api/v2/account?" + legacyQueryFor(second.Login, second.Key))
		tr.addResponse("request inside the interval", r)
		if r.Status != http.StatusServiceUnavailable || r.Header.Get("Retry-After") == "" {
			t.Errorf("request of the revoked user inside the exchange interval: status %d, Retry-After %q; want 503 with Retry-After; body: %s",
				r.Status, r.Header.Get("Retry-After"), r.Body)
		}
		if st2 := e.Fake.Stats(); st2.ExchangeCalls != st.ExchangeCalls {
			t.Errorf("inside the interval, exchange_api_key was called again")
		}
		if n := len(apiRequests(e)); n != apiBefore {
			t.Errorf("the revoked user's request reached amoCRM (%d API requests, was %d)", n, apiBefore)
		}
	} else {
		t.Logf("the machine is slow: %v since the exchange; the in-interval check is skipped", time.Since(firstExchange))
	}
	time.Sleep(time.Until(firstExchange.Add(3*time.Second + 200*time.Millisecond)))
	oldTokens := len(e.AccessTokens())
	r = e.Get("/api/v2/account?" + legacyQueryFor(second.Login, second.Key))
	tr.addResponse("request after the interval", r)
	if r.Status != http.StatusOK {
		t.Fatalf("request of the revoked user after the interval: status %d; body: %s", r.Status, r.Body)
	}
	st2 := e.Fake.Stats()
	if st2.ExchangeCalls != st.ExchangeCalls+1 || st2.CodeGrants != st.CodeGrants+1 {
		t.Errorf("after the revoke: %d exchange calls and %d code grants; want %d and %d",
			st2.ExchangeCalls, st2.CodeGrants, st.ExchangeCalls+1, st.CodeGrants+1)
	}
	if n := len(e.AccessTokens()); n != oldTokens+1 {
		t.Errorf("after the revoke amoCRM saw %d distinct tokens; want a new one (%d)", n, oldTokens+1)
	}
	// The other user was never touched.
	if r := e.Get("/api/v2/account?" + e.LegacyQuery("")); r.Status != http.StatusOK || e.Fake.Stats().ExchangeCalls != st2.ExchangeCalls {
		t.Errorf("the other user: status %d, or a new exchange", r.Status)
	}

	e.AssertNoViolations()
	assertTranscriptClean(e, tr, []opsUser{second})
	e.AssertNoSecrets("Caddy's log", e.Caddy.Logs())
}

// TestAdminMigrate runs bulk exchanges with `caddy amocrm migrate` from a CSV
// and a JSON file: progress output, per-user results, exit codes 0, 2 (some
// users not exchanged) and 1 (admin API unreachable), amoCRM's 5-minute rule
// (a user exchanged within it is reported limited and not exchanged again),
// and no key anywhere in the answers.
func TestAdminMigrate(t *testing.T) {
	needCaddy(t)
	users := newOpsUsers(t, "bulk", 6)
	wrong := newOpsUsers(t, "bulk-wrong", 1)[0]
	e := NewEnv(t, EnvOptions{Fake: addToFake(append(append([]opsUser(nil), users...), wrong), nil)})
	tr := &transcript{}

	// 1. CSV with a header, three good users and one wrong key: exit 2.
	var csv strings.Builder
	csv.WriteString("account,login,api_key\n")
	for _, u := range users[:3] {
		fmt.Fprintf(&csv, "%s,%s,%s\n", testAccount, u.Login, u.Key)
	}
	fmt.Fprintf(&csv, "%s, %s ,%s\n", strings.ToUpper(testAccount), wrong.Login, randomHex(t, 20)) // case and spaces are tolerated
	file := writeFile(e, "users.csv", csv.String())
	out, code := amocrmCommand(e, tr, e.Caddy.AdminAddr, "migrate", "--file", file, "--poll", "100ms")
	if code != 2 {
		t.Errorf("migrate with a wrong key: exit %d; want 2\n%s", code, out)
	}
	id := migrationID(t, out, 4)
	if !regexp.MustCompile(`(?m)^\d+/4 done `).MatchString(out) {
		t.Errorf("migrate printed no progress line \"N/4 done ...\":\n%s", out)
	}
	for _, want := range []string{wrong.Login + ": wrong_key", "finished: 3 ok, 1 not exchanged"} {
		if !strings.Contains(out, want) {
			t.Errorf("migrate output lacks %q:\n%s", want, out)
		}
	}
	st := e.Fake.Stats()
	if st.ExchangeCalls != 4 || st.Exchanges != 3 || st.ExchangeRejected != 1 || st.CodeGrants != 3 {
		t.Errorf("after the CSV: %d exchange calls (%d accepted, %d rejected), %d code grants; want 4 (3, 1), 3",
			st.ExchangeCalls, st.Exchanges, st.ExchangeRejected, st.CodeGrants)
	}
	// The migration's record in the admin API.
	r := admin(e, tr, http.MethodGet, "/amocrm/migrations/"+id, "", nil)
	var ms struct {
		ID       string         `json:"id"`
		Finished *time.Time     `json:"finished"`
		Total    int            `json:"total"`
		Done     int            `json:"done"`
		Counts   map[string]int `json:"counts"`
		Results  []struct {
			Account, Login, Status, Detail string
			RetryAfter                     string `json:"retry_after"`
		} `json:"results"`
	}
	r.JSON(t, &ms)
	if ms.ID != id || ms.Finished == nil || ms.Total != 4 || ms.Done != 4 || ms.Counts["ok"] != 3 || ms.Counts["wrong_key"] != 1 {
		t.Errorf("GET /amocrm/migrations/%s: %s", id, r.Body)
	}
	for _, res := range ms.Results {
		if res.Account != testAccount {
			t.Errorf("result for %s names account %q; want %q", res.Login, res.Account, testAccount)
		}
	}
	if r := admin(e, tr, http.MethodGet, "/amocrm/migrations", "", nil); r.Status != http.StatusOK || !strings.Contains(string(r.Body), id) {
		t.Errorf("GET /amocrm/migrations: status %d, the migration %s not listed: %s", r.Status, id, r.Body)
	}
	if r := admin(e, tr, http.MethodGet, "/amocrm/migrations/0000", "", nil); r.Status != http.StatusNotFound {
		t.Errorf("GET of an unknown migration: status %d; want 404", r.Status)
	}
	// The migrated users are served from the store: no new exchange.
	for _, u := range users[:3] {
		if r := e.Get("/api/v2/account?" + legacyQueryFor(u.Login, u.Key)); r.Status != http.StatusOK {
			t.Errorf("%s after the migration: status %d", u.Login, r.Status)
		}
	}
	if st2 := e.Fake.Stats(); st2.ExchangeCalls != st.ExchangeCalls {
		t.Errorf("requests of migrated users exchanged again (%d → %d calls)", st.ExchangeCalls, st2.ExchangeCalls)
	}

	// 2. JSON with the other users: exit 0.
	type entry struct {
		Account string `json:"account"`
		Login   string `json:"login"`
		APIKey  string `json:"api_key"`
	}
	var list []entry
	for _, u := range users[3:] {
		list = append(list, entry{testAccount, u.Login, u.Key})
	}
	b, _ := json.Marshal(list)
	file = writeFile(e, "users.json", string(b))
	out, code = amocrmCommand(e, tr, e.Caddy.AdminAddr, "migrate", "--file", file, "--poll", "100ms")
	if code != 0 || !strings.Contains(out, "finished: 3 ok, 0 not exchanged") {
		t.Errorf("migrate from JSON: exit %d; want 0 and 3 ok:\n%s", code, out)
	}
	migrationID(t, out, 3)

	// 3. The 5-minute rule. users[0] was exchanged a moment ago; its token
	// is revoked. users[1] still has its token. Migrating both again:
	// users[0] is limited (no second exchange within the interval), users[1]
	// is ok from its stored token; exit 2.
	if out, code := amocrmCommand(e, tr, e.Caddy.AdminAddr, "revoke", "--account", testAccount, "--login", users[0].Login); code != 0 {
		t.Fatalf("revoke: exit %d\n%s", code, out)
	}
	st = e.Fake.Stats()
	b, _ = json.Marshal([]entry{{testAccount, users[0].Login, users[0].Key}, {testAccount, users[1].Login, users[1].Key}})
	file = writeFile(e, "again.json", string(b))
	out, code = amocrmCommand(e, tr, e.Caddy.AdminAddr, "migrate", "--file", file, "--poll", "100ms")
	if code != 2 {
		t.Errorf("migrating a user exchanged within the interval: exit %d; want 2\n%s", code, out)
	}
	if !regexp.MustCompile(regexp.QuoteMeta(users[0].Login) + `: limited: .*\(retry after \d`).MatchString(out) {
		t.Errorf("migrate does not report %s as limited with a retry time:\n%s", users[0].Login, out)
	}
	if !strings.Contains(out, "finished: 1 ok, 1 not exchanged") {
		t.Errorf("migrate: want 1 ok (the stored token), 1 not exchanged:\n%s", out)
	}
	if st2 := e.Fake.Stats(); st2.ExchangeCalls != st.ExchangeCalls || st2.Exchange429 != 0 {
		t.Errorf("the second migration called exchange_api_key %d more times (%d answered 429); want none",
			st2.ExchangeCalls-st.ExchangeCalls, st2.Exchange429)
	}

	// 4. Errors: an unreachable admin API (exit 1), a bad list (exit 1),
	// no --file (exit 1).
	dead := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	out, code = amocrmCommand(e, tr, dead, "migrate", "--file", file)
	if code != 1 {
		t.Errorf("migrate against an unreachable admin API: exit %d; want 1\n%s", code, out)
	}
	if _, code := amocrmCommand(e, tr, dead, "tokens"); code != 1 {
		t.Errorf("tokens against an unreachable admin API: exit %d; want 1", code)
	}
	bad := writeFile(e, "bad.csv", "acme,only-two-fields\n")
	out, code = amocrmCommand(e, tr, e.Caddy.AdminAddr, "migrate", "--file", bad)
	if code != 1 || !strings.Contains(out, "400") {
		t.Errorf("migrate with a malformed CSV: exit %d; want 1 and the admin API's 400:\n%s", code, out)
	}
	if out, code := amocrmCommand(e, tr, e.Caddy.AdminAddr, "migrate"); code != 1 || !strings.Contains(out, "--file") {
		t.Errorf("migrate without --file: exit %d; want 1 naming --file:\n%s", code, out)
	}
	// A list through the admin API directly: its answer holds no key.
	r = admin(e, tr, http.MethodPost, "/amocrm/migrations", "text/csv",
		strings.NewReader(fmt.Sprintf("%s,%s,%s\n", testAccount, users[2].Login, users[2].Key)))
	if r.Status != http.StatusAccepted {
		t.Errorf("POST /amocrm/migrations: status %d; want 202: %s", r.Status, r.Body)
	}
	e.AssertNoViolations()
	assertTranscriptClean(e, tr, append(users, wrong))
	e.AssertNoSecrets("Caddy's log", e.Caddy.Logs())
	for _, u := range append(users, wrong) {
		if strings.Contains(e.Caddy.Logs(), u.Key) {
			t.Errorf("Caddy's log holds the API key of %s", u.Login)
		}
	}
}

// TestAdminMigrateRateLimit migrates 30 users of one account at once: the
// bulk exchange must keep to the account's rate limit toward amoCRM
// (rate_limit, 7 per second by default) like requests do, and its progress
// lines must add up.
func TestAdminMigrateRateLimit(t *testing.T) {
	needCaddy(t)
	users := newOpsUsers(t, "paced", 30)
	e := NewEnv(t, EnvOptions{Fake: addToFake(users, func(o *fakeamocrm.Options) { o.CallbackDelay = 150 * time.Millisecond })})
	tr := &transcript{}
	var csv strings.Builder
	for _, u := range users {
		fmt.Fprintf(&csv, "%s,%s,%s\n", testAccount, u.Login, u.Key)
	}
	out, code := amocrmCommand(e, tr, e.Caddy.AdminAddr, "migrate", "--file", writeFile(e, "many.csv", csv.String()), "--poll", "100ms")
	if code != 0 || !strings.Contains(out, "finished: 30 ok, 0 not exchanged") {
		t.Errorf("migrate of 30 users: exit %d; want 0 and 30 ok:\n%s", code, out)
	}
	// Every progress line "N/T done k=v ..." counts T users.
	progress := regexp.MustCompile(`(?m)^(\d+)/(\d+) done((?: [a-z_]+=\d+)*)$`)
	lines := progress.FindAllStringSubmatch(out, -1)
	if len(lines) == 0 {
		t.Errorf("no progress line in:\n%s", out)
	}
	for _, m := range lines {
		total, _ := strconv.Atoi(m[2])
		sum := 0
		for _, kv := range strings.Fields(m[3]) {
			_, v, _ := strings.Cut(kv, "=")
			n, _ := strconv.Atoi(v)
			sum += n
		}
		if sum != total {
			t.Errorf("progress line %q: the counts add up to %d, not %d", m[0], sum, total)
		}
	}
	// exchange_api_key calls per sliding second, for the account.
	var times []time.Time
	for _, r := range e.Fake.Requests() {
		if r.Path == "/oauth2/exchange_api_key" {
			times = append(times, r.Time)
		}
	}
	most := 0
	for i := range times {
		n := 0
		for _, u := range times {
			if !u.Before(times[i]) && u.Sub(times[i]) < time.Second {
				n++
			}
		}
		most = max(most, n)
	}
	t.Logf("%d exchange_api_key calls, at most %d in one second", len(times), most)
	if len(times) != 30 {
		t.Errorf("%d exchange_api_key calls; want 30", len(times))
	}
	if most > 7 {
		t.Errorf("the bulk exchange made %d exchange_api_key calls for one account within one second; rate_limit is 7", most)
	}
	e.AssertNoViolations()
	assertTranscriptClean(e, tr, users)
}

// migrationID returns the id from migrate's first line "migration ID: N user(s)".
func migrationID(t *testing.T, out string, n int) string {
	t.Helper()
	m := regexp.MustCompile(`(?m)^migration ([0-9a-f]+): (\d+) user\(s\)$`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("migrate did not print \"migration ID: N user(s)\":\n%s", out)
	}
	if got, _ := strconv.Atoi(m[2]); got != n {
		t.Errorf("migrate: %d user(s); want %d", got, n)
	}
	return m[1]
}

// assertTranscriptClean fails if any recorded answer or command output holds a
// secret of e, or an API key of users.
func assertTranscriptClean(e *Env, tr *transcript, users []opsUser) {
	e.T.Helper()
	for _, x := range tr.all() {
		e.AssertNoSecrets(x.where, x.text)
		for _, u := range users {
			if strings.Contains(x.text, u.Key) {
				e.T.Errorf("%s holds the API key of %s", x.where, u.Login)
			}
		}
	}
}
