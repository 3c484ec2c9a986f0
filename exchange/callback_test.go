package exchange

import (
	"errors"
	"net/http"
	"net/url"
	"testing"
	"time"
)

func grantCalls(f *fakeAmo) int { return f.tokenCalls["authorization_code"] }

// startUncalled starts a cold Token call whose code amoCRM does not deliver,
// and returns the callback query amoCRM would have sent and the call's result.
func startUncalled(t *testing.T, e *env, login, key string) (url.Values, chan error) {
	t.Helper()
	e.amo.set(func(f *fakeAmo) { f.noCallback = true })
	done := make(chan error, 1)
	go func() {
		_, err := e.token(login, key)
		done <- err
	}()
	eventually(t, "the exchange call", func() bool { return e.amo.stat(exchanges) == 1 })
	q := e.amo.query()
	if q.Get("code") == "" {
		t.Fatal("no callback query recorded")
	}
	return q, done
}

func TestCallbackRejectsMalformedCalls(t *testing.T) {
	e := newEnv(t, badgerStore, nil)
	const login = "kim@example.com"
	q, done := startUncalled(t, e, login, e.user(login))
	for name, mod := range map[string]func(url.Values){
		"no code":           func(v url.Values) { v.Del("code") },
		"no state":          func(v url.Values) { v.Del("state") },
		"empty state":       func(v url.Values) { v.Set("state", "") },
		"foreign client_id": func(v url.Values) { v.Set("client_id", "00000000-0000-0000-0000-000000000000") },
		"unknown state":     func(v url.Values) { v.Set("state", randHex(24)) },
		"code with spaces":  func(v url.Values) { v.Set("code", "a b") },
	} {
		v := url.Values{}
		for k, vals := range q {
			v[k] = append([]string(nil), vals...)
		}
		mod(v)
		if err := e.amo.sendCallback(v); !errors.Is(err, ErrBadCallback) {
			t.Errorf("%s: %v, want ErrBadCallback", name, err)
		}
	}
	if n := e.amo.stat(grantCalls); n != 0 {
		t.Fatalf("%d code grants after bad callbacks, want 0", n)
	}
	// None of them used up the state: the real callback still works, once.
	if err := e.amo.sendCallback(q); err != nil {
		t.Fatalf("the real callback: %v", err)
	}
	if err := <-done; err != nil {
		t.Fatalf("Token: %v", err)
	}
	if err := e.amo.sendCallback(q); !errors.Is(err, ErrBadCallback) {
		t.Errorf("reused state: %v, want ErrBadCallback", err)
	}
	if n := e.amo.stat(grantCalls); n != 1 {
		t.Errorf("%d code grants, want 1", n)
	}
}

func TestCallbackWithoutFromExchangeOrClientID(t *testing.T) {
	e := newEnv(t, fakeStore, nil)
	const login = "lea@example.com"
	q, done := startUncalled(t, e, login, e.user(login))
	q.Del("from_exchange")
	q.Del("client_id")
	if err := e.amo.sendCallback(q); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

func TestCallbackForExpiredState(t *testing.T) {
	e := newEnv(t, badgerStore, func(c *Config) {
		c.ExchangeTimeout = 50 * time.Millisecond
		c.CodeLifetime = 100 * time.Millisecond
	})
	const login = "max@example.com"
	q, done := startUncalled(t, e, login, e.user(login))
	if err := <-done; KindOf(err) != KindTimeout {
		t.Fatalf("Token: %v, want a timeout", err)
	}
	time.Sleep(150 * time.Millisecond) // the state's lifetime (real time: the store's clock)
	if err := e.amo.sendCallback(q); !errors.Is(err, ErrBadCallback) {
		t.Fatalf("expired state: %v, want ErrBadCallback", err)
	}
	if n := e.amo.stat(grantCalls); n != 0 {
		t.Errorf("%d code grants, want 0", n)
	}
	if e.stored(login) != nil {
		t.Error("a token was stored")
	}
}

func TestCallbackReturnsBeforeTheGrant(t *testing.T) {
	e := newEnv(t, fakeStore, nil)
	const login = "ned@example.com"
	q, done := startUncalled(t, e, login, e.user(login))
	release := make(chan struct{})
	e.amo.set(func(f *fakeAmo) {
		f.tokenHook = func(http.ResponseWriter, string) bool { <-release; return false }
	})
	// HandleCallback must not wait for the (blocked) grant.
	ret := make(chan error, 1)
	go func() { ret <- e.amo.sendCallback(q) }()
	select {
	case err := <-ret:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("HandleCallback waited for the code grant")
	}
	close(release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

func TestCodeGrantFailures(t *testing.T) {
	cases := map[string]struct {
		hook   func(w http.ResponseWriter)
		grants int // calls to the token endpoint expected
	}{
		"html": {func(w http.ResponseWriter) { w.Write([]byte("<html>hello</html>")) }, 1},
		"no access": {func(w http.ResponseWriter) {
			w.Write([]byte(`{"token_type":"Bearer","expires_in":86400,"refresh_token":"r"}`))
		}, 1},
		"no expires_in": {func(w http.ResponseWriter) {
			w.Write([]byte(`{"token_type":"Bearer","access_token":"a","refresh_token":"r"}`))
		}, 1},
		"500, retried":   {func(w http.ResponseWriter) { w.WriteHeader(500) }, 3},
		"code revoked":   {func(w http.ResponseWriter) { writeProblem(w, 400, "Authorization code has been revoked") }, 1},
		"empty 200 body": {func(w http.ResponseWriter) {}, 1},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			e := newEnv(t, fakeStore, nil)
			e.amo.set(func(f *fakeAmo) {
				f.tokenHook = func(w http.ResponseWriter, _ string) bool { tc.hook(w); return true }
			})
			const login = "olga@example.com"
			key := e.user(login)
			_, err := e.token(login, key)
			wantKind(t, err, KindUpstream)
			if e.stored(login) != nil {
				t.Error("a token was stored")
			}
			if n := e.amo.stat(grantCalls); n != tc.grants {
				t.Errorf("%d grant calls, want %d", n, tc.grants)
			}
			// Within the interval: limited, not a new exchange.
			_, err = e.token(login, key)
			wantKind(t, err, KindLimited)
			if n := e.amo.stat(exchanges); n != 1 {
				t.Errorf("%d exchanges, want 1", n)
			}
		})
	}
}
