package caddymodule

import (
	"encoding/json"
	"fmt"
	"net/http"
	"sort"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"

	"github.com/amobridge/amobridge/tokenstore"
)

func init() {
	caddy.RegisterModule(adminAPI{})
}

// adminAPI is the admin.api.amocrm module: Caddy's admin endpoint gains
//
//	GET    /amocrm/tokens                        list stored tokens (never a secret)
//	DELETE /amocrm/tokens?account=A&login=L      revoke one user's token
//	POST   /amocrm/migrations                    start a bulk exchange (CSV or JSON body)
//	GET    /amocrm/migrations/{id}               a bulk exchange's progress and results
type adminAPI struct{}

// CaddyModule returns the Caddy module information.
func (adminAPI) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "admin.api.amocrm",
		New: func() caddy.Module { return new(adminAPI) },
	}
}

// Routes returns the admin routes.
func (a adminAPI) Routes() []caddy.AdminRoute {
	return []caddy.AdminRoute{
		{Pattern: "/amocrm/tokens", Handler: caddy.AdminHandlerFunc(a.handleTokens)},
		{Pattern: "/amocrm/migrations", Handler: caddy.AdminHandlerFunc(a.handleMigrations)},
		{Pattern: "/amocrm/migrations/", Handler: caddy.AdminHandlerFunc(a.handleMigrations)},
	}
}

// TokenInfo is what the admin API tells of a stored token: never a secret.
type TokenInfo struct {
	Store        string     `json:"store"`
	Account      string     `json:"account"`
	Login        string     `json:"login"`
	AccessExpiry time.Time  `json:"access_expiry"`
	IssuedAt     time.Time  `json:"issued_at"`
	RefreshAge   string     `json:"refresh_age"`
	LastUsed     *time.Time `json:"last_used,omitempty"`
	// Dead: amoCRM refused the refresh token; the user's next request with
	// the right key exchanges again.
	Dead bool `json:"dead,omitempty"`
}

// openBackends lists the token stores open in this process.
func openBackends() []*backend {
	var out []*backend
	backends.Range(func(_, v any) bool {
		if b, ok := v.(*backend); ok {
			out = append(out, b)
		}
		return true
	})
	sort.Slice(out, func(i, j int) bool { return out[i].spec.key < out[j].spec.key })
	return out
}

func apiErr(status int, format string, args ...any) error {
	return caddy.APIError{HTTPStatus: status, Err: fmt.Errorf(format, args...)}
}

func (adminAPI) handleTokens(w http.ResponseWriter, r *http.Request) error {
	bs := openBackends()
	if len(bs) == 0 {
		return apiErr(http.StatusServiceUnavailable, "no amocrm_auth handler is configured")
	}
	switch r.Method {
	case http.MethodGet:
		now := time.Now()
		list := []TokenInfo{}
		account := r.URL.Query().Get("account")
		for _, b := range bs {
			br, err := b.get(r.Context())
			if err != nil {
				return apiErr(http.StatusServiceUnavailable, "token store %s: %v", b.spec, err)
			}
			err = br.Tokens(r.Context(), func(t *tokenstore.Token) error {
				if account != "" && t.Account != account {
					return nil
				}
				ti := TokenInfo{Store: b.spec.key, Account: t.Account, Login: t.Login, AccessExpiry: t.Expiry,
					IssuedAt: t.IssuedAt, RefreshAge: now.Sub(t.IssuedAt).Round(time.Second).String(),
					Dead: !t.Refreshable()}
				if !t.LastUsed.IsZero() {
					lu := t.LastUsed
					ti.LastUsed = &lu
				}
				list = append(list, ti)
				return nil
			})
			if err != nil {
				return apiErr(http.StatusInternalServerError, "listing tokens: %v", err)
			}
		}
		sort.Slice(list, func(i, j int) bool {
			if list[i].Account != list[j].Account {
				return list[i].Account < list[j].Account
			}
			return list[i].Login < list[j].Login
		})
		return writeJSON(w, http.StatusOK, list)

	case http.MethodDelete:
		q := r.URL.Query()
		account, login := strings.ToLower(q.Get("account")), q.Get("login")
		if account == "" || login == "" {
			return apiErr(http.StatusBadRequest, "account and login query parameters are required")
		}
		revoked := 0
		for _, b := range bs {
			br, err := b.get(r.Context())
			if err != nil {
				return apiErr(http.StatusServiceUnavailable, "token store %s: %v", b.spec, err)
			}
			had, err := br.Revoke(r.Context(), account, login)
			if err != nil {
				return apiErr(http.StatusInternalServerError, "revoking: %v", err)
			}
			if had {
				revoked++
			}
		}
		if revoked == 0 {
			return apiErr(http.StatusNotFound, "no token for account %q, login %q", account, login)
		}
		return writeJSON(w, http.StatusOK, map[string]any{"revoked": true, "account": account, "login": login})

	default:
		return apiErr(http.StatusMethodNotAllowed, "method not allowed")
	}
}

func (adminAPI) handleMigrations(w http.ResponseWriter, r *http.Request) error {
	bs := openBackends()
	if len(bs) == 0 {
		return apiErr(http.StatusServiceUnavailable, "no amocrm_auth handler is configured")
	}
	id := strings.TrimPrefix(strings.TrimPrefix(r.URL.Path, "/amocrm/migrations"), "/")
	switch {
	case r.Method == http.MethodPost && id == "":
		if len(bs) > 1 && r.URL.Query().Get("store") == "" {
			return apiErr(http.StatusBadRequest, "several token stores are open; name one with ?store=<path>")
		}
		b := bs[0]
		if s := r.URL.Query().Get("store"); s != "" {
			b = nil
			for _, x := range bs {
				if x.spec.key == s {
					b = x
				}
			}
			if b == nil {
				return apiErr(http.StatusNotFound, "no open token store at %q", s)
			}
		}
		users, err := parseMigrationList(r)
		if err != nil {
			return apiErr(http.StatusBadRequest, "%v", err)
		}
		m, err := b.startMigration(users)
		if err != nil {
			return apiErr(http.StatusServiceUnavailable, "%v", err)
		}
		return writeJSON(w, http.StatusAccepted, m.status())

	case r.Method == http.MethodGet && id == "":
		var all []MigrationStatus
		for _, b := range bs {
			for _, m := range b.migrationsList() {
				all = append(all, m.status())
			}
		}
		return writeJSON(w, http.StatusOK, all)

	case r.Method == http.MethodGet:
		for _, b := range bs {
			if m := b.migration(id); m != nil {
				return writeJSON(w, http.StatusOK, m.status())
			}
		}
		return apiErr(http.StatusNotFound, "no migration %q", id)

	default:
		return apiErr(http.StatusMethodNotAllowed, "method not allowed")
	}
}

func writeJSON(w http.ResponseWriter, status int, v any) error {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// Interface guard
var _ caddy.AdminRouter = (*adminAPI)(nil)
