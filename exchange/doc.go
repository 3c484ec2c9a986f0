// Package exchange talks OAuth 2.0 to amoCRM (exchange_api_key, code and
// refresh grants, account info) and owns each user's token life: one flight
// per user, waiting for the callback, amoCRM's limits, refresh, and a
// background keeper.
//
// A Broker is the only place that decides when amoCRM's OAuth endpoints are
// called. Callers ask it for a user's token with Token (legacy key presented),
// SessionToken (an emulated session already proved the key) or Reauthorize
// (amoCRM rejected an access token); the callback route hands amoCRM's code
// to HandleCallback.
//
// Secrets (API keys, access and refresh tokens, authorization codes, the
// client secret) never appear in an error's text or in a log line: users are
// named by account and login.
package exchange
