package caddymodule

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/amobridge/amobridge/tokenstore"
)

// replayNext answers the first request 401 with headers of its own (as
// amoCRM does for a token it refuses), after another flight stored a new
// token; it answers the replay 200.
type replayNext struct {
	store tokenstore.Store
	calls int
	auths []string
}

func (n *replayNext) ServeHTTP(w http.ResponseWriter, r *http.Request) error {
	n.calls++
	n.auths = append(n.auths, r.Header.Get("Authorization"))
	if n.calls == 1 {
		if _, err := n.store.Update(r.Context(), benchAccount, benchLogin, func(t *tokenstore.Token) bool {
			t.AccessToken = "access-fresh"
			return true
		}); err != nil {
			return err
		}
		w.Header().Set("Content-Type", "application/problem+json")
		w.Header().Set("Content-Length", "5")
		w.Header().Set("X-Refused", "yes")
		w.WriteHeader(http.StatusUnauthorized)
		_, _ = w.Write([]byte("nope!"))
		return nil
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write([]byte(`{"ok":true}`))
	return nil
}

func replayRequest() *http.Request {
	r := httptest.NewRequest(http.MethodGet, "/api/v2/account?USER_LOGIN=bench%40example.com&USER_HASH="+benchKey, nil)
	repl := caddy.NewReplacer()
	return r.WithContext(context.WithValue(r.Context(), caddy.ReplacerCtxKey, repl))
}

func TestReplayAfter401StartsFromCleanHeaders(t *testing.T) {
	h, store := benchHandler(t)
	next := &replayNext{store: store}
	w := httptest.NewRecorder()
	w.Header().Set("Server", "Caddy")
	if err := h.ServeHTTP(w, replayRequest(), caddyhttp.Handler(next)); err != nil {
		t.Fatal(err)
	}
	if next.calls != 2 || next.auths[1] != "Bearer access-fresh" {
		t.Fatalf("calls %d, authorizations %q: want a replay with the fresh token", next.calls, next.auths)
	}
	res := w.Result()
	if res.StatusCode != http.StatusOK || w.Body.String() != `{"ok":true}` {
		t.Fatalf("client got %d %q", res.StatusCode, w.Body.String())
	}
	if res.Header.Get("X-Refused") != "" || res.Header.Get("Content-Length") == "5" {
		t.Errorf("the 401's headers leaked into the replay's answer: %v", res.Header)
	}
	if res.Header.Get("Server") != "Caddy" {
		t.Errorf("headers set before the handler were lost: %v", res.Header)
	}
}

func TestReplayRefusedByRateLimitAnswersCleanly(t *testing.T) {
	// One request per ten seconds: the replay's turn would wait longer
	// than the queue's 5 s bound, so it is refused.
	h, store := benchHandlerRate(t, 0.1)
	next := &replayNext{store: store}
	w := httptest.NewRecorder()
	if err := h.ServeHTTP(w, replayRequest(), caddyhttp.Handler(next)); err != nil {
		t.Fatal(err)
	}
	res := w.Result()
	if res.StatusCode != http.StatusTooManyRequests || next.calls != 1 {
		t.Fatalf("client got %d after %d upstream calls; want 429 after 1", res.StatusCode, next.calls)
	}
	if res.Header.Get("X-Refused") != "" || res.Header.Get("Content-Length") == "5" ||
		!strings.HasPrefix(res.Header.Get("Content-Type"), "application/json") || res.Header.Get("Retry-After") == "" {
		t.Errorf("429 answer's headers: %v", res.Header)
	}
	var le struct {
		Response struct {
			ErrorCode string `json:"error_code"`
		} `json:"response"`
	}
	if err := json.Unmarshal(w.Body.Bytes(), &le); err != nil || le.Response.ErrorCode != "429" {
		t.Errorf("429 body %q (%v): want the legacy shape", w.Body.String(), err)
	}
}
