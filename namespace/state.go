package namespace

import (
	"cmp"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"path"
	"slices"
	"strings"
	"time"
)

// node is a dentry. Values are immutable once stored in state.nodes: every
// change stores a new *node, so undo records can keep the old pointer.
type node struct {
	parent NodeID
	name   string // raw name (the one the op gave it)
	inode  InodeID
	nameTS Timestamp // TS of the op that gave it this parent/name
	// Set while the node sits directly in the trash.
	oldParent NodeID
	oldName   string
	delTS     Timestamp
}

// childRef is one entry of a name group in a directory index.
type childRef struct {
	id NodeID
	ts Timestamp
}

// dirIndex is the per-directory child index.
type dirIndex struct {
	id    NodeID
	byRaw map[string][]childRef // raw name -> nodes, sorted by (nameTS, id)
	n     int                   // number of children
	nsub  int                   // number of children that are directories
	// losers are the nodes that are not first in their name group. disp and
	// byDisp hold their displayed names (nil when there are none).
	losers int
	multi  map[string]bool // raw names with more than one node
	disp   map[NodeID]string
	byDisp map[string]NodeID
}

// conflictTag is in every displayed conflict name; a raw name without it
// cannot collide with one.
const conflictTag = " (conflict from "

// undoRec restores one node or inode to its previous value (nil: did not exist).
type undoRec struct {
	isInode bool
	id      uint64
	node    *node
	inode   *Inode
}

// state is the deterministic tree: a pure function of the ops applied to it
// in Timestamp order. It is not safe for concurrent use on its own.
type state struct {
	nodes   map[NodeID]*node
	inodes  map[InodeID]*Inode
	dirs    map[NodeID]*dirIndex
	links   map[InodeID][]NodeID // inode -> dentries (any, live or trashed)
	trashed int                  // dentries directly in the trash

	rec     *[]undoRec // where mutations are recorded; nil = not recording
	changes *changeSet // where changes are reported; nil = not reporting
	// With Config.TrackDropped: how many inodes point at each manifest,
	// and those no inode points at any more (Namespace.TakeDropped).
	mrefs map[[32]byte]int
	gone  map[[32]byte]bool
}

// trackManifests starts counting the inodes that point at each manifest.
func (s *state) trackManifests() {
	s.mrefs, s.gone = map[[32]byte]int{}, map[[32]byte]bool{}
	for _, in := range s.inodes {
		if m := in.Content.Manifest; m != ([32]byte{}) {
			s.mrefs[m]++
		}
	}
}

func newState() *state {
	s := &state{
		nodes:  make(map[NodeID]*node),
		inodes: make(map[InodeID]*Inode),
		dirs:   make(map[NodeID]*dirIndex),
		links:  make(map[InodeID][]NodeID),
	}
	s.inodes[InodeID(RootID)] = &Inode{ID: InodeID(RootID), Type: Dir, Mode: 0o755}
	return s
}

func cmpRef(a, b childRef) int {
	if c := a.ts.Compare(b.ts); c != 0 {
		return c
	}
	return cmp.Compare(a.id, b.id)
}

// setNode stores n (nil deletes) under id, keeping indexes, undo and changes.
func (s *state) setNode(id NodeID, n *node) {
	old := s.nodes[id]
	if s.rec != nil {
		*s.rec = append(*s.rec, undoRec{id: uint64(id), node: old})
	}
	s.setNodeRaw(id, old, n)
}

func (s *state) setNodeRaw(id NodeID, old, n *node) {
	if s.changes != nil {
		s.changes.node(id)
	}
	if old != nil {
		s.reportName(id, old)
		s.unindex(id, old)
	}
	if n != nil {
		s.nodes[id] = n
		s.index(id, n)
		s.reportName(id, n)
	} else {
		delete(s.nodes, id)
	}
}

func (s *state) reportName(id NodeID, n *node) {
	if s.changes == nil || n.parent == TrashID {
		return
	}
	s.changes.dir(n.parent, s.displayName(id, n))
	s.changes.inode(n.inode)
}

// setInode stores in (nil deletes) under id, recording undo and changes.
func (s *state) setInode(id InodeID, in *Inode) {
	old := s.inodes[id]
	if s.rec != nil {
		*s.rec = append(*s.rec, undoRec{isInode: true, id: uint64(id), inode: old})
	}
	s.setInodeRaw(id, in)
}

func (s *state) setInodeRaw(id InodeID, in *Inode) {
	if s.mrefs != nil {
		var was, is [32]byte
		if old := s.inodes[id]; old != nil {
			was = old.Content.Manifest
		}
		if in != nil {
			is = in.Content.Manifest
		}
		if was != is {
			if was != ([32]byte{}) {
				if s.mrefs[was]--; s.mrefs[was] <= 0 {
					delete(s.mrefs, was)
					s.gone[was] = true
				}
			}
			if is != ([32]byte{}) {
				s.mrefs[is]++
				delete(s.gone, is)
			}
		}
	}
	if s.changes != nil {
		s.changes.inode(id)
	}
	if in == nil {
		delete(s.inodes, id)
	} else {
		s.inodes[id] = in
	}
}

// undo reverts the records of one op, newest first.
func (s *state) undo(recs []undoRec) {
	for i := len(recs) - 1; i >= 0; i-- {
		r := recs[i]
		if r.isInode {
			s.setInodeRaw(InodeID(r.id), r.inode)
		} else {
			s.setNodeRaw(NodeID(r.id), s.nodes[NodeID(r.id)], r.node)
		}
	}
}

func (s *state) isDirInode(id InodeID) bool {
	in := s.inodes[id]
	return in != nil && in.Type == Dir
}

func (s *state) index(id NodeID, n *node) {
	s.links[n.inode] = append(s.links[n.inode], id)
	if n.parent == TrashID {
		s.trashed++
		return
	}
	d := s.dirs[n.parent]
	if d == nil {
		d = &dirIndex{id: n.parent, byRaw: make(map[string][]childRef)}
		s.dirs[n.parent] = d
	}
	ref := childRef{id, n.nameTS}
	g := d.byRaw[n.name]
	i, _ := slices.BinarySearchFunc(g, ref, cmpRef)
	d.byRaw[n.name] = slices.Insert(g, i, ref)
	d.n++
	if s.isDirInode(n.inode) {
		d.nsub++
	}
	if len(g) > 0 {
		d.losers++
		if d.multi == nil {
			d.multi = make(map[string]bool)
		}
		d.multi[n.name] = true
	}
	if len(g) > 0 || (d.losers > 0 && strings.Contains(n.name, conflictTag)) {
		s.relabel(d)
	}
}

func (s *state) unindex(id NodeID, n *node) {
	l := s.links[n.inode]
	if i := slices.Index(l, id); i >= 0 {
		l = slices.Delete(l, i, i+1)
	}
	if len(l) == 0 {
		delete(s.links, n.inode)
	} else {
		s.links[n.inode] = l
	}
	if n.parent == TrashID {
		s.trashed--
		return
	}
	d := s.dirs[n.parent]
	if d == nil {
		return
	}
	g := d.byRaw[n.name]
	i := slices.IndexFunc(g, func(r childRef) bool { return r.id == id })
	if i < 0 {
		return
	}
	g = slices.Delete(g, i, i+1)
	wasMulti := len(g) > 0
	if len(g) == 0 {
		delete(d.byRaw, n.name)
	} else {
		d.byRaw[n.name] = g
		d.losers--
		if len(g) == 1 {
			delete(d.multi, n.name)
		}
	}
	d.n--
	if s.isDirInode(n.inode) {
		d.nsub--
	}
	if wasMulti || (d.losers > 0 && strings.Contains(n.name, conflictTag)) {
		s.relabel(d)
	}
	if d.n == 0 {
		delete(s.dirs, n.parent)
	}
}

// relabel recomputes the displayed names of the losers of d's name groups.
// See "Displayed names" in doc.go. It is a function of d's contents only.
func (s *state) relabel(d *dirIndex) {
	old := d.disp
	d.disp, d.byDisp = nil, nil
	if d.losers > 0 {
		var losers []childRef
		for name := range d.multi {
			losers = append(losers, d.byRaw[name][1:]...)
		}
		slices.SortFunc(losers, cmpRef)
		d.disp = make(map[NodeID]string, len(losers))
		d.byDisp = make(map[string]NodeID, len(losers))
		for _, r := range losers {
			n := s.nodes[r.id]
			base := conflictName(n.name, r.ts)
			name := base
			for k := 2; ; k++ {
				if _, taken := d.byRaw[name]; !taken {
					if _, taken := d.byDisp[name]; !taken {
						break
					}
				}
				name = numbered(base, k)
			}
			d.disp[r.id] = name
			d.byDisp[name] = r.id
		}
	}
	if s.changes != nil {
		for id, name := range old {
			if d.disp[id] != name {
				s.changes.dir(d.id, name)
			}
		}
		for id, name := range d.disp {
			if old[id] != name {
				s.changes.dir(d.id, name)
				s.changes.node(id)
			}
		}
	}
}

// splitExt splits name into stem and extension (".txt"); dotfiles without a
// further dot have no extension.
func splitExt(name string) (string, string) {
	ext := path.Ext(name)
	if ext == name || ext == "." {
		return name, ""
	}
	return name[:len(name)-len(ext)], ext
}

// conflictName returns "stem (conflict from PEER TIME).ext", cut to fit
// MaxNameLen.
func conflictName(name string, ts Timestamp) string {
	stem, ext := splitExt(name)
	tag := fmt.Sprintf("%s%s %s)", conflictTag, ts.Peer, time.Unix(0, ts.Wall).UTC().Format("2006-01-02T15:04:05"))
	if over := len(stem) + len(tag) + len(ext) + 4 - MaxNameLen; over > 0 {
		if over >= len(stem) {
			stem = ""
		} else {
			stem = stem[:len(stem)-over]
		}
		if len(tag)+len(ext)+4 > MaxNameLen {
			ext = ""
		}
	}
	return stem + tag + ext
}

// numbered inserts " k" before the extension of a conflict name.
func numbered(name string, k int) string {
	stem, ext := splitExt(name)
	return fmt.Sprintf("%s %d%s", stem, k, ext)
}

// displayName is the name node id shows in its directory.
func (s *state) displayName(id NodeID, n *node) string {
	if n.parent == TrashID {
		return n.name
	}
	if d := s.dirs[n.parent]; d != nil && d.disp != nil {
		if name, ok := d.disp[id]; ok {
			return name
		}
	}
	return n.name
}

// lookup finds the child of dir displayed as name.
func (s *state) lookup(dir NodeID, name string) (NodeID, bool) {
	d := s.dirs[dir]
	if d == nil {
		return 0, false
	}
	if g := d.byRaw[name]; len(g) > 0 {
		return g[0].id, true
	}
	id, ok := d.byDisp[name]
	return id, ok
}

// live reports whether id is reachable from the root.
func (s *state) live(id NodeID) bool {
	for i := 0; i < 1<<16; i++ {
		if id == RootID {
			return true
		}
		n := s.nodes[id]
		if n == nil {
			return false
		}
		id = n.parent
	}
	return false
}

// isAncestor reports whether a is b or an ancestor of b.
func (s *state) isAncestor(a, b NodeID) bool {
	for i := 0; i < 1<<16; i++ {
		if a == b {
			return true
		}
		n := s.nodes[b]
		if n == nil {
			return false
		}
		b = n.parent
	}
	return true // treat pathological depth as a cycle
}

// trashRoot returns the node of id's ancestry (or id) that sits directly in
// the trash, or 0.
func (s *state) trashRoot(id NodeID) NodeID {
	for i := 0; i < 1<<16; i++ {
		n := s.nodes[id]
		if n == nil {
			return 0
		}
		if n.parent == TrashID {
			return id
		}
		id = n.parent
	}
	return 0
}

// restore brings id (and the trashed directories above it) back from the
// trash to where they were deleted from (rules 3 and 4 in doc.go).
func (s *state) restore(id NodeID, ts Timestamp) {
	for i := 0; i < 64 && !s.live(id); i++ {
		x := s.trashRoot(id)
		if x == 0 {
			return
		}
		xn := s.nodes[x]
		dest := xn.oldParent
		if dest != RootID {
			if p := s.nodes[dest]; p == nil || !s.isDirInode(p.inode) || s.isAncestor(x, dest) {
				dest = RootID
			}
		}
		name := xn.oldName
		if checkName(name) != nil {
			name = fmt.Sprintf("restored-%d", x)
		}
		s.setNode(x, &node{parent: dest, name: name, inode: xn.inode, nameTS: ts})
	}
}

// liveLinks returns the live dentries of an inode, sorted.
func (s *state) liveLinks(id InodeID) []NodeID {
	var out []NodeID
	for _, n := range s.links[id] {
		if s.live(n) {
			out = append(out, n)
		}
	}
	slices.Sort(out)
	return out
}

// nlink computes an inode's link count for display.
func (s *state) nlink(in *Inode) uint32 {
	if in.Type == Dir {
		if d := s.dirs[NodeID(in.ID)]; d != nil {
			return uint32(2 + d.nsub)
		}
		return 2
	}
	l := s.links[in.ID]
	if len(l) == 1 {
		if s.live(l[0]) {
			return 1
		}
		return 0
	}
	return uint32(len(s.liveLinks(in.ID)))
}

// inodeLive reports whether an inode has a live dentry (the root always has).
func (s *state) inodeLive(id InodeID) bool {
	if id == InodeID(RootID) {
		return true
	}
	for _, n := range s.links[id] {
		if s.live(n) {
			return true
		}
	}
	return false
}

// deriveID derives a deterministic new ID from an op's Timestamp, for nodes
// and inodes that an op creates on every peer alike.
func deriveID(ts Timestamp, what string, free func(uint64) bool) uint64 {
	for k := uint64(0); ; k++ {
		h := sha256.New()
		var b [20]byte
		binary.BigEndian.PutUint64(b[0:], uint64(ts.Wall))
		binary.BigEndian.PutUint32(b[8:], ts.Logical)
		binary.BigEndian.PutUint64(b[12:], k)
		h.Write(b[:])
		h.Write([]byte(ts.Peer))
		h.Write([]byte{0})
		h.Write([]byte(what))
		v := binary.BigEndian.Uint64(h.Sum(nil))
		if v > uint64(TrashID) && free(v) {
			return v
		}
	}
}

// apply applies one op in Timestamp order. It reports whether the op had an
// effect (false: skipped, kept in the log as a no-op).
func (s *state) apply(op *Op) bool {
	switch op.Kind {
	case OpMove:
		return s.applyMove(op)
	case OpSetAttr:
		in := s.inodes[op.Inode]
		if in == nil {
			return false
		}
		c := in.clone()
		*c = op.Attr.ApplyTo(*c)
		c.Ctime = op.TS.Wall
		s.setInode(op.Inode, c)
		return true
	case OpSetContent:
		return s.applyContent(op)
	case OpSetXattr, OpRemoveXattr:
		in := s.inodes[op.Inode]
		if in == nil {
			return false
		}
		if op.Kind == OpRemoveXattr {
			if _, ok := in.Xattrs[op.Name]; !ok {
				return false
			}
		} else if _, ok := in.Xattrs[op.Name]; !ok && len(in.Xattrs) >= MaxXattrs {
			return false
		}
		c := in.clone()
		if op.Kind == OpSetXattr {
			if c.Xattrs == nil {
				c.Xattrs = make(map[string][]byte)
			}
			c.Xattrs[op.Name] = slices.Clone(op.Value)
		} else {
			delete(c.Xattrs, op.Name)
			if len(c.Xattrs) == 0 {
				c.Xattrs = nil
			}
		}
		c.Ctime = op.TS.Wall
		s.setInode(op.Inode, c)
		return true
	}
	return false
}

func (s *state) applyMove(op *Op) bool {
	if op.Node <= TrashID || op.NewParent == 0 || checkName(op.Name) != nil {
		return false
	}
	if op.NewParent != RootID && op.NewParent != TrashID {
		p := s.nodes[op.NewParent]
		if p == nil || !s.isDirInode(p.inode) {
			return false
		}
	}
	n := s.nodes[op.Node]
	if n == nil {
		// Create a dentry.
		if op.NewParent == TrashID || op.Inode <= InodeID(TrashID) {
			return false
		}
		in := s.inodes[op.Inode]
		if in == nil {
			if op.Init == nil {
				return false
			}
			if op.Init.Type == Dir && op.Inode != InodeID(op.Node) {
				return false
			}
			if op.Init.Type < File || op.Init.Type > BlockDev {
				return false
			}
		} else if in.Type == Dir {
			return false // no hard links to directories
		}
		if !s.live(op.NewParent) {
			s.restore(op.NewParent, op.TS)
		}
		if in == nil {
			i := *op.Init
			for _, t := range []*int64{&i.Atime, &i.Mtime, &i.Ctime} {
				if *t == 0 {
					*t = op.TS.Wall
				}
			}
			s.setInode(op.Inode, &Inode{ID: op.Inode, Type: i.Type, Mode: i.Mode & 0o7777, Uid: i.Uid, Gid: i.Gid,
				Atime: i.Atime, Mtime: i.Mtime, Ctime: i.Ctime, Target: i.Target, Version: op.TS})
		}
		s.setNode(op.Node, &node{parent: op.NewParent, name: op.Name, inode: op.Inode, nameTS: op.TS})
		s.touchDir(op.NewParent, op.TS)
		if in != nil {
			s.touchInode(op.Inode, op.TS) // a new hard link
		}
		return true
	}
	if op.NewParent == TrashID {
		if n.parent == TrashID {
			return false
		}
		in := s.inodes[n.inode]
		if in != nil && in.Type == File && op.Base.Less(in.Version) {
			return false // rule 3: a newer write wins over the delete
		}
		if d := s.dirs[op.Node]; d != nil && d.n > 0 {
			return false // rmdir of a directory that got entries concurrently
		}
		s.setNode(op.Node, &node{parent: TrashID, name: n.name, inode: n.inode, nameTS: op.TS,
			oldParent: n.parent, oldName: n.name, delTS: op.TS})
		s.touchDir(n.parent, op.TS)
		s.touchInode(n.inode, op.TS)
		return true
	}
	if !s.live(op.NewParent) {
		if s.isAncestor(op.Node, op.NewParent) {
			return false
		}
		s.restore(op.NewParent, op.TS)
	}
	if s.isAncestor(op.Node, op.NewParent) {
		return false // rule 5: would create a cycle
	}
	if n.parent == op.NewParent && n.name == op.Name {
		return false
	}
	s.setNode(op.Node, &node{parent: op.NewParent, name: op.Name, inode: n.inode, nameTS: op.TS})
	s.touchDir(n.parent, op.TS)
	s.touchDir(op.NewParent, op.TS)
	s.touchInode(n.inode, op.TS)
	return true
}

// touchDir sets a directory's mtime and ctime to an op's time: an entry
// was created in it, removed from it or renamed, as on a local file system
// (maildir readers, sync tools and ls -lt rely on it). The directory's
// cached attributes are invalidated with its listing (reportName), so the
// inode change is not reported again.
func (s *state) touchDir(id NodeID, ts Timestamp) {
	if id == TrashID {
		return
	}
	in := s.inodes[InodeID(id)]
	if in == nil || in.Type != Dir || (in.Mtime == ts.Wall && in.Ctime == ts.Wall) {
		return
	}
	c := in.clone()
	c.Mtime, c.Ctime = ts.Wall, ts.Wall
	if s.rec != nil {
		*s.rec = append(*s.rec, undoRec{isInode: true, id: uint64(id), inode: in})
	}
	s.inodes[InodeID(id)] = c
}

// touchInode sets an inode's ctime to an op's time: its link count or one
// of its names changed (link, unlink, rename).
func (s *state) touchInode(id InodeID, ts Timestamp) {
	in := s.inodes[id]
	if in == nil || in.Ctime == ts.Wall {
		return
	}
	c := in.clone()
	c.Ctime = ts.Wall
	s.setInode(id, c)
}

func (s *state) applyContent(op *Op) bool {
	in := s.inodes[op.Inode]
	if in == nil || in.Type != File || len(s.links[op.Inode]) == 0 {
		return false
	}
	if !s.inodeLive(op.Inode) {
		// Rule 3: restore the most recently deleted dentry.
		var best NodeID
		var bestTS Timestamp
		for _, id := range s.links[op.Inode] {
			r := s.trashRoot(id)
			if r == 0 {
				continue
			}
			ts := s.nodes[r].delTS
			if best == 0 || bestTS.Less(ts) || (ts == bestTS && id > best) {
				best, bestTS = id, ts
			}
		}
		if best != 0 {
			s.restore(best, op.TS)
		}
	}
	if op.Base != in.Version {
		// Rule 2: keep the replaced version as a conflict copy.
		if live := s.liveLinks(op.Inode); len(live) > 0 {
			d := s.nodes[live[0]]
			ino := InodeID(deriveID(op.TS, "inode", func(v uint64) bool { return s.inodes[InodeID(v)] == nil }))
			nid := NodeID(deriveID(op.TS, "node", func(v uint64) bool { return s.nodes[NodeID(v)] == nil }))
			c := in.clone()
			c.ID = ino
			s.setInode(ino, c)
			s.setNode(nid, &node{parent: d.parent, name: conflictName(d.name, in.Version), inode: ino, nameTS: op.TS})
		}
	}
	c := in.clone()
	c.Content = op.Content
	c.Content.Inline = slices.Clone(op.Content.Inline)
	c.Size = op.Content.Size
	c.Version = op.TS
	c.Mtime = op.TS.Wall
	c.Ctime = op.TS.Wall
	s.setInode(op.Inode, c)
	return true
}

// entry builds the public Entry of a node.
func (s *state) entry(id NodeID) (Entry, bool) {
	if id == RootID {
		return Entry{Node: RootID, Parent: RootID, Name: "/", Inode: s.inodeView(s.inodes[InodeID(RootID)])}, true
	}
	n := s.nodes[id]
	if n == nil {
		return Entry{}, false
	}
	e := Entry{Node: id, Parent: n.parent, Name: s.displayName(id, n)}
	if in := s.inodes[n.inode]; in != nil {
		e.Inode = s.inodeView(in)
	}
	return e, true
}

func (s *state) inodeView(in *Inode) Inode {
	c := *in.clone()
	c.Content.Inline = slices.Clone(in.Content.Inline)
	c.Nlink = s.nlink(in)
	return c
}

// path returns the displayed path of a live node.
func (s *state) path(id NodeID) (string, bool) {
	var parts []string
	for i := 0; id != RootID; i++ {
		n := s.nodes[id]
		if n == nil || i > 1<<16 {
			return "", false
		}
		parts = append(parts, s.displayName(id, n))
		id = n.parent
	}
	slices.Reverse(parts)
	return "/" + strings.Join(parts, "/"), true
}
