package tokenstore

import (
	"context"
	"errors"
	"testing"
	"time"
)

// TestSessionCacheCoherent checks that cached sessions follow Put, Delete and
// expiry, and that a reopened store still finds them on disk.
func TestSessionCacheCoherent(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	s, err := Open(Options{Path: dir})
	if err != nil {
		t.Fatal(err)
	}
	sess := Session{Account: "acme", Login: "a@b.c", Expires: time.Now().Add(time.Hour)}
	if err := s.PutSession(ctx, "sid-1", sess); err != nil {
		t.Fatal(err)
	}
	short := Session{Account: "acme", Login: "x@b.c", Expires: time.Now().Add(50 * time.Millisecond)}
	if err := s.PutSession(ctx, "sid-short", short); err != nil {
		t.Fatal(err)
	}
	if got, err := s.GetSession(ctx, "sid-1"); err != nil || got.Login != "a@b.c" {
		t.Fatalf("cached session: %+v %v", got, err)
	}
	time.Sleep(60 * time.Millisecond)
	if _, err := s.GetSession(ctx, "sid-short"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("expired cached session: %v, want ErrNotFound", err)
	}
	if err := s.DeleteSession(ctx, "sid-1"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.GetSession(ctx, "sid-1"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("deleted session: %v, want ErrNotFound", err)
	}
	if err := s.PutSession(ctx, "sid-2", sess); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.GetSession(ctx, "sid-2"); !errors.Is(err, ErrClosed) {
		t.Fatalf("after Close: %v, want ErrClosed", err)
	}
	s2, err := Open(Options{Path: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	if got, err := s2.GetSession(ctx, "sid-2"); err != nil || got.Login != "a@b.c" {
		t.Fatalf("session after reopen: %+v %v", got, err)
	}
}

func BenchmarkGetSessionCached(b *testing.B) {
	s, err := Open(Options{InMemory: true})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	if err := s.PutSession(ctx, "sid", Session{Account: "acme", Login: "a@b.c", Expires: time.Now().Add(time.Hour)}); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := s.GetSession(ctx, "sid"); err != nil {
			b.Fatal(err)
		}
	}
}
