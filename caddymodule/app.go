package caddymodule

import (
	"fmt"
	"sort"
	"strings"
	"sync"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"

	"github.com/amobridge/amobridge/exchange"
	"github.com/amobridge/amobridge/tokenstore"
)

func init() {
	caddy.RegisterModule(App{})
}

// App is the amocrm app. It owns what the amocrm_auth handlers of one
// configuration ask of the shared token stores: during Provision the
// handlers register with it (nothing shared changes then), and when Caddy
// starts the configuration the app puts its settings in force on every
// store it uses; when Caddy stops it (replaced, or rejected after a later
// app failed to start) the previous configuration's settings come back. It
// needs no configuration of its own; the handlers load it.
type App struct {
	mu     *sync.Mutex
	uses   []*settings // one per store this configuration uses, in order of registration
	logger *zap.Logger
}

// settings is what one configuration asks of one store: the broker's
// configuration, which every handler of the configuration using the store
// must agree on, and the handlers, which tell where each account's API
// answers.
type settings struct {
	b        *backend
	cfg      exchange.Config
	handlers []*Handler
}

// CaddyModule returns the Caddy module information.
func (App) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "amocrm",
		New: func() caddy.Module { return &App{mu: new(sync.Mutex)} },
	}
}

// Provision sets up the app.
func (a *App) Provision(ctx caddy.Context) error {
	a.logger = ctx.Logger()
	return nil
}

// Start puts this configuration's settings in force on every store it
// uses, opening the stores that no running configuration has opened yet.
// If one fails, those already changed are put back and the configuration
// is refused.
func (a *App) Start() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if err := a.checkOldDefault(); err != nil {
		return err
	}
	for i, s := range a.uses {
		if err := s.b.activate(a, s); err != nil {
			for _, done := range a.uses[:i] {
				done.b.deactivate(a)
			}
			return err
		}
	}
	return nil
}

// Stop withdraws this configuration's settings: the configuration that
// replaces it has started already, or, when Caddy refused this one after
// its Start, the one still running is back in force. The stores are closed
// when no configuration and no request uses them any more.
func (a *App) Stop() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, s := range a.uses {
		s.b.deactivate(a)
	}
	return nil
}

// register joins handler h to the shared backend of its store and records
// its settings. Handlers of one configuration sharing a store must agree on
// everything the broker does; the error names the option.
func (a *App) register(h *Handler, spec storeSpec) (*backend, error) {
	val, _, err := backends.LoadOrNew(spec.key, func() (caddy.Destructor, error) {
		return newBackend(spec, h.logger), nil
	})
	if err != nil {
		return nil, err
	}
	b := val.(*backend)
	if err := a.add(b, h, spec); err != nil {
		_, _ = backends.Delete(spec.key)
		return nil, err
	}
	return b, nil
}

// add records h's use of b.
func (a *App) add(b *backend, h *Handler, spec storeSpec) error {
	if string(b.spec.encryptionKey) != string(spec.encryptionKey) {
		return fmt.Errorf("amocrm_auth: store %s: every handler using a store must give the same encryption_key "+
			"(the store is open with another one; change it with `caddy amocrm rotate-key`)", b.spec)
	}
	if b.spec.redis.Password != spec.redis.Password || b.spec.redis.Username != spec.redis.Username ||
		b.spec.redis.MasterName != spec.redis.MasterName || (b.spec.redis.TLS == nil) != (spec.redis.TLS == nil) {
		return fmt.Errorf("amocrm_auth: store %s: every handler using a store must give the same master_name, username, password and tls", b.spec)
	}
	cfg, err := h.brokerConfig().Normalized()
	if err != nil {
		return fmt.Errorf("amocrm_auth: %w", err)
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, s := range a.uses {
		if s.b != b {
			continue
		}
		if err := sameIntegration(b.spec.String(), s.cfg, cfg); err != nil {
			return err
		}
		s.handlers = append(s.handlers, h)
		return nil
	}
	s := &settings{b: b, cfg: cfg, handlers: []*Handler{h}}
	s.cfg.BaseURL = s.baseURL
	a.uses = append(a.uses, s)
	return nil
}

// sameIntegration checks that two handlers using one store ask the same of
// its broker. Secrets are compared, never shown.
func sameIntegration(path string, have, want exchange.Config) error {
	if have.ClientID != want.ClientID {
		return fmt.Errorf("amocrm_auth: store %s is used by two integrations, client_id %q and client_id %q: "+
			"one store keeps the tokens of one integration; give each its own store path "+
			"(without a store line each integration gets its own directory)", path, have.ClientID, want.ClientID)
	}
	if have.ClientSecret != want.ClientSecret {
		return fmt.Errorf("amocrm_auth: handlers using store %s must give the same client_secret", path)
	}
	for _, f := range []struct {
		name string
		a, b any
	}{
		{"redirect_uri", have.RedirectURI, want.RedirectURI},
		{"exchange_timeout", have.ExchangeTimeout, want.ExchangeTimeout},
		{"refresh_ahead", have.RefreshAhead, want.RefreshAhead},
		{"exchange_interval", have.ExchangeInterval, want.ExchangeInterval},
		{"keep_alive", have.KeepAlive, want.KeepAlive},
		{"keeper_interval", have.KeeperInterval, want.KeeperInterval},
		{"session_ttl", have.SessionTTL, want.SessionTTL},
		{"rate_limit", have.RateLimit, want.RateLimit},
		{"reject_limit", have.RejectLimit, want.RejectLimit},
		{"reject_window", have.RejectWindow, want.RejectWindow},
	} {
		if f.a != f.b {
			return fmt.Errorf("amocrm_auth: handlers using store %s must agree on %s (%v and %v): "+
				"the store's broker and its per-account budget are shared", path, f.name, f.a, f.b)
		}
	}
	return nil
}

// checkOldDefault refuses to guess, when the store of an earlier version
// sits in the previous default directory, which of several integrations
// using default directories it belongs to. a.mu is held.
func (a *App) checkOldDefault() error {
	var ids []string
	old := ""
	for _, s := range a.uses {
		if s.b.spec.oldPath != "" && tokenstore.HoldsStore(s.b.spec.oldPath) {
			old = s.b.spec.oldPath
			ids = append(ids, s.cfg.ClientID)
		}
	}
	if len(ids) < 2 {
		return nil
	}
	sort.Strings(ids)
	return fmt.Errorf("amocrm: a token store of an earlier version is in %s, the previous default directory, "+
		"and %d integrations (client_id %s) now use default directories: set `store badger { path %s }` "+
		"for the integration whose tokens it holds", old, len(ids), strings.Join(ids, ", "), old)
}

// baseURL tells the broker where an account's API answers when no request
// names it (the keeper, bulk exchanges): from the handler whose literal
// subdomain is the account, else from the first handler's api_base.
func (s *settings) baseURL(account string) string {
	for _, h := range s.handlers {
		if h.accountIsLiteral && h.literalAccount.Name == account {
			return h.literalAccount.BaseURL
		}
	}
	return s.handlers[0].accountByName(account).BaseURL
}

// account resolves an account outside a request.
func (s *settings) account(name string) exchange.Account {
	return exchange.Account{Name: name, BaseURL: s.baseURL(name)}
}

// Interface guards
var (
	_ caddy.App         = (*App)(nil)
	_ caddy.Provisioner = (*App)(nil)
)
