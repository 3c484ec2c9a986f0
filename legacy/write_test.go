package legacy

import (
	"encoding/json"
	"encoding/xml"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"
)

var now = time.Unix(1700000000, 0)

func TestWriteError(t *testing.T) {
	w := httptest.NewRecorder()
	WriteError(w, &Error{Status: 503, Code: "503", Text: `wait "a" <bit>`, RetryAfter: 1500 * time.Millisecond}, now)
	if w.Code != 503 {
		t.Errorf("status %d", w.Code)
	}
	want := `{"response":{"error":"wait \"a\" \u003cbit\u003e","error_code":"503","server_time":1700000000}}`
	if got := w.Body.String(); got != want {
		t.Errorf("body\n got %s\nwant %s", got, want)
	}
	h := w.Header()
	if h.Get("Content-Type") != "application/json; charset=utf-8" || h.Get("Cache-Control") != "no-store" ||
		h.Get("Retry-After") != "2" || h.Get("Content-Length") != strconv.Itoa(len(want)) {
		t.Errorf("headers %v", h)
	}
	var v struct {
		Response struct {
			Error      string `json:"error"`
			ErrorCode  string `json:"error_code"`
			ServerTime int64  `json:"server_time"`
		} `json:"response"`
	}
	if err := json.Unmarshal(w.Body.Bytes(), &v); err != nil || v.Response.Error != `wait "a" <bit>` {
		t.Errorf("decode: %v %+v", err, v)
	}

	w = httptest.NewRecorder()
	WriteError(w, ErrBadCredentials(), now)
	if w.Code != 401 || w.Header().Get("Retry-After") != "" ||
		w.Body.String() != `{"response":{"error":"wrong login or API key","error_code":"110","server_time":1700000000}}` {
		t.Errorf("110: %d %v %s", w.Code, w.Header(), w.Body)
	}

	w = httptest.NewRecorder()
	WriteError(w, nil, now)
	if w.Code != 500 || !json.Valid(w.Body.Bytes()) {
		t.Errorf("nil: %d %s", w.Code, w.Body)
	}

	w = httptest.NewRecorder()
	WriteError(w, &Error{Status: 429, Text: "slow"}, now)
	if w.Code != 429 || !strings.Contains(w.Body.String(), `"error_code":"429"`) {
		t.Errorf("default code: %s", w.Body)
	}
}

func TestJSONStringEscaping(t *testing.T) {
	for _, s := range []string{"", "plain", "\x00\x1f\x7f", "q\"b\\s/", "\xff\xfe", "é😀", "\u2028\u2029", "<&>", "\n\r\t"} {
		b := appendJSONString(nil, s)
		var got string
		if err := json.Unmarshal(b, &got); err != nil {
			t.Errorf("%q -> %s: %v", s, b, err)
			continue
		}
		if want := string([]rune(s)); got != want {
			t.Errorf("%q -> %s -> %q", s, b, got)
		}
	}
}

func TestWriteAuthOKJSON(t *testing.T) {
	w := httptest.NewRecorder()
	WriteAuthOK(w, JSON, AuthAccount{ID: 123, Name: "Acme", Subdomain: "acme", Language: "ru", Timezone: "Europe/Moscow"},
		AuthUser{ID: 456, Language: "ru"}, now)
	want := `{"response":{"auth":true,"accounts":[{"id":123,"name":"Acme","subdomain":"acme","language":"ru","timezone":"Europe/Moscow"}],"user":{"id":456,"language":"ru"},"server_time":1700000000}}`
	if w.Code != 200 || w.Body.String() != want {
		t.Errorf("got %d %s", w.Code, w.Body)
	}
	if w.Header().Get("Content-Type") != "application/json; charset=utf-8" || w.Header().Get("Set-Cookie") != "" {
		t.Errorf("headers %v", w.Header())
	}
}

func TestWriteAuthOKXML(t *testing.T) {
	w := httptest.NewRecorder()
	WriteAuthOK(w, XML, AuthAccount{ID: 123, Name: `A&B <"Co">`, Subdomain: "acme", Language: "ru", Timezone: "Europe/Moscow"},
		AuthUser{ID: 456, Language: "en"}, now)
	want := `<root><auth>true</auth><accounts><account><id>123</id><name>A&amp;B &lt;&quot;Co&quot;&gt;</name><subdomain>acme</subdomain>` +
		`<language>ru</language><timezone>Europe/Moscow</timezone></account></accounts><user><id>456</id><language>en</language></user>` +
		`<server_time>1700000000</server_time></root>`
	if w.Code != 200 || w.Body.String() != want {
		t.Errorf("got %d\n%s\nwant\n%s", w.Code, w.Body, want)
	}
	if ct := w.Header().Get("Content-Type"); ct != "text/xml; charset=utf-8" {
		t.Errorf("Content-Type %q", ct)
	}
	var v struct {
		XMLName  xml.Name `xml:"root"`
		Auth     bool     `xml:"auth"`
		Accounts []struct {
			ID   int64  `xml:"id"`
			Name string `xml:"name"`
		} `xml:"accounts>account"`
		User struct {
			ID int64 `xml:"id"`
		} `xml:"user"`
		ServerTime int64 `xml:"server_time"`
	}
	if err := xml.Unmarshal(w.Body.Bytes(), &v); err != nil {
		t.Fatal(err)
	}
	if !v.Auth || len(v.Accounts) != 1 || v.Accounts[0].Name != `A&B <"Co">` || v.User.ID != 456 || v.ServerTime != 1700000000 {
		t.Errorf("decoded %+v", v)
	}
}

func TestXMLEscapingOddInput(t *testing.T) {
	for _, s := range []string{"\x00\x01", "\xff", "a\rb", "é😀", "'\"", "\ufffe"} {
		b := append([]byte("<r>"), appendXMLText(nil, s)...)
		b = append(b, "</r>"...)
		var v struct {
			V string `xml:",chardata"`
		}
		if err := xml.Unmarshal(b, &v); err != nil {
			t.Errorf("%q -> %s: %v", s, b, err)
		}
	}
}

func TestWriteAuthError(t *testing.T) {
	w := httptest.NewRecorder()
	WriteAuthError(w, JSON, ErrBadCredentials(), "10.0.0.1", "acme.amocrm.ru", now)
	want := `{"response":{"auth":false,"error":"wrong login or API key","error_code":"110","ip":"10.0.0.1","domain":"acme.amocrm.ru","server_time":1700000000}}`
	if w.Code != 401 || w.Body.String() != want || w.Header().Get("Cache-Control") != "no-store" {
		t.Errorf("got %d %s", w.Code, w.Body)
	}

	w = httptest.NewRecorder()
	WriteAuthError(w, XML, TooManyRequests(3*time.Second), "::1", "a<b", now)
	want = `<root><auth>false</auth><error>too many requests</error><error_code>429</error_code><ip>::1</ip><domain>a&lt;b</domain><server_time>1700000000</server_time></root>`
	if w.Code != 429 || w.Body.String() != want || w.Header().Get("Retry-After") != "3" ||
		w.Header().Get("Content-Type") != "text/xml; charset=utf-8" {
		t.Errorf("got %d %v %s", w.Code, w.Header(), w.Body)
	}
}

func TestNewSessionID(t *testing.T) {
	seen := map[string]bool{}
	for i := 0; i < 100; i++ {
		id, err := NewSessionID()
		if err != nil {
			t.Fatal(err)
		}
		if len(id) < 22 || seen[id] {
			t.Fatalf("id %q short or repeated", id)
		}
		seen[id] = true
		for _, c := range id {
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
				t.Fatalf("id %q not cookie-safe", id)
			}
		}
	}
}
