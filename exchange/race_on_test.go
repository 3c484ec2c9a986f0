//go:build race

package exchange

// raceEnabled: the race detector changes allocation counts (sync.Pool drops items).
const raceEnabled = true
