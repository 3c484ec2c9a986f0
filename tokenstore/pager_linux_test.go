package tokenstore

import (
	"context"
	"encoding/hex"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// skipOnTmpfs skips where the directory is in memory: without swap the
// kernel cannot reclaim tmpfs pages, so there is nothing to measure.
func skipOnTmpfs(t *testing.T, dir string) {
	t.Helper()
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err == nil && st.Type == unix.TMPFS_MAGIC {
		t.Skip("the temporary directory is tmpfs: its pages cannot be reclaimed")
	}
}

// TestLinuxPagerReleaseKeepsAnyMemory: the pager works on mappings Badger
// owns and may unmap (and the process reuse) at any moment, so releasing a
// range must never change what memory holds, whatever memory it is. With
// MADV_DONTNEED it zeroed anonymous memory (the Go runtime crashed with
// "bad sweepgen in refill" under the seeding of a million users).
func TestLinuxPagerReleaseKeepsAnyMemory(t *testing.T) {
	const size = 1 << 20
	mem, err := unix.Mmap(-1, 0, size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Munmap(mem)
	for i := range mem {
		mem[i] = byte(i%251 + 1)
	}
	start := uintptr(unsafe.Pointer(&mem[0]))
	sys := newPagerOS()
	if err := sys.release(mapping{start: start, end: start + size, path: "/reused.sst"}); err != nil {
		t.Fatal(err)
	}
	for i := range mem {
		if mem[i] != byte(i%251+1) {
			t.Fatalf("byte %d of anonymous memory reads %d after a release, want %d", i, mem[i], byte(i%251+1))
		}
	}
}

// TestLinuxPagerTrimsAMappedFile maps a real file, reads it whole, and
// checks that the pager finds the mapping, measures it, and that the kernel
// reclaims its pages while the data reads back the same.
func TestLinuxPagerTrimsAMappedFile(t *testing.T) {
	dir := t.TempDir()
	skipOnTmpfs(t, dir)
	const size = 16 << 20
	data := make([]byte, size)
	for i := range data {
		data[i] = byte(i * 7)
	}
	path := filepath.Join(dir, "000001.sst")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write(data); err != nil {
		t.Fatal(err)
	}
	if err := f.Sync(); err != nil {
		t.Fatal(err)
	}
	mem, err := unix.Mmap(int(f.Fd()), 0, size, unix.PROT_READ, unix.MAP_SHARED)
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Munmap(mem)
	var sum int
	for i := 0; i < size; i += 4096 {
		sum += int(mem[i])
	}
	if sum != size/4096*int(byte(0)) { // byte(i*7) is 0 at every multiple of 4096
		t.Fatalf("sum of the pages' first bytes = %d", sum)
	}

	sys := newPagerOS()
	ms, err := sys.tables(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(ms) != 1 || ms[0].path != path || ms[0].size() != size {
		t.Fatalf("tables(%s) = %+v, want the one 16 MiB mapping of %s", dir, ms, path)
	}
	if r, err := sys.resident(ms[0]); err != nil || r != size {
		t.Fatalf("resident = %d, %v; want %d (every page read)", r, err, size)
	}

	p := newPager(dir, 4<<20, sys, nil)
	if err := p.step(); err != nil {
		t.Fatal(err)
	}
	r, err := sys.resident(ms[0])
	if err != nil {
		t.Fatal(err)
	}
	if r > 3<<20 {
		t.Fatalf("after a trim %d bytes are mapped, want at most 3 MiB (3/4 of the 4 MiB bound)", r)
	}
	if st := p.stats(); st.Trims != 1 || st.Released != size {
		t.Fatalf("stats %+v, want 1 trim of 16 MiB", st)
	}
	for i := 0; i < size; i += 4093 {
		if mem[i] != byte(i*7) {
			t.Fatalf("byte %d reads %d after the trim, want %d", i, mem[i], byte(i*7))
		}
	}
	// Other files in the directory and tables elsewhere are not the pager's.
	if ms, _ := sys.tables(filepath.Join(dir, "other")); len(ms) != 0 {
		t.Fatalf("tables of another directory = %+v, want none", ms)
	}
}

// TestBadgerTableMemoryBound reads every user of a store larger than its
// TableMemory, through a token cache too small to hold them, and checks
// that the pager keeps the resident table pages under the bound while every
// token reads back exactly.
func TestBadgerTableMemoryBound(t *testing.T) {
	if testing.Short() {
		t.Skip("writes a 30 MB store")
	}
	dir := t.TempDir()
	skipOnTmpfs(t, dir)
	key := make([]byte, 32)
	const users = 15000
	const limit = 2 << 20
	s, err := Open(Options{Path: dir, EncryptionKey: key})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	now := time.Now().Truncate(time.Second)
	// Random tokens, as amoCRM's are: compression cannot make the store small.
	random := func(i, n int) string {
		r := rand.New(rand.NewPCG(uint64(i), uint64(n)))
		b := make([]byte, n)
		for j := range b {
			b[j] = byte(r.Uint32())
		}
		return hex.EncodeToString(b)
	}
	tok := func(i int) *Token {
		return &Token{Account: "acme", Login: fmt.Sprintf("user%d@example.com", i), KeyHash: s.HashKey(fmt.Sprint(i)),
			AccessToken: "eyJ" + random(i, 400), RefreshToken: "def50200" + random(i, 350),
			Expiry: now.Add(time.Hour), IssuedAt: now, LastUsed: now}
	}
	for i := 0; i < users; i++ {
		if err := s.Put(ctx, tok(i)); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	s, err = Open(Options{Path: dir, EncryptionKey: key, TableMemory: limit, CacheSize: 64})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	s.pager.close() // the test steps it itself
	for i := 0; i < users; i++ {
		got, err := s.Get(ctx, "acme", fmt.Sprintf("user%d@example.com", i))
		want := tok(i)
		if err != nil || !sameToken(got, want) {
			t.Fatalf("user %d: %v, or a token that differs from the one stored", i, err)
		}
		if st, err := storedToken(t, s, "acme", want.Login); err != nil || st.RefreshToken != want.RefreshToken {
			t.Fatalf("user %d: the stored pair: %v, or a refresh token that differs", i, err)
		}
		if i%1000 == 999 {
			if err := s.pager.step(); err != nil {
				t.Fatal(err)
			}
			if r := residentTables(t, dir); r > limit {
				t.Fatalf("after %d users %d bytes of tables are resident, over the %d bound", i+1, r, limit)
			}
		}
	}
	st := s.PagerStats()
	if st.Trims == 0 || st.Released < 8<<20 {
		t.Fatalf("stats %+v: the pager never had to trim a store of %d users; the test does not test it", st, users)
	}
	t.Logf("%d users read; %+v", users, st)
}

// residentTables measures the resident pages of dir's mapped tables anew.
func residentTables(t *testing.T, dir string) int64 {
	t.Helper()
	sys := newPagerOS()
	defer sys.(*linuxPager).Close()
	real, err := filepath.EvalSymlinks(dir)
	if err != nil {
		t.Fatal(err)
	}
	ms, err := sys.tables(real)
	if err != nil {
		t.Fatal(err)
	}
	var n int64
	for _, m := range ms {
		r, err := sys.resident(m)
		if err == nil {
			n += r
		}
	}
	return n
}

// BenchmarkPagerStep measures one step of the pager over 1 GiB of mapped
// tables (the mapped size of a million users' store, compressed, is 1.3 GB),
// a page in ten of which was read (fault-around maps its neighbours too):
// what the pager costs every pagerInterval, for a full step (one in
// fullEvery) and the others.
func BenchmarkPagerStep(b *testing.B) {
	dir := b.TempDir()
	const files, size = 64, 16 << 20
	var maps [][]byte
	for i := 0; i < files; i++ {
		f, err := os.Create(filepath.Join(dir, fmt.Sprintf("%06d.sst", i+1)))
		if err != nil {
			b.Fatal(err)
		}
		if err := f.Truncate(size); err != nil { // sparse: nothing written
			b.Fatal(err)
		}
		mem, err := unix.Mmap(int(f.Fd()), 0, size, unix.PROT_READ, unix.MAP_SHARED)
		f.Close()
		if err != nil {
			b.Fatal(err)
		}
		maps = append(maps, mem)
	}
	defer func() {
		for _, m := range maps {
			unix.Munmap(m)
		}
	}()
	var sum int
	for _, m := range maps {
		for j := 0; j < size; j += 10 * 4096 {
			sum += int(m[j])
		}
	}
	if sum != 0 {
		b.Fatal("a sparse file read non-zero")
	}
	for _, full := range []bool{true, false} {
		name := "cheap" // only the file RSS
		if full {
			name = "full" // every table listed and measured
		}
		b.Run(name, func(b *testing.B) {
			p := newPager(dir, 1<<40, newPagerOS(), nil) // never over: the step only measures
			defer p.os.(*linuxPager).Close()
			if err := p.step(); err != nil {
				b.Fatal(err)
			}
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if full {
					p.ms = nil
				}
				if err := p.step(); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(p.stats().Resident)/(1<<20), "MiB-mapped")
		})
	}
}

// TestPagerRunsBesideReadsListsAndClose runs the pager's own goroutine over a
// store that readers, Lists (scans) and finally Close use at the same time:
// for the race detector, and for a Close that must wait for the pager.
func TestPagerRunsBesideReadsListsAndClose(t *testing.T) {
	dir := t.TempDir()
	skipOnTmpfs(t, dir)
	s, err := Open(Options{Path: dir})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	now := time.Now()
	const users = 6000
	r := rand.New(rand.NewPCG(1, 2))
	random := func(n int) string {
		b := make([]byte, n)
		for j := range b {
			b[j] = byte(r.Uint32())
		}
		return hex.EncodeToString(b)
	}
	for i := 0; i < users; i++ {
		if err := s.Put(ctx, &Token{Account: "acme", Login: fmt.Sprintf("u%d", i), KeyHash: s.HashKey("k"),
			AccessToken: random(600), RefreshToken: random(360), Expiry: now.Add(time.Hour)}); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Close(); err != nil { // the tokens are in tables now
		t.Fatal(err)
	}
	s, err = Open(Options{Path: dir, TableMemory: 1 << 20, CacheSize: 64})
	if err != nil {
		t.Fatal(err)
	}
	// Read, list and read until the pager has trimmed twice (it steps every
	// 250 ms by itself), or 30 s have passed.
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := 0; w < 3; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := w; ; i += 7 {
				select {
				case <-stop:
					return
				default:
				}
				if w == 0 {
					n := 0
					if err := s.List(ctx, func(*Token) error { n++; return nil }); err != nil || n != users {
						t.Errorf("List: %d tokens, %v", n, err)
						return
					}
					continue
				}
				if _, err := s.Get(ctx, "acme", fmt.Sprintf("u%d", i%users)); err != nil {
					t.Errorf("Get: %v", err)
					return
				}
			}
		}(w)
	}
	for end := time.Now().Add(30 * time.Second); s.PagerStats().Trims < 2 && time.Now().Before(end); {
		time.Sleep(50 * time.Millisecond)
	}
	close(stop)
	wg.Wait()
	st := s.PagerStats()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if st.Trims < 2 {
		t.Fatalf("the pager did not trim a %d-user store under a 1 MiB bound within 30 s: %+v", users, st)
	}
	t.Logf("%+v", st)
}
