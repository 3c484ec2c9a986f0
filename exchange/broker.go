package exchange

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
	"golang.org/x/sync/singleflight"

	"github.com/amobridge/amobridge/tokenstore"
)

// Account names an amoCRM account and where its API answers.
type Account struct {
	Name    string // the account's subdomain ("acme"): the store key
	BaseURL string // "https://acme.amocrm.ru", or a test fake; no trailing slash
}

// Broker owns the token life of every user: it is the only place that calls
// amoCRM's OAuth endpoints. It is safe for concurrent use; one Broker is
// shared by every configuration that uses the same store.
type Broker struct {
	store     tokenstore.Store
	cfg       atomic.Pointer[Config]
	defClient *http.Client

	ctx    context.Context // ended by Close; background work runs under it
	cancel context.CancelFunc
	mu     sync.Mutex // guards closed and wg.Add
	closed bool
	wg     sync.WaitGroup

	exchanges singleflight.Group // one exchange flight per user
	refreshes singleflight.Group // one refresh flight per user

	wmu         sync.Mutex
	waiters     map[string]*waiter // pending state → the flight waiting for its code
	unsubscribe func()             // stops the store's change events

	fmu      sync.Mutex
	failures map[string]time.Time // user → when a refresh last failed (transiently)

	bmu   sync.Mutex
	bases map[string]string // account → BaseURL last seen, for the keeper

	info infoCache

	lastScan  time.Time // the keeper's last scan of every pair (only the keeper goroutine uses these two)
	lastCount int       // how many pairs it found
	guard     guard     // restrains clients whose keys amoCRM rejects
	// localPace keeps the accounts' pace in this process while the store's
	// shared queues are unavailable.
	localPace *tokenstore.Local

	// Pacing of background work; tests shorten them.
	keeperPause time.Duration // between two keeper refreshes (amoCRM allows ~7 calls/s)
	retryDelay  time.Duration // before retrying a code grant that failed transiently
	backoff     time.Duration // after a failed refresh, serve the still valid access token this long without retrying
}

// Timeouts of the broker's own calls, on top of the HTTP client's.
const (
	callTimeout     = 30 * time.Second
	callbackTimeout = 2 * time.Second // the callback's store work; amoCRM waits ~3 s
	maxBases        = 4096
)

// NewBroker validates c and returns a broker using s, with its keeper
// started. Close stops the broker; it does not close s.
func NewBroker(s tokenstore.Store, c Config) (*Broker, error) {
	if s == nil {
		return nil, errors.New("exchange: nil store")
	}
	b := &Broker{
		store:       s,
		defClient:   newDefaultClient(),
		waiters:     make(map[string]*waiter),
		failures:    make(map[string]time.Time),
		bases:       make(map[string]string),
		keeperPause: 200 * time.Millisecond,
		retryDelay:  time.Second,
		backoff:     30 * time.Second,
	}
	b.info.init()
	b.guard.init()
	b.localPace = tokenstore.NewLocal(nil)
	if err := b.SetConfig(c); err != nil {
		return nil, err
	}
	b.ctx, b.cancel = context.WithCancel(context.Background())
	b.unsubscribe = s.Subscribe(b.seen)
	b.wg.Add(1)
	go b.keeper()
	return b, nil
}

// SetConfig validates c and makes it the broker's configuration. Work
// already under way finishes with the configuration it started with; the
// rate limit changes pace, and every account's queue keeps its turns.
func (b *Broker) SetConfig(c Config) error {
	nc, err := c.normalize(b.defClient)
	if err != nil {
		return fmt.Errorf("exchange: config: %w", err)
	}
	b.cfg.Store(nc)
	return nil
}

// Config returns the configuration in force (defaults filled in).
func (b *Broker) Config() Config { return *b.cfg.Load() }

// Close stops the keeper and every flight and waits for background work
// (code grants under way) to end. It does not close the store.
func (b *Broker) Close() error {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return nil
	}
	b.closed = true
	b.mu.Unlock()
	b.unsubscribe()
	b.cancel()
	b.wg.Wait()
	b.defClient.CloseIdleConnections()
	return nil
}

// track registers a piece of background work; ok is false once the broker
// is closed. done must be called when the work ends.
func (b *Broker) track() (done func(), ok bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return nil, false
	}
	b.wg.Add(1)
	return b.wg.Done, true
}

// Revoke deletes the user's token (admin API). The next request with the
// user's key exchanges again, within amoCRM's limit. It reports whether the
// user had a token.
func (b *Broker) Revoke(ctx context.Context, account, login string) (bool, error) {
	login = NormalizeLogin(login)
	if _, err := b.store.Get(ctx, account, login); errors.Is(err, tokenstore.ErrNotFound) {
		return false, nil
	} else if err != nil {
		return false, newErr(KindInternal, "revoke", err)
	}
	uk := userKey(account, login)
	err := b.store.Delete(ctx, account, login)
	if err != nil {
		return false, newErr(KindInternal, "revoke", err)
	}
	b.clearFailure(uk)
	b.info.drop(uk)
	b.cfg.Load().Logger.Info("token revoked", userFields(account, login)...)
	return true, nil
}

// NormalizeLogin returns the form of a login under which the user's token
// is kept: amoCRM logins are e-mail addresses, matched without regard to
// case, so that one user has one token and one exchange however a client
// spells the login. Every Broker method that takes a login applies it.
func NormalizeLogin(login string) string { return strings.ToLower(login) }

// Tokens calls fn for every stored token (never to be changed), until fn
// returns an error, which Tokens then returns.
func (b *Broker) Tokens(ctx context.Context, fn func(*tokenstore.Token) error) error {
	return b.store.List(ctx, fn)
}

// userKey names a user in the broker's maps and flights.
func userKey(account, login string) string { return account + "\x00" + login }

func userFields(account, login string) []zap.Field {
	return []zap.Field{zap.String("account", account), zap.String("login", login)}
}

// fresh reports whether t's access token is usable beyond ahead.
func fresh(t *tokenstore.Token, now time.Time, ahead time.Duration) bool {
	return t.AccessToken != "" && t.Expiry.Sub(now) > ahead
}

// alive reports whether t's access token has not expired yet.
func alive(t *tokenstore.Token, now time.Time) bool {
	return t.AccessToken != "" && t.Expiry.After(now)
}

// keyMatches compares the key hash in constant time.
func keyMatches(t *tokenstore.Token, kh []byte) bool {
	return len(t.KeyHash) > 0 && subtle.ConstantTimeCompare(t.KeyHash, kh) == 1
}

// newState returns a random state of 192 bits, URL-safe.
func newState() (string, error) {
	var p [24]byte
	if _, err := rand.Read(p[:]); err != nil {
		return "", err
	}
	return base64.RawURLEncoding.EncodeToString(p[:]), nil
}

// rememberBase records where an account's API answers, for the keeper.
func (b *Broker) rememberBase(a Account) {
	if a.BaseURL == "" {
		return
	}
	b.bmu.Lock()
	if len(b.bases) < maxBases || b.bases[a.Name] != "" {
		b.bases[a.Name] = a.BaseURL
	}
	b.bmu.Unlock()
}

// baseURL returns where account's API answers when no request names it.
func (b *Broker) baseURL(c *Config, account string) string {
	if c.BaseURL != nil {
		if u := strings.TrimRight(c.BaseURL(account), "/"); u != "" {
			return u
		}
	}
	b.bmu.Lock()
	defer b.bmu.Unlock()
	return b.bases[account]
}

// noteFailure, backingOff and clearFailure keep a short memory of failed
// refreshes so that an unreachable amoCRM is not called on every request
// while the access token still works.
func (b *Broker) noteFailure(uk string, now time.Time) {
	b.fmu.Lock()
	defer b.fmu.Unlock()
	if len(b.failures) >= 4096 {
		for k, at := range b.failures {
			if now.Sub(at) > b.backoff {
				delete(b.failures, k)
			}
		}
	}
	b.failures[uk] = now
}

func (b *Broker) backingOff(uk string, now time.Time) bool {
	b.fmu.Lock()
	defer b.fmu.Unlock()
	at, ok := b.failures[uk]
	return ok && now.Sub(at) < b.backoff
}

func (b *Broker) clearFailure(uk string) {
	b.fmu.Lock()
	delete(b.failures, uk)
	b.fmu.Unlock()
}
