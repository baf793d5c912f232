package namespace

import (
	"slices"
	"sort"
)

// DefaultSyncCacheBytes is the default of Config.SyncCacheBytes: at the
// rate of an untar through one mount (about 400 KB of ops a second), a
// minute and more of every origin's ops.
const DefaultSyncCacheBytes = 32 << 20

// opCache keeps the plain encodings (encodeOp) of recent ops, per origin,
// for anti-entropy answers (SealOpsSince): an answer for a recent range is
// then a concatenation and one seal. Read from the store, every op was
// looked up in badger, copied, opened, decoded and encoded again, and the
// batch's buffer grew by doubling: 12% of a mounting peer's CPU during an
// untar. The encodings are taken where ops are encoded anyway: the op log's
// record of a local commit, and the store's record of each remote op.
//
// Invariant, for every origin o while the cache is ready: the seqs it holds
// of o are exactly the seqs above floor(o) that the namespace holds
// (ns.have), and each is durable (the cache takes an op after its write
// returned, and lets it go before compaction deletes it). A request from
// at or above floor(o) is then answered as the store would answer it; one
// from below falls back to the store. Eviction takes the oldest op of all
// (by insertion) and raises its origin's floor to it; an origin keeps its
// floor when its last op goes, since the floor is what makes "none cached"
// mean "none held above it".
//
// It has no lock of its own: it changes where ns.have does, under ns.mu
// held for writing (and wmu), and is read under ns.mu held for reading, so
// what it holds always matches ns.have; ready may also be read under wmu
// alone. The cached bytes are never
// modified: readers keep using them after unlocking.
type opCache struct {
	budget  int  // bytes; at most 0 disables the cache
	ready   bool // floors are known: false until reset, and after clear
	bytes   int  // held, entries' overhead included
	stamp   uint64
	origins map[string]*originOps
}

// originOps is the cache of one origin.
type originOps struct {
	floor uint64
	ops   []cachedOp // ascending seq
}

type cachedOp struct {
	seq     uint64
	wall    int64 // the op's TS (its Peer is the origin), for compaction
	logical uint32
	stamp   uint64 // insertion order, for eviction
	enc     []byte
}

// cachedOpOverhead is what an entry costs besides its encoding (the
// struct, the map and slice slack), counted against the budget so that
// many tiny ops do not exceed it.
const cachedOpOverhead = 64

func newOpCache(budget int) *opCache { return &opCache{budget: budget} }

// reset empties the cache and makes it ready, every origin's floor the
// highest seq held of it (have).
func (c *opCache) reset(have map[string]*seqSet) {
	c.ready = c.budget > 0
	c.bytes = 0
	c.origins = make(map[string]*originOps, len(have))
	if !c.ready {
		return
	}
	for o, q := range have {
		f := q.contig
		for s := range q.extra {
			f = max(f, s)
		}
		c.origins[o] = &originOps{floor: f}
	}
}

// clear empties the cache and leaves it unready (every request misses)
// until reset: InstallSnapshot replaces the store's ops.
func (c *opCache) clear() {
	c.ready = false
	c.bytes = 0
	c.origins = nil
}

// add takes the encodings of ops just made durable (encs[i] is ops[i]'s),
// then evicts down to the budget.
func (c *opCache) add(ops []Op, encs [][]byte) {
	if !c.ready {
		return
	}
	for i := range ops {
		op := &ops[i]
		oc := c.origins[op.Origin]
		if oc == nil {
			// No op of this origin was held at reset, and every one
			// since came through add: the floor is 0.
			oc = &originOps{}
			c.origins[op.Origin] = oc
		}
		if op.Seq <= oc.floor {
			continue
		}
		c.stamp++
		e := cachedOp{seq: op.Seq, wall: op.TS.Wall, logical: op.TS.Logical, stamp: c.stamp, enc: encs[i]}
		if n := len(oc.ops); n == 0 || oc.ops[n-1].seq < op.Seq {
			oc.ops = append(oc.ops, e)
		} else {
			// Out of order (a gap filled): rare.
			at, found := slices.BinarySearchFunc(oc.ops, op.Seq, func(e cachedOp, s uint64) int { return cmpU64(e.seq, s) })
			if found {
				continue
			}
			oc.ops = slices.Insert(oc.ops, at, e)
		}
		c.bytes += len(e.enc) + cachedOpOverhead
	}
	c.trim()
}

func cmpU64(a, b uint64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// trim evicts the oldest ops until the cache fits its budget.
func (c *opCache) trim() {
	for c.bytes > c.budget {
		var oldest *originOps
		for _, oc := range c.origins {
			if len(oc.ops) > 0 && (oldest == nil || oc.ops[0].stamp < oldest.ops[0].stamp) {
				oldest = oc
			}
		}
		if oldest == nil {
			return
		}
		c.dropTo(oldest, oldest.ops[0].seq)
	}
}

// dropTo raises oc's floor to seq, dropping the ops up to it.
func (c *opCache) dropTo(oc *originOps, seq uint64) {
	oc.floor = max(oc.floor, seq)
	n := sort.Search(len(oc.ops), func(i int) bool { return oc.ops[i].seq > oc.floor })
	for _, e := range oc.ops[:n] {
		c.bytes -= len(e.enc) + cachedOpOverhead
	}
	// Clear what is cut off, so that the backing array does not keep the
	// encodings alive until the next append moves it.
	clear(oc.ops[:n])
	oc.ops = oc.ops[n:]
}

// forget drops, for each origin of ops, everything up to the highest of
// their seqs: after a failed write, some of them may be in the store and
// not in ns.have, and the store is then the one to ask.
func (c *opCache) forget(ops []Op) {
	if !c.ready {
		return
	}
	for i := range ops {
		if oc := c.origins[ops[i].Origin]; oc != nil {
			c.dropTo(oc, ops[i].Seq)
		} else {
			c.origins[ops[i].Origin] = &originOps{floor: ops[i].Seq}
		}
	}
}

// compact drops the ops with a TS up to cut, before the store deletes them
// (store.compact deletes by the same order): the cache must not answer
// with an op the store no longer holds.
func (c *opCache) compact(cut Timestamp) {
	if !c.ready {
		return
	}
	for o, oc := range c.origins {
		var top uint64
		for _, e := range oc.ops {
			if !cut.Less(Timestamp{Wall: e.wall, Logical: e.logical, Peer: o}) {
				top = max(top, e.seq)
			}
		}
		if top > 0 {
			c.dropTo(oc, top)
		}
	}
}

// get appends to dst the encodings of origin's ops with seq > from, in seq
// order, at most limit of them; more reports there are further ones. ok is
// false, and dst unchanged, when the cache cannot tell (from below the
// floor, or not ready): ask the store.
func (c *opCache) get(origin string, from uint64, limit int, dst [][]byte) (out [][]byte, more, ok bool) {
	if !c.ready {
		return dst, false, false
	}
	oc := c.origins[origin]
	if oc == nil || from < oc.floor {
		return dst, false, false
	}
	i := sort.Search(len(oc.ops), func(i int) bool { return oc.ops[i].seq > from })
	n := len(oc.ops) - i
	limit = max(limit, 0)
	for _, e := range oc.ops[i : i+min(n, limit)] {
		dst = append(dst, e.enc)
	}
	return dst, n > limit, true
}

// held reports the ops and bytes cached (tests).
func (c *opCache) held() (ops, bytes int) {
	for _, oc := range c.origins {
		ops += len(oc.ops)
	}
	return ops, c.bytes
}
