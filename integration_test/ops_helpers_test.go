package integration_test

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/amobridge/amobridge/integration_test/fakeamocrm"
)

// Helpers of the operations tests (metrics, admin API, `caddy amocrm`,
// secrets): talking to Caddy's admin API, scraping /metrics, running the
// command, and keeping every answer for the secrets scan.

// opsUser is one more amoCRM user of the test account, with its own key.
type opsUser struct {
	Login, Key string
}

// newOpsUsers returns n users named prefix-i@example.com with random keys.
func newOpsUsers(t testing.TB, prefix string, n int) []opsUser {
	t.Helper()
	out := make([]opsUser, n)
	for i := range out {
		out[i] = opsUser{Login: fmt.Sprintf("%s-%d@example.com", prefix, i+1), Key: randomHex(t, 20)}
	}
	return out
}

// addToFake returns an EnvOptions.Fake function that registers users too.
func addToFake(users []opsUser, more func(*fakeamocrm.Options)) func(*fakeamocrm.Options) {
	return func(o *fakeamocrm.Options) {
		for _, u := range users {
			o.Users = append(o.Users, fakeamocrm.User{Account: testAccount, Login: u.Login, APIKey: u.Key})
		}
		if more != nil {
			more(o)
		}
	}
}

// legacyQueryFor is the legacy query of any user.
func legacyQueryFor(login, key string) string {
	return "USER_LOGIN=" + strings.ReplaceAll(login, "@", "%40") + "&USER_HASH=" + key
}

// transcript keeps everything Caddy answered or printed that a test saw, so
// that a secrets scan covers all of it.
type transcript struct {
	mu      sync.Mutex
	entries []transcriptEntry
}

type transcriptEntry struct {
	where string
	text  string
}

func (tr *transcript) add(where, text string) {
	if tr == nil {
		return
	}
	tr.mu.Lock()
	defer tr.mu.Unlock()
	tr.entries = append(tr.entries, transcriptEntry{where, text})
}

func (tr *transcript) addResponse(where string, r *Response) {
	if tr == nil || r == nil {
		return
	}
	var b strings.Builder
	fmt.Fprintf(&b, "HTTP %d\n", r.Status)
	for k, vs := range r.Header {
		for _, v := range vs {
			fmt.Fprintf(&b, "%s: %s\n", k, v)
		}
	}
	b.WriteString("\n")
	b.Write(r.Body)
	tr.add(where, b.String())
}

func (tr *transcript) all() []transcriptEntry {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	return append([]transcriptEntry(nil), tr.entries...)
}

// admin sends a request to Caddy's admin API and reads the answer whole.
func admin(e *Env, tr *transcript, method, path, contentType string, body io.Reader) *Response {
	e.T.Helper()
	req, err := http.NewRequest(method, "http://"+e.Caddy.AdminAddr+path, body)
	if err != nil {
		e.T.Fatal(err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := client.Do(req)
	if err != nil {
		e.T.Fatalf("admin %s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		e.T.Fatalf("admin %s %s: reading the answer: %v", method, path, err)
	}
	r := &Response{Status: resp.StatusCode, Header: resp.Header, Body: b}
	tr.addResponse("admin "+method+" "+path, r)
	return r
}

// amocrmCommand runs `bin/caddy amocrm args... --address <admin>` and
// returns its combined output and exit code.
func amocrmCommand(e *Env, tr *transcript, address string, args ...string) (string, int) {
	e.T.Helper()
	full := append([]string{"amocrm"}, args...)
	full = append(full, "--address", address)
	out, err := e.Caddy.Command(full...)
	tr.add("caddy "+strings.Join(full, " "), out)
	code := 0
	if err != nil {
		var ee *exec.ExitError
		if !errors.As(err, &ee) {
			e.T.Fatalf("caddy %s: %v\n%s", strings.Join(full, " "), err, out)
		}
		code = ee.ExitCode()
	}
	return out, code
}

// writeFile writes content to name in the test's directory and returns its path.
func writeFile(e *Env, name, content string) string {
	e.T.Helper()
	p := filepath.Join(e.Dir, name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		e.T.Fatal(err)
	}
	return p
}

// sample is one line of Prometheus' text format.
type sample struct {
	Name   string
	Labels map[string]string
	Value  float64
}

// id is the sample's name with its labels in a stable order.
func (s sample) id() string {
	if len(s.Labels) == 0 {
		return s.Name
	}
	keys := make([]string, 0, len(s.Labels))
	for k := range s.Labels {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = k + "=" + strconv.Quote(s.Labels[k])
	}
	return s.Name + "{" + strings.Join(parts, ",") + "}"
}

// scrape is one read of Caddy's /metrics on the admin address.
type scrape struct {
	text    string
	samples []sample
}

// scrapeMetrics reads /metrics from the admin API.
func scrapeMetrics(e *Env, tr *transcript) *scrape {
	e.T.Helper()
	r := admin(e, tr, http.MethodGet, "/metrics", "", nil)
	if r.Status != http.StatusOK {
		e.T.Fatalf("GET /metrics: status %d\n%s", r.Status, r.Body)
	}
	s := &scrape{text: string(r.Body)}
	for n, line := range strings.Split(s.text, "\n") {
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		sm, err := parseSample(line)
		if err != nil {
			e.T.Fatalf("/metrics line %d %q: %v", n+1, line, err)
		}
		s.samples = append(s.samples, sm)
	}
	return s
}

// parseSample parses `name{l="v",...} value [timestamp]`.
func parseSample(line string) (sample, error) {
	s := sample{Labels: map[string]string{}}
	i := strings.IndexAny(line, "{ ")
	if i <= 0 {
		return s, errors.New("no metric name")
	}
	s.Name = line[:i]
	rest := line[i:]
	if rest[0] == '{' {
		rest = rest[1:]
		for {
			rest = strings.TrimLeft(rest, ", ")
			if strings.HasPrefix(rest, "}") {
				rest = rest[1:]
				break
			}
			eq := strings.Index(rest, "=\"")
			if eq <= 0 {
				return s, errors.New("bad label")
			}
			name := rest[:eq]
			rest = rest[eq+2:]
			var val strings.Builder
			j := 0
			for ; j < len(rest) && rest[j] != '"'; j++ {
				if rest[j] == '\\' && j+1 < len(rest) {
					j++
					switch rest[j] {
					case 'n':
						val.WriteByte('\n')
					default:
						val.WriteByte(rest[j])
					}
					continue
				}
				val.WriteByte(rest[j])
			}
			if j == len(rest) {
				return s, errors.New("unterminated label value")
			}
			s.Labels[name] = val.String()
			rest = rest[j+1:]
		}
	}
	fields := strings.Fields(rest)
	if len(fields) == 0 {
		return s, errors.New("no value")
	}
	v, err := strconv.ParseFloat(fields[0], 64)
	if err != nil {
		return s, fmt.Errorf("value: %v", err)
	}
	s.Value = v
	return s, nil
}

// get returns the value of the sample name with exactly these labels (0 if
// absent: a counter never incremented is not exported).
func (s *scrape) get(name string, labels ...string) float64 {
	want := sample{Name: name, Labels: map[string]string{}}
	for i := 0; i+1 < len(labels); i += 2 {
		want.Labels[labels[i]] = labels[i+1]
	}
	id := want.id()
	for _, sm := range s.samples {
		if sm.id() == id {
			return sm.Value
		}
	}
	return 0
}

// sum adds every sample of name, whatever its labels.
func (s *scrape) sum(name string) float64 {
	var t float64
	for _, sm := range s.samples {
		if sm.Name == name {
			t += sm.Value
		}
	}
	return t
}

// has reports whether any sample of name is exported.
func (s *scrape) has(name string) bool {
	for _, sm := range s.samples {
		if sm.Name == name {
			return true
		}
	}
	return false
}

// amobridge returns the samples of amobridge's own metrics.
func (s *scrape) amobridge() []sample {
	var out []sample
	for _, sm := range s.samples {
		if strings.HasPrefix(sm.Name, "amobridge_") {
			out = append(out, sm)
		}
	}
	return out
}
