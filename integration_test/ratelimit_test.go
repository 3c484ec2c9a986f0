package integration_test

import (
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/amobridge/amobridge/integration_test/fakeamocrm"
)

// TestRateLimitTowardAmoCRM offers 50 requests per second for one account for
// 10 s with the default rate_limit (7 per second per account): amoCRM (the
// fake) never sees more than 7 in any second; the excess waits, or past the
// queue's bound gets 429 with Retry-After in the legacy shape.
func TestRateLimitTowardAmoCRM(t *testing.T) {
	needCaddy(t)
	var users []tlUser
	e := NewEnv(t, EnvOptions{
		Fake: func(o *fakeamocrm.Options) {
			users = tlUsers(t, 3, o.Users[0].APIKey)
			tlAddUsers(users)(o)
		},
		Site: func(s *SiteConfig) { s.Debug = false },
	})
	for _, u := range users { // warm: the exchanges are not what is measured
		if r := tlGet(e, u); r.Status != 200 {
			t.Fatalf("warm-up of %s: %d %.200s", u.Login, r.Status, r.Body)
		}
	}
	time.Sleep(1100 * time.Millisecond) // let the limiter's bucket refill

	const rps, dur = 50, 10 * time.Second
	var st tlStatuses
	var wg sync.WaitGroup
	var bad429 atomic.Int32
	var sample429 tlResult
	var once sync.Once
	tick := time.NewTicker(time.Second / rps)
	stop := time.After(dur)
	sent := 0
loop:
	for {
		select {
		case <-stop:
			break loop
		case <-tick.C:
		}
		u := users[sent%len(users)]
		sent++
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := tlGet(e, u)
			st.add(r)
			if r.Status == http.StatusTooManyRequests {
				if r.Header.Get("Retry-After") == "" {
					bad429.Add(1)
				}
				once.Do(func() { sample429 = r })
			}
		}()
	}
	tick.Stop()
	wg.Wait()

	fs := e.Fake.Stats()
	t.Logf("%d requests offered at %d/s for %v: %s", sent, rps, dur, &st)
	t.Logf("fake: API requests %d, max per wall-clock second %d, max per sliding second %d, amoCRM 429s %d",
		fs.APIRequests, fs.MaxPerSecond[testAccount], fs.MaxPerSlidingSecond[testAccount], fs.RateLimited)
	if m := fs.MaxPerSecond[testAccount]; m > 7 {
		t.Errorf("amoCRM saw %d requests of the account in one wall-clock second; the limit is 7", m)
	}
	if m := fs.MaxPerSlidingSecond[testAccount]; m > 7 {
		t.Errorf("amoCRM saw %d requests of the account within one second; the limit is 7", m)
	}
	if other := st.total() - st.get(200) - st.get(http.StatusTooManyRequests); other != 0 {
		t.Errorf("%d answers were neither 200 nor 429: %s", other, &st)
	}
	if st.get(200) == 0 {
		t.Errorf("no request was served: %s", &st)
	}
	if n := bad429.Load(); n != 0 {
		t.Errorf("%d answers 429 had no Retry-After", n)
	}
	if sample429.Status != 0 {
		tlLegacyError(t, "429 from the rate limit", sample429, http.StatusTooManyRequests)
		tlRetryAfter(t, "429 from the rate limit", sample429)
	}
	if fs.ExchangeCalls != len(users) {
		t.Errorf("%d exchange calls; want %d", fs.ExchangeCalls, len(users))
	}
	e.AssertNoViolations()
}
