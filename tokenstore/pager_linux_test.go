package tokenstore

import (
	"context"
	"encoding/hex"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// skipOnTmpfs skips where the directory is in memory: the kernel cannot
// reclaim tmpfs pages without swap, so there is nothing to measure.
func skipOnTmpfs(t *testing.T, dir string) {
	t.Helper()
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err == nil && st.Type == unix.TMPFS_MAGIC {
		t.Skip("the temporary directory is tmpfs: its pages cannot be reclaimed")
	}
}

// TestLinuxPagerReclaimsAMappedFile maps a real file, reads it whole, and
// checks that the pager finds the mapping, measures it, and that the kernel
// reclaims its pages while the data reads back the same.
func TestLinuxPagerReclaimsAMappedFile(t *testing.T) {
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
	if err := f.Sync(); err != nil { // clean pages: reclaimed without a write
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
		t.Fatalf("after a reclaim %d bytes are resident, want at most 3 MiB (3/4 of the 4 MiB bound)", r)
	}
	if st := p.stats(); st.Reclaims != 1 || st.PagedOut != size {
		t.Fatalf("stats %+v, want 1 reclaim of 16 MiB", st)
	}
	for i := 0; i < size; i += 4093 {
		if mem[i] != byte(i*7) {
			t.Fatalf("byte %d reads %d after the reclaim, want %d", i, mem[i], byte(i*7))
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
	s, err := Open(Options{Path: dir, EncryptionKey: key, TableMemory: -1})
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
	var reclaims int
	for i := 0; i < users; i++ {
		got, err := s.Get(ctx, "acme", fmt.Sprintf("user%d@example.com", i))
		want := tok(i)
		if err != nil || got.AccessToken != want.AccessToken || got.RefreshToken != want.RefreshToken {
			t.Fatalf("user %d: %v, or a token that differs from the one stored", i, err)
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
	reclaims = int(st.Reclaims)
	if reclaims == 0 || st.PagedOut < 8<<20 {
		t.Fatalf("stats %+v: the pager never had to reclaim a store of %d users; the test does not test it", st, users)
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
