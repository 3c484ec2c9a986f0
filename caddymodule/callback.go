package caddymodule

import (
	"errors"
	"net/http"
	"time"

	"go.uber.org/zap"

	"github.com/amobridge/amobridge/exchange"
	"github.com/amobridge/amobridge/legacy"
)

// serveCallback answers amoCRM's call to the Redirect URI
// (GET <callback_path>?code=..&state=..&from_exchange=1). It answers at once:
// amoCRM calls it once with a short timeout; the broker exchanges the code
// for tokens in the background. An unknown, expired or reused state gets 400
// and nothing is exchanged.
func (h *Handler) serveCallback(w http.ResponseWriter, r *http.Request) error {
	h.metrics.request(outcomeCallback)
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		legacy.WriteError(w, &legacy.Error{Status: http.StatusMethodNotAllowed, Code: "405", Text: "the callback takes GET"}, time.Now())
		return nil
	}
	if !h.share.enter() {
		legacy.WriteError(w, reloading(), time.Now())
		return nil
	}
	defer h.share.exit()
	br, err := h.backend.get(r.Context())
	if err != nil {
		h.logger.Error("token store unavailable at callback", zap.Error(err))
		legacy.WriteError(w, storeUnavailable(), time.Now())
		return nil
	}
	if err := br.HandleCallback(r.URL.Query()); errors.Is(err, exchange.ErrBadCallback) {
		h.logger.Info("callback refused", zap.String("error", safeError(err)))
		legacy.WriteError(w, &legacy.Error{Status: http.StatusBadRequest, Code: "400",
			Text: "unknown, expired or reused state, or not our client_id"}, time.Now())
		return nil
	} else if err != nil {
		// The store is unreachable (Redis down): amoCRM does not call
		// again, so this exchange is lost; the user's next request after
		// exchange_interval exchanges again.
		h.logger.Error("callback not taken: the token store is unavailable", zap.String("error", safeError(err)))
		legacy.WriteError(w, storeUnavailable(), time.Now())
		return nil
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write([]byte("OK\n"))
	return nil
}
