package exchange

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/amobridge/amobridge/tokenstore"
)

// clock is a test clock: real time shifted by an offset that only grows, so
// that stores comparing with time.Now() still see records as unexpired.
type clock struct{ off atomic.Int64 }

func (c *clock) Now() time.Time          { return time.Now().Add(time.Duration(c.off.Load())) }
func (c *clock) Advance(d time.Duration) { c.off.Add(int64(d)) }

// randHex returns n random bytes in hex: secrets the audit can find.
func randHex(n int) string {
	p := make([]byte, n)
	if _, err := rand.Read(p); err != nil {
		panic(err)
	}
	return hex.EncodeToString(p)
}

// audit collects, across the whole suite, every secret the tests and the
// fake amoCRM handled, every log line of every broker (debug level) and
// every error text a broker returned. TestMain fails the suite if a secret
// shows up in any of them.
var audit = struct {
	mu      sync.Mutex
	secrets map[string]struct{}
	errs    []string
	core    zapcore.Core
	logs    *observer.ObservedLogs
}{secrets: make(map[string]struct{})}

func init() {
	audit.core, audit.logs = observer.New(zapcore.DebugLevel)
}

func noteSecret(s string) {
	if s == "" {
		return
	}
	audit.mu.Lock()
	audit.secrets[s] = struct{}{}
	audit.mu.Unlock()
}

func noteErr(err error) {
	if err == nil {
		return
	}
	audit.mu.Lock()
	audit.errs = append(audit.errs, err.Error())
	audit.mu.Unlock()
}

// logText renders a log entry with all its fields.
func logText(e observer.LoggedEntry) string {
	var b strings.Builder
	b.WriteString(e.Message)
	m := e.ContextMap()
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		fmt.Fprintf(&b, " %s=%v", k, m[k])
	}
	return b.String()
}

// leaks returns the texts that contain one of the secrets.
func leaks(texts []string, secrets map[string]struct{}) []string {
	var out []string
	for _, t := range texts {
		for s := range secrets {
			if strings.Contains(t, s) {
				out = append(out, fmt.Sprintf("%q contains a secret", t))
				break
			}
		}
	}
	return out
}

func auditTexts(logs *observer.ObservedLogs, errs []string) []string {
	texts := append([]string(nil), errs...)
	for _, e := range logs.All() {
		texts = append(texts, logText(e))
	}
	return texts
}

func TestMain(m *testing.M) {
	code := m.Run()
	audit.mu.Lock()
	texts := auditTexts(audit.logs, audit.errs)
	found := leaks(texts, audit.secrets)
	n := len(audit.secrets)
	audit.mu.Unlock()
	if len(found) > 0 {
		fmt.Fprintf(os.Stderr, "SECRET LEAK AUDIT: %d log lines or errors hold a secret:\n", len(found))
		for _, f := range found {
			fmt.Fprintln(os.Stderr, "  ", f)
		}
		code = 1
	} else if code == 0 && testing.Verbose() {
		fmt.Fprintf(os.Stderr, "secret leak audit: %d texts checked against %d secrets, none found\n", len(texts), n)
	}
	os.Exit(code)
}

// storeKind selects the store a test runs on.
type storeKind string

const (
	badgerStore storeKind = "badger"
	fakeStore   storeKind = "fake"
)

var storeKinds = []storeKind{badgerStore, fakeStore}

func newStore(t testing.TB, kind storeKind) tokenstore.Store {
	t.Helper()
	switch kind {
	case fakeStore:
		return newMemStore()
	default:
		s, err := tokenstore.Open(tokenstore.Options{InMemory: true})
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
}

// env is one test's world: a fake amoCRM, a store and a broker.
type env struct {
	t     testing.TB
	clock *clock
	amo   *fakeAmo
	store tokenstore.Store
	b     *Broker
	acct  Account
	cfg   Config
}

const (
	testClientID = "0f5b8c1e-2d3a-4b6c-9e7f-a1b2c3d4e5f6"
	testRedirect = "https://proxy.example.test/amocrm/oauth/callback"
)

// newEnv starts a fake amoCRM and a broker on a store of the given kind;
// tweak adjusts the broker's config before it starts.
func newEnv(t testing.TB, kind storeKind, tweak func(*Config)) *env {
	t.Helper()
	e := &env{t: t, clock: &clock{}}
	secret := "secret-" + randHex(20)
	noteSecret(secret)
	e.amo = newFakeAmo(t, e.clock, testClientID, secret, testRedirect)
	e.store = newStore(t, kind)
	e.acct = Account{Name: "acme", BaseURL: e.amo.URL()}
	e.cfg = Config{
		ClientID:         testClientID,
		ClientSecret:     secret,
		RedirectURI:      testRedirect,
		ExchangeTimeout:  5 * time.Second,
		ExchangeInterval: 5 * time.Minute,
		RefreshAhead:     10 * time.Minute,
		KeeperInterval:   time.Hour,
		Logger:           zap.New(audit.core),
		Now:              e.clock.Now,
	}
	if tweak != nil {
		tweak(&e.cfg)
	}
	b, err := NewBroker(e.store, e.cfg)
	if err != nil {
		t.Fatal(err)
	}
	b.retryDelay = 10 * time.Millisecond
	e.b = b
	e.amo.deliver = b.HandleCallback
	t.Cleanup(func() {
		e.amo.wait()
		if err := b.Close(); err != nil {
			t.Error(err)
		}
		e.amo.close()
		if err := e.store.Close(); err != nil {
			t.Error(err)
		}
	})
	return e
}

// user registers a user with a fresh key at the fake amoCRM.
func (e *env) user(login string) string {
	key := "key" + randHex(20)
	e.amo.setKey(login, key)
	return key
}

// token calls Token with a bounded context and audits the error.
func (e *env) token(login, key string) (*tokenstore.Token, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	t, err := e.b.Token(ctx, e.acct, login, key)
	noteErr(err)
	return t, err
}

// mustToken gets a token or fails the test.
func (e *env) mustToken(login, key string) *tokenstore.Token {
	e.t.Helper()
	t, err := e.token(login, key)
	if err != nil {
		e.t.Fatalf("Token(%s): %v", login, err)
	}
	if t == nil || t.AccessToken == "" {
		e.t.Fatalf("Token(%s): no token", login)
	}
	return t
}

// stored returns the stored token, or nil.
func (e *env) stored(login string) *tokenstore.Token {
	e.t.Helper()
	// Through Update, as a refresh reads it: a token Get serves from the
	// cache does not carry its refresh token.
	t, err := e.store.Update(context.Background(), e.acct.Name, login, func(*tokenstore.Token) bool { return false })
	if errors.Is(err, tokenstore.ErrNotFound) {
		return nil
	}
	if err != nil {
		e.t.Fatal(err)
	}
	return t
}

// eventually polls cond until it holds or 10 s pass (a liveness bound, not
// a performance assertion).
func eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// wantKind fails unless err is an *Error of kind k.
func wantKind(t testing.TB, err error, k Kind) *Error {
	t.Helper()
	var e *Error
	if !errors.As(err, &e) {
		t.Fatalf("error %v (%T), want *Error of kind %v", err, err, k)
	}
	if e.Kind != k {
		t.Fatalf("error kind %v (%v), want %v", e.Kind, err, k)
	}
	return e
}
