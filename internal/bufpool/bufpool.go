// Package bufpool recycles large byte buffers by size class, for the read
// path's short-lived shard buffers. A fresh 256 KiB buffer per shard read
// was zeroed by the allocator and then overwritten at once; a reading
// peer spent a tenth of its CPU in that zeroing.
//
// Buffers are grouped in powers of two: a buffer of capacity c is kept in
// class floor(log2 c), so every buffer of class i holds at least 2^i bytes,
// and Get(n) looks in class ceil(log2 n). A buffer may be given back by
// whoever owns it, whether it came from Get or not; one that is still in
// use anywhere must not be.
package bufpool

import (
	"math/bits"
	"sync"
)

// Classes below minClass are not pooled: small buffers are cheap to
// allocate, and sync.Pool's own overhead would dominate.
const (
	minClass = 12 // 4 KiB
	maxClass = 24 // 16 MiB: more than any shard (store.MaxShard)
)

// Pool is a set of buffer pools by size class. The zero value is ready to
// use; a Pool is safe for concurrent use.
type Pool struct {
	classes [maxClass + 1]sync.Pool // of *[]byte
}

// Get returns a buffer of length n whose contents are arbitrary (old data:
// the caller overwrites it). n outside the pooled classes gets a new
// buffer.
func (p *Pool) Get(n int) []byte {
	c := bits.Len(uint(n - 1)) // ceil(log2 n) for n >= 2
	if n <= 1<<minClass || c > maxClass {
		return make([]byte, n)
	}
	if bp, ok := p.classes[c].Get().(*[]byte); ok {
		return (*bp)[:n]
	}
	return make([]byte, n, 1<<c)
}

// Put gives b back for reuse. The caller must not use b, or anything
// sharing its memory, afterwards.
func (p *Pool) Put(b []byte) {
	c := bits.Len(uint(cap(b))) - 1 // floor(log2 cap)
	if c < minClass || c > maxClass {
		return
	}
	b = b[:0]
	p.classes[c].Put(&b)
}
