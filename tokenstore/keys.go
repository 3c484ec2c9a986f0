package tokenstore

import (
	"crypto/sha256"
	"encoding/binary"
	"errors"
)

// Key layout. Every record kind has its own prefix; (account, login) pairs
// are encoded as uvarint(len(account)) account login, so that no pair of
// strings, whatever bytes they hold, can produce another pair's key.
// Session IDs and states are stored only as their SHA-256.
const (
	prefixToken   = "t/" // t/<pair>            Token (JSON)
	prefixSession = "s/" // s/<sha256(id)>      Session (JSON), Badger TTL
	prefixPending = "p/" // p/<sha256(state)>   Pending (JSON), Badger TTL
	prefixAttempt = "a/" // a/<pair>            Attempt (JSON), Badger TTL
	keySecret     = "m/keyhash-secret"
)

// maxKeyLen keeps keys well under Badger's limit (65000 bytes).
const maxKeyLen = 16 << 10

// errKeyTooLong is returned by writes whose account and login are too long
// to be a key. Reads of such keys simply find nothing.
var errKeyTooLong = errors.New("tokenstore: account and login too long")

// pairKey returns prefix + the unambiguous encoding of (account, login).
func pairKey(prefix, account, login string) []byte {
	k := make([]byte, 0, len(prefix)+binary.MaxVarintLen64+len(account)+len(login))
	k = append(k, prefix...)
	k = binary.AppendUvarint(k, uint64(len(account)))
	k = append(k, account...)
	return append(k, login...)
}

// hashedKey returns prefix + SHA-256(secret): the record is found by the
// secret value, which is never written.
func hashedKey(prefix, secret string) []byte {
	sum := sha256.Sum256([]byte(secret))
	k := make([]byte, 0, len(prefix)+len(sum))
	k = append(k, prefix...)
	return append(k, sum[:]...)
}
