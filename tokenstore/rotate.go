package tokenstore

import (
	"errors"
	"fmt"
	"time"

	"github.com/dgraph-io/badger/v4"
)

// RotateKey re-encrypts the store's data keys under a new master key. The
// store must not be open (RotateKey takes its directory lock). Data stays
// encrypted with the same data keys; only the registry that holds them is
// rewritten, so rotation is quick whatever the store's size.
//
// Both keys must be 16, 24 or 32 bytes: a plain store cannot be turned into
// an encrypted one this way (its existing tables would stay plain).
func RotateKey(dir string, oldKey, newKey []byte) error {
	for _, k := range [][]byte{oldKey, newKey} {
		switch len(k) {
		case 16, 24, 32:
		default:
			return fmt.Errorf("tokenstore: rotate: keys must be 16, 24 or 32 bytes, got %d", len(k))
		}
	}
	lock, err := lockDir(dir)
	if err != nil {
		return err
	}
	defer lock.release()

	opt := badger.KeyRegistryOptions{
		Dir:                           dir,
		ReadOnly:                      true,
		EncryptionKey:                 oldKey,
		EncryptionKeyRotationDuration: 10 * 24 * time.Hour,
	}
	kr, err := badger.OpenKeyRegistry(opt)
	if err != nil {
		if errors.Is(err, badger.ErrEncryptionKeyMismatch) {
			return fmt.Errorf("tokenstore: rotate %s: the old key does not open the store: %w", dir, ErrEncryptionKey)
		}
		return fmt.Errorf("tokenstore: rotate %s: %w", dir, err)
	}
	defer kr.Close()
	opt.EncryptionKey = newKey
	opt.ReadOnly = false
	if err := badger.WriteKeyRegistry(kr, opt); err != nil {
		return fmt.Errorf("tokenstore: rotate %s: writing the key registry: %w", dir, err)
	}
	return nil
}
