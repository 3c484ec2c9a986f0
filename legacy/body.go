package legacy

import (
	"bytes"
	"errors"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
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

// maxSniff is the most leading whitespace readIn looks through for the
// '{' of a JSON object in a body of another media type.
const maxSniff = 512

// wantBody tells whether r's body may hold credentials, and how to read it.
// Bodies of other media types are only peeked at (bodySniff): see
// readIn. The media type and the multipart boundary are read as PHP reads
// them (see mediaType and multipartBoundary).
func wantBody(r *http.Request, authPHP bool) (bodyKind, bool) {
	if r.Body == nil || r.Body == http.NoBody {
		return 0, false
	}
	if r.Method == "" || r.Method == http.MethodGet || r.Method == http.MethodHead {
		// An HTTP/1.1 GET without Content-Length or Transfer-Encoding has
		// NoBody; over HTTP/2 a body without content-length has
		// ContentLength -1 and is read like any other.
		if r.ContentLength == 0 && !chunked(r) {
			return 0, false
		}
	}
	ct := contentType(r.Header)
	mt := mediaType(ct)
	switch {
	case strings.EqualFold(mt, "multipart/form-data"):
		if _, ok := multipartBoundary(ct); ok {
			// PHP reads a multipart body into $_POST; php://input is empty.
			return bodyMultipart, true
		}
		// No boundary PHP can use: PHP reads no field from it.
	case strings.EqualFold(mt, "application/x-www-form-urlencoded"):
		return bodyForm, true
	case isJSONType(mt):
		return bodyJSON, true
	case mt == "", strings.EqualFold(mt, "text/plain"), authPHP:
		return bodyLoose, true
	}
	return bodySniff, true
}

// contentType is r's Content-Type as PHP's built-in server hands it to
// PHP: several header lines joined with ", " (PHP then cuts the media type
// at the first ',', so the first line's media type counts, but it looks for
// the multipart boundary in all of them).
func contentType(h http.Header) string {
	vs := h["Content-Type"]
	switch len(vs) {
	case 0:
		return ""
	case 1:
		return vs[0]
	}
	return strings.Join(vs, ", ")
}

func chunked(r *http.Request) bool {
	for _, te := range r.TransferEncoding {
		if strings.EqualFold(te, "chunked") {
			return true
		}
	}
	return false
}

// mediaType is the media type of a Content-Type value as PHP reads it
// (main/SAPI.c, sapi_read_post_data): everything before the first ';', ','
// or space, compared by the caller without regard to case. So
// "application/x-www-form-urlencoded,text/plain" and
// "application/x-www-form-urlencoded text/plain" are forms. Tabs and other
// white space around it are trimmed (Go's server trims them from a header
// value before PHP, behind the proxy, would see it).
func mediaType(ct string) string {
	if i := strings.IndexAny(ct, ";, "); i >= 0 {
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

// bodyRead is what reading (the start of) a body gave.
type bodyRead struct {
	buf  []byte // the bytes read
	eof  bool   // buf is the whole body
	err  error  // a read error other than io.EOF, if any
	json bool   // a sniffed body starts as a JSON object (only with sniff)
}

// initialBuf is the most a body buffer holds before a byte arrives: it
// grows with the bytes received, never with the declared Content-Length.
const initialBuf = 4 << 10

// readIn reads src, a request body, into a buffer that grows with the
// bytes received (at most doubling what has arrived), until EOF, a read
// error, or more than most bytes. hint is the declared length (-1 when
// unknown): the buffer never outgrows it + 1 while the body keeps to it.
// With sniff it first reads only up to the first byte that is not JSON
// white space (within maxSniff bytes) and goes on only if that byte is '{'
// (json): amoCRM reads a JSON body whatever its Content-Type says. stop,
// when set, ends the reading once a Read returns.
func readIn(src io.Reader, most, hint int64, sniff bool, stop *atomic.Bool) (res bodyRead) {
	size := int64(initialBuf)
	if hint >= 0 {
		size = min(size, hint+1)
	}
	buf := make([]byte, 0, min(size, most+1))
	limit := most + 1 // one byte past most tells that the body is longer
	if sniff {
		limit = min(limit, maxSniff)
	}
	ws := 0 // leading white space already looked through (sniff)
	for int64(len(buf)) < limit {
		if len(buf) == cap(buf) {
			c := min(max(2*int64(cap(buf)), initialBuf), limit)
			if hint >= int64(len(buf)) {
				c = min(c, hint+1)
			}
			nb := make([]byte, len(buf), c)
			copy(nb, buf)
			buf = nb
		}
		n, err := src.Read(buf[len(buf):min(int64(cap(buf)), limit)])
		buf = buf[:len(buf)+n]
		if sniff {
			if i := skipWS(bytesString(buf), ws); i < len(buf) {
				sniff = false
				switch res.json = buf[i] == '{'; {
				case !res.json, hint > most:
					limit = 0 // not JSON, or JSON declared too large: stop here
				default:
					limit = most + 1
				}
			} else {
				ws = len(buf)
			}
		}
		if err == io.EOF {
			res.eof = true
			break
		}
		if err != nil {
			res.err = err
			break
		}
		if stop != nil && stop.Load() {
			break
		}
	}
	res.buf = buf
	return res
}

// DefaultReadTimeout is the longest Strip waits for a body it reads when
// Options.ReadTimeout is 0.
const DefaultReadTimeout = 30 * time.Second

// Timeout is a 408 for a body that did not arrive within
// Options.ReadTimeout: legacy code "408", so a legacy client sees an HTTP
// status it knows and may retry.
func Timeout() *Error {
	return &Error{Status: http.StatusRequestTimeout, Code: "408", Text: "the request body did not arrive in time"}
}

// readTimed runs readIn on r's body within o's read timeout. With
// o.SetReadDeadline the connection's read deadline enforces it (a Read past
// it fails), and is cleared afterwards unless it passed; without it (or when it fails) the
// body is read in a goroutine that Strip stops waiting for at the timeout:
// timedOut is then true and r.Body must not be read again (the abandoned
// Read ends when the connection delivers or closes; its bytes are dropped).
func readTimed(r *http.Request, o Options, most int64, sniff bool) (res bodyRead, timedOut bool) {
	timeout := o.readTimeout()
	src, hint := r.Body, r.ContentLength
	if timeout < 0 {
		return readIn(src, most, hint, sniff, nil), false
	}
	deadline := time.Now().Add(timeout)
	if o.SetReadDeadline != nil && o.SetReadDeadline(deadline) == nil {
		res = readIn(src, most, hint, sniff, nil)
		if res.err != nil && (errors.Is(res.err, os.ErrDeadlineExceeded) || !time.Now().Before(deadline)) {
			// The deadline stays: the server's own reads of the rest fail
			// too, so it answers and closes the connection at once.
			return res, true
		}
		_ = o.SetReadDeadline(time.Time{})
		return res, false
	}
	done := make(chan bodyRead, 1)
	stop := new(atomic.Bool)
	go func() { done <- readIn(src, most, hint, sniff, stop) }()
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case res = <-done:
		return res, false
	case <-t.C:
		stop.Store(true)
		return bodyRead{}, true
	}
}

// stalledBody replaces a body whose read Strip gave up waiting for: it
// reads as the 408 error. The server closes the original body itself.
type stalledBody struct{}

func (stalledBody) Read([]byte) (int, error) { return 0, Timeout() }
func (stalledBody) Close() error             { return nil }

// putBack makes r's body the bytes read (all of the body when eof)
// followed by the rest.
func putBack(r *http.Request, res bodyRead) {
	if len(res.buf) == 0 && !res.eof {
		return
	}
	giveBack(r, res.buf, res.eof)
}

// readBody reads r's body as readIn does, at most max bytes, within the
// read timeout. With partial, a longer body is no error: its first bytes
// (more than max) are returned with whole false, and r.Body reads on after
// them. On an error r.Body is given back whole: a reader of the bytes read
// followed by the rest (after a timeout, a body that reads as the error).
// With sniff, a body that does not start as a JSON object is put back
// unread (read false).
func readBody(r *http.Request, o Options, partial, sniff bool) (buf []byte, whole, read bool, e *Error) {
	most := o.maxBody()
	if r.ContentLength > most && !partial && !sniff {
		return nil, false, false, TooLarge()
	}
	res, timedOut := readTimed(r, o, most, sniff)
	if timedOut {
		if o.SetReadDeadline != nil && len(res.buf) > 0 {
			giveBack(r, res.buf, false)
		} else if o.SetReadDeadline == nil {
			r.Body = stalledBody{}
		}
		return nil, false, false, Timeout()
	}
	if sniff && !res.json {
		putBack(r, res)
		return nil, false, false, nil
	}
	switch {
	case res.err != nil:
		giveBack(r, res.buf, false)
		var mbe *http.MaxBytesError
		if errors.As(res.err, &mbe) {
			return nil, false, true, TooLarge()
		}
		return nil, false, true, Malformed("the request body could not be read")
	case res.eof:
		return res.buf, true, true, nil
	case partial:
		return res.buf, false, true, nil
	}
	giveBack(r, res.buf, false)
	return nil, false, true, TooLarge()
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
		if v := r.Header["Content-Length"]; len(v) == 1 {
			v[0] = strconv.Itoa(len(b)) // the request's own slice: one allocation less
		} else {
			r.Header.Set("Content-Length", strconv.Itoa(len(b)))
		}
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
	out = appendKeptPairs(make([]byte, 0, len(s)), s, rm)
	if kind != bodyForm && jsonSniff(bytesString(out)) {
		// What is left would now read as a JSON object (the pairs before
		// a "{" were credentials): keep it a form, as it was read, with an
		// empty pair in front that PHP's form parser skips.
		out = append([]byte{'&'}, out...)
	}
	return out, true, nil
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
