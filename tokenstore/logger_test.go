package tokenstore

import (
	"testing"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

// TestBadgerCacheReportsAreDebug: Badger's minutely report of a low cache
// hit ratio (expected with this store's small block cache) is logged at
// debug level; its other warnings and errors stay warnings and errors.
func TestBadgerCacheReportsAreDebug(t *testing.T) {
	core, logs := observer.New(zapcore.DebugLevel)
	b := newBadgerLogger(zap.New(core))
	// As Badger's monitorCache writes them (badger/v4 db.go).
	b.Warningf("%s might be too small. Metrics: %s\n", "Block cache", "hit: 1 miss: 9")
	b.Warningf("Cache life expectancy (in seconds): %+v\n", struct{ N int }{3})
	b.Warningf("Truncate: %s", "value log")
	b.Errorf("Failure %d", 1)
	b.Infof("chatter")
	want := []zapcore.Level{zapcore.DebugLevel, zapcore.DebugLevel, zapcore.WarnLevel, zapcore.ErrorLevel}
	got := logs.All()
	if len(got) != len(want) {
		t.Fatalf("%d entries, want %d: %+v", len(got), len(want), got)
	}
	for i, e := range got {
		if e.Level != want[i] {
			t.Errorf("entry %d %q: level %v, want %v", i, e.Message, e.Level, want[i])
		}
	}
}
