package tokenstore

import (
	"bytes"
	"context"
	"testing"
	"time"
)

// TestCopyBadgerToRedis: a Badger store's pairs and live sessions move into
// Redis as they are, and the users' keys still match (the key-hash secret
// moves too): cluster mode starts with no exchange.
func TestCopyBadgerToRedis(t *testing.T) {
	srv := startRedis(t)
	key := bytes.Repeat([]byte{9}, 32)
	src := openDir(t, t.TempDir(), key)
	defer src.Close()
	ctx := context.Background()
	tok := testToken("acme", "a@example.com")
	tok.KeyHash = src.HashKey("the-users-api-key")
	if err := src.Put(ctx, tok); err != nil {
		t.Fatal(err)
	}
	if err := src.PutSession(ctx, "live-session", Session{Account: "acme", Login: "a@example.com", Expires: time.Now().Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	dst := openRedisT(t, srv, RedisOptions{KeyPrefix: "copy:", EncryptionKey: key})
	n, err := Copy(ctx, dst, src)
	if err != nil || n.Tokens != 1 || n.Sessions != 1 {
		t.Fatalf("Copy: %+v, %v; want 1 token and 1 session", n, err)
	}
	// Another instance of the cluster sees them, and the key still matches.
	peer := openRedisT(t, srv, RedisOptions{KeyPrefix: "copy:", EncryptionKey: key})
	got, err := peer.Get(ctx, "acme", "a@example.com")
	if err != nil || !sameToken(got, tok) {
		t.Fatalf("the copied token: %+v, %v", got, err)
	}
	if !bytes.Equal(peer.HashKey("the-users-api-key"), tok.KeyHash) {
		t.Error("the user's key no longer matches its hash after the copy")
	}
	if s, err := peer.GetSession(ctx, "live-session"); err != nil || s.Login != "a@example.com" {
		t.Errorf("the copied session: %+v, %v", s, err)
	}
	// A second copy into a prefix that already holds tokens under another
	// secret is refused.
	other := openDir(t, t.TempDir(), key)
	defer other.Close()
	if err := other.Put(ctx, testToken("acme", "b@example.com")); err != nil {
		t.Fatal(err)
	}
	if _, err := Copy(ctx, dst, other); err == nil {
		t.Error("copying a store with another key-hash secret into a populated prefix succeeded")
	}
}
