package legacy

import "strings"

// param is a parameter the package cares about.
type param uint8

const (
	pNone      param = iota
	pUserLogin       // USER_LOGIN
	pUserHash        // USER_HASH
	pLogin           // login: a credential on /api/unsorted/ only
	pAPIKey          // api_key: a credential on /api/unsorted/ only
	pType            // type: auth.php's answer format
)

func (p param) String() string {
	switch p {
	case pUserLogin:
		return "USER_LOGIN"
	case pUserHash:
		return "USER_HASH"
	case pLogin:
		return "login"
	case pAPIKey:
		return "api_key"
	case pType:
		return "type"
	}
	return ""
}

// isLogin reports whether p names the login half of a credential.
func (p param) isLogin() bool { return p == pUserLogin || p == pLogin }

// isKey reports whether p names the key half of a credential.
func (p param) isKey() bool { return p == pUserHash || p == pAPIKey }

// isCred reports whether p is either half of a credential.
func (p param) isCred() bool { return p.isLogin() || p.isKey() }

// scope tells which names count where.
type scope struct {
	unsorted bool // login and api_key are credentials (query and form only)
	authPHP  bool // type is looked for
}

// lookup returns the param that the PHP variable name n is, in scope s.
// Names are case-sensitive, as PHP's are.
func (s scope) lookup(n string) param {
	switch n {
	case "USER_LOGIN":
		return pUserLogin
	case "USER_HASH":
		return pUserHash
	case "login":
		if s.unsorted {
			return pLogin
		}
	case "api_key":
		if s.unsorted {
			return pAPIKey
		}
	case "type":
		if s.authPHP {
			return pType
		}
	}
	return pNone
}

// mayStart reports whether a raw (still encoded) parameter name starting
// with c can become a name in scope s: a cheap filter before classifyName.
func (s scope) mayStart(c byte) bool {
	switch c {
	case 'U', '%', '+', ' ':
		return true
	case 'l', 'a':
		return s.unsorted
	case 't':
		return s.authPHP
	}
	return false
}

// maxName is the longest name lookup can match ("USER_LOGIN").
const maxName = 10

// classifyName returns the param that PHP registers for the parameter name
// raw, and whether PHP makes it an array. When encoded, raw is still
// percent-encoded as in a query string or form body, and is decoded as PHP's
// urldecode does ('+' is a space; a broken escape stays as it is).
//
// PHP then (main/php_variables.c): cuts the name at a NUL byte, skips
// leading spaces, turns ' ' and '.' into '_' up to the first '['; a '['
// followed somewhere by ']' makes an array under the name before it, while
// an unmatched '[' becomes '_' too and so do ' ', '.' and '[' after it; an
// empty name is dropped. So "USER.LOGIN", " USER_LOGIN", "USER[LOGIN",
// "USER%5FLOGIN" and "USER_LOGIN[x]" are all USER_LOGIN.
func classifyName(raw string, encoded bool, s scope) (p param, array bool) {
	var buf [maxName]byte
	n := 0
	base := 0
	leading := true
	bracket := false
	over := false
	for i := 0; i < len(raw); i++ {
		c := raw[i]
		if encoded {
			switch c {
			case '+':
				c = ' '
			case '%':
				if i+2 < len(raw) {
					if h, ok := unhex(raw[i+1], raw[i+2]); ok {
						c = h
						i += 2
					}
				}
			}
		}
		if c == 0 {
			break
		}
		if leading {
			if c == ' ' {
				continue
			}
			leading = false
		}
		if bracket {
			if c == ']' {
				return s.lookup(string(buf[:base])), true
			}
			if c == ' ' || c == '.' || c == '[' {
				c = '_'
			}
		} else {
			switch c {
			case '[':
				if n == 0 {
					return pNone, false // PHP drops an empty name
				}
				bracket = true
				base = n
				c = '_'
			case ' ', '.':
				c = '_'
			}
		}
		if n == len(buf) {
			if !bracket {
				return pNone, false // too long to be a name we know
			}
			over = true // only a later ']' can still make it one
			continue
		}
		buf[n] = c
		n++
	}
	if over || n == 0 {
		return pNone, false
	}
	return s.lookup(string(buf[:n])), false
}

func unhex(a, b byte) (byte, bool) {
	x, ok1 := hexVal(a)
	y, ok2 := hexVal(b)
	return x<<4 | y, ok1 && ok2
}

func hexVal(c byte) (byte, bool) {
	switch {
	case '0' <= c && c <= '9':
		return c - '0', true
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10, true
	case 'A' <= c && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}

// decodeValue percent-decodes a credential value ('+' is a space). Unlike
// PHP it refuses a broken escape: a credential must be unambiguous.
func decodeValue(raw string) (string, bool) {
	plain := true
	for i := 0; i < len(raw); i++ {
		if raw[i] == '%' || raw[i] == '+' {
			plain = false
			break
		}
	}
	if plain {
		return raw, true
	}
	b := make([]byte, 0, len(raw))
	for i := 0; i < len(raw); i++ {
		c := raw[i]
		switch c {
		case '+':
			c = ' '
		case '%':
			if i+2 >= len(raw) {
				return "", false
			}
			h, ok := unhex(raw[i+1], raw[i+2])
			if !ok {
				return "", false
			}
			c = h
			i += 2
		}
		b = append(b, c)
	}
	return string(b), true
}

// decodeLenient decodes as PHP's urldecode does: a broken escape stays.
func decodeLenient(raw string) string {
	if v, ok := decodeValue(raw); ok {
		return v
	}
	b := make([]byte, 0, len(raw))
	for i := 0; i < len(raw); i++ {
		c := raw[i]
		switch c {
		case '+':
			c = ' '
		case '%':
			if i+2 < len(raw) {
				if h, ok := unhex(raw[i+1], raw[i+2]); ok {
					c = h
					i += 2
				}
			}
		}
		b = append(b, c)
	}
	return string(b)
}

// maxValue is the longest credential value accepted; logins and 40-hex
// keys are far shorter.
const maxValue = 1024

// checkValue returns why the decoded credential value v of p is refused,
// or nil. The text names the parameter, never the value.
func checkValue(p param, v string) *Error {
	if v == "" {
		return Malformed(p.String() + " is empty")
	}
	if len(v) > maxValue {
		return Malformed(p.String() + " is too long")
	}
	for i := 0; i < len(v); i++ {
		if c := v[i]; c < 0x20 || c == 0x7f {
			return Malformed(p.String() + " contains control characters")
		}
	}
	return nil
}

// phpVarName is the name PHP registers the (already decoded) variable name
// raw under, as classifyName reads it but for any name: cut at a NUL byte,
// leading spaces skipped, ' ' and '.' turned into '_' up to the first '[';
// a '[' with a ']' after it makes an array under the name before it
// (array true), an unmatched one becomes '_' as do ' ', '.' and '[' after
// it. An empty name is "" (PHP drops it). A name PHP keeps as it is is
// returned without a copy.
func phpVarName(raw string) (name string, array bool) {
	if i := strings.IndexByte(raw, 0); i >= 0 {
		raw = raw[:i]
	}
	for raw != "" && raw[0] == ' ' {
		raw = raw[1:]
	}
	i := strings.IndexAny(raw, " .[")
	if i < 0 {
		return raw, false
	}
	b := []byte(raw)
	for ; i < len(b); i++ {
		switch b[i] {
		case ' ', '.':
			b[i] = '_'
		case '[':
			if i == 0 {
				return "", false
			}
			if strings.IndexByte(raw[i+1:], ']') >= 0 {
				return string(b[:i]), true
			}
			for k := i; k < len(b); k++ {
				if c := b[k]; c == ' ' || c == '.' || c == '[' {
					b[k] = '_'
				}
			}
			return string(b), false
		}
	}
	return string(b), false
}
