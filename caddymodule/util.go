package caddymodule

import (
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

// clientIP is the remote address without the port, for auth.php's error answer.
func clientIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

func itoa(n int) string { return strconv.Itoa(n) }
