package tokenstore

import (
	"context"
	"fmt"
	"hash/maphash"
	"math/rand/v2"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/amobridge/amobridge/scripts/loadbench/lbusers"
)

// ringTokens are tokens of every shape the packed tier must give back
// exactly: amoCRM's JWT, opaque tokens, JWT-looking tokens whose base64
// does not encode back the same, odd names and times.
func ringTokens() []*Token {
	now := time.Date(2026, 11, 30, 12, 0, 0, 123456789, time.UTC)
	access, refresh := lbusers.Tokens(7, now)
	seg := strings.Split(access, ".")
	base := func(login, at string) *Token {
		return &Token{Account: "acme", Login: login, KeyHash: []byte(strings.Repeat("k", 32)),
			AccessToken: at, RefreshToken: "r-" + login, Expiry: now.Add(time.Hour), IssuedAt: now, LastUsed: now}
	}
	ts := []*Token{
		base("jwt@example.com", access),
		base("opaque@example.com", "0123456789abcdef"),
		base("empty@example.com", ""),
		base("dots@example.com", "a.b.c.d"),
		base("twodots@example.com", ".."),
		base("padded@example.com", seg[0]+"==."+seg[1]+"."+seg[2]),
		base("trailing-bits@example.com", "eyJ."+seg[1]+"."+seg[2]), // "eyJ" leaves non-zero bits
		base("newline@example.com", seg[0]+"\n."+seg[1]+"."+seg[2]),
		base("std-alphabet@example.com", "ab+/."+seg[1]+"."+seg[2]),
		base("not-base64@example.com", "a!b.c.d"),
		base("long@example.com", strings.Repeat("x", 70000)),
		base("long-jwt@example.com", seg[0]+"."+strings.Repeat("A", 90000)+"."+seg[2]),
		base("\x00nul\xffbytes", access),
	}
	dead := base("dead@example.com", access)
	dead.RefreshToken = ""
	zero := base("zero-times@example.com", access)
	zero.Expiry, zero.IssuedAt, zero.LastUsed, zero.KeyHash = time.Time{}, time.Time{}, time.Time{}, nil
	old := base("old@example.com", "abc")
	old.Expiry = time.Date(1, 2, 3, 4, 5, 6, 7, time.UTC)
	odd := base(strings.Repeat("l", 3000), refresh)
	odd.Account = ""
	return append(ts, dead, zero, old, odd)
}

// TestRingRecordRoundTrip: what the packed tier gives back is the token as
// the cache keeps it (packToken), to the byte, and ready for the hot path.
func TestRingRecordRoundTrip(t *testing.T) {
	var tr tier
	tr.seed = maphash.MakeSeed()
	for _, tok := range ringTokens() {
		k := ukey{tok.Account, tok.Login}
		want := packToken(tok)
		rec, ok := tr.pack(nil, tr.hash(k), want)
		if !ok {
			t.Fatalf("%q: not packed", tok.Login)
		}
		got := tr.unpack(rec, k)
		if got == nil || !sameToken(got, want) || got.Refreshable() != tok.Refreshable() || got.RefreshToken != "" {
			t.Fatalf("%q: unpacked %+v\nwant %+v", tok.Login, got, want)
		}
		if got.Authorization() != "Bearer "+tok.AccessToken {
			t.Fatalf("%q: Authorization %q", tok.Login, got.Authorization())
		}
		if tok.AccessToken != "" && testing.AllocsPerRun(1, func() { _ = got.Authorization() }) != 0 {
			t.Fatalf("%q: Authorization allocates", tok.Login)
		}
		if other := tr.unpack(rec, ukey{tok.Account, tok.Login + "x"}); other != nil {
			t.Fatalf("%q: record read as another user's", tok.Login)
		}
		for n := range len(rec) { // a cut record is refused, never misread
			if c := tr.unpack(rec[:n], k); c != nil {
				t.Fatalf("%q: record cut at %d of %d read as %+v", tok.Login, n, len(rec), c)
			}
		}
	}
	if tr.dict.Load() == nil {
		t.Fatal("no dictionary after amoCRM's JWT")
	}
}

// TestRingRecordSize: amoCRM-sized tokens pack to about a quarter of their
// characters' size once the dictionary is set.
func TestRingRecordSize(t *testing.T) {
	var tr tier
	tr.seed = maphash.MakeSeed()
	now := time.Now()
	var total int
	const n = 200
	for i := range n {
		access, refresh := lbusers.Tokens(i, now)
		tok := &Token{Account: "acme", Login: lbusers.Login(i), KeyHash: make([]byte, 32),
			AccessToken: access, RefreshToken: refresh, Expiry: now, IssuedAt: now, LastUsed: now}
		rec, ok := tr.pack(nil, 1, packToken(tok))
		if !ok {
			t.Fatal("not packed")
		}
		if i > 0 {
			total += len(rec)
		}
	}
	avg := total / (n - 1)
	t.Logf("a packed amoCRM-sized user: %d bytes", avg)
	if avg > 600 {
		t.Fatalf("a packed user takes %d bytes; the dictionary or the JWT packing is not working", avg)
	}
}

// TestRingServesEvictedUsers: with a token cache of one user per shard,
// evicted users come back from the packed tier without reading Badger, as
// they were stored; writes to users held only there are seen at once.
func TestRingServesEvictedUsers(t *testing.T) {
	s, err := Open(Options{InMemory: true, CacheSize: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	r := rand.New(rand.NewPCG(3, 4))
	const users = 3000
	toks := make([]*Token, users)
	for i := range toks {
		toks[i] = realisticToken(r, "acme", userLogin(i))
		if err := s.Put(bg, toks[i]); err != nil {
			t.Fatal(err)
		}
	}
	if st := s.cache.stats(); st.Packed != users || st.Cached > numShards {
		t.Fatalf("after the Puts: %+v", st)
	}
	reads := s.reads.Load()
	for round := range 2 {
		for i, want := range toks {
			got, err := s.Get(bg, "acme", want.Login)
			if err != nil || !sameToken(got, want) {
				t.Fatalf("round %d, user %d: %+v, %v", round, i, got, err)
			}
		}
	}
	if n := s.reads.Load() - reads; n != 0 {
		t.Fatalf("%d Badger reads for users the packed tier holds", n)
	}
	// Writes to users the token cache evicted.
	for i := 0; i < users; i += 3 {
		switch i % 2 {
		case 0:
			if _, err := s.Update(bg, "acme", toks[i].Login, func(t *Token) bool {
				t.AccessToken = fmt.Sprint("updated-", i)
				return true
			}); err != nil {
				t.Fatal(err)
			}
			toks[i].AccessToken = fmt.Sprint("updated-", i)
		case 1:
			if err := s.Delete(bg, "acme", toks[i].Login); err != nil {
				t.Fatal(err)
			}
			toks[i] = nil
		}
	}
	deleted := 0
	for _, tok := range toks {
		if tok == nil {
			deleted++
		}
	}
	if st := s.cache.stats(); st.Packed != users-deleted {
		t.Fatalf("after %d deletes the packed tier holds %d users, want %d", deleted, st.Packed, users-deleted)
	}
	for i, want := range toks {
		got, err := s.Get(bg, "acme", userLogin(i))
		if want == nil {
			if err != ErrNotFound {
				t.Fatalf("deleted user %d: %+v, %v", i, got, err)
			}
			continue
		}
		if err != nil || !sameToken(got, want) {
			t.Fatalf("user %d after the writes: %+v, %v", i, got, err)
		}
	}
}

// TestRingWrapsAndStaysBounded: a packed tier far smaller than the users
// overwrites its oldest records; every Get still answers each user's
// current token (from the tier or from Badger), and the index holds no
// more than the records the rings can hold.
func TestRingWrapsAndStaysBounded(t *testing.T) {
	const part = minRing
	s, err := Open(Options{InMemory: true, CacheSize: 1, CacheMemory: part * numShards})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	r := rand.New(rand.NewPCG(5, 6))
	const users = 20000 // about 10 MB packed, in a 4 MiB tier
	toks := make([]*Token, users)
	for i := range toks {
		toks[i] = realisticToken(r, "acme", userLogin(i))
		if err := s.Put(bg, toks[i]); err != nil {
			t.Fatal(err)
		}
	}
	for range 2 {
		for _, i := range r.Perm(users) {
			got, err := s.Get(bg, "acme", toks[i].Login)
			if err != nil || !sameToken(got, toks[i]) {
				t.Fatalf("user %d: %+v, %v", i, got, err)
			}
		}
	}
	st := s.cache.stats()
	if st.Dropped == 0 || st.PackedUsed != st.PackedSize || st.PackedSize != part*numShards {
		t.Fatalf("the tier did not wrap: %+v", st)
	}
	// At most two laps of records (sweep), each at least 400 bytes.
	if limit := 2 * int(st.PackedSize) / 400; st.Packed > limit {
		t.Fatalf("%d users indexed in a %d-byte tier (at most %d)", st.Packed, st.PackedSize, limit)
	}
	t.Logf("%+v", st)
}

// TestRingConcurrentReadersAndWriters: under the race detector, readers
// of users held only by the packed tier never see a torn or foreign record
// while writers replace, delete and restore them and the rings wrap.
func TestRingConcurrentReadersAndWriters(t *testing.T) {
	s, err := Open(Options{InMemory: true, CacheSize: 1, CacheMemory: minRing * numShards})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	const users = 400
	now := time.Now()
	version := func(i, v int) *Token {
		access, _ := lbusers.Tokens(i*1000+v, now)
		return &Token{Account: "acme", Login: userLogin(i), KeyHash: []byte{byte(v)},
			AccessToken: access, RefreshToken: "r", Expiry: now, IssuedAt: now}
	}
	for i := range users {
		if err := s.Put(bg, version(i, 0)); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(bg, 2*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	for w := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := rand.New(rand.NewPCG(uint64(w), 9))
			for ctx.Err() == nil {
				i, v := r.IntN(users), 1+r.IntN(5)
				if v == 5 {
					_ = s.Delete(bg, "acme", userLogin(i))
					continue
				}
				if err := s.Put(bg, version(i, v)); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	for g := range runtime.GOMAXPROCS(0) + 1 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := rand.New(rand.NewPCG(uint64(g), 10))
			for ctx.Err() == nil {
				i := r.IntN(users)
				got, err := s.Get(bg, "acme", userLogin(i))
				if err == ErrNotFound {
					continue
				}
				if err != nil {
					t.Error(err)
					return
				}
				if got.Login != userLogin(i) || len(got.KeyHash) != 1 || got.KeyHash[0] > 4 {
					t.Errorf("user %d: a foreign or torn token %+v", i, got)
					return
				}
				if want := version(i, int(got.KeyHash[0])); !sameToken(got, want) {
					t.Errorf("user %d: version %d differs from the one written", i, got.KeyHash[0])
					return
				}
			}
		}()
	}
	wg.Wait()
}

// TestRingCloseWhileReading: Close gives the tier's memory back while
// Gets run; none of them reads it after (that would fault).
func TestRingCloseWhileReading(t *testing.T) {
	for range 5 {
		s, err := Open(Options{InMemory: true, CacheSize: 1})
		if err != nil {
			t.Fatal(err)
		}
		r := rand.New(rand.NewPCG(1, 1))
		for i := range 200 {
			if err := s.Put(bg, realisticToken(r, "acme", userLogin(i))); err != nil {
				t.Fatal(err)
			}
		}
		var wg sync.WaitGroup
		for g := range 4 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 0; ; i++ {
					if _, err := s.Get(bg, "acme", userLogin((i*7+g)%200)); err == ErrClosed {
						return
					}
				}
			}()
		}
		time.Sleep(20 * time.Millisecond)
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		wg.Wait()
	}
}

// TestPutRefusesACachedTokenWithoutItsRefreshToken: a token Get served
// from the cache does not carry its refresh token; writing it back would
// lose that token, so Put (and an Update whose fn copies it in) refuses.
func TestPutRefusesACachedTokenWithoutItsRefreshToken(t *testing.T) {
	s := openMem(t)
	tok := testToken("acme", "a")
	if err := s.Put(bg, tok); err != nil {
		t.Fatal(err)
	}
	got, err := s.Get(bg, "acme", "a")
	if err != nil {
		t.Fatal(err)
	}
	cp := *got
	cp.AccessToken = "changed"
	if err := s.Put(bg, &cp); err != errElided {
		t.Fatalf("Put of a cached token: %v, want errElided", err)
	}
	if _, err := s.Update(bg, "acme", "a", func(t *Token) bool { *t = cp; return true }); err != errElided {
		t.Fatalf("Update copying a cached token: %v, want errElided", err)
	}
	cp.RefreshToken = "new-refresh" // a new pair: fine
	if err := s.Put(bg, &cp); err != nil {
		t.Fatal(err)
	}
	if st, err := storedToken(t, s, "acme", "a"); err != nil || st.RefreshToken != "new-refresh" || st.AccessToken != "changed" {
		t.Fatalf("stored %+v, %v", st, err)
	}
}

// FuzzRingRecord: any token packs and unpacks to itself (as the cache
// keeps it), whatever its access token looks like.
func FuzzRingRecord(f *testing.F) {
	for _, tok := range ringTokens() {
		if len(tok.AccessToken) < 4096 {
			f.Add(tok.Account, tok.Login, tok.AccessToken, tok.KeyHash)
		}
	}
	var tr tier
	tr.seed = maphash.MakeSeed()
	f.Fuzz(func(t *testing.T, account, login, access string, kh []byte) {
		tok := &Token{Account: account, Login: login, AccessToken: access, KeyHash: kh,
			RefreshToken: "r", Expiry: time.Unix(1e9, 5), IssuedAt: time.Unix(2e9, 0)}
		k := ukey{account, login}
		want := packToken(tok)
		rec, ok := tr.pack(nil, tr.hash(k), want)
		if !ok {
			if len(kh) <= 255 {
				t.Fatalf("not packed: %+v", tok)
			}
			return
		}
		got := tr.unpack(rec, k)
		if got == nil || !sameToken(got, want) || got.Authorization() != "Bearer "+access {
			t.Fatalf("unpacked %+v, want %+v", got, want)
		}
	})
}
