package exchange

import (
	"context"
	"math"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// rateGuard is added to every window of n = floor(rate) requests: the pace
// is n requests per (n/rate + rateGuard). Requests leave the queue evenly
// spaced, and the guard absorbs the jitter between leaving the queue here
// and arriving at amoCRM, so that amoCRM never counts one request too many
// in any one-second window (for rate 7: 6.4 requests per second).
const rateGuard = 100 * time.Millisecond

// maxQueueWait bounds the queue: a request that would wait longer than this
// for its turn is refused with 429 instead.
const maxQueueWait = 5 * time.Second

// maxIdleLimiters bounds how many per-account limiters are kept: past it,
// limiters of accounts that are idle (a full bucket) are dropped.
const maxIdleLimiters = 10000

// accountLimiter paces requests toward amoCRM per account. Requests beyond the
// rate wait their turn in a queue bounded by maxWait. It lives as long as the
// broker that owns it, so an account's budget is one however many handlers
// use the store, and it is kept across configuration reloads.
type accountLimiter struct {
	maxWait time.Duration
	mu      sync.Mutex
	limit   rate.Limit // 0: no limit; guarded by mu, read through current
	per     map[string]*rate.Limiter
}

func newAccountLimiter(perSecond float64) *accountLimiter {
	return &accountLimiter{limit: guardedRate(perSecond), maxWait: maxQueueWait,
		per: make(map[string]*rate.Limiter)}
}

// setRate changes the pace of every account, keeping what each has spent.
func (l *accountLimiter) setRate(perSecond float64) {
	lim := guardedRate(perSecond)
	l.mu.Lock()
	defer l.mu.Unlock()
	if lim == l.limit {
		return
	}
	l.limit = lim
	now := time.Now()
	for _, x := range l.per {
		x.SetLimitAt(now, lim)
	}
}

// guardedRate returns the pace that keeps a little under perSecond in every
// one-second window; 0 means no limit.
func guardedRate(perSecond float64) rate.Limit {
	if perSecond <= 0 {
		return 0
	}
	n := math.Max(1, math.Floor(perSecond))
	return rate.Limit(n / (n/perSecond + rateGuard.Seconds()))
}

// limiterFor returns the account's limiter, creating it if needed; nil when
// there is no limit.
func (l *accountLimiter) limiterFor(account string, now time.Time) *rate.Limiter {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.limit <= 0 {
		return nil
	}
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
// long it waited. When the turn is further away than maxWait (0: the
// limiter's own bound) it returns at once with retryAfter > 0: how long to
// come back after. It returns ctx's error if ctx ends first.
func (l *accountLimiter) wait(ctx context.Context, account string, maxWait time.Duration) (waited time.Duration, retryAfter time.Duration, err error) {
	if l == nil {
		return 0, 0, nil
	}
	if maxWait <= 0 {
		maxWait = l.maxWait
	}
	now := time.Now()
	lim := l.limiterFor(account, now)
	if lim == nil {
		return 0, 0, nil
	}
	// Refuse before reserving: a reservation is never given back, because
	// x/time/rate's cancellation hands its slot to later callers and so
	// packs requests closer than the pace. (A refused request costs no slot.)
	if tokens := lim.TokensAt(now); tokens < 1 {
		delay := time.Duration((1 - tokens) / float64(lim.Limit()) * float64(time.Second))
		if delay > maxWait {
			return 0, delay - maxWait + time.Second, nil
		}
	}
	res := lim.ReserveN(now, 1)
	delay := res.DelayFrom(now)
	if delay == 0 {
		return 0, 0, nil
	}
	t := time.NewTimer(delay)
	defer t.Stop()
	select {
	case <-t.C:
		return delay, 0, nil
	case <-ctx.Done():
		// The slot stays taken: giving it back could let two requests
		// leave closer together than the pace.
		return 0, 0, ctx.Err()
	}
}

// turn takes the broker's own turn in the account's budget before a call
// to amoCRM: it waits up to maxWait (0: the queue's bound) and fails with
// KindBusy, taking no turn, if the turn is further away.
func (b *Broker) turn(ctx context.Context, account, op string, maxWait time.Duration) *Error {
	_, retry, err := b.pace.wait(ctx, account, maxWait)
	if err != nil {
		return ctxErr(op, ctx)
	}
	if retry > 0 {
		return &Error{Kind: KindBusy, Op: op, RetryAfter: retry, Err: errBudget}
	}
	return nil
}

// waitIdle blocks until the account's next turn is free (without taking
// it), or ctx ends.
func (l *accountLimiter) waitIdle(ctx context.Context, account string) error {
	for {
		now := time.Now()
		lim := l.limiterFor(account, now)
		if lim == nil {
			return nil
		}
		tokens := lim.TokensAt(now)
		if tokens >= 1 {
			return nil
		}
		t := time.NewTimer(time.Duration((1 - tokens) / float64(lim.Limit()) * float64(time.Second)))
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		}
	}
}

// WaitIdle blocks until the account's budget toward amoCRM has a turn free
// now, without taking it: work that can wait (a bulk exchange) lets the
// broker's own calls take their turns without queueing behind it.
func (b *Broker) WaitIdle(ctx context.Context, account string) error {
	return b.pace.waitIdle(ctx, account)
}
