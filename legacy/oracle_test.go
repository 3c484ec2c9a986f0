package legacy

// An independent reading of requests, written apart from the package code
// and kept simple rather than fast, for the fuzz targets to check Strip
// against: a PHP-like query/form parse (url.ParseQuery style plus PHP's
// name mangling, transcribed from main/php_variables.c), encoding/json for
// JSON bodies and a plain split for cookies.

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
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
	item := func(n, v string) {
		v = strings.Trim(v, " \t\r\n")
		if len(v) >= 2 && v[0] == '"' && v[len(v)-1] == '"' {
			v = v[1 : len(v)-1]
		}
		// PHP skips leading white space (isspace) and mangles the name as a
		// query name's; the trailing white space is trimmed too, which is
		// stricter than PHP ("session_id =" is session_id_ there).
		name, _ := oraclePHPName(strings.TrimLeft(strings.Trim(n, " \t\r\n"), " \t\r\n\v\f"))
		out = append(out, oracleCookieItem{name: name, value: v})
	}
	// PHP splits at ';' only; its item's name runs to the first '='. After
	// a comma (old clients join raw Set-Cookie lines with commas) a
	// name=value with a value is a cookie too, hidden in PHP's value.
	for _, php := range strings.Split(line, ";") {
		n, rest, _ := strings.Cut(php, "=")
		first, _, _ := strings.Cut(rest, ",")
		item(n, first)
		pieces := strings.Split(php, ",")
		for _, p := range pieces[1:] {
			if n, v, ok := strings.Cut(p, "="); ok && strings.Trim(v, " \t\r\n") != "" {
				item(n, v)
			}
		}
	}
	return out
}

func jsonUnmarshalString(raw string, v *string) error {
	return json.Unmarshal([]byte(raw), v)
}

// oracleMPPart is one part of a multipart/form-data body as mime/multipart
// reads it, its name read from Content-Disposition as PHP reads it.
type oracleMPPart struct {
	header  string // the MIME header, printed
	content string
	name    string // PHP variable name ("" if none)
	array   bool
	file    bool // a non-empty filename: an upload
	odd     bool // RFC 2231 parameters: PHP and mime/multipart read them apart
}

// oracleMultipart reads the parts of the multipart body s (boundary "x")
// with mime/multipart, up to where it can; complete tells it read to the
// closing delimiter.
func oracleMultipart(s string) (parts []oracleMPPart, complete bool) {
	mr := multipart.NewReader(strings.NewReader(s), "x")
	for {
		p, err := mr.NextRawPart()
		if err == io.EOF {
			return parts, true
		}
		if err != nil {
			return parts, false
		}
		b, err := io.ReadAll(p)
		if err != nil {
			return parts, false
		}
		cd := p.Header.Get("Content-Disposition")
		name, filename := oraclePHPDisposition(cd)
		n, array := oraclePHPName(name)
		parts = append(parts, oracleMPPart{header: fmt.Sprint(p.Header), content: string(b),
			name: n, array: array, file: filename != "", odd: strings.Contains(cd, "*")})
	}
}

// oraclePHPDisposition reads the name and filename parameters of a
// Content-Disposition value as PHP's rfc1867.c does: split at ';' and then
// at '=' outside '...' or "..." (where \<quote> escapes), keys compared
// without case; a value is a quoted string (\\ and \<quote> escaped) or a
// word up to white space (\\ escaped); the last one counts.
func oraclePHPDisposition(cd string) (name, filename string) {
	if i := strings.IndexByte(cd, 0); i >= 0 {
		cd = cd[:i]
	}
	var pieces []string
	cur := []byte{}
	var q byte
	for i := 0; i < len(cd); i++ {
		c := cd[i]
		switch {
		case q != 0 && c == '\\' && i+1 < len(cd) && cd[i+1] == q:
			cur = append(cur, c, q)
			i++
		case q != 0 && c == q:
			q = 0
			cur = append(cur, c)
		case q != 0:
			cur = append(cur, c)
		case c == '"' || c == '\'':
			q = c
			cur = append(cur, c)
		case c == ';':
			pieces = append(pieces, string(cur))
			cur = cur[:0]
		default:
			cur = append(cur, c)
		}
	}
	pieces = append(pieces, string(cur))
	for _, p := range pieces {
		p = strings.TrimLeft(p, " \t\r\n\v\f")
		k, v, ok := oracleCutUnquoted(p, '=')
		if !ok {
			continue
		}
		v = strings.TrimLeft(strings.TrimLeft(v, "="), " \t\r\n\v\f")
		switch strings.ToLower(k) {
		case "name":
			name = oracleConfWord(v)
		case "filename":
			filename = oracleConfWord(v)
		}
	}
	return name, filename
}

// oracleCutUnquoted cuts s at the first sep outside quotes.
func oracleCutUnquoted(s string, sep byte) (string, string, bool) {
	var q byte
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case q != 0 && c == '\\' && i+1 < len(s) && s[i+1] == q:
			i++
		case q != 0 && c == q:
			q = 0
		case q == 0 && (c == '"' || c == '\''):
			q = c
		case q == 0 && c == sep:
			return s[:i], s[i+1:], true
		}
	}
	return s, "", strings.IndexByte(s, sep) >= 0
}

func oracleConfWord(v string) string {
	var b strings.Builder
	if v != "" && (v[0] == '"' || v[0] == '\'') {
		q := v[0]
		for i := 1; i < len(v) && v[i] != q; i++ {
			if v[i] == '\\' && i+1 < len(v) && (v[i+1] == '\\' || v[i+1] == q) {
				i++
			}
			b.WriteByte(v[i])
		}
		return b.String()
	}
	for i := 0; i < len(v) && strings.IndexByte(" \t\r\n\v\f", v[i]) < 0; i++ {
		if v[i] == '\\' && i+1 < len(v) && v[i+1] == '\\' {
			i++
		}
		b.WriteByte(v[i])
	}
	return b.String()
}

// oracleMPDelimiters counts the lines of s that are delimiter lines of the
// boundary "x" by RFC 2046 with any line end (and transport padding).
func oracleMPDelimiters(s string) int {
	n := 0
	for _, l := range strings.SplitAfter(s, "\n") {
		l = strings.TrimSuffix(strings.TrimSuffix(l, "\n"), "\r")
		if l, ok := strings.CutPrefix(l, "--x"); ok {
			l = strings.TrimPrefix(l, "--")
			if strings.Trim(l, " \t") == "" {
				n++
			}
		}
	}
	return n
}
