// Command fakeamocrm runs the strict fake amoCRM of package fakeamocrm as a
// separate process, for the demo and for tests that need one. It listens only
// on 127.0.0.1 and prints one line, "fakeamocrm listening on http://127.0.0.1:PORT",
// on stdout when it is ready. The fake's own endpoints (stats, recorded requests,
// violations, knobs) are under /_fake/.
//
// Usage:
//
//	fakeamocrm -client-id ID -client-secret SECRET -redirect-uri URL \
//	    -users 'acme:user@example.com:KEY[:USERID],...' [-listen 127.0.0.1:PORT]
//
// The secret and the users may also come from FAKEAMOCRM_CLIENT_SECRET and
// FAKEAMOCRM_USERS, or the users from a JSON file (-users-file).
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/amobridge/amobridge/integration_test/fakeamocrm"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(2)
		}
		fmt.Fprintln(os.Stderr, "fakeamocrm:", err)
		os.Exit(1)
	}
}

// run serves until ctx is done.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	o, listen, verbose, err := parseFlags(args, stderr)
	if err != nil {
		return err
	}
	if err := checkListen(listen); err != nil {
		return err
	}
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return fmt.Errorf("listening on %s: %w", listen, err)
	}
	fake := fakeamocrm.New(o)
	defer fake.Close()

	var h http.Handler = fake
	if verbose {
		h = logRequests(h, log.New(stderr, "fakeamocrm: ", log.LstdFlags))
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	fmt.Fprintf(stdout, "fakeamocrm listening on http://%s\n", ln.Addr())

	select {
	case err := <-errc:
		return fmt.Errorf("serving: %w", err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		return fmt.Errorf("shutting down: %w", err)
	}
	return nil
}

func parseFlags(args []string, stderr io.Writer) (o fakeamocrm.Options, listen string, verbose bool, err error) {
	fs := flag.NewFlagSet("fakeamocrm", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&listen, "listen", "127.0.0.1:0", "address to listen on; the host must be 127.0.0.1 (port 0: any free port)")
	fs.StringVar(&o.ClientID, "client-id", "", "the integration's id (required)")
	fs.StringVar(&o.ClientSecret, "client-secret", "", "the integration's secret (required; or FAKEAMOCRM_CLIENT_SECRET)")
	fs.StringVar(&o.RedirectURI, "redirect-uri", "", "the integration's Redirect URI, exactly as the proxy sends it (required)")
	users := fs.String("users", "", "users as account:login:api_key[:user_id], comma-separated (or FAKEAMOCRM_USERS)")
	usersFile := fs.String("users-file", "", `JSON file: [{"account":"acme","login":"u@example.com","api_key":"...","user_id":1}]`)
	fs.StringVar(&o.DefaultAccount, "default-account", "", "account of requests that name none (default: the only account)")
	fs.StringVar(&o.BaseDomain, "base-domain", "", "account domain (default amocrm.ru)")
	fs.StringVar(&o.APIDomain, "api-domain", "", "the api_domain claim of access tokens (default api-b.<base-domain>)")
	fs.DurationVar(&o.AccessTTL, "access-ttl", 24*time.Hour, "access token lifetime")
	fs.DurationVar(&o.RefreshTTL, "refresh-ttl", 90*24*time.Hour, "refresh token lifetime")
	fs.DurationVar(&o.CodeTTL, "code-ttl", 20*time.Minute, "authorization code lifetime")
	fs.DurationVar(&o.ExchangeInterval, "exchange-interval", 5*time.Minute, "minimum time between two exchanges of one user (0: no limit)")
	fs.DurationVar(&o.CallbackDelay, "callback-delay", 200*time.Millisecond, "delay before the code is delivered to the Redirect URI (0: none)")
	fs.DurationVar(&o.CallbackTimeout, "callback-timeout", 3*time.Second, "how long a callback may take to answer")
	fs.IntVar(&o.RateLimit, "rate-limit", 0, "API requests per second per account before 429 (0: unlimited)")
	fs.BoolVar(&verbose, "v", false, "log every request (method, account, path, status; never the query) to stderr")
	if err = fs.Parse(args); err != nil {
		return o, "", false, err
	}
	if fs.NArg() > 0 {
		return o, "", false, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	// In Options a zero means "the default"; on the command line it means "none".
	if o.CallbackDelay == 0 {
		o.CallbackDelay = -1
	}
	if o.ExchangeInterval == 0 {
		o.ExchangeInterval = -1
	}
	if o.ClientSecret == "" {
		o.ClientSecret = os.Getenv("FAKEAMOCRM_CLIENT_SECRET")
	}
	if *users == "" {
		*users = os.Getenv("FAKEAMOCRM_USERS")
	}
	if o.Users, err = parseUsers(*users); err != nil {
		return o, "", false, err
	}
	if *usersFile != "" {
		more, err := readUsersFile(*usersFile)
		if err != nil {
			return o, "", false, err
		}
		o.Users = append(o.Users, more...)
	}
	switch {
	case o.ClientID == "":
		return o, "", false, errors.New("-client-id is required")
	case o.ClientSecret == "":
		return o, "", false, errors.New("-client-secret (or FAKEAMOCRM_CLIENT_SECRET) is required")
	case o.RedirectURI == "":
		return o, "", false, errors.New("-redirect-uri is required")
	case len(o.Users) == 0:
		return o, "", false, errors.New("no users: give -users, FAKEAMOCRM_USERS or -users-file")
	}
	return o, listen, verbose, nil
}

// parseUsers reads "account:login:api_key[:user_id],...".
func parseUsers(s string) ([]fakeamocrm.User, error) {
	var out []fakeamocrm.User
	for i, item := range strings.Split(s, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		f := strings.Split(item, ":")
		if len(f) != 3 && len(f) != 4 {
			return nil, fmt.Errorf("user #%d: want account:login:api_key[:user_id]", i+1)
		}
		u := fakeamocrm.User{Account: f[0], Login: f[1], APIKey: f[2]}
		if len(f) == 4 {
			id, err := strconv.ParseInt(f[3], 10, 64)
			if err != nil || id <= 0 {
				return nil, fmt.Errorf("user #%d: user_id must be a positive integer", i+1)
			}
			u.UserID = id
		}
		if u.Account == "" || u.Login == "" || u.APIKey == "" {
			return nil, fmt.Errorf("user #%d: account, login and api_key must not be empty", i+1)
		}
		out = append(out, u)
	}
	return out, nil
}

// readUsersFile reads a JSON list of users.
func readUsersFile(path string) ([]fakeamocrm.User, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading users file: %w", err)
	}
	var list []struct {
		Account string `json:"account"`
		Login   string `json:"login"`
		APIKey  string `json:"api_key"`
		UserID  int64  `json:"user_id"`
	}
	if err := json.Unmarshal(b, &list); err != nil {
		return nil, fmt.Errorf("users file %s: not a JSON list of users", path)
	}
	out := make([]fakeamocrm.User, 0, len(list))
	for i, u := range list {
		if u.Account == "" || u.Login == "" || u.APIKey == "" {
			return nil, fmt.Errorf("users file %s: user #%d: account, login and api_key are required", path, i+1)
		}
		out = append(out, fakeamocrm.User{Account: u.Account, Login: u.Login, APIKey: u.APIKey, UserID: u.UserID})
	}
	return out, nil
}

// checkListen accepts only 127.0.0.1 addresses.
func checkListen(addr string) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("-listen %q: %w", addr, err)
	}
	if host != "127.0.0.1" {
		return fmt.Errorf("-listen %q: the fake listens only on 127.0.0.1", addr)
	}
	return nil
}

// logRequests logs each request's method, path and status. The query is left
// out: it may carry credentials the proxy failed to strip.
func logRequests(next http.Handler, l *log.Logger) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		sw := &statusWriter{ResponseWriter: w}
		start := time.Now()
		next.ServeHTTP(sw, r)
		l.Printf("%s %s %s -> %d (%s)", r.Method, r.Host, r.URL.Path, sw.status, time.Since(start).Round(time.Millisecond))
	})
}

type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

// Hijack lets SetDown close connections through the logging wrapper.
func (w *statusWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	hj, ok := w.ResponseWriter.(http.Hijacker)
	if !ok {
		return nil, nil, errors.New("hijacking not supported")
	}
	return hj.Hijack()
}
