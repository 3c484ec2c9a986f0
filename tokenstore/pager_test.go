package tokenstore

import (
	"errors"
	"fmt"
	"runtime"
	"testing"
)

// fakePagerOS is a pagerOS over invented mappings, each with a resident size.
type fakePagerOS struct {
	maps        []mapping
	res         map[uintptr]int64
	randoms     []string
	sequentials []string
	released    []string
	fail        map[uintptr]error // release's error per mapping
}

func newFakePagerOS(n int, each int64) *fakePagerOS {
	f := &fakePagerOS{res: map[uintptr]int64{}, fail: map[uintptr]error{}}
	for i := 0; i < n; i++ {
		m := mapping{start: uintptr(1+i) << 24, end: uintptr(1+i)<<24 + 1<<20, path: fmt.Sprintf("/s/%06d.sst", i+1)}
		f.maps = append(f.maps, m)
		f.res[m.start] = each
	}
	return f
}

func (f *fakePagerOS) tables(string) ([]mapping, error) {
	// Listed out of order: the pager sorts them itself.
	out := make([]mapping, 0, len(f.maps))
	for i := len(f.maps) - 1; i >= 0; i-- {
		out = append(out, f.maps[i])
	}
	return out, nil
}
func (f *fakePagerOS) resident(m mapping) (int64, error) { return f.res[m.start], nil }
func (f *fakePagerOS) random(m mapping) error {
	f.randoms = append(f.randoms, m.path)
	return nil
}
func (f *fakePagerOS) sequential(m mapping) error {
	f.sequentials = append(f.sequentials, m.path)
	return nil
}
func (f *fakePagerOS) release(m mapping) error {
	if err := f.fail[m.start]; err != nil {
		return err
	}
	f.released = append(f.released, m.path)
	f.res[m.start] = 0
	return nil
}

func (f *fakePagerOS) fileRSS() (int64, error) { return 50 + f.total(), nil } // 50: the binary's pages

func (f *fakePagerOS) total() (n int64) {
	for _, r := range f.res {
		n += r
	}
	return n
}

func TestPagerUnderLimitDoesNothing(t *testing.T) {
	f := newFakePagerOS(4, 100)
	p := newPager("/s", 400, f, nil)
	if err := p.step(); err != nil {
		t.Fatal(err)
	}
	if len(f.released) != 0 || p.stats().Trims != 0 || p.stats().Resident != 400 {
		t.Fatalf("released %v, stats %+v; want nothing at the limit", f.released, p.stats())
	}
	if len(f.randoms) != 4 {
		t.Fatalf("marked %d mappings random, want 4", len(f.randoms))
	}
	// A mapping is marked once, not at every step.
	if err := p.step(); err != nil {
		t.Fatal(err)
	}
	if len(f.randoms) != 4 {
		t.Fatalf("marked %d mappings random after two steps, want 4", len(f.randoms))
	}
}

func TestPagerTrimsInTurnToThreeQuarters(t *testing.T) {
	f := newFakePagerOS(10, 100) // 1,000 resident
	p := newPager("/s", 800, f, nil)
	// Each step finds every table read back in and trims down to 600 (3/4
	// of 800): 4 tables in path order, starting where the last trim
	// stopped, and going round. The first step measures each table; the
	// others go by the file RSS.
	for round, want := range [][]int{{1, 2, 3, 4}, {5, 6, 7, 8}, {9, 10, 1, 2}} {
		for k := range f.res {
			f.res[k] = 100
		}
		f.released = nil
		if err := p.step(); err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, n := range want {
			names = append(names, fmt.Sprintf("/s/%06d.sst", n))
		}
		if fmt.Sprint(f.released) != fmt.Sprint(names) {
			t.Fatalf("trim %d released %v, want %v", round+1, f.released, names)
		}
		if st := p.stats(); st.Resident != 600 || st.Released != int64(400*(round+1)) || st.Trims != uint64(round+1) || f.total() != 600 {
			t.Fatalf("trim %d: stats %+v, resident %d; want 600 mapped, %d released, %d trims", round+1, st, f.total(), 400*(round+1), round+1)
		}
	}
}

func TestPagerSkipsFailuresAndStopsWhereUnsupported(t *testing.T) {
	f := newFakePagerOS(4, 100)
	f.fail[f.maps[0].start] = errors.New("ENOMEM: unmapped meanwhile")
	p := newPager("/s", 200, f, nil)
	if err := p.step(); err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(f.released) != "[/s/000002.sst /s/000003.sst /s/000004.sst]" {
		t.Fatalf("released %v; want the three tables that could be (down to 150)", f.released)
	}

	f = newFakePagerOS(2, 100)
	f.fail[f.maps[0].start] = fmt.Errorf("%w: madvise: EINVAL", errPagerUnsupported)
	p = newPager("/s", 100, f, nil)
	if err := p.step(); !errors.Is(err, errPagerUnsupported) {
		t.Fatalf("step = %v, want errPagerUnsupported (so the pager stops)", err)
	}
}

func TestPagerScanReadsAhead(t *testing.T) {
	f := newFakePagerOS(3, 100)
	p := newPager("/s", 1000, f, nil)
	if err := p.step(); err != nil {
		t.Fatal(err)
	}
	end := p.scan()
	if len(f.sequentials) != 3 {
		t.Fatalf("a scan marked %d tables sequential, want 3", len(f.sequentials))
	}
	// During the scan, steps do not mark tables random (a table compacted
	// meanwhile stays as the kernel made it).
	f.randoms = nil
	f.maps = append(f.maps, mapping{start: 99 << 24, end: 99<<24 + 1<<20, path: "/s/000099.sst"})
	if err := p.step(); err != nil {
		t.Fatal(err)
	}
	if len(f.randoms) != 0 {
		t.Fatalf("steps during a scan marked %v random", f.randoms)
	}
	end()
	end() // ending twice is harmless
	if err := p.step(); err != nil {
		t.Fatal(err)
	}
	if len(f.randoms) != 4 {
		t.Fatalf("the step after the scan marked %d tables random, want all 4", len(f.randoms))
	}
}

// TestTableMemoryDefaultAndOff: TableMemory 0 bounds the tables at
// DefaultTableMemory, a negative one runs no pager; a store in memory has
// no tables to page.
func TestTableMemoryDefaultAndOff(t *testing.T) {
	for _, c := range []struct {
		o    Options
		want int64 // 0: no pager
	}{
		{Options{Path: t.TempDir()}, DefaultTableMemory},
		{Options{Path: t.TempDir(), TableMemory: 64 << 20}, 64 << 20},
		{Options{Path: t.TempDir(), TableMemory: -1}, 0},
		{Options{InMemory: true}, 0},
	} {
		s, err := Open(c.o)
		if err != nil {
			t.Fatal(err)
		}
		var got int64
		if s.pager != nil {
			got = s.pager.limit
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		if runtime.GOOS == "linux" && got != c.want {
			t.Errorf("TableMemory %d (in memory %v): pager bound %d, want %d", c.o.TableMemory, c.o.InMemory, got, c.want)
		}
	}
}
