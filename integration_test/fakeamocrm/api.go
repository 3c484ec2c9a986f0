package fakeamocrm

import (
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"sort"
	"strings"
)

// handleAuthPHP answers /private/api/auth.php. The proxy must answer auth.php
// itself: a call reaching amoCRM is a violation.
func (s *Server) handleAuthPHP(w http.ResponseWriter, rq *request) {
	s.mu.Lock()
	s.violateLocked(rq, rq.acct.Name, ViolationAuthPHP, "", "path", "auth.php must be answered by the proxy")
	s.mu.Unlock()
	writeJSON(w, http.StatusUnauthorized, "application/json", map[string]any{"response": map[string]any{
		"auth": false, "error": "Неверный логин или пароль", "error_code": "110",
		"ip": "127.0.0.1", "domain": rq.acct.Name + "." + s.opts.BaseDomain, "server_time": rq.now.Unix(),
	}})
}

// bearer is the owner of a valid access token.
type bearer struct {
	user *user
}

// authenticate checks the request's Bearer token: present, known, unexpired,
// not revoked and issued for this account. The reason is "" when valid.
func (s *Server) authenticate(rq *request) (*bearer, string) {
	vals := rq.Header.Values("Authorization")
	if len(vals) == 0 {
		return nil, "no Authorization header"
	}
	if len(vals) > 1 {
		return nil, "more than one Authorization header"
	}
	scheme, tok, ok := strings.Cut(vals[0], " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") || tok == "" || strings.TrimSpace(tok) != tok {
		return nil, "the Authorization header is not a Bearer token"
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	t := s.access[hashKey(tok)]
	switch {
	case t == nil:
		return nil, "unknown access token"
	case t.user.account != rq.acct.Name:
		return nil, "the token was issued for another account"
	case t.revoked:
		return nil, "the token was revoked"
	case !rq.now.Before(t.exp):
		return nil, "the token has expired"
	}
	rq.rec.Login, rq.rec.UserID = t.user.login, t.user.id
	return &bearer{user: t.user}, ""
}

// handleAPI serves /api/... and /private/... with a Bearer token.
func (s *Server) handleAPI(w http.ResponseWriter, rq *request) {
	b, reason := s.authenticate(rq)
	if b == nil {
		s.mu.Lock()
		s.st.API401++
		s.mu.Unlock()
		writeProblem(w, http.StatusUnauthorized, "Unauthorized", "", reason)
		return
	}
	p := rq.path
	switch {
	case p == "/api/v4/account":
		s.v4Account(w, rq, b)
	case strings.HasPrefix(p, "/private/api/v2/json/"):
		s.legacyPrivate(w, rq, b, strings.TrimPrefix(p, "/private/api/v2/json/"))
	case strings.HasPrefix(p, "/api/v2/"):
		s.legacyV2(w, rq, b, strings.TrimPrefix(p, "/api/v2/"))
	default:
		writeJSON(w, http.StatusOK, "application/json", map[string]any{"_fake": s.echo(rq, b)})
	}
}

// echoInfo tells a test what amoCRM received.
type echoInfo struct {
	Method      string `json:"method"`
	Path        string `json:"path"`
	RawQuery    string `json:"raw_query"`
	Account     string `json:"account"`
	UserID      int64  `json:"user_id"`
	Login       string `json:"login"`
	ContentType string `json:"content_type"`
	BodyLen     int    `json:"body_len"`
	BodySHA256  string `json:"body_sha256"`
}

func (s *Server) echo(rq *request, b *bearer) echoInfo {
	h := sha256.Sum256(rq.body)
	return echoInfo{
		Method: rq.Method, Path: rq.path, RawQuery: rq.URL.RawQuery, Account: rq.acct.Name,
		UserID: b.user.id, Login: b.user.login, ContentType: rq.Header.Get("Content-Type"),
		BodyLen: len(rq.body), BodySHA256: hex.EncodeToString(h[:]),
	}
}

// v4Account serves GET /api/v4/account.
func (s *Server) v4Account(w http.ResponseWriter, rq *request, b *bearer) {
	if rq.Method != http.MethodGet {
		w.Header().Set("Allow", http.MethodGet)
		writeProblem(w, http.StatusMethodNotAllowed, "", "", "method not allowed")
		return
	}
	a := rq.acct
	out := map[string]any{
		"id": a.ID, "name": a.Title, "subdomain": a.Name,
		"created_at": 1500000000, "created_by": 0, "updated_at": 1500000000, "updated_by": 0,
		"current_user_id": b.user.id, "country": a.Country, "currency": a.Currency,
		"currency_symbol": currencySymbol(a.Currency), "customers_mode": "disabled",
		"is_unsorted_on": true, "is_loss_reason_enabled": true, "is_helpbot_enabled": false,
		"is_technical_account": false, "contact_name_display_order": 1,
		"_links": map[string]any{"self": map[string]string{"href": s.accountURL(a.Name) + "/api/v4/account"}},
	}
	emb := map[string]any{}
	for _, with := range strings.Split(rq.URL.Query().Get("with"), ",") {
		if strings.TrimSpace(with) == "datetime_settings" {
			emb["datetime_settings"] = map[string]any{
				"date_pattern": "d.m.Y H:i", "short_date_pattern": "d.m.Y", "short_time_pattern": "H:i",
				"date_format": "d.m.Y", "time_format": "H:i:s", "timezone": a.Timezone,
				"timezone_offset": tzOffset(a.Timezone, rq.now),
			}
		}
	}
	if len(emb) > 0 {
		out["_embedded"] = emb
	}
	writeJSON(w, http.StatusOK, "application/hal+json", out)
}

func (s *Server) accountURL(name string) string { return "https://" + name + "." + s.opts.BaseDomain }

func currencySymbol(c string) string {
	switch c {
	case "RUB":
		return "₽"
	case "USD":
		return "$"
	case "EUR":
		return "€"
	}
	return c
}

// legacyPrivate serves /private/api/v2/json/<entity>/<action> in the old
// {"response":{...}} shape, plus a "_fake" echo.
func (s *Server) legacyPrivate(w http.ResponseWriter, rq *request, b *bearer, rest string) {
	entity, action, _ := strings.Cut(rest, "/")
	resp := map[string]any{"server_time": rq.now.Unix()}
	switch {
	case entity == "accounts" && action == "current":
		resp["account"] = s.legacyAccount(rq, b)
	case action == "list":
		resp[entity] = []any{}
	case action == "set":
		resp[entity] = map[string]any{"add": []any{map[string]any{"id": s.nextEntityID(), "request_id": 0}}}
	default:
		writeProblem(w, http.StatusNotFound, "Not Found", "", "no such legacy endpoint")
		return
	}
	writeJSON(w, http.StatusOK, "application/json", map[string]any{"response": resp, "_fake": s.echo(rq, b)})
}

// legacyAccount is the old accounts/current block.
func (s *Server) legacyAccount(rq *request, b *bearer) map[string]any {
	a := rq.acct
	s.mu.Lock()
	var list []*user
	for _, u := range s.users {
		if u.account == a.Name {
			list = append(list, u)
		}
	}
	s.mu.Unlock()
	sort.Slice(list, func(i, j int) bool { return list[i].id < list[j].id })
	users := make([]any, 0, len(list))
	for _, u := range list {
		users = append(users, map[string]any{"id": u.id, "login": u.login, "name": u.login, "language": a.Language, "is_admin": "Y"})
	}
	return map[string]any{
		"id": a.ID, "name": a.Title, "subdomain": a.Name, "currency": a.Currency, "timezone": a.Timezone,
		"language": a.Language, "date_pattern": "d.m.Y H:i", "current_user": b.user.id, "users": users,
	}
}

// legacyV2 serves /api/v2/<entity> in the HAL shape of API v2, plus a "_fake" echo.
func (s *Server) legacyV2(w http.ResponseWriter, rq *request, b *bearer, entity string) {
	entity = strings.TrimSuffix(entity, "/")
	self := map[string]any{"self": map[string]string{"href": "/api/v2/" + entity, "method": strings.ToLower(rq.Method)}}
	var out map[string]any
	switch {
	case entity == "account":
		out = map[string]any{
			"id": rq.acct.ID, "name": rq.acct.Title, "subdomain": rq.acct.Name, "currency": rq.acct.Currency,
			"timezone": rq.acct.Timezone, "language": rq.acct.Language, "current_user": b.user.id,
			"_links": self,
		}
	case rq.Method == http.MethodGet:
		out = map[string]any{"_links": self, "_embedded": map[string]any{"items": []any{}}}
	default:
		out = map[string]any{"_links": self, "_embedded": map[string]any{"items": []any{
			map[string]any{"id": s.nextEntityID(), "request_id": 0},
		}}}
	}
	out["_fake"] = s.echo(rq, b)
	writeJSON(w, http.StatusOK, "application/hal+json", out)
}

func (s *Server) nextEntityID() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.nextID++
	return s.nextID
}
