package caddymodule

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"sync/atomic"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"

	"github.com/amobridge/amobridge/exchange"
	"github.com/amobridge/amobridge/tokenstore"
)

func init() {
	caddy.RegisterModule(App{})
}

// backends holds the open token stores and their brokers, one per store
// directory, shared by every configuration that uses it: a Caddy reload runs
// the old and the new configuration at once, and Badger locks its directory.
var backends = caddy.NewUsagePool()

// App is the amocrm app. It owns the shared state of the amocrm_auth handlers
// of one configuration: it opens their token stores when Caddy starts the
// configuration (never during `caddy validate`) and lets the admin API reach
// them. It needs no configuration of its own; the handlers load it.
type App struct {
	mu       *sync.Mutex
	backends []*backend
	logger   *zap.Logger
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

// Start opens the token store of every handler of this configuration, so
// that the keeper runs even before the first request.
func (a *App) Start() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, b := range a.backends {
		if _, err := b.open(); err != nil {
			return err
		}
	}
	return nil
}

// Stop does nothing: the stores are closed when the last configuration that
// uses them is cleaned up.
func (a *App) Stop() error { return nil }

// join returns the shared backend for the store, with the handler's
// exchange configuration as its newest.
func (a *App) join(opts tokenstore.Options, cfg exchange.Config, accountFor func(string) exchange.Account, rate float64, logger *zap.Logger) (*backend, error) {
	path, err := filepath.Abs(opts.Path)
	if err != nil {
		return nil, fmt.Errorf("store path: %w", err)
	}
	opts.Path = path
	val, _, err := backends.LoadOrNew(path, func() (caddy.Destructor, error) {
		ctx, cancel := context.WithCancel(context.Background())
		return &backend{opts: opts, logger: logger, ctx: ctx, cancel: cancel}, nil
	})
	if err != nil {
		return nil, err
	}
	b := val.(*backend)
	if err := b.configure(opts, cfg, accountFor, rate); err != nil {
		_, _ = backends.Delete(path)
		return nil, err
	}
	a.mu.Lock()
	a.backends = append(a.backends, b)
	a.mu.Unlock()
	return b, nil
}

// leave drops one handler's share of a backend.
func (a *App) leave(b *backend) error {
	a.mu.Lock()
	for i, x := range a.backends {
		if x == b {
			a.backends = append(a.backends[:i], a.backends[i+1:]...)
			break
		}
	}
	a.mu.Unlock()
	_, err := backends.Delete(b.opts.Path)
	return err
}

// stores lists the distinct backends of this configuration.
func (a *App) stores() []*backend {
	a.mu.Lock()
	defer a.mu.Unlock()
	seen := make(map[*backend]bool)
	var out []*backend
	for _, b := range a.backends {
		if !seen[b] {
			seen[b] = true
			out = append(out, b)
		}
	}
	return out
}

// backend is one token store and the broker that owns its tokens. It is
// opened lazily: at the app's Start or on first use.
type backend struct {
	mu     sync.Mutex
	opts   tokenstore.Options
	cfg    exchange.Config
	logger *zap.Logger

	store  *tokenstore.Badger
	broker *exchange.Broker
	closed bool

	ready atomic.Pointer[opened] // set once open; read lock-free on the hot path

	accountFor func(name string) exchange.Account // from the newest handler configuration
	rate       float64                            // rate_limit of the newest handler configuration
	migrations map[string]*migration
	ctx        context.Context // ends when the backend is destroyed
	cancel     context.CancelFunc
}

// opened is what an open backend hands to requests.
type opened struct {
	broker *exchange.Broker
	store  tokenstore.Store
}

// configure records the newest exchange configuration (the last provisioned
// configuration wins, as in a reload) after checking that it does not
// conflict with how the store is used.
func (b *backend) configure(opts tokenstore.Options, cfg exchange.Config, accountFor func(string) exchange.Account, rate float64) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if !bytesEqual(b.opts.EncryptionKey, opts.EncryptionKey) {
		return fmt.Errorf("store %s: every handler sharing a store must use the same encryption_key", opts.Path)
	}
	b.cfg = cfg
	b.accountFor = accountFor
	b.rate = rate
	if b.broker != nil {
		return b.broker.SetConfig(cfg)
	}
	return nil
}

// open opens the store and starts the broker if they are not open yet.
func (b *backend) open() (*exchange.Broker, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.broker != nil {
		return b.broker, nil
	}
	if b.closed {
		return nil, errors.New("token store is closed")
	}
	s, err := tokenstore.Open(b.opts)
	if err != nil {
		if errors.Is(err, tokenstore.ErrLocked) {
			return nil, fmt.Errorf("token store %s is in use by another process (another Caddy?): %w", b.opts.Path, err)
		}
		return nil, fmt.Errorf("opening token store %s: %w", b.opts.Path, err)
	}
	br, err := exchange.NewBroker(s, b.cfg)
	if err != nil {
		_ = s.Close()
		return nil, fmt.Errorf("starting token broker: %w", err)
	}
	b.store, b.broker = s, br
	b.ready.Store(&opened{broker: br, store: s})
	b.logger.Info("token store open", zap.String("path", b.opts.Path), zap.Bool("encrypted", b.opts.EncryptionKey != nil))
	return br, nil
}

// get returns the broker and store, opening them on first use.
func (b *backend) get() (*opened, error) {
	if o := b.ready.Load(); o != nil {
		return o, nil
	}
	if _, err := b.open(); err != nil {
		return nil, err
	}
	if o := b.ready.Load(); o != nil {
		return o, nil
	}
	return nil, errors.New("token store is closed")
}

// Destruct closes the broker and the store; the usage pool calls it when the
// last configuration using the store is gone.
func (b *backend) Destruct() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.closed = true
	b.ready.Store(nil)
	b.cancel()
	var errs []error
	if b.broker != nil {
		errs = append(errs, b.broker.Close())
	}
	if b.store != nil {
		errs = append(errs, b.store.Close())
	}
	b.broker, b.store = nil, nil
	return errors.Join(errs...)
}

func bytesEqual(a, b []byte) bool { return string(a) == string(b) }

// Interface guards
var (
	_ caddy.App         = (*App)(nil)
	_ caddy.Provisioner = (*App)(nil)
	_ caddy.Destructor  = (*backend)(nil)
)
