package tokenstore

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/dgraph-io/badger/v4/options"
	"go.uber.org/zap"
)

// ErrLocked is returned (wrapped) by Open when the store's directory is
// already open, by another process or by an earlier Open in this process
// that has not been closed. Test for it with errors.Is.
var ErrLocked = errors.New("tokenstore: store directory is in use by another process")

// ErrEncryptionKey is returned (wrapped) by Open when the encryption key does
// not open the store: the key is wrong, or the store was created with a key
// and none was given, or without one and a key was given. Nothing in the
// directory is changed. Test for it with errors.Is.
var ErrEncryptionKey = errors.New("tokenstore: encryption key does not match the store " +
	"(wrong key, or the store was created with a different encryption setting)")

// DefaultAttemptTTL is how long an Attempt is kept when Options.AttemptTTL is 0.
const DefaultAttemptTTL = 24 * time.Hour

// DefaultTableMemory is Options.TableMemory's default: 256 MiB of the
// store's mapped tables stay resident at most. With the packed cache in
// front, a request reads Badger only for a user's first request after a
// start: a bound costs those reads a disk read at worst, and keeps a
// million users' 1.9 GB store from being counted in Caddy's RSS.
const DefaultTableMemory = 256 << 20

// Options configures Open.
type Options struct {
	Path          string      // directory (created 0700)
	EncryptionKey []byte      // nil, or 16/24/32 bytes: AES encryption at rest
	InMemory      bool        // tests only: nothing is written to disk; Path must be ""
	Logger        *zap.Logger // Badger's own logs go here (warnings and errors only); nil = discard

	// AttemptTTL is how long after its At an Attempt is kept; 0 means
	// DefaultAttemptTTL. It bounds the records that exchanges for unknown
	// or mistyped logins leave behind.
	AttemptTTL time.Duration

	// CacheSize is how many users' tokens are kept in memory ready for
	// the hot path (Get allocates nothing), the users most recently asked
	// for; 0 means DefaultCacheSize (30,000). A token costs ~1.45 KiB of
	// heap there with amoCRM-sized tokens, twice that in RSS at GOGC=100; a
	// user evicted from it is served from the packed cache (CacheMemory,
	// ~6 µs) or else read from Badger (~15-30 µs).
	CacheSize int

	// CacheMemory is the size in bytes of the packed cache behind the
	// token cache: every user read or written since the start is kept
	// there packed (~0.55 KiB with amoCRM-sized tokens, without the
	// refresh token), outside Go's heap, oldest overwritten first, so that
	// a user evicted from the token cache is served in microseconds
	// without reading Badger. 0 means DefaultCacheMemory (1 GiB); memory is
	// taken only as users are written to it. Negative turns it off. Linux
	// only; elsewhere it is off.
	CacheMemory int64

	// TableMemory bounds in bytes how much of the store's memory-mapped
	// table files may stay resident (in RSS and in the page cache); past
	// it the store asks the kernel to reclaim table pages (see pager.go),
	// and a read of such a page is a disk read. With the packed cache
	// holding every user read since the start, Badger is read only for a
	// user's first request after a start, for refreshes and for the
	// keeper's scans. 0 means DefaultTableMemory (256 MiB); negative means
	// no bound: the kernel alone decides, and a store read through once
	// stays resident whole until the kernel needs the memory. Linux only;
	// elsewhere the kernel alone decides.
	TableMemory int64
}

// Badger is the Store kept in a Badger database, with an in-memory cache of
// tokens in front. Create it with Open.
type Badger struct {
	db         *badger.DB
	lock       *dirLock // our own lock on the directory (nil in memory)
	secret     []byte   // HMAC key of HashKey
	attemptTTL time.Duration

	cache    cache
	sessions sessionCache
	hmacs    sync.Pool // of hash.Hash (HMAC-SHA256 keyed with secret)
	closed   atomic.Bool
	reads    atomic.Uint64 // tokens read from the database (not from the caches)
	gate     gate          // counts the operations that use db, so Close can wait for them
	sweepMu  sync.Mutex
	pager    *pager // nil in memory, or without TableMemory

	*Local // the Coordinator: one process keeps the store
}

var _ Store = (*Badger)(nil)

// Badger tuning for a store of up to a few million small records (a
// token record is 1-2 KiB), read by point lookups of users the token cache
// evicted, written rarely. The memory Badger needs is stated here and in
// docs/performance.md ("Badger's memory"):
//
//   - memtables: up to 3 x memTableSize (two, and one being flushed): 12 MiB;
//   - the index cache: the decrypted index (block offsets, Bloom filter) of
//     every table, about 32 bytes per stored user; an encrypted store
//     decrypts a table's index again on every lookup whose index is not
//     cached, so the cache holds all of them for up to 2 million users;
//     it costs only what the tables' indexes take;
//   - the block cache: decrypted 4 KiB blocks; lookups are random over the
//     users the token cache does not hold, so a large block cache would
//     mostly duplicate that cache: it only keeps the blocks of the last few
//     thousand misses;
//   - the tables themselves are memory-mapped: their pages, once read, are
//     counted in the process's RSS as file pages (the kernel's page cache),
//     up to Options.TableMemory (the pager reclaims the rest, pager.go);
//   - blocks are not compressed: ZSTD (its fastest level) shrinks a store
//     of amoCRM's tokens to 63% (a million users: 1.9 to 1.3 GB), but
//     decompressing the 4 KiB block of every user read outside the token
//     cache cost ~14 µs, 6% of Caddy's CPU in the warm random run, more than
//     the disk reads it saves. A store written compressed stays readable
//     (Badger records each table's compression).
const (
	memTableSize     = 4 << 20
	memTableSizeMem  = 1 << 20 // in memory (tests): quick to open
	baseTableSize    = 2 << 20 // tables of the base level; 4x larger each level down:
	tableSizeMult    = 4       // a million users' 1.9 GB is ~100 tables, whose indexes Open reads
	baseLevelSize    = 8 << 20
	valueLogFileSize = 1 << 20  // the minimum: values never go to the value log (see valueThreshold)
	valueThreshold   = 64 << 10 // every record here is far smaller: values stay in the LSM tree
	blockCacheSize   = 16 << 20 // decrypted blocks (needed by Badger with encryption)
	indexCacheSize   = 64 << 20 // decrypted table indexes: ~32 B per user, 2 million users
)

// Open opens (creating it if needed) the store in o.Path, or an empty
// in-memory store if o.InMemory. A directory already in use fails with an
// error wrapping ErrLocked; a key that does not open it, with one wrapping
// ErrEncryptionKey.
func Open(o Options) (*Badger, error) {
	switch n := len(o.EncryptionKey); n {
	case 0, 16, 24, 32:
	default:
		return nil, fmt.Errorf("tokenstore: encryption key is %d bytes long, want 16, 24 or 32", n)
	}
	if o.InMemory && o.Path != "" {
		return nil, errors.New("tokenstore: InMemory store given a Path")
	}
	if !o.InMemory && o.Path == "" {
		return nil, errors.New("tokenstore: no Path for the store")
	}
	if o.AttemptTTL < 0 {
		return nil, errors.New("tokenstore: negative AttemptTTL")
	}
	if o.CacheSize < 0 {
		return nil, errors.New("tokenstore: negative CacheSize")
	}

	var lock *dirLock
	if !o.InMemory {
		if err := os.MkdirAll(o.Path, 0o700); err != nil {
			return nil, fmt.Errorf("tokenstore: create store directory: %w", err)
		}
		if fi, err := os.Stat(o.Path); err == nil && fi.Mode().Perm()&0o077 != 0 && o.Logger != nil {
			o.Logger.Warn("token store directory is open to other users; consider chmod 0700",
				zap.String("path", o.Path), zap.Stringer("mode", fi.Mode().Perm()))
		}
		var err error
		if lock, err = lockDir(o.Path); err != nil {
			return nil, err
		}
	}

	// Badger keeps the key for the store's life (it encrypts new data
	// keys with it): keep our own copy, safe from a caller clearing theirs.
	o.EncryptionKey = bytes.Clone(o.EncryptionKey)
	db, err := badger.Open(badgerOptions(o))
	if err != nil {
		lock.release()
		return nil, openError(o.Path, err)
	}
	s := &Badger{db: db, lock: lock, attemptTTL: o.AttemptTTL}
	if s.attemptTTL == 0 {
		s.attemptTTL = DefaultAttemptTTL
	}
	mem := o.CacheMemory
	if mem == 0 {
		mem = DefaultCacheMemory
	}
	if err := s.cache.init(o.CacheSize, max(mem, 0)); err != nil && o.Logger != nil {
		o.Logger.Warn("the packed token cache is off; users outside the token cache are read from the store",
			zap.Int64("cache_memory", mem), zap.Error(err))
	}
	if s.secret, err = s.loadSecret(); err != nil {
		_ = s.cache.close()
		_ = db.Close()
		lock.release()
		return nil, err
	}
	s.hmacs.New = s.newHMAC
	s.Local = NewLocal(s)
	if o.TableMemory == 0 {
		o.TableMemory = DefaultTableMemory
	}
	if !o.InMemory && o.TableMemory > 0 {
		limit := o.TableMemory
		dir, err := filepath.Abs(o.Path)
		if err == nil {
			dir, err = filepath.EvalSymlinks(dir) // /proc/self/maps names the real path
		}
		if err == nil {
			s.pager = newPager(dir, limit, newPagerOS(), o.Logger)
			s.pager.start(pagerInterval)
		}
	}
	return s, nil
}

// badgerOptions translates o into Badger's options.
func badgerOptions(o Options) badger.Options {
	bo := badger.DefaultOptions(o.Path).
		WithInMemory(o.InMemory).
		WithSyncWrites(true).
		WithMemTableSize(memTableSize).
		WithNumMemtables(2).
		WithBaseTableSize(baseTableSize).
		WithBaseLevelSize(baseLevelSize).
		WithValueLogFileSize(valueLogFileSize).
		WithValueThreshold(valueThreshold).
		WithCompression(options.None).
		WithBlockCacheSize(blockCacheSize).
		WithIndexCacheSize(indexCacheSize).
		WithNumCompactors(2).
		WithNumGoroutines(2).
		WithMetricsEnabled(false).
		WithDetectConflicts(true).
		WithNumVersionsToKeep(1).
		WithEncryptionKey(o.EncryptionKey).
		WithLogger(newBadgerLogger(o.Logger))
	bo.TableSizeMultiplier = tableSizeMult
	if o.InMemory {
		bo = bo.WithDir("").WithValueDir("").
			WithMemTableSize(memTableSizeMem).
			WithBlockCacheSize(1 << 20).
			WithIndexCacheSize(1 << 20)
	}
	return bo
}

// openError turns Badger's Open errors into ours. Badger formats most of
// its errors as text (they do not wrap), so the lock is also recognised by
// its message in case our own lock could not see it.
func openError(path string, err error) error {
	switch {
	case errors.Is(err, badger.ErrEncryptionKeyMismatch):
		return fmt.Errorf("tokenstore: open %s: %w", path, ErrEncryptionKey)
	case isBadgerLockError(err):
		return fmt.Errorf("tokenstore: open %s: %w", path, ErrLocked)
	}
	return fmt.Errorf("tokenstore: open %s: %w", path, err)
}

// isBadgerLockError reports whether err is Badger's "directory in use"
// error, which Badger returns as text only.
func isBadgerLockError(err error) bool {
	return err != nil && strings.Contains(err.Error(), "Cannot acquire directory lock")
}

// Close persists last-use times, then flushes and closes the database. Every
// method called after Close returns ErrClosed (Close too); Close waits for
// operations in progress to finish.
func (s *Badger) Close() error {
	if !s.closed.CompareAndSwap(false, true) {
		return ErrClosed
	}
	s.gate.close()
	s.pager.close()
	s.sweepMu.Lock()
	_, perr := s.persistLastUsed()
	s.sweepMu.Unlock()
	err := s.db.Close()
	s.lock.release()
	if cerr := s.cache.close(); err == nil && cerr != nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("tokenstore: close: %w", err)
	}
	if perr != nil {
		return fmt.Errorf("tokenstore: close: persist last use: %w", perr)
	}
	return nil
}

// PagerStats reports how the store keeps its mapped tables' resident pages
// under Options.TableMemory.
func (s *Badger) PagerStats() PagerStats { return s.pager.stats() }

// CacheStats returns the occupancy of the token cache and the packed cache.
func (s *Badger) CacheStats() CacheStats { return s.cache.stats() }

// enter marks the start of an operation that uses the database; it fails
// with ErrClosed once Close has begun. Every successful enter needs an exit.
func (s *Badger) enter() error {
	if !s.gate.enter() {
		return ErrClosed
	}
	return nil
}

func (s *Badger) exit() { s.gate.exit() }

// gate counts operations in progress and lets Close wait for them. Unlike a
// RWMutex it may be entered recursively (List's callback may call the
// store) without deadlocking against a waiting Close.
type gate struct {
	mu     sync.Mutex
	cond   sync.Cond
	n      int
	closed bool
}

func (g *gate) enter() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		return false
	}
	g.n++
	return true
}

func (g *gate) exit() {
	g.mu.Lock()
	g.n--
	if g.n == 0 && g.closed && g.cond.L != nil {
		g.cond.Broadcast()
	}
	g.mu.Unlock()
}

// close stops new entries and waits until every operation has exited.
func (g *gate) close() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.closed = true
	g.cond.L = &g.mu
	for g.n > 0 {
		g.cond.Wait()
	}
}
