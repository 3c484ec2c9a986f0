package integration_test

import (
	"net/http"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// clRedisStoreBlock is the `store redis { ... }` block of an instance's
// Caddyfile (cluster_helpers_test.go's template).
var clRedisStoreBlock = regexp.MustCompile(`(?s)\n\t\tstore redis \{\n.*?\n\t\t\}\n`)

// TestClusterCopyStore moves a single instance's Badger store into Redis
// with `caddy amocrm copy-store` (issue 11, item 9): a Caddy with a Badger
// store serves a user (one exchange) and creates an auth.php session; it is
// stopped; copy-store copies its store into a Redis key prefix; two Caddys
// with `store redis` (the same prefix and encryption key) then serve the
// user with the copied pair (no new exchange, no code grant, the same
// Bearer token) and accept the copied session.
func TestClusterCopyStore(t *testing.T) {
	// Instance 0 runs with Badger, then instances 1 and 2 with Redis; each
	// callback goes to the instance that asked (only instance 0 exchanges).
	c := NewCluster(t, ClusterOptions{Stopped: true, Route: clRouteSame, Extra: []string{"rate_limit 0"}})
	u := c.Users[0]
	badgerDir := filepath.Join(c.Nodes[0].Dir, "store")
	single := c.Caddyfile(0)
	if !clRedisStoreBlock.MatchString(single) {
		t.Fatalf("no store redis block in the cluster's Caddyfile:\n%s", single)
	}
	single = clRedisStoreBlock.ReplaceAllLiteralString(single, "\n\t\tstore badger {\n\t\t\tpath "+badgerDir+
		"\n\t\t\tencryption_key {env.AMOBRIDGE_STORE_KEY}\n\t\t}\n")
	c.Nodes[0].Start(single)

	if r := c.Get(0, u); r.Status != http.StatusOK {
		t.Fatalf("first request on the Badger instance: %d %v %.300s", r.Status, r.Err, r.Body)
	}
	form := "USER_LOGIN=" + loginQ + "&USER_HASH=" + u.Key
	r := clSend(client, c.Nodes[0].BaseURL(), http.MethodPost, authPHP+"?type=json",
		http.Header{"Content-Type": {"application/x-www-form-urlencoded"}}, []byte(form))
	if r.Status != http.StatusOK {
		t.Fatalf("auth.php on the Badger instance: %d %v %.300s", r.Status, r.Err, r.Body)
	}
	sc := sessionCookie(t, &Response{Status: r.Status, Header: r.Header, Body: r.Body})
	cookie := http.Header{"Cookie": {"session_id=" + sc.Value}}
	session := func(i int) tlResult {
		return clSend(client, c.Nodes[i].BaseURL(), http.MethodGet, "/api/v2/account?page=1", cookie, nil)
	}
	if r := session(0); r.Status != http.StatusOK {
		t.Fatalf("the session on the Badger instance: %d %v %.300s", r.Status, r.Err, r.Body)
	}
	before := c.Fake.Stats()
	if before.ExchangeCalls != 1 || before.CodeGrants != 1 {
		t.Fatalf("the Badger instance: %d exchange calls, %d code grants; want 1 and 1", before.ExchangeCalls, before.CodeGrants)
	}
	reqs := c.Fake.Requests()
	bearer := reqs[len(reqs)-1].Header.Get("Authorization")
	if !strings.HasPrefix(bearer, "Bearer ") {
		t.Fatalf("the Badger instance's last request reached amoCRM with Authorization %q", bearer)
	}
	c.Nodes[0].Stop()

	out, err := c.Nodes[0].Command("amocrm", "copy-store", "--from", "badger:"+badgerDir,
		"--to", "redis:"+c.Redis.Addr(), "--prefix", c.KeyPrefix)
	t.Logf("caddy amocrm copy-store: %s", strings.TrimSpace(out))
	if err != nil {
		t.Fatalf("caddy amocrm copy-store: %v\n%s", err, out)
	}
	if !strings.Contains(out, "copied 1 token pairs and 1 sessions") {
		t.Errorf("copy-store's report: %q; want 1 token pair and 1 session copied", out)
	}
	for name, v := range map[string]string{"encryption key": c.StoreKey, "USER_HASH": u.Key, "client_secret": c.ClientSecret} {
		if strings.Contains(out, v) {
			t.Errorf("copy-store's output contains the %s", name)
		}
	}

	for i := 1; i <= 2; i++ {
		c.Nodes[i].Start(c.Caddyfile(i))
	}
	for i := 1; i <= 2; i++ {
		n := len(c.Fake.Requests())
		if r := c.Get(i, u); r.Status != http.StatusOK {
			t.Errorf("the copied user on Redis instance %d: %d %v %.300s", i, r.Status, r.Err, r.Body)
		} else if got := c.Fake.Requests()[n:]; len(got) != 1 || got[0].Header.Get("Authorization") != bearer {
			t.Errorf("the copied user on Redis instance %d did not reach amoCRM once with the copied token", i)
		}
		n = len(c.Fake.Requests())
		if r := session(i); r.Status != http.StatusOK {
			t.Errorf("the copied auth.php session on Redis instance %d: %d %v %.300s", i, r.Status, r.Err, r.Body)
		} else if got := c.Fake.Requests()[n:]; len(got) != 1 || got[0].Header.Get("Authorization") != bearer || got[0].Login != u.Login {
			t.Errorf("the copied session on Redis instance %d did not reach amoCRM once with the user's copied token", i)
		}
	}
	after := c.Fake.Stats()
	t.Logf("fake: exchange calls %d -> %d, code grants %d -> %d, refreshes %d -> %d",
		before.ExchangeCalls, after.ExchangeCalls, before.CodeGrants, after.CodeGrants, before.Refreshes, after.Refreshes)
	if after.ExchangeCalls != before.ExchangeCalls || after.CodeGrants != before.CodeGrants || after.Refreshes != before.Refreshes {
		t.Errorf("after copy-store the Redis instances called amoCRM's OAuth: exchange calls %d -> %d, code grants %d -> %d, refreshes %d -> %d; want none",
			before.ExchangeCalls, after.ExchangeCalls, before.CodeGrants, after.CodeGrants, before.Refreshes, after.Refreshes)
	}
	for i := 1; i <= 2; i++ {
		if n := strings.Count(c.Nodes[i].Logs(), `"msg":"tokens obtained"`); n != 0 {
			t.Errorf("Redis instance %d logged %d \"tokens obtained\"; want none", i, n)
		}
	}
	c.AssertNoViolations()
	c.AssertNoSecrets()
}
