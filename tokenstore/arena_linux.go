package tokenstore

import (
	"fmt"

	"golang.org/x/sys/unix"
)

// mapArena maps n bytes of private anonymous memory for the packed tier,
// outside Go's heap: the collector neither scans it nor counts it toward
// the heap size at which it collects. The kernel backs a page only once it
// is written (MAP_NORESERVE: nor is swap reserved for the rest), so an
// arena larger than its records costs address space only.
func mapArena(n int) ([]byte, func() error, error) {
	b, err := unix.Mmap(-1, 0, n, unix.PROT_READ|unix.PROT_WRITE,
		unix.MAP_PRIVATE|unix.MAP_ANONYMOUS|unix.MAP_NORESERVE)
	if err != nil {
		return nil, nil, fmt.Errorf("tokenstore: map %d bytes for the packed cache: %w", n, err)
	}
	return b, func() error { return unix.Munmap(b) }, nil
}
