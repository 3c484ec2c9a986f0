package exchange

import (
	"errors"
	"sync"
	"testing"
	"time"
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
