package tokenstore

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// linuxPager finds the table mappings in /proc/self/maps and works on them
// with /proc/self/pagemap and madvise. The addresses come from the kernel and are
// passed back to it as numbers; Go never dereferences them. A table unmapped
// between the listing and a call makes that call fail with ENOMEM, which the
// pager skips.
type linuxPager struct {
	pagemap *os.File // /proc/self/pagemap, opened at first use, kept
	statm   *os.File // /proc/self/statm, likewise
	buf     []byte
}

func newPagerOS() pagerOS { return &linuxPager{buf: make([]byte, 64<<10)} }

var pageSize = uintptr(os.Getpagesize())

// tables parses /proc/self/maps: "start-end perms offset dev inode path".
func (*linuxPager) tables(dir string) ([]mapping, error) {
	b, err := os.ReadFile("/proc/self/maps")
	if err != nil {
		return nil, fmt.Errorf("tokenstore: pager: %w", err)
	}
	prefix := filepath.Clean(dir) + "/"
	var ms []mapping
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 0, 4096), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		i := strings.IndexByte(line, '/')
		if i < 0 {
			continue
		}
		path := strings.TrimSuffix(line[i:], " (deleted)")
		if !strings.HasPrefix(path, prefix) || !strings.HasSuffix(path, ".sst") {
			continue
		}
		addr, _, _ := strings.Cut(line, " ")
		lo, hi, ok := strings.Cut(addr, "-")
		if !ok {
			continue
		}
		start, err1 := strconv.ParseUint(lo, 16, 64)
		end, err2 := strconv.ParseUint(hi, 16, 64)
		if err1 != nil || err2 != nil || end <= start {
			continue
		}
		ms = append(ms, mapping{start: uintptr(start), end: uintptr(end), path: path})
	}
	return ms, sc.Err()
}

// resident counts m's pages present in this process's page tables, from
// /proc/self/pagemap (8 bytes per page, bit 63 = present). Not mincore: that
// counts the file's pages in the page cache, mapped here or not (a store
// written by another process, or read with read(2), is in the page cache
// without being in this process's memory, and madvise cannot reclaim it).
func (l *linuxPager) resident(m mapping) (int64, error) {
	if l.pagemap == nil {
		f, err := os.Open("/proc/self/pagemap")
		if err != nil {
			return 0, fmt.Errorf("%w: %v", errPagerUnsupported, err)
		}
		l.pagemap = f
	}
	pages := int((m.size() + int64(pageSize) - 1) / int64(pageSize))
	var n int64
	for done := 0; done < pages; {
		chunk := min(pages-done, len(l.buf)/8)
		b := l.buf[:chunk*8]
		off := int64(m.start/pageSize+uintptr(done)) * 8
		if _, err := l.pagemap.ReadAt(b, off); err != nil {
			return 0, err
		}
		for i := 0; i < len(b); i += 8 {
			n += int64(b[i+7] >> 7) // little-endian: bit 63 is the top bit of the last byte
		}
		done += chunk
	}
	return n * int64(pageSize), nil
}

// fileRSS reads the third field of /proc/self/statm: the process's
// resident file and shared memory pages (RssFile + RssShmem: a store on
// tmpfs is shared memory). /proc/self/status says the same at ten times
// the cost.
func (l *linuxPager) fileRSS() (int64, error) {
	if l.statm == nil {
		f, err := os.Open("/proc/self/statm")
		if err != nil {
			return 0, fmt.Errorf("%w: %v", errPagerUnsupported, err)
		}
		l.statm = f
	}
	var b [128]byte
	n, err := l.statm.ReadAt(b[:], 0)
	if err != nil && !errors.Is(err, io.EOF) {
		return 0, err
	}
	f := strings.Fields(string(b[:n]))
	if len(f) < 3 {
		return 0, fmt.Errorf("tokenstore: pager: /proc/self/statm reads %q", b[:n])
	}
	pages, err := strconv.ParseInt(f[2], 10, 64)
	if err != nil {
		return 0, fmt.Errorf("tokenstore: pager: /proc/self/statm: %w", err)
	}
	return pages * int64(pageSize), nil
}

// Close closes /proc/self/pagemap and /proc/self/statm.
func (l *linuxPager) Close() error {
	for _, f := range []*os.File{l.pagemap, l.statm} {
		if f != nil {
			f.Close()
		}
	}
	return nil
}

func (*linuxPager) random(m mapping) error { return madvise(m, unix.MADV_RANDOM) }

func (*linuxPager) sequential(m mapping) error { return madvise(m, unix.MADV_SEQUENTIAL) }

// release asks the kernel to reclaim m's pages (Linux 5.4 or later). It
// changes nothing that memory holds, so a range that is no longer Badger's
// (unmapped and reused meanwhile) comes to no harm.
func (*linuxPager) release(m mapping) error { return madvise(m, unix.MADV_PAGEOUT) }

func madvise(m mapping, advice int) error {
	_, _, e := unix.Syscall(unix.SYS_MADVISE, m.start, m.end-m.start, uintptr(advice))
	switch e {
	case 0:
		return nil
	case unix.EINVAL: // a kernel older than 5.4 does not know MADV_PAGEOUT
		return fmt.Errorf("%w: madvise: %v", errPagerUnsupported, e)
	default:
		return e
	}
}
