package caddymodule

import (
	"bytes"
	"context"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/caddyserver/caddy/v2/modules/logging"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

const testKey = "0123456789abcdef0123456789abcdef01234567"

const testClient = "5e6f7a8b-1c2d-4e3f-9a0b-c1d2e3f4a5b6"

func TestRedactURI(t *testing.T) {
	tests := []struct{ in, want string }{
		{"/api/v2/leads?USER_LOGIN=a%40b.c&USER_HASH=" + testKey + "&limit_rows=5", "/api/v2/leads?limit_rows=5"},
		{"/api/v2/leads?USER%5FLOGIN=a&USER%5FHASH=" + testKey + "&a=1", "/api/v2/leads?a=1"},
		{"/api/v2/leads?USER.LOGIN=a&USER.HASH=" + testKey + "&a=1", "/api/v2/leads?a=1"},
		{"/api/v2/leads?USER+LOGIN=a&USER%20HASH=" + testKey + "&a=1", "/api/v2/leads?a=1"},
		{"/api/v2/leads?USER[LOGIN=a&USER[HASH=" + testKey + "&a=1", "/api/v2/leads?a=1"},
		{"/x?+USER_HASH=" + testKey + "&%20USER_LOGIN=a", "/x"},
		{"/x?a=1&USER_HASH[]=" + testKey + "&USER_HASH%5Bk%5D=" + testKey + "&b=2", "/x?a=1&b=2"},
		{"/x?USER_HASH%00junk=" + testKey, "/x"},
		{"/x?USER_HASH=" + testKey + "%zz&b=%zz", "/x?b=%zz"}, // broken escapes
		{"/x?USER_HASH=" + testKey, "/x"},                     // half a credential
		{"/api/unsorted/add/?login=a&api_key=" + testKey + "&api_type=x", "/api/unsorted/add/?api_type=x"},
		{"/api/v4/leads?login=a&api_key=" + testKey, "/api/v4/leads"}, // on every path
		{"/private/api/auth.php?USER_LOGIN=a&USER_HASH=" + testKey + "&type=json", "/private/api/auth.php?type=json"},
		{"/amocrm/oauth/callback?code=def502&state=s1&from_exchange=1", "/amocrm/oauth/callback?state=s1&from_exchange=1"},
		{"/cb?state=s1&c%6Fde=def502&code=x", "/cb?state=s1"},
		{"/cb?referer=acme.amocrm.ru&code=def502&st%61te=s1", "/cb?referer=acme.amocrm.ru&st%61te=s1"},
		// A widget install's callback: no state.
		{"/amocrm/oauth/callback?code=def502&referer=acme.amocrm.ru&client_id=" + testClient + "&from_widget=1",
			"/amocrm/oauth/callback?referer=acme.amocrm.ru&client_id=" + testClient + "&from_widget=1"},
		{"/amocrm/oauth/callback?referer=acme.amocrm.ru&c%6Fde=def502&from_widget=1", "/amocrm/oauth/callback?referer=acme.amocrm.ru&from_widget=1"},
		{"/custom/cb/?code=def502", "/custom/cb/"},         // any callback_path, code alone
		{"/api/v4/leads?code=42&a=1", "/api/v4/leads?a=1"}, // every path: the filter cannot tell the callback's
		{"/x?codes=1&xcode=2&code_=3", "/x?codes=1&xcode=2&code_=3"},
		{"http://acme.amocrm.ru/api/v2/leads?USER_LOGIN=a&USER_HASH=" + testKey + "&a=1", "http://acme.amocrm.ru/api/v2/leads?a=1"},
		{"/x?a=1&&b=%2F", "/x?a=1&&b=%2F"},
		{"/x?", "/x?"},
		{"/x", "/x"},
		{"*", "*"},
		{"", ""},
		{"/a%zz/?USER_HASH=" + testKey + "&q=1", "/a%zz/?q=1"},
		{"/x?q=a?USER_HASH=b&USER_HASH=" + testKey, "/x?q=a?USER_HASH=b"},
	}
	for _, tt := range tests {
		if got := RedactURI(tt.in); got != tt.want {
			t.Errorf("RedactURI(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

// stringArray marshals as a zap array, as Caddy's own string arrays do.
type stringArray []string

func (a stringArray) MarshalLogArray(enc zapcore.ArrayEncoder) error {
	for _, s := range a {
		enc.AppendString(s)
	}
	return nil
}

func TestCredentialsFilterFields(t *testing.T) {
	var f CredentialsFilter
	uri := "/api/v2/leads?USER.LOGIN=a&USER.HASH=" + testKey + "&a=1"
	if got := f.Filter(zap.String("uri", uri)); got.Type != zapcore.StringType || got.Key != "uri" || got.String != "/api/v2/leads?a=1" {
		t.Errorf("string field: %+v", got)
	}
	u, _ := url.Parse(uri)
	if got := f.Filter(zap.Stringer("uri", u)); got.Type != zapcore.StringType || got.String != "/api/v2/leads?a=1" {
		t.Errorf("stringer field: %+v", got)
	}
	var nilURL *url.URL
	if got := f.Filter(zap.Stringer("uri", nilURL)); got.String != "" {
		t.Errorf("nil stringer: %+v", got)
	}
	arr := f.Filter(zap.Array("uris", stringArray{uri, "/x?code=c&state=s"}))
	if a, ok := arr.Interface.(stringArray); !ok || len(a) != 2 || a[0] != "/api/v2/leads?a=1" || a[1] != "/x?state=s" {
		t.Errorf("array field: %#v", arr.Interface)
	}
	if got := f.Filter(zap.Int("n", 3)); got.Type != zapcore.StringType || got.String != "" || got.Key != "n" {
		t.Errorf("int field: %+v", got)
	}
}

func TestCredentialsFilterCaddyfile(t *testing.T) {
	for _, in := range []string{"amocrm_credentials", "amocrm_credentials {\n}"} {
		var f CredentialsFilter
		if err := f.UnmarshalCaddyfile(caddyfile.NewTestDispenser(in)); err != nil {
			t.Errorf("%q: %v", in, err)
		}
	}
	for _, in := range []string{"amocrm_credentials delete", "amocrm_credentials {\n\tdelete USER_HASH\n}"} {
		var f CredentialsFilter
		if err := f.UnmarshalCaddyfile(caddyfile.NewTestDispenser(in)); err == nil {
			t.Errorf("%q: no error", in)
		}
	}
	if _, err := caddy.GetModule("caddy.logging.encoders.filter.amocrm_credentials"); err != nil {
		t.Fatal(err)
	}
}

// TestCredentialsFilterInCaddyEncoder runs the filter the way Caddy's access
// log does: a filter encoder set up from the Caddyfile, encoding a request
// as Caddy logs it.
func TestCredentialsFilterInCaddyEncoder(t *testing.T) {
	d := caddyfile.NewTestDispenser("filter {\n\twrap json\n\trequest>uri amocrm_credentials\n}")
	fe := new(logging.FilterEncoder)
	if err := fe.UnmarshalCaddyfile(d); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
	defer cancel()
	if err := fe.Provision(ctx); err != nil {
		t.Fatal(err)
	}
	for _, target := range []string{
		"/api/v2/leads?USER%5FLOGIN=a%40b.c&USER%5FHASH=" + testKey + "&a=1",
		"/api/v2/leads?USER[LOGIN=a%40b.c&USER[HASH=" + testKey + "&a=1",
		"/amocrm/oauth/callback?code=" + testKey + "&state=s1&from_exchange=1",
		"/amocrm/oauth/callback?code=" + testKey + "&referer=acme.amocrm.ru&client_id=c&from_widget=1",
	} {
		r := httptest.NewRequest("GET", target, nil)
		buf, err := fe.EncodeEntry(zapcore.Entry{Time: time.Unix(0, 0), Message: "handled request"},
			[]zapcore.Field{zap.Object("request", caddyhttp.LoggableHTTPRequest{Request: r})})
		if err != nil {
			t.Fatal(err)
		}
		line := buf.String()
		if strings.Contains(line, testKey) || !strings.Contains(line, `"uri":"/`) {
			t.Errorf("logged %s", line)
		}
		if !bytes.Contains(buf.Bytes(), []byte("=1")) {
			t.Errorf("other parameters lost: %s", line)
		}
	}
}

func BenchmarkRedactURI(b *testing.B) {
	for _, uri := range []string{
		"/api/v4/leads?with=contacts&page=2&limit=250&filter%5Bstatuses%5D%5B0%5D%5Bpipeline_id%5D=1",
		"/private/api/v2/json/leads/list?USER_LOGIN=manager%40acme.example&USER_HASH=" + testKey + "&limit_rows=500",
	} {
		b.Run(uri[:14], func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				_ = RedactURI(uri)
			}
		})
	}
}

// FuzzRedactURI: RedactURI never panics, keeps everything before the query,
// and is idempotent (what it leaves holds nothing more to remove).
func FuzzRedactURI(f *testing.F) {
	for _, s := range []string{
		"/api/v2/leads?USER%5FLOGIN=a&USER%5FHASH=k&a=1",
		"/cb?code=c&state=s&c%6Fde=d&code",
		"/x?a=%zz&USER_HASH[]=k&&",
		"http://h/api/unsorted/add/?login=a&api_key=k",
		"*", "", "?", "/x?&", "/x?code=%",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, uri string) {
		got := RedactURI(uri)
		target, _, _ := strings.Cut(uri, "?")
		if !strings.HasPrefix(got, target) {
			t.Fatalf("RedactURI(%q) = %q: the target changed", uri, got)
		}
		if again := RedactURI(got); again != got {
			t.Fatalf("RedactURI(%q) = %q, then %q", uri, got, again)
		}
	})
}
