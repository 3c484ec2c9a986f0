package fakeamocrm

import (
	"maps"
	"net/http"
	"time"
)

// Stats are the fake's counters since New or the last Reset.
type Stats struct {
	ExchangeCalls    int // every call to /oauth2/exchange_api_key
	Exchanges        int // accepted (202)
	ExchangeRejected int // 400/403: bad request, wrong client, unknown user, wrong key
	Exchange429      int // a second exchange of one user inside ExchangeInterval

	TokenCalls      int // every call to /oauth2/access_token
	CodeGrants      int // successful authorization_code grants
	CodeGrantErrors int // failed authorization_code grants (and token calls with no valid grant_type)
	Refreshes       int // successful refresh_token grants
	RefreshReuse    int // refresh tokens presented a second time (also in RefreshErrors)
	RefreshErrors   int // failed refresh_token grants

	APIRequests  int            // requests to /api/... and /private/... of a known account
	API401       int            // of them, answered 401 for a bad or absent Bearer token
	RateLimited  int            // of them, answered 429 because of RateLimit
	Violations   int            // len(Violations())
	MaxPerSecond map[string]int // per account: the most API requests seen in one wall-clock second
	// MaxPerSlidingSecond is, per account, the most API requests seen in any
	// interval of one second (a stricter measure than MaxPerSecond).
	MaxPerSlidingSecond map[string]int

	CallbacksDelivered int // the Redirect URI answered 2xx
	CallbacksDropped   int // withheld by SetDropCallbacks
	CallbacksFailed    int // no answer within the timeout, a transport error or a non-2xx status
}

// Recorded is one request as the fake received it (debug endpoints excluded).
type Recorded struct {
	Time     time.Time
	Account  string // as routed; may be an unknown account
	Method   string
	Host     string
	Path     string // with the /_acct/<name> prefix stripped
	RawQuery string
	Header   http.Header // as received, Authorization and Cookie included
	Body     []byte      // nil for /oauth2/ requests: those carry keys, secrets and tokens
	BodyLen  int
	Status   int    // the status answered (0: the connection was dropped)
	Login    string // the owner of a valid Bearer token, if one was presented
	UserID   int64
}

// Violation kinds.
const (
	ViolationCredential       = "legacy_credential"  // USER_LOGIN/USER_HASH/login+api_key/session_id cookie reached amoCRM
	ViolationAuthPHP          = "auth_php"           // /private/api/auth.php was called
	ViolationRefreshReuse     = "refresh_reuse"      // a refresh token was spent twice
	ViolationCodeReuse        = "code_reuse"         // an authorization code was presented twice
	ViolationExchangeTooOften = "exchange_too_often" // exchange_api_key twice for one user inside ExchangeInterval
	ViolationUnknownAccount   = "unknown_account"    // a request for an account that does not exist
)

// Violation is something the proxy did that it must never do. It never holds a
// credential's value: only its name and where it was.
type Violation struct {
	Time    time.Time
	Kind    string // one of the Violation* constants
	Account string
	Method  string
	Path    string // without the query
	Name    string // the credential's parameter or cookie name, e.g. "USER_HASH"
	Where   string // "query", "form", "multipart", "json", "cookie"
	Detail  string
}

// CallbackResult is the outcome of one call (or withheld call) to the Redirect URI.
type CallbackResult struct {
	Time    time.Time
	Account string
	Login   string
	State   string
	Status  int    // the Redirect URI's answer; 0 when none
	Outcome string // "delivered", "dropped", "failed"
	Error   string // for "failed" without a status; never holds the code
}

type rateWindow struct {
	second int64       // the current wall-clock second
	count  int         // requests in it
	recent []time.Time // requests in the last second, oldest first
}

// recordLocked appends rq to the recorded requests. s.mu must be held.
func (s *Server) recordLocked(rq *request, acct string) *Recorded {
	rec := &Recorded{
		Time:     rq.now,
		Account:  acct,
		Method:   rq.Method,
		Host:     rq.Host,
		Path:     rq.path,
		RawQuery: rq.URL.RawQuery,
		Header:   rq.Header.Clone(),
		BodyLen:  len(rq.body),
	}
	if !rq.isOAuth {
		rec.Body = append([]byte(nil), rq.body...)
	}
	s.requests = append(s.requests, rec)
	return rec
}

// violateLocked records a violation. s.mu must be held.
func (s *Server) violateLocked(rq *request, acct, kind, name, where, detail string) {
	s.violations = append(s.violations, Violation{
		Time: rq.now, Kind: kind, Account: acct, Method: rq.Method, Path: rq.path,
		Name: name, Where: where, Detail: detail,
	})
	s.st.Violations = len(s.violations)
}

// countRateLocked counts one API request of acct in the current wall-clock
// second and reports whether it is past the rate limit. s.mu must be held.
func (s *Server) countRateLocked(acct string) bool {
	now := s.wallNow()
	sec := now.Unix()
	rw := s.rate[acct]
	if rw == nil {
		rw = &rateWindow{}
		s.rate[acct] = rw
	}
	if rw.second != sec {
		rw.second, rw.count = sec, 0
	}
	rw.count++
	if s.st.MaxPerSecond == nil {
		s.st.MaxPerSecond = make(map[string]int)
		s.st.MaxPerSlidingSecond = make(map[string]int)
	}
	if rw.count > s.st.MaxPerSecond[acct] {
		s.st.MaxPerSecond[acct] = rw.count
	}
	drop := 0
	for drop < len(rw.recent) && now.Sub(rw.recent[drop]) >= time.Second {
		drop++
	}
	rw.recent = append(rw.recent[drop:], now)
	if n := len(rw.recent); n > s.st.MaxPerSlidingSecond[acct] {
		s.st.MaxPerSlidingSecond[acct] = n
	}
	if s.opts.RateLimit > 0 && rw.count > s.opts.RateLimit {
		s.st.RateLimited++
		return true
	}
	return false
}

// Stats returns a copy of the counters.
func (s *Server) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.st
	st.MaxPerSecond = maps.Clone(s.st.MaxPerSecond)
	st.MaxPerSlidingSecond = maps.Clone(s.st.MaxPerSlidingSecond)
	if st.MaxPerSecond == nil {
		st.MaxPerSecond = map[string]int{}
		st.MaxPerSlidingSecond = map[string]int{}
	}
	return st
}

// Requests returns copies of the recorded requests, oldest first.
func (s *Server) Requests() []Recorded {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Recorded, len(s.requests))
	for i, r := range s.requests {
		out[i] = *r
		out[i].Header = r.Header.Clone()
		out[i].Body = append([]byte(nil), r.Body...)
		if r.Body == nil {
			out[i].Body = nil
		}
	}
	return out
}

// Violations returns the recorded violations, oldest first.
func (s *Server) Violations() []Violation {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Violation(nil), s.violations...)
}

// Callbacks returns the outcomes of the callbacks to the Redirect URI, in the
// order they completed (or were dropped).
func (s *Server) Callbacks() []CallbackResult {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]CallbackResult(nil), s.callbacks...)
}
