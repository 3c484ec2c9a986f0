package caddymodule

import (
	"errors"
	"net/http"
	"time"

	"github.com/amobridge/amobridge/exchange"
	"github.com/amobridge/amobridge/legacy"
)

// answer is what the module makes of a broker error, wherever it meets
// one: the legacy error a client gets, the outcome counted in the metrics,
// and the status a bulk exchange reports for the user.
type answer struct {
	status     int
	code       string // legacy error_code
	text       string // never a secret
	retryAfter time.Duration
	outcome    string // amobridge_requests_total's outcome label
	migration  string // MigrationResult.Status
	detail     string // MigrationResult.Detail
}

// answers maps each kind of broker error to its answer; answerFor falls
// back on internal for an error of no known kind.
var answers = map[exchange.Kind]answer{
	exchange.KindWrongKey: {status: http.StatusUnauthorized, code: "110",
		text:    legacy.ErrBadCredentials().Text,
		outcome: outcomeRejected, migration: "wrong_key",
		detail: "amoCRM rejected the key, or it differs from the stored one"},
	exchange.KindLimited: {status: http.StatusServiceUnavailable, code: "503",
		text: "amoCRM allows one key exchange per user per 5 minutes; retry later", retryAfter: time.Minute,
		outcome: outcomeLimited, migration: "limited",
		detail: "amoCRM allows one exchange per user per 5 minutes"},
	exchange.KindTimeout: {status: http.StatusGatewayTimeout, code: "504",
		text:    "amoCRM did not deliver the authorization code in time; retry shortly",
		outcome: outcomeFailed, migration: "timeout",
		detail: "no code arrived in time; it may still complete"},
	exchange.KindUpstream: {status: http.StatusBadGateway, code: "502",
		text:    "amoCRM is unreachable or answered nonsense",
		outcome: outcomeFailed, migration: "failed",
		detail: "amoCRM unreachable or answered nonsense"},
	exchange.KindBusy: {status: http.StatusTooManyRequests, code: "429",
		text: "too many requests toward amoCRM for this account, or too many rejected keys from this client; retry later", retryAfter: time.Second,
		outcome: outcomeLimited, migration: "limited",
		detail: "the account's budget toward amoCRM (rate_limit) is spent for now"},
	exchange.KindInternal: {status: http.StatusServiceUnavailable, code: "503",
		text: "temporarily unavailable", retryAfter: 5 * time.Second,
		outcome: outcomeFailed, migration: "failed", detail: "internal error"},
}

// answerFor returns the answer to a broker error.
func answerFor(err error) answer {
	if a, ok := answers[exchange.KindOf(err)]; ok {
		return a
	}
	return answers[exchange.KindInternal]
}

// legacyError is the answer as a legacy error; the broker's own
// Retry-After, if it gave one, wins over the default.
func (a answer) legacyError(err error) *legacy.Error {
	le := &legacy.Error{Status: a.status, Code: a.code, Text: a.text, RetryAfter: a.retryAfter}
	var ee *exchange.Error
	if errors.As(err, &ee) && ee.RetryAfter > 0 && a.retryAfter > 0 {
		le.RetryAfter = ee.RetryAfter
	}
	return le
}

// Answers of the module's own making.
var (
	// reloading answers a request that reached a handler whose
	// configuration was replaced and has let its store go.
	reloading = func() *legacy.Error { return legacy.Unavailable("the proxy is reloading; retry", time.Second) }
	// storeUnavailable answers a request whose token store cannot be used.
	storeUnavailable = func() *legacy.Error { return legacy.Unavailable("token store unavailable", 5*time.Second) }
)
