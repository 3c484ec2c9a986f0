package legacy

import (
	"net/http"
	"net/url"
	"strings"
	"testing"
)

// TestPHPCookieNames: PHP reads "session.id", "session id", " session_id"
// and "session[id" as session_id; "session_id[]" is an array.
func TestPHPCookieNames(t *testing.T) {
	for _, line := range []string{"session.id=s1", "session id=s1", "a=1;\tsession_id=s1", "a=1; session[id=s1; b=2",
		"a=1; session.id=s1; path=/", "x=1, session.id=s1"} {
		r := &http.Request{Method: "GET", URL: &url.URL{Path: "/api/v2/leads"}, Header: http.Header{"Cookie": {line}}, Body: http.NoBody}
		f, err := Strip(r, Options{})
		if err != nil || f.Kind != Session || f.SessionID != "s1" {
			t.Errorf("%q: found %+v, %v", line, f, err)
			continue
		}
		for _, l := range r.Header["Cookie"] {
			if strings.Contains(l, "s1") {
				t.Errorf("%q: left %q", line, l)
			}
		}
	}
	r := &http.Request{Method: "GET", URL: &url.URL{Path: "/x"}, Header: http.Header{"Cookie": {"session_id[]=s1"}}, Body: http.NoBody}
	if _, err := Strip(r, Options{}); err == nil {
		t.Error("session_id[] accepted")
	}
	// A configured name with a dot is what PHP reads it as.
	r = &http.Request{Method: "GET", URL: &url.URL{Path: "/x"}, Header: http.Header{"Cookie": {"sess_id=s1"}}, Body: http.NoBody}
	if f, err := Strip(r, Options{SessionCookie: "sess.id"}); err != nil || f.SessionID != "s1" || len(r.Header["Cookie"]) != 0 {
		t.Errorf("sess.id: found %+v, %v, left %q", f, err, r.Header["Cookie"])
	}
	// Names that PHP reads apart are kept.
	for _, line := range []string{"session_idx=1", "xsession_id=1", "session%5Fid=1", "Session_id=1"} {
		r := &http.Request{Method: "GET", URL: &url.URL{Path: "/x"}, Header: http.Header{"Cookie": {line}}, Body: http.NoBody}
		if f, err := Strip(r, Options{}); err != nil || f.Kind != None || r.Header.Get("Cookie") != line {
			t.Errorf("%q: found %+v, %v, left %q", line, f, err, r.Header["Cookie"])
		}
	}
}

// TestPHPCookieItems: PHP splits a Cookie line at ';' only. An item that
// holds the session cookie (also after a comma) goes whole, then the items
// that are only Set-Cookie attributes; every other item stays as PHP reads it.
func TestPHPCookieItems(t *testing.T) {
	tests := []struct{ in, out string }{
		{"a=1, session_id=s1; b=2", "b=2"},                                // PHP: a = "1, session_id=s1"
		{"session_id=s1, c=3; b=2", "b=2"},                                // PHP: session_id = "s1, c=3"
		{"session_id=s1; path=/; secure; HttpOnly, o=1", "HttpOnly, o=1"}, // PHP: "HttpOnly,_o" = 1
		{"x=1; session.id=s1; Max-Age=900; Expires=Wed, 21 Oct 2037 07:28:00 GMT; y=2", "x=1; y=2"},
	}
	for _, tt := range tests {
		r := &http.Request{Method: "GET", URL: &url.URL{Path: "/x"}, Header: http.Header{"Cookie": {tt.in}}, Body: http.NoBody}
		f, err := Strip(r, Options{})
		if err != nil || f.SessionID != "s1" || r.Header.Get("Cookie") != tt.out {
			t.Errorf("%q: %+v, %v, left %q, want %q", tt.in, f, err, r.Header["Cookie"], tt.out)
		}
	}
	for _, in := range []string{"session_id =s1", "a=1; session.id\t=s1"} {
		r := &http.Request{Method: "GET", URL: &url.URL{Path: "/x"}, Header: http.Header{"Cookie": {in}}, Body: http.NoBody}
		if _, err := Strip(r, Options{}); err == nil {
			t.Errorf("%q: accepted; PHP reads session_id_", in)
		}
	}
}
