package integration_test

import (
	"bytes"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"net/textproto"
	"net/url"
	"reflect"
	"strings"
	"testing"
	"time"
)

// shapesMaxBody is the max_body of the shapes tests: small, so that the
// tests can send bodies over it cheaply.
const shapesMaxBody = 64 << 10

// newShapesEnv is a Caddy with max_body 64KiB and the rate limit off.
func newShapesEnv(t *testing.T) *Env {
	t.Helper()
	return NewEnv(t, EnvOptions{Site: func(s *SiteConfig) {
		s.Extra = "max_body 64KiB\n\t\trate_limit 0"
	}})
}

// loginQ is testLogin as a legacy client percent-encodes it.
var loginQ = url.QueryEscape(testLogin)

// TestShapesQueryString sends USER_LOGIN and USER_HASH in the query string of
// both legacy API families: amoCRM gets every other parameter byte for byte,
// in order, and a Bearer token instead of the credentials.
func TestShapesQueryString(t *testing.T) {
	needCaddy(t)
	e := newShapesEnv(t)
	cases := []struct {
		name, path, query, want string
	}{
		{"private leads list", "/private/api/v2/json/leads/list",
			"USER_LOGIN=" + loginQ + "&limit_rows=10&USER_HASH=" + e.APIKey + "&limit_offset=0&query=%D0%98%D0%B2%D0%B0%D0%BD+%2B1",
			"limit_rows=10&limit_offset=0&query=%D0%98%D0%B2%D0%B0%D0%BD+%2B1"},
		{"api v2 leads", "/api/v2/leads",
			"id=5&USER_LOGIN=" + loginQ + "&USER_HASH=" + e.APIKey + "&limit_rows=500&filter%5Bstatus%5D%5B%5D=142&odd=a%20b;c&empty=&flag",
			"id=5&limit_rows=500&filter%5Bstatus%5D%5B%5D=142&odd=a%20b;c&empty=&flag"},
		{"credentials last", "/api/v2/contacts",
			"query=x&USER_LOGIN=" + loginQ + "&USER_HASH=" + e.APIKey,
			"query=x"},
		{"credentials only", "/private/api/v2/json/accounts/current",
			"USER_HASH=" + e.APIKey + "&USER_LOGIN=" + loginQ,
			""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			nv := len(e.Fake.Violations())
			resp := e.Get(c.path + "?" + c.query)
			if resp.Status != http.StatusOK {
				t.Fatalf("status %d; body: %.300s", resp.Status, resp.Body)
			}
			r := lastRequest(t, e)
			if r.Path != c.path || r.RawQuery != c.want {
				t.Errorf("amoCRM received %s ?%q; want %s ?%q", r.Path, r.RawQuery, c.path, c.want)
			}
			assertBearerOnly(t, c.name, r)
			newViolations(t, e, nv, c.name)
		})
	}
	if st := e.Fake.Stats(); st.Exchanges != 1 || st.CodeGrants != 1 {
		t.Errorf("%d exchanges, %d code grants; want one of each for one user", st.Exchanges, st.CodeGrants)
	}
	e.AssertNoViolations()
	assertNoSecretsAnywhere(e)
}

// TestShapesQueryWithJSONBody is the classic leads/set call: credentials in the
// query, the data as a JSON body {"request":{...}} that must reach amoCRM
// byte for byte.
func TestShapesQueryWithJSONBody(t *testing.T) {
	needCaddy(t)
	e := newShapesEnv(t)
	body := []byte(`{"request":{"leads":{"add":[{"name":"Сделка №1 \"VIP\"","price":1500.50,` +
		`"tags":"a, b","custom_fields":[{"id":1,"values":[{"value":"x&y=z%41"}]}],"n":null,"e":1e3}]}}}` + "\n")
	for _, ct := range []string{"application/json", "application/json; charset=utf-8", ""} {
		t.Run("Content-Type "+ct, func(t *testing.T) {
			nv := len(e.Fake.Violations())
			h := http.Header{}
			if ct != "" {
				h.Set("Content-Type", ct)
			}
			resp := e.Do(http.MethodPost, "/private/api/v2/json/leads/set?"+e.LegacyQuery(""), h, bytes.NewReader(body))
			if resp.Status != http.StatusOK {
				t.Fatalf("status %d; body: %.300s", resp.Status, resp.Body)
			}
			var ec fakeEcho
			resp.JSON(t, &ec)
			r := lastRequest(t, e)
			if !bytes.Equal(r.Body, body) || ec.Fake.BodySHA256 != sha256Hex(body) || ec.Fake.BodyLen != len(body) {
				t.Errorf("the body changed on its way: amoCRM received %d bytes (sha256 %s), sent %d (%s)\n got: %q\nwant: %q",
					ec.Fake.BodyLen, ec.Fake.BodySHA256, len(body), sha256Hex(body), r.Body, body)
			}
			if got := r.Header.Get("Content-Type"); got != ct {
				t.Errorf("Content-Type %q reached amoCRM as %q", ct, got)
			}
			if r.RawQuery != "" {
				t.Errorf("amoCRM received the query %q; want none", r.RawQuery)
			}
			assertBearerOnly(t, "leads/set", r)
			newViolations(t, e, nv, "leads/set")
		})
	}
	e.AssertNoViolations()
	assertNoSecretsAnywhere(e)
}

// TestShapesFormBody sends the credentials in a form body, on several paths.
func TestShapesFormBody(t *testing.T) {
	needCaddy(t)
	e := newShapesEnv(t)
	creds := "USER_LOGIN=" + loginQ + "&USER_HASH=" + e.APIKey
	cases := []struct {
		name, path, body, want string
	}{
		{"api v2 leads, credentials between", "/api/v2/leads",
			"add%5B0%5D%5Bname%5D=Deal+1&" + creds + "&add%5B0%5D%5Bprice%5D=10",
			"add%5B0%5D%5Bname%5D=Deal+1&add%5B0%5D%5Bprice%5D=10"},
		{"private leads set, credentials first", "/private/api/v2/json/leads/set",
			creds + "&request%5Bleads%5D%5Badd%5D%5B0%5D%5Bname%5D=%D0%A1%D0%B4%D0%B5%D0%BB%D0%BA%D0%B0",
			"request%5Bleads%5D%5Badd%5D%5B0%5D%5Bname%5D=%D0%A1%D0%B4%D0%B5%D0%BB%D0%BA%D0%B0"},
		{"a path amoCRM does not know, credentials only", "/api/v2/whatever/else",
			creds, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			nv := len(e.Fake.Violations())
			h := http.Header{"Content-Type": {"application/x-www-form-urlencoded"}}
			resp := e.Do(http.MethodPost, c.path+"?keep=1", h, strings.NewReader(c.body))
			if resp.Status != http.StatusOK {
				t.Fatalf("status %d; body: %.300s", resp.Status, resp.Body)
			}
			r := lastRequest(t, e)
			if string(r.Body) != c.want {
				t.Errorf("amoCRM received the body %q; want %q", r.Body, c.want)
			}
			if cl := r.Header.Get("Content-Length"); cl != fmt.Sprint(len(c.want)) && !(cl == "" && c.want == "") {
				t.Errorf("Content-Length %q for a body of %d bytes", cl, len(c.want))
			}
			if r.RawQuery != "keep=1" {
				t.Errorf("the query reached amoCRM as %q", r.RawQuery)
			}
			assertBearerOnly(t, c.name, r)
			newViolations(t, e, nv, c.name)
		})
	}
	e.AssertNoViolations()
	assertNoSecretsAnywhere(e)
}

// TestShapesJSONBody sends the credentials as members of a JSON body, with the
// right Content-Type, none, and wrong ones: amoCRM receives the other members
// as they were.
func TestShapesJSONBody(t *testing.T) {
	needCaddy(t)
	e := newShapesEnv(t)
	request := `"request":{"leads":{"add":[{"name":"Сделка","price":7,"x":[1,2.5e3,{"y":null}]}]}}`
	body := `{"USER_LOGIN":"` + testLogin + `",` + request + `,"USER_HASH":"` + e.APIKey + `"}`
	for _, ct := range []string{"application/json", "", "text/plain", "application/x-www-form-urlencoded", "text/plain; charset=utf-8"} {
		t.Run("Content-Type "+ct, func(t *testing.T) {
			jsonBodyCase(t, e, ct, body, request)
		})
	}
	e.AssertNoViolations()
	assertNoSecretsAnywhere(e)
}

// TestShapesJSONBodyMisspelledContentType is TestShapesJSONBody with a
// misspelled media type, as the protocol notes say some clients send
// ("aplication/json", "application/jsno"). amoCRM (PHP reading php://input)
// would still see the credentials, so they must not get through: contract
// section 2 says none ever reaches amoCRM.
func TestShapesJSONBodyMisspelledContentType(t *testing.T) {
	needCaddy(t)
	e := newShapesEnv(t)
	request := `"request":{"leads":{"add":[{"name":"x"}]}}`
	body := `{"USER_LOGIN":"` + testLogin + `",` + request + `,"USER_HASH":"` + e.APIKey + `"}`
	for _, ct := range []string{"aplication/json", "application/jsno"} {
		t.Run("Content-Type "+ct, func(t *testing.T) {
			jsonBodyCase(t, e, ct, body, request)
		})
	}
	e.AssertNoViolations()
	assertNoSecretsAnywhere(e)
}

func jsonBodyCase(t *testing.T, e *Env, ct, body, request string) {
	t.Helper()
	nv := len(e.Fake.Violations())
	h := http.Header{}
	if ct != "" {
		h.Set("Content-Type", ct)
	}
	resp := e.Do(http.MethodPost, "/private/api/v2/json/leads/set", h, strings.NewReader(body))
	if resp.Status != http.StatusOK {
		t.Fatalf("status %d; body: %.300s", resp.Status, resp.Body)
	}
	r := lastRequest(t, e)
	var got, want map[string]any
	if err := json.Unmarshal(r.Body, &got); err != nil {
		t.Fatalf("amoCRM received a body that is not JSON: %v\n%q", err, r.Body)
	}
	if err := json.Unmarshal([]byte("{"+request+"}"), &want); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("amoCRM received the body %s; want %s", r.Body, "{"+request+"}")
	}
	if !strings.Contains(string(r.Body), request) {
		t.Errorf("the other members changed: amoCRM received %s", r.Body)
	}
	if got := r.Header.Get("Content-Type"); got != ct {
		t.Errorf("Content-Type %q reached amoCRM as %q", ct, got)
	}
	if cl := r.Header.Get("Content-Length"); cl != fmt.Sprint(len(r.Body)) {
		t.Errorf("Content-Length %q for a body of %d bytes", cl, len(r.Body))
	}
	assertBearerOnly(t, "JSON body", r)
	newViolations(t, e, nv, "JSON body")
}

// TestShapesUnsorted sends login + api_key, the credentials of the old
// /api/unsorted/ endpoints, in the query and in a form body.
func TestShapesUnsorted(t *testing.T) {
	needCaddy(t)
	e := newShapesEnv(t)
	creds := "login=" + loginQ + "&api_key=" + e.APIKey
	form := http.Header{"Content-Type": {"application/x-www-form-urlencoded"}}
	formBody := "request%5Bunsorted%5D%5Bcategory%5D=forms&request%5Bunsorted%5D%5Badd%5D%5B0%5D%5Bsource%5D=site"
	cases := []struct {
		name, method, target string
		header               http.Header
		body                 string
		wantQuery, wantBody  string
	}{
		{"GET list, query", http.MethodGet, "/api/unsorted/list/?" + creds + "&page=1&page_size=50", nil, "", "page=1&page_size=50", ""},
		{"POST add, query, form body without credentials", http.MethodPost, "/api/unsorted/add/?" + creds + "&x=1", form, formBody, "x=1", formBody},
		{"POST add, credentials in the form body", http.MethodPost, "/api/unsorted/add/?x=2", form, creds + "&" + formBody, "x=2", formBody},
		{"POST accept, USER_ names on unsorted", http.MethodPost, "/api/unsorted/accept/?USER_LOGIN=" + loginQ + "&USER_HASH=" + e.APIKey, form, formBody, "", formBody},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			nv := len(e.Fake.Violations())
			var body io.Reader
			if c.body != "" {
				body = strings.NewReader(c.body)
			}
			resp := e.Do(c.method, c.target, c.header, body)
			if resp.Status != http.StatusOK {
				t.Fatalf("status %d; body: %.300s", resp.Status, resp.Body)
			}
			r := lastRequest(t, e)
			if r.RawQuery != c.wantQuery || string(r.Body) != c.wantBody {
				t.Errorf("amoCRM received ?%q with body %q; want ?%q with %q", r.RawQuery, r.Body, c.wantQuery, c.wantBody)
			}
			if strings.Contains(r.RawQuery+string(r.Body), "api_key") || strings.Contains(r.RawQuery+string(r.Body), "login=") {
				t.Errorf("amoCRM received login or api_key: ?%q %q", r.RawQuery, r.Body)
			}
			assertBearerOnly(t, c.name, r)
			newViolations(t, e, nv, c.name)
		})
	}
	// Outside /api/unsorted/, login and api_key are ordinary parameters.
	t.Run("login and api_key elsewhere are data", func(t *testing.T) {
		resp := e.Get("/api/v2/contacts?" + e.LegacyQuery("login=someone&api_key=other"))
		if resp.Status != http.StatusOK {
			t.Fatalf("status %d; body: %.300s", resp.Status, resp.Body)
		}
		if r := lastRequest(t, e); r.RawQuery != "login=someone&api_key=other" {
			t.Errorf("amoCRM received ?%q; want login=someone&api_key=other", r.RawQuery)
		}
	})
	if st := e.Fake.Stats(); st.Exchanges != 1 {
		t.Errorf("%d exchanges; login+api_key and USER_LOGIN+USER_HASH are one user: want 1", st.Exchanges)
	}
	e.AssertNoViolations()
	assertNoSecretsAnywhere(e)
}

// TestShapesOtherBytesUntouched checks that whatever is not a credential
// reaches amoCRM as it was sent: other parameters, cookies, headers, and
// requests without any credential at all.
func TestShapesOtherBytesUntouched(t *testing.T) {
	needCaddy(t)
	e := newShapesEnv(t)
	cookie := `lang=ru; _ym_uid=1634567; tracking="a,b"; empty=`

	t.Run("credentials in the query, other cookies and headers", func(t *testing.T) {
		h := http.Header{"Cookie": {cookie}, "X-Custom": {"v1", "v2"}, "Accept": {"application/json"}}
		resp := e.Do(http.MethodGet, "/api/v2/contacts?"+e.LegacyQuery("query=a%20b&x=%2F%3F"), h, nil)
		if resp.Status != http.StatusOK {
			t.Fatalf("status %d; body: %.300s", resp.Status, resp.Body)
		}
		r := lastRequest(t, e)
		if got := r.Header.Values("Cookie"); len(got) != 1 || got[0] != cookie {
			t.Errorf("amoCRM received Cookie %q; want %q", got, cookie)
		}
		if got := r.Header.Values("X-Custom"); !reflect.DeepEqual(got, []string{"v1", "v2"}) {
			t.Errorf("amoCRM received X-Custom %q", got)
		}
		if r.RawQuery != "query=a%20b&x=%2F%3F" {
			t.Errorf("amoCRM received ?%q", r.RawQuery)
		}
		assertBearerOnly(t, "other bytes", r)
	})

	t.Run("no credentials: passed through unchanged", func(t *testing.T) {
		bodies := []struct{ ct, body string }{
			{"application/json", `{"request":{"leads":{"add":[{"name":"x"}]}}}`},
			{"application/x-www-form-urlencoded", "name=x&price=1&USER=y"},
			{"", "not a form, not JSON: \x00\x01\xff"},
		}
		for _, b := range bodies {
			h := http.Header{"Cookie": {cookie}}
			if b.ct != "" {
				h.Set("Content-Type", b.ct)
			}
			resp := e.Do(http.MethodPost, "/api/v2/leads?a=1&b=%zz", h, strings.NewReader(b.body))
			r := lastRequest(t, e)
			if r.Path != "/api/v2/leads" || r.RawQuery != "a=1&b=%zz" || string(r.Body) != b.body {
				t.Errorf("%s: amoCRM received %s ?%q %q; want /api/v2/leads ?a=1&b=%%zz %q", b.ct, r.Path, r.RawQuery, r.Body, b.body)
			}
			if got := r.Header.Values("Cookie"); len(got) != 1 || got[0] != cookie {
				t.Errorf("%s: amoCRM received Cookie %q; want %q", b.ct, got, cookie)
			}
			if a := r.Header.Values("Authorization"); len(a) != 0 {
				t.Errorf("%s: a request without credentials got an Authorization header", b.ct)
			}
			// amoCRM itself refuses a request without a token; that answer is passed on.
			if resp.Status != http.StatusUnauthorized || resp.Status != r.Status {
				t.Errorf("%s: status %d (amoCRM answered %d); want amoCRM's own 401", b.ct, resp.Status, r.Status)
			}
		}
	})
	e.AssertNoViolations()
	assertNoSecretsAnywhere(e)
}

// TestShapesBodyLimits: a body over max_body that must be read (it may hold
// credentials) gets 413 in the legacy shape; a large body the module does not
// need to read (multipart, binary) streams through to amoCRM intact.
func TestShapesBodyLimits(t *testing.T) {
	needCaddy(t)
	e := newShapesEnv(t)
	if resp := e.Get("/api/v2/account?" + e.LegacyQuery("")); resp.Status != 200 {
		t.Fatalf("first request: status %d; body %.300s", resp.Status, resp.Body)
	}
	big := strings.Repeat("x", shapesMaxBody+1)
	over := []struct {
		name, ct, body string
		hideLength     bool
	}{
		{"form", "application/x-www-form-urlencoded", "USER_LOGIN=" + loginQ + "&USER_HASH=" + e.APIKey + "&name=" + big, false},
		{"form without credentials", "application/x-www-form-urlencoded", "name=" + big, false},
		{"JSON, chunked", "application/json", `{"USER_LOGIN":"` + testLogin + `","USER_HASH":"` + e.APIKey + `","name":"` + big + `"}`, true},
		{"untyped, chunked", "", "name=" + big, true},
		{"auth.php", "application/json", `{"USER_LOGIN":"` + testLogin + `","USER_HASH":"` + e.APIKey + `","pad":"` + big + `"}`, false},
	}
	for _, c := range over {
		t.Run("413 "+c.name, func(t *testing.T) {
			n := requestCount(e)
			h := http.Header{}
			if c.ct != "" {
				h.Set("Content-Type", c.ct)
			}
			var body io.Reader = strings.NewReader(c.body)
			if c.hideLength {
				body = io.MultiReader(body) // unknown length: sent chunked
			}
			path := "/api/v2/leads?" + e.LegacyQuery("")
			if c.name == "auth.php" {
				path = "/private/api/auth.php"
			}
			resp := doKeepAlive(t, e, http.MethodPost, path, h, body)
			if c.name == "auth.php" {
				// auth.php answers in its own shape: {"response":{"auth":false,...}} or XML.
				if resp.Status != http.StatusRequestEntityTooLarge {
					t.Errorf("status %d; want 413; body %.300s", resp.Status, resp.Body)
				}
			} else {
				assertLegacyError(t, c.name, resp, http.StatusRequestEntityTooLarge, "413")
			}
			if requestCount(e) != n {
				t.Errorf("a body over max_body reached amoCRM")
			}
		})
	}

	t.Run("large multipart streams through", func(t *testing.T) {
		file := make([]byte, 2<<20)
		if _, err := rand.Read(file); err != nil {
			t.Fatal(err)
		}
		var mp bytes.Buffer
		mw := multipart.NewWriter(&mp)
		_ = mw.WriteField("note", "attachment")
		ph := textproto.MIMEHeader{}
		ph.Set("Content-Disposition", `form-data; name="file"; filename="a.bin"`)
		ph.Set("Content-Type", "application/octet-stream")
		pw, _ := mw.CreatePart(ph)
		_, _ = pw.Write(file)
		_ = mw.Close()
		body := mp.Bytes()
		for _, hide := range []bool{false, true} {
			var rd io.Reader = bytes.NewReader(body)
			if hide {
				rd = io.MultiReader(rd)
			}
			resp := e.Do(http.MethodPost, "/api/v2/notes?"+e.LegacyQuery(""),
				http.Header{"Content-Type": {mw.FormDataContentType()}}, rd)
			if resp.Status != http.StatusOK {
				t.Fatalf("chunked=%v: status %d; body %.300s", hide, resp.Status, resp.Body)
			}
			var ec fakeEcho
			resp.JSON(t, &ec)
			if ec.Fake.BodyLen != len(body) || ec.Fake.BodySHA256 != sha256Hex(body) {
				t.Errorf("chunked=%v: amoCRM received %d bytes (sha256 %s); sent %d (%s)", hide, ec.Fake.BodyLen, ec.Fake.BodySHA256, len(body), sha256Hex(body))
			}
			assertBearerOnly(t, "multipart", lastRequest(t, e))
		}
	})

	t.Run("large multipart with a late credential part gets 413", func(t *testing.T) {
		// The credential part sits past max_body: the module cannot strip it
		// before streaming starts, so the stream stops before that part, and
		// the client gets the legacy 413 (not a 502), and amoCRM no key.
		var mp bytes.Buffer
		mw := multipart.NewWriter(&mp)
		ph := textproto.MIMEHeader{}
		ph.Set("Content-Disposition", `form-data; name="file"; filename="a.bin"`)
		pw, _ := mw.CreatePart(ph)
		_, _ = pw.Write(bytes.Repeat([]byte("z"), 2*shapesMaxBody))
		_ = mw.WriteField("USER_HASH", e.APIKey)
		_ = mw.Close()
		n := requestCount(e)
		resp := doKeepAlive(t, e, http.MethodPost, "/api/v2/notes?"+e.LegacyQuery(""),
			http.Header{"Content-Type": {mw.FormDataContentType()}}, bytes.NewReader(mp.Bytes()))
		assertLegacyError(t, "late credential part", resp, http.StatusRequestEntityTooLarge, "413")
		for _, r := range e.Fake.Requests()[n:] {
			if r.BodyLen >= shapesMaxBody {
				t.Errorf("amoCRM received %d bytes of the body", r.BodyLen)
			}
		}
	})

	t.Run("large binary streams through", func(t *testing.T) {
		body := make([]byte, 3<<20+7)
		if _, err := rand.Read(body); err != nil {
			t.Fatal(err)
		}
		resp := e.Do(http.MethodPost, "/api/v2/files?"+e.LegacyQuery("name=a.bin"),
			http.Header{"Content-Type": {"application/octet-stream"}}, io.MultiReader(bytes.NewReader(body)))
		if resp.Status != http.StatusOK {
			t.Fatalf("status %d; body %.300s", resp.Status, resp.Body)
		}
		var ec fakeEcho
		resp.JSON(t, &ec)
		if ec.Fake.BodyLen != len(body) || ec.Fake.BodySHA256 != sha256Hex(body) {
			t.Errorf("amoCRM received %d bytes (sha256 %s); sent %d (%s)", ec.Fake.BodyLen, ec.Fake.BodySHA256, len(body), sha256Hex(body))
		}
		if ec.Fake.RawQuery != "name=a.bin" {
			t.Errorf("amoCRM received ?%q", ec.Fake.RawQuery)
		}
	})
	if !e.Caddy.Running() {
		t.Fatal("Caddy exited")
	}
	e.AssertNoViolations()
	assertNoSecretsAnywhere(e)
}

// mangledQueries are query strings with the credentials under names PHP
// reads as USER_LOGIN and USER_HASH.
func mangledQueries(e *Env) []string {
	return []string{
		"USER%5FLOGIN=" + loginQ + "&USER%5FHASH=" + e.APIKey + "&a=1",
		"USER.LOGIN=" + loginQ + "&USER.HASH=" + e.APIKey + "&a=1",
		"USER+LOGIN=" + loginQ + "&USER%20HASH=" + e.APIKey + "&a=1",
		"USER[LOGIN=" + loginQ + "&USER[HASH=" + e.APIKey + "&a=1",
	}
}

// TestShapesPHPMangledNames sends the credentials under names PHP reads as
// USER_LOGIN/USER_HASH ("USER.HASH", "USER%5FHASH", "USER HASH", "USER[HASH"):
// amoCRM would take them, so the module must find and strip them too.
func TestShapesPHPMangledNames(t *testing.T) {
	needCaddy(t)
	e := newShapesEnv(t)
	for _, q := range mangledQueries(e) {
		name, _, _ := strings.Cut(q, "=")
		t.Run(name, func(t *testing.T) {
			nv := len(e.Fake.Violations())
			resp := e.Get("/api/v2/leads?" + q)
			if resp.Status != http.StatusOK {
				t.Fatalf("status %d; body: %.300s", resp.Status, resp.Body)
			}
			r := lastRequest(t, e)
			if r.RawQuery != "a=1" {
				t.Errorf("amoCRM received ?%q; want a=1", r.RawQuery)
			}
			assertBearerOnly(t, name, r)
			newViolations(t, e, nv, name)
		})
	}
	e.AssertNoViolations()
	e.AssertNoSecrets("Caddy's log (debug level)", e.Caddy.Logs())
}

// TestAccessLogHidesPHPMangledNames: Caddy's access log records the original
// request URI, before the module strips anything. Caddyfile.example's query
// filter deletes USER_HASH by its exact name, so the key sent as "USER.HASH"
// (which amoCRM, and the module, take as USER_HASH) must not land in it either.
func TestAccessLogHidesPHPMangledNames(t *testing.T) {
	needCaddy(t)
	e := newShapesEnv(t)
	for _, q := range mangledQueries(e) {
		name, _, _ := strings.Cut(q, "=")
		before := len(e.AccessLog())
		if resp := e.Get("/api/v2/leads?" + q); resp.Status != http.StatusOK {
			t.Errorf("%s: status %d; body: %.300s", name, resp.Status, resp.Body)
		}
		if strings.Contains(e.AccessLog()[before:], e.APIKey) {
			t.Errorf("the access log holds the API key sent as %s: %s", name,
				strings.ReplaceAll(grepLines(e.AccessLog()[before:], "/api/v2/leads"), e.APIKey, "<the API key>"))
		}
	}
	e.AssertNoViolations()
}

// keepAliveClient keeps connections open. The module answers 413 without
// reading a body it knows to be too large; on a connection the client asked
// to close, the server then closes it at once and the client, still writing
// the body, may get a reset instead of the answer. On a kept-alive
// connection Go's server reads the rest of a small unread body first.
var keepAliveClient = &http.Client{
	Timeout:       30 * time.Second,
	Transport:     &http.Transport{Proxy: nil},
	CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
}

// doKeepAlive is e.Do with keepAliveClient.
func doKeepAlive(t *testing.T, e *Env, method, path string, header http.Header, body io.Reader) *Response {
	t.Helper()
	req, err := http.NewRequest(method, e.Caddy.BaseURL()+path, body)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := keepAliveClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, redactQuery(path), err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: reading the answer: %v", method, redactQuery(path), err)
	}
	return &Response{Status: resp.StatusCode, Header: resp.Header, Body: b}
}
