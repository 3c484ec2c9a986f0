package tokenstore

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"
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
	if got.RefreshToken != "" || !got.Refreshable() {
		t.Fatalf("Get from the cache: refresh token %q, refreshable %v; want none carried, refreshable",
			got.RefreshToken, got.Refreshable())
	}
	if st, err := storedToken(t, s, "acme", "a@example.com"); err != nil || st.RefreshToken != want.RefreshToken || !sameToken(st, want) {
		t.Fatalf("the stored pair = %+v, %v; want %+v", st, err, want)
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
	if st, err := storedToken(t, s, "acme", "a@example.com"); err != nil || st.RefreshToken != want.RefreshToken {
		t.Fatalf("the stored pair after reopen = %+v, %v; want %+v", st, err, want)
	}
}

// TestOddLogins stores users whose account and login hold NUL bytes, the
// record prefixes and strings that would collide under naive concatenation:
// each must be its own record.
func TestOddLogins(t *testing.T) {
	dir := t.TempDir()
	s := openDir(t, dir, nil)
	pairs := [][2]string{
		{"a", "bc"}, {"ab", "c"}, {"abc", "x"}, // "a"+"bc" == "ab"+"c"
		{"acme", "x\x00y"}, {"acme\x00x", "y"}, {"acme", "\x00"}, {"acme\x00", "z"},
		{"acme", "t/acme"}, {"t/acme", "acme"}, {"acme", "a/x"}, {"acme", "s/x"}, {"acme", "m/keyhash-secret"},
		{"\x01", "acme"}, {"\x05acme", "x"}, {"acme", "\xff\xfe"}, {"акме", "пользователь@пример.рф"},
	}
	for _, p := range pairs {
		if err := s.Put(bg, testToken(p[0], p[1])); err != nil {
			t.Fatalf("Put(%q, %q): %v", p[0], p[1], err)
		}
	}
	check := func(s *Badger, when string) {
		t.Helper()
		for _, p := range pairs {
			got, err := s.Get(bg, p[0], p[1])
			if err != nil {
				t.Fatalf("%s: Get(%q, %q): %v", when, p[0], p[1], err)
			}
			if !sameToken(got, testToken(p[0], p[1])) {
				t.Fatalf("%s: Get(%q, %q) = %+v", when, p[0], p[1], got)
			}
		}
		n := 0
		if err := s.List(bg, func(*Token) error { n++; return nil }); err != nil {
			t.Fatal(err)
		}
		if n != len(pairs) {
			t.Fatalf("%s: List saw %d tokens, want %d", when, n, len(pairs))
		}
		for _, p := range [][2]string{{"a", "b"}, {"", "abc"}, {"acme", "x"}, {"acme", "t"}} {
			if _, err := s.Get(bg, p[0], p[1]); !errors.Is(err, ErrNotFound) {
				t.Fatalf("%s: Get(%q, %q) err = %v, want ErrNotFound", when, p[0], p[1], err)
			}
		}
	}
	check(s, "cached")
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openDir(t, dir, nil)
	defer s.Close()
	check(s, "after reopen")
	if err := s.Delete(bg, "a", "bc"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Get(bg, "ab", "c"); err != nil {
		t.Fatalf("deleting (a, bc) removed (ab, c): %v", err)
	}
}

func TestPutValidation(t *testing.T) {
	s := openMem(t)
	for _, tok := range []*Token{nil, {Login: "x"}, {Account: "x"}} {
		if err := s.Put(bg, tok); err == nil {
			t.Errorf("Put(%+v) succeeded", tok)
		}
	}
	long := testToken("acme", strings.Repeat("x", maxKeyLen))
	if err := s.Put(bg, long); err == nil {
		t.Error("Put of a too long login succeeded")
	}
	if _, err := s.Get(bg, long.Account, long.Login); !errors.Is(err, ErrNotFound) {
		t.Errorf("Get of a too long login: %v", err)
	}
	ctx, cancel := context.WithCancel(bg)
	cancel()
	if err := s.Put(ctx, testToken("acme", "x")); !errors.Is(err, context.Canceled) {
		t.Errorf("Put with a cancelled context: %v", err)
	}
}

// TestPutCopies checks that the store keeps its own copy: changing the
// caller's token after Put changes nothing stored.
func TestPutCopies(t *testing.T) {
	s := openMem(t)
	tok := testToken("acme", "a")
	if err := s.Put(bg, tok); err != nil {
		t.Fatal(err)
	}
	tok.AccessToken = "changed"
	tok.KeyHash[0] = 99
	got, _ := s.Get(bg, "acme", "a")
	if !sameToken(got, testToken("acme", "a")) {
		t.Fatalf("cached token changed with the caller's: %+v", got)
	}
}

// TestListReadsDatabase lists tokens that are not in the cache (a fresh
// store) and stops at fn's error.
func TestListReadsDatabase(t *testing.T) {
	dir := t.TempDir()
	s := openDir(t, dir, nil)
	want := map[string]bool{}
	for i := 0; i < 50; i++ {
		login := fmt.Sprintf("user%d@example.com", i)
		want[login] = true
		if err := s.Put(bg, testToken("acme", login)); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openDir(t, dir, nil)
	defer s.Close()
	if err := s.PutSession(bg, "sid", Session{Account: "acme", Login: "x", Expires: time.Now().Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	if err := s.PutAttempt(bg, Attempt{Account: "acme", Login: "y", At: time.Now()}); err != nil {
		t.Fatal(err)
	}
	got := map[string]bool{}
	err := s.List(bg, func(tok *Token) error {
		if !sameToken(tok, testToken("acme", tok.Login)) {
			t.Errorf("List gave %+v", tok)
		}
		got[tok.Login] = true
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(want) {
		t.Fatalf("List saw %d tokens, want %d", len(got), len(want))
	}
	stop := errors.New("stop")
	n := 0
	if err := s.List(bg, func(*Token) error { n++; return stop }); err != stop || n != 1 {
		t.Fatalf("List with a failing fn: err = %v after %d calls, want stop after 1", err, n)
	}
}

// TestSummariesMatchList: Summaries gives, for every stored pair, what
// List's token says (a dead pair without a refresh token, zero times, names
// of any bytes, a user only in the database), stops at fn's error, and
// refuses a corrupt record as List does.
func TestSummariesMatchList(t *testing.T) {
	dir := t.TempDir()
	s := openDir(t, dir, make([]byte, 32))
	defer func() { _ = s.Close() }()
	now := time.Unix(1_800_000_000, 123)
	toks := []*Token{
		testToken("acme", "a@example.com"),
		{Account: "acme", Login: "dead@example.com", KeyHash: []byte{1}, AccessToken: "x", Expiry: now, IssuedAt: now.Add(-time.Hour)},
		{Account: "acme", Login: "zero@example.com", KeyHash: []byte{2}, AccessToken: "y", RefreshToken: "r"},
		{Account: "b\x00\xff", Login: "\u00e9\x01@x", KeyHash: []byte{3}, AccessToken: "z", RefreshToken: "r", Expiry: now.Add(time.Hour), IssuedAt: now},
	}
	for _, tok := range toks {
		if err := s.Put(bg, tok); err != nil {
			t.Fatal(err)
		}
	}
	want := map[string]Summary{}
	if err := s.List(bg, func(tok *Token) error { want[tok.Account+"/"+tok.Login] = tok.Summary(); return nil }); err != nil {
		t.Fatal(err)
	}
	got := map[string]Summary{}
	if err := s.Summaries(bg, func(sum Summary) error { got[sum.Account+"/"+sum.Login] = sum; return nil }); err != nil {
		t.Fatal(err)
	}
	if len(want) != len(toks) || len(got) != len(want) {
		t.Fatalf("List saw %d pairs, Summaries %d; %d stored", len(want), len(got), len(toks))
	}
	for k, w := range want {
		g := got[k]
		if g.Account != w.Account || g.Login != w.Login || g.Refreshable != w.Refreshable ||
			!g.Expiry.Equal(w.Expiry) || !g.IssuedAt.Equal(w.IssuedAt) {
			t.Errorf("%q: Summaries gave %+v, List's token %+v", k, g, w)
		}
	}
	if got["acme/dead@example.com"].Refreshable || !got["acme/a@example.com"].Refreshable {
		t.Errorf("Refreshable wrong: %+v", got)
	}

	stop := errors.New("stop")
	n := 0
	if err := s.Summaries(bg, func(Summary) error { n++; return stop }); err != stop || n != 1 {
		t.Fatalf("Summaries with a failing fn: err = %v after %d calls, want stop after 1", err, n)
	}

	// A record cut short: an error, not a panic, from both.
	rec := encodeToken(testToken("acme", "cut@example.com"))
	if err := s.db.Update(func(txn *badger.Txn) error {
		return txn.Set(pairKey(prefixToken, "acme", "cut@example.com"), rec[:len(rec)-5])
	}); err != nil {
		t.Fatal(err)
	}
	if err := s.Summaries(bg, func(Summary) error { return nil }); !errors.Is(err, errCorrupt) {
		t.Errorf("Summaries over a corrupt record: %v, want errCorrupt", err)
	}
	if err := s.List(bg, func(*Token) error { return nil }); !errors.Is(err, errCorrupt) {
		t.Errorf("List over a corrupt record: %v, want errCorrupt", err)
	}
}

// TestTouchPersisted: Touch is visible in List at once, written by Sweep,
// and survives a restart; Close persists it too.
func TestTouchPersisted(t *testing.T) {
	dir := t.TempDir()
	s := openDir(t, dir, nil)
	tok := testToken("acme", "a")
	tok.LastUsed = tok.IssuedAt
	if err := s.Put(bg, tok); err != nil {
		t.Fatal(err)
	}
	if err := s.Put(bg, testToken("acme", "b")); err != nil {
		t.Fatal(err)
	}
	used := tok.IssuedAt.Add(time.Hour)
	s.Touch("acme", "a", used)
	s.Touch("acme", "a", used.Add(-time.Second)) // older: ignored
	s.Touch("acme", "nobody", used)              // not cached: ignored
	if got, _ := s.Get(bg, "acme", "a"); !got.LastUsed.Equal(tok.LastUsed) {
		t.Fatalf("Get's LastUsed changed before Sweep: %v", got.LastUsed)
	}
	if lu := listLastUsed(t, s)["a"]; !lu.Equal(used) {
		t.Fatalf("List LastUsed = %v, want %v", lu, used)
	}
	if _, err := s.Sweep(bg, time.Now()); err != nil {
		t.Fatal(err)
	}
	if got, _ := s.Get(bg, "acme", "a"); !got.LastUsed.Equal(used) {
		t.Fatalf("Get's LastUsed after Sweep = %v, want %v", got.LastUsed, used)
	}
	// A use less than lastUsedResolution later is not worth a rewrite
	// (List still shows it); a later one is persisted by Close.
	s.Touch("acme", "a", used.Add(time.Minute))
	if lu := listLastUsed(t, s)["a"]; !lu.Equal(used.Add(time.Minute)) {
		t.Fatalf("List LastUsed = %v, want %v", lu, used.Add(time.Minute))
	}
	if _, err := s.Sweep(bg, time.Now()); err != nil {
		t.Fatal(err)
	}
	if stored := readRaw(t, s, "acme", "a"); !stored.LastUsed.Equal(used) {
		t.Fatalf("a use %v after the stored one was written", time.Minute)
	}
	used2 := tok.IssuedAt.Add(2 * time.Hour)
	s.Touch("acme", "b", used2)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openDir(t, dir, nil)
	defer s.Close()
	lu := listLastUsed(t, s)
	if !lu["a"].Equal(used) || !lu["b"].Equal(used2) {
		t.Fatalf("after reopen LastUsed = %v, want a=%v b=%v", lu, used, used2)
	}
	got, _ := storedToken(t, s, "acme", "a")
	if got.AccessToken != tok.AccessToken || got.RefreshToken != tok.RefreshToken {
		t.Fatal("persisting last use changed the pair")
	}
}

// TestTouchNeverOverwritesNewerPair: if the database holds another pair
// than the cached one, Sweep leaves it alone.
func TestTouchNeverOverwritesNewerPair(t *testing.T) {
	s := openMem(t)
	old := testToken("acme", "a")
	if err := s.Put(bg, old); err != nil {
		t.Fatal(err)
	}
	s.Touch("acme", "a", time.Now())
	// A newer pair written behind the cache's back (as if by a write the
	// cache has not seen yet).
	newer := testToken("acme", "a")
	newer.AccessToken, newer.RefreshToken = "newer-access", "newer-refresh"
	writeRaw(t, s, newer)
	if _, err := s.Sweep(bg, time.Now()); err != nil {
		t.Fatal(err)
	}
	stored := readRaw(t, s, "acme", "a")
	if !sameToken(stored, newer) {
		t.Fatalf("Sweep overwrote the newer pair: stored %+v", stored)
	}
}

// TestPutAfterTouchKeepsNewPair: a Put between Touch and Sweep wins; the
// use is then recorded on the new pair.
func TestPutAfterTouchKeepsNewPair(t *testing.T) {
	s := openMem(t)
	if err := s.Put(bg, testToken("acme", "a")); err != nil {
		t.Fatal(err)
	}
	at := time.Now().Add(time.Hour)
	s.Touch("acme", "a", at)
	newer := testToken("acme", "a")
	newer.AccessToken = "newer-access"
	if err := s.Put(bg, newer); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Sweep(bg, time.Now()); err != nil {
		t.Fatal(err)
	}
	stored := readRaw(t, s, "acme", "a")
	if stored.AccessToken != "newer-access" || !stored.LastUsed.Equal(at) {
		t.Fatalf("stored %q last used %v, want the newer pair used at %v", stored.AccessToken, stored.LastUsed, at)
	}
	got, _ := s.Get(bg, "acme", "a")
	if !sameToken(got, stored) {
		t.Fatalf("cache %+v differs from the database %+v", got, stored)
	}
}

func listLastUsed(t *testing.T, s *Badger) map[string]time.Time {
	t.Helper()
	m := map[string]time.Time{}
	if err := s.List(bg, func(tok *Token) error { m[tok.Login] = tok.LastUsed; return nil }); err != nil {
		t.Fatal(err)
	}
	return m
}

// writeRaw writes tok straight into the database, bypassing the cache.
func writeRaw(t testing.TB, s *Badger, tok *Token) {
	t.Helper()
	err := s.db.Update(func(txn *badger.Txn) error {
		return txn.Set(pairKey(prefixToken, tok.Account, tok.Login), encodeToken(tok))
	})
	if err != nil {
		t.Fatal(err)
	}
}

// readRaw reads a token straight from the database (nil if none).
func readRaw(t testing.TB, s *Badger, account, login string) *Token {
	t.Helper()
	var tok *Token
	err := s.db.View(func(txn *badger.Txn) error {
		item, err := txn.Get(pairKey(prefixToken, account, login))
		if err != nil {
			return err
		}
		return item.Value(func(v []byte) (err error) {
			tok, err = decodeToken(v)
			return err
		})
	})
	if err != nil && !errors.Is(err, badger.ErrKeyNotFound) {
		t.Fatal(err)
	}
	return tok
}
