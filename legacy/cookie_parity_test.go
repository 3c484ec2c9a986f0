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
