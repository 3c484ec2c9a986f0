package exchange

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"sync"
	"time"

	"github.com/amobridge/amobridge/tokenstore"
)

// memStore is a small in-memory tokenstore.Store for tests that need to
// count calls or make the store fail. Records are copied in and out.
type memStore struct {
	secret []byte

	mu       sync.Mutex
	tokens   map[string]*tokenstore.Token
	pending  map[string]tokenstore.Pending
	attempts map[string]tokenstore.Attempt
	sessions map[string]tokenstore.Session
	sweeps   int
	puts     int
	closed   bool

	putErr func(*tokenstore.Token) error // if set, Put fails when it returns an error

	*tokenstore.Local
}

var _ tokenstore.Store = (*memStore)(nil)

func newMemStore() *memStore {
	s := &memStore{
		secret:   make([]byte, 32),
		tokens:   map[string]*tokenstore.Token{},
		pending:  map[string]tokenstore.Pending{},
		attempts: map[string]tokenstore.Attempt{},
		sessions: map[string]tokenstore.Session{},
	}
	if _, err := rand.Read(s.secret); err != nil {
		panic(err)
	}
	s.Local = tokenstore.NewLocal(s)
	return s
}

func mk(account, login string) string { return account + "\x00" + login }

func copyToken(t *tokenstore.Token) *tokenstore.Token {
	c := *t
	c.KeyHash = append([]byte(nil), t.KeyHash...)
	return &c
}

func (s *memStore) Get(_ context.Context, account, login string) (*tokenstore.Token, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, tokenstore.ErrClosed
	}
	t, ok := s.tokens[mk(account, login)]
	if !ok {
		return nil, tokenstore.ErrNotFound
	}
	return t, nil // shared, read-only, as the interface says
}

func (s *memStore) Put(_ context.Context, t *tokenstore.Token) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.putErr != nil {
		if err := s.putErr(t); err != nil {
			return err
		}
	}
	if t.Account == "" || t.Login == "" {
		return errors.New("memstore: token without account or login")
	}
	s.puts++
	s.tokens[mk(t.Account, t.Login)] = copyToken(t)
	s.Changed(t.Account, t.Login)
	return nil
}

func (s *memStore) Delete(_ context.Context, account, login string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.tokens, mk(account, login))
	s.Changed(account, login)
	return nil
}

func (s *memStore) List(ctx context.Context, fn func(*tokenstore.Token) error) error {
	s.mu.Lock()
	all := make([]*tokenstore.Token, 0, len(s.tokens))
	for _, t := range s.tokens {
		all = append(all, copyToken(t))
	}
	s.mu.Unlock()
	for _, t := range all {
		if err := fn(t); err != nil {
			return err
		}
	}
	return nil
}

func (s *memStore) Touch(account, login string, at time.Time) {}

func (s *memStore) PutSession(_ context.Context, id string, v tokenstore.Session) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.sessions[id] = v
	return nil
}

func (s *memStore) GetSession(_ context.Context, id string) (tokenstore.Session, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	v, ok := s.sessions[id]
	if !ok || !v.Expires.After(time.Now()) {
		return tokenstore.Session{}, tokenstore.ErrNotFound
	}
	return v, nil
}

func (s *memStore) DeleteSession(_ context.Context, id string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.sessions, id)
	return nil
}

func (s *memStore) PutPending(_ context.Context, p tokenstore.Pending) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	p.KeyHash = append([]byte(nil), p.KeyHash...)
	s.pending[p.State] = p
	return nil
}

func (s *memStore) TakePending(_ context.Context, state string) (tokenstore.Pending, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	p, ok := s.pending[state]
	delete(s.pending, state)
	if !ok || !p.Expires.After(time.Now()) {
		return tokenstore.Pending{}, tokenstore.ErrNotFound
	}
	return p, nil
}

func (s *memStore) PutAttempt(_ context.Context, a tokenstore.Attempt) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	a.KeyHash = append([]byte(nil), a.KeyHash...)
	s.attempts[mk(a.Account, a.Login)] = a
	return nil
}

func (s *memStore) GetAttempt(_ context.Context, account, login string) (tokenstore.Attempt, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	a, ok := s.attempts[mk(account, login)]
	if !ok {
		return tokenstore.Attempt{}, tokenstore.ErrNotFound
	}
	return a, nil
}

func (s *memStore) Sweep(_ context.Context, now time.Time) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.sweeps++
	n := 0
	for k, p := range s.pending {
		if !p.Expires.After(now) {
			delete(s.pending, k)
			n++
		}
	}
	return n, nil
}

func (s *memStore) HashKey(apiKey string) []byte {
	h := hmac.New(sha256.New, s.secret)
	h.Write([]byte(apiKey))
	return h.Sum(nil)
}

func (s *memStore) KeyHash(apiKey string) (sum [32]byte) {
	copy(sum[:], s.HashKey(apiKey))
	return sum
}

func (s *memStore) Close() error {
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	return nil
}

func (s *memStore) count(fn func(*memStore) int) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return fn(s)
}
