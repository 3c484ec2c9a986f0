package legacy

import (
	"bytes"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
)

// PHP parity fuzzing. FuzzPHPParity's corpus (testdata/fuzz/FuzzPHPParity)
// is replayed through PHP itself by integration_test's TestPHPOracle, with
// the placeholders below replaced by a real login, key and session: the
// seeds are the shapes PHP reads credentials in and Strip once missed.
// Here, without PHP, the target checks what can be checked in Go: Strip
// never panics, fails only with a 400/413 *Error, leaves a request in which
// a second Strip finds nothing and changes nothing, and changes nothing
// but the session cookie of a request in which it found no credential.

// Placeholders in FuzzPHPParity inputs. integration_test/phporacle_test.go
// builds the same requests from the corpus: keep the two in step.
const (
	phpFuzzLogin  = "{LOGIN}"  // the login as is
	phpFuzzLoginQ = "{LOGINQ}" // the login percent-encoded for a query or form
	phpFuzzKey    = "{KEY}"
	phpFuzzSID    = "{SID}" // the emulated session id
)

// phpFuzzMethods and phpFuzzPaths are what sel picks from in FuzzPHPParity.
var (
	phpFuzzMethods = []string{"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD"}
	phpFuzzPaths   = []string{"/api/v2/leads", "/api/unsorted/add/", "/private/api/v2/json/leads/set"}
)

// phpFuzzRequest builds FuzzPHPParity's request. sel: bits 0-2 the method
// (mod len(phpFuzzMethods)), bits 3-4 the path, bit 5 an unknown length
// (ContentLength -1, as HTTP/2 gives a body without content-length), bit 6
// chunked (HTTP/1.1). ct and cookie may hold several lines, split at '\n'.
func phpFuzzRequest(sel uint8, query, ct, cookie string, body []byte, subst *strings.Replacer) *http.Request {
	method := phpFuzzMethods[int(sel&7)%len(phpFuzzMethods)]
	path := phpFuzzPaths[int(sel>>3&3)%len(phpFuzzPaths)]
	query, ct, cookie = subst.Replace(query), subst.Replace(ct), subst.Replace(cookie)
	body = []byte(subst.Replace(string(body)))
	r := &http.Request{Method: method, URL: &url.URL{Path: path, RawQuery: query}, RequestURI: path,
		Header: http.Header{}, Body: http.NoBody}
	if query != "" {
		r.RequestURI += "?" + query
	}
	if ct != "" {
		r.Header["Content-Type"] = strings.Split(ct, "\n")
	}
	if cookie != "" {
		r.Header["Cookie"] = strings.Split(cookie, "\n")
	}
	if len(body) > 0 {
		r.Body = io.NopCloser(bytes.NewReader(body))
		r.ContentLength = int64(len(body))
		switch {
		case sel&0x20 != 0:
			r.ContentLength = -1
		case sel&0x40 != 0:
			r.ContentLength = -1
			r.TransferEncoding = []string{"chunked"}
		}
	}
	return r
}

var phpFuzzSubst = strings.NewReplacer(phpFuzzLoginQ, "u%40e.com", phpFuzzLogin, "u@e.com", phpFuzzKey, "k1", phpFuzzSID, "s1")

func FuzzPHPParity(f *testing.F) {
	f.Add(uint8(1), "a=1", "application/x-www-form-urlencoded,text/plain", "a=1; session.id={SID}",
		[]byte("USER_LOGIN={LOGINQ}&USER_HASH={KEY}&b=2"))
	f.Fuzz(func(t *testing.T, sel uint8, query, ct, cookie string, body []byte) {
		r := phpFuzzRequest(sel, query, ct, cookie, body, phpFuzzSubst)
		inQuery, inCookies := r.URL.RawQuery, strings.Join(r.Header["Cookie"], "\n")
		inBody := phpFuzzSubst.Replace(string(body))
		found, err := Strip(r, Options{MaxBody: 1 << 20})
		if err != nil {
			mustBeError(t, err, 400, 413)
			return
		}
		out, rerr := io.ReadAll(r.Body)
		if rerr != nil {
			mustBeError(t, rerr, 400, 413) // a multipart guard stopping the body
			return
		}
		if found.Kind == None && (r.URL.RawQuery != inQuery || string(out) != inBody && len(body) > 0) {
			t.Fatalf("no credential found, but the request changed: %q -> %q, %q -> %q", inQuery, r.URL.RawQuery, inBody, out)
		}
		// What is left holds nothing Strip reads as a credential.
		again := r.Clone(r.Context())
		again.Body, again.ContentLength, again.TransferEncoding = http.NoBody, 0, nil
		if len(out) > 0 {
			again.Body, again.ContentLength = io.NopCloser(bytes.NewReader(out)), int64(len(out))
		}
		f2, err := Strip(again, Options{MaxBody: 1 << 20})
		if err != nil {
			t.Fatalf("the stripped request is refused: %v (query %q, cookies %q, body %q)", err, r.URL.RawQuery, r.Header["Cookie"], out)
		}
		if f2.Kind != None || f2.SessionID != "" {
			t.Fatalf("the stripped request still holds %v (query %q, cookies %q, body %q)", f2.Kind, r.URL.RawQuery, r.Header["Cookie"], out)
		}
		if out2, _ := io.ReadAll(again.Body); again.URL.RawQuery != r.URL.RawQuery || !bytes.Equal(out2, out) {
			t.Fatalf("a second Strip changed the request: %q -> %q", out, out2)
		}
		if found.Kind == None && found.SessionID == "" && inCookies != strings.Join(r.Header["Cookie"], "\n") {
			for _, line := range strings.Split(inCookies, "\n") { // each Cookie line on its own, as PHP reads it
				for _, it := range oracleCookies(line) {
					if it.name == DefaultSessionCookie && it.value != "" {
						t.Fatalf("cookies changed without a session found: %q -> %q", inCookies, r.Header["Cookie"])
					}
				}
			}
		}
	})
}
