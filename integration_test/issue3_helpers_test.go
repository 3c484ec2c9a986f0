package integration_test

// Helpers shared by the tests of issue 3 (credential shapes, auth.php
// sessions, keys, malformed input, many accounts, the Node legacy client).

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/amobridge/amobridge/integration_test/fakeamocrm"
)

// fakeEcho is the "_fake" block of the fake's API answers: what amoCRM
// received for the request.
type fakeEcho struct {
	Fake struct {
		Method      string `json:"method"`
		Path        string `json:"path"`
		RawQuery    string `json:"raw_query"`
		Account     string `json:"account"`
		UserID      int64  `json:"user_id"`
		Login       string `json:"login"`
		ContentType string `json:"content_type"`
		BodyLen     int    `json:"body_len"`
		BodySHA256  string `json:"body_sha256"`
	} `json:"_fake"`
}

// legacyErrorBody is the legacy JSON error shape of contract section 6.
type legacyErrorBody struct {
	Response struct {
		Error      *string `json:"error"`
		ErrorCode  *string `json:"error_code"`
		ServerTime *int64  `json:"server_time"`
	} `json:"response"`
}

// assertLegacyError fails t unless resp is a module error in the legacy JSON
// shape with status and, if code is not "", that error_code. It returns the
// error's text.
func assertLegacyError(t testing.TB, what string, resp *Response, status int, code string) string {
	t.Helper()
	if resp.Status != status {
		t.Errorf("%s: status %d, want %d; body: %.300s", what, resp.Status, status, resp.Body)
		return ""
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Errorf("%s: Content-Type %q, want application/json", what, ct)
	}
	var le legacyErrorBody
	dec := json.NewDecoder(strings.NewReader(string(resp.Body)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&le); err != nil {
		t.Errorf("%s: the answer is not the legacy error shape {\"response\":{\"error\",\"error_code\",\"server_time\"}}: %v\n%.300s", what, err, resp.Body)
		return ""
	}
	r := le.Response
	if r.Error == nil || *r.Error == "" || r.ErrorCode == nil || r.ServerTime == nil {
		t.Errorf("%s: the legacy error misses error, error_code or server_time: %s", what, resp.Body)
		return ""
	}
	if code != "" && *r.ErrorCode != code {
		t.Errorf("%s: error_code %q, want %q (%s)", what, *r.ErrorCode, code, *r.Error)
	}
	if d := time.Since(time.Unix(*r.ServerTime, 0)); d < -time.Minute || d > time.Minute {
		t.Errorf("%s: server_time %d is not now", what, *r.ServerTime)
	}
	for _, bad := range []string{"goroutine ", "panic", "runtime error", "nil pointer", ".go:"} {
		if strings.Contains(*r.Error, bad) {
			t.Errorf("%s: the error text looks like a Go error or stack: %q", what, *r.Error)
		}
	}
	return *r.Error
}

// sha256Hex is the hex SHA-256 of b.
func sha256Hex(b []byte) string {
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:])
}

// lastRequest returns the fake's most recent recorded request, failing t if
// there is none.
func lastRequest(t testing.TB, e *Env) fakeamocrm.Recorded {
	t.Helper()
	rs := e.Fake.Requests()
	if len(rs) == 0 {
		t.Fatal("amoCRM received no request")
	}
	return rs[len(rs)-1]
}

// requestCount is how many requests the fake has recorded.
func requestCount(e *Env) int { return len(e.Fake.Requests()) }

// newViolations fails t with the fake's violations recorded after the first n.
func newViolations(t testing.TB, e *Env, n int, what string) {
	t.Helper()
	vs := e.Fake.Violations()
	for _, v := range vs[min(n, len(vs)):] {
		t.Errorf("%s: fake amoCRM violation: %s %s %s (%s in %s) %s", what, v.Kind, v.Method, v.Path, v.Name, v.Where, v.Detail)
	}
}

// bearerOf returns the Bearer token of a recorded request ("" if none).
func bearerOf(r fakeamocrm.Recorded) string {
	v := r.Header.Values("Authorization")
	if len(v) != 1 {
		return ""
	}
	tok, _ := strings.CutPrefix(v[0], "Bearer ")
	return tok
}

// assertBearerOnly fails t unless the recorded request carried exactly one
// Bearer token, of a known user, and no legacy credential by name.
func assertBearerOnly(t testing.TB, what string, r fakeamocrm.Recorded) {
	t.Helper()
	if bearerOf(r) == "" || r.Login == "" {
		t.Errorf("%s: amoCRM did not receive a valid Bearer token (Authorization %d header(s), user %q, status %d)",
			what, len(r.Header.Values("Authorization")), r.Login, r.Status)
	}
	all := r.RawQuery + "\n" + string(r.Body) + "\n" + strings.Join(r.Header.Values("Cookie"), "\n")
	for _, name := range []string{"USER_LOGIN", "USER_HASH", "session_id"} {
		if strings.Contains(all, name) {
			t.Errorf("%s: amoCRM received %q", what, name)
		}
	}
}

// doAfterLimit sends a request, and while the module answers 503 with
// Retry-After (amoCRM's exchange interval not yet over), waits and sends it
// again, at most tries times. body is re-sent from the bytes.
func doAfterLimit(e *Env, method, path string, header http.Header, body []byte, tries int) *Response {
	e.T.Helper()
	var resp *Response
	for i := 0; i < tries; i++ {
		var rd *strings.Reader
		if body != nil {
			rd = strings.NewReader(string(body))
		}
		if rd != nil {
			resp = e.Do(method, path, header, rd)
		} else {
			resp = e.Do(method, path, header, nil)
		}
		if resp.Status != http.StatusServiceUnavailable {
			return resp
		}
		wait := time.Second
		if s, err := strconv.Atoi(resp.Header.Get("Retry-After")); err == nil && s > 0 && s <= 10 {
			wait = time.Duration(s) * time.Second
		}
		time.Sleep(wait)
	}
	return resp
}

// assertNoSecretsAnywhere checks Caddy's output and its access log.
func assertNoSecretsAnywhere(e *Env) {
	e.T.Helper()
	e.AssertNoSecrets("Caddy's log (debug level)", e.Caddy.Logs())
	e.AssertNoSecrets("the access log", e.AccessLog())
}
