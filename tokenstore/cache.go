package tokenstore

import (
	"hash/maphash"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// The token cache holds the tokens of the users most recently asked for,
// at most Options.CacheSize of them (DefaultCacheSize), ready for the hot
// path: a cached user's Get is a map lookup that allocates nothing. Past
// the bound, a CLOCK (second chance) hand evicts users not asked for since
// it last passed them; an evicted user's next Get finds them in the packed
// tier behind (ring.go: every user read or written since the start, a few
// microseconds to unpack) or else reads Badger once (tens of
// microseconds), and caches the token again. "No token" answers are kept
// too, but at most negativeCap of them, so that requests for random logins
// cannot grow memory without bound.
//
// A cached token costs about 1.45 KiB of heap with amoCRM-sized tokens (a
// 1,083-byte access token; the refresh token is not cached, see
// packToken): the token's strings in one allocation, its Token, key hash,
// entry, map slot and clock slot. See docs/performance.md.
const (
	numShards      = 64
	negativeCap    = 10000
	negPerShard    = negativeCap / numShards
	maxNegativeKey = 1024 // longer (account, login) pairs are not cached as missing
)

// DefaultCacheSize is how many users' tokens the cache holds ready when
// Options.CacheSize is 0. It is derived from issue 12's budget, 1 KiB per
// user for a million users over the empty process: the packed tier holds
// all of them in ~0.5 KiB each, Badger needs ~75 MB of heap and the index
// of the packed tier ~40 MB; Go's collector lets the heap grow to twice
// what is live, so ~45 MB of live token cache (30,000 users at 1.45 KiB)
// keeps the rest near 0.4 KiB per user. Measured: docs/performance.md.
const DefaultCacheSize = 30000

// ukey is a cache key. A struct of two strings: looking it up allocates nothing.
type ukey struct{ account, login string }

// entry is a cached token and its latest use, which Touch advances without
// a lock and the store persists lazily. The map key of an entry is always
// {tok.Account, tok.Login}: the key shares the token's memory.
type entry struct {
	tok      *Token       // guarded by shard.mu; replaced, never modified
	lastUsed atomic.Int64 // Unix nanoseconds; 0 = never
	ref      atomic.Bool  // asked for since the clock hand last passed
	slot     int32        // index in shard.clock; guarded by shard.mu
}

// negSlot is one place of a shard's negative-cache clock.
type negSlot struct {
	key  ukey
	used bool
	ref  atomic.Bool // looked up since the clock hand last passed
}

// shard is one part of the cache, with its own locks.
type shard struct {
	mu     sync.RWMutex
	pos    map[ukey]*entry
	clock  []*entry     // the cached entries, in the order the CLOCK hand visits them
	phand  int          // the positive clock's hand
	max    int          // at most this many entries in pos
	neg    map[ukey]int // index into ring
	ring   []negSlot    // CLOCK of negative entries, allocated on first use
	hand   int
	packed ring   // the packed tier's part of this shard (ring.go)
	gen    uint64 // counts writes (set, remove); a miss may fill only if unchanged

	// wmu serialises the writes of this shard's tokens, each Badger write
	// together with the cache update after it, so that the cache ends in
	// the state of the last write.
	wmu sync.Mutex

	evictions atomic.Uint64

	_ [64]byte // keep shards' locks on different cache lines
}

// cache is the sharded token cache.
type cache struct {
	tier   tier
	shards [numShards]shard
}

// init prepares the cache for at most size tokens (rounded up to a
// multiple of numShards); 0 (or less) means DefaultCacheSize. memory is
// the packed tier's size in bytes: 0 means none (the tier is off). If the
// tier's memory cannot be mapped, the cache works without it and init
// returns why.
func (c *cache) init(size int, memory int64) (err error) {
	if size <= 0 {
		size = DefaultCacheSize
	}
	c.tier.seed = maphash.MakeSeed()
	per := max(1, (size+numShards-1)/numShards)
	part := memory / numShards / pageBytes * pageBytes
	if part >= minRing {
		var a []byte
		var release func() error
		if a, release, err = mapArena(int(part) * numShards); err == nil {
			c.tier.arena, c.tier.release = a, release
		}
	}
	for i := range c.shards {
		sh := &c.shards[i]
		sh.pos = make(map[ukey]*entry)
		sh.neg = make(map[ukey]int)
		sh.max = per
		sh.packed.t = &c.tier
		if c.tier.arena != nil {
			sh.packed.buf = c.tier.arena[int(part)*i : int(part)*(i+1) : int(part)*(i+1)]
			sh.packed.idx = make(map[uint64]uint64)
		}
	}
	return err
}

// close gives the packed tier's memory back. No method may be called after.
func (c *cache) close() error {
	if c.tier.arena == nil {
		return nil
	}
	for i := range c.shards {
		sh := &c.shards[i]
		sh.mu.Lock()
		sh.packed.buf, sh.packed.idx = nil, nil
		sh.mu.Unlock()
	}
	c.tier.arena = nil
	return c.tier.release()
}

// shard returns k's shard.
func (c *cache) shard(k ukey) *shard {
	return &c.shards[c.tier.hash(k)%numShards]
}

// CacheStats are the occupancy of a store's in-memory caches, for metrics
// and for sizing cache_size and cache_memory.
type CacheStats struct {
	Cached     int    // users whose tokens the token cache holds (at most cache_size)
	Evictions  uint64 // users the token cache evicted to make room, since the start
	Packed     int    // users in the packed cache
	PackedUsed int64  // bytes of the packed cache written so far (at most PackedSize)
	PackedSize int64  // the packed cache's size (cache_memory); 0 when it is off
	Dropped    uint64 // users the packed cache let go, overwritten by newer records
}

// stats returns the cache's counters.
func (c *cache) stats() (st CacheStats) {
	for i := range c.shards {
		sh := &c.shards[i]
		sh.mu.RLock()
		st.Cached += len(sh.pos)
		st.Packed += len(sh.packed.idx)
		st.PackedUsed += int64(min(sh.packed.head, uint64(len(sh.packed.buf))))
		st.PackedSize += int64(len(sh.packed.buf))
		sh.mu.RUnlock()
		st.Evictions += sh.evictions.Load()
	}
	st.Dropped = c.tier.overwrote.Load()
	return st
}

// get looks k up. hit is true if the cache knows the answer: the token, or
// nil for "no token". On a miss it returns the shard's generation, to pass
// to fill.
func (sh *shard) get(k ukey) (t *Token, hit bool, gen uint64) {
	sh.mu.RLock()
	if e, ok := sh.pos[k]; ok {
		t = e.tok
		if !e.ref.Load() {
			e.ref.Store(true)
		}
		sh.mu.RUnlock()
		return t, true, 0
	}
	if i, ok := sh.neg[k]; ok {
		sh.ring[i].ref.Store(true)
		sh.mu.RUnlock()
		return nil, true, 0
	}
	gen = sh.gen
	if rec := sh.packed.find(sh.packed.t.hash(k)); rec != nil {
		t = sh.packed.t.unpack(rec, k)
	}
	sh.mu.RUnlock()
	if t != nil {
		return sh.promote(k, t, gen), true, 0
	}
	return nil, false, gen
}

// promote caches t, k's token as the packed tier held it when the shard's
// generation was gen, as a ready *Token, and returns what Get should
// answer.
func (sh *shard) promote(k ukey, t *Token, gen uint64) *Token {
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if e, ok := sh.pos[k]; ok {
		return e.tok
	}
	if sh.gen == gen {
		sh.insert(t)
	}
	return t
}

// fill caches t (nil: no token), which was read from the database after get
// returned gen, and returns what Get should answer. If the cache learned
// about k meanwhile, that answer wins; if another write happened in the
// shard meanwhile, t may be stale and is returned but not cached.
func (sh *shard) fill(k ukey, t *Token, gen uint64) *Token {
	if t != nil {
		t = packToken(t) // the record's string also holds the key hash, times, lengths
	}
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
	if t != nil {
		if ownKey(k, t) {
			sh.insert(t)
			sh.keep(t)
		}
	} else {
		sh.addNegative(cloneKey(k))
	}
	return t
}

// set caches t, stored under k, after a successful write of it.
func (sh *shard) set(k ukey, t *Token) {
	t = packToken(t)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	sh.gen++
	sh.removeNegative(k)
	if !ownKey(k, t) { // not expected: Put stores a token under its names
		sh.drop(k)
		sh.packed.del(sh.packed.t.hash(k))
		return
	}
	sh.keep(t)
	if e, ok := sh.pos[k]; ok {
		// Re-key the entry with the new token's strings, so that the
		// map key does not keep the old token's memory alive.
		delete(sh.pos, k)
		e.tok = t
		advance(&e.lastUsed, nanos(t.LastUsed))
		sh.pos[ukey{t.Account, t.Login}] = e
		return
	}
	sh.insert(t)
}

// remove records that k has no token, after a successful delete.
func (sh *shard) remove(k ukey) {
	sh.mu.Lock()
	defer sh.mu.Unlock()
	sh.gen++
	sh.drop(k)
	sh.packed.del(sh.packed.t.hash(k))
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
	sh.drop(k)
	sh.packed.del(sh.packed.t.hash(k))
	sh.removeNegative(k)
}

// keep writes t, cached under its own names, to the packed tier. Needs mu.
func (sh *shard) keep(t *Token) {
	if sh.packed.buf == nil {
		return
	}
	h := sh.packed.t.hash(ukey{t.Account, t.Login})
	var b [1536]byte
	if rec, ok := sh.packed.t.pack(b[:0], h, t); ok {
		sh.packed.write(h, rec)
	} else {
		sh.packed.del(h)
	}
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

// insert caches t (not cached yet) under its own names, evicting another
// user's token if the shard is full. Needs mu.
func (sh *shard) insert(t *Token) {
	e := newEntry(t)
	if len(sh.clock) < sh.max {
		e.slot = int32(len(sh.clock))
		sh.clock = append(sh.clock, e)
	} else {
		for {
			i := sh.phand
			sh.phand = (sh.phand + 1) % len(sh.clock)
			v := sh.clock[i]
			if v.ref.Load() {
				v.ref.Store(false) // asked for since the last pass: a second chance
				continue
			}
			// v's last use, if newer than the stored one, is not persisted:
			// it is approximate anyway (see lastUsedResolution).
			delete(sh.pos, ukey{v.tok.Account, v.tok.Login})
			sh.evictions.Add(1)
			e.slot = int32(i)
			sh.clock[i] = e
			break
		}
	}
	sh.pos[ukey{t.Account, t.Login}] = e
}

// drop removes k's token from the cache, if cached. Needs mu.
func (sh *shard) drop(k ukey) {
	e, ok := sh.pos[k]
	if !ok {
		return
	}
	delete(sh.pos, k)
	last := len(sh.clock) - 1
	if int(e.slot) != last {
		m := sh.clock[last]
		m.slot = e.slot
		sh.clock[e.slot] = m
	}
	sh.clock[last] = nil
	sh.clock = sh.clock[:last]
	if sh.phand >= len(sh.clock) {
		sh.phand = 0
	}
}

// ownKey reports whether t is stored under its own names, k: only such a
// token is cached, under a key made of its own strings (eviction finds the
// key from the token).
func ownKey(k ukey, t *Token) bool {
	return t.Account == k.account && t.Login == k.login
}

// packToken returns t as the cache keeps it: its strings in one
// allocation of their exact size (a token copied by Put has one per
// string; one decodeToken returns shares the record's string, which also
// holds the key hash, the times and the lengths), and without its refresh
// token, which only a refresh needs and reads from the store (Update):
// Refreshable still tells whether the pair has one. t is not changed.
func packToken(t *Token) *Token {
	const bearer = "Bearer "
	n := len(t.Account) + len(t.Login) + len(bearer) + len(t.AccessToken)
	var b strings.Builder
	b.Grow(n)
	b.WriteString(t.Account)
	b.WriteString(t.Login)
	b.WriteString(bearer)
	b.WriteString(t.AccessToken)
	s := b.String()
	p := *t
	p.Account, s = s[:len(t.Account)], s[len(t.Account):]
	p.Login, s = s[:len(t.Login)], s[len(t.Login):]
	p.auth = s
	p.AccessToken = p.auth[len(bearer):]
	p.elided, p.RefreshToken = t.Refreshable(), ""
	return &p
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

// samePair reports whether a and b hold the same OAuth pair. A cached
// token does not carry its refresh token (packToken): the refresh tokens
// are compared when both carry one. The access token and the time the
// pair was obtained tell pairs apart anyway: every grant gives both anew.
func samePair(a, b *Token) bool {
	if a.AccessToken != b.AccessToken || !a.IssuedAt.Equal(b.IssuedAt) || a.Refreshable() != b.Refreshable() {
		return false
	}
	return a.RefreshToken == "" || b.RefreshToken == "" || a.RefreshToken == b.RefreshToken
}
