package exchange

import (
	"encoding/base64"
	"fmt"
	"net/http"
	"testing"
	"time"
)

func jwt(exp int64) string {
	enc := base64.RawURLEncoding.EncodeToString
	return enc([]byte(`{"alg":"RS256"}`)) + "." + enc([]byte(fmt.Sprintf(`{"exp":%d,"api_domain":"api-b.amocrm.ru"}`, exp))) + ".sig"
}

func TestParseToken(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	tok, err := parseToken([]byte(`{"token_type":"Bearer","expires_in":86400,"access_token":"a","refresh_token":"r","server_time":1}`), now)
	if err != nil || tok.AccessToken != "a" || tok.RefreshToken != "r" || !tok.Expiry.Equal(now.Add(24*time.Hour)) {
		t.Fatalf("plain: %v %+v", err, tok)
	}
	// A JWT expiring earlier than expires_in says wins.
	early := now.Add(time.Hour).Unix()
	tok, err = parseToken([]byte(`{"token_type":"bearer","expires_in":86400,"access_token":"`+jwt(early)+`","refresh_token":"r"}`), now)
	if err != nil || tok.Expiry.Unix() != early {
		t.Fatalf("jwt exp: %v %v", err, tok)
	}
	// One later, or in the past, does not.
	for _, exp := range []int64{now.Add(48 * time.Hour).Unix(), now.Add(-time.Hour).Unix()} {
		tok, err = parseToken([]byte(`{"expires_in":86400,"access_token":"`+jwt(exp)+`","refresh_token":"r"}`), now)
		if err != nil || !tok.Expiry.Equal(now.Add(24*time.Hour)) {
			t.Fatalf("jwt exp %d: %v %v", exp, err, tok)
		}
	}
	for _, bad := range []string{
		``, `<html></html>`, `{"access_token":`, `[]`, `null`,
		`{"expires_in":86400,"refresh_token":"r"}`,
		`{"expires_in":86400,"access_token":"a"}`,
		`{"access_token":"a","refresh_token":"r"}`,
		`{"expires_in":0,"access_token":"a","refresh_token":"r"}`,
		`{"expires_in":-5,"access_token":"a","refresh_token":"r"}`,
		`{"expires_in":"86400","access_token":"a","refresh_token":"r"}`,
		`{"expires_in":86400,"access_token":"a b","refresh_token":"r"}`,
		`{"expires_in":86400,"access_token":"a\r\nX: y","refresh_token":"r"}`,
		`{"expires_in":86400,"access_token":"a","refresh_token":"r","token_type":"mac"}`,
	} {
		if _, err := parseToken([]byte(bad), now); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func TestRetryAfter(t *testing.T) {
	now := time.Now()
	h := func(v string) http.Header { return http.Header{"Retry-After": {v}} }
	for _, c := range []struct {
		h    http.Header
		want time.Duration
	}{
		{http.Header{}, time.Minute},
		{h("120"), 2 * time.Minute},
		{h("0"), time.Second},
		{h("junk"), time.Minute},
		{h("9999999"), 24 * time.Hour},
		{h(now.Add(time.Hour).UTC().Format(http.TimeFormat)), time.Hour},
	} {
		got := retryAfter(c.h, now, time.Minute)
		if d := got - c.want; d < -time.Second || d > time.Second {
			t.Errorf("%v: got %v, want %v", c.h, got, c.want)
		}
	}
}

func TestIsDeadGrant(t *testing.T) {
	for body, want := range map[string]bool{
		`{"hint":"Token has been revoked","status":401}`:        true,
		`{"hint":"Invalid refresh token"}`:                      true,
		`{"detail":"Refresh token is expired"}`:                 true,
		`{"error":"invalid_grant"}`:                             true,
		`{"hint":"Check the ` + "`client_id`" + ` parameter"}`:  false,
		`{"hint":"Redirect URI is not associated with client"}`: false,
		`<html>revoked</html>`:                                  false,
		``:                                                      false,
	} {
		if got := isDeadGrant([]byte(body)); got != want {
			t.Errorf("%s: %v, want %v", body, got, want)
		}
	}
}
