package legacy

import (
	"strings"
	"unicode/utf16"
	"unicode/utf8"
)

// maxDepth is the deepest nesting accepted in a JSON body.
const maxDepth = 10000

// member is one member of a JSON body's top-level object.
type member struct {
	start, end int   // from the key's opening quote to the end of the value
	val        int   // where the value starts
	p          param // what the key is
}

var (
	errJSON      = "the JSON body is not valid JSON"
	errJSONDepth = "the JSON body is nested too deeply"
)

// jsonSniff reports whether the first byte of s after JSON whitespace is
// '{': such a body is read as a JSON object whatever its Content-Type says.
func jsonSniff(s string) bool {
	i := skipWS(s, 0)
	return i < len(s) && s[i] == '{'
}

// scanObject parses s (one JSON object, whitespace around it allowed) and
// appends its top-level members to ms. Only USER_LOGIN, USER_HASH and, on
// auth.php, type are told apart; key names are compared exactly, after
// unescaping, as json_decode gives them.
func scanObject(s string, authPHP bool, ms []member) ([]member, *Error) {
	sc := scope{authPHP: authPHP}
	i := skipWS(s, 0)
	if i >= len(s) || s[i] != '{' {
		return ms, Malformed(errJSON)
	}
	i = skipWS(s, i+1)
	if i < len(s) && s[i] == '}' {
		i++
	} else {
		for {
			if len(ms) >= maxParams {
				return ms, Malformed("too many members in the JSON body")
			}
			if i >= len(s) || s[i] != '"' {
				return ms, Malformed(errJSON)
			}
			start := i
			end, esc, ok := scanString(s, i)
			if !ok {
				return ms, Malformed(errJSON)
			}
			p := jsonKey(s[start+1:end-1], esc, sc)
			i = skipWS(s, end)
			if i >= len(s) || s[i] != ':' {
				return ms, Malformed(errJSON)
			}
			i = skipWS(s, i+1)
			val := i
			var e *Error
			if i, e = skipValue(s, i); e != nil {
				return ms, e
			}
			ms = append(ms, member{start: start, end: i, val: val, p: p})
			i = skipWS(s, i)
			if i >= len(s) {
				return ms, Malformed(errJSON)
			}
			if s[i] == '}' {
				i++
				break
			}
			if s[i] != ',' {
				return ms, Malformed(errJSON)
			}
			i = skipWS(s, i+1)
		}
	}
	if skipWS(s, i) != len(s) {
		return ms, Malformed(errJSON)
	}
	return ms, nil
}

// jsonKey classifies a key given as the raw text between its quotes.
func jsonKey(raw string, esc bool, sc scope) param {
	if !esc {
		return sc.lookup(raw)
	}
	if len(raw) > 6*maxName {
		return pNone
	}
	k, ok := unquote(raw)
	if !ok {
		return pNone
	}
	return sc.lookup(k)
}

// skipWS returns the index of the first byte at or after i that is not
// JSON whitespace.
func skipWS(s string, i int) int {
	for i < len(s) {
		switch s[i] {
		case ' ', '\t', '\n', '\r':
			i++
		default:
			return i
		}
	}
	return i
}

// scanString checks the JSON string starting at s[i] == '"' and returns
// the index after its closing quote and whether it holds escapes.
func scanString(s string, i int) (end int, esc, ok bool) {
	for i++; i < len(s); i++ {
		switch c := s[i]; {
		case c == '"':
			return i + 1, esc, true
		case c == '\\':
			esc = true
			i++
			if i >= len(s) {
				return 0, false, false
			}
			switch s[i] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
			case 'u':
				if i+4 >= len(s) {
					return 0, false, false
				}
				for _, h := range []byte(s[i+1 : i+5]) {
					if _, ok := hexVal(h); !ok {
						return 0, false, false
					}
				}
				i += 4
			default:
				return 0, false, false
			}
		case c < 0x20:
			return 0, false, false
		}
	}
	return 0, false, false
}

// unquote decodes the raw content of a JSON string (without its quotes)
// already checked by scanString. It refuses unpaired surrogates, as PHP's
// json_decode does.
func unquote(raw string) (string, bool) {
	if strings.IndexByte(raw, '\\') < 0 {
		return raw, true
	}
	b := make([]byte, 0, len(raw))
	for i := 0; i < len(raw); i++ {
		c := raw[i]
		if c != '\\' {
			b = append(b, c)
			continue
		}
		i++
		switch raw[i] {
		case 'b':
			b = append(b, '\b')
		case 'f':
			b = append(b, '\f')
		case 'n':
			b = append(b, '\n')
		case 'r':
			b = append(b, '\r')
		case 't':
			b = append(b, '\t')
		case 'u':
			r := hex4(raw[i+1 : i+5])
			i += 4
			if utf16.IsSurrogate(r) {
				// A high surrogate must be followed by an escaped low one.
				if r >= 0xdc00 || i+6 >= len(raw) || raw[i+1] != '\\' || raw[i+2] != 'u' {
					return "", false
				}
				r2 := hex4(raw[i+3 : i+7])
				r = utf16.DecodeRune(r, r2)
				if r == utf8.RuneError {
					return "", false
				}
				i += 6
			}
			b = utf8.AppendRune(b, r)
		default: // '"', '\\', '/'
			b = append(b, raw[i])
		}
	}
	return string(b), true
}

func hex4(s string) rune {
	var r rune
	for i := 0; i < 4; i++ {
		h, _ := hexVal(s[i])
		r = r<<4 | rune(h)
	}
	return r
}

// skipValue checks the JSON value starting at s[i] and returns the index
// after it. Nesting is tracked on an explicit stack, so no input can make
// it recurse deeply.
func skipValue(s string, i int) (int, *Error) {
	var stackBuf [32]byte
	stack := stackBuf[:0]
	for {
		// A value starts at i.
		i = skipWS(s, i)
		if i >= len(s) {
			return 0, Malformed(errJSON)
		}
		switch c := s[i]; c {
		case '{', '[':
			if len(stack) >= maxDepth {
				return 0, Malformed(errJSONDepth)
			}
			j := skipWS(s, i+1)
			if j < len(s) && (c == '{' && s[j] == '}' || c == '[' && s[j] == ']') {
				i = j + 1
				break
			}
			stack = append(stack, c)
			i = j
			if c == '{' {
				var ok bool
				if i, ok = objectKey(s, i); !ok {
					return 0, Malformed(errJSON)
				}
			}
			continue
		case '"':
			end, _, ok := scanString(s, i)
			if !ok {
				return 0, Malformed(errJSON)
			}
			i = end
		case 't':
			if !strings.HasPrefix(s[i:], "true") {
				return 0, Malformed(errJSON)
			}
			i += 4
		case 'f':
			if !strings.HasPrefix(s[i:], "false") {
				return 0, Malformed(errJSON)
			}
			i += 5
		case 'n':
			if !strings.HasPrefix(s[i:], "null") {
				return 0, Malformed(errJSON)
			}
			i += 4
		default:
			end, ok := scanNumber(s, i)
			if !ok {
				return 0, Malformed(errJSON)
			}
			i = end
		}
		// A value ended at i: close containers, or go on to the next element.
		for {
			if len(stack) == 0 {
				return i, nil
			}
			i = skipWS(s, i)
			if i >= len(s) {
				return 0, Malformed(errJSON)
			}
			top := stack[len(stack)-1]
			if s[i] == ',' {
				i++
				if top == '{' {
					var ok bool
					if i, ok = objectKey(s, skipWS(s, i)); !ok {
						return 0, Malformed(errJSON)
					}
				}
				break
			}
			if top == '{' && s[i] == '}' || top == '[' && s[i] == ']' {
				stack = stack[:len(stack)-1]
				i++
				continue
			}
			return 0, Malformed(errJSON)
		}
	}
}

// objectKey checks `"key" :` at s[i] and returns the index after the colon.
func objectKey(s string, i int) (int, bool) {
	if i >= len(s) || s[i] != '"' {
		return 0, false
	}
	end, _, ok := scanString(s, i)
	if !ok {
		return 0, false
	}
	i = skipWS(s, end)
	if i >= len(s) || s[i] != ':' {
		return 0, false
	}
	return i + 1, true
}

// scanNumber checks the JSON number at s[i] and returns the index after it.
func scanNumber(s string, i int) (int, bool) {
	if i < len(s) && s[i] == '-' {
		i++
	}
	switch {
	case i < len(s) && s[i] == '0':
		i++
	case i < len(s) && '1' <= s[i] && s[i] <= '9':
		i = digits(s, i)
	default:
		return 0, false
	}
	if i < len(s) && s[i] == '.' {
		j := digits(s, i+1)
		if j == i+1 {
			return 0, false
		}
		i = j
	}
	if i < len(s) && (s[i] == 'e' || s[i] == 'E') {
		i++
		if i < len(s) && (s[i] == '+' || s[i] == '-') {
			i++
		}
		j := digits(s, i)
		if j == i {
			return 0, false
		}
		i = j
	}
	return i, true
}

func digits(s string, i int) int {
	for i < len(s) && '0' <= s[i] && s[i] <= '9' {
		i++
	}
	return i
}

// appendKeptMembers appends the object s without its credential members
// to dst: every other byte (whitespace, order, number forms) stays, and
// each kept member keeps the separator that preceded it.
func appendKeptMembers(dst []byte, s string, ms []member) []byte {
	dst = append(dst, s[:ms[0].start]...)
	first := true
	for k, m := range ms {
		if m.p.isCred() {
			continue
		}
		if !first {
			dst = append(dst, s[ms[k-1].end:m.start]...)
		}
		dst = append(dst, s[m.start:m.end]...)
		first = false
	}
	return append(dst, s[ms[len(ms)-1].end:]...)
}
