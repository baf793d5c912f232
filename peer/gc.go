package peer

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/reefproject/reef/addr"
	"github.com/reefproject/reef/membership"
)

// Chunk collection: each peer deletes the shards it holds of chunks that
// nothing references any more, so that deleting and overwriting files
// gives the space back.
//
// Candidates come from the namespace: once no inode points at a manifest
// any more (contents replaced, inodes purged from the trash: namespace
// TakeDropped), the manifest and every chunk it lists become candidates,
// for the chunks this peer holds a shard of. Nothing else is
// ever collected, so chunks the namespace never named (`reef put` files,
// uploads in progress) are safe by construction. A candidate is deleted
// once, after the grace period (--gc-grace, 1 h) since it became one:
//   - no chunk the namespace references now (every manifest of every
//     inode, the trash's included, walked to its chunks) is deleted;
//   - nor any chunk a live peer pins: its uploads in progress and
//     store.PinLinger after, and the versions its mount's open files are
//     read from, unlinked ones included, and take unchanged blocks from
//     (store/pins.go, fs keepOld and pinRead), asked from every live peer at each sweep (no
//     answer from one: no sweep); a pinned candidate waits its grace again;
//   - nor any chunk whose shard here was written or asked about since it
//     became a candidate, or since the pins were asked (a writer pins a
//     chunk before it writes or asks for any shard of it, and a dedup
//     check finds it here: the touch resets the candidate's clock, under
//     the lock its deletion takes);
//   - and no sweep runs while a member is suspect or dead (an unreachable
//     peer's uploads cannot be asked about), nor before this peer holds
//     every op each live peer held after the sweep fell due (a file
//     committed on the other side of a partition that just healed may
//     reuse a candidate's chunks).
//
// The candidates survive restarts (DataDir/gc-candidates); hints that
// arrive in the moment before a peer dies are lost, and their chunks stay
// (space, not data).

const (
	gcFile         = "gc-candidates"
	gcRecord       = addr.Size + 8
	gcMaxFile      = 1 << 30
	gcMaxPins      = 64 << 20
	gcHintTries    = 5
	DefaultGCGrace = time.Hour
	gcPinsTimeout  = 30 * time.Second
)

// collector is the chunk collection of one peer.
type collector struct {
	p     *Peer
	grace time.Duration

	hmu   sync.Mutex
	hints []addr.Addr       // dropped manifests whose walk failed, to retry
	tries map[addr.Addr]int // failed walks per manifest

	mu           sync.Mutex              // guards cands; held across a candidate's deletion
	cands        map[addr.Addr]time.Time // chunk -> since when it is a candidate
	active       atomic.Bool             // len(cands) > 0: touches are recorded
	dirty        bool                    // cands changed since the last save
	deleted      atomic.Int64            // shards deleted since start
	deletedBytes atomic.Int64            // and their bytes
	// sweepFrom: a sweep is due; it runs once this peer holds every op
	// each live peer held after then (its census must not miss a file
	// another peer committed, during a partition say).
	sweepFrom time.Time
}

func newCollector(p *Peer, grace time.Duration) *collector {
	c := &collector{p: p, grace: grace, cands: map[addr.Addr]time.Time{}, tries: map[addr.Addr]int{}}
	c.load()
	return c
}

// touch records that a shard of a was written or asked about here.
func (c *collector) touch(a addr.Addr) {
	if c == nil || !c.active.Load() {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.cands[a]; ok {
		c.cands[a] = time.Now()
		c.dirty = true
	}
}

// isCandidate reports whether chunk a waits for collection here.
func (c *collector) isCandidate(a addr.Addr) bool {
	if c == nil || !c.active.Load() {
		return false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	_, ok := c.cands[a]
	return ok
}

// load reads the candidates saved by an earlier run.
func (c *collector) load() {
	path := filepath.Join(c.p.cfg.DataDir, gcFile)
	f, err := os.Open(path)
	if err != nil {
		return
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, gcMaxFile+1))
	if err != nil || len(b) > gcMaxFile || len(b)%gcRecord != 0 {
		c.p.log.Warn("gc: ignoring a damaged candidates file (their chunks stay)", "path", path, "bytes", len(b), "err", err)
		return
	}
	for i := 0; i < len(b); i += gcRecord {
		var a addr.Addr
		copy(a[:], b[i:])
		c.cands[a] = time.Unix(0, int64(binary.BigEndian.Uint64(b[i+addr.Size:])))
	}
	c.active.Store(len(c.cands) > 0)
}

// saveLocked writes the candidates (tmp file, fsync, rename). Holds mu.
func (c *collector) saveLocked() error {
	if !c.dirty {
		return nil
	}
	b := make([]byte, 0, len(c.cands)*gcRecord)
	for a, t := range c.cands {
		b = append(b, a[:]...)
		b = binary.BigEndian.AppendUint64(b, uint64(t.UnixNano()))
	}
	path := filepath.Join(c.p.cfg.DataDir, gcFile)
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("gc: save candidates: %w", err)
	}
	if _, err := f.Write(b); err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("gc: save candidates: %w", err)
	}
	c.dirty = false
	return nil
}

// walkHints turns the manifests the namespace dropped into candidates:
// every chunk they list that this peer holds a shard of. The maintenance
// pass calls it, then sweep.
func (c *collector) walkHints(ctx context.Context) error {
	c.hmu.Lock()
	hints := c.hints
	c.hints = nil
	c.hmu.Unlock()
	for _, m := range c.p.ns.TakeDropped() {
		hints = append(hints, addr.Addr(m))
	}
	if len(hints) == 0 {
		return nil
	}
	seen := map[addr.Addr]bool{}
	var add []addr.Addr
	var retry []addr.Addr
	for _, root := range hints {
		if seen[root] {
			continue
		}
		seen[root] = true
		es, err := c.p.store.Stripes(ctx, root)
		if err != nil {
			if ctx.Err() != nil {
				retry = append(retry, root)
				continue
			}
			c.hmu.Lock()
			c.tries[root]++
			n := c.tries[root]
			c.hmu.Unlock()
			if n < gcHintTries {
				retry = append(retry, root)
			} else {
				c.p.log.Warn("gc: cannot read a dropped manifest; its chunks stay", "manifest", root.Short(), "err", err)
			}
			continue
		}
		for _, e := range es {
			if seen[e.Addr] && e.Addr != root {
				continue
			}
			seen[e.Addr] = true
			if idx, err := c.p.listLocal(ctx, e.Addr); err == nil && len(idx) > 0 {
				add = append(add, e.Addr)
			}
		}
		c.hmu.Lock()
		delete(c.tries, root)
		c.hmu.Unlock()
	}
	if len(retry) > 0 {
		c.hmu.Lock()
		c.hints = append(c.hints, retry...)
		c.hmu.Unlock()
	}
	if len(add) == 0 {
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	now := time.Now()
	for _, a := range add {
		if _, ok := c.cands[a]; !ok {
			c.cands[a] = now
			c.dirty = true
		}
	}
	c.active.Store(len(c.cands) > 0)
	return c.saveLocked()
}

// sweep deletes the local shards of the due candidates that nothing
// references, pins or touched (see above).
func (c *collector) sweep(ctx context.Context) error {
	c.mu.Lock()
	due := 0
	limit := time.Now().Add(-c.grace)
	for _, t := range c.cands {
		if !t.After(limit) {
			due++
		}
	}
	c.mu.Unlock()
	if due == 0 {
		return nil
	}
	for _, m := range c.p.node.Members() {
		if m.State != membership.StateAlive && m.State != membership.StateLeft {
			c.p.log.Debug("gc: sweep put off: a member is not alive", "member", m.ID, "state", m.State.String())
			c.sweepFrom = time.Time{}
			return nil
		}
	}
	// The namespace must hold what every live peer held since the sweep
	// became due: an exchange that began after then (requests end within
	// nsTimeout) found nothing it lacked.
	if c.sweepFrom.IsZero() || time.Since(c.sweepFrom) > 10*time.Minute {
		c.sweepFrom = time.Now()
		return nil
	}
	for _, m := range c.p.node.Live() {
		if m.ID != c.p.id && !c.p.ns.HeldAll(m.ID).After(c.sweepFrom.Add(nsTimeout)) {
			c.p.log.Debug("gc: sweep put off: not caught up with a peer yet", "peer", m.ID)
			return nil
		}
	}
	c.sweepFrom = time.Time{}
	// What the namespace references (every inode's manifest, walked), then
	// what the live peers pin.
	refs, pinned := map[addr.Addr]bool{}, map[addr.Addr]bool{}
	walk := func(refs map[addr.Addr]bool, roots []addr.Addr) error {
		for _, r := range roots {
			if refs[r] {
				continue
			}
			es, err := c.p.store.Stripes(ctx, r)
			if err != nil {
				return fmt.Errorf("gc: walking %s: %w", r.Short(), err)
			}
			refs[r] = true
			for _, e := range es {
				refs[e.Addr] = true
			}
		}
		return nil
	}
	var roots []addr.Addr
	for _, m := range c.p.ns.Manifests() {
		roots = append(roots, addr.Addr(m))
	}
	if err := walk(refs, roots); err != nil {
		return err
	}
	// Then what every live peer pins. The time is taken first: a touch
	// after it keeps the candidate.
	asked := time.Now()
	for _, m := range c.p.node.Live() {
		pr, pc, err := c.pinsOf(ctx, m.ID)
		if err != nil {
			return fmt.Errorf("gc: pins of %s: %w", m.ID, err)
		}
		if err := walk(pinned, pr); err != nil {
			return err
		}
		for _, a := range pc {
			pinned[a] = true
		}
	}
	limit = asked.Add(-c.grace)
	var deleted, bytes int64
	c.mu.Lock()
	var todo []addr.Addr
	for a, t := range c.cands {
		switch {
		case refs[a]:
			delete(c.cands, a) // a file has it: its drop makes it a candidate again
			c.dirty = true
		case pinned[a]:
			c.cands[a] = asked // in use now: its grace starts again
			c.dirty = true
		case !t.After(limit):
			todo = append(todo, a)
		}
	}
	c.mu.Unlock()
	for _, a := range todo {
		if ctx.Err() != nil {
			break
		}
		n, b, ok := c.collect(ctx, a, limit)
		deleted += n
		bytes += b
		if ok {
			c.mu.Lock()
			delete(c.cands, a)
			c.dirty = true
			c.mu.Unlock()
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.active.Store(len(c.cands) > 0)
	c.deleted.Add(deleted)
	c.deletedBytes.Add(bytes)
	if deleted > 0 {
		c.p.log.Info("gc: deleted shards of chunks nothing references", "shards", deleted, "bytes", bytes, "candidates_left", len(c.cands))
	}
	return c.saveLocked()
}

// collect deletes this peer's shards of candidate a unless a touch since
// limit kept it, holding mu (touch waits: a writer's check after the
// deletion finds the shard gone and writes it again). ok: a is done with.
func (c *collector) collect(ctx context.Context, a addr.Addr, limit time.Time) (deleted, bytes int64, ok bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if t, still := c.cands[a]; !still || t.After(limit) {
		return 0, 0, false
	}
	type held struct {
		key  []byte
		size int64
	}
	var hs []held
	if err := c.p.bs.List(ctx, a[:], func(key []byte, size int64) error {
		if len(key) == addr.Size+2 {
			hs = append(hs, held{append([]byte(nil), key...), size})
		}
		return nil
	}); err != nil {
		return 0, 0, false
	}
	ok = true
	for _, h := range hs {
		if err := c.p.bs.Delete(ctx, h.key); err != nil {
			c.p.log.Warn("gc: deleting a shard", "chunk", a.Short(), "err", err)
			ok = false
			continue
		}
		deleted++
		bytes += h.size
	}
	return deleted, bytes, ok
}

// pinsOf asks a peer what it pins (handleGCPins).
func (c *collector) pinsOf(ctx context.Context, peer string) (roots, chunks []addr.Addr, err error) {
	if peer == c.p.id {
		r, ch := c.p.store.Pinned()
		return r, ch, nil
	}
	ctx, cancel := context.WithTimeout(ctx, gcPinsTimeout)
	defer cancel()
	resp, err := c.p.net.request(ctx, http.MethodGet, peer, "/v1/gc/pins", nil)
	if err != nil {
		return nil, nil, err
	}
	defer drain(resp)
	if resp.StatusCode != http.StatusOK {
		return nil, nil, peerError(resp)
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, gcMaxPins+1))
	if err != nil {
		return nil, nil, err
	}
	return parsePins(b)
}

// parsePins decodes a pins answer: a 4-byte big-endian count of roots, the
// roots, then the chunks, 32 bytes each.
func parsePins(b []byte) (roots, chunks []addr.Addr, err error) {
	if len(b) > gcMaxPins || len(b) < 4 || (len(b)-4)%addr.Size != 0 {
		return nil, nil, fmt.Errorf("bad pins answer of %d bytes", len(b))
	}
	nr := int(binary.BigEndian.Uint32(b))
	n := (len(b) - 4) / addr.Size
	if nr > n {
		return nil, nil, errors.New("bad pins answer: more roots than entries")
	}
	for i := range n {
		var a addr.Addr
		copy(a[:], b[4+i*addr.Size:])
		if i < nr {
			roots = append(roots, a)
		} else {
			chunks = append(chunks, a)
		}
	}
	return roots, chunks, nil
}

func (p *Peer) handleGCPins(w http.ResponseWriter, r *http.Request) {
	roots, chunks := p.store.Pinned()
	b := binary.BigEndian.AppendUint32(nil, uint32(len(roots)))
	for _, a := range append(roots, chunks...) {
		b = append(b, a[:]...)
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Write(b)
}
