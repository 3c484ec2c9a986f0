package caddymodule

import (
	"bytes"
	"context"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"

	"github.com/amobridge/amobridge/exchange"
	"github.com/amobridge/amobridge/tokenstore"
)

// The hot path: a user whose token is cached and far from expiry. The
// handler is built as Provision builds it, on an in-memory token store seeded
// with the user's token, with rate_limit 0 and a next handler that does
// nothing, so that what is measured is amocrm_auth's own cost per request:
// finding and stripping the credentials, the store lookup, the Bearer header
// and the response recorder around the next handler.

const (
	benchAccount = "acme"
	benchLogin   = "bench@example.com"
	benchKey     = "0123456789abcdef0123456789abcdef01234567"
	benchSession = "bench-session-0123456789abcdef0123456789"
)

// benchHandler returns a provisioned-like handler whose store holds a fresh
// token for benchLogin and an auth.php session benchSession.
func benchHandler(tb testing.TB) (*Handler, tokenstore.Store) {
	tb.Helper()
	return benchHandlerRate(tb, 0)
}

// benchHandlerRate is benchHandler with the broker's rate_limit set.
func benchHandlerRate(tb testing.TB, rate float64) (*Handler, tokenstore.Store) {
	tb.Helper()
	store, err := tokenstore.Open(tokenstore.Options{InMemory: true})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = store.Close() })
	ctx := context.Background()
	now := time.Now()
	if err := store.Put(ctx, &tokenstore.Token{
		Account: benchAccount, Login: benchLogin, KeyHash: store.HashKey(benchKey),
		AccessToken: "access-" + strings.Repeat("x", 800), RefreshToken: "refresh-" + strings.Repeat("y", 600),
		Expiry: now.Add(365 * 24 * time.Hour), IssuedAt: now,
	}); err != nil {
		tb.Fatal(err)
	}
	if err := store.PutSession(ctx, benchSession, tokenstore.Session{
		Account: benchAccount, Login: benchLogin, Expires: now.Add(time.Hour),
	}); err != nil {
		tb.Fatal(err)
	}
	cfg := exchange.Config{
		ClientID: "bench-client", ClientSecret: "bench-secret",
		RedirectURI: "http://127.0.0.1:1/amocrm/oauth/callback",
		// The keeper must not run during the benchmark.
		KeeperInterval: time.Hour,
		RateLimit:      rate,
	}
	br, err := exchange.NewBroker(store, cfg)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = br.Close() })

	zero := 0.0
	h := &Handler{
		ClientID: "bench-client", ClientSecret: "bench-secret",
		RedirectURI: cfg.RedirectURI, Subdomain: benchAccount,
		AccountDomain: DefaultAccountDomain, APIBase: "http://127.0.0.1:1/{subdomain}",
		RateLimit: &zero,
	}
	// What Provision sets, without Caddy's context and store.
	if err := h.resolve(caddy.NewReplacer()); err != nil {
		tb.Fatal(err)
	}
	h.metrics = newMetrics()
	h.logger = zap.NewNop()
	h.backend = newBackend(storeSpec{kind: "badger"}, h.logger)
	h.backend.broker.Store(br)
	close(h.backend.ready)
	h.share = newShare(func() {})
	return h, store
}

// benchWriter is a ResponseWriter that keeps nothing.
type benchWriter struct {
	h      http.Header
	status int
}

func (w *benchWriter) Header() http.Header         { return w.h }
func (w *benchWriter) WriteHeader(status int)      { w.status = status }
func (w *benchWriter) Write(p []byte) (int, error) { return len(p), nil }

// SetReadDeadline is there as on Caddy's own writers (body_timeout cuts a
// stalled body through it).
func (w *benchWriter) SetReadDeadline(time.Time) error { return nil }

func (w *benchWriter) reset() {
	clear(w.h)
	w.status = 0
}

// benchBody is a request body that can be rewound without allocating.
type benchBody struct{ bytes.Reader }

func (*benchBody) Close() error { return nil }

// benchNext is the next handler: it answers 200 with nothing, as a proxied
// amoCRM would answer, and checks (cheaply) that the token was set.
var benchNext = caddyhttp.HandlerFunc(func(w http.ResponseWriter, r *http.Request) error {
	if len(r.Header["Authorization"]) != 1 {
		panic("no Authorization header reached the next handler")
	}
	w.WriteHeader(http.StatusOK)
	return nil
})

// benchRequest is a reusable request: reset puts back what ServeHTTP changes.
type benchRequest struct {
	r        *http.Request
	rawQuery string
	uri      string
	body     []byte
	bb       *benchBody
	cookie   []string
	ctype    []string
	clen     []string
	clenStr  string
}

func newBenchRequest(method, target, contentType string, body []byte, cookie string) *benchRequest {
	u, err := url.ParseRequestURI(target)
	if err != nil {
		panic(err)
	}
	br := &benchRequest{rawQuery: u.RawQuery, uri: target, body: body}
	r := &http.Request{
		Method: method, URL: u, RequestURI: target, Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Host: "127.0.0.1", RemoteAddr: "127.0.0.1:40000", Header: make(http.Header, 4),
	}
	// Caddy's server puts a replacer into every request's context before any
	// handler runs; its cost is Caddy's, not the module's.
	r = r.WithContext(context.WithValue(context.Background(), caddy.ReplacerCtxKey, caddy.NewReplacer()))
	if body != nil {
		br.bb = new(benchBody)
	}
	if contentType != "" {
		br.ctype = []string{contentType}
	}
	if cookie != "" {
		br.cookie = []string{cookie}
	}
	br.r = r
	br.reset()
	return br
}

func (b *benchRequest) reset() {
	r := b.r
	r.URL.RawQuery = b.rawQuery
	r.RequestURI = b.uri
	clear(r.Header)
	if b.ctype != nil {
		r.Header["Content-Type"] = b.ctype
	}
	if b.cookie != nil {
		r.Header["Cookie"] = b.cookie
	}
	r.Form, r.PostForm = nil, nil
	if b.bb != nil {
		b.bb.Reset(b.body)
		r.Body = b.bb
		r.GetBody = nil
		r.ContentLength = int64(len(b.body))
		// One slice, its value put back each time (Strip may rewrite it in
		// place): the harness allocates nothing per request.
		if b.clen == nil {
			b.clenStr = strconv.Itoa(len(b.body))
			b.clen = []string{b.clenStr}
		}
		b.clen[0] = b.clenStr
		r.Header["Content-Length"] = b.clen
	} else {
		r.Body = http.NoBody
		r.ContentLength = 0
	}
}

func benchServe(b *testing.B, req *benchRequest) {
	h, _ := benchHandler(b)
	w := &benchWriter{h: make(http.Header)}
	// One request outside the loop: it must be served with the token.
	if err := h.ServeHTTP(w, req.r, benchNext); err != nil || w.status != http.StatusOK {
		b.Fatalf("first request: status %d, err %v", w.status, err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		req.reset()
		w.reset()
		if err := h.ServeHTTP(w, req.r, benchNext); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	if w.status != http.StatusOK {
		b.Fatalf("status %d", w.status)
	}
}

// BenchmarkHandlerQuery: GET with USER_LOGIN and USER_HASH in the query, as
// most legacy calls are made.
func BenchmarkHandlerQuery(b *testing.B) {
	q := "USER_LOGIN=" + url.QueryEscape(benchLogin) + "&USER_HASH=" + benchKey + "&limit_rows=50&limit_offset=0"
	benchServe(b, newBenchRequest(http.MethodGet, "/private/api/v2/json/leads/list?"+q, "", nil, ""))
}

// BenchmarkHandlerForm: POST with the credentials in a form body.
func BenchmarkHandlerForm(b *testing.B) {
	body := []byte("USER_LOGIN=" + url.QueryEscape(benchLogin) + "&USER_HASH=" + benchKey +
		"&request%5Bleads%5D%5Badd%5D%5B0%5D%5Bname%5D=Deal&request%5Bleads%5D%5Badd%5D%5B0%5D%5Bprice%5D=100")
	benchServe(b, newBenchRequest(http.MethodPost, "/private/api/v2/json/leads/set",
		"application/x-www-form-urlencoded", body, ""))
}

// BenchmarkHandlerSession: a call with only the session cookie that an
// emulated auth.php login gave, as cookie-based legacy clients make them.
func BenchmarkHandlerSession(b *testing.B) {
	benchServe(b, newBenchRequest(http.MethodGet, "/private/api/v2/json/leads/list?limit_rows=50", "", nil,
		"session_id="+benchSession+"; other=1"))
}

// BenchmarkHandlerPassThrough: a request with no legacy credential, the floor.
func BenchmarkHandlerPassThrough(b *testing.B) {
	h, _ := benchHandler(b)
	req := newBenchRequest(http.MethodGet, "/api/v4/leads?limit=50", "", nil, "")
	w := &benchWriter{h: make(http.Header)}
	next := caddyhttp.HandlerFunc(func(w http.ResponseWriter, r *http.Request) error {
		w.WriteHeader(http.StatusOK)
		return nil
	})
	b.ReportAllocs()
	for b.Loop() {
		req.reset()
		w.reset()
		if err := h.ServeHTTP(w, req.r, next); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkHandlerQueryParallel is BenchmarkHandlerQuery from every core.
func BenchmarkHandlerQueryParallel(b *testing.B) {
	h, _ := benchHandler(b)
	q := "USER_LOGIN=" + url.QueryEscape(benchLogin) + "&USER_HASH=" + benchKey + "&limit_rows=50&limit_offset=0"
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		req := newBenchRequest(http.MethodGet, "/private/api/v2/json/leads/list?"+q, "", nil, "")
		w := &benchWriter{h: make(http.Header)}
		for pb.Next() {
			req.reset()
			w.reset()
			if err := h.ServeHTTP(w, req.r, benchNext); err != nil || w.status != http.StatusOK {
				b.Errorf("status %d, err %v", w.status, err)
				return
			}
		}
	})
}

// BenchmarkStoreGet is the store lookup of the hot path (a cached token).
func BenchmarkStoreGet(b *testing.B) {
	_, store := benchHandler(b)
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := store.Get(ctx, benchAccount, benchLogin); err != nil {
			b.Fatal(err)
		}
	}
}

// TestBenchHandlerServes checks the benchmarks' setup once in the normal
// test run (go test without -bench): each request shape is served with the
// seeded token and nothing of the credentials is left in the request.
func TestBenchHandlerServes(t *testing.T) {
	h, _ := benchHandler(t)
	q := "USER_LOGIN=" + url.QueryEscape(benchLogin) + "&USER_HASH=" + benchKey + "&x=1"
	for _, tc := range []struct {
		name string
		req  *benchRequest
	}{
		{"query", newBenchRequest(http.MethodGet, "/api/v2/leads?"+q, "", nil, "")},
		{"form", newBenchRequest(http.MethodPost, "/api/v2/leads", "application/x-www-form-urlencoded", []byte(q), "")},
		{"session", newBenchRequest(http.MethodGet, "/api/v2/leads?x=1", "", nil, "session_id="+benchSession)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for i := 0; i < 2; i++ { // the second run checks that reset restores the request
				tc.req.reset()
				w := &benchWriter{h: make(http.Header)}
				var got *http.Request
				next := caddyhttp.HandlerFunc(func(w http.ResponseWriter, r *http.Request) error {
					got = r
					w.WriteHeader(http.StatusOK)
					return nil
				})
				if err := h.ServeHTTP(w, tc.req.r, next); err != nil || w.status != http.StatusOK {
					t.Fatalf("status %d, err %v", w.status, err)
				}
				if got == nil {
					t.Fatal("the next handler was not called")
				}
				if a := got.Header.Get("Authorization"); !strings.HasPrefix(a, "Bearer access-") {
					t.Errorf("Authorization %.20q; want the seeded token", a)
				}
				if strings.Contains(got.URL.RawQuery, "USER_") || strings.Contains(got.Header.Get("Cookie"), "session_id") {
					t.Errorf("credentials left in the request: query %q cookie %q", got.URL.RawQuery, got.Header.Get("Cookie"))
				}
			}
		})
	}
}
