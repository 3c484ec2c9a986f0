package fakeamocrm

import (
	"bytes"
	"encoding/json"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"strconv"
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

	for _, k := range phpPairNames(rawQuery) {
		if n := matchName(phpName(k), names); n != "" {
			add(n, whereQuery)
		}
	}
	if len(body) > 0 {
		for _, k := range phpPairNames(string(body)) {
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
		ct := strings.Join(h.Values("Content-Type"), ", ") // as PHP's built-in server joins them
		for _, k := range append(multipartNames(ct, body), phpMultipartNames(ct, body)...) {
			if n := matchName(phpName(k), names); n != "" {
				add(n, whereMultipart)
			}
		}
	}
	for _, line := range h.Values("Cookie") {
		// Some clients join cookies (or whole Set-Cookie lines) with commas.
		// PHP skips a cookie name's leading white space and mangles it like
		// a query name: session.id and "session id" are session_id.
		for _, part := range strings.FieldsFunc(line, func(c rune) bool { return c == ';' || c == ',' }) {
			name, _, _ := strings.Cut(part, "=")
			if strings.EqualFold(phpName(strings.Trim(name, " \t\r\n\v\f")), "session_id") {
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

// phpPairNames returns the names of the name=value pairs of a query string
// or form body as PHP splits and decodes them: split at '&' only,
// percent-decoded with broken escapes kept ('+' a space). Unlike Go's
// url.ParseQuery it drops no pair (a ';' or a broken escape does not hide
// a name from PHP).
func phpPairNames(s string) []string {
	var names []string
	for _, pair := range strings.Split(s, "&") {
		if pair == "" {
			continue
		}
		name, _, _ := strings.Cut(pair, "=")
		names = append(names, phpURLDecode(name))
	}
	return names
}

// phpURLDecode decodes as PHP's urldecode: '+' is a space, %XX a byte, a
// broken escape stays as it is.
func phpURLDecode(s string) string {
	if !strings.ContainsAny(s, "%+") {
		return s
	}
	b := make([]byte, 0, len(s))
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '+':
			b = append(b, ' ')
		case c == '%' && i+2 < len(s) && isHex(s[i+1]) && isHex(s[i+2]):
			v, _ := strconv.ParseUint(s[i+1:i+3], 16, 8)
			b = append(b, byte(v))
			i += 2
		default:
			b = append(b, c)
		}
	}
	return string(b)
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

// phpName is the name PHP gives a query or form variable: cut at a NUL,
// leading spaces dropped, "USER_HASH[x]" is the array USER_HASH, and '.'
// and ' ' become '_'.
func phpName(k string) string {
	if i := strings.IndexByte(k, 0); i >= 0 {
		k = k[:i]
	}
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

// phpBoundary finds the multipart boundary the way PHP's main/rfc1867.c
// does, not by parsing the parameters: the first "boundary" in the
// Content-Type (with case, else without), then the first '=' after it; a
// quoted value runs to the next '"', any other to the first ',' or ';'. So
// "xboundary=AAA; boundary=BBB" gives AAA. ok is false when PHP finds none,
// or when the media type (cut at ';', ',' or a space, as main/SAPI.c cuts
// it) is not multipart/form-data.
func phpBoundary(ct string) (boundary string, ok bool) {
	mt := ct
	if i := strings.IndexAny(mt, ";, "); i >= 0 {
		mt = mt[:i]
	}
	if !strings.EqualFold(strings.TrimSpace(mt), "multipart/form-data") {
		return "", false
	}
	i := strings.Index(ct, "boundary")
	if i < 0 {
		if i = strings.Index(strings.ToLower(ct), "boundary"); i < 0 {
			return "", false
		}
	}
	j := strings.IndexByte(ct[i:], '=')
	if j < 0 {
		return "", false
	}
	v := ct[i+j+1:]
	if strings.HasPrefix(v, `"`) {
		end := strings.IndexByte(v[1:], '"')
		if end < 0 {
			return "", false
		}
		return v[1 : 1+end], true
	}
	if k := strings.IndexAny(v, ",;"); k >= 0 {
		v = v[:k]
	}
	return v, true
}

// phpMultipartNames returns the names of the fields (not the file uploads)
// PHP would put in $_POST from a multipart body, read the way rfc1867.c
// reads it: a part starts after a line that is "--boundary" (its line end
// and one '\r' removed, compared as a C string, so a NUL ends it); its
// header lines run to an empty line, a line starting with white space or
// holding no ':' continuing the header before it; its content ends at the
// next "\n--boundary" anywhere; then the next such line is looked for. A
// part with a filename parameter is an upload.
func phpMultipartNames(ct string, body []byte) []string {
	boundary, ok := phpBoundary(ct)
	if !ok {
		return nil
	}
	delim := "--" + boundary
	s := string(body)
	line := func(pos int) (string, int, bool) {
		j := strings.IndexByte(s[pos:], '\n')
		if j < 0 {
			return "", 0, false
		}
		l := s[pos : pos+j]
		if strings.HasSuffix(l, "\r") {
			l = l[:len(l)-1]
		}
		return l, pos + j + 1, true
	}
	var names []string
	pos := 0
	for pos < len(s) {
		found := false
		for !found {
			l, next, ok := line(pos)
			if !ok {
				return names
			}
			pos = next
			if i := strings.IndexByte(l, 0); i >= 0 {
				l = l[:i]
			}
			found = l == delim
		}
		var cd string
		inCD := false
		for {
			l, next, ok := line(pos)
			if !ok {
				return names
			}
			pos = next
			if i := strings.IndexByte(l, 0); i >= 0 {
				l = l[:i]
			}
			if l == "" {
				break
			}
			colon := -1
			if !isCSpace(l[0]) {
				colon = strings.IndexByte(l, ':')
			}
			switch {
			case colon >= 0:
				inCD = strings.EqualFold(l[:colon], "Content-Disposition") && cd == ""
				if inCD {
					cd = strings.TrimLeft(l[colon+1:], " \t\r\n\v\f")
				}
			case inCD:
				cd += l
			}
		}
		if name, file := phpDisposition(cd); name != "" && !file {
			names = append(names, name)
		}
		end := strings.Index(s[pos:], "\n"+delim)
		if end < 0 {
			return names
		}
		pos += end
	}
	return names
}

// phpDisposition reads the name and whether there is a filename from a
// Content-Disposition value: parameters split at ';' outside quotes, a
// key up to '=' compared without regard to case, a quoted value (a
// backslash escapes) or a bare one up to white space; the last one counts.
func phpDisposition(cd string) (name string, file bool) {
	for cd != "" {
		var pair string
		pair, cd = cutUnquoted(cd, ';')
		cd = strings.TrimLeft(cd, "; \t\r\n\v\f")
		key, val, ok := cutUnquoted2(strings.TrimLeft(pair, " \t\r\n\v\f"), '=')
		if !ok {
			continue
		}
		switch {
		case strings.EqualFold(key, "name"):
			name = confWord(val)
		case strings.EqualFold(key, "filename"):
			file = true
		}
	}
	return name, file
}

// cutUnquoted cuts s at the first sep outside single or double quotes.
func cutUnquoted(s string, sep byte) (before, after string) {
	b, a, _ := cutUnquoted2(s, sep)
	return b, a
}

func cutUnquoted2(s string, sep byte) (before, after string, found bool) {
	var quote byte
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case quote != 0 && c == '\\' && i+1 < len(s) && s[i+1] == quote:
			i++
		case quote != 0 && c == quote:
			quote = 0
		case quote == 0 && (c == '"' || c == '\''):
			quote = c
		case quote == 0 && c == sep:
			return s[:i], s[i+1:], true
		}
	}
	return s, "", false
}

// confWord reads a parameter value: a quoted string up to its closing
// quote, or a bare word up to white space.
func confWord(v string) string {
	v = strings.TrimLeft(v, " \t\r\n\v\f")
	if v == "" {
		return ""
	}
	if q := v[0]; q == '"' || q == '\'' {
		var b strings.Builder
		for i := 1; i < len(v); i++ {
			if v[i] == '\\' && i+1 < len(v) && (v[i+1] == q || v[i+1] == '\\') {
				i++
			} else if v[i] == q {
				break
			}
			b.WriteByte(v[i])
		}
		return b.String()
	}
	if i := strings.IndexAny(v, " \t\r\n\v\f"); i >= 0 {
		v = v[:i]
	}
	return v
}

func isCSpace(c byte) bool {
	return c == ' ' || c == '\t' || c == '\n' || c == '\v' || c == '\f' || c == '\r'
}
