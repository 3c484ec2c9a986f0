package tokenstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"
)

// fingerprint is what every instance of one cluster must agree on, stored
// once (the first Claim) under P meta:fingerprint. It holds no secret: the
// key check is a truncated HMAC of a constant keyed with the encryption
// key, which says whether two keys are the same and nothing else.
type fingerprint struct {
	ClientID  string `json:"client_id"`
	KeyCheck  string `json:"key_check"` // "none": no encryption key
	KeyPrefix string `json:"key_prefix"`
}

// Claim makes clientID (an integration's client_id) the owner of the
// store, together with this instance's encryption key and key prefix, if
// Redis holds no fingerprint under the prefix yet; otherwise it checks
// that they match the stored ones, and fails with an error that names the
// setting that differs: client_id (both shown; wrapping ErrOwner) or
// encryption_key (never shown; wrapping ErrEncryptionKey).
func (s *Redis) Claim(clientID string) error {
	if clientID == "" {
		return errors.New("tokenstore: empty owner")
	}
	if s.closed.Load() {
		return ErrClosed
	}
	ctx, cancel := context.WithTimeout(s.ctx, redisOpenTimeout)
	defer cancel()
	mine := fingerprint{ClientID: clientID, KeyCheck: s.keyCheck, KeyPrefix: s.prefix}
	v, err := json.Marshal(mine)
	if err != nil {
		return err
	}
	key := s.prefix + redisFingerprint
	if err := s.rdb.SetNX(ctx, key, v, 0).Err(); err != nil {
		return s.fail(ctx, "claim", err)
	}
	have, err := s.readFingerprint(ctx)
	if err != nil {
		return err
	}
	if have == nil {
		return s.fail(ctx, "claim", errors.New("the fingerprint vanished right after it was written"))
	}
	if have.ClientID != clientID {
		return fmt.Errorf("%w: client_id differs: Redis (key prefix %q) holds the tokens of client_id %q, not %q",
			ErrOwner, s.prefix, have.ClientID, clientID)
	}
	if err := s.compareKey(have); err != nil {
		return err
	}
	if have.KeyPrefix != s.prefix {
		return fmt.Errorf("tokenstore: key_prefix differs: the fingerprint under %q was written with key prefix %q",
			s.prefix, have.KeyPrefix)
	}
	return nil
}

// checkKey compares this instance's encryption key with the fingerprint's,
// if a fingerprint is stored already, so that OpenRedis refuses a wrong key
// at once and says so.
func (s *Redis) checkKey(ctx context.Context) error {
	have, err := s.readFingerprint(ctx)
	if err != nil || have == nil {
		return err
	}
	return s.compareKey(have)
}

func (s *Redis) compareKey(have *fingerprint) error {
	switch {
	case have.KeyCheck == s.keyCheck:
		return nil
	case have.KeyCheck == "none":
		return fmt.Errorf("%w: encryption_key differs: the cluster (key prefix %q) stores its data without "+
			"encryption, and this instance has an encryption_key", ErrEncryptionKey, s.prefix)
	case s.keyCheck == "none":
		return fmt.Errorf("%w: encryption_key differs: the cluster (key prefix %q) encrypts its data, "+
			"and this instance has no encryption_key", ErrEncryptionKey, s.prefix)
	}
	return fmt.Errorf("%w: encryption_key differs from the one the cluster (key prefix %q) uses",
		ErrEncryptionKey, s.prefix)
}

// readFingerprint returns the stored fingerprint, or nil if none.
func (s *Redis) readFingerprint(ctx context.Context) (*fingerprint, error) {
	v, err := s.rdb.Get(ctx, s.prefix+redisFingerprint).Bytes()
	if errors.Is(err, redis.Nil) {
		return nil, nil
	}
	if err != nil {
		return nil, s.fail(ctx, "read the fingerprint", err)
	}
	var f fingerprint
	if err := json.Unmarshal(v, &f); err != nil {
		return nil, fmt.Errorf("tokenstore: fingerprint under %q: %w: %v", s.prefix+redisFingerprint, errCorrupt, err)
	}
	return &f, nil
}

// redisCtx bounds a call made without a caller's context.
func (s *Redis) redisCtx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(s.ctx, 3*time.Second)
}
