package exchange

import (
	"context"
	"errors"
	"math"
	"time"

	"github.com/amobridge/amobridge/tokenstore"
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

// paceEvery returns the time between two turns that keeps a little under
// perSecond in every one-second window; 0 means no limit.
func paceEvery(perSecond float64) time.Duration {
	if perSecond <= 0 {
		return 0
	}
	n := math.Max(1, math.Floor(perSecond))
	return time.Duration((n/perSecond + rateGuard.Seconds()) / n * float64(time.Second))
}

// Turn waits for the account's turn to send one request to amoCRM under
// Config.RateLimit, and returns how long it waited. The turns are the
// store's (Coordinator.Reserve): one queue per account however many
// handlers, configurations or instances of a cluster use the store. When
// the turn is further away than maxWait (0: 5 seconds) it returns at once
// with retryAfter > 0, taking no turn. It returns ctx's error if ctx ends
// first; a turn it waited for is not given back, so that no two requests
// leave closer together than the pace.
func (b *Broker) Turn(ctx context.Context, account string, maxWait time.Duration) (waited, retryAfter time.Duration, err error) {
	every := paceEvery(b.cfg.Load().RateLimit)
	if every == 0 {
		return 0, 0, nil
	}
	if maxWait <= 0 {
		maxWait = maxQueueWait
	}
	wait, ok, err := b.store.Reserve(ctx, "pace/"+account, every, maxWait)
	if errors.Is(err, tokenstore.ErrUnavailable) {
		// The shared budget is out of reach (Redis down): pace on this
		// process's own queue rather than stop serving warm users. Until
		// Redis is back, each instance keeps the pace alone.
		wait, ok, err = b.localPace.Reserve(ctx, "pace/"+account, every, maxWait)
	}
	if err != nil {
		return 0, 0, err
	}
	if !ok {
		return 0, wait + time.Second, nil
	}
	if wait == 0 {
		return 0, 0, nil
	}
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case <-t.C:
		return wait, 0, nil
	case <-ctx.Done():
		return 0, 0, ctx.Err()
	}
}

// turn takes the broker's own turn in the account's budget before a call
// to amoCRM: it waits up to maxWait (0: the queue's bound) and fails with
// KindBusy, taking no turn, if the turn is further away.
func (b *Broker) turn(ctx context.Context, account, op string, maxWait time.Duration) *Error {
	_, retry, err := b.Turn(ctx, account, maxWait)
	switch {
	case err != nil && ctx.Err() != nil:
		return ctxErr(op, ctx)
	case err != nil:
		return newErr(KindInternal, op, err)
	case retry > 0:
		return &Error{Kind: KindBusy, Op: op, RetryAfter: retry, Err: errBudget}
	}
	return nil
}
