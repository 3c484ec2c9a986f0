package tokenstore

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/dgraph-io/badger/v4"
)

// keyOwner holds the ID of the integration (amoCRM's client_id) whose
// tokens the store keeps. Not a secret: client IDs appear in every OAuth
// URL.
const keyOwner = "m/owner"

// ErrOwner is returned (wrapped) by Claim when the store already belongs to
// another integration. Test for it with errors.Is.
var ErrOwner = errors.New("tokenstore: the store belongs to another integration")

// Claim makes owner (an integration's client_id) the store's owner if it
// has none yet, and fails with an error wrapping ErrOwner, naming both, if
// another integration owns it: tokens obtained through one integration
// cannot be refreshed through another, so one store serves one.
func (s *Badger) Claim(owner string) error {
	if owner == "" {
		return errors.New("tokenstore: empty owner")
	}
	if err := s.enter(); err != nil {
		return err
	}
	defer s.exit()
	var have string
	err := s.db.Update(func(txn *badger.Txn) error {
		item, err := txn.Get([]byte(keyOwner))
		if errors.Is(err, badger.ErrKeyNotFound) {
			return txn.Set([]byte(keyOwner), []byte(owner))
		}
		if err != nil {
			return err
		}
		v, err := item.ValueCopy(nil)
		have = string(v)
		return err
	})
	if err != nil {
		return fmt.Errorf("tokenstore: claim: %w", err)
	}
	if have != "" && have != owner {
		return fmt.Errorf("%w: it holds the tokens of client_id %q, not %q", ErrOwner, have, owner)
	}
	return nil
}

// MoveStore moves the store kept in directory from (its files: a store
// shares its directory with nothing but subdirectories) into directory to,
// which must not hold a store yet. It reports false, and moves nothing, if
// from holds no store. It takes the store's lock first (ErrLocked if it is
// open) and moves through a temporary directory renamed at the end, so a
// crash halfway leaves either the old place or the new one whole, and a
// second call finishes what the first began.
func MoveStore(from, to string) (bool, error) {
	tmp := filepath.Join(filepath.Dir(to), "."+filepath.Base(to)+".moving")
	if !HoldsStore(from) {
		if HoldsStore(tmp) { // every file had moved; only the rename was left
			return true, os.Rename(tmp, to)
		}
		return false, nil
	}
	if HoldsStore(to) {
		return false, fmt.Errorf("tokenstore: move %s: %s already holds a store", from, to)
	}
	lock, err := lockDir(from)
	if err != nil {
		return false, err
	}
	defer lock.release()
	if err := os.MkdirAll(tmp, 0o700); err != nil {
		return false, fmt.Errorf("tokenstore: move store: %w", err)
	}
	entries, err := os.ReadDir(from)
	if err != nil {
		return false, fmt.Errorf("tokenstore: move store: %w", err)
	}
	for _, e := range entries {
		if !e.Type().IsRegular() || e.Name() == lockFileName {
			continue
		}
		if err := os.Rename(filepath.Join(from, e.Name()), filepath.Join(tmp, e.Name())); err != nil {
			return false, fmt.Errorf("tokenstore: move store: %w", err)
		}
	}
	if err := os.Rename(tmp, to); err != nil {
		return false, fmt.Errorf("tokenstore: move store: %w", err)
	}
	_ = os.Remove(filepath.Join(from, lockFileName))
	return true, nil
}

// HoldsStore reports whether dir holds a Badger store (its MANIFEST).
func HoldsStore(dir string) bool {
	fi, err := os.Stat(filepath.Join(dir, "MANIFEST"))
	return err == nil && fi.Mode().IsRegular()
}
