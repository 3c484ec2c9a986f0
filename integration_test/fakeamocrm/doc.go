// Package fakeamocrm is a strict, in-process fake of amoCRM for amobridge's
// integration tests and its demo.
//
// It implements the parts of amoCRM that the proxy talks to, as described in
// shared/amocrm-protocol.md: POST /oauth2/exchange_api_key with the asynchronous
// callback to the integration's Redirect URI, POST /oauth2/access_token (code and
// refresh grants, single-use rotating refresh tokens), GET /api/v4/account, and the
// legacy /api/v2/* and /private/api/v2/json/* endpoints, which accept only a Bearer
// token. It is deliberately strict: whatever real amoCRM would reject, it rejects,
// and every request that carries legacy credentials (USER_LOGIN, USER_HASH, login
// and api_key on /api/unsorted/, a session_id cookie, a call to auth.php) is
// recorded as a [Violation], because the proxy must never let one through.
//
// Everything tests need to assert on is recorded: [Server.Stats],
// [Server.Requests], [Server.Violations] and [Server.Callbacks]; knobs such as
// [Server.SetDown], [Server.SetDropCallbacks] or [Server.ExpireAccess] make amoCRM
// misbehave on demand. The same data and knobs are served over HTTP under /_fake/
// for tests that run the fake as a separate process (see cmd/fakeamocrm).
//
// # Routing
//
// The account a request is meant for is taken from, in order:
//  1. a path prefix /_acct/<name>/..., stripped before the request is handled
//     (tests point the proxy's api_base at http://127.0.0.1:PORT/_acct/{subdomain});
//  2. the first label of the Host header when it is a name of three or more labels
//     (acme.amocrm.ru → acme);
//  3. Options.DefaultAccount (or the only configured account).
//
// A request for an account that is not configured gets 404 and a Violation.
//
// # Secrets
//
// The fake keeps tokens, codes and API keys only as SHA-256 hashes. The exception is
// what tests must see: [Server.Requests] holds API requests as received, including
// the Authorization header; bodies of /oauth2/ requests (api_key, client_secret,
// codes, refresh tokens) are never kept. The HTTP view /_fake/requests masks the
// Bearer token and legacy credential values.
package fakeamocrm
