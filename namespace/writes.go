package namespace

import (
	"context"
	"fmt"
	"slices"
	"strconv"
)

// Write methods validate against the local view (POSIX errors), create ops,
// apply them locally, persist them (synced), call Config.Replicate, and
// return. If Replicate fails, the change is applied and durable locally but
// the error (wrapped) is returned: the caller may report it or retry later.

// liveDir checks that dir is a live directory, for writers (caller holds wmu).
func liveDir(s *state, dir NodeID) error {
	if dir == RootID {
		return nil
	}
	n := s.nodes[dir]
	if n == nil || !s.live(dir) {
		return fmt.Errorf("namespace: directory %d: %w", dir, ErrNotExist)
	}
	if !s.isDirInode(n.inode) {
		return fmt.Errorf("namespace: %d: %w", dir, ErrNotDir)
	}
	return nil
}

// child looks up a displayed name for writers.
func child(s *state, dir NodeID, name string) (NodeID, *node, bool) {
	id, ok := s.lookup(dir, name)
	if !ok {
		return 0, nil, false
	}
	return id, s.nodes[id], true
}

func (ns *Namespace) freeNodeID(s *state) NodeID {
	for {
		id := NodeID(ns.newID())
		if id > TrashID && s.nodes[id] == nil && s.inodes[InodeID(id)] == nil {
			return id
		}
	}
}

func (ns *Namespace) get(id NodeID) (Entry, error) {
	ns.mu.RLock()
	defer ns.mu.RUnlock()
	e, ok := ns.s.entry(id)
	if !ok {
		return Entry{}, fmt.Errorf("namespace: node %d: %w", id, ErrNotExist)
	}
	return e, nil
}

// Create makes a file, directory, symlink (target) or special file (a
// device's target is its number in decimal) named name in parent.
// The new inode is created by the same Move op (its Init field); see doc.go.
func (ns *Namespace) Create(ctx context.Context, parent NodeID, name string, typ Type, attr Attr, target string) (Entry, error) {
	if err := checkName(name); err != nil {
		return Entry{}, err
	}
	switch typ {
	case File, Dir, Fifo, Socket:
		target = ""
	case CharDev, BlockDev:
		if _, err := strconv.ParseUint(target, 10, 32); err != nil {
			return Entry{}, fmt.Errorf("namespace: create device %q: number %q: %w", name, target, ErrInvalid)
		}
	case Symlink:
		if target == "" {
			return Entry{}, fmt.Errorf("namespace: create symlink %q: empty target: %w", name, ErrInvalid)
		}
		if len(target) > MaxTargetLen {
			return Entry{}, fmt.Errorf("namespace: create symlink %q: %w", name, ErrNameTooLong)
		}
	default:
		return Entry{}, fmt.Errorf("namespace: create %q: type %v: %w", name, typ, ErrInvalid)
	}
	var id NodeID
	ops, err := ns.commit(ctx, func(s *state) ([]Op, error) {
		if err := liveDir(s, parent); err != nil {
			return nil, err
		}
		if _, _, ok := child(s, parent, name); ok {
			return nil, fmt.Errorf("namespace: create %q: %w", name, ErrExist)
		}
		id = ns.freeNodeID(s)
		ino := InodeID(id)
		if typ != Dir {
			for {
				ino = InodeID(ns.newID())
				if ino > InodeID(TrashID) && s.inodes[ino] == nil && s.nodes[NodeID(ino)] == nil {
					break
				}
			}
		}
		return []Op{{Kind: OpMove, Node: id, NewParent: parent, Name: name, Inode: ino,
			Init: &InodeInit{Type: typ, Mode: attr.Mode & 0o7777, Uid: attr.Uid, Gid: attr.Gid,
				Atime: attr.Atime, Mtime: attr.Mtime, Ctime: attr.Ctime, Target: target}}}, nil
	})
	if ops == nil {
		return Entry{}, err
	}
	e, gerr := ns.get(id)
	if err == nil {
		err = gerr
	}
	return e, err
}

// Link adds a hard link newName in newParent to the inode of node (which
// must not be a directory: ErrIsDir).
func (ns *Namespace) Link(ctx context.Context, node NodeID, newParent NodeID, newName string) (Entry, error) {
	if err := checkName(newName); err != nil {
		return Entry{}, err
	}
	var id NodeID
	ops, err := ns.commit(ctx, func(s *state) ([]Op, error) {
		n := s.nodes[node]
		if n == nil || !s.live(node) {
			return nil, fmt.Errorf("namespace: link %d: %w", node, ErrNotExist)
		}
		if s.isDirInode(n.inode) {
			return nil, fmt.Errorf("namespace: link %d: %w", node, ErrIsDir)
		}
		if err := liveDir(s, newParent); err != nil {
			return nil, err
		}
		if _, _, ok := child(s, newParent, newName); ok {
			return nil, fmt.Errorf("namespace: link %q: %w", newName, ErrExist)
		}
		id = ns.freeNodeID(s)
		return []Op{{Kind: OpMove, Node: id, NewParent: newParent, Name: newName, Inode: n.inode}}, nil
	})
	if ops == nil {
		return Entry{}, err
	}
	e, gerr := ns.get(id)
	if err == nil {
		err = gerr
	}
	return e, err
}

// trashOp returns the op deleting node n (id), carrying the Version the
// deleter saw.
func trashOp(s *state, id NodeID, n *node) Op {
	op := Op{Kind: OpMove, Node: id, NewParent: TrashID, Name: n.name, Inode: n.inode}
	if in := s.inodes[n.inode]; in != nil {
		op.Base = in.Version
	}
	return op
}

// Rename moves name in parent to newName in newParent, replacing an
// existing destination per rename(2) unless noReplace (then ErrExist). A
// replace is two ops with consecutive Timestamps: the old target to the
// trash, then the move.
func (ns *Namespace) Rename(ctx context.Context, parent NodeID, name string, newParent NodeID, newName string, noReplace bool) error {
	if err := checkName(newName); err != nil {
		return err
	}
	_, err := ns.commit(ctx, func(s *state) ([]Op, error) {
		if err := liveDir(s, parent); err != nil {
			return nil, err
		}
		if err := liveDir(s, newParent); err != nil {
			return nil, err
		}
		src, sn, ok := child(s, parent, name)
		if !ok {
			return nil, fmt.Errorf("namespace: rename %q: %w", name, ErrNotExist)
		}
		srcDir := s.isDirInode(sn.inode)
		if srcDir && s.isAncestor(src, newParent) {
			return nil, fmt.Errorf("namespace: rename %q into itself: %w", name, ErrInvalid)
		}
		var ops []Op
		if dst, dn, ok := child(s, newParent, newName); ok {
			if dst == src || dn.inode == sn.inode {
				return nil, nil // same file: rename(2) does nothing
			}
			if noReplace {
				return nil, fmt.Errorf("namespace: rename to %q: %w", newName, ErrExist)
			}
			dstDir := s.isDirInode(dn.inode)
			switch {
			case srcDir && !dstDir:
				return nil, fmt.Errorf("namespace: rename to %q: %w", newName, ErrNotDir)
			case !srcDir && dstDir:
				return nil, fmt.Errorf("namespace: rename to %q: %w", newName, ErrIsDir)
			case dstDir && s.dirs[dst] != nil && s.dirs[dst].n > 0:
				return nil, fmt.Errorf("namespace: rename to %q: %w", newName, ErrNotEmpty)
			}
			ops = append(ops, trashOp(s, dst, dn))
		}
		ops = append(ops, Op{Kind: OpMove, Node: src, NewParent: newParent, Name: newName, Inode: sn.inode})
		return ops, nil
	})
	return err
}

// Exchange swaps two names atomically (renameat2's RENAME_EXCHANGE):
// the node at name in parent takes newName in newParent and the node there
// takes name in parent. Both must exist; either may be a directory, but
// neither may be an ancestor of the other's new parent. It is two moves
// with consecutive Timestamps in one commit: a peer that applies the first
// before it has the second shows the two under one name for that moment,
// as concurrent creates of one name show, never one of them gone.
func (ns *Namespace) Exchange(ctx context.Context, parent NodeID, name string, newParent NodeID, newName string) error {
	_, err := ns.commit(ctx, func(s *state) ([]Op, error) {
		if err := liveDir(s, parent); err != nil {
			return nil, err
		}
		if err := liveDir(s, newParent); err != nil {
			return nil, err
		}
		a, an, ok := child(s, parent, name)
		if !ok {
			return nil, fmt.Errorf("namespace: exchange %q: %w", name, ErrNotExist)
		}
		b, bn, ok := child(s, newParent, newName)
		if !ok {
			return nil, fmt.Errorf("namespace: exchange with %q: %w", newName, ErrNotExist)
		}
		if a == b || an.inode == bn.inode {
			return nil, nil // one file under both names: nothing changes
		}
		if s.isDirInode(an.inode) && s.isAncestor(a, newParent) || s.isDirInode(bn.inode) && s.isAncestor(b, parent) {
			return nil, fmt.Errorf("namespace: exchange %q and %q: one contains the other: %w", name, newName, ErrInvalid)
		}
		return []Op{
			{Kind: OpMove, Node: a, NewParent: newParent, Name: newName, Inode: an.inode},
			{Kind: OpMove, Node: b, NewParent: parent, Name: name, Inode: bn.inode},
		}, nil
	})
	return err
}

// Remove unlinks a file or symlink (dir false) or removes an empty
// directory (dir true). Deleting moves the node to the trash.
func (ns *Namespace) Remove(ctx context.Context, parent NodeID, name string, dir bool) error {
	_, err := ns.commit(ctx, func(s *state) ([]Op, error) {
		if err := liveDir(s, parent); err != nil {
			return nil, err
		}
		id, n, ok := child(s, parent, name)
		if !ok {
			return nil, fmt.Errorf("namespace: remove %q: %w", name, ErrNotExist)
		}
		isDir := s.isDirInode(n.inode)
		switch {
		case dir && !isDir:
			return nil, fmt.Errorf("namespace: rmdir %q: %w", name, ErrNotDir)
		case !dir && isDir:
			return nil, fmt.Errorf("namespace: unlink %q: %w", name, ErrIsDir)
		case isDir && s.dirs[id] != nil && s.dirs[id].n > 0:
			return nil, fmt.Errorf("namespace: rmdir %q: %w", name, ErrNotEmpty)
		}
		return []Op{trashOp(s, id, n)}, nil
	})
	return err
}

// liveInode returns an inode with a live dentry, for writers.
func liveInode(s *state, id InodeID) (*Inode, error) {
	in := s.inodes[id]
	if in == nil || !s.inodeLive(id) {
		return nil, fmt.Errorf("namespace: inode %d: %w", id, ErrNotExist)
	}
	return in, nil
}

func (ns *Namespace) getInode(id InodeID, err error) (Inode, error) {
	in, gerr := ns.GetInode(id)
	if err == nil {
		err = gerr
	}
	return in, err
}

// SetAttr changes the attributes selected by a.Mask (chmod, chown,
// utimens) and sets ctime. It returns the updated inode.
func (ns *Namespace) SetAttr(ctx context.Context, ino InodeID, a AttrChange) (Inode, error) {
	ops, err := ns.commit(ctx, func(s *state) ([]Op, error) {
		if _, err := liveInode(s, ino); err != nil {
			return nil, err
		}
		return []Op{{Kind: OpSetAttr, Inode: ino, Attr: a}}, nil
	})
	if ops == nil {
		return Inode{}, err
	}
	return ns.getInode(ino, err)
}

// SetContent replaces a file's content (a write or truncate). base is the
// Version the writer saw when it opened the file; if it is not the current
// Version, the replaced version is kept as a conflict copy (rule 2). The
// inode must have a live dentry (ErrNotExist: writes to a file unlinked on
// this peer are dropped, as POSIX drops them at last close). c.Inline is
// copied.
func (ns *Namespace) SetContent(ctx context.Context, ino InodeID, c Content, base Timestamp) (Inode, error) {
	return ns.SetContentAttr(ctx, ino, c, base, nil)
}

// SetContentAttr is SetContent followed, in the same commit, by the
// attribute change that attr returns (nothing if attr is nil or returns an
// empty mask): a file written, chmodded and given its times while open is
// one commit at close, not three. attr is called once, under the
// namespace's write lock: a change the caller folds in before the call is
// in this commit, and anything it does after is timestamped later.
func (ns *Namespace) SetContentAttr(ctx context.Context, ino InodeID, c Content, base Timestamp, attr func() AttrChange) (Inode, error) {
	if len(c.Inline) > MaxInlineLen {
		return Inode{}, fmt.Errorf("namespace: set content: inline data of %d bytes: %w", len(c.Inline), ErrInvalid)
	}
	if c.Zero < 0 || c.Zero > c.Size || (c.Zero > 0 && c.Manifest == ([32]byte{})) {
		return Inode{}, fmt.Errorf("namespace: set content: %d zero bytes of %d: %w", c.Zero, c.Size, ErrInvalid)
	}
	c.Inline = slices.Clone(c.Inline)
	ops, err := ns.commit(ctx, func(s *state) ([]Op, error) {
		in, err := liveInode(s, ino)
		if err != nil {
			return nil, err
		}
		switch in.Type {
		case Dir:
			return nil, fmt.Errorf("namespace: set content %d: %w", ino, ErrIsDir)
		case Symlink:
			return nil, fmt.Errorf("namespace: set content %d: symlink: %w", ino, ErrInvalid)
		}
		if in.Type != File {
			return nil, fmt.Errorf("namespace: set content %d: %v: %w", ino, in.Type, ErrInvalid)
		}
		ops := []Op{{Kind: OpSetContent, Inode: ino, Content: c, Base: base}}
		if attr != nil {
			if a := attr(); a.Mask != 0 {
				ops = append(ops, Op{Kind: OpSetAttr, Inode: ino, Attr: a})
			}
		}
		return ops, nil
	})
	if ops == nil {
		return Inode{}, err
	}
	return ns.getInode(ino, err)
}

func checkXattrName(name string) error {
	if name == "" {
		return fmt.Errorf("namespace: xattr name empty: %w", ErrInvalid)
	}
	if len(name) > MaxNameLen {
		return fmt.Errorf("namespace: xattr name: %w", ErrNameTooLong)
	}
	return nil
}

// SetXattr sets an extended attribute (value is copied).
func (ns *Namespace) SetXattr(ctx context.Context, ino InodeID, name string, value []byte) error {
	if err := checkXattrName(name); err != nil {
		return err
	}
	if len(value) > MaxXattrValueLen {
		return fmt.Errorf("namespace: xattr %q: value of %d bytes: %w", name, len(value), ErrInvalid)
	}
	value = slices.Clone(value)
	_, err := ns.commit(ctx, func(s *state) ([]Op, error) {
		in, err := liveInode(s, ino)
		if err != nil {
			return nil, err
		}
		if _, ok := in.Xattrs[name]; !ok && len(in.Xattrs) >= MaxXattrs {
			return nil, fmt.Errorf("namespace: xattr %q: %d attributes: %w", name, len(in.Xattrs), ErrNoXattrRoom)
		}
		return []Op{{Kind: OpSetXattr, Inode: ino, Name: name, Value: value}}, nil
	})
	return err
}

// RemoveXattr removes an extended attribute (ErrNoXattr if it is not set).
func (ns *Namespace) RemoveXattr(ctx context.Context, ino InodeID, name string) error {
	if err := checkXattrName(name); err != nil {
		return err
	}
	_, err := ns.commit(ctx, func(s *state) ([]Op, error) {
		in, err := liveInode(s, ino)
		if err != nil {
			return nil, err
		}
		if _, ok := in.Xattrs[name]; !ok {
			return nil, fmt.Errorf("namespace: xattr %q: %w", name, ErrNoXattr)
		}
		return []Op{{Kind: OpRemoveXattr, Inode: ino, Name: name}}, nil
	})
	return err
}
