package tokenstore

import (
	"fmt"
	"strings"

	"go.uber.org/zap"
)

// badgerLogger routes Badger's logs to zap at warning level and above;
// Badger's info and debug chatter is dropped.
type badgerLogger struct{ l *zap.Logger }

// newBadgerLogger returns a Badger logger writing to l, or one that
// discards everything if l is nil.
func newBadgerLogger(l *zap.Logger) *badgerLogger {
	if l == nil {
		return &badgerLogger{}
	}
	return &badgerLogger{l: l.Named("badger")}
}

func (b *badgerLogger) Errorf(f string, v ...any) {
	if b.l != nil {
		b.l.Error(badgerMessage(f, v))
	}
}

func (b *badgerLogger) Warningf(f string, v ...any) {
	if b.l == nil {
		return
	}
	if cacheReport(f) {
		b.l.Debug(badgerMessage(f, v))
		return
	}
	b.l.Warn(badgerMessage(f, v))
}

// cacheReport tells whether f is Badger's minutely report that its block
// or index cache has a low hit ratio. The block cache is small on purpose
// (the token caches serve repeated reads; Badger sees mostly one-off reads
// of users outside them, and the keeper's scans), so the report is
// expected, not a fault to warn an operator of.
func cacheReport(f string) bool {
	return strings.HasPrefix(f, "%s might be too small. Metrics:") || strings.HasPrefix(f, "Cache life expectancy")
}

func (*badgerLogger) Infof(string, ...any)  {}
func (*badgerLogger) Debugf(string, ...any) {}

func badgerMessage(f string, v []any) string {
	return strings.TrimSpace(fmt.Sprintf(f, v...))
}
