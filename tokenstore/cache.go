package tokenstore

import (
	"hash/maphash"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// The token cache: every token read or written is kept in memory (their
// number is bounded by the users who have a token); "no token" answers are
// kept too, but at most negativeCap of them, so that requests for random
// logins cannot grow memory without bound.
const (
	numShards      = 64
	negativeCap    = 10000
	negPerShard    = negativeCap / numShards
	maxNegativeKey = 1024 // longer (account, login) pairs are not cached as missing
)

// ukey is a cache key. A struct of two strings: looking it up allocates nothing.
type ukey struct{ account, login string }

// entry is a cached token and its latest use, which Touch advances without
// a lock and the store persists lazily.
type entry struct {
	tok      *Token       // guarded by shard.mu; replaced, never modified
	lastUsed atomic.Int64 // Unix nanoseconds; 0 = never
}

// negSlot is one place of a shard's negative-cache clock.
type negSlot struct {
	key  ukey
	used bool
	ref  atomic.Bool // looked up since the clock hand last passed
}

// shard is one part of the cache, with its own locks.
type shard struct {
	mu   sync.RWMutex
	pos  map[ukey]*entry
	neg  map[ukey]int // index into ring
	ring []negSlot    // CLOCK of negative entries, allocated on first use
	hand int
	gen  uint64 // counts writes (set, remove); a miss may fill only if unchanged

	// wmu serialises the writes of this shard's tokens, each Badger write
	// together with the cache update after it, so that the cache ends in
	// the state of the last write.
	wmu sync.Mutex

	_ [64]byte // keep shards' locks on different cache lines
}

// cache is the sharded token cache.
type cache struct {
	seed   maphash.Seed
	shards [numShards]shard
}

func (c *cache) init() {
	c.seed = maphash.MakeSeed()
	for i := range c.shards {
		c.shards[i].pos = make(map[ukey]*entry)
		c.shards[i].neg = make(map[ukey]int)
	}
}

// shard returns k's shard.
func (c *cache) shard(k ukey) *shard {
	h := maphash.String(c.seed, k.account)
	h ^= maphash.String(c.seed, k.login) * 0x9e3779b97f4a7c15
	return &c.shards[h%numShards]
}

// get looks k up. hit is true if the cache knows the answer: the token, or
// nil for "no token". On a miss it returns the shard's generation, to pass
// to fill.
func (sh *shard) get(k ukey) (t *Token, hit bool, gen uint64) {
	sh.mu.RLock()
	if e, ok := sh.pos[k]; ok {
		t = e.tok
		sh.mu.RUnlock()
		return t, true, 0
	}
	if i, ok := sh.neg[k]; ok {
		sh.ring[i].ref.Store(true)
		sh.mu.RUnlock()
		return nil, true, 0
	}
	gen = sh.gen
	sh.mu.RUnlock()
	return nil, false, gen
}

// fill caches t (nil: no token), which was read from the database after get
// returned gen, and returns what Get should answer. If the cache learned
// about k meanwhile, that answer wins; if another write happened in the
// shard meanwhile, t may be stale and is returned but not cached.
func (sh *shard) fill(k ukey, t *Token, gen uint64) *Token {
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if e, ok := sh.pos[k]; ok {
		return e.tok
	}
	if _, ok := sh.neg[k]; ok {
		return nil
	}
	if sh.gen != gen {
		return t
	}
	k = cloneKey(k)
	if t != nil {
		sh.pos[k] = newEntry(t)
	} else {
		sh.addNegative(k)
	}
	return t
}

// set caches t after a successful write of it.
func (sh *shard) set(k ukey, t *Token) {
	sh.mu.Lock()
	defer sh.mu.Unlock()
	sh.gen++
	sh.removeNegative(k)
	if e, ok := sh.pos[k]; ok {
		e.tok = t
		advance(&e.lastUsed, nanos(t.LastUsed))
		return
	}
	sh.pos[cloneKey(k)] = newEntry(t)
}

// remove records that k has no token, after a successful delete.
func (sh *shard) remove(k ukey) {
	sh.mu.Lock()
	defer sh.mu.Unlock()
	sh.gen++
	delete(sh.pos, k)
	if _, ok := sh.neg[k]; !ok {
		sh.addNegative(cloneKey(k))
	}
}

// forget drops whatever the cache knows of k, so that the next Get reads
// the database: used when a write failed and its outcome is unknown.
func (sh *shard) forget(k ukey) {
	sh.mu.Lock()
	defer sh.mu.Unlock()
	sh.gen++
	delete(sh.pos, k)
	sh.removeNegative(k)
}

// touch advances k's last use to at (Unix nanoseconds), if k is cached.
func (sh *shard) touch(k ukey, at int64) {
	sh.mu.RLock()
	e := sh.pos[k]
	sh.mu.RUnlock()
	if e != nil {
		advance(&e.lastUsed, at)
	}
}

// lastUsed returns k's cached last use if the cached token is the pair t.
func (sh *shard) lastUsed(k ukey, t *Token) int64 {
	sh.mu.RLock()
	defer sh.mu.RUnlock()
	if e, ok := sh.pos[k]; ok && samePair(e.tok, t) {
		return e.lastUsed.Load()
	}
	return 0
}

// addNegative caches "no token" for k, evicting with a CLOCK (second
// chance) policy when the shard's share of negativeCap is full. Needs mu.
func (sh *shard) addNegative(k ukey) {
	if len(k.account)+len(k.login) > maxNegativeKey {
		return
	}
	if sh.ring == nil {
		sh.ring = make([]negSlot, negPerShard)
	}
	for {
		i := sh.hand
		sh.hand = (sh.hand + 1) % len(sh.ring)
		s := &sh.ring[i]
		if s.used && s.ref.Swap(false) {
			continue // used since the last pass: a second chance
		}
		if s.used {
			delete(sh.neg, s.key)
		}
		s.key, s.used = k, true
		sh.neg[k] = i
		return
	}
}

// removeNegative drops k's negative entry, if any. Needs mu.
func (sh *shard) removeNegative(k ukey) {
	if i, ok := sh.neg[k]; ok {
		delete(sh.neg, k)
		sh.ring[i].key, sh.ring[i].used = ukey{}, false
		sh.ring[i].ref.Store(false)
	}
}

func newEntry(t *Token) *entry {
	e := &entry{tok: t}
	e.lastUsed.Store(nanos(t.LastUsed))
	return e
}

// cloneKey copies k's strings, so that the cache does not keep alive the
// (possibly large) buffers a caller's strings point into.
func cloneKey(k ukey) ukey {
	return ukey{strings.Clone(k.account), strings.Clone(k.login)}
}

// advance sets v to at if at is later.
func advance(v *atomic.Int64, at int64) {
	for {
		cur := v.Load()
		if at <= cur || v.CompareAndSwap(cur, at) {
			return
		}
	}
}

// nanos is t in Unix nanoseconds, 0 for the zero time.
func nanos(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

// samePair reports whether a and b hold the same OAuth pair.
func samePair(a, b *Token) bool {
	return a.AccessToken == b.AccessToken && a.RefreshToken == b.RefreshToken &&
		a.IssuedAt.Equal(b.IssuedAt)
}
