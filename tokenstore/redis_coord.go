package tokenstore

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"
)

// eventUser is the sealed (account, login) of an event.
func (s *Redis) eventUser(account, login string) string {
	return string(s.seal(s.channel, pairKey("", account, login)))
}

// event is the payload of the event that the user's token is at version ver.
func (s *Redis) event(ver uint64, account, login string) string {
	return strconv.FormatUint(ver, 10) + ":" + s.eventUser(account, login)
}

// parseEvent reads an event's payload.
func (s *Redis) parseEvent(payload string) (k ukey, ver uint64, err error) {
	i := strings.IndexByte(payload, ':')
	if i < 0 {
		return k, 0, fmt.Errorf("%w: event without version", errCorrupt)
	}
	if ver, err = strconv.ParseUint(payload[:i], 10, 64); err != nil {
		return k, 0, fmt.Errorf("%w: event version", errCorrupt)
	}
	p, err := s.unseal(s.channel, []byte(payload[i+1:]))
	if err != nil {
		return k, 0, err
	}
	n, w := binary.Uvarint(p)
	if w <= 0 || n > uint64(len(p)-w) {
		return k, 0, fmt.Errorf("%w: event user", errCorrupt)
	}
	return ukey{string(p[w : w+int(n)]), string(p[w+int(n):])}, ver, nil
}

// listen starts the listener of invalidation events and waits (until ctx
// ends) for its first subscription.
func (s *Redis) listen(ctx context.Context) error {
	ready := make(chan struct{})
	s.wg.Add(1)
	go s.listener(ready)
	select {
	case <-ready:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("subscribe to %s: %w", s.channel, ctx.Err())
	}
}

// Subscription health: after pingAfter of silence the listener sends a
// PING; no answer within another pingAfter and the subscription is rebuilt.
// Rebuilding after a failure waits from listenBackoffMin, doubling up to
// listenBackoffMax.
const (
	pingAfter        = time.Second
	listenBackoffMin = 50 * time.Millisecond
	listenBackoffMax = time.Second
)

// listener receives invalidation events until Close, rebuilding the
// subscription whenever it breaks. Every (re)subscription drops the cache
// and, but for the first, tells the subscribers that anything may have
// changed: events sent while it was down are lost.
func (s *Redis) listener(ready chan struct{}) {
	defer s.wg.Done()
	first := true
	backoff := listenBackoffMin
	for s.ctx.Err() == nil {
		ps := s.rdb.Subscribe(s.ctx, s.channel)
		s.subMu.Lock()
		s.ps = ps
		s.subMu.Unlock()
		subscribed, err := s.receive(ps, &first, ready)
		s.cache.unsubscribed()
		s.subMu.Lock()
		s.ps = nil
		s.subMu.Unlock()
		_ = ps.Close()
		if s.ctx.Err() != nil {
			return
		}
		if subscribed {
			backoff = listenBackoffMin
			s.log.Warn("lost the events subscription; resubscribing", zap.Error(err))
		}
		select {
		case <-time.After(backoff):
		case <-s.ctx.Done():
			return
		}
		backoff = min(2*backoff, listenBackoffMax)
	}
}

// receive reads ps until it fails; subscribed reports whether the
// subscription was confirmed first.
func (s *Redis) receive(ps *redis.PubSub, first *bool, ready chan struct{}) (subscribed bool, err error) {
	pinged := false
	for {
		msg, err := ps.ReceiveTimeout(s.ctx, pingAfter)
		if err != nil {
			var ne net.Error
			if s.ctx.Err() == nil && errors.As(err, &ne) && ne.Timeout() && !pinged {
				if err := ps.Ping(s.ctx); err != nil {
					return subscribed, err
				}
				pinged = true
				continue
			}
			return subscribed, err
		}
		pinged = false
		switch m := msg.(type) {
		case *redis.Subscription:
			if m.Kind != "subscribe" {
				continue
			}
			subscribed = true
			s.cache.subscribed()
			if *first {
				*first = false
				close(ready)
			} else {
				s.log.Info("events subscription restored; token cache dropped")
				s.notify("", "")
			}
		case *redis.Message:
			k, ver, err := s.parseEvent(m.Payload)
			if err != nil {
				s.log.Warn("unreadable invalidation event", zap.Error(err))
				continue
			}
			s.cache.event(k, ver)
			s.notify(k.account, k.login)
		}
	}
}

// Subscribe implements Coordinator: fn is called, in its own goroutine,
// for every event (a token written or deleted by any instance, this one
// included), and with ("", "") after the subscription was restored.
func (s *Redis) Subscribe(fn func(account, login string)) (cancel func()) {
	s.subMu.Lock()
	defer s.subMu.Unlock()
	id := s.nextID
	s.nextID++
	s.subs[id] = fn
	return func() {
		s.subMu.Lock()
		delete(s.subs, id)
		s.subMu.Unlock()
	}
}

func (s *Redis) notify(account, login string) {
	s.subMu.Lock()
	fns := make([]func(string, string), 0, len(s.subs))
	for _, fn := range s.subs {
		fns = append(fns, fn)
	}
	s.subMu.Unlock()
	for _, fn := range fns {
		go fn(account, login)
	}
}

// Lock timing: a lock lives lockTTL in Redis (longer than any call to
// amoCRM, which times out after 30 s), renewed every lockRenew while held;
// a waiter polls from lockPollMin, doubling up to lockPollMax. (Redis.lockTTL
// and lockRenew hold them, so that a test can shorten them.)
const (
	lockTTL     = 45 * time.Second
	lockRenew   = 15 * time.Second
	lockPollMin = 5 * time.Millisecond
	lockPollMax = 100 * time.Millisecond
)

// renewScript extends a lock or lease still held by ARGV[1]. casDelScript
// deletes it if still held by ARGV[1].
var (
	renewScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0`)
	casDelScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0`)
)

// Lock implements Coordinator: SET NX PX lockTTL with a random token,
// renewed every lockRenew while held, given back by a compare-and-delete.
// A holder that dies frees the lock lockTTL after its last renewal.
func (s *Redis) Lock(ctx context.Context, name string) (func(), error) {
	if s.closed.Load() {
		return nil, ErrClosed
	}
	key := s.prefix + "lock:" + name
	token := randomHex(16)
	poll := lockPollMin
	for {
		ok, err := s.rdb.SetNX(ctx, key, token, s.lockTTL).Result()
		if err != nil {
			return nil, s.fail(ctx, "lock "+name, err)
		}
		if ok {
			break
		}
		t := time.NewTimer(poll)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return nil, ctx.Err()
		}
		poll = min(2*poll, lockPollMax)
	}
	stop := make(chan struct{})
	s.wg.Add(1)
	go s.renew(key, name, token, stop)
	var once sync.Once
	return func() {
		once.Do(func() {
			close(stop)
			ctx, cancel := s.redisCtx()
			defer cancel()
			if err := casDelScript.Run(ctx, s.rdb, []string{key}, token).Err(); err != nil && !s.closed.Load() {
				s.log.Warn("cannot give a lock back; it expires by itself", zap.String("lock", name),
					zap.Duration("ttl", s.lockTTL), zap.Error(err))
			}
		})
	}, nil
}

// renew keeps the lock under key alive until stop is closed or Close.
func (s *Redis) renew(key, name, token string, stop chan struct{}) {
	defer s.wg.Done()
	t := time.NewTicker(s.lockRenew)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-s.ctx.Done():
			return
		case <-t.C:
		}
		ctx, cancel := s.redisCtx()
		n, err := renewScript.Run(ctx, s.rdb, []string{key}, token, s.lockTTL.Milliseconds()).Int()
		cancel()
		switch {
		case err != nil:
			s.log.Warn("cannot renew a lock; retrying", zap.String("lock", name), zap.Error(err))
		case n == 0:
			s.log.Error("a lock held here expired in Redis (renewal came too late)", zap.String("lock", name))
			return
		}
	}
}

// leaseScript takes the lease if free or renews it if ARGV[1] holds it.
var leaseScript = redis.NewScript(`
local v = redis.call('GET', KEYS[1])
if v == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
if not v then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
return 0`)

// Lease implements Coordinator: SET NX PX ttl, or PEXPIRE if this
// process (this OpenRedis) holds it already, as one script.
func (s *Redis) Lease(ctx context.Context, name string, ttl time.Duration) (bool, error) {
	if s.closed.Load() {
		return false, ErrClosed
	}
	if ttl <= 0 {
		return false, errors.New("tokenstore: lease ttl must be positive")
	}
	n, err := leaseScript.Run(ctx, s.rdb, []string{s.prefix + "lease:" + name}, s.id,
		max(1, ttl.Milliseconds())).Int()
	if err != nil {
		return false, s.fail(ctx, "lease "+name, err)
	}
	return n == 1, nil
}

// reserveScript is GCRA on Redis's clock (µs): the queue's key holds its
// next free turn. ARGV: every, maxWait (µs). Returns {1, wait} with the
// turn taken, or {0, time until a turn is within maxWait}.
var reserveScript = redis.NewScript(`
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local every = tonumber(ARGV[1])
local maxwait = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < now then tat = now end
local wait = tat - now
if wait > maxwait then return {0, wait - maxwait} end
local nxt = tat + every
redis.call('SET', KEYS[1], string.format('%.0f', nxt), 'PX', math.floor((nxt - now) / 1000) + 1)
return {1, wait}`)

// Reserve implements Coordinator with one script on Redis's clock, so that
// a queue holds across every instance.
func (s *Redis) Reserve(ctx context.Context, key string, every, maxWait time.Duration) (time.Duration, bool, error) {
	if s.closed.Load() {
		return 0, false, ErrClosed
	}
	res, err := reserveScript.Run(ctx, s.rdb, []string{s.prefix + "q:" + key},
		max(0, every.Microseconds()), max(0, maxWait.Microseconds())).Int64Slice()
	if err == nil && len(res) != 2 {
		err = fmt.Errorf("%w: reserve answered %v", errCorrupt, res)
	}
	if err != nil {
		return 0, false, s.fail(ctx, "reserve "+key, err)
	}
	return time.Duration(res[1]) * time.Microsecond, res[0] == 1, nil
}
