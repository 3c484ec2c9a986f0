package tokenstore

import (
	"errors"
	"testing"
)

func TestTokenRoundTrip(t *testing.T) {
	s := openMem(t)
	if _, err := s.Get(bg, "acme", "a@example.com"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Get before Put: err = %v, want ErrNotFound", err)
	}
	want := testToken("acme", "a@example.com")
	if err := s.Put(bg, want); err != nil {
		t.Fatal(err)
	}
	got, err := s.Get(bg, "acme", "a@example.com")
	if err != nil {
		t.Fatal(err)
	}
	if !sameToken(got, want) {
		t.Fatalf("Get = %+v, want %+v", got, want)
	}
	if got == want {
		t.Fatal("Put kept the caller's *Token instead of a copy")
	}
	if err := s.Delete(bg, "acme", "a@example.com"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Get(bg, "acme", "a@example.com"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Get after Delete: err = %v, want ErrNotFound", err)
	}
	if err := s.Delete(bg, "acme", "a@example.com"); err != nil {
		t.Fatalf("Delete of a missing token: %v", err)
	}
}

func TestPutReopen(t *testing.T) {
	dir := t.TempDir()
	s := openDir(t, dir, nil)
	want := testToken("acme", "a@example.com")
	if err := s.Put(bg, want); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openDir(t, dir, nil)
	defer s.Close()
	got, err := s.Get(bg, "acme", "a@example.com")
	if err != nil {
		t.Fatalf("Get after reopen: %v", err)
	}
	if !sameToken(got, want) {
		t.Fatalf("Get after reopen = %+v, want %+v", got, want)
	}
}
