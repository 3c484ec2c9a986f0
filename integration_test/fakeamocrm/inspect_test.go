package fakeamocrm

import (
	"bytes"
	"fmt"
	"mime/multipart"
	"net/http"
	"sort"
	"strings"
	"testing"
)

func multipartBody(t *testing.T, fields map[string]string) ([]byte, string) {
	t.Helper()
	var b bytes.Buffer
	mw := multipart.NewWriter(&b)
	for k, v := range fields {
		if err := mw.WriteField(k, v); err != nil {
			t.Fatal(err)
		}
	}
	mw.Close()
	return b.Bytes(), mw.FormDataContentType()
}

func TestLegacyCredentialsAreViolations(t *testing.T) {
	const secret = "S3cr3tHashValue0123456789"
	mp, mpType := multipartBody(t, map[string]string{"USER_HASH": secret, "name": "x"})
	cases := []struct {
		name        string
		method      string
		path        string
		contentType string
		body        string
		hdr         []string
		want        []string // "name@where"
	}{
		{name: "query", method: "GET", path: "/private/api/v2/json/leads/list?USER_LOGIN=u%40e.com&USER_HASH=" + secret,
			want: []string{"USER_HASH@query", "USER_LOGIN@query"}},
		{name: "query on v4, lower case", method: "GET", path: "/api/v4/leads?user_hash=" + secret,
			want: []string{"USER_HASH@query"}},
		{name: "query with PHP-mangled name", method: "GET", path: "/api/v2/leads?USER.HASH=" + secret + "&USER%20LOGIN[]=u",
			want: []string{"USER_HASH@query", "USER_LOGIN@query"}},
		{name: "form body", method: "POST", path: "/private/api/v2/json/leads/set", contentType: "application/x-www-form-urlencoded",
			body: "USER_LOGIN=u%40e.com&USER_HASH=" + secret, want: []string{"USER_HASH@form", "USER_LOGIN@form"}},
		{name: "form body labelled as JSON", method: "POST", path: "/api/v2/leads", contentType: "application/json",
			body: "USER_HASH=" + secret, want: []string{"USER_HASH@form"}},
		{name: "JSON body", method: "POST", path: "/private/api/v2/json/leads/set", contentType: "application/json",
			body: `{"USER_LOGIN":"u@e.com","USER_HASH":"` + secret + `","request":{}}`, want: []string{"USER_HASH@json", "USER_LOGIN@json"}},
		{name: "JSON body without content type", method: "POST", path: "/api/v2/leads",
			body: ` {"USER_HASH":"` + secret + `"}`, want: []string{"USER_HASH@json"}},
		{name: "multipart", method: "POST", path: "/api/v2/leads", contentType: mpType, body: string(mp),
			want: []string{"USER_HASH@multipart"}},
		{name: "session cookie", method: "GET", path: "/api/v2/leads", hdr: []string{"Cookie", "a=1; session_id=" + secret},
			want: []string{"session_id@cookie"}},
		{name: "session cookie in a joined Set-Cookie line", method: "GET", path: "/api/v2/leads",
			hdr: []string{"Cookie", "session_id=" + secret + "; path=/; secure, HttpOnly"}, want: []string{"session_id@cookie"}},
		{name: "unsorted login and api_key", method: "POST", path: "/api/unsorted/add/?login=u%40e.com&api_key=" + secret,
			want: []string{"api_key@query", "login@query"}},
		{name: "unsorted form", method: "POST", path: "/api/unsorted/add/", contentType: "application/x-www-form-urlencoded",
			body: "login=u%40e.com&api_key=" + secret, want: []string{"api_key@form", "login@form"}},
		{name: "login and api_key elsewhere are not credentials", method: "GET", path: "/api/v4/leads?login=a&api_key=b"},
		{name: "nested JSON is not read by amoCRM", method: "POST", path: "/api/v2/leads", body: `{"request":{"USER_HASH":"x"}}`},
		{name: "a value that looks like a name", method: "GET", path: "/api/v4/leads?query=USER_HASH"},
		{name: "oauth2 body", method: "POST", path: "/oauth2/access_token", contentType: "application/x-www-form-urlencoded",
			body: "USER_HASH=" + secret, want: []string{"USER_HASH@form"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e := newEnv(t, nil)
			hdr := c.hdr
			if c.contentType != "" {
				hdr = append(hdr, "Content-Type", c.contentType)
			}
			e.api(c.method, "acme", c.path, "", []byte(c.body), hdr...)
			var got []string
			for _, v := range e.fake.Violations() {
				if v.Kind != ViolationCredential || v.Account != "acme" || v.Method != c.method || strings.Contains(v.Path, "?") {
					t.Errorf("violation %+v", v)
				}
				got = append(got, v.Name+"@"+v.Where)
			}
			sort.Strings(got)
			if fmt.Sprint(got) != fmt.Sprint(c.want) {
				t.Errorf("violations %v, want %v", got, c.want)
			}
			if st := e.fake.Stats(); st.Violations != len(c.want) {
				t.Errorf("Stats.Violations = %d, want %d", st.Violations, len(c.want))
			}
			if dump := fmt.Sprintf("%+v", e.fake.Violations()); strings.Contains(dump, secret) {
				t.Errorf("a violation holds the credential's value: %s", dump)
			}
		})
	}
}

func TestLegacyCredentialsWithoutBearerAre401(t *testing.T) {
	e := newEnv(t, nil)
	a := e.api(http.MethodGet, "acme", "/private/api/v2/json/accounts/current?USER_LOGIN=user%40example.com&USER_HASH="+acmeKey, "", nil)
	if a.status != http.StatusUnauthorized {
		t.Fatalf("status %d", a.status)
	}
	if st := e.fake.Stats(); st.API401 != 1 || st.APIRequests != 1 || st.Violations != 2 {
		t.Errorf("stats %+v", st)
	}
}

func TestCredentialsWithAValidBearerAreStillViolations(t *testing.T) {
	e := newEnv(t, nil)
	p := e.pair("acme", "user@example.com", acmeKey)
	a := e.api(http.MethodGet, "acme", "/api/v2/leads?USER_HASH=x", p.AccessToken, nil)
	if a.status != 200 {
		t.Fatalf("status %d", a.status)
	}
	if v := e.fake.Violations(); len(v) != 1 || v[0].Name != "USER_HASH" {
		t.Errorf("violations %+v", v)
	}
}

func TestPHPName(t *testing.T) {
	for in, want := range map[string]string{
		"USER_HASH": "USER_HASH", "USER.HASH": "USER_HASH", "USER HASH": "USER_HASH", " USER_HASH": "USER_HASH",
		"USER_HASH[]": "USER_HASH", "USER_HASH[a]": "USER_HASH", "USER[HASH": "USER_HASH",
	} {
		if got := phpName(in); got != want {
			t.Errorf("phpName(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestInspectReadsAsPHP: the leak detector finds what PHP reads, where Go's
// own parsers (mime, url.ParseQuery) miss it: boundaries found as
// rfc1867.c finds them, a NUL ending a delimiter line, media types cut at
// ',' or a space, broken escapes, and cookie names PHP mangles.
func TestInspectReadsAsPHP(t *testing.T) {
	part := func(b, name string) string {
		return "--" + b + "\r\nContent-Disposition: form-data; name=\"" + name + "\"\r\n\r\nv\r\n"
	}
	mp := func(b string) []byte { return []byte(part(b, "USER_HASH") + "--" + b + "--\r\n") }
	for _, c := range []struct {
		ct   string
		body []byte
	}{
		{"multipart/form-data; boundary=AAA; foo", mp("AAA")},
		{"multipart/form-data; boundary=AAA; boundary=BBB", mp("AAA")},
		{"multipart/form-data; boundary=AAA,BBB", mp("AAA")},
		{"multipart/form-data, boundary=AAA", mp("AAA")},
		{"multipart/form-data; xboundary=AAA; boundary=BBB", mp("AAA")},
		{"multipart/form-data; charset=boundary; x=AAA", mp("AAA")},
		{"multipart/form-data; boundary=", mp("")},
		{"multipart/form-data; boundary=A", []byte(part("A", "a") + "--A\x00z\r\nContent-Disposition: form-data; name=USER_HASH\r\n\r\nv\r\n--A--\r\n")},
	} {
		if got := inspect("", http.Header{"Content-Type": {c.ct}}, "/api/v2/leads", c.body); len(got) != 1 || got[0].name != "USER_HASH" || got[0].where != whereMultipart {
			t.Errorf("%q: %+v", c.ct, got)
		}
	}
	if names := phpMultipartNames("multipart/form-data; boundary=A",
		[]byte("--A\r\nContent-Disposition: form-data; name=USER_HASH; filename=\"\"\r\n\r\nv\r\n--A--\r\n")); len(names) != 0 {
		t.Errorf("a file part is read as a field: %q", names)
	}
	if got := inspect("a=1;b&USER%5FHASH=%zz", nil, "/x", nil); len(got) != 1 || got[0].name != "USER_HASH" {
		t.Errorf("broken escape: %+v", got)
	}
	for _, c := range []string{"session.id=1", "session id=1", "a=1;\tsession_id=1", "session[id=1", "session_id[]=1"} {
		if got := inspect("", http.Header{"Cookie": {c}}, "/x", nil); len(got) != 1 || got[0].where != whereCookie {
			t.Errorf("cookie %q: %+v", c, got)
		}
	}
}
