package tokenstore

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// secrets are recognisable random values written into a store.
type secrets struct {
	access, refresh, apiKey string
	keyHash                 []byte
}

func newSecrets(t *testing.T) secrets {
	r := make([]byte, 48)
	if _, err := rand.Read(r); err != nil {
		t.Fatal(err)
	}
	return secrets{
		access:  "AT-" + hex.EncodeToString(r[:16]),
		refresh: "RT-" + hex.EncodeToString(r[16:32]),
		apiKey:  hex.EncodeToString(r[32:]),
	}
}

// writeSecrets stores a token, a session and a pending exchange holding sc.
func writeSecrets(t *testing.T, s *Badger, sc *secrets) {
	t.Helper()
	sc.keyHash = s.HashKey(sc.apiKey)
	tok := testToken("acme", "a@example.com")
	tok.AccessToken, tok.RefreshToken, tok.KeyHash = sc.access, sc.refresh, sc.keyHash
	if err := s.Put(bg, tok); err != nil {
		t.Fatal(err)
	}
	exp := time.Now().Add(time.Hour)
	if err := s.PutPending(bg, Pending{State: "st", Account: "acme", Login: "a@example.com", KeyHash: sc.keyHash, Expires: exp}); err != nil {
		t.Fatal(err)
	}
	if err := s.PutAttempt(bg, Attempt{Account: "acme", Login: "a@example.com", KeyHash: sc.keyHash, At: time.Now()}); err != nil {
		t.Fatal(err)
	}
}

// findSecrets returns which of sc's values appear in any file under dir.
func findSecrets(t *testing.T, dir string, sc secrets) []string {
	t.Helper()
	needles := map[string][]byte{
		"access token":      []byte(sc.access),
		"refresh token":     []byte(sc.refresh),
		"api key":           []byte(sc.apiKey),
		"key hash":          sc.keyHash,
		"key hash (base64)": []byte(base64.StdEncoding.EncodeToString(sc.keyHash)),
		"key hash (hex)":    []byte(hex.EncodeToString(sc.keyHash)),
	}
	var found []string
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		for name, n := range needles {
			if bytes.Contains(b, n) {
				found = append(found, name+" in "+filepath.Base(path))
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return found
}

// TestEncryptionAtRest: with a key, no token, key or key hash is readable
// in any file, while the store is open (write-ahead log) and after Close
// (tables). Without a key the same scan finds the tokens: the scan works.
func TestEncryptionAtRest(t *testing.T) {
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		t.Fatal(err)
	}
	t.Run("encrypted", func(t *testing.T) {
		dir := t.TempDir()
		s := openDir(t, dir, key)
		sc := newSecrets(t)
		writeSecrets(t, s, &sc)
		if f := findSecrets(t, dir, sc); len(f) > 0 {
			t.Errorf("open store: found %v", f)
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		if f := findSecrets(t, dir, sc); len(f) > 0 {
			t.Errorf("closed store: found %v", f)
		}
		s = openDir(t, dir, key)
		defer s.Close()
		got, err := s.Get(bg, "acme", "a@example.com")
		if err != nil || got.AccessToken != sc.access {
			t.Fatalf("reading back with the key: %v", err)
		}
	})
	t.Run("plain", func(t *testing.T) {
		dir := t.TempDir()
		s := openDir(t, dir, nil)
		sc := newSecrets(t)
		writeSecrets(t, s, &sc)
		if f := strings.Join(findSecrets(t, dir, sc), ";"); !strings.Contains(f, "access token") || !strings.Contains(f, "refresh token") {
			t.Errorf("open unencrypted store: scan found %q, want the tokens", f)
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		f := strings.Join(findSecrets(t, dir, sc), ";")
		if !strings.Contains(f, "access token") || !strings.Contains(f, "refresh token") {
			t.Errorf("closed unencrypted store: scan found %q, want the tokens", f)
		}
		if strings.Contains(f, "api key") {
			t.Errorf("the API key itself was stored: %q", f)
		}
	})
}

// TestWrongKey: a store opened with another key, without its key, or an
// unencrypted store opened with a key fails with ErrEncryptionKey, and the
// data is still there afterwards.
func TestWrongKey(t *testing.T) {
	key := bytes.Repeat([]byte{7}, 32)
	dir := t.TempDir()
	s := openDir(t, dir, key)
	if err := s.Put(bg, testToken("acme", "a")); err != nil {
		t.Fatal(err)
	}
	hash := s.HashKey("k")
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	for name, k := range map[string][]byte{
		"other key": bytes.Repeat([]byte{8}, 32),
		"short key": bytes.Repeat([]byte{7}, 16),
		"no key":    nil,
	} {
		_, err := Open(Options{Path: dir, EncryptionKey: k})
		if !errors.Is(err, ErrEncryptionKey) {
			t.Errorf("%s: Open err = %v, want ErrEncryptionKey", name, err)
		}
	}
	s = openDir(t, dir, key)
	if tok, err := s.Get(bg, "acme", "a"); err != nil || !sameToken(tok, testToken("acme", "a")) {
		t.Fatalf("after failed opens: Get = %v, %v", tok, err)
	}
	if !bytes.Equal(s.HashKey("k"), hash) {
		t.Fatal("after failed opens the key-hash secret changed")
	}
	s.Close()

	plain := t.TempDir()
	s = openDir(t, plain, nil)
	if err := s.Put(bg, testToken("acme", "a")); err != nil {
		t.Fatal(err)
	}
	s.Close()
	if _, err := Open(Options{Path: plain, EncryptionKey: key}); !errors.Is(err, ErrEncryptionKey) {
		t.Errorf("unencrypted store with a key: err = %v, want ErrEncryptionKey", err)
	}
	s = openDir(t, plain, nil)
	defer s.Close()
	if _, err := s.Get(bg, "acme", "a"); err != nil {
		t.Fatalf("unencrypted store after a failed open: %v", err)
	}
}

func TestBadKeyLength(t *testing.T) {
	_, err := Open(Options{InMemory: true, EncryptionKey: make([]byte, 20)})
	if err == nil || !strings.Contains(err.Error(), "20 bytes") {
		t.Fatalf("Open with a 20-byte key: %v", err)
	}
}

// TestLocked: a second Open of a directory in use fails with ErrLocked
// and leaves the first store working; after Close it opens.
func TestLocked(t *testing.T) {
	dir := t.TempDir()
	s := openDir(t, dir, nil)
	if err := s.Put(bg, testToken("acme", "a")); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 2; i++ {
		s2, err := Open(Options{Path: dir})
		if !errors.Is(err, ErrLocked) {
			if s2 != nil {
				s2.Close()
			}
			t.Fatalf("second Open: err = %v, want ErrLocked", err)
		}
		if !strings.Contains(err.Error(), dir) {
			t.Errorf("lock error does not name the directory: %v", err)
		}
	}
	if err := s.Put(bg, testToken("acme", "b")); err != nil {
		t.Fatalf("first store after a refused Open: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openDir(t, dir, nil)
	defer s.Close()
	for _, l := range []string{"a", "b"} {
		if _, err := s.Get(bg, "acme", l); err != nil {
			t.Fatalf("Get %s after reopen: %v", l, err)
		}
	}
}

// TestBadgerLockRecognised: Badger's own lock error (text only) maps to ErrLocked.
func TestBadgerLockRecognised(t *testing.T) {
	err := openError("/x", errors.New(`Cannot acquire directory lock on "/x".  Another process is using this Badger database. err: resource temporarily unavailable`))
	if !errors.Is(err, ErrLocked) {
		t.Fatalf("openError = %v, want ErrLocked", err)
	}
}

func TestDirectoryMode(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "a", "store")
	s := openDir(t, dir, nil)
	defer s.Close()
	fi, err := os.Stat(dir)
	if err != nil {
		t.Fatal(err)
	}
	if m := fi.Mode().Perm(); m != 0o700 {
		t.Fatalf("store directory mode = %v, want 0700", m)
	}
}

// TestHashKey: stable across reopen, different for different keys and for
// different stores, and not a plain hash of the key.
func TestHashKey(t *testing.T) {
	dir := t.TempDir()
	s := openDir(t, dir, nil)
	a, b := s.HashKey("key-a"), s.HashKey("key-b")
	if len(a) != 32 || bytes.Equal(a, b) {
		t.Fatalf("HashKey: %x, %x", a, b)
	}
	if !bytes.Equal(a, s.HashKey("key-a")) {
		t.Fatal("HashKey not stable")
	}
	s.Close()
	if !bytes.Equal(a, s.HashKey("key-a")) {
		t.Fatal("HashKey after Close differs")
	}
	s = openDir(t, dir, nil)
	if !bytes.Equal(a, s.HashKey("key-a")) {
		t.Fatal("HashKey changed across reopen")
	}
	s.Close()
	other := openMem(t)
	if bytes.Equal(a, other.HashKey("key-a")) {
		t.Fatal("two stores share the key-hash secret")
	}
}
