// Package legacy finds amoCRM's legacy credentials and the emulated auth.php
// session in an HTTP request, removes every copy, and writes answers in the
// legacy formats.
//
// Legacy clients authenticate with USER_LOGIN and USER_HASH (or login and
// api_key on the old /api/unsorted/ endpoints), sent in the query string, in
// a form or JSON body, or to /private/api/auth.php, after which they may send
// only an emulated session cookie. [Strip] finds all of these the way amoCRM
// (a PHP application) would read them, including PHP's parameter-name
// mangling, and removes them from the request in place, leaving every other
// byte as it was. The writers produce the legacy JSON and XML answers.
//
// The package imports only the standard library and never puts a credential
// value into an error, a log line or an answer.
package legacy
