package tokenstore

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"
	"unsafe"
)

// Records are stored in a small binary format rather than JSON: JSON
// strings must be UTF-8 (encoding/json replaces other bytes with U+FFFD),
// and an account or login may hold any bytes; it must come back exactly.
//
// A record is a version byte (codecVersion) followed by its fields in a
// fixed order: strings and byte slices as uvarint(length) bytes, times as
// a byte (0 = zero time, 1 = set) then varint(Unix seconds) uvarint(nanoseconds),
// booleans as one byte. A later version may append fields; readers ignore
// bytes after the fields they know.
const codecVersion = 1

// errCorrupt is returned for a record that cannot be decoded.
var errCorrupt = errors.New("tokenstore: corrupt record")

func encodeToken(t *Token) []byte {
	e := newEncoder(64 + len(t.Account) + len(t.Login) + len(t.KeyHash) + len(t.AccessToken) + len(t.RefreshToken))
	e.str(t.Account)
	e.str(t.Login)
	e.bytes(t.KeyHash)
	e.str(t.AccessToken)
	e.str(t.RefreshToken)
	e.time(t.Expiry)
	e.time(t.IssuedAt)
	e.time(t.LastUsed)
	return e.b
}

// decodeToken decodes a token. Its strings share one allocation.
func decodeToken(v []byte) (*Token, error) {
	d := newDecoder(v)
	t := &Token{
		Account:      d.str(),
		Login:        d.str(),
		KeyHash:      d.bytes(),
		AccessToken:  d.str(),
		RefreshToken: d.str(),
		Expiry:       d.time(),
		IssuedAt:     d.time(),
		LastUsed:     d.time(),
	}
	if d.err != nil {
		return nil, d.err
	}
	return t, nil
}

// decodeSummary decodes what a census needs of a token record, reading the
// record in place: only the account and the login are copied.
func decodeSummary(v []byte) (Summary, error) {
	var d decoder
	d.view(v)
	account, login := d.str(), d.str()
	d.str() // key hash
	d.str() // access token
	refresh := d.str()
	expiry, issued := d.time(), d.time()
	d.time() // last use: checked as decodeToken checks it
	if d.err != nil {
		return Summary{}, d.err
	}
	names := account + login // one copy of both, out of v
	return Summary{Account: names[:len(account)], Login: names[len(account):],
		Refreshable: refresh != "", Expiry: expiry, IssuedAt: issued}, nil
}

func encodeSession(s Session) []byte {
	e := newEncoder(32 + len(s.Account) + len(s.Login))
	e.str(s.Account)
	e.str(s.Login)
	e.time(s.Expires)
	return e.b
}

func decodeSession(v []byte) (Session, error) {
	d := newDecoder(v)
	s := Session{Account: d.str(), Login: d.str(), Expires: d.time()}
	return s, d.err
}

func encodePending(p Pending) []byte {
	e := newEncoder(48 + len(p.Account) + len(p.Login) + len(p.BaseURL) + len(p.KeyHash))
	e.str(p.Account)
	e.str(p.Login)
	e.str(p.BaseURL)
	e.bytes(p.KeyHash)
	e.time(p.Created)
	e.time(p.Expires)
	return e.b
}

func decodePending(v []byte) (Pending, error) {
	d := newDecoder(v)
	p := Pending{
		Account: d.str(),
		Login:   d.str(),
		BaseURL: d.str(),
		KeyHash: d.bytes(),
		Created: d.time(),
		Expires: d.time(),
	}
	return p, d.err
}

func encodeAttempt(a Attempt) []byte {
	e := newEncoder(48 + len(a.Account) + len(a.Login) + len(a.KeyHash))
	e.str(a.Account)
	e.str(a.Login)
	e.time(a.At)
	e.bytes(a.KeyHash)
	e.bool(a.Rejected)
	e.bool(a.Done)
	return e.b
}

func decodeAttempt(v []byte) (Attempt, error) {
	d := newDecoder(v)
	a := Attempt{
		Account:  d.str(),
		Login:    d.str(),
		At:       d.time(),
		KeyHash:  d.bytes(),
		Rejected: d.bool(),
	}
	if d.err == nil && len(d.s) > 0 { // records written before Done existed end here
		a.Done = d.bool()
	}
	return a, d.err
}

// encoder appends fields to b.
type encoder struct{ b []byte }

func newEncoder(size int) *encoder {
	e := &encoder{b: make([]byte, 0, size)}
	e.b = append(e.b, codecVersion)
	return e
}

func (e *encoder) str(s string) {
	e.b = binary.AppendUvarint(e.b, uint64(len(s)))
	e.b = append(e.b, s...)
}

func (e *encoder) bytes(p []byte) {
	e.b = binary.AppendUvarint(e.b, uint64(len(p)))
	e.b = append(e.b, p...)
}

func (e *encoder) time(t time.Time) {
	if t.IsZero() {
		e.b = append(e.b, 0)
		return
	}
	e.b = append(e.b, 1)
	e.b = binary.AppendVarint(e.b, t.Unix())
	e.b = binary.AppendUvarint(e.b, uint64(t.Nanosecond()))
}

func (e *encoder) bool(v bool) {
	if v {
		e.b = append(e.b, 1)
	} else {
		e.b = append(e.b, 0)
	}
}

// decoder reads fields; the first error sticks and later reads return
// zero values. Strings are substrings of one copy of the record.
type decoder struct {
	s   string
	err error
}

func newDecoder(v []byte) *decoder {
	d := &decoder{}
	if d.check(v) {
		d.s = string(v[1:])
	}
	return d
}

// view sets d to decode v in place: the strings it returns share v's
// memory and are valid only as long as v is (copy what must outlive it).
func (d *decoder) view(v []byte) {
	if d.check(v) && len(v) > 1 {
		d.s = unsafe.String(&v[1], len(v)-1)
	}
}

// check checks v's version byte.
func (d *decoder) check(v []byte) bool {
	switch {
	case len(v) == 0:
		d.err = fmt.Errorf("%w: empty", errCorrupt)
	case v[0] != codecVersion:
		d.err = fmt.Errorf("%w: unknown version %d", errCorrupt, v[0])
	}
	return d.err == nil
}

func (d *decoder) fail(what string) {
	if d.err == nil {
		d.err = fmt.Errorf("%w: bad %s", errCorrupt, what)
	}
	d.s = ""
}

func (d *decoder) uvarint(what string) uint64 {
	if d.err != nil {
		return 0
	}
	var x uint64
	for i := 0; i < len(d.s) && i < binary.MaxVarintLen64; i++ {
		c := d.s[i]
		if i == binary.MaxVarintLen64-1 && c > 1 {
			break
		}
		x |= uint64(c&0x7f) << (7 * i)
		if c < 0x80 {
			d.s = d.s[i+1:]
			return x
		}
	}
	d.fail(what)
	return 0
}

func (d *decoder) str() string {
	n := d.uvarint("length")
	if d.err != nil {
		return ""
	}
	if n > uint64(len(d.s)) {
		d.fail("length")
		return ""
	}
	s := d.s[:n]
	d.s = d.s[n:]
	return s
}

func (d *decoder) bytes() []byte {
	s := d.str()
	if s == "" {
		return nil
	}
	return []byte(s)
}

func (d *decoder) time() time.Time {
	if d.err != nil {
		return time.Time{}
	}
	if len(d.s) == 0 {
		d.fail("time")
		return time.Time{}
	}
	set := d.s[0]
	d.s = d.s[1:]
	switch set {
	case 0:
		return time.Time{}
	case 1:
	default:
		d.fail("time")
		return time.Time{}
	}
	u := d.uvarint("time")
	sec := int64(u>>1) ^ -int64(u&1) // zig-zag, as binary.AppendVarint writes it
	nsec := d.uvarint("time")
	if d.err != nil || nsec >= 1e9 {
		d.fail("time")
		return time.Time{}
	}
	return time.Unix(sec, int64(nsec))
}

func (d *decoder) bool() bool {
	if d.err != nil {
		return false
	}
	if len(d.s) == 0 || d.s[0] > 1 {
		d.fail("bool")
		return false
	}
	v := d.s[0] == 1
	d.s = d.s[1:]
	return v
}
