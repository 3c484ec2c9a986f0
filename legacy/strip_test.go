package legacy

import (
	"bytes"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"testing"
)

// req describes a request for a table test.
type req struct {
	method  string
	target  string // path and query, as sent
	ct      string // Content-Type; "" for none
	body    string
	chunked bool // no Content-Length, Transfer-Encoding: chunked
	cookies []string
}

func (q req) build(t testing.TB) *http.Request {
	t.Helper()
	m := q.method
	if m == "" {
		m = http.MethodGet
		if q.body != "" {
			m = http.MethodPost
		}
	}
	var body io.Reader
	if q.body != "" {
		body = strings.NewReader(q.body)
	}
	r := httptest.NewRequest(m, "http://acme.amocrm.ru"+q.target, body)
	r.RequestURI = q.target
	if q.ct != "" {
		r.Header.Set("Content-Type", q.ct)
	}
	if q.body != "" {
		r.Header.Set("Content-Length", strconv.Itoa(len(q.body)))
	}
	if q.chunked {
		r.ContentLength = -1
		r.TransferEncoding = []string{"chunked"}
		r.Header.Del("Content-Length")
	}
	for _, c := range q.cookies {
		r.Header.Add("Cookie", c)
	}
	return r
}

// want is what Strip must find and leave.
type want struct {
	kind    Kind
	login   string
	key     string
	sid     string
	authPHP bool
	format  Format
	query   string   // RawQuery left; "=" means unchanged
	body    string   // body left; "=" means unchanged
	cookies []string // Cookie lines left; nil means unchanged
	status  int      // error status; 0: success
}

const same = "="

func TestStripShapes(t *testing.T) {
	const hash = "0123456789abcdef0123456789abcdef01234567"
	tests := []struct {
		name string
		req  req
		want want
	}{
		// (a) query string on any path
		{"query", req{target: "/private/api/v2/json/leads/list?USER_LOGIN=a%40b.c&USER_HASH=" + hash + "&limit_rows=5"},
			want{kind: Key, login: "a@b.c", key: hash, query: "limit_rows=5", body: same}},
		{"query keeps order and encoding", req{target: "/api/v2/leads?a=1&USER_LOGIN=x&b=%2F%20+%zz&USER_HASH=k&c&d=%41"},
			want{kind: Key, login: "x", key: "k", query: "a=1&b=%2F%20+%zz&c&d=%41", body: same}},
		{"query only creds", req{target: "/api/v2/account?USER_HASH=k&USER_LOGIN=x"},
			want{kind: Key, login: "x", key: "k", query: "", body: same}},
		{"query empty pairs kept", req{target: "/x?&USER_LOGIN=x&&USER_HASH=k&"},
			want{kind: Key, login: "x", key: "k", query: "&&", body: same}},
		{"query plus in value", req{target: "/x?USER_LOGIN=a+b%2Bc&USER_HASH=k"},
			want{kind: Key, login: "a b+c", key: "k", query: "", body: same}},
		{"query POST with JSON body untouched", req{target: "/private/api/v2/json/leads/set?USER_LOGIN=x&USER_HASH=k", ct: "application/json", body: `{"request":{"leads":{"add":[{"name":"n"}]}}}`},
			want{kind: Key, login: "x", key: "k", query: "", body: same}},

		// PHP name decoding and mangling
		{"name percent-encoded", req{target: "/x?USER%5FLOGIN=x&%55SER_HASH=k&n=1"}, want{kind: Key, login: "x", key: "k", query: "n=1", body: same}},
		{"name dot", req{target: "/x?USER.LOGIN=x&USER.HASH=k"}, want{kind: Key, login: "x", key: "k", query: "", body: same}},
		{"name space plus", req{target: "/x?USER+LOGIN=x&USER%20HASH=k"}, want{kind: Key, login: "x", key: "k", query: "", body: same}},
		{"name leading spaces", req{target: "/x?++USER_LOGIN=x&%20USER_HASH=k"}, want{kind: Key, login: "x", key: "k", query: "", body: same}},
		{"name unmatched bracket", req{target: "/x?USER[LOGIN=x&USER%5BHASH=k"}, want{kind: Key, login: "x", key: "k", query: "", body: same}},
		{"name cut at NUL", req{target: "/x?USER_LOGIN%00junk=x&USER_HASH%00=k"}, want{kind: Key, login: "x", key: "k", query: "", body: same}},
		{"not creds: case, affixes", req{target: "/x?user_login=x&User_Hash=k&USER_LOGIN_=1&XUSER_HASH=2&USER_LOGIN%3D=3&[USER_LOGIN]=4&USER__LOGIN=5&USER_LOGIN[=6"},
			want{query: same, body: same}},
		{"not creds: login and api_key off unsorted", req{target: "/api/v4/leads?login=x&api_key=k"},
			want{query: same, body: same}},
		{"no query", req{target: "/api/v4/leads"}, want{query: same, body: same}},

		// (e) unsorted
		{"unsorted login api_key", req{target: "/api/unsorted/add/?login=a%40b.c&api_key=k&api_type=x"},
			want{kind: Key, login: "a@b.c", key: "k", query: "api_type=x", body: same}},
		{"unsorted without trailing slash", req{target: "/api/unsorted?login=a&api_key=k"},
			want{kind: Key, login: "a", key: "k", query: "", body: same}},
		{"unsorted mixed names agree", req{target: "/api/unsorted/list/?login=a&USER_HASH=k&USER_LOGIN=a&api_key=k"},
			want{kind: Key, login: "a", key: "k", query: "", body: same}},
		{"unsorted form", req{target: "/api/unsorted/add/?x=1", ct: "application/x-www-form-urlencoded", body: "login=a&api_key=k&request%5Bunsorted%5D=1"},
			want{kind: Key, login: "a", key: "k", query: same, body: "request%5Bunsorted%5D=1"}},
		{"unsorted JSON login is not a credential", req{target: "/api/unsorted/add/", ct: "application/json", body: `{"login":"a","api_key":"k"}`},
			want{query: same, body: same}},

		// duplicates that agree
		{"duplicates agree", req{target: "/x?USER_LOGIN=a%40b&USER_HASH=k&USER_LOGIN=a@b&y=2&USER.HASH=%6B"},
			want{kind: Key, login: "a@b", key: "k", query: "y=2", body: same}},

		// (b) form body
		{"form body", req{target: "/api/v2/leads", ct: "application/x-www-form-urlencoded", body: "USER_LOGIN=a%40b.c&USER_HASH=k&add%5B0%5D%5Bname%5D=Deal"},
			want{kind: Key, login: "a@b.c", key: "k", query: same, body: "add%5B0%5D%5Bname%5D=Deal"}},
		{"form body middle", req{target: "/api/v2/leads", ct: "application/x-www-form-urlencoded; charset=UTF-8", body: "a=1&USER_LOGIN=x&b=2&USER_HASH=k&c=3"},
			want{kind: Key, login: "x", key: "k", query: same, body: "a=1&b=2&c=3"}},
		{"form body only creds", req{target: "/api/v2/leads", ct: "application/x-www-form-urlencoded", body: "USER_LOGIN=x&USER_HASH=k"},
			want{kind: Key, login: "x", key: "k", query: same, body: ""}},
		{"form body without creds", req{target: "/api/v2/leads", ct: "application/x-www-form-urlencoded", body: "a=1&b=%zz"},
			want{query: same, body: same}},
		{"form body chunked", req{target: "/api/v2/leads", ct: "application/x-www-form-urlencoded", body: "USER_LOGIN=x&USER_HASH=k&a=1", chunked: true},
			want{kind: Key, login: "x", key: "k", query: same, body: "a=1"}},
		{"untyped form body", req{target: "/api/v2/leads", body: "USER_LOGIN=x&USER_HASH=k&a=1"},
			want{kind: Key, login: "x", key: "k", query: same, body: "a=1"}},
		{"query and body agree", req{target: "/api/v2/leads?USER_LOGIN=x&q=1", ct: "application/x-www-form-urlencoded", body: "USER_HASH=k&USER_LOGIN=x&a=1"},
			want{kind: Key, login: "x", key: "k", query: "q=1", body: "a=1"}},
		{"multipart on any path", req{target: "/api/v2/leads", ct: "multipart/form-data; boundary=X", body: "--X\r\nContent-Disposition: form-data; name=\"USER_LOGIN\"\r\n\r\nx\r\n" +
			"--X\r\nContent-Disposition: form-data; name=\"USER_HASH\"\r\n\r\nk\r\n--X\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\n1\r\n--X--\r\n"},
			want{kind: Key, login: "x", key: "k", query: same, body: "--X\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\n1\r\n--X--\r\n"}},
		{"GET body ignored without length", req{method: "GET", target: "/x?a=1"}, want{query: same, body: same}},

		// (c) JSON body
		{"JSON body", req{target: "/api/v2/leads", ct: "application/json", body: `{"USER_LOGIN":"a@b.c","request":{"x":[1,2.5e3,{"y":null}]},"USER_HASH":"k"}`},
			want{kind: Key, login: "a@b.c", key: "k", query: same, body: `{"request":{"x":[1,2.5e3,{"y":null}]}}`}},
		{"JSON body pretty", req{target: "/api/v2/leads", ct: "application/json", body: "{\n  \"a\": 1.0,\n  \"USER_LOGIN\": \"x\",\n  \"b\": -0,\n  \"USER_HASH\" : \"k\"\n}\n"},
			want{kind: Key, login: "x", key: "k", query: same, body: "{\n  \"a\": 1.0,\n  \"b\": -0\n}\n"}},
		{"JSON body first and last", req{target: "/x", ct: "application/json", body: ` { "USER_LOGIN":"x" , "a" : true , "USER_HASH":"k" } `},
			want{kind: Key, login: "x", key: "k", query: same, body: ` { "a" : true } `}},
		{"JSON body only creds", req{target: "/x", ct: "application/json", body: `{"USER_LOGIN":"x","USER_HASH":"k"}`},
			want{kind: Key, login: "x", key: "k", query: same, body: `{}`}},
		{"JSON body text/plain", req{target: "/x", ct: "text/plain", body: `{"USER_LOGIN":"x","USER_HASH":"k","a":"b"}`},
			want{kind: Key, login: "x", key: "k", query: same, body: `{"a":"b"}`}},
		{"JSON body no type", req{target: "/x", body: "\r\n\t {\"USER_LOGIN\":\"x\",\"USER_HASH\":\"k\",\"a\":\"b\"}"},
			want{kind: Key, login: "x", key: "k", query: same, body: "\r\n\t {\"a\":\"b\"}"}},
		{"JSON body form type", req{target: "/x", ct: "application/x-www-form-urlencoded", body: `{"USER_LOGIN":"x","USER_HASH":"k","a":"b"}`},
			want{kind: Key, login: "x", key: "k", query: same, body: `{"a":"b"}`}},
		{"JSON body escapes", req{target: "/x", ct: "application/json", body: `{"\u0055SER_LOGIN":"a\u0040b\/c","USER_HASH":"\u00e9\ud83d\ude00","k":"\u0055SER_LOGIN"}`},
			want{kind: Key, login: "a@b/c", key: "é😀", query: same, body: `{"k":"\u0055SER_LOGIN"}`}},
		{"JSON body duplicates agree", req{target: "/x", ct: "application/json", body: `{"USER_LOGIN":"x","USER_LOGIN":"x","USER_HASH":"k"}`},
			want{kind: Key, login: "x", key: "k", query: same, body: `{}`}},
		{"JSON body nested creds are data", req{target: "/x", ct: "application/json", body: `{"request":{"USER_LOGIN":"x","USER_HASH":"k"}}`},
			want{query: same, body: same}},
		{"JSON body names exact", req{target: "/x", ct: "application/json", body: `{"USER.LOGIN":"x","user_hash":"k","USER_LOGIN ":"y"}`},
			want{query: same, body: same}},
		{"JSON array body", req{target: "/x", ct: "application/json", body: `[{"USER_LOGIN":"x","USER_HASH":"k"}]`},
			want{query: same, body: same}},
		{"JSON type, broken non-object", req{target: "/x", ct: "application/json", body: `USER_LOGIN=x&USER_HASH=k`},
			want{query: same, body: same}},
		{"JSON body without creds", req{target: "/x", ct: "application/json", body: `{"a" :1, "b":[true,false,null,"\""]}`},
			want{query: same, body: same}},
		{"JSON vendor type", req{target: "/x", ct: "application/hal+json", body: `{"USER_LOGIN":"x","USER_HASH":"k"}`},
			want{kind: Key, login: "x", key: "k", query: same, body: `{}`}},

		// (d) auth.php
		{"auth.php form", req{target: "/private/api/auth.php?type=json", ct: "application/x-www-form-urlencoded", body: "USER_LOGIN=x&USER_HASH=k"},
			want{kind: Key, login: "x", key: "k", authPHP: true, format: JSON, query: same, body: ""}},
		{"auth.php JSON", req{target: "/private/api/auth.php?type=json", ct: "application/json", body: `{"USER_LOGIN":"x","USER_HASH":"k"}`},
			want{kind: Key, login: "x", key: "k", authPHP: true, format: JSON, query: same, body: "{}"}},
		{"auth.php GET", req{target: "/private/api/auth.php?USER_LOGIN=x&USER_HASH=k&type=json"},
			want{kind: Key, login: "x", key: "k", authPHP: true, format: JSON, query: "type=json", body: same}},
		{"auth.php XML", req{target: "/private/api/auth.php?USER_LOGIN=x&USER_HASH=k"},
			want{kind: Key, login: "x", key: "k", authPHP: true, format: XML, query: "", body: same}},
		{"auth.php type in form body", req{target: "/private/api/auth.php", ct: "application/x-www-form-urlencoded", body: "USER_LOGIN=x&type=JSON&USER_HASH=k"},
			want{kind: Key, login: "x", key: "k", authPHP: true, format: JSON, query: same, body: "type=JSON"}},
		{"auth.php type in JSON body", req{target: "/private/api/auth.php", ct: "application/json", body: `{"type":"json","USER_LOGIN":"x","USER_HASH":"k"}`},
			want{kind: Key, login: "x", key: "k", authPHP: true, format: JSON, query: same, body: `{"type":"json"}`}},
		{"auth.php any type", req{target: "/private/api/auth.php?type=xml", ct: "application/octet-stream", body: `{"USER_LOGIN":"x","USER_HASH":"k"}`},
			want{kind: Key, login: "x", key: "k", authPHP: true, format: XML, query: same, body: "{}"}},
		{"auth.php multipart", req{target: "/private/api/auth.php?type=json", ct: "multipart/form-data; boundary=XyZ",
			body: "--XyZ\r\nContent-Disposition: form-data; name=\"USER_LOGIN\"\r\n\r\na@b.c\r\n" +
				"--XyZ\r\nContent-Disposition: form-data; name=\"USER_HASH\"\r\n\r\nk\r\n" +
				"--XyZ\r\nContent-Disposition: form-data; name=\"f\"; filename=\"USER_HASH\"\r\n\r\nfile\r\n--XyZ--\r\n"},
			want{kind: Key, login: "a@b.c", key: "k", authPHP: true, format: JSON, query: same,
				body: "--XyZ\r\nContent-Disposition: form-data; name=\"f\"; filename=\"USER_HASH\"\r\n\r\nfile\r\n--XyZ--\r\n"}},
		{"auth.php multipart without creds", req{target: "/private/api/auth.php", ct: "multipart/form-data; boundary=XyZ",
			body: "--XyZ\r\nContent-Disposition: form-data; name=\"type\"\r\n\r\njson\r\n--XyZ--\r\n"},
			want{authPHP: true, format: JSON, query: same, body: same}},
		{"auth.php path cleaned", req{target: "//private/api/./auth.php?USER_LOGIN=x&USER_HASH=k"},
			want{kind: Key, login: "x", key: "k", authPHP: true, query: "", body: same}},
		{"auth.php no creds", req{target: "/private/api/auth.php?type=json"},
			want{authPHP: true, format: JSON, query: same, body: same}},
		{"type elsewhere is data", req{target: "/api/v2/leads?type=json&USER_LOGIN=x&USER_HASH=k"},
			want{kind: Key, login: "x", key: "k", query: "type=json", body: same}},

		// the session cookie
		{"cookie alone", req{target: "/api/v2/leads", cookies: []string{"session_id=abc"}},
			want{kind: Session, sid: "abc", query: same, body: same, cookies: []string{}}},
		{"cookie among others", req{target: "/api/v2/leads", cookies: []string{"a=1; session_id=abc; b=2"}},
			want{kind: Session, sid: "abc", query: same, body: same, cookies: []string{"a=1; b=2"}}},
		{"cookie first", req{target: "/x", cookies: []string{"session_id=abc;b=2; c=3"}},
			want{kind: Session, sid: "abc", query: same, body: same, cookies: []string{"b=2; c=3"}}},
		{"cookie last", req{target: "/x", cookies: []string{"a=1; session_id=\"abc\""}},
			want{kind: Session, sid: "abc", query: same, body: same, cookies: []string{"a=1"}}},
		{"cookie several lines", req{target: "/x", cookies: []string{"a=1", "session_id=abc", "b=2; session_id=abc"}},
			want{kind: Session, sid: "abc", query: same, body: same, cookies: []string{"a=1", "b=2"}}},
		{"cookie raw set-cookie lines", req{target: "/x", cookies: []string{"session_id=abc; path=/; secure; HttpOnly, other=1; path=/"}},
			want{kind: Session, sid: "abc", query: same, body: same, cookies: []string{"HttpOnly, other=1; path=/"}}}, // PHP reads "HttpOnly,_other"
		{"cookie raw set-cookie with expires", req{target: "/x", cookies: []string{"other=1; Path=/, session_id=abc; Expires=Wed, 21 Oct 2037 07:28:00 GMT; Max-Age=900; SameSite=Lax, x=2"}},
			want{kind: Session, sid: "abc", query: same, body: same, cookies: []string{"other=1; SameSite=Lax, x=2"}}}, // PHP read Path="/, session_id=abc"
		{"cookie after a comma in a repeated name", req{target: "/x", cookies: []string{"session%5Fid=3", "session%5Fid=3, \tsession_id=abc; path=/; secure; HttpOnly"}},
			want{kind: Session, sid: "abc", query: same, body: same, cookies: []string{"session%5Fid=3", "path=/; secure; HttpOnly"}}}, // PHP ignores the repeated session%5Fid, reads path, secure, HttpOnly (TestPHPOracle seed 1796076184489013553)
		{"cookie name exact", req{target: "/x", cookies: []string{"xsession_id=1; session_idx=2; Session_ID=3"}},
			want{query: same, body: same}},
		{"cookie emptied", req{target: "/x", cookies: []string{"a=1; session_id="}},
			want{query: same, body: same, cookies: []string{"a=1"}}},
		{"key and session", req{target: "/x?USER_LOGIN=x&USER_HASH=k", cookies: []string{"session_id=abc"}},
			want{kind: Key, login: "x", key: "k", sid: "abc", query: "", body: same, cookies: []string{}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := tt.req.build(t)
			check(t, tt.req, r, Options{}, tt.want)
		})
	}
}

// check runs Strip on r (built from q) and compares with w.
func check(t *testing.T, q req, r *http.Request, o Options, w want) {
	t.Helper()
	origBody := r.Body
	origQuery, origURI := r.URL.RawQuery, r.RequestURI
	origCookies := append([]string(nil), r.Header["Cookie"]...)
	origCL := r.ContentLength
	f, err := Strip(r, o)
	if w.status != 0 {
		var le *Error
		if !errors.As(err, &le) || le.Status != w.status {
			t.Fatalf("Strip: err = %v, want status %d", err, w.status)
		}
		if f.Kind != None || f.Login != "" || f.Key != "" || f.SessionID != "" {
			t.Errorf("Found on error = %+v, want no credentials", f)
		}
		if f.AuthPHP != w.authPHP || f.Format != w.format {
			t.Errorf("Found on error: AuthPHP %v Format %v, want %v %v", f.AuthPHP, f.Format, w.authPHP, w.format)
		}
		// r is left as it was.
		if r.URL.RawQuery != origQuery || r.RequestURI != origURI {
			t.Errorf("query changed on error: %q %q", r.URL.RawQuery, r.RequestURI)
		}
		if got := r.Header["Cookie"]; strings.Join(got, "\n") != strings.Join(origCookies, "\n") {
			t.Errorf("cookies changed on error: %q", got)
		}
		if q.body != "" && w.status != http.StatusRequestEntityTooLarge || r.Body != origBody {
			if got := readAll(t, r); got != q.body {
				t.Errorf("body changed on error: %q", got)
			}
		}
		return
	}
	if err != nil {
		t.Fatalf("Strip: %v", err)
	}
	if f.Kind != w.kind || f.Login != w.login || f.Key != w.key || f.SessionID != w.sid || f.AuthPHP != w.authPHP || f.Format != w.format {
		t.Errorf("Found = %+v, want kind %v login %q key %q sid %q authPHP %v format %v",
			f, w.kind, w.login, w.key, w.sid, w.authPHP, w.format)
	}
	wantQ := w.query
	if wantQ == same {
		wantQ = origQuery
	}
	if r.URL.RawQuery != wantQ {
		t.Errorf("RawQuery = %q, want %q", r.URL.RawQuery, wantQ)
	}
	wantURI := r.URL.Path
	if i := strings.IndexByte(origURI, '?'); i >= 0 {
		wantURI = origURI[:i]
	}
	if wantQ != "" {
		wantURI += "?" + wantQ
	}
	if w.query == same {
		wantURI = origURI
	}
	if r.RequestURI != wantURI {
		t.Errorf("RequestURI = %q, want %q", r.RequestURI, wantURI)
	}
	wantC := w.cookies
	if wantC == nil {
		wantC = origCookies
	}
	if got := r.Header["Cookie"]; strings.Join(got, "\n") != strings.Join(wantC, "\n") || len(got) != len(wantC) {
		t.Errorf("Cookie = %q, want %q", got, wantC)
	}
	if len(wantC) == 0 {
		if _, ok := r.Header["Cookie"]; ok {
			t.Errorf("empty Cookie header left")
		}
	}
	switch {
	case w.body == same && r.Body == origBody:
		// not read
		if r.ContentLength != origCL {
			t.Errorf("ContentLength changed on an unread body")
		}
	case w.body == same:
		if got := readAll(t, r); got != q.body {
			t.Errorf("body = %q, want unchanged %q", got, q.body)
		}
		if r.ContentLength != origCL {
			t.Errorf("ContentLength = %d, want unchanged %d", r.ContentLength, origCL)
		}
	default:
		got := readAll(t, r)
		if got != w.body {
			t.Errorf("body = %q, want %q", got, w.body)
		}
		if r.ContentLength != int64(len(w.body)) || r.Header.Get("Content-Length") != strconv.Itoa(len(w.body)) {
			t.Errorf("ContentLength = %d / %q, want %d", r.ContentLength, r.Header.Get("Content-Length"), len(w.body))
		}
		if len(r.TransferEncoding) != 0 || r.Header.Get("Transfer-Encoding") != "" {
			t.Errorf("Transfer-Encoding left: %q", r.TransferEncoding)
		}
		if r.GetBody == nil {
			t.Fatalf("GetBody not set")
		}
		rc, _ := r.GetBody()
		b, _ := io.ReadAll(rc)
		if string(b) != w.body {
			t.Errorf("GetBody = %q, want %q", b, w.body)
		}
	}
}

func readAll(t testing.TB, r *http.Request) string {
	t.Helper()
	b, err := io.ReadAll(r.Body)
	if err != nil {
		t.Fatalf("reading body: %v", err)
	}
	if err := r.Body.Close(); err != nil {
		t.Fatalf("closing body: %v", err)
	}
	return string(b)
}

func TestStripMalformed(t *testing.T) {
	long := strings.Repeat("a", 1025)
	many := strings.Repeat("a=1&", 10000) + "USER_LOGIN=x&USER_HASH=k"
	tests := []struct {
		name    string
		req     req
		status  int
		authPHP bool
		format  Format
	}{
		{"login without hash", req{target: "/x?USER_LOGIN=x"}, 400, false, XML},
		{"hash without login", req{target: "/x?USER_HASH=k"}, 400, false, XML},
		{"api_key without login", req{target: "/api/unsorted/add/?api_key=k"}, 400, false, XML},
		{"login in query, nothing else", req{target: "/api/unsorted/add/?login=x"}, 400, false, XML},
		{"conflicting login", req{target: "/x?USER_LOGIN=x&USER_HASH=k&USER_LOGIN=y"}, 400, false, XML},
		{"conflicting mangled hash", req{target: "/x?USER_LOGIN=x&USER_HASH=k&USER.HASH=j"}, 400, false, XML},
		{"conflicting query and body", req{target: "/x?USER_LOGIN=x&USER_HASH=k", ct: "application/x-www-form-urlencoded", body: "USER_HASH=j"}, 400, false, XML},
		{"conflicting query and JSON", req{target: "/x?USER_LOGIN=x&USER_HASH=k", ct: "application/json", body: `{"USER_LOGIN":"y"}`}, 400, false, XML},
		{"conflicting JSON duplicates", req{target: "/x", ct: "application/json", body: `{"USER_LOGIN":"x","USER_HASH":"k","USER_LOGIN":"y"}`}, 400, false, XML},
		{"conflicting unsorted names", req{target: "/api/unsorted/add/?login=x&api_key=k&USER_LOGIN=y"}, 400, false, XML},
		{"array login", req{target: "/x?USER_LOGIN[]=x&USER_HASH=k"}, 400, false, XML},
		{"array hash keyed", req{target: "/x?USER_LOGIN=x&USER_HASH%5Ba%5D=k"}, 400, false, XML},
		{"broken escape in hash", req{target: "/x?USER_LOGIN=x&USER_HASH=k%zz"}, 400, false, XML},
		{"truncated escape in login", req{target: "/x?USER_LOGIN=x%4&USER_HASH=k"}, 400, false, XML},
		{"control character", req{target: "/x?USER_LOGIN=x%0A&USER_HASH=k"}, 400, false, XML},
		{"DEL character", req{target: "/x?USER_LOGIN=x&USER_HASH=k%7F"}, 400, false, XML},
		{"empty login", req{target: "/x?USER_LOGIN=&USER_HASH=k"}, 400, false, XML},
		{"bare login", req{target: "/x?USER_LOGIN&USER_HASH=k"}, 400, false, XML},
		{"too long", req{target: "/x?USER_LOGIN=x&USER_HASH=" + long}, 400, false, XML},
		{"too many parameters", req{target: "/x?" + many}, 400, false, XML},
		{"too many form parameters", req{target: "/x", ct: "application/x-www-form-urlencoded", body: many}, 400, false, XML},
		{"invalid JSON", req{target: "/x", ct: "application/json", body: `{"USER_LOGIN":"x","USER_HASH":"k",}`}, 400, false, XML},
		{"invalid JSON no creds", req{target: "/x", ct: "text/plain", body: `{not json}`}, 400, false, XML},
		{"JSON trailing data", req{target: "/x", ct: "application/json", body: `{"a":1}{"USER_LOGIN":"x"}`}, 400, false, XML},
		{"JSON unterminated", req{target: "/x", ct: "application/json", body: `{"a":[1,2`}, 400, false, XML},
		{"JSON bad number", req{target: "/x", ct: "application/json", body: `{"a":01}`}, 400, false, XML},
		{"JSON raw control in string", req{target: "/x", ct: "application/json", body: "{\"a\":\"\x01\"}"}, 400, false, XML},
		{"JSON too deep", req{target: "/x", ct: "application/json", body: `{"a":` + strings.Repeat("[", 10001) + strings.Repeat("]", 10001) + "}"}, 400, false, XML},
		{"JSON number login", req{target: "/x", ct: "application/json", body: `{"USER_LOGIN":12,"USER_HASH":"k"}`}, 400, false, XML},
		{"JSON null hash", req{target: "/x", ct: "application/json", body: `{"USER_LOGIN":"x","USER_HASH":null}`}, 400, false, XML},
		{"JSON lone surrogate", req{target: "/x", ct: "application/json", body: `{"USER_LOGIN":"x\ud800","USER_HASH":"k"}`}, 400, false, XML},
		{"JSON control escape", req{target: "/x", ct: "application/json", body: `{"USER_LOGIN":"x\n","USER_HASH":"k"}`}, 400, false, XML},
		{"JSON and form at once", req{target: "/x", ct: "application/x-www-form-urlencoded", body: `{"a":"&USER_LOGIN=x&USER_HASH=k&"}`}, 400, false, XML},
		{"conflicting sessions", req{target: "/x", cookies: []string{"session_id=a", "session_id=b"}}, 400, false, XML},
		{"session control chars", req{target: "/x", cookies: []string{"session_id=a\x01b"}}, 400, false, XML},
		{"auth.php multipart broken", req{target: "/private/api/auth.php", ct: "multipart/form-data; boundary=XyZ",
			body: "--XyZ\r\nContent-Disposition: form-data; name=\"USER_LOGIN\"\r\n\r\nx"}, 400, true, XML},
		{"auth.php multipart array", req{target: "/private/api/auth.php", ct: "multipart/form-data; boundary=XyZ",
			body: "--XyZ\r\nContent-Disposition: form-data; name=\"USER_LOGIN[]\"\r\n\r\nx\r\n--XyZ--\r\n"}, 400, true, XML},
		{"auth.php half credential JSON format", req{target: "/private/api/auth.php?type=json&USER_LOGIN=x"}, 400, true, JSON},
		{"auth.php bad body keeps format", req{target: "/private/api/auth.php?type=json", ct: "application/json", body: `{"USER_LOGIN":`}, 400, true, JSON},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := tt.req.build(t)
			check(t, tt.req, r, Options{}, want{status: tt.status, authPHP: tt.authPHP, format: tt.format})
		})
	}
}

func TestStripTooLarge(t *testing.T) {
	body := "USER_LOGIN=x&USER_HASH=k&" + strings.Repeat("a", 100)
	t.Run("content length over the limit: not read", func(t *testing.T) {
		q := req{target: "/x", ct: "application/x-www-form-urlencoded", body: body}
		r := q.build(t)
		orig := r.Body
		_, err := Strip(r, Options{MaxBody: 50})
		var le *Error
		if !errors.As(err, &le) || le.Status != 413 || le.Code != "413" {
			t.Fatalf("err = %v, want 413", err)
		}
		if r.Body != orig {
			t.Errorf("body replaced although not read")
		}
	})
	t.Run("chunked over the limit: given back whole", func(t *testing.T) {
		q := req{target: "/x", ct: "application/x-www-form-urlencoded", body: body, chunked: true}
		r := q.build(t)
		check(t, q, r, Options{MaxBody: 50}, want{status: 413})
		r = q.build(t)
		_, err := Strip(r, Options{MaxBody: 50})
		if err == nil {
			t.Fatal("no error")
		}
		if got := readAll(t, r); got != body {
			t.Errorf("body = %q, want original", got)
		}
	})
	t.Run("exactly the limit", func(t *testing.T) {
		q := req{target: "/x", ct: "application/x-www-form-urlencoded", body: body, chunked: true}
		r := q.build(t)
		check(t, q, r, Options{MaxBody: int64(len(body))}, want{kind: Key, login: "x", key: "k", query: same, body: strings.Repeat("a", 100)})
	})
	t.Run("max bytes reader upstream", func(t *testing.T) {
		q := req{target: "/x", ct: "application/x-www-form-urlencoded", body: body, chunked: true}
		r := q.build(t)
		r.Body = http.MaxBytesReader(httptest.NewRecorder(), r.Body, 10)
		_, err := Strip(r, Options{})
		var le *Error
		if !errors.As(err, &le) || le.Status != 413 {
			t.Fatalf("err = %v, want 413", err)
		}
	})
}

type failingReader struct{ n int }

func (f *failingReader) Read(p []byte) (int, error) {
	if f.n > 0 {
		f.n--
		p[0] = 'a'
		return 1, nil
	}
	return 0, errors.New("connection reset")
}

func TestStripBodyReadError(t *testing.T) {
	r := httptest.NewRequest("POST", "/x", io.NopCloser(&failingReader{n: 3}))
	r.Header.Set("Content-Type", "application/json")
	r.ContentLength = -1
	_, err := Strip(r, Options{})
	var le *Error
	if !errors.As(err, &le) || le.Status != 400 {
		t.Fatalf("err = %v, want 400", err)
	}
	if strings.Contains(err.Error(), "reset") {
		t.Errorf("error carries the reader's error: %v", err)
	}
}

func TestStripUntouchedBodyIdentity(t *testing.T) {
	// Requests without a body keep theirs, whatever the Content-Type.
	for _, m := range []string{"GET", "HEAD", "DELETE", "POST"} {
		for _, body := range []io.ReadCloser{nil, http.NoBody} {
			r := &http.Request{Method: m, URL: &url.URL{Path: "/x", RawQuery: "USER_LOGIN=x&USER_HASH=k"},
				Header: http.Header{"Content-Type": {"application/octet-stream"}}, Body: body}
			if f, err := Strip(r, Options{}); err != nil || f.Kind != Key {
				t.Fatalf("%s: %+v %v", m, f, err)
			}
			if r.Body != body {
				t.Errorf("%s %v: body replaced", m, body)
			}
		}
	}
	// GET with an unread body of unknown length: not peeked at.
	cc := &closeCounter{Reader: strings.NewReader(`{"USER_LOGIN":"y"}`)}
	r := &http.Request{Method: "GET", URL: &url.URL{Path: "/x"}, Header: http.Header{"Content-Type": {"image/png"}}, Body: cc}
	if f, err := Strip(r, Options{}); err != nil || f.Kind != None || r.Body != cc {
		t.Errorf("GET body: %+v %v, replaced %v", f, err, r.Body != cc)
	}
}

// TestStripSniffedBody: a body of another media type (a misspelled or a
// binary one) is peeked at; one that starts as a JSON object is read as
// JSON, any other streams on byte for byte.
func TestStripSniffedBody(t *testing.T) {
	const creds = `{"USER_LOGIN":"a@b.c","request":{"leads":{"add":[{"name":"x"}]}},"USER_HASH":"k"}`
	const left = `{"request":{"leads":{"add":[{"name":"x"}]}}}`
	ws := strings.Repeat(" \r\n\t", maxSniff/4)
	bin := "\x89PNG\r\n\x1a\n\x00\x00USER_LOGIN=x&USER_HASH=k"
	tests := []struct {
		name string
		req  req
		want want
	}{
		{"aplication/json", req{target: "/api/v2/leads", ct: "aplication/json", body: creds},
			want{kind: Key, login: "a@b.c", key: "k", query: same, body: left}},
		{"application/jsno", req{target: "/api/v2/leads", ct: "application/jsno; charset=utf-8", body: creds},
			want{kind: Key, login: "a@b.c", key: "k", query: same, body: left}},
		{"octet-stream", req{target: "/api/v2/leads", ct: "application/octet-stream", body: creds},
			want{kind: Key, login: "a@b.c", key: "k", query: same, body: left}},
		{"chunked", req{target: "/api/v2/leads", ct: "application/octet-stream", body: creds, chunked: true},
			want{kind: Key, login: "a@b.c", key: "k", query: same, body: left}},
		{"leading whitespace", req{target: "/x", ct: "application/jsno", body: ws[:maxSniff-1] + `{"USER_LOGIN":"x","USER_HASH":"k"}`},
			want{kind: Key, login: "x", key: "k", query: same, body: ws[:maxSniff-1] + `{}`}},
		{"whitespace past the peek", req{target: "/x", ct: "application/jsno", body: ws[:maxSniff] + `{"USER_LOGIN":"x","USER_HASH":"k"}`},
			want{query: same, body: same}},
		{"JSON object without credentials", req{target: "/x?USER_LOGIN=x&USER_HASH=k", ct: "application/jsno", body: `{"a":1}`},
			want{kind: Key, login: "x", key: "k", query: "", body: same}},
		{"not JSON: a form is data here", req{target: "/x", ct: "application/octet-stream", body: "USER_LOGIN=x&USER_HASH=k"},
			want{query: same, body: same}},
		{"JSON array", req{target: "/x", ct: "application/octet-stream", body: `[{"USER_LOGIN":"x","USER_HASH":"k"}]`},
			want{query: same, body: same}},
		{"binary", req{target: "/x", ct: "image/png", body: bin},
			want{query: same, body: same}},
		{"whitespace only", req{target: "/x", ct: "image/png", body: "  \r\n"},
			want{query: same, body: same}},
		{"multipart without boundary", req{target: "/x", ct: "multipart/form-data", body: `{"USER_LOGIN":"x","USER_HASH":"k"}`},
			want{kind: Key, login: "x", key: "k", query: same, body: `{}`}},
		{"invalid JSON", req{target: "/x", ct: "aplication/json", body: `{"USER_LOGIN":"x","USER_HASH":"k",}`},
			want{status: 400}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			check(t, tt.req, tt.req.build(t), Options{}, tt.want)
		})
	}
	t.Run("over max_body", func(t *testing.T) {
		q := req{target: "/x", ct: "application/jsno", body: creds}
		check(t, q, q.build(t), Options{MaxBody: 20}, want{status: 413})
		q.chunked = true
		check(t, q, q.build(t), Options{MaxBody: 20}, want{status: 413})
		// Not JSON: streams on, however large.
		q = req{target: "/x", ct: "application/octet-stream", body: bin + strings.Repeat("x", 100), chunked: true}
		check(t, q, q.build(t), Options{MaxBody: 20}, want{query: same, body: same})
	})
	t.Run("close reaches the original", func(t *testing.T) {
		cc := &closeCounter{Reader: strings.NewReader(bin)}
		r := httptest.NewRequest("POST", "/x", nil)
		r.Body, r.ContentLength = cc, int64(len(bin))
		r.Header.Set("Content-Type", "image/png")
		if _, err := Strip(r, Options{}); err != nil {
			t.Fatal(err)
		}
		if got := readAll(t, r); got != bin || cc.closed != 1 {
			t.Errorf("body %q, original closed %d times", got, cc.closed)
		}
	})
	t.Run("read error while peeking", func(t *testing.T) {
		r := httptest.NewRequest("POST", "/x", io.NopCloser(&failingReader{n: 3}))
		r.Header.Set("Content-Type", "image/png")
		r.ContentLength = -1
		if f, err := Strip(r, Options{}); err != nil || f.Kind != None {
			t.Fatalf("%+v %v", f, err)
		}
		b, err := io.ReadAll(r.Body)
		if string(b) != "aaa" || err == nil {
			t.Errorf("body %q, error %v: want the bytes peeked, then the error", b, err)
		}
	})
}

func TestStripForms(t *testing.T) {
	r := httptest.NewRequest("POST", "/x?USER_LOGIN=x&a=1", strings.NewReader("USER.HASH=k&b=2"))
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	// Something parsed the query before Strip (the body is left alone).
	r.Form = url.Values{"USER_LOGIN": {"x"}, "a": {"1"}, "USER.HASH": {"k"}}
	r.PostForm = url.Values{"USER.HASH": {"k"}, "b": {"2"}}
	f, err := Strip(r, Options{})
	if err != nil || f.Kind != Key {
		t.Fatalf("%+v %v", f, err)
	}
	if len(r.Form) != 1 || r.Form.Get("a") != "1" {
		t.Errorf("Form = %v", r.Form)
	}
	if len(r.PostForm) != 1 || r.PostForm.Get("b") != "2" {
		t.Errorf("PostForm = %v", r.PostForm)
	}
}

func TestStripSessionCookieName(t *testing.T) {
	r := httptest.NewRequest("GET", "/x", nil)
	r.Header.Set("Cookie", "session_id=a; amo_sess=b")
	f, err := Strip(r, Options{SessionCookie: "amo_sess"})
	if err != nil || f.Kind != Session || f.SessionID != "b" {
		t.Fatalf("%+v %v", f, err)
	}
	if got := r.Header.Get("Cookie"); got != "session_id=a" {
		t.Errorf("Cookie = %q", got)
	}
}

func TestStripNoCredentialsUnchanged(t *testing.T) {
	r := httptest.NewRequest("GET", "/api/v4/leads?with=contacts&page=2&filter%5Bname%5D=x%zz", nil)
	r.Header.Set("Cookie", "a=1; b=2")
	before := r.Clone(r.Context())
	f, err := Strip(r, Options{})
	if err != nil || f != (Found{}) {
		t.Fatalf("%+v %v", f, err)
	}
	if r.URL.String() != before.URL.String() || r.RequestURI != before.RequestURI || r.Header.Get("Cookie") != "a=1; b=2" {
		t.Errorf("request changed")
	}
	if r.Body != http.NoBody && r.Body != nil {
		if b, _ := io.ReadAll(r.Body); len(b) != 0 {
			t.Errorf("body appeared")
		}
	}
}

func TestStripReadBodyUnchangedBytes(t *testing.T) {
	// A body read but without credentials yields exactly the same bytes
	// again, even when it is not valid UTF-8 or has odd bytes.
	body := "a=1&b=\xff\xfe%zz&&c"
	r := httptest.NewRequest("POST", "/x", bytes.NewReader([]byte(body)))
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if _, err := Strip(r, Options{}); err != nil {
		t.Fatal(err)
	}
	if got := readAll(t, r); got != body {
		t.Errorf("body = %q", got)
	}
	if r.ContentLength != int64(len(body)) {
		t.Errorf("ContentLength = %d", r.ContentLength)
	}
}

func TestStripNilSafety(t *testing.T) {
	if f, err := Strip(nil, Options{}); err != nil || f != (Found{}) {
		t.Errorf("nil request: %+v %v", f, err)
	}
	r := &http.Request{Method: "POST", Body: io.NopCloser(strings.NewReader("USER_LOGIN=x&USER_HASH=k"))}
	f, err := Strip(r, Options{})
	if err != nil || f.Kind != Key {
		t.Errorf("bare request: %+v %v", f, err)
	}
}

type closeCounter struct {
	io.Reader
	closed int
}

func (c *closeCounter) Close() error { c.closed++; return nil }

func TestStripBodyCloseReachesOriginal(t *testing.T) {
	for _, body := range []string{"USER_LOGIN=x&USER_HASH=k&a=1", "a=1"} {
		cc := &closeCounter{Reader: strings.NewReader(body)}
		r := httptest.NewRequest("POST", "/x", nil)
		r.Body, r.ContentLength = cc, int64(len(body))
		r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		if _, err := Strip(r, Options{}); err != nil {
			t.Fatal(err)
		}
		if err := r.Body.Close(); err != nil || cc.closed != 1 {
			t.Errorf("%q: original closed %d times", body, cc.closed)
		}
	}
}

func TestStripRequestURIVariants(t *testing.T) {
	// Absolute-form request target (proxy requests).
	r := httptest.NewRequest("GET", "http://acme.amocrm.ru/api/v2/leads?USER_LOGIN=x&USER_HASH=k&a=1", nil)
	r.RequestURI = "http://acme.amocrm.ru/api/v2/leads?USER_LOGIN=x&USER_HASH=k&a=1"
	if _, err := Strip(r, Options{}); err != nil {
		t.Fatal(err)
	}
	if r.RequestURI != "http://acme.amocrm.ru/api/v2/leads?a=1" || r.URL.RawQuery != "a=1" {
		t.Errorf("RequestURI %q RawQuery %q", r.RequestURI, r.URL.RawQuery)
	}
	// A client-side request has no RequestURI: it stays empty.
	r = &http.Request{Method: "GET", URL: &url.URL{Path: "/x", RawQuery: "USER_LOGIN=x&USER_HASH=k"}, Header: http.Header{}}
	if _, err := Strip(r, Options{}); err != nil {
		t.Fatal(err)
	}
	if r.RequestURI != "" || r.URL.RawQuery != "" || r.URL.String() != "/x" {
		t.Errorf("RequestURI %q URL %q", r.RequestURI, r.URL)
	}
}
