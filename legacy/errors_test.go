package legacy

import (
	"errors"
	"net/url"
	"strings"
	"testing"
)

// TestErrorsNeverCarrySecrets feeds malformed credentials holding distinctive
// values and checks that no error text holds them, raw or encoded.
func TestErrorsNeverCarrySecrets(t *testing.T) {
	const login = "SECRET.LOGIN@example.com"
	const key = "f00dfacef00dfacef00dfacef00dfacef00dface"
	const sid = "SESSIONSECRET0123456789"
	el, ek := url.QueryEscape(login), url.QueryEscape(key)
	targets := []req{
		{target: "/x?USER_LOGIN=" + el},
		{target: "/x?USER_HASH=" + ek},
		{target: "/x?USER_LOGIN=" + el + "&USER_HASH=" + ek + "&USER_HASH=" + ek + "x"},
		{target: "/x?USER_LOGIN=" + el + "&USER_HASH=" + ek + "%zz"},
		{target: "/x?USER_LOGIN=" + el + "%0A&USER_HASH=" + ek},
		{target: "/x?USER_LOGIN[]=" + el + "&USER_HASH=" + ek},
		{target: "/x?USER_LOGIN=" + el + "&USER_HASH=" + ek + strings.Repeat("0", 1100)},
		{target: "/api/unsorted/add/?login=" + el + "&api_key=" + ek + "&USER_HASH=" + key[:10]},
		{target: "/x", ct: "application/json", body: `{"USER_LOGIN":"` + login + `","USER_HASH":"` + key + `",}`},
		{target: "/x", ct: "application/json", body: `{"USER_LOGIN":"` + login + `","USER_HASH":7}`},
		{target: "/x", ct: "application/json", body: `{"USER_LOGIN":"` + login + `\u0001","USER_HASH":"` + key + `"}`},
		{target: "/x", ct: "application/x-www-form-urlencoded", body: "USER_LOGIN=" + el + "&USER_HASH=" + ek + "&USER_LOGIN=" + el + "2"},
		{target: "/x", cookies: []string{"session_id=" + sid, "session_id=" + sid + "2"}},
		{target: "/x", cookies: []string{"session_id=" + sid + "\x7f"}},
	}
	for i, q := range targets {
		_, err := Strip(q.build(t), Options{})
		var le *Error
		if !errors.As(err, &le) {
			t.Fatalf("case %d: err = %v, want *Error", i, err)
		}
		for _, s := range []string{err.Error(), le.Text} {
			for _, secret := range []string{login, key, el, ek, sid, key[:10], "SECRET", "f00dface"} {
				if strings.Contains(s, secret) {
					t.Errorf("case %d: error %q holds a secret", i, s)
				}
			}
		}
	}
}

func TestErrorConstructors(t *testing.T) {
	for _, c := range []struct {
		e      *Error
		status int
		code   string
	}{
		{ErrBadCredentials(), 401, "110"},
		{Malformed("x"), 400, "400"},
		{TooLarge(), 413, "413"},
		{TooManyRequests(0), 429, "429"},
		{Unavailable("x", 0), 503, "503"},
		{BadGateway("x"), 502, "502"},
		{GatewayTimeout("x"), 504, "504"},
		{NewError(418, "x"), 418, "418"},
	} {
		if c.e.Status != c.status || c.e.Code != c.code || c.e.Text == "" {
			t.Errorf("%+v: want %d %s", c.e, c.status, c.code)
		}
		if !strings.Contains(c.e.Error(), c.code) {
			t.Errorf("Error() = %q lacks the code", c.e.Error())
		}
	}
	if ErrBadCredentials() == ErrBadCredentials() {
		t.Error("constructors must return fresh values")
	}
}
