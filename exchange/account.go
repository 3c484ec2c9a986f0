package exchange

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/oauth2"

	"github.com/amobridge/amobridge/tokenstore"
)

// AccountInfo is what GET /api/v4/account tells about the account and the
// token's user; auth.php emulation answers with it.
type AccountInfo struct {
	ID            int64
	Name          string
	Subdomain     string
	CurrentUserID int64 // the token's user
	Currency      string
	Country       string
	Timezone      string // "" if amoCRM did not say: the caller picks a default
	Language      string // "ru" if amoCRM did not say
}

const (
	infoTTL = 10 * time.Minute
	infoMax = 4096
)

// AccountInfo returns the account's details as seen with token t, cached
// for 10 minutes per (account, user): current_user_id differs by user.
// If amoCRM refuses t (401), the user is reauthorized (see Reauthorize) and
// the call made once more with the new token, as a forwarded request is
// replayed; if that fails too, the error wraps ErrTokenRejected, or is
// Reauthorize's (KindWrongKey for a dead pair).
func (b *Broker) AccountInfo(ctx context.Context, a Account, t *tokenstore.Token) (*AccountInfo, error) {
	ai, err := b.accountInfo(ctx, a, t)
	if !errors.Is(err, ErrTokenRejected) {
		return ai, err
	}
	nt, rerr := b.Reauthorize(ctx, a, t.Login, t.AccessToken)
	if rerr != nil {
		return nil, rerr
	}
	return b.accountInfo(ctx, a, nt)
}

func (b *Broker) accountInfo(ctx context.Context, a Account, t *tokenstore.Token) (*AccountInfo, error) {
	const op = "account info"
	c := b.cfg.Load()
	a.BaseURL = strings.TrimRight(a.BaseURL, "/")
	if t == nil || t.AccessToken == "" || a.BaseURL == "" {
		return nil, newErr(KindInternal, op, errors.New("no token or base URL"))
	}
	key := userKey(a.Name, t.Login)
	now := c.Now()
	if ai, ok := b.info.get(key, now); ok {
		return ai, nil
	}
	if e := b.turn(ctx, a.Name, op, 0); e != nil {
		return nil, e
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, a.BaseURL+"/api/v4/account?with=datetime_settings", nil)
	if err != nil {
		return nil, newErr(KindInternal, op, errors.New("cannot build the request"))
	}
	(&oauth2.Token{AccessToken: t.AccessToken, TokenType: "Bearer"}).SetAuthHeader(req)
	req.Header.Set("X-Client-UUID", c.ClientID)
	ans, e := call(c, req, op)
	if e != nil {
		return nil, e
	}
	switch {
	case ans.status == http.StatusOK:
	case ans.status == http.StatusUnauthorized:
		return nil, newErr(KindUpstream, op, ErrTokenRejected)
	case ans.status == http.StatusTooManyRequests:
		return nil, &Error{Kind: KindLimited, Op: op, RetryAfter: retryAfter(ans.header, now, time.Second), Err: errors.New("amoCRM answered 429")}
	default:
		return nil, newErr(KindUpstream, op, fmt.Errorf("unexpected answer (HTTP %d)", ans.status))
	}
	ai, err := parseAccount(ans.body)
	if err != nil {
		return nil, newErr(KindUpstream, op, err)
	}
	b.info.put(key, ai, now.Add(infoTTL))
	return ai, nil
}

// flexInt reads a JSON number or a string holding one.
type flexInt int64

func (f *flexInt) UnmarshalJSON(p []byte) error {
	if len(p) > 0 && p[0] == '"' {
		var s string
		if err := json.Unmarshal(p, &s); err != nil {
			return err
		}
		if s == "" {
			*f = 0
			return nil
		}
		p = []byte(s)
	}
	if string(p) == "null" {
		*f = 0
		return nil
	}
	n, err := strconv.ParseInt(string(p), 10, 64)
	*f = flexInt(n)
	return err
}

type datetimeSettings struct {
	Timezone string `json:"timezone"`
	Language string `json:"language"`
}

func parseAccount(body []byte) (*AccountInfo, error) {
	var raw struct {
		ID               flexInt           `json:"id"`
		Name             string            `json:"name"`
		Subdomain        string            `json:"subdomain"`
		CurrentUserID    flexInt           `json:"current_user_id"`
		Currency         string            `json:"currency"`
		Country          string            `json:"country"`
		Timezone         string            `json:"timezone"`
		Language         string            `json:"language"`
		DatetimeSettings *datetimeSettings `json:"datetime_settings"`
		Embedded         struct {
			DatetimeSettings *datetimeSettings `json:"datetime_settings"`
		} `json:"_embedded"`
	}
	if err := json.Unmarshal(body, &raw); err != nil {
		return nil, errors.New("account answer is not valid JSON")
	}
	if raw.ID <= 0 {
		return nil, errors.New("account answer has no id")
	}
	ai := &AccountInfo{
		ID: int64(raw.ID), Name: raw.Name, Subdomain: raw.Subdomain, CurrentUserID: int64(raw.CurrentUserID),
		Currency: raw.Currency, Country: raw.Country, Timezone: raw.Timezone, Language: raw.Language,
	}
	for _, ds := range []*datetimeSettings{raw.DatetimeSettings, raw.Embedded.DatetimeSettings} {
		if ds == nil {
			continue
		}
		if ds.Timezone != "" {
			ai.Timezone = ds.Timezone
		}
		if ai.Language == "" {
			ai.Language = ds.Language
		}
	}
	if ai.Language == "" {
		ai.Language = "ru"
	}
	return ai, nil
}

// infoCache is a small bounded cache of AccountInfo by user.
type infoCache struct {
	mu sync.Mutex
	m  map[string]infoEntry
}

type infoEntry struct {
	ai      *AccountInfo
	expires time.Time
}

func (ic *infoCache) init() { ic.m = make(map[string]infoEntry) }

func (ic *infoCache) get(key string, now time.Time) (*AccountInfo, bool) {
	ic.mu.Lock()
	defer ic.mu.Unlock()
	e, ok := ic.m[key]
	if !ok || !now.Before(e.expires) {
		return nil, false
	}
	cp := *e.ai
	return &cp, true
}

func (ic *infoCache) put(key string, ai *AccountInfo, expires time.Time) {
	ic.mu.Lock()
	defer ic.mu.Unlock()
	if len(ic.m) >= infoMax {
		ic.pruneLocked(expires.Add(-infoTTL))
		for k := range ic.m { // still full: drop arbitrary entries
			if len(ic.m) < infoMax {
				break
			}
			delete(ic.m, k)
		}
	}
	cp := *ai
	ic.m[key] = infoEntry{ai: &cp, expires: expires}
}

func (ic *infoCache) drop(key string) {
	ic.mu.Lock()
	delete(ic.m, key)
	ic.mu.Unlock()
}

func (ic *infoCache) prune(now time.Time) {
	ic.mu.Lock()
	ic.pruneLocked(now)
	ic.mu.Unlock()
}

func (ic *infoCache) pruneLocked(now time.Time) {
	for k, e := range ic.m {
		if !now.Before(e.expires) {
			delete(ic.m, k)
		}
	}
}
