package tokenstore

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/dgraph-io/badger/v4"
)

// Get returns the user's token, from memory when cached. The *Token is
// shared: read-only. Its LastUsed is the persisted one (Touch updates it
// lazily).
func (s *Badger) Get(ctx context.Context, account, login string) (*Token, error) {
	if s.closed.Load() {
		return nil, ErrClosed
	}
	k := ukey{account, login}
	sh := s.cache.shard(k)
	t, hit, gen := sh.get(k)
	if !hit {
		var err error
		if t, err = s.getMiss(ctx, sh, k, gen); err != nil {
			return nil, err
		}
	}
	if t == nil {
		return nil, ErrNotFound
	}
	return t, nil
}

// getMiss reads k's token from the database once and caches the answer.
func (s *Badger) getMiss(ctx context.Context, sh *shard, k ukey, gen uint64) (*Token, error) {
	t, err := s.read(ctx, k)
	if err != nil {
		return nil, err
	}
	return sh.fill(k, t, gen), nil
}

// getStored reads the user's token from the database, its refresh token
// included, without the cache (Local.Update).
func (s *Badger) getStored(ctx context.Context, account, login string) (*Token, error) {
	t, err := s.read(ctx, ukey{account, login})
	if err == nil && t == nil {
		err = ErrNotFound
	}
	return t, err
}

// read reads k's token from the database: nil if there is none.
func (s *Badger) read(ctx context.Context, k ukey) (*Token, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if err := s.enter(); err != nil {
		return nil, err
	}
	defer s.exit()
	key := pairKey(prefixToken, k.account, k.login)
	if len(key) > maxKeyLen {
		return nil, nil
	}
	s.reads.Add(1)
	var t *Token
	err := s.db.View(func(txn *badger.Txn) error {
		item, err := txn.Get(key)
		if err != nil {
			return err
		}
		return item.Value(func(v []byte) (err error) {
			t, err = decodeToken(v)
			return err
		})
	})
	switch {
	case errors.Is(err, badger.ErrKeyNotFound):
		t = nil
	case err != nil:
		return nil, fmt.Errorf("tokenstore: get token: %w", err)
	}
	return t, nil
}

// Put stores a copy of t, synced to disk before it returns, then makes it
// visible to Get. If the write fails the cache forgets the user, so that
// the next Get reads what the database holds.
func (s *Badger) Put(ctx context.Context, t *Token) error {
	if t == nil {
		return errors.New("tokenstore: put nil token")
	}
	if t.Account == "" || t.Login == "" {
		return errors.New("tokenstore: put token without account or login")
	}
	if err := writable(t); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := s.enter(); err != nil {
		return err
	}
	defer s.exit()
	key := pairKey(prefixToken, t.Account, t.Login)
	if len(key) > maxKeyLen {
		return errKeyTooLong
	}
	c := cloneToken(t)
	val := encodeToken(c)
	k := ukey{c.Account, c.Login}
	sh := s.cache.shard(k)
	sh.wmu.Lock()
	defer sh.wmu.Unlock()
	if err := s.db.Update(func(txn *badger.Txn) error { return txn.Set(key, val) }); err != nil {
		sh.forget(k)
		return fmt.Errorf("tokenstore: put token: %w", err)
	}
	sh.set(k, c)
	s.Changed(c.Account, c.Login)
	return nil
}

// Delete removes the user's token, synced, then from the cache.
func (s *Badger) Delete(ctx context.Context, account, login string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := s.enter(); err != nil {
		return err
	}
	defer s.exit()
	key := pairKey(prefixToken, account, login)
	if len(key) > maxKeyLen {
		return nil // never stored
	}
	defer s.Hold(account, login)() // not under an Update's feet
	k := ukey{account, login}
	sh := s.cache.shard(k)
	sh.wmu.Lock()
	defer sh.wmu.Unlock()
	if err := s.db.Update(func(txn *badger.Txn) error { return txn.Delete(key) }); err != nil {
		sh.forget(k)
		return fmt.Errorf("tokenstore: delete token: %w", err)
	}
	sh.remove(k)
	s.Changed(account, login)
	return nil
}

// List calls fn for every token in the database, each a fresh copy that fn
// may keep. LastUsed includes uses recorded by Touch and not yet persisted.
func (s *Badger) List(ctx context.Context, fn func(*Token) error) error {
	return s.scanTokens(ctx, func(v []byte) error {
		t, err := decodeToken(v)
		if err != nil {
			return fmt.Errorf("tokenstore: list tokens: %w", err)
		}
		k := ukey{t.Account, t.Login}
		if lu := s.cache.shard(k).lastUsed(k, t); lu > nanos(t.LastUsed) {
			t.LastUsed = time.Unix(0, lu)
		}
		return fn(t)
	})
}

// Summaries calls fn for every stored pair's summary, in no particular
// order, until fn returns an error, which Summaries then returns. It reads
// what List reads but copies only the names out of each record: a census
// of a large store makes a fraction of List's garbage (BenchmarkList).
func (s *Badger) Summaries(ctx context.Context, fn func(Summary) error) error {
	return s.scanTokens(ctx, func(v []byte) error {
		sum, err := decodeSummary(v)
		if err != nil {
			return fmt.Errorf("tokenstore: list summaries: %w", err)
		}
		return fn(sum)
	})
}

// scanTokens calls each with every token record, in key order, until each
// returns an error, which scanTokens then returns. v is valid only during
// the call.
func (s *Badger) scanTokens(ctx context.Context, each func(v []byte) error) error {
	if err := s.enter(); err != nil {
		return err
	}
	defer s.exit()
	defer s.pager.scan()()
	return s.db.View(func(txn *badger.Txn) error {
		opts := badger.DefaultIteratorOptions
		opts.Prefix = []byte(prefixToken)
		opts.PrefetchSize = 16
		it := txn.NewIterator(opts)
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			if err := ctx.Err(); err != nil {
				return err
			}
			if err := it.Item().Value(each); err != nil {
				return err
			}
		}
		return nil
	})
}

// Touch records a use of the user's cached token at at. Memory only and
// lock-free for the entry; Sweep and Close persist it (once it is an hour
// or more past the stored LastUsed: see lastUsedResolution). A user not in the
// cache (Get was not called, or the token was deleted) is ignored.
func (s *Badger) Touch(account, login string, at time.Time) {
	if s.closed.Load() {
		return
	}
	k := ukey{account, login}
	s.cache.shard(k).touch(k, nanos(at))
}

// cloneToken returns a deep copy of t, its strings copied too so that the
// cache holds no caller's buffer.
func cloneToken(t *Token) *Token {
	c := *t
	c.Account = strings.Clone(t.Account)
	c.Login = strings.Clone(t.Login)
	c.AccessToken = strings.Clone(t.AccessToken)
	c.RefreshToken = strings.Clone(t.RefreshToken)
	if t.KeyHash != nil {
		c.KeyHash = append([]byte(nil), t.KeyHash...)
	}
	return &c
}
