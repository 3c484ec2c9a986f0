package exchange

import (
	"context"
	"errors"
	"fmt"
	"time"

	"go.uber.org/zap"

	"github.com/amobridge/amobridge/tokenstore"
)

// refresh runs (or joins) the user's refresh flight. stale is the access
// token the caller holds as used up; if the store already has another valid
// one, that is the answer and no refresh token is spent.
//
// Errors: KindWrongKey wrapping errDeadRefresh (the pair is dead and now
// marked so) or errNoToken (no token any more); KindTimeout if ctx ends;
// else the failure (KindUpstream, KindLimited, KindInternal), with the
// stored pair untouched.
func (b *Broker) refresh(ctx context.Context, a Account, login, stale string) (*tokenstore.Token, error) {
	ch := b.refreshes.DoChan(userKey(a.Name, login), func() (any, error) {
		return b.runRefresh(a, login, stale)
	})
	select {
	case r := <-ch:
		t, _ := r.Val.(*tokenstore.Token)
		return t, r.Err
	case <-ctx.Done():
		return nil, ctxErr("refresh", ctx)
	}
}

// lockWait bounds how long a refresh waits for the user's refresh lock:
// longer than a refresh by another process takes (one call to amoCRM).
const lockWait = 45 * time.Second

// runRefresh is the body of a user's refresh flight, under the broker's
// context. The refresh token it spends is the one in the store now, and the
// new pair is stored (synced) before anyone gets the new access token.
func (b *Broker) runRefresh(a Account, login, stale string) (tok *tokenstore.Token, err error) {
	c0, start := b.cfg.Load(), time.Now()
	granted := false
	defer func() {
		if !granted {
			return // no grant was needed or possible: not a refresh
		}
		res := resultOf(err)
		if errors.Is(err, errDeadRefresh) {
			res = "dead"
		}
		c0.observe("refresh", res, time.Since(start))
	}()
	return b.runRefreshOnce(a, login, stale, &granted)
}

// runRefreshOnce does the work of runRefresh.
// It sets *granted when it asks amoCRM for a new pair.
func (b *Broker) runRefreshOnce(a Account, login, stale string, granted *bool) (*tokenstore.Token, error) {
	const op = "refresh"
	done, ok := b.track()
	if !ok {
		return nil, newErr(KindInternal, op, ErrClosed)
	}
	defer done()
	c := b.cfg.Load()
	ctx := b.ctx
	uk := userKey(a.Name, login)
	log := c.Logger.With(userFields(a.Name, login)...)

	// One refresh of the user at a time across every process sharing the
	// store: a refresh token is single-use. After taking the lock, the pair
	// is read again: another process may have refreshed it meanwhile.
	lctx, lcancel := context.WithTimeout(ctx, lockWait)
	waitStart := time.Now()
	unlock, err := b.store.Lock(lctx, "refresh/"+uk)
	lcancel()
	c.observe("lock", resultOf(err), time.Since(waitStart))
	if err != nil {
		if ctx.Err() != nil {
			return nil, newErr(KindInternal, op, ErrClosed)
		}
		log.Warn("refresh lock not taken", zap.Error(err))
		return nil, newErr(KindInternal, op, fmt.Errorf("refresh lock: %w", err))
	}
	defer unlock()
	now := c.Now()

	cur, err := b.reload(ctx, a.Name, login)
	if errors.Is(err, tokenstore.ErrNotFound) {
		return nil, newErr(KindWrongKey, op, errNoToken)
	} else if err != nil {
		return nil, newErr(KindInternal, op, err)
	}
	if !sameSecret(cur.AccessToken, stale) && fresh(cur, now, c.RefreshAhead) {
		return cur, nil // refreshed (or exchanged) by someone else meanwhile
	}
	if cur.RefreshToken == "" {
		return nil, newErr(KindWrongKey, op, errDeadRefresh)
	}
	spent := cur.RefreshToken

	if e := b.turn(ctx, a.Name, op, 0); e != nil {
		log.Warn("refresh waits: the account's budget toward amoCRM is spent", zap.Duration("retry_after", e.RetryAfter))
		return nil, e
	}
	log.Debug("refreshing the access token", zap.Time("expiry", cur.Expiry))
	*granted = true
	gctx, cancel := context.WithTimeout(ctx, callTimeout)
	ot, fail, e := grant(gctx, c, a.BaseURL, grantBody{GrantType: "refresh_token", RefreshToken: spent}, now)
	cancel()
	if e != nil {
		if fail == failDead {
			log.Warn("refresh token is dead; the user's next request with the key exchanges again", zap.Error(e))
			b.markDead(a, login, spent)
			return nil, &Error{Kind: KindWrongKey, Op: op, Err: errDeadRefresh}
		}
		b.noteFailure(uk, now)
		log.Warn("refresh failed; the stored pair is kept", zap.Error(e))
		return nil, e
	}

	nt := *cur
	nt.KeyHash = append([]byte(nil), cur.KeyHash...)
	nt.AccessToken, nt.RefreshToken = ot.AccessToken, ot.RefreshToken
	nt.Expiry, nt.IssuedAt = ot.Expiry, now

	// A compare-and-set on the refresh token spent: a pair written by
	// anyone else meanwhile (an exchange, a revoke) wins, and this one is
	// discarded.
	stored, err := b.store.Update(ctx, a.Name, login, func(t *tokenstore.Token) bool {
		if t.RefreshToken != spent {
			return false
		}
		*t = nt
		return true
	})
	switch {
	case err == nil && sameSecret(stored.AccessToken, nt.AccessToken):
		b.clearFailure(uk)
		log.Info("access token refreshed", zap.Time("expiry", nt.Expiry))
		return stored, nil
	case err == nil:
		log.Warn("token replaced during the refresh; the refreshed pair is discarded")
		return stored, nil
	case errors.Is(err, tokenstore.ErrNotFound):
		log.Info("token revoked during the refresh")
		return nil, newErr(KindWrongKey, op, errNoToken)
	default:
		log.Error("refreshed pair not stored; the user must exchange again", zap.Error(err))
		return nil, newErr(KindInternal, op, err)
	}
}

// markDead keeps the user's record (its key hash and whatever the access
// token is still worth) but forgets the dead refresh token, if it is still
// the stored one.
func (b *Broker) markDead(a Account, login, spent string) {
	b.updateToken(a, login, func(t *tokenstore.Token) bool {
		if t.RefreshToken != spent {
			return false
		}
		t.RefreshToken = ""
		return true
	})
}

// dropAccess forgets an access token amoCRM rejected when no refresh can
// replace it, so that the next Token call exchanges instead of serving it.
func (b *Broker) dropAccess(a Account, login, rejected string) {
	b.updateToken(a, login, func(t *tokenstore.Token) bool {
		if t.RefreshToken != "" || !sameSecret(t.AccessToken, rejected) {
			return false
		}
		t.AccessToken = ""
		t.Expiry = time.Time{}
		return true
	})
}

// reload reads the user's token from the shared store itself, not from a
// cache: in a cluster, another process may have refreshed the pair a moment
// ago and its change event may not have arrived yet.
func (b *Broker) reload(ctx context.Context, account, login string) (*tokenstore.Token, error) {
	return b.store.Update(ctx, account, login, func(*tokenstore.Token) bool { return false })
}

// updateToken changes the stored token with fn, if fn says so, as one
// atomic step (Coordinator.Update).
func (b *Broker) updateToken(a Account, login string, fn func(*tokenstore.Token) bool) {
	c := b.cfg.Load()
	ctx, cancel := context.WithTimeout(context.Background(), callbackTimeout)
	defer cancel()
	if _, err := b.store.Update(ctx, a.Name, login, fn); err != nil && !errors.Is(err, tokenstore.ErrNotFound) {
		c.Logger.Error("cannot update the stored token", append(userFields(a.Name, login), zap.Error(err))...)
	}
}
