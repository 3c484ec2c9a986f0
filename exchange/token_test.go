package exchange

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/amobridge/amobridge/tokenstore"
)

func exchanges(f *fakeAmo) int  { return f.exchanges }
func limitHits(f *fakeAmo) int  { return f.limitHits }
func codeGrants(f *fakeAmo) int { return f.codeGrants }
func refreshes(f *fakeAmo) int  { return f.refreshCount }
func reuses(f *fakeAmo) int     { return f.reuses }
func rejections(f *fakeAmo) int { return f.rejections }

// checkNoLimitHits: the broker must never call exchange_api_key within
// amoCRM's interval.
func checkNoLimitHits(t *testing.T, e *env) {
	t.Helper()
	if n := e.amo.stat(limitHits); n != 0 {
		t.Errorf("broker called exchange_api_key %d times within amoCRM's interval", n)
	}
}

func TestColdConcurrentCallersShareOneExchange(t *testing.T) {
	for _, sk := range storeKinds {
		t.Run(string(sk), func(t *testing.T) {
			e := newEnv(t, sk, nil)
			const login = "anna@example.com"
			key := e.user(login)
			const n = 200
			toks := make([]*tokenstore.Token, n)
			errs := make([]error, n)
			var wg sync.WaitGroup
			start := make(chan struct{})
			for i := range n {
				wg.Add(1)
				go func() {
					defer wg.Done()
					<-start
					toks[i], errs[i] = e.token(login, key)
				}()
			}
			close(start)
			wg.Wait()
			for i := range n {
				if errs[i] != nil {
					t.Fatalf("caller %d: %v", i, errs[i])
				}
				if toks[i].AccessToken != toks[0].AccessToken {
					t.Fatalf("caller %d got another token", i)
				}
			}
			if got := e.amo.stat(exchanges); got != 1 {
				t.Errorf("%d exchanges, want 1", got)
			}
			if got := e.amo.stat(codeGrants); got != 1 {
				t.Errorf("%d code grants, want 1", got)
			}
			checkNoLimitHits(t, e)
			st := e.stored(login)
			if st == nil || st.AccessToken != toks[0].AccessToken || !bytes.Equal(st.KeyHash, e.store.HashKey(key)) {
				t.Fatalf("stored token does not match: %+v", st != nil)
			}
			// The next call is served from the store.
			if tok := e.mustToken(login, key); tok.AccessToken != toks[0].AccessToken {
				t.Error("a hit returned another token")
			}
			if got := e.amo.stat(exchanges); got != 1 {
				t.Errorf("%d exchanges after a hit, want 1", got)
			}
		})
	}
}

func TestManyUsersColdAtOnce(t *testing.T) {
	e := newEnv(t, badgerStore, nil)
	const n = 100
	logins := make([]string, n)
	keys := make([]string, n)
	for i := range n {
		logins[i] = fmt.Sprintf("user%03d@example.com", i)
		keys[i] = e.user(logins[i])
	}
	toks := make([]*tokenstore.Token, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			toks[i], errs[i] = e.token(logins[i], keys[i])
		}()
	}
	wg.Wait()
	seen := map[string]bool{}
	for i := range n {
		if errs[i] != nil {
			t.Fatalf("user %d: %v", i, errs[i])
		}
		if toks[i].Login != logins[i] || seen[toks[i].AccessToken] {
			t.Fatalf("user %d got a wrong or shared token", i)
		}
		seen[toks[i].AccessToken] = true
	}
	if got := e.amo.stat(exchanges); got != n {
		t.Errorf("%d exchanges, want %d", got, n)
	}
	checkNoLimitHits(t, e)
}

func TestSecondExchangeWithinIntervalIsLimited(t *testing.T) {
	e := newEnv(t, badgerStore, nil)
	const login = "bob@example.com"
	key := e.user(login)
	e.mustToken(login, key)
	if _, err := e.b.Revoke(context.Background(), e.acct.Name, login); err != nil {
		t.Fatal(err)
	}
	e.clock.Advance(2 * time.Minute)
	_, err := e.token(login, key)
	le := wantKind(t, err, KindLimited)
	if le.RetryAfter <= 2*time.Minute || le.RetryAfter > 3*time.Minute {
		t.Errorf("RetryAfter %v, want about 3m", le.RetryAfter)
	}
	if got := e.amo.stat(exchanges); got != 1 {
		t.Errorf("%d exchanges, want 1", got)
	}
	e.clock.Advance(3*time.Minute + time.Second)
	e.mustToken(login, key)
	if got := e.amo.stat(exchanges); got != 2 {
		t.Errorf("%d exchanges after the interval, want 2", got)
	}
	checkNoLimitHits(t, e)
}

func Test429FromAmoCRMIsHonoured(t *testing.T) {
	e := newEnv(t, fakeStore, nil)
	const login = "carl@example.com"
	key := e.user(login)
	retry := "600"
	e.amo.set(func(f *fakeAmo) {
		f.exchangeHook = func(w http.ResponseWriter, _ string) bool {
			if retry != "" {
				w.Header().Set("Retry-After", retry)
			}
			writeProblem(w, http.StatusTooManyRequests, "Too many requests")
			return true
		}
	})
	_, err := e.token(login, key)
	if got := wantKind(t, err, KindLimited).RetryAfter; got != 600*time.Second {
		t.Errorf("RetryAfter %v, want 10m (amoCRM's Retry-After)", got)
	}
	// The limit holds as long as amoCRM asked, not just the interval.
	e.clock.Advance(6 * time.Minute)
	_, err = e.token(login, key)
	if got := wantKind(t, err, KindLimited).RetryAfter; got <= 3*time.Minute || got > 4*time.Minute {
		t.Errorf("RetryAfter %v 6m later, want about 4m", got)
	}
	if got := e.amo.stat(exchanges); got != 1 {
		t.Errorf("%d exchanges, want 1", got)
	}
	// Without Retry-After, the interval.
	e.clock.Advance(5 * time.Minute)
	e.amo.set(func(*fakeAmo) { retry = "" })
	_, err = e.token(login, key)
	if got := wantKind(t, err, KindLimited).RetryAfter; got != 5*time.Minute {
		t.Errorf("RetryAfter %v, want the 5m interval", got)
	}
	if got := e.amo.stat(exchanges); got != 2 {
		t.Errorf("%d exchanges, want 2", got)
	}
	if e.stored(login) != nil {
		t.Error("a token was stored")
	}
}

func TestNoCodeInTimeThenLateCodeCompletes(t *testing.T) {
	for _, sk := range storeKinds {
		t.Run(string(sk), func(t *testing.T) {
			e := newEnv(t, sk, func(c *Config) { c.ExchangeTimeout = 100 * time.Millisecond })
			e.amo.set(func(f *fakeAmo) { f.callbackDelay = 400 * time.Millisecond })
			const login = "dana@example.com"
			key := e.user(login)
			_, err := e.token(login, key)
			wantKind(t, err, KindTimeout)
			eventually(t, "the late code to be stored", func() bool { return e.stored(login) != nil })
			tok := e.mustToken(login, key)
			if tok.AccessToken != e.stored(login).AccessToken {
				t.Error("not the stored token")
			}
			if got := e.amo.stat(exchanges); got != 1 {
				t.Errorf("%d exchanges, want 1", got)
			}
			checkNoLimitHits(t, e)
		})
	}
}

func TestWaitingCallerLeavesWithoutCancellingTheFlight(t *testing.T) {
	e := newEnv(t, badgerStore, nil)
	e.amo.set(func(f *fakeAmo) { f.callbackDelay = 300 * time.Millisecond })
	const login = "eve@example.com"
	key := e.user(login)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Millisecond)
	defer cancel()
	var wg sync.WaitGroup
	var other *tokenstore.Token
	var otherErr error
	wg.Add(1)
	go func() {
		defer wg.Done()
		time.Sleep(10 * time.Millisecond)
		other, otherErr = e.token(login, key)
	}()
	_, err := e.b.Token(ctx, e.acct, login, key)
	noteErr(err)
	wantKind(t, err, KindTimeout)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("error %v does not wrap the context's end", err)
	}
	wg.Wait()
	if otherErr != nil || other == nil {
		t.Fatalf("the other caller: %v", otherErr)
	}
	if got := e.amo.stat(exchanges); got != 1 {
		t.Errorf("%d exchanges, want 1", got)
	}
}

func TestWrongKeyNeverGetsOrEvictsTheToken(t *testing.T) {
	for _, sk := range storeKinds {
		t.Run(string(sk), func(t *testing.T) {
			e := newEnv(t, sk, nil)
			const login = "fay@example.com"
			key := e.user(login)
			good := e.mustToken(login, key)
			wrong := "key" + randHex(20)
			noteSecret(wrong)

			// Within the interval of the first exchange: wrong, no call.
			_, err := e.token(login, wrong)
			wantKind(t, err, KindWrongKey)
			if got := e.amo.stat(exchanges); got != 1 {
				t.Fatalf("%d exchanges, want 1", got)
			}

			// Later: tried once with amoCRM, rejected.
			e.clock.Advance(6 * time.Minute)
			_, err = e.token(login, wrong)
			wantKind(t, err, KindWrongKey)
			if got := e.amo.stat(exchanges); got != 2 {
				t.Fatalf("%d exchanges, want 2", got)
			}
			if got := e.amo.stat(rejections); got != 1 {
				t.Fatalf("%d rejections, want 1", got)
			}
			// Remembered as wrong: no new call.
			for range 3 {
				_, err = e.token(login, wrong)
				wantKind(t, err, KindWrongKey)
			}
			if got := e.amo.stat(exchanges); got != 2 {
				t.Fatalf("%d exchanges, want 2", got)
			}
			// The working token is intact and still served to the right key.
			if st := e.stored(login); st == nil || st.AccessToken != good.AccessToken || st.RefreshToken != good.RefreshToken {
				t.Fatal("the stored token changed")
			}
			if tok := e.mustToken(login, key); tok.AccessToken != good.AccessToken {
				t.Fatal("the right key got another token")
			}
			// After the interval the wrong key is tried once more.
			e.clock.Advance(6 * time.Minute)
			_, err = e.token(login, wrong)
			wantKind(t, err, KindWrongKey)
			if got := e.amo.stat(exchanges); got != 3 {
				t.Fatalf("%d exchanges, want 3", got)
			}
			if tok := e.mustToken(login, key); tok.AccessToken != good.AccessToken {
				t.Fatal("the right key got another token")
			}
			checkNoLimitHits(t, e)
		})
	}
}

func TestNewKeyAcceptedByAmoCRMReplacesTheToken(t *testing.T) {
	e := newEnv(t, badgerStore, nil)
	const login = "gus@example.com"
	oldKey := e.user(login)
	old := e.mustToken(login, oldKey)
	newKey := e.user(login) // the password changed: amoCRM now knows another key
	e.clock.Advance(6 * time.Minute)
	tok := e.mustToken(login, newKey)
	if tok.AccessToken == old.AccessToken {
		t.Fatal("the new key got the old token")
	}
	st := e.stored(login)
	if st.AccessToken != tok.AccessToken || !bytes.Equal(st.KeyHash, e.store.HashKey(newKey)) {
		t.Fatal("the new token is not stored with the new key's hash")
	}
	// The old key is now the wrong one (and cannot be tried within the interval).
	_, err := e.token(login, oldKey)
	wantKind(t, err, KindWrongKey)
	if got := e.amo.stat(exchanges); got != 2 {
		t.Errorf("%d exchanges, want 2", got)
	}
}

func TestMixedKeysOnAColdUser(t *testing.T) {
	e := newEnv(t, badgerStore, nil)
	const login = "hal@example.com"
	key := e.user(login)
	wrong := "key" + randHex(20)
	noteSecret(wrong)
	const n = 40
	toks := make([]*tokenstore.Token, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range n {
		k := key
		if i%2 == 1 {
			k = wrong
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			toks[i], errs[i] = e.token(login, k)
		}()
	}
	close(start)
	wg.Wait()
	if got := e.amo.stat(exchanges); got != 1 {
		t.Fatalf("%d exchanges, want 1", got)
	}
	for i := range n {
		if i%2 == 1 {
			if errs[i] == nil {
				t.Fatalf("caller %d with the wrong key got a token", i)
			}
			if k := KindOf(errs[i]); k != KindWrongKey && k != KindLimited {
				t.Fatalf("caller %d with the wrong key: %v", i, errs[i])
			}
		} else if errs[i] != nil {
			if KindOf(errs[i]) != KindLimited {
				t.Fatalf("caller %d with the right key: %v", i, errs[i])
			}
		}
	}
	checkNoLimitHits(t, e)
}

func TestEmptyKeyOrLoginIsWrongWithoutACall(t *testing.T) {
	e := newEnv(t, fakeStore, nil)
	_, err := e.token("ida@example.com", "")
	wantKind(t, err, KindWrongKey)
	_, err = e.token("", "key"+randHex(20))
	wantKind(t, err, KindWrongKey)
	if got := e.amo.stat(exchanges); got != 0 {
		t.Errorf("%d exchanges, want 0", got)
	}
}

func TestSessionToken(t *testing.T) {
	e := newEnv(t, badgerStore, nil)
	const login = "jon@example.com"
	ctx := context.Background()
	_, _, err := e.b.SessionToken(ctx, e.acct, "no-such-session")
	noteErr(err)
	wantKind(t, err, KindWrongKey)
	key := e.user(login)
	tok := e.mustToken(login, key)
	id, err := e.b.OpenSession(ctx, e.acct, "Jon@Example.com")
	if err != nil || len(id) < 43 {
		t.Fatalf("OpenSession: %q, %v", id, err)
	}
	who, got, err := e.b.SessionToken(ctx, e.acct, id)
	if err != nil || got.AccessToken != tok.AccessToken || who != login {
		t.Fatalf("SessionToken: %q, %v", who, err)
	}
	// Another account's session is no session here.
	_, _, err = e.b.SessionToken(ctx, Account{Name: "other", BaseURL: e.acct.BaseURL}, id)
	wantKind(t, err, KindWrongKey)
	// Near expiry: refreshed.
	e.clock.Advance(24*time.Hour - 5*time.Minute)
	_, got, err = e.b.SessionToken(ctx, e.acct, id)
	if err != nil || got.AccessToken == tok.AccessToken {
		t.Fatalf("SessionToken near expiry: %v (refreshed: %v)", err, err == nil && got.AccessToken != tok.AccessToken)
	}
	if n := e.amo.stat(refreshes); n != 1 {
		t.Errorf("%d refreshes, want 1", n)
	}
	// Dead pair, access expired: the session's user must present the key.
	e.amo.kill(login)
	e.clock.Advance(25 * time.Hour)
	_, _, err = e.b.SessionToken(ctx, e.acct, id)
	noteErr(err)
	wantKind(t, err, KindWrongKey)
	if e.amo.stat(exchanges) != 1 {
		t.Error("SessionToken exchanged")
	}
}

func TestBaseURLWithTrailingSlash(t *testing.T) {
	e := newEnv(t, fakeStore, nil)
	e.acct.BaseURL += "/"
	const login = "kit@example.com"
	key := e.user(login)
	e.mustToken(login, key)
	e.clock.Advance(25 * time.Hour)
	e.mustToken(login, key)
	if e.amo.stat(refreshes) != 1 {
		t.Error("no refresh")
	}
}

func TestRejectedKeyOfAColdUserIsRememberedAsWrong(t *testing.T) {
	e := newEnv(t, badgerStore, nil)
	const login = "lia@example.com"
	e.user(login)
	wrong := "key" + randHex(20)
	noteSecret(wrong)
	_, err := e.token(login, wrong)
	wantKind(t, err, KindWrongKey)
	// Remembered as wrong (401), not merely limited (503), for the interval.
	e.clock.Advance(time.Minute)
	_, err = e.token(login, wrong)
	if we := wantKind(t, err, KindWrongKey); we.RetryAfter <= 3*time.Minute || we.RetryAfter > 4*time.Minute {
		t.Errorf("RetryAfter %v, want about 4m", we.RetryAfter)
	}
	// Another key within the interval: limited (this one was not tried).
	_, err = e.token(login, "key"+randHex(20))
	wantKind(t, err, KindLimited)
	if got := e.amo.stat(exchanges); got != 1 {
		t.Errorf("%d exchanges, want 1", got)
	}
	if e.stored(login) != nil {
		t.Error("a token was stored")
	}
}
