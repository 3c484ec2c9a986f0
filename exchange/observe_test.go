package exchange

import (
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/amobridge/amobridge/tokenstore"
)

func TestResultOf(t *testing.T) {
	cases := map[string]error{
		"ok":       nil,
		"rejected": &Error{Kind: KindWrongKey},
		"limited":  &Error{Kind: KindLimited},
		"timeout":  &Error{Kind: KindTimeout},
		"failed":   errors.New("boom"),
	}
	for want, err := range cases {
		if got := resultOf(err); got != want {
			t.Errorf("resultOf(%v) = %q, want %q", err, got, want)
		}
	}
}

// TestObserveReportsLookupsExchangesAndRefreshes checks that the metrics
// hook hears of each event once, with its result.
func TestObserveReportsLookupsExchangesAndRefreshes(t *testing.T) {
	var mu sync.Mutex
	seen := map[string]int{}
	e := newEnv(t, badgerStore, func(c *Config) {
		c.Observe = func(event, result string, d time.Duration) {
			mu.Lock()
			seen[event+"/"+result]++
			mu.Unlock()
		}
	})
	count := func(k string) int {
		mu.Lock()
		defer mu.Unlock()
		return seen[k]
	}
	const login = "obs@example.com"
	key := e.user(login)
	e.mustToken(login, key) // miss, exchange
	e.mustToken(login, key) // hit
	e.clock.Advance(25 * time.Hour)
	e.mustToken(login, key) // hit, refresh
	if _, err := e.token(login, "wrong-key-"+randHex(8)); err == nil {
		t.Fatal("a wrong key got a token")
	}
	want := map[string]int{"lookup/miss": 1, "exchange/ok": 1, "refresh/ok": 1}
	for k, n := range want {
		if got := count(k); got != n {
			t.Errorf("%s: %d, want %d (all: %v)", k, got, n, seen)
		}
	}
	if got := count("lookup/hit"); got < 3 {
		t.Errorf("lookup/hit: %d, want >= 3", got)
	}
	if got := count("exchange/rejected"); got != 1 {
		t.Errorf("exchange/rejected: %d, want 1 (the wrong key is tried once)", got)
	}
}

func TestTokenCounts(t *testing.T) {
	now := time.Now()
	ahead, keep := 10*time.Minute, 30*24*time.Hour
	var tc TokenCounts
	for _, tok := range []*tokenstore.Token{
		{RefreshToken: "r", Expiry: now.Add(time.Hour), IssuedAt: now},
		{RefreshToken: "r", Expiry: now.Add(5 * time.Minute), IssuedAt: now.Add(-time.Hour)},
		{RefreshToken: "r", Expiry: now.Add(-time.Minute), IssuedAt: now.Add(-40 * 24 * time.Hour)},
		{RefreshToken: "", Expiry: now.Add(time.Hour), IssuedAt: now.Add(-100 * 24 * time.Hour)},
	} {
		tc.add(tok.Summary(), now, ahead, keep)
	}
	want := TokenCounts{Fresh: 1, RefreshDue: 1, Expired: 1, Dead: 1, KeepAlive: 1, OldestRefresh: 40 * 24 * time.Hour}
	if tc != want {
		t.Fatalf("got %+v, want %+v", tc, want)
	}
}

// TestKeeperReportsTokenCounts checks that each keeper run hands its census
// to Config.Tokens.
func TestKeeperReportsTokenCounts(t *testing.T) {
	var mu sync.Mutex
	var got []TokenCounts
	e := newEnv(t, badgerStore, func(c *Config) {
		c.Tokens = func(tc TokenCounts) {
			mu.Lock()
			got = append(got, tc)
			mu.Unlock()
		}
	})
	for _, login := range []string{"t1@example.com", "t2@example.com"} {
		e.mustToken(login, e.user(login))
	}
	e.b.keepOnce()
	e.clock.Advance(24*time.Hour - 5*time.Minute)
	e.b.keepOnce()
	mu.Lock()
	defer mu.Unlock()
	if len(got) != 2 {
		t.Fatalf("%d reports, want 2", len(got))
	}
	if got[0].Fresh != 2 || got[0].RefreshDue != 0 {
		t.Errorf("first run: %+v, want 2 fresh", got[0])
	}
	if got[1].RefreshDue != 2 || got[1].Fresh != 0 {
		t.Errorf("second run: %+v, want 2 due for refresh", got[1])
	}
}
