package caddymodule

import (
	"fmt"
	"net/url"
	"reflect"
	"strings"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/modules/logging"
	"go.uber.org/zap/zapcore"

	"github.com/amobridge/amobridge/legacy"
)

func init() {
	caddy.RegisterModule(CredentialsFilter{})
}

// CredentialsFilter is a Caddy log field filter for a logged request URI
// (normally `request>uri`). Caddy's access log records the URI as it
// arrived, before amocrm_auth removes the credentials from the request, so
// this filter deletes from the logged query string every parameter the
// module takes for a legacy credential: USER_LOGIN and USER_HASH under every
// name PHP reads as them ("USER.HASH", "USER%5FHASH", " USER_HASH",
// "USER_HASH[]", ...), login and api_key, and every `code` parameter: the
// authorization code of amoCRM's call to the Redirect URI. Other parameters
// are kept byte for byte.
//
// A log filter does not know which path a handler answers the callback on
// (callback_path, or a rewrite before it), and amoCRM's callbacks do not all
// look alike: an exchange's and the consent button's carry `state`, a widget
// install's only `code`, `referer`, `client_id` and `from_widget`. So `code`
// is deleted from every logged URI, on every path.
//
// The matching is the legacy package's own (legacy.RedactQuery), so the log
// and the module never disagree on what a credential is. login and api_key
// are deleted on every path, not only on /api/unsorted/ ones: a rewrite
// before amocrm_auth could make any logged path one where they are
// credentials. A field that cannot be read as a URI (of a type that is
// neither a string nor a fmt.Stringer) is logged as an empty string rather
// than risk logging a key.
//
// Caddyfile, inside `format filter { ... }`:
//
//	request>uri amocrm_credentials
type CredentialsFilter struct{}

// CaddyModule returns the Caddy module information.
func (CredentialsFilter) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "caddy.logging.encoders.filter.amocrm_credentials",
		New: func() caddy.Module { return new(CredentialsFilter) },
	}
}

// UnmarshalCaddyfile sets up the filter from Caddyfile tokens. It takes no
// arguments and no options.
func (*CredentialsFilter) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // the filter's name
	if d.NextArg() {
		return d.ArgErr()
	}
	if d.NextBlock(0) {
		return d.Errf("amocrm_credentials takes no options, got %q", d.Val())
	}
	return nil
}

// Filter removes the credentials from the URI in the field in. A string
// field, a fmt.Stringer and a slice of strings are filtered; a field of any
// other type is replaced by an empty string, as it cannot be read.
func (CredentialsFilter) Filter(in zapcore.Field) zapcore.Field {
	switch in.Type {
	case zapcore.StringType:
		in.String = RedactURI(in.String)
		return in
	case zapcore.StringerType:
		s, err := stringOf(in.Interface)
		if err != nil {
			return zapcore.Field{Key: in.Key, Type: zapcore.StringType}
		}
		return zapcore.Field{Key: in.Key, Type: zapcore.StringType, String: RedactURI(s)}
	}
	if v := reflect.ValueOf(in.Interface); v.Kind() == reflect.Slice && v.Type().Elem().Kind() == reflect.String {
		out := reflect.MakeSlice(v.Type(), v.Len(), v.Len())
		for i := range v.Len() {
			out.Index(i).SetString(RedactURI(v.Index(i).String()))
		}
		in.Interface = out.Interface()
		return in
	}
	return zapcore.Field{Key: in.Key, Type: zapcore.StringType}
}

// stringOf calls String on a zap Stringer field's value, which may panic
// (a nil pointer, for one).
func stringOf(v any) (s string, err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("String panicked: %v", p)
		}
	}()
	st, ok := v.(fmt.Stringer)
	if !ok {
		return "", fmt.Errorf("%T is not a fmt.Stringer", v)
	}
	return st.String(), nil
}

// unsortedPath is a path on which login and api_key are credentials, so
// that RedactQuery removes them too.
const unsortedPath = "/api/unsorted/"

// RedactURI returns the request URI (a request target such as
// "/path?query", an absolute URI, or "*") without the credentials in its
// query string, as CredentialsFilter logs it. Everything up to the first
// '?' is kept as it is; so are the query's other parameters. It never
// panics.
func RedactURI(uri string) string {
	target, q, ok := strings.Cut(uri, "?")
	if !ok || q == "" {
		return uri
	}
	nq := dropCode(legacy.RedactQuery(unsortedPath, q))
	switch {
	case nq == q:
		return uri
	case nq == "":
		return target
	}
	return target + "?" + nq
}

// dropCode removes the authorization code (every `code` parameter) from a
// query, whatever its path and its other parameters: the callback of a
// widget install has no `state`. Names are decoded as Go's url.ParseQuery
// decodes them, the way the callback reads them; a name that does not
// decode is compared as it is.
func dropCode(q string) string {
	if !strings.Contains(q, "code") && !strings.Contains(q, "%") {
		return q
	}
	hasCode := false
	for pair := range strings.SplitSeq(q, "&") {
		if queryName(pair) == "code" {
			hasCode = true
			break
		}
	}
	if !hasCode {
		return q
	}
	var b strings.Builder
	b.Grow(len(q))
	first := true
	for pair := range strings.SplitSeq(q, "&") {
		if queryName(pair) == "code" {
			continue
		}
		if !first {
			b.WriteByte('&')
		}
		b.WriteString(pair)
		first = false
	}
	return b.String()
}

// queryName is the decoded name of one name=value pair of a query.
func queryName(pair string) string {
	name, _, _ := strings.Cut(pair, "=")
	if !strings.ContainsAny(name, "%+") {
		return name
	}
	if n, err := url.QueryUnescape(name); err == nil {
		return n
	}
	return name
}

// Interface guards.
var (
	_ logging.LogFieldFilter = (*CredentialsFilter)(nil)
	_ caddyfile.Unmarshaler  = (*CredentialsFilter)(nil)
)
