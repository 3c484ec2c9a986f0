package legacy

// An independent reading of requests, written apart from the package code
// and kept simple rather than fast, for the fuzz targets to check Strip
// against: a PHP-like query/form parse (url.ParseQuery style plus PHP's
// name mangling, transcribed from main/php_variables.c), encoding/json for
// JSON bodies and a plain split for cookies.

import (
	"bytes"
	"encoding/json"
	"mime/multipart"
	"net/url"
	"strings"
)

// oraclePair is one '&'-separated piece of a query string or form body.
type oraclePair struct {
	raw   string // the piece as it was
	name  string // the PHP variable name it registers ("" if none)
	array bool
	value string // decoded as PHP does
}

// oracleSplit splits s at every '&' (PHP's arg_separator.input).
func oracleSplit(s string) []oraclePair {
	var out []oraclePair
	for _, raw := range strings.Split(s, "&") {
		k, v, _ := strings.Cut(raw, "=")
		name, array := oraclePHPName(oracleURLDecode(k))
		out = append(out, oraclePair{raw: raw, name: name, array: array, value: oracleURLDecode(v)})
	}
	return out
}

// oracleURLDecode is PHP's urldecode: '+' is a space, %XX a byte, and a
// '%' not followed by two hex digits stays a '%'.
func oracleURLDecode(s string) string {
	if v, err := url.QueryUnescape(s); err == nil {
		return v
	}
	var b bytes.Buffer
	for i := 0; i < len(s); i++ {
		switch {
		case s[i] == '+':
			b.WriteByte(' ')
		case s[i] == '%' && i+2 < len(s) && isHex(s[i+1]) && isHex(s[i+2]):
			v, _ := url.PathUnescape(s[i : i+3])
			b.WriteString(v)
			i += 2
		default:
			b.WriteByte(s[i])
		}
	}
	return b.String()
}

func isHex(c byte) bool {
	return strings.IndexByte("0123456789abcdefABCDEF", c) >= 0
}

// oraclePHPName is php_register_variable_ex's treatment of a decoded name.
func oraclePHPName(n string) (string, bool) {
	if i := strings.IndexByte(n, 0); i >= 0 { // a C string ends at NUL
		n = n[:i]
	}
	n = strings.TrimLeft(n, " ")
	b := []byte(n)
	open := -1
	for i, c := range b {
		if c == '[' {
			open = i
			break
		}
		if c == ' ' || c == '.' {
			b[i] = '_'
		}
	}
	if open == 0 || len(b) == 0 {
		return "", false
	}
	if open < 0 {
		return string(b), false
	}
	if bytes.IndexByte(b[open+1:], ']') >= 0 {
		return string(b[:open]), true
	}
	b[open] = '_'
	for i := open + 1; i < len(b); i++ {
		if b[i] == ' ' || b[i] == '.' || b[i] == '[' {
			b[i] = '_'
		}
	}
	return string(b), false
}

// oracleIsCred tells whether PHP variable name is a credential.
func oracleIsCred(name string, unsorted bool) bool {
	switch name {
	case "USER_LOGIN", "USER_HASH":
		return true
	case "login", "api_key":
		return unsorted
	}
	return false
}

func oracleIsLogin(name string) bool { return name == "USER_LOGIN" || name == "login" }

// oracleMember is one member of a top-level JSON object.
type oracleMember struct {
	key string
	raw string
}

// oracleJSONObject decodes s with encoding/json; ok is false when s is not
// one valid JSON object.
func oracleJSONObject(s string) (ms []oracleMember, ok bool) {
	if !json.Valid([]byte(s)) {
		return nil, false
	}
	dec := json.NewDecoder(strings.NewReader(s))
	tok, err := dec.Token()
	if err != nil || tok != json.Delim('{') {
		return nil, false
	}
	for dec.More() {
		k, err := dec.Token()
		if err != nil {
			return nil, false
		}
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return nil, false
		}
		ms = append(ms, oracleMember{key: k.(string), raw: string(raw)})
	}
	return ms, true
}

func oracleJSONSniff(s string) bool {
	return strings.HasPrefix(strings.TrimLeft(s, " \t\r\n"), "{")
}

// oracleCookieItem is one ';'- or ','-separated piece of a Cookie line.
type oracleCookieItem struct{ name, value string }

func oracleCookies(line string) []oracleCookieItem {
	var out []oracleCookieItem
	for _, part := range strings.FieldsFunc(line, func(r rune) bool { return r == ';' || r == ',' }) {
		n, v, _ := strings.Cut(part, "=")
		v = strings.Trim(v, " \t\r\n")
		if len(v) >= 2 && v[0] == '"' && v[len(v)-1] == '"' {
			v = v[1 : len(v)-1]
		}
		out = append(out, oracleCookieItem{name: strings.Trim(n, " \t\r\n"), value: v})
	}
	return out
}

func jsonUnmarshalString(raw string, v *string) error {
	return json.Unmarshal([]byte(raw), v)
}

// oracleMultipartCreds returns the credential fields mime/multipart reads
// in the multipart/form-data body s (boundary "x"), up to where it can read.
func oracleMultipartCreds(s string) []string {
	var creds []string
	mr := multipart.NewReader(strings.NewReader(s), "x")
	for {
		p, err := mr.NextRawPart()
		if err != nil {
			return creds
		}
		if p.FileName() != "" {
			continue
		}
		if name, _ := oraclePHPName(p.FormName()); oracleIsCred(name, false) {
			creds = append(creds, name)
		}
	}
}
