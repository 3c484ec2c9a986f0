package tokenstore

import (
	"crypto/sha256"
	"sync"
	"time"
)

// maxCachedSessions bounds the session cache; past it, sessions are still
// stored and found, but read from Badger.
const maxCachedSessions = 200000

// sessionCache keeps sessions in memory, keyed by the SHA-256 of their id
// (the id itself is never kept), so that a request carrying a session
// cookie does not read the disk. Only sessions known to be stored are
// cached: Put adds after the synced write, Delete removes before it.
type sessionCache struct {
	mu sync.RWMutex
	m  map[[sha256.Size]byte]Session
}

func (c *sessionCache) get(id string, now time.Time) (Session, bool) {
	k := sha256.Sum256([]byte(id))
	c.mu.RLock()
	s, ok := c.m[k]
	c.mu.RUnlock()
	if !ok || !s.Expires.After(now) {
		return Session{}, false
	}
	return s, true
}

func (c *sessionCache) put(id string, s Session) {
	k := sha256.Sum256([]byte(id))
	c.mu.Lock()
	if c.m == nil {
		c.m = make(map[[sha256.Size]byte]Session)
	}
	if _, ok := c.m[k]; ok || len(c.m) < maxCachedSessions {
		c.m[k] = s
	}
	c.mu.Unlock()
}

func (c *sessionCache) drop(id string) {
	k := sha256.Sum256([]byte(id))
	c.mu.Lock()
	delete(c.m, k)
	c.mu.Unlock()
}

// sweep forgets expired sessions.
func (c *sessionCache) sweep(now time.Time) {
	c.mu.Lock()
	for k, s := range c.m {
		if !s.Expires.After(now) {
			delete(c.m, k)
		}
	}
	c.mu.Unlock()
}
