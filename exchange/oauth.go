package exchange

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"
	"unicode"

	"golang.org/x/oauth2"
)

// maxAnswer is the most of an amoCRM answer the broker reads.
const maxAnswer = 1 << 20

const userAgent = "amobridge"

// answer is amoCRM's answer to one call, fully read.
type answer struct {
	status int
	header http.Header
	body   []byte
}

// call sends req with the configured client and reads the answer. A network
// error is a KindUpstream *Error whose text holds no secret: the URL of every
// OAuth call is secret-free, and bodies are never quoted.
func call(c *Config, req *http.Request, op string) (*answer, *Error) {
	req.Header.Set("User-Agent", userAgent)
	req.Header.Set("Accept", "application/json")
	resp, err := c.HTTPClient.Do(req)
	if err != nil {
		return nil, newErr(KindUpstream, op, netErr(req.Context(), err))
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxAnswer))
	if err != nil {
		return nil, newErr(KindUpstream, op, netErr(req.Context(), err))
	}
	return &answer{status: resp.StatusCode, header: resp.Header, body: body}, nil
}

// netErr reduces a transport error to a secret-free cause.
func netErr(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return fmt.Errorf("amoCRM did not answer: %w", ctx.Err())
	}
	var oe *net.OpError
	if errors.As(err, &oe) && oe.Op == "dial" {
		return fmt.Errorf("%w: %w", errNotSent, oe)
	}
	var te interface{ Timeout() bool }
	if errors.As(err, &te) && te.Timeout() {
		return errors.New("amoCRM did not answer in time")
	}
	// *url.Error names the method and URL (no secrets there) and the cause.
	return fmt.Errorf("amoCRM unreachable: %w", err)
}

// postJSON builds a POST of v as JSON to url.
func postJSON(ctx context.Context, url string, v any) (*http.Request, error) {
	body, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	return req, nil
}

// exchangeBody is the body of POST /oauth2/exchange_api_key.
type exchangeBody struct {
	Login        string `json:"login"`
	APIKey       string `json:"api_key"`
	ClientUUID   string `json:"client_uuid"`
	ClientSecret string `json:"client_secret"`
	State        string `json:"state"`
}

// postExchange asks amoCRM to exchange the user's API key; the code comes
// later to the callback. nil means amoCRM accepted (202).
func postExchange(ctx context.Context, c *Config, baseURL, login, key, state string, now time.Time) *Error {
	const op = "exchange"
	req, err := postJSON(ctx, baseURL+"/oauth2/exchange_api_key", exchangeBody{
		Login: login, APIKey: key, ClientUUID: c.ClientID, ClientSecret: c.ClientSecret, State: state,
	})
	if err != nil {
		return newErr(KindInternal, op, errors.New("cannot build the request"))
	}
	a, e := call(c, req, op)
	if e != nil {
		return e
	}
	secrets := []string{key, c.ClientSecret, state}
	switch {
	case a.status == http.StatusAccepted:
		return nil
	case a.status == http.StatusBadRequest || a.status == http.StatusForbidden:
		return newErr(KindWrongKey, op, fmt.Errorf("%w (HTTP %d%s)", errKeyRejected, a.status, problemText(a.body, secrets)))
	case a.status == http.StatusTooManyRequests:
		return &Error{Kind: KindLimited, Op: op, RetryAfter: retryAfter(a.header, now, c.ExchangeInterval), Err: errTooOften}
	default:
		return newErr(KindUpstream, op, fmt.Errorf("unexpected answer (HTTP %d%s)", a.status, problemText(a.body, secrets)))
	}
}

// grantBody is the body of POST /oauth2/access_token for both grants.
type grantBody struct {
	ClientID     string `json:"client_id"`
	ClientSecret string `json:"client_secret"`
	GrantType    string `json:"grant_type"`
	Code         string `json:"code,omitempty"`
	RefreshToken string `json:"refresh_token,omitempty"`
	RedirectURI  string `json:"redirect_uri"`
}

// failure says what a failed grant means for the grant being spent.
type failure int

const (
	failFinal failure = iota // amoCRM answered, and trying the same again will not help
	failDead                 // the code or refresh token is revoked, expired or invalid
	failRetry                // network error, 5xx or 429: amoCRM may accept it later
)

// grant calls the token endpoint with a code or a refresh token. It returns
// the new pair, or an error and what the failure means.
func grant(ctx context.Context, c *Config, baseURL string, g grantBody, now time.Time) (*oauth2.Token, failure, *Error) {
	op := "refresh"
	secret := g.RefreshToken
	if g.GrantType == "authorization_code" {
		op, secret = "code grant", g.Code
	}
	g.ClientID, g.ClientSecret, g.RedirectURI = c.ClientID, c.ClientSecret, c.RedirectURI
	req, err := postJSON(ctx, baseURL+"/oauth2/access_token", g)
	if err != nil {
		return nil, failFinal, newErr(KindInternal, op, errors.New("cannot build the request"))
	}
	a, e := call(c, req, op)
	if e != nil {
		return nil, failRetry, e
	}
	secrets := []string{secret, c.ClientSecret}
	switch {
	case a.status == http.StatusOK:
		tok, err := parseToken(a.body, now)
		if err != nil {
			return nil, failFinal, newErr(KindUpstream, op, err)
		}
		return tok, failFinal, nil
	case a.status == http.StatusTooManyRequests:
		return nil, failRetry, &Error{Kind: KindLimited, Op: op, RetryAfter: retryAfter(a.header, now, time.Minute), Err: errors.New("amoCRM answered 429")}
	case a.status >= 500:
		return nil, failRetry, newErr(KindUpstream, op, fmt.Errorf("amoCRM failed (HTTP %d)", a.status))
	case (a.status == http.StatusBadRequest || a.status == http.StatusUnauthorized) && isDeadGrant(a.body):
		return nil, failDead, newErr(KindUpstream, op, fmt.Errorf("grant refused (HTTP %d%s)", a.status, problemText(a.body, secrets)))
	default:
		return nil, failFinal, newErr(KindUpstream, op, fmt.Errorf("unexpected answer (HTTP %d%s)", a.status, problemText(a.body, secrets)))
	}
}

// parseToken reads a token endpoint answer. It accepts only a whole pair: an
// access token, a refresh token and a positive expires_in; the expiry is the
// earlier of now+expires_in and the access token's JWT exp claim, if any.
func parseToken(body []byte, now time.Time) (*oauth2.Token, error) {
	var t oauth2.Token
	if err := json.Unmarshal(body, &t); err != nil {
		return nil, errors.New("token answer is not valid JSON")
	}
	switch {
	case !tokenSafe(t.AccessToken):
		return nil, errors.New("token answer has no usable access_token")
	case !tokenSafe(t.RefreshToken):
		return nil, errors.New("token answer has no usable refresh_token")
	case t.ExpiresIn <= 0:
		return nil, errors.New("token answer has no positive expires_in")
	case t.Type() != "Bearer":
		return nil, errors.New("token answer's token_type is not Bearer")
	}
	t.Expiry = now.Add(time.Duration(t.ExpiresIn) * time.Second)
	if exp, ok := jwtExpiry(t.AccessToken); ok && exp.After(now) && exp.Before(t.Expiry) {
		t.Expiry = exp
	}
	return &t, nil
}

// tokenSafe reports whether s can be a token: non-empty, not huge, and
// printable without spaces (it ends up in an HTTP header).
func tokenSafe(s string) bool {
	if s == "" || len(s) > 16<<10 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] <= ' ' || s[i] >= 0x7f {
			return false
		}
	}
	return true
}

// jwtExpiry returns the exp claim of a JWT, if s is one.
func jwtExpiry(s string) (time.Time, bool) {
	parts := strings.Split(s, ".")
	if len(parts) != 3 {
		return time.Time{}, false
	}
	raw, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(parts[1], "="))
	if err != nil {
		return time.Time{}, false
	}
	var claims struct {
		Exp json.Number `json:"exp"`
	}
	if json.Unmarshal(raw, &claims) != nil || claims.Exp == "" {
		return time.Time{}, false
	}
	f, err := claims.Exp.Float64()
	if err != nil || f <= 0 || f > 1e11 {
		return time.Time{}, false
	}
	return time.Unix(int64(f), 0), true
}

// problem is amoCRM's problem+json error (and the RFC 6749 error shape).
type problem struct {
	Hint             string `json:"hint"`
	Title            string `json:"title"`
	Detail           string `json:"detail"`
	Error            string `json:"error"`
	ErrorDescription string `json:"error_description"`
}

func parseProblem(body []byte) (problem, bool) {
	var p problem
	if len(body) == 0 || json.Unmarshal(body, &p) != nil {
		return p, false
	}
	return p, true
}

// isDeadGrant reports whether a 400/401 answer says the grant itself is
// unusable: revoked, expired or invalid (not a client or redirect_uri error).
func isDeadGrant(body []byte) bool {
	p, ok := parseProblem(body)
	if !ok {
		return false
	}
	if p.Error == "invalid_grant" {
		return true
	}
	for _, s := range []string{p.Hint, p.Detail, p.Title, p.ErrorDescription} {
		s = strings.ToLower(s)
		if strings.Contains(s, "revoked") || strings.Contains(s, "expired") ||
			strings.Contains(s, "invalid refresh token") || strings.Contains(s, "refresh token is invalid") {
			return true
		}
	}
	return false
}

// problemText returns ": <hint>" from a problem+json body, made safe for an
// error text: the secrets sent are cut out, long words (which could be
// tokens) are elided, and it is short. "" if there is no problem text.
func problemText(body []byte, secrets []string) string {
	p, ok := parseProblem(body)
	if !ok {
		return ""
	}
	s := p.Hint
	for _, alt := range []string{p.Detail, p.Title, p.ErrorDescription, p.Error} {
		if s == "" {
			s = alt
		}
	}
	s = sanitize(s, secrets)
	if s == "" {
		return ""
	}
	return ": " + s
}

// sanitize makes text from amoCRM fit for an error or a log line.
func sanitize(s string, secrets []string) string {
	for _, sec := range secrets {
		if sec != "" {
			s = strings.ReplaceAll(s, sec, "…")
		}
	}
	words := strings.FieldsFunc(s, func(r rune) bool { return unicode.IsSpace(r) || !unicode.IsPrint(r) })
	for i, w := range words {
		if len(w) > 24 {
			words[i] = "…"
		}
	}
	s = strings.Join(words, " ")
	if r := []rune(s); len(r) > 120 {
		s = string(r[:120]) + "…"
	}
	return s
}

// retryAfter reads a Retry-After header (seconds or an HTTP date), capped at
// a day; def if there is none.
func retryAfter(h http.Header, now time.Time, def time.Duration) time.Duration {
	v := strings.TrimSpace(h.Get("Retry-After"))
	var d time.Duration
	if v == "" {
		return def
	}
	if n, err := strconv.Atoi(v); err == nil {
		d = time.Duration(n) * time.Second
	} else if t, err := http.ParseTime(v); err == nil {
		d = t.Sub(now)
	} else {
		return def
	}
	if d <= 0 {
		return time.Second
	}
	return min(d, 24*time.Hour)
}
