package tokenstore

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// Get returns the user's token, from memory when cached (no Redis round
// trip, no allocation). A miss reads Redis once: with Redis unreachable it
// fails with an error wrapping ErrUnavailable, while cached users are
// still served. The *Token is shared: read-only.
func (s *Redis) Get(ctx context.Context, account, login string) (*Token, error) {
	if s.closed.Load() {
		return nil, ErrClosed
	}
	k := ukey{account, login}
	t, hit, _ := s.cache.get(k)
	if !hit {
		var err error
		if t, err = s.getMiss(ctx, k); err != nil {
			return nil, err
		}
	}
	if t == nil {
		return nil, ErrNotFound
	}
	return t, nil
}

func (s *Redis) getMiss(ctx context.Context, k ukey) (*Token, error) {
	if len(k.account)+len(k.login) > maxKeyLen {
		return nil, nil
	}
	ep := s.cache.begin()
	t, ver, err := s.readToken(ctx, s.rdb, k.account, k.login)
	if err != nil {
		return nil, s.fail(ctx, "get token", err)
	}
	return s.cache.fill(k, t, ver, ep), nil
}

// readToken reads the user's token (nil if none) and its version in one
// command (both keys are in one slot).
func (s *Redis) readToken(ctx context.Context, c redis.Cmdable, account, login string) (*Token, uint64, error) {
	tk, vk := s.tokenKeys(account, login)
	vals, err := c.MGet(ctx, tk, vk).Result()
	if err != nil {
		return nil, 0, err
	}
	return s.decodeTokenValues(tk, vals)
}

func (s *Redis) decodeTokenValues(tk string, vals []any) (*Token, uint64, error) {
	ver, err := versionOf(vals[1])
	if err != nil {
		return nil, 0, err
	}
	raw, ok := vals[0].(string)
	if !ok {
		return nil, ver, nil
	}
	t, err := s.decodeSealedToken(tk, raw)
	return t, ver, err
}

func (s *Redis) decodeSealedToken(tk, raw string) (*Token, error) {
	p, err := s.unseal(tk, []byte(raw))
	if err != nil {
		return nil, err
	}
	return decodeToken(p)
}

func versionOf(v any) (uint64, error) {
	switch v := v.(type) {
	case nil:
		return 0, nil
	case string:
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("%w: version %q", errCorrupt, v)
		}
		return n, nil
	case int64:
		return uint64(v), nil
	}
	return 0, fmt.Errorf("%w: version of type %T", errCorrupt, v)
}

// putScript writes a token, advances its version and publishes the event,
// as one step. KEYS: token, version. ARGV: sealed token, channel, sealed
// user. Returns the new version.
var putScript = redis.NewScript(`
local v = redis.call('INCR', KEYS[2])
redis.call('SET', KEYS[1], ARGV[1])
redis.call('PUBLISH', ARGV[2], v .. ':' .. ARGV[3])
return v`)

// deleteScript deletes a token, advances its version and publishes the
// event, as one step; a missing token changes nothing. Returns {deleted,
// version}.
var deleteScript = redis.NewScript(`
if redis.call('EXISTS', KEYS[1]) == 0 then
  return {0, tonumber(redis.call('GET', KEYS[2]) or '0')}
end
local v = redis.call('INCR', KEYS[2])
redis.call('DEL', KEYS[1])
redis.call('PUBLISH', ARGV[1], v .. ':' .. ARGV[2])
return {1, v}`)

// Put stores a copy of t in Redis (acknowledged before Put returns),
// tells every instance, then makes it visible to Get here.
func (s *Redis) Put(ctx context.Context, t *Token) error {
	if t == nil {
		return errors.New("tokenstore: put nil token")
	}
	if t.Account == "" || t.Login == "" {
		return errors.New("tokenstore: put token without account or login")
	}
	if len(t.Account)+len(t.Login) > maxKeyLen {
		return errKeyTooLong
	}
	if err := writable(t); err != nil {
		return err
	}
	if s.closed.Load() {
		return ErrClosed
	}
	c := cloneToken(t)
	k := ukey{c.Account, c.Login}
	tk, vk := s.tokenKeys(c.Account, c.Login)
	ep := s.cache.begin()
	v, err := putScript.Run(ctx, s.rdb, []string{tk, vk},
		s.seal(tk, encodeToken(c)), s.channel, s.eventUser(c.Account, c.Login)).Int64()
	if err != nil {
		s.cache.failed(k, err)
		return s.fail(ctx, "put token", err)
	}
	s.cache.wrote(k, c, uint64(v), ep)
	return nil
}

// Delete removes the user's token from Redis and tells every instance.
func (s *Redis) Delete(ctx context.Context, account, login string) error {
	if len(account)+len(login) > maxKeyLen {
		return nil // never stored
	}
	if s.closed.Load() {
		return ErrClosed
	}
	k := ukey{account, login}
	tk, vk := s.tokenKeys(account, login)
	ep := s.cache.begin()
	res, err := deleteScript.Run(ctx, s.rdb, []string{tk, vk}, s.channel, s.eventUser(account, login)).Int64Slice()
	if err != nil || len(res) != 2 {
		s.cache.failed(k, err)
		if err == nil {
			err = fmt.Errorf("%w: delete answered %v", errCorrupt, res)
		}
		return s.fail(ctx, "delete token", err)
	}
	s.cache.wrote(k, nil, uint64(res[1]), ep)
	return nil
}

// errUpdateRenames is returned by an Update whose fn changed the token's
// account or login: a token is stored under its own names.
var errUpdateRenames = errors.New("tokenstore: update changed the token's account or login")

// maxUpdateTries bounds Update's retries: each conflict means another
// writer succeeded, so this is only reached under a storm of writes.
const maxUpdateTries = 100

// Update implements Coordinator with an optimistic transaction: WATCH the
// token and its version, read them, let fn change a copy (compared in Go:
// the values are sealed), then MULTI/EXEC the write, the new version and
// the event; a transaction that lost a race is retried with the newer
// token.
func (s *Redis) Update(ctx context.Context, account, login string, fn func(*Token) bool) (*Token, error) {
	return s.update(ctx, account, login, fn, true)
}

// update is Update; without publish the version stays and no event is
// sent (a change of LastUsed only, which other instances need not see).
func (s *Redis) update(ctx context.Context, account, login string, fn func(*Token) bool, publish bool) (*Token, error) {
	if s.closed.Load() {
		return nil, ErrClosed
	}
	if len(account)+len(login) > maxKeyLen {
		return nil, ErrNotFound
	}
	k := ukey{account, login}
	tk, vk := s.tokenKeys(account, login)
	for try := 0; ; try++ {
		ep := s.cache.begin()
		var (
			cur, next *Token
			ver       uint64
		)
		err := s.rdb.Watch(ctx, func(tx *redis.Tx) error {
			var err error
			if cur, ver, err = s.readToken(ctx, tx, account, login); err != nil || cur == nil {
				return err
			}
			c := cloneToken(cur)
			if !fn(c) {
				return nil
			}
			if c.Account != account || c.Login != login {
				return errUpdateRenames
			}
			if err := writable(c); err != nil {
				return err
			}
			val := s.seal(tk, encodeToken(c))
			_, err = tx.TxPipelined(ctx, func(p redis.Pipeliner) error {
				p.Set(ctx, tk, val, 0)
				if publish {
					p.Set(ctx, vk, ver+1, 0)
					p.Publish(ctx, s.channel, s.event(ver+1, account, login))
				}
				return nil
			})
			if err == nil {
				next = c
			}
			return err
		}, tk, vk)
		switch {
		case errors.Is(err, redis.TxFailedErr) && try < maxUpdateTries:
			select { // let the winner's event and the other racers pass
			case <-time.After(time.Duration(rand.IntN(2000)) * time.Microsecond):
			case <-ctx.Done():
				return nil, ctx.Err()
			}
			continue
		case errors.Is(err, errUpdateRenames):
			return nil, err
		case err != nil:
			s.cache.failed(k, err)
			return nil, s.fail(ctx, "update token", err)
		case cur == nil:
			return nil, ErrNotFound
		case next == nil:
			return cur, nil
		}
		if publish {
			ver++
		}
		s.cache.wrote(k, next, ver, ep)
		return next, nil
	}
}

// List calls fn for every token in Redis (SCAN over the token keys, on
// every master of a Cluster), each a fresh copy that fn may keep, in no
// particular order; a token written during List may be seen or not.
// LastUsed includes uses recorded by Touch and not yet persisted.
func (s *Redis) List(ctx context.Context, fn func(*Token) error) error {
	if s.closed.Load() {
		return ErrClosed
	}
	match := escapeGlob(s.prefix) + "t:{*}"
	var mu sync.Mutex // a Cluster's masters are scanned concurrently; fn is called by one at a time
	scan := func(ctx context.Context, c redis.Cmdable) error {
		var cursor uint64
		for {
			keys, next, err := c.Scan(ctx, cursor, match, 200).Result()
			if err != nil {
				return s.fail(ctx, "list tokens", err)
			}
			if err := s.listKeys(ctx, c, keys, &mu, fn); err != nil {
				return err
			}
			if cursor = next; cursor == 0 {
				return nil
			}
		}
	}
	if cc, ok := s.rdb.(*redis.ClusterClient); ok {
		return cc.ForEachMaster(ctx, func(ctx context.Context, c *redis.Client) error { return scan(ctx, c) })
	}
	return scan(ctx, s.rdb)
}

func (s *Redis) listKeys(ctx context.Context, c redis.Cmdable, keys []string, mu *sync.Mutex, fn func(*Token) error) error {
	if len(keys) == 0 {
		return nil
	}
	pipe := c.Pipeline()
	cmds := make([]*redis.StringCmd, len(keys))
	for i, key := range keys {
		cmds[i] = pipe.Get(ctx, key)
	}
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return s.fail(ctx, "list tokens", err)
	}
	mu.Lock()
	defer mu.Unlock()
	for i, cmd := range cmds {
		raw, err := cmd.Result()
		if errors.Is(err, redis.Nil) {
			continue // deleted meanwhile
		}
		if err != nil {
			return s.fail(ctx, "list tokens", err)
		}
		t, err := s.decodeSealedToken(keys[i], raw)
		if err != nil {
			return s.fail(ctx, "list tokens", err)
		}
		k := ukey{t.Account, t.Login}
		if lu := s.cache.lastUsed(k, t); lu > nanos(t.LastUsed) {
			t.LastUsed = time.Unix(0, lu)
		}
		if err := fn(t); err != nil {
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
	}
	return nil
}

// escapeGlob escapes the characters SCAN's MATCH treats specially.
func escapeGlob(s string) string {
	var b strings.Builder
	for _, r := range s {
		switch r {
		case '*', '?', '[', ']', '\\':
			b.WriteByte('\\')
		}
		b.WriteRune(r)
	}
	return b.String()
}

// Touch records a use of the user's cached token: memory only (no Redis
// round trip); Sweep and Close persist it lazily, as Badger does.
func (s *Redis) Touch(account, login string, at time.Time) {
	if s.closed.Load() {
		return
	}
	s.cache.touch(ukey{account, login}, nanos(at))
}

// Sweep persists the last-use times recorded by Touch (once an hour or
// more past the stored ones, and only onto the same pair) and forgets
// versions no longer needed. Redis expires sessions, pending exchanges,
// attempts and gates by itself: Sweep removes nothing and returns 0.
func (s *Redis) Sweep(ctx context.Context, now time.Time) (int, error) {
	if s.closed.Load() {
		return 0, ErrClosed
	}
	s.sweepMu.Lock()
	defer s.sweepMu.Unlock()
	s.cache.prune(now)
	return 0, s.persistLastUsed(ctx)
}

// persistLastUsed writes each touched token's last use onto the stored
// pair if it is still the same pair, without an event (the pair did not
// change). Needs sweepMu.
func (s *Redis) persistLastUsed(ctx context.Context) error {
	var first error
	for _, t := range s.cache.touchedTokens(lastUsedResolution) {
		_, err := s.update(ctx, t.k.account, t.k.login, func(stored *Token) bool {
			if !samePair(stored, t.tok) || nanos(stored.LastUsed) >= t.at {
				return false
			}
			stored.LastUsed = time.Unix(0, t.at)
			return true
		}, false)
		if err != nil && !errors.Is(err, ErrNotFound) {
			if first == nil {
				first = err
			}
			if ctx.Err() != nil || errors.Is(err, ErrUnavailable) {
				return first
			}
		}
	}
	return first
}
