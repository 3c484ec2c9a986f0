package tokenstore

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/amobridge/amobridge/scripts/loadbench/lbusers"
)

// realisticToken has amoCRM-shaped tokens (lbusers.Tokens): an RS256 JWT
// access token of about 1,080 characters, a refresh token of 720.
func realisticToken(r *rand.Rand, account, login string) *Token {
	now := time.Now()
	kh := make([]byte, 32)
	for i := range kh {
		kh[i] = byte(r.Uint32())
	}
	access, refresh := lbusers.Tokens(r.IntN(1<<30), now)
	return &Token{
		Account: account, Login: login, KeyHash: kh,
		AccessToken: access, RefreshToken: refresh,
		Expiry: now.Add(24 * time.Hour), IssuedAt: now, LastUsed: now,
	}
}

// diskStore is an encrypted store on disk holding n amoCRM-sized users,
// written straight to the database (none cached), with a token cache of one
// user and the given cache_memory; closed at the end of the benchmark.
func diskStore(b *testing.B, n int, cacheMemory int64) *Badger {
	s, err := Open(Options{Path: b.TempDir(), EncryptionKey: make([]byte, 32), CacheSize: 1, CacheMemory: cacheMemory})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = s.Close() })
	r := rand.New(rand.NewPCG(1, 2))
	wb := s.db.NewWriteBatch()
	for i := 0; i < n; i++ {
		if err := wb.Set(pairKey(prefixToken, "acme", userLogin(i)), encodeToken(realisticToken(r, "acme", userLogin(i)))); err != nil {
			b.Fatal(err)
		}
	}
	if err := wb.Flush(); err != nil {
		b.Fatal(err)
	}
	return s
}

func userLogin(i int) string { return "user" + strconv.Itoa(i) + "@example.com" }

// benchStore is an in-memory store holding n users, all cached.
func benchStore(b *testing.B, n int) (*Badger, []string) {
	s := openMem(b)
	r := rand.New(rand.NewPCG(1, 2))
	logins := make([]string, n)
	for i := range logins {
		logins[i] = userLogin(i)
		if err := s.Put(bg, realisticToken(r, "acme", logins[i])); err != nil {
			b.Fatal(err)
		}
	}
	return s, logins
}

func BenchmarkGetHit(b *testing.B) {
	s, logins := benchStore(b, 1000)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := s.Get(bg, "acme", logins[i%len(logins)]); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkGetParallel(b *testing.B) {
	s, logins := benchStore(b, 1000)
	var seed atomic.Uint64
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		i := int(seed.Add(7919))
		for pb.Next() {
			i++
			if _, err := s.Get(bg, "acme", logins[i%len(logins)]); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// BenchmarkGetParallelOneUser: every goroutine asks for the same user (one shard).
func BenchmarkGetParallelOneUser(b *testing.B) {
	s, logins := benchStore(b, 1)
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := s.Get(bg, "acme", logins[0]); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// BenchmarkGetEvicted: random users of an encrypted store on disk whose
// token cache is far smaller than the users (one token per shard), so that
// nearly every Get misses it: what a user evicted from the token cache
// pays on their next request. packed: served by the packed tier (every
// user read once before the timer starts); badger: with the packed tier
// off, read from the database. BENCH_EVICTED_USERS sets the users (20,000).
func BenchmarkGetEvicted(b *testing.B) {
	b.Run("packed", func(b *testing.B) { benchGetEvicted(b, 0) })
	b.Run("badger", func(b *testing.B) { benchGetEvicted(b, -1) })
}

func benchGetEvicted(b *testing.B, cacheMemory int64) {
	users := 20000
	if v, err := strconv.Atoi(os.Getenv("BENCH_EVICTED_USERS")); err == nil && v > 0 {
		users = v
	}
	s := diskStore(b, users, cacheMemory)
	r := rand.New(rand.NewPCG(3, 4))
	logins := make([]string, users)
	for i := range logins {
		logins[i] = userLogin(i)
		if cacheMemory >= 0 {
			if _, err := s.Get(bg, "acme", logins[i]); err != nil {
				b.Fatal(err)
			}
		}
	}
	before := s.cache.stats()
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := s.Get(bg, "acme", logins[r.IntN(users)]); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	st := s.cache.stats()
	b.ReportMetric(float64(st.Evictions-before.Evictions)/float64(b.N), "evictions/op")
	if st.Packed > 0 {
		b.ReportMetric(float64(st.PackedUsed)/float64(st.Packed), "packed-B/user")
	}
}

// BenchmarkGetMissCached: a login without a token, answered from the negative cache.
func BenchmarkGetMissCached(b *testing.B) {
	s := openMem(b)
	s.Get(bg, "acme", "nobody")
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		s.Get(bg, "acme", "nobody")
	}
}

// BenchmarkGetMissUncached: a new random login each time (a hostile
// client): one database read and a negative-cache insert.
func BenchmarkGetMissUncached(b *testing.B) {
	s := openMem(b)
	logins := make([]string, b.N)
	for i := range logins {
		logins[i] = "random-" + strconv.Itoa(i)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		s.Get(bg, "acme", logins[i])
	}
}

// BenchmarkPut is a synced write to disk, one writer.
func BenchmarkPut(b *testing.B) {
	s := openDir(b, b.TempDir(), nil)
	defer s.Close()
	r := rand.New(rand.NewPCG(1, 2))
	tok := realisticToken(r, "acme", "a")
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		tok.Login = userLogin(i % 1000)
		if err := s.Put(bg, tok); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkPutParallel: synced writes from many goroutines (Badger commits
// concurrent writes with one sync).
func BenchmarkPutParallel(b *testing.B) {
	s := openDir(b, b.TempDir(), nil)
	defer s.Close()
	var n atomic.Int64
	b.ReportAllocs()
	b.SetParallelism(8)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		r := rand.New(rand.NewPCG(uint64(n.Add(1)), 2))
		for pb.Next() {
			if err := s.Put(bg, realisticToken(r, "acme", userLogin(int(n.Add(1))%1000))); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

func BenchmarkTouch(b *testing.B) {
	s, logins := benchStore(b, 1000)
	now := time.Now()
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		s.Touch("acme", logins[i%len(logins)], now.Add(time.Duration(i)))
	}
}

func BenchmarkTouchParallel(b *testing.B) {
	s, logins := benchStore(b, 1000)
	var seed atomic.Uint64
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		i := int(seed.Add(7919))
		now := time.Now()
		for pb.Next() {
			i++
			s.Touch("acme", logins[i%len(logins)], now.Add(time.Duration(i)))
		}
	})
}

func BenchmarkHashKey(b *testing.B) {
	s := openMem(b)
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		s.HashKey("0123456789abcdef0123456789abcdef01234567")
	}
}

func BenchmarkOpenInMemory(b *testing.B) {
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		s, err := Open(Options{InMemory: true})
		if err != nil {
			b.Fatal(err)
		}
		s.Close()
	}
}

// TestScale stores 100,000 users and measures opening, warming the cache,
// memory per cached user and Get after warm-up. It only reports numbers
// (no timed assertions). Run with AMOBRIDGE_SCALE=1 (users: AMOBRIDGE_SCALE_USERS).
func TestScale(t *testing.T) {
	if os.Getenv("AMOBRIDGE_SCALE") != "1" {
		t.Skip("set AMOBRIDGE_SCALE=1 to run")
	}
	users := 100000
	if v, err := strconv.Atoi(os.Getenv("AMOBRIDGE_SCALE_USERS")); err == nil && v > 0 {
		users = v
	}
	for _, mode := range []string{"plain", "encrypted"} {
		t.Run(mode, func(t *testing.T) {
			var key []byte
			if mode == "encrypted" {
				key = make([]byte, 32)
			}
			scale(t, users, key)
		})
	}
}

func scale(t *testing.T, users int, key []byte) {
	dir := t.TempDir()
	s := openDir(t, dir, key)
	r := rand.New(rand.NewPCG(3, 4))
	start := time.Now()
	wb := s.db.NewWriteBatch()
	var bytesStored int
	for i := 0; i < users; i++ {
		v := encodeToken(realisticToken(r, "acme", userLogin(i)))
		bytesStored += len(v)
		if err := wb.Set(pairKey(prefixToken, "acme", userLogin(i)), v); err != nil {
			t.Fatal(err)
		}
	}
	if err := wb.Flush(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	t.Logf("%d users written in %v (%.0f bytes per record); on disk: %s", users, time.Since(start).Round(time.Millisecond),
		float64(bytesStored)/float64(users), du(dir))

	runtime.GC()
	var m0, m1 runtime.MemStats
	runtime.ReadMemStats(&m0)
	rss0 := rss()
	start = time.Now()
	s = openDir(t, dir, key)
	defer s.Close()
	t.Logf("open: %v", time.Since(start).Round(time.Microsecond))
	var tables, indexes, blooms int
	for _, ti := range s.db.Tables() {
		tables++
		indexes += ti.IndexSz
		blooms += ti.BloomFilterSize
	}
	t.Logf("%d tables; their indexes %.1f MiB (%.0f B per user), of which Bloom filters %.1f MiB (index cache %d MiB)",
		tables, float64(indexes)/(1<<20), float64(indexes)/float64(users), float64(blooms)/(1<<20), s.db.Opts().IndexCacheSize>>20)

	logins := make([]string, users)
	for i := range logins {
		logins[i] = userLogin(i)
	}
	start = time.Now()
	for _, l := range logins {
		if _, err := s.Get(bg, "acme", l); err != nil {
			t.Fatal(err)
		}
	}
	warm := time.Since(start)
	runtime.GC()
	runtime.ReadMemStats(&m1)
	t.Logf("warm (Get every user once, from disk): %v, %v per user", warm.Round(time.Millisecond), warm/time.Duration(users))
	t.Logf("heap growth: %.1f MiB, %.0f bytes per cached user; RSS growth %.1f MiB (RSS now %.1f MiB)",
		float64(m1.HeapAlloc-m0.HeapAlloc)/(1<<20), float64(m1.HeapAlloc-m0.HeapAlloc)/float64(users),
		float64(rss()-rss0)/(1<<20), float64(rss())/(1<<20))

	time.Sleep(5 * time.Second) // Badger frees idle read buffers every 2s
	runtime.GC()
	runtime.ReadMemStats(&m1)
	t.Logf("after 5s idle: heap growth %.1f MiB, %.0f bytes per cached user",
		float64(m1.HeapAlloc-m0.HeapAlloc)/(1<<20), float64(m1.HeapAlloc-m0.HeapAlloc)/float64(users))

	const gets = 2000000
	start = time.Now()
	for i := 0; i < gets; i++ {
		if _, err := s.Get(bg, "acme", logins[(i*7919)%users]); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("Get after warm-up: %v per call (%d calls over all users)", time.Since(start)/gets, gets)

	start = time.Now()
	n := 0
	if err := s.List(bg, func(*Token) error { n++; return nil }); err != nil || n != users {
		t.Fatalf("List: %d, %v", n, err)
	}
	t.Logf("List of %d tokens: %v", n, time.Since(start).Round(time.Millisecond))

	// Every user used an hour after the stored last use: the worst case
	// of Sweep, which then rewrites every token.
	later := time.Now().Add(2 * time.Hour)
	for _, l := range logins {
		s.Touch("acme", l, later)
	}
	start = time.Now()
	if _, err := s.Sweep(context.Background(), time.Now()); err != nil {
		t.Fatal(err)
	}
	t.Logf("Sweep persisting the last use of all %d users: %v", users, time.Since(start).Round(time.Millisecond))
	start = time.Now()
	if _, err := s.Sweep(context.Background(), time.Now()); err != nil {
		t.Fatal(err)
	}
	t.Logf("Sweep with nothing to persist: %v", time.Since(start).Round(time.Millisecond))
	start = time.Now()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	t.Logf("close: %v; on disk: %s", time.Since(start).Round(time.Millisecond), du(dir))
}

func du(dir string) string {
	out, err := exec.Command("du", "-sh", dir).Output()
	if err != nil {
		return "?"
	}
	return strings.Fields(string(out))[0]
}

// rss is the process's resident set size in bytes (Linux), or 0.
func rss() uint64 {
	b, err := os.ReadFile("/proc/self/statm")
	if err != nil {
		return 0
	}
	var size, res uint64
	if _, err := fmt.Sscan(string(b), &size, &res); err != nil {
		return 0
	}
	return res * uint64(os.Getpagesize())
}

// BenchmarkList: a census of every stored pair, through List (each token
// decoded) and through Summaries (what the keeper reads); reported per user
// (20,000 amoCRM-sized users, encrypted, on disk).
func BenchmarkList(b *testing.B) {
	b.Run("tokens", func(b *testing.B) {
		benchList(b, func(s *Badger, count func()) error {
			return s.List(bg, func(*Token) error { count(); return nil })
		})
	})
	b.Run("summaries", func(b *testing.B) {
		benchList(b, func(s *Badger, count func()) error {
			return s.Summaries(bg, func(Summary) error { count(); return nil })
		})
	})
}

func benchList(b *testing.B, list func(s *Badger, count func()) error) {
	const users = 20000
	s := diskStore(b, users, -1)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		n := 0
		if err := list(s, func() { n++ }); err != nil || n != users {
			b.Fatalf("listed %d of %d: %v", n, users, err)
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*users), "ns/user")
}
