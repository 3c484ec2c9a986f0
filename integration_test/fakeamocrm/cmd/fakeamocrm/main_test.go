package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/amobridge/amobridge/integration_test/fakeamocrm"
)

func TestRunServesAndStops(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	pr, pw := io.Pipe()
	var stderr bytes.Buffer
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{
			"-listen", "127.0.0.1:0", "-client-id", "cid", "-client-secret", "csecret",
			"-redirect-uri", "http://127.0.0.1:1/cb", "-users", "acme:user@example.com:KEY:42, other:b@example.com:K2",
		}, pw, &stderr)
		pw.Close()
	}()
	line, err := bufio.NewReader(pr).ReadString('\n')
	if err != nil {
		t.Fatalf("no ready line: %v (stderr %q)", err, stderr.String())
	}
	base, ok := strings.CutPrefix(strings.TrimSpace(line), "fakeamocrm listening on ")
	if !ok || !strings.HasPrefix(base, "http://127.0.0.1:") {
		t.Fatalf("ready line %q", line)
	}
	go io.Copy(io.Discard, pr)

	body := `{"login":"user@example.com","api_key":"KEY","client_uuid":"cid","client_secret":"csecret"}`
	resp, err := http.Post(base+"/_acct/acme/oauth2/exchange_api_key", "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("exchange: %d", resp.StatusCode)
	}
	resp, err = http.Get(base + "/_fake/stats")
	if err != nil {
		t.Fatal(err)
	}
	var st fakeamocrm.Stats
	err = json.NewDecoder(resp.Body).Decode(&st)
	resp.Body.Close()
	if err != nil || st.Exchanges != 1 {
		t.Fatalf("stats %+v %v", st, err)
	}

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("run: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("run did not stop")
	}
}

func TestFlagErrors(t *testing.T) {
	t.Setenv("FAKEAMOCRM_CLIENT_SECRET", "")
	t.Setenv("FAKEAMOCRM_USERS", "")
	ok := []string{"-client-id", "c", "-client-secret", "s", "-redirect-uri", "http://x/cb", "-users", "a:l:k"}
	cases := map[string][]string{
		"all interfaces": append([]string{"-listen", "0.0.0.0:0"}, ok...),
		"empty host":     append([]string{"-listen", ":8080"}, ok...),
		"localhost name": append([]string{"-listen", "localhost:0"}, ok...),
		"no client id":   {"-client-secret", "s", "-redirect-uri", "u", "-users", "a:l:k"},
		"no secret":      {"-client-id", "c", "-redirect-uri", "u", "-users", "a:l:k"},
		"no redirect":    {"-client-id", "c", "-client-secret", "s", "-users", "a:l:k"},
		"no users":       {"-client-id", "c", "-client-secret", "s", "-redirect-uri", "u"},
		"bad user":       append(append([]string(nil), ok...), "-users", "a:l"),
		"bad user id":    append(append([]string(nil), ok...), "-users", "a:l:k:x"),
		"stray argument": append(append([]string(nil), ok...), "extra"),
		"missing file":   append(append([]string(nil), ok...), "-users-file", "/nonexistent/users.json"),
	}
	for name, args := range cases {
		if err := run(context.Background(), args, io.Discard, io.Discard); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}

func TestUsersFromEnvAndFile(t *testing.T) {
	t.Setenv("FAKEAMOCRM_CLIENT_SECRET", "s")
	t.Setenv("FAKEAMOCRM_USERS", "acme:u@example.com:KEY")
	file := filepath.Join(t.TempDir(), "users.json")
	if err := os.WriteFile(file, []byte(`[{"account":"other","login":"b@example.com","api_key":"K2","user_id":9}]`), 0o600); err != nil {
		t.Fatal(err)
	}
	o, listen, _, err := parseFlags([]string{"-client-id", "c", "-redirect-uri", "u", "-users-file", file}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if listen != "127.0.0.1:0" || o.ClientSecret != "s" || len(o.Users) != 2 ||
		o.Users[0] != (fakeamocrm.User{Account: "acme", Login: "u@example.com", APIKey: "KEY"}) ||
		o.Users[1] != (fakeamocrm.User{Account: "other", Login: "b@example.com", APIKey: "K2", UserID: 9}) {
		t.Errorf("options %+v", o)
	}
}

func TestZeroDurationsMeanNone(t *testing.T) {
	o, _, _, err := parseFlags([]string{"-client-id", "c", "-client-secret", "s", "-redirect-uri", "u", "-users", "a:l:k",
		"-callback-delay", "0", "-exchange-interval", "0"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if o.CallbackDelay >= 0 || o.ExchangeInterval >= 0 {
		t.Errorf("zero flags passed as defaults: %+v", o)
	}
}

func TestParseUsersErrorHidesKey(t *testing.T) {
	_, err := parseUsers("acme:u@example.com:SECRETKEY:notanumber")
	if err == nil || strings.Contains(err.Error(), "SECRETKEY") {
		t.Errorf("err %v", err)
	}
}
