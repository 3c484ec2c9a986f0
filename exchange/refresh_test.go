package exchange

import (
	"context"
	"net"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/amobridge/amobridge/tokenstore"
)

func refreshCalls(f *fakeAmo) int { return f.tokenCalls["refresh_token"] }

func TestRefreshAheadOneRefreshForManyCallers(t *testing.T) {
	for _, sk := range storeKinds {
		for _, adv := range []struct {
			name string
			d    time.Duration
		}{{"near expiry", 24*time.Hour - 5*time.Minute}, {"expired", 25 * time.Hour}} {
			t.Run(string(sk)+"/"+adv.name, func(t *testing.T) {
				e := newEnv(t, sk, nil)
				const login = "pia@example.com"
				key := e.user(login)
				old := e.mustToken(login, key)
				e.clock.Advance(adv.d)
				const n = 100
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
					if toks[i].AccessToken == old.AccessToken || toks[i].AccessToken != toks[0].AccessToken {
						t.Fatalf("caller %d did not get the one refreshed token", i)
					}
				}
				if got := e.amo.stat(refreshCalls); got != 1 {
					t.Errorf("%d refresh calls, want 1", got)
				}
				if got := e.amo.stat(reuses); got != 0 {
					t.Errorf("%d refresh tokens reused", got)
				}
				st := e.stored(login)
				if st.AccessToken != toks[0].AccessToken || st.RefreshToken == old.RefreshToken || string(st.KeyHash) != string(old.KeyHash) {
					t.Error("the new pair is not stored, with the same key hash")
				}
				if !st.IssuedAt.After(old.IssuedAt) {
					t.Error("IssuedAt not advanced")
				}
				// Later calls are hits.
				e.mustToken(login, key)
				if got := e.amo.stat(refreshCalls); got != 1 {
					t.Errorf("%d refresh calls, want 1", got)
				}
			})
		}
	}
}

func TestReauthorize(t *testing.T) {
	e := newEnv(t, badgerStore, nil)
	const login = "quin@example.com"
	ctx := context.Background()
	key := e.user(login)
	a := e.mustToken(login, key)

	b1, err := e.b.Reauthorize(ctx, e.acct, login, a.AccessToken)
	if err != nil || b1.AccessToken == a.AccessToken {
		t.Fatalf("Reauthorize: %v", err)
	}
	// Another request that was rejected with the same old token: served
	// from the store, no second refresh.
	b2, err := e.b.Reauthorize(ctx, e.acct, login, a.AccessToken)
	if err != nil || b2.AccessToken != b1.AccessToken {
		t.Fatalf("second Reauthorize: %v", err)
	}
	if got := e.amo.stat(refreshCalls); got != 1 {
		t.Fatalf("%d refresh calls, want 1", got)
	}
	// Many requests rejected with the current token at once: one refresh.
	const n = 50
	toks := make([]*tokenstore.Token, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			toks[i], errs[i] = e.b.Reauthorize(ctx, e.acct, login, b1.AccessToken)
			noteErr(errs[i])
		}()
	}
	wg.Wait()
	for i := range n {
		if errs[i] != nil || toks[i].AccessToken == b1.AccessToken || toks[i].AccessToken != toks[0].AccessToken {
			t.Fatalf("caller %d: %v", i, errs[i])
		}
	}
	if got := e.amo.stat(refreshCalls); got != 2 {
		t.Errorf("%d refresh calls, want 2", got)
	}
	if got := e.amo.stat(reuses); got != 0 {
		t.Errorf("%d refresh tokens reused", got)
	}
	// Unknown user.
	_, err = e.b.Reauthorize(ctx, e.acct, "nobody@example.com", "x")
	noteErr(err)
	wantKind(t, err, KindWrongKey)
}

func TestReauthorizeWithDeadPair(t *testing.T) {
	e := newEnv(t, fakeStore, nil)
	const login = "rex@example.com"
	key := e.user(login)
	a := e.mustToken(login, key)
	e.amo.kill(login)
	_, err := e.b.Reauthorize(context.Background(), e.acct, login, a.AccessToken)
	noteErr(err)
	wantKind(t, err, KindWrongKey)
	st := e.stored(login)
	if st == nil || st.AccessToken != "" || st.RefreshToken != "" || len(st.KeyHash) == 0 {
		t.Fatal("the dead pair is not marked dead with its key hash kept")
	}
	// Within the interval: limited (the user has no usable token).
	_, err = e.token(login, key)
	wantKind(t, err, KindLimited)
	// After it: the right key exchanges again.
	e.clock.Advance(6 * time.Minute)
	tok := e.mustToken(login, key)
	if tok.AccessToken == a.AccessToken {
		t.Fatal("the rejected token was served")
	}
	if got := e.amo.stat(exchanges); got != 2 {
		t.Errorf("%d exchanges, want 2", got)
	}
}

func TestDeadRefreshTokenLeadsToANewExchange(t *testing.T) {
	for _, sk := range storeKinds {
		t.Run(string(sk), func(t *testing.T) {
			e := newEnv(t, sk, nil)
			const login = "sue@example.com"
			key := e.user(login)
			old := e.mustToken(login, key)
			e.amo.kill(login)
			e.clock.Advance(24*time.Hour - 5*time.Minute)
			tok := e.mustToken(login, key)
			if tok.AccessToken == old.AccessToken {
				t.Fatal("got the old token")
			}
			if got := e.amo.stat(exchanges); got != 2 {
				t.Errorf("%d exchanges, want 2", got)
			}
			if st := e.stored(login); st.AccessToken != tok.AccessToken || st.RefreshToken == "" {
				t.Error("the new pair is not stored")
			}
		})
	}
}

func TestDeadRefreshTokenWhileExchangeIsNotAllowed(t *testing.T) {
	e := newEnv(t, badgerStore, func(c *Config) { c.ExchangeInterval = 48 * time.Hour })
	const login = "tim@example.com"
	key := e.user(login)
	old := e.mustToken(login, key)
	e.amo.kill(login)
	e.clock.Advance(24*time.Hour - 5*time.Minute)
	// The access token still works: served.
	if tok := e.mustToken(login, key); tok.AccessToken != old.AccessToken {
		t.Fatal("not the still valid token")
	}
	st := e.stored(login)
	if st.RefreshToken != "" || st.AccessToken != old.AccessToken {
		t.Fatal("dead pair not marked (refresh token forgotten, access kept)")
	}
	// A wrong key is still wrong.
	wrong := "key" + randHex(20)
	noteSecret(wrong)
	_, err := e.token(login, wrong)
	wantKind(t, err, KindWrongKey)
	// Expired: limited until an exchange is allowed.
	e.clock.Advance(10 * time.Minute)
	_, err = e.token(login, key)
	if le := wantKind(t, err, KindLimited); le.RetryAfter <= 0 {
		t.Error("no RetryAfter")
	}
	if got := e.amo.stat(exchanges); got != 1 {
		t.Errorf("%d exchanges, want 1", got)
	}
	if got := e.amo.stat(refreshCalls); got != 1 {
		t.Errorf("%d refresh calls, want 1 (a dead token is not tried again)", got)
	}
}

// hangUp closes the connection without an answer.
func hangUp(w http.ResponseWriter) {
	c, _, err := w.(http.Hijacker).Hijack()
	if err == nil {
		c.Close()
	}
}

func TestRefreshFailuresKeepTheStoredPair(t *testing.T) {
	cases := map[string]func(w http.ResponseWriter){
		"hang up":     hangUp,
		"500":         func(w http.ResponseWriter) { w.WriteHeader(500) },
		"502 html":    func(w http.ResponseWriter) { w.WriteHeader(502); w.Write([]byte("<html>bad gateway</html>")) },
		"200 html":    func(w http.ResponseWriter) { w.Write([]byte("<html>hello</html>")) },
		"200 invalid": func(w http.ResponseWriter) { w.Write([]byte(`{"access_token":`)) },
		"no access": func(w http.ResponseWriter) {
			w.Write([]byte(`{"token_type":"Bearer","expires_in":86400,"refresh_token":"r"}`))
		},
		"no expires_in": func(w http.ResponseWriter) {
			w.Write([]byte(`{"token_type":"Bearer","access_token":"a","refresh_token":"r"}`))
		},
		"429":        func(w http.ResponseWriter) { w.Header().Set("Retry-After", "5"); w.WriteHeader(429) },
		"slow":       func(w http.ResponseWriter) { time.Sleep(1500 * time.Millisecond) },
		"bad client": func(w http.ResponseWriter) { writeProblem(w, 400, "Check the `client_id` parameter") },
	}
	for name, hook := range cases {
		t.Run(name, func(t *testing.T) {
			e := newEnv(t, fakeStore, func(c *Config) {
				c.HTTPClient = &http.Client{Timeout: 600 * time.Millisecond}
			})
			const login = "uma@example.com"
			key := e.user(login)
			old := e.mustToken(login, key)
			e.amo.set(func(f *fakeAmo) {
				f.tokenHook = func(w http.ResponseWriter, _ string) bool { hook(w); return true }
			})
			// Near expiry: the still valid token is served.
			e.clock.Advance(24*time.Hour - 5*time.Minute)
			tok, err := e.token(login, key)
			if err != nil || tok.AccessToken != old.AccessToken {
				t.Fatalf("near expiry: %v", err)
			}
			// Backing off: no new refresh call right away.
			e.mustToken(login, key)
			if got := e.amo.stat(refreshCalls); got != 1 {
				t.Errorf("%d refresh calls, want 1 (back off after a failure)", got)
			}
			// Expired: an error, and the pair stays.
			e.clock.Advance(10 * time.Minute)
			_, err = e.token(login, key)
			if k := KindOf(err); k != KindUpstream && k != KindLimited {
				t.Fatalf("expired: %v, want upstream or limited", err)
			}
			st := e.stored(login)
			if st.RefreshToken != old.RefreshToken || st.AccessToken != old.AccessToken {
				t.Fatal("the stored pair changed")
			}
			// amoCRM back: the same pair refreshes.
			e.amo.set(func(f *fakeAmo) { f.tokenHook = nil })
			tok = e.mustToken(login, key)
			if tok.AccessToken == old.AccessToken {
				t.Fatal("not refreshed once amoCRM is back")
			}
			if got := e.amo.stat(exchanges); got != 1 {
				t.Errorf("%d exchanges, want 1", got)
			}
		})
	}
}

func TestExchangeFailures(t *testing.T) {
	cases := map[string]struct {
		hook func(w http.ResponseWriter)
		kind Kind
	}{
		"hang up":  {hangUp, KindUpstream},
		"500":      {func(w http.ResponseWriter) { w.WriteHeader(500) }, KindUpstream},
		"200 html": {func(w http.ResponseWriter) { w.Write([]byte("<html>hello</html>")) }, KindUpstream},
		"slow":     {func(w http.ResponseWriter) { time.Sleep(1500 * time.Millisecond) }, KindUpstream},
		"redirect": {func(w http.ResponseWriter) { w.Header().Set("Location", "http://127.0.0.1:1/x"); w.WriteHeader(307) }, KindUpstream},
		"403":      {func(w http.ResponseWriter) { writeProblem(w, 403, "not enough rights") }, KindWrongKey},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			e := newEnv(t, fakeStore, func(c *Config) {
				c.HTTPClient = &http.Client{Timeout: 600 * time.Millisecond}
			})
			const login = "val@example.com"
			key := e.user(login)
			good := e.mustToken(login, key) // a user with a working token
			e.amo.set(func(f *fakeAmo) {
				f.exchangeHook = func(w http.ResponseWriter, _ string) bool { tc.hook(w); return true }
			})
			e.clock.Advance(6 * time.Minute)
			other := "key" + randHex(20)
			noteSecret(other)
			_, err := e.token(login, other)
			wantKind(t, err, tc.kind)
			if st := e.stored(login); st.AccessToken != good.AccessToken || st.RefreshToken != good.RefreshToken {
				t.Fatal("the stored token changed")
			}
			if tok := e.mustToken(login, key); tok.AccessToken != good.AccessToken {
				t.Fatal("the right key lost its token")
			}
			// A cold user meets the same failure.
			const cold = "wes@example.com"
			_, err = e.token(cold, e.user(cold))
			wantKind(t, err, tc.kind)
			if e.stored(cold) != nil {
				t.Error("a token was stored")
			}
		})
	}
}

func TestAmoCRMUnreachable(t *testing.T) {
	e := newEnv(t, fakeStore, nil)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	down := Account{Name: "down", BaseURL: "http://" + l.Addr().String()}
	l.Close()
	ctx := context.Background()
	_, err = e.b.Token(ctx, down, "xena@example.com", "key"+randHex(20))
	noteErr(err)
	wantKind(t, err, KindUpstream)
	// No connection: amoCRM never saw the attempt, so it does not count.
	_, err = e.b.Token(ctx, down, "xena@example.com", "key"+randHex(20))
	noteErr(err)
	wantKind(t, err, KindUpstream)
	// A user with a token on an account that went down: served until expiry.
	const login = "yan@example.com"
	key := e.user(login)
	old := e.mustToken(login, key)
	e.clock.Advance(24*time.Hour - 5*time.Minute)
	moved := Account{Name: e.acct.Name, BaseURL: down.BaseURL}
	tok, err := e.b.Token(ctx, moved, login, key)
	if err != nil || tok.AccessToken != old.AccessToken {
		t.Fatalf("near expiry with amoCRM down: %v", err)
	}
	e.clock.Advance(10 * time.Minute)
	e.b.clearFailure(userKey(e.acct.Name, login))
	_, err = e.b.Token(ctx, moved, login, key)
	noteErr(err)
	wantKind(t, err, KindUpstream)
	if st := e.stored(login); st.RefreshToken != old.RefreshToken {
		t.Fatal("the stored pair changed")
	}
}

func TestRefreshedPairNotStoredIsAnError(t *testing.T) {
	e := newEnv(t, fakeStore, nil)
	ms := e.store.(*memStore)
	const login = "zoe@example.com"
	key := e.user(login)
	old := e.mustToken(login, key)
	ms.mu.Lock()
	ms.putErr = func(*tokenstore.Token) error { return context.DeadlineExceeded }
	ms.mu.Unlock()
	e.clock.Advance(25 * time.Hour)
	_, err := e.token(login, key)
	wantKind(t, err, KindInternal)
	if st := e.stored(login); st.RefreshToken != old.RefreshToken {
		t.Fatal("stored pair changed")
	}
}

func TestKeeperRefreshesStalePairsAndSweeps(t *testing.T) {
	e := newEnv(t, fakeStore, func(c *Config) { c.KeeperInterval = 20 * time.Millisecond })
	e.b.keeperPause = 0
	ms := e.store.(*memStore)
	const login = "ada@example.com"
	key := e.user(login)
	old := e.mustToken(login, key)
	// A token of an account no request has named: skipped, not an error.
	if err := ms.Put(context.Background(), &tokenstore.Token{Account: "ghost", Login: "g@example.com", KeyHash: []byte{1}, AccessToken: "a", RefreshToken: "r", Expiry: e.clock.Now(), IssuedAt: e.clock.Now().Add(-60 * 24 * time.Hour)}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "a sweep", func() bool { return ms.count(func(s *memStore) int { return s.sweeps }) > 0 })
	if got := e.amo.stat(refreshCalls); got != 0 {
		t.Fatalf("%d refreshes of a young pair", got)
	}
	e.clock.Advance(31 * 24 * time.Hour)
	eventually(t, "the keeper's refresh", func() bool { return e.amo.stat(refreshes) == 1 })
	eventually(t, "the refreshed pair stored", func() bool { return e.stored(login).RefreshToken != old.RefreshToken })
	// A few more rounds: the fresh pair is left alone.
	sweeps := ms.count(func(s *memStore) int { return s.sweeps })
	eventually(t, "more keeper rounds", func() bool { return ms.count(func(s *memStore) int { return s.sweeps }) > sweeps+2 })
	if got := e.amo.stat(refreshCalls); got != 1 {
		t.Errorf("%d refresh calls, want 1", got)
	}
	if got := e.amo.stat(reuses); got != 0 {
		t.Errorf("%d reuses", got)
	}
}

func TestKeeperUsesConfiguredBaseURL(t *testing.T) {
	var e *env
	e = newEnv(t, badgerStore, func(c *Config) {
		c.KeeperInterval = time.Hour
		c.BaseURL = func(account string) string {
			if account == "acme" {
				return e.amo.URL()
			}
			return ""
		}
	})
	const login = "bea@example.com"
	key := e.user(login)
	e.mustToken(login, key)
	e.b.bmu.Lock()
	clear(e.b.bases) // as after a restart: no request named the account yet
	e.b.bmu.Unlock()
	e.clock.Advance(31 * 24 * time.Hour)
	if n := e.b.keepOnce(); n != 1 {
		t.Fatalf("keeper refreshed %d pairs, want 1", n)
	}
	if n := e.b.keepOnce(); n != 0 {
		t.Fatalf("keeper refreshed %d pairs on its second round, want 0", n)
	}
}

// A refresh flight started with an access token that another flight has
// already replaced spends nothing: it answers with the stored token.
func TestRefreshFlightRereadsTheStore(t *testing.T) {
	e := newEnv(t, badgerStore, nil)
	const login = "mia@example.com"
	key := e.user(login)
	old := e.mustToken(login, key)
	e.clock.Advance(25 * time.Hour)
	cur := e.mustToken(login, key) // refreshed
	got, err := e.b.refresh(context.Background(), e.acct, login, old.AccessToken)
	if err != nil || got.AccessToken != cur.AccessToken {
		t.Fatalf("refresh with a stale token: %v", err)
	}
	if n := e.amo.stat(refreshCalls); n != 1 {
		t.Errorf("%d refresh calls, want 1", n)
	}
	if n := e.amo.stat(reuses); n != 0 {
		t.Errorf("%d reuses", n)
	}
}

// A refresh that finishes after the token was replaced (an exchange with a
// new key) does not overwrite the newer token.
func TestRefreshDoesNotOverwriteANewerToken(t *testing.T) {
	e := newEnv(t, fakeStore, nil)
	const login = "noa@example.com"
	key := e.user(login)
	e.mustToken(login, key)
	e.clock.Advance(24*time.Hour - 5*time.Minute)
	newer := make(chan struct{})
	e.amo.set(func(f *fakeAmo) {
		f.tokenHook = func(w http.ResponseWriter, grant string) bool {
			if grant == "refresh_token" {
				<-newer // the refresh answers only after the replacement
			}
			return false
		}
	})
	done := make(chan error, 1)
	go func() {
		_, err := e.token(login, key)
		done <- err
	}()
	eventually(t, "the refresh call", func() bool { return e.amo.stat(refreshCalls) == 1 })
	// Meanwhile the user's new key is exchanged (the password changed).
	newKey := e.user(login)
	e.amo.set(func(f *fakeAmo) {
		f.tokenHook = func(w http.ResponseWriter, grant string) bool { return false }
	})
	replaced := e.mustToken(login, newKey)
	close(newer)
	// The old key's call ends with the old key now wrong (or, had it won
	// the race, with its own token), never with the new key's token.
	if err := <-done; err != nil && KindOf(err) != KindWrongKey {
		t.Fatalf("the old key's call: %v", err)
	}
	if st := e.stored(login); st.AccessToken != replaced.AccessToken {
		t.Fatal("the refresh overwrote the newer token")
	}
	if tok := e.mustToken(login, newKey); tok.AccessToken != replaced.AccessToken {
		t.Fatal("the new key lost its token")
	}
}
