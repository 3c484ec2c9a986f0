package caddymodule

import (
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"net"
	"net/http"
	"strconv"
)

// safeError returns an error's text for a log line. The packages below never
// put a secret into an error; this is the one place to tighten if that ever
// changes.
func safeError(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// clientIP is the request's client address: Caddy's client IP (which
// honours trusted_proxies), else the peer's.
func clientIP(r *http.Request) string {
	if ip, ok := caddyhttp.GetVar(r.Context(), caddyhttp.ClientIPVarKey).(string); ok && ip != "" {
		return ip
	}
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

func itoa(n int) string { return strconv.Itoa(n) }
