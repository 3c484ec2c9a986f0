package legacy

import (
	"net/http"
	"strings"
)

// cookieItem is one item of a Cookie header line: the bytes [a, b) between
// two separators (';' or ','), b being the next separator or the end.
// phpStart: the item starts one of PHP's items (the line's first, or after
// a ';'); a PHP item runs to the next ';'.
type cookieItem struct {
	a, b     int
	drop     bool
	phpStart bool
}

// sessionIDs gathers the session cookie's values and checks they agree.
type sessionIDs struct {
	id  string
	err *Error
}

// fail records e, unless an error is already recorded.
func (s *sessionIDs) fail(e *Error) {
	if s.err == nil {
		s.err = e
	}
}

func (s *sessionIDs) add(v string) {
	if len(v) >= 2 && v[0] == '"' && v[len(v)-1] == '"' {
		v = v[1 : len(v)-1]
	}
	if v == "" || s.err != nil {
		return // an emptied cookie carries nothing; it is removed all the same
	}
	if len(v) > maxValue {
		s.err = Malformed("the session cookie is too long")
		return
	}
	for i := 0; i < len(v); i++ {
		if c := v[i]; c < 0x20 || c == 0x7f {
			s.err = Malformed("the session cookie contains control characters")
			return
		}
	}
	if s.id != "" && s.id != v {
		s.err = Malformed("more than one session cookie, with different values")
		return
	}
	s.id = v
}

// stripCookies removes the session cookie called name from every Cookie
// line of h. It returns the new lines (changed false: leave h as it is) and
// the cookie's value.
//
// PHP (main/php_variables.c) splits a Cookie line at ';' only, skips a
// name's leading white space and mangles it as a query name, so
// "session.id", "session id" and "session[id" are all session_id (names are
// not percent-decoded and keep their case); "session_id[]" is an array,
// which is refused. Old clients re-send raw Set-Cookie lines joined by
// commas, and PHP's built-in server joins several Cookie lines with ", ",
// so each of PHP's items is also looked into at ',': an item that holds
// the session cookie, first or after a comma, is removed whole (what PHP
// reads from it carries the session id), and so are the items right after
// it that hold only Set-Cookie attributes (path, expires, ...), unless PHP
// ignores the item that held it (a repeated name). A name that
// is the session cookie's only once white space after it is trimmed (PHP
// reads "session_id =" as session_id_) is refused. Every other byte stays,
// so PHP reads every other cookie as before.
func stripCookies(h http.Header, name string) (lines []string, changed bool, id string, err *Error) {
	vals := h["Cookie"]
	if name, _ = phpVarName(name); name == "" {
		return nil, false, "", nil
	}
	hit := false
	for _, v := range vals {
		if containsMangled(v, name) {
			hit = true
			break
		}
	}
	if !hit {
		return nil, false, "", nil
	}
	var ids sessionIDs
	var itemBuf [8]cookieItem
	lines = make([]string, 0, len(vals))
	for li, v := range vals {
		if !containsMangled(v, name) {
			lines = append(lines, v)
			continue
		}
		items := splitCookieLine(v, itemBuf[:0])
		drops := 0
		for k := 0; k < len(items); k++ {
			n, val, eq := strings.Cut(v[items[k].a:items[k].b], "=")
			if items[k].phpStart {
				// PHP's own item: its name runs to the first '=', commas and all.
				end := len(v)
				if j := strings.IndexByte(v[items[k].a:], ';'); j >= 0 {
					end = items[k].a + j
				}
				var rest string
				var peq bool
				n, rest, peq = strings.Cut(v[items[k].a:end], "=")
				if !eq && peq {
					// The name ran over a comma ("session id\x00,=v"): the
					// value is what follows PHP's '=', to the next separator.
					val, _, _ = strings.Cut(rest, ",")
				}
			} else if !eq || trimOWS(val) == "" {
				continue // after a comma, inside what PHP reads: only a value needs hiding
			}
			pn, array := phpVarName(trimSpaceLeft(n))
			if pn != name {
				if tn, _ := phpVarName(trimSpaceLeft(trimOWS(n))); tn == name {
					ids.fail(Malformed("the session cookie's name is followed by white space"))
				}
				continue
			}
			if array {
				ids.fail(Malformed("the session cookie is given as an array"))
			}
			ids.add(trimOWS(val))
			drops++
			// PHP reads the session cookie itself only where it starts PHP's
			// item; after a comma it is inside another cookie's value.
			own := items[k].phpStart
			// The whole PHP item goes: back to its start, on to its end.
			start := k
			for !items[start].phpStart {
				start--
			}
			// After a comma, the attributes go too when PHP reads the value
			// that carries the session cookie: not when the item repeats an
			// earlier cookie's name (PHP keeps a name's first value).
			own = own || !phpNameSeen(vals[:li], v, items[start].a)
			for i := start; i < len(items) && (i == start || !items[i].phpStart); i++ {
				items[i].drop = true
				k = i
			}
			// Then the PHP items that are only Set-Cookie attributes.
			for own && k+1 < len(items) {
				end := k + 1
				all := true
				for i := k + 1; i < len(items) && (i == k+1 || !items[i].phpStart); i++ {
					all = all && isCookieAttr(v[items[i].a:items[i].b])
					end = i
				}
				if !all {
					break
				}
				for i := k + 1; i <= end; i++ {
					items[i].drop = true
				}
				k = end
			}
		}
		if drops == 0 {
			lines = append(lines, v)
			continue
		}
		changed = true
		if out := keptCookies(v, items); strings.Trim(out, " \t\r\n;,") != "" {
			lines = append(lines, out)
		}
	}
	if ids.err != nil {
		return nil, false, "", ids.err
	}
	return lines, changed, ids.id, nil
}

// containsMangled reports whether v may hold a cookie name that PHP reads
// as name (a mangled name): name's bytes in order, each '_' of it matched
// by '_', '.', ' ' or '['. A cheap filter before a line is split.
func containsMangled(v, name string) bool {
	if strings.Contains(v, name) {
		return true
	}
	if strings.IndexByte(name, '_') < 0 {
		return false
	}
	for i := 0; i+len(name) <= len(v); i++ {
		k := 0
		for ; k < len(name); k++ {
			c := v[i+k]
			if c != name[k] && (name[k] != '_' || c != '.' && c != ' ' && c != '[') {
				break
			}
		}
		if k == len(name) {
			return true
		}
	}
	return false
}

// splitCookieLine splits v into items at ';' and ','. A comma inside an
// Expires date ("expires=Wed, 21 Oct 2015 07:28:00 GMT") does not split.
func splitCookieLine(v string, items []cookieItem) []cookieItem {
	for i := 0; ; {
		j := i
		for ; j < len(v); j++ {
			if c := v[j]; c == ';' || c == ',' && !dateComma(v, i, j) {
				break
			}
		}
		items = append(items, cookieItem{a: i, b: j, phpStart: i == 0 || v[i-1] == ';'})
		if j == len(v) {
			return items
		}
		i = j + 1
	}
}

// dateComma reports whether the comma at v[j] is the one after the week
// day of an Expires attribute that starts at v[i].
func dateComma(v string, i, j int) bool {
	n, day, ok := strings.Cut(trimOWS(v[i:j]), "=")
	if !ok || !strings.EqualFold(trimOWS(n), "expires") {
		return false
	}
	day = trimOWS(day)
	if day == "" {
		return false
	}
	for k := 0; k < len(day); k++ {
		if c := day[k] | 0x20; c < 'a' || c > 'z' {
			return false
		}
	}
	rest := trimOWS(v[j+1:])
	return rest != "" && '0' <= rest[0] && rest[0] <= '9'
}

// cookieAttrs are the Set-Cookie attribute names.
var cookieAttrs = [...]string{"expires", "max-age", "domain", "path", "secure", "httponly",
	"samesite", "partitioned", "priority", "comment", "version"}

// isCookieAttr reports whether item is a Set-Cookie attribute.
func isCookieAttr(item string) bool {
	n, _, _ := strings.Cut(trimOWS(item), "=")
	n = trimOWS(n)
	for _, a := range cookieAttrs {
		if strings.EqualFold(n, a) {
			return true
		}
	}
	return false
}

// keptCookies rebuilds v from the items not dropped; each kept item keeps
// the separator that preceded it.
func keptCookies(v string, items []cookieItem) string {
	var b strings.Builder
	b.Grow(len(v))
	first := true
	for k, it := range items {
		if it.drop {
			continue
		}
		seg := v[it.a:it.b]
		if first {
			if k > 0 {
				seg = strings.TrimLeft(seg, " \t\r\n")
			}
			first = false
		} else {
			b.WriteByte(v[it.a-1])
		}
		b.WriteString(seg)
	}
	return b.String()
}

// trimOWS trims ASCII white space (space, tab, CR, LF), as Go's own
// cookie parser does.
func trimOWS(s string) string {
	for len(s) > 0 && isOWS(s[0]) {
		s = s[1:]
	}
	for len(s) > 0 && isOWS(s[len(s)-1]) {
		s = s[:len(s)-1]
	}
	return s
}

func isOWS(c byte) bool { return c == ' ' || c == '\t' || c == '\r' || c == '\n' }

// phpNameSeen reports whether the PHP cookie item of v starting at a
// repeats the name of an earlier item, in before (earlier Cookie lines) or
// in v before a: PHP keeps a cookie name's first value and ignores the rest.
func phpNameSeen(before []string, v string, a int) bool {
	end := len(v)
	if j := strings.IndexByte(v[a:], ';'); j >= 0 {
		end = a + j
	}
	n, _, _ := strings.Cut(v[a:end], "=")
	name, _ := phpVarName(trimSpaceLeft(n))
	if name == "" {
		return false
	}
	for _, line := range append(before[:len(before):len(before)], v[:a]) {
		for _, item := range strings.Split(line, ";") {
			in, _, _ := strings.Cut(item, "=")
			if pn, _ := phpVarName(trimSpaceLeft(in)); pn == name {
				return true
			}
		}
	}
	return false
}
