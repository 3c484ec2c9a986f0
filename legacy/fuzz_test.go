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
		checkPairs(t, q, out, in, unsorted, false, found)
	})
}

// checkPairs checks what Strip left of the pairs in (parsed from s) in out.
// sniffed says the pairs came from a body that is not form-typed, which
// PHP would read as a JSON object if it began with '{': a remainder that
// would begin so must keep an empty pair in front.
func checkPairs(t *testing.T, s, out string, in []oraclePair, unsorted, sniffed bool, found Found) {
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
	want := strings.Join(kept, "&")
	if sniffed && oracleJSONSniff(want) {
		want = "&" + want
	}
	if got := out; got != want {
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

var fuzzMultiparts = []string{
	"--x\r\nContent-Disposition: form-data; name=\"USER_LOGIN\"\r\n\r\na@b.c\r\n" +
		"--x\r\nContent-Disposition: form-data; name=\"USER.HASH\"\r\n\r\nk\r\n--x--\r\n",
	"preamble\r\n--x\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\n1\r\n" +
		"--x\r\nContent-Disposition: form-data; name=\"USER_HASH\"\r\nContent-Type: text/plain\r\n\r\nk\r\n" +
		"--x\r\nContent-Disposition: form-data; name=\"f\"; filename=\"USER_LOGIN\"\r\n\r\n\x00\xff--x-\r\n\r\n" +
		"--x \r\nContent-Disposition: form-data; name=USER_LOGIN\r\n\r\na@b.c\r\n--x--\r\nepilogue",
	"--x\nContent-Disposition: form-data; name='login'\n\na\n--x\ncontent-disposition: form-data;\n name=\"api_key\"\n\nk\n" +
		"--x\nContent-Disposition: form-data; name=\"type\"\n\njson\n--x--",
	"--x\r\nContent-Disposition: form-data; name=\"USER_LOGIN[]\"\r\n\r\nx\r\n--x--\r\n",
	"--x\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\nx\r\n--x--\r\n--x\r\nContent-Disposition: form-data; name=\"USER_HASH\"\r\n\r\nk\r\n",
}

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
	for _, s := range fuzzMultiparts {
		for _, sel := range []uint8{0, 1, 2, 0x80 + 30, 0x80 + 61, 0x80 + 90, 0xff} {
			f.Add([]byte(s), uint8(5), sel)
		}
	}
	f.Fuzz(func(t *testing.T, body []byte, ctSel, pathSel uint8) {
		ct := fuzzTypes[int(ctSel)%len(fuzzTypes)]
		p := fuzzPaths[int(pathSel)%len(fuzzPaths)]
		unsorted, authPHP := p == fuzzPaths[1], p == fuzzPaths[2]
		multipart := ct == fuzzTypes[5]
		max := int64(1 << 20)
		if multipart && pathSel >= 0x80 {
			max = int64(pathSel-0x80) + 1 // the body streams on past max
		}
		in := string(body)
		r := &http.Request{Method: "POST", URL: &url.URL{Path: p}, RequestURI: p, Header: http.Header{},
			Body: io.NopCloser(strings.NewReader(in)), ContentLength: int64(len(in))}
		if ct != "" {
			r.Header.Set("Content-Type", ct)
		}
		orig := r.Body
		found, err := Strip(r, Options{MaxBody: max})
		if err != nil {
			if max < 1<<20 {
				mustBeError(t, err, 400, 413)
			} else {
				mustBeError(t, err, 400)
			}
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
		if multipart {
			b, rerr := io.ReadAll(r.Body)
			checkMultipart(t, in, string(b), rerr, found, unsorted)
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
		checkPairs(t, in, out, oracleSplit(in), unsorted, ct != fuzzTypes[0], found)
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

// checkMultipart checks a multipart body: the oracle finds no credential
// part in what was passed on, it finds the credentials Strip reported,
// the body changed only where Strip found a credential, and, where the
// oracle and the RFC agree on the body's parts, every other part is kept as
// it was. A body that streamed on past MaxBody may be stopped (rerr) at a
// credential part.
func checkMultipart(t *testing.T, in, out string, rerr error, found Found, unsorted bool) {
	t.Helper()
	isCred := func(p oracleMPPart) bool { return !p.file && oracleIsCred(p.name, unsorted) }
	left, _ := oracleMultipart(out)
	for _, p := range left {
		if isCred(p) && !p.odd {
			t.Fatalf("credential part %q passed on in %q (from %q)", p.name, out, in)
		}
	}
	if rerr != nil {
		mustBeError(t, rerr, 400, 413)
		return
	}
	if out != in && found.Kind != Key {
		t.Fatalf("%q became %q, but Strip found %v", in, out, found.Kind)
	}
	parts, complete := oracleMultipart(in)
	creds := 0
	for _, p := range parts {
		if !isCred(p) || p.odd {
			continue
		}
		creds++
		if p.array || checkValue(pUserLogin, p.content) != nil {
			continue // Strip would refuse it; it did not, so it read the part apart
		}
		want := found.Key
		if oracleIsLogin(p.name) {
			want = found.Login
		}
		if found.Kind != Key || p.content != want {
			t.Fatalf("%s = %q by the oracle, Strip found %v %q (in %q)", p.name, p.content, found.Kind, want, in)
		}
	}
	if !complete || oracleMPDelimiters(in) != len(parts)+1 {
		return // the oracle and Strip may read the parts apart
	}
	odd := false
	var kept []oracleMPPart
	for _, p := range parts {
		odd = odd || p.odd
		if !isCred(p) {
			kept = append(kept, p)
		}
	}
	if creds == 0 && !odd && out != in {
		t.Fatalf("no credential part, but %q became %q", in, out)
	}
	if odd {
		return
	}
	if len(left) != len(kept) {
		t.Fatalf("%q left %q: %d parts, want %d", in, out, len(left), len(kept))
	}
	for i := range left {
		if left[i] != kept[i] {
			t.Fatalf("%q left %q: part %d is %+v, want %+v", in, out, i, left[i], kept[i])
		}
	}
}
