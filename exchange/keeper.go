package exchange

import (
	"context"
	"errors"
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
	type stale struct{ account, login string }
	var todo []stale
	var counts TokenCounts
	err := b.summaries(ctx, func(s tokenstore.Summary) error {
		counts.add(s, now, c.RefreshAhead, c.KeepAlive)
		if s.Refreshable && now.Sub(s.IssuedAt) > c.KeepAlive {
			todo = append(todo, stale{s.Account, s.Login})
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
		// The refresh spends the pair only if the access token is still
		// the one read now (another refresh may have come first).
		t, err := b.store.Get(ctx, s.account, s.login)
		if err != nil {
			if !errors.Is(err, tokenstore.ErrNotFound) && ctx.Err() == nil {
				c.Logger.Warn("keeper cannot read a stale pair", append(userFields(s.account, s.login), zap.Error(err))...)
			}
			continue // deleted since the census, or the store is out of reach
		}
		if now.Sub(t.IssuedAt) <= c.KeepAlive {
			continue // refreshed since the census
		}
		if _, err := b.refresh(ctx, Account{Name: s.account, BaseURL: base}, s.login, t.AccessToken); err != nil {
			c.Logger.Warn("keeper could not refresh a stale pair", append(userFields(s.account, s.login), zap.Error(err))...)
			continue
		}
		n++
	}
	b.sweep(c)
	return n
}

// summaries calls fn with every stored pair's summary: through the store's
// Summaries where it has one (Badger: the records are read in place), else
// through List.
func (b *Broker) summaries(ctx context.Context, fn func(tokenstore.Summary) error) error {
	if s, ok := b.store.(interface {
		Summaries(context.Context, func(tokenstore.Summary) error) error
	}); ok {
		return s.Summaries(ctx, fn)
	}
	return b.store.List(ctx, func(t *tokenstore.Token) error { return fn(t.Summary()) })
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

func (tc *TokenCounts) add(t tokenstore.Summary, now time.Time, ahead, keepAlive time.Duration) {
	switch {
	case !t.Refreshable:
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
