package caddymodule

import "sync/atomic"

// share is a handler's hold on what it shares with other configurations
// (its store's backend and the metrics). Requests enter and exit it; after
// close, the last request to exit releases the hold, so that a handler of a
// replaced configuration keeps working until its last request ends.
type share struct {
	state   atomic.Int64 // requests inside, plus the closed and released bits
	release func()
}

const (
	shareClosed   = 1 << 62
	shareReleased = 1 << 61
)

// newShare returns a share whose release is called once, when it is closed
// and no request is inside.
func newShare(release func()) *share { return &share{release: release} }

// enter reports whether the share may be used; if so, exit must follow.
// It fails only for a request that arrives after the share was released.
func (s *share) enter() bool {
	if s.state.Add(1)&shareReleased != 0 {
		s.state.Add(-1)
		return false
	}
	return true
}

// exit ends a request's use of the share.
func (s *share) exit() {
	if s.state.Add(-1) == shareClosed {
		s.finish()
	}
}

// close gives the share up: now if no request is inside, else when the
// last one exits. Calling it again does nothing.
func (s *share) close() {
	if s == nil {
		return
	}
	if s.state.Or(shareClosed)&^(shareClosed|shareReleased) == 0 {
		s.finish()
	}
}

// finish releases the share once: closed, no request inside.
func (s *share) finish() {
	if s.state.CompareAndSwap(shareClosed, shareClosed|shareReleased) {
		s.release()
	}
}
