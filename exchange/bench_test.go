package exchange

import (
	"context"
	"testing"
)

// hitEnv returns an env with one user holding a fresh token.
func hitEnv(b testing.TB) (*env, string, string) {
	e := newEnv(b, badgerStore, nil)
	const login = "bench@example.com"
	key := e.user(login)
	e.mustToken(login, key)
	return e, login, key
}

func BenchmarkTokenHit(b *testing.B) {
	e, login, key := hitEnv(b)
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if _, err := e.b.Token(ctx, e.acct, login, key); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkTokenHitParallel(b *testing.B) {
	e, login, key := hitEnv(b)
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := e.b.Token(ctx, e.acct, login, key); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// The hot path allocates nothing beyond what the store's HashKey and Get
// themselves need.
func TestTokenHitAllocatesNothingOfItsOwn(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts are not stable under the race detector")
	}
	e, login, key := hitEnv(t)
	ctx := context.Background()
	floor := testing.AllocsPerRun(200, func() {
		e.store.HashKey(key)
		e.store.Get(ctx, e.acct.Name, login)
		e.store.Touch(e.acct.Name, login, e.clock.Now())
	})
	got := testing.AllocsPerRun(200, func() {
		if _, err := e.b.Token(ctx, e.acct, login, key); err != nil {
			t.Fatal(err)
		}
	})
	if got > floor {
		t.Errorf("Token hit: %.1f allocs, the store's own calls: %.1f", got, floor)
	}
}
