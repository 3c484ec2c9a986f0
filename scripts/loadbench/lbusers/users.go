// Package lbusers names the load benchmark's users, so that the seeding
// program, the load generator and the wrk script agree: user i has the login
// user<i>@example.com and the API key Key(i).
package lbusers

import (
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"math/rand/v2"
	"net/url"
	"time"
)

// Login is user i's login.
func Login(i int) string { return fmt.Sprintf("user%d@example.com", i) }

// Key is user i's legacy API key (USER_HASH): 40 hex digits. wrk's Lua
// script builds it as string.format("%08x", i) .. Suffix.
func Key(i int) string { return fmt.Sprintf("%08x", i) + Suffix }

// Suffix is the constant part of every key.
const Suffix = "0000000000000000000000000000a5a5"

// Query is user i's legacy credentials as a query string.
func Query(i int) string {
	return "USER_LOGIN=" + url.QueryEscape(Login(i)) + "&USER_HASH=" + Key(i)
}

// Tokens returns a token pair for user i shaped like amoCRM's, so that the
// store holds what a real one would (size and entropy; the benchmark's
// figures depend on both, and compression on the second): an RS256 JWT
// whose header and claims carry a random 80-hex-digit jti, the integration's
// client id, random ids and amoCRM's claim names, signed by 256 random
// bytes (about 1,080 characters), and an opaque "def50200" refresh token of
// 356 random bytes in hex (720 characters), as amoCRM's OAuth server issues.
func Tokens(i int, now time.Time) (access, refresh string) {
	var seed [32]byte
	binary.LittleEndian.PutUint64(seed[:], uint64(i))
	r := rand.New(rand.NewChaCha8(seed))
	random := func(n int) []byte {
		b := make([]byte, n)
		for j := range b {
			b[j] = byte(r.Uint32())
		}
		return b
	}
	uuid := func() string {
		h := hex.EncodeToString(random(16))
		return h[:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
	}
	jti := hex.EncodeToString(random(40))
	b64 := base64.RawURLEncoding.EncodeToString
	header := `{"typ":"JWT","alg":"RS256","jti":"` + jti + `"}`
	iat := now.Unix()
	claims := fmt.Sprintf(`{"aud":"%s","jti":"%s","iat":%d,"nbf":%d,"exp":%d,"sub":"%d","grant_type":"",`+
		`"account_id":%d,"base_domain":"amocrm.ru","version":2,"scopes":["crm","files","files_delete",`+
		`"notifications","push_notifications"],"hash_uuid":"%s","api_domain":"api-b.amocrm.ru"}`,
		"6f1d5c2e-8a47-4b9e-9c3d-2b7e1f0a9d41", jti, iat, iat, iat+86400, 10000000+r.IntN(90000000),
		30000000+r.IntN(9000000), uuid())
	access = b64([]byte(header)) + "." + b64([]byte(claims)) + "." + b64(random(256))
	refresh = "def50200" + hex.EncodeToString(random(356))
	return access, refresh
}
