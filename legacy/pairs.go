package legacy

import "strings"

// maxParams is the most parameters a query string or a form body, and the
// most members a JSON body, may hold.
const maxParams = 10000

// span is the byte range [start, end) of one parameter.
type span struct{ start, end int }

// scanPairs reads s, a query string or a form body ("name=value" pairs
// joined by '&', as PHP splits them), records the credentials in it in c,
// and appends the spans of the pairs to remove to rm. With limit, more than
// maxParams pairs is an error; where names the part in error texts. After an
// error in one pair the scan goes on (to find type=json), and the first
// error is returned.
func (c *collector) scanPairs(s string, sc scope, limit bool, where string, rm []span) ([]span, *Error) {
	var first *Error
	count := 0
	for i := 0; ; {
		end := len(s)
		if j := strings.IndexByte(s[i:], '&'); j >= 0 {
			end = i + j
		}
		count++
		if limit && count > maxParams {
			return rm, Malformed("too many parameters in the " + where)
		}
		if end > i && sc.mayStart(s[i]) {
			name, value, _ := strings.Cut(s[i:end], "=")
			if p, array := classifyName(name, true, sc); p == pType {
				if strings.EqualFold(decodeLenient(value), "json") {
					c.jsonFormat = true
				}
			} else if p != pNone {
				rm = append(rm, span{i, end})
				var e *Error
				if array {
					e = Malformed(p.String() + " is given as an array")
				} else if v, ok := decodeValue(value); !ok {
					e = Malformed(p.String() + " is not properly percent-encoded")
				} else {
					e = c.add(p, v, v == value)
				}
				if first == nil {
					first = e
				}
			}
		}
		if end == len(s) {
			break
		}
		i = end + 1
	}
	return rm, first
}

// appendKeptPairs appends s without the pairs at rm (sorted, from
// scanPairs) to dst, each pair removed with one '&'; every other byte stays
// as it was.
func appendKeptPairs(dst []byte, s string, rm []span) []byte {
	first := true
	pos := 0
	for _, sp := range rm {
		if sp.start > pos {
			if !first {
				dst = append(dst, '&')
			}
			dst = append(dst, s[pos:sp.start-1]...)
			first = false
		}
		pos = sp.end + 1
	}
	if pos <= len(s) {
		if !first {
			dst = append(dst, '&')
		}
		dst = append(dst, s[pos:]...)
	}
	return dst
}
