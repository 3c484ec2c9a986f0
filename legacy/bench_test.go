package legacy

import (
	"net/http"
	"net/url"
	"strings"
	"testing"
)

// The benchmarks reset the few fields Strip changes instead of building a
// new request each time, so they measure Strip alone.

// nopBody is a pointer-shaped body: making it an io.ReadCloser allocates nothing.
type nopBody struct{ *strings.Reader }

func (nopBody) Close() error { return nil }

func BenchmarkStripQuery(b *testing.B) {
	const q = "USER_LOGIN=manager%40acme.example&USER_HASH=0123456789abcdef0123456789abcdef01234567&limit_rows=500&limit_offset=0"
	const uri = "/private/api/v2/json/leads/list?" + q
	r := &http.Request{Method: "GET", URL: &url.URL{Path: "/private/api/v2/json/leads/list", RawQuery: q},
		RequestURI: uri, Header: http.Header{"Accept": {"application/json"}}, Body: http.NoBody}
	b.ReportAllocs()
	for b.Loop() {
		r.URL.RawQuery, r.RequestURI = q, uri
		f, err := Strip(r, Options{})
		if err != nil || f.Kind != Key {
			b.Fatal(f, err)
		}
	}
}

func BenchmarkStripForm(b *testing.B) {
	const body = "USER_LOGIN=manager%40acme.example&USER_HASH=0123456789abcdef0123456789abcdef01234567&request%5Bleads%5D%5Badd%5D%5B0%5D%5Bname%5D=Deal"
	r := &http.Request{Method: "POST", URL: &url.URL{Path: "/private/api/v2/json/leads/set"}, RequestURI: "/private/api/v2/json/leads/set",
		Header: http.Header{"Content-Type": {"application/x-www-form-urlencoded"}}}
	rd := strings.NewReader(body)
	b.ReportAllocs()
	for b.Loop() {
		rd.Reset(body)
		r.Body, r.ContentLength = nopBody{rd}, int64(len(body))
		f, err := Strip(r, Options{})
		if err != nil || f.Kind != Key {
			b.Fatal(f, err)
		}
	}
}

func BenchmarkStripJSON(b *testing.B) {
	const body = `{"USER_LOGIN":"manager@acme.example","USER_HASH":"0123456789abcdef0123456789abcdef01234567"}`
	r := &http.Request{Method: "POST", URL: &url.URL{Path: "/private/api/auth.php", RawQuery: "type=json"}, RequestURI: "/private/api/auth.php?type=json",
		Header: http.Header{"Content-Type": {"application/json"}}}
	rd := strings.NewReader(body)
	b.ReportAllocs()
	for b.Loop() {
		rd.Reset(body)
		r.Body, r.ContentLength = nopBody{rd}, int64(len(body))
		f, err := Strip(r, Options{})
		if err != nil || f.Kind != Key {
			b.Fatal(f, err)
		}
	}
}

func BenchmarkStripSessionCookie(b *testing.B) {
	const c = "_ga=GA1.2.3; session_id=Zm9vYmFyYmF6cXV4cXV1eGZvb2JhcmJhenF1eHF1dXg; lang=ru"
	h := http.Header{"Cookie": {c}}
	r := &http.Request{Method: "GET", URL: &url.URL{Path: "/api/v2/leads", RawQuery: "limit_rows=50"},
		RequestURI: "/api/v2/leads?limit_rows=50", Header: h, Body: http.NoBody}
	lines := []string{c}
	b.ReportAllocs()
	for b.Loop() {
		h["Cookie"] = lines
		f, err := Strip(r, Options{})
		if err != nil || f.Kind != Session {
			b.Fatal(f, err)
		}
	}
}

func BenchmarkStripNone(b *testing.B) {
	r := &http.Request{Method: "GET", URL: &url.URL{Path: "/api/v4/leads", RawQuery: "with=contacts&page=2&limit=250&filter%5Bstatuses%5D%5B0%5D%5Bpipeline_id%5D=1"},
		RequestURI: "/api/v4/leads?with=contacts&page=2&limit=250&filter%5Bstatuses%5D%5B0%5D%5Bpipeline_id%5D=1",
		Header:     http.Header{"Authorization": {"Bearer x"}, "Cookie": {"_ga=GA1.2.3; lang=ru"}}, Body: http.NoBody}
	b.ReportAllocs()
	for b.Loop() {
		f, err := Strip(r, Options{})
		if err != nil || f.Kind != None {
			b.Fatal(f, err)
		}
	}
}

func BenchmarkStripBinary(b *testing.B) {
	body := strings.Repeat("\x89PNG\r\n\x1a\n", 512)
	r := &http.Request{Method: "POST", URL: &url.URL{Path: "/api/v2/files", RawQuery: "USER_LOGIN=a%40b.c&USER_HASH=k"}, RequestURI: "/api/v2/files?USER_LOGIN=a%40b.c&USER_HASH=k",
		Header: http.Header{"Content-Type": {"application/octet-stream"}}}
	rd := strings.NewReader(body)
	b.ReportAllocs()
	for b.Loop() {
		rd.Reset(body)
		r.URL.RawQuery, r.RequestURI = "USER_LOGIN=a%40b.c&USER_HASH=k", "/api/v2/files?USER_LOGIN=a%40b.c&USER_HASH=k"
		r.Body, r.ContentLength = nopBody{rd}, int64(len(body))
		f, err := Strip(r, Options{})
		if err != nil || f.Kind != Key {
			b.Fatal(f, err)
		}
	}
}

func BenchmarkStripMultipart(b *testing.B) {
	file := strings.Repeat("\x89PNG\r\n\x1a\n", 4096) // 32 KiB
	for _, tc := range []struct{ name, query, head string }{
		{"query", "USER_LOGIN=a%40b.c&USER_HASH=k", ""},
		{"parts", "", "--b\r\nContent-Disposition: form-data; name=\"USER_LOGIN\"\r\n\r\na@b.c\r\n" +
			"--b\r\nContent-Disposition: form-data; name=\"USER_HASH\"\r\n\r\nk\r\n"},
	} {
		body := tc.head + "--b\r\nContent-Disposition: form-data; name=\"note\"\r\n\r\nx\r\n" +
			"--b\r\nContent-Disposition: form-data; name=\"f\"; filename=\"a.png\"\r\nContent-Type: image/png\r\n\r\n" + file + "\r\n--b--\r\n"
		b.Run(tc.name, func(b *testing.B) {
			r := &http.Request{Method: "POST", URL: &url.URL{Path: "/api/v2/notes"}, RequestURI: "/api/v2/notes",
				Header: http.Header{"Content-Type": {"multipart/form-data; boundary=b"}}}
			rd := strings.NewReader(body)
			b.SetBytes(int64(len(body)))
			b.ReportAllocs()
			for b.Loop() {
				rd.Reset(body)
				r.URL.RawQuery = tc.query
				r.Body, r.ContentLength = nopBody{rd}, int64(len(body))
				f, err := Strip(r, Options{})
				if err != nil || f.Kind != Key {
					b.Fatal(f, err)
				}
			}
		})
	}
}
