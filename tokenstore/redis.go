package tokenstore

import (
	"bytes"
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"
)

// ErrUnavailable is wrapped by the errors of a Redis store that cannot
// reach Redis (refused, timed out, reconnecting, loading, a replica that
// cannot write...): the broker answers 503 and the client retries later.
// Test for it with errors.Is.
var ErrUnavailable = errors.New("tokenstore: the store (Redis) is unavailable")

// DefaultKeyPrefix is RedisOptions.KeyPrefix when none is given.
const DefaultKeyPrefix = "amobridge:"

// RedisOptions configures OpenRedis.
type RedisOptions struct {
	// Addresses of Redis, as host:port. One address: a standalone Redis
	// (or a proxy in front of one). Several: the seed nodes of a Redis
	// Cluster. With MasterName: the Sentinels to ask for the master.
	Addresses []string

	// MasterName is the name of the master the Sentinels at Addresses
	// watch (Sentinel mode); "" otherwise.
	MasterName string

	// Username and Password authenticate to Redis (ACL user, or "" and
	// the requirepass password). With Sentinel they are the master's;
	// the Sentinels are asked without credentials.
	Username, Password string

	// DB is the database number (standalone and Sentinel; Cluster has
	// only 0).
	DB int

	// TLS, if not nil, is used for every connection to Redis.
	TLS *tls.Config

	// KeyPrefix starts every key (and the events channel) this store
	// uses, so that several integrations share one Redis without meeting;
	// "" means DefaultKeyPrefix. Every instance of one cluster uses the
	// same prefix. A prefix holding a hash tag ("{amo}:") puts every key in
	// one Cluster slot.
	KeyPrefix string

	// EncryptionKey, nil or 16, 24 or 32 bytes, seals every value with
	// AES-GCM (bound to its key): tokens, key hashes, the key-hash secret,
	// sessions, pending exchanges, attempts, and the events' user names. It
	// also keys the hash that names a user's keys, so that logins cannot
	// be read from the key names. Every instance of one cluster uses the
	// same key; one whose key differs is refused (ErrEncryptionKey).
	EncryptionKey []byte

	// Logger receives the store's warnings: lost connections, locks that
	// could not be renewed or given back. nil = discard.
	Logger *zap.Logger

	// AttemptTTL is how long after its At an Attempt is kept; 0 means
	// DefaultAttemptTTL.
	AttemptTTL time.Duration

	// Observe, if set, is told of every command (or pipeline) sent to
	// Redis: its name, how long the round trip took, and its error (nil,
	// or one that is not redis.Nil). For metrics; it must be cheap.
	Observe func(cmd string, d time.Duration, err error)

	// CacheSize bounds the token cache as Options.CacheSize does for
	// Badger; 0 means the cache's default.
	CacheSize int
}

// Redis is the Store kept in Redis (standalone, Sentinel or Cluster) and
// shared by every instance of a cluster, with the same in-memory token
// cache in front as Badger's. Create it with OpenRedis.
//
// Consistency of the cache. Every write of a token (Put, Update, Delete)
// increments the user's version and publishes an event (the user and the
// new version) on one channel, in the same atomic step as the write. Each
// instance listens on that channel: an event newer than the cached version
// makes the cache forget the user, whose next Get reads Redis. An event not
// newer than what is known is ignored, so a late event never brings back
// an older pair; a read or write answered before a newer event arrived is
// not cached. "No token" is never cached (a miss reads Redis each time),
// so that a pair stored by another instance is seen at once by a Get here.
// Pub/sub loses messages across reconnects: when the subscription is
// (re)established the whole cache is dropped, and Subscribe's callbacks are
// called with ("", ""); while it is down, what is cached stays cached (it
// serves through an outage) but nothing new is cached. The subscription is
// checked with a PING after every second of silence and rebuilt when no
// answer comes within the next second.
//
// Staleness bound: while Redis is reachable, a Get on another instance
// sees a write as soon as its event arrives: p99 under 0.1 ms after the
// write's acknowledgement on a loopback Redis (TestRedisEventDelay measures
// it); on a LAN, about the network's one-way delay more. A
// subscription broken without a word (a partition) is noticed within 2 s,
// and rebuilt within 1 s of Redis answering again, and then the cache is
// dropped: so an instance that can reach Redis serves nothing staler than
// about 3 s. An instance that cannot reach Redis keeps serving its cached
// users (by design: that is what keeps them served while Redis is down),
// and so may serve a revoked pair until it reaches Redis again.
//
// Durability: Put, Update, Delete and the other writes return after Redis
// acknowledged them, so an instance's crash loses nothing acknowledged.
// Redis itself must persist: appendonly yes with appendfsync everysec
// (loses at most about a second of writes if Redis's machine crashes) or
// always (loses none). A Sentinel failover promotes a replica, which may
// lack the last writes the old master acknowledged (replication is
// asynchronous): a refresh written in that window is lost, and the user's
// next refresh spends the previous refresh token, which amoCRM has already
// replaced (one new exchange then follows). Exchange gates and locks held
// at that moment may be lost too.
type Redis struct {
	rdb        redis.UniversalClient
	log        *zap.Logger
	prefix     string
	channel    string // the events channel
	aead       cipher.AEAD
	keyCheck   string // fingerprint of the encryption key ("none" without one)
	idKey      []byte // HMAC key of user IDs
	attemptTTL time.Duration
	id         string // this process's id: Lease holder

	lockTTL, lockRenew time.Duration

	secret []byte
	hmacs  sync.Pool

	cache redisCache

	ctx    context.Context // ends at Close
	cancel context.CancelFunc
	wg     sync.WaitGroup // the listener and lock renewers
	closed atomic.Bool

	subMu  sync.Mutex
	subs   map[int]func(account, login string)
	nextID int
	ps     *redis.PubSub // the listener's subscription; Close closes it to end a read in progress

	sweepMu sync.Mutex
}

var _ Store = (*Redis)(nil)

// Timeouts of the Redis client: a dead Redis is noticed in a few seconds,
// never in the minutes of TCP's own timeouts.
const (
	redisDialTimeout = 2 * time.Second
	redisIOTimeout   = 3 * time.Second
	redisOpenTimeout = 5 * time.Second // OpenRedis's first contact and subscription
)

// OpenRedis connects to Redis, creates or reads the key-hash secret (shared
// by every instance with the same prefix) and starts listening for
// invalidation events. Redis unreachable fails with an error wrapping
// ErrUnavailable; data that the encryption key does not open, with one
// wrapping ErrEncryptionKey.
func OpenRedis(o RedisOptions) (*Redis, error) {
	if len(o.Addresses) == 0 {
		return nil, errors.New("tokenstore: no Redis address")
	}
	for _, a := range o.Addresses {
		if _, _, err := net.SplitHostPort(a); err != nil {
			return nil, fmt.Errorf("tokenstore: Redis address %q: want host:port", a)
		}
	}
	switch n := len(o.EncryptionKey); n {
	case 0, 16, 24, 32:
	default:
		return nil, fmt.Errorf("tokenstore: encryption key is %d bytes long, want 16, 24 or 32", n)
	}
	if o.AttemptTTL < 0 {
		return nil, errors.New("tokenstore: negative AttemptTTL")
	}
	if o.CacheSize < 0 {
		return nil, errors.New("tokenstore: negative CacheSize")
	}
	if o.DB < 0 {
		return nil, errors.New("tokenstore: negative Redis DB")
	}
	if o.DB != 0 && o.MasterName == "" && len(o.Addresses) > 1 {
		return nil, errors.New("tokenstore: a Redis Cluster has only DB 0")
	}
	if o.KeyPrefix == "" {
		o.KeyPrefix = DefaultKeyPrefix
	}
	s := &Redis{
		log:        o.Logger,
		prefix:     o.KeyPrefix,
		channel:    o.KeyPrefix + "events",
		attemptTTL: o.AttemptTTL,
		id:         randomHex(16),
		lockTTL:    lockTTL,
		lockRenew:  lockRenew,
		subs:       make(map[int]func(string, string)),
	}
	if s.log == nil {
		s.log = zap.NewNop()
	}
	s.log = s.log.Named("redis")
	if s.attemptTTL == 0 {
		s.attemptTTL = DefaultAttemptTTL
	}
	s.keyCheck = "none"
	s.idKey = []byte("amobridge user id")
	if len(o.EncryptionKey) > 0 {
		block, err := aes.NewCipher(o.EncryptionKey)
		if err != nil {
			return nil, fmt.Errorf("tokenstore: encryption key: %w", err)
		}
		if s.aead, err = cipher.NewGCM(block); err != nil {
			return nil, fmt.Errorf("tokenstore: encryption key: %w", err)
		}
		s.keyCheck = hex.EncodeToString(hmacSum(o.EncryptionKey, "amobridge fingerprint")[:8])
		s.idKey = hmacSum(o.EncryptionKey, "amobridge user id")
	}
	s.cache.init(o.CacheSize)
	s.rdb = redis.NewUniversalClient(&redis.UniversalOptions{
		Addrs:           o.Addresses,
		MasterName:      o.MasterName,
		Username:        o.Username,
		Password:        o.Password,
		DB:              o.DB,
		TLSConfig:       o.TLS,
		ClientName:      "amobridge",
		DisableIdentity: true,
		DialTimeout:     redisDialTimeout,
		ReadTimeout:     redisIOTimeout,
		WriteTimeout:    redisIOTimeout,
		MaxRetries:      1,
		DialerRetries:   1, // a Redis that refuses is reported at once: the cache serves meanwhile
	})
	if o.Observe != nil {
		s.rdb.AddHook(observeHook(o.Observe))
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())

	ctx, cancel := context.WithTimeout(s.ctx, redisOpenTimeout)
	defer cancel()
	err := s.rdb.Ping(ctx).Err()
	if err == nil {
		err = s.checkKey(ctx)
	}
	if err == nil {
		err = s.loadSecret(ctx)
	}
	if err == nil {
		err = s.listen(ctx)
	}
	if err != nil {
		s.cancel()
		s.wg.Wait()
		_ = s.rdb.Close()
		return nil, s.fail(ctx, "open "+strings.Join(o.Addresses, ","), err)
	}
	s.hmacs.New = func() any { return newKeyHasher(s.secret) }
	return s, nil
}

// CacheStats returns the occupancy of the token cache (a Redis store has no
// packed cache).
func (s *Redis) CacheStats() CacheStats { return s.cache.c.stats() }

// Close persists last-use times (best effort: at most a few seconds),
// stops the listener and closes the connections. Every method called
// after Close returns ErrClosed (Close too), except HashKey.
func (s *Redis) Close() error {
	if !s.closed.CompareAndSwap(false, true) {
		return ErrClosed
	}
	ctx, cancel := context.WithTimeout(context.Background(), redisOpenTimeout)
	s.sweepMu.Lock()
	perr := s.persistLastUsed(ctx)
	s.sweepMu.Unlock()
	cancel()
	s.cancel()
	s.subMu.Lock()
	if s.ps != nil {
		_ = s.ps.Close()
	}
	s.subMu.Unlock()
	s.wg.Wait()
	err := s.rdb.Close()
	if err != nil {
		return fmt.Errorf("tokenstore: close: %w", err)
	}
	if perr != nil {
		return fmt.Errorf("tokenstore: close: persist last use: %w", perr)
	}
	return nil
}

// fail wraps err, from a Redis command that did what, for the caller:
// ErrClosed after Close, the caller's own cancellation as is, and
// anything that says Redis cannot be reached or cannot serve now wrapping
// ErrUnavailable.
func (s *Redis) fail(ctx context.Context, what string, err error) error {
	switch {
	case s.closed.Load() || errors.Is(err, redis.ErrClosed):
		return ErrClosed
	case ctx.Err() != nil && errors.Is(err, ctx.Err()):
		return fmt.Errorf("tokenstore: %s: %w", what, err)
	case errors.Is(err, ErrEncryptionKey) || errors.Is(err, errCorrupt):
		return fmt.Errorf("tokenstore: %s: %w", what, err)
	case redisUnavailable(err):
		return fmt.Errorf("tokenstore: %s: %w: %w", what, ErrUnavailable, err)
	}
	return fmt.Errorf("tokenstore: %s: %w", what, err)
}

// redisUnavailable reports whether err says that Redis cannot serve now
// (rather than that the command is wrong): no connection, a timeout, or
// one of Redis's "not now" replies.
func redisUnavailable(err error) bool {
	var re redis.Error
	if !errors.As(err, &re) {
		return true // network, timeout, pool
	}
	msg := re.Error()
	for _, p := range []string{"LOADING", "READONLY", "MASTERDOWN", "CLUSTERDOWN", "TRYAGAIN",
		"BUSY", "NOREPLICAS", "MISCONF", "ERR max number of clients", "OOM"} {
		if strings.HasPrefix(msg, p) {
			return true
		}
	}
	return false
}

// redisNotSent reports whether err means that the command never reached
// Redis (no connection could be made): the write did not happen, and the
// cache may keep what it holds.
func redisNotSent(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && op.Op == "dial" ||
		errors.Is(err, redis.ErrPoolTimeout) || errors.Is(err, redis.ErrPoolExhausted)
}

// The layout of keys, under the prefix P. A user's keys carry the user's
// ID as a Cluster hash tag, {uid}: one slot, so that one script or
// transaction can use them together. uid is a keyed hash of the user's
// (account, login): with an encryption key, logins cannot be read from
// key names.
//
//	P meta:secret       key-hash secret (sealed)
//	P meta:fingerprint  {client_id, key_check, key_prefix} (JSON, no secret)
//	P events            the invalidation channel: "<version>:<sealed user>"
//	P t:{uid}           token (sealed)
//	P v:{uid}           the token's version (an integer; kept after a delete)
//	P a:{uid}           attempt: hash {at: Redis µs (absent: withdrawn), rec: sealed}
//	P s:<sha256(id)>    session (sealed), Redis TTL
//	P p:<sha256(state)> pending exchange (sealed), Redis TTL
//	P lock:<name>       Lock: random token, PX 45 s, renewed
//	P lease:<name>      Lease: holder's process id, PX ttl
//	P q:<key>           Reserve: the queue's next free turn (Redis µs)
const (
	redisSecret      = "meta:secret"
	redisFingerprint = "meta:fingerprint"
)

// uid is the user's ID in key names.
func (s *Redis) uid(account, login string) string {
	m := hmac.New(sha256.New, s.idKey)
	m.Write(pairKey("", account, login))
	return hex.EncodeToString(m.Sum(nil)[:16])
}

// tokenKeys returns the user's token and version keys.
func (s *Redis) tokenKeys(account, login string) (tk, vk string) {
	u := s.uid(account, login)
	return s.prefix + "t:{" + u + "}", s.prefix + "v:{" + u + "}"
}

func (s *Redis) attemptKey(account, login string) string {
	return s.prefix + "a:{" + s.uid(account, login) + "}"
}

// hashedRedisKey is P + kind + hex(SHA-256(secret)).
func (s *Redis) hashedRedisKey(kind, secret string) string {
	sum := sha256.Sum256([]byte(secret))
	return s.prefix + kind + hex.EncodeToString(sum[:])
}

// Sealed values start with a byte that says how: sealPlain (no encryption
// key) or sealAESGCM (then a 12-byte nonce and the ciphertext, the key name
// as additional data: a value cannot be moved to another key).
const (
	sealPlain  = 'P'
	sealAESGCM = 'E'
)

// seal returns v as stored under key.
func (s *Redis) seal(key string, v []byte) []byte {
	if s.aead == nil {
		return append([]byte{sealPlain}, v...)
	}
	out := make([]byte, 1+s.aead.NonceSize(), 1+s.aead.NonceSize()+len(v)+s.aead.Overhead())
	out[0] = sealAESGCM
	if _, err := rand.Read(out[1:]); err != nil {
		panic("tokenstore: no randomness: " + err.Error())
	}
	return s.aead.Seal(out, out[1:], v, []byte(key))
}

// unseal returns the value stored under key.
func (s *Redis) unseal(key string, v []byte) ([]byte, error) {
	if len(v) == 0 {
		return nil, fmt.Errorf("%w: empty value", errCorrupt)
	}
	switch {
	case v[0] == sealPlain && s.aead == nil:
		return v[1:], nil
	case v[0] == sealPlain:
		return nil, fmt.Errorf("%w: encryption_key differs: the data in Redis were stored without encryption, "+
			"and this instance has an encryption_key", ErrEncryptionKey)
	case v[0] == sealAESGCM && s.aead == nil:
		return nil, fmt.Errorf("%w: encryption_key differs: the data in Redis are encrypted, "+
			"and this instance has no encryption_key", ErrEncryptionKey)
	case v[0] == sealAESGCM:
		n := s.aead.NonceSize()
		if len(v) < 1+n {
			return nil, fmt.Errorf("%w: short sealed value", errCorrupt)
		}
		p, err := s.aead.Open(nil, v[1:1+n], v[1+n:], []byte(key))
		if err != nil {
			return nil, fmt.Errorf("%w: encryption_key differs: a value in Redis does not decrypt with "+
				"this instance's encryption_key", ErrEncryptionKey)
		}
		return p, nil
	}
	return nil, fmt.Errorf("%w: unknown seal %q", errCorrupt, v[0])
}

// loadSecret reads the key-hash secret, creating it if Redis has none (the
// first instance of a cluster to start wins; the others read its secret).
func (s *Redis) loadSecret(ctx context.Context) error {
	key := s.prefix + redisSecret
	fresh := make([]byte, secretLen)
	if _, err := rand.Read(fresh); err != nil {
		return err
	}
	if err := s.rdb.SetNX(ctx, key, s.seal(key, fresh), 0).Err(); err != nil {
		return err
	}
	v, err := s.rdb.Get(ctx, key).Bytes()
	if err != nil {
		return err
	}
	secret, err := s.unseal(key, v)
	if err != nil {
		return fmt.Errorf("key-hash secret: %w", err)
	}
	if len(secret) != secretLen {
		return fmt.Errorf("key-hash secret: %w: %d bytes, want %d", errCorrupt, len(secret), secretLen)
	}
	s.secret = bytes.Clone(secret)
	return nil
}

// HashKey returns HMAC-SHA256 of apiKey keyed with the cluster's secret.
// It keeps working after Close.
func (s *Redis) HashKey(apiKey string) []byte {
	h := s.KeyHash(apiKey)
	return h[:]
}

// KeyHash is HashKey as an array: no allocation (the hot path).
func (s *Redis) KeyHash(apiKey string) [sha256.Size]byte { return keyHash(&s.hmacs, apiKey) }

func hmacSum(key []byte, msg string) []byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(msg))
	return m.Sum(nil)
}

func randomHex(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic("tokenstore: no randomness: " + err.Error())
	}
	return hex.EncodeToString(b)
}
