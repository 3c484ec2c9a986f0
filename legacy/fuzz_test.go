package legacy

import (
	"errors"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
)

// The fuzz targets check Strip against the independent oracle in
// oracle_test.go: no panic; after a success the oracle finds no credential
// in what is left, every other part is left byte for byte, and what Strip
// reports is what the oracle read; when Strip found nothing, nothing changed;
// after an error the request is as it was.

func FuzzStripQuery(f *testing.F) {
	for _, s := range []string{
		"USER_LOGIN=a%40b.c&USER_HASH=0123abcd&limit_rows=5",
		"a=1&USER%5FLOGIN=x&b=%zz&USER.HASH=k&&c",
		"+USER[LOGIN=x&%20USER_HASH=k",
		"USER_LOGIN[]=x&USER_HASH=k",
		"USER_LOGIN%00x=a&USER_HASH=b&USER_HASH=b",
		"login=a&api_key=k&x=1",
		"USER_LOGIN=&USER_HASH=k",
		"type=json&USER_LOGIN=x&USER_HASH=y",
		"q=100%&USER_LOGIN=x%&USER_HASH=y",
		"",
		"&&&",
		"USER_LOGIN[x]y=1",
	} {
		f.Add(s, false)
		f.Add(s, true)
	}
	f.Fuzz(func(t *testing.T, q string, unsorted bool) {
		p := "/api/v2/leads"
		if unsorted {
			p = "/api/unsorted/add/"
		}
		r := &http.Request{Method: "GET", URL: &url.URL{Path: p, RawQuery: q}, RequestURI: p + "?" + q,
			Header: http.Header{}, Body: http.NoBody}
		found, err := Strip(r, Options{})
		in := oracleSplit(q)
		if err != nil {
			mustBeError(t, err, 400)
			if r.URL.RawQuery != q || r.RequestURI != p+"?"+q {
				t.Fatalf("request changed on error")
			}
			return
		}
		out := r.URL.RawQuery
		wantURI := p
		if out != "" {
			wantURI += "?" + out
		}
		if out != q && r.RequestURI != wantURI {
			t.Fatalf("RequestURI %q, RawQuery %q", r.RequestURI, out)
		}
		checkPairs(t, q, out, in, unsorted, found)
	})
}

// checkPairs checks what Strip left of the pairs in (parsed from s) in out.
func checkPairs(t *testing.T, s, out string, in []oraclePair, unsorted bool, found Found) {
	t.Helper()
	var kept []string
	creds := 0
	for _, p := range in {
		if !oracleIsCred(p.name, unsorted) {
			kept = append(kept, p.raw)
			continue
		}
		creds++
		if found.Kind != Key {
			t.Fatalf("oracle reads credential %q in %q, Strip found %v", p.name, s, found.Kind)
		}
		if p.array {
			t.Fatalf("credential array %q accepted", p.raw)
		}
		want := found.Key
		if oracleIsLogin(p.name) {
			want = found.Login
		}
		if p.value != want {
			t.Fatalf("%s = %q by the oracle, Strip says %q", p.name, p.value, want)
		}
	}
	if creds == 0 {
		if out != s {
			t.Fatalf("no credential, but %q became %q", s, out)
		}
		return
	}
	for _, p := range oracleSplit(out) {
		if oracleIsCred(p.name, unsorted) {
			t.Fatalf("credential %q left in %q (from %q)", p.raw, out, s)
		}
	}
	if got, want := out, strings.Join(kept, "&"); got != want {
		t.Fatalf("left %q, want %q (from %q)", got, want, s)
	}
}

func mustBeError(t *testing.T, err error, statuses ...int) {
	t.Helper()
	var le *Error
	if !errors.As(err, &le) {
		t.Fatalf("error %v is not *Error", err)
	}
	for _, s := range statuses {
		if le.Status == s && le.Code != "" && le.Text != "" {
			return
		}
	}
	t.Fatalf("error %v: status %d not in %v", err, le.Status, statuses)
}

var fuzzTypes = []string{
	"application/x-www-form-urlencoded",
	"application/json",
	"text/plain",
	"",
	"application/octet-stream",
	"multipart/form-data; boundary=x",
}

const fuzzMultipart = "--x\r\nContent-Disposition: form-data; name=\"USER_LOGIN\"\r\n\r\na@b.c\r\n" +
	"--x\r\nContent-Disposition: form-data; name=\"USER.HASH\"\r\n\r\nk\r\n--x--\r\n"

var fuzzPaths = []string{"/api/v2/leads", "/api/unsorted/add/", "/private/api/auth.php"}

func FuzzStripBody(f *testing.F) {
	for _, s := range []string{
		"USER_LOGIN=a%40b.c&USER_HASH=k&name=x",
		"a=1&USER_LOGIN=x&b=2&USER_HASH=k&c=3&",
		`{"USER_LOGIN":"a@b.c","request":{"x":[1,2.5e3,{"y":null}]},"USER_HASH":"k"}`,
		"{\n  \"a\": 1.0,\n  \"USER_LOGIN\": \"x\",\n  \"b\": -0,\n  \"USER_HASH\" : \"k\"\n}\n",
		`{"\u0055SER_LOGIN":"a\u0040b","USER_HASH":"\ud83d\ude00"}`,
		`[{"USER_LOGIN":"x","USER_HASH":"k"}]`,
		`{"a":"&USER_LOGIN=x&USER_HASH=k&"}`,
		`{"USER_LOGIN":"x","USER_HASH":"k","type":"json"}`,
		"login=a&api_key=k&type=json",
		`{"a":[[[[{}]]]],"b":"\\\""}`,
		"",
		"{",
	} {
		for ct := range fuzzTypes {
			f.Add([]byte(s), uint8(ct), uint8(0))
		}
		f.Add([]byte(s), uint8(0), uint8(1))
		f.Add([]byte(s), uint8(4), uint8(2))
	}
	f.Add([]byte(fuzzMultipart), uint8(5), uint8(2))
	f.Add([]byte(fuzzMultipart), uint8(5), uint8(0))
	f.Fuzz(func(t *testing.T, body []byte, ctSel, pathSel uint8) {
		ct := fuzzTypes[int(ctSel)%len(fuzzTypes)]
		p := fuzzPaths[int(pathSel)%len(fuzzPaths)]
		unsorted, authPHP := p == fuzzPaths[1], p == fuzzPaths[2]
		in := string(body)
		r := &http.Request{Method: "POST", URL: &url.URL{Path: p}, RequestURI: p, Header: http.Header{},
			Body: io.NopCloser(strings.NewReader(in)), ContentLength: int64(len(in))}
		if ct != "" {
			r.Header.Set("Content-Type", ct)
		}
		orig := r.Body
		found, err := Strip(r, Options{MaxBody: 1 << 20})
		if err != nil {
			mustBeError(t, err, 400)
			if r.Body != orig && readAll(t, r) != in {
				t.Fatalf("body changed on error")
			}
			if oracleJSONSniff(in) && strings.Contains(err.Error(), "not valid JSON") {
				if _, ok := oracleJSONObject(in); ok {
					t.Fatalf("valid JSON object refused as invalid: %q", in)
				}
			}
			return
		}
		multipart := ct == fuzzTypes[5]
		if multipart && !authPHP {
			if r.Body != orig || found.Kind != None {
				t.Fatalf("a %s body was read", ct)
			}
			return
		}
		out := readAll(t, r)
		if ct == fuzzTypes[4] && !authPHP && !oracleJSONSniff(in) {
			// Another media type, not a JSON object: peeked at, given back.
			if out != in || found.Kind != None || r.ContentLength != int64(len(in)) {
				t.Fatalf("a %s body that is not JSON was changed: %q -> %q", ct, in, out)
			}
			return
		}
		if out != in && r.ContentLength != int64(len(out)) {
			t.Fatalf("ContentLength %d for %d bytes", r.ContentLength, len(out))
		}
		if authPHP && ct == fuzzTypes[5] {
			checkMultipart(t, in, out, found)
			return
		}
		if oracleJSONSniff(in) {
			ms, ok := oracleJSONObject(in)
			if !ok {
				t.Fatalf("accepted a body that is not one JSON object: %q", in)
			}
			checkMembers(t, in, out, ms, found)
			if ct == fuzzTypes[0] {
				for _, p := range oracleSplit(out) {
					if oracleIsCred(p.name, unsorted) {
						t.Fatalf("form credential %q left in JSON body %q", p.raw, out)
					}
				}
			}
			return
		}
		if ct == fuzzTypes[1] {
			if out != in || found.Kind != None {
				t.Fatalf("non-object JSON body touched: %q -> %q", in, out)
			}
			return
		}
		checkPairs(t, in, out, oracleSplit(in), unsorted, found)
	})
}

// checkMembers checks what Strip left of the JSON object in (members ms).
func checkMembers(t *testing.T, in, out string, ms []oracleMember, found Found) {
	t.Helper()
	var kept []oracleMember
	creds := 0
	for _, m := range ms {
		if m.key != "USER_LOGIN" && m.key != "USER_HASH" {
			kept = append(kept, m)
			continue
		}
		creds++
		if found.Kind != Key {
			t.Fatalf("oracle reads %q in %q, Strip found %v", m.key, in, found.Kind)
		}
		var v string
		if err := jsonUnmarshalString(m.raw, &v); err != nil {
			t.Fatalf("credential %s accepted as %s", m.key, m.raw)
		}
		want := found.Key
		if m.key == "USER_LOGIN" {
			want = found.Login
		}
		if v != want {
			t.Fatalf("%s = %q by the oracle, Strip says %q", m.key, v, want)
		}
	}
	if creds == 0 {
		if out != in {
			t.Fatalf("no credential, but %q became %q", in, out)
		}
		return
	}
	left, ok := oracleJSONObject(out)
	if !ok {
		t.Fatalf("%q left %q, not a JSON object", in, out)
	}
	if len(left) != len(kept) {
		t.Fatalf("%q left %q: %d members, want %d", in, out, len(left), len(kept))
	}
	for i := range left {
		if left[i] != kept[i] {
			t.Fatalf("%q left %q: member %d is %v, want %v", in, out, i, left[i], kept[i])
		}
	}
}

func FuzzStripCookie(f *testing.F) {
	for _, s := range [][2]string{
		{"session_id=abc", ""},
		{"a=1; session_id=abc; b=2", ""},
		{"a=1", "session_id=abc"},
		{"session_id=abc; path=/; secure; HttpOnly, other=1; path=/", ""},
		{"other=1; Path=/, session_id=abc; Expires=Wed, 21 Oct 2037 07:28:00 GMT; Max-Age=900, x=2", ""},
		{"session_id=a", "session_id=b"},
		{"session_id=\"a\"; session_id=a", ""},
		{"xsession_id=1; session_idx=2", "session_id"},
		{"session_id=; a=1", ";;"},
		{"expires=Mon, session_id=1", ""},
	} {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, c1, c2 string) {
		lines := []string{c1}
		if c2 != "" {
			lines = append(lines, c2)
		}
		r := &http.Request{Method: "GET", URL: &url.URL{Path: "/api/v2/leads"}, RequestURI: "/api/v2/leads",
			Header: http.Header{"Cookie": append([]string(nil), lines...)}, Body: http.NoBody}
		found, err := Strip(r, Options{})
		if err != nil {
			mustBeError(t, err, 400)
			if strings.Join(r.Header["Cookie"], "\n") != strings.Join(lines, "\n") {
				t.Fatalf("cookies changed on error")
			}
			return
		}
		var values []string
		for _, l := range lines {
			for _, it := range oracleCookies(l) {
				if it.name == DefaultSessionCookie {
					values = append(values, it.value)
				}
			}
		}
		out := r.Header["Cookie"]
		if len(values) == 0 {
			if found.SessionID != "" || found.Kind != None {
				t.Fatalf("found %+v in %q", found, lines)
			}
			if strings.Join(out, "\n") != strings.Join(lines, "\n") || len(out) != len(lines) {
				t.Fatalf("no session cookie, but %q became %q", lines, out)
			}
			return
		}
		for _, l := range out {
			if strings.Trim(l, " \t\r\n;,") == "" && l != c1 && l != c2 {
				t.Fatalf("empty Cookie line left: %q", out)
			}
			for _, it := range oracleCookies(l) {
				if it.name == DefaultSessionCookie {
					t.Fatalf("session cookie left in %q (from %q)", l, lines)
				}
			}
		}
		if found.SessionID != "" {
			ok := false
			for _, v := range values {
				ok = ok || v == found.SessionID
			}
			if !ok || found.Kind != Session {
				t.Fatalf("found %+v, oracle reads %q", found, values)
			}
		}
		for _, v := range values {
			if v != "" && v != found.SessionID {
				t.Fatalf("session %q read by the oracle, Strip says %q", v, found.SessionID)
			}
		}
	})
}

// checkMultipart checks an auth.php multipart body: no credential field
// is left, and a body without one is left as it was.
func checkMultipart(t *testing.T, in, out string, found Found) {
	t.Helper()
	creds := oracleMultipartCreds(in)
	if len(creds) == 0 {
		if out != in {
			t.Fatalf("no credential, but %q became %q", in, out)
		}
		return
	}
	if found.Kind != Key {
		t.Fatalf("oracle reads %v in %q, Strip found %v", creds, in, found.Kind)
	}
	if left := oracleMultipartCreds(out); len(left) > 0 {
		t.Fatalf("credentials %v left in %q", left, out)
	}
}
