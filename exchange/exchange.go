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
// for this caller's key. t is the user's token the key did not match, if
// any: then a failure leaves the key wrong, or not tried yet. A client that
// amoCRM rejected a key from is restrained (see guard) before it starts one.
func (b *Broker) exchange(ctx context.Context, c *Config, a Account, client, login, key string, kh []byte, t *tokenstore.Token) (*tokenstore.Token, error) {
	const op = "exchange"
	uk := userKey(a.Name, login)
	if now := c.Now(); b.guard.check(c, uk, client, now) > 0 {
		// What amoCRM's limit says comes first (a key known to be wrong,
		// the interval); then the guard's own answer.
		if e := b.exchangeAllowed(ctx, a, login, kh, now, c.ExchangeInterval, t); e != nil {
			return nil, e
		}
		return nil, &Error{Kind: KindBusy, Op: op, RetryAfter: b.guard.check(c, uk, client, now), Err: errClientBlocked}
	}
	ch := b.exchanges.DoChan(uk, func() (any, error) {
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
			b.guard.authenticated(uk, client, now)
			return r.tok, nil
		}
		// The flight exchanged another caller's key.
		return nil, &Error{Kind: KindWrongKey, Op: op, Err: errKeyMismatch}
	}
	if subtle.ConstantTimeCompare(r.kh, kh) != 1 {
		// This caller's key was not tried: answer by the attempt the flight
		// recorded.
		if e := b.exchangeAllowed(ctx, a, login, kh, now, c.ExchangeInterval, t); e != nil {
			return nil, e
		}
		return nil, err
	}
	if errors.Is(err, errKeyRejected) {
		b.guard.rejected(c, uk, client, now)
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
	if err == nil && keyMatches(t, kh) && t.Refreshable() && fresh(t, now, c.RefreshAhead) {
		r.tok = t
		return r, nil
	} else if err != nil && !errors.Is(err, tokenstore.ErrNotFound) {
		return r, newErr(KindInternal, op, err)
	}
	// One read of the user's last attempt decides: an exchange of this
	// very key may be under way in another process (a cluster), then wait
	// for its token instead of answering "too often"; else amoCRM's limit.
	switch last, err := b.store.GetAttempt(ctx, a.Name, login); {
	case err == nil && b.underWay(c, last, kh, now):
		log.Debug("an exchange of this key is under way elsewhere; waiting for its token")
		return b.awaitElsewhere(c, a, login, last)
	case err == nil:
		if e := verdict(last, kh, now, c.ExchangeInterval, nil); e != nil {
			log.Debug("exchange not allowed yet", zap.Duration("retry_after", e.RetryAfter), zap.Bool("rejected_key", errors.Is(e, errKeyRejected)))
			return r, e
		}
	case !errors.Is(err, tokenstore.ErrNotFound):
		return r, newErr(KindInternal, op, err)
	}
	// The exchange's first call to amoCRM takes its turn in the account's
	// budget before anything is recorded: a refused turn is no attempt.
	if e := b.turn(ctx, a.Name, op, 0); e != nil {
		return r, e
	}
	now = c.Now() // the turn may have waited: the attempt is recorded as made now

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
	// The claim is amoCRM's limit made atomic: however many processes
	// share the store, one claim per interval wins.
	att, claimed, err := b.store.ClaimAttempt(ctx, tokenstore.Attempt{Account: a.Name, Login: login, At: now, KeyHash: kh}, c.ExchangeInterval)
	if err != nil {
		b.dropPending(state)
		return r, newErr(KindInternal, op, err)
	}
	if !claimed {
		b.dropPending(state)
		if b.underWay(c, att, kh, now) {
			log.Debug("another process claimed the exchange of this key first; waiting for its token")
			return b.awaitElsewhere(c, a, login, att)
		}
		log.Debug("another process claimed the exchange first")
		return r, &Error{Kind: KindLimited, Op: op, RetryAfter: max(time.Second, att.At.Add(c.ExchangeInterval).Sub(now)), Err: errTooOften}
	}
	w := b.addWaiter(state, &waiter{account: a.Name, login: login, kh: kh, since: att.At})
	defer b.dropWaiter(state, w)
	defer b.markDone(att)

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
	poll := time.NewTicker(pollEvery)
	defer poll.Stop()
	for {
		select {
		case <-w.done:
			if w.err != nil {
				return r, w.err
			}
			r.tok = w.tok
			return r, nil
		case <-poll.C:
			b.look(state, w)
		case <-timer.C:
			log.Warn("no authorization code in time; a later code still completes the exchange", zap.Duration("timeout", c.ExchangeTimeout))
			return r, &Error{Kind: KindTimeout, Op: op, Err: errNoCode}
		case <-ctx.Done():
			return r, newErr(KindInternal, op, ErrClosed)
		}
	}
}

// underWay reports whether att, the user's last attempt, is an exchange of
// the key kh that may still bring its token (within ExchangeTimeout of it,
// and not rejected): made by another process, since this one's flight for
// the user is this very one.
func (b *Broker) underWay(c *Config, att tokenstore.Attempt, kh []byte, now time.Time) bool {
	return !att.At.IsZero() && !att.Rejected && !att.Done && subtle.ConstantTimeCompare(att.KeyHash, kh) == 1 &&
		now.Sub(att.At) < c.ExchangeTimeout
}

// awaitElsewhere waits, as a flight waiting for its own code does, for the
// token of the exchange att another process made: until ExchangeTimeout
// after att was made.
func (b *Broker) awaitElsewhere(c *Config, a Account, login string, att tokenstore.Attempt) (flightResult, error) {
	const op = "exchange"
	r := flightResult{kh: att.KeyHash}
	id, err := newState()
	if err != nil {
		return r, newErr(KindInternal, op, errors.New("no randomness"))
	}
	id = "elsewhere/" + id
	w := b.addWaiter(id, &waiter{account: a.Name, login: login, kh: att.KeyHash, since: att.At})
	defer b.dropWaiter(id, w)
	b.look(id, w) // it may have come already
	timer := time.NewTimer(max(0, att.At.Add(c.ExchangeTimeout).Sub(c.Now())))
	defer timer.Stop()
	poll := time.NewTicker(pollEvery)
	defer poll.Stop()
	for {
		select {
		case <-w.done:
			r.tok = w.tok
			return r, w.err
		case <-poll.C:
			b.look(id, w)
		case <-timer.C:
			return r, &Error{Kind: KindTimeout, Op: op, Err: errNoCode}
		case <-b.ctx.Done():
			return r, newErr(KindInternal, op, ErrClosed)
		}
	}
}

// markDone records that this process's exchange att has ended (with its
// token, or without one: no other process should wait for it), unless a
// later attempt has replaced it meanwhile.
func (b *Broker) markDone(att tokenstore.Attempt) {
	ctx, cancel := context.WithTimeout(context.Background(), callbackTimeout)
	defer cancel()
	cur, err := b.store.GetAttempt(ctx, att.Account, att.Login)
	if err != nil || !cur.At.Equal(att.At) || cur.Done {
		return
	}
	cur.Done = true
	if err := b.store.PutAttempt(ctx, cur); err != nil {
		b.cfg.Load().Logger.Warn("cannot mark the exchange done", append(userFields(att.Account, att.Login), zap.Error(err))...)
	}
}

// dropPending forgets a pending exchange whose code can no longer come.
func (b *Broker) dropPending(state string) {
	ctx, cancel := context.WithTimeout(context.Background(), callbackTimeout)
	defer cancel()
	_, _ = b.store.TakePending(ctx, state)
}

// waiter is a flight waiting for the code of its own state. The code may
// reach this process's callback (finish), or another process's sharing the
// store: then the stored token tells (seen), on the store's change events
// or by polling.
type waiter struct {
	done chan struct{} // closed when tok or err is set
	tok  *tokenstore.Token
	err  error

	account, login string
	kh             []byte    // the key the flight exchanged
	since          time.Time // when the flight made its attempt
}

func (b *Broker) addWaiter(state string, w *waiter) *waiter {
	w.done = make(chan struct{})
	b.wmu.Lock()
	b.waiters[state] = w
	b.wmu.Unlock()
	return w
}

// clockSkew is how far the clocks of a cluster's instances (and Redis's)
// may disagree: a token issued by another instance counts for an exchange
// if it was issued no earlier than this before the exchange's attempt.
const clockSkew = 5 * time.Second

// pollEvery is how often a flight waiting for its code looks at the store,
// in case another process stored the token and its change event was lost.
const pollEvery = time.Second

// seen finishes the flights waiting for a token of account and login (all
// flights, if account is "") that the store now holds: stored by another
// process whose callback took the code.
func (b *Broker) seen(account, login string) {
	kind := "token"
	if account == "" {
		kind = "all"
	}
	b.cfg.Load().observe("event", kind, 0)
	type cand struct {
		state string
		w     *waiter
	}
	var cands []cand
	b.wmu.Lock()
	for state, w := range b.waiters {
		if account == "" || (w.account == account && w.login == login) {
			cands = append(cands, cand{state, w})
		}
	}
	b.wmu.Unlock()
	for _, c := range cands {
		b.look(c.state, c.w)
	}
}

// look finishes w's flight if the store holds the token its exchange got.
func (b *Broker) look(state string, w *waiter) {
	ctx, cancel := context.WithTimeout(b.ctx, callbackTimeout)
	defer cancel()
	t, err := b.store.Get(ctx, w.account, w.login)
	if err == nil && keyMatches(t, w.kh) && !t.IssuedAt.Before(w.since.Add(-clockSkew)) && t.Refreshable() {
		b.finish(state, t, nil)
	}
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
