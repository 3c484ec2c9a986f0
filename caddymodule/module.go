// Package caddymodule is amobridge's Caddy glue: the amocrm_auth HTTP handler
// and its Caddyfile directive, the amocrm app that owns the shared token store,
// the OAuth callback, the admin API, the metrics and the `caddy amocrm` command.
// It is the only package of amobridge that imports Caddy.
package caddymodule

import (
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"

	"github.com/amobridge/amobridge/exchange"
	"github.com/amobridge/amobridge/legacy"
)

func init() {
	caddy.RegisterModule(Handler{})
}

// Defaults of the handler's own options. Those of the broker's options
// (exchange_timeout, refresh_ahead, exchange_interval, keep_alive,
// keeper_interval, session_ttl) are exchange's Default* constants.
const (
	DefaultAccountDomain = "amocrm.ru"
	DefaultAPIBase       = "https://{subdomain}.{account_domain}"
	DefaultRateLimit     = 7
	DefaultMaxBody       = legacy.DefaultMaxBody
)

// Handler is the amocrm_auth HTTP handler. It finds amoCRM's legacy credentials
// (USER_LOGIN + USER_HASH in every shape legacy clients send them, login +
// api_key on /api/unsorted/, or an emulated auth.php session cookie) in a
// request, removes them, and sets the user's own OAuth Bearer token instead,
// exchanging the API key for tokens through amoCRM's exchange_api_key on the
// user's first request and refreshing them afterwards. The next handler
// (normally reverse_proxy) forwards the request to amoCRM.
//
// It also answers the OAuth callback at callback_path and emulates
// /private/api/auth.php itself.
type Handler struct {
	// The integration's ID (amoCRM calls it client_id, and client_uuid in
	// exchange_api_key). Required. Placeholders such as {env.VAR} are
	// resolved when the handler is provisioned.
	ClientID string `json:"client_id,omitempty"`

	// The integration's secret key. Required. Give it as {env.VAR}: it is
	// resolved when the handler is provisioned, so the secret never appears in
	// the configuration Caddy prints or serves.
	ClientSecret string `json:"client_secret,omitempty"`

	// The integration's Redirect URI, absolute and exactly as registered in
	// amoCRM (a trailing slash matters). amoCRM delivers the exchanged
	// authorization code to it. Required.
	RedirectURI string `json:"redirect_uri,omitempty"`

	// The amoCRM account (its subdomain, as in acme.amocrm.ru) the requests
	// belong to: a literal, or a placeholder evaluated per request such as
	// {http.request.host.labels.2}. Required.
	Subdomain string `json:"subdomain,omitempty"`

	// The account's domain: amocrm.ru (default), amocrm.com or kommo.com.
	AccountDomain string `json:"account_domain,omitempty"`

	// Where the OAuth calls (exchange_api_key, access_token, /api/v4/account)
	// are sent. {subdomain} and {account_domain} stand for the values above;
	// other placeholders are evaluated per request. Default:
	// https://{subdomain}.{account_domain}. Tests point it at a local fake.
	APIBase string `json:"api_base,omitempty"`

	// The path at which amoCRM's callback with the code is answered.
	// Default: the path of redirect_uri.
	CallbackPath string `json:"callback_path,omitempty"`

	// Where tokens are kept. Default: a Badger store of its own for the
	// integration in Caddy's data directory (amobridge/<client_id>/),
	// without encryption. A store found in amobridge/ itself (where earlier
	// versions kept it) is moved there when Caddy starts.
	Store *StoreConfig `json:"store,omitempty"`

	// How long a request waits for the authorization code of an exchange
	// before it gets 504. The exchange still completes if the code comes
	// later. Default: 60s.
	ExchangeTimeout caddy.Duration `json:"exchange_timeout,omitempty"`

	// Access tokens are refreshed this long before they expire. Default: 10m.
	RefreshAhead caddy.Duration `json:"refresh_ahead,omitempty"`

	// amoCRM's minimum time between two exchange_api_key calls for one user;
	// the module never calls it sooner. Default: 5m.
	ExchangeInterval caddy.Duration `json:"exchange_interval,omitempty"`

	// A token pair unused for this long is refreshed in the background, so
	// that its refresh token never reaches its 3-month end. Default: 30d.
	KeepAlive caddy.Duration `json:"keep_alive,omitempty"`

	// How often the background keeper looks for pairs to keep alive and
	// removes expired sessions and pending exchanges. Default: 1m.
	KeeperInterval caddy.Duration `json:"keeper_interval,omitempty"`

	// Lifetime of an emulated auth.php session. Default: 15m.
	SessionTTL caddy.Duration `json:"session_ttl,omitempty"`

	// Requests per second per account forwarded toward amoCRM; excess
	// requests wait in a bounded queue, then get 429. The budget belongs to
	// the store: one per account however many handlers use it, kept across
	// reloads. 0 turns the limit off. Default (when absent): 7.
	RateLimit *float64 `json:"rate_limit,omitempty"`

	// How many exchanges that amoCRM rejects (invented logins, wrong keys)
	// one client address may cause per reject_window; past it, the address
	// gets 429 for requests that would start an exchange, until its budget
	// refills, so a stranger cannot spend the account's calls to amoCRM.
	// Exchanges amoCRM accepts cost nothing. Whatever the budget, an address
	// whose key amoCRM rejected for a user cannot start another exchange for
	// that user for two exchange_interval. 0 turns the budget off. The
	// address is Caddy's client IP (trusted_proxies are honoured).
	// Default (when absent): 10.
	RejectLimit *int `json:"reject_limit,omitempty"`

	// The window of reject_limit. Default: 1m.
	RejectWindow caddy.Duration `json:"reject_window,omitempty"`

	// How long the module waits for a request body it must read to look
	// for credentials. A body that has not arrived whole by then (a
	// stalled or very slow client) gets 408 in the legacy format and the
	// connection is closed. Default: 30s.
	BodyTimeout caddy.Duration `json:"body_timeout,omitempty"`

	// The largest request body, in bytes, the module reads to look for
	// credentials; a larger body that must be read gets 413. Default: 10 MiB.
	MaxBody int64 `json:"max_body,omitempty"`

	// resolved at provision time
	clientID, clientSecret string
	redirectURI            string
	callbackPath           string
	subdomainLiteral       bool
	apiBase                string  // with {account_domain} substituted
	rate                   float64 // resolved rate_limit
	stripOpts              legacy.Options

	literalAccount   exchange.Account // the account, when accountIsLiteral
	accountIsLiteral bool             // neither subdomain nor api_base has a request placeholder

	// Set by Provision and never changed again: requests of a replaced
	// configuration may still run after Cleanup.
	backend *backend
	metrics *metrics
	logger  *zap.Logger
	share   *share // this handler's hold on backend and metrics
}

// CaddyModule returns the Caddy module information.
func (Handler) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.amocrm_auth",
		New: func() caddy.Module { return new(Handler) },
	}
}

var subdomainRE = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`)

// Provision sets the handler up. It resolves {env.*} placeholders in the
// secrets and registers with the amocrm app, which joins the store shared
// by every configuration that uses it. Nothing shared changes here: the
// store is opened, and this configuration's settings put in force, when the
// app starts, so that `caddy validate` never takes the directory lock away
// from a running Caddy and a configuration Caddy rejects changes nothing.
func (h *Handler) Provision(ctx caddy.Context) error {
	h.logger = ctx.Logger()
	// Validation comes before the store is joined, so that a bad config
	// leaves nothing behind; Caddy calls Validate after Provision too.
	if err := h.resolve(caddy.NewReplacer()); err != nil {
		return err
	}
	m, err := loadMetrics(ctx)
	if err != nil {
		return fmt.Errorf("registering metrics: %w", err)
	}
	h.metrics = m
	spec, err := h.storeSpec(ctx)
	if err != nil {
		releaseMetrics()
		return err
	}
	appIface, err := ctx.App("amocrm")
	if err != nil {
		releaseMetrics()
		return fmt.Errorf("loading amocrm app: %w", err)
	}
	b, err := appIface.(*App).register(h, spec)
	if err != nil {
		releaseMetrics()
		return err
	}
	h.backend = b
	h.share = newShare(func() {
		_, _ = backends.Delete(b.spec.key)
		releaseMetrics()
	})
	if spec.encryptionKey == nil {
		h.logger.Warn("token store is not encrypted at rest; set store { encryption_key {env.VAR} } to encrypt it",
			zap.String("store", spec.String()))
	}
	return nil
}

// resolve fills the handler's working fields from its configuration: the
// {env.*} placeholders of the secrets (through repl), the defaults, and what
// can be worked out once instead of per request; then it validates.
func (h *Handler) resolve(repl *caddy.Replacer) error {
	h.clientID = strings.TrimSpace(repl.ReplaceKnown(h.ClientID, ""))
	h.clientSecret = repl.ReplaceKnown(h.ClientSecret, "")
	h.redirectURI = repl.ReplaceKnown(h.RedirectURI, "")
	if h.AccountDomain == "" {
		h.AccountDomain = DefaultAccountDomain
	}
	if h.APIBase == "" {
		h.APIBase = DefaultAPIBase
	}
	h.apiBase = strings.TrimRight(strings.ReplaceAll(h.APIBase, "{account_domain}", h.AccountDomain), "/")
	h.subdomainLiteral = !strings.Contains(h.Subdomain, "{")
	h.callbackPath = h.CallbackPath
	if h.callbackPath == "" {
		h.callbackPath = pathOf(h.redirectURI)
	}
	h.stripOpts = legacy.Options{MaxBody: h.MaxBody, SessionCookie: legacy.DefaultSessionCookie,
		ReadTimeout: time.Duration(h.BodyTimeout)}
	if h.stripOpts.MaxBody == 0 {
		h.stripOpts.MaxBody = DefaultMaxBody
	}
	h.rate = float64(DefaultRateLimit)
	if h.RateLimit != nil {
		h.rate = *h.RateLimit
	}
	if err := h.Validate(); err != nil {
		return err
	}
	h.literalAccount = exchange.Account{Name: h.Subdomain,
		BaseURL: strings.ReplaceAll(h.apiBase, "{subdomain}", h.Subdomain)}
	// With a literal subdomain and no other placeholder in api_base, every
	// request has the same account: resolved once, here.
	h.accountIsLiteral = h.subdomainLiteral && !strings.Contains(h.literalAccount.BaseURL, "{")
	return nil
}

// brokerConfig is the broker configuration this handler asks for; zero
// durations mean exchange's defaults.
func (h *Handler) brokerConfig() exchange.Config {
	var logger *zap.Logger // nil before Provision (caddy adapt validates too)
	if h.logger != nil {
		logger = h.logger.Named("exchange")
	}
	return exchange.Config{
		ClientID:         h.clientID,
		ClientSecret:     h.clientSecret,
		RedirectURI:      h.redirectURI,
		ExchangeTimeout:  time.Duration(h.ExchangeTimeout),
		RefreshAhead:     time.Duration(h.RefreshAhead),
		ExchangeInterval: time.Duration(h.ExchangeInterval),
		KeepAlive:        time.Duration(h.KeepAlive),
		KeeperInterval:   time.Duration(h.KeeperInterval),
		SessionTTL:       time.Duration(h.SessionTTL),
		RateLimit:        h.rate,
		RejectLimit:      h.rejectLimit(),
		RejectWindow:     time.Duration(h.RejectWindow),
		Logger:           logger,
		Observe:          h.metrics.observe,
		Tokens:           h.metrics.tokenCounts,
	}
}

// rejectLimit is reject_limit as the broker takes it: 0 means its default,
// < 0 no limit.
func (h *Handler) rejectLimit() int {
	switch {
	case h.RejectLimit == nil:
		return 0
	case *h.RejectLimit == 0:
		return -1
	}
	return *h.RejectLimit
}

// Validate checks the configuration, with placeholders resolved; every
// message names the option. The broker's options are checked by exchange.
func (h *Handler) Validate() error {
	for _, f := range []struct{ name, raw, resolved string }{
		{"client_id", h.ClientID, h.clientID},
		{"client_secret", h.ClientSecret, h.clientSecret},
		{"redirect_uri", h.RedirectURI, h.redirectURI},
	} {
		if f.raw != "" && f.resolved == "" {
			return fmt.Errorf("amocrm_auth: %s is empty after resolving placeholders (is the environment variable set?)", f.name)
		}
	}
	if _, err := h.brokerConfig().Normalized(); err != nil {
		return fmt.Errorf("amocrm_auth: %w", err)
	}
	if h.Subdomain == "" {
		return errors.New("amocrm_auth: subdomain is required (a literal such as acme, or a placeholder)")
	}
	if h.subdomainLiteral && !subdomainRE.MatchString(h.Subdomain) {
		return fmt.Errorf("amocrm_auth: subdomain %q is not a valid amoCRM subdomain", h.Subdomain)
	}
	switch h.AccountDomain {
	case "", "amocrm.ru", "amocrm.com", "kommo.com":
	default:
		return fmt.Errorf("amocrm_auth: account_domain must be amocrm.ru, amocrm.com or kommo.com, got %q", h.AccountDomain)
	}
	if h.APIBase != "" && !strings.HasPrefix(h.APIBase, "https://") && !strings.HasPrefix(h.APIBase, "http://") {
		return fmt.Errorf("amocrm_auth: api_base must start with https:// or http://, got %q", h.APIBase)
	}
	if h.callbackPath == "" || !strings.HasPrefix(h.callbackPath, "/") {
		return fmt.Errorf("amocrm_auth: callback_path must be a path starting with / (default: the path of redirect_uri), got %q", h.callbackPath)
	}
	if err := validateStore(h.Store); err != nil {
		return err
	}
	if h.MaxBody < 0 {
		return errors.New("amocrm_auth: max_body must not be negative")
	}
	if h.BodyTimeout < 0 {
		return errors.New("amocrm_auth: body_timeout must not be negative")
	}
	if h.RejectLimit != nil && *h.RejectLimit < 0 {
		return errors.New("amocrm_auth: reject_limit must not be negative (0 turns it off)")
	}
	return nil
}

// Cleanup gives up the handler's share of the store and the metrics. The
// server of a replaced configuration may still be finishing requests that
// use them: the share is released when the last of those ends, and nothing
// is set to nil under them. The usage pool closes the store once no
// configuration and no request holds a share of it.
func (h *Handler) Cleanup() error {
	h.share.close()
	return nil
}

// accountByName resolves an account outside a request (bulk exchanges);
// placeholders in api_base other than {subdomain} are left empty.
func (h *Handler) accountByName(name string) exchange.Account {
	base := strings.ReplaceAll(h.apiBase, "{subdomain}", name)
	if strings.Contains(base, "{") {
		base = caddy.NewReplacer().ReplaceAll(base, "")
	}
	return exchange.Account{Name: name, BaseURL: base}
}

// pathOf returns the path of an absolute URI, or "" if it has none.
func pathOf(uri string) string {
	u, err := url.Parse(uri)
	if err != nil {
		return ""
	}
	return u.Path
}

// Interface guards
var (
	_ caddy.Provisioner           = (*Handler)(nil)
	_ caddy.Validator             = (*Handler)(nil)
	_ caddy.CleanerUpper          = (*Handler)(nil)
	_ caddyhttp.MiddlewareHandler = (*Handler)(nil)
)
