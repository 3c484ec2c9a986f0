package exchange

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func validConfig() Config {
	return Config{ClientID: testClientID, ClientSecret: "s", RedirectURI: testRedirect}
}

func TestConfigValidation(t *testing.T) {
	for name, mod := range map[string]func(*Config){
		"no client_id":      func(c *Config) { c.ClientID = "" },
		"no client_secret":  func(c *Config) { c.ClientSecret = "" },
		"no redirect_uri":   func(c *Config) { c.RedirectURI = "" },
		"relative redirect": func(c *Config) { c.RedirectURI = "/amocrm/oauth/callback" },
		"ftp redirect":      func(c *Config) { c.RedirectURI = "ftp://x/y" },
		"negative timeout":  func(c *Config) { c.ExchangeTimeout = -time.Second },
		"negative interval": func(c *Config) { c.ExchangeInterval = -time.Second },
	} {
		c := validConfig()
		mod(&c)
		if _, err := NewBroker(newMemStore(), c); err == nil {
			t.Errorf("%s: accepted", name)
		} else if strings.Contains(err.Error(), "\"s\"") {
			t.Errorf("%s: error quotes the secret: %v", name, err)
		}
	}
	if _, err := NewBroker(nil, validConfig()); err == nil {
		t.Error("nil store accepted")
	}
	b, err := NewBroker(newMemStore(), validConfig())
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	c := b.cfg.Load()
	if c.ExchangeTimeout != DefaultExchangeTimeout || c.RefreshAhead != DefaultRefreshAhead ||
		c.ExchangeInterval != DefaultExchangeInterval || c.KeepAlive != DefaultKeepAlive ||
		c.CodeLifetime != DefaultCodeLifetime || c.KeeperInterval != DefaultKeeperInterval ||
		c.HTTPClient == nil || c.Logger == nil || c.Now == nil {
		t.Errorf("defaults not filled: %+v", c)
	}
	if c.HTTPClient.Timeout == 0 || c.HTTPClient.CheckRedirect == nil {
		t.Error("default client without timeout or redirect policy")
	}
}

func TestSetConfigSwapsAtomically(t *testing.T) {
	e := newEnv(t, badgerStore, nil)
	const login = "eli@example.com"
	key := e.user(login)
	e.mustToken(login, key)
	bad := e.cfg
	bad.ClientID = ""
	if err := e.b.SetConfig(bad); err == nil {
		t.Fatal("invalid config accepted")
	}
	if e.b.cfg.Load().ClientID != testClientID {
		t.Fatal("an invalid config replaced the old one")
	}
	// Hot path and reloads at once (run with -race).
	var wg sync.WaitGroup
	stop := make(chan struct{})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			c := e.cfg
			c.RefreshAhead = time.Duration(10+i%3) * time.Minute
			if err := e.b.SetConfig(c); err != nil {
				t.Error(err)
				return
			}
		}
	}()
	for range 2000 {
		if _, err := e.token(login, key); err != nil {
			t.Fatal(err)
		}
	}
	close(stop)
	wg.Wait()
	// The new configuration is the one used: a new secret reaches amoCRM.
	c := e.cfg
	c.ClientSecret = "secret-" + randHex(20)
	noteSecret(c.ClientSecret)
	if err := e.b.SetConfig(c); err != nil {
		t.Fatal(err)
	}
	e.amo.set(func(f *fakeAmo) { f.secret = c.ClientSecret })
	e.clock.Advance(25 * time.Hour)
	if _, err := e.token(login, key); err != nil {
		t.Fatalf("refresh with the new secret: %v", err)
	}
}

func TestRedirectsAreNotFollowed(t *testing.T) {
	var hits atomic.Int32
	elsewhere := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		w.WriteHeader(http.StatusAccepted)
	}))
	defer elsewhere.Close()
	for _, name := range []string{"default client", "custom client"} {
		t.Run(name, func(t *testing.T) {
			custom := &http.Client{Timeout: 5 * time.Second}
			e := newEnv(t, fakeStore, func(c *Config) {
				if name == "custom client" {
					c.HTTPClient = custom
				}
			})
			e.amo.set(func(f *fakeAmo) {
				f.exchangeHook = func(w http.ResponseWriter, _ string) bool {
					w.Header().Set("Location", elsewhere.URL+"/oauth2/exchange_api_key")
					w.WriteHeader(http.StatusTemporaryRedirect)
					return true
				}
			})
			const login = "fin@example.com"
			_, err := e.token(login, e.user(login))
			wantKind(t, err, KindUpstream)
			if n := hits.Load(); n != 0 {
				t.Fatalf("the redirect was followed %d times", n)
			}
			if custom.CheckRedirect != nil {
				t.Error("the caller's client was changed")
			}
		})
	}
}

func TestRevoke(t *testing.T) {
	e := newEnv(t, badgerStore, nil)
	const login = "gil@example.com"
	key := e.user(login)
	e.mustToken(login, key)
	if had, err := e.b.Revoke(context.Background(), e.acct.Name, "Gil@Example.com"); err != nil || !had {
		t.Fatalf("Revoke: %v, %v", had, err)
	}
	if e.stored(login) != nil {
		t.Fatal("token still stored")
	}
	if had, err := e.b.Revoke(context.Background(), e.acct.Name, login); err != nil || had {
		t.Fatalf("revoking a missing token: %v, %v", had, err)
	}
	e.clock.Advance(6 * time.Minute)
	e.mustToken(login, key)
	if n := e.amo.stat(exchanges); n != 2 {
		t.Errorf("%d exchanges, want 2", n)
	}
}

func TestCloseStopsBackgroundWork(t *testing.T) {
	e := newEnv(t, fakeStore, nil)
	const login = "hugo@example.com"
	q, done := startUncalled(t, e, login, e.user(login))
	// A code grant that hangs until its request is cancelled.
	e.amo.set(func(f *fakeAmo) {
		f.tokenHook = func(w http.ResponseWriter, _ string) bool {
			time.Sleep(300 * time.Millisecond)
			return false
		}
	})
	if err := e.amo.sendCallback(q); err != nil {
		t.Fatal(err)
	}
	closed := make(chan error, 1)
	go func() { closed <- e.b.Close() }()
	select {
	case err := <-closed:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Close did not return")
	}
	err := <-done
	noteErr(err)
	if err == nil {
		t.Fatal("Token succeeded across Close")
	}
	if err := e.b.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	_, err = e.token("ivy@example.com", "key"+randHex(20))
	if !errors.Is(err, ErrClosed) {
		t.Fatalf("Token after Close: %v", err)
	}
	if err := e.amo.sendCallback(q); err == nil {
		t.Fatal("callback accepted after Close")
	}
}

func TestErrorText(t *testing.T) {
	e := &Error{Kind: KindLimited, Op: "exchange", RetryAfter: 90 * time.Second, Err: errTooOften}
	if got := e.Error(); got != "exchange: exchange: limited (retry after 1m30s): amoCRM's exchange limit" {
		t.Errorf("got %q", got)
	}
	if KindOf(e) != KindLimited || KindOf(errors.New("x")) != 0 || KindOf(nil) != 0 {
		t.Error("KindOf")
	}
	if !errors.Is(e, errTooOften) {
		t.Error("Unwrap")
	}
	if Kind(99).String() == "" || KindTimeout.String() != "timeout" {
		t.Error("Kind.String")
	}
}
