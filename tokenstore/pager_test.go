package tokenstore

import (
	"errors"
	"fmt"
	"testing"
)

// fakePagerOS is a pagerOS over invented mappings, each with a resident size.
type fakePagerOS struct {
	maps     []mapping
	res      map[uintptr]int64
	randoms  []string
	pagedOut []string
	fail     map[uintptr]error // pageOut's error per mapping
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
func (f *fakePagerOS) pageOut(m mapping) error {
	if err := f.fail[m.start]; err != nil {
		return err
	}
	f.pagedOut = append(f.pagedOut, m.path)
	f.res[m.start] = 0
	return nil
}

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
	if len(f.pagedOut) != 0 || p.stats().Reclaims != 0 || p.stats().Resident != 400 {
		t.Fatalf("paged out %v, stats %+v; want nothing at the limit", f.pagedOut, p.stats())
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

func TestPagerReclaimsInTurnToThreeQuarters(t *testing.T) {
	f := newFakePagerOS(10, 100) // 1,000 resident
	p := newPager("/s", 800, f, nil)
	if err := p.step(); err != nil {
		t.Fatal(err)
	}
	// Down to 600 (3/4 of 800): 4 tables, in path order.
	want := []string{"/s/000001.sst", "/s/000002.sst", "/s/000003.sst", "/s/000004.sst"}
	if fmt.Sprint(f.pagedOut) != fmt.Sprint(want) {
		t.Fatalf("paged out %v, want %v", f.pagedOut, want)
	}
	if st := p.stats(); st.Resident != 600 || st.PagedOut != 400 || st.Reclaims != 1 || f.total() != 600 {
		t.Fatalf("stats %+v, resident %d; want 600 resident, 400 paged out, 1 reclaim", st, f.total())
	}
	// Everything read back in: the next reclaim starts where the last stopped.
	for k := range f.res {
		f.res[k] = 100
	}
	f.pagedOut = nil
	if err := p.step(); err != nil {
		t.Fatal(err)
	}
	want = []string{"/s/000005.sst", "/s/000006.sst", "/s/000007.sst", "/s/000008.sst"}
	if fmt.Sprint(f.pagedOut) != fmt.Sprint(want) {
		t.Fatalf("second reclaim paged out %v, want %v", f.pagedOut, want)
	}
	// And wraps round.
	for k := range f.res {
		f.res[k] = 100
	}
	f.pagedOut = nil
	if err := p.step(); err != nil {
		t.Fatal(err)
	}
	want = []string{"/s/000009.sst", "/s/000010.sst", "/s/000001.sst", "/s/000002.sst"}
	if fmt.Sprint(f.pagedOut) != fmt.Sprint(want) {
		t.Fatalf("third reclaim paged out %v, want %v", f.pagedOut, want)
	}
}

func TestPagerSkipsFailuresAndStopsWhereUnsupported(t *testing.T) {
	f := newFakePagerOS(4, 100)
	f.fail[f.maps[0].start] = errors.New("ENOMEM: unmapped meanwhile")
	p := newPager("/s", 200, f, nil)
	if err := p.step(); err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(f.pagedOut) != "[/s/000002.sst /s/000003.sst /s/000004.sst]" {
		t.Fatalf("paged out %v; want the three tables that could be (down to 150)", f.pagedOut)
	}

	f = newFakePagerOS(2, 100)
	f.fail[f.maps[0].start] = fmt.Errorf("%w: madvise: EINVAL", errPagerUnsupported)
	p = newPager("/s", 100, f, nil)
	if err := p.step(); !errors.Is(err, errPagerUnsupported) {
		t.Fatalf("step = %v, want errPagerUnsupported (so the pager stops)", err)
	}
}
