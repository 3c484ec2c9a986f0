package fakeamocrm

import (
	"bytes"
	"encoding/json"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"net/url"
	"strings"
)

// finding is a legacy credential found in a request: its canonical name and
// where it was. Values are never kept.
type finding struct {
	kind, name, where string
}

// Places a credential can be found.
const (
	whereQuery     = "query"
	whereForm      = "form"
	whereMultipart = "multipart"
	whereJSON      = "json"
	whereCookie    = "cookie"
)

// legacyNames are the credential parameters valid on any path; unsortedNames
// are also credentials on /api/unsorted/ paths.
var (
	legacyNames   = []string{"USER_LOGIN", "USER_HASH"}
	unsortedNames = []string{"login", "api_key"}
)

// inspect looks for legacy credentials everywhere amoCRM (a PHP application)
// would read them: the query string, the body parsed as a form and as JSON
// whatever its Content-Type, multipart fields, and a session_id cookie.
func inspect(rawQuery string, h http.Header, path string, body []byte) []finding {
	names := legacyNames
	if strings.HasPrefix(path, "/api/unsorted/") || path == "/api/unsorted" {
		names = append(append([]string(nil), legacyNames...), unsortedNames...)
	}
	var out []finding
	seen := map[finding]bool{}
	add := func(name, where string) {
		f := finding{kind: ViolationCredential, name: name, where: where}
		if !seen[f] {
			seen[f] = true
			out = append(out, f)
		}
	}

	q, _ := url.ParseQuery(rawQuery) // a malformed pair does not hide the others
	for k := range q {
		if n := matchName(phpName(k), names); n != "" {
			add(n, whereQuery)
		}
	}
	if len(body) > 0 {
		form, _ := url.ParseQuery(string(body))
		for k := range form {
			if n := matchName(phpName(k), names); n != "" {
				add(n, whereForm)
			}
		}
		if t := bytes.TrimSpace(body); len(t) > 0 && t[0] == '{' {
			var obj map[string]json.RawMessage
			if json.Unmarshal(t, &obj) == nil {
				for k := range obj {
					if n := matchName(k, names); n != "" {
						add(n, whereJSON)
					}
				}
			}
		}
		for _, k := range multipartNames(h.Get("Content-Type"), body) {
			if n := matchName(phpName(k), names); n != "" {
				add(n, whereMultipart)
			}
		}
	}
	for _, line := range h.Values("Cookie") {
		// Some clients join cookies (or whole Set-Cookie lines) with commas.
		for _, part := range strings.FieldsFunc(line, func(c rune) bool { return c == ';' || c == ',' }) {
			name, _, _ := strings.Cut(part, "=")
			if strings.EqualFold(strings.TrimSpace(name), "session_id") {
				add("session_id", whereCookie)
			}
		}
	}
	return out
}

// matchName returns the canonical credential name k stands for, or "".
func matchName(k string, names []string) string {
	for _, n := range names {
		if strings.EqualFold(k, n) {
			return n
		}
	}
	return ""
}

// phpName is the name PHP gives a query or form variable: leading spaces
// dropped, "USER_HASH[x]" is the array USER_HASH, and '.' and ' ' become '_'.
func phpName(k string) string {
	k = strings.TrimLeft(k, " ")
	if i := strings.IndexByte(k, '['); i > 0 && strings.IndexByte(k[i:], ']') > 0 {
		k = k[:i]
	}
	return strings.NewReplacer(".", "_", " ", "_", "[", "_").Replace(k)
}

// multipartNames returns the field names of a multipart body, or nil.
func multipartNames(contentType string, body []byte) []string {
	mt, params, err := mime.ParseMediaType(contentType)
	if err != nil || !strings.HasPrefix(mt, "multipart/") || params["boundary"] == "" {
		return nil
	}
	mr := multipart.NewReader(bytes.NewReader(body), params["boundary"])
	var names []string
	for {
		p, err := mr.NextPart()
		if err != nil {
			return names
		}
		if n := p.FormName(); n != "" {
			names = append(names, n)
		}
		_, _ = io.Copy(io.Discard, p)
	}
}
