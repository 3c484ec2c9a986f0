package exchange

import (
	"time"

	"go.uber.org/zap"

	"github.com/amobridge/amobridge/tokenstore"
)

// scanPerInterval is how many stored pairs the keeper scans per
// keeper_interval at most: a larger store is scanned every few intervals.
const scanPerInterval = 100_000

// keeper runs keepOnce every KeeperInterval until Close.
func (b *Broker) keeper() {
	defer b.wg.Done()
	for {
		t := time.NewTimer(b.cfg.Load().KeeperInterval)
		select {
		case <-b.ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		b.keepOnce()
	}
}

// keepOnce refreshes every pair obtained longer than KeepAlive ago (so that
// no refresh token reaches the end of its 3 months unused), one at a time
// and paced, then sweeps the store. It returns how many pairs it refreshed.
//
// In a cluster only the holder of the keeper's lease refreshes and counts;
// every process sweeps (what it persists is its own: last-use times).
func (b *Broker) keepOnce() int {
	c := b.cfg.Load()
	ctx := b.ctx
	if held, err := b.store.Lease(ctx, "keeper", 3*c.KeeperInterval); err != nil || !held {
		if err != nil && ctx.Err() == nil {
			c.Logger.Warn("keeper lease not taken", zap.Error(err))
		}
		b.sweep(c)
		return 0
	}
	now := c.Now()
	// A scan decodes every stored pair: on a large store, scan less often
	// (once per keeper_interval per 100,000 pairs). Pairs become due for a
	// keep-alive refresh after 30 days, so minutes do not matter.
	if every := c.KeeperInterval * time.Duration(max(1, b.lastCount/scanPerInterval)); !b.lastScan.IsZero() && now.Sub(b.lastScan) < every {
		b.sweep(c)
		return 0
	}
	b.lastScan = now
	type stale struct{ account, login, access string }
	var todo []stale
	var counts TokenCounts
	err := b.store.List(ctx, func(t *tokenstore.Token) error {
		counts.add(t, now, c.RefreshAhead, c.KeepAlive)
		if t.Refreshable() && now.Sub(t.IssuedAt) > c.KeepAlive {
			todo = append(todo, stale{t.Account, t.Login, t.AccessToken})
		}
		return ctx.Err()
	})
	if err != nil && ctx.Err() == nil {
		c.Logger.Error("keeper cannot list tokens", zap.Error(err))
	} else if err == nil {
		b.lastCount = counts.Fresh + counts.RefreshDue + counts.Expired + counts.Dead
		if c.Tokens != nil {
			c.Tokens(counts)
		}
	}
	n := 0
	for i, s := range todo {
		if ctx.Err() != nil {
			return n
		}
		if i > 0 && b.keeperPause > 0 {
			select {
			case <-time.After(b.keeperPause):
			case <-ctx.Done():
				return n
			}
		}
		base := b.baseURL(c, s.account)
		if base == "" {
			c.Logger.Warn("keeper skips a stale pair: the account's API base is unknown", userFields(s.account, s.login)...)
			continue
		}
		if _, err := b.refresh(ctx, Account{Name: s.account, BaseURL: base}, s.login, s.access); err != nil {
			c.Logger.Warn("keeper could not refresh a stale pair", append(userFields(s.account, s.login), zap.Error(err))...)
			continue
		}
		n++
	}
	b.sweep(c)
	return n
}

// sweep has the store drop expired records and persist last-use times.
func (b *Broker) sweep(c *Config) {
	if removed, err := b.store.Sweep(b.ctx, c.Now()); err != nil {
		if b.ctx.Err() == nil {
			c.Logger.Error("store sweep failed", zap.Error(err))
		}
	} else if removed > 0 {
		c.Logger.Debug("store swept", zap.Int("removed", removed))
	}
	b.info.prune(c.Now())
}

// TokenCounts is the keeper's census of the stored tokens, taken at each
// run (see Config.Tokens).
type TokenCounts struct {
	Fresh      int // access token valid beyond RefreshAhead
	RefreshDue int // access token within RefreshAhead of its expiry
	Expired    int // access token expired; refreshed on the next request
	Dead       int // refresh token refused by amoCRM; the next request with the key exchanges again
	KeepAlive  int // refresh token older than KeepAlive: the keeper refreshes it now
	// OldestRefresh is the age of the oldest live refresh token (amoCRM
	// kills one unused for 3 months).
	OldestRefresh time.Duration
}

func (tc *TokenCounts) add(t *tokenstore.Token, now time.Time, ahead, keepAlive time.Duration) {
	switch {
	case !t.Refreshable():
		tc.Dead++
		return
	case !now.Before(t.Expiry):
		tc.Expired++
	case t.Expiry.Sub(now) <= ahead:
		tc.RefreshDue++
	default:
		tc.Fresh++
	}
	age := now.Sub(t.IssuedAt)
	if age > keepAlive {
		tc.KeepAlive++
	}
	tc.OldestRefresh = max(tc.OldestRefresh, age)
}
