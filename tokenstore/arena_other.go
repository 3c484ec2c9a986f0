//go:build !linux

package tokenstore

// mapArena: the packed tier needs memory outside Go's heap, mapped as on
// Linux (arena_linux.go); elsewhere there is none, the tier is off, and
// users the token cache evicts are read from Badger.
func mapArena(int) ([]byte, func() error, error) { return nil, nil, nil }
