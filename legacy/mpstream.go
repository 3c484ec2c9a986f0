package legacy

import (
	"bufio"
	"bytes"
	"io"
	"net/http"
	"strconv"
)

// maxPartHeader is the largest part header (its delimiter line and header
// lines) that mpGuard holds back to read.
const maxPartHeader = 64 << 10

// mpGuard passes on the rest of a multipart body longer than MaxBody, the
// part of it Strip could not read, while reading it the way scanMultipart
// does. It holds back each delimiter line and the header after it until the
// header is read: at a part that is a credential (or one that cannot be
// read as a safe part: a header over maxPartHeader, a part after the
// closing delimiter) it stops the body with an *Error before any byte of
// that part is passed on, so the request fails rather than carry a
// credential on.
type mpGuard struct {
	src       *bufio.Reader
	orig      io.Closer
	dash      string
	sc        scope
	lineStart bool   // the next byte of src starts a line
	epilogue  bool   // the closing delimiter has passed
	held      []byte // a delimiter line and the header lines after it so far
	out       []byte // bytes ready to pass on
	err       error  // what Read returns once out is empty
}

// setStream makes r's body kept (the body's first bytes, their credential
// parts removed, removed bytes fewer than were read) followed by rest
// (bytes read beyond kept, starting a line) and then the unread body,
// guarded by mpGuard.
func setStream(r *http.Request, kept, rest []byte, boundary string, sc scope, removed int) {
	orig := r.Body
	g := &mpGuard{
		src:       bufio.NewReaderSize(io.MultiReader(bytes.NewReader(rest), orig), maxPartHeader+len(boundary)),
		orig:      orig,
		dash:      "--" + boundary,
		sc:        sc,
		lineStart: true,
	}
	g.out = kept
	r.Body = g
	r.GetBody = nil
	if removed == 0 {
		return
	}
	if r.ContentLength > 0 {
		r.ContentLength -= int64(removed)
		if r.Header != nil {
			r.Header.Set("Content-Length", strconv.FormatInt(r.ContentLength, 10))
		}
	}
}

// Read passes on the body.
func (g *mpGuard) Read(p []byte) (int, error) {
	for len(g.out) == 0 {
		if g.err != nil {
			return 0, g.err
		}
		g.step()
	}
	n := copy(p, g.out)
	g.out = g.out[n:]
	return n, nil
}

// Close closes the original body.
func (g *mpGuard) Close() error { return g.orig.Close() }

// step reads one line (or a piece of a long one) and decides what to pass on.
func (g *mpGuard) step() {
	line, err := g.src.ReadSlice('\n')
	atStart := g.lineStart
	g.lineStart = err == nil
	if err == bufio.ErrBufferFull {
		err = nil
	} else if err != nil {
		g.err = err
	}
	if g.held != nil {
		g.held = append(g.held, line...)
		switch {
		case len(g.held) > maxPartHeader:
			g.stop(Malformed("a multipart part header is too large"))
		case atStart && (string(line) == "\n" || string(line) == "\r\n"), err != nil:
			g.endHeader()
		}
		return
	}
	if atStart && len(line) >= len(g.dash) && string(line[:len(g.dash)]) == g.dash {
		d, closing := delimiter(string(line), g.dash)
		switch {
		case !d && !g.lineStart && err == nil:
			// A delimiter with a padding longer than the buffer, or not one:
			// it cannot be read, so it cannot be passed on safely.
			g.stop(Malformed("the multipart body has an unreadable delimiter line"))
			return
		case d && g.epilogue:
			g.stop(Malformed("the multipart body has a part after its closing delimiter"))
			return
		case d && closing:
			g.epilogue = true
		case d:
			g.held = append(make([]byte, 0, 512), line...)
			if err != nil {
				g.endHeader()
			}
			return
		}
	}
	g.out = line
}

// endHeader decides on the held part header: a credential stops the body,
// anything else is passed on.
func (g *mpGuard) endHeader() {
	h := g.held
	g.held = nil
	i := bytes.IndexByte(h, '\n') + 1 // after the delimiter line
	name, file := partHeader(string(h[i:]))
	if !file {
		if p, _ := classifyName(name, false, g.sc); p.isCred() {
			g.stop(&Error{Status: http.StatusRequestEntityTooLarge, Code: "413",
				Text: "a credential comes after max_body bytes of the multipart body"})
			return
		}
	}
	g.out = h
}

// stop ends the body with e, passing nothing more on.
func (g *mpGuard) stop(e *Error) {
	g.held, g.out = nil, nil
	g.err = e
}
