package tokenstore

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// engine opens stores for the conformance suite. open returns a fresh,
// empty store; peer returns another handle on the same store (another
// process of a cluster), or nil if the engine has none (Badger: one
// process per directory).
type engine struct {
	open func(t *testing.T) Store
	peer func(t *testing.T, s Store) Store
}

// runConformance runs the store contract every engine must keep: the
// broker has one code path, whatever the engine.
func runConformance(t *testing.T, e engine) {
	t.Run("TokenRoundTrip", func(t *testing.T) { confTokenRoundTrip(t, e) })
	t.Run("Sessions", func(t *testing.T) { confSessions(t, e) })
	t.Run("PendingTakenOnce", func(t *testing.T) { confPendingTakenOnce(t, e) })
	t.Run("ClaimAttempt", func(t *testing.T) { confClaimAttempt(t, e) })
	t.Run("UpdateIsCompareAndSet", func(t *testing.T) { confUpdate(t, e) })
	t.Run("Lock", func(t *testing.T) { confLock(t, e) })
	t.Run("Reserve", func(t *testing.T) { confReserve(t, e) })
	t.Run("Subscribe", func(t *testing.T) { confSubscribe(t, e) })
	t.Run("Lease", func(t *testing.T) { confLease(t, e) })
}

// both returns two handles on one store: a peer if the engine has one,
// else the same store twice.
func both(t *testing.T, e engine) (Store, Store) {
	s := e.open(t)
	if e.peer != nil {
		return s, e.peer(t, s)
	}
	return s, s
}

func confTokenRoundTrip(t *testing.T, e engine) {
	s, p := both(t, e)
	ctx := context.Background()
	tok := testToken("acme", "a@example.com")
	if _, err := p.Get(ctx, "acme", "a@example.com"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Get of a missing token: %v; want ErrNotFound", err)
	}
	if err := s.Put(ctx, tok); err != nil {
		t.Fatal(err)
	}
	got, err := p.Get(ctx, "acme", "a@example.com")
	if err != nil || !sameToken(got, tok) {
		t.Fatalf("Get after Put (other handle): %+v, %v", got, err)
	}
	if st, err := storedToken(t, p, "acme", "a@example.com"); err != nil || st.RefreshToken != tok.RefreshToken {
		t.Fatalf("the stored pair (other handle): %+v, %v", st, err)
	}
	n := 0
	if err := p.List(ctx, func(*Token) error { n++; return nil }); err != nil || n != 1 {
		t.Fatalf("List: %d tokens, %v; want 1", n, err)
	}
	if err := s.Delete(ctx, "acme", "a@example.com"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the delete to reach the other handle", func() bool {
		_, err := p.Get(ctx, "acme", "a@example.com")
		return errors.Is(err, ErrNotFound)
	})
	if !equalBytes(s.HashKey("k"), p.HashKey("k")) || equalBytes(s.HashKey("k"), s.HashKey("j")) {
		t.Error("HashKey must be the same keyed hash on every handle, and differ by key")
	}
}

func confSessions(t *testing.T, e engine) {
	s, p := both(t, e)
	ctx := context.Background()
	sess := Session{Account: "acme", Login: "a@example.com", Expires: time.Now().Add(time.Hour)}
	if err := s.PutSession(ctx, "sid-1", sess); err != nil {
		t.Fatal(err)
	}
	got, err := p.GetSession(ctx, "sid-1")
	if err != nil || got.Login != sess.Login || got.Account != sess.Account {
		t.Fatalf("GetSession: %+v, %v", got, err)
	}
	if err := s.PutSession(ctx, "sid-2", Session{Account: "acme", Login: "b", Expires: time.Now().Add(-time.Second)}); err != nil {
		t.Fatal(err)
	}
	if _, err := p.GetSession(ctx, "sid-2"); !errors.Is(err, ErrNotFound) {
		t.Errorf("an expired session: %v; want ErrNotFound", err)
	}
	if err := p.DeleteSession(ctx, "sid-1"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.GetSession(ctx, "sid-1"); !errors.Is(err, ErrNotFound) {
		t.Errorf("a deleted session: %v; want ErrNotFound", err)
	}
}

func confPendingTakenOnce(t *testing.T, e engine) {
	s, p := both(t, e)
	ctx := context.Background()
	pend := Pending{State: "state-1", Account: "acme", Login: "a@example.com", BaseURL: "http://x",
		KeyHash: []byte{1, 2}, Created: time.Now(), Expires: time.Now().Add(time.Minute)}
	if err := s.PutPending(ctx, pend); err != nil {
		t.Fatal(err)
	}
	var won atomic.Int32
	var wg sync.WaitGroup
	for i := range 16 {
		h := s
		if i%2 == 1 {
			h = p
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			got, err := h.TakePending(ctx, "state-1")
			if err == nil {
				won.Add(1)
				if got.Login != pend.Login || got.BaseURL != pend.BaseURL {
					t.Errorf("TakePending: %+v", got)
				}
			} else if !errors.Is(err, ErrNotFound) {
				t.Errorf("TakePending: %v", err)
			}
		}()
	}
	wg.Wait()
	if won.Load() != 1 {
		t.Fatalf("%d of 16 racing TakePending calls won; want exactly 1", won.Load())
	}
}

func confClaimAttempt(t *testing.T, e engine) {
	s, p := both(t, e)
	ctx := context.Background()
	const interval = 2 * time.Second
	now := time.Now()
	var won atomic.Int32
	var wg sync.WaitGroup
	for i := range 16 {
		h := s
		if i%2 == 1 {
			h = p
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			a := Attempt{Account: "acme", Login: "a@example.com", At: now, KeyHash: []byte{byte(i)}}
			_, ok, err := h.ClaimAttempt(ctx, a, interval)
			if err != nil {
				t.Errorf("ClaimAttempt: %v", err)
			}
			if ok {
				won.Add(1)
			}
		}()
	}
	wg.Wait()
	if won.Load() != 1 {
		t.Fatalf("%d of 16 racing claims won; want exactly 1", won.Load())
	}
	last, ok, err := s.ClaimAttempt(ctx, Attempt{Account: "acme", Login: "a@example.com", At: now.Add(time.Second)}, interval)
	if err != nil || ok || last.At.IsZero() {
		t.Fatalf("a claim within the interval: %+v, %v, %v; want the last attempt and false", last, ok, err)
	}
	// A withdrawn claim (At zero) lets the next one through.
	if err := s.PutAttempt(ctx, Attempt{Account: "acme", Login: "a@example.com"}); err != nil {
		t.Fatal(err)
	}
	if _, ok, err := p.ClaimAttempt(ctx, Attempt{Account: "acme", Login: "a@example.com", At: time.Now()}, interval); err != nil || !ok {
		t.Fatalf("a claim after a withdrawn one: %v, %v; want it to win", ok, err)
	}
	// After the interval, a new claim wins.
	time.Sleep(interval + 100*time.Millisecond)
	if _, ok, err := s.ClaimAttempt(ctx, Attempt{Account: "acme", Login: "a@example.com", At: time.Now()}, interval); err != nil || !ok {
		t.Fatalf("a claim after the interval: %v, %v; want it to win", ok, err)
	}
}

func confUpdate(t *testing.T, e engine) {
	s, p := both(t, e)
	ctx := context.Background()
	if _, err := s.Update(ctx, "acme", "nobody", func(*Token) bool { return true }); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Update of a missing token: %v; want ErrNotFound", err)
	}
	tok := testToken("acme", "a@example.com")
	tok.RefreshToken = "r0"
	if err := s.Put(ctx, tok); err != nil {
		t.Fatal(err)
	}
	// 16 writers race to spend r0; a compare-and-set lets exactly one win.
	var won atomic.Int32
	var wg sync.WaitGroup
	for i := range 16 {
		h := s
		if i%2 == 1 {
			h = p
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			mine := fmt.Sprintf("r1-%d", i)
			got, err := h.Update(ctx, "acme", "a@example.com", func(t *Token) bool {
				if t.RefreshToken != "r0" {
					return false
				}
				t.RefreshToken = mine
				return true
			})
			if err != nil {
				t.Errorf("Update: %v", err)
				return
			}
			if got.RefreshToken == mine {
				won.Add(1)
			}
		}()
	}
	wg.Wait()
	if won.Load() != 1 {
		t.Fatalf("%d of 16 compare-and-set writers of one refresh token won; want exactly 1", won.Load())
	}
	// Counting through Update loses no increment.
	tok.RefreshToken = "count-0"
	if err := s.Put(ctx, tok); err != nil {
		t.Fatal(err)
	}
	for i := range 20 {
		h := s
		if i%2 == 1 {
			h = p
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := h.Update(ctx, "acme", "a@example.com", func(t *Token) bool {
				var n int
				fmt.Sscanf(t.RefreshToken, "count-%d", &n)
				t.RefreshToken = fmt.Sprintf("count-%d", n+1)
				return true
			}); err != nil {
				t.Errorf("Update: %v", err)
			}
		}()
	}
	wg.Wait()
	waitFor(t, "20 increments", func() bool {
		got, err := storedToken(t, p, "acme", "a@example.com")
		return err == nil && got.RefreshToken == "count-20"
	})
}

func confLock(t *testing.T, e engine) {
	s, p := both(t, e)
	ctx := context.Background()
	var inside, most atomic.Int32
	var wg sync.WaitGroup
	for i := range 8 {
		h := s
		if i%2 == 1 {
			h = p
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			unlock, err := h.Lock(ctx, "refresh/acme/a")
			if err != nil {
				t.Errorf("Lock: %v", err)
				return
			}
			n := inside.Add(1)
			for {
				m := most.Load()
				if n <= m || most.CompareAndSwap(m, n) {
					break
				}
			}
			time.Sleep(5 * time.Millisecond)
			inside.Add(-1)
			unlock()
		}()
	}
	wg.Wait()
	if most.Load() != 1 {
		t.Fatalf("%d holders of one lock at once; want 1", most.Load())
	}
	unlock, err := s.Lock(ctx, "refresh/acme/b")
	if err != nil {
		t.Fatal(err)
	}
	cctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
	defer cancel()
	if _, err := p.Lock(cctx, "refresh/acme/b"); err == nil {
		t.Fatal("a held lock was taken again")
	}
	unlock()
	unlock() // a second unlock does nothing
	u2, err := p.Lock(ctx, "refresh/acme/b")
	if err != nil {
		t.Fatalf("the lock after it was given back: %v", err)
	}
	u2()
}

func confReserve(t *testing.T, e engine) {
	s, p := both(t, e)
	ctx := context.Background()
	const every = 100 * time.Millisecond
	var waits []time.Duration
	for i := range 5 {
		h := s
		if i%2 == 1 {
			h = p
		}
		w, ok, err := h.Reserve(ctx, "pace/acme", every, time.Second)
		if err != nil || !ok {
			t.Fatalf("Reserve %d: %v, %v", i, ok, err)
		}
		waits = append(waits, w)
	}
	for i, w := range waits {
		want := time.Duration(i) * every
		if w < want-30*time.Millisecond || w > want+30*time.Millisecond {
			t.Errorf("turn %d waits %v; want about %v (turns %v apart)", i, w, want, every)
		}
	}
	// The queue is 400 ms long now: a caller that waits at most 100 ms is
	// refused, takes no turn, and is told when to come back.
	w, ok, err := p.Reserve(ctx, "pace/acme", every, every)
	if err != nil || ok || w <= 0 {
		t.Fatalf("Reserve past maxWait: %v, %v, %v; want refused with a wait", w, ok, err)
	}
	// Another queue is not affected.
	if w, ok, err := s.Reserve(ctx, "pace/other", every, 0); err != nil || !ok || w > 30*time.Millisecond {
		t.Fatalf("another queue: %v, %v, %v", w, ok, err)
	}
}

func confSubscribe(t *testing.T, e engine) {
	s, p := both(t, e)
	ctx := context.Background()
	got := make(chan string, 16)
	cancel := p.Subscribe(func(account, login string) {
		if account != "" {
			got <- account + "/" + login
		}
	})
	defer cancel()
	time.Sleep(50 * time.Millisecond) // a subscription may take a moment to start
	if err := s.Put(ctx, testToken("acme", "ev@example.com")); err != nil {
		t.Fatal(err)
	}
	select {
	case ev := <-got:
		if ev != "acme/ev@example.com" {
			t.Errorf("event %q; want acme/ev@example.com", ev)
		}
	case <-time.After(time.Second):
		t.Fatal("no event within a second of a Put")
	}
	if err := s.Delete(ctx, "acme", "ev@example.com"); err != nil {
		t.Fatal(err)
	}
	select {
	case <-got:
	case <-time.After(time.Second):
		t.Fatal("no event within a second of a Delete")
	}
}

func confLease(t *testing.T, e engine) {
	s, p := both(t, e)
	ctx := context.Background()
	ok, err := s.Lease(ctx, "keeper", time.Second)
	if err != nil || !ok {
		t.Fatalf("the first Lease: %v, %v", ok, err)
	}
	if ok, err := s.Lease(ctx, "keeper", time.Second); err != nil || !ok {
		t.Fatalf("the holder renewing: %v, %v", ok, err)
	}
	if e.peer == nil {
		return
	}
	if ok, err := p.Lease(ctx, "keeper", time.Second); err != nil || ok {
		t.Fatalf("another process while the lease is held: %v, %v; want false", ok, err)
	}
	time.Sleep(1200 * time.Millisecond)
	if ok, err := p.Lease(ctx, "keeper", time.Second); err != nil || !ok {
		t.Fatalf("another process after the lease ran out: %v, %v; want true", ok, err)
	}
}

// waitFor polls cond for up to two seconds.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("waited 2 s for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func equalBytes(a, b []byte) bool { return string(a) == string(b) }

func TestConformanceBadger(t *testing.T) {
	runConformance(t, engine{open: func(t *testing.T) Store { return openMem(t) }})
}
