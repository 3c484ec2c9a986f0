package caddymodule

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"

	"github.com/amobridge/amobridge/exchange"
	"github.com/amobridge/amobridge/tokenstore"
)

// backends holds the token stores and their brokers, one per store
// directory, shared by every configuration and every request that uses the
// store: a Caddy reload runs the old and the new configuration at once, and
// Badger locks its directory. The metrics live here too (metricsPoolKey).
var backends = caddy.NewUsagePool()

// backend is one token store and the broker that owns its tokens. It is
// opened when the first configuration that uses it starts, and closed by the
// usage pool when no configuration and no request holds a share of it.
//
// Which configuration's settings are in force is decided by Start and Stop,
// never by Provision: every started configuration is an activation, and the
// newest one still active rules. A configuration that Caddy rejects after
// provisioning it is never activated, or is deactivated again when Caddy
// stops its already started apps, so the running one stays in force.
type backend struct {
	spec   storeSpec // the store, and its key in the pool
	logger *zap.Logger

	mu         sync.Mutex
	store      coordStore
	active     []activation // started configurations using the store, oldest first
	closed     bool
	migrations map[string]*migration

	broker atomic.Pointer[exchange.Broker] // set once open; read lock-free by requests
	ready  chan struct{}                   // closed once open (or destroyed)
	ctx    context.Context                 // ends when the backend is destroyed
	cancel context.CancelFunc
}

// activation is one started configuration's use of a backend.
type activation struct {
	app *App
	s   *settings
}

// newBackend returns a backend for the store spec describes, not opened.
func newBackend(spec storeSpec, logger *zap.Logger) *backend {
	ctx, cancel := context.WithCancel(context.Background())
	return &backend{spec: spec, logger: logger, ready: make(chan struct{}), ctx: ctx, cancel: cancel}
}

// activate puts s in force for app's configuration, which is starting:
// it opens the store and starts the broker if this is the store's first
// configuration, and checks that the store belongs to s's integration.
func (b *backend) activate(app *App, s *settings) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return fmt.Errorf("token store %s is closed", b.spec)
	}
	if b.store == nil {
		if err := b.openLocked(s); err != nil {
			return err
		}
	} else if err := b.store.Claim(s.cfg.ClientID); err != nil {
		return fmt.Errorf("token store %s: %w", b.spec, err)
	}
	br := b.broker.Load()
	if err := br.SetConfig(s.cfg); err != nil { // checked at provision: never expected
		return err
	}
	b.active = append(b.active, activation{app: app, s: s})
	return nil
}

// deactivate withdraws app's configuration (stopped, or rejected after its
// Start): the newest configuration still active is put back in force. With
// none left, the settings stay as they were until the backend is destroyed
// or another configuration starts.
func (b *backend) deactivate(app *App) {
	b.mu.Lock()
	defer b.mu.Unlock()
	n := len(b.active)
	for i, a := range b.active {
		if a.app == app {
			b.active = append(b.active[:i], b.active[i+1:]...)
			break
		}
	}
	if len(b.active) == n || len(b.active) == 0 {
		return
	}
	if br := b.broker.Load(); br != nil {
		if err := br.SetConfig(b.active[len(b.active)-1].s.cfg); err != nil {
			b.logger.Error("restoring the running configuration", zap.Stringer("store", b.spec), zap.Error(err))
		}
	}
}

// current returns the settings in force, or nil before the first start.
func (b *backend) current() *settings {
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.active) == 0 {
		return nil
	}
	return b.active[len(b.active)-1].s
}

// lockedRetry is how long openLocked retries a directory that is locked:
// a store of this process still closing (a configuration that let it go a
// moment ago) gives it back within that time; another process does not.
const lockedRetry = 3 * time.Second

// openLocked opens the store, claims it for s's integration and starts the
// broker with s. b.mu is held.
func (b *backend) openLocked(s *settings) error {
	if old, path := b.spec.oldPath, b.spec.badger.Path; old != "" {
		moved, err := tokenstore.MoveStore(old, path)
		if err != nil {
			return fmt.Errorf("moving the token store from the previous default directory %s to %s: %w", old, path, err)
		}
		if moved {
			b.logger.Warn("moved the token store from the previous default directory into this integration's own",
				zap.String("from", old), zap.String("to", path), zap.String("client_id", s.cfg.ClientID))
		}
	}
	var st coordStore
	var err error
	for deadline := time.Now().Add(lockedRetry); ; {
		st, err = b.spec.open()
		if !errors.Is(err, tokenstore.ErrLocked) || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err != nil {
		if errors.Is(err, tokenstore.ErrLocked) {
			return fmt.Errorf("token store %s is in use by another process (another Caddy?): %w", b.spec, err)
		}
		return fmt.Errorf("opening token store %s: %w", b.spec, err)
	}
	if err := st.Claim(s.cfg.ClientID); err != nil {
		_ = st.Close()
		return fmt.Errorf("token store %s: %w", b.spec, err)
	}
	br, err := exchange.NewBroker(st, s.cfg)
	if err != nil {
		_ = st.Close()
		return fmt.Errorf("starting token broker: %w", err)
	}
	b.store = st
	b.broker.Store(br)
	close(b.ready)
	b.logger.Info("token store open", zap.Stringer("store", b.spec), zap.String("kind", b.spec.kind),
		zap.Bool("encrypted", b.spec.encryptionKey != nil))
	return nil
}

// startWait bounds how long a request waits for a store that its
// configuration has not opened yet (Caddy starts the HTTP server and the
// amocrm app one after the other).
const startWait = 10 * time.Second

// get returns the broker, waiting for the store to open if its
// configuration is still starting.
func (b *backend) get(ctx context.Context) (*exchange.Broker, error) {
	if br := b.broker.Load(); br != nil {
		return br, nil
	}
	t := time.NewTimer(startWait)
	defer t.Stop()
	select {
	case <-b.ready:
	case <-t.C:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	if br := b.broker.Load(); br != nil {
		return br, nil
	}
	return nil, errors.New("token store is not open")
}

// Destruct closes the broker and the store; the usage pool calls it when no
// configuration and no request holds a share of the backend any more.
func (b *backend) Destruct() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return nil
	}
	b.closed = true
	b.cancel()
	var errs []error
	if br := b.broker.Load(); br != nil {
		errs = append(errs, br.Close())
	} else {
		close(b.ready)
	}
	if b.store != nil {
		errs = append(errs, b.store.Close())
	}
	return errors.Join(errs...)
}

// storeStats are what an open store tells about its memory.
type storeStats struct {
	cache tokenstore.CacheStats
	pager tokenstore.PagerStats // zero for a Redis store
}

// stats returns the store's cache and pager figures; ok is false while the
// store is not open, or once it is closed.
func (b *backend) stats() (st storeStats, ok bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.store == nil || b.closed {
		return st, false
	}
	if s, ok := b.store.(interface{ CacheStats() tokenstore.CacheStats }); ok {
		st.cache = s.CacheStats()
	}
	if s, ok := b.store.(interface{ PagerStats() tokenstore.PagerStats }); ok {
		st.pager = s.PagerStats()
	}
	return st, true
}

// Interface guard
var _ caddy.Destructor = (*backend)(nil)
