package legacy

import (
	"net/http"
	"path"
	"strings"
)

// AuthPHPPath is the path of amoCRM's legacy authorization endpoint.
const AuthPHPPath = "/private/api/auth.php"

// Strip finds credentials in r and removes every copy in place
// (URL.RawQuery, RequestURI, Cookie header, body + ContentLength). Bytes
// without credentials are untouched; a body it did not need to read is not
// read.
//
// Credentials are read as amoCRM (PHP) reads them: USER_LOGIN and
// USER_HASH in the query string or a form body on any path, with PHP's
// decoding and name mangling ("USER.LOGIN", "USER%5FLOGIN", " USER_LOGIN",
// "USER_LOGIN[]" are all USER_LOGIN); as members of a top-level JSON object
// (a body whose first non-space byte is '{', whatever its Content-Type);
// login and api_key in the query or a form on paths holding /api/unsorted/;
// and the emulated session cookie (Options.SessionCookie) in any Cookie
// line, with its attributes when an old client re-sends a raw Set-Cookie
// line. A body is read only when it may hold credentials (a form, JSON,
// text/plain or untyped body, any body of auth.php, or a body of another
// media type whose first non-space byte, within its first 512 bytes, is
// '{'), at most Options.MaxBody bytes; it is then given back as a
// replayable body (GetBody is set), byte for byte when it held no
// credential. Other bodies are peeked at (their first bytes put back) and
// stream on unread; a request without a body keeps its Body.
//
// A multipart/form-data body, whose fields PHP puts in $_POST on any path,
// is read for them too: a part is a credential when its Content-Disposition
// name (read and mangled as PHP does) is one and it has no filename (a file
// part named USER_HASH is an upload, in $_FILES, and is kept). Each
// credential part is removed whole, its delimiter line with it; every other
// byte (preamble, other parts, closing delimiter, epilogue) is kept. A
// multipart body longer than MaxBody is not refused: its first MaxBody bytes
// are read and their credential parts removed (ContentLength follows when
// known), and the rest streams on unread through a guard that reads the part
// headers as they pass and ends the body with a 413 *Error, before a byte
// of the part is passed on, at a credential part beyond MaxBody (or a part
// PHP would read after the closing delimiter). So large uploads go through,
// and a credential never does: the request then fails upstream instead.
// A credential part cut by MaxBody is a 413 at once. Such a body is not
// replayable (GetBody is nil).
//
// Errors are *Error: 400 for malformed credentials (conflicting copies, a
// login without a key, broken encoding, arrays, control characters, values
// over 1 KiB, more than 10000 parameters, a JSON body that is not valid, a
// multipart body whose parts do not end or that has a part after its
// closing delimiter) and 413 for a body over MaxBody. On an error r is left as it was (a body
// already read is given back whole) and Found holds only AuthPHP and
// Format, so that the caller can answer in the right shape.
//
// Call Strip before anything parses the form: it removes credentials from
// r.Form and r.PostForm if they are set, but cannot read a body that
// ParseForm consumed.
func Strip(r *http.Request, o Options) (Found, error) {
	var f Found
	if r == nil {
		return f, nil
	}
	var p, q string
	if r.URL != nil {
		p, q = r.URL.Path, r.URL.RawQuery
	}
	p = cleanPath(p)
	f.AuthPHP = isAuthPHP(p)
	sc := scope{unsorted: isUnsorted(p), authPHP: f.AuthPHP}

	var c collector
	var rmBuf [4]span
	rm := rmBuf[:0]
	var e *Error
	if q != "" {
		if rm, e = c.scanPairs(q, sc, true, "query string", rm); e != nil {
			return failed(f, &c, e)
		}
	}

	var body, newBody []byte
	read, whole, bodyChanged := false, false, false
	boundary, cut := "", 0
	kind, ok := wantBody(r, f.AuthPHP)
	if ok {
		body, whole, read, e = readBody(r, o, kind == bodyMultipart, kind == bodySniff)
		if e != nil {
			return failed(f, &c, e)
		}
		if kind == bodySniff {
			kind = bodyJSON // a sniffed body that was read starts as a JSON object
		}
	}
	if read {
		c.clone = true
		if kind == bodyMultipart {
			boundary, _ = multipartBoundary(contentType(r.Header))
			newBody, bodyChanged, cut, e = c.scanMultipart(bytesString(body), boundary, sc, whole)
		} else {
			newBody, bodyChanged, e = c.scanBody(bytesString(body), kind, sc)
		}
		c.clone = false
		if e != nil {
			giveBack(r, body, whole)
			return failed(f, &c, e)
		}
	}

	lines, cookiesChanged, sid, e := stripCookies(r.Header, o.sessionCookie())
	if e == nil {
		e = c.finish()
	}
	if e != nil {
		if read {
			giveBack(r, body, whole)
		}
		return failed(f, &c, e)
	}

	if len(rm) > 0 {
		setQuery(r, q, rm)
	}
	switch {
	case read && !whole && bodyChanged:
		setStream(r, newBody, body[cut:], boundary, sc, cut-len(newBody))
	case read && !whole:
		setStream(r, body[:cut], body[cut:], boundary, sc, 0)
	case read && bodyChanged:
		setBody(r, newBody, true)
	case read:
		setBody(r, body, false)
	}
	if cookiesChanged {
		if len(lines) == 0 {
			delete(r.Header, "Cookie")
		} else {
			r.Header["Cookie"] = lines
		}
	}
	if len(rm) > 0 || bodyChanged {
		cleanForms(r, sc)
	}

	f.Format = format(f, &c)
	f.SessionID = sid
	switch {
	case c.found():
		f.Kind, f.Login, f.Key = Key, c.login, c.key
	case sid != "":
		f.Kind = Session
	}
	return f, nil
}

func failed(f Found, c *collector, e *Error) (Found, error) {
	return Found{AuthPHP: f.AuthPHP, Format: format(f, c)}, e
}

func format(f Found, c *collector) Format {
	if f.AuthPHP && c.jsonFormat {
		return JSON
	}
	return XML
}

// cleanPath resolves "//", "/./" and "/../" as amoCRM's front server would
// before matching the path; clean paths are returned as they are.
func cleanPath(p string) string {
	if !strings.Contains(p, "//") && !strings.Contains(p, "/.") {
		return p
	}
	c := path.Clean(p)
	if strings.HasSuffix(p, "/") && c != "/" {
		c += "/"
	}
	return c
}

// isAuthPHP reports whether the clean path p runs auth.php (also with a
// PATH_INFO after it).
func isAuthPHP(p string) bool {
	return strings.HasPrefix(p, AuthPHPPath) && (len(p) == len(AuthPHPPath) || p[len(AuthPHPPath)] == '/')
}

// isUnsorted reports whether the clean path p is an old /api/unsorted/
// endpoint, where login and api_key are credentials.
func isUnsorted(p string) bool {
	return strings.Contains(p, "/api/unsorted/") || strings.HasSuffix(p, "/api/unsorted")
}

// setQuery removes the pairs rm from the query q of r, and keeps
// RequestURI in step. RequestURI and RawQuery share one allocation.
func setQuery(r *http.Request, q string, rm []span) {
	prefix := ""
	hasURI := false
	if i := strings.IndexByte(r.RequestURI, '?'); i >= 0 {
		prefix, hasURI = r.RequestURI[:i], true
	}
	b := make([]byte, 0, len(prefix)+1+len(q))
	b = append(b, prefix...)
	b = append(b, '?')
	uri := bytesString(appendKeptPairs(b, q, rm)) // b is not touched again
	nq := uri[len(prefix)+1:]
	r.URL.RawQuery = nq
	if nq == "" {
		r.URL.ForceQuery = false
	}
	if hasURI {
		if nq == "" {
			r.RequestURI = prefix
		} else {
			r.RequestURI = uri
		}
	}
}

// cleanForms deletes credentials from r.Form and r.PostForm when something
// parsed them before Strip.
func cleanForms(r *http.Request, sc scope) {
	for _, form := range [...]map[string][]string{r.Form, r.PostForm} {
		for k := range form {
			if p, _ := classifyName(k, false, sc); p.isCred() {
				delete(form, k)
			}
		}
	}
}
