package integration_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// requireNodeEnv makes a missing node or node_modules fail the test instead
// of skipping it.
const requireNodeEnv = "AMOBRIDGE_REQUIRE_NODE"

// nodeClientResult is what integration_test/node/legacy_client.js prints.
type nodeClientResult struct {
	OK     bool            `json:"ok"`
	Step   string          `json:"step"`
	Error  string          `json:"error"`
	Status int             `json:"status"`
	Body   json.RawMessage `json:"body"`
	Auth   *struct {
		Auth     bool `json:"auth"`
		Accounts []struct {
			ID        int64  `json:"id"`
			Subdomain string `json:"subdomain"`
		} `json:"accounts"`
		User struct {
			ID int64 `json:"id"`
		} `json:"user"`
	} `json:"auth"`
	CookieNames []string `json:"cookie_names"`
	Account     *struct {
		ID          int64  `json:"id"`
		Subdomain   string `json:"subdomain"`
		CurrentUser int64  `json:"current_user"`
	} `json:"account"`
	Leads   *[]json.RawMessage `json:"leads"`
	Created *struct {
		ID int64 `json:"id"`
	} `json:"created"`
}

// nodeClientDir returns integration_test/node with its packages installed,
// or skips (fails, with AMOBRIDGE_REQUIRE_NODE set) when node or the
// packages are missing.
func nodeClientDir(t *testing.T) (node, dir string) {
	t.Helper()
	dir = filepath.Join(repoRoot, "integration_test", "node")
	missing := func(format string, args ...any) {
		t.Helper()
		msg := "the legacy Node client test needs " + strings.TrimSpace(fmt.Sprintf(format, args...))
		if os.Getenv(requireNodeEnv) != "" {
			t.Fatalf("%s (%s is set, so this is an error)", msg, requireNodeEnv)
		}
		t.Skipf("%s; set %s=1 to make this an error", msg, requireNodeEnv)
	}
	node, err := exec.LookPath("node")
	if err != nil {
		missing("`node` on PATH (not found)")
	}
	b, err := os.ReadFile(filepath.Join(dir, "node_modules", "amocrm-api", "package.json"))
	if err != nil {
		missing("its npm packages: run `npm ci --prefix integration_test/node`")
	}
	var pkg struct{ Version string }
	if err := json.Unmarshal(b, &pkg); err != nil || pkg.Version != "1.3.1" {
		t.Fatalf("node_modules holds amocrm-api %q; want 1.3.1 (run `npm ci --prefix integration_test/node`)", pkg.Version)
	}
	return node, dir
}

// TestLegacyNodeClient runs a real legacy client that nobody here wrote, the
// npm package amocrm-api@1.3.1, unmodified through the proxy: it logs in
// through auth.php (JSON body, type=json), keeps the session cookie, reads
// the account and the leads and creates a lead. amoCRM must see Bearer
// tokens only: no auth.php call, no USER_LOGIN/USER_HASH, no session cookie.
func TestLegacyNodeClient(t *testing.T) {
	needCaddy(t)
	node, dir := nodeClientDir(t)
	e := NewEnv(t, EnvOptions{})

	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, "legacy_client.js")
	cmd.Dir = dir
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "AMO_") && !strings.HasPrefix(kv, "NODE_OPTIONS=") {
			env = append(env, kv)
		}
	}
	cmd.Env = append(env,
		"AMO_BASE_URL="+e.Caddy.BaseURL(),
		"AMO_LOGIN="+testLogin,
		"AMO_HASH="+e.APIKey, // in the environment, not in argv
		"NO_DEPRECATION=1",
	)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	runErr := cmd.Run()
	e.AssertNoSecrets("the Node client's output", stdout.String()+stderr.String())
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		t.Fatalf("the Node client did not finish in time; stderr:\n%s", tail(stderr.String(), 20))
	}
	var res nodeClientResult
	line := strings.TrimSpace(stdout.String())
	if i := strings.LastIndexByte(line, '\n'); i >= 0 {
		line = line[i+1:]
	}
	if err := json.Unmarshal([]byte(line), &res); err != nil {
		t.Fatalf("the Node client printed no result (%v, exit %v):\nstdout: %s\nstderr: %s", err, runErr, stdout.String(), tail(stderr.String(), 20))
	}
	t.Logf("the Node client printed: %s", line)
	if !res.OK || runErr != nil {
		t.Fatalf("the Node client failed at %s: %s (status %d) %s; exit %v\nstderr: %s",
			res.Step, res.Error, res.Status, res.Body, runErr, tail(stderr.String(), 20))
	}

	// What the client got.
	aid, _ := e.Fake.AccountID(testAccount)
	uid, _ := e.Fake.UserID(testAccount, testLogin)
	if res.Auth == nil || !res.Auth.Auth || len(res.Auth.Accounts) != 1 || res.Auth.Accounts[0].ID != aid ||
		res.Auth.Accounts[0].Subdomain != testAccount || res.Auth.User.ID != uid {
		t.Errorf("auth: the client got %+v; want auth true, account %s (%d), user %d", res.Auth, testAccount, aid, uid)
	}
	if strings.Join(res.CookieNames, ",") != "session_id" {
		t.Errorf("the client keeps the cookies %q; want session_id", res.CookieNames)
	}
	if res.Account == nil || res.Account.ID != aid || res.Account.Subdomain != testAccount || res.Account.CurrentUser != uid {
		t.Errorf("getCurrentAccount: %+v; want account %d (%s), current user %d", res.Account, aid, testAccount, uid)
	}
	if res.Leads == nil {
		t.Errorf("getLeads: no response.leads")
	}
	if res.Created == nil || res.Created.ID <= 0 {
		t.Errorf("createLead: %+v; want a new lead's id", res.Created)
	}

	// What amoCRM received: the client's three API calls with the user's
	// Bearer token, the session cookie stripped, no legacy credential.
	want := map[string]bool{
		"GET /private/api/v2/json/accounts/current": false,
		"GET /private/api/v2/json/leads/list":       false,
		"POST /private/api/v2/json/leads/set":       false,
	}
	for _, r := range e.Fake.Requests() {
		if !strings.HasPrefix(r.Path, "/private/") && !strings.HasPrefix(r.Path, "/api/") {
			continue
		}
		assertBearerOnly(t, r.Method+" "+r.Path, r)
		if !strings.EqualFold(r.Login, testLogin) {
			t.Errorf("%s %s: amoCRM saw user %q", r.Method, r.Path, r.Login)
		}
		if r.Path == "/api/v4/account" {
			continue // the module's own account lookup for auth.php
		}
		k := r.Method + " " + r.Path
		seen, ok := want[k]
		if !ok || seen {
			t.Errorf("amoCRM received an unexpected %s", k)
			continue
		}
		want[k] = true
		if ua := r.Header.Get("User-Agent"); !strings.HasPrefix(ua, "axios/") {
			t.Errorf("%s: User-Agent %q; want the client's axios", k, ua)
		}
		if c := r.Header.Values("Cookie"); len(c) != 0 {
			t.Errorf("%s: amoCRM received Cookie %q; the client's only cookie is the session", k, c)
		}
		if k == "GET /private/api/v2/json/leads/list" && r.RawQuery != "limit_rows=10&limit_offset=0" {
			t.Errorf("%s: amoCRM received ?%q", k, r.RawQuery)
		}
		if k == "POST /private/api/v2/json/leads/set" {
			var body struct {
				Request struct {
					Leads struct {
						Add []struct {
							Name  string `json:"name"`
							Price int    `json:"price"`
						} `json:"add"`
					} `json:"leads"`
				} `json:"request"`
			}
			if err := json.Unmarshal(r.Body, &body); err != nil || len(body.Request.Leads.Add) != 1 ||
				body.Request.Leads.Add[0].Name != "Lead from amocrm-api" || body.Request.Leads.Add[0].Price != 1500 {
				t.Errorf("%s: amoCRM received the body %s", k, r.Body)
			}
		}
	}
	for k, seen := range want {
		if !seen {
			t.Errorf("amoCRM never received the client's %s", k)
		}
	}
	noAuthPHPReached(t, e)
	if st := e.Fake.Stats(); st.Exchanges != 1 || st.CodeGrants != 1 {
		t.Errorf("%d exchanges, %d code grants; want 1 and 1", st.Exchanges, st.CodeGrants)
	}
	e.AssertNoViolations()
	assertNoSecretsAnywhere(e)
}
