package exchange

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

func TestLeakDetectorFindsAPlantedSecret(t *testing.T) {
	secret := randHex(20)
	core, logs := observer.New(zapcore.DebugLevel)
	zap.New(core).Debug("hello", zap.String("k", "x"+secret+"y"))
	if got := leaks(auditTexts(logs, nil), map[string]struct{}{secret: {}}); len(got) != 1 {
		t.Fatalf("planted secret in a field not found: %v", got)
	}
	if got := leaks([]string{"a " + secret}, map[string]struct{}{secret: {}}); len(got) != 1 {
		t.Fatal("planted secret in an error not found")
	}
}

// TestNoSecretsInLogsOrErrors drives the broker through its success and
// failure paths with a debug logger of its own and checks every log line
// and error text against every key, token, code and secret involved. (The
// whole suite is audited the same way in TestMain.)
func TestNoSecretsInLogsOrErrors(t *testing.T) {
	core, logs := observer.New(zapcore.DebugLevel)
	e := newEnv(t, badgerStore, func(c *Config) {
		c.Logger = zap.New(zapcore.NewTee(core, audit.core))
		c.ExchangeTimeout = 100 * time.Millisecond
		c.HTTPClient = &http.Client{Timeout: 600 * time.Millisecond}
	})
	secrets := map[string]struct{}{e.cfg.ClientSecret: {}}
	var errs []string
	note := func(err error) {
		if err != nil {
			errs = append(errs, err.Error())
		}
	}
	ctx := context.Background()
	tok := func(login, key string) {
		secrets[key] = struct{}{}
		t, err := e.b.Token(ctx, e.acct, login, key)
		note(err)
		if t != nil {
			secrets[t.AccessToken] = struct{}{}
			secrets[t.RefreshToken] = struct{}{}
		}
	}

	const login = "jade@example.com"
	key := e.user(login)
	tok(login, key)                       // exchange, callback, code grant
	tok(login, "key"+randHex(20))         // wrong key within the interval
	e.clock.Advance(6 * time.Minute)      //
	tok(login, "key"+randHex(20))         // wrong key tried: amoCRM's 400 quotes it back
	e.clock.Advance(24 * time.Hour)       //
	tok(login, key)                       // refresh
	st := e.stored(login)                 //
	secrets[st.AccessToken] = struct{}{}  //
	secrets[st.RefreshToken] = struct{}{} //
	e.amo.set(func(f *fakeAmo) {          // amoCRM answers nonsense quoting what it got
		f.tokenHook = func(w http.ResponseWriter, _ string) bool {
			writeProblem(w, 400, "bad refresh_token "+st.RefreshToken+" for client "+e.cfg.ClientSecret)
			return true
		}
	})
	e.clock.Advance(24 * time.Hour)
	tok(login, key)
	e.amo.set(func(f *fakeAmo) { f.tokenHook = nil })
	e.amo.kill(login) // dead refresh token
	e.b.clearFailure(userKey(e.acct.Name, login))
	tok(login, key)
	t2, err := e.b.Reauthorize(ctx, e.acct, login, st.AccessToken)
	note(err)
	if t2 != nil {
		secrets[t2.AccessToken] = struct{}{}
	}
	// Bad callbacks, a timeout, a late code.
	note(e.b.HandleCallback(map[string][]string{"code": {"code" + randHex(20)}, "state": {randHex(24)}}))
	e.amo.set(func(f *fakeAmo) { f.callbackDelay = 300 * time.Millisecond })
	const other = "kai@example.com"
	tok(other, e.user(other))
	e.amo.wait()
	e.amo.set(func(f *fakeAmo) {
		f.exchangeHook = func(w http.ResponseWriter, _ string) bool { time.Sleep(1500 * time.Millisecond); return true }
	})
	const third = "lou@example.com"
	tok(third, e.user(third))

	audit.mu.Lock()
	for s := range audit.secrets { // keys, codes, states and tokens the fake saw
		secrets[s] = struct{}{}
	}
	audit.mu.Unlock()
	delete(secrets, "") // a token served from the cache carries no refresh token
	texts := auditTexts(logs, errs)
	if len(logs.All()) < 10 || len(errs) < 5 {
		t.Fatalf("the scenario produced too little to check: %d log lines, %d errors", len(logs.All()), len(errs))
	}
	for _, l := range leaks(texts, secrets) {
		t.Error(l)
	}
	// Users are named in the logs.
	named := false
	for _, l := range logs.All() {
		if l.ContextMap()["login"] == login && l.ContextMap()["account"] == "acme" {
			named = true
		}
	}
	if !named {
		t.Error("log lines do not name the user by account and login")
	}
}

func TestSanitize(t *testing.T) {
	secret := "s3cr3t"
	got := sanitize("bad key s3cr3t and eyJhbGciOiJIUzI1NiJ9.eyJleHAiOjF9.abcdefghij here\x00\n", []string{secret, ""})
	if strings.Contains(got, secret) || strings.Contains(got, "eyJ") || strings.ContainsAny(got, "\x00\n") {
		t.Errorf("sanitize left %q", got)
	}
	if long := sanitize(strings.Repeat("word ", 100), nil); len([]rune(long)) > 121 {
		t.Errorf("not shortened: %d runes", len([]rune(long)))
	}
}
