//go:build unix

package tokenstore

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// lockFileName is our own lock file inside the store directory. Badger
// locks the directory too, but reports a busy lock only as text; this lock
// lets Open return ErrLocked reliably. flock locks belong to the open file,
// so a second Open in the same process conflicts as well.
const lockFileName = "amobridge.lock"

// dirLock is an exclusive flock on lockFileName.
type dirLock struct{ f *os.File }

// lockDir takes the store directory's lock without waiting.
func lockDir(dir string) (*dirLock, error) {
	f, err := os.OpenFile(filepath.Join(dir, lockFileName), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("tokenstore: open lock file: %w", err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		_ = f.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			return nil, fmt.Errorf("tokenstore: open %s: %w", dir, ErrLocked)
		}
		return nil, fmt.Errorf("tokenstore: lock %s: %w", dir, err)
	}
	return &dirLock{f: f}, nil
}

// release drops the lock; a nil lock is a no-op.
func (l *dirLock) release() {
	if l == nil || l.f == nil {
		return
	}
	_ = unix.Flock(int(l.f.Fd()), unix.LOCK_UN)
	_ = l.f.Close()
	l.f = nil
}
