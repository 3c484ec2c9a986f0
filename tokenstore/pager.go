package tokenstore

import (
	"errors"
	"io"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
)

// Badger memory-maps its table files and reads users the token cache does
// not hold straight from the mapping. Every page such a read touches stays
// mapped in the process, counted in its RSS as file pages, and in the
// kernel's page cache, until the kernel needs the memory: with a million
// users read once each, the whole store (1-2 GB). The pager bounds that:
// every pagerInterval it estimates how many of the store's table pages are
// mapped, and when they are over Options.TableMemory it asks the kernel to
// reclaim table pages (Linux: madvise MADV_PAGEOUT; the tables are clean,
// so they are dropped, not written), in turn over the tables, down to three
// quarters of the bound. A page read again afterwards comes from disk: one
// 4 KiB read, as the pager marks the mappings MADV_RANDOM so that a read
// does not pull 128 KiB of neighbours with it. The memory the store takes
// is then the bound, in RSS and in the page cache alike.
//
// The cost is that disk read: a Go program blocks a whole P for the
// ~75 µs a page fault waits for the disk (this machine). Without the packed
// cache (ring.go), random reads of users outside the token cache were 18 %
// slower at a million users; with it, a user is read from Badger only on
// their first request after a start (and by refreshes and the keeper's
// scans), so the bound is on by default (DefaultTableMemory).

// Not MADV_DONTNEED, which would only unmap the pages and leave them in the
// page cache: the pager works on mappings Badger owns and may unmap at any
// moment (a compaction deletes a table), and the address range may then
// be reused by other memory of the process before the pager's madvise;
// DONTNEED would zero that memory (it did: the Go runtime's own structures,
// "bad sweepgen in refill"), while PAGEOUT and the read hints never change
// what memory holds, whatever it is.
//
// With no bound (Options.TableMemory < 0) the pager does not run: the
// kernel alone decides, which keeps the store's pages while memory is free
// and takes them back, clean, when something needs it (a cgroup's limit
// included).
const (
	// pagerInterval: most steps read /proc/self/statm (microseconds); one
	// in fullEvery also lists and measures every table (~9 ms per GiB).
	pagerInterval = 250 * time.Millisecond
)

// errPagerUnsupported is returned by the platform's mapping functions where
// there is no way to reclaim a mapping's pages.
var errPagerUnsupported = errors.New("tokenstore: reclaiming mapped table pages is not supported here")

// mapping is one memory-mapped range of a table file.
type mapping struct {
	start, end uintptr
	path       string
}

func (m mapping) size() int64 { return int64(m.end - m.start) }

// pagerOS is what the pager needs from the operating system; tests replace it.
type pagerOS interface {
	// tables lists the mappings of the table files in dir.
	tables(dir string) ([]mapping, error)
	// resident returns how many bytes of m are in memory.
	resident(m mapping) (int64, error)
	// random marks m as read at random (no read-ahead).
	random(m mapping) error
	// sequential marks m as read in order (generous read-ahead).
	sequential(m mapping) error
	// release asks the kernel to reclaim m's pages.
	release(m mapping) error
	// fileRSS returns the process's mapped file (and shared memory) pages, in
	// bytes: the store's tables and every other mapped file. Cheap.
	fileRSS() (int64, error)
}

// PagerStats reports the pager's work (see Badger.PagerStats).
type PagerStats struct {
	Limit    int64  // the bound, in bytes; 0 if the pager does not run
	Resident int64  // resident table pages at the last measurement
	Trims    uint64 // how many times the pager found the bound exceeded
	Released int64  // bytes of mapped pages the pager asked the kernel to reclaim
}

// pager keeps the store's resident table pages under limit.
type pager struct {
	dir   string
	limit int64
	os    pagerOS
	log   *zap.Logger

	mu       sync.Mutex         // serialises step and scan
	marked   map[uintptr]string // mappings already marked random: start -> path
	next     string             // the table to release first next time (turn by turn)
	scanning int                // scans of the whole store under way (see scan)
	steps    int                // steps taken
	ms       []mapping          // the tables at the last full measurement, by path; nil: measure again
	base     int64              // fileRSS less the tables' pages, at the last full measurement

	resident atomic.Int64
	trims    atomic.Uint64
	released atomic.Int64

	stop     chan struct{}
	done     chan struct{}
	stopOnce sync.Once
}

func newPager(dir string, limit int64, sys pagerOS, log *zap.Logger) *pager {
	if log == nil {
		log = zap.NewNop()
	}
	return &pager{dir: dir, limit: limit, os: sys, log: log, marked: map[uintptr]string{}}
}

// start runs step every interval until close.
func (p *pager) start(interval time.Duration) {
	p.stop, p.done = make(chan struct{}), make(chan struct{})
	go func() {
		defer close(p.done)
		if c, ok := p.os.(io.Closer); ok {
			defer c.Close()
		}
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			select {
			case <-p.stop:
				return
			case <-t.C:
				if err := p.step(); errors.Is(err, errPagerUnsupported) {
					p.log.Warn("cannot bound the token store's mapped memory on this system; the kernel alone decides",
						zap.Error(err))
					return
				} else if err != nil {
					p.log.Debug("token store pager", zap.Error(err))
				}
			}
		}
	}()
}

// close stops the pager and waits for it.
func (p *pager) close() {
	if p == nil || p.stop == nil {
		return
	}
	p.stopOnce.Do(func() { close(p.stop) })
	<-p.done
}

func (p *pager) stats() PagerStats {
	if p == nil {
		return PagerStats{}
	}
	return PagerStats{Limit: p.limit, Resident: p.resident.Load(), Trims: p.trims.Load(), Released: p.released.Load()}
}

// scan prepares the tables for a read of the whole store in key order
// (List: the keeper's census): it marks them sequential, so that the
// kernel reads ahead instead of faulting in one 4 KiB page at a time, and
// returns the function that ends the scan; the next step after the last
// scan ends marks them random again. The bound still holds meanwhile.
func (p *pager) scan() (end func()) {
	if p == nil {
		return func() {}
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.scanning++
	if ms, err := p.os.tables(p.dir); err == nil {
		for _, m := range ms {
			_ = p.os.sequential(m)
		}
	}
	var once sync.Once
	return func() {
		once.Do(func() {
			p.mu.Lock()
			defer p.mu.Unlock()
			p.scanning--
			clear(p.marked) // the next step marks every table random again:
			p.ms = nil      // it is a full one
		})
	}
}

// fullEvery: one step in fullEvery lists the tables and measures each one's
// mapped pages (/proc/self/maps and 8 bytes of /proc/self/pagemap per table
// page: ~10 ms for a 1.3 GB store); the others only read the process's
// file RSS (~20 µs) and take the tables' share of it as what it was at the
// last full measurement.
const fullEvery = 40

// step measures the tables' mapped pages and, over the limit, reclaims
// tables' pages in turn until they are at most 3/4 of it.
func (p *pager) step() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	rss, err := p.os.fileRSS()
	if err != nil {
		return err
	}
	p.steps++
	if p.ms == nil || p.steps%fullEvery == 0 {
		return p.full(rss)
	}
	est := max(0, rss-p.base)
	p.resident.Store(est)
	if est <= p.limit {
		return nil
	}
	p.trimmed(est)
	return p.trim(est)
}

// trimmed counts a step that found the bound exceeded.
func (p *pager) trimmed(mapped int64) {
	if p.trims.Add(1) == 1 {
		p.log.Info("token store: the mapped tables' pages reached table_memory; reclaiming table pages from now on (users outside the token cache are read from disk)",
			zap.Int64("table_memory", p.limit), zap.Int64("mapped", mapped))
	}
}

// full lists and measures every table, marks new ones random, and, over the
// limit, releases tables in turn, measured one by one.
func (p *pager) full(rss int64) error {
	ms, err := p.os.tables(p.dir)
	if err != nil {
		return err
	}
	sort.Slice(ms, func(i, j int) bool {
		return ms[i].path < ms[j].path || ms[i].path == ms[j].path && ms[i].start < ms[j].start
	})

	seen := make(map[uintptr]string, len(ms))
	res := make([]int64, len(ms))
	var total int64
	for i, m := range ms {
		seen[m.start] = m.path
		if p.scanning == 0 && p.marked[m.start] != m.path {
			if err := p.os.random(m); err != nil && errors.Is(err, errPagerUnsupported) {
				return err
			}
		}
		r, err := p.os.resident(m)
		if err != nil {
			continue // unmapped meanwhile (a compaction deleted the table)
		}
		res[i] = r
		total += r
	}
	p.marked = seen
	p.ms = ms
	p.base = max(0, rss-total)
	p.resident.Store(total)
	if total <= p.limit {
		return nil
	}
	p.trimmed(total)

	target := p.limit / 4 * 3
	var freed int64
	for k, i := 0, p.first(); k < len(ms) && total > target; k, i = k+1, (i+1)%len(ms) {
		if res[i] == 0 {
			continue
		}
		if err := p.os.release(ms[i]); err != nil {
			if errors.Is(err, errPagerUnsupported) {
				return err
			}
			continue
		}
		total -= res[i]
		freed += res[i]
		p.next = ms[(i+1)%len(ms)].path
	}
	p.released.Add(freed)
	p.resident.Store(total)
	return nil
}

// first returns the index in p.ms of the table to release first: the first
// at or after p.next, in path order, going round.
func (p *pager) first() int {
	i := sort.Search(len(p.ms), func(i int) bool { return p.ms[i].path >= p.next })
	if i == len(p.ms) {
		return 0
	}
	return i
}

// trim releases tables in turn, in batches sized as if the mapped pages
// were spread evenly over the tables, reading the file RSS after each batch,
// until the tables' share is at most 3/4 of the limit.
func (p *pager) trim(est int64) error {
	if len(p.ms) == 0 {
		p.ms = nil
		return nil
	}
	target := p.limit / 4 * 3
	i := p.first()
	for done := 0; est > target && done < len(p.ms); {
		k := int((int64(len(p.ms))*(est-target) + est - 1) / est)
		k = min(max(k, 1), len(p.ms)-done)
		for j := 0; j < k; j, i = j+1, (i+1)%len(p.ms) {
			if err := p.os.release(p.ms[i]); err != nil {
				if errors.Is(err, errPagerUnsupported) {
					return err
				}
				p.ms = nil // a table went away: list them again next step
				return nil
			}
		}
		done += k
		p.next = p.ms[i].path
		rss, err := p.os.fileRSS()
		if err != nil {
			return err
		}
		now := max(0, rss-p.base)
		p.released.Add(max(0, est-now))
		est = now
	}
	p.resident.Store(est)
	return nil
}
