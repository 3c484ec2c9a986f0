package legacy

import (
	"errors"
	"io"
	"mime"
	"mime/multipart"
	"strings"
)

// maxParts is the most parts a multipart auth.php body may have.
const maxParts = 1000

// multipartBoundary returns the boundary of a multipart/form-data
// Content-Type, or "" when ct is not one.
func multipartBoundary(ct string) string {
	if !strings.EqualFold(mediaType(ct), "multipart/form-data") {
		return ""
	}
	_, params, err := mime.ParseMediaType(ct)
	if err != nil {
		return ""
	}
	return params["boundary"]
}

// scanMultipart finds credentials in the fields of a multipart/form-data
// auth.php body (PHP reads those fields into $_POST, mangling their names
// as it does a form's). auth.php is answered locally and never forwarded,
// so a body that held credentials is dropped whole rather than rewritten.
func (c *collector) scanMultipart(s, boundary string, sc scope) (out []byte, changed bool, err *Error) {
	mr := multipart.NewReader(strings.NewReader(s), boundary)
	found := false
	var first *Error
	for n := 0; ; n++ {
		if n >= maxParts {
			return nil, false, Malformed("too many parts in the multipart body")
		}
		part, perr := mr.NextRawPart()
		if errors.Is(perr, io.EOF) {
			break
		}
		if perr != nil {
			return nil, false, Malformed("the multipart body is malformed")
		}
		if part.FileName() != "" {
			continue // an upload, in $_FILES
		}
		p, array := classifyName(part.FormName(), false, sc)
		if p == pNone {
			continue
		}
		raw, rerr := io.ReadAll(io.LimitReader(part, maxValue+1))
		if rerr != nil {
			return nil, false, Malformed("the multipart body is malformed")
		}
		if p == pType {
			if strings.EqualFold(string(raw), "json") {
				c.jsonFormat = true
			}
			continue
		}
		found = true
		var e *Error
		if array {
			e = Malformed(p.String() + " is given as an array")
		} else {
			e = c.add(p, string(raw), false)
		}
		if first == nil {
			first = e
		}
	}
	if first != nil {
		return nil, false, first
	}
	if !found {
		return nil, false, nil
	}
	return []byte{}, true, nil
}
