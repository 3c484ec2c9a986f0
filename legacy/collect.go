package legacy

import "strings"

// collector gathers the credentials found in every part of a request and
// checks that all copies agree.
type collector struct {
	login, key   string
	loginP, keyP param // the name each half was first seen under; pNone: not seen
	jsonFormat   bool  // type=json was seen (auth.php)
	clone        bool  // values are read from a body buffer: copy them when kept
}

// add records the decoded value v of the credential parameter p; raw tells
// that v is the undecoded text itself, a view into the request.
func (c *collector) add(p param, v string, raw bool) *Error {
	if e := checkValue(p, v); e != nil {
		return e
	}
	have, seen := &c.login, &c.loginP
	if p.isKey() {
		have, seen = &c.key, &c.keyP
	}
	if *seen != pNone {
		if v != *have {
			return conflict(*seen, p)
		}
		return nil
	}
	if c.clone && raw {
		v = strings.Clone(v) // do not keep the body buffer alive
	}
	*have, *seen = v, p
	return nil
}

func conflict(a, b param) *Error {
	if a == b {
		return Malformed(a.String() + " is given more than once with different values")
	}
	return Malformed(a.String() + " and " + b.String() + " disagree")
}

// partner names the other half of the credential p belongs to.
func partner(p param) string {
	switch p {
	case pUserLogin:
		return pUserHash.String()
	case pUserHash:
		return pUserLogin.String()
	case pLogin:
		return pAPIKey.String()
	case pAPIKey:
		return pLogin.String()
	}
	return ""
}

// finish checks that a credential, if any, is complete.
func (c *collector) finish() *Error {
	switch {
	case c.loginP != pNone && c.keyP == pNone:
		return Malformed(c.loginP.String() + " is given without " + partner(c.loginP))
	case c.keyP != pNone && c.loginP == pNone:
		return Malformed(c.keyP.String() + " is given without " + partner(c.keyP))
	}
	return nil
}

// found reports whether a complete credential was collected.
func (c *collector) found() bool { return c.loginP != pNone && c.keyP != pNone }
