package legacy

import (
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
)

// Regression tests for issue 10: requests that PHP reads as carrying
// credentials and that Strip used to pass on, and bodies that cost memory
// on their declared length or stalled for ever.

func postWith(ct, body string) *http.Request {
	r := &http.Request{Method: "POST", URL: &url.URL{Path: "/api/v2/leads"}, RequestURI: "/api/v2/leads",
		Header: http.Header{}, Body: io.NopCloser(strings.NewReader(body)), ContentLength: int64(len(body))}
	if ct != "" {
		r.Header.Set("Content-Type", ct)
	}
	return r
}

func mpBody(boundary string) string {
	return "--" + boundary + "\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\n1\r\n" +
		"--" + boundary + "\r\nContent-Disposition: form-data; name=\"USER_LOGIN\"\r\n\r\nu@e.com\r\n" +
		"--" + boundary + "\r\nContent-Disposition: form-data; name=\"USER_HASH\"\r\n\r\nk1\r\n" +
		"--" + boundary + "--\r\n"
}

func mpKept(boundary string) string {
	return "--" + boundary + "\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\n1\r\n" + "--" + boundary + "--\r\n"
}

// TestPHPMediaType: PHP cuts the media type at ';', ',' or a space
// (main/SAPI.c), so these are forms and their credentials must go.
func TestPHPMediaType(t *testing.T) {
	for _, ct := range []string{
		"application/x-www-form-urlencoded,text/plain",
		"application/x-www-form-urlencoded text/plain",
		"application/x-www-form-urlencoded,",
		"APPLICATION/X-WWW-FORM-URLENCODED;charset=utf-8",
		"application/x-www-form-urlencoded, application/json",
	} {
		r := postWith(ct, "a=1&USER_LOGIN=u%40e.com&USER_HASH=k1")
		f, err := Strip(r, Options{})
		if err != nil || f.Kind != Key || f.Login != "u@e.com" || f.Key != "k1" {
			t.Errorf("%q: found %+v, %v", ct, f, err)
			continue
		}
		if got := readAll(t, r); got != "a=1" {
			t.Errorf("%q: body %q", ct, got)
		}
	}
}

// TestPHPMultipartBoundary: the boundary is the first "boundary" of the
// Content-Type, up to ',' or ';' (main/rfc1867.c).
func TestPHPMultipartBoundary(t *testing.T) {
	tests := []struct{ ct, boundary string }{
		{"multipart/form-data; boundary=AAA; foo", "AAA"},
		{"multipart/form-data; boundary=AAA; boundary=BBB", "AAA"},
		{"multipart/form-data; boundary=AAA,BBB", "AAA"},
		{"multipart/form-data, boundary=AAA", "AAA"},
		{"multipart/form-data; xboundary=AAA; boundary=BBB", "AAA"},
		{"multipart/form-data; BOUNDARY=BBB; xboundary=AAA", "AAA"}, // with case first
		{"multipart/form-data; BOUNDARY=AAA", "AAA"},
		{"multipart/form-data; charset=boundary; x=AAA", "AAA"},
		{"multipart/form-data; boundaryX; y=AAA", "AAA"},
		{`multipart/form-data; boundary="A;A"x; y`, "A;A"},
		{"multipart/form-data; boundary=A A", "A A"},
		{"multipart/form-data; boundary=", ""},
		{"multipart/form-data;boundary=AAA", "AAA"},
		{"Multipart/Form-Data; boundary=AAA", "AAA"},
	}
	for _, tt := range tests {
		if b, ok := multipartBoundary(tt.ct); !ok || b != tt.boundary {
			t.Errorf("multipartBoundary(%q) = %q, %v; want %q", tt.ct, b, ok, tt.boundary)
		}
		r := postWith(tt.ct, mpBody(tt.boundary))
		f, err := Strip(r, Options{})
		if err != nil || f.Kind != Key || f.Login != "u@e.com" || f.Key != "k1" {
			t.Errorf("%q: found %+v, %v", tt.ct, f, err)
			continue
		}
		if got := readAll(t, r); got != mpKept(tt.boundary) {
			t.Errorf("%q: body %q", tt.ct, got)
		}
	}
	for _, ct := range []string{`multipart/form-data; boundary="AAA`, "multipart/form-data; boundary", "multipart/form-data"} {
		if b, ok := multipartBoundary(ct); ok {
			t.Errorf("multipartBoundary(%q) = %q, true; PHP finds none", ct, b)
		}
	}
	// Several Content-Type lines: PHP's built-in server joins them with
	// ", ", so the first media type counts and the boundary is looked for in
	// all of them.
	r := postWith("", mpBody("AAA"))
	r.Header["Content-Type"] = []string{"multipart/form-data", "text/plain; boundary=AAA"}
	if f, err := Strip(r, Options{}); err != nil || f.Kind != Key {
		t.Errorf("two Content-Type lines: found %+v, %v", f, err)
	}
}

// TestPHPMultipartNULDelimiter: PHP compares a line with the delimiter as
// a C string, so "--AAA\x00..." starts a part.
func TestPHPMultipartNULDelimiter(t *testing.T) {
	body := "--AAA\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\n1\r\n" +
		"--AAA\x00x\r\nContent-Disposition: form-data; name=\"USER_HASH\"\r\n\r\nk1\r\n" +
		"--AAA\r\nContent-Disposition: form-data; name=\"USER_LOGIN\"\r\n\r\nu@e.com\r\n--AAA--\r\n"
	r := postWith("multipart/form-data; boundary=AAA", body)
	f, err := Strip(r, Options{})
	if err != nil || f.Kind != Key || f.Key != "k1" {
		t.Fatalf("found %+v, %v", f, err)
	}
	if got := readAll(t, r); strings.Contains(got, "USER_") {
		t.Errorf("body %q", got)
	}
}

// TestHTTP2GetBody: over HTTP/2 a GET body without content-length has
// ContentLength -1; it is read like any other body.
func TestHTTP2GetBody(t *testing.T) {
	type result struct {
		f    Found
		err  error
		cl   int64
		body string
	}
	got := make(chan result, 1)
	s := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		cl := r.ContentLength
		f, err := Strip(r, Options{SetReadDeadline: http.NewResponseController(w).SetReadDeadline})
		b, _ := io.ReadAll(r.Body)
		got <- result{f, err, cl, string(b)}
	}))
	s.EnableHTTP2 = true
	s.StartTLS()
	defer s.Close()
	c := s.Client()
	for _, method := range []string{"GET", "HEAD"} {
		req, _ := http.NewRequest(method, s.URL+"/api/v2/leads", io.NopCloser(strings.NewReader("a=1&USER_LOGIN=u%40e.com&USER_HASH=k1")))
		req.ContentLength = -1
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.ProtoMajor != 2 {
			t.Fatalf("HTTP/%d, want HTTP/2", resp.ProtoMajor)
		}
		r := <-got
		if r.cl != -1 {
			t.Fatalf("%s: ContentLength %d at the server, want -1", method, r.cl)
		}
		if r.err != nil || r.f.Kind != Key || r.f.Key != "k1" || r.body != "a=1" {
			t.Errorf("%s over HTTP/2: found %+v, %v, body %q", method, r.f, r.err, r.body)
		}
	}
}

// stallReader gives its bytes, then blocks until release is closed, then
// gives EOF; reads tells when it has been read from at least twice.
type stallReader struct {
	data    []byte
	release chan struct{}
	reads   chan struct{}
	once    sync.Once
}

func (s *stallReader) Read(p []byte) (int, error) {
	if len(s.data) > 0 {
		n := copy(p, s.data)
		s.data = s.data[n:]
		return n, nil
	}
	s.once.Do(func() { close(s.reads) })
	<-s.release
	return 0, io.EOF
}

func heapAlloc() uint64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// TestBodyBufferFollowsBytesReceived: 40 requests each declaring 10 MiB,
// having sent 1 KiB and stalled, hold a few KiB each, not 10 MiB.
func TestBodyBufferFollowsBytesReceived(t *testing.T) {
	const conns = 40
	release := make(chan struct{})
	before := heapAlloc()
	var wg sync.WaitGroup
	var stalls []*stallReader
	for i := 0; i < conns; i++ {
		sr := &stallReader{data: []byte("a=1&" + strings.Repeat("b", 1020)), release: release, reads: make(chan struct{})}
		stalls = append(stalls, sr)
		r := postWith("application/x-www-form-urlencoded", "")
		r.Body, r.ContentLength = io.NopCloser(sr), DefaultMaxBody
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, _ = Strip(r, Options{ReadTimeout: time.Minute})
		}()
	}
	for _, sr := range stalls {
		<-sr.reads
	}
	grown := int64(heapAlloc()) - int64(before)
	close(release)
	wg.Wait()
	t.Logf("heap growth with %d stalled 10 MiB bodies: %d KiB", conns, grown/1024)
	if grown > 8<<20 { // the old code took 10 MiB per request: 400 MiB
		t.Errorf("heap grew by %d MiB for %d stalled bodies", grown>>20, conns)
	}
}

// TestBodyBufferGrowth: a body that does arrive whole is read whole, in a
// buffer that grew with it.
func TestBodyBufferGrowth(t *testing.T) {
	for _, n := range []int{0, 1, 511, 4095, 4096, 4097, 100000, 1 << 20} {
		body := "USER_LOGIN=u&USER_HASH=k&x=" + strings.Repeat("y", n)
		for _, cl := range []int64{int64(len(body)), -1} {
			r := postWith("application/x-www-form-urlencoded", body)
			r.ContentLength = cl
			f, err := Strip(r, Options{MaxBody: 2 << 20})
			if err != nil || f.Kind != Key || readAll(t, r) != body[len("USER_LOGIN=u&USER_HASH=k&"):] {
				t.Fatalf("n=%d cl=%d: %+v, %v", n, cl, f, err)
			}
		}
	}
	// Over MaxBody without a declared length: 413 after MaxBody+1 bytes.
	r := postWith("application/x-www-form-urlencoded", "USER_HASH=k&x="+strings.Repeat("y", 5000))
	r.ContentLength = -1
	if _, err := Strip(r, Options{MaxBody: 4096}); err == nil || err.(*Error).Status != 413 {
		t.Fatalf("over MaxBody: %v", err)
	}
}

// TestBodyReadTimeout: a body that stalls is cut after ReadTimeout with a
// 408, without SetReadDeadline (Strip stops waiting) and with it (through
// a real server, whose connection read then fails).
func TestBodyReadTimeout(t *testing.T) {
	release := make(chan struct{})
	defer close(release)
	for _, kind := range []string{"application/x-www-form-urlencoded", "application/octet-stream", "multipart/form-data; boundary=x"} {
		sr := &stallReader{data: []byte("{ \"a\":1"), release: release, reads: make(chan struct{})}
		r := postWith(kind, "")
		r.Body, r.ContentLength = io.NopCloser(sr), 1000
		start := time.Now()
		_, err := Strip(r, Options{ReadTimeout: 100 * time.Millisecond})
		var le *Error
		if !errors.As(err, &le) || le.Status != http.StatusRequestTimeout || le.Code != "408" {
			t.Fatalf("%s: %v, want a 408", kind, err)
		}
		if d := time.Since(start); d > 10*time.Second {
			t.Errorf("%s: cut after %v", kind, d)
		}
		if _, err := r.Body.Read(make([]byte, 1)); err == nil {
			t.Errorf("%s: the body reads on after the timeout", kind)
		}
	}

	type result struct {
		err  error
		took time.Duration
	}
	got := make(chan result, 1)
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		_, err := Strip(r, Options{ReadTimeout: 150 * time.Millisecond, SetReadDeadline: http.NewResponseController(w).SetReadDeadline})
		got <- result{err, time.Since(start)}
		if le, ok := err.(*Error); ok {
			WriteError(w, le, time.Now())
		}
	}))
	defer s.Close()
	pr, pw := io.Pipe()
	defer pw.Close()
	req, _ := http.NewRequest("POST", s.URL+"/api/v2/leads", pr)
	req.ContentLength = 5000
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	go func() { _, _ = pw.Write([]byte("USER_LOGIN=u&USER_HASH=")) }()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	r := <-got
	var le *Error
	if !errors.As(r.err, &le) || le.Status != http.StatusRequestTimeout || resp.StatusCode != http.StatusRequestTimeout {
		t.Fatalf("through a server: %v, status %d", r.err, resp.StatusCode)
	}
	if r.took > 10*time.Second {
		t.Errorf("cut after %v", r.took)
	}
}
