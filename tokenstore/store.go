// Package tokenstore keeps amoCRM OAuth token pairs, API-key hashes, pending
// exchanges, exchange attempts and emulated auth.php sessions durably, with an
// in-memory cache in front so that the hot path never reads the disk.
//
// It knows nothing of amoCRM's protocol or of Caddy: it stores what it is given.
package tokenstore

import (
	"context"
	"errors"
	"time"
	"unsafe"
)

// ErrNotFound is returned when a record does not exist (or has expired).
var ErrNotFound = errors.New("tokenstore: not found")

// ErrClosed is returned by every method after Close.
var ErrClosed = errors.New("tokenstore: closed")

// Token is one user's OAuth pair, bound to (Account, Login) and to the keyed
// hash of the API key it was obtained with.
//
// A *Token returned by the store is shared and must be treated as read-only:
// to change it, copy it, change the copy and Put it.
type Token struct {
	Account string `json:"account"` // amoCRM subdomain, e.g. "acme"
	Login   string `json:"login"`   // the user's login (e-mail), as sent by the client

	// KeyHash is the store's keyed hash (see Store.HashKey) of the API key
	// the pair was obtained with. Never the key itself.
	KeyHash []byte `json:"key_hash"`

	AccessToken string `json:"access_token"`
	// RefreshToken is the pair's refresh token, "" for none (amoCRM
	// declared it dead). A token served by Get from the cache does not
	// carry it (the cache keeps what every request needs, and a refresh
	// reads the stored pair through Update): test Refreshable, not this
	// field, for whether the pair has one. Update's and List's tokens
	// carry it.
	RefreshToken string    `json:"refresh_token"`
	Expiry       time.Time `json:"expiry"`    // when AccessToken expires
	IssuedAt     time.Time `json:"issued_at"` // when this pair (and so RefreshToken) was obtained
	LastUsed     time.Time `json:"last_used"` // last time a request was served with it (approximate)

	// auth is "Bearer " + AccessToken laid out by the cache in the same
	// memory as AccessToken (AccessToken is auth[7:]), so that the hot path
	// needs no concatenation. See Authorization.
	auth string

	// elided says the pair has a refresh token that this copy, served
	// from the cache, does not carry. See Refreshable.
	elided bool
}

// Refreshable reports whether the pair has a refresh token, whether or
// not this copy carries it (see RefreshToken).
func (t *Token) Refreshable() bool { return t.RefreshToken != "" || t.elided }

// Summary is what a census of the stored pairs needs of one: whose it is,
// whether it can be refreshed, and its times; no token, no key hash.
type Summary struct {
	Account     string
	Login       string
	Refreshable bool      // the pair has a refresh token (see Token.Refreshable)
	Expiry      time.Time // the access token's expiry
	IssuedAt    time.Time // when the pair was obtained (exchange or refresh)
}

// Summary returns t's summary.
func (t *Token) Summary() Summary {
	return Summary{Account: t.Account, Login: t.Login, Refreshable: t.Refreshable(), Expiry: t.Expiry, IssuedAt: t.IssuedAt}
}

// errElided is returned by a write of a token copied from the cache that
// lacks the refresh token the pair has: writing it would lose that token.
var errElided = errors.New("tokenstore: the token, served from the cache, does not carry its refresh token; " +
	"write a token read through Update instead")

// writable checks that t may be written: that it carries the refresh
// token its pair has.
func writable(t *Token) error {
	if t.elided && t.RefreshToken == "" {
		return errElided
	}
	return nil
}

// Authorization returns the value of the Authorization header that carries
// t's access token: "Bearer " + AccessToken, without allocating for a token
// served from the cache.
func (t *Token) Authorization() string {
	const bearer = "Bearer "
	if len(t.auth) == len(bearer)+len(t.AccessToken) && len(t.AccessToken) > 0 &&
		unsafe.StringData(t.auth[len(bearer):]) == unsafe.StringData(t.AccessToken) {
		return t.auth
	}
	return bearer + t.AccessToken
}

// Session is an emulated auth.php session: a random cookie value that stands
// for a user's credentials until Expires.
type Session struct {
	Account string    `json:"account"`
	Login   string    `json:"login"`
	Expires time.Time `json:"expires"`
}

// Pending is an exchange_api_key call that has been made and whose
// authorization code has not arrived yet. It is looked up by its state.
type Pending struct {
	State   string    `json:"-"` // the random state sent to amoCRM; stored only as a hash
	Account string    `json:"account"`
	Login   string    `json:"login"`
	BaseURL string    `json:"base_url"` // where the code grant must be sent (the account's API base)
	KeyHash []byte    `json:"key_hash"` // hash of the key that was exchanged
	Created time.Time `json:"created"`
	Expires time.Time `json:"expires"` // after this the state is unknown
}

// Attempt records the last exchange_api_key call for one user, so that amoCRM's
// limit (one exchange per user per 5 minutes) holds across restarts, and so
// that a key amoCRM rejected is remembered as wrong.
type Attempt struct {
	Account  string    `json:"account"`
	Login    string    `json:"login"`
	At       time.Time `json:"at"`
	KeyHash  []byte    `json:"key_hash"` // the key that was tried
	Rejected bool      `json:"rejected"` // amoCRM answered that the key is wrong
	// Done: the exchange has ended, with its token or without one: no
	// process waits for it any more (a process of a cluster that finds an
	// exchange of the same key not Done waits for its token).
	Done bool `json:"done"`
}

// Store is the durable home of tokens and the state around them.
// Implementations must be safe for concurrent use.
type Store interface {
	// Get returns the user's token. The hot path: served from memory.
	Get(ctx context.Context, account, login string) (*Token, error)
	// Put stores t durably (the write is synced before Put returns) and then
	// makes it visible to Get.
	Put(ctx context.Context, t *Token) error
	// Delete removes the user's token. Deleting a missing token is not an error.
	Delete(ctx context.Context, account, login string) error
	// List calls fn for every stored token, in no particular order, until fn
	// returns an error, which List then returns.
	List(ctx context.Context, fn func(*Token) error) error
	// Touch records that the user's token was just used. Cheap (memory only);
	// the store persists it lazily.
	Touch(account, login string, at time.Time)

	// PutSession stores a session under id (only a hash of id is written).
	PutSession(ctx context.Context, id string, s Session) error
	// GetSession returns the session, or ErrNotFound if missing or expired.
	GetSession(ctx context.Context, id string) (Session, error)
	// DeleteSession removes a session.
	DeleteSession(ctx context.Context, id string) error

	// PutPending records a pending exchange under p.State (hashed).
	PutPending(ctx context.Context, p Pending) error
	// TakePending returns and removes the pending exchange for state
	// atomically: a state can be taken once. ErrNotFound if unknown or expired.
	TakePending(ctx context.Context, state string) (Pending, error)

	// PutAttempt records the last exchange attempt for a user.
	PutAttempt(ctx context.Context, a Attempt) error
	// GetAttempt returns the last exchange attempt for a user, or ErrNotFound.
	GetAttempt(ctx context.Context, account, login string) (Attempt, error)

	// Sweep removes expired sessions and pending exchanges and persists
	// last-use times; it returns how many records it removed.
	Sweep(ctx context.Context, now time.Time) (int, error)

	// HashKey returns the store's keyed hash (HMAC-SHA256 with a secret kept
	// in the store) of an API key. Compare results with subtle.ConstantTimeCompare.
	HashKey(apiKey string) []byte
	// KeyHash is HashKey as an array, allocating nothing.
	KeyHash(apiKey string) [32]byte

	// Close flushes and closes the store.
	Close() error

	// The atomic steps several users of the store agree on.
	Coordinator
}
