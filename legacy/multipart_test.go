package legacy

import (
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// crlf turns the "\n" line ends of a test body into "\r\n".
func crlf(s string) string { return strings.ReplaceAll(s, "\n", "\r\n") }

// field is a multipart part with a Content-Disposition of name (quoted).
func field(name, value string) string {
	return "--b\nContent-Disposition: form-data; name=\"" + name + "\"\n\n" + value + "\n"
}

func TestStripMultipart(t *testing.T) {
	const ct = "multipart/form-data; boundary=b"
	const end = "--b--\n"
	login, hash := field("USER_LOGIN", "a@b.c"), field("USER_HASH", "k")
	a, file := field("a", "1"), "--b\nContent-Disposition: form-data; name=\"f\"; filename=\"x.bin\"\nContent-Type: application/octet-stream\n\n\x00\xff--b\n\n"
	key := want{kind: Key, login: "a@b.c", key: "k", query: same}
	tests := []struct {
		name string
		path string
		body string
		left string // same: unchanged
	}{
		{"first", "/api/v2/leads", login + hash + a + end, a + end},
		{"middle", "/api/v2/leads", a + login + file + hash + a + end, a + file + a + end},
		{"last", "/api/v2/leads", a + file + login + hash + end, a + file + end},
		{"only credentials", "/api/v2/leads", hash + login + end, end},
		{"preamble and epilogue kept", "/x", "preamble\n--bx\n" + login + a + hash + end + "epilogue\n--b-\n", "preamble\n--bx\n" + a + end + "epilogue\n--b-\n"},
		{"closing line ends the body", "/x", login + hash + a + "--b--", a + "--b--"},
		{"padding after delimiters", "/x", strings.Replace(login, "--b\n", "--b \t\n", 1) + hash + a + "--b-- \n", a + "--b-- \n"},
		{"empty part content", "/x", login + hash + "--b\nContent-Disposition: form-data; name=\"e\"\n\n--b--\n", "--b\nContent-Disposition: form-data; name=\"e\"\n\n--b--\n"},
		{"PHP names", "/x", field("USER.LOGIN", "a@b.c") + field(" USER[HASH", "k") + field("USER HASH", "k") + end, end},
		{"quotes and case", "/x", "--b\ncontent-disposition:form-data;NAME='USER_LOGIN'\n\na@b.c\n--b\nContent-Disposition: form-data; name=USER_HASH; x=\"a;b\"\n\nk\n" + end, end},
		{"folded header", "/x", login + "--b\nContent-Disposition: form-data;\n name=\"USER_HASH\"\nX: 1\n\nk\n" + end, end},
		{"first Content-Disposition counts", "/x", login + hash + "--b\nContent-Disposition: form-data; name=\"a\"\nContent-Disposition: form-data; name=\"USER_HASH\"\n\nk\n" + end,
			"--b\nContent-Disposition: form-data; name=\"a\"\nContent-Disposition: form-data; name=\"USER_HASH\"\n\nk\n" + end},
		{"last name counts", "/x", login + "--b\nContent-Disposition: form-data; name=\"a\"; name=\"USER_HASH\"\n\nk\n" + end, end},
		{"any disposition type", "/x", login + "--b\nContent-Disposition: attachment; name=\"USER_HASH\"\n\nk\n" + end, end},
		{"empty filename is a field", "/x", login + "--b\nContent-Disposition: form-data; name=\"USER_HASH\"; filename=\"\"\n\nk\n" + end, end},
		{"unsorted login and api_key", "/api/unsorted/add/", field("login", "a@b.c") + a + field("api_key", "k") + end, a + end},
	}
	for _, tt := range tests {
		for _, nl := range []string{"LF", "CRLF"} {
			body, left := tt.body, tt.left
			if nl == "CRLF" {
				body, left = crlf(body), crlf(left)
			}
			t.Run(tt.name+" "+nl, func(t *testing.T) {
				w := key
				w.body = left
				q := req{target: tt.path, ct: ct, body: body}
				check(t, q, q.build(t), Options{}, w)
				q.chunked = true
				check(t, q, q.build(t), Options{}, w)
			})
		}
	}

	unchanged := []struct{ name, path, body string }{
		{"no credential", "/x", a + file + end},
		{"file named USER_HASH", "/x", strings.Replace(file, `name="f"`, `name="USER_HASH"`, 1) + end},
		{"file named USER_LOGIN, quoted filename with ;", "/x", "--b\nContent-Disposition: form-data; name=USER_LOGIN; filename=\"a;b\"\n\nx\n" + end},
		{"login off unsorted", "/api/v2/leads", field("login", "a") + field("api_key", "k") + end},
		{"name* is not a name", "/x", "--b\nContent-Disposition: form-data; name*=UTF-8''USER_HASH\n\nk\n" + end},
		{"name with a space before =", "/x", "--b\nContent-Disposition: form-data; name =\"USER_HASH\"\n\nk\n" + end},
		{"no delimiter", "/x", "USER_LOGIN=x&USER_HASH=k"},
		{"other boundary", "/x", strings.ReplaceAll(login+hash+end, "--b", "--c")},
		{"delimiter-like content", "/x", "--b\nContent-Disposition: form-data; name=\"a\"\n\nx\n--bb\n--b-\n--b--x\n" + end},
	}
	for _, u := range unchanged {
		for _, nl := range []string{"LF", "CRLF"} {
			body := u.body
			if nl == "CRLF" {
				body = crlf(body)
			}
			t.Run(u.name+" "+nl, func(t *testing.T) {
				q := req{target: u.path + "?USER_LOGIN=a%40b.c&USER_HASH=k", ct: ct, body: body}
				w := key
				w.query, w.body = "", same
				check(t, q, q.build(t), Options{}, w)
			})
		}
	}

	t.Run("auth.php type part", func(t *testing.T) {
		typ := field("type", "json")
		q := req{target: "/private/api/auth.php", ct: ct, body: crlf(typ + login + hash + end)}
		w := key
		w.authPHP, w.format, w.body = true, JSON, crlf(typ+end)
		check(t, q, q.build(t), Options{}, w)
	})

	malformed := []struct{ name, body string }{
		{"part does not end", login + hash + "--b\nContent-Disposition: form-data; name=\"a\"\n\nx"},
		{"header does not end", login + hash + "--b\nContent-Disposition: form-data; name=\"a\"\n"},
		{"delimiter ends the body", login + hash + "--b"},
		{"part after the closing delimiter", a + end + login + hash},
		{"closing twice", login + hash + end + end},
		{"array", field("USER_LOGIN[]", "a") + hash + end},
		{"conflict", login + hash + field("USER.HASH", "j") + end},
		{"half", login + a + end},
		{"value runs past a false delimiter", login + field("USER_HASH", "k\n--bX") + end},
		{"empty value", login + field("USER_HASH", "") + end},
		{"too many parts", strings.Repeat(a, maxParts) + login + hash + end},
	}
	for _, m := range malformed {
		t.Run(m.name, func(t *testing.T) {
			q := req{target: "/x", ct: ct, body: crlf(m.body)}
			check(t, q, q.build(t), Options{}, want{status: 400})
		})
	}
}

// TestStripMultipartOverMaxBody: a multipart body longer than MaxBody is
// read up to MaxBody; the credential parts there are removed, and the rest
// streams on through a guard that stops the body at a credential part.
func TestStripMultipartOverMaxBody(t *testing.T) {
	const ct = "multipart/form-data; boundary=b"
	big := strings.Repeat("0123456789abcdef", 64) // 1 KiB
	upload := crlf("--b\nContent-Disposition: form-data; name=\"f\"; filename=\"a.bin\"\n\n") + big + "\r\n"
	login, hash, a := crlf(field("USER_LOGIN", "a@b.c")), crlf(field("USER_HASH", "k")), crlf(field("a", "1"))
	end := "--b--\r\n"
	o := Options{MaxBody: 512}

	stream := func(t *testing.T, body string, chunked bool, query string) (*http.Request, Found, error) {
		t.Helper()
		q := req{target: "/api/v2/notes" + query, ct: ct, body: body, chunked: chunked}
		r := q.build(t)
		f, err := Strip(r, o)
		return r, f, err
	}
	t.Run("no credential streams through", func(t *testing.T) {
		body := a + upload + a + end
		for _, chunked := range []bool{false, true} {
			r, f, err := stream(t, body, chunked, "?USER_LOGIN=a%40b.c&USER_HASH=k")
			if err != nil || f.Kind != Key {
				t.Fatalf("%+v %v", f, err)
			}
			if r.GetBody != nil {
				t.Errorf("GetBody set for a streamed body")
			}
			want := int64(len(body))
			if chunked {
				want = -1
			}
			if got := readAll(t, r); got != body || r.ContentLength != want {
				t.Errorf("body changed (%d bytes, want %d), ContentLength %d", len(got), len(body), r.ContentLength)
			}
		}
	})
	t.Run("credentials before max_body removed", func(t *testing.T) {
		body := login + a + hash + upload + a + end
		for _, chunked := range []bool{false, true} {
			r, f, err := stream(t, body, chunked, "")
			if err != nil || f.Kind != Key || f.Login != "a@b.c" || f.Key != "k" {
				t.Fatalf("%+v %v", f, err)
			}
			left := a + upload + a + end
			want := int64(len(left))
			if chunked {
				want = -1
			}
			if got := readAll(t, r); got != left || r.ContentLength != want {
				t.Errorf("body %d bytes, want %d; ContentLength %d", len(got), len(left), r.ContentLength)
			}
			if !chunked && r.Header.Get("Content-Length") != strconv.Itoa(len(left)) {
				t.Errorf("Content-Length %q", r.Header.Get("Content-Length"))
			}
		}
	})
	t.Run("credential after max_body stops the body", func(t *testing.T) {
		for _, tail := range []string{
			hash + end,
			crlf("--b\nContent-Disposition: form-data;\n name=USER.HASH\n\nk\n") + end,
			end + login, // a part after the closing delimiter
		} {
			r, f, err := stream(t, a+upload+tail, false, "?USER_LOGIN=a%40b.c&USER_HASH=k")
			if err != nil || f.Kind != Key {
				t.Fatalf("%+v %v", f, err)
			}
			got, err := io.ReadAll(r.Body)
			var le *Error
			if !errors.As(err, &le) || (le.Status != 413 && le.Status != 400) {
				t.Fatalf("read error %v, want a 413 or 400 *Error", err)
			}
			if strings.Contains(string(got), "\r\nk\r\n") || strings.Contains(string(got), "a@b.c") {
				t.Errorf("the credential was passed on: %q", got[len(got)-min(len(got), 80):])
			}
			if !strings.HasPrefix(a+upload+tail, string(got)) {
				t.Errorf("what was passed on is not the body's start")
			}
		}
	})
	t.Run("file part named USER_HASH after max_body passes", func(t *testing.T) {
		body := a + upload + crlf("--b\nContent-Disposition: form-data; name=\"USER_HASH\"; filename=\"k.txt\"\n\nk\n") + end
		r, _, err := stream(t, body, true, "?USER_LOGIN=a%40b.c&USER_HASH=k")
		if err != nil {
			t.Fatal(err)
		}
		if got := readAll(t, r); got != body {
			t.Errorf("body changed")
		}
	})
	t.Run("credential value cut by max_body: 413", func(t *testing.T) {
		q := req{target: "/x", ct: ct, body: login + crlf("--b\nContent-Disposition: form-data; name=\"USER_HASH\"\n\n") + big + "\r\n" + end}
		check(t, q, q.build(t), o, want{status: 413})
		q.chunked = true
		check(t, q, q.build(t), o, want{status: 413})
	})
	t.Run("malformed before max_body: 400", func(t *testing.T) {
		q := req{target: "/x", ct: ct, body: a + end + login + upload + end}
		check(t, q, q.build(t), o, want{status: 400})
	})
	t.Run("huge part header stops the body", func(t *testing.T) {
		body := a + upload + "--b\r\nContent-Disposition: form-data; name=\"x\"\r\nX: " + strings.Repeat("y", maxPartHeader) + "\r\n\r\n1\r\n" + end
		r, _, err := stream(t, body, true, "")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := io.ReadAll(r.Body); err == nil {
			t.Errorf("no error")
		}
	})
	t.Run("close reaches the original", func(t *testing.T) {
		cc := &closeCounter{Reader: strings.NewReader(login + hash + upload + end)}
		r := httptest.NewRequest("POST", "/x", nil)
		r.Body, r.ContentLength = cc, -1
		r.Header.Set("Content-Type", ct)
		if _, err := Strip(r, o); err != nil {
			t.Fatal(err)
		}
		if got := readAll(t, r); got != upload+end || cc.closed != 1 {
			t.Errorf("body %q..., original closed %d times", got[:20], cc.closed)
		}
	})
}

// TestStripMultipartRealServer forwards multipart bodies, stripped, through
// net/http's client to a server standing in for amoCRM, which reads them
// with mime/multipart as a strict reader would.
func TestStripMultipartRealServer(t *testing.T) {
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		raw, _ := io.ReadAll(r.Body) // all that arrived, even of a request cut short
		if strings.Contains(string(raw), "USER_") || strings.Contains(string(raw), "\r\nk\r\n") {
			t.Errorf("a credential part reached the upstream")
		}
		r.Body = io.NopCloser(strings.NewReader(string(raw)))
		if err := r.ParseMultipartForm(1 << 20); err != nil {
			http.Error(w, "bad multipart", http.StatusBadRequest)
			return
		}
		var names []string
		for k := range r.MultipartForm.Value {
			names = append(names, k)
		}
		for k, fs := range r.MultipartForm.File {
			names = append(names, k+":"+strconv.FormatInt(fs[0].Size, 10))
		}
		slices.Sort(names)
		_, _ = io.WriteString(w, strings.Join(names, ","))
	}))
	defer upstream.Close()
	front := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f, err := Strip(r, Options{MaxBody: 4 << 10})
		if err != nil {
			WriteError(w, err.(*Error), now)
			return
		}
		if f.Kind != Key || f.Login != "a@b.c" || f.Key != "k" {
			t.Errorf("found %+v", f)
		}
		out, _ := http.NewRequest(r.Method, upstream.URL+r.URL.RequestURI(), r.Body)
		out.ContentLength = r.ContentLength
		out.Header = r.Header.Clone()
		resp, err := http.DefaultClient.Do(out)
		if err != nil {
			http.Error(w, "upstream: "+err.Error(), http.StatusBadGateway)
			return
		}
		defer resp.Body.Close()
		w.WriteHeader(resp.StatusCode)
		_, _ = io.Copy(w, resp.Body)
	}))
	defer front.Close()

	big := strings.Repeat("z", 64<<10)
	for _, tc := range []struct {
		name, body, want string
		status           int
	}{
		{"small", field("USER_LOGIN", "a@b.c") + field("note", "x") + field("USER.HASH", "k") + "--b--\n", "note", 200},
		{"large, credentials first", field("USER_LOGIN", "a@b.c") + field("USER_HASH", "k") +
			"--b\nContent-Disposition: form-data; name=\"f\"; filename=\"a.txt\"\n\n" + big + "\n--b--\n", "f:65536", 200},
		{"large, credential last", "--b\nContent-Disposition: form-data; name=\"f\"; filename=\"a.txt\"\n\n" +
			big + "\n" + field("USER_HASH", "k") + "--b--\n", "", 502},
	} {
		for _, chunked := range []bool{false, true} {
			var body io.Reader = strings.NewReader(crlf(tc.body))
			if chunked {
				body = io.MultiReader(body)
			}
			resp, err := http.Post(front.URL+"/api/v2/notes?USER_LOGIN=a%40b.c&USER_HASH=k", "multipart/form-data; boundary=b", body)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tc.status || tc.status == 200 && string(b) != tc.want {
				t.Errorf("%s (chunked %v): %d %q, want %d %q", tc.name, chunked, resp.StatusCode, b, tc.status, tc.want)
			}
		}
	}
}
