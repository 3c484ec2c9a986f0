package integration_test

import (
	"fmt"
	"net/http"
	"net/http/httptrace"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/amobridge/amobridge/integration_test/fakeamocrm"
)

// TestColdPathLatency measures, through the real Caddy, the time from a cold
// user's first request to the first byte of its answer, minus the fake
// amoCRM's callback delay: the proxy's own time on the cold path (its store
// writes, the exchange_api_key call, the callback, the code grant, the synced
// write of the tokens, the forward). It reports figures with t.Logf and
// asserts only that each cold request was served with exactly one exchange:
// timing is not asserted (the machine is shared). The figures are in
// docs/performance.md.
func TestColdPathLatency(t *testing.T) {
	needCaddy(t)
	const n = 20
	const callbackDelay = 100 * time.Millisecond
	users := newOpsUsers(t, "cold", n)
	e := NewEnv(t, EnvOptions{
		Fake: addToFake(users, func(o *fakeamocrm.Options) { o.CallbackDelay = callbackDelay }),
		// Rate limit off: a paced request would wait for reasons of its own.
		Site: func(s *SiteConfig) { s.Extra = "rate_limit 0"; s.Debug = false },
	})
	// ttfb sends one request and returns the time to the answer's first byte.
	ttfb := func(path string) (time.Duration, int) {
		t.Helper()
		req, err := http.NewRequest(http.MethodGet, e.Caddy.BaseURL()+path, nil)
		if err != nil {
			t.Fatal(err)
		}
		var first time.Time
		req = req.WithContext(httptrace.WithClientTrace(req.Context(), &httptrace.ClientTrace{
			GotFirstResponseByte: func() { first = time.Now() },
		}))
		start := time.Now()
		resp, err := client.Do(req)
		if err != nil {
			t.Fatalf("request failed: %s", withoutQuery(err))
		}
		resp.Body.Close()
		return first.Sub(start), resp.StatusCode
	}
	// A warm-up user outside the figures (first store writes, connections).
	if d, status := ttfb("/api/v2/account?" + e.LegacyQuery("")); status != http.StatusOK {
		t.Fatalf("warm-up user: status %d after %v", status, d)
	}

	var cold, own, warm, beforeEx, cbToGrant, grantToAPI []time.Duration
	for _, u := range users {
		start := time.Now()
		d, status := ttfb("/api/v2/account?" + legacyQueryFor(u.Login, u.Key))
		if status != http.StatusOK {
			t.Fatalf("cold request of %s: status %d", u.Login, status)
		}
		cold = append(cold, d)
		own = append(own, d-callbackDelay)
		d, status = ttfb("/api/v2/account?" + legacyQueryFor(u.Login, u.Key))
		if status != http.StatusOK {
			t.Fatalf("warm request of %s: status %d", u.Login, status)
		}
		warm = append(warm, d)

		// Where the time went, by the fake's clock (same machine).
		var ex, grant, api time.Time
		for _, r := range e.Fake.Requests() {
			if r.Time.Before(start) {
				continue
			}
			switch {
			case r.Path == "/oauth2/exchange_api_key" && ex.IsZero():
				ex = r.Time
			case r.Path == "/oauth2/access_token" && grant.IsZero():
				grant = r.Time
			case strings.HasPrefix(r.Path, "/api/") && api.IsZero() && strings.EqualFold(r.Login, u.Login):
				api = r.Time
			}
		}
		if ex.IsZero() || grant.IsZero() || api.IsZero() {
			t.Fatalf("%s: the fake did not see the exchange, the code grant and the API call", u.Login)
		}
		beforeEx = append(beforeEx, ex.Sub(start))
		cbToGrant = append(cbToGrant, grant.Sub(ex)-callbackDelay)
		grantToAPI = append(grantToAPI, api.Sub(grant))
	}
	st := e.Fake.Stats()
	if st.ExchangeCalls != n+1 || st.CodeGrants != n+1 {
		t.Errorf("%d exchange calls, %d code grants; want %d each", st.ExchangeCalls, st.CodeGrants, n+1)
	}
	e.AssertNoViolations()

	t.Logf("cold path over %d users (callback delay %v, rate_limit 0, info log level):", n, callbackDelay)
	t.Logf("  time to first byte, cold          : %s", quantiles(cold))
	t.Logf("  the proxy's own (minus the delay) : %s", quantiles(own))
	t.Logf("    request → exchange_api_key      : %s", quantiles(beforeEx))
	t.Logf("    + delay → code grant            : %s", quantiles(cbToGrant))
	t.Logf("    code grant → API request        : %s", quantiles(grantToAPI))
	t.Logf("  time to first byte, warm          : %s", quantiles(warm))
}

// quantiles formats the median, 90th percentile and maximum of ds.
func quantiles(ds []time.Duration) string {
	s := slices.Clone(ds)
	slices.Sort(s)
	at := func(p float64) float64 {
		return float64(s[min(len(s)-1, int(p*float64(len(s))))].Microseconds()) / 1000
	}
	return fmt.Sprintf("p50 %.2f ms, p90 %.2f ms, max %.2f ms", at(.5), at(.9), at(1))
}

// withoutQuery returns err's text with every URL query cut (net/http errors
// quote the URL, credentials included).
func withoutQuery(err error) string {
	var b strings.Builder
	rest := err.Error()
	for {
		i := strings.IndexByte(rest, '?')
		if i < 0 {
			b.WriteString(rest)
			return b.String()
		}
		b.WriteString(rest[:i] + "?…")
		rest = rest[i+1:]
		j := strings.IndexAny(rest, "\" ")
		if j < 0 {
			return b.String()
		}
		rest = rest[j:]
	}
}
