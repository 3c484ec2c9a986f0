package exchange

import (
	"context"
	"testing"
	"time"
)

func TestPaceStaysUnderTheLimit(t *testing.T) {
	for _, r := range []float64{0.5, 1, 7, 7.5, 100} {
		every := paceEvery(r)
		if every <= 0 {
			t.Fatalf("rate %v: no pace", r)
		}
		// n+1 evenly paced requests must span more than one second, so no
		// one-second window holds n+1.
		n := max(1, int(r))
		if span := time.Duration(n) * every; span <= time.Second && r >= 1 {
			t.Errorf("rate %v: %d requests span %v, want > 1s", r, n+1, span)
		}
		if got := float64(time.Second) / float64(every); got >= r {
			t.Errorf("rate %v: pace %.2f/s, want below it", r, got)
		}
	}
	if paceEvery(0) != 0 {
		t.Error("rate 0 must mean no limit")
	}
}

func TestTurnOffWhenZero(t *testing.T) {
	e := newEnv(t, fakeStore, func(c *Config) { c.RateLimit = 0 })
	for range 1000 {
		if w, ra, err := e.b.Turn(context.Background(), "acme", 0); w != 0 || ra != 0 || err != nil {
			t.Fatalf("rate_limit 0 must not limit: %v %v %v", w, ra, err)
		}
	}
}

func TestTurnQueueIsBounded(t *testing.T) {
	e := newEnv(t, fakeStore, func(c *Config) { c.RateLimit = 1 }) // about one request per 1.1 s
	ctx := context.Background()
	if _, ra, err := e.b.Turn(ctx, "acme", 0); ra != 0 || err != nil {
		t.Fatalf("first request must pass: %v %v", ra, err)
	}
	// The next one would wait about a second: more than 50 ms.
	_, ra, err := e.b.Turn(ctx, "acme", 50*time.Millisecond)
	if err != nil || ra <= 0 {
		t.Fatalf("a request past the queue bound must be refused with a retry time, got %v %v", ra, err)
	}
	// Another account is not affected.
	if _, ra, err := e.b.Turn(ctx, "other", 0); ra != 0 || err != nil {
		t.Fatalf("another account must pass: %v %v", ra, err)
	}
}

func TestTurnWaitEndsWithContext(t *testing.T) {
	e := newEnv(t, fakeStore, func(c *Config) { c.RateLimit = 1 })
	ctx, cancel := context.WithCancel(context.Background())
	if _, _, err := e.b.Turn(ctx, "acme", 0); err != nil {
		t.Fatal(err)
	}
	cancel()
	if _, _, err := e.b.Turn(ctx, "acme", 0); err == nil {
		t.Fatal("a waiting request whose client left must end with the context's error")
	}
}

// TestTurnKeptAcrossSetConfig: a new rate (a reload) applies to the
// account's queue as it is: a turn just spent is not given back.
func TestTurnKeptAcrossSetConfig(t *testing.T) {
	e := newEnv(t, fakeStore, func(c *Config) { c.RateLimit = 0.1 }) // one request per ~10 s
	ctx := context.Background()
	if _, ra, err := e.b.Turn(ctx, "acme", 0); ra != 0 || err != nil {
		t.Fatalf("first request: %v %v", ra, err)
	}
	c := e.cfg
	c.RateLimit = 0.2
	if err := e.b.SetConfig(c); err != nil {
		t.Fatal(err)
	}
	if _, ra, err := e.b.Turn(ctx, "acme", time.Second); ra == 0 || err != nil {
		t.Fatalf("after SetConfig the spent turn came back: retry after %v, %v", ra, err)
	}
}
