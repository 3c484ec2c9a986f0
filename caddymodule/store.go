package caddymodule

import (
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"github.com/caddyserver/caddy/v2"

	"github.com/amobridge/amobridge/tokenstore"
)

// StoreConfig configures the token store: Badger (the default), kept by
// one Caddy process, or Redis, shared by a cluster of Caddy instances.
type StoreConfig struct {
	// The kind of store: "badger" (default) or "redis".
	Type string `json:"type,omitempty"`

	// badger: the directory. Default: amobridge/<client_id>/ in Caddy's
	// data directory. Two Caddy processes cannot share one directory; one
	// directory belongs to one integration (the store records its
	// client_id, and refuses another).
	Path string `json:"path,omitempty"`

	// A 16, 24 or 32-byte AES key, hex or base64, that encrypts what the
	// store keeps (Badger: at rest; Redis: every value holding a token or a
	// key hash). Give it as {env.VAR}. Without it, tokens are stored
	// readable by whoever can read the directory or the Redis database, and
	// Caddy logs a warning. Every instance of a cluster gives the same key.
	EncryptionKey string `json:"encryption_key,omitempty"`

	// How many users' tokens are kept in memory ready for the hot path, the
	// users most recently asked for; a user beyond it is served from the
	// packed cache (badger: cache_memory, a few µs) or read back from the
	// store (Badger: ~15-30 µs; Redis: a round trip). Each takes ~1.45 KiB
	// of heap with amoCRM's tokens (and Go lets the heap grow to twice
	// what is live). Default: 30000.
	CacheSize int `json:"cache_size,omitempty"`

	// badger: the size in bytes of the packed cache behind cache_size's:
	// every user read or written since the start is kept there, packed
	// (~0.55 KiB with amoCRM's tokens, without the refresh token) outside
	// Go's heap, the oldest overwritten first, so that a user the token
	// cache evicted is served in a few microseconds without reading the
	// store. Memory is taken as users are written to it. -1 turns it off
	// (Linux only; elsewhere it is off). Default: 1 GiB (a million users).
	CacheMemory int64 `json:"cache_memory,omitempty"`

	// badger: the most memory, in bytes, the store's memory-mapped table
	// files may keep resident (counted in Caddy's RSS and in the page
	// cache). Badger reads a user from the mapped files on their first
	// request after a start (later ones are served by the caches), for a
	// refresh and in the keeper's scans; past this bound the store asks the
	// kernel to reclaim table pages (Linux, madvise), and such a read
	// becomes a disk read (one 4 KiB read, ~75 µs here). -1: no bound; the
	// kernel alone decides, keeping the pages while memory is free (a store
	// read through once: its whole size, as clean file pages in RSS).
	// Default: 256 MiB. See docs/performance.md for both at a million users.
	TableMemory int64 `json:"table_memory,omitempty"`

	// redis: HOST:PORT of the Redis server. Required. Give several for a
	// Redis Cluster, or for the Sentinels of master_name.
	Addresses []string `json:"address,omitempty"`

	// redis: the name of the Sentinel-monitored master; addresses are then
	// the Sentinels'.
	MasterName string `json:"master_name,omitempty"`

	// redis: ACL user name, if any.
	Username string `json:"username,omitempty"`

	// redis: the password. Give it as {env.VAR}: it is resolved when the
	// handler is provisioned and never appears in the printed config.
	Password string `json:"password,omitempty"`

	// redis: the database number (standalone and Sentinel). Default: 0.
	DB int `json:"db,omitempty"`

	// redis: connect with TLS (the system's roots verify the server).
	TLS bool `json:"tls,omitempty"`

	// redis: the prefix of every key, so that several integrations share
	// one Redis. Every instance of a cluster gives the same. Default:
	// "amobridge:".
	KeyPrefix string `json:"key_prefix,omitempty"`
}

// storeSpec is a store resolved from its configuration: how to open it, and
// its identity in the usage pool (one backend per store).
type storeSpec struct {
	kind          string // "badger" or "redis"
	key           string // the pool key: the directory, or redis://addresses/db/prefix
	encryptionKey []byte
	badger        tokenstore.Options
	redis         tokenstore.RedisOptions
	oldPath       string // badger: the previous default directory, whose store moves into this one; "" if the path was given
}

// String names the store in logs and the admin API: the directory, or
// Redis's addresses, database and prefix; never a password.
func (s storeSpec) String() string { return s.key }

// coordStore is an open store, of either kind.
type coordStore interface {
	tokenstore.Store
	Claim(clientID string) error
}

// open opens the store.
func (s storeSpec) open() (coordStore, error) {
	if s.kind == "redis" {
		return tokenstore.OpenRedis(s.redis)
	}
	return tokenstore.Open(s.badger)
}

// validateStore checks the store's configuration (placeholders may still
// be unresolved; only what does not depend on them is checked).
func validateStore(sc *StoreConfig) error {
	if sc == nil {
		return nil
	}
	switch sc.Type {
	case "", "badger":
		if len(sc.Addresses) > 0 || sc.MasterName != "" || sc.Username != "" || sc.Password != "" || sc.DB != 0 || sc.TLS || sc.KeyPrefix != "" {
			return errors.New("amocrm_auth: store badger takes path and encryption_key; address, master_name, username, password, db, tls and key_prefix are redis's")
		}
	case "redis":
		if sc.Path != "" {
			return errors.New("amocrm_auth: store redis takes no path (that is badger's)")
		}
		if len(sc.Addresses) == 0 {
			return errors.New("amocrm_auth: store redis: address is required (HOST:PORT; several for a Cluster or Sentinels)")
		}
		for _, a := range sc.Addresses {
			if strings.Contains(a, "{") {
				continue
			}
			host, port, ok := strings.Cut(a, ":")
			if n, err := strconv.Atoi(port); !ok || host == "" || err != nil || n <= 0 || n > 65535 {
				return fmt.Errorf("amocrm_auth: store redis: address %q is not HOST:PORT", a)
			}
		}
		if sc.DB < 0 {
			return errors.New("amocrm_auth: store redis: db must not be negative")
		}
		if sc.DB != 0 && len(sc.Addresses) > 1 && sc.MasterName == "" {
			return errors.New("amocrm_auth: store redis: db must be 0 with a Redis Cluster (several addresses)")
		}
	default:
		return fmt.Errorf("amocrm_auth: store %q is unknown (badger or redis)", sc.Type)
	}
	if sc.CacheSize < 0 {
		return errors.New("amocrm_auth: store cache_size must not be negative")
	}
	if sc.CacheMemory < -1 {
		return errors.New("amocrm_auth: store cache_memory must be a size in bytes, 0 for the default or -1 for off")
	}
	if sc.CacheMemory != 0 && sc.Type == "redis" {
		return errors.New("amocrm_auth: store redis takes no cache_memory (that is badger's)")
	}
	if sc.TableMemory < -1 {
		return errors.New("amocrm_auth: store table_memory must be a size in bytes, 0 for the default or -1 for no bound")
	}
	if sc.TableMemory != 0 && sc.Type == "redis" {
		return errors.New("amocrm_auth: store redis takes no table_memory (that is badger's)")
	}
	if sc.EncryptionKey != "" && !strings.Contains(sc.EncryptionKey, "{") {
		if _, err := tokenstore.ParseEncryptionKey(sc.EncryptionKey); err != nil {
			return fmt.Errorf("amocrm_auth: store encryption_key: %w", err)
		}
	}
	return nil
}

// storeSpec resolves the handler's store configuration, placeholders
// included. Without a store line the store is a Badger directory of the
// integration's own in Caddy's data directory.
func (h *Handler) storeSpec(ctx caddy.Context) (storeSpec, error) {
	sc := h.Store
	if sc == nil {
		sc = new(StoreConfig)
	}
	if err := validateStore(sc); err != nil {
		return storeSpec{}, err
	}
	repl := caddy.NewReplacer()
	var spec storeSpec
	if sc.EncryptionKey != "" {
		k, err := tokenstore.ParseEncryptionKey(repl.ReplaceKnown(sc.EncryptionKey, ""))
		if err != nil {
			return spec, fmt.Errorf("amocrm_auth: store encryption_key: %w", err)
		}
		spec.encryptionKey = k
	}
	logger := ctx.Logger().Named("store")
	if sc.Type == "redis" {
		o := tokenstore.RedisOptions{
			MasterName:    repl.ReplaceKnown(sc.MasterName, ""),
			Username:      repl.ReplaceKnown(sc.Username, ""),
			Password:      repl.ReplaceKnown(sc.Password, ""),
			DB:            sc.DB,
			KeyPrefix:     repl.ReplaceKnown(sc.KeyPrefix, ""),
			EncryptionKey: spec.encryptionKey,
			Logger:        logger,
			Observe:       h.metrics.redis,
			CacheSize:     sc.CacheSize,
		}
		for _, a := range sc.Addresses {
			o.Addresses = append(o.Addresses, repl.ReplaceKnown(a, ""))
		}
		if sc.TLS {
			o.TLS = &tls.Config{MinVersion: tls.VersionTLS12}
		}
		if o.KeyPrefix == "" {
			o.KeyPrefix = defaultKeyPrefix
		}
		addrs := append([]string(nil), o.Addresses...)
		sort.Strings(addrs)
		spec.kind, spec.redis = "redis", o
		spec.key = fmt.Sprintf("redis://%s/%d/%s", strings.Join(addrs, ","), o.DB, o.KeyPrefix)
		return spec, nil
	}
	o := tokenstore.Options{Path: repl.ReplaceKnown(sc.Path, ""), EncryptionKey: spec.encryptionKey, Logger: logger,
		CacheSize: sc.CacheSize, CacheMemory: sc.CacheMemory, TableMemory: sc.TableMemory}
	if o.Path == "" {
		spec.oldPath = filepath.Join(caddy.AppDataDir(), "amobridge")
		o.Path = filepath.Join(spec.oldPath, storeDirName(h.clientID))
	}
	path, err := filepath.Abs(o.Path)
	if err != nil {
		return spec, fmt.Errorf("amocrm_auth: store path: %w", err)
	}
	o.Path = path
	spec.kind, spec.badger, spec.key = "badger", o, path
	return spec, nil
}

// defaultKeyPrefix is the Redis key prefix when key_prefix is not given.
const defaultKeyPrefix = "amobridge:"

// storeDirName is the default store directory's name for an integration:
// its client_id (a UUID), or a hash of it if it is not a safe file name.
func storeDirName(clientID string) string {
	safe := clientID != "" && len(clientID) <= 128 && clientID[0] != '.'
	for _, c := range clientID {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') {
			safe = false
			break
		}
	}
	if safe {
		return clientID
	}
	sum := sha256.Sum256([]byte(clientID))
	return "client-" + hex.EncodeToString(sum[:16])
}
