package fakeamocrm

import (
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// debugPrefix is where the fake's own endpoints live, for the demo and for tests
// that run the fake as a separate process. They are not amoCRM: not routed,
// recorded, delayed or failed.
const debugPrefix = "/_fake/"

// serveDebug serves:
//
//	GET  /_fake/stats, /_fake/requests, /_fake/violations, /_fake/callbacks
//	POST /_fake/reset, /_fake/deliver-pending
//	POST /_fake/down?on=1, /_fake/fail-all?status=503, /_fake/delay?d=2s,
//	     /_fake/callback-delay?d=1s, /_fake/drop-callbacks?n=1, /_fake/hold-callbacks?on=1,
//	     /_fake/token-failure?status=500&body=..., /_fake/exchange-failure?status=..&body=..,
//	     /_fake/revoke?account=&login=, /_fake/expire-access?account=&login=,
//	     /_fake/api-key (form: account, login, key)
//
// Parameters may be in the query or in a form body.
func (s *Server) serveDebug(w http.ResponseWriter, r *http.Request) {
	name := strings.TrimPrefix(r.URL.Path, debugPrefix)
	if r.Method == http.MethodGet {
		switch name {
		case "stats":
			writeJSON(w, http.StatusOK, "application/json", s.Stats())
		case "requests":
			writeJSON(w, http.StatusOK, "application/json", s.requestViews())
		case "violations":
			writeJSON(w, http.StatusOK, "application/json", s.Violations())
		case "callbacks":
			writeJSON(w, http.StatusOK, "application/json", s.Callbacks())
		default:
			http.NotFound(w, r)
		}
		return
	}
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", "GET, POST")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	if err := r.ParseForm(); err != nil {
		http.Error(w, "bad form", http.StatusBadRequest)
		return
	}
	bad := func(param string) { http.Error(w, "bad or missing parameter "+param, http.StatusBadRequest) }
	var err error
	switch name {
	case "reset":
		s.Reset()
	case "deliver-pending":
		writeJSON(w, http.StatusOK, "application/json", map[string]int{"delivered": s.DeliverPending()})
		return
	case "down":
		s.SetDown(formBool(r, "on"))
	case "hold-callbacks":
		s.SetHoldCallbacks(formBool(r, "on"))
	case "fail-all":
		st, e := strconv.Atoi(r.FormValue("status"))
		if e != nil {
			bad("status")
			return
		}
		s.SetFailAll(st)
	case "delay", "callback-delay":
		d, e := time.ParseDuration(r.FormValue("d"))
		if e != nil {
			bad("d")
			return
		}
		if name == "delay" {
			s.SetDelay(d)
		} else {
			s.SetCallbackDelay(d)
		}
	case "drop-callbacks":
		n, e := strconv.Atoi(r.FormValue("n"))
		if e != nil {
			bad("n")
			return
		}
		s.SetDropCallbacks(n)
	case "token-failure", "exchange-failure":
		st, e := strconv.Atoi(r.FormValue("status"))
		if e != nil {
			bad("status")
			return
		}
		if name == "token-failure" {
			s.SetTokenEndpointFailure(st, r.FormValue("body"))
		} else {
			s.SetExchangeFailure(st, r.FormValue("body"))
		}
	case "revoke":
		err = s.RevokeUser(r.FormValue("account"), r.FormValue("login"))
	case "expire-access":
		err = s.ExpireAccess(r.FormValue("account"), r.FormValue("login"))
	case "api-key":
		err = s.SetAPIKey(r.FormValue("account"), r.FormValue("login"), r.PostFormValue("key"))
	default:
		http.NotFound(w, r)
		return
	}
	if err != nil {
		http.Error(w, "no such user", http.StatusNotFound)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func formBool(r *http.Request, k string) bool {
	b, _ := strconv.ParseBool(r.FormValue(k))
	return b
}

// requestView is a recorded request as /_fake/requests shows it: the Bearer
// token cut to its first 8 characters, credential values masked, and a body
// with credentials in it withheld.
type requestView struct {
	Time         time.Time           `json:"time"`
	Account      string              `json:"account"`
	Method       string              `json:"method"`
	Host         string              `json:"host"`
	Path         string              `json:"path"`
	RawQuery     string              `json:"raw_query"`
	Header       map[string][]string `json:"header"`
	Body         string              `json:"body,omitempty"`
	BodyWithheld string              `json:"body_withheld,omitempty"`
	BodyLen      int                 `json:"body_len"`
	BodySHA256   string              `json:"body_sha256"`
	Status       int                 `json:"status"`
	Login        string              `json:"login,omitempty"`
	UserID       int64               `json:"user_id,omitempty"`
}

const masked = "REDACTED"

func (s *Server) requestViews() []requestView {
	recs := s.Requests()
	out := make([]requestView, 0, len(recs))
	for _, r := range recs {
		v := requestView{
			Time: r.Time, Account: r.Account, Method: r.Method, Host: r.Host, Path: r.Path,
			RawQuery: maskQuery(r.RawQuery), Header: maskHeader(r.Header), BodyLen: r.BodyLen,
			Status: r.Status, Login: r.Login, UserID: r.UserID,
		}
		h := sha256.Sum256(r.Body)
		v.BodySHA256 = hex.EncodeToString(h[:])
		switch {
		case r.Body == nil && r.BodyLen > 0:
			v.BodySHA256 = ""
			v.BodyWithheld = "oauth2 request: carries secrets"
		case bodyHasCredentials(r):
			v.BodyWithheld = "contains legacy credentials"
		case utf8.Valid(r.Body):
			v.Body = string(r.Body)
		default:
			v.BodyWithheld = "not UTF-8"
		}
		out = append(out, v)
	}
	return out
}

func bodyHasCredentials(r Recorded) bool {
	for _, f := range inspect("", r.Header, r.Path, r.Body) {
		if f.where != whereCookie {
			return true
		}
	}
	return false
}

// maskQuery replaces the values of USER_HASH and api_key parameters.
func maskQuery(raw string) string {
	if raw == "" {
		return raw
	}
	parts := strings.Split(raw, "&")
	for i, p := range parts {
		k, _, hasValue := strings.Cut(p, "=")
		name, err := url.QueryUnescape(k)
		if err != nil {
			name = k
		}
		if hasValue && matchName(phpName(name), []string{"USER_HASH", "api_key"}) != "" {
			parts[i] = k + "=" + masked
		}
	}
	return strings.Join(parts, "&")
}

// maskHeader cuts Bearer tokens to 8 characters and masks session_id cookies.
func maskHeader(h http.Header) map[string][]string {
	out := make(map[string][]string, len(h))
	for k, vs := range h {
		vs = append([]string(nil), vs...)
		switch http.CanonicalHeaderKey(k) {
		case "Authorization":
			for i, v := range vs {
				scheme, tok, _ := strings.Cut(v, " ")
				if len(tok) > 8 {
					tok = tok[:8] + "…"
				}
				vs[i] = scheme + " " + tok
			}
		case "Cookie":
			for i, v := range vs {
				vs[i] = maskCookies(v)
			}
		}
		out[k] = vs
	}
	return out
}

// maskCookies masks session_id values in a Cookie line, whether cookies are
// separated by ';' or (as some clients do) by ','.
func maskCookies(line string) string {
	parts := strings.Split(line, ";")
	for i, p := range parts {
		sub := strings.Split(p, ",")
		for j, c := range sub {
			name, _, ok := strings.Cut(c, "=")
			if ok && strings.EqualFold(strings.TrimSpace(name), "session_id") {
				sub[j] = name + "=" + masked
			}
		}
		parts[i] = strings.Join(sub, ",")
	}
	return strings.Join(parts, ";")
}
