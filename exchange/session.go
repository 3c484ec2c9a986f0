package exchange

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"

	"github.com/amobridge/amobridge/tokenstore"
)

// errNoSession is the cause of SessionToken's KindWrongKey for a session
// that is unknown, expired, or of another account.
var errNoSession = errors.New("session expired or unknown")

// OpenSession opens an emulated auth.php session for a user whose key has
// just been proved (Token returned a token for it) and returns its ID: 256
// random bits, cookie-safe. It lives for Config.SessionTTL; only a hash of
// the ID is stored.
func (b *Broker) OpenSession(ctx context.Context, a Account, login string) (string, error) {
	const op = "open session"
	var p [32]byte
	if _, err := rand.Read(p[:]); err != nil {
		return "", newErr(KindInternal, op, err)
	}
	id := base64.RawURLEncoding.EncodeToString(p[:])
	c := b.cfg.Load()
	s := tokenstore.Session{Account: a.Name, Login: NormalizeLogin(login), Expires: c.Now().Add(c.SessionTTL)}
	if err := b.store.PutSession(ctx, id, s); err != nil {
		return "", newErr(KindInternal, op, err)
	}
	return id, nil
}

// SessionToken returns the user an emulated session stands for and that
// user's token, refreshed if due. A session that is unknown, expired or
// opened for another account, and a user without a usable token, get
// KindWrongKey: the client must authorize again with its key.
//
// The returned token is shared: treat it as read-only.
func (b *Broker) SessionToken(ctx context.Context, a Account, sessionID string) (login string, t *tokenstore.Token, err error) {
	const op = "session"
	s, err := b.store.GetSession(ctx, sessionID)
	switch {
	case errors.Is(err, tokenstore.ErrNotFound):
		return "", nil, newErr(KindWrongKey, op, errNoSession)
	case err != nil:
		return "", nil, newErr(KindInternal, op, err)
	case s.Account != a.Name:
		return "", nil, newErr(KindWrongKey, op, errNoSession)
	}
	t, err = b.sessionToken(ctx, a, s.Login)
	return s.Login, t, err
}
