package tokenstore

import (
	"bytes"
	"compress/flate"
	"encoding/base64"
	"encoding/binary"
	"io"
	"math"
	"strings"
	"time"
	"unsafe"
)

// A packed tier record (ring.go) holds what a request needs of a user's
// token, and not the refresh token:
//
//	u32 length, u64 user hash          the ring's header
//	u16 len(account), u16 len(login), account, login
//	Expiry, IssuedAt, LastUsed         each i64 Unix seconds (MinInt64: zero time), u32 nanoseconds
//	u8 flags                           recRefreshable, recJWT, recDeflated
//	u8 len(key hash), key hash
//	the access token:
//	  not a JWT: u32 length, the bytes
//	  a JWT (three base64url segments that decode and encode back exactly):
//	    u16 ×3: the decoded lengths of header, claims, signature;
//	    header and claims, or (recDeflated) u16 length and their DEFLATE
//	    stream against the tier's dictionary; then the signature.
//
// amoCRM's access token is such a JWT, 1,083 characters: decoded, its
// segments take three quarters of that, and its header and claims (about
// 550 bytes of JSON, the same claim names in every token of an
// integration) deflate against another token's to about a quarter. The
// dictionary is the header and claims of the first JWT the tier packs;
// it never changes afterwards, so every record stays readable.
const (
	recRefreshable = 1 << iota // the pair has a refresh token (not kept here)
	recJWT                     // the access token is packed as a JWT
	recDeflated                // its header and claims are deflated
)

// minDict is the least header and claims a JWT needs to become the
// dictionary: a shorter one would help no later token.
const minDict = 128

var b64 = base64.RawURLEncoding.Strict()

// pack appends user h's record of t to dst (t's refresh token is not
// packed, only whether it has one). ok is false if t cannot be packed (a
// string too long for the format); the tier then does not keep it.
func (tr *tier) pack(dst []byte, h uint64, t *Token) (rec []byte, ok bool) {
	if len(t.Account) > math.MaxUint16 || len(t.Login) > math.MaxUint16 ||
		len(t.KeyHash) > math.MaxUint8 || len(t.AccessToken) > math.MaxInt32 {
		return dst, false
	}
	start := len(dst)
	dst = binary.LittleEndian.AppendUint32(dst, 0) // the length, set by write
	dst = binary.LittleEndian.AppendUint64(dst, h)
	dst = binary.LittleEndian.AppendUint16(dst, uint16(len(t.Account)))
	dst = binary.LittleEndian.AppendUint16(dst, uint16(len(t.Login)))
	dst = append(dst, t.Account...)
	dst = append(dst, t.Login...)
	dst = appendRecTime(dst, t.Expiry)
	dst = appendRecTime(dst, t.IssuedAt)
	dst = appendRecTime(dst, t.LastUsed)
	flagAt := len(dst)
	var flags byte
	if t.Refreshable() {
		flags |= recRefreshable
	}
	dst = append(dst, 0, byte(len(t.KeyHash)))
	dst = append(dst, t.KeyHash...)
	if seg, ok := splitJWT(t.AccessToken); ok {
		var f byte
		dst, f = tr.appendJWT(dst, seg)
		flags |= recJWT | f
	} else {
		dst = binary.LittleEndian.AppendUint32(dst, uint32(len(t.AccessToken)))
		dst = append(dst, t.AccessToken...)
	}
	dst[flagAt] = flags
	binary.LittleEndian.PutUint32(dst[start:], uint32(len(dst)-start))
	return dst, true
}

// splitJWT returns tok's three segments if it is a JWT whose segments are
// canonical base64url (decoding and encoding them gives them back), each
// short enough for the format.
func splitJWT(tok string) (seg [3]string, ok bool) {
	a := strings.IndexByte(tok, '.')
	if a < 0 {
		return seg, false
	}
	b := strings.IndexByte(tok[a+1:], '.')
	if b < 0 {
		return seg, false
	}
	b += a + 1
	seg = [3]string{tok[:a], tok[a+1 : b], tok[b+1:]}
	for _, s := range seg {
		if len(s) > 80000 || strings.ContainsAny(s, "\r\n.") {
			return seg, false // the decoder would skip CR and LF
		}
		if n, err := b64.DecodeString(s); err != nil || b64.EncodedLen(len(n)) != len(s) {
			return seg, false
		}
	}
	return seg, true
}

// appendJWT appends the packed form of a JWT's segments.
func (tr *tier) appendJWT(dst []byte, seg [3]string) ([]byte, byte) {
	var dec [3][]byte
	for i, s := range seg {
		dec[i], _ = b64.DecodeString(s) // checked by splitJWT
		dst = binary.LittleEndian.AppendUint16(dst, uint16(len(dec[i])))
	}
	hc := append(dec[0], dec[1]...)
	var flags byte
	if d := tr.dictionary(hc); d != nil {
		if c, ok := tr.deflate(hc, d); ok && len(c) < len(hc) && len(c) <= math.MaxUint16 {
			dst = binary.LittleEndian.AppendUint16(dst, uint16(len(c)))
			dst = append(dst, c...)
			flags = recDeflated
		}
	}
	if flags == 0 {
		dst = append(dst, hc...)
	}
	return append(dst, dec[2]...), flags
}

// dictionary returns the tier's dictionary, making hc it if there is none
// yet and hc is long enough.
func (tr *tier) dictionary(hc []byte) []byte {
	if d := tr.dict.Load(); d != nil {
		return *d
	}
	if len(hc) < minDict {
		return nil
	}
	d := bytes.Clone(hc[:min(len(hc), 32<<10)])
	if tr.dict.CompareAndSwap(nil, &d) {
		return d
	}
	return *tr.dict.Load()
}

// deflater is a DEFLATE writer made with the tier's dictionary, kept in
// the tier's pool to reuse with Reset.
type deflater struct {
	w   *flate.Writer
	out bytes.Buffer
}

// deflate compresses b against dict, the tier's dictionary. The result is
// a copy.
func (tr *tier) deflate(b, dict []byte) ([]byte, bool) {
	df, _ := tr.deflaters.Get().(*deflater)
	if df == nil {
		df = &deflater{}
		var err error
		if df.w, err = flate.NewWriterDict(&df.out, flate.BestCompression, dict); err != nil {
			return nil, false
		}
	}
	df.out.Reset()
	df.w.Reset(&df.out)
	if _, err := df.w.Write(b); err != nil {
		return nil, false
	}
	if err := df.w.Close(); err != nil {
		return nil, false
	}
	c := bytes.Clone(df.out.Bytes())
	tr.deflaters.Put(df)
	return c, true
}

// inflater is a DEFLATE reader and the buffer it inflates into, kept in
// the tier's pool.
type inflater struct {
	r   io.ReadCloser
	src bytes.Reader
	buf []byte
}

// inflate decompresses c (deflated against dict) into in.buf, exactly n
// bytes, with an inflater from the pool that the caller gives back
// (tr.inflaters.Put) once done with in.buf. nil if c does not inflate to
// exactly n bytes.
func (tr *tier) inflate(c, dict []byte, n int) *inflater {
	in, _ := tr.inflaters.Get().(*inflater)
	if in == nil {
		in = &inflater{}
		in.src.Reset(c)
		in.r = flate.NewReaderDict(&in.src, dict)
	} else {
		in.src.Reset(c)
		if in.r.(flate.Resetter).Reset(&in.src, dict) != nil {
			return nil
		}
	}
	if cap(in.buf) < n {
		in.buf = make([]byte, n)
	}
	in.buf = in.buf[:n]
	_, err := io.ReadFull(in.r, in.buf)
	if err == nil { // nothing may follow
		var one [1]byte
		if k, e := in.r.Read(one[:]); k != 0 || e != io.EOF {
			err = errCorrupt
		}
	}
	if err != nil {
		tr.inflaters.Put(in)
		return nil
	}
	return in
}

// unpack decodes rec, user k's record, into a Token laid out as the cache
// lays out its own (packToken): one allocation for the strings and the key
// hash, the refresh token elided. It returns nil if rec is not k's.
func (tr *tier) unpack(rec []byte, k ukey) *Token {
	d := recReader{b: rec, i: ringHeader}
	al, ll := int(d.u16()), int(d.u16())
	acc, log := d.take(al), d.take(ll)
	if d.bad || string(acc) != k.account || string(log) != k.login {
		return nil
	}
	exp, iss, last := d.time(), d.time(), d.time()
	flags := d.u8()
	kh := d.take(int(d.u8()))
	if d.bad {
		return nil
	}
	const bearer = "Bearer "
	var (
		plain    []byte
		n        [3]int
		hc, sig  []byte
		comp     []byte
		tokenLen int
	)
	if flags&recJWT == 0 {
		plain = d.take(int(d.u32()))
		tokenLen = len(plain)
	} else {
		for i := range n {
			n[i] = int(d.u16())
		}
		if flags&recDeflated != 0 {
			comp = d.take(int(d.u16()))
		} else {
			hc = d.take(n[0] + n[1])
		}
		sig = d.take(n[2])
		tokenLen = b64.EncodedLen(n[0]) + b64.EncodedLen(n[1]) + b64.EncodedLen(n[2]) + 2
	}
	if d.bad {
		return nil
	}
	if comp != nil {
		dict := tr.dict.Load()
		if dict == nil {
			return nil
		}
		in := tr.inflate(comp, *dict, n[0]+n[1])
		if in == nil {
			return nil
		}
		defer tr.inflaters.Put(in)
		hc = in.buf
	}
	buf := make([]byte, al+ll+len(bearer)+tokenLen+len(kh))
	i := copy(buf, acc)
	i += copy(buf[i:], log)
	i += copy(buf[i:], bearer)
	if flags&recJWT == 0 {
		i += copy(buf[i:], plain)
	} else {
		b64.Encode(buf[i:], hc[:n[0]])
		i += b64.EncodedLen(n[0])
		buf[i] = '.'
		i++
		b64.Encode(buf[i:], hc[n[0]:])
		i += b64.EncodedLen(n[1])
		buf[i] = '.'
		i++
		b64.Encode(buf[i:], sig)
		i += b64.EncodedLen(n[2])
	}
	copy(buf[i:], kh)
	s := unsafe.String(unsafe.SliceData(buf), i)
	t := &Token{
		Account:  s[:al],
		Login:    s[al : al+ll],
		auth:     s[al+ll : i],
		Expiry:   exp,
		IssuedAt: iss,
		LastUsed: last,
		elided:   flags&recRefreshable != 0,
	}
	t.AccessToken = t.auth[len(bearer):]
	if len(kh) > 0 {
		t.KeyHash = buf[i : i+len(kh) : i+len(kh)]
	}
	return t
}

// appendRecTime appends t as i64 Unix seconds (MinInt64 for the zero time)
// and u32 nanoseconds.
func appendRecTime(dst []byte, t time.Time) []byte {
	sec, ns := int64(math.MinInt64), uint32(0)
	if !t.IsZero() {
		sec, ns = t.Unix(), uint32(t.Nanosecond())
	}
	dst = binary.LittleEndian.AppendUint64(dst, uint64(sec))
	return binary.LittleEndian.AppendUint32(dst, ns)
}

// recReader reads a record's fields; a read past the end sets bad.
type recReader struct {
	b   []byte
	i   int
	bad bool
}

func (d *recReader) take(n int) []byte {
	if d.bad || n < 0 || n > len(d.b)-d.i {
		d.bad = true
		return nil
	}
	s := d.b[d.i : d.i+n : d.i+n]
	d.i += n
	return s
}

func (d *recReader) u8() byte {
	if b := d.take(1); b != nil {
		return b[0]
	}
	return 0
}

func (d *recReader) u16() uint16 {
	if b := d.take(2); b != nil {
		return binary.LittleEndian.Uint16(b)
	}
	return 0
}

func (d *recReader) u32() uint32 {
	if b := d.take(4); b != nil {
		return binary.LittleEndian.Uint32(b)
	}
	return 0
}

func (d *recReader) time() time.Time {
	b := d.take(12)
	if b == nil {
		return time.Time{}
	}
	sec := int64(binary.LittleEndian.Uint64(b))
	if sec == math.MinInt64 {
		return time.Time{}
	}
	return time.Unix(sec, int64(binary.LittleEndian.Uint32(b[8:])))
}
