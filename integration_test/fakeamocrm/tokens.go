package fakeamocrm

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strconv"
	"time"
)

// authCode is an authorization code, kept under the hash of its value.
type authCode struct {
	user *user
	exp  time.Time
	used bool
}

// accessToken is an access token, kept under the hash of its value.
type accessToken struct {
	user    *user
	exp     time.Time
	revoked bool
}

// refreshToken is a refresh token, kept under the hash of its value.
type refreshToken struct {
	user    *user
	exp     time.Time
	used    bool
	revoked bool
}

// sum hashes a secret for storage and comparison.
func sum(secret string) [32]byte { return sha256.Sum256([]byte(secret)) }

// hashKey is the map key of a stored secret.
func hashKey(secret string) string {
	h := sum(secret)
	return hex.EncodeToString(h[:])
}

// randomHex returns n random bytes, hex-encoded.
func randomHex(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(fmt.Sprintf("fakeamocrm: reading random bytes: %v", err))
	}
	return hex.EncodeToString(b)
}

// newCode returns a fresh authorization code shaped like amoCRM's (long, opaque).
func newCode() string { return "def50200" + randomHex(48) }

// newRefreshToken returns a fresh opaque refresh token.
func newRefreshToken() string { return "def50200" + randomHex(64) }

// jwtClaims are the claims of an access token, as amoCRM's carry them.
type jwtClaims struct {
	Aud        string   `json:"aud"`
	Jti        string   `json:"jti"`
	Iat        int64    `json:"iat"`
	Nbf        int64    `json:"nbf"`
	Exp        int64    `json:"exp"`
	Sub        string   `json:"sub"`
	GrantType  string   `json:"grant_type"`
	AccountID  int64    `json:"account_id"`
	BaseDomain string   `json:"base_domain"`
	Version    int      `json:"version"`
	Scopes     []string `json:"scopes"`
	HashUUID   string   `json:"hash_uuid"`
	APIDomain  string   `json:"api_domain"`
}

// newAccessToken returns a JWT-shaped access token for u of account a, valid
// from now until exp, signed with the server's HMAC key.
func (s *Server) newAccessToken(a *account, u *user, now, exp time.Time) string {
	enc := base64.RawURLEncoding
	header, _ := json.Marshal(map[string]string{"typ": "JWT", "alg": "HS256"})
	claims, _ := json.Marshal(jwtClaims{
		Aud: s.opts.ClientID, Jti: randomHex(16), Iat: now.Unix(), Nbf: now.Unix(), Exp: exp.Unix(),
		Sub: strconv.FormatInt(u.id, 10), AccountID: a.ID, BaseDomain: s.opts.BaseDomain, Version: 2,
		Scopes:   []string{"crm", "files", "files_delete", "notifications", "push_notifications"},
		HashUUID: randomHex(16), APIDomain: s.opts.APIDomain,
	})
	signing := enc.EncodeToString(header) + "." + enc.EncodeToString(claims)
	mac := hmac.New(sha256.New, s.signKey)
	mac.Write([]byte(signing))
	return signing + "." + enc.EncodeToString(mac.Sum(nil))
}

// tokenAnswer is the token endpoint's success body.
type tokenAnswer struct {
	TokenType    string `json:"token_type"`
	ExpiresIn    int64  `json:"expires_in"`
	ServerTime   int64  `json:"server_time"`
	AccessToken  string `json:"access_token"`
	RefreshToken string `json:"refresh_token"`
}

// issuePairLocked creates and stores a new token pair for u. s.mu must be held.
func (s *Server) issuePairLocked(a *account, u *user, now time.Time) tokenAnswer {
	exp := now.Add(s.opts.AccessTTL)
	at := s.newAccessToken(a, u, now, exp)
	rt := newRefreshToken()
	s.access[hashKey(at)] = &accessToken{user: u, exp: exp}
	s.refresh[hashKey(rt)] = &refreshToken{user: u, exp: now.Add(s.opts.RefreshTTL)}
	return tokenAnswer{
		TokenType: "Bearer", ExpiresIn: int64(s.opts.AccessTTL / time.Second), ServerTime: now.Unix(),
		AccessToken: at, RefreshToken: rt,
	}
}
