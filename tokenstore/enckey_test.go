package tokenstore

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"strings"
	"testing"
)

func TestParseEncryptionKey(t *testing.T) {
	for _, n := range []int{16, 24, 32} {
		key := make([]byte, n)
		for i := range key {
			key[i] = byte(i*37 + 200) // bytes that make + / - _ in base64
		}
		for name, s := range map[string]string{
			"hex":             hex.EncodeToString(key),
			"HEX":             strings.ToUpper(hex.EncodeToString(key)),
			"std":             base64.StdEncoding.EncodeToString(key),
			"raw std":         base64.RawStdEncoding.EncodeToString(key),
			"url":             base64.URLEncoding.EncodeToString(key),
			"raw url":         base64.RawURLEncoding.EncodeToString(key),
			"with whitespace": " " + hex.EncodeToString(key) + "\n",
		} {
			got, err := ParseEncryptionKey(s)
			if err != nil || !bytes.Equal(got, key) {
				t.Errorf("%d bytes, %s: got %x, %v", n, name, got, err)
			}
		}
	}
}

// TestParseEncryptionKeyErrors: errors say what length was found and what
// is allowed, and never contain the key.
func TestParseEncryptionKeyErrors(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{hex.EncodeToString([]byte("0123456789abcdef0123")), "20 bytes"},
		{base64.StdEncoding.EncodeToString([]byte("SECRETSECRETSECRETSECRETSECRETSECRETSECRET")), "42 bytes"},
		{"c2VjcmV0", "6 bytes"},
		{"not a key at all!", "17 characters"},
		{"", "empty"},
	} {
		_, err := ParseEncryptionKey(c.in)
		if err == nil {
			t.Errorf("ParseEncryptionKey(%q) succeeded", c.in)
			continue
		}
		msg := err.Error()
		if !strings.Contains(msg, c.want) || (c.in != "" && !strings.Contains(msg, "16, 24 or 32")) {
			t.Errorf("error %q does not say %q and the allowed lengths", msg, c.want)
		}
		if c.in != "" && strings.Contains(msg, c.in) {
			t.Errorf("error %q contains the key", msg)
		}
	}
}
