package integration_test

import (
	"fmt"
	"net/http"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/amobridge/amobridge/integration_test/fakeamocrm"
)

// maxPerSlidingSecond is the most requests of account the fake received in
// any one-second interval, OAuth calls included.
func maxPerSlidingSecond(reqs []fakeamocrm.Recorded, account string) int {
	var ts []time.Time
	for _, r := range reqs {
		if r.Account == account {
			ts = append(ts, r.Time)
		}
	}
	sort.Slice(ts, func(i, j int) bool { return ts[i].Before(ts[j]) })
	best := 0
	for i, j := 0, 0; j < len(ts); j++ {
		for ts[j].Sub(ts[i]) >= time.Second {
			i++
		}
		best = max(best, j-i+1)
	}
	return best
}

// TestFloodOfInventedLogins: 300 requests with invented logins and random
// keys, 32 at a time, from one client. amoCRM never sees more than
// rate_limit requests of the account in any sliding second (exchanges
// included), every flood request is answered within exchange_timeout + 5 s,
// and a warm user is served again right after.
func TestFloodOfInventedLogins(t *testing.T) {
	needCaddy(t)
	e := NewEnv(t, EnvOptions{Site: func(s *SiteConfig) {
		s.Debug = false
		s.Extra = "rate_limit 7\n\t\texchange_timeout 10s"
	}})
	warm := tlUser{Login: testLogin, Key: e.APIKey}
	if r := tlGet(e, warm); r.Status != 200 {
		t.Fatalf("warm user: %d %.200s", r.Status, r.Body)
	}
	time.Sleep(time.Second)

	var st tlStatuses
	var mu sync.Mutex
	var slowest time.Duration
	jobs := make(chan int)
	var wg sync.WaitGroup
	for range 32 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range jobs {
				u := tlUser{Login: fmt.Sprintf("invented%03d@example.com", i), Key: randomHex(t, 20)}
				start := time.Now()
				r := tlGet(e, u)
				took := time.Since(start)
				st.add(r)
				mu.Lock()
				slowest = max(slowest, took)
				mu.Unlock()
			}
		}()
	}
	floodStart := time.Now()
	for i := range 300 {
		jobs <- i
	}
	close(jobs)
	wg.Wait()
	floodTook := time.Since(floodStart)

	// The warm user, right after: served (its turn may wait for the queue
	// the flood left, at most 5 s).
	r := tlGet(e, warm)
	fs := e.Fake.Stats()
	peak := maxPerSlidingSecond(e.Fake.Requests(), testAccount)
	t.Logf("flood of 300 invented logins, 32 at a time, in %v: %s; slowest answer %v; exchange calls %d; most requests of the account in a sliding second %d; warm user after: %d in %v",
		floodTook.Round(time.Millisecond), &st, slowest.Round(time.Millisecond), fs.ExchangeCalls, peak, r.Status, r.Took.Round(time.Millisecond))
	if peak > 7 {
		t.Errorf("amoCRM saw %d requests of the account in one second; rate_limit 7 covers every call", peak)
	}
	if slowest > 15*time.Second {
		t.Errorf("a flood request took %v; want every one answered within exchange_timeout + 5 s", slowest)
	}
	if st.get(200) != 0 {
		t.Errorf("%d invented logins were served", st.get(200))
	}
	if r.Status != 200 {
		t.Errorf("the warm user after the flood: %d %.200s", r.Status, r.Body)
	}
	if fs.ExchangeCalls > 60 {
		t.Errorf("%d exchange calls for 300 invented logins from one client; the client's budget of rejected exchanges should stop it early", fs.ExchangeCalls)
	}
	e.AssertNoViolations()
}

// trustLocalProxy makes Caddy take the client's address from
// X-Forwarded-For, as behind a load balancer on 127.0.0.1.
func trustLocalProxy(caddyfile string) string {
	return strings.Replace(caddyfile, "\tpersist_config off\n}",
		"\tpersist_config off\n\tservers {\n\t\ttrusted_proxies static 127.0.0.1/32\n\t}\n}", 1)
}

// TestNoLockoutByStranger: a stranger sends 10 garbage keys a second for
// a user (whose password changed, or who is cold) while the user's own
// client sends the right key once a second; the exchange interval is 3 s.
// The user's key is exchanged within two intervals, the user's client gets
// 503 with Retry-After meanwhile (never a plain "wrong key"), and once the
// new key is proven the old one gets 401 at once.
func TestNoLockoutByStranger(t *testing.T) {
	needCaddy(t)
	const interval = 3 * time.Second
	for _, cold := range []bool{false, true} {
		name := "password changed"
		if cold {
			name = "cold user"
		}
		t.Run(name, func(t *testing.T) {
			e := NewEnv(t, EnvOptions{
				Fake: func(o *fakeamocrm.Options) { o.ExchangeInterval = interval },
				Site: func(s *SiteConfig) {
					s.Debug = false
					s.Extra = "rate_limit 0\n\t\texchange_interval 3s"
				},
				NoStart: true,
			})
			e.Caddy.Start(trustLocalProxy(e.Caddyfile()))
			oldKey, newKey := e.APIKey, e.APIKey
			if !cold {
				if r := tlGet(e, tlUser{Login: testLogin, Key: oldKey}); r.Status != 200 {
					t.Fatalf("first request: %d %.200s", r.Status, r.Body)
				}
				newKey = randomHex(t, 20)
				if err := e.Fake.SetAPIKey(testAccount, testLogin, newKey); err != nil {
					t.Fatal(err)
				}
				time.Sleep(interval)
			}
			from := func(addr, key string) tlResult {
				h := http.Header{"X-Forwarded-For": {addr}}
				return tlSend(nil, e, http.MethodGet, "/api/v2/account?"+tlUser{Login: testLogin, Key: key}.query(""), h, nil)
			}
			stop := make(chan struct{})
			var wg sync.WaitGroup
			var attacks tlStatuses
			wg.Add(1)
			go func() { // the stranger: 10 garbage keys a second
				defer wg.Done()
				tick := time.NewTicker(100 * time.Millisecond)
				defer tick.Stop()
				for {
					select {
					case <-stop:
						return
					case <-tick.C:
						attacks.add(from("203.0.113.66", randomHex(t, 20)))
					}
				}
			}()
			time.Sleep(150 * time.Millisecond) // the stranger is first

			start := time.Now()
			var served time.Duration
			var before tlStatuses
			for time.Since(start) < 4*interval {
				r := from("192.0.2.10", newKey)
				if r.Status == 200 {
					served = time.Since(start)
					break
				}
				before.add(r)
				if r.Status != 503 || r.Header.Get("Retry-After") == "" {
					t.Errorf("the user's own key while the stranger holds the interval: %d (Retry-After %q) %.200s; want 503 with Retry-After",
						r.Status, r.Header.Get("Retry-After"), r.Body)
				}
				time.Sleep(time.Second)
			}
			close(stop)
			wg.Wait()
			t.Logf("stranger: %s; the user's client before its key was exchanged: %s; exchanged after %v",
				&attacks, &before, served.Round(time.Millisecond))
			if served == 0 || served > 2*interval {
				t.Fatalf("the user's key was exchanged after %v (0: never); want within two intervals (%v)", served, 2*interval)
			}
			if !cold {
				r := from("192.0.2.10", oldKey)
				if r.Status != 401 {
					t.Errorf("the old key after the new one was proven: %d %.200s; want 401 at once", r.Status, r.Body)
				}
			}
			if attacks.get(200) != 0 {
				t.Errorf("the stranger was served %d times", attacks.get(200))
			}
			e.AssertNoViolations()
		})
	}
}
