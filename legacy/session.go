package legacy

import (
	"crypto/rand"
	"encoding/base64"
	"fmt"
)

// sessionIDBytes is the entropy of a session id: 256 bits.
const sessionIDBytes = 32

// NewSessionID returns a fresh emulated session id: 256 random bits from
// crypto/rand, base64url without padding (43 characters, cookie-safe).
func NewSessionID() (string, error) {
	var b [sessionIDBytes]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("legacy: reading random bytes for a session id: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(b[:]), nil
}
