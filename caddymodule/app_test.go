package caddymodule

import (
	"errors"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"

	"github.com/amobridge/amobridge/tokenstore"
)

// testHandler returns a handler resolved as Provision resolves it.
func testHandler(t *testing.T, clientID, secret string) *Handler {
	t.Helper()
	h := &Handler{ClientID: clientID, ClientSecret: secret,
		RedirectURI: "https://proxy.example.com/amocrm/oauth/callback", Subdomain: "acme"}
	if err := h.resolve(caddy.NewReplacer()); err != nil {
		t.Fatal(err)
	}
	h.logger = zap.NewNop()
	return h
}

// badgerSpec is the store spec of a Badger directory.
func badgerSpec(dir string) storeSpec {
	return storeSpec{kind: "badger", key: dir, badger: tokenstore.Options{Path: dir}}
}

func newTestApp() *App { return &App{mu: new(sync.Mutex), logger: zap.NewNop()} }

// registerTest registers h with app on the store in dir and gives the
// share back at the end of the test.
func registerTest(t *testing.T, app *App, h *Handler, dir string) *backend {
	t.Helper()
	b, err := app.register(h, badgerSpec(dir))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _, _ = backends.Delete(b.spec.key) })
	return b
}

// TestSettingsTakeEffectAtStart: Provision (register) changes nothing; a
// configuration rejected after its Start (Stop) puts the running one back.
func TestSettingsTakeEffectAtStart(t *testing.T) {
	dir := t.TempDir()
	running := newTestApp()
	b := registerTest(t, running, testHandler(t, "client-a", "secret-1"), dir)
	if err := running.Start(); err != nil {
		t.Fatal(err)
	}
	br, err := b.get(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	secret := func() string { return br.Config().ClientSecret }

	// A new configuration is provisioned: nothing changes yet.
	next := newTestApp()
	if b2 := registerTest(t, next, testHandler(t, "client-a", "secret-2"), dir); b2 != b {
		t.Fatal("the same store directory must give the same backend")
	}
	if secret() != "secret-1" {
		t.Fatal("provisioning a configuration changed the running one's secret")
	}
	// It starts, then Caddy rejects it (a later app failed): stopped again.
	if err := next.Start(); err != nil {
		t.Fatal(err)
	}
	if secret() != "secret-2" {
		t.Fatal("a started configuration's secret is not in force")
	}
	if err := next.Stop(); err != nil {
		t.Fatal(err)
	}
	if secret() != "secret-1" {
		t.Fatalf("after the rejected configuration stopped, secret %q is in force; want the running one's", secret())
	}

	// A normal reload: the new one starts, then the old one stops.
	third := newTestApp()
	registerTest(t, third, testHandler(t, "client-a", "secret-3"), dir)
	if err := third.Start(); err != nil {
		t.Fatal(err)
	}
	if err := running.Stop(); err != nil {
		t.Fatal(err)
	}
	if secret() != "secret-3" {
		t.Fatalf("after a reload, secret %q is in force; want the new one's", secret())
	}
}

// TestOneIntegrationPerStore: two client_ids on one store are refused at
// provision, naming both; a later configuration with another client_id on
// a store that is open fails to start, and the running one stays.
func TestOneIntegrationPerStore(t *testing.T) {
	dir := t.TempDir()
	app := newTestApp()
	registerTest(t, app, testHandler(t, "client-a", "s"), dir)
	_, err := app.register(testHandler(t, "client-b", "s"), badgerSpec(dir))
	if err == nil || !strings.Contains(err.Error(), `"client-a"`) || !strings.Contains(err.Error(), `"client-b"`) {
		t.Fatalf("two integrations on one store: %v; want an error naming both client_ids", err)
	}
	// Another handler of the same integration but another secret: refused too.
	_, err = app.register(testHandler(t, "client-a", "other"), badgerSpec(dir))
	if err == nil || !strings.Contains(err.Error(), "client_secret") || strings.Contains(err.Error(), "other") {
		t.Fatalf("two secrets on one store: %v; want an error naming client_secret and not its value", err)
	}
	if err := app.Start(); err != nil {
		t.Fatal(err)
	}
	defer app.Stop()

	next := newTestApp()
	b := registerTest(t, next, testHandler(t, "client-b", "s"), dir)
	err = next.Start()
	if !errors.Is(err, tokenstore.ErrOwner) {
		t.Fatalf("starting another integration on an open store: %v; want ErrOwner", err)
	}
	br, _ := b.get(t.Context())
	if br.Config().ClientID != "client-a" {
		t.Fatal("the refused configuration's client_id is in force")
	}
}

// TestShareReleasedByLastRequest: Cleanup while requests are inside
// releases the store only when the last one exits, exactly once.
func TestShareReleasedByLastRequest(t *testing.T) {
	for range 200 {
		var released atomic.Int32
		var inside atomic.Int32
		s := newShare(func() {
			if inside.Load() != 0 {
				t.Error("released while a request was inside")
			}
			released.Add(1)
		})
		var wg sync.WaitGroup
		start := make(chan struct{})
		for range 16 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				for range 50 {
					if !s.enter() {
						return
					}
					inside.Add(1)
					inside.Add(-1)
					s.exit()
				}
			}()
		}
		close(start)
		s.close()
		s.close() // a second Cleanup does nothing
		wg.Wait()
		if n := released.Load(); n != 1 {
			t.Fatalf("released %d times; want 1", n)
		}
		if s.enter() {
			t.Fatal("a released share let a request in")
		}
	}
}

func TestStoreDirName(t *testing.T) {
	for in, want := range map[string]string{
		"5e6f7a8b-1c2d-4e3f-9a0b-c1d2e3f4a5b6": "5e6f7a8b-1c2d-4e3f-9a0b-c1d2e3f4a5b6",
	} {
		if got := storeDirName(in); got != want {
			t.Errorf("storeDirName(%q) = %q; want %q", in, got, want)
		}
	}
	for _, bad := range []string{"../x", "a/b", ".hidden", "", strings.Repeat("x", 200), "a b"} {
		got := storeDirName(bad)
		if !strings.HasPrefix(got, "client-") || filepath.Base(got) != got {
			t.Errorf("storeDirName(%q) = %q; want a hashed name", bad, got)
		}
	}
}
