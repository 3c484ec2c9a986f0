package fakeamocrm

import (
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"strings"
	"testing"
)

func TestV4Account(t *testing.T) {
	e := newEnv(t, func(o *Options) {
		o.Accounts = []Account{{Name: "acme", ID: 123, Title: "Acme Ltd", Timezone: "Asia/Yekaterinburg"}}
	})
	p := e.pair("acme", "user@example.com", acmeKey)
	a := e.api(http.MethodGet, "acme", "/api/v4/account", p.AccessToken, nil, "X-Client-UUID", testClientID)
	if a.status != 200 || a.header.Get("Content-Type") != "application/hal+json" {
		t.Fatalf("account: %d %q %s", a.status, a.header.Get("Content-Type"), a.body)
	}
	m := a.json(t)
	if m["id"] != float64(123) || m["name"] != "Acme Ltd" || m["subdomain"] != "acme" || m["current_user_id"] != float64(777) ||
		m["country"] != "RU" || m["currency"] != "RUB" {
		t.Errorf("account %s", a.body)
	}
	if _, ok := m["_embedded"]; ok {
		t.Errorf("_embedded without with=: %s", a.body)
	}
	a = e.api(http.MethodGet, "acme", "/api/v4/account?with=users_groups,datetime_settings", p.AccessToken, nil)
	emb, _ := a.json(t)["_embedded"].(map[string]any)
	dt, _ := emb["datetime_settings"].(map[string]any)
	if dt["timezone"] != "Asia/Yekaterinburg" || dt["timezone_offset"] != "+05:00" {
		t.Errorf("datetime_settings %s", a.body)
	}
	if a := e.api(http.MethodPost, "acme", "/api/v4/account", p.AccessToken, nil); a.status != 405 {
		t.Errorf("POST: %d", a.status)
	}
	// The default account details.
	o := e.pair("other", "boss@example.com", otherKey)
	m = e.api(http.MethodGet, "other", "/api/v4/account?with=datetime_settings", o.AccessToken, nil).json(t)
	if m["name"] != "Other" || m["id"] == float64(0) || m["current_user_id"] == float64(0) {
		t.Errorf("defaults %v", m)
	}
	if dt := m["_embedded"].(map[string]any)["datetime_settings"].(map[string]any); dt["timezone"] != "Europe/Moscow" {
		t.Errorf("default timezone %v", dt)
	}
}

func TestBearerChecks(t *testing.T) {
	e := newEnv(t, nil)
	p := e.pair("acme", "user@example.com", acmeKey)
	o := e.pair("other", "boss@example.com", otherKey)
	cases := []struct {
		name string
		acct string
		hdr  []string
		want int
	}{
		{"valid", "acme", []string{"Authorization", "Bearer " + p.AccessToken}, 200},
		{"lower-case scheme", "acme", []string{"Authorization", "bearer " + p.AccessToken}, 200},
		{"none", "acme", nil, 401},
		{"unknown", "acme", []string{"Authorization", "Bearer abc.def.ghi"}, 401},
		{"another account's token", "acme", []string{"Authorization", "Bearer " + o.AccessToken}, 401},
		{"basic", "acme", []string{"Authorization", "Basic dXNlcjpwYXNz"}, 401},
		{"refresh token as bearer", "acme", []string{"Authorization", "Bearer " + p.RefreshToken}, 401},
		{"two headers", "acme", []string{"Authorization", "Bearer " + p.AccessToken, "Authorization", "Bearer " + p.AccessToken}, 401},
	}
	want401 := 0
	for _, c := range cases {
		for _, path := range []string{"/api/v4/account", "/api/v2/leads", "/private/api/v2/json/leads/list", "/api/v4/leads"} {
			a := e.api(http.MethodGet, c.acct, path, "", nil, c.hdr...)
			if a.status != c.want {
				t.Errorf("%s %s: %d %s, want %d", c.name, path, a.status, a.body, c.want)
			}
			if c.want == 401 {
				want401++
			}
		}
	}
	if st := e.fake.Stats(); st.API401 != want401 {
		t.Errorf("API401 = %d, want %d", st.API401, want401)
	}
}

func TestLegacyEndpointsWithBearer(t *testing.T) {
	e := newEnv(t, nil)
	p := e.pair("acme", "user@example.com", acmeKey)
	body := []byte(`{"request":{"leads":{"add":[{"name":"Deal"}]}}}`)

	a := e.api(http.MethodPost, "acme", "/private/api/v2/json/leads/set?foo=bar", p.AccessToken, body, "Content-Type", "application/json")
	if a.status != 200 {
		t.Fatalf("leads/set: %d %s", a.status, a.body)
	}
	m := a.json(t)
	resp := m["response"].(map[string]any)
	add := resp["leads"].(map[string]any)["add"].([]any)
	if len(add) != 1 || add[0].(map[string]any)["id"] == nil || resp["server_time"] == nil {
		t.Errorf("leads/set answer %s", a.body)
	}
	h := sha256.Sum256(body)
	echo := m["_fake"].(map[string]any)
	if echo["method"] != "POST" || echo["path"] != "/private/api/v2/json/leads/set" || echo["raw_query"] != "foo=bar" ||
		echo["user_id"] != float64(777) || echo["login"] != "user@example.com" || echo["account"] != "acme" ||
		echo["body_len"] != float64(len(body)) || echo["body_sha256"] != hex.EncodeToString(h[:]) {
		t.Errorf("echo %v", echo)
	}

	a = e.api(http.MethodGet, "acme", "/private/api/v2/json/leads/list?limit_rows=10", p.AccessToken, nil)
	if leads, ok := a.json(t)["response"].(map[string]any)["leads"].([]any); a.status != 200 || !ok || len(leads) != 0 {
		t.Errorf("leads/list: %d %s", a.status, a.body)
	}

	a = e.api(http.MethodGet, "acme", "/private/api/v2/json/accounts/current", p.AccessToken, nil)
	acct := a.json(t)["response"].(map[string]any)["account"].(map[string]any)
	users, _ := acct["users"].([]any)
	if acct["subdomain"] != "acme" || acct["current_user"] != float64(777) || acct["timezone"] != "Europe/Moscow" ||
		acct["language"] != "ru" || len(users) != 1 {
		t.Errorf("accounts/current %s", a.body)
	}

	a = e.api(http.MethodGet, "acme", "/api/v2/account", p.AccessToken, nil)
	if m := a.json(t); a.status != 200 || m["subdomain"] != "acme" || m["current_user"] != float64(777) {
		t.Errorf("/api/v2/account %s", a.body)
	}
	a = e.api(http.MethodPost, "acme", "/api/v2/leads", p.AccessToken, []byte(`{"add":[{"name":"x"}]}`))
	items := a.json(t)["_embedded"].(map[string]any)["items"].([]any)
	if a.status != 200 || len(items) != 1 {
		t.Errorf("/api/v2/leads POST %s", a.body)
	}
	if a := e.api(http.MethodGet, "acme", "/private/api/v2/json/leads/frobnicate", p.AccessToken, nil); a.status != 404 {
		t.Errorf("unknown legacy action: %d", a.status)
	}
	if a := e.api(http.MethodGet, "acme", "/nowhere", p.AccessToken, nil); a.status != 404 {
		t.Errorf("unknown path: %d", a.status)
	}
	if len(e.fake.Violations()) != 0 {
		t.Errorf("violations %+v", e.fake.Violations())
	}
}

func TestRequestsRecordWhatAmoCRMSaw(t *testing.T) {
	e := newEnv(t, nil)
	p := e.pair("acme", "user@example.com", acmeKey)
	e.api(http.MethodPost, "acme", "/api/v2/leads?x=1&y=%20", p.AccessToken, []byte("a=b"), "Cookie", "other=1", "Content-Type", "application/x-www-form-urlencoded")
	recs := e.fake.Requests()
	if len(recs) != 3 {
		t.Fatalf("%d requests recorded, want 3 (exchange, token, api)", len(recs))
	}
	for _, r := range recs[:2] {
		if !strings.HasPrefix(r.Path, "/oauth2/") || r.Body != nil || r.BodyLen == 0 {
			t.Errorf("oauth2 request recorded with its body: %+v", r)
		}
	}
	r := recs[2]
	if r.Method != "POST" || r.Path != "/api/v2/leads" || r.RawQuery != "x=1&y=%20" || string(r.Body) != "a=b" ||
		r.Header.Get("Authorization") != "Bearer "+p.AccessToken || r.Header.Get("Cookie") != "other=1" ||
		r.Status != 200 || r.Login != "user@example.com" || r.UserID != 777 || r.Account != "acme" {
		t.Errorf("recorded %+v", r)
	}
	// Copies: changing them does not change the record.
	recs[2].Body[0] = 'X'
	recs[2].Header.Set("Cookie", "changed")
	if r := e.fake.Requests()[2]; string(r.Body) != "a=b" || r.Header.Get("Cookie") != "other=1" {
		t.Error("Requests returns shared memory")
	}
}

func TestAuthPHPIsAViolation(t *testing.T) {
	e := newEnv(t, nil)
	a := e.send(http.MethodPost, e.base("acme")+"/private/api/auth.php?type=json", "application/x-www-form-urlencoded",
		[]byte("USER_LOGIN=user%40example.com&USER_HASH="+acmeKey))
	if a.status != 401 {
		t.Fatalf("auth.php: %d", a.status)
	}
	if r := a.json(t)["response"].(map[string]any); r["auth"] != false || r["error_code"] != "110" {
		t.Errorf("answer %s", a.body)
	}
	kinds := map[string]int{}
	for _, v := range e.fake.Violations() {
		kinds[v.Kind]++
	}
	if kinds[ViolationAuthPHP] != 1 || kinds[ViolationCredential] != 2 {
		t.Errorf("violations %+v", e.fake.Violations())
	}
}
