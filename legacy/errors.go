package legacy

import (
	"net/http"
	"strconv"
	"time"
)

// Error is an answer the module gives in the legacy error format. Its Text
// is written to the client: it names what is wrong but never carries a
// credential, a token or any other value taken from the request.
type Error struct {
	Status     int           // HTTP status
	Code       string        // legacy error_code ("110" bad credentials; else the status as text)
	Text       string        // human text; never a secret
	RetryAfter time.Duration // > 0: Retry-After header, whole seconds rounded up
}

// Error returns "legacy: <status> <code>: <text>"; it holds no secret.
func (e *Error) Error() string {
	return "legacy: " + strconv.Itoa(e.Status) + " " + e.code() + ": " + e.Text
}

func (e *Error) status() int {
	if e.Status < 100 || e.Status > 999 {
		return http.StatusInternalServerError
	}
	return e.Status
}

func (e *Error) code() string {
	if e.Code == "" {
		return strconv.Itoa(e.status())
	}
	return e.Code
}

// retryAfterSeconds is RetryAfter in whole seconds, rounded up; 0 when unset.
func (e *Error) retryAfterSeconds() int64 {
	if e.RetryAfter <= 0 {
		return 0
	}
	return int64((e.RetryAfter + time.Second - 1) / time.Second)
}

// NewError returns an *Error with the status as its legacy code.
func NewError(status int, text string) *Error {
	return &Error{Status: status, Code: strconv.Itoa(status), Text: text}
}

// ErrBadCredentials is amoCRM's answer to a wrong login or key: 401, code 110.
func ErrBadCredentials() *Error {
	return &Error{Status: http.StatusUnauthorized, Code: "110", Text: "wrong login or API key"}
}

// Malformed is a 400 for credentials the module cannot read. text names the
// problem and must not hold a value from the request.
func Malformed(text string) *Error {
	return &Error{Status: http.StatusBadRequest, Code: "400", Text: text}
}

// TooLarge is a 413 for a body over Options.MaxBody.
func TooLarge() *Error {
	return &Error{Status: http.StatusRequestEntityTooLarge, Code: "413", Text: "request body too large"}
}

// TooManyRequests is a 429 asking the client to wait retryAfter.
func TooManyRequests(retryAfter time.Duration) *Error {
	return &Error{Status: http.StatusTooManyRequests, Code: "429", Text: "too many requests", RetryAfter: retryAfter}
}

// Unavailable is a 503 with text, asking the client to come back after
// retryAfter (0: no Retry-After).
func Unavailable(text string, retryAfter time.Duration) *Error {
	return &Error{Status: http.StatusServiceUnavailable, Code: "503", Text: text, RetryAfter: retryAfter}
}

// BadGateway is a 502: amoCRM is unreachable or answered nonsense.
func BadGateway(text string) *Error {
	return &Error{Status: http.StatusBadGateway, Code: "502", Text: text}
}

// GatewayTimeout is a 504: amoCRM's authorization code did not come in time.
func GatewayTimeout(text string) *Error {
	return &Error{Status: http.StatusGatewayTimeout, Code: "504", Text: text}
}
