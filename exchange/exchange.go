package exchange

import (
	"context"
	"crypto/subtle"
	"errors"
	"time"

	"go.uber.org/zap"

	"github.com/amobridge/amobridge/tokenstore"
)

// flightResult is what an exchange flight hands to all its callers: the
// token, and the hash of the key it exchanged (the first caller's key).
type flightResult struct {
	tok *tokenstore.Token
	kh  []byte
}

// exchange runs (or joins) the user's exchange flight and judges its result
// for this caller's key. hadToken says the user has a token the key did not
// match: then any failure leaves the key wrong.
func (b *Broker) exchange(ctx context.Context, c *Config, a Account, login, key string, kh []byte, hadToken bool) (*tokenstore.Token, error) {
	const op = "exchange"
	ch := b.exchanges.DoChan(userKey(a.Name, login), func() (any, error) {
		return b.runExchange(a, login, key, kh)
	})
	var r flightResult
	var err error
	select {
	case res := <-ch:
		r, _ = res.Val.(flightResult)
		err = res.Err
	case <-ctx.Done():
		// Leave; the flight goes on for the others (and for the store).
		return nil, ctxErr(op, ctx)
	}
	now := c.Now()
	if err == nil {
		if r.tok != nil && keyMatches(r.tok, kh) {
			b.store.Touch(a.Name, login, now)
			return r.tok, nil
		}
		// The flight exchanged another caller's key.
		return nil, &Error{Kind: KindWrongKey, Op: op, Err: errKeyMismatch}
	}
	if subtle.ConstantTimeCompare(r.kh, kh) != 1 {
		// This caller's key was not tried: answer by the attempt the flight
		// recorded.
		if e := b.exchangeAllowed(ctx, a, login, kh, now, c.ExchangeInterval, hadToken); e != nil {
			return nil, e
		}
		return nil, err
	}
	if hadToken && KindOf(err) == KindLimited {
		var e *Error
		errors.As(err, &e)
		return nil, &Error{Kind: KindWrongKey, Op: op, RetryAfter: e.RetryAfter, Err: errKeyMismatch}
	}
	return nil, err
}

// runExchange is the body of a user's exchange flight. It runs under the
// broker's context, not a caller's: callers may leave, the flight goes on.
func (b *Broker) runExchange(a Account, login, key string, kh []byte) (r flightResult, err error) {
	c0, start := b.cfg.Load(), time.Now()
	defer func() {
		if r.tok != nil || err != nil {
			c0.observe("exchange", resultOf(err), time.Since(start))
		}
	}()
	return b.runExchangeFlight(a, login, key, kh)
}

// runExchangeFlight does the work of runExchange.
func (b *Broker) runExchangeFlight(a Account, login, key string, kh []byte) (flightResult, error) {
	const op = "exchange"
	r := flightResult{kh: kh}
	done, ok := b.track()
	if !ok {
		return r, newErr(KindInternal, op, ErrClosed)
	}
	defer done()
	c := b.cfg.Load()
	ctx := b.ctx
	log := c.Logger.With(userFields(a.Name, login)...)
	now := c.Now()

	// Another flight may have finished just before this one started.
	t, err := b.store.Get(ctx, a.Name, login)
	if err == nil && keyMatches(t, kh) && t.RefreshToken != "" && fresh(t, now, c.RefreshAhead) {
		r.tok = t
		return r, nil
	} else if err != nil && !errors.Is(err, tokenstore.ErrNotFound) {
		return r, newErr(KindInternal, op, err)
	}
	if e := b.exchangeAllowed(ctx, a, login, kh, now, c.ExchangeInterval, false); e != nil {
		log.Debug("exchange not allowed yet", zap.Duration("retry_after", e.RetryAfter), zap.Bool("rejected_key", errors.Is(e, errKeyRejected)))
		return r, e
	}

	state, err := newState()
	if err != nil {
		return r, newErr(KindInternal, op, errors.New("no randomness for the state"))
	}
	// Record the pending exchange and the attempt before amoCRM hears of
	// them: the code may arrive before amoCRM's answer does, and the limit
	// must hold even if this process dies now.
	if err := b.store.PutPending(ctx, tokenstore.Pending{
		State: state, Account: a.Name, Login: login, BaseURL: a.BaseURL,
		KeyHash: kh, Created: now, Expires: now.Add(c.CodeLifetime),
	}); err != nil {
		return r, newErr(KindInternal, op, err)
	}
	att := tokenstore.Attempt{Account: a.Name, Login: login, At: now, KeyHash: kh}
	if err := b.store.PutAttempt(ctx, att); err != nil {
		b.dropPending(state)
		return r, newErr(KindInternal, op, err)
	}
	w := b.addWaiter(state)
	defer b.dropWaiter(state, w)

	log.Info("exchanging the API key")
	cctx, cancel := context.WithTimeout(ctx, callTimeout)
	e := postExchange(cctx, c, a.BaseURL, login, key, state, now)
	cancel()
	if e != nil {
		switch e.Kind {
		case KindWrongKey:
			att.Rejected = true
			if err := b.store.PutAttempt(ctx, att); err != nil {
				log.Error("cannot record the rejected key", zap.Error(err))
			}
			b.dropPending(state)
		case KindLimited:
			if e.RetryAfter > c.ExchangeInterval {
				att.At = now.Add(e.RetryAfter - c.ExchangeInterval) // keep the limit as long as amoCRM asks
				if err := b.store.PutAttempt(ctx, att); err != nil {
					log.Error("cannot record the exchange limit", zap.Error(err))
				}
			}
			b.dropPending(state)
		}
		if errors.Is(e, errNotSent) {
			// amoCRM never heard of this attempt: it does not count.
			b.dropPending(state)
			att.At = time.Time{}
			if err := b.store.PutAttempt(ctx, att); err != nil {
				log.Error("cannot reset the exchange attempt", zap.Error(err))
			}
		}
		// Other upstream failures keep the pending state: amoCRM may have
		// taken the request, and its code will still be accepted.
		log.Warn("exchange failed", zap.Error(e))
		return r, e
	}
	log.Debug("exchange accepted; waiting for the code", zap.Duration("timeout", c.ExchangeTimeout))

	timer := time.NewTimer(c.ExchangeTimeout)
	defer timer.Stop()
	select {
	case <-w.done:
		if w.err != nil {
			return r, w.err
		}
		r.tok = w.tok
		return r, nil
	case <-timer.C:
		log.Warn("no authorization code in time; a later code still completes the exchange", zap.Duration("timeout", c.ExchangeTimeout))
		return r, &Error{Kind: KindTimeout, Op: op, Err: errNoCode}
	case <-ctx.Done():
		return r, newErr(KindInternal, op, ErrClosed)
	}
}

// dropPending forgets a pending exchange whose code can no longer come.
func (b *Broker) dropPending(state string) {
	ctx, cancel := context.WithTimeout(context.Background(), callbackTimeout)
	defer cancel()
	_, _ = b.store.TakePending(ctx, state)
}

// waiter is a flight waiting for the code of its own state.
type waiter struct {
	done chan struct{} // closed when tok or err is set
	tok  *tokenstore.Token
	err  error
}

func (b *Broker) addWaiter(state string) *waiter {
	w := &waiter{done: make(chan struct{})}
	b.wmu.Lock()
	b.waiters[state] = w
	b.wmu.Unlock()
	return w
}

func (b *Broker) dropWaiter(state string, w *waiter) {
	b.wmu.Lock()
	if b.waiters[state] == w {
		delete(b.waiters, state)
	}
	b.wmu.Unlock()
}

// finish hands the outcome of a code grant to the flight waiting for that
// state, if one still waits.
func (b *Broker) finish(state string, tok *tokenstore.Token, err error) {
	b.wmu.Lock()
	w := b.waiters[state]
	delete(b.waiters, state)
	b.wmu.Unlock()
	if w != nil {
		w.tok, w.err = tok, err
		close(w.done)
	}
}
