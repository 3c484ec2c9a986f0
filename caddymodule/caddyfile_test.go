package caddymodule

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
)

func parse(t *testing.T, input string) (*Handler, error) {
	t.Helper()
	h := new(Handler)
	err := h.UnmarshalCaddyfile(caddyfile.NewTestDispenser(input))
	return h, err
}

func TestCaddyfileFull(t *testing.T) {
	h, err := parse(t, `amocrm_auth {
		client_id     {env.AMOCRM_CLIENT_ID}
		client_secret {env.AMOCRM_CLIENT_SECRET}
		redirect_uri  https://proxy.example.com/amocrm/oauth/callback
		subdomain     {http.request.host.labels.2}
		account_domain kommo.com
		api_base http://127.0.0.1:9/_acct/{subdomain}
		callback_path /cb
		store badger {
			path /var/lib/amobridge
			encryption_key {env.KEY}
			cache_size 50000
			cache_memory 2GiB
			table_memory 512MiB
		}
		exchange_timeout 30s
		refresh_ahead 5m
		exchange_interval 6m
		keep_alive 20d
		session_ttl 20m
		keeper_interval 2s
		rate_limit 5
		max_body 1MiB
	}`)
	if err != nil {
		t.Fatal(err)
	}
	if h.ClientID != "{env.AMOCRM_CLIENT_ID}" || h.ClientSecret != "{env.AMOCRM_CLIENT_SECRET}" {
		t.Errorf("secrets must stay placeholders in the config: %q %q", h.ClientID, h.ClientSecret)
	}
	if h.Subdomain != "{http.request.host.labels.2}" || h.AccountDomain != "kommo.com" || h.CallbackPath != "/cb" {
		t.Errorf("got %+v", h)
	}
	if h.Store == nil || h.Store.Path != "/var/lib/amobridge" || h.Store.EncryptionKey != "{env.KEY}" ||
		h.Store.CacheSize != 50000 || h.Store.CacheMemory != 2<<30 || h.Store.TableMemory != 512<<20 {
		t.Errorf("store: %+v", h.Store)
	}
	if time.Duration(h.ExchangeTimeout) != 30*time.Second || time.Duration(h.KeepAlive) != 20*24*time.Hour ||
		time.Duration(h.ExchangeInterval) != 6*time.Minute || time.Duration(h.SessionTTL) != 20*time.Minute ||
		time.Duration(h.RefreshAhead) != 5*time.Minute || time.Duration(h.KeeperInterval) != 2*time.Second {
		t.Errorf("durations: %+v", h)
	}
	if h.RateLimit == nil || *h.RateLimit != 5 || h.MaxBody != 1<<20 {
		t.Errorf("rate_limit/max_body: %v %d", h.RateLimit, h.MaxBody)
	}
}

// minimalCaddyfile is an amocrm_auth block with only the required options,
// and extra inside it.
func minimalCaddyfile(extra string) string {
	return "amocrm_auth {\n\tclient_id id\n\tclient_secret s\n\tredirect_uri https://p.example.com/cb\n\tsubdomain acme\n" +
		extra + "\n}"
}

func TestCaddyfileRateLimitZeroIsOff(t *testing.T) {
	h, err := parse(t, minimalCaddyfile("rate_limit 0"))
	if err != nil {
		t.Fatal(err)
	}
	if h.RateLimit == nil || *h.RateLimit != 0 {
		t.Fatalf("rate_limit 0 must be kept as 0 (off), got %v", h.RateLimit)
	}
}

func TestCaddyfileErrorsNameTheOption(t *testing.T) {
	base := map[string]string{
		"client_id":     "client_id id",
		"client_secret": "client_secret s",
		"redirect_uri":  "redirect_uri https://p.example.com/cb",
		"subdomain":     "subdomain acme",
	}
	build := func(drop string, extra ...string) string {
		var b strings.Builder
		b.WriteString("amocrm_auth {\n")
		for _, k := range []string{"client_id", "client_secret", "redirect_uri", "subdomain"} {
			if k != drop {
				b.WriteString(base[k] + "\n")
			}
		}
		for _, e := range extra {
			b.WriteString(e + "\n")
		}
		b.WriteString("}")
		return b.String()
	}
	cases := []struct {
		name, input, want string
	}{
		{"missing client_id", build("client_id"), "client_id"},
		{"missing client_secret", build("client_secret"), "client_secret"},
		{"missing redirect_uri", build("redirect_uri"), "redirect_uri"},
		{"missing subdomain", build("subdomain"), "subdomain"},
		{"relative redirect_uri", build("redirect_uri", "redirect_uri /amocrm/oauth/callback"), "redirect_uri"},
		{"bad subdomain", build("subdomain", "subdomain ACME!"), "subdomain"},
		{"bad account_domain", build("", "account_domain example.com"), "account_domain"},
		{"bad api_base", build("", "api_base ftp://x"), "api_base"},
		{"unknown option", build("", "frobnicate yes"), "frobnicate"},
		{"bad duration", build("", "exchange_timeout soon"), "exchange_timeout"},
		{"negative rate", build("", "rate_limit -1"), "rate_limit"},
		{"bad max_body", build("", "max_body lots"), "max_body"},
		{"two values", build("", "session_ttl 1m 2m"), "session_ttl"},
		{"short key", build("", "store badger {\nencryption_key 00112233\n}"), "encryption_key"},
		{"unknown store", build("", "store redis"), "store"},
		{"unknown store option", build("", "store badger {\nsize 10\n}"), "size"},
		{"bad table_memory", build("", "store badger {\ntable_memory lots\n}"), "table_memory"},
		{"tiny table_memory", build("", "store badger {\ntable_memory 4KiB\n}"), "table_memory"},
		{"callback_path relative", build("", "callback_path cb"), "callback_path"},
		{"argument on line", "amocrm_auth foo {\n}", "arguments"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := parse(t, c.input)
			if err == nil {
				t.Fatalf("no error for:\n%s", c.input)
			}
			if !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %q does not name %q", err, c.want)
			}
		})
	}
}

func TestCaddyfileValidKeyAccepted(t *testing.T) {
	_, err := parse(t, `amocrm_auth {
		client_id id
		client_secret s
		redirect_uri https://p.example.com/cb
		subdomain acme
		store badger {
			encryption_key 000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f
		}
	}`)
	if err != nil {
		t.Fatal(err)
	}
}

func TestCaddyfileStoreRedis(t *testing.T) {
	const head = "amocrm_auth {\n\tclient_id id\n\tclient_secret s\n\tredirect_uri https://p.example.com/cb\n\tsubdomain acme\n"
	h, err := parse(t, head+"\tstore redis {\n\t\taddress 127.0.0.1:6379\n\t}\n}")
	if err != nil {
		t.Fatal(err)
	}
	if h.Store == nil || h.Store.Type != "redis" || len(h.Store.Addresses) != 1 {
		t.Fatalf("minimal redis store: %+v", h.Store)
	}
	h, err = parse(t, head+`	store redis {
		address 10.0.0.1:26379
		address 10.0.0.2:26379
		master_name mymaster
		username amo
		password {env.REDIS_PASSWORD}
		db 2
		tls
		key_prefix integration-a:
		encryption_key {env.AMOBRIDGE_STORE_KEY}
	}
}`)
	if err != nil {
		t.Fatal(err)
	}
	if sc := h.Store; len(sc.Addresses) != 2 || sc.MasterName != "mymaster" || sc.DB != 2 || !sc.TLS || sc.KeyPrefix != "integration-a:" || sc.Password != "{env.REDIS_PASSWORD}" {
		t.Fatalf("full redis store: %+v", sc)
	}
	for _, c := range []struct{ block, want string }{
		{"\tstore redis {\n\t}\n", "address is required"},
		{"\tstore redis {\n\t\taddress nope\n\t}\n", "not HOST:PORT"},
		{"\tstore redis {\n\t\taddress 127.0.0.1:6379\n\t\tpath /x\n\t}\n", "no path"},
		{"\tstore badger {\n\t\taddress 127.0.0.1:6379\n\t}\n", "redis's"},
		{"\tstore redis {\n\t\taddress 127.0.0.1:6379\n\t\tdb -1\n\t}\n", "db"},
		{"\tstore redis {\n\t\taddress 127.0.0.1:6379\n\t\tencryption_key short\n\t}\n", "encryption_key"},
		{"\tstore memcached\n", "unknown"},
		{"\tstore redis {\n\t\taddress 127.0.0.1:6379\n\t\ttable_memory 1GiB\n\t}\n", "table_memory"},
		{"\tstore redis {\n\t\taddress 127.0.0.1:6379\n\t\tcache_memory 1GiB\n\t}\n", "cache_memory"},
		{"\tstore badger {\n\t\tcache_memory 1KiB\n\t}\n", "cache_memory"},
		{"\tstore badger {\n\t\tcache_memory lots\n\t}\n", "cache_memory"},
	} {
		if _, err := parse(t, head+c.block+"}"); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q: error %v; want one naming %q", c.block, err, c.want)
		}
	}
}

func TestCaddyfileTableMemoryOff(t *testing.T) {
	h, err := parse(t, minimalCaddyfile("store {\n\ttable_memory off\n\tcache_memory off\n}"))
	if err != nil {
		t.Fatal(err)
	}
	if h.Store == nil || h.Store.TableMemory != -1 || h.Store.CacheMemory != -1 {
		t.Fatalf("table_memory off, cache_memory off: store %+v, want TableMemory and CacheMemory -1", h.Store)
	}
}

// TestStoreSpecCarriesBadgerMemoryOptions: cache_size and table_memory reach
// the Badger store's options as configured.
func TestStoreSpecCarriesBadgerMemoryOptions(t *testing.T) {
	ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
	defer cancel()
	for _, c := range []struct{ table, want int64 }{{0, 0}, {512 << 20, 512 << 20}} {
		h := &Handler{Store: &StoreConfig{Path: t.TempDir(), CacheSize: 7, CacheMemory: 64 << 20, TableMemory: c.table}}
		spec, err := h.storeSpec(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if spec.kind != "badger" || spec.badger.CacheSize != 7 || spec.badger.CacheMemory != 64<<20 || spec.badger.TableMemory != c.want {
			t.Errorf("table_memory %d: store options %+v, want CacheSize 7, TableMemory %d", c.table, spec.badger, c.want)
		}
	}
	if err := validateStore(&StoreConfig{TableMemory: -2}); err == nil || !strings.Contains(err.Error(), "table_memory") {
		t.Errorf("table_memory -2: %v, want an error naming table_memory", err)
	}
	if err := validateStore(&StoreConfig{CacheMemory: -2}); err == nil || !strings.Contains(err.Error(), "cache_memory") {
		t.Errorf("cache_memory -2: %v, want an error naming cache_memory", err)
	}
}
