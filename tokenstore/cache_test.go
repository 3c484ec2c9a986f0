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
	for _, mode := range []string{"memory", "disk"} {
		t.Run(mode, func(t *testing.T) {
			var s *Badger
			if mode == "disk" {
				s = openDir(t, t.TempDir(), nil)
				defer s.Close()
			} else {
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
	if got := sh.fill(k, old, gen); got != old {
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
