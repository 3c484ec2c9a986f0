package exchange

import (
	"context"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/amobridge/amobridge/tokenstore"
)

func accountCalls(f *fakeAmo) int { return f.accountCalls }

func TestAccountInfo(t *testing.T) {
	e := newEnv(t, badgerStore, nil)
	const login = "cleo@example.com"
	tok := e.mustToken(login, e.user(login))
	ctx := context.Background()
	ai, err := e.b.AccountInfo(ctx, e.acct, tok)
	if err != nil {
		t.Fatal(err)
	}
	want := AccountInfo{ID: 123, Name: "Acme", Subdomain: "acme", CurrentUserID: int64(400 + len(login)),
		Currency: "RUB", Country: "RU", Timezone: "Europe/Kaliningrad", Language: "ru"}
	if *ai != want {
		t.Fatalf("got %+v, want %+v", *ai, want)
	}
	e.amo.mu.Lock()
	h := e.amo.lastAPIHeader
	e.amo.mu.Unlock()
	if h.Get("Authorization") != "Bearer "+tok.AccessToken || h.Get("X-Client-UUID") != testClientID {
		t.Error("missing Bearer or X-Client-UUID")
	}
	// Cached, and a caller changing its copy does not change the cache.
	ai.Name = "changed"
	ai2, err := e.b.AccountInfo(ctx, e.acct, tok)
	if err != nil || ai2.Name != "Acme" {
		t.Fatalf("cached: %v %+v", err, ai2)
	}
	if n := e.amo.stat(accountCalls); n != 1 {
		t.Errorf("%d account calls, want 1", n)
	}
	e.clock.Advance(11 * time.Minute)
	if _, err := e.b.AccountInfo(ctx, e.acct, tok); err != nil {
		t.Fatal(err)
	}
	if n := e.amo.stat(accountCalls); n != 2 {
		t.Errorf("%d account calls after the cache's life, want 2", n)
	}
}

func TestAccountInfoErrors(t *testing.T) {
	e := newEnv(t, fakeStore, nil)
	ctx := context.Background()
	bogus := &tokenstore.Token{Account: "acme", Login: "dan@example.com", AccessToken: "acc" + randHex(24)}
	noteSecret(bogus.AccessToken)
	_, err := e.b.AccountInfo(ctx, e.acct, bogus)
	noteErr(err)
	if KindOf(err) != KindWrongKey {
		t.Fatalf("401 for a user without a stored pair: %v, want wrong key (authorize again)", err)
	}
	for name, hook := range map[string]func(http.ResponseWriter){
		"html":  func(w http.ResponseWriter) { w.Write([]byte("<html></html>")) },
		"no id": func(w http.ResponseWriter) { w.Write([]byte(`{"name":"x"}`)) },
		"500":   func(w http.ResponseWriter) { w.WriteHeader(500) },
	} {
		e.amo.set(func(f *fakeAmo) { f.accountHook = func(w http.ResponseWriter) bool { hook(w); return true } })
		_, err := e.b.AccountInfo(ctx, e.acct, bogus)
		noteErr(err)
		if KindOf(err) != KindUpstream {
			t.Errorf("%s: %v, want upstream", name, err)
		}
	}
}

// TestAccountInfoReauthorizes: amoCRM refuses the token auth.php was given
// (revoked on its side): the user is refreshed and the call made again, as
// a forwarded request is replayed.
func TestAccountInfoReauthorizes(t *testing.T) {
	e := newEnv(t, fakeStore, nil)
	ctx := context.Background()
	const login = "ivy@example.com"
	tok := e.mustToken(login, e.user(login))
	var refused atomic.Int32
	e.amo.set(func(f *fakeAmo) {
		f.accountHook = func(w http.ResponseWriter) bool {
			if refused.Add(1) == 1 {
				w.WriteHeader(http.StatusUnauthorized)
				return true
			}
			return false
		}
	})
	ai, err := e.b.AccountInfo(ctx, e.acct, tok)
	if err != nil || ai.ID == 0 {
		t.Fatalf("AccountInfo after a refused token: %v", err)
	}
	if n := e.amo.stat(refreshes); n != 1 {
		t.Errorf("%d refreshes, want 1 (reauthorized once)", n)
	}
	if st := e.stored(login); st == nil || st.AccessToken == tok.AccessToken {
		t.Error("the refused access token is still the stored one")
	}
}

func TestParseAccount(t *testing.T) {
	ai, err := parseAccount([]byte(`{"id":"77","name":"N","subdomain":"s","current_user_id":"9","language":"en","datetime_settings":{"timezone":"Asia/Omsk"}}`))
	if err != nil {
		t.Fatal(err)
	}
	if ai.ID != 77 || ai.CurrentUserID != 9 || ai.Language != "en" || ai.Timezone != "Asia/Omsk" {
		t.Errorf("got %+v", *ai)
	}
	ai, err = parseAccount([]byte(`{"id":1,"current_user_id":null}`))
	if err != nil || ai.Language != "ru" || ai.Timezone != "" {
		t.Errorf("defaults: %v %+v", err, ai)
	}
	for _, bad := range []string{``, `[]`, `{"id":0}`, `{"id":"x"}`, `<html>`} {
		if _, err := parseAccount([]byte(bad)); err == nil {
			t.Errorf("%q parsed", bad)
		}
	}
}
