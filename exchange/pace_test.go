package exchange

import (
	"context"
	"fmt"
	"testing"
	"time"
)

func TestLimiterOffWhenZero(t *testing.T) {
	l := newAccountLimiter(0)
	for i := 0; i < 1000; i++ {
		if w, ra, err := l.wait(context.Background(), "acme", 0); w != 0 || ra != 0 || err != nil {
			t.Fatalf("rate_limit 0 must not limit: %v %v %v", w, ra, err)
		}
	}
}

func TestLimiterQueueIsBounded(t *testing.T) {
	l := newAccountLimiter(1) // about one request per second
	l.maxWait = 50 * time.Millisecond
	ctx := context.Background()
	if _, ra, err := l.wait(ctx, "acme", 0); ra != 0 || err != nil {
		t.Fatalf("first request must pass: %v %v", ra, err)
	}
	// The next one would wait about a second: more than maxWait.
	_, ra, err := l.wait(ctx, "acme", 0)
	if err != nil || ra <= 0 {
		t.Fatalf("a request past the queue bound must be refused with a retry time, got %v %v", ra, err)
	}
	// Another account is not affected.
	if _, ra, err := l.wait(ctx, "other", 0); ra != 0 || err != nil {
		t.Fatalf("another account must pass: %v %v", ra, err)
	}
}

func TestLimiterWaitEndsWithContext(t *testing.T) {
	l := newAccountLimiter(1)
	ctx, cancel := context.WithCancel(context.Background())
	if _, _, err := l.wait(ctx, "acme", 0); err != nil {
		t.Fatal(err)
	}
	cancel()
	if _, _, err := l.wait(ctx, "acme", 0); err == nil {
		t.Fatal("a waiting request whose client left must end with the context's error")
	}
}

func TestLimiterForgetsIdleAccounts(t *testing.T) {
	l := newAccountLimiter(1000)
	now := time.Now()
	for i := 0; i < maxIdleLimiters+10; i++ {
		l.limiterFor(fmt.Sprintf("acct%d", i), now.Add(time.Hour))
	}
	if n := len(l.per); n > maxIdleLimiters {
		t.Fatalf("%d limiters kept, want at most %d", n, maxIdleLimiters)
	}
}

func TestGuardedRateStaysUnderTheLimit(t *testing.T) {
	for _, r := range []float64{0.5, 1, 7, 7.5, 100} {
		g := float64(guardedRate(r))
		if g <= 0 || g >= r {
			t.Errorf("rate %v: pace %v, want in (0, %v)", r, g, r)
		}
		// n+1 evenly paced requests must span more than one second plus
		// the guard's share, so no one-second window holds n+1.
		n := max(1, int(r))
		if span := float64(n) / g; span < 1.0 && r >= 1 {
			t.Errorf("rate %v: %d requests span %.3fs, want >= 1s", r, n+1, span)
		}
	}
	if guardedRate(0) != 0 {
		t.Error("rate 0 must mean no limit")
	}
}

// TestLimiterSetRateKeepsSpentTurns: a new rate (a reload) applies to the
// accounts' limiters as they are: a turn just spent is not given back.
func TestLimiterSetRateKeepsSpentTurns(t *testing.T) {
	l := newAccountLimiter(0.1) // one request per ~10 s
	ctx := context.Background()
	if _, ra, err := l.wait(ctx, "acme", 0); ra != 0 || err != nil {
		t.Fatalf("first request: %v %v", ra, err)
	}
	l.setRate(0.2) // the same burst of one, a little faster: still ~5 s away
	if _, ra, err := l.wait(ctx, "acme", time.Second); ra == 0 || err != nil {
		t.Fatalf("after setRate the spent turn came back: retry after %v, %v", ra, err)
	}
	l.setRate(0)
	if _, ra, err := l.wait(ctx, "acme", 0); ra != 0 || err != nil {
		t.Fatalf("rate 0 must not limit: %v %v", ra, err)
	}
}
