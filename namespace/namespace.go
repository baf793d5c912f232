package namespace

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Defaults for Config.
const (
	DefaultCheckpointEvery = 10000
	DefaultRetention       = time.Hour
	// PeerHorizonWindow: peers not heard from for longer than this no longer
	// hold back the stability horizon.
	PeerHorizonWindow = 24 * time.Hour
)

// Config configures Open.
type Config struct {
	Dir  string // badger directory for the log and checkpoints
	Peer string // this peer's id (Origin); at most MaxPeerLen bytes
	// Seal encrypts op payloads and checkpoints at rest and on the wire
	// (names and inline data are secret); nil = no encryption (tests).
	// Seal must neither modify nor keep plain (the sync cache keeps it).
	Seal func(plain []byte) ([]byte, error)
	// SealTo, if set, is Seal writing into dst's capacity when it has room
	// (crypt.Keys.SealRecord): sync answers are then sealed into recycled
	// buffers rather than a fresh one each, zeroed by the runtime.
	SealTo func(dst, plain []byte) ([]byte, error)
	// Open reverses Seal. Its result must be a new slice (it is kept).
	Open func(sealed []byte) ([]byte, error)
	// SyncCacheBytes bounds the encodings of recent ops kept in memory
	// for anti-entropy answers (SealOpsSince); 0 = DefaultSyncCacheBytes,
	// negative = none (every answer is read from the store).
	SyncCacheBytes int
	// Replicate is called, outside all locks and on the writer's goroutine,
	// after local ops are durable; it returns when enough other peers hold
	// them durably. nil = local only.
	Replicate func(ctx context.Context, ops []Op) error
	Logger    *slog.Logger
	// CheckpointEvery is the number of applied ops between checkpoints
	// (0 = DefaultCheckpointEvery).
	CheckpointEvery int
	// Retention is how long ops are kept after a checkpoint covers them
	// (0 = DefaultRetention).
	Retention time.Duration
	// TrackDropped counts the inodes pointing at each manifest, so that
	// TakeDropped can tell chunk collection which ones no inode points at
	// any more (content replaced, inode purged or gone with a snapshot).
	TrackDropped bool
	// TrashRetention is the least time a deleted entry stays in the trash
	// before a checkpoint may purge it (0 = DefaultTrashRetention; see
	// purge.go for the other conditions).
	TrashRetention time.Duration
	// LazySync writes ops without an fsync each; they reach the disk
	// within SyncEvery, or at once on Sync. For peers whose durability
	// comes from replication to several machines (the peer calls Sync for
	// fsync(2)). A killed process loses nothing (the kernel holds the
	// writes); a power cut may lose up to SyncEvery of local changes.
	LazySync bool
	// SyncEvery bounds how long a lazily written op stays unsynced
	// (0 = 100ms).
	SyncEvery time.Duration
	// Observe, if set, is told how long each local commit took to write
	// its ops (op "commit"), and how long each SealOpsSince took to
	// gather and seal its ops ("sync_cache" when the cache held them all,
	// "sync_store" when some were read from the store). Called outside
	// all locks.
	Observe func(op string, d time.Duration)

	clockNow func() int64 // tests: replaces the physical clock
}

// entry is one op of the in-memory undo log.
type entry struct {
	op   Op
	undo []undoRec
}

// seqSet is the set of seqs received from one origin.
type seqSet struct {
	contig uint64
	extra  map[uint64]bool
}

func (q *seqSet) has(s uint64) bool { return s <= q.contig || q.extra[s] }

func (q *seqSet) add(s uint64) {
	switch {
	case s == q.contig+1:
		q.contig++
		for q.extra[q.contig+1] {
			delete(q.extra, q.contig+1)
			q.contig++
		}
	case s > q.contig+1:
		if q.extra == nil {
			q.extra = map[uint64]bool{}
		}
		q.extra[s] = true
	}
}

type peerInfo struct {
	stable   Timestamp // clock of its latest report whose ops we all hold
	acked    Timestamp // a base it was seen to hold every op up to (purge.go)
	heldAll  time.Time // when an exchange last found us holding every op it held
	lastSeen time.Time
	aheadAt  time.Time     // when its ops or clock were last refused as ahead (ErrClockAhead)
	ahead    time.Duration // by how much, then
}

// noteAhead records that peer's ops or clock were refused, by ahead.
func (ns *Namespace) noteAhead(peer string, ahead time.Duration) {
	ns.pmu.Lock()
	defer ns.pmu.Unlock()
	p := ns.peerLocked(peer)
	p.aheadAt, p.ahead = time.Now(), ahead
}

// peerLocked returns peer's record, made if new. Holds pmu.
func (ns *Namespace) peerLocked(peer string) *peerInfo {
	p := ns.peers[peer]
	if p == nil {
		p = &peerInfo{}
		ns.peers[peer] = p
	}
	return p
}

// ClockAhead returns the peers whose ops or clock this peer refused in the
// last two minutes for being more than MaxClockAhead ahead of its clock,
// with how far ahead they were. The map is the caller's.
func (ns *Namespace) ClockAhead() map[string]time.Duration {
	ns.pmu.Lock()
	defer ns.pmu.Unlock()
	out := map[string]time.Duration{}
	for id, p := range ns.peers {
		if !p.aheadAt.IsZero() && time.Since(p.aheadAt) < 2*time.Minute {
			out[id] = p.ahead
		}
	}
	return out
}

// Namespace is the replicated directory tree of a volume. It is safe for
// concurrent use.
type Namespace struct {
	cfg   Config
	log   *slog.Logger
	clock *Clock
	db    *store
	newID func() uint64

	// wmu serializes mutations (local writes, ApplyRemote, checkpoints,
	// InstallSnapshot, Close) and guards seq, sinceCkpt and closed.
	wmu       sync.Mutex
	seq       uint64
	sinceCkpt int
	closed    bool
	hasCkpt   bool               // a checkpoint exists in the store
	ckptBase  Timestamp          // the base of that checkpoint
	ckptRefs  map[inlineRef]bool // inline contents stored apart for it (guarded by wmu)

	// mu guards the fields below. Writers hold wmu and then mu for writing;
	// readers hold mu for reading only.
	mu        sync.RWMutex
	s         *state
	journal   []entry // ops newer than base, in Timestamp order, with undo records
	base      Timestamp
	baseVV    map[string]uint64
	have      map[string]*seqSet
	compacted map[string]uint64
	opCount   int64
	foreign   bool     // an op from another origin was seen
	opc       *opCache // recent ops' encodings, matching have (opcache.go)

	// pmu guards peers and ackSnaps. Taken before mu, never inside it.
	pmu      sync.Mutex
	peers    map[string]*peerInfo
	ackSnaps []ackSnap // recent vectors with their bases (purge.go)
	purged   int64     // trash entries purged since Open (atomic)

	// smu guards subs and subsDone, and serializes publishing.
	smu      sync.Mutex
	subs     []chan Change
	subsDone bool

	shut atomic.Bool // set by Close, for methods that do not take wmu

	syncStop, syncDone chan struct{} // the LazySync loop, if any
}

// Open opens (creating if needed) the namespace stored in cfg.Dir: it loads
// the last checkpoint and replays the log after it.
func Open(cfg Config) (*Namespace, error) {
	if cfg.Peer == "" || len(cfg.Peer) > MaxPeerLen {
		return nil, fmt.Errorf("namespace: open: peer id %q: %w", cfg.Peer, ErrInvalid)
	}
	if cfg.CheckpointEvery <= 0 {
		cfg.CheckpointEvery = DefaultCheckpointEvery
	}
	if cfg.Retention <= 0 {
		cfg.Retention = DefaultRetention
	}
	if cfg.TrashRetention <= 0 {
		cfg.TrashRetention = DefaultTrashRetention
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	db, err := openStore(cfg.Dir, log, cfg.Seal, cfg.Open, cfg.LazySync)
	if err != nil {
		return nil, err
	}
	ns := &Namespace{
		cfg:   cfg,
		log:   log,
		clock: NewClock(cfg.Peer),
		db:    db,
		newID: randomID,
		peers: map[string]*peerInfo{},
	}
	if cfg.clockNow != nil {
		ns.clock.now = cfg.clockNow
	}
	if err := ns.load(); err != nil {
		_ = db.close()
		return nil, err
	}
	// The loaded base is an acked point to offer peers from the start: the
	// first checkpoint can then purge what they all hold (purge.go).
	ns.mu.RLock()
	snap := ns.ackSnapLocked()
	ns.mu.RUnlock()
	ns.addAckSnap(snap)
	if cfg.LazySync {
		every := cfg.SyncEvery
		if every <= 0 {
			every = 100 * time.Millisecond
		}
		ns.syncStop = make(chan struct{})
		ns.syncDone = make(chan struct{})
		go ns.syncLoop(every)
	}
	return ns, nil
}

// syncLoop flushes lazily written ops to disk periodically.
func (ns *Namespace) syncLoop(every time.Duration) {
	defer close(ns.syncDone)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ns.syncStop:
			return
		case <-t.C:
			if err := ns.db.sync(); err != nil && !ns.shut.Load() {
				ns.log.Warn("namespace: periodic sync", "err", err)
			}
		}
	}
}

// Sync makes every op written so far durable on this peer's disk.
func (ns *Namespace) Sync() error {
	if ns.shut.Load() {
		return ErrClosed
	}
	if err := ns.db.sync(); err != nil {
		return fmt.Errorf("namespace: sync: %w", err)
	}
	return nil
}

// load reads the checkpoint and replays the log.
func (ns *Namespace) load() error {
	c, err := ns.db.loadCheckpoint()
	if err != nil {
		return err
	}
	if c == nil {
		c = &checkpoint{st: newState(), baseVV: map[string]uint64{}}
	} else {
		ns.hasCkpt, ns.ckptBase = true, c.base
	}
	ns.ckptRefs = c.refs
	comp, err := ns.db.loadCompacted()
	if err != nil {
		return err
	}
	if ns.cfg.TrackDropped {
		c.st.trackManifests()
	}
	ns.s, ns.base, ns.baseVV, ns.compacted = c.st, c.base, c.baseVV, comp
	ns.have = map[string]*seqSet{}
	for o, s := range c.baseVV {
		ns.haveOf(o).contig = s
	}
	if err := ns.db.scanSeqs(func(o string, s uint64) { ns.haveOf(o).add(s) }); err != nil {
		return fmt.Errorf("namespace: load index: %w", err)
	}
	if ns.opCount, err = ns.db.countOps(); err != nil {
		return fmt.Errorf("namespace: count ops: %w", err)
	}
	// Empty: what is stored so far is read from the store when asked for.
	budget := ns.cfg.SyncCacheBytes
	if budget == 0 {
		budget = DefaultSyncCacheBytes
	}
	ns.opc = newOpCache(budget)
	ns.opc.reset(ns.have)
	// Replay the ops the checkpoint does not cover: those after its base,
	// and (rarely) late ones older than the base but not in baseVV.
	var ops []Op
	covered := func(ts Timestamp, seq uint64) bool { return !ns.base.Less(ts) && seq <= ns.baseVV[ts.Peer] }
	if err := ns.db.scanOps(covered, func(op Op) error { ops = append(ops, op); return nil }); err != nil {
		return fmt.Errorf("namespace: replay: %w", err)
	}
	ns.insertLocked(ops)
	ns.clock.Observe(ns.base)
	for _, op := range ops {
		ns.clock.Observe(op.TS)
	}
	for o := range ns.have {
		if o != ns.cfg.Peer {
			ns.foreign = true
		}
	}
	if q := ns.have[ns.cfg.Peer]; q != nil {
		ns.seq = q.contig
	}
	return nil
}

func (ns *Namespace) haveOf(origin string) *seqSet {
	q := ns.have[origin]
	if q == nil {
		q = &seqSet{}
		ns.have[origin] = q
	}
	return q
}

// Close writes a checkpoint and closes the store. It is idempotent.
func (ns *Namespace) Close() error {
	ns.wmu.Lock()
	defer ns.wmu.Unlock()
	if ns.closed {
		return nil
	}
	ns.closed = true
	ns.shut.Store(true)
	if ns.syncStop != nil {
		close(ns.syncStop)
		<-ns.syncDone
	}
	err := ns.checkpointLocked()
	if cerr := ns.db.close(); err == nil && cerr != nil {
		err = fmt.Errorf("namespace: close: %w", cerr)
	}
	ns.smu.Lock()
	for _, ch := range ns.subs {
		close(ch)
	}
	ns.subs = nil
	ns.subsDone = true
	ns.smu.Unlock()
	return err
}

// insertLocked applies ops at their place in Timestamp order: it undoes the
// journal back to the earliest new op, then applies the merged sequence.
// Caller holds wmu and mu (or is single-threaded during load).
func (ns *Namespace) insertLocked(ops []Op) int {
	if len(ops) == 0 {
		return 0
	}
	ops = slices.Clone(ops)
	slices.SortFunc(ops, func(a, b Op) int { return a.TS.Compare(b.TS) })
	if !ns.base.Less(ops[0].TS) && !ns.base.IsZero() {
		ns.log.Warn("namespace: op older than the stability horizon; applying it late", "ts", ops[0].TS, "base", ns.base)
	}
	j := ns.journal
	pos := sort.Search(len(j), func(i int) bool { return !j[i].op.TS.Less(ops[0].TS) })
	tail := slices.Clone(j[pos:])
	for i := len(j) - 1; i >= pos; i-- {
		ns.s.undo(j[i].undo)
	}
	j = j[:pos]
	applied := 0
	var last Timestamp
	haveLast := pos > 0
	if haveLast {
		last = j[pos-1].op.TS
	}
	step := func(op Op, isNew bool) {
		if haveLast && op.TS == last {
			return // duplicate Timestamp: the same op
		}
		var rec []undoRec
		ns.s.rec = &rec
		ns.s.apply(&op)
		ns.s.rec = nil
		j = append(j, entry{op: op, undo: rec})
		last, haveLast = op.TS, true
		if isNew {
			applied++
		}
	}
	a, b := 0, 0
	for a < len(tail) || b < len(ops) {
		if b == len(ops) || (a < len(tail) && !ops[b].TS.Less(tail[a].op.TS)) {
			step(tail[a].op, false)
			a++
		} else {
			step(ops[b], true)
			b++
		}
	}
	ns.journal = j
	return applied
}

// commit stamps, persists, applies and replicates locally created ops.
// build runs under wmu and may read ns.s without mu (only wmu holders mutate).
func (ns *Namespace) commit(ctx context.Context, build func(s *state) ([]Op, error)) ([]Op, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("namespace: %w", err)
	}
	ns.wmu.Lock()
	if ns.closed {
		ns.wmu.Unlock()
		return nil, ErrClosed
	}
	ops, err := build(ns.s)
	if err != nil || len(ops) == 0 {
		ns.wmu.Unlock()
		return nil, err
	}
	for i := range ops {
		ns.seq++
		ops[i].TS = ns.clock.Now()
		ops[i].Origin = ns.cfg.Peer
		ops[i].Seq = ns.seq
	}
	t0 := time.Now()
	encs, err := ns.db.appendOps(ops, ns.opc.ready)
	if err != nil {
		ns.seq -= uint64(len(ops))
		ns.wmu.Unlock()
		return nil, err
	}
	took := time.Since(t0)
	ns.mu.Lock()
	ns.insertLocked(ops)
	for _, op := range ops {
		ns.haveOf(op.Origin).add(op.Seq)
	}
	ns.opc.add(ops, encs)
	ns.opCount += int64(len(ops))
	ns.mu.Unlock()
	ns.afterApplyLocked(len(ops))
	ns.wmu.Unlock()
	if ns.cfg.Observe != nil {
		ns.cfg.Observe("commit", took)
	}
	if ns.cfg.Replicate != nil {
		if err := ns.cfg.Replicate(ctx, slices.Clone(ops)); err != nil {
			return ops, fmt.Errorf("namespace: replicate: %w", err)
		}
	}
	return ops, nil
}

func (ns *Namespace) afterApplyLocked(n int) {
	ns.sinceCkpt += n
	if ns.sinceCkpt >= ns.cfg.CheckpointEvery {
		if err := ns.checkpointLocked(); err != nil {
			ns.log.Error("namespace: checkpoint", "err", err)
		}
	}
}

// atBase calls fn with the state as of ns.base (the journal undone), then
// redoes the journal. Caller holds wmu and mu.
func (ns *Namespace) atBase(fn func(s *state)) {
	for i := len(ns.journal) - 1; i >= 0; i-- {
		ns.s.undo(ns.journal[i].undo)
	}
	fn(ns.s)
	j := ns.journal
	ns.journal = nil
	for _, e := range j {
		var rec []undoRec
		ns.s.rec = &rec
		ns.s.apply(&e.op)
		ns.s.rec = nil
		ns.journal = append(ns.journal, entry{op: e.op, undo: rec})
	}
}

// checkpointLocked advances the base to the stability horizon, writes a
// checkpoint and compacts old ops. Caller holds wmu.
func (ns *Namespace) checkpointLocked() error {
	ns.sinceCkpt = 0
	h := ns.Horizon()
	line := ns.purgeLine()
	ns.mu.Lock()
	n := 0
	for n < len(ns.journal) && !h.Less(ns.journal[n].op.TS) {
		op := &ns.journal[n].op
		ns.base = op.TS
		ns.baseVV[op.Origin] = max(ns.baseVV[op.Origin], op.Seq)
		n++
	}
	ns.journal = slices.Delete(ns.journal, 0, n)
	base := ns.base
	snap := ns.ackSnapLocked()
	if base.Less(line) {
		line = base
	}
	before := ns.clock.now() - int64(ns.cfg.TrashRetention)
	refNodes, refInodes := ns.journalRefs()
	keep := func(id NodeID, ino InodeID) bool { return refNodes[id] || refInodes[ino] }
	due := ns.trashDueLocked(line, before, keep)
	if !ns.hasCkpt || base != ns.ckptBase || due {
		var w ckptWrite
		purged := 0
		ns.atBase(func(s *state) {
			if due {
				purged = s.purgeTrash(line, before, keep)
			}
			// Encode now: the state changes again when atBase returns.
			w = ns.encodeForStore(&checkpoint{base: ns.base, baseVV: ns.baseVV, st: s})
		})
		ns.mu.Unlock()
		if purged > 0 {
			atomic.AddInt64(&ns.purged, int64(purged))
			ns.log.Info("namespace: purged deleted entries no peer can need any more", "entries", purged, "deleted_before", time.Unix(0, line.Wall).UTC())
		}
		if err := ns.writeCheckpoint(w); err != nil {
			return err
		}
		ns.hasCkpt, ns.ckptBase = true, base
	} else {
		ns.mu.Unlock()
	}
	ns.addAckSnap(snap)
	cut := Timestamp{Wall: time.Now().Add(-ns.cfg.Retention).UnixNano()}
	if base.Less(cut) {
		cut = base
	}
	if cut.IsZero() {
		return nil
	}
	ns.mu.Lock()
	comp := maps.Clone(ns.compacted)
	ns.opc.compact(cut)
	ns.mu.Unlock()
	if comp == nil {
		comp = map[string]uint64{}
	}
	k, err := ns.db.compact(cut, comp)
	if err != nil {
		return err
	}
	ns.mu.Lock()
	ns.compacted = comp
	ns.opCount -= int64(k)
	ns.mu.Unlock()
	return nil
}

// apartMin is the smallest inline content a stored checkpoint leaves out
// and keeps under its own key, written once per version of the file.
const apartMin = 256

// ckptWrite is an encoded checkpoint and the inline contents it needs.
type ckptWrite struct {
	blob []byte
	add  map[inlineRef][]byte // contents to store (not held yet)
	refs map[inlineRef]bool   // every content it references
}

// encodeForStore encodes c for this peer's store. Caller holds wmu. The
// inline slices in add are the state's own: they are never changed in
// place (an inode is cloned to change).
func (ns *Namespace) encodeForStore(c *checkpoint) ckptWrite {
	w := ckptWrite{add: map[inlineRef][]byte{}, refs: map[inlineRef]bool{}}
	c.apart = func(in *Inode) bool {
		if len(in.Content.Inline) < apartMin {
			return false
		}
		r := inlineRef{in.ID, in.Version}
		w.refs[r] = true
		if !ns.ckptRefs[r] {
			w.add[r] = in.Content.Inline
		}
		return true
	}
	w.blob = encodeCheckpoint(c)
	return w
}

// writeCheckpoint stores w and drops the contents only the previous
// checkpoint used. Caller holds wmu.
func (ns *Namespace) writeCheckpoint(w ckptWrite) error {
	var drop []inlineRef
	for r := range ns.ckptRefs {
		if !w.refs[r] {
			drop = append(drop, r)
		}
	}
	err := ns.db.putCheckpoint(w.blob, w.add, drop)
	if err == nil {
		ns.ckptRefs = w.refs
	}
	return err
}

// Checkpoint writes a checkpoint now (and compacts). Open and the periodic
// trigger call it too; operators may call it before a backup.
func (ns *Namespace) Checkpoint() error {
	ns.wmu.Lock()
	defer ns.wmu.Unlock()
	if ns.closed {
		return ErrClosed
	}
	return ns.checkpointLocked()
}

// Horizon returns the stability horizon: no op with a smaller Timestamp is
// expected to arrive any more. See ObservePeer.
func (ns *Namespace) Horizon() Timestamp {
	return ns.lowest(ns.clock.Last(), func(p *peerInfo) Timestamp { return p.stable })
}

// lowest returns the lowest of h and of f over the peers heard from in
// PeerHorizonWindow; zero when other peers exist and none was heard from
// yet, h for a standalone namespace. Takes pmu, then mu for reading.
func (ns *Namespace) lowest(h Timestamp, f func(*peerInfo) Timestamp) Timestamp {
	ns.pmu.Lock()
	defer ns.pmu.Unlock()
	if len(ns.peers) == 0 {
		ns.mu.RLock()
		foreign := ns.foreign
		ns.mu.RUnlock()
		if foreign || ns.cfg.Replicate != nil {
			return Timestamp{}
		}
		return h // standalone: no other peer can produce ops
	}
	now := time.Now()
	for _, p := range ns.peers {
		if now.Sub(p.lastSeen) > PeerHorizonWindow {
			continue
		}
		if v := f(p); v.Less(h) {
			h = v
		}
	}
	return h
}

// ObservePeer records what a peer reported in an anti-entropy exchange: its
// version vector and clock. Once this namespace holds every op in vv, every
// op the peer can still send has a Timestamp above clock, which lets the
// horizon advance. The replication layer calls it after each exchange.
func (ns *Namespace) ObservePeer(peer string, vv map[string]uint64, clock Timestamp) {
	if peer == ns.cfg.Peer {
		return
	}
	if ns.clock.ahead(clock) {
		by := time.Duration(clock.Wall - ns.clock.now()).Round(time.Second)
		ns.log.Warn("namespace: a peer's clock is ahead of ours; not following it", "peer", peer, "ahead", by, "max", MaxClockAhead)
		ns.noteAhead(peer, by)
		return
	}
	ns.clock.Observe(clock)
	ns.mu.RLock()
	ok := true
	for o, s := range vv {
		if q := ns.have[o]; s > 0 && (q == nil || q.contig < s) {
			ok = false
			break
		}
	}
	ns.mu.RUnlock()
	ns.pmu.Lock()
	defer ns.pmu.Unlock()
	p := ns.peerLocked(peer)
	p.lastSeen = time.Now()
	if ok && p.stable.Less(clock) {
		p.stable = clock
	}
	if ok {
		p.heldAll = time.Now()
		// Both ways in one exchange: it holds all we held at some base,
		// and we hold all it holds (purge.go).
		if a := ns.ackedByLocked(vv); p.acked.Less(a) {
			p.acked = a
		}
	}
}

// ---- reads ----

// Lookup returns the entry displayed as name in directory parent (conflict
// copies are found by their displayed names). ErrNotExist if there is none.
func (ns *Namespace) Lookup(parent NodeID, name string) (Entry, error) {
	ns.mu.RLock()
	defer ns.mu.RUnlock()
	if err := ns.checkDir(parent); err != nil {
		return Entry{}, err
	}
	id, ok := ns.s.lookup(parent, name)
	if !ok {
		return Entry{}, fmt.Errorf("namespace: lookup %q in %d: %w", name, parent, ErrNotExist)
	}
	e, _ := ns.s.entry(id)
	return e, nil
}

// checkDir checks that dir is a live directory. Caller holds mu (or wmu).
func (ns *Namespace) checkDir(dir NodeID) error {
	if dir == RootID {
		return nil
	}
	n := ns.s.nodes[dir]
	if n == nil || !ns.s.live(dir) {
		return fmt.Errorf("namespace: directory %d: %w", dir, ErrNotExist)
	}
	if !ns.s.isDirInode(n.inode) {
		return fmt.Errorf("namespace: %d: %w", dir, ErrNotDir)
	}
	return nil
}

// Get returns a live node's entry; ErrNotExist if it is missing or deleted.
func (ns *Namespace) Get(node NodeID) (Entry, error) {
	ns.mu.RLock()
	defer ns.mu.RUnlock()
	if !ns.s.live(node) {
		return Entry{}, fmt.Errorf("namespace: node %d: %w", node, ErrNotExist)
	}
	e, _ := ns.s.entry(node)
	return e, nil
}

// GetInode returns an inode that has a live dentry; ErrNotExist otherwise.
// The returned value (including Xattrs and Inline) belongs to the caller.
func (ns *Namespace) GetInode(id InodeID) (Inode, error) {
	ns.mu.RLock()
	defer ns.mu.RUnlock()
	in := ns.s.inodes[id]
	if in == nil || !ns.s.inodeLive(id) {
		return Inode{}, fmt.Errorf("namespace: inode %d: %w", id, ErrNotExist)
	}
	return ns.s.inodeView(in), nil
}

// HasInlineContent reports whether the live inode id is a file whose
// content is held in the namespace (no manifest). Unlike GetInode it copies
// nothing: the mount asks it for every read it may serve from memory.
func (ns *Namespace) HasInlineContent(id InodeID) bool {
	ns.mu.RLock()
	defer ns.mu.RUnlock()
	in := ns.s.inodes[id]
	return in != nil && in.Type == File && in.Content.Manifest == ([32]byte{}) && ns.s.inodeLive(id)
}

// ReadDir returns the entries of a directory sorted by displayed name. The
// slice belongs to the caller.
func (ns *Namespace) ReadDir(dir NodeID) ([]Entry, error) {
	ns.mu.RLock()
	defer ns.mu.RUnlock()
	if err := ns.checkDir(dir); err != nil {
		return nil, err
	}
	d := ns.s.dirs[dir]
	if d == nil {
		return []Entry{}, nil
	}
	type ref struct {
		name string
		id   NodeID
	}
	refs := make([]ref, 0, d.n)
	for name, g := range d.byRaw {
		refs = append(refs, ref{name, g[0].id})
		for _, r := range g[1:] {
			refs = append(refs, ref{d.disp[r.id], r.id})
		}
	}
	slices.SortFunc(refs, func(a, b ref) int { return strings.Compare(a.name, b.name) })
	out := make([]Entry, len(refs))
	for i, r := range refs {
		n := ns.s.nodes[r.id]
		e := &out[i]
		e.Node, e.Parent, e.Name = r.id, dir, r.name
		in := ns.s.inodes[n.inode]
		if in == nil {
			continue
		}
		switch {
		case in.Xattrs != nil || in.Content.Inline != nil:
			e.Inode = ns.s.inodeView(in)
		case in.Type != Dir && len(ns.s.links[in.ID]) == 1:
			e.Inode = *in
			e.Inode.Nlink = 1 // its only dentry is this one, in a live directory
		default:
			e.Inode = *in
			e.Inode.Nlink = ns.s.nlink(in)
		}
	}
	return out, nil
}

// Path returns the displayed path of a live node ("/" for the root).
func (ns *Namespace) Path(node NodeID) (string, error) {
	ns.mu.RLock()
	defer ns.mu.RUnlock()
	if !ns.s.live(node) {
		return "", fmt.Errorf("namespace: path of %d: %w", node, ErrNotExist)
	}
	p, _ := ns.s.path(node)
	return p, nil
}

// InodePath returns the displayed path of one of the inode's live names
// (the first, for a file with hard links).
func (ns *Namespace) InodePath(ino InodeID) (string, error) {
	ns.mu.RLock()
	defer ns.mu.RUnlock()
	for _, node := range ns.s.links[ino] {
		if ns.s.live(node) {
			p, _ := ns.s.path(node)
			return p, nil
		}
	}
	return "", fmt.Errorf("namespace: path of inode %d: %w", ino, ErrNotExist)
}

// Resolve walks a slash-separated path of displayed names from the root.
func (ns *Namespace) Resolve(p string) (Entry, error) {
	ns.mu.RLock()
	defer ns.mu.RUnlock()
	id := RootID
	for _, part := range strings.Split(p, "/") {
		if part == "" || part == "." {
			continue
		}
		if err := ns.checkDir(id); err != nil {
			return Entry{}, fmt.Errorf("namespace: resolve %q: %w", p, err)
		}
		next, ok := ns.s.lookup(id, part)
		if !ok {
			return Entry{}, fmt.Errorf("namespace: resolve %q: %w", p, ErrNotExist)
		}
		id = next
	}
	e, _ := ns.s.entry(id)
	return e, nil
}

// Stats returns counts for operators and statfs. It scans all nodes.
func (ns *Namespace) Stats() Stats {
	ns.mu.RLock()
	defer ns.mu.RUnlock()
	st := Stats{Ops: ns.opCount, UndoOps: len(ns.journal)}
	liveInodes := map[InodeID]bool{InodeID(RootID): true}
	for id, n := range ns.s.nodes {
		if ns.s.live(id) {
			st.Nodes++
			if !liveInodes[n.inode] {
				liveInodes[n.inode] = true
				if in := ns.s.inodes[n.inode]; in != nil && in.Type == File {
					st.FileBytes += in.Size
				}
			}
		} else if n.parent == TrashID {
			st.Trashed++
		}
	}
	st.Inodes = len(liveInodes)
	st.Base = ns.base
	st.Purged = atomic.LoadInt64(&ns.purged)
	return st
}

// TakeDropped returns the manifests that inodes pointed at and no inode
// points at now, since the last call (or Open), and forgets them. Nil
// without Config.TrackDropped. Hints only: a manifest can be named again
// later (an undone op, another file with the same content).
func (ns *Namespace) TakeDropped() [][32]byte {
	ns.mu.Lock()
	defer ns.mu.Unlock()
	var out [][32]byte
	for m := range ns.s.gone {
		if ns.s.mrefs[m] == 0 {
			out = append(out, m)
		}
	}
	if ns.s.gone != nil {
		clear(ns.s.gone)
	}
	return out
}

// HeldAll returns when an exchange with peer (ObservePeer) last found this
// namespace holding every op the peer held; zero if never.
func (ns *Namespace) HeldAll(peer string) time.Time {
	ns.pmu.Lock()
	defer ns.pmu.Unlock()
	if p := ns.peers[peer]; p != nil {
		return p.heldAll
	}
	return time.Time{}
}

// Manifests returns the manifest of every inode that has one, the
// trash's and the orphans' included: every root of chunked content the
// namespace references.
func (ns *Namespace) Manifests() [][32]byte {
	ns.mu.RLock()
	defer ns.mu.RUnlock()
	seen := make(map[[32]byte]bool)
	var out [][32]byte
	for _, in := range ns.s.inodes {
		if m := in.Content.Manifest; m != ([32]byte{}) && !seen[m] {
			seen[m] = true
			out = append(out, m)
		}
	}
	return out
}

// VersionVector returns the highest contiguous Seq received per origin.
// The map belongs to the caller.
func (ns *Namespace) VersionVector() map[string]uint64 {
	ns.mu.RLock()
	defer ns.mu.RUnlock()
	vv := make(map[string]uint64, len(ns.have))
	for o, q := range ns.have {
		if q.contig > 0 {
			vv[o] = q.contig
		}
	}
	return vv
}

// Clock returns the current HLC reading (for ObservePeer on the other side).
func (ns *Namespace) Clock() Timestamp { return ns.clock.Last() }

// ---- subscriptions ----

// Subscribe returns a channel of changes made by remote ops (ApplyRemote,
// InstallSnapshot). The channel has a buffer of one; when the consumer is
// slow, pending changes are merged, so apply never blocks. It is closed by
// Close.
func (ns *Namespace) Subscribe() <-chan Change {
	ch := make(chan Change, 1)
	ns.smu.Lock()
	if ns.subsDone {
		close(ch)
	} else {
		ns.subs = append(ns.subs, ch)
	}
	ns.smu.Unlock()
	return ch
}

func (ns *Namespace) publish(c Change) {
	ns.smu.Lock()
	defer ns.smu.Unlock()
	for _, ch := range ns.subs {
		select {
		case ch <- c:
			continue
		default:
		}
		var old Change
		select {
		case old = <-ch:
		default:
		}
		ch <- mergeChanges(old, c)
	}
}

// changeSet accumulates what applying ops touched.
type changeSet struct {
	nodes  map[NodeID]bool
	inodes map[InodeID]bool
	dirs   map[NodeID]bool
	names  map[DirName]bool
}

func newChangeSet() *changeSet {
	return &changeSet{nodes: map[NodeID]bool{}, inodes: map[InodeID]bool{}, dirs: map[NodeID]bool{}, names: map[DirName]bool{}}
}

func (c *changeSet) node(id NodeID)   { c.nodes[id] = true }
func (c *changeSet) inode(id InodeID) { c.inodes[id] = true }
func (c *changeSet) dir(d NodeID, name string) {
	c.dirs[d] = true
	c.names[DirName{d, name}] = true
}

const maxChangeItems = 1 << 16

func (c *changeSet) change() Change {
	if len(c.nodes)+len(c.inodes)+len(c.names) > maxChangeItems {
		return Change{All: true}
	}
	ch := Change{
		Nodes:  slices.Sorted(maps.Keys(c.nodes)),
		Inodes: slices.Sorted(maps.Keys(c.inodes)),
		Dirs:   slices.Sorted(maps.Keys(c.dirs)),
	}
	for dn := range c.names {
		ch.Names = append(ch.Names, dn)
	}
	slices.SortFunc(ch.Names, func(a, b DirName) int {
		if a.Dir != b.Dir {
			if a.Dir < b.Dir {
				return -1
			}
			return 1
		}
		return strings.Compare(a.Name, b.Name)
	})
	return ch
}

func mergeChanges(a, b Change) Change {
	if a.All || b.All {
		return Change{All: true}
	}
	c := newChangeSet()
	for _, x := range []Change{a, b} {
		for _, id := range x.Nodes {
			c.node(id)
		}
		for _, id := range x.Inodes {
			c.inode(id)
		}
		for _, id := range x.Dirs {
			c.dirs[id] = true
		}
		for _, dn := range x.Names {
			c.names[dn] = true
		}
	}
	return c.change()
}
