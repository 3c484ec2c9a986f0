package tokenstore

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/dgraph-io/badger/v4"
)

// CopyCounts is what Copy copied.
type CopyCounts struct {
	Tokens   int
	Sessions int
}

// Copy copies every token pair and every live emulated session of src into
// dst, as they are: no exchange, no refresh, the key-hash secret carried
// over so that the users' keys still match. It is how a Badger store moves
// into Redis for cluster mode (`caddy amocrm copy-store`). Pending
// exchanges and attempts are not copied: they are minutes-long.
func Copy(ctx context.Context, dst *Redis, src *Badger) (CopyCounts, error) {
	var n CopyCounts
	if err := dst.adoptSecret(ctx, src.secret); err != nil {
		return n, err
	}
	err := src.List(ctx, func(t *Token) error {
		if err := dst.Put(ctx, t); err != nil {
			return fmt.Errorf("copying the token of %s/%s: %w", t.Account, t.Login, err)
		}
		n.Tokens++
		return nil
	})
	if err != nil {
		return n, err
	}
	now := time.Now()
	err = src.listSessions(ctx, func(idHash []byte, sess Session) error {
		if !sess.Expires.After(now) {
			return nil
		}
		if err := dst.putRecord(ctx, "session", dst.prefix+"s:"+hex.EncodeToString(idHash), encodeSession(sess), sess.Expires); err != nil {
			return fmt.Errorf("copying a session: %w", err)
		}
		n.Sessions++
		return nil
	})
	return n, err
}

// listSessions calls fn with the SHA-256 of every stored session's ID (the
// ID itself is never stored) and the session.
func (s *Badger) listSessions(ctx context.Context, fn func(idHash []byte, sess Session) error) error {
	if err := s.enter(); err != nil {
		return err
	}
	defer s.exit()
	return s.db.View(func(txn *badger.Txn) error {
		opts := badger.DefaultIteratorOptions
		opts.Prefix = []byte(prefixSession)
		it := txn.NewIterator(opts)
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			if err := ctx.Err(); err != nil {
				return err
			}
			item := it.Item()
			v, err := item.ValueCopy(nil)
			if err != nil {
				return err
			}
			sess, err := decodeSession(v)
			if err != nil {
				return err
			}
			if err := fn(item.KeyCopy(nil)[len(prefixSession):], sess); err != nil {
				return err
			}
		}
		return nil
	})
}

// errSecretDiffers is returned by Copy when the Redis store already has a
// key-hash secret of its own and holds tokens: the copied users' key
// hashes would not match it.
var errSecretDiffers = errors.New("tokenstore: the Redis store already has another key-hash secret and holds tokens; copy into an empty prefix")

// adoptSecret makes secret the key-hash secret of the Redis store, so that
// key hashes copied from another store match. A store that already holds
// tokens keeps its own (and the copy fails if they differ).
func (s *Redis) adoptSecret(ctx context.Context, secret []byte) error {
	if string(secret) == string(s.secret) {
		return nil
	}
	holds := false
	err := s.List(ctx, func(*Token) error { holds = true; return errStopList })
	if err != nil && !errors.Is(err, errStopList) {
		return err
	}
	if holds {
		return errSecretDiffers
	}
	key := s.prefix + redisSecret
	if err := s.rdb.Set(ctx, key, s.seal(key, secret), 0).Err(); err != nil {
		return s.fail(ctx, "copy the key-hash secret", err)
	}
	if err := s.loadSecret(ctx); err != nil {
		return err
	}
	s.hmacs = sync.Pool{New: s.hmacs.New}
	return nil
}

var errStopList = errors.New("stop")
