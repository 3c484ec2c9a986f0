package tokenstore

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
)

// ttlUntil is the PX of a record that expires at t: whole milliseconds,
// rounded up so that Redis never drops it before t (the code checks t
// exactly); 0 if t has passed.
func ttlUntil(t time.Time) time.Duration {
	d := time.Until(t)
	if d <= 0 {
		return 0
	}
	return (d + time.Millisecond - 1).Truncate(time.Millisecond)
}

// PutSession stores sess under the SHA-256 of id, sealed, expiring (by
// Redis's TTL) at sess.Expires. A session already expired is not stored.
// Sessions are not cached: every instance reads Redis, so that a session
// deleted on one is gone on all.
func (s *Redis) PutSession(ctx context.Context, id string, sess Session) error {
	if id == "" {
		return errors.New("tokenstore: put session with empty id")
	}
	if sess.Expires.IsZero() {
		return errors.New("tokenstore: put session without expiry")
	}
	return s.putRecord(ctx, "session", s.hashedRedisKey("s:", id), encodeSession(sess), sess.Expires)
}

// GetSession returns the session stored under id, or ErrNotFound if it is
// missing or expired.
func (s *Redis) GetSession(ctx context.Context, id string) (Session, error) {
	key := s.hashedRedisKey("s:", id)
	p, err := s.getRecord(ctx, "session", key)
	if err != nil {
		return Session{}, err
	}
	sess, err := decodeSession(p)
	if err != nil {
		return Session{}, s.fail(ctx, "get session", err)
	}
	if !sess.Expires.After(time.Now()) {
		return Session{}, ErrNotFound
	}
	return sess, nil
}

// DeleteSession removes the session stored under id.
func (s *Redis) DeleteSession(ctx context.Context, id string) error {
	return s.deleteRecord(ctx, "session", s.hashedRedisKey("s:", id))
}

// PutPending stores p under the SHA-256 of p.State, sealed, until p.Expires.
func (s *Redis) PutPending(ctx context.Context, p Pending) error {
	if p.State == "" {
		return errors.New("tokenstore: put pending exchange with empty state")
	}
	if p.Expires.IsZero() {
		return errors.New("tokenstore: put pending exchange without expiry")
	}
	return s.putRecord(ctx, "pending exchange", s.hashedRedisKey("p:", p.State), encodePending(p), p.Expires)
}

// TakePending returns and removes the pending exchange for state with one
// GETDEL: of any number of takers on any instances, one gets it.
func (s *Redis) TakePending(ctx context.Context, state string) (Pending, error) {
	if s.closed.Load() {
		return Pending{}, ErrClosed
	}
	key := s.hashedRedisKey("p:", state)
	v, err := s.rdb.GetDel(ctx, key).Bytes()
	if errors.Is(err, redis.Nil) {
		return Pending{}, ErrNotFound
	}
	if err != nil {
		return Pending{}, s.fail(ctx, "take pending exchange", err)
	}
	raw, err := s.unseal(key, v)
	if err != nil {
		return Pending{}, s.fail(ctx, "take pending exchange", err)
	}
	p, err := decodePending(raw)
	if err != nil {
		return Pending{}, s.fail(ctx, "take pending exchange", err)
	}
	if !p.Expires.After(time.Now()) {
		return Pending{}, ErrNotFound
	}
	p.State = state
	return p, nil
}

// An attempt is a hash under P a:{uid}: "at", the attempt's time in Unix
// microseconds (Redis's clock when ClaimAttempt made it; absent once
// withdrawn), which the claim script compares; and "rec", the sealed
// Attempt with a zero At. The hash expires AttemptTTL after the attempt.

// claimScript is ClaimAttempt: KEYS: attempt. ARGV: interval (µs), sealed
// record, PX. Returns {1, at} (claimed at Redis's now) or {0, at, rec} (the
// last attempt).
var claimScript = redis.NewScript(`
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local at = redis.call('HGET', KEYS[1], 'at')
if at and now - tonumber(at) < tonumber(ARGV[1]) then
  return {0, at, redis.call('HGET', KEYS[1], 'rec') or ''}
end
local s = string.format('%.0f', now)
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], 'at', s, 'rec', ARGV[2])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return {1, s}`)

// ClaimAttempt implements Coordinator with one script on Redis's clock:
// the attempt is claimed if the last one is interval or more older than
// Redis's now, and recorded with At set to that now (microseconds).
func (s *Redis) ClaimAttempt(ctx context.Context, a Attempt, interval time.Duration) (Attempt, bool, error) {
	if a.Account == "" || a.Login == "" {
		return Attempt{}, false, errors.New("tokenstore: claim attempt without account or login")
	}
	if len(a.Account)+len(a.Login) > maxKeyLen {
		return Attempt{}, false, errKeyTooLong
	}
	if s.closed.Load() {
		return Attempt{}, false, ErrClosed
	}
	key := s.attemptKey(a.Account, a.Login)
	rec := a
	rec.At = time.Time{}
	res, err := claimScript.Run(ctx, s.rdb, []string{key}, interval.Microseconds(),
		s.seal(key, encodeAttempt(rec)), max(1, s.attemptTTL.Milliseconds())).Slice()
	if err == nil && len(res) < 2 {
		err = fmt.Errorf("%w: claim answered %v", errCorrupt, res)
	}
	if err != nil {
		return Attempt{}, false, s.fail(ctx, "claim attempt", err)
	}
	at, err := parseMicros(res[1])
	if err != nil {
		return Attempt{}, false, s.fail(ctx, "claim attempt", err)
	}
	if won, _ := res[0].(int64); won == 1 {
		a.At = at
		return a, true, nil
	}
	raw, _ := res[2].(string)
	last, err := s.decodeAttemptRecord(key, raw)
	if err != nil {
		return Attempt{}, false, s.fail(ctx, "claim attempt", err)
	}
	last.At = at
	return last, false, nil
}

// PutAttempt stores a as the user's last attempt. A zero At withdraws the
// claim (the next ClaimAttempt wins); a later At (amoCRM asked to wait
// longer) holds claims off until At plus their interval. Kept until At
// (or now) plus AttemptTTL.
func (s *Redis) PutAttempt(ctx context.Context, a Attempt) error {
	if a.Account == "" || a.Login == "" {
		return errors.New("tokenstore: put attempt without account or login")
	}
	if len(a.Account)+len(a.Login) > maxKeyLen {
		return errKeyTooLong
	}
	if s.closed.Load() {
		return ErrClosed
	}
	key := s.attemptKey(a.Account, a.Login)
	rec := a
	rec.At = time.Time{}
	val := s.seal(key, encodeAttempt(rec))
	from := a.At
	if from.IsZero() {
		from = time.Now()
	}
	ttl := ttlUntil(from.Add(s.attemptTTL))
	_, err := s.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.Del(ctx, key)
		if ttl <= 0 {
			return nil
		}
		if a.At.IsZero() {
			p.HSet(ctx, key, "rec", val)
		} else {
			p.HSet(ctx, key, "at", strconv.FormatInt(a.At.UnixMicro(), 10), "rec", val)
		}
		p.PExpire(ctx, key, ttl)
		return nil
	})
	if err != nil {
		return s.fail(ctx, "put attempt", err)
	}
	return nil
}

// GetAttempt returns the user's last exchange attempt, or ErrNotFound.
func (s *Redis) GetAttempt(ctx context.Context, account, login string) (Attempt, error) {
	if len(account)+len(login) > maxKeyLen {
		return Attempt{}, ErrNotFound
	}
	if s.closed.Load() {
		return Attempt{}, ErrClosed
	}
	key := s.attemptKey(account, login)
	vals, err := s.rdb.HMGet(ctx, key, "at", "rec").Result()
	if err != nil {
		return Attempt{}, s.fail(ctx, "get attempt", err)
	}
	raw, ok := vals[1].(string)
	if !ok {
		return Attempt{}, ErrNotFound
	}
	a, err := s.decodeAttemptRecord(key, raw)
	if err != nil {
		return Attempt{}, s.fail(ctx, "get attempt", err)
	}
	if vals[0] != nil {
		if a.At, err = parseMicros(vals[0]); err != nil {
			return Attempt{}, s.fail(ctx, "get attempt", err)
		}
	}
	return a, nil
}

func (s *Redis) decodeAttemptRecord(key, raw string) (Attempt, error) {
	p, err := s.unseal(key, []byte(raw))
	if err != nil {
		return Attempt{}, err
	}
	return decodeAttempt(p)
}

// parseMicros reads Unix microseconds answered by Redis.
func parseMicros(v any) (time.Time, error) {
	var n int64
	switch v := v.(type) {
	case string:
		var err error
		if n, err = strconv.ParseInt(v, 10, 64); err != nil {
			return time.Time{}, fmt.Errorf("%w: time %q", errCorrupt, v)
		}
	case int64:
		n = v
	default:
		return time.Time{}, fmt.Errorf("%w: time of type %T", errCorrupt, v)
	}
	return time.UnixMicro(n), nil
}

// putRecord stores val (sealed) under key until expires; a record already
// expired is deleted instead.
func (s *Redis) putRecord(ctx context.Context, what, key string, val []byte, expires time.Time) error {
	if s.closed.Load() {
		return ErrClosed
	}
	var err error
	if ttl := ttlUntil(expires); ttl > 0 {
		err = s.rdb.Set(ctx, key, s.seal(key, val), ttl).Err()
	} else {
		err = s.rdb.Del(ctx, key).Err()
	}
	if err != nil {
		return s.fail(ctx, "put "+what, err)
	}
	return nil
}

// getRecord returns the unsealed record under key; ErrNotFound if none.
func (s *Redis) getRecord(ctx context.Context, what, key string) ([]byte, error) {
	if s.closed.Load() {
		return nil, ErrClosed
	}
	v, err := s.rdb.Get(ctx, key).Bytes()
	if errors.Is(err, redis.Nil) {
		return nil, ErrNotFound
	}
	if err == nil {
		v, err = s.unseal(key, v)
	}
	if err != nil {
		return nil, s.fail(ctx, "get "+what, err)
	}
	return v, nil
}

func (s *Redis) deleteRecord(ctx context.Context, what, key string) error {
	if s.closed.Load() {
		return ErrClosed
	}
	if err := s.rdb.Del(ctx, key).Err(); err != nil {
		return s.fail(ctx, "delete "+what, err)
	}
	return nil
}
