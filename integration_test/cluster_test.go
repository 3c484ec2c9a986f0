package integration_test

import (
	"fmt"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/amobridge/amobridge/integration_test/fakeamocrm"
)

// Issue 11's cluster tests: three real Caddy processes share one Redis
// (store redis), in front of the fake amoCRM, whose callbacks the
// forwarder of cluster_helpers_test.go delivers to an instance other than
// the one that asked for the exchange. redis-server is started by each
// test; without it the tests skip (fail with AMOBRIDGE_REQUIRE_REDIS=1).

// TestClusterColdStampedeOneUser sends 300 concurrent cold requests of one
// user, spread over 3 instances: one exchange_api_key, one code grant, all
// answered 200; the callback lands on an instance that did not ask for the
// exchange.
func TestClusterColdStampedeOneUser(t *testing.T) {
	c := NewCluster(t, ClusterOptions{Extra: []string{"rate_limit 0"}})
	u := c.Users[0]
	var st tlStatuses
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range 300 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			st.add(c.Get(i%len(c.Nodes), u))
		}()
	}
	close(start)
	wg.Wait()
	fs := c.Fake.Stats()
	t.Logf("300 cold requests of one user over %d instances: %s", len(c.Nodes), &st)
	t.Logf("fake: exchange calls %d, code grants %d, API requests %d; callbacks %+v", fs.ExchangeCalls, fs.CodeGrants, fs.APIRequests, c.Callbacks())
	if st.get(200) != 300 {
		t.Errorf("%d of 300 cold requests answered 200; want all: %s", st.get(200), &st)
	}
	if fs.ExchangeCalls != 1 || fs.CodeGrants != 1 {
		t.Errorf("300 cold requests of one user on %d instances: %d exchange_api_key calls, %d code grants; want 1 and 1",
			len(c.Nodes), fs.ExchangeCalls, fs.CodeGrants)
	}
	c.AssertCallbacksElsewhere(1)
	c.AssertNoViolations()
	c.AssertNoSecrets()
}

// TestClusterColdStampedeManyUsers sends the first requests of 50 users at
// once, each user's three requests on the three instances: 50 exchanges,
// every callback taken by another instance than the one that asked, all
// answered 200.
func TestClusterColdStampedeManyUsers(t *testing.T) {
	const users = 50
	c := NewCluster(t, ClusterOptions{Users: users, Extra: []string{"rate_limit 0"}})
	var st tlStatuses
	var wg sync.WaitGroup
	start := make(chan struct{})
	for _, u := range c.Users {
		for i := range c.Nodes {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				st.add(c.Get(i, u))
			}()
		}
	}
	close(start)
	wg.Wait()
	fs := c.Fake.Stats()
	t.Logf("%d users × %d instances, cold at once: %s", users, len(c.Nodes), &st)
	t.Logf("fake: exchange calls %d (accepted %d, 429 %d), code grants %d; exchanges by instance %v",
		fs.ExchangeCalls, fs.Exchanges, fs.Exchange429, fs.CodeGrants, c.Front.CountBy("exchange", len(c.Nodes)))
	if want := users * len(c.Nodes); st.get(200) != want {
		t.Errorf("%d of %d requests answered 200; want all: %s", st.get(200), want, &st)
	}
	if fs.ExchangeCalls != users || fs.Exchanges != users || fs.CodeGrants != users {
		t.Errorf("%d cold users: %d exchange calls, %d accepted, %d code grants; want %d each",
			users, fs.ExchangeCalls, fs.Exchanges, fs.CodeGrants, users)
	}
	c.AssertCallbacksElsewhere(users)
	c.AssertNoViolations()
}

// clSoakDuration is the cluster refresh soak's length: AMOBRIDGE_SOAK (e.g.
// 10m), else 2 minutes (30 s with -short).
func clSoakDuration(t *testing.T) time.Duration {
	if v := os.Getenv("AMOBRIDGE_SOAK"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			t.Fatalf("AMOBRIDGE_SOAK=%q is not a duration", v)
		}
		return d
	}
	if testing.Short() {
		return 30 * time.Second
	}
	return 2 * time.Minute
}

// TestClusterRefreshSoak runs 8 clients of 4 users over 3 instances against
// 3-second access tokens refreshed 2 s ahead, for 2 minutes (AMOBRIDGE_SOAK
// to change it): every instance refreshes, and amoCRM never sees a refresh
// token spent twice, nor anything else it forbids; every answer is 200.
func TestClusterRefreshSoak(t *testing.T) {
	dur := clSoakDuration(t)
	const users, clients = 4, 8
	c := NewCluster(t, ClusterOptions{
		Users: users,
		Fake:  func(o *fakeamocrm.Options) { o.AccessTTL = 3 * time.Second },
		Extra: []string{"rate_limit 0", "refresh_ahead 2s"},
	})
	for i, u := range c.Users {
		if r := c.Get(i%len(c.Nodes), u); r.Status != 200 {
			t.Fatalf("first request of %s: %d %v %.200s", u.Login, r.Status, r.Err, r.Body)
		}
	}
	var st tlStatuses
	var wg sync.WaitGroup
	stop := time.Now().Add(dur)
	for i := range clients {
		u := c.Users[i%users]
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n := 0; time.Now().Before(stop); n++ {
				base := c.Nodes[(i+n)%len(c.Nodes)].BaseURL()
				var r tlResult
				if n%3 == 0 {
					body := []byte(fmt.Sprintf(`{"n":%d}`, n))
					r = clSend(nil, base, http.MethodPost, "/api/v2/leads?"+u.query(""), http.Header{"Content-Type": {"application/json"}}, body)
				} else {
					r = clSend(nil, base, http.MethodGet, "/api/v2/account?"+u.query(""), nil, nil)
				}
				st.add(r)
				time.Sleep(20 * time.Millisecond)
			}
		}()
	}
	wg.Wait()
	// Figures for docs/performance.md, from the instances' /metrics.
	t.Logf("refresh lock waits over the soak, %d instances: %s", len(c.Nodes), c.ScrapeHistogram("amobridge_lock_wait_seconds"))
	t.Logf("Redis round trips over the soak, %d instances: %s", len(c.Nodes), c.ScrapeHistogram("amobridge_redis_seconds"))
	fs := c.Fake.Stats()
	t.Logf("%v of load, %d clients, %d users, %d instances: %s", dur, clients, users, len(c.Nodes), &st)
	t.Logf("fake: exchanges %d, refreshes %d (by instance %v), refresh reuse %d, refresh errors %d, API requests %d (401: %d)",
		fs.Exchanges, fs.Refreshes, c.Front.CountBy("refresh", len(c.Nodes)), fs.RefreshReuse, fs.RefreshErrors, fs.APIRequests, fs.API401)
	if fs.Exchanges != users {
		t.Errorf("%d exchanges for %d users; want one each (no user lost its pair)", fs.Exchanges, users)
	}
	// 3 s tokens refreshed 2 s ahead: about one refresh per user every second.
	if min := users * int(dur/(4*time.Second)); fs.Refreshes < min {
		t.Errorf("%d refreshes in %v for %d users; want at least %d", fs.Refreshes, dur, users, min)
	}
	for i, n := range c.Front.CountBy("refresh", len(c.Nodes))[:len(c.Nodes)] {
		if n == 0 {
			t.Errorf("instance %d never refreshed; the soak should exercise every instance", i)
		}
	}
	if n := st.total() - st.get(200); n != 0 {
		t.Errorf("%d of %d requests were not answered 200: %s", n, st.total(), &st)
	}
	c.AssertNoViolations()
	c.AssertNoSecrets()
}

// TestClusterKillRefreshLockHolder catches instance 0 inside a refresh (the
// front holds its refresh grant, which never reaches amoCRM), kills it with
// SIGKILL, and asks instances 1 and 2 for the user: one of them refreshes
// once the dead instance's lock has expired in Redis, and nothing is spent
// twice. It takes about the lock's lifetime (45 s).
func TestClusterKillRefreshLockHolder(t *testing.T) {
	c := NewCluster(t, ClusterOptions{
		// Tokens of 20 s refreshed 15 s ahead: fresh for 5 s after a grant.
		Fake:  func(o *fakeamocrm.Options) { o.AccessTTL = 20 * time.Second },
		Extra: []string{"rate_limit 0", "refresh_ahead 15s"},
		Debug: true,
	})
	u := c.Users[0]
	if r := c.Get(0, u); r.Status != 200 {
		t.Fatalf("first request: %d %v %.200s", r.Status, r.Err, r.Body)
	}
	exchanged := time.Now()
	c.Front.HoldRefreshes(1)
	time.Sleep(time.Until(exchanged.Add(6 * time.Second))) // the token is due for a refresh

	res0 := make(chan tlResult, 1)
	go func() { res0 <- c.Get(0, u) }()
	select {
	case inst := <-c.Front.Held():
		if inst != 0 {
			t.Fatalf("the held refresh grant came from instance %d; want 0", inst)
		}
	case r := <-res0:
		t.Fatalf("instance 0 answered without a refresh grant: %d %v %.200s", r.Status, r.Err, r.Body)
	case <-time.After(15 * time.Second):
		t.Fatal("instance 0 made no refresh grant within 15 s of a request for a due token")
	}
	time.Sleep(300 * time.Millisecond)
	c.Nodes[0].Kill()
	killed := time.Now()
	if r := <-res0; r.Err == nil {
		t.Logf("the request on the killed instance got %d", r.Status)
	}
	if n := c.Fake.Stats().Refreshes; n != 0 {
		t.Fatalf("amoCRM saw %d refreshes before the kill; the held grant must not reach it", n)
	}

	// Instances 1 and 2 are asked for the user until both serve it.
	time.Sleep(time.Second)
	var st tlStatuses
	served := [3]bool{true, false, false}
	deadline := time.Now().Add(100 * time.Second)
	for !(served[1] && served[2]) && time.Now().Before(deadline) {
		var wg sync.WaitGroup
		for i := 1; i <= 2; i++ {
			if served[i] {
				continue
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				r := c.Get(i, u)
				st.add(r)
				if r.Status == 200 {
					served[i] = true
				}
			}()
		}
		wg.Wait()
		if !(served[1] && served[2]) {
			time.Sleep(time.Second)
		}
	}
	fs := c.Fake.Stats()
	var refreshed []clOAuthCall
	for _, cl := range c.Front.Calls() {
		if cl.Kind == "refresh" {
			refreshed = append(refreshed, cl)
		}
	}
	t.Logf("after the kill, instances 1 and 2: %s; fake: refreshes %d, refresh errors %d, reuse %d; refresh grants %+v",
		&st, fs.Refreshes, fs.RefreshErrors, fs.RefreshReuse, refreshed)
	if !served[1] || !served[2] {
		t.Fatalf("instances 1 and 2 did not both serve the user within 100 s of the kill: %s", &st)
	}
	if len(refreshed) != 1 || fs.Refreshes != 1 {
		t.Fatalf("%d refresh grants reached amoCRM (%d successful) after the kill; want exactly 1", len(refreshed), fs.Refreshes)
	}
	after := refreshed[0].Start.Sub(killed)
	t.Logf("instance %d refreshed %v after instance 0 was killed holding the refresh lock", refreshed[0].Instance, after.Round(10*time.Millisecond))
	if refreshed[0].Instance != 1 && refreshed[0].Instance != 2 {
		t.Errorf("the refresh came from instance %d; want 1 or 2", refreshed[0].Instance)
	}
	// The lock lives 45 s in Redis, renewed every 15 s: it expires 30 to 45 s
	// after the kill. Earlier means the lock of a live holder could be taken.
	if after < 25*time.Second || after > 60*time.Second {
		t.Errorf("the refresh came %v after the kill; want it after the dead holder's lock expired (30 to 45 s)", after)
	}

	// The killed instance comes back and serves the user with no new exchange.
	c.Nodes[0].Start(c.Nodes[0].Config())
	if r := c.Get(0, u); r.Status != 200 {
		t.Errorf("instance 0 after its restart: %d %v %.200s", r.Status, r.Err, r.Body)
	}
	if fs := c.Fake.Stats(); fs.ExchangeCalls != 1 {
		t.Errorf("%d exchange calls; want 1", fs.ExchangeCalls)
	}
	c.AssertNoViolations()
}

// TestClusterRedisOutage keeps warm users busy on 3 instances while Redis is
// stopped (SIGTERM) and, later, killed (SIGKILL), for 5 s each time: every
// warm request is served from the instances' caches; a cold user gets 503
// meanwhile; within 5 s of Redis's return a cold user is served (an
// exchange) and a user whose access token amoCRM expired is served (a
// refresh, under the lock).
func TestClusterRedisOutage(t *testing.T) {
	const warm = 4
	// Users: 0-3 warm, 4 needs refreshes, 5-6 cold after each outage, 7-8
	// cold during each outage.
	c := NewCluster(t, ClusterOptions{Users: 9, Extra: []string{"rate_limit 0"}})
	for i, u := range c.Users[:5] {
		if r := c.Get(i%len(c.Nodes), u); r.Status != 200 {
			t.Fatalf("first request of %s: %d %v %.200s", u.Login, r.Status, r.Err, r.Body)
		}
	}
	uR := c.Users[4]

	var st tlStatuses
	var stop atomic.Bool
	var wg sync.WaitGroup
	for w := range 6 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n := 0; !stop.Load(); n++ {
				st.add(c.Get((w+n)%len(c.Nodes), c.Users[w%warm]))
				time.Sleep(10 * time.Millisecond)
			}
		}()
	}
	probe := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{Proxy: nil, DisableKeepAlives: true}}
	get := func(i int, u tlUser) tlResult {
		return clSend(probe, c.Nodes[i].BaseURL(), http.MethodGet, "/api/v2/account?"+u.query(""), nil, nil)
	}

	phase := func(name string, down func(), coldDuring, coldAfter tlUser) {
		time.Sleep(time.Second)
		down()
		downAt := time.Now()
		time.Sleep(1500 * time.Millisecond)
		if r := get(1, coldDuring); r.Status != http.StatusServiceUnavailable {
			t.Errorf("%s: a cold user while Redis is down: %d %v %.200s; want 503", name, r.Status, r.Err, r.Body)
		} else if r.Header.Get("Retry-After") == "" {
			t.Errorf("%s: the 503 of a cold user while Redis is down has no Retry-After", name)
		}
		if err := c.Fake.ExpireAccess(testAccount, uR.Login); err != nil {
			t.Fatal(err)
		}
		r := get(2, uR)
		t.Logf("%s: a user whose access token amoCRM expired, while Redis is down: %d %.120s", name, r.Status, r.Body)
		if r.Status != http.StatusServiceUnavailable {
			t.Errorf("%s: a user whose access token amoCRM expired, while Redis is down: %d %v; want 503 (nothing refreshes without the lock)", name, r.Status, r.Err)
		} else {
			tlRetryAfter(t, name+": the 503 of a user whose access token expired", r)
		}
		time.Sleep(time.Until(downAt.Add(5 * time.Second)))

		refreshes := c.Fake.Stats().Refreshes
		c.Redis.Start()
		upAt := time.Now()
		var coldAt, refreshAt time.Time
		var tries tlStatuses
		for k := 0; (coldAt.IsZero() || refreshAt.IsZero()) && time.Since(upAt) < 30*time.Second; k++ {
			if coldAt.IsZero() {
				sent := time.Now()
				r := get(k%len(c.Nodes), coldAfter)
				tries.add(r)
				if r.Status == 200 {
					coldAt = sent
				}
			}
			if refreshAt.IsZero() {
				sent := time.Now()
				r := get((k+1)%len(c.Nodes), uR)
				tries.add(r)
				if r.Status == 200 && c.Fake.Stats().Refreshes > refreshes {
					refreshAt = sent
				}
			}
			time.Sleep(100 * time.Millisecond)
		}
		t.Logf("%s: after Redis's return: cold user served by a request sent %v after, refresh by one sent %v after; tries: %s",
			name, coldAt.Sub(upAt).Round(time.Millisecond), refreshAt.Sub(upAt).Round(time.Millisecond), &tries)
		if coldAt.IsZero() || coldAt.Sub(upAt) > 5*time.Second {
			t.Errorf("%s: a cold user was not served within 5 s of Redis's return", name)
		}
		if refreshAt.IsZero() || refreshAt.Sub(upAt) > 5*time.Second {
			t.Errorf("%s: a user due for a refresh was not served within 5 s of Redis's return", name)
		}
	}
	phase("Redis stopped", c.Redis.Stop, c.Users[7], c.Users[5])
	// appendfsync everysec: what was written in the last second may be lost
	// by a SIGKILL (as documented); give the AOF time to take the refreshed pair.
	time.Sleep(3 * time.Second)
	phase("Redis killed", c.Redis.Kill, c.Users[8], c.Users[6])
	time.Sleep(time.Second)
	stop.Store(true)
	wg.Wait()

	t.Logf("warm users during both outages: %s", &st)
	if n := st.total() - st.get(200); n != 0 {
		t.Errorf("%d of %d warm requests were not answered 200: %s", n, st.total(), &st)
	}
	fs := c.Fake.Stats()
	t.Logf("fake: exchange calls %d, refreshes %d, refresh errors %d", fs.ExchangeCalls, fs.Refreshes, fs.RefreshErrors)
	c.AssertNoViolations()
	c.AssertNoSecrets()
}

// TestClusterSessionAndRevoke creates an auth.php session on instance 0 and
// uses its cookie on instances 1 and 2; then revokes the user's token
// through instance 0's admin API: from 1 s after, no instance serves the
// user with the revoked token (a session request is refused, a key request
// exchanges again or is refused).
func TestClusterSessionAndRevoke(t *testing.T) {
	c := NewCluster(t, ClusterOptions{Users: 2, Extra: []string{"rate_limit 0"}})
	u := c.Users[0]
	if r := c.Get(0, u); r.Status != 200 {
		t.Fatalf("first request: %d %v %.200s", r.Status, r.Err, r.Body)
	}
	form := "USER_LOGIN=" + loginQ + "&USER_HASH=" + u.Key
	r := clSend(client, c.Nodes[0].BaseURL(), http.MethodPost, authPHP+"?type=json",
		http.Header{"Content-Type": {"application/x-www-form-urlencoded"}}, []byte(form))
	if r.Status != 200 {
		t.Fatalf("auth.php on instance 0: %d %v %.300s", r.Status, r.Err, r.Body)
	}
	sc := sessionCookie(t, &Response{Status: r.Status, Header: r.Header, Body: r.Body})
	cookie := http.Header{"Cookie": {"session_id=" + sc.Value}}
	session := func(i int) tlResult {
		return clSend(client, c.Nodes[i].BaseURL(), http.MethodGet, "/api/v2/account?page=1", cookie, nil)
	}
	bearer := ""
	for _, rec := range c.Fake.Requests() {
		if rec.Path == "/api/v2/account" {
			bearer = rec.Header.Get("Authorization")
		}
	}
	for i := range c.Nodes {
		n := len(c.Fake.Requests())
		if r := session(i); r.Status != 200 {
			t.Errorf("the session of instance 0 on instance %d: %d %v %.300s", i, r.Status, r.Err, r.Body)
			continue
		}
		reqs := c.Fake.Requests()[n:]
		if len(reqs) != 1 || reqs[0].Header.Get("Authorization") != bearer || reqs[0].Login != u.Login {
			t.Errorf("the session on instance %d did not reach amoCRM once with the user's token", i)
		}
	}
	exchanges := c.Fake.Stats().ExchangeCalls

	rv := c.Admin(0, http.MethodDelete, "/amocrm/tokens?account="+testAccount+"&login="+loginQ)
	revoked := time.Now()
	if rv.Status/100 != 2 {
		t.Fatalf("DELETE /amocrm/tokens on instance 0: %d %v %.300s", rv.Status, rv.Err, rv.Body)
	}
	// Instance 1 with the session, instance 2 with the key, every 20 ms
	// for 2 s.
	type poll struct {
		inst   int
		sent   time.Time
		status int
	}
	var mu sync.Mutex
	var polls []poll
	var wg sync.WaitGroup
	for i := 1; i <= 2; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Since(revoked) < 2*time.Second {
				sent := time.Now()
				var r tlResult
				if i == 1 {
					r = session(1)
				} else {
					r = c.Get(2, u)
				}
				mu.Lock()
				polls = append(polls, poll{i, sent, r.Status})
				mu.Unlock()
				time.Sleep(20 * time.Millisecond)
			}
		}()
	}
	wg.Wait()
	lastOld := map[int]time.Duration{1: -1, 2: -1}
	statuses := map[string]int{}
	for _, p := range polls {
		after := p.sent.Sub(revoked)
		statuses[fmt.Sprintf("instance %d: %d", p.inst, p.status)]++
		if p.status == 200 {
			lastOld[p.inst] = max(lastOld[p.inst], after)
		}
	}
	newExchanges := c.Fake.Stats().ExchangeCalls - exchanges
	last := func(i int) string {
		if lastOld[i] < 0 {
			return "none"
		}
		return lastOld[i].Round(time.Millisecond).String() + " after the revoke"
	}
	t.Logf("after the revoke on instance 0: %v; last 200: %s (instance 1, session), %s (instance 2, key); new exchange calls %d",
		statuses, last(1), last(2), newExchanges)
	stale := clBearersAfter(c.Fake.Requests(), revoked.Add(time.Second))[strings.TrimPrefix(bearer, "Bearer ")]
	if len(stale) > 0 {
		t.Errorf("amoCRM received the revoked token %d times from 1 s after the revoke on (last %v after)", len(stale), stale[len(stale)-1].Sub(revoked))
	}
	if lastOld[1] >= time.Second {
		t.Errorf("instance 1 served the revoked user's session %v after the revoke; want refused within 1 s", lastOld[1])
	}
	if newExchanges == 0 && lastOld[2] >= time.Second {
		t.Errorf("instance 2 served the revoked user %v after the revoke without a new exchange", lastOld[2])
	}
	c.AssertNoViolations()
	c.AssertNoSecrets()
}

// TestClusterRateLimit offers 60 requests per second of one account, spread
// over 3 instances with rate_limit 7, for 20 s: amoCRM never sees more than
// 7 requests of the account in any sliding second (OAuth calls included),
// and at least 6 per second get through.
func TestClusterRateLimit(t *testing.T) {
	const users, rps, limit = 4, 60, 7
	dur := 20 * time.Second
	c := NewCluster(t, ClusterOptions{Users: users, Extra: []string{fmt.Sprintf("rate_limit %d", limit)}})
	for i, u := range c.Users {
		if r := c.Get(i%len(c.Nodes), u); r.Status != 200 {
			t.Fatalf("first request of %s: %d %v %.200s", u.Login, r.Status, r.Err, r.Body)
		}
	}
	time.Sleep(1500 * time.Millisecond)
	hc := &http.Client{Timeout: 20 * time.Second, Transport: &http.Transport{Proxy: nil, MaxIdleConns: 512, MaxIdleConnsPerHost: 512}}
	var st tlStatuses
	var wg sync.WaitGroup
	tick := time.NewTicker(time.Second / rps)
	start := time.Now()
	for k := 0; time.Since(start) < dur; k++ {
		<-tick.C
		wg.Add(1)
		go func() {
			defer wg.Done()
			u := c.Users[k%users]
			st.add(clSend(hc, c.Nodes[k%len(c.Nodes)].BaseURL(), http.MethodGet, "/api/v2/account?"+u.query(""), nil, nil))
		}()
	}
	tick.Stop()
	end := time.Now()
	wg.Wait()
	reqs := c.Fake.Requests()
	inWindow := 0
	for _, r := range reqs {
		if r.Account == testAccount && !r.Time.Before(start) && r.Time.Before(end) {
			inWindow++
		}
	}
	peak := maxPerSlidingSecond(reqs, testAccount)
	achieved := float64(inWindow) / end.Sub(start).Seconds()
	t.Logf("%d requests offered at %d/s over %d instances in %v: %s; amoCRM got %.2f/s, at most %d in a sliding second",
		st.total(), rps, len(c.Nodes), end.Sub(start).Round(time.Millisecond), &st, achieved, peak)
	if peak > limit {
		t.Errorf("amoCRM saw %d requests of the account in one sliding second; rate_limit %d holds across the cluster", peak, limit)
	}
	if achieved < limit-1 {
		t.Errorf("amoCRM got %.2f requests per second; want at least %d", achieved, limit-1)
	}
	if n := st.total() - st.get(200) - st.get(429); n != 0 {
		t.Errorf("%d answers were neither 200 nor 429: %s", n, &st)
	}
	c.AssertNoViolations()
}

// TestClusterWakeupFigures measures, for docs/performance.md, how soon a
// cold request waiting on one instance is answered once amoCRM's callback
// has landed on another (and, for comparison, on the same one). Figures,
// not a timed assertion.
func TestClusterWakeupFigures(t *testing.T) {
	per := 30 // cold requests per mode; AMOBRIDGE_WAKEUP_N for more
	if v := os.Getenv("AMOBRIDGE_WAKEUP_N"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n <= 0 {
			t.Fatalf("AMOBRIDGE_WAKEUP_N=%q is not a positive number", v)
		}
		per = n
	}
	var mode atomic.Int32 // 0: another instance, 1: the same
	delay := 100 * time.Millisecond
	c := NewCluster(t, ClusterOptions{
		Users: 2 * per,
		Fake:  func(o *fakeamocrm.Options) { o.CallbackDelay = delay },
		Extra: []string{"rate_limit 0"},
		Route: func(from, n, seq int) int {
			if mode.Load() == 1 {
				return clRouteSame(from, n, seq)
			}
			return clRouteNext(from, n, seq)
		},
	})
	for m, name := range []string{"callback on another instance", "callback on the same instance"} {
		mode.Store(int32(m))
		var afterCallback, afterCode, minusDelay []time.Duration
		for k := range per {
			i := m*per + k
			ncb, ncalls := len(c.Callbacks()), len(c.Front.Calls())
			r := c.Get(i%len(c.Nodes), c.Users[i])
			answered := time.Now()
			if r.Status != 200 {
				t.Fatalf("%s: cold request of %s: %d %v %.200s", name, c.Users[i].Login, r.Status, r.Err, r.Body)
			}
			cbs := c.Callbacks()[ncb:]
			var code *clOAuthCall
			for _, cl := range c.Front.Calls()[ncalls:] {
				if cl.Kind == "code" {
					code = &cl
				}
			}
			if len(cbs) != 1 || code == nil {
				t.Fatalf("%s: %d callbacks and no code grant seen for one cold request", name, len(cbs))
			}
			if (m == 0) == (cbs[0].From == cbs[0].To) {
				t.Fatalf("%s: the callback of instance %d's exchange went to instance %d", name, cbs[0].From, cbs[0].To)
			}
			afterCallback = append(afterCallback, answered.Sub(cbs[0].Done))
			afterCode = append(afterCode, answered.Sub(code.Done))
			minusDelay = append(minusDelay, r.Took-delay)
		}
		p50a, p99a, maxa := clPercentiles(afterCallback)
		p50b, p99b, maxb := clPercentiles(afterCode)
		p50c, p99c, maxc := clPercentiles(minusDelay)
		t.Logf("%s, %d cold requests: callback answered -> client answered p50 %v p99 %v max %v; code grant answered -> client answered p50 %v p99 %v max %v; cold latency minus the %v callback delay p50 %v p99 %v max %v",
			name, per, p50a, p99a, maxa, p50b, p99b, maxb, delay, p50c, p99c, maxc)
	}
	c.AssertNoViolations()
}
