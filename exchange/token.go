package exchange

import (
	"bytes"
	"context"
	"crypto/subtle"
	"errors"
	"strings"
	"time"

	"github.com/amobridge/amobridge/tokenstore"
)

// Token returns the user's token for a request that presented key.
//
// The hot path (a stored token whose key hash matches and whose access token
// is valid beyond RefreshAhead) reads memory only. A token near expiry is
// refreshed (one refresh per user); a user without a token gets an exchange
// (one per user, all concurrent callers wait for it). A key that does not
// match the stored one is wrong (KindWrongKey) unless an exchange with it is
// allowed and succeeds, in which case its token replaces the old one; a
// wrong key never gets and never evicts the working token.
//
// The returned token is shared: treat it as read-only.
func (b *Broker) Token(ctx context.Context, a Account, login, key string) (*tokenstore.Token, error) {
	return b.TokenFrom(ctx, a, "", login, key)
}

// TokenFrom is Token for a request from client (its address, e.g. the
// client IP): a client whose keys amoCRM keeps rejecting is restrained
// before it starts another exchange (see Config.RejectLimit). An empty
// client is never restrained.
func (b *Broker) TokenFrom(ctx context.Context, a Account, client, login, key string) (*tokenstore.Token, error) {
	login = NormalizeLogin(login)
	if login == "" || key == "" {
		return nil, &Error{Kind: KindWrongKey, Op: "token", Err: errors.New("empty login or key")}
	}
	c := b.cfg.Load()
	sum := b.store.KeyHash(key) // on the stack: the hot path allocates nothing here
	t, err := b.store.Get(ctx, a.Name, login)
	if err == nil {
		c.observe("lookup", "hit", 0)
	} else if errors.Is(err, tokenstore.ErrNotFound) {
		c.observe("lookup", "miss", 0)
	}
	if err == nil && keyMatches(t, sum[:]) {
		if now := c.Now(); fresh(t, now, c.RefreshAhead) {
			b.store.Touch(a.Name, login, now)
			return t, nil
		}
	}
	return b.tokenSlow(ctx, c, a, client, login, key, bytes.Clone(sum[:]), t, err)
}

// tokenSlow is Token beyond the hot path. t and err are the store's answer.
func (b *Broker) tokenSlow(ctx context.Context, c *Config, a Account, client, login, key string, kh []byte, t *tokenstore.Token, err error) (*tokenstore.Token, error) {
	const op = "token"
	a.BaseURL = strings.TrimRight(a.BaseURL, "/")
	if a.Name == "" || a.BaseURL == "" {
		return nil, newErr(KindInternal, op, errors.New("account without name or base URL"))
	}
	b.rememberBase(a)
	uk := userKey(a.Name, login)
	for turn := 0; turn < 4; turn++ {
		if err != nil {
			if !errors.Is(err, tokenstore.ErrNotFound) {
				return nil, newErr(KindInternal, op, err)
			}
			return b.exchange(ctx, c, a, client, login, key, kh, nil)
		}
		now := c.Now()
		if !keyMatches(t, kh) {
			// Wrong, unless amoCRM accepts it in an exchange (a new password).
			if e := b.exchangeAllowed(ctx, a, login, kh, now, c.ExchangeInterval, t); e != nil {
				return nil, e
			}
			return b.exchange(ctx, c, a, client, login, key, kh, t)
		}
		if fresh(t, now, c.RefreshAhead) {
			b.store.Touch(a.Name, login, now)
			return t, nil
		}
		if !t.Refreshable() {
			// The pair is dead: exchange the (right) key again if allowed,
			// meanwhile serve what is left of the access token.
			if e := b.exchangeAllowed(ctx, a, login, kh, now, c.ExchangeInterval, nil); e != nil {
				if alive(t, now) {
					b.store.Touch(a.Name, login, now)
					return t, nil
				}
				return nil, e
			}
			return b.exchange(ctx, c, a, client, login, key, kh, nil)
		}
		if alive(t, now) && b.backingOff(uk, now) {
			b.store.Touch(a.Name, login, now)
			return t, nil
		}
		nt, rerr := b.refresh(ctx, a, login, t.AccessToken)
		switch {
		case rerr == nil:
			if keyMatches(nt, kh) && alive(nt, now) {
				b.store.Touch(a.Name, login, now)
				return nt, nil
			}
			t = nt // replaced meanwhile: judge the key again
		case errors.Is(rerr, errDeadRefresh):
			t, err = b.store.Get(ctx, a.Name, login)
		case errors.Is(rerr, errNoToken):
			t, err = nil, tokenstore.ErrNotFound
		case ctx.Err() != nil:
			return nil, rerr
		default:
			// amoCRM down or confused: the stored pair is untouched, and the
			// access token serves while it lasts.
			if alive(t, now) {
				b.store.Touch(a.Name, login, now)
				return t, nil
			}
			return nil, rerr
		}
	}
	return nil, newErr(KindInternal, op, errTooManyTurns)
}

// sessionToken returns the token of a user whose emulated session already
// proved the key: Token without the key check. A user without a usable
// token gets KindWrongKey (the client must present its key again).
func (b *Broker) sessionToken(ctx context.Context, a Account, login string) (*tokenstore.Token, error) {
	c := b.cfg.Load()
	t, err := b.store.Get(ctx, a.Name, login)
	if err == nil {
		if now := c.Now(); fresh(t, now, c.RefreshAhead) {
			b.store.Touch(a.Name, login, now)
			return t, nil
		}
	}
	return b.sessionSlow(ctx, c, a, login, t, err)
}

func (b *Broker) sessionSlow(ctx context.Context, c *Config, a Account, login string, t *tokenstore.Token, err error) (*tokenstore.Token, error) {
	const op = "session token"
	if err != nil {
		if errors.Is(err, tokenstore.ErrNotFound) {
			return nil, newErr(KindWrongKey, op, errNoToken)
		}
		return nil, newErr(KindInternal, op, err)
	}
	a.BaseURL = strings.TrimRight(a.BaseURL, "/")
	if a.BaseURL == "" {
		return nil, newErr(KindInternal, op, errors.New("account without base URL"))
	}
	b.rememberBase(a)
	now := c.Now()
	if !t.Refreshable() || (alive(t, now) && b.backingOff(userKey(a.Name, login), now)) {
		if alive(t, now) {
			b.store.Touch(a.Name, login, now)
			return t, nil
		}
		return nil, newErr(KindWrongKey, op, errDeadRefresh)
	}
	nt, rerr := b.refresh(ctx, a, login, t.AccessToken)
	switch {
	case rerr == nil && alive(nt, now):
		b.store.Touch(a.Name, login, now)
		return nt, nil
	case rerr == nil:
		return nil, newErr(KindWrongKey, op, errDeadRefresh)
	case errors.Is(rerr, errDeadRefresh), errors.Is(rerr, errNoToken), ctx.Err() != nil:
		return nil, rerr
	case alive(t, now):
		b.store.Touch(a.Name, login, now)
		return t, nil
	}
	return nil, rerr
}

// Reauthorize is called after amoCRM answered 401 to a request carrying
// rejectedAccess. It returns the stored token if that is another valid one
// (someone refreshed meanwhile), else refreshes once (in the user's refresh
// flight). If the pair is dead it is marked so and KindWrongKey is returned:
// a following Token call with the user's key exchanges again.
func (b *Broker) Reauthorize(ctx context.Context, a Account, login, rejectedAccess string) (*tokenstore.Token, error) {
	const op = "reauthorize"
	login = NormalizeLogin(login)
	c := b.cfg.Load()
	a.BaseURL = strings.TrimRight(a.BaseURL, "/")
	if a.BaseURL == "" {
		return nil, newErr(KindInternal, op, errors.New("account without base URL"))
	}
	b.rememberBase(a)
	for turn := 0; turn < 2; turn++ {
		t, err := b.reload(ctx, a.Name, login) // amoCRM said no: the cache may lag
		if errors.Is(err, tokenstore.ErrNotFound) {
			return nil, newErr(KindWrongKey, op, errNoToken)
		} else if err != nil {
			return nil, newErr(KindInternal, op, err)
		}
		now := c.Now()
		if alive(t, now) && !sameSecret(t.AccessToken, rejectedAccess) {
			b.store.Touch(a.Name, login, now)
			return t, nil
		}
		if !t.Refreshable() {
			b.dropAccess(a, login, rejectedAccess)
			return nil, newErr(KindWrongKey, op, errDeadRefresh)
		}
		nt, err := b.refresh(ctx, a, login, rejectedAccess)
		if err != nil {
			if errors.Is(err, errDeadRefresh) {
				b.dropAccess(a, login, rejectedAccess)
			}
			return nil, err
		}
		if alive(nt, now) && !sameSecret(nt.AccessToken, rejectedAccess) {
			b.store.Touch(a.Name, login, now)
			return nt, nil
		}
	}
	return nil, newErr(KindUpstream, op, errors.New("amoCRM keeps rejecting the user's access token"))
}

func sameSecret(a, b string) bool { return subtle.ConstantTimeCompare([]byte(a), []byte(b)) == 1 }

// exchangeAllowed returns nil if an exchange for the user may be made now
// under amoCRM's limit, else the error to answer, with RetryAfter set to
// the time left: KindWrongKey if the last attempt rejected this very key,
// or if it proved another key (t, the user's token a different key was
// presented for, was obtained by that attempt: this key is the old one);
// else KindLimited (the key may be a new password's: come back when the
// interval has passed).
func (b *Broker) exchangeAllowed(ctx context.Context, a Account, login string, kh []byte, now time.Time, interval time.Duration, t *tokenstore.Token) *Error {
	att, err := b.store.GetAttempt(ctx, a.Name, login)
	if errors.Is(err, tokenstore.ErrNotFound) {
		return nil
	} else if err != nil {
		return newErr(KindInternal, "exchange", err)
	}
	return verdict(att, kh, now, interval, t)
}

// verdict is exchangeAllowed's judgement of the user's last attempt att.
func verdict(att tokenstore.Attempt, kh []byte, now time.Time, interval time.Duration, t *tokenstore.Token) *Error {
	left := att.At.Add(interval).Sub(now)
	if left <= 0 {
		return nil
	}
	switch {
	case att.Rejected && subtle.ConstantTimeCompare(att.KeyHash, kh) == 1:
		return &Error{Kind: KindWrongKey, Op: "exchange", RetryAfter: left, Err: errKeyRejected}
	case t != nil && !att.Rejected && keyMatches(t, att.KeyHash) && !t.IssuedAt.Before(att.At):
		return &Error{Kind: KindWrongKey, Op: "exchange", Err: errKeySuperseded}
	default:
		return &Error{Kind: KindLimited, Op: "exchange", RetryAfter: left, Err: errTooOften}
	}
}
