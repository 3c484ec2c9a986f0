package caddymodule

import (
	"context"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// rateMargin keeps the pace a little under the configured limit, so that
// timer and network jitter never put one request too many into one of
// amoCRM's one-second windows.
const rateMargin = 0.98

// maxQueueWait bounds the queue: a request that would wait longer than this
// for its turn is refused with 429 instead.
const maxQueueWait = 5 * time.Second

// accountLimiter paces requests toward amoCRM per account. Requests beyond the
// rate wait their turn in a queue bounded by maxQueueWait.
type accountLimiter struct {
	limit rate.Limit // 0: no limit
	mu    sync.Mutex
	per   map[string]*rate.Limiter
}

func newAccountLimiter(perSecond float64) *accountLimiter {
	return &accountLimiter{limit: rate.Limit(perSecond * rateMargin), per: make(map[string]*rate.Limiter)}
}

// wait blocks until the account may send one more request. It returns
// ok=false and how long to come back after when the queue is full, and an
// error if ctx ends first.
func (l *accountLimiter) wait(ctx context.Context, account string) (waited time.Duration, retryAfter time.Duration, err error) {
	if l == nil || l.limit <= 0 {
		return 0, 0, nil
	}
	l.mu.Lock()
	lim := l.per[account]
	if lim == nil {
		lim = rate.NewLimiter(l.limit, 1)
		l.per[account] = lim
	}
	l.mu.Unlock()

	now := time.Now()
	res := lim.ReserveN(now, 1)
	delay := res.DelayFrom(now)
	if delay == 0 {
		return 0, 0, nil
	}
	if delay > maxQueueWait {
		res.CancelAt(now)
		return 0, delay - maxQueueWait + time.Second, nil
	}
	t := time.NewTimer(delay)
	defer t.Stop()
	select {
	case <-t.C:
		return delay, 0, nil
	case <-ctx.Done():
		res.Cancel()
		return 0, 0, ctx.Err()
	}
}
