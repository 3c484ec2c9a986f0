package caddymodule

import (
	"fmt"
	"testing"
	"time"
)

func TestOldMigrationsAreForgotten(t *testing.T) {
	b := &backend{migrations: map[string]*migration{}}
	base := time.Now()
	for i := 0; i < keptMigrations+10; i++ {
		m := &migration{id: fmt.Sprint(i), started: base.Add(time.Duration(i) * time.Second), finished: base}
		b.migrations[m.id] = m
	}
	running := &migration{id: "running", started: base.Add(-time.Hour)}
	b.migrations[running.id] = running
	b.forgetOldMigrations()
	if b.migrations["running"] == nil {
		t.Error("a running migration was forgotten")
	}
	if b.migrations["0"] != nil || b.migrations[fmt.Sprint(keptMigrations+9)] == nil {
		t.Error("the oldest finished migrations must go first")
	}
	if n := len(b.migrations); n != keptMigrations {
		t.Errorf("%d migrations kept, want %d (49 finished + 1 running, room for the new one)", n, keptMigrations)
	}
}
