package caddymodule

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	caddycmd "github.com/caddyserver/caddy/v2/cmd"
	"github.com/spf13/cobra"

	"github.com/amobridge/amobridge/tokenstore"
)

// Exit codes of `caddy amocrm`.
const (
	exitOK      = 0
	exitError   = 1 // the command could not do its work (admin API unreachable, bad input)
	exitPartial = 2 // migrate: some users were not exchanged
)

func init() {
	caddycmd.RegisterCommand(caddycmd.Command{
		Name:  "amocrm",
		Usage: "tokens|revoke|migrate [--address <admin>] ...",
		Short: "Operates amobridge's token store through Caddy's admin API",
		Long: `
Operates the amocrm_auth token store of a running Caddy through its admin API
(--address, default: the admin address of --config, else localhost:2019).

  caddy amocrm tokens [--account acme]          lists stored tokens (never a secret)
  caddy amocrm revoke --account acme --login L  revokes one user's token
  caddy amocrm migrate --file users.csv         exchanges many users' keys for tokens
  caddy amocrm rotate-key --store DIR           re-encrypts a stopped store under a new key
                                                (keys from $AMOBRIDGE_OLD_STORE_KEY and
                                                $AMOBRIDGE_STORE_KEY, hex or base64)
  caddy amocrm copy-store --from badger:DIR --to redis:HOST:PORT [--prefix P] [--db N]
                                                copies a stopped Badger store's token pairs and
                                                sessions into Redis, for cluster mode; no
                                                exchange (key from $AMOBRIDGE_STORE_KEY for both,
                                                Redis password from $AMOBRIDGE_REDIS_PASSWORD)

The migrate file is CSV (account,login,api_key; an optional header line) or a
JSON array of {"account","login","api_key"}. Keys are used once and never
stored. Exit codes: 0 all done, 1 error, 2 some users not exchanged.`,
		CobraFunc: func(cmd *cobra.Command) {
			cmd.PersistentFlags().String("address", "", "the admin API address")
			cmd.PersistentFlags().String("config", "", "a config file whose admin address to use")
			cmd.PersistentFlags().String("adapter", "", "the config file's adapter")

			tokens := &cobra.Command{Use: "tokens", Short: "List stored tokens", Args: cobra.NoArgs,
				RunE: runExit(cmdTokens)}
			tokens.Flags().String("account", "", "only this account")
			tokens.Flags().Bool("json", false, "print JSON")

			revoke := &cobra.Command{Use: "revoke", Short: "Revoke one user's token", Args: cobra.NoArgs,
				RunE: runExit(cmdRevoke)}
			revoke.Flags().String("account", "", "the account (subdomain)")
			revoke.Flags().String("login", "", "the user's login")

			migrate := &cobra.Command{Use: "migrate", Short: "Exchange many users' keys for tokens", Args: cobra.NoArgs,
				RunE: runExit(cmdMigrate)}
			migrate.Flags().String("file", "", "CSV or JSON list of account,login,api_key")
			migrate.Flags().Duration("poll", time.Second, "how often to print progress")
			migrate.Flags().String("store", "", "the store path, when several are open")

			rotate := &cobra.Command{Use: "rotate-key", Short: "Re-encrypt a stopped store under a new key", Args: cobra.NoArgs,
				RunE: runExit(cmdRotateKey)}
			rotate.Flags().String("store", "", "the store directory (Caddy must be stopped)")
			rotate.Flags().String("old-key-env", "AMOBRIDGE_OLD_STORE_KEY", "environment variable holding the current key")
			rotate.Flags().String("new-key-env", "AMOBRIDGE_STORE_KEY", "environment variable holding the new key")

			copyStore := &cobra.Command{Use: "copy-store", Short: "Copy a stopped Badger store into Redis (cluster mode)", Args: cobra.NoArgs,
				RunE: runExit(cmdCopyStore)}
			copyStore.Flags().String("from", "", "badger:DIR, the store to copy (Caddy must be stopped)")
			copyStore.Flags().String("to", "", "redis:HOST:PORT, where the cluster keeps its tokens")
			copyStore.Flags().String("prefix", defaultKeyPrefix, "the Redis key prefix (key_prefix)")
			copyStore.Flags().Int("db", 0, "the Redis database (db)")
			copyStore.Flags().String("username", "", "the Redis user, if any")
			copyStore.Flags().String("key-env", "AMOBRIDGE_STORE_KEY", "environment variable holding the encryption key (both stores)")
			copyStore.Flags().String("password-env", "AMOBRIDGE_REDIS_PASSWORD", "environment variable holding the Redis password")

			cmd.AddCommand(tokens, revoke, migrate, rotate, copyStore)
		},
	})
}

// exitErr carries an exit code through cobra.
type exitErr struct {
	code int
	err  error
}

func (e exitErr) Error() string { return e.err.Error() }

func runExit(f func(*cobra.Command) (int, error)) func(*cobra.Command, []string) error {
	return func(c *cobra.Command, _ []string) error {
		code, err := f(c)
		if err != nil {
			fmt.Fprintln(os.Stderr, "caddy amocrm:", err)
		}
		if code != exitOK {
			os.Exit(code)
		}
		return nil
	}
}

func adminAddress(c *cobra.Command) (string, error) {
	addr, _ := c.Flags().GetString("address")
	cfg, _ := c.Flags().GetString("config")
	adapter, _ := c.Flags().GetString("adapter")
	return caddycmd.DetermineAdminAPIAddress(addr, nil, cfg, adapter)
}

// adminCall makes an admin API request and decodes a JSON answer into out.
func adminCall(c *cobra.Command, method, uri string, header http.Header, body io.Reader, out any) error {
	addr, err := adminAddress(c)
	if err != nil {
		return err
	}
	resp, err := caddycmd.AdminAPIRequest(addr, method, uri, header, body)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return fmt.Errorf("reading admin answer: %w", err)
	}
	if resp.StatusCode >= 300 {
		var apiErr struct {
			Error string `json:"error"`
		}
		if json.Unmarshal(data, &apiErr) == nil && apiErr.Error != "" {
			return fmt.Errorf("admin API: %s (HTTP %d)", apiErr.Error, resp.StatusCode)
		}
		return fmt.Errorf("admin API answered HTTP %d", resp.StatusCode)
	}
	if out != nil {
		if err := json.Unmarshal(data, out); err != nil {
			return fmt.Errorf("admin API answered something that is not JSON: %w", err)
		}
	}
	return nil
}

func cmdTokens(c *cobra.Command) (int, error) {
	account, _ := c.Flags().GetString("account")
	asJSON, _ := c.Flags().GetBool("json")
	uri := "/amocrm/tokens"
	if account != "" {
		uri += "?account=" + url.QueryEscape(account)
	}
	var list []TokenInfo
	if err := adminCall(c, http.MethodGet, uri, nil, nil, &list); err != nil {
		return exitError, err
	}
	if asJSON {
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		return exitOK, enc.Encode(list)
	}
	tw := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ACCOUNT\tLOGIN\tACCESS EXPIRES\tREFRESH AGE\tLAST USED")
	for _, t := range list {
		last := "-"
		if t.LastUsed != nil {
			last = t.LastUsed.Format(time.RFC3339)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", t.Account, t.Login, t.AccessExpiry.Format(time.RFC3339), t.RefreshAge, last)
	}
	fmt.Fprintf(tw, "%d token(s)\n", len(list))
	return exitOK, tw.Flush()
}

func cmdRevoke(c *cobra.Command) (int, error) {
	account, _ := c.Flags().GetString("account")
	login, _ := c.Flags().GetString("login")
	if account == "" || login == "" {
		return exitError, errors.New("--account and --login are required")
	}
	q := url.Values{"account": {account}, "login": {login}}
	if err := adminCall(c, http.MethodDelete, "/amocrm/tokens?"+q.Encode(), nil, nil, nil); err != nil {
		return exitError, err
	}
	fmt.Printf("revoked the token of %s in %s\n", login, account)
	return exitOK, nil
}

func cmdMigrate(c *cobra.Command) (int, error) {
	file, _ := c.Flags().GetString("file")
	poll, _ := c.Flags().GetDuration("poll")
	store, _ := c.Flags().GetString("store")
	if file == "" {
		return exitError, errors.New("--file is required")
	}
	data, err := os.ReadFile(file)
	if err != nil {
		return exitError, err
	}
	ct := "text/csv"
	if strings.EqualFold(filepath.Ext(file), ".json") {
		ct = "application/json"
	}
	uri := "/amocrm/migrations"
	if store != "" {
		uri += "?store=" + url.QueryEscape(store)
	}
	var st MigrationStatus
	if err := adminCall(c, http.MethodPost, uri, http.Header{"Content-Type": {ct}}, strings.NewReader(string(data)), &st); err != nil {
		return exitError, err
	}
	fmt.Printf("migration %s: %d user(s)\n", st.ID, st.Total)
	if poll <= 0 {
		poll = time.Second
	}
	for st.Finished == nil {
		time.Sleep(poll)
		id := st.ID
		st = MigrationStatus{} // decoding into a used value would merge its maps
		if err := adminCall(c, http.MethodGet, "/amocrm/migrations/"+id, nil, nil, &st); err != nil {
			return exitError, err
		}
		fmt.Printf("%d/%d done %s\n", st.Done, st.Total, countsLine(st.Counts))
	}
	failed := 0
	for _, r := range st.Results {
		if r.Status != "ok" {
			failed++
			extra := ""
			if r.RetryAfter != "" {
				extra = " (retry after " + r.RetryAfter + ")"
			}
			fmt.Printf("  %s %s: %s: %s%s\n", r.Account, r.Login, r.Status, r.Detail, extra)
		}
	}
	fmt.Printf("finished: %d ok, %d not exchanged\n", st.Total-failed, failed)
	if failed > 0 {
		return exitPartial, nil
	}
	return exitOK, nil
}

func countsLine(m map[string]int) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, 0, len(keys))
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%s=%d", k, m[k]))
	}
	return strings.Join(parts, " ")
}

func cmdRotateKey(c *cobra.Command) (int, error) {
	dir, _ := c.Flags().GetString("store")
	oldEnv, _ := c.Flags().GetString("old-key-env")
	newEnv, _ := c.Flags().GetString("new-key-env")
	if dir == "" {
		return exitError, errors.New("--store is required")
	}
	oldKey, err := tokenstore.ParseEncryptionKey(os.Getenv(oldEnv))
	if err != nil {
		return exitError, fmt.Errorf("old key ($%s): %w", oldEnv, err)
	}
	newKey, err := tokenstore.ParseEncryptionKey(os.Getenv(newEnv))
	if err != nil {
		return exitError, fmt.Errorf("new key ($%s): %w", newEnv, err)
	}
	if err := tokenstore.RotateKey(dir, oldKey, newKey); err != nil {
		return exitError, err
	}
	fmt.Printf("store %s is now encrypted with the key in $%s; configure encryption_key with it and start Caddy\n", dir, newEnv)
	return exitOK, nil
}

func cmdCopyStore(c *cobra.Command) (int, error) {
	from, _ := c.Flags().GetString("from")
	to, _ := c.Flags().GetString("to")
	prefix, _ := c.Flags().GetString("prefix")
	db, _ := c.Flags().GetInt("db")
	user, _ := c.Flags().GetString("username")
	keyEnv, _ := c.Flags().GetString("key-env")
	pwEnv, _ := c.Flags().GetString("password-env")
	dir, ok := strings.CutPrefix(from, "badger:")
	if !ok || dir == "" {
		return exitError, errors.New("--from must be badger:DIR")
	}
	addr, ok := strings.CutPrefix(to, "redis:")
	if !ok || addr == "" {
		return exitError, errors.New("--to must be redis:HOST:PORT")
	}
	var key []byte
	if v := os.Getenv(keyEnv); v != "" {
		k, err := tokenstore.ParseEncryptionKey(v)
		if err != nil {
			return exitError, fmt.Errorf("encryption key ($%s): %w", keyEnv, err)
		}
		key = k
	}
	src, err := tokenstore.Open(tokenstore.Options{Path: dir, EncryptionKey: key})
	if err != nil {
		return exitError, fmt.Errorf("opening %s (is Caddy stopped?): %w", dir, err)
	}
	defer src.Close()
	dst, err := tokenstore.OpenRedis(tokenstore.RedisOptions{Addresses: []string{addr}, DB: db, Username: user,
		Password: os.Getenv(pwEnv), KeyPrefix: prefix, EncryptionKey: key})
	if err != nil {
		return exitError, fmt.Errorf("connecting to Redis at %s: %w", addr, err)
	}
	defer dst.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	n, err := tokenstore.Copy(ctx, dst, src)
	fmt.Printf("copied %d token pairs and %d sessions from %s to Redis %s (prefix %q)\n", n.Tokens, n.Sessions, dir, addr, prefix)
	if err != nil {
		return exitError, err
	}
	return exitOK, nil
}
