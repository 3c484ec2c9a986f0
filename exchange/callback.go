package exchange

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"time"

	"go.uber.org/zap"
	"golang.org/x/oauth2"

	"github.com/amobridge/amobridge/tokenstore"
)

// HandleCallback takes amoCRM's call to the redirect URI
// (code, state, from_exchange=1, maybe client_id and referer). It checks the
// call and takes the pending exchange of that state (a state is taken once),
// then returns at once: the code grant runs in the background, stores the
// user's token and wakes the requests waiting for it, if any still wait.
//
// It returns an error wrapping ErrBadCallback if the code or state is
// missing, client_id is not ours, or the state is unknown, expired or used:
// then nothing is exchanged. Other errors (store failure, broker closed) are
// *Error.
func (b *Broker) HandleCallback(q url.Values) error {
	const op = "callback"
	c := b.cfg.Load()
	code, state := q.Get("code"), q.Get("state")
	switch {
	case code == "" || state == "":
		return fmt.Errorf("%w: code and state are required", ErrBadCallback)
	case len(code) > 4096 || len(state) > 256 || !tokenSafe(code):
		return fmt.Errorf("%w: malformed code or state", ErrBadCallback)
	case q.Has("client_id") && q.Get("client_id") != c.ClientID:
		return fmt.Errorf("%w: client_id is not ours", ErrBadCallback)
	}
	// from_exchange=1 is expected but not required: a code with a state we
	// issued can only come from our exchange.
	done, ok := b.track()
	if !ok {
		return newErr(KindInternal, op, ErrClosed)
	}
	ctx, cancel := context.WithTimeout(b.ctx, callbackTimeout)
	p, err := b.store.TakePending(ctx, state)
	cancel()
	switch {
	case errors.Is(err, tokenstore.ErrNotFound):
		done()
		c.Logger.Info("callback with an unknown, expired or used state")
		return fmt.Errorf("%w: unknown, expired or used state", ErrBadCallback)
	case err != nil:
		done()
		return newErr(KindInternal, op, err)
	case !p.Expires.IsZero() && !c.Now().Before(p.Expires):
		done()
		c.Logger.Info("callback for an expired exchange", userFields(p.Account, p.Login)...)
		return fmt.Errorf("%w: unknown, expired or used state", ErrBadCallback)
	}
	c.Logger.Debug("authorization code received", userFields(p.Account, p.Login)...)
	go func() {
		defer done()
		b.completeCode(p, state, code)
	}()
	return nil
}

// codeTurnWait bounds the wait of a code grant for its turn in the
// account's budget: it runs in the background, and its code lives 20 minutes.
const codeTurnWait = 30 * time.Second

// completeCode spends the code for a token pair, stores it (synced) and
// wakes the flight waiting for that state. Transient failures are retried
// twice; the outcome for the waiters is the token or a KindUpstream error.
func (b *Broker) completeCode(p tokenstore.Pending, state, code string) {
	const op = "code grant"
	c := b.cfg.Load()
	log := c.Logger.With(userFields(p.Account, p.Login)...)
	ctx, cancel := context.WithTimeout(b.ctx, 3*callTimeout)
	defer cancel()

	var e *Error
	for try := 0; ; try++ {
		now := c.Now()
		var ot *oauth2.Token
		fail, ge := failRetry, b.turn(ctx, p.Account, op, codeTurnWait)
		if ge == nil {
			gctx, gcancel := context.WithTimeout(ctx, callTimeout)
			ot, fail, ge = grant(gctx, c, p.BaseURL, grantBody{GrantType: "authorization_code", Code: code}, now)
			gcancel()
		}
		if ge == nil {
			t := &tokenstore.Token{
				Account: p.Account, Login: p.Login, KeyHash: append([]byte(nil), p.KeyHash...),
				AccessToken: ot.AccessToken, RefreshToken: ot.RefreshToken,
				Expiry: ot.Expiry, IssuedAt: now, LastUsed: now,
			}
			uk := userKey(p.Account, p.Login)
			err := b.store.Put(ctx, t)
			if err != nil {
				log.Error("tokens obtained but not stored; the user must exchange again", zap.Error(err))
				b.finish(state, nil, newErr(KindInternal, op, err))
				return
			}
			b.clearFailure(uk)
			b.info.drop(uk)
			log.Info("tokens obtained", zap.Time("expiry", t.Expiry))
			b.finish(state, t, nil)
			return
		}
		e = ge
		if fail != failRetry || try == 2 {
			break
		}
		wait := b.retryDelay << try
		if e.RetryAfter > 0 {
			wait = min(e.RetryAfter, 5*time.Second)
		}
		log.Warn("code grant failed; retrying", zap.Error(e), zap.Duration("in", wait))
		select {
		case <-time.After(wait):
		case <-ctx.Done():
			b.finish(state, nil, newErr(KindUpstream, op, ctx.Err()))
			return
		}
	}
	log.Warn("code grant failed", zap.Error(e))
	if e.Kind != KindInternal {
		e = &Error{Kind: KindUpstream, Op: op, Err: e.Err}
	}
	b.finish(state, nil, e)
}
