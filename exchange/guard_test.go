package exchange

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/amobridge/amobridge/tokenstore"
)

// tokenFrom calls Token as a request from client would.
func (e *env) tokenFrom(client, login, key string) (*tokenstore.Token, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	t, err := e.b.TokenFrom(ctx, e.acct, client, login, key)
	noteErr(err)
	return t, err
}

// TestClientRejectBudget: a client inventing logins spends its budget of
// rejected exchanges and then starts none (amoCRM is not called); another
// client is not affected; after the window it may try again.
func TestClientRejectBudget(t *testing.T) {
	e := newEnv(t, fakeStore, func(c *Config) { c.RejectLimit = 3; c.RejectWindow = time.Minute })
	for i := range 3 {
		_, err := e.tokenFrom("203.0.113.9", fmt.Sprintf("nobody%d@example.com", i), "key"+randHex(20))
		wantKind(t, err, KindWrongKey)
	}
	_, err := e.tokenFrom("203.0.113.9", "nobody9@example.com", "key"+randHex(20))
	wantKind(t, err, KindBusy)
	var ee *Error
	if !errors.As(err, &ee) || ee.RetryAfter <= 0 || ee.RetryAfter > time.Minute {
		t.Errorf("a client over its budget: %v; want a Retry-After within the window", err)
	}
	if n := e.amo.stat(func(f *fakeAmo) int { return f.exchanges }); n != 3 {
		t.Errorf("%d exchange calls; want 3 (the fourth is refused before amoCRM)", n)
	}
	// Another client, and a real user of the first client's, are not held
	// back by someone else's budget... but the first client is, whoever it
	// names: it starts no exchange at all.
	login := "ann@example.com"
	key := e.user(login)
	if _, err := e.tokenFrom("198.51.100.7", login, key); err != nil {
		t.Fatalf("another client's user: %v", err)
	}
	e.clock.Advance(time.Minute)
	_, err = e.tokenFrom("203.0.113.9", "nobody10@example.com", "key"+randHex(20))
	wantKind(t, err, KindWrongKey) // tried again, and rejected again
}

// TestNoLockoutByAStranger: a stranger sends garbage keys for a user whose
// password changed. The stranger's rejected exchange spends the user's one
// exchange of the interval, but then it may not take the next interval's:
// the user's own client, presenting the new key, gets 503 with a
// Retry-After meanwhile and is exchanged when the interval has passed.
// Once the new key is proven, the old one is refused at once.
func TestNoLockoutByAStranger(t *testing.T) {
	e := newEnv(t, fakeStore, nil)
	const login = "kim@example.com"
	oldKey := e.user(login)
	e.mustToken(login, oldKey)
	newKey := "key" + randHex(20)
	e.amo.setKey(login, newKey) // the password changed
	e.clock.Advance(6 * time.Minute)

	const stranger, owner = "203.0.113.66", "192.0.2.10"
	_, err := e.tokenFrom(stranger, login, "key"+randHex(20))
	wantKind(t, err, KindWrongKey)

	_, err = e.tokenFrom(owner, login, newKey)
	wantKind(t, err, KindLimited)
	var ee *Error
	if !errors.As(err, &ee) || ee.RetryAfter <= 0 {
		t.Fatalf("the user's new key while the interval holds: %v; want 503 with a Retry-After", err)
	}
	e.clock.Advance(5*time.Minute + time.Second)
	for range 10 { // the stranger first, many times: it may not start one
		_, err = e.tokenFrom(stranger, login, "key"+randHex(20))
		wantKind(t, err, KindBusy)
	}
	tok, err := e.tokenFrom(owner, login, newKey)
	if err != nil || !keyMatches(tok, e.store.HashKey(newKey)) {
		t.Fatalf("the user's new key after the interval: %v", err)
	}
	if n := e.amo.stat(func(f *fakeAmo) int { return f.exchanges }); n != 3 {
		t.Errorf("%d exchange calls; want 3 (first key, the stranger's one, the new key)", n)
	}
	// The old key: refused at once (401), though the interval holds.
	_, err = e.tokenFrom(owner, login, oldKey)
	wantKind(t, err, KindWrongKey)
	if !errors.Is(err, errKeySuperseded) {
		t.Errorf("the old key after the new one was proven: %v; want it refused as superseded", err)
	}
}

// TestColdUserStrangerFirst: the stranger reaches a cold user first; the
// user's own client gets 503 until the interval passes, then its key.
func TestColdUserStrangerFirst(t *testing.T) {
	e := newEnv(t, fakeStore, nil)
	const login = "lee@example.com"
	key := e.user(login)
	_, err := e.tokenFrom("203.0.113.66", login, "key"+randHex(20))
	wantKind(t, err, KindWrongKey)
	_, err = e.tokenFrom("192.0.2.10", login, key)
	wantKind(t, err, KindLimited)
	e.clock.Advance(5*time.Minute + time.Second)
	_, err = e.tokenFrom("203.0.113.66", login, "key"+randHex(20))
	wantKind(t, err, KindBusy)
	e.mustToken(login, key)
}
