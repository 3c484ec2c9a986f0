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

// maxIdleLimiters bounds how many per-account limiters are kept: past it,
// limiters of accounts that are idle (a full bucket) are dropped.
const maxIdleLimiters = 10000

// accountLimiter paces requests toward amoCRM per account. Requests beyond the
// rate wait their turn in a queue bounded by maxWait.
type accountLimiter struct {
	limit   rate.Limit // 0: no limit
	maxWait time.Duration
	mu      sync.Mutex
	per     map[string]*rate.Limiter
}

func newAccountLimiter(perSecond float64) *accountLimiter {
	return &accountLimiter{limit: rate.Limit(perSecond * rateMargin), maxWait: maxQueueWait,
		per: make(map[string]*rate.Limiter)}
}

// limiterFor returns the account's limiter, creating it if needed.
func (l *accountLimiter) limiterFor(account string, now time.Time) *rate.Limiter {
	l.mu.Lock()
	defer l.mu.Unlock()
	lim := l.per[account]
	if lim == nil {
		if len(l.per) >= maxIdleLimiters {
			for k, v := range l.per {
				if v.TokensAt(now) >= 1 {
					delete(l.per, k)
				}
			}
		}
		lim = rate.NewLimiter(l.limit, 1)
		l.per[account] = lim
	}
	return lim
}

// wait blocks until the account may send one more request and returns how
// long it waited. When the queue is full it returns at once with retryAfter
// > 0: how long to come back after. It returns ctx's error if ctx ends first.
func (l *accountLimiter) wait(ctx context.Context, account string) (waited time.Duration, retryAfter time.Duration, err error) {
	if l == nil || l.limit <= 0 {
		return 0, 0, nil
	}
	now := time.Now()
	lim := l.limiterFor(account, now)
	res := lim.ReserveN(now, 1)
	delay := res.DelayFrom(now)
	if delay == 0 {
		return 0, 0, nil
	}
	if delay > l.maxWait {
		res.CancelAt(now)
		return 0, delay - l.maxWait + time.Second, nil
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
