package tokenstore

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"
)

// negatives counts the cached "no token" entries.
func negatives(s *Badger) int {
	n := 0
	for i := range s.cache.shards {
		sh := &s.cache.shards[i]
		sh.mu.RLock()
		n += len(sh.neg)
		sh.mu.RUnlock()
	}
	return n
}

// TestNegativeCache: a miss is cached (the database is not read again), a
// Put replaces it, a Delete caches the absence.
func TestNegativeCache(t *testing.T) {
	s := openMem(t)
	if _, err := s.Get(bg, "acme", "ghost"); !errors.Is(err, ErrNotFound) {
		t.Fatal(err)
	}
	writeRaw(t, s, testToken("acme", "ghost")) // behind the cache's back
	if _, err := s.Get(bg, "acme", "ghost"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("a cached miss read the database again: %v", err)
	}
	if err := s.Put(bg, testToken("acme", "ghost")); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Get(bg, "acme", "ghost"); err != nil {
		t.Fatalf("Get after Put over a cached miss: %v", err)
	}
	if err := s.Delete(bg, "acme", "ghost"); err != nil {
		t.Fatal(err)
	}
	writeRaw(t, s, testToken("acme", "ghost"))
	if _, err := s.Get(bg, "acme", "ghost"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Delete did not cache the absence: %v", err)
	}
}

// TestNegativeCacheBound: misses for many random logins keep at most
// negativeCap entries, and real tokens stay cached meanwhile.
func TestNegativeCacheBound(t *testing.T) {
	s := openMem(t)
	if err := s.Put(bg, testToken("acme", "real")); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 3*negativeCap; i++ {
		if _, err := s.Get(bg, "acme", fmt.Sprintf("random-%d-%x", i, rand.Uint64())); !errors.Is(err, ErrNotFound) {
			t.Fatal(err)
		}
	}
	if n := negatives(s); n > negativeCap || n < negativeCap/2 {
		t.Fatalf("%d negative entries after %d misses, want at most %d (and most of them)", n, 3*negativeCap, negativeCap)
	}
	for i := range s.cache.shards {
		sh := &s.cache.shards[i]
		if len(sh.neg) > len(sh.ring) {
			t.Fatalf("shard %d: %d entries for %d slots", i, len(sh.neg), len(sh.ring))
		}
		for k, j := range sh.neg {
			if sh.ring[j].key != k || !sh.ring[j].used {
				t.Fatalf("shard %d: map and clock disagree on %q", i, k.login)
			}
		}
	}
	writeRaw(t, s, testToken("acme", "real-changed-behind"))
	if _, err := s.Get(bg, "acme", "real"); err != nil {
		t.Fatalf("the real token left the cache: %v", err)
	}
	// Long keys are not cached as missing.
	long := string(make([]byte, maxNegativeKey+1))
	before := negatives(s)
	s.Get(bg, "acme", long)
	s.Get(bg, "acme", long)
	if negatives(s) > before {
		t.Fatal("a long missing key was cached")
	}
}

// TestNegativeSecondChance: a missing key that keeps being asked for
// survives two full turns of its shard's clock of other misses, where a
// FIFO would have evicted it after one.
func TestNegativeSecondChance(t *testing.T) {
	s := openMem(t)
	hot := ukey{"acme", "hot"}
	sh := s.cache.shard(hot)
	s.Get(bg, hot.account, hot.login)
	inShard := 0
	for i := 0; inShard < 2*negPerShard; i++ {
		k := ukey{"acme", fmt.Sprint("cold-", i)}
		if s.cache.shard(k) != sh {
			continue
		}
		inShard++
		s.Get(bg, k.account, k.login)
		if !negCached(sh, hot) {
			t.Fatalf("hot missing key evicted after %d other misses in its shard", inShard)
		}
		s.Get(bg, hot.account, hot.login) // a hit sets the reference bit
	}
}

func negCached(sh *shard, k ukey) bool {
	sh.mu.RLock()
	defer sh.mu.RUnlock()
	_, ok := sh.neg[k]
	return ok
}

// TestGetZeroAllocs: a cache hit, positive or negative, allocates nothing.
func TestGetZeroAllocs(t *testing.T) {
	s := openMem(t)
	if err := s.Put(bg, testToken("acme", "a")); err != nil {
		t.Fatal(err)
	}
	s.Get(bg, "acme", "missing")
	if n := testing.AllocsPerRun(1000, func() { s.Get(bg, "acme", "a") }); n != 0 {
		t.Errorf("Get hit: %v allocs", n)
	}
	if n := testing.AllocsPerRun(1000, func() { s.Get(bg, "acme", "missing") }); n != 0 {
		t.Errorf("Get cached miss: %v allocs", n)
	}
	now := time.Now()
	if n := testing.AllocsPerRun(1000, func() { s.Touch("acme", "a", now) }); n != 0 {
		t.Errorf("Touch: %v allocs", n)
	}
}

// TestConcurrentCoherence runs Get, Put, Delete, Touch, List, Sweep,
// sessions and pending exchanges from many goroutines on a few users, with
// the cache randomly forgetting users so that misses race with writes; then
// checks that the cache holds exactly what the database holds.
func TestConcurrentCoherence(t *testing.T) {
	for _, mode := range []string{"memory", "disk", "tiny-cache"} {
		t.Run(mode, func(t *testing.T) {
			var s *Badger
			switch mode {
			case "disk":
				s = openDir(t, t.TempDir(), nil)
				defer s.Close()
			case "tiny-cache": // one token per shard: evictions race with everything
				s = openMemCache(t, 1)
			default:
				s = openMem(t)
			}
			logins := []string{"a", "b", "c", "d", "e\x00f", "g"}
			workers, ops := 16, 300
			if mode == "disk" {
				ops = 100
			}
			var wg sync.WaitGroup
			for w := 0; w < workers; w++ {
				wg.Add(1)
				go func(w int) {
					defer wg.Done()
					r := rand.New(rand.NewPCG(uint64(w), 1))
					for i := 0; i < ops; i++ {
						login := logins[r.IntN(len(logins))]
						k := ukey{"acme", login}
						switch op := r.IntN(100); {
						case op < 50:
							tok, err := s.Get(bg, "acme", login)
							if err == nil && (tok.Login != login || tok.Account != "acme") {
								t.Errorf("Get(%q) returned %q's token", login, tok.Login)
							} else if err != nil && !errors.Is(err, ErrNotFound) {
								t.Error(err)
							}
						case op < 65:
							tok := testToken("acme", login)
							tok.AccessToken = fmt.Sprintf("access-%d-%d", w, i)
							if err := s.Put(bg, tok); err != nil {
								t.Error(err)
							}
						case op < 70:
							if err := s.Delete(bg, "acme", login); err != nil {
								t.Error(err)
							}
						case op < 85:
							s.Touch("acme", login, time.Now())
						case op < 90:
							s.cache.shard(k).forget(k)
						case op < 92:
							if _, err := s.Sweep(bg, time.Now()); err != nil {
								t.Error(err)
							}
						case op < 94:
							if err := s.List(bg, func(*Token) error { return nil }); err != nil {
								t.Error(err)
							}
						default:
							state := fmt.Sprint("st-", r.IntN(4))
							if r.IntN(2) == 0 {
								p := Pending{State: state, Account: "acme", Login: login, Expires: time.Now().Add(time.Minute)}
								if err := s.PutPending(bg, p); err != nil {
									t.Error(err)
								}
							} else if _, err := s.TakePending(bg, state); err != nil && !errors.Is(err, ErrNotFound) {
								t.Error(err)
							}
						}
					}
				}(w)
			}
			wg.Wait()
			checkClock(t, s)
			if _, err := s.Sweep(bg, time.Now()); err != nil {
				t.Fatal(err)
			}
			for _, login := range logins {
				cached, err := s.Get(bg, "acme", login)
				if err != nil && !errors.Is(err, ErrNotFound) {
					t.Fatal(err)
				}
				stored := readRaw(t, s, "acme", login)
				switch {
				case (cached == nil) != (stored == nil):
					t.Errorf("%q: cache has %v, database has %v", login, cached != nil, stored != nil)
				case cached != nil && !sameToken(cached, stored):
					t.Errorf("%q: cache %+v, database %+v", login, cached, stored)
				}
			}
		})
	}
}

// TestStaleFillNotCached: a miss that read the database before a write to
// its shard must not cache what it read, even if the write's own cache
// entry is gone by then (an evicted "deleted" entry, say): otherwise a
// deleted or replaced token would come back.
func TestStaleFillNotCached(t *testing.T) {
	s := openMem(t)
	k := ukey{"acme", "a"}
	sh := s.cache.shard(k)
	old := testToken("acme", "a")
	_, hit, gen := sh.get(k)
	if hit {
		t.Fatal("empty cache hit")
	}
	// Meanwhile: the token is deleted, and the cached absence evicted.
	if err := s.Delete(bg, "acme", "a"); err != nil {
		t.Fatal(err)
	}
	sh.forget(k)
	if got := sh.fill(k, old, gen); got == nil || !sameToken(got, old) {
		t.Fatalf("fill returned %v, want what it read", got)
	}
	if _, hit, _ := sh.get(k); hit {
		t.Fatal("a stale read was cached after a write")
	}
	// Without a write in between, the read is cached.
	_, _, gen = sh.get(k)
	sh.fill(k, nil, gen)
	if tok, hit, _ := sh.get(k); !hit || tok != nil {
		t.Fatal("a fresh miss was not cached")
	}
}

// openMemCache opens an in-memory store whose cache holds size tokens
// (rounded up to one per shard).
func openMemCache(t testing.TB, size int) *Badger {
	t.Helper()
	s, err := Open(Options{InMemory: true, CacheSize: size})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// checkClock checks every shard's invariants: the map and the clock hold
// the same entries, each at its slot, under its token's names, within the
// bound.
func checkClock(t *testing.T, s *Badger) {
	t.Helper()
	for i := range s.cache.shards {
		sh := &s.cache.shards[i]
		sh.mu.RLock()
		if len(sh.pos) != len(sh.clock) || len(sh.clock) > sh.max {
			t.Errorf("shard %d: %d entries, %d in the clock, bound %d", i, len(sh.pos), len(sh.clock), sh.max)
		}
		for j, e := range sh.clock {
			if int(e.slot) != j {
				t.Errorf("shard %d: entry at %d thinks it is at %d", i, j, e.slot)
			}
			if sh.pos[ukey{e.tok.Account, e.tok.Login}] != e {
				t.Errorf("shard %d: clock entry %q not in the map", i, e.tok.Login)
			}
		}
		sh.mu.RUnlock()
	}
}

// TestCacheBound: the cache never holds more than CacheSize tokens; an
// evicted user is read back from the database with its current token, and
// the cache ends coherent with Put and Delete of evicted users.
func TestCacheBound(t *testing.T) {
	const size, users = 2 * numShards, 2000
	s := openMemCache(t, size)
	for i := 0; i < users; i++ {
		if err := s.Put(bg, testToken("acme", userLogin(i))); err != nil {
			t.Fatal(err)
		}
	}
	for round := 0; round < 2; round++ {
		for i := 0; i < users; i++ {
			tok, err := s.Get(bg, "acme", userLogin(i))
			if err != nil || tok.Login != userLogin(i) {
				t.Fatalf("user %d: %v, %v", i, tok, err)
			}
		}
	}
	st := s.cache.stats()
	cached, evicted := st.Cached, st.Evictions
	if cached > size || cached < size/2 {
		t.Fatalf("%d tokens cached, bound %d", cached, size)
	}
	if evicted < users {
		t.Fatalf("%d evictions for %d users through %d places", evicted, users, size)
	}
	checkClock(t, s)
	// Writes to evicted and to cached users.
	for i := 0; i < users; i += 7 {
		tok := testToken("acme", userLogin(i))
		tok.AccessToken = "new-" + tok.Login
		if err := s.Put(bg, tok); err != nil {
			t.Fatal(err)
		}
	}
	for i := 3; i < users; i += 7 {
		if err := s.Delete(bg, "acme", userLogin(i)); err != nil {
			t.Fatal(err)
		}
	}
	checkClock(t, s)
	for i := 0; i < users; i++ {
		tok, err := s.Get(bg, "acme", userLogin(i))
		switch {
		case i%7 == 0:
			if err != nil || tok.AccessToken != "new-"+userLogin(i) {
				t.Fatalf("user %d after Put: %v, %v", i, tok, err)
			}
		case i%7 == 3:
			if !errors.Is(err, ErrNotFound) {
				t.Fatalf("user %d after Delete: %v, %v", i, tok, err)
			}
		default:
			if err != nil || tok.AccessToken != testToken("acme", userLogin(i)).AccessToken {
				t.Fatalf("user %d: %v, %v", i, tok, err)
			}
		}
	}
	checkClock(t, s)
}

// TestCacheSecondChance: a user asked for between every other user's first
// request stays cached while a stream of new users passes through its shard.
func TestCacheSecondChance(t *testing.T) {
	s := openMemCache(t, 4*numShards)
	hot := ukey{"acme", "hot"}
	if err := s.Put(bg, testToken(hot.account, hot.login)); err != nil {
		t.Fatal(err)
	}
	sh := s.cache.shard(hot)
	inShard := 0
	for i := 0; inShard < 10*sh.max; i++ {
		k := ukey{"acme", userLogin(i)}
		if s.cache.shard(k) != sh {
			continue
		}
		inShard++
		if err := s.Put(bg, testToken(k.account, k.login)); err != nil {
			t.Fatal(err)
		}
		if _, hit, _ := sh.get(hot); !hit { // a hit sets the reference bit
			t.Fatalf("hot user evicted after %d other users in its shard", inShard)
		}
	}
	checkClock(t, s)
}

// TestCacheSizeOption: CacheSize 0 is the default; a negative one is refused.
func TestCacheSizeOption(t *testing.T) {
	s := openMem(t)
	if got := s.cache.shards[0].max * numShards; got < DefaultCacheSize || got >= DefaultCacheSize+numShards {
		t.Fatalf("default bound %d, want %d", got, DefaultCacheSize)
	}
	if _, err := Open(Options{InMemory: true, CacheSize: -1}); err == nil {
		t.Fatal("negative CacheSize accepted")
	}
}

// TestPutPacksToken: the token Put caches holds its strings in one
// allocation and equals what was put; the caller's token is not changed.
func TestPutPacksToken(t *testing.T) {
	s := openMem(t)
	tok := testToken("acme", "a")
	want := *tok
	if err := s.Put(bg, tok); err != nil {
		t.Fatal(err)
	}
	got, err := s.Get(bg, "acme", "a")
	if err != nil || !sameToken(got, &want) || !sameToken(tok, &want) {
		t.Fatalf("got %+v (%v), want %+v", got, err, want)
	}
	if got == tok {
		t.Fatal("the cache holds the caller's token")
	}
}
