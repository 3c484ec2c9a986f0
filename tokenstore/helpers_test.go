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

// sameToken reports whether a and b hold the same token. A token served
// from the cache does not carry its refresh token (Token.RefreshToken):
// then only whether the pair has one is compared; storedToken reads the
// stored pair, refresh token included.
func sameToken(a, b *Token) bool {
	return a.Account == b.Account && a.Login == b.Login && string(a.KeyHash) == string(b.KeyHash) &&
		a.AccessToken == b.AccessToken && sameRefresh(a, b) &&
		a.Expiry.Equal(b.Expiry) && a.IssuedAt.Equal(b.IssuedAt) && a.LastUsed.Equal(b.LastUsed)
}

// sameRefresh compares a's and b's refresh tokens, where both carry theirs,
// or else whether both pairs have one.
func sameRefresh(a, b *Token) bool {
	if (a.RefreshToken == "" && a.elided) || (b.RefreshToken == "" && b.elided) {
		return a.Refreshable() == b.Refreshable()
	}
	return a.RefreshToken == b.RefreshToken
}

// storedToken reads the user's stored pair, refresh token included,
// through Update (the way a refresh reads it).
func storedToken(t testing.TB, s Store, account, login string) (*Token, error) {
	t.Helper()
	return s.Update(context.Background(), account, login, func(*Token) bool { return false })
}

var bg = context.Background()
