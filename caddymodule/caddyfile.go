package caddymodule

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/dustin/go-humanize"

	"github.com/amobridge/amobridge/tokenstore"
)

func init() {
	httpcaddyfile.RegisterHandlerDirective("amocrm_auth", parseCaddyfile)
	// Before basic_auth, so the directive works in a site block and inside
	// handle/route without a global order line.
	httpcaddyfile.RegisterDirectiveOrder("amocrm_auth", httpcaddyfile.Before, "basic_auth")
}

func parseCaddyfile(h httpcaddyfile.Helper) (caddyhttp.MiddlewareHandler, error) {
	m := new(Handler)
	if err := m.UnmarshalCaddyfile(h.Dispenser); err != nil {
		return nil, err
	}
	return m, nil
}

// UnmarshalCaddyfile sets up the handler from Caddyfile tokens:
//
//	amocrm_auth {
//		client_id         <id>
//		client_secret     <secret>
//		redirect_uri      <absolute uri>
//		subdomain         <literal or placeholder>
//		account_domain    amocrm.ru|amocrm.com|kommo.com
//		api_base          <url>
//		callback_path     <path>
//		store badger {
//			path           <dir>
//			encryption_key <hex or base64 key>
//			cache_size     <users kept in memory>
//			cache_memory   <size of the packed cache, or off>
//			table_memory   <size of resident table pages, or off>
//		}
//		store redis {
//			address        <host:port>   (repeat for a Cluster, or Sentinels)
//			master_name    <name>        (Sentinel)
//			username       <user>
//			password       <password>
//			db             <number>
//			tls
//			key_prefix     <prefix>
//			encryption_key <hex or base64 key>
//			cache_size     <users kept in memory>
//		}
//		exchange_timeout  <duration>
//		refresh_ahead     <duration>
//		exchange_interval <duration>
//		keep_alive        <duration>
//		session_ttl       <duration>
//		keeper_interval   <duration>
//		rate_limit        <per second, 0 = off>
//		reject_limit      <rejected exchanges per client and window, 0 = off>
//		reject_window     <duration>
//		max_body          <size>
//		body_timeout      <duration>
//	}
func (h *Handler) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // directive name
	if d.NextArg() {
		return d.Errf("amocrm_auth takes no arguments on its line, only a block; got %q", d.Val())
	}
	strs := map[string]*string{
		"client_id": &h.ClientID, "client_secret": &h.ClientSecret, "redirect_uri": &h.RedirectURI,
		"subdomain": &h.Subdomain, "account_domain": &h.AccountDomain, "api_base": &h.APIBase,
		"callback_path": &h.CallbackPath,
	}
	durs := map[string]*caddy.Duration{
		"exchange_timeout": &h.ExchangeTimeout, "refresh_ahead": &h.RefreshAhead,
		"exchange_interval": &h.ExchangeInterval, "keep_alive": &h.KeepAlive,
		"session_ttl": &h.SessionTTL, "keeper_interval": &h.KeeperInterval,
		"reject_window": &h.RejectWindow, "body_timeout": &h.BodyTimeout,
	}
	for d.NextBlock(0) {
		opt := d.Val()
		if field, ok := strs[opt]; ok {
			val, err := oneArg(d, opt)
			if err != nil {
				return err
			}
			*field = val
			continue
		}
		if field, ok := durs[opt]; ok {
			val, err := oneArg(d, opt)
			if err != nil {
				return err
			}
			dur, err := caddy.ParseDuration(val)
			if err != nil || dur <= 0 {
				return d.Errf("%s: %q is not a positive duration (e.g. 60s, 10m, 30d)", opt, val)
			}
			*field = caddy.Duration(dur)
			continue
		}
		switch opt {
		case "rate_limit":
			val, err := oneArg(d, opt)
			if err != nil {
				return err
			}
			r, err := strconv.ParseFloat(val, 64)
			if err != nil || r < 0 {
				return d.Errf("rate_limit: %q is not a number of requests per second >= 0", val)
			}
			h.RateLimit = &r

		case "reject_limit":
			val, err := oneArg(d, opt)
			if err != nil {
				return err
			}
			n, err := strconv.Atoi(val)
			if err != nil || n < 0 {
				return d.Errf("reject_limit: %q is not a whole number >= 0", val)
			}
			h.RejectLimit = &n

		case "max_body":
			val, err := oneArg(d, opt)
			if err != nil {
				return err
			}
			n, err := humanize.ParseBytes(val)
			if err != nil || n == 0 || n > 1<<40 {
				return d.Errf("max_body: %q is not a size (e.g. 10MiB)", val)
			}
			h.MaxBody = int64(n)

		case "store":
			if err := h.unmarshalStore(d); err != nil {
				return err
			}

		default:
			return d.Errf("amocrm_auth: unknown option %q", opt)
		}
	}
	return h.validateStatic()
}

func (h *Handler) unmarshalStore(d *caddyfile.Dispenser) error {
	sc := &StoreConfig{Type: "badger"}
	if d.NextArg() {
		sc.Type = d.Val()
		if sc.Type != "badger" && sc.Type != "redis" {
			return d.Errf("store: %q is unknown (badger or redis)", d.Val())
		}
	}
	if d.NextArg() {
		return d.Errf("store: unexpected argument %q", d.Val())
	}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		opt := d.Val()
		if opt == "tls" { // a flag
			if d.NextArg() {
				return d.Errf("store tls: takes no value")
			}
			sc.TLS = true
			continue
		}
		val, err := oneArg(d, "store "+opt)
		if err != nil {
			return err
		}
		switch opt {
		case "path":
			sc.Path = val
		case "encryption_key":
			sc.EncryptionKey = val
		case "address":
			sc.Addresses = append(sc.Addresses, val)
		case "master_name":
			sc.MasterName = val
		case "username":
			sc.Username = val
		case "password":
			sc.Password = val
		case "key_prefix":
			sc.KeyPrefix = val
		case "db":
			n, err := strconv.Atoi(val)
			if err != nil || n < 0 {
				return d.Errf("store db: %q is not a database number >= 0", val)
			}
			sc.DB = n
		case "cache_size":
			n, err := strconv.Atoi(val)
			if err != nil || n <= 0 {
				return d.Errf("store cache_size: %q is not a number of users > 0", val)
			}
			sc.CacheSize = n
		case "cache_memory":
			if val == "off" {
				sc.CacheMemory = -1
				break
			}
			n, err := humanize.ParseBytes(val)
			if err != nil || n < 4<<20 || n > 1<<50 {
				return d.Errf("store cache_memory: %q is not a size of at least 4MiB (e.g. 1GiB), or off", val)
			}
			sc.CacheMemory = int64(n)
		case "table_memory":
			if val == "off" {
				sc.TableMemory = -1
				break
			}
			n, err := humanize.ParseBytes(val)
			if err != nil || n < 1<<20 || n > 1<<50 {
				return d.Errf("store table_memory: %q is not a size of at least 1MiB (e.g. 256MiB), or off", val)
			}
			sc.TableMemory = int64(n)
		default:
			return d.Errf("store: unknown option %q", opt)
		}
	}
	if sc.Type == "badger" {
		sc.Type = "" // the default
	}
	h.Store = sc
	return nil
}

func oneArg(d *caddyfile.Dispenser, opt string) (string, error) {
	if !d.NextArg() {
		return "", d.Errf("%s: missing value", opt)
	}
	val := d.Val()
	if d.NextArg() {
		return "", d.Errf("%s: takes one value, got another: %q", opt, d.Val())
	}
	return val, nil
}

// validateStatic checks what can be checked without the environment: it runs
// when a Caddyfile is adapted, and Validate runs again with placeholders
// resolved when the handler is provisioned.
func (h *Handler) validateStatic() error {
	c := *h
	c.clientID = stand(h.ClientID, "id")
	c.clientSecret = stand(h.ClientSecret, "secret")
	c.redirectURI = stand(h.RedirectURI, "https://placeholder.invalid/callback")
	c.subdomainLiteral = !strings.Contains(h.Subdomain, "{")
	c.callbackPath = h.CallbackPath
	if c.callbackPath == "" {
		c.callbackPath = pathOf(c.redirectURI)
	}
	if err := c.Validate(); err != nil {
		return err
	}
	if h.Store != nil && h.Store.EncryptionKey != "" && !strings.Contains(h.Store.EncryptionKey, "{") {
		if _, err := tokenstore.ParseEncryptionKey(h.Store.EncryptionKey); err != nil {
			return fmt.Errorf("amocrm_auth: store encryption_key: %w", err)
		}
	}
	return nil
}

// stand returns v, or a valid stand-in when v holds a placeholder that only
// provisioning can resolve.
func stand(v, standIn string) string {
	if strings.Contains(v, "{") {
		return standIn
	}
	return v
}
