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
// in the kernel's page cache and in the process's RSS (as file pages) until
// the kernel needs the memory: with a million users read once each, the
// whole store (1-2 GB). The pager bounds that: every pagerInterval it
// measures how much of the store's mapped tables is resident, and when it
// is over Options.TableMemory it asks the kernel to reclaim table pages
// (Linux: madvise MADV_PAGEOUT; clean pages are dropped, not written), in
// turn over the tables, down to three quarters of the bound. A page read
// again afterwards comes from disk (one 4 KiB read: the pager also marks the
// mappings MADV_RANDOM, so that a miss does not read ahead 128 KiB of
// neighbours nobody asked for).
//
// The token cache, not the page cache, is what keeps hot users in memory;
// the pages of a table serve only the users the token cache evicted or
// never held, picked at random, so a page cache much larger than the bound
// would mostly hold pages no one reads again.
const (
	// DefaultTableMemory is the bound on the store's resident table pages
	// when Options.TableMemory is 0.
	DefaultTableMemory = 256 << 20
	pagerInterval      = time.Second
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
	// pageOut asks the kernel to reclaim m's pages.
	pageOut(m mapping) error
}

// PagerStats reports the pager's work (see Badger.PagerStats).
type PagerStats struct {
	Limit    int64  // the bound, in bytes; 0 if the pager does not run
	Resident int64  // resident table pages at the last measurement
	Reclaims uint64 // how many times the pager found the bound exceeded
	PagedOut int64  // bytes of resident pages the pager asked the kernel to reclaim
}

// pager keeps the store's resident table pages under limit.
type pager struct {
	dir   string
	limit int64
	os    pagerOS
	log   *zap.Logger

	mu     sync.Mutex         // serialises step
	marked map[uintptr]string // mappings already marked random: start -> path
	next   string             // the table to reclaim first next time (turn by turn)

	resident atomic.Int64
	reclaims atomic.Uint64
	pagedOut atomic.Int64

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
	return PagerStats{Limit: p.limit, Resident: p.resident.Load(), Reclaims: p.reclaims.Load(), PagedOut: p.pagedOut.Load()}
}

// step measures the tables' resident pages and, over the limit, reclaims
// tables' pages in turn until they are at most 3/4 of it.
func (p *pager) step() error {
	p.mu.Lock()
	defer p.mu.Unlock()
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
		if p.marked[m.start] != m.path {
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
	p.resident.Store(total)
	if total <= p.limit {
		return nil
	}
	p.reclaims.Add(1)

	// Start at the first table at or after p.next, and go round.
	first := sort.Search(len(ms), func(i int) bool { return ms[i].path >= p.next })
	target := p.limit / 4 * 3
	var freed int64
	for k := 0; k < len(ms) && total > target; k++ {
		i := (first + k) % len(ms)
		if res[i] == 0 {
			continue
		}
		if err := p.os.pageOut(ms[i]); err != nil {
			if errors.Is(err, errPagerUnsupported) {
				return err
			}
			continue
		}
		total -= res[i]
		freed += res[i]
		if i+1 < len(ms) {
			p.next = ms[i+1].path
		} else {
			p.next = ""
		}
	}
	p.pagedOut.Add(freed)
	p.resident.Store(total)
	return nil
}
