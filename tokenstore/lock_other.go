//go:build !unix

package tokenstore

// lockFileName is the Unix lock file's name (lock_unix.go): never created
// here, but a store moved from a Unix machine may hold one.
const lockFileName = "amobridge.lock"

// dirLock is a no-op where flock is not available: Badger's own directory
// lock still refuses a second Open, and openError recognises its message.
type dirLock struct{}

func lockDir(dir string) (*dirLock, error) { return &dirLock{}, nil }

func (l *dirLock) release() {}
