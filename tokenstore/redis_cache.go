package tokenstore

import (
	"hash/maphash"
	"sync"
	"sync/atomic"
	"time"
)

// redisCache is the Redis store's view of the token cache (cache.go): the
// one place that knows the cache's internals, so that a change there is
// adapted here only. Over the cache it keeps, per user, the highest version
// of the user's token it has seen (from its own writes, from reads and from
// invalidation events), so that an event older than what is cached is
// ignored and a write or read overtaken by a newer version is not cached;
// and an epoch, advanced when events may have been missed (a reconnect),
// so that nothing read or written before it is cached after it.
type redisCache struct {
	c     cache
	epoch atomic.Uint64
	live  atomic.Bool // subscribed to the events: answers may be cached
	seed  maphash.Seed
	vers  [numShards]verStripe
}

// verStripe holds the versions of some users, under its own lock, which
// also orders the cache updates of those users.
type verStripe struct {
	mu sync.Mutex
	m  map[ukey]verSeen
	_  [40]byte
}

// verSeen is the highest version seen of a user's token and when (Unix
// seconds): prune forgets the versions of users not cached after a while.
type verSeen struct {
	v  uint64
	at int64
}

// versionKeep is how long the version of a user who is not cached is kept:
// far longer than any read or write in flight.
const versionKeep = int64(time.Minute / time.Second)

func (rc *redisCache) init(size int) {
	_ = rc.c.init(size, 0) // no packed tier (nothing to map): its users could not follow other instances' writes
	rc.seed = maphash.MakeSeed()
	for i := range rc.vers {
		rc.vers[i].m = make(map[ukey]verSeen)
	}
}

func (rc *redisCache) stripe(k ukey) *verStripe {
	h := maphash.String(rc.seed, k.account)
	h ^= maphash.String(rc.seed, k.login) * 0x9e3779b97f4a7c15
	return &rc.vers[h%numShards]
}

// get is the hot path: the cached answer (hit), or the shard's generation
// to pass to fill.
func (rc *redisCache) get(k ukey) (t *Token, hit bool, gen uint64) {
	return rc.c.shard(k).get(k)
}

// begin returns the epoch, to pass to fill and wrote: call it before the
// Redis command whose answer is to be cached.
func (rc *redisCache) begin() uint64 { return rc.epoch.Load() }

// fill caches t, read from Redis at version ver after begin returned ep,
// unless something newer is known, and returns what Get should answer. "No token" (t nil) is not cached: another instance
// may store the user's first pair at any moment, and a Get on this one
// right after must see it, before the event arrives.
func (rc *redisCache) fill(k ukey, t *Token, ver, ep uint64) *Token {
	vs := rc.stripe(k)
	vs.mu.Lock()
	defer vs.mu.Unlock()
	if rc.epoch.Load() != ep || vs.m[k].v > ver || !rc.live.Load() {
		return t
	}
	vs.see(k, ver)
	if t == nil {
		return nil
	}
	// The versions and the epoch tell whether t is current, better than
	// the shard's generation (which any write of another user in the shard
	// also moves): take the generation now.
	sh := rc.c.shard(k)
	cur, hit, gen := sh.get(k)
	if hit {
		return cur
	}
	return sh.fill(k, t, gen)
}

// wrote records this process's write of k (t nil: a delete) at version
// ver; if a newer version is known, or the epoch moved since ep, the cache
// forgets k instead, so that the next Get reads Redis.
func (rc *redisCache) wrote(k ukey, t *Token, ver, ep uint64) {
	vs := rc.stripe(k)
	vs.mu.Lock()
	defer vs.mu.Unlock()
	sh := rc.c.shard(k)
	if rc.epoch.Load() != ep || vs.m[k].v > ver || !rc.live.Load() {
		sh.forget(k)
		return
	}
	vs.see(k, ver)
	if t == nil {
		sh.forget(k) // "no token" is not cached (see fill)
	} else {
		sh.set(k, t)
	}
}

// failed forgets k after a write that failed with err, unless err says
// the write never reached Redis: then the cache (which may be serving
// through an outage) keeps k.
func (rc *redisCache) failed(k ukey, err error) {
	if !redisNotSent(err) {
		rc.c.shard(k).forget(k)
	}
}

// event applies an invalidation event: k's token is at version ver now.
// It reports whether the event was news (not older than what is known).
func (rc *redisCache) event(k ukey, ver uint64) bool {
	vs := rc.stripe(k)
	vs.mu.Lock()
	defer vs.mu.Unlock()
	if vs.m[k].v >= ver {
		return false
	}
	vs.see(k, ver)
	rc.c.shard(k).forget(k)
	return true
}

// see records ver as k's version. Needs mu.
func (vs *verStripe) see(k ukey, ver uint64) {
	if old, ok := vs.m[k]; ok && old.v > ver {
		return
	}
	vs.m[cloneKey(k)] = verSeen{ver, time.Now().Unix()}
}

// subscribed is called when the events subscription is (re)established:
// events may have been missed, so the cache is dropped, and answers may be
// cached again.
func (rc *redisCache) subscribed() {
	rc.dropAll()
	rc.live.Store(true)
}

// unsubscribed is called when the subscription is lost: what is cached
// stays (it serves through an outage), but nothing more is cached until
// the subscription is back, since its invalidation could not be heard.
func (rc *redisCache) unsubscribed() {
	rc.live.Store(false)
	rc.epoch.Add(1)
}

// dropAll forgets every cached answer and version: events may have been
// missed. Reads and writes begun before it are not cached.
func (rc *redisCache) dropAll() {
	rc.epoch.Add(1)
	for i := range rc.vers {
		vs := &rc.vers[i]
		vs.mu.Lock()
		clear(vs.m)
		vs.mu.Unlock()
	}
	for i := range rc.c.shards {
		sh := &rc.c.shards[i]
		sh.mu.RLock()
		keys := make([]ukey, 0, len(sh.pos)+len(sh.neg))
		for k := range sh.pos {
			keys = append(keys, k)
		}
		for k := range sh.neg {
			keys = append(keys, k)
		}
		sh.mu.RUnlock()
		for _, k := range keys {
			sh.forget(k)
		}
	}
}

// prune forgets the versions of users not cached that were last seen more
// than versionKeep ago, so that versions do not outgrow the cache.
func (rc *redisCache) prune(now time.Time) {
	cut := now.Unix() - versionKeep
	for i := range rc.vers {
		vs := &rc.vers[i]
		vs.mu.Lock()
		for k, s := range vs.m {
			if s.at < cut && !rc.cached(k) {
				delete(vs.m, k)
			}
		}
		vs.mu.Unlock()
	}
}

// cached reports whether the cache holds k's token.
func (rc *redisCache) cached(k ukey) bool {
	sh := rc.c.shard(k)
	sh.mu.RLock()
	_, ok := sh.pos[k]
	sh.mu.RUnlock()
	return ok
}

func (rc *redisCache) touch(k ukey, at int64) { rc.c.shard(k).touch(k, at) }

func (rc *redisCache) lastUsed(k ukey, t *Token) int64 { return rc.c.shard(k).lastUsed(k, t) }

// touchedTokens returns the cached tokens whose last use is resolution or
// more past their stored LastUsed.
func (rc *redisCache) touchedTokens(resolution int64) []touched {
	var todo []touched
	for i := range rc.c.shards {
		sh := &rc.c.shards[i]
		sh.mu.RLock()
		for k, e := range sh.pos {
			if at := e.lastUsed.Load(); at-nanos(e.tok.LastUsed) >= resolution {
				todo = append(todo, touched{k, e.tok, at})
			}
		}
		sh.mu.RUnlock()
	}
	return todo
}
