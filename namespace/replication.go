package namespace

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"sync"
	"time"
)

// ApplyRemote applies ops received from other peers. It is idempotent: ops
// already held (by Origin and Seq) are skipped. The new ops are durable
// (synced) before it returns, so the sender may count the call as an ack.
// It observes their Timestamps in the Clock and reports the changes to
// subscribers. A malformed op fails the whole batch (nothing is applied).
// ApplyRemote does not retain ops.
func (ns *Namespace) ApplyRemote(ops []Op) (int, error) {
	if err := ns.CheckRemote(ops); err != nil {
		return 0, err
	}
	ns.wmu.Lock()
	defer ns.wmu.Unlock()
	if ns.closed {
		return 0, ErrClosed
	}
	type key struct {
		o string
		s uint64
	}
	seen := map[key]bool{}
	var fresh []Op
	ns.mu.RLock()
	for _, op := range ops {
		k := key{op.Origin, op.Seq}
		if seen[k] {
			continue
		}
		seen[k] = true
		if q := ns.have[op.Origin]; q != nil && q.has(op.Seq) {
			continue
		}
		if op.Origin == ns.cfg.Peer {
			// Our own op we do not hold (lost disk?). Accept it.
			ns.log.Warn("namespace: received own op not held locally", "seq", op.Seq)
		}
		op.Value = slices.Clone(op.Value)
		op.Content.Inline = slices.Clone(op.Content.Inline)
		if op.Init != nil {
			in := *op.Init
			op.Init = &in
		}
		fresh = append(fresh, op)
	}
	ns.mu.RUnlock()
	if len(fresh) == 0 {
		return 0, nil
	}
	encs, err := ns.db.putOpsEnc(fresh, ns.opc.ready)
	if err != nil {
		ns.mu.Lock()
		ns.opc.forget(fresh)
		ns.mu.Unlock()
		return 0, err
	}
	cs := newChangeSet()
	ns.mu.Lock()
	ns.s.changes = cs
	n := ns.insertLocked(fresh)
	ns.s.changes = nil
	maxTS := fresh[0].TS
	ns.opc.add(fresh, encs)
	for _, op := range fresh {
		ns.haveOf(op.Origin).add(op.Seq)
		if op.Origin != ns.cfg.Peer {
			ns.foreign = true
		}
		if maxTS.Less(op.TS) {
			maxTS = op.TS
		}
	}
	ns.opCount += int64(len(fresh))
	ns.mu.Unlock()
	ns.clock.Observe(maxTS)
	ns.publish(cs.change())
	ns.afterApplyLocked(len(fresh))
	return n, nil
}

// OpsSince returns up to max ops that the holder of vv lacks, in Seq order
// per origin; more reports that there are further ones. It returns
// ErrCompacted when some needed ops were compacted away (use Snapshot).
func (ns *Namespace) OpsSince(vv map[string]uint64, max int) ([]Op, bool, error) {
	if max <= 0 || max > MaxOpsPerBatch {
		max = MaxOpsPerBatch
	}
	wants, err := ns.wants(vv)
	if err != nil {
		return nil, false, err
	}
	var out []Op
	for _, w := range wants {
		ops, more, err := ns.db.opsFrom(w.o, w.from, max-len(out))
		if err != nil {
			return nil, false, err
		}
		out = append(out, ops...)
		if more || len(out) >= max {
			return out, true, nil
		}
	}
	return out, false, nil
}

// want is an origin whose ops after from the holder of a version vector
// may lack.
type want struct {
	o    string
	from uint64
}

// wants lists, in origin order, the origins of which the holder of vv may
// lack ops, or returns ErrCompacted.
func (ns *Namespace) wants(vv map[string]uint64) ([]want, error) {
	if ns.shut.Load() {
		return nil, ErrClosed
	}
	ns.mu.RLock()
	defer ns.mu.RUnlock()
	var wants []want
	for _, o := range slices.Sorted(maps.Keys(ns.have)) {
		q := ns.have[o]
		from := vv[o]
		if q.contig <= from && len(q.extra) == 0 {
			continue
		}
		if from < ns.compacted[o] {
			return nil, fmt.Errorf("namespace: ops of %s after %d: %w", o, from, ErrCompacted)
		}
		wants = append(wants, want{o, from})
	}
	return wants, nil
}

// Batch is ops sealed for the wire, in the format of EncodeOps, from
// SealOpsSince.
type Batch struct {
	// Sealed is nil when N is 0. It is valid until Release.
	Sealed []byte
	N      int  // the number of ops
	More   bool // as OpsSince's more
	bufs   [2]*[]byte
}

// Release recycles the batch's buffers. Sealed must not be used after.
func (b *Batch) Release() {
	for i, p := range b.bufs {
		if p != nil {
			putBuf(p)
			b.bufs[i] = nil
		}
	}
	b.Sealed = nil
}

// SealOpsSince is OpsSince followed by EncodeOps, for anti-entropy
// answers: the same ops in the same order, the same more and errors. Recent
// ops come from the sync cache (opcache.go), others from the store as they
// are stored (opened, not decoded and encoded again); the batch is sealed
// once, into a recycled buffer when Config.SealTo is set. The caller must
// Release the batch.
func (ns *Namespace) SealOpsSince(vv map[string]uint64, max int) (Batch, error) {
	if max <= 0 || max > MaxOpsPerBatch {
		max = MaxOpsPerBatch
	}
	wants, err := ns.wants(vv)
	if err != nil {
		return Batch{}, err
	}
	t0 := time.Now()
	pp := getParts()
	parts := *pp
	defer func() { *pp = parts; putParts(pp) }()
	more, missed := false, false
	for _, w := range wants {
		var m, ok bool
		ns.mu.RLock()
		parts, m, ok = ns.opc.get(w.o, w.from, max-len(parts), parts)
		ns.mu.RUnlock()
		if !ok {
			missed = true
			if parts, m, err = ns.db.encodedFrom(w.o, w.from, max-len(parts), parts); err != nil {
				return Batch{}, err
			}
		}
		if m || len(parts) >= max {
			more = true
			break
		}
	}
	if len(parts) == 0 {
		return Batch{}, nil
	}
	b := Batch{N: len(parts), More: more}
	size := batchSize(parts)
	b.bufs[0] = getBuf(size)
	plain := appendBatch((*b.bufs[0])[:0], parts)
	if ns.cfg.SealTo != nil {
		b.bufs[1] = getBuf(size + sealRoom)
		b.Sealed, err = ns.cfg.SealTo((*b.bufs[1])[:0], plain)
		// What SealTo returns is recycled, should it not have fitted.
		*b.bufs[1] = b.Sealed
	} else {
		b.Sealed, err = ns.db.seal(plain)
	}
	if err != nil {
		b.Release()
		return Batch{}, fmt.Errorf("namespace: seal ops: %w", err)
	}
	if ns.cfg.Observe != nil {
		// How many answers miss the cache, and what they cost.
		op := "sync_cache"
		if missed {
			op = "sync_store"
		}
		ns.cfg.Observe(op, time.Since(t0))
	}
	return b, nil
}

// sealRoom is what a seal is expected to add (crypt.RecordOverhead is 29).
const sealRoom = 64

// maxPooled bounds the buffers kept for reuse: a rare huge answer (up to
// 64 MiB) should not stay in memory.
const maxPooled = 16 << 20

var bufPool sync.Pool // of *[]byte

// getBuf returns a recycled buffer of capacity at least n, or a new one.
func getBuf(n int) *[]byte {
	if p, _ := bufPool.Get().(*[]byte); p != nil {
		if cap(*p) >= n {
			return p
		}
	}
	// A little room, so that the next, slightly larger answer fits.
	b := make([]byte, 0, n+n/8)
	return &b
}

// partsPool recycles the lists of encodings an answer is made of (a
// list of 5000 grew by doubling to 120 KB for each answer).
var partsPool = sync.Pool{New: func() any { return new([][]byte) }}

func getParts() *[][]byte { return partsPool.Get().(*[][]byte) }

func putParts(p *[][]byte) {
	// Let go of the encodings: the cache may have evicted them.
	clear(*p)
	*p = (*p)[:0]
	partsPool.Put(p)
}

func putBuf(p *[]byte) {
	if cap(*p) <= maxPooled {
		*p = (*p)[:0]
		bufPool.Put(p)
	}
}

// Snapshot returns the sealed full state: the tree at the stability base
// plus every op after it, and the version vector they imply.
func (ns *Namespace) Snapshot() ([]byte, error) {
	ns.wmu.Lock()
	defer ns.wmu.Unlock()
	if ns.closed {
		return nil, ErrClosed
	}
	var plain []byte
	ns.mu.Lock()
	ops := make([]Op, len(ns.journal))
	for i, e := range ns.journal {
		ops[i] = e.op
	}
	ns.atBase(func(s *state) {
		plain = encodeCheckpoint(&checkpoint{base: ns.base, baseVV: ns.baseVV, st: s, ops: ops})
	})
	ns.mu.Unlock()
	b, err := ns.db.seal(plain)
	if err != nil {
		return nil, fmt.Errorf("namespace: seal snapshot: %w", err)
	}
	return b, nil
}

// InstallSnapshot replaces the local state with a snapshot (for a peer too
// far behind to catch up with OpsSince). Ops held locally that the snapshot
// lacks are kept and re-applied in Timestamp order. Subscribers get a
// Change with All set.
func (ns *Namespace) InstallSnapshot(b []byte) error {
	plain, err := ns.db.open(b)
	if err != nil {
		return fmt.Errorf("namespace: open snapshot: %w", err)
	}
	c, err := decodeCheckpoint(plain, nil)
	if err != nil {
		return err
	}
	for i := range c.ops {
		if err := validateOp(&c.ops[i]); err != nil {
			return fmt.Errorf("namespace: snapshot: %w", err)
		}
	}
	ns.wmu.Lock()
	defer ns.wmu.Unlock()
	if ns.closed {
		return ErrClosed
	}
	// What the snapshot covers.
	cover := map[string]*seqSet{}
	coverOf := func(o string) *seqSet {
		if cover[o] == nil {
			cover[o] = &seqSet{}
		}
		return cover[o]
	}
	for o, s := range c.baseVV {
		coverOf(o).contig = s
	}
	for _, op := range c.ops {
		coverOf(op.Origin).add(op.Seq)
	}
	// Our own ops the snapshot lacks.
	all := slices.Clone(c.ops)
	late := 0
	err = ns.db.scanOps(nil, func(op Op) error {
		if !coverOf(op.Origin).has(op.Seq) {
			coverOf(op.Origin).add(op.Seq)
			all = append(all, op)
			if !c.base.Less(op.TS) {
				late++
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("namespace: install snapshot: read log: %w", err)
	}
	if late > 0 {
		ns.log.Warn("namespace: local ops older than the snapshot's base; applying them late", "count", late)
	}
	slices.SortFunc(all, func(a, b Op) int { return a.TS.Compare(b.TS) })
	// The cache goes before the store's ops do, and comes back (empty,
	// its floors at the new have) with them.
	ns.mu.Lock()
	ns.opc.clear()
	ns.mu.Unlock()
	if err := ns.db.reset(); err != nil {
		return err
	}
	ns.ckptRefs = nil // reset dropped them
	w := ns.encodeForStore(&checkpoint{base: c.base, baseVV: c.baseVV, st: c.st})
	if err := ns.writeCheckpoint(w); err != nil {
		return err
	}
	if err := ns.db.putOps(all); err != nil {
		return err
	}
	comp := maps.Clone(c.baseVV)
	if err := ns.db.putCompacted(comp); err != nil {
		return err
	}
	ns.hasCkpt, ns.ckptBase = true, c.base
	ns.mu.Lock()
	if ns.cfg.TrackDropped {
		// What the old state referenced and the snapshot does not (files
		// deleted or overwritten while this peer was behind) is dropped.
		c.st.trackManifests()
		for m := range ns.s.mrefs {
			if c.st.mrefs[m] == 0 {
				c.st.gone[m] = true
			}
		}
		for m := range ns.s.gone {
			if c.st.mrefs[m] == 0 {
				c.st.gone[m] = true
			}
		}
	}
	ns.s, ns.journal, ns.base, ns.baseVV, ns.compacted = c.st, nil, c.base, c.baseVV, comp
	ns.have = cover
	ns.opc.reset(cover)
	ns.opCount = int64(len(all))
	ns.insertLocked(all)
	for o := range cover {
		if o != ns.cfg.Peer {
			ns.foreign = true
		}
	}
	if q := cover[ns.cfg.Peer]; q != nil && q.contig > ns.seq {
		ns.seq = q.contig
	}
	ns.mu.Unlock()
	ns.clock.Observe(c.base)
	if len(all) > 0 {
		ns.clock.Observe(all[len(all)-1].TS)
	}
	ns.publish(Change{All: true})
	return nil
}

// EncodeOps encodes and seals ops for the wire with Config.Seal.
func (ns *Namespace) EncodeOps(ops []Op) ([]byte, error) {
	b, err := EncodeOps(ops)
	if err != nil {
		return nil, err
	}
	s, err := ns.db.seal(b)
	if err != nil {
		return nil, fmt.Errorf("namespace: seal ops: %w", err)
	}
	return s, nil
}

// DecodeOps opens (Config.Open) and decodes ops from the wire.
func (ns *Namespace) DecodeOps(b []byte) ([]Op, error) {
	p, err := ns.db.open(b)
	if err != nil {
		return nil, fmt.Errorf("namespace: open ops: %w", err)
	}
	return DecodeOps(p)
}

// CheckRemote tells whether ApplyRemote would refuse ops for what they
// are, not for the state of this peer: a malformed op (ErrInvalid), or one
// stamped too far ahead of this peer's clock (ErrClockAhead). A receiver
// checks a push with it before acknowledging it.
func (ns *Namespace) CheckRemote(ops []Op) error {
	for i := range ops {
		if err := validateOp(&ops[i]); err != nil {
			return err
		}
		if ns.clock.ahead(ops[i].TS) {
			by := time.Duration(ops[i].TS.Wall - ns.clock.now()).Round(time.Second)
			ns.noteAhead(ops[i].Origin, by)
			return fmt.Errorf("namespace: op %s/%d stamped %s, %s ahead of this peer's clock (more than %s): %w",
				ops[i].Origin, ops[i].Seq, time.Unix(0, ops[i].TS.Wall).UTC().Format(time.RFC3339), by, MaxClockAhead, ErrClockAhead)
		}
	}
	return nil
}

// Refused reports whether err is ApplyRemote refusing the ops themselves
// (CheckRemote's errors): trying again will not help until they change or,
// for ErrClockAhead, the clocks agree.
func Refused(err error) bool {
	return errors.Is(err, ErrInvalid) || errors.Is(err, ErrClockAhead)
}
