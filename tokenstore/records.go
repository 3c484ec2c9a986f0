package tokenstore

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/dgraph-io/badger/v4"
)

// PutSession stores s under the SHA-256 of id, synced. The record expires
// at s.Expires (Badger's TTL, in whole seconds, rounded up; GetSession
// checks Expires exactly).
func (s *Badger) PutSession(ctx context.Context, id string, sess Session) error {
	if id == "" {
		return errors.New("tokenstore: put session with empty id")
	}
	if sess.Expires.IsZero() {
		return errors.New("tokenstore: put session without expiry")
	}
	if err := s.putRecord(ctx, "session", hashedKey(prefixSession, id), encodeSession(sess), sess.Expires); err != nil {
		return err
	}
	s.sessions.put(id, sess)
	return nil
}

// GetSession returns the session stored under id, or ErrNotFound if it is
// missing or expired.
func (s *Badger) GetSession(ctx context.Context, id string) (Session, error) {
	if s.closed.Load() {
		return Session{}, ErrClosed
	}
	if sess, ok := s.sessions.get(id, time.Now()); ok {
		return sess, nil
	}
	var sess Session
	err := s.getRecord(ctx, "session", hashedKey(prefixSession, id), func(v []byte) (err error) {
		sess, err = decodeSession(v)
		return err
	})
	if err != nil {
		return Session{}, err
	}
	if !sess.Expires.After(time.Now()) {
		return Session{}, ErrNotFound
	}
	s.sessions.put(id, sess)
	return sess, nil
}

// DeleteSession removes the session stored under id, synced.
func (s *Badger) DeleteSession(ctx context.Context, id string) error {
	s.sessions.drop(id)
	return s.deleteRecord(ctx, "session", hashedKey(prefixSession, id))
}

// PutPending stores p under the SHA-256 of p.State, synced, until p.Expires.
func (s *Badger) PutPending(ctx context.Context, p Pending) error {
	if p.State == "" {
		return errors.New("tokenstore: put pending exchange with empty state")
	}
	if p.Expires.IsZero() {
		return errors.New("tokenstore: put pending exchange without expiry")
	}
	return s.putRecord(ctx, "pending exchange", hashedKey(prefixPending, p.State), encodePending(p), p.Expires)
}

// maxTakeTries bounds TakePending's retries on transaction conflicts; each
// conflict means another taker committed, so the next try ends it.
const maxTakeTries = 16

// TakePending returns and removes the pending exchange for state in one
// transaction: of any number of concurrent takers, one gets it and the
// others get ErrNotFound. An expired one is removed and is ErrNotFound.
func (s *Badger) TakePending(ctx context.Context, state string) (Pending, error) {
	if err := s.enter(); err != nil {
		return Pending{}, err
	}
	defer s.exit()
	key := hashedKey(prefixPending, state)
	for try := 0; ; try++ {
		if err := ctx.Err(); err != nil {
			return Pending{}, err
		}
		var p Pending
		err := s.db.Update(func(txn *badger.Txn) error {
			item, err := txn.Get(key)
			if err != nil {
				return err
			}
			err = item.Value(func(v []byte) (err error) {
				p, err = decodePending(v)
				return err
			})
			if err != nil {
				return err
			}
			return txn.Delete(key)
		})
		switch {
		case err == nil:
			if !p.Expires.After(time.Now()) {
				return Pending{}, ErrNotFound
			}
			p.State = state
			return p, nil
		case errors.Is(err, badger.ErrKeyNotFound):
			return Pending{}, ErrNotFound
		case errors.Is(err, badger.ErrConflict) && try < maxTakeTries:
			continue
		default:
			return Pending{}, fmt.Errorf("tokenstore: take pending exchange: %w", err)
		}
	}
}

// PutAttempt stores a as the user's last exchange attempt, synced. It is
// kept until a.At (or now, if zero) plus Options.AttemptTTL.
func (s *Badger) PutAttempt(ctx context.Context, a Attempt) error {
	if a.Account == "" || a.Login == "" {
		return errors.New("tokenstore: put attempt without account or login")
	}
	key := pairKey(prefixAttempt, a.Account, a.Login)
	if len(key) > maxKeyLen {
		return errKeyTooLong
	}
	at := a.At
	if at.IsZero() {
		at = time.Now()
	}
	return s.putRecord(ctx, "attempt", key, encodeAttempt(a), at.Add(s.attemptTTL))
}

// GetAttempt returns the user's last exchange attempt, or ErrNotFound.
func (s *Badger) GetAttempt(ctx context.Context, account, login string) (Attempt, error) {
	key := pairKey(prefixAttempt, account, login)
	if len(key) > maxKeyLen {
		return Attempt{}, ErrNotFound
	}
	var a Attempt
	err := s.getRecord(ctx, "attempt", key, func(v []byte) (err error) {
		a, err = decodeAttempt(v)
		return err
	})
	if err != nil {
		return Attempt{}, err
	}
	return a, nil
}

// putRecord writes val under key, synced, expiring at expires.
func (s *Badger) putRecord(ctx context.Context, what string, key, val []byte, expires time.Time) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := s.enter(); err != nil {
		return err
	}
	defer s.exit()
	e := badger.NewEntry(key, val)
	e.ExpiresAt = expiresAt(expires)
	if err := s.db.Update(func(txn *badger.Txn) error { return txn.SetEntry(e) }); err != nil {
		return fmt.Errorf("tokenstore: put %s: %w", what, err)
	}
	return nil
}

// getRecord passes the record under key to decode; ErrNotFound if none
// (Badger hides records past their TTL).
func (s *Badger) getRecord(ctx context.Context, what string, key []byte, decode func([]byte) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := s.enter(); err != nil {
		return err
	}
	defer s.exit()
	err := s.db.View(func(txn *badger.Txn) error {
		item, err := txn.Get(key)
		if err != nil {
			return err
		}
		return item.Value(decode)
	})
	switch {
	case errors.Is(err, badger.ErrKeyNotFound):
		return ErrNotFound
	case err != nil:
		return fmt.Errorf("tokenstore: get %s: %w", what, err)
	}
	return nil
}

// deleteRecord removes key, synced. A missing key is not an error.
func (s *Badger) deleteRecord(ctx context.Context, what string, key []byte) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := s.enter(); err != nil {
		return err
	}
	defer s.exit()
	if err := s.db.Update(func(txn *badger.Txn) error { return txn.Delete(key) }); err != nil {
		return fmt.Errorf("tokenstore: delete %s: %w", what, err)
	}
	return nil
}

// expiresAt is Badger's ExpiresAt for t: Unix seconds rounded up, so that
// Badger never drops a record before t (the code checks t exactly), and at
// least 1, since 0 means "never".
func expiresAt(t time.Time) uint64 {
	sec := t.Unix()
	if t.Nanosecond() > 0 {
		sec++
	}
	if sec < 1 {
		sec = 1
	}
	return uint64(sec)
}
