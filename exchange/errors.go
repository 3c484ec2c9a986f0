package exchange

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"time"
)

// Kind classifies a Broker error by what the caller should answer.
type Kind int

// The kinds of Broker errors.
const (
	// KindWrongKey: the presented key is not the user's (legacy 401, code 110),
	// or the user has no usable token and none can be obtained without a key.
	KindWrongKey Kind = iota + 1
	// KindLimited: amoCRM's exchange limit holds; retry after RetryAfter (503).
	KindLimited
	// KindTimeout: no authorization code arrived in time, or the caller's
	// context ended while waiting (504).
	KindTimeout
	// KindUpstream: amoCRM is unreachable or answered nonsense (502).
	KindUpstream
	// KindInternal: the store failed, or the broker is closed (500).
	KindInternal
	// KindBusy: the account's budget of calls to amoCRM (RateLimit), or the
	// client's budget of rejected exchanges, is spent; retry after
	// RetryAfter (429). amoCRM was not called.
	KindBusy
)

// String returns the kind's name.
func (k Kind) String() string {
	switch k {
	case KindWrongKey:
		return "wrong key"
	case KindLimited:
		return "limited"
	case KindTimeout:
		return "timeout"
	case KindUpstream:
		return "upstream"
	case KindInternal:
		return "internal"
	case KindBusy:
		return "busy"
	}
	return "kind(" + strconv.Itoa(int(k)) + ")"
}

// Error is the error every Broker method returns (except HandleCallback's
// ErrBadCallback). Its text never holds a key, token, code or secret.
type Error struct {
	Kind       Kind
	RetryAfter time.Duration // > 0 with KindLimited (and sometimes KindWrongKey): when to try again
	Op         string        // what the broker was doing, e.g. "exchange", "refresh"
	Err        error         // the cause, if any
}

// Error returns "exchange: <op>: <kind>[: <cause>]".
func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString("exchange: ")
	if e.Op != "" {
		b.WriteString(e.Op)
		b.WriteString(": ")
	}
	b.WriteString(e.Kind.String())
	if e.RetryAfter > 0 {
		b.WriteString(" (retry after ")
		b.WriteString(e.RetryAfter.Round(time.Second).String())
		b.WriteString(")")
	}
	if e.Err != nil {
		b.WriteString(": ")
		b.WriteString(e.Err.Error())
	}
	return b.String()
}

// Unwrap returns the cause.
func (e *Error) Unwrap() error { return e.Err }

// KindOf returns the Kind of err if it is (or wraps) an *Error, else 0.
func KindOf(err error) Kind {
	var e *Error
	if errors.As(err, &e) {
		return e.Kind
	}
	return 0
}

// ErrBadCallback is returned by HandleCallback for a callback that must be
// answered 400: no code or state, a client_id that is not ours, or a state
// that is unknown, expired or already used. Nothing is exchanged.
var ErrBadCallback = errors.New("exchange: bad callback")

// ErrTokenRejected is the cause (see errors.Is) of AccountInfo's error when
// amoCRM answered 401 to the access token: call Reauthorize and try again.
var ErrTokenRejected = errors.New("amoCRM rejected the access token")

// ErrClosed is the cause of errors returned after Close.
var ErrClosed = errors.New("broker closed")

// Causes used inside the package.
var (
	errKeyRejected   = errors.New("amoCRM rejected the key")
	errTooOften      = errors.New("amoCRM's exchange limit")
	errNoCode        = errors.New("no authorization code arrived in time")
	errDeadRefresh   = errors.New("refresh token is dead")
	errNoToken       = errors.New("no token for this user")
	errKeyMismatch   = errors.New("key does not match the user's token")
	errKeySuperseded = errors.New("amoCRM has just accepted another key for this user")
	errBudget        = errors.New("the account's budget of calls to amoCRM (rate_limit) is spent for now")
	errClientBudget  = errors.New("this client caused too many exchanges that amoCRM rejected")
	errClientBlocked = errors.New("amoCRM rejected a key from this client for this user; another cannot be tried yet")
	errTooManyTurns  = errors.New("token kept changing under the request")
	errNotSent       = errors.New("amoCRM unreachable (no connection)")
)

func newErr(k Kind, op string, err error) *Error { return &Error{Kind: k, Op: op, Err: err} }

// ctxErr turns the end of a caller's context into a KindTimeout error.
func ctxErr(op string, ctx context.Context) *Error {
	return &Error{Kind: KindTimeout, Op: op, Err: ctx.Err()}
}
