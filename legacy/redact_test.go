package legacy

import (
	"net/http"
	"net/url"
	"strings"
	"testing"
)

func TestRedactQuery(t *testing.T) {
	const hash = "0123456789abcdef0123456789abcdef01234567"
	many := strings.Repeat("a=1&", 10001)
	tests := []struct {
		path, q, want string
	}{
		{"/api/v2/leads", "USER_LOGIN=a%40b.c&USER_HASH=" + hash + "&limit_rows=5", "limit_rows=5"},
		{"/api/v2/leads", "a=1&USER%5FLOGIN=x&b=%zz&USER.HASH=k&&c", "a=1&b=%zz&&c"},
		{"/x", "USER+LOGIN=x&USER%20HASH=k&USER[HASH=k&%20USER_HASH=k&USER_HASH%00x=k", ""},
		{"/x", "USER_LOGIN[]=x&USER_HASH[a]=k&n=1", "n=1"}, // arrays: refused by Strip, removed here
		{"/x", "USER_HASH=k%zz&n=1", "n=1"},                // broken escape
		{"/x", "USER_HASH=" + hash, ""},                    // a key without its login
		{"/x", "USER_LOGIN=x&USER_HASH=k&USER_HASH=j", ""}, // copies that disagree
		{"/x", "USER_LOGIN=&USER_HASH", ""},                // empty and bare
		{"/x", "login=a&api_key=k&type=json", "login=a&api_key=k&type=json"},
		{"/api/unsorted/add/", "login=a&api_key=k&api_type=x", "api_type=x"},
		{"/api/unsorted", "api_key=k", ""},
		{"//api/./unsorted/list/", "api_key=k", ""}, // path cleaned as Strip does
		{"/x", "user_hash=k&USER_HASH_=k&XUSER_HASH=k&USER__HASH=k", "user_hash=k&USER_HASH_=k&XUSER_HASH=k&USER__HASH=k"},
		{"/x", "", ""},
		{"/x", "&&", "&&"},
		{"/x", many + "USER_HASH=k", strings.TrimSuffix(many, "&")}, // no limit on the count
	}
	for _, tt := range tests {
		got := RedactQuery(tt.path, tt.q)
		if got != tt.want {
			t.Errorf("RedactQuery(%q, %.60q) = %.60q, want %.60q", tt.path, tt.q, got, tt.want)
		}
	}
}

func TestRedactQueryNoAllocs(t *testing.T) {
	q := "with=contacts&page=2&limit=250&filter%5Bstatuses%5D%5B0%5D%5Bpipeline_id%5D=1"
	if n := testing.AllocsPerRun(100, func() { _ = RedactQuery("/api/v4/leads", q) }); n != 0 {
		t.Errorf("%v allocations for a query without credentials", n)
	}
}

// FuzzRedactQuery checks that RedactQuery and Strip agree: whatever Strip
// takes for a credential in a query string RedactQuery removes, it leaves
// what Strip leaves, and the oracle finds no credential in what is left.
func FuzzRedactQuery(f *testing.F) {
	for _, s := range []string{
		"USER_LOGIN=a%40b.c&USER_HASH=0123abcd&limit_rows=5",
		"a=1&USER%5FLOGIN=x&b=%zz&USER.HASH=k&&c",
		"+USER[LOGIN=x&%20USER_HASH=k",
		"USER_LOGIN[]=x&USER_HASH=k",
		"login=a&api_key=k&x=1",
		"USER_HASH=k",
		"q=100%&USER_LOGIN=x%&USER_HASH=y",
		"",
	} {
		f.Add(s, false)
		f.Add(s, true)
	}
	f.Fuzz(func(t *testing.T, q string, unsorted bool) {
		p := "/api/v2/leads"
		if unsorted {
			p = "/api/unsorted/add/"
		}
		got := RedactQuery(p, q)
		r := &http.Request{Method: "GET", URL: &url.URL{Path: p, RawQuery: q}, RequestURI: p + "?" + q,
			Header: http.Header{}, Body: http.NoBody}
		if _, err := Strip(r, Options{}); err == nil && r.URL.RawQuery != got {
			t.Fatalf("Strip left %q, RedactQuery %q (from %q)", r.URL.RawQuery, got, q)
		}
		var kept []string
		for _, pr := range oracleSplit(q) {
			if !oracleIsCred(pr.name, unsorted) {
				kept = append(kept, pr.raw)
			}
		}
		want := strings.Join(kept, "&")
		if len(kept) == len(oracleSplit(q)) {
			want = q
		}
		if got != want {
			t.Fatalf("RedactQuery(%q) = %q, want %q", q, got, want)
		}
	})
}
