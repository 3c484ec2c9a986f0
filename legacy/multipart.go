package legacy

import (
	"strings"
)

// maxParts is the most parts a multipart body read whole may have.
const maxParts = maxParams

// multipartBoundary returns the boundary of a multipart/form-data
// Content-Type ct as PHP's rfc1867.c finds it, and false when PHP finds
// none (and so reads no field from the body). PHP does not parse the
// parameters: it takes the first "boundary" in ct (matched with case, or if
// there is none without regard to case; "xboundary=" counts), skips to the
// first '=' after it, and reads the value from there: a quoted value up to
// the next '"' (none: no boundary), any other up to the first ',' or ';',
// spaces included. So "boundary=AAA; boundary=BBB" and
// "xboundary=AAA; boundary=BBB" give AAA. The boundary may be empty.
func multipartBoundary(ct string) (string, bool) {
	i := strings.Index(ct, "boundary")
	if i < 0 {
		if i = indexFoldASCII(ct, "boundary"); i < 0 {
			return "", false
		}
	}
	j := strings.IndexByte(ct[i:], '=')
	if j < 0 {
		return "", false
	}
	v := ct[i+j+1:]
	if v != "" && v[0] == '"' {
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

// indexFoldASCII is the index of the first instance of the lower-case
// ASCII word in s compared without regard to ASCII case, or -1.
func indexFoldASCII(s, word string) int {
	for i := 0; i+len(word) <= len(s); i++ {
		k := 0
		for k < len(word) && s[i+k]|0x20 == word[k] {
			k++
		}
		if k == len(word) {
			return i
		}
	}
	return -1
}

// A multipart/form-data body is read as PHP reads it into $_POST (the parts
// of main/rfc1867.c that matter here), only more strictly where that is
// the safe side:
//   - lines end at '\n', with or without a '\r' before it;
//   - a delimiter line is "--boundary", then "--" for the closing one, then
//     spaces or tabs, then the line end (the closing line may end the body);
//     it starts the body or follows a '\n'. Lines before the first one are
//     the preamble, lines after the closing one the epilogue;
//   - a part is its delimiter line, its header lines up to an empty line,
//     and its content up to the next delimiter line (the line end before
//     that line is not content);
//   - the part's name and filename come from its (first) Content-Disposition
//     header, read as PHP reads it (see partHeader); a part with a
//     non-empty filename is an upload, in $_FILES, and never a credential.
// PHP reads on after the closing delimiter line: a delimiter line in the
// epilogue would start a part PHP sees, so it makes the body malformed, as do
// a part's header or content that does not end.

// mpPart is one part of a multipart body: [start, end) runs from its
// delimiter line to the next one, content is [body, end) less the line end.
type mpPart struct {
	start, body, end int
	p                param
	array            bool
}

// mpScan is the state of the scan of a multipart body.
type mpScan struct {
	s      string // the body, or the first bytes of a longer one
	dash   string // "--" + boundary
	nlDash string // "\n--" + boundary
	whole  bool   // s is the whole body
}

// line returns the line starting at i (with its line end) and whether it
// is complete: it ends with '\n', or it ends the whole body.
func (m *mpScan) line(i int) (string, bool) {
	if j := strings.IndexByte(m.s[i:], '\n'); j >= 0 {
		return m.s[i : i+j+1], true
	}
	return m.s[i:], m.whole
}

// delimiter tells whether line is a delimiter line of dash, and whether it
// is the closing one.
func delimiter(line, dash string) (ok, closing bool) {
	if !strings.HasPrefix(line, dash) {
		return false, false
	}
	rest := line[len(dash):]
	if rest != "" && rest[0] == 0 {
		// PHP compares a line with the delimiter as a C string: a NUL
		// right after the boundary ends the line there.
		return true, false
	}
	if strings.HasPrefix(rest, "--") {
		closing, rest = true, rest[2:]
	}
	rest = strings.TrimLeft(rest, " \t")
	switch rest {
	case "\n", "\r\n":
		return true, closing
	case "":
		return closing, closing // only the closing line may end the body
	}
	return false, false
}

// next finds the first delimiter line starting at or after the line start
// i. It returns its start and whether it is the closing one; found is
// false when there is none, or (complete false) when s ends before it is
// known whether there is one.
func (m *mpScan) next(i int) (at int, closing, found, complete bool) {
	for i <= len(m.s) {
		if strings.HasPrefix(m.s[i:], m.dash) {
			l, ok := m.line(i)
			if !ok {
				return 0, false, false, false
			}
			if d, c := delimiter(l, m.dash); d {
				return i, c, true, true
			}
		}
		j := strings.Index(m.s[i:], m.nlDash)
		if j < 0 {
			return 0, false, false, m.whole
		}
		i += j + 1
	}
	return 0, false, false, m.whole
}

// header returns the end of the header lines starting at i (where the
// empty line that ends them starts) and the index after that empty line;
// ok is false when s ends first.
func (m *mpScan) header(i int) (end, after int, ok bool) {
	for i < len(m.s) {
		l, complete := m.line(i)
		if !complete || l[len(l)-1] != '\n' {
			return 0, 0, false
		}
		if l == "\n" || l == "\r\n" {
			return i, i + len(l), true
		}
		i += len(l)
	}
	return 0, 0, false
}

// content returns the content of p: its bytes before the line end that
// precedes the next delimiter line.
func (m *mpScan) content(p mpPart) string {
	v := m.s[p.body:p.end]
	if p.end > p.body {
		v = strings.TrimSuffix(v[:len(v)-1], "\r") // v ends with the '\n' before the delimiter
	}
	return v
}

// scanMultipart finds the credentials in the fields of the multipart body
// s (PHP reads those into $_POST on any path, mangling their names as it
// does a form's) and returns the body without the credential parts: each
// removed whole, its delimiter line included, every other byte kept, the
// closing delimiter line still closing. When whole is false, s is only the
// first bytes of a longer body: the parts that end in s are read, and cut
// is where the first part that does not (or the rest of s) starts; out is
// then s[:cut] without its credential parts. changed false: s holds no
// credential and out is nil.
func (c *collector) scanMultipart(s, boundary string, sc scope, whole bool) (out []byte, changed bool, cut int, err *Error) {
	m := mpScan{s: s, dash: "--" + boundary, nlDash: "\n--" + boundary, whole: whole}
	pos, closing, found, complete := m.next(0)
	if !found {
		if !complete {
			return nil, false, 0, nil
		}
		return nil, false, len(s), nil // no delimiter: no part, nothing PHP reads
	}
	var rmBuf [4]mpPart
	rm := rmBuf[:0]
	var first *Error
	cut = len(s)
	for n := 0; ; n++ {
		if closing {
			_, _, again, complete := m.next(pos + len(m.mustLine(pos)))
			if again {
				return nil, false, 0, Malformed("the multipart body has a part after its closing delimiter")
			}
			if !complete {
				cut = pos // the guard reads the epilogue on
			}
			break
		}
		if n >= maxParts {
			return nil, false, 0, Malformed("too many parts in the multipart body")
		}
		p := mpPart{start: pos}
		hdrEnd, body, ok := m.header(pos + len(m.mustLine(pos)))
		if !ok {
			if whole {
				return nil, false, 0, Malformed("the multipart body is malformed")
			}
			cut = pos
			break
		}
		name, file := partHeader(s[pos+len(m.mustLine(pos)) : hdrEnd])
		if !file {
			p.p, p.array = classifyName(name, false, sc)
		}
		var complete bool
		p.body = body
		p.end, closing, found, complete = m.next(body)
		if !found {
			if complete {
				return nil, false, 0, Malformed("the multipart body is malformed")
			}
			if p.p.isCred() {
				// A credential whose value does not end within MaxBody.
				return nil, false, 0, TooLarge()
			}
			cut = pos
			break
		}
		switch {
		case p.p == pType:
			if strings.EqualFold(m.content(p), "json") {
				c.jsonFormat = true
			}
		case p.p != pNone:
			rm = append(rm, p)
			var e *Error
			if p.array {
				e = Malformed(p.p.String() + " is given as an array")
			} else {
				e = c.add(p.p, m.content(p), true)
			}
			if first == nil {
				first = e
			}
		}
		pos = p.end
	}
	if first != nil {
		return nil, false, 0, first
	}
	if len(rm) == 0 {
		return nil, false, cut, nil
	}
	out = make([]byte, 0, cut)
	at := 0
	for _, p := range rm {
		out = append(out, s[at:p.start]...)
		at = p.end
	}
	return append(out, s[at:cut]...), true, cut, nil
}

// mustLine is the line at i, which is known to be a complete delimiter line.
func (m *mpScan) mustLine(i int) string {
	l, _ := m.line(i)
	return l
}

// partHeader reads a part's header lines h (without the empty line after
// them) as PHP does and returns the name and whether the part is an upload
// (a non-empty filename) from its first Content-Disposition header. A line
// is cut at a NUL byte; one that starts with a space or a tab, or has no
// ':', continues the header before it; the header's name is compared
// without regard to case and is not trimmed; its value starts after the
// ':' and the spaces after it.
func partHeader(h string) (name string, file bool) {
	cd, in := "", false
	for h != "" {
		l, rest, _ := strings.Cut(h, "\n")
		h = rest
		l = strings.TrimSuffix(l, "\r")
		if i := strings.IndexByte(l, 0); i >= 0 {
			l = l[:i]
		}
		colon := -1
		if l != "" && !isSpace(l[0]) {
			colon = strings.IndexByte(l, ':')
		}
		switch {
		case colon >= 0:
			if in {
				return dispositionName(cd)
			}
			if strings.EqualFold(l[:colon], "Content-Disposition") {
				in = true
				cd = trimSpaceLeft(l[colon+1:])
			}
		case in:
			cd += l
		}
	}
	if !in {
		return "", false
	}
	return dispositionName(cd)
}

// dispositionName reads the name and filename parameters of a
// Content-Disposition value as PHP does: parameters are split at ';'
// outside quotes, a parameter's key ends at its first '=' and is compared
// without regard to case, the last name and filename count, and the
// disposition type is not checked.
func dispositionName(cd string) (name string, file bool) {
	filename := ""
	cd = trimSpaceLeft(cd)
	for cd != "" {
		var pair string
		pair, cd = getWord(cd, ';')
		cd = trimSpaceLeft(cd)
		if !strings.Contains(pair, "=") {
			continue
		}
		key, val := getWord(pair, '=')
		switch {
		case strings.EqualFold(key, "name"):
			name = wordConf(val)
		case strings.EqualFold(key, "filename"):
			filename = wordConf(val)
		}
	}
	return name, filename != ""
}

// getWord returns s up to the first stop byte outside single or double
// quotes (a backslash escapes the quote inside them), and the rest after
// that byte and any more stop bytes right after it (php_ap_getword).
func getWord(s string, stop byte) (word, rest string) {
	i := 0
	for i < len(s) && s[i] != stop {
		if q := s[i]; q == '"' || q == '\'' {
			i++
			for i < len(s) && s[i] != q {
				if s[i] == '\\' && i+1 < len(s) && s[i+1] == q {
					i += 2
				} else {
					i++
				}
			}
			if i < len(s) {
				i++
			}
			continue
		}
		i++
	}
	word, rest = s[:min(i, len(s))], s[min(i, len(s)):]
	for rest != "" && rest[0] == stop {
		rest = rest[1:]
	}
	return word, rest
}

// wordConf reads a parameter's value (php_ap_getword_conf): leading spaces
// skipped, then a quoted string up to its closing quote (or the end), or a
// bare word up to a space; a backslash escapes a backslash, and in quotes
// the quote.
func wordConf(s string) string {
	s = trimSpaceLeft(s)
	var quote byte
	if s != "" && (s[0] == '"' || s[0] == '\'') {
		quote, s = s[0], s[1:]
	} else {
		for i := 0; i < len(s); i++ {
			if isSpace(s[i]) {
				s = s[:i]
				break
			}
		}
	}
	if quote == 0 && strings.IndexByte(s, '\\') < 0 {
		return s
	}
	b := make([]byte, 0, len(s))
	for i := 0; i < len(s); i++ {
		if quote != 0 && s[i] == quote {
			break
		}
		if s[i] == '\\' && i+1 < len(s) && (s[i+1] == '\\' || quote != 0 && s[i+1] == quote) {
			i++
		}
		b = append(b, s[i])
	}
	return string(b)
}

// isSpace is C's isspace in the C locale.
func isSpace(c byte) bool {
	return c == ' ' || c == '\t' || c == '\n' || c == '\v' || c == '\f' || c == '\r'
}

func trimSpaceLeft(s string) string {
	for s != "" && isSpace(s[0]) {
		s = s[1:]
	}
	return s
}
