package tokenstore

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"hash"

	"github.com/dgraph-io/badger/v4"
)

const secretLen = 32

// HashKey returns HMAC-SHA256 of apiKey keyed with a random secret kept in
// the store (created on first open), so that the hash stays the same across
// restarts and is useless without the store. It keeps working after Close.
func (s *Badger) HashKey(apiKey string) []byte {
	h := s.hmacs.Get().(hash.Hash)
	h.Reset()
	h.Write([]byte(apiKey))
	sum := h.Sum(make([]byte, 0, sha256.Size))
	s.hmacs.Put(h)
	return sum
}

func (s *Badger) newHMAC() any { return hmac.New(sha256.New, s.secret) }

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
