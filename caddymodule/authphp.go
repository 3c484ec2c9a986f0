package caddymodule

import (
	"net/http"
	"time"

	"go.uber.org/zap"

	"github.com/amobridge/amobridge/exchange"
	"github.com/amobridge/amobridge/legacy"
	"github.com/amobridge/amobridge/tokenstore"
)

// serveAuthPHP answers /private/api/auth.php itself: the key has been checked
// (the broker gave a token for it), so it opens an emulated session, fills
// the answer's account and user blocks from /api/v4/account (cached by the
// broker) and sets the session cookie. Nothing is forwarded.
func (h *Handler) serveAuthPHP(w http.ResponseWriter, r *http.Request, found legacy.Found,
	acct exchange.Account, tok *tokenstore.Token, br *exchange.Broker) error {
	info, err := br.AccountInfo(r.Context(), acct, tok)
	if err != nil {
		h.writeBrokerError(w, r, found, acct, tok.Login, err)
		return nil
	}
	id, err := br.OpenSession(r.Context(), acct, tok.Login)
	if err != nil {
		h.writeBrokerError(w, r, found, acct, tok.Login, err)
		return nil
	}
	now := time.Now()
	http.SetCookie(w, &http.Cookie{
		Name:     h.stripOpts.SessionCookie,
		Value:    id,
		Path:     "/",
		Secure:   r.TLS != nil,
		HttpOnly: true,
	})
	lang := info.Language
	if lang == "" {
		lang = "ru"
	}
	legacy.WriteAuthOK(w, found.Format,
		legacy.AuthAccount{ID: info.ID, Name: info.Name, Subdomain: info.Subdomain, Language: lang, Timezone: info.Timezone},
		legacy.AuthUser{ID: info.CurrentUserID, Language: lang}, now)
	h.metrics.request(outcomeAuthPHP)
	h.logger.Info("auth.php session opened", zap.String("account", acct.Name), zap.String("login", tok.Login))
	return nil
}
