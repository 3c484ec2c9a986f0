package tokenstore

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestClaim(t *testing.T) {
	dir := t.TempDir()
	s := openDir(t, dir, nil)
	if err := s.Claim("client-a"); err != nil {
		t.Fatal(err)
	}
	if err := s.Claim("client-a"); err != nil {
		t.Fatalf("claiming again for the same owner: %v", err)
	}
	err := s.Claim("client-b")
	if !errors.Is(err, ErrOwner) || !strings.Contains(err.Error(), "client-a") || !strings.Contains(err.Error(), "client-b") {
		t.Fatalf("claim by another integration: %v; want ErrOwner naming both", err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openDir(t, dir, nil)
	defer s.Close()
	if err := s.Claim("client-b"); !errors.Is(err, ErrOwner) {
		t.Fatalf("the owner is not kept across a reopen: %v", err)
	}
}

func TestMoveStore(t *testing.T) {
	base := t.TempDir()
	key := make([]byte, 32)
	s := openDir(t, base, key)
	tok := testToken("acme", "user@example.com")
	if err := s.Put(bg, tok); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	// Another integration's directory beside the store stays where it is.
	if err := os.MkdirAll(filepath.Join(base, "other", "x"), 0o700); err != nil {
		t.Fatal(err)
	}
	to := filepath.Join(base, "client-a")
	moved, err := MoveStore(base, to)
	if err != nil || !moved {
		t.Fatalf("MoveStore: %v, %v", moved, err)
	}
	if HoldsStore(base) {
		t.Error("the old place still holds a store")
	}
	if _, err := os.Stat(filepath.Join(base, "other", "x")); err != nil {
		t.Errorf("a subdirectory was moved or lost: %v", err)
	}
	s = openDir(t, to, key)
	got, err := s.Get(bg, "acme", "user@example.com")
	if err != nil || !sameToken(got, tok) {
		t.Fatalf("after the move: %v", err)
	}
	// Nothing to move now; a store in use cannot be moved.
	if moved, err := MoveStore(base, filepath.Join(base, "client-b")); moved || err != nil {
		t.Errorf("second MoveStore: %v, %v; want nothing moved", moved, err)
	}
	if _, err := MoveStore(to, filepath.Join(base, "client-c")); !errors.Is(err, ErrLocked) {
		t.Errorf("moving an open store: %v; want ErrLocked", err)
	}
	s.Close()
}

// TestMoveStoreFinishesAfterACrash: every file reached the temporary
// directory but the rename did not happen; the next call finishes it.
func TestMoveStoreFinishesAfterACrash(t *testing.T) {
	base := t.TempDir()
	s := openDir(t, base, nil)
	if err := s.Put(bg, testToken("acme", "a@example.com")); err != nil {
		t.Fatal(err)
	}
	s.Close()
	to := filepath.Join(base, "client-a")
	tmp := filepath.Join(base, ".client-a.moving")
	if err := os.Mkdir(tmp, 0o700); err != nil {
		t.Fatal(err)
	}
	entries, _ := os.ReadDir(base)
	for _, e := range entries {
		if e.Type().IsRegular() {
			if err := os.Rename(filepath.Join(base, e.Name()), filepath.Join(tmp, e.Name())); err != nil {
				t.Fatal(err)
			}
		}
	}
	if moved, err := MoveStore(base, to); !moved || err != nil {
		t.Fatalf("MoveStore after a crash: %v, %v", moved, err)
	}
	s = openDir(t, to, nil)
	defer s.Close()
	if _, err := s.Get(bg, "acme", "a@example.com"); err != nil {
		t.Fatal(err)
	}
}
