package exchange

import (
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// Defaults of the client guard (Config.RejectLimit, Config.RejectWindow).
const (
	DefaultRejectLimit  = 10
	DefaultRejectWindow = time.Minute
)

// maxGuarded bounds the guard's memory: past it, entries that no longer
// restrain anyone are dropped, then the oldest blocks.
const maxGuarded = 100000

// guard keeps strangers from spending what belongs to users and accounts.
// A client (address) whose key amoCRM rejected for a user cannot start
// another exchange for that user for two exchange intervals, so it cannot
// take the user's one exchange per interval again before the user's own
// client gets its turn; a client that has authenticated as the user before
// (its key got the user's token) is the user's own and is not held back.
// And every client has a budget of rejected exchanges (RejectLimit per
// RejectWindow): past it, it starts no exchange at all until the budget
// refills, so invented logins cannot spend the account's calls to amoCRM.
// Exchanges amoCRM accepts cost nothing.
type guard struct {
	mu      sync.Mutex
	budgets map[string]*rate.Limiter // client → its budget of rejected exchanges
	blocked map[string]time.Time     // user + client → until when
	known   map[string]time.Time     // user + client → when it last authenticated as the user
}

// knownFor is how long a client that authenticated as a user stays the
// user's own for the guard.
const knownFor = 90 * 24 * time.Hour

func (g *guard) init() {
	g.budgets = make(map[string]*rate.Limiter)
	g.blocked = make(map[string]time.Time)
	g.known = make(map[string]time.Time)
}

// authenticated records that client's key got user uk's token.
func (g *guard) authenticated(uk, client string, now time.Time) {
	if client == "" {
		return
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if len(g.blocked)+len(g.budgets)+len(g.known) >= maxGuarded {
		g.pruneLocked(now)
	}
	g.known[uk+"\x00"+client] = now
}

// check returns how long client must wait before it may start an exchange
// for user uk; 0: it may now.
func (g *guard) check(c *Config, uk, client string, now time.Time) time.Duration {
	if client == "" || c.RejectLimit < 0 {
		return 0
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	k := uk + "\x00" + client
	if until, ok := g.blocked[k]; ok {
		if left := until.Sub(now); left > 0 {
			if at, own := g.known[k]; !own || now.Sub(at) > knownFor {
				return left
			}
		}
	}
	if lim := g.budgets[client]; lim != nil {
		if tokens := lim.TokensAt(now); tokens < 1 {
			return time.Duration((1 - tokens) / float64(lim.Limit()) * float64(time.Second))
		}
	}
	return 0
}

// rejected records that amoCRM rejected a key client presented for user
// uk: the client's budget is charged and the user blocked for it.
func (g *guard) rejected(c *Config, uk, client string, now time.Time) {
	if client == "" || c.RejectLimit < 0 {
		return
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if len(g.blocked)+len(g.budgets)+len(g.known) >= maxGuarded {
		g.pruneLocked(now)
	}
	g.blocked[uk+"\x00"+client] = now.Add(2 * c.ExchangeInterval)
	lim := g.budgets[client]
	if lim == nil {
		lim = rate.NewLimiter(rate.Limit(float64(c.RejectLimit)/c.RejectWindow.Seconds()), c.RejectLimit)
		lim.AllowN(now, 0) // the budget starts full at now
		g.budgets[client] = lim
	}
	// The charge may take the budget below zero: more rejections in flight
	// at once than it allows mean a longer wait.
	lim.ReserveN(now, 1)
}

// pruneLocked drops blocks that have ended and budgets that are full
// again; if that is not enough, every block. g.mu is held.
func (g *guard) pruneLocked(now time.Time) {
	for k, until := range g.blocked {
		if !until.After(now) {
			delete(g.blocked, k)
		}
	}
	for k, lim := range g.budgets {
		if lim.TokensAt(now) >= float64(lim.Burst()) {
			delete(g.budgets, k)
		}
	}
	for k, at := range g.known {
		if now.Sub(at) > knownFor {
			delete(g.known, k)
		}
	}
	if len(g.blocked)+len(g.budgets)+len(g.known) >= maxGuarded {
		clear(g.blocked)
		clear(g.known)
	}
}
