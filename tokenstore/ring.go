package tokenstore

import (
	"encoding/binary"
	"hash/maphash"
	"os"
	"sync"
	"sync/atomic"
)

// The packed tier: behind the token cache's users (Options.CacheSize, kept
// as ready *Tokens), every user the process has read or written is kept
// packed (ringrecord.go), without the refresh token, in memory outside Go's
// heap (arena_*.go), up to Options.CacheMemory bytes. A user found there
// costs a decode of a few microseconds instead of a Badger read, and once
// every user is there no request reads the disk. Its records hold no
// pointers, so the collector neither scans them nor counts them in the
// heap it grows to twice the live size.
//
// Each cache shard owns one ring, a fixed part of the arena written from
// start to end and then again from the start: a write appends a record at
// the head, and the oldest records are overwritten first (FIFO). An index
// maps a user's 64-bit hash to the record's position, counted in bytes
// written since the start (so a position behind the head by more than the
// ring's size is known to be overwritten). The shard's lock guards it:
// reads under its read lock, writes under its lock.

// DefaultCacheMemory is the size of the packed tier when
// Options.CacheMemory is 0: 1 GiB, a million users of amoCRM-sized
// tokens (about 0.55 KiB each packed) with room for the records that
// updates leave behind. It is address space until used: memory is taken
// as records are written.
const DefaultCacheMemory = 1 << 30

// minRing is the smallest useful ring: a shard's part smaller than this
// turns the tier off.
const minRing = 64 << 10

// ring is one shard's part of the packed tier.
type ring struct {
	buf  []byte            // nil: off (or closed)
	idx  map[uint64]uint64 // user hash -> position of the user's latest record
	head uint64            // position of the next record: bytes written since the start
	t    *tier
}

// ringHeader is a record's fixed start: u32 length, u64 user hash.
const ringHeader = 12

// write appends rec (a record built by packRecord, its header included)
// for user h and indexes it. Needs the shard's lock.
func (r *ring) write(h uint64, rec []byte) {
	if r.buf == nil {
		return
	}
	size := uint64(len(r.buf))
	n := uint64(len(rec))
	if n > size/4 || n < ringHeader {
		r.del(h) // too large to keep: the hot cache and Badger serve it
		return
	}
	off := r.head % size
	if off+n > size { // no record spans the end: the tail stays unused
		r.head += size - off
		off = 0
	}
	if off == 0 && r.head >= size {
		r.sweep()
	}
	copy(r.buf[off:], rec)
	binary.LittleEndian.PutUint32(r.buf[off:], uint32(n))
	binary.LittleEndian.PutUint64(r.buf[off+4:], h)
	r.idx[h] = r.head
	r.head += n
}

// sweep drops the index entries of records already overwritten, at the
// start of each lap of the ring: the index then holds at most two laps'
// users. A pass costs the index's size, once for every ring's size of
// writes. Needs the shard's lock.
func (r *ring) sweep() {
	size := uint64(len(r.buf))
	for h, pos := range r.idx {
		if r.head-pos > size {
			delete(r.idx, h)
			r.t.overwrote.Add(1)
		}
	}
}

// del forgets user h. Needs the shard's lock.
func (r *ring) del(h uint64) {
	if r.idx != nil {
		delete(r.idx, h)
	}
}

// find returns user h's record, or nil. The record is the ring's memory:
// read it under the shard's read lock and do not keep it.
func (r *ring) find(h uint64) []byte {
	if r.buf == nil {
		return nil
	}
	pos, ok := r.idx[h]
	if !ok {
		return nil
	}
	size := uint64(len(r.buf))
	if r.head-pos > size {
		return nil // overwritten (the next sweep drops it)
	}
	off := pos % size
	n := uint64(binary.LittleEndian.Uint32(r.buf[off:]))
	if n < ringHeader || off+n > size || r.head-pos < n ||
		binary.LittleEndian.Uint64(r.buf[off+4:]) != h {
		return nil
	}
	return r.buf[off : off+n]
}

var pageBytes = int64(os.Getpagesize())

// tier is what the shards' rings share.
type tier struct {
	seed      maphash.Seed
	arena     []byte                 // every ring's memory; nil: off
	overwrote atomic.Uint64          // records dropped from the index because the ring overwrote them
	dict      atomic.Pointer[[]byte] // the compression dictionary (ringrecord.go); set once
	deflaters sync.Pool              // of *deflater, made with dict
	inflaters sync.Pool              // of *inflater
	release   func() error
}

// hash is user k's 64-bit hash: its low bits pick the shard, all of it
// indexes the packed tier.
func (tr *tier) hash(k ukey) uint64 {
	h := maphash.String(tr.seed, k.account)
	return h ^ maphash.String(tr.seed, k.login)*0x9e3779b97f4a7c15
}
