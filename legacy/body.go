package legacy

import (
	"bytes"
	"errors"
	"io"
	"net/http"
	"strconv"
	"strings"
	"unicode/utf8"
	"unsafe"
)

// bodyKind is how a body that may hold credentials is read.
type bodyKind uint8

const (
	bodyForm      bodyKind = iota + 1 // application/x-www-form-urlencoded
	bodyJSON                          // a JSON media type: only an object can hold credentials
	bodyLoose                         // no or a wrong media type: a JSON object, else a form
	bodyMultipart                     // multipart/form-data: the credential parts are removed
	bodySniff                         // any other media type: read only if it starts as a JSON object
)

// maxSniff is the most leading whitespace peekJSON looks through for the
// '{' of a JSON object in a body of another media type.
const maxSniff = 512

// wantBody tells whether r's body may hold credentials, and how to read it.
// Bodies of other media types are only peeked at (bodySniff): see
// peekJSON.
func wantBody(r *http.Request, authPHP bool) (bodyKind, bool) {
	if r.Body == nil || r.Body == http.NoBody {
		return 0, false
	}
	if r.Method == "" || r.Method == http.MethodGet || r.Method == http.MethodHead {
		if r.ContentLength <= 0 && !chunked(r) {
			return 0, false
		}
	}
	ct := r.Header.Get("Content-Type")
	mt := mediaType(ct)
	switch {
	case multipartBoundary(ct) != "":
		// PHP reads a multipart body into $_POST; php://input is empty.
		return bodyMultipart, true
	case strings.EqualFold(mt, "application/x-www-form-urlencoded"):
		return bodyForm, true
	case isJSONType(mt):
		return bodyJSON, true
	case mt == "", strings.EqualFold(mt, "text/plain"), authPHP:
		return bodyLoose, true
	}
	return bodySniff, true
}

// peekJSON reads the start of r's body, up to its first byte that is not
// JSON whitespace (at most maxSniff bytes), and tells whether that byte is
// '{'. amoCRM reads a JSON body whatever its Content-Type says (clients
// misspell it), so such a body is read as JSON. The bytes peeked at are put
// back in front of the rest (r.Body closes the original), so a body that is
// not read further streams on byte for byte. A read error ends the peek: it
// comes again to whoever reads the rest.
func peekJSON(r *http.Request) bool {
	buf := make([]byte, 0, maxSniff)
	json := false
	for len(buf) < cap(buf) {
		n, err := r.Body.Read(buf[len(buf):cap(buf)])
		i := skipWS(bytesString(buf[len(buf):len(buf)+n]), 0)
		buf = buf[:len(buf)+n]
		if i < n {
			json = buf[len(buf)-n+i] == '{'
			break
		}
		if err != nil {
			break
		}
	}
	if len(buf) > 0 {
		orig := r.Body
		r.Body = &partBody{Reader: io.MultiReader(bytes.NewReader(buf), orig), orig: orig}
	}
	return json
}

func chunked(r *http.Request) bool {
	for _, te := range r.TransferEncoding {
		if strings.EqualFold(te, "chunked") {
			return true
		}
	}
	return false
}

// mediaType is the media type of a Content-Type value, without parameters.
func mediaType(ct string) string {
	if i := strings.IndexByte(ct, ';'); i >= 0 {
		ct = ct[:i]
	}
	return trimOWS(ct)
}

func isJSONType(mt string) bool {
	if len(mt) > 5 && strings.EqualFold(mt[len(mt)-5:], "+json") {
		return true
	}
	for _, t := range [...]string{"application/json", "text/json", "application/x-json", "text/x-json"} {
		if strings.EqualFold(mt, t) {
			return true
		}
	}
	return false
}

// readBody reads all of r.Body, at most max bytes. With partial, a longer
// body is no error: its first bytes (more than max) are returned with whole
// false, and r.Body reads on after them. On an error r.Body is given back
// whole: a reader of the bytes read followed by the rest.
func readBody(r *http.Request, max int64, partial bool) (buf []byte, whole bool, e *Error) {
	if r.ContentLength > max && !partial {
		return nil, false, TooLarge()
	}
	size := int64(512)
	if r.ContentLength > 0 {
		size = r.ContentLength + 1 // room to see EOF without growing
	}
	size = min(size, max+1)
	buf = make([]byte, 0, size)
	var rerr error
	for int64(len(buf)) <= max {
		if len(buf) == cap(buf) {
			buf = append(buf, 0)[:len(buf)]
		}
		n, err := r.Body.Read(buf[len(buf):min(int64(cap(buf)), max+1)])
		buf = buf[:len(buf)+n]
		if err == io.EOF {
			return buf, true, nil
		}
		if err != nil {
			rerr = err
			break
		}
	}
	if rerr == nil && partial {
		return buf, false, nil
	}
	giveBack(r, buf, false)
	var mbe *http.MaxBytesError
	if rerr == nil || errors.As(rerr, &mbe) {
		return nil, false, TooLarge()
	}
	return nil, false, Malformed("the request body could not be read")
}

// giveBack makes r's body what it was: buf, the bytes read (all of the body
// when whole), then the rest.
func giveBack(r *http.Request, buf []byte, whole bool) {
	if whole {
		setBody(r, buf, false)
		return
	}
	orig := r.Body
	r.Body = &partBody{Reader: io.MultiReader(bytes.NewReader(buf), orig), orig: orig}
}

// partBody gives back a body that was read in part.
type partBody struct {
	io.Reader
	orig io.Closer
}

func (b *partBody) Close() error { return b.orig.Close() }

// bufBody is a body that was read whole; closing it closes the original.
type bufBody struct {
	bytes.Reader
	orig io.Closer
}

func (b *bufBody) Close() error { return b.orig.Close() }

// setBody makes b r's body. When changed, the length headers follow it.
func setBody(r *http.Request, b []byte, changed bool) {
	nb := &bufBody{orig: r.Body}
	nb.Reset(b)
	r.Body = nb
	r.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil }
	if !changed {
		return
	}
	r.ContentLength = int64(len(b))
	r.TransferEncoding = nil
	if r.Header != nil {
		r.Header.Del("Transfer-Encoding")
		r.Header.Set("Content-Length", strconv.Itoa(len(b)))
	}
}

// bytesString views b as a string without copying. b must not change
// afterwards: Strip never writes to a body buffer once it is read.
func bytesString(b []byte) string {
	return unsafe.String(unsafe.SliceData(b), len(b))
}

// scanBody finds credentials in the body s and returns the body without
// them (changed false: s holds none and stays as it is).
func (c *collector) scanBody(s string, kind bodyKind, sc scope) (out []byte, changed bool, err *Error) {
	if jsonSniff(s) {
		return c.scanJSONBody(s, kind, sc)
	}
	if kind == bodyJSON {
		return nil, false, nil // not an object: nothing PHP would read as a credential
	}
	var rmBuf [4]span
	rm, e := c.scanPairs(s, sc, kind == bodyForm, "body", rmBuf[:0])
	if e != nil {
		return nil, false, e
	}
	if len(rm) == 0 {
		return nil, false, nil
	}
	return appendKeptPairs(make([]byte, 0, len(s)), s, rm), true, nil
}

func (c *collector) scanJSONBody(s string, kind bodyKind, sc scope) ([]byte, bool, *Error) {
	var msBuf [8]member
	ms, e := scanObject(s, sc.authPHP, msBuf[:0])
	if e != nil {
		return nil, false, e
	}
	if kind == bodyForm {
		// PHP parses a form-typed body as a form whatever it holds.
		var probe collector
		if rm, _ := probe.scanPairs(s, sc, false, "body", nil); len(rm) > 0 {
			return nil, false, Malformed("the body is a JSON object that also reads as a form with credentials")
		}
	}
	drops := 0
	var first *Error
	for _, m := range ms {
		if m.p == pNone {
			continue
		}
		str := s[m.val] == '"'
		v := ""
		ok := false
		if str {
			// Like json_decode, refuse what is not UTF-8.
			v, ok = unquote(s[m.val+1 : m.end-1])
			ok = ok && utf8.ValidString(v)
		}
		if m.p == pType {
			if ok && strings.EqualFold(v, "json") {
				c.jsonFormat = true
			}
			continue
		}
		drops++
		var e *Error
		switch {
		case !str:
			e = Malformed(m.p.String() + " must be a JSON string")
		case !ok:
			e = Malformed(m.p.String() + " is not a valid JSON string")
		default:
			e = c.add(m.p, v, v == s[m.val+1:m.end-1])
		}
		if first == nil {
			first = e
		}
	}
	if first != nil {
		return nil, false, first
	}
	if drops == 0 {
		return nil, false, nil
	}
	return appendKeptMembers(make([]byte, 0, len(s)), s, ms), true, nil
}
