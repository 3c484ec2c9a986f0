package tokenstore

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"hash"
	"sync"

	"github.com/dgraph-io/badger/v4"
)

const secretLen = 32

// HashKey returns HMAC-SHA256 of apiKey keyed with a random secret kept in
// the store (created on first open), so that the hash stays the same across
// restarts and is useless without the store. It keeps working after Close.
func (s *Badger) HashKey(apiKey string) []byte {
	h := s.KeyHash(apiKey)
	return h[:]
}

// KeyHash is HashKey as an array: no allocation (the hot path).
func (s *Badger) KeyHash(apiKey string) [sha256.Size]byte { return keyHash(&s.hmacs, apiKey) }

func (s *Badger) newHMAC() any { return newKeyHasher(s.secret) }

// keyHasher is a pooled HMAC-SHA256 state with its own buffers, so that
// hashing a key allocates nothing.
type keyHasher struct {
	h   hash.Hash
	in  []byte
	out [sha256.Size]byte
}

func newKeyHasher(secret []byte) *keyHasher {
	return &keyHasher{h: hmac.New(sha256.New, secret), in: make([]byte, 0, 64)}
}

// keyHash hashes apiKey with a keyHasher of pool.
func keyHash(pool *sync.Pool, apiKey string) [sha256.Size]byte {
	k := pool.Get().(*keyHasher)
	k.h.Reset()
	k.in = append(k.in[:0], apiKey...)
	k.h.Write(k.in)
	var sum [sha256.Size]byte
	copy(sum[:], k.h.Sum(k.out[:0]))
	if cap(k.in) > 4096 {
		k.in = make([]byte, 0, 64) // a huge key is not kept
	}
	pool.Put(k)
	return sum
}

// loadSecret reads the HashKey secret, creating it on first open.
func (s *Badger) loadSecret() ([]byte, error) {
	var secret []byte
	err := s.db.Update(func(txn *badger.Txn) error {
		item, err := txn.Get([]byte(keySecret))
		if err == nil {
			secret, err = item.ValueCopy(nil)
			if err == nil && len(secret) != secretLen {
				err = fmt.Errorf("stored secret is %d bytes, want %d", len(secret), secretLen)
			}
			return err
		}
		if !errors.Is(err, badger.ErrKeyNotFound) {
			return err
		}
		secret = make([]byte, secretLen)
		if _, err := rand.Read(secret); err != nil {
			return err
		}
		return txn.Set([]byte(keySecret), secret)
	})
	if err != nil {
		return nil, fmt.Errorf("tokenstore: key-hash secret: %w", err)
	}
	return secret, nil
}
