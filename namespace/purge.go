package namespace

import (
	"cmp"
	"slices"
	"sync/atomic"
	"time"
)

// Purging the trash. A deleted dentry stays in the trash so that a
// concurrent op can still bring it back (rules 3 and 4 in doc.go), and its
// inode record stays with it: without a purge the namespace, and the
// chunks its deleted files reference, would grow forever.
//
// A trashed dentry can be dropped once no op that needs it can still come.
// An op needs it if it names the dentry or its inode, or restores a dentry
// whose old parent it is. Such ops come only from peers that have not yet
// applied the delete, or that issued them before they did. So a dentry is
// purged when its delete is at or below the stability base (folded: no op
// with a smaller Timestamp will come), older than Config.TrashRetention,
// and every peer heard from in PeerHorizonWindow has been seen, in one
// anti-entropy exchange, both to hold every op we held at a point where
// the base covered the delete and to hold nothing we lacked (ObservePeer
// records that as the peer's acked point): each such peer applied the
// delete, and any op it issued before that is already here. Ops here that
// are newer than the base may still be undone and redone, so a dentry
// (or inode) one of them names is kept, and so is a trashed directory some
// other trashed dentry would be restored into. The purge runs on the base
// state (atBase) and so removes exactly what the current state holds of
// the dentry. Peers purge independently, at different moments: the trash
// is never shown, so their views do not differ in anything visible.
//
// A peer gone longer than PeerHorizonWindow does not hold purges back:
// if it comes back with ops on a purged dentry, those ops find nothing and
// are no-ops (the same limitation as the horizon's).

// DefaultTrashRetention is Config.TrashRetention's default.
const DefaultTrashRetention = time.Hour

// maxAckSnaps bounds the version vectors kept for the acked points.
const maxAckSnaps = 64

// ackSnap is this namespace's version vector when the base was base: a
// peer whose vector covers vv holds every op at or below base.
type ackSnap struct {
	vv   map[string]uint64
	base Timestamp
}

// ackSnapLocked returns the current vector with the current base. Caller
// holds mu (for reading at least).
func (ns *Namespace) ackSnapLocked() ackSnap {
	vv := make(map[string]uint64, len(ns.have))
	for o, q := range ns.have {
		if q.contig > 0 {
			vv[o] = q.contig
		}
	}
	return ackSnap{vv: vv, base: ns.base}
}

func (ns *Namespace) addAckSnap(s ackSnap) {
	if s.base.IsZero() {
		return
	}
	ns.pmu.Lock()
	defer ns.pmu.Unlock()
	if n := len(ns.ackSnaps); n > 0 && ns.ackSnaps[n-1].base == s.base {
		return
	}
	ns.ackSnaps = append(ns.ackSnaps, s)
	if len(ns.ackSnaps) > maxAckSnaps {
		ns.ackSnaps = slices.Delete(ns.ackSnaps, 0, len(ns.ackSnaps)-maxAckSnaps)
	}
}

// ackedByLocked returns the newest base whose snapshot vv covers. Caller
// holds pmu.
func (ns *Namespace) ackedByLocked(vv map[string]uint64) Timestamp {
	for i := len(ns.ackSnaps) - 1; i >= 0; i-- {
		s := ns.ackSnaps[i]
		ok := true
		for o, q := range s.vv {
			if vv[o] < q {
				ok = false
				break
			}
		}
		if ok {
			return s.base
		}
	}
	return Timestamp{}
}

// purgeLine returns the Timestamp at or below which deletes may be purged
// as far as other peers go: the lowest acked point of the peers heard from
// in PeerHorizonWindow (the caller also caps it at the base). Zero:
// nothing may be purged.
func (ns *Namespace) purgeLine() Timestamp {
	return ns.lowest(Timestamp{Wall: 1<<63 - 1}, func(p *peerInfo) Timestamp { return p.acked })
}

// purgeTrash removes from s the trashed dentries deleted at or below line
// and before the wall time before, with the inodes they leave without any
// dentry, except those that keep names: a dentry or inode it reports as
// needed, or a trashed directory another remaining trashed dentry would be
// restored into. It returns how many dentries it removed. s is the base
// state (no recording).
func (s *state) purgeTrash(line Timestamp, before int64, keep func(NodeID, InodeID) bool) int {
	if line.IsZero() {
		return 0
	}
	type cand struct {
		id NodeID
		ts Timestamp
	}
	var cands []cand
	into := map[NodeID]int{} // trashed dentries that would be restored into a node
	for id, n := range s.nodes {
		if n.parent != TrashID {
			continue
		}
		into[n.oldParent]++
		if !line.Less(n.delTS) && n.delTS.Wall < before && !keep(id, n.inode) {
			cands = append(cands, cand{id, n.delTS})
		}
	}
	// Oldest first: the entries of a directory were deleted before it (an
	// rmdir needs it empty), and they no longer hold it once gone.
	slices.SortFunc(cands, func(a, b cand) int {
		if c := a.ts.Compare(b.ts); c != 0 {
			return c
		}
		return cmp.Compare(a.id, b.id)
	})
	purged := 0
	for _, c := range cands {
		n := s.nodes[c.id]
		if n == nil || n.parent != TrashID || into[c.id] > 0 {
			continue
		}
		if d := s.dirs[c.id]; d != nil && d.n > 0 {
			continue // never so (a trashed directory is empty), but not a dentry to lose
		}
		s.setNode(c.id, nil)
		into[n.oldParent]--
		purged++
		if len(s.links[n.inode]) == 0 && n.inode != InodeID(RootID) {
			s.setInode(n.inode, nil)
		}
	}
	return purged
}

// journalRefs returns what the ops newer than the base name: the dentries
// and inodes they may touch when undone and redone. Caller holds mu.
func (ns *Namespace) journalRefs() (map[NodeID]bool, map[InodeID]bool) {
	nodes, inodes := map[NodeID]bool{}, map[InodeID]bool{}
	for i := range ns.journal {
		op := &ns.journal[i].op
		nodes[op.Node] = true
		nodes[op.NewParent] = true
		inodes[op.Inode] = true
	}
	return nodes, inodes
}

// trashDueLocked reports whether the current state holds a trash entry
// purgeTrash would drop (the base state differs only in what the journal
// names, which is kept). Caller holds mu.
func (ns *Namespace) trashDueLocked(line Timestamp, before int64, keep func(NodeID, InodeID) bool) bool {
	if line.IsZero() {
		return false
	}
	for id, n := range ns.s.nodes {
		if n.parent == TrashID && !line.Less(n.delTS) && n.delTS.Wall < before && !keep(id, n.inode) {
			return true
		}
	}
	return false
}

// Trash returns how many deleted entries the trash holds and how many were
// purged since Open: cheap, for metrics and status (Stats walks the tree).
func (ns *Namespace) Trash() (held int, purged int64) {
	ns.mu.RLock()
	held = ns.s.trashed
	ns.mu.RUnlock()
	return held, atomic.LoadInt64(&ns.purged)
}
