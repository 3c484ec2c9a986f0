package tokenstore

import (
	"errors"
	"testing"
	"time"
)

// Extra conformance cases, written with the Redis engine and run against
// every engine; proposed for runConformance.
func runConformanceExtra(t *testing.T, e engine) {
	t.Run("UpdateReadsTheStore", func(t *testing.T) { confUpdateReadsTheStore(t, e) })
	t.Run("RevokeWithinASecond", func(t *testing.T) { confRevokeWithinASecond(t, e) })
}

// confUpdateReadsTheStore: an Update whose fn changes nothing returns the
// token the store holds, even if this handle's cache has not heard of the
// latest write yet (the broker's replay after a 401 relies on it).
func confUpdateReadsTheStore(t *testing.T, e engine) {
	s, p := both(t, e)
	for i := range 20 {
		v1 := testToken("acme", "u")
		v1.AccessToken = "first"
		if err := s.Put(bg, v1); err != nil {
			t.Fatal(err)
		}
		if _, err := p.Get(bg, "acme", "u"); err != nil {
			t.Fatal(err)
		}
		v2 := testToken("acme", "u")
		v2.AccessToken = "second"
		if err := s.Put(bg, v2); err != nil {
			t.Fatal(err)
		}
		got, err := p.Update(bg, "acme", "u", func(*Token) bool { return false })
		if err != nil || got.AccessToken != "second" {
			t.Fatalf("round %d: Update right after another handle's Put: %v, %v; want the stored pair", i, got, err)
		}
	}
}

// confRevokeWithinASecond: a token deleted through one handle is gone for
// the other within a second (issue 11: a revoke on one instance stops every
// instance within 1 s).
func confRevokeWithinASecond(t *testing.T, e engine) {
	s, p := both(t, e)
	if err := s.Put(bg, testToken("acme", "r")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the other handle to read the token", func() bool {
		_, err := p.Get(bg, "acme", "r")
		return err == nil
	})
	if err := s.Delete(bg, "acme", "r"); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(time.Second)
	for {
		_, err := p.Get(bg, "acme", "r")
		if errors.Is(err, ErrNotFound) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the other handle still serves a deleted token after 1 s: %v", err)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestConformanceExtraBadger(t *testing.T) {
	runConformanceExtra(t, engine{open: func(t *testing.T) Store { return openMem(t) }})
}

func TestConformanceExtraRedis(t *testing.T) {
	runConformanceExtra(t, redisEngine(startRedis(t), nil))
}
