// Command show prints, for the demo, what the fake amoCRM received: the API
// requests it recorded (method, path, query, Authorization, legacy credentials
// found) and its counters of exchanges and token grants. It reads the fake's
// /_fake/requests and /_fake/stats endpoints, which mask token and key values.
//
// Usage:
//
//	show -fake http://127.0.0.1:PORT requests [-last N]
//	show -fake http://127.0.0.1:PORT stats
package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"
)

func main() {
	if err := run(os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "show:", err)
		os.Exit(1)
	}
}

func run(args []string, w io.Writer) error {
	fs := flag.NewFlagSet("show", flag.ContinueOnError)
	fake := fs.String("fake", "", "the fake amoCRM's base URL (http://127.0.0.1:PORT)")
	last := fs.Int("last", 1, "requests: how many of the most recent API requests to show")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *fake == "" || fs.NArg() != 1 {
		return errors.New("usage: show -fake URL requests|stats")
	}
	base := strings.TrimRight(*fake, "/")
	switch fs.Arg(0) {
	case "requests":
		var reqs []request
		if err := getJSON(base+"/_fake/requests", &reqs); err != nil {
			return err
		}
		printRequests(w, reqs, *last)
	case "stats":
		var st map[string]any
		if err := getJSON(base+"/_fake/stats", &st); err != nil {
			return err
		}
		printStats(w, st)
	default:
		return fmt.Errorf("unknown view %q: want requests or stats", fs.Arg(0))
	}
	return nil
}

// request is the part of a /_fake/requests entry the demo shows.
type request struct {
	Method   string              `json:"method"`
	Host     string              `json:"host"`
	Path     string              `json:"path"`
	RawQuery string              `json:"raw_query"`
	Header   map[string][]string `json:"header"`
	Status   int                 `json:"status"`
	Login    string              `json:"login"`
}

var legacyNames = []string{"USER_LOGIN", "USER_HASH", "api_key", "login"}

func printRequests(w io.Writer, reqs []request, last int) {
	var api []request
	for _, r := range reqs {
		if strings.HasPrefix(r.Path, "/api/") || strings.HasPrefix(r.Path, "/private/") {
			api = append(api, r)
		}
	}
	if len(api) == 0 {
		fmt.Fprintln(w, "  (amoCRM received no API request)")
		return
	}
	if last > 0 && len(api) > last {
		api = api[len(api)-last:]
	}
	for _, r := range api {
		target := r.Path
		if r.RawQuery != "" {
			target += "?" + r.RawQuery
		}
		fmt.Fprintf(w, "  %s %s\n", r.Method, target)
		fmt.Fprintf(w, "  Host: %s\n", r.Host)
		auth := strings.Join(r.Header["Authorization"], ", ")
		if auth == "" {
			auth = "(none)"
		}
		fmt.Fprintf(w, "  Authorization: %s   (token shortened by the fake)\n", auth)
		q, _ := url.ParseQuery(r.RawQuery)
		var found []string
		for _, n := range legacyNames {
			if q.Has(n) {
				found = append(found, n)
			}
		}
		if len(r.Header["Cookie"]) > 0 {
			found = append(found, "Cookie: "+strings.Join(r.Header["Cookie"], "; "))
		}
		if len(found) == 0 {
			fmt.Fprintln(w, "  legacy credentials: none (no USER_LOGIN, USER_HASH, api_key, session cookie)")
		} else {
			fmt.Fprintf(w, "  legacy credentials: FOUND %s\n", strings.Join(found, ", "))
		}
		fmt.Fprintf(w, "  answered %d to %s\n", r.Status, r.Login)
	}
}

func printStats(w io.Writer, st map[string]any) {
	keys := []string{"ExchangeCalls", "Exchanges", "CodeGrants", "Refreshes", "APIRequests", "CallbacksDelivered", "Violations"}
	var parts []string
	for _, k := range keys {
		if v, ok := st[k]; ok {
			parts = append(parts, fmt.Sprintf("%s=%v", k, v))
		}
	}
	fmt.Fprintf(w, "  %s\n", strings.Join(parts, "  "))
}

func getJSON(u string, v any) error {
	c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{Proxy: nil}}
	resp, err := c.Get(u)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", u, resp.Status)
	}
	return json.NewDecoder(resp.Body).Decode(v)
}
