package legacy

import "time"

// Kind tells what a request authenticates with.
type Kind uint8

const (
	// None: no legacy credential and no emulated session.
	None Kind = iota
	// Key: a login and an API key (USER_LOGIN+USER_HASH, or login+api_key on /api/unsorted/).
	Key
	// Session: only an emulated session cookie.
	Session
)

// String returns the kind's name, for logs.
func (k Kind) String() string {
	switch k {
	case None:
		return "none"
	case Key:
		return "key"
	case Session:
		return "session"
	}
	return "unknown"
}

// Format is the answer format of an auth.php request.
type Format uint8

const (
	// XML is auth.php's default answer format.
	XML Format = iota
	// JSON is chosen by type=json in the query string or the body.
	JSON
)

// String returns the format's name, for logs.
func (f Format) String() string {
	if f == JSON {
		return "json"
	}
	return "xml"
}

// DefaultMaxBody is the largest body Strip reads when Options.MaxBody is 0.
const DefaultMaxBody = 10 << 20

// DefaultSessionCookie is the emulated session cookie's name when
// Options.SessionCookie is empty.
const DefaultSessionCookie = "session_id"

// Options tune Strip.
type Options struct {
	MaxBody       int64  // largest body read to look for credentials; 0 (or less) means 10 MiB
	SessionCookie string // name of the emulated session cookie; "" means "session_id"

	// ReadTimeout bounds the time Strip waits for a body it reads, from
	// its first byte to its last (or to MaxBody): 0 means
	// DefaultReadTimeout (30 s), a negative value no limit. A body that
	// takes longer is a 408 *Error (code "408", see Timeout).
	ReadTimeout time.Duration
	// SetReadDeadline, if set, enforces ReadTimeout on the connection:
	// normally http.NewResponseController(w).SetReadDeadline. Strip sets
	// the deadline before it reads a body and clears it (the zero time)
	// after, unless it passed: a stalled read then fails, and so do the
	// server's own reads of the rest, so the server writes the 408 and
	// closes the connection. Without it (or if it returns an
	// error) Strip reads the body in a goroutine and stops waiting for it
	// at the timeout; the abandoned read then ends only when the client
	// sends more or goes away, and the server may keep the connection
	// open until then.
	SetReadDeadline func(time.Time) error
}

func (o Options) readTimeout() time.Duration {
	if o.ReadTimeout == 0 {
		return DefaultReadTimeout
	}
	return o.ReadTimeout
}

func (o Options) maxBody() int64 {
	if o.MaxBody <= 0 {
		return DefaultMaxBody
	}
	return o.MaxBody
}

func (o Options) sessionCookie() string {
	if o.SessionCookie == "" {
		return DefaultSessionCookie
	}
	return o.SessionCookie
}

// Found is what Strip found in a request. Login, Key and SessionID are
// secrets (Login a little less so): never log Key or SessionID.
type Found struct {
	Kind      Kind
	Login     string
	Key       string // USER_HASH or api_key
	SessionID string // the emulated session cookie's value, if present
	AuthPHP   bool   // the request is for /private/api/auth.php: answer it locally
	Format    Format // answer format for auth.php (type=json → JSON, else XML)
}
