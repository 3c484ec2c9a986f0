package tokenstore

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"
)

func TestSessionRoundTrip(t *testing.T) {
	dir := t.TempDir()
	s := openDir(t, dir, nil)
	want := Session{Account: "acme", Login: "a\x00\xff@example.com", Expires: time.Now().Add(time.Hour)}
	if err := s.PutSession(bg, "sid-1", want); err != nil {
		t.Fatal(err)
	}
	got, err := s.GetSession(bg, "sid-1")
	if err != nil || got.Account != want.Account || got.Login != want.Login || !got.Expires.Equal(want.Expires) {
		t.Fatalf("GetSession = %+v, %v; want %+v", got, err, want)
	}
	if _, err := s.GetSession(bg, "sid-2"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("unknown session: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openDir(t, dir, nil)
	defer s.Close()
	if got, err := s.GetSession(bg, "sid-1"); err != nil || got.Login != want.Login {
		t.Fatalf("after reopen GetSession = %+v, %v", got, err)
	}
	if err := s.DeleteSession(bg, "sid-1"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.GetSession(bg, "sid-1"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("after DeleteSession: %v", err)
	}
	if err := s.DeleteSession(bg, "sid-1"); err != nil {
		t.Fatalf("DeleteSession of a missing session: %v", err)
	}
	if err := s.PutSession(bg, "", want); err == nil {
		t.Error("PutSession with an empty id succeeded")
	}
	if err := s.PutSession(bg, "x", Session{Account: "acme", Login: "a"}); err == nil {
		t.Error("PutSession without Expires succeeded")
	}
}

// TestSessionIDNotStored: only the hash of a session id or state is a key.
func TestSessionIDNotStored(t *testing.T) {
	s := openMem(t)
	exp := time.Now().Add(time.Hour)
	if err := s.PutSession(bg, "SESSION-ID-PLAIN", Session{Account: "a", Login: "b", Expires: exp}); err != nil {
		t.Fatal(err)
	}
	if err := s.PutPending(bg, Pending{State: "STATE-PLAIN", Account: "a", Login: "b", Expires: exp}); err != nil {
		t.Fatal(err)
	}
	err := s.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.DefaultIteratorOptions)
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			k := string(it.Item().Key())
			v, _ := it.Item().ValueCopy(nil)
			for _, secret := range []string{"SESSION-ID-PLAIN", "STATE-PLAIN"} {
				if strings.Contains(k, secret) || strings.Contains(string(v), secret) {
					t.Errorf("record %q holds %q", k, secret)
				}
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestSessionExpiry: Expires is checked in code, to the nanosecond, so a
// sub-second lifetime works although Badger's TTL is in whole seconds.
func TestSessionExpiry(t *testing.T) {
	s := openMem(t)
	now := time.Now()
	if err := s.PutSession(bg, "past", Session{Account: "a", Login: "b", Expires: now.Add(-time.Millisecond)}); err != nil {
		t.Fatal(err)
	}
	if err := s.PutSession(bg, "soon", Session{Account: "a", Login: "b", Expires: now.Add(300 * time.Millisecond)}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.GetSession(bg, "past"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("expired session: %v", err)
	}
	if _, err := s.GetSession(bg, "soon"); err != nil {
		t.Fatalf("live session: %v", err)
	}
	time.Sleep(time.Until(now.Add(400 * time.Millisecond)))
	if _, err := s.GetSession(bg, "soon"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("session after its Expires: %v", err)
	}
}

// TestBadgerTTL: the records carry Badger's TTL, so Badger itself drops
// them (no Sweep) once the second after Expires has passed.
func TestBadgerTTL(t *testing.T) {
	if testing.Short() {
		t.Skip("waits 2s for Badger's whole-second TTL")
	}
	s := openMem(t)
	exp := time.Now().Add(500 * time.Millisecond)
	if err := s.PutSession(bg, "sid", Session{Account: "a", Login: "b", Expires: exp}); err != nil {
		t.Fatal(err)
	}
	if err := s.PutPending(bg, Pending{State: "st", Account: "a", Login: "b", Expires: exp}); err != nil {
		t.Fatal(err)
	}
	if n := countKeys(t, s, prefixSession) + countKeys(t, s, prefixPending); n != 2 {
		t.Fatalf("%d records before expiry, want 2", n)
	}
	time.Sleep(time.Until(exp.Truncate(time.Second).Add(2 * time.Second)))
	if n := countKeys(t, s, prefixSession) + countKeys(t, s, prefixPending); n != 0 {
		t.Fatalf("%d records visible to Badger after their TTL, want 0", n)
	}
}

func TestExpiresAt(t *testing.T) {
	for _, c := range []struct {
		t    time.Time
		want uint64
	}{
		{time.Unix(100, 0), 100},
		{time.Unix(100, 1), 101},
		{time.Unix(100, 999999999), 101},
		{time.Unix(0, 0), 1},
		{time.Unix(-5, 0), 1},
	} {
		if got := expiresAt(c.t); got != c.want {
			t.Errorf("expiresAt(%v) = %d, want %d", c.t, got, c.want)
		}
	}
}

func TestPendingRoundTrip(t *testing.T) {
	s := openMem(t)
	now := time.Now()
	want := Pending{
		State: "state-1", Account: "acme", Login: "a@example.com", BaseURL: "https://acme.amocrm.ru",
		KeyHash: s.HashKey("key"), Created: now, Expires: now.Add(20 * time.Minute),
	}
	if err := s.PutPending(bg, want); err != nil {
		t.Fatal(err)
	}
	got, err := s.TakePending(bg, "state-1")
	if err != nil {
		t.Fatal(err)
	}
	if got.State != want.State || got.Account != want.Account || got.Login != want.Login ||
		got.BaseURL != want.BaseURL || string(got.KeyHash) != string(want.KeyHash) ||
		!got.Created.Equal(want.Created) || !got.Expires.Equal(want.Expires) {
		t.Fatalf("TakePending = %+v, want %+v", got, want)
	}
	if _, err := s.TakePending(bg, "state-1"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("second TakePending: %v", err)
	}
	if _, err := s.TakePending(bg, "unknown"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("unknown state: %v", err)
	}
	// Expired: not found, and removed.
	old := want
	old.State, old.Expires = "state-2", now.Add(-time.Millisecond)
	if err := s.PutPending(bg, old); err != nil {
		t.Fatal(err)
	}
	if _, err := s.TakePending(bg, "state-2"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("expired state: %v", err)
	}
	if n := countKeys(t, s, prefixPending); n != 0 {
		t.Fatalf("%d pending records left", n)
	}
	if err := s.PutPending(bg, Pending{Account: "a", Login: "b", Expires: now.Add(time.Hour)}); err == nil {
		t.Error("PutPending without a state succeeded")
	}
	if err := s.PutPending(bg, Pending{State: "x", Account: "a", Login: "b"}); err == nil {
		t.Error("PutPending without Expires succeeded")
	}
}

// TestTakePendingOnce: of 50 concurrent takers of one state exactly one
// gets it, for many states, on disk (synced writes) and in memory.
func TestTakePendingOnce(t *testing.T) {
	for _, mode := range []string{"disk", "memory"} {
		t.Run(mode, func(t *testing.T) {
			var s *Badger
			if mode == "disk" {
				s = openDir(t, t.TempDir(), nil)
				defer s.Close()
			} else {
				s = openMem(t)
			}
			const states, takers = 20, 50
			for i := 0; i < states; i++ {
				p := Pending{State: fmt.Sprint("state-", i), Account: "acme", Login: "a", Expires: time.Now().Add(time.Hour)}
				if err := s.PutPending(bg, p); err != nil {
					t.Fatal(err)
				}
			}
			for i := 0; i < states; i++ {
				state := fmt.Sprint("state-", i)
				var won, lost atomic.Int32
				var wg sync.WaitGroup
				start := make(chan struct{})
				for j := 0; j < takers; j++ {
					wg.Add(1)
					go func() {
						defer wg.Done()
						<-start
						p, err := s.TakePending(bg, state)
						switch {
						case err == nil && p.State == state:
							won.Add(1)
						case errors.Is(err, ErrNotFound):
							lost.Add(1)
						default:
							t.Errorf("TakePending: %+v, %v", p, err)
						}
					}()
				}
				close(start)
				wg.Wait()
				if won.Load() != 1 || lost.Load() != takers-1 {
					t.Fatalf("%s: %d takers won, %d lost; want 1 and %d", state, won.Load(), lost.Load(), takers-1)
				}
			}
		})
	}
}

func TestAttemptRoundTrip(t *testing.T) {
	s := openMem(t)
	if _, err := s.GetAttempt(bg, "acme", "a"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("GetAttempt before Put: %v", err)
	}
	want := Attempt{Account: "acme", Login: "a", At: time.Now(), KeyHash: s.HashKey("k"), Rejected: true}
	if err := s.PutAttempt(bg, want); err != nil {
		t.Fatal(err)
	}
	got, err := s.GetAttempt(bg, "acme", "a")
	if err != nil || got.Account != want.Account || got.Login != want.Login || !got.At.Equal(want.At) ||
		string(got.KeyHash) != string(want.KeyHash) || got.Rejected != want.Rejected {
		t.Fatalf("GetAttempt = %+v, %v; want %+v", got, err, want)
	}
	want.Rejected = false
	if err := s.PutAttempt(bg, want); err != nil {
		t.Fatal(err)
	}
	if got, _ := s.GetAttempt(bg, "acme", "a"); got.Rejected {
		t.Fatal("PutAttempt did not replace the previous attempt")
	}
	// The same pair of strings as a token is another record.
	if _, err := s.Get(bg, "acme", "a"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("an attempt is visible as a token: %v", err)
	}
	if err := s.PutAttempt(bg, Attempt{Login: "a"}); err == nil {
		t.Error("PutAttempt without an account succeeded")
	}
}

// TestAttemptTTL: an attempt older than AttemptTTL is gone.
func TestAttemptTTL(t *testing.T) {
	s, err := Open(Options{InMemory: true, AttemptTTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.PutAttempt(bg, Attempt{Account: "acme", Login: "old", At: time.Now().Add(-2 * time.Hour)}); err != nil {
		t.Fatal(err)
	}
	if err := s.PutAttempt(bg, Attempt{Account: "acme", Login: "new", At: time.Now().Add(-30 * time.Minute)}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.GetAttempt(bg, "acme", "old"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("attempt older than AttemptTTL: %v", err)
	}
	if _, err := s.GetAttempt(bg, "acme", "new"); err != nil {
		t.Fatalf("recent attempt: %v", err)
	}
}

func TestSweep(t *testing.T) {
	s := openMem(t)
	now := time.Now()
	for i := 0; i < 3; i++ {
		if err := s.PutSession(bg, fmt.Sprint("old", i), Session{Account: "a", Login: "b", Expires: now.Add(time.Minute)}); err != nil {
			t.Fatal(err)
		}
		if err := s.PutPending(bg, Pending{State: fmt.Sprint("old", i), Account: "a", Login: "b", Expires: now.Add(time.Minute)}); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.PutSession(bg, "live", Session{Account: "a", Login: "b", Expires: now.Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	if err := s.PutPending(bg, Pending{State: "live", Account: "a", Login: "b", Expires: now.Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	if err := s.Put(bg, testToken("acme", "a")); err != nil {
		t.Fatal(err)
	}
	n, err := s.Sweep(bg, now.Add(2*time.Minute))
	if err != nil || n != 6 {
		t.Fatalf("Sweep = %d, %v; want 6 removed", n, err)
	}
	if countKeys(t, s, prefixSession) != 1 || countKeys(t, s, prefixPending) != 1 || countKeys(t, s, prefixToken) != 1 {
		t.Fatal("Sweep removed the wrong records")
	}
	if n, err := s.Sweep(bg, now.Add(2*time.Minute)); err != nil || n != 0 {
		t.Fatalf("second Sweep = %d, %v; want 0", n, err)
	}
}

// countKeys counts the live records under prefix, as Badger sees them.
func countKeys(t testing.TB, s *Badger, prefix string) int {
	t.Helper()
	n := 0
	err := s.db.View(func(txn *badger.Txn) error {
		opts := badger.DefaultIteratorOptions
		opts.Prefix = []byte(prefix)
		it := txn.NewIterator(opts)
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			n++
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// TestSweepSkipsUnreadable: a session record Sweep cannot decode (a newer
// format, say) is left to its Badger TTL and does not stop Sweep.
func TestSweepSkipsUnreadable(t *testing.T) {
	s := openMem(t)
	exp := time.Now().Add(time.Hour)
	err := s.db.Update(func(txn *badger.Txn) error {
		e := badger.NewEntry(hashedKey(prefixSession, "future"), []byte{99, 1, 2})
		e.ExpiresAt = expiresAt(exp)
		return txn.SetEntry(e)
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.PutSession(bg, "old", Session{Account: "a", Login: "b", Expires: time.Now().Add(time.Minute)}); err != nil {
		t.Fatal(err)
	}
	if n, err := s.Sweep(bg, time.Now().Add(30*time.Minute)); err != nil || n != 1 {
		t.Fatalf("Sweep = %d, %v; want 1 removed", n, err)
	}
	if countKeys(t, s, prefixSession) != 1 {
		t.Fatal("the unreadable record was removed")
	}
}
