package tokenstore

import (
	"context"
	"testing"
	"time"
)

// openMem opens an in-memory store closed at the end of the test.
func openMem(t testing.TB) *Badger {
	t.Helper()
	s, err := Open(Options{InMemory: true})
	if err != nil {
		t.Fatalf("Open in memory: %v", err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// openDir opens a store in dir; the caller closes it.
func openDir(t testing.TB, dir string, key []byte) *Badger {
	t.Helper()
	s, err := Open(Options{Path: dir, EncryptionKey: key})
	if err != nil {
		t.Fatalf("Open %s: %v", dir, err)
	}
	return s
}

// testNow is fixed for the whole run, so that testToken gives equal tokens.
var testNow = time.Now().Truncate(time.Second)

func testToken(account, login string) *Token {
	now := testNow
	return &Token{
		Account:      account,
		Login:        login,
		KeyHash:      []byte{1, 2, 3, 4},
		AccessToken:  "access-" + account + "-" + login,
		RefreshToken: "refresh-" + account + "-" + login,
		Expiry:       now.Add(24 * time.Hour),
		IssuedAt:     now,
	}
}

func sameToken(a, b *Token) bool {
	return a.Account == b.Account && a.Login == b.Login && string(a.KeyHash) == string(b.KeyHash) &&
		a.AccessToken == b.AccessToken && a.RefreshToken == b.RefreshToken &&
		a.Expiry.Equal(b.Expiry) && a.IssuedAt.Equal(b.IssuedAt) && a.LastUsed.Equal(b.LastUsed)
}

var bg = context.Background()
