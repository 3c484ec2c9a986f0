package exchange

import (
	"time"

	"go.uber.org/zap"

	"github.com/amobridge/amobridge/tokenstore"
)

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
func (b *Broker) keepOnce() int {
	c := b.cfg.Load()
	ctx := b.ctx
	now := c.Now()
	type stale struct{ account, login, access string }
	var todo []stale
	err := b.store.List(ctx, func(t *tokenstore.Token) error {
		if t.RefreshToken != "" && now.Sub(t.IssuedAt) > c.KeepAlive {
			todo = append(todo, stale{t.Account, t.Login, t.AccessToken})
		}
		return ctx.Err()
	})
	if err != nil && ctx.Err() == nil {
		c.Logger.Error("keeper cannot list tokens", zap.Error(err))
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
	if removed, err := b.store.Sweep(ctx, c.Now()); err != nil {
		if ctx.Err() == nil {
			c.Logger.Error("store sweep failed", zap.Error(err))
		}
	} else if removed > 0 {
		c.Logger.Debug("store swept", zap.Int("removed", removed))
	}
	b.info.prune(c.Now())
	return n
}
