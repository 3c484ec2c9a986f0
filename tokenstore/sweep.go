package tokenstore

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/dgraph-io/badger/v4"
)

// sweepBatch is how many deletions Sweep commits in one transaction.
const sweepBatch = 512

// Sweep removes sessions and pending exchanges whose Expires is not after
// now (Badger drops records past their TTL by itself, and those are not
// counted), then persists the last-use times recorded by Touch. It returns
// how many records it removed.
func (s *Badger) Sweep(ctx context.Context, now time.Time) (int, error) {
	if err := s.enter(); err != nil {
		return 0, err
	}
	defer s.exit()
	s.sweepMu.Lock()
	defer s.sweepMu.Unlock()
	s.sessions.sweep(now)
	removed := 0
	for _, prefix := range []string{prefixSession, prefixPending} {
		n, err := s.sweepExpired(ctx, prefix, now)
		removed += n
		if err != nil {
			return removed, err
		}
	}
	if err := ctx.Err(); err != nil {
		return removed, err
	}
	if _, err := s.persistLastUsed(); err != nil {
		return removed, fmt.Errorf("tokenstore: persist last use: %w", err)
	}
	return removed, nil
}

// expiredRecord reports whether v, a session or pending record (by
// prefix), expired by now.
func expiredRecord(prefix string, v []byte, now time.Time) (bool, error) {
	var expires time.Time
	switch prefix {
	case prefixSession:
		s, err := decodeSession(v)
		if err != nil {
			return false, err
		}
		expires = s.Expires
	default:
		p, err := decodePending(v)
		if err != nil {
			return false, err
		}
		expires = p.Expires
	}
	return !expires.After(now), nil
}

// sweepExpired deletes the records under prefix that expired by now.
func (s *Badger) sweepExpired(ctx context.Context, prefix string, now time.Time) (int, error) {
	var keys [][]byte
	err := s.db.View(func(txn *badger.Txn) error {
		opts := badger.DefaultIteratorOptions
		opts.Prefix = []byte(prefix)
		it := txn.NewIterator(opts)
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			if err := ctx.Err(); err != nil {
				return err
			}
			var expired bool
			item := it.Item()
			err := item.Value(func(v []byte) (err error) {
				expired, err = expiredRecord(prefix, v, now)
				return err
			})
			if errors.Is(err, errCorrupt) {
				continue // unreadable (a newer format?): left to its Badger TTL
			}
			if err != nil {
				return err
			}
			if expired {
				keys = append(keys, item.KeyCopy(nil))
			}
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("tokenstore: sweep: %w", err)
	}
	removed := 0
	for len(keys) > 0 {
		batch := keys[:min(sweepBatch, len(keys))]
		keys = keys[len(batch):]
		n, err := s.deleteExpired(prefix, batch, now)
		removed += n
		if err != nil {
			return removed, fmt.Errorf("tokenstore: sweep: %w", err)
		}
	}
	return removed, nil
}

// deleteExpired deletes those of keys that are still expired, reading each
// again in the deleting transaction so that one rewritten meanwhile (a
// conflict, then retried) survives.
func (s *Badger) deleteExpired(prefix string, keys [][]byte, now time.Time) (int, error) {
	for try := 0; ; try++ {
		n := 0
		err := s.db.Update(func(txn *badger.Txn) error {
			for _, key := range keys {
				item, err := txn.Get(key)
				if errors.Is(err, badger.ErrKeyNotFound) {
					continue
				}
				if err != nil {
					return err
				}
				var expired bool
				err = item.Value(func(v []byte) (err error) {
					expired, err = expiredRecord(prefix, v, now)
					return err
				})
				if errors.Is(err, errCorrupt) {
					continue
				}
				if err != nil {
					return err
				}
				if !expired {
					continue
				}
				if err := txn.Delete(key); err != nil {
					return err
				}
				n++
			}
			return nil
		})
		if errors.Is(err, badger.ErrConflict) && try < maxTakeTries {
			continue
		}
		if err != nil {
			return 0, err
		}
		return n, nil
	}
}

// lastUsedResolution is how far a token's last use must have advanced
// beyond the stored one before Sweep (or Close) rewrites the token. Each
// rewrite writes the whole record (about 2 KiB with amoCRM's tokens), so
// this bounds the writes to one per active user per hour; List shows the
// exact in-memory time meanwhile, and a restart loses at most this much
// of a user's last use.
const lastUsedResolution = int64(time.Hour)

// touched is a cached token whose last use is newer than the persisted one.
type touched struct {
	k   ukey
	tok *Token
	at  int64
}

// persistLastUsed writes the last-use times recorded by Touch that are
// lastUsedResolution or more past the stored ones, shard by shard, each shard in as few synced transactions as fit. A token is
// rewritten only if the database still holds the same pair: a newer token
// is never overwritten. It returns how many tokens it updated. Needs sweepMu.
func (s *Badger) persistLastUsed() (int, error) {
	updated := 0
	for i := range s.cache.shards {
		n, err := s.persistShard(&s.cache.shards[i])
		updated += n
		if err != nil {
			return updated, err
		}
	}
	return updated, nil
}

func (s *Badger) persistShard(sh *shard) (int, error) {
	var todo []touched
	sh.mu.RLock()
	for k, e := range sh.pos {
		if at := e.lastUsed.Load(); at-nanos(e.tok.LastUsed) >= lastUsedResolution {
			todo = append(todo, touched{k, e.tok, at})
		}
	}
	sh.mu.RUnlock()
	if len(todo) == 0 {
		return 0, nil
	}

	sh.wmu.Lock() // no Put or Delete of this shard's tokens until we are done
	defer sh.wmu.Unlock()
	type rewrite struct {
		k        ukey
		old, new *Token
	}
	updated := 0
	for len(todo) > 0 {
		var written []rewrite
		var done int
		err := s.db.Update(func(txn *badger.Txn) error {
			written, done = written[:0], 0
			for _, t := range todo {
				nt, err := storedWithLastUsed(txn, t)
				if err != nil {
					return err
				}
				if nt != nil {
					err = txn.Set(pairKey(prefixToken, t.k.account, t.k.login), encodeToken(nt))
					if errors.Is(err, badger.ErrTxnTooBig) && done > 0 {
						return nil // commit what fits; the rest in the next transaction
					}
					if err != nil {
						return err
					}
					written = append(written, rewrite{t.k, t.tok, nt})
				}
				done++
			}
			return nil
		})
		if err != nil {
			return updated, err
		}
		sh.mu.Lock()
		for _, w := range written {
			if e, ok := sh.pos[w.k]; ok && e.tok == w.old {
				e.tok = packToken(w.new)
				sh.keep(e.tok)
			}
		}
		sh.mu.Unlock()
		updated += len(written)
		todo = todo[done:]
	}
	return updated, nil
}

// storedWithLastUsed returns a copy of the stored token with LastUsed
// advanced to t.at, or nil if there is nothing to write: no token, another
// pair than t's (a newer token: keep it as it is), or a LastUsed as recent.
func storedWithLastUsed(txn *badger.Txn, t touched) (*Token, error) {
	item, err := txn.Get(pairKey(prefixToken, t.k.account, t.k.login))
	if errors.Is(err, badger.ErrKeyNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var stored *Token
	err = item.Value(func(v []byte) (err error) {
		stored, err = decodeToken(v)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("decode token: %w", err)
	}
	if !samePair(stored, t.tok) || nanos(stored.LastUsed) >= t.at {
		return nil, nil
	}
	stored.LastUsed = time.Unix(0, t.at)
	return stored, nil
}
