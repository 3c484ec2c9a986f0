package exchange

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"time"

	"go.uber.org/zap"
)

// Defaults for the zero values of Config's durations.
const (
	DefaultExchangeTimeout  = 60 * time.Second
	DefaultRefreshAhead     = 10 * time.Minute
	DefaultExchangeInterval = 5 * time.Minute
	DefaultKeepAlive        = 30 * 24 * time.Hour
	DefaultCodeLifetime     = 20 * time.Minute
	DefaultKeeperInterval   = time.Minute
	DefaultSessionTTL       = 15 * time.Minute
)

// Config is the broker's configuration. The zero value of every duration
// means its default; ClientID, ClientSecret and an absolute RedirectURI are
// required.
type Config struct {
	ClientID, ClientSecret, RedirectURI string

	ExchangeTimeout  time.Duration // request waits this long for the code; default 60s
	RefreshAhead     time.Duration // refresh access tokens this long before expiry; default 10m
	ExchangeInterval time.Duration // amoCRM's minimum time between two exchanges for one user; default 5m
	KeepAlive        time.Duration // the keeper refreshes pairs older than this; default 30 days
	CodeLifetime     time.Duration // a pending exchange's state lives this long; default 20m
	KeeperInterval   time.Duration // how often the keeper runs; default 1m
	SessionTTL       time.Duration // lifetime of an emulated auth.php session; default 15m

	// RejectLimit is how many exchanges amoCRM rejects that one client (see
	// TokenFrom) may cause per RejectWindow before it may start no more;
	// 0 means DefaultRejectLimit, < 0 no limit. RejectWindow's zero value
	// means DefaultRejectWindow.
	RejectLimit  int
	RejectWindow time.Duration

	// RateLimit is how many requests per second per account may go to
	// amoCRM (see Broker.Turn); 0 means no limit. The pace keeps a guard so
	// that amoCRM never counts more than RateLimit in any second.
	RateLimit float64

	// HTTPClient makes the calls to amoCRM. Nil means a client with sane
	// timeouts (dial 5s, whole request 15s). Redirects are never followed,
	// whichever client is given.
	HTTPClient *http.Client
	Logger     *zap.Logger      // nil means no logging
	Now        func() time.Time // default time.Now

	// BaseURL returns an account's API base ("https://acme.amocrm.ru") for
	// the keeper, which refreshes tokens no request is asking for. Nil, or
	// "", means the base last seen in a request for that account; an account
	// not seen since the start is then skipped.
	BaseURL func(account string) string

	// Observe, if set, is told of the broker's events, for metrics:
	// ("lookup", "hit"|"miss", 0) for every token lookup of a request,
	// ("exchange", result, duration) when an exchange flight ends and
	// ("refresh", result, duration) when a refresh ends, where result is
	// "ok", "rejected", "limited", "timeout", "failed" or "dead";
	// ("lock", result, waited) when a refresh took (or failed to take) the
	// user's refresh lock; ("event", "token"|"all", 0) for each change
	// event of the store. It must be cheap and must not block; it never
	// receives a user, key or token.
	Observe func(event, result string, d time.Duration)

	// Tokens, if set, receives the keeper's census of the stored tokens at
	// each of its runs, for metrics (tokens near expiry, dead pairs).
	Tokens func(TokenCounts)
}

// observe reports an event to c.Observe, if set.
func (c *Config) observe(event, result string, d time.Duration) {
	if c.Observe != nil {
		c.Observe(event, result, d)
	}
}

// resultOf names the outcome of an exchange or refresh for Observe.
func resultOf(err error) string {
	if err == nil {
		return "ok"
	}
	switch KindOf(err) {
	case KindWrongKey:
		return "rejected"
	case KindLimited, KindBusy:
		return "limited"
	case KindTimeout:
		return "timeout"
	default:
		return "failed"
	}
}

// Normalized validates c and returns it with the defaults filled in (the
// configuration a Broker would run with); errors name the option.
func (c Config) Normalized() (Config, error) {
	nc, err := c.normalize(nil)
	if err != nil {
		return Config{}, err
	}
	return *nc, nil
}

// normalize validates c and returns a copy with defaults filled in.
// defClient is used when c.HTTPClient is nil.
func (c Config) normalize(defClient *http.Client) (*Config, error) {
	if c.ClientID == "" {
		return nil, errors.New("client_id is required")
	}
	if c.ClientSecret == "" {
		return nil, errors.New("client_secret is required")
	}
	if c.RedirectURI == "" {
		return nil, errors.New("redirect_uri is required")
	}
	u, err := url.Parse(c.RedirectURI)
	if err != nil || !u.IsAbs() || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http") || u.RawQuery != "" || u.Fragment != "" {
		return nil, fmt.Errorf("redirect_uri must be an absolute http(s) URL without query, exactly as registered in amoCRM; got %q", c.RedirectURI)
	}
	if c.RateLimit < 0 {
		return nil, errors.New("rate_limit must not be negative (0 turns it off)")
	}
	for _, d := range []struct {
		name string
		v    *time.Duration
		def  time.Duration
	}{
		{"exchange_timeout", &c.ExchangeTimeout, DefaultExchangeTimeout},
		{"refresh_ahead", &c.RefreshAhead, DefaultRefreshAhead},
		{"exchange_interval", &c.ExchangeInterval, DefaultExchangeInterval},
		{"keep_alive", &c.KeepAlive, DefaultKeepAlive},
		{"code_lifetime", &c.CodeLifetime, DefaultCodeLifetime},
		{"keeper_interval", &c.KeeperInterval, DefaultKeeperInterval},
		{"session_ttl", &c.SessionTTL, DefaultSessionTTL},
		{"reject_window", &c.RejectWindow, DefaultRejectWindow},
	} {
		if *d.v < 0 {
			return nil, fmt.Errorf("%s must not be negative", d.name)
		}
		if *d.v == 0 {
			*d.v = d.def
		}
	}
	if c.RejectLimit == 0 {
		c.RejectLimit = DefaultRejectLimit
	}
	if c.HTTPClient == nil {
		c.HTTPClient = defClient
	} else {
		hc := *c.HTTPClient // a shallow copy: the caller's client is not changed
		hc.CheckRedirect = noRedirects
		c.HTTPClient = &hc
	}
	if c.Logger == nil {
		c.Logger = zap.NewNop()
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return &c, nil
}

// noRedirects makes a client return a redirect answer as it is: OAuth calls
// must not carry secrets to another address.
func noRedirects(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }

// newDefaultClient returns the client used when Config.HTTPClient is nil.
func newDefaultClient() *http.Client {
	d := &net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}
	return &http.Client{
		Timeout:       15 * time.Second,
		CheckRedirect: noRedirects,
		Transport: &http.Transport{
			Proxy:                 http.ProxyFromEnvironment,
			DialContext:           d.DialContext,
			TLSHandshakeTimeout:   5 * time.Second,
			ResponseHeaderTimeout: 12 * time.Second,
			ExpectContinueTimeout: time.Second,
			IdleConnTimeout:       90 * time.Second,
			MaxIdleConnsPerHost:   8,
			ForceAttemptHTTP2:     true,
		},
	}
}
