package tokenstore

import (
	"errors"
	"math"
	"testing"
	"time"
)

func TestCodecRoundTrip(t *testing.T) {
	odd := "\x00\xff\xfe\u2603 \"\\"
	tok := &Token{
		Account: odd, Login: odd + "@", KeyHash: []byte{0, 1, 255},
		AccessToken: "a", RefreshToken: "",
		Expiry: time.Unix(math.MaxInt32*4, 999999999), IssuedAt: time.Unix(-1, 1), // LastUsed zero
	}
	got, err := decodeToken(encodeToken(tok))
	if err != nil || !sameToken(got, tok) || !got.LastUsed.IsZero() {
		t.Fatalf("token: %+v, %v", got, err)
	}
	sess := Session{Account: odd, Login: odd, Expires: time.Now()}
	if s, err := decodeSession(encodeSession(sess)); err != nil || s.Login != sess.Login || !s.Expires.Equal(sess.Expires) {
		t.Fatalf("session: %+v, %v", s, err)
	}
	p := Pending{State: "not stored", Account: odd, Login: "l", BaseURL: "http://127.0.0.1:1", KeyHash: []byte{9}, Created: time.Now(), Expires: time.Now()}
	if q, err := decodePending(encodePending(p)); err != nil || q.State != "" || q.BaseURL != p.BaseURL ||
		string(q.KeyHash) != "\x09" || !q.Created.Equal(p.Created) {
		t.Fatalf("pending: %+v, %v", q, err)
	}
	a := Attempt{Account: "a", Login: odd, At: time.Now(), KeyHash: []byte{1}, Rejected: true}
	if b, err := decodeAttempt(encodeAttempt(a)); err != nil || b.Login != a.Login || !b.Rejected || !b.At.Equal(a.At) {
		t.Fatalf("attempt: %+v, %v", b, err)
	}
}

// TestCodecCorrupt: every truncation of a record, and bad versions, fail
// cleanly (no panic, errCorrupt).
func TestCodecCorrupt(t *testing.T) {
	v := encodeToken(testToken("acme", "a"))
	for i := 0; i < len(v); i++ {
		if _, err := decodeToken(v[:i]); !errors.Is(err, errCorrupt) {
			t.Fatalf("truncated to %d bytes: err = %v", i, err)
		}
	}
	bad := append([]byte{2}, v[1:]...)
	if _, err := decodeToken(bad); !errors.Is(err, errCorrupt) {
		t.Fatalf("version 2: %v", err)
	}
	huge := []byte{codecVersion, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f}
	if _, err := decodeToken(huge); !errors.Is(err, errCorrupt) {
		t.Fatalf("overlong varint: %v", err)
	}
	// A later version's extra fields are ignored.
	if _, err := decodeToken(append(v, 1, 2, 3)); err != nil {
		t.Fatalf("trailing bytes: %v", err)
	}
}

func FuzzDecodeToken(f *testing.F) {
	f.Add(encodeToken(testToken("acme", "a")))
	f.Fuzz(func(t *testing.T, v []byte) {
		tok, err := decodeToken(v)
		// decodeSummary reads the same record in place: it accepts what
		// decodeToken accepts, and agrees with it.
		sum, serr := decodeSummary(v)
		if (err == nil) != (serr == nil) {
			t.Fatalf("decodeToken: %v; decodeSummary: %v", err, serr)
		}
		if err == nil {
			if w := tok.Summary(); sum.Account != w.Account || sum.Login != w.Login || sum.Refreshable != w.Refreshable ||
				!sum.Expiry.Equal(w.Expiry) || !sum.IssuedAt.Equal(w.IssuedAt) {
				t.Fatalf("decodeSummary: %+v; decodeToken's: %+v", sum, w)
			}
			if again, err := decodeToken(encodeToken(tok)); err != nil || !sameToken(again, tok) {
				t.Fatalf("re-encoding %+v: %+v, %v", tok, again, err)
			}
		}
	})
}
