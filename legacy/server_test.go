package legacy

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// TestStripRealServer runs Strip on requests as net/http's server builds
// them (chunked bodies, several Cookie lines) and forwards the result
// through httptest's client to a second server standing in for amoCRM.
func TestStripRealServer(t *testing.T) {
	type seen struct {
		URI, Query string
		Cookies    []string
		Body       string
		CL         int64
		TE         []string
	}
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		_ = json.NewEncoder(w).Encode(seen{r.RequestURI, r.URL.RawQuery, r.Header["Cookie"], string(b), r.ContentLength, r.TransferEncoding})
	}))
	defer upstream.Close()
	front := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f, err := Strip(r, Options{})
		if err != nil {
			WriteError(w, err.(*Error), now)
			return
		}
		if f.Kind != Key || f.Login != "a@b.c" || f.Key != "k" || f.SessionID != "s1" {
			t.Errorf("found %+v", f)
		}
		out, _ := http.NewRequest(r.Method, upstream.URL+r.URL.RequestURI(), r.Body)
		out.ContentLength = r.ContentLength
		out.Header = r.Header.Clone()
		resp, err := http.DefaultClient.Do(out)
		if err != nil {
			t.Error(err)
			return
		}
		defer resp.Body.Close()
		_, _ = io.Copy(w, resp.Body)
	}))
	defer front.Close()

	body := io.MultiReader(strings.NewReader("a=1&USER_HASH=k"), strings.NewReader("&b=%zz"))
	req, _ := http.NewRequest("POST", front.URL+"/api/v2/leads?USER_LOGIN=a%40b.c&x=%2F", io.NopCloser(body))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Add("Cookie", "a=1; session_id=s1")
	req.Header.Add("Cookie", "b=2")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var got seen
	if err := json.NewDecoder(resp.Body).Decode(&got); err != nil {
		t.Fatal(err)
	}
	if got.URI != "/api/v2/leads?x=%2F" || got.Query != "x=%2F" || got.Body != "a=1&b=%zz" || got.CL != int64(len("a=1&b=%zz")) || len(got.TE) != 0 {
		t.Errorf("upstream saw %+v", got)
	}
	if strings.Join(got.Cookies, "; ") != "a=1; b=2" {
		t.Errorf("upstream cookies %q", got.Cookies)
	}
}
