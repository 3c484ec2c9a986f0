package tokenstore

import (
	"context"
	"errors"
	"testing"
	"time"
)

func TestRotateKey(t *testing.T) {
	dir := t.TempDir()
	oldKey := []byte("0123456789abcdef0123456789abcdef")
	newKey := []byte("fedcba9876543210fedcba9876543210")
	ctx := context.Background()

	s, err := Open(Options{Path: dir, EncryptionKey: oldKey})
	if err != nil {
		t.Fatal(err)
	}
	want := &Token{Account: "acme", Login: "a@b.c", KeyHash: s.HashKey("k"), AccessToken: "at-rotate",
		RefreshToken: "rt-rotate", Expiry: time.Now().Add(time.Hour).UTC(), IssuedAt: time.Now().UTC()}
	if err := s.Put(ctx, want); err != nil {
		t.Fatal(err)
	}
	hash := s.HashKey("k")

	if err := RotateKey(dir, oldKey, newKey); !errors.Is(err, ErrLocked) {
		t.Fatalf("rotating an open store: got %v, want ErrLocked", err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := RotateKey(dir, newKey, oldKey); !errors.Is(err, ErrEncryptionKey) {
		t.Fatalf("rotating with a wrong old key: got %v, want ErrEncryptionKey", err)
	}
	if err := RotateKey(dir, oldKey, newKey); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(Options{Path: dir, EncryptionKey: oldKey}); !errors.Is(err, ErrEncryptionKey) {
		t.Fatalf("old key after rotation: got %v, want ErrEncryptionKey", err)
	}
	s2, err := Open(Options{Path: dir, EncryptionKey: newKey})
	if err != nil {
		t.Fatalf("new key after rotation: %v", err)
	}
	defer s2.Close()
	got, err := storedToken(t, s2, "acme", "a@b.c")
	if err != nil || got.AccessToken != want.AccessToken || got.RefreshToken != want.RefreshToken {
		t.Fatalf("token after rotation: %+v, %v", got, err)
	}
	if string(s2.HashKey("k")) != string(hash) {
		t.Fatal("key hashes changed with the rotation")
	}
}
