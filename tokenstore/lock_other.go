//go:build !unix

package tokenstore

// dirLock is a no-op where flock is not available: Badger's own directory
// lock still refuses a second Open, and openError recognises its message.
type dirLock struct{}

func lockDir(dir string) (*dirLock, error) { return &dirLock{}, nil }

func (l *dirLock) release() {}
