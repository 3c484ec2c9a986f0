package tokenstore

import (
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
)

// ParseEncryptionKey decodes an encryption key given as hex or as base64
// (standard or URL alphabet, padded or not) of 16, 24 or 32 bytes (AES-128,
// -192 or -256). Surrounding white space is ignored. A string made only of
// hex digits is read as hex. Errors never contain the key.
func ParseEncryptionKey(s string) ([]byte, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return nil, errors.New("tokenstore: empty encryption key")
	}
	key, how, err := decodeKey(s)
	if err != nil {
		return nil, fmt.Errorf("tokenstore: encryption key (%d characters) is neither hex nor base64; "+
			"want 16, 24 or 32 bytes in hex or base64", len(s))
	}
	switch len(key) {
	case 16, 24, 32:
		return key, nil
	}
	clear(key)
	return nil, fmt.Errorf("tokenstore: encryption key decodes (as %s) to %d bytes; want 16, 24 or 32 bytes",
		how, len(key))
}

// decodeKey tries hex, then the base64 variants. how names the encoding.
func decodeKey(s string) (key []byte, how string, err error) {
	if isHex(s) && len(s)%2 == 0 {
		key, err = hex.DecodeString(s)
		return key, "hex", err
	}
	for _, enc := range []*base64.Encoding{
		base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding,
	} {
		if key, err = enc.DecodeString(s); err == nil {
			return key, "base64", nil
		}
	}
	return nil, "", errors.New("not hex or base64")
}

func isHex(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F') {
			return false
		}
	}
	return true
}
