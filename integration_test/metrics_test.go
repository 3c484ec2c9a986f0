package integration_test

import (
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/amobridge/amobridge/integration_test/fakeamocrm"
)

// Caddy serves every collector of the running configuration's metrics
// registry at /metrics on its admin address, with no `metrics` option needed
// (the global `metrics` option only adds Caddy's own per-request HTTP
// metrics). amobridge registers its collectors there; these tests scrape it
// as Prometheus would.

// outcomes of amobridge_requests_total.
var allOutcomes = []string{"passed", "served", "auth_php", "rejected", "malformed", "limited", "failed", "callback"}

// TestMetricsMoveWithRequests sends one request of each kind through Caddy
// and checks that amobridge_requests_total{outcome} and the rate-limit
// counters move exactly as the requests went, that they survive a reload,
// and that no label value carries a login, key or token. Replays:
// TestMetricsReplay.
func TestMetricsMoveWithRequests(t *testing.T) {
	needCaddy(t)
	other := newOpsUsers(t, "metrics", 1)
	e := NewEnv(t, EnvOptions{
		Fake: addToFake(other, nil),
		Site: func(s *SiteConfig) { s.Extra = "rate_limit 0" },
	})
	tr := &transcript{}
	before := scrapeMetrics(e, tr)

	expect := func(what string, r *Response, status int) {
		t.Helper()
		tr.addResponse(what, r)
		if r.Status != status {
			t.Fatalf("%s: status %d, want %d; body: %s", what, r.Status, status, r.Body)
		}
	}
	// passed: no legacy credential.
	expect("request without credentials", e.Get("/api/v4/leads?limit=1"), http.StatusUnauthorized)
	// served: the first request exchanges the key, the next two use the token.
	for i := 0; i < 3; i++ {
		expect("legacy request", e.Get("/api/v2/account?"+e.LegacyQuery("")), http.StatusOK)
	}
	// rejected: amoCRM refuses the key of a user who has no token.
	expect("wrong key", e.Get("/api/v2/account?"+legacyQueryFor(other[0].Login, randomHex(t, 20))), http.StatusUnauthorized)
	// malformed: half a credential.
	expect("half credential", e.Get("/api/v2/account?USER_LOGIN=half%40example.com"), http.StatusBadRequest)
	// auth_php: answered by the module.
	expect("auth.php", e.Do(http.MethodPost, "/private/api/auth.php?type=json",
		http.Header{"Content-Type": {"application/x-www-form-urlencoded"}}, strings.NewReader(e.LegacyQuery(""))), http.StatusOK)
	// failed: amoCRM unreachable.
	e.Fake.SetDown(true)
	expect("amoCRM down", e.Get("/api/v2/account?"+e.LegacyQuery("")), http.StatusBadGateway)
	e.Fake.SetDown(false)

	after := scrapeMetrics(e, tr)
	want := map[string]float64{"passed": 1, "served": 3, "rejected": 1, "malformed": 1, "auth_php": 1, "failed": 1, "callback": 1}
	for _, o := range allOutcomes {
		got := after.get("amobridge_requests_total", "outcome", o) - before.get("amobridge_requests_total", "outcome", o)
		if got != want[o] {
			t.Errorf("amobridge_requests_total{outcome=%q} moved by %v; want %v", o, got, want[o])
		}
	}
	for name, w := range map[string]float64{
		"amobridge_replays_total":               0,
		"amobridge_rate_limit_waits_total":      0, // rate_limit 0: nobody waits
		"amobridge_rate_limit_rejections_total": 0,
	} {
		if got := after.get(name) - before.get(name); got != w {
			t.Errorf("%s moved by %v; want %v", name, got, w)
		}
	}
	for _, name := range []string{"amobridge_replays_total", "amobridge_rate_limit_waits_total",
		"amobridge_rate_limit_rejections_total", "amobridge_rate_limit_wait_seconds_count",
		"amobridge_exchange_duration_seconds_count", "amobridge_refresh_duration_seconds_count"} {
		if !after.has(name) {
			t.Errorf("/metrics does not export %s", name)
		}
	}
	assertCleanMetrics(t, e, after, other)

	// The broker's events: exchanges, lookups (the refresh: TestMetricsReplay).
	for _, c := range []struct {
		name   string
		labels []string
		want   float64
	}{
		{"amobridge_exchanges_total", []string{"result", "ok"}, 1},
		{"amobridge_exchanges_total", []string{"result", "rejected"}, 1},
		{"amobridge_exchange_duration_seconds_count", nil, 2},
		{"amobridge_refreshes_total", []string{"result", "ok"}, 0},
		{"amobridge_store_lookups_total", []string{"result", "miss"}, 2}, // the first request of each user
		{"amobridge_store_lookups_total", []string{"result", "hit"}, 4},  // two more requests, auth.php, the one while amoCRM was down
	} {
		if got := after.get(c.name, c.labels...) - before.get(c.name, c.labels...); got != c.want {
			t.Errorf("%s%q moved by %v; want %v", c.name, c.labels, got, c.want)
		}
	}

	// The collectors live across reloads: the counters keep counting.
	t.Run("reload", func(t *testing.T) {
		e.Site.Extra = "rate_limit 0\n\t\tsession_ttl 16m"
		if out, err := e.Caddy.Reload(e.Caddyfile()); err != nil {
			t.Fatalf("caddy reload: %v\n%s", err, out)
		}
		served := after.get("amobridge_requests_total", "outcome", "served")
		expect("legacy request after reload", e.Get("/api/v2/account?"+e.LegacyQuery("")), http.StatusOK)
		reloaded := scrapeMetrics(e, tr)
		if got := reloaded.get("amobridge_requests_total", "outcome", "served"); got != served+1 {
			t.Errorf("after a reload and one request, served = %v; want %v (the count before the reload + 1)", got, served+1)
		}
		for _, o := range allOutcomes {
			if o == "served" {
				continue
			}
			if got, was := reloaded.get("amobridge_requests_total", "outcome", o), after.get("amobridge_requests_total", "outcome", o); got != was {
				t.Errorf("after a reload, requests_total{outcome=%q} = %v; want %v as before it", o, got, was)
			}
		}
	})
	e.AssertNoViolations()
	for _, x := range tr.all() {
		e.AssertNoSecrets(x.where, x.text)
	}
}

// TestMetricsReplay: amoCRM refuses a token it issued (expired early); the
// module refreshes once and replays the request, which then succeeds, and
// amobridge_replays_total counts it. (The replay's answer must carry only its
// own headers: reverse_proxy writes the first attempt's into the shared
// header map, so they must be cleared before the replay.)
func TestMetricsReplay(t *testing.T) {
	needCaddy(t)
	e := NewEnv(t, EnvOptions{Site: func(s *SiteConfig) { s.Extra = "rate_limit 0" }})
	get := func(what string) (*http.Response, []byte) {
		t.Helper()
		resp, err := client.Get(e.Caddy.BaseURL() + "/api/v2/account?" + e.LegacyQuery("n=1"))
		if err != nil {
			t.Fatalf("%s: the request failed: %v", what, redactErr(err, e.APIKey))
		}
		defer resp.Body.Close()
		var b strings.Builder
		if _, err := io.Copy(&b, resp.Body); err != nil {
			t.Fatalf("%s: reading the answer: %v", what, err)
		}
		return resp, []byte(b.String())
	}
	if resp, body := get("first request"); resp.StatusCode != http.StatusOK {
		t.Fatalf("first request: status %d; body %s", resp.StatusCode, body)
	}
	before := scrapeMetrics(e, nil)
	if err := e.Fake.ExpireAccess(testAccount, testLogin); err != nil {
		t.Fatal(err)
	}
	resp, body := get("request with a token amoCRM refuses")
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("replayed request: status %d; want 200; body %s", resp.StatusCode, body)
	}
	var ec echo
	if err := json.Unmarshal(body, &ec); err != nil || ec.Fake.Path != "/api/v2/account" {
		t.Errorf("replayed request: the answer is not amoCRM's (%v): %s", err, body)
	}
	if n := len(resp.Header.Values("Content-Length")); n > 1 {
		t.Errorf("the answer has %d Content-Length headers", n)
	}
	if ct := resp.Header.Values("Content-Type"); len(ct) != 1 || !strings.Contains(ct[0], "json") {
		t.Errorf("the answer's Content-Type: %q; want amoCRM's one", ct)
	}
	after := scrapeMetrics(e, nil)
	for _, name := range []string{"amobridge_replays_total", "amobridge_refresh_duration_seconds_count"} {
		if got := after.get(name) - before.get(name); got != 1 {
			t.Errorf("%s moved by %v; want 1", name, got)
		}
	}
	if got := after.get("amobridge_refreshes_total", "result", "ok") - before.get("amobridge_refreshes_total", "result", "ok"); got != 1 {
		t.Errorf("amobridge_refreshes_total{result=ok} moved by %v; want 1", got)
	}
	if got := after.get("amobridge_replays_total") - before.get("amobridge_replays_total"); got != 1 {
		t.Errorf("amobridge_replays_total moved by %v; want 1", got)
	}
	if got := after.get("amobridge_requests_total", "outcome", "served") - before.get("amobridge_requests_total", "outcome", "served"); got != 1 {
		t.Errorf("requests_total{outcome=served} moved by %v; want 1 (a replay is one request)", got)
	}
	if st := e.Fake.Stats(); st.Refreshes != 1 || st.API401 != 1 {
		t.Errorf("amoCRM saw %d refreshes and %d refused API calls; want 1 and 1", st.Refreshes, st.API401)
	}
	e.AssertNoViolations()
	e.AssertNoSecrets("Caddy's log", e.Caddy.Logs())
}

// redactErr returns err's text without the secret (net/http errors quote the URL).
func redactErr(err error, secret string) string {
	return strings.ReplaceAll(err.Error(), secret, "[REDACTED]")
}

// TestMetricsRateLimit sends a burst for one account through rate_limit 1:
// some requests wait their turn, those that would wait over the queue's
// bound get 429, and the counters say so.
func TestMetricsRateLimit(t *testing.T) {
	needCaddy(t)
	e := NewEnv(t, EnvOptions{Site: func(s *SiteConfig) { s.Extra = "rate_limit 1" }})
	if r := e.Get("/api/v2/account?" + e.LegacyQuery("")); r.Status != http.StatusOK {
		t.Fatalf("warm-up request: status %d; body: %s", r.Status, r.Body)
	}
	time.Sleep(1100 * time.Millisecond) // the bucket is full again
	before := scrapeMetrics(e, nil)

	const n = 8 // at ~1/s, the last ones would wait more than the queue's 5 s
	statuses := make([]int, n)
	retry := make([]string, n)
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := client.Get(e.Caddy.BaseURL() + "/api/v2/account?" + e.LegacyQuery(""))
			if err != nil {
				t.Errorf("request %d: %v", i, err)
				return
			}
			resp.Body.Close()
			statuses[i], retry[i] = resp.StatusCode, resp.Header.Get("Retry-After")
		}()
	}
	wg.Wait()
	served, limited := 0, 0
	for i, s := range statuses {
		switch s {
		case http.StatusOK:
			served++
		case http.StatusTooManyRequests:
			limited++
			if retry[i] == "" {
				t.Errorf("a 429 without Retry-After")
			}
		default:
			t.Errorf("request %d: status %d; want 200 or 429", i, s)
		}
	}
	t.Logf("burst of %d at rate_limit 1: %d served, %d refused", n, served, limited)
	after := scrapeMetrics(e, nil)
	d := func(name string, labels ...string) float64 {
		return after.get(name, labels...) - before.get(name, labels...)
	}
	if limited == 0 {
		t.Errorf("no request of a burst of %d at 1/s was refused", n)
	}
	if got := d("amobridge_rate_limit_rejections_total"); got != float64(limited) {
		t.Errorf("amobridge_rate_limit_rejections_total moved by %v; %d requests got 429", got, limited)
	}
	if got := d("amobridge_requests_total", "outcome", "limited"); got != float64(limited) {
		t.Errorf("requests_total{outcome=limited} moved by %v; want %d", got, limited)
	}
	if got := d("amobridge_requests_total", "outcome", "served"); got != float64(served) {
		t.Errorf("requests_total{outcome=served} moved by %v; want %d", got, served)
	}
	waits := d("amobridge_rate_limit_waits_total")
	if waits < 1 || waits > float64(served) {
		t.Errorf("amobridge_rate_limit_waits_total moved by %v; want between 1 and %d (served requests that queued)", waits, served)
	}
	if got := d("amobridge_rate_limit_wait_seconds_count"); got != waits {
		t.Errorf("rate_limit_wait_seconds_count moved by %v; waits moved by %v", got, waits)
	}
	if got := d("amobridge_rate_limit_wait_seconds_sum"); got < 0.5 || got > float64(n)*5 {
		t.Errorf("rate_limit_wait_seconds_sum moved by %.3f s; want a plausible total wait", got)
	}
	if st := e.Fake.Stats(); st.MaxPerSlidingSecond[testAccount] > 2 {
		t.Errorf("amoCRM saw %d requests in one second at rate_limit 1", st.MaxPerSlidingSecond[testAccount])
	}
	e.AssertNoViolations()
}

// assertCleanMetrics fails t if a metric of amobridge has an unexpected label
// or a label value that could name a user or hold a secret, or if /metrics
// holds a secret anywhere.
func assertCleanMetrics(t *testing.T, e *Env, s *scrape, others []opsUser) {
	t.Helper()
	allowed := map[string]bool{"outcome": true, "result": true, "le": true}
	logins := []string{testLogin}
	for _, u := range others {
		logins = append(logins, u.Login)
	}
	for _, sm := range s.amobridge() {
		for k, v := range sm.Labels {
			if !allowed[k] {
				t.Errorf("%s has the label %q; amobridge's labels are outcome, result (and le)", sm.Name, k)
			}
			if strings.Contains(v, "@") || len(v) > 32 {
				t.Errorf("%s{%s=%.40q}: a label value that looks like a login or a token", sm.Name, k, v)
			}
		}
	}
	for _, l := range logins {
		if strings.Contains(s.text, l) {
			t.Errorf("/metrics names the user %s", l)
		}
	}
	for _, u := range others {
		if strings.Contains(s.text, u.Key) {
			t.Errorf("/metrics holds the API key of %s", u.Login)
		}
	}
	e.AssertNoSecrets("/metrics", s.text)
}

// TestGrafanaDashboard checks grafana/amobridge-dashboard.json: valid JSON, a
// Prometheus datasource variable used by every panel, and every metric it
// queries defined in caddymodule/metrics.go (histogram series by their
// _bucket, _sum or _count names).
func TestGrafanaDashboard(t *testing.T) {
	root := repoRoot
	if root == "" {
		var err error
		if root, err = findRoot(); err != nil {
			t.Fatal(err)
		}
	}
	raw, err := os.ReadFile(filepath.Join(root, "grafana", "amobridge-dashboard.json"))
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		Title      string `json:"title"`
		UID        string `json:"uid"`
		Templating struct {
			List []struct {
				Name  string `json:"name"`
				Type  string `json:"type"`
				Query any    `json:"query"`
			} `json:"list"`
		} `json:"templating"`
		Panels []dashPanel `json:"panels"`
	}
	if err := json.Unmarshal(raw, &dash); err != nil {
		t.Fatalf("the dashboard is not valid JSON: %v", err)
	}
	if dash.Title == "" || dash.UID == "" {
		t.Errorf("the dashboard has no title or uid")
	}
	dsVar := ""
	for _, v := range dash.Templating.List {
		if v.Type == "datasource" && v.Query == "prometheus" {
			dsVar = v.Name
		}
	}
	if dsVar == "" {
		t.Fatalf("no datasource variable of type prometheus in templating.list")
	}

	defined := definedMetrics(t, filepath.Join(root, "caddymodule", "metrics.go"))
	metricRE := regexp.MustCompile(`\bamobridge_[a-z0-9_]+`)
	queried := map[string]bool{}
	var panels []dashPanel
	var walk func([]dashPanel)
	walk = func(ps []dashPanel) {
		for _, p := range ps {
			panels = append(panels, p)
			walk(p.Panels)
		}
	}
	walk(dash.Panels)
	ids := map[int]bool{}
	for _, p := range panels {
		if p.Type == "row" {
			continue
		}
		if ids[p.ID] {
			t.Errorf("panel id %d is used twice", p.ID)
		}
		ids[p.ID] = true
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		if ds := dsUID(p.Datasource); ds != "${"+dsVar+"}" {
			t.Errorf("panel %q uses datasource %q; want ${%s}", p.Title, ds, dsVar)
		}
		for _, q := range p.Targets {
			if q.Expr == "" {
				t.Errorf("panel %q has a query without expr", p.Title)
			}
			if ds := dsUID(q.Datasource); ds != "" && ds != "${"+dsVar+"}" {
				t.Errorf("panel %q: a query uses datasource %q; want ${%s}", p.Title, ds, dsVar)
			}
			names := metricRE.FindAllString(q.Expr, -1)
			if len(names) == 0 {
				t.Errorf("panel %q: query %q uses no amobridge metric", p.Title, q.Expr)
			}
			for _, n := range names {
				queried[n] = true
				if !defined[n] {
					t.Errorf("panel %q queries %s, which caddymodule/metrics.go does not define", p.Title, n)
				}
			}
		}
	}
	// Every family the module defines is shown somewhere.
	for name := range defined {
		if strings.HasSuffix(name, "_sum") || strings.HasSuffix(name, "_count") {
			continue // histograms are shown through _bucket
		}
		base := strings.TrimSuffix(name, "_bucket")
		shown := false
		for q := range queried {
			if strings.HasPrefix(q, base) {
				shown = true
			}
		}
		if !shown {
			t.Errorf("no panel shows %s", name)
		}
	}
	got := make([]string, 0, len(queried))
	for q := range queried {
		got = append(got, q)
	}
	sort.Strings(got)
	t.Logf("%d panels query %s", len(panels), strings.Join(got, ", "))
}

type dashPanel struct {
	ID         int         `json:"id"`
	Type       string      `json:"type"`
	Title      string      `json:"title"`
	Datasource any         `json:"datasource"`
	Targets    []dashQuery `json:"targets"`
	Panels     []dashPanel `json:"panels"`
}

type dashQuery struct {
	Expr       string `json:"expr"`
	Datasource any    `json:"datasource"`
}

// dsUID returns a panel's or query's datasource reference: a string, or the
// uid of an object {type, uid}.
func dsUID(v any) string {
	switch d := v.(type) {
	case string:
		return d
	case map[string]any:
		s, _ := d["uid"].(string)
		return s
	}
	return ""
}

// definedMetrics reads the metric names caddymodule/metrics.go defines
// (namespace amobridge; Name: "..." in its Opts), with the series names a
// histogram adds.
func definedMetrics(t *testing.T, path string) map[string]bool {
	t.Helper()
	src, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(src), `ns = "amobridge"`) {
		t.Fatalf("%s: the namespace is no longer `ns = \"amobridge\"`; update this test", path)
	}
	re := regexp.MustCompile(`prometheus\.New(Counter|CounterVec|Histogram|HistogramVec|Gauge|GaugeVec|Summary|SummaryVec)\(prometheus\.\w+Opts\{[^}]*?Name:\s*"([a-z0-9_]+)"`)
	out := map[string]bool{}
	for _, m := range re.FindAllStringSubmatch(string(src), -1) {
		name := "amobridge_" + m[2]
		switch {
		case strings.HasPrefix(m[1], "Histogram"):
			out[name+"_bucket"], out[name+"_sum"], out[name+"_count"] = true, true, true
		case strings.HasPrefix(m[1], "Summary"):
			out[name], out[name+"_sum"], out[name+"_count"] = true, true, true
		default:
			out[name] = true
		}
	}
	// The collector of the stores' figures (storeCollector) names its
	// metrics through desc("name", help).
	for _, m := range regexp.MustCompile(`\bdesc\("([a-z0-9_]+)"`).FindAllStringSubmatch(string(src), -1) {
		out["amobridge_"+m[1]] = true
	}
	if len(out) < 5 {
		t.Fatalf("%s: found only %d metrics; has the file's shape changed?", path, len(out))
	}
	return out
}

// TestMetricsTokenCensus checks the keeper's gauges: after a user's first
// request, amobridge_tokens{state="fresh"} counts it, and once its access
// token nears expiry (8 s tokens, refresh_ahead 4s) it moves to refresh_due
// or expired; the oldest refresh token's age is set.
func TestMetricsTokenCensus(t *testing.T) {
	needCaddy(t)
	e := NewEnv(t, EnvOptions{
		Fake: func(o *fakeamocrm.Options) { o.AccessTTL = 8 * time.Second },
		Site: func(s *SiteConfig) { s.Extra = "keeper_interval 1s\n\t\trefresh_ahead 4s" },
	})
	if r := e.Get("/api/v2/account?" + e.LegacyQuery("")); r.Status != http.StatusOK {
		t.Fatalf("first request: %d %.200s", r.Status, r.Body)
	}
	var s *scrape
	waitFor := func(what string, cond func(*scrape) bool) {
		t.Helper()
		deadline := time.Now().Add(20 * time.Second)
		for {
			s = scrapeMetrics(e, nil)
			if cond(s) {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: not seen in /metrics within 20 s", what)
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
	waitFor("one fresh token", func(s *scrape) bool { return s.get("amobridge_tokens", "state", "fresh") == 1 })
	waitFor("the token due for refresh", func(s *scrape) bool {
		return s.get("amobridge_tokens", "state", "refresh_due")+s.get("amobridge_tokens", "state", "expired") == 1 &&
			s.get("amobridge_tokens", "state", "fresh") == 0
	})
	if !s.has("amobridge_oldest_refresh_token_age_seconds") {
		t.Error("amobridge_oldest_refresh_token_age_seconds is missing")
	}
	e.AssertNoViolations()
}

// TestMetricsStoreMemory: the store's caches are exported at each scrape
// (amobridge_token_cache_users, amobridge_packed_cache_*), so that an
// operator can size cache_size and cache_memory: each user served once is
// in both caches, the packed cache has the default cache_memory, and
// nothing was evicted or dropped.
func TestMetricsStoreMemory(t *testing.T) {
	needCaddy(t)
	others := newOpsUsers(t, "memory", 2)
	e := NewEnv(t, EnvOptions{Fake: addToFake(others, nil), Site: func(s *SiteConfig) { s.Extra = "rate_limit 0" }})
	tr := &transcript{}
	before := scrapeMetrics(e, tr)
	for _, name := range []string{"amobridge_token_cache_users", "amobridge_token_cache_evictions_total",
		"amobridge_packed_cache_users", "amobridge_packed_cache_bytes", "amobridge_packed_cache_size_bytes",
		"amobridge_packed_cache_dropped_total", "amobridge_store_mapped_resident_bytes",
		"amobridge_store_mapped_released_bytes_total"} {
		if !before.has(name) {
			t.Errorf("/metrics does not export %s", name)
		}
	}
	if runtime.GOOS == "linux" {
		if got := before.get("amobridge_packed_cache_size_bytes"); got != 1<<30 {
			t.Errorf("amobridge_packed_cache_size_bytes = %v; want 1 GiB, the default cache_memory", got)
		}
	}

	queries := []string{e.LegacyQuery("")}
	for _, u := range others {
		queries = append(queries, legacyQueryFor(u.Login, u.Key))
	}
	for round := 0; round < 2; round++ {
		for _, q := range queries {
			r := e.Get("/api/v2/account?" + q)
			tr.addResponse("legacy request", r)
			if r.Status != http.StatusOK {
				t.Fatalf("legacy request: status %d; body %s", r.Status, r.Body)
			}
		}
	}

	after := scrapeMetrics(e, tr)
	users := float64(len(queries))
	for _, c := range []struct {
		name string
		want float64
	}{
		{"amobridge_token_cache_users", users},
		{"amobridge_packed_cache_users", users},
		{"amobridge_token_cache_evictions_total", 0},
		{"amobridge_packed_cache_dropped_total", 0},
	} {
		if got := after.get(c.name) - before.get(c.name); got != c.want {
			t.Errorf("%s moved by %v; want %v", c.name, got, c.want)
		}
	}
	if runtime.GOOS == "linux" {
		// A packed user is a few hundred bytes: the fake's tokens are short.
		if grew := after.get("amobridge_packed_cache_bytes") - before.get("amobridge_packed_cache_bytes"); grew < 50*users || grew > 4096*users {
			t.Errorf("amobridge_packed_cache_bytes grew by %v for %v users; want 50-4096 bytes each", grew, users)
		}
	}
	assertCleanMetrics(t, e, after, others)
	for _, x := range tr.all() {
		e.AssertNoSecrets(x.where, x.text)
	}
}
