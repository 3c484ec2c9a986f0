package fakeamocrm

import (
	"encoding/base64"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"
)

// code runs an exchange and returns the delivered code.
func (e *env) code(acct, login, key string) string {
	e.t.Helper()
	if a := e.exchange(acct, exchangeBody(login, key, "s")); a.status != http.StatusAccepted {
		e.t.Fatalf("exchange: %d %s", a.status, a.body)
	}
	return e.sink.next(e.t).Get("code")
}

func decodeToken(t *testing.T, a answer) tokenAnswer {
	t.Helper()
	if a.status != http.StatusOK {
		t.Fatalf("token: %d %s", a.status, a.body)
	}
	if ct := a.header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Errorf("Content-Type %q", ct)
	}
	var tok tokenAnswer
	if err := json.Unmarshal(a.body, &tok); err != nil {
		t.Fatal(err)
	}
	return tok
}

func TestCodeGrantAnswerShape(t *testing.T) {
	e := newEnv(t, nil)
	code := e.code("acme", "user@example.com", acmeKey)
	// JSON body, as amoCRM's docs show it.
	body := map[string]string{}
	for k, v := range e.codeGrantValues(code) {
		body[k] = v[0]
	}
	a := e.send(http.MethodPost, e.base("acme")+"/oauth2/access_token", "application/json", jsonBody(body))
	tok := decodeToken(t, a)
	now := e.clk.Now()
	if tok.TokenType != "Bearer" || tok.ExpiresIn != 86400 || tok.ServerTime != now.Unix() || tok.RefreshToken == "" {
		t.Errorf("answer %+v", tok)
	}
	parts := strings.Split(tok.AccessToken, ".")
	if len(parts) != 3 {
		t.Fatalf("access token is not JWT-shaped: %d parts", len(parts))
	}
	raw, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	var c jwtClaims
	if err := json.Unmarshal(raw, &c); err != nil {
		t.Fatal(err)
	}
	acmeID, _ := e.fake.AccountID("acme")
	if c.Exp != now.Add(24*time.Hour).Unix() || c.Iat != now.Unix() || c.APIDomain != "api-b.amocrm.ru" ||
		c.AccountID != acmeID || c.Sub != "777" || c.Jti == "" || c.Aud != testClientID {
		t.Errorf("claims %+v", c)
	}
	st := e.fake.Stats()
	if st.CodeGrants != 1 || st.CodeGrantErrors != 0 || st.TokenCalls != 1 {
		t.Errorf("stats %+v", st)
	}
	// Two pairs never share a token.
	tok2 := e.pair("other", "boss@example.com", otherKey)
	if tok2.AccessToken == tok.AccessToken || tok2.RefreshToken == tok.RefreshToken {
		t.Error("tokens repeat")
	}
}

func TestCodeIsSingleUse(t *testing.T) {
	e := newEnv(t, nil)
	code := e.code("acme", "user@example.com", acmeKey)
	decodeToken(t, e.tokenForm("acme", e.codeGrantValues(code)))
	a := e.tokenForm("acme", e.codeGrantValues(code))
	if a.status != http.StatusBadRequest || hint(t, a) != "Authorization code has been revoked" {
		t.Fatalf("second use: %d %s", a.status, a.body)
	}
	st := e.fake.Stats()
	if st.CodeGrants != 1 || st.CodeGrantErrors != 1 {
		t.Errorf("stats %+v", st)
	}
	if v := e.fake.Violations(); len(v) != 1 || v[0].Kind != ViolationCodeReuse {
		t.Errorf("violations %+v", v)
	}
}

func TestCodeExpires(t *testing.T) {
	e := newEnv(t, nil)
	code := e.code("acme", "user@example.com", acmeKey)
	e.clk.Advance(20 * time.Minute)
	a := e.tokenForm("acme", e.codeGrantValues(code))
	if a.status != http.StatusBadRequest || hint(t, a) != "Authorization code has expired" {
		t.Fatalf("expired code: %d %s", a.status, a.body)
	}
}

func TestCodeJustBeforeExpiryWorks(t *testing.T) {
	e := newEnv(t, func(o *Options) { o.CodeTTL = time.Minute })
	code := e.code("acme", "user@example.com", acmeKey)
	e.clk.Advance(59 * time.Second)
	decodeToken(t, e.tokenForm("acme", e.codeGrantValues(code)))
}

func TestCodeIsBoundToItsAccount(t *testing.T) {
	e := newEnv(t, nil)
	code := e.code("acme", "user@example.com", acmeKey)
	if a := e.tokenForm("other", e.codeGrantValues(code)); a.status != http.StatusBadRequest {
		t.Fatalf("code at another account: %d %s", a.status, a.body)
	}
	// Not spent by the wrong try.
	decodeToken(t, e.tokenForm("acme", e.codeGrantValues(code)))
}

func TestCodeGrantRejections(t *testing.T) {
	e := newEnv(t, nil)
	code := e.code("acme", "user@example.com", acmeKey)
	cases := []struct {
		name   string
		edit   func(v map[string][]string)
		status int
		hint   string
	}{
		{"redirect without trailing slash", func(v map[string][]string) {
			v["redirect_uri"] = []string{strings.TrimSuffix(e.sink.redirectURI(), "/")}
		}, 400, "Redirect URI is not associated with client"},
		{"no redirect_uri", func(v map[string][]string) { delete(v, "redirect_uri") }, 400, "Check the `redirect_uri` parameter"},
		{"wrong client_id", func(v map[string][]string) { v["client_id"] = []string{"nope"} }, 400, "Check the `client_id` parameter"},
		{"no client_id", func(v map[string][]string) { delete(v, "client_id") }, 400, "Check the `client_id` parameter"},
		{"wrong secret", func(v map[string][]string) { v["client_secret"] = []string{"nope"} }, 401, "Client authentication failed"},
		{"unknown grant", func(v map[string][]string) { v["grant_type"] = []string{"password"} }, 400, "Unsupported grant type"},
		{"no code", func(v map[string][]string) { delete(v, "code") }, 400, "Check the `code` parameter"},
		{"unknown code", func(v map[string][]string) { v["code"] = []string{"def50200abc"} }, 400, "Cannot decrypt the authorization code"},
		{"repeated parameter", func(v map[string][]string) { v["code"] = []string{code, code} }, 400, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			v := e.codeGrantValues(code)
			c.edit(v)
			a := e.tokenForm("acme", v)
			if a.status != c.status {
				t.Fatalf("status %d %s, want %d", a.status, a.body, c.status)
			}
			if h := hint(t, a); h != c.hint && c.hint != "" {
				t.Errorf("hint %q, want %q", h, c.hint)
			}
		})
	}
	// None of those spent the code.
	decodeToken(t, e.tokenForm("acme", e.codeGrantValues(code)))
	// Neither a text body nor a GET is a token request.
	if a := e.send(http.MethodPost, e.base("acme")+"/oauth2/access_token", "text/plain", []byte(e.codeGrantValues(code).Encode())); a.status != 400 {
		t.Errorf("text/plain: %d", a.status)
	}
	if a := e.send(http.MethodGet, e.base("acme")+"/oauth2/access_token", "", nil); a.status != 405 {
		t.Errorf("GET: %d", a.status)
	}
}

func TestRefreshRotatesAndDetectsReuse(t *testing.T) {
	e := newEnv(t, nil)
	first := e.pair("acme", "user@example.com", acmeKey)
	e.clk.Advance(time.Hour)
	second := decodeToken(t, e.tokenForm("acme", e.refreshValues(first.RefreshToken)))
	if second.RefreshToken == first.RefreshToken || second.AccessToken == first.AccessToken {
		t.Fatal("refresh did not rotate")
	}
	// The old refresh token is dead: spending it again is the proxy's bug.
	a := e.tokenForm("acme", e.refreshValues(first.RefreshToken))
	if a.status != http.StatusUnauthorized || hint(t, a) != "Token has been revoked" {
		t.Fatalf("reuse: %d %s", a.status, a.body)
	}
	st := e.fake.Stats()
	if st.Refreshes != 1 || st.RefreshReuse != 1 || st.RefreshErrors != 1 {
		t.Errorf("stats %+v", st)
	}
	if v := e.fake.Violations(); len(v) != 1 || v[0].Kind != ViolationRefreshReuse || v[0].Account != "acme" {
		t.Errorf("violations %+v", v)
	}
	// The new one works, once.
	third := decodeToken(t, e.tokenForm("acme", e.refreshValues(second.RefreshToken)))
	// The old access token keeps working until its own expiry.
	if a := e.api(http.MethodGet, "acme", "/api/v4/account", first.AccessToken, nil); a.status != http.StatusOK {
		t.Errorf("old access token before its exp: %d", a.status)
	}
	e.clk.Advance(23 * time.Hour) // first was issued 24h ago
	if a := e.api(http.MethodGet, "acme", "/api/v4/account", first.AccessToken, nil); a.status != http.StatusUnauthorized {
		t.Errorf("old access token after its exp: %d", a.status)
	}
	if a := e.api(http.MethodGet, "acme", "/api/v4/account", third.AccessToken, nil); a.status != http.StatusOK {
		t.Errorf("newest access token: %d", a.status)
	}
}

func TestRefreshWithoutRedirectURIIsRejected(t *testing.T) {
	e := newEnv(t, nil)
	p := e.pair("acme", "user@example.com", acmeKey)
	v := e.refreshValues(p.RefreshToken)
	v.Del("redirect_uri") // what golang.org/x/oauth2 sends by itself
	a := e.tokenForm("acme", v)
	if a.status != http.StatusBadRequest || !strings.Contains(string(a.body), "redirect_uri is required") {
		t.Fatalf("refresh without redirect_uri: %d %s", a.status, a.body)
	}
	// The token was not spent.
	decodeToken(t, e.tokenForm("acme", e.refreshValues(p.RefreshToken)))
	if st := e.fake.Stats(); st.RefreshErrors != 1 || st.Refreshes != 1 || st.RefreshReuse != 0 {
		t.Errorf("stats %+v", st)
	}
}

func TestRefreshRejections(t *testing.T) {
	e := newEnv(t, nil)
	p := e.pair("acme", "user@example.com", acmeKey)
	if a := e.tokenForm("acme", e.refreshValues("def50200nope")); a.status != 401 || hint(t, a) != "Invalid refresh token" {
		t.Errorf("unknown token: %d %s", a.status, a.body)
	}
	if a := e.tokenForm("other", e.refreshValues(p.RefreshToken)); a.status != 401 {
		t.Errorf("token at another account: %d %s", a.status, a.body)
	}
	e.clk.Advance(90 * 24 * time.Hour)
	if a := e.tokenForm("acme", e.refreshValues(p.RefreshToken)); a.status != 401 || hint(t, a) != "Token has expired" {
		t.Errorf("expired token: %d %s", a.status, a.body)
	}
	if st := e.fake.Stats(); st.RefreshReuse != 0 || len(e.fake.Violations()) != 0 {
		t.Errorf("failures that are not reuse counted as reuse: %+v", st)
	}
}

func TestRevokeUser(t *testing.T) {
	e := newEnv(t, nil)
	p := e.pair("acme", "user@example.com", acmeKey)
	o := e.pair("other", "boss@example.com", otherKey)
	if err := e.fake.RevokeUser("acme", "user@example.com"); err != nil {
		t.Fatal(err)
	}
	if a := e.api(http.MethodGet, "acme", "/api/v4/account", p.AccessToken, nil); a.status != 401 {
		t.Errorf("revoked access token: %d", a.status)
	}
	if a := e.tokenForm("acme", e.refreshValues(p.RefreshToken)); a.status != 401 || hint(t, a) != "Token has been revoked" {
		t.Errorf("revoked refresh token: %d %s", a.status, a.body)
	}
	if st := e.fake.Stats(); st.RefreshReuse != 0 || st.API401 != 1 {
		t.Errorf("stats %+v", st)
	}
	if a := e.api(http.MethodGet, "other", "/api/v4/account", o.AccessToken, nil); a.status != 200 {
		t.Errorf("another user's token: %d", a.status)
	}
	if err := e.fake.RevokeUser("acme", "ghost"); err == nil {
		t.Error("no error for an unknown user")
	}
}

func TestExpireAccess(t *testing.T) {
	e := newEnv(t, nil)
	p := e.pair("acme", "user@example.com", acmeKey)
	if err := e.fake.ExpireAccess("acme", "user@example.com"); err != nil {
		t.Fatal(err)
	}
	if a := e.api(http.MethodGet, "acme", "/api/v4/account", p.AccessToken, nil); a.status != 401 {
		t.Errorf("expired access token: %d", a.status)
	}
	n := decodeToken(t, e.tokenForm("acme", e.refreshValues(p.RefreshToken)))
	if a := e.api(http.MethodGet, "acme", "/api/v4/account", n.AccessToken, nil); a.status != 200 {
		t.Errorf("refreshed access token: %d", a.status)
	}
}

func TestTokenEndpointFailure(t *testing.T) {
	e := newEnv(t, nil)
	code := e.code("acme", "user@example.com", acmeKey)
	e.fake.SetTokenEndpointFailure(500, `{"oops":true}`)
	if a := e.tokenForm("acme", e.codeGrantValues(code)); a.status != 500 || string(a.body) != `{"oops":true}` {
		t.Fatalf("injected 500: %d %s", a.status, a.body)
	}
	e.fake.SetTokenEndpointFailure(200, "garbage")
	if a := e.tokenForm("acme", e.codeGrantValues(code)); a.status != 200 || string(a.body) != "garbage" {
		t.Fatalf("injected garbage: %d %s", a.status, a.body)
	}
	e.fake.SetTokenEndpointFailure(0, "")
	decodeToken(t, e.tokenForm("acme", e.codeGrantValues(code))) // not spent by the failures
	if st := e.fake.Stats(); st.TokenCalls != 3 || st.CodeGrants != 1 {
		t.Errorf("stats %+v", st)
	}
}

func TestExchangeFailure(t *testing.T) {
	e := newEnv(t, nil)
	e.fake.SetExchangeFailure(502, "bad gateway")
	if a := e.exchange("acme", exchangeBody("user@example.com", acmeKey, "s")); a.status != 502 {
		t.Fatalf("injected: %d", a.status)
	}
	e.sink.none(t, 20*time.Millisecond)
	e.fake.SetExchangeFailure(0, "")
	if a := e.exchange("acme", exchangeBody("user@example.com", acmeKey, "s")); a.status != http.StatusAccepted {
		t.Fatalf("after: %d (a failed call must not count toward the interval)", a.status)
	}
	e.sink.next(t)
}
