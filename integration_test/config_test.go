package integration_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// exampleEnv is the environment Caddyfile.example expects, with the access log
// moved into dir.
func exampleEnv(t *testing.T, dir string) (env []string, secret, storeKey string) {
	secret, storeKey = "cs-"+randomHex(t, 16), randomHex(t, 32)
	return caddyEnv(dir, map[string]string{
		"AMOCRM_CLIENT_ID":     testClient,
		"AMOCRM_CLIENT_SECRET": secret,
		"AMOBRIDGE_STORE_KEY":  storeKey,
		"AMOBRIDGE_ACCESS_LOG": filepath.Join(dir, "access.log"),
	}), secret, storeKey
}

// adaptJSON runs `caddy adapt` on path and decodes the result.
func adaptJSON(t *testing.T, dir string, env []string, path string) map[string]any {
	t.Helper()
	out, err := runCaddy(dir, env, "adapt", "--adapter", "caddyfile", "--config", path)
	if err != nil {
		t.Fatalf("caddy adapt %s: %v\n%s", filepath.Base(path), err, out)
	}
	// The JSON is the one line that starts with {"; warnings are log lines.
	for _, line := range strings.Split(out, "\n") {
		if strings.HasPrefix(line, "{\"") && !strings.HasPrefix(line, "{\"level\"") {
			var cfg map[string]any
			if err := json.Unmarshal([]byte(line), &cfg); err != nil {
				t.Fatalf("caddy adapt %s: output is not JSON: %v", filepath.Base(path), err)
			}
			return cfg
		}
	}
	t.Fatalf("caddy adapt %s printed no config:\n%s", filepath.Base(path), out)
	return nil
}

// dig walks a decoded JSON value along keys (strings for objects, ints for arrays).
func dig(v any, keys ...any) any {
	for _, k := range keys {
		switch k := k.(type) {
		case string:
			m, ok := v.(map[string]any)
			if !ok {
				return nil
			}
			v = m[k]
		case int:
			a, ok := v.([]any)
			if !ok || k >= len(a) {
				return nil
			}
			v = a[k]
		}
	}
	return v
}

// findAll returns every JSON object under v that has key == value.
func findAll(v any, key, value string) []map[string]any {
	var out []map[string]any
	var walk func(any)
	walk = func(v any) {
		switch v := v.(type) {
		case map[string]any:
			if s, ok := v[key].(string); ok && s == value {
				out = append(out, v)
			}
			for _, c := range v {
				walk(c)
			}
		case []any:
			for _, c := range v {
				walk(c)
			}
		}
	}
	walk(v)
	return out
}

// TestCaddyfileExample checks that the shipped example adapts and validates,
// keeps its secrets out of the adapted config, is `caddy fmt` clean, and
// filters the credentials out of the access log's request URI.
func TestCaddyfileExample(t *testing.T) {
	needCaddy(t)
	dir := testDir(t)
	env, secret, storeKey := exampleEnv(t, dir)
	example := filepath.Join(repoRoot, "Caddyfile.example")
	src, err := os.ReadFile(example)
	if err != nil {
		t.Fatal(err)
	}

	cfg := adaptJSON(t, dir, env, example)
	raw, _ := json.Marshal(cfg)
	for name, v := range map[string]string{"client secret": secret, "store key": storeKey, "client id": testClient} {
		if strings.Contains(string(raw), v) {
			t.Errorf("the adapted config contains the %s: {env.*} must be resolved at provision time, not adapt time", name)
		}
	}
	handlers := findAll(cfg, "handler", "amocrm_auth")
	if len(handlers) != 1 {
		t.Fatalf("the adapted config has %d amocrm_auth handlers; want 1", len(handlers))
	}
	if got := handlers[0]["client_secret"]; got != "{env.AMOCRM_CLIENT_SECRET}" {
		t.Errorf("client_secret adapts to %v; want the {env.AMOCRM_CLIENT_SECRET} placeholder", got)
	}

	// The access log filters the request URI (TestAccessLogFilter checks what
	// the filter does).
	logs, _ := dig(cfg, "logging", "logs").(map[string]any)
	filtered := 0
	for _, l := range logs {
		if dig(l, "encoder", "format") == "filter" && dig(l, "encoder", "fields", "request>uri", "filter") == "amocrm_credentials" {
			filtered++
		}
	}
	if filtered != 1 {
		t.Errorf("%d access logs filter request>uri with amocrm_credentials; want 1", filtered)
	}

	// caddy fmt leaves it as it is.
	if out, err := runCaddy(dir, env, "fmt", example); err != nil {
		t.Errorf("caddy fmt: %v\n%s", err, out)
	} else if out != string(src) {
		t.Errorf("Caddyfile.example is not `caddy fmt` clean; run: bin/caddy fmt --overwrite Caddyfile.example")
	}

	// validate provisions every module. The store path is moved into the test's
	// directory so that nothing is written outside it.
	store := filepath.Join(dir, "store")
	copyPath := filepath.Join(dir, "Caddyfile")
	text := strings.ReplaceAll(string(src), "/var/lib/amobridge", store)
	if err := os.WriteFile(copyPath, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := runCaddy(dir, env, "validate", "--adapter", "caddyfile", "--config", copyPath)
	if err != nil || !strings.Contains(out, "Valid configuration") {
		t.Errorf("caddy validate Caddyfile.example: %v\n%s", err, tail(out, 20))
	}
	for name, v := range map[string]string{"client secret": secret, "store key": storeKey} {
		if strings.Contains(out, v) {
			t.Errorf("caddy validate printed the %s", name)
		}
	}
}

func asSlice(v any) []any {
	s, _ := v.([]any)
	return s
}

// dnsOverrideVariant turns Caddyfile.example into its DNS-override deployment
// as its comments tell: the active site is deleted, and the lines between
// BEGIN and END are uncommented.
func dnsOverrideVariant(t *testing.T, src string) string {
	t.Helper()
	var out []string
	inSite, inAlt, found := false, false, false
	for _, l := range strings.Split(src, "\n") {
		switch {
		case l == "https://amo-proxy.example.com {":
			inSite = true
		case inSite:
			inSite = l != "}"
		case l == "# BEGIN dns-override":
			inAlt, found = true, true
		case l == "# END dns-override":
			inAlt = false
		case inAlt && l == "#":
			out = append(out, "")
		case inAlt:
			if !strings.HasPrefix(l, "# ") {
				t.Fatalf("Caddyfile.example: a line between BEGIN and END does not start with \"# \": %q", l)
			}
			out = append(out, strings.TrimPrefix(l, "# "))
		default:
			out = append(out, l)
		}
	}
	if !found {
		t.Fatal("Caddyfile.example has no # BEGIN dns-override block")
	}
	return strings.Join(out, "\n")
}

// TestCaddyfileExampleDNSOverride checks the commented DNS-override deployment.
func TestCaddyfileExampleDNSOverride(t *testing.T) {
	needCaddy(t)
	dir := testDir(t)
	env, _, _ := exampleEnv(t, dir)
	src, err := os.ReadFile(filepath.Join(repoRoot, "Caddyfile.example"))
	if err != nil {
		t.Fatal(err)
	}
	text := strings.ReplaceAll(dnsOverrideVariant(t, string(src)), "/var/lib/amobridge", filepath.Join(dir, "store"))
	path := filepath.Join(dir, "Caddyfile.dns")
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := adaptJSON(t, dir, env, path)

	handlers := findAll(cfg, "handler", "amocrm_auth")
	if len(handlers) != 2 {
		t.Errorf("the DNS-override config has %d amocrm_auth handlers; want 2 (proxy and callback site)", len(handlers))
	}
	for _, h := range handlers {
		if h["subdomain"] != "{http.request.host.labels.2}" {
			t.Errorf("subdomain is %v; want {http.request.host.labels.2}", h["subdomain"])
		}
	}
	proxies := findAll(cfg, "handler", "reverse_proxy")
	if len(proxies) != 1 {
		t.Fatalf("%d reverse_proxy handlers; want 1", len(proxies))
	}
	if got := dig(proxies[0], "transport", "resolver", "addresses"); !reflect.DeepEqual(got, []any{"8.8.8.8", "1.1.1.1"}) {
		t.Errorf("reverse_proxy resolvers: %v; want [8.8.8.8 1.1.1.1]", got)
	}
	if dig(proxies[0], "transport", "tls") == nil {
		t.Errorf("reverse_proxy to amoCRM does not use TLS")
	}
	if got := dig(proxies[0], "upstreams", 0, "dial"); got != "{http.request.host.labels.2}.amocrm.ru:443" {
		t.Errorf("upstream dial %v; want {http.request.host.labels.2}.amocrm.ru:443", got)
	}
	internal := false
	for _, p := range asSlice(dig(cfg, "apps", "tls", "automation", "policies")) {
		for _, is := range asSlice(dig(p, "issuers")) {
			if dig(is, "module") == "internal" && reflect.DeepEqual(dig(p, "subjects"), []any{"*.amocrm.ru"}) {
				internal = true
			}
		}
	}
	if !internal {
		t.Errorf("*.amocrm.ru does not get its certificate from the internal CA (tls internal)")
	}

	out, err := runCaddy(dir, env, "validate", "--adapter", "caddyfile", "--config", path)
	if err != nil || !strings.Contains(out, "Valid configuration") {
		t.Errorf("caddy validate (DNS-override variant): %v\n%s", err, tail(out, 20))
	}
}

// TestBadConfigFailsClearly checks that a bad amocrm_auth block fails both
// `caddy adapt` and `caddy validate` with a message that names the option, and
// never repeats a secret.
func TestBadConfigFailsClearly(t *testing.T) {
	needCaddy(t)
	badKey := "00112233445566778899aabbccddee" // 15 bytes
	const good = `http://127.0.0.1:9 {
	amocrm_auth {
		client_id 5e6f7a8b-1c2d-4e3f-9a0b-c1d2e3f4a5b6
		client_secret {env.AMOCRM_CLIENT_SECRET}
		redirect_uri https://proxy.example.com/amocrm/oauth/callback
		subdomain acme
		store badger {
			path @STORE@
			encryption_key {env.AMOBRIDGE_STORE_KEY}
		}
	}
	respond 200
}
`
	cases := []struct {
		name      string
		edit      func(string) string
		env       map[string]string // replaces the good environment's values
		adaptToo  bool              // the mistake is visible without the environment
		want      []string          // all in the error
		forbidden string            // never in the output
	}{
		{
			name: "missing client_id",
			edit: func(s string) string {
				return strings.Replace(s, "\t\tclient_id 5e6f7a8b-1c2d-4e3f-9a0b-c1d2e3f4a5b6\n", "", 1)
			},
			adaptToo: true,
			want:     []string{"amocrm_auth", "client_id"},
		},
		{
			name: "relative redirect_uri",
			edit: func(s string) string {
				return strings.Replace(s, "https://proxy.example.com/amocrm/oauth/callback", "/amocrm/oauth/callback", 1)
			},
			adaptToo: true,
			want:     []string{"amocrm_auth", "redirect_uri"},
		},
		{
			name:      "encryption key of the wrong length, literal",
			edit:      func(s string) string { return strings.Replace(s, "{env.AMOBRIDGE_STORE_KEY}", badKey, 1) },
			adaptToo:  true,
			want:      []string{"amocrm_auth", "encryption_key"},
			forbidden: badKey,
		},
		{
			name:      "encryption key of the wrong length, from the environment",
			env:       map[string]string{"AMOBRIDGE_STORE_KEY": badKey},
			want:      []string{"amocrm_auth", "encryption_key"},
			forbidden: badKey,
		},
		{
			name: "client_secret from an unset variable",
			env:  map[string]string{"AMOCRM_CLIENT_SECRET": ""},
			want: []string{"amocrm_auth", "client_secret"},
		},
		{
			name: "unknown option",
			edit: func(s string) string {
				return strings.Replace(s, "\t\tsubdomain acme\n", "\t\tsubdomain acme\n\t\tfrobnicate yes\n", 1)
			},
			adaptToo: true,
			want:     []string{"amocrm_auth", "frobnicate"},
		},
	}
	t.Run("control: the good config validates", func(t *testing.T) {
		dir := testDir(t)
		env := caddyEnv(dir, map[string]string{"AMOCRM_CLIENT_SECRET": "cs-" + randomHex(t, 16), "AMOBRIDGE_STORE_KEY": randomHex(t, 32)})
		path := filepath.Join(dir, "Caddyfile")
		if err := os.WriteFile(path, []byte(strings.ReplaceAll(good, "@STORE@", filepath.Join(dir, "store"))), 0o600); err != nil {
			t.Fatal(err)
		}
		if out, err := runCaddy(dir, env, "validate", "--adapter", "caddyfile", "--config", path); err != nil {
			t.Fatalf("caddy validate: %v\n%s", err, tail(out, 10))
		}
	})
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := testDir(t)
			secret := "cs-" + randomHex(t, 16)
			vars := map[string]string{"AMOCRM_CLIENT_SECRET": secret, "AMOBRIDGE_STORE_KEY": randomHex(t, 32)}
			for k, v := range tc.env {
				vars[k] = v
			}
			env := caddyEnv(dir, vars)
			text := strings.ReplaceAll(good, "@STORE@", filepath.Join(dir, "store"))
			if tc.edit != nil {
				if text2 := tc.edit(text); text2 != text {
					text = text2
				} else {
					t.Fatal("the edit changed nothing")
				}
			}
			path := filepath.Join(dir, "Caddyfile")
			if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
				t.Fatal(err)
			}
			cmds := [][]string{{"validate"}}
			if tc.adaptToo {
				cmds = append(cmds, []string{"adapt"})
			}
			for _, c := range cmds {
				out, err := runCaddy(dir, env, append(c, "--adapter", "caddyfile", "--config", path)...)
				if err == nil {
					t.Errorf("caddy %s accepted the config:\n%s", c[0], tail(out, 10))
					continue
				}
				msg := errorLine(out)
				for _, w := range tc.want {
					if !strings.Contains(msg, w) {
						t.Errorf("caddy %s: the error does not name %q:\n%s", c[0], w, msg)
					}
				}
				for _, s := range []string{secret, tc.forbidden} {
					if s != "" && strings.Contains(out, s) {
						t.Errorf("caddy %s printed a secret value:\n%s", c[0], out)
					}
				}
			}
			if _, err := os.Stat(filepath.Join(dir, "store")); err == nil {
				t.Errorf("a failed validation created the store directory")
			}
		})
	}
}

// errorLine returns the last error Caddy logged (the reason it exited).
func errorLine(out string) string {
	lines := strings.Split(strings.TrimSpace(out), "\n")
	for i := len(lines) - 1; i >= 0; i-- {
		if strings.Contains(lines[i], `"level":"error"`) || strings.HasPrefix(lines[i], "Error:") {
			return lines[i]
		}
	}
	return tail(out, 5)
}
