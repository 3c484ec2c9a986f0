package caddymodule

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"

	"github.com/amobridge/amobridge/exchange"
	"github.com/amobridge/amobridge/legacy"
	"github.com/amobridge/amobridge/tokenstore"
)

// ServeHTTP swaps legacy credentials for the user's Bearer token and hands
// the request to the next handler. Errors the module produces are written
// here in the legacy format, never returned to Caddy's error routes (whose
// log line would carry the original URI, credentials included).
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	if r.URL.Path == h.callbackPath {
		return h.serveCallback(w, r)
	}
	opts := h.stripOpts
	if r.Body != nil && r.Body != http.NoBody {
		// A body Strip reads is cut at body_timeout by the connection's
		// read deadline (no goroutine, and the stalled connection closes).
		opts.SetReadDeadline = http.NewResponseController(w).SetReadDeadline
	}
	found, err := legacy.Strip(r, opts)
	if err != nil {
		le := asLegacy(err)
		if le.Status == http.StatusRequestEntityTooLarge {
			drain(r)
		}
		h.writeError(w, r, found, le, outcomeMalformed)
		return nil
	}
	if found.Kind == legacy.None && !found.AuthPHP {
		h.metrics.request(outcomePassed)
		return next.ServeHTTP(w, r)
	}
	if found.Kind != legacy.Key && found.AuthPHP {
		// auth.php takes a key; a session alone does not open another one.
		h.writeError(w, r, found, legacy.ErrBadCredentials(), outcomeRejected)
		return nil
	}

	acct, lerr := h.account(r)
	if lerr != nil {
		h.writeError(w, r, found, lerr, outcomeMalformed)
		return nil
	}
	if !h.share.enter() {
		h.writeError(w, r, found, reloading(), outcomeFailed)
		return nil
	}
	defer h.share.exit()
	br, err := h.backend.get(r.Context())
	if err != nil {
		h.logger.Error("token store unavailable", zap.Error(err))
		h.writeError(w, r, found, storeUnavailable(), outcomeFailed)
		return nil
	}

	ctx := r.Context()
	login := found.Login
	var tok *tokenstore.Token
	if found.Kind == legacy.Key {
		tok, err = br.TokenFrom(ctx, acct, clientIP(r), found.Login, found.Key)
	} else {
		login, tok, err = br.SessionToken(ctx, acct, found.SessionID)
	}
	if err != nil {
		h.writeBrokerError(w, r, found, acct, login, err)
		return nil
	}
	if found.AuthPHP {
		return h.serveAuthPHP(w, r, found, acct, tok, br)
	}
	return h.forward(w, r, next, acct, tok, br)
}

// forward sends the request on with the Bearer token, after its turn in the
// account's rate limit. If amoCRM answers 401, it asks the broker for a
// fresh token once and replays the request with its body intact.
func (h *Handler) forward(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler,
	acct exchange.Account, tok *tokenstore.Token, br *exchange.Broker) error {
	if err := h.takeTurn(w, r, br, acct); err != nil {
		return nil
	}
	setAuthorization(r.Header, tok.Authorization())

	body, shouldBuffer := h.replayable(r)
	// The recorder buffers the body of a 401, not its headers: they land in
	// w's header map. Keep what was there, to start the replay from it.
	var before headerSnapshot
	before.take(w.Header())
	buf := bufPool.Get().(*bytes.Buffer)
	buf.Reset()
	defer bufPool.Put(buf)
	rec := caddyhttp.NewResponseRecorder(w, buf, shouldBuffer)
	err := next.ServeHTTP(rec, r)
	if err != nil {
		return h.upstreamError(w, rec, err)
	}
	if !rec.Buffered() {
		h.metrics.request(outcomeServed)
		return nil
	}

	// amoCRM refused our token: re-read the store, refresh once, replay once.
	fresh, rerr := br.Reauthorize(r.Context(), acct, tok.Login, tok.AccessToken)
	if k := exchange.KindOf(rerr); rerr != nil && k != exchange.KindWrongKey && r.Context().Err() == nil {
		// No new token can be had right now (the store or amoCRM is out of
		// reach): say so, with a Retry-After, rather than pass on a 401
		// that reads as "wrong credentials".
		before.restore(w.Header())
		h.writeBrokerError(w, r, legacy.Found{}, acct, tok.Login, rerr)
		return nil
	}
	if rerr != nil || fresh == nil || fresh.AccessToken == tok.AccessToken {
		h.metrics.request(outcomeServed)
		return rec.WriteResponse()
	}
	if err := body.rewind(r); err != nil {
		return rec.WriteResponse()
	}
	// Drop the 401's headers: what follows (the replay, or a 429) starts
	// from the headers the response had before.
	before.restore(w.Header())
	h.metrics.replay()
	if err := h.takeTurn(w, r, br, acct); err != nil {
		return nil
	}
	setAuthorization(r.Header, fresh.Authorization())
	rec2 := caddyhttp.NewResponseRecorder(w, nil, nil)
	if err := next.ServeHTTP(rec2, r); err != nil {
		return h.upstreamError(w, rec2, err)
	}
	h.metrics.request(outcomeServed)
	return nil
}

// setAuthorization sets the Authorization header to v, replacing any value
// the client sent. It is Header.Set without canonicalizing a key that is
// canonical already.
func setAuthorization(h http.Header, v string) {
	h["Authorization"] = []string{v}
}

// takeTurn waits for the account's turn toward amoCRM. When the queue is
// full it answers 429 and returns an error.
func (h *Handler) takeTurn(w http.ResponseWriter, r *http.Request, br *exchange.Broker, acct exchange.Account) error {
	waited, retry, err := br.Turn(r.Context(), acct.Name, 0)
	if waited > 0 {
		h.metrics.rateWait(waited)
	}
	if err != nil {
		if r.Context().Err() == nil { // not the client leaving: answer
			h.logger.Error("the account's budget is unavailable", zap.String("error", safeError(err)))
			h.writeError(w, r, legacy.Found{}, storeUnavailable(), outcomeFailed)
		}
		return err
	}
	if retry > 0 {
		h.metrics.rateReject()
		h.writeError(w, r, legacy.Found{}, legacy.TooManyRequests(retry), outcomeLimited)
		return errors.New("rate limited")
	}
	return nil
}

// upstreamError turns an error of the next handler into a legacy answer,
// if nothing was written yet, and logs it without the request's URI.
func (h *Handler) upstreamError(w http.ResponseWriter, rec caddyhttp.ResponseRecorder, err error) error {
	if rec.Status() != 0 {
		return nil // the response has started; nothing more can be said
	}
	status := http.StatusBadGateway
	var he caddyhttp.HandlerError
	if errors.As(err, &he) && he.StatusCode != 0 {
		status = he.StatusCode
	}
	if errors.Is(err, context.Canceled) {
		return nil
	}
	var le *legacy.Error
	if errors.As(err, &le) {
		// The body's stream stopped at a credential the module could not
		// strip in time (past max_body): the request was not forwarded whole.
		h.logger.Warn("request body refused while streaming", zap.Int("status", le.Status))
		h.metrics.request(outcomeMalformed)
		legacy.WriteError(w, le, time.Now())
		return nil
	}
	h.logger.Error("forwarding to amoCRM failed", zap.Int("status", status), zap.String("error", safeError(err)))
	text := "amoCRM is unreachable"
	if status == http.StatusGatewayTimeout {
		text = "amoCRM did not answer in time"
	}
	h.metrics.request(outcomeFailed)
	legacy.WriteError(w, &legacy.Error{Status: status, Code: itoa(status), Text: text}, time.Now())
	return nil
}

// account resolves the request's amoCRM account.
func (h *Handler) account(r *http.Request) (exchange.Account, *legacy.Error) {
	if h.accountIsLiteral {
		return h.literalAccount, nil
	}
	repl, _ := r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer)
	if repl == nil {
		repl = caddy.NewReplacer()
	}
	name := h.Subdomain
	if !h.subdomainLiteral {
		name = strings.ToLower(repl.ReplaceAll(h.Subdomain, ""))
		if !subdomainRE.MatchString(name) {
			return exchange.Account{}, &legacy.Error{Status: http.StatusBadRequest, Code: "101",
				Text: "no such account: the request does not name a valid amoCRM account"}
		}
	}
	base := strings.ReplaceAll(h.apiBase, "{subdomain}", name)
	if strings.Contains(base, "{") {
		base = repl.ReplaceAll(base, "")
	}
	return exchange.Account{Name: name, BaseURL: base}, nil
}

// writeBrokerError answers a failure to get a token.
func (h *Handler) writeBrokerError(w http.ResponseWriter, r *http.Request, found legacy.Found,
	acct exchange.Account, login string, err error) {
	if errors.Is(err, context.Canceled) {
		return // the client went away
	}
	ans := answerFor(err)
	lvl := h.logger.Warn
	switch ans.outcome {
	case outcomeRejected:
		lvl = h.logger.Info
	case outcomeFailed:
		lvl = h.logger.Error
	}
	le := ans.legacyError(err)
	lvl("request refused", zap.String("account", acct.Name), zap.String("login", login),
		zap.Int("status", le.Status), zap.String("error", safeError(err)))
	h.writeError(w, r, found, le, ans.outcome)
}

// writeError writes a legacy error, in the auth.php format when the request
// was for auth.php.
func (h *Handler) writeError(w http.ResponseWriter, r *http.Request, found legacy.Found, e *legacy.Error, outcome string) {
	h.metrics.request(outcome)
	if found.AuthPHP {
		legacy.WriteAuthError(w, found.Format, e, clientIP(r), r.Host, time.Now())
		return
	}
	legacy.WriteError(w, e, time.Now())
}

func asLegacy(err error) *legacy.Error {
	var le *legacy.Error
	if errors.As(err, &le) {
		return le
	}
	return &legacy.Error{Status: http.StatusBadRequest, Code: "400", Text: "malformed request"}
}

// replayBody keeps what the next handler read of a request body, up to the
// limit, so that the request can be sent again after a 401.
type replayBody struct {
	rc    io.ReadCloser
	buf   []byte
	limit int64
	over  bool
}

// inMemory is the replayBody of a request without a body or with a body
// held in memory (GetBody): there is nothing to record, and it is never
// written, so every such request shares it.
var inMemory = &replayBody{}

// buffer401 is the recorder's ShouldBufferFunc for a request that can be
// replayed whatever happens to its body.
func buffer401(status int, _ http.Header) bool { return status == http.StatusUnauthorized }

// replayable returns what forward needs to replay r after a 401: the
// recorded body, and when to buffer the response.
func (h *Handler) replayable(r *http.Request) (*replayBody, caddyhttp.ShouldBufferFunc) {
	if r.Body == nil || r.Body == http.NoBody || r.GetBody != nil {
		// No body, or in memory already (legacy read it).
		return inMemory, buffer401
	}
	b := &replayBody{rc: r.Body, limit: h.stripOpts.MaxBody}
	r.Body = b
	return b, func(status int, _ http.Header) bool {
		return status == http.StatusUnauthorized && b.ok()
	}
}

func (b *replayBody) Read(p []byte) (int, error) {
	n, err := b.rc.Read(p)
	if n > 0 && !b.over {
		if int64(len(b.buf)+n) > b.limit {
			b.over, b.buf = true, nil
		} else {
			b.buf = append(b.buf, p[:n]...)
		}
	}
	return n, err
}

func (b *replayBody) Close() error { return b.rc.Close() }

// ok tells whether the request can be replayed.
func (b *replayBody) ok() bool { return b.rc == nil || !b.over }

// rewind sets the request's body back to its start for a replay.
func (b *replayBody) rewind(r *http.Request) error {
	if r.GetBody != nil {
		body, err := r.GetBody()
		if err != nil {
			return err
		}
		r.Body = body
		return nil
	}
	if b.rc == nil {
		return nil
	}
	if b.over {
		return errors.New("body too large to replay")
	}
	// The first attempt may not have read it all: read the rest too.
	rest, err := io.ReadAll(io.LimitReader(b.rc, b.limit-int64(len(b.buf))+1))
	if err != nil || int64(len(b.buf)+len(rest)) > b.limit {
		return errors.New("body too large to replay")
	}
	all := append(b.buf, rest...)
	r.Body = io.NopCloser(bytes.NewReader(all))
	r.ContentLength = int64(len(all))
	return nil
}

// headerSnapshot keeps a response's header map as it was, to be put back:
// a few entries in place (no allocation on the hot path), more in a clone.
// Values are kept by reference: a handler replaces them (Set, Del), it does
// not change them in place.
type headerSnapshot struct {
	n    int
	keys [8]string
	vals [8][]string
	all  http.Header // when there were more than fit
}

func (s *headerSnapshot) take(h http.Header) {
	if len(h) > len(s.keys) {
		s.all = h.Clone()
		return
	}
	for k, v := range h {
		s.keys[s.n], s.vals[s.n] = k, v
		s.n++
	}
}

func (s *headerSnapshot) restore(h http.Header) {
	clear(h)
	for k, v := range s.all {
		h[k] = v
	}
	for i := range s.n {
		h[s.keys[i]] = s.vals[i]
	}
}

// drainLimit bounds how much of a refused body is read and discarded, so
// that the client, still sending, reads the answer instead of a reset
// connection.
const drainLimit = 1 << 20

// drain reads and discards up to drainLimit bytes of the request body.
func drain(r *http.Request) {
	if r.Body != nil && r.Body != http.NoBody {
		_, _ = io.CopyN(io.Discard, r.Body, drainLimit)
	}
}

var bufPool = sync.Pool{New: func() any { return new(bytes.Buffer) }}
