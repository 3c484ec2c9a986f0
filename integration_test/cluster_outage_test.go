package integration_test

import (
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/amobridge/amobridge/integration_test/fakeamocrm"
)

// clServedAgain asks instance i for u every 100 ms until it answers 200 (at
// most within d) and returns how long after since the successful request was
// sent (or -1) and the answers seen.
func clServedAgain(c *Cluster, i int, u tlUser, since time.Time, d time.Duration) (time.Duration, *tlStatuses) {
	var st tlStatuses
	for time.Since(since) < d {
		sent := time.Now()
		r := c.Get(i, u)
		st.add(r)
		if r.Status == http.StatusOK {
			return sent.Sub(since), &st
		}
		time.Sleep(100 * time.Millisecond)
	}
	return -1, &st
}

// TestClusterRedisDownExpiredAccess: while Redis is stopped, a warm user
// whose access token amoCRM has expired (the fake's ExpireAccess: every
// instance still holds the token as valid, amoCRM answers 401) is answered
// 503 with Retry-After on every instance, not 401 (the 401 cannot be
// reauthorized: the refresh needs the user's lock and the pair in Redis),
// and nothing is refreshed; within 5 s of Redis's return every instance
// serves the user again (one refresh, under the lock).
func TestClusterRedisDownExpiredAccess(t *testing.T) {
	c := NewCluster(t, ClusterOptions{Users: 2, Extra: []string{"rate_limit 0"}})
	u, warm := c.Users[0], c.Users[1]
	for i := range c.Nodes { // warm on every instance: each caches the pair
		for _, x := range []tlUser{u, warm} {
			if r := c.Get(i, x); r.Status != http.StatusOK {
				t.Fatalf("warming %s on instance %d: %d %v %.200s", x.Login, i, r.Status, r.Err, r.Body)
			}
		}
	}
	c.Redis.Stop()
	downAt := time.Now()
	if err := c.Fake.ExpireAccess(testAccount, u.Login); err != nil {
		t.Fatal(err)
	}
	before := c.Fake.Stats()
	for i := range c.Nodes {
		r := c.Get(i, u)
		what := fmt.Sprintf("instance %d, Redis down, the user's access token expired at amoCRM", i)
		if r.Status == http.StatusUnauthorized {
			t.Errorf("%s: 401 (a 401 that cannot be reauthorized must be 503); body %.300s", what, r.Body)
			continue
		}
		tlLegacyError(t, what, r, http.StatusServiceUnavailable)
		if r.Status == http.StatusServiceUnavailable {
			t.Logf("%s: 503, Retry-After %d: %.200s", what, tlRetryAfter(t, what, r), r.Body)
		}
		// The other warm user is still served from the instance's cache.
		if r := c.Get(i, warm); r.Status != http.StatusOK {
			t.Errorf("instance %d, Redis down: a warm user with a valid token: %d %v %.200s; want 200", i, r.Status, r.Err, r.Body)
		}
	}
	mid := c.Fake.Stats()
	if mid.Refreshes != before.Refreshes || mid.RefreshErrors != before.RefreshErrors {
		t.Errorf("with Redis down amoCRM saw refresh grants (successful %d -> %d, failed %d -> %d); want none without the lock",
			before.Refreshes, mid.Refreshes, before.RefreshErrors, mid.RefreshErrors)
	}
	if mid.API401 <= before.API401 {
		t.Errorf("amoCRM answered no 401 while Redis was down (%d -> %d): the expired token never reached it", before.API401, mid.API401)
	}

	time.Sleep(time.Until(downAt.Add(3 * time.Second)))
	c.Redis.Start()
	upAt := time.Now()
	for i := range c.Nodes {
		took, st := clServedAgain(c, i, u, upAt, 10*time.Second)
		t.Logf("instance %d after Redis's return: served by a request sent %v after (answers %s)", i, took.Round(time.Millisecond), st)
		if took < 0 || took > 5*time.Second {
			t.Errorf("instance %d did not serve the user within 5 s of Redis's return: %s", i, st)
		}
	}
	after := c.Fake.Stats()
	if n := after.Refreshes - mid.Refreshes; n != 1 {
		t.Errorf("%d refreshes after Redis's return; want 1 (one instance under the lock, the others read its pair)", n)
	}
	if after.ExchangeCalls != before.ExchangeCalls {
		t.Errorf("%d exchange calls after the outage; the user kept its refresh token and needs none", after.ExchangeCalls-before.ExchangeCalls)
	}
	c.AssertNoViolations()
	c.AssertNoSecrets()
}

// TestClusterRedisDownExpiredByTime is the same outage for a token that
// expired by its own lifetime (5 s, refreshed 1 s ahead), so that the
// instance knows it must refresh before forwarding: 503 with Retry-After
// while Redis is down, served again within 5 s of its return.
func TestClusterRedisDownExpiredByTime(t *testing.T) {
	c := NewCluster(t, ClusterOptions{
		Instances: 2,
		Fake:      func(o *fakeamocrm.Options) { o.AccessTTL = 5 * time.Second },
		Extra:     []string{"rate_limit 0", "refresh_ahead 1s"},
	})
	u := c.Users[0]
	for i := range c.Nodes {
		if r := c.Get(i, u); r.Status != http.StatusOK {
			t.Fatalf("warming on instance %d: %d %v %.200s", i, r.Status, r.Err, r.Body)
		}
	}
	c.Redis.Stop()
	downAt := time.Now()
	before := c.Fake.Stats()
	time.Sleep(6 * time.Second) // the access token is past its expiry
	for i := range c.Nodes {
		what := fmt.Sprintf("instance %d, Redis down, the user's access token past its expiry", i)
		r := c.Get(i, u)
		tlLegacyError(t, what, r, http.StatusServiceUnavailable)
		if r.Status == http.StatusServiceUnavailable {
			t.Logf("%s: 503, Retry-After %d", what, tlRetryAfter(t, what, r))
		}
	}
	if mid := c.Fake.Stats(); mid.Refreshes != before.Refreshes || mid.RefreshErrors != before.RefreshErrors {
		t.Errorf("with Redis down amoCRM saw refresh grants (successful %d -> %d, failed %d -> %d); want none without the lock",
			before.Refreshes, mid.Refreshes, before.RefreshErrors, mid.RefreshErrors)
	}
	t.Logf("Redis down for %v", time.Since(downAt).Round(time.Millisecond))
	c.Redis.Start()
	upAt := time.Now()
	for i := range c.Nodes {
		took, st := clServedAgain(c, i, u, upAt, 10*time.Second)
		t.Logf("instance %d after Redis's return: served by a request sent %v after (answers %s)", i, took.Round(time.Millisecond), st)
		if took < 0 || took > 5*time.Second {
			t.Errorf("instance %d did not serve the user within 5 s of Redis's return: %s", i, st)
		}
	}
	if fs := c.Fake.Stats(); fs.ExchangeCalls != before.ExchangeCalls || fs.RefreshReuse != 0 {
		t.Errorf("after the outage: %d new exchange calls, %d refresh tokens reused; want 0 and 0", fs.ExchangeCalls-before.ExchangeCalls, fs.RefreshReuse)
	}
	c.AssertNoViolations()
	c.AssertNoSecrets()
}
