package fs

import (
	"context"
	"errors"
	"os"
	"strconv"
	"syscall"

	"bazil.org/fuse"
	fusefs "bazil.org/fuse/fs"

	"github.com/reefproject/reef/namespace"
)

// Dir is a directory. Its dentry and inode share one ID.
type Dir struct {
	bareNode // fs, ino and the extended-attribute calls (Getxattr is Dir's)
}

var (
	_ fusefs.Node               = (*Dir)(nil)
	_ fusefs.NodeStringLookuper = (*Dir)(nil)
	_ fusefs.HandleReadDirAller = (*Dir)(nil)
	_ fusefs.NodeCreater        = (*Dir)(nil)
	_ fusefs.NodeMkdirer        = (*Dir)(nil)
	_ fusefs.NodeRemover        = (*Dir)(nil)
	_ fusefs.NodeRenamer        = (*Dir)(nil)
	_ fusefs.NodeSymlinker      = (*Dir)(nil)
	_ fusefs.NodeLinker         = (*Dir)(nil)
	_ fusefs.NodeSetattrer      = (*Dir)(nil)
	_ fusefs.NodeForgetter      = (*Dir)(nil)
	_ fusefs.NodeMknoder        = (*Dir)(nil)
	_ fusefs.NodeFsyncer        = (*Dir)(nil)
)

func (d *Dir) id() namespace.NodeID { return namespace.NodeID(d.ino) }

// Attr reports the directory's attributes.
func (d *Dir) Attr(ctx context.Context, a *fuse.Attr) error {
	in, err := d.fs.inode(d.ino)
	if err != nil {
		return errno(d.fs.log, "getattr", err)
	}
	d.fs.fillAttr(in, a)
	return nil
}

// Lookup finds a name in the directory.
func (d *Dir) Lookup(ctx context.Context, name string) (fusefs.Node, error) {
	e, err := d.fs.cfg.Tree.Lookup(d.id(), name)
	if err != nil {
		if len(name) > namespace.MaxNameLen {
			return nil, fuse.Errno(syscall.ENAMETOOLONG)
		}
		return nil, errno(d.fs.log, "lookup", err)
	}
	return d.fs.node(e.Node, e.Inode), nil
}

// ReadDirAll lists the directory.
func (d *Dir) ReadDirAll(ctx context.Context) ([]fuse.Dirent, error) {
	es, err := d.fs.cfg.Tree.ReadDir(d.id())
	if errors.Is(err, namespace.ErrNotExist) {
		if _, ierr := d.fs.inode(d.ino); ierr == nil {
			return nil, nil // removed while open: empty, as on a local file system
		}
	}
	if err != nil {
		return nil, errno(d.fs.log, "readdir", err)
	}
	out := make([]fuse.Dirent, 0, len(es))
	for _, e := range es {
		t := fuse.DT_File
		switch e.Inode.Type {
		case namespace.Dir:
			t = fuse.DT_Dir
		case namespace.Symlink:
			t = fuse.DT_Link
		case namespace.Fifo:
			t = fuse.DT_FIFO
		case namespace.Socket:
			t = fuse.DT_Socket
		case namespace.CharDev:
			t = fuse.DT_Char
		case namespace.BlockDev:
			t = fuse.DT_Block
		}
		out = append(out, fuse.Dirent{Inode: uint64(e.Inode.ID), Type: t, Name: e.Name})
	}
	return out, nil
}

// LookupDirent answers a READDIRPLUS entry (see fuse.ReaddirPlus in
// third_party/bazil.org/fuse): the entry's node, as Lookup finds it now.
// An entry gone since the listing is sent as a bare name.
func (d *Dir) LookupDirent(ctx context.Context, de fuse.Dirent) (fusefs.Node, error) {
	n, err := d.Lookup(ctx, de.Name)
	if err != nil {
		return nil, nil
	}
	return n, nil
}

var _ fusefs.HandleDirentLookuper = (*Dir)(nil)

func (d *Dir) attrFor(mode os.FileMode, uid, gid uint32) namespace.Attr {
	return namespace.Attr{Mode: fromFileMode(mode), Uid: uid, Gid: gid}
}

// Create makes and opens a new file.
func (d *Dir) Create(ctx context.Context, req *fuse.CreateRequest, resp *fuse.CreateResponse) (fusefs.Node, fusefs.Handle, error) {
	e, err := d.fs.cfg.Tree.Create(ctx, d.id(), req.Name, namespace.File, d.attrFor(req.Mode, req.Uid, d.gidFor(req.Gid)), "")
	if err != nil {
		return nil, nil, errno(d.fs.log, "create", err)
	}
	n := d.fs.node(e.Node, e.Inode).(*File)
	d.fs.fillAttr(e.Inode, &resp.Attr)
	resp.EntryValid = d.fs.cfg.AttrValid
	h := n.openHandle(e.Inode, true)
	h.answer(req.Flags, &resp.OpenResponse)
	return n, h, nil
}

// gidFor applies the setgid-directory rule: new entries inherit the group.
func (d *Dir) gidFor(gid uint32) uint32 {
	if in, err := d.fs.inode(d.ino); err == nil && in.Mode&syscall.S_ISGID != 0 {
		return in.Gid
	}
	return gid
}

// Mkdir makes a directory.
func (d *Dir) Mkdir(ctx context.Context, req *fuse.MkdirRequest) (fusefs.Node, error) {
	mode := req.Mode
	if in, err := d.fs.inode(d.ino); err == nil && in.Mode&syscall.S_ISGID != 0 {
		mode |= os.ModeSetgid
	}
	e, err := d.fs.cfg.Tree.Create(ctx, d.id(), req.Name, namespace.Dir, d.attrFor(mode, req.Uid, d.gidFor(req.Gid)), "")
	if err != nil {
		return nil, errno(d.fs.log, "mkdir", err)
	}
	return d.fs.node(e.Node, e.Inode), nil
}

// Mknod makes a regular file, a FIFO, a socket or a device node. Special
// files are stored (backups and copies of trees keep them; the kernel
// serves FIFOs itself), but the mount is nodev: devices on it cannot be
// opened.
func (d *Dir) Mknod(ctx context.Context, req *fuse.MknodRequest) (fusefs.Node, error) {
	typ, target := namespace.File, ""
	switch req.Mode & os.ModeType {
	case 0:
	case os.ModeNamedPipe:
		typ = namespace.Fifo
	case os.ModeSocket:
		typ = namespace.Socket
	case os.ModeDevice | os.ModeCharDevice:
		typ, target = namespace.CharDev, strconv.FormatUint(uint64(req.Rdev), 10)
	case os.ModeDevice:
		typ, target = namespace.BlockDev, strconv.FormatUint(uint64(req.Rdev), 10)
	default:
		return nil, fuse.Errno(syscall.EPERM)
	}
	e, err := d.fs.cfg.Tree.Create(ctx, d.id(), req.Name, typ, d.attrFor(req.Mode, req.Uid, d.gidFor(req.Gid)), target)
	if err != nil {
		return nil, errno(d.fs.log, "mknod", err)
	}
	return d.fs.node(e.Node, e.Inode), nil
}

// Symlink makes a symbolic link.
func (d *Dir) Symlink(ctx context.Context, req *fuse.SymlinkRequest) (fusefs.Node, error) {
	if len(req.Target) > namespace.MaxTargetLen {
		return nil, fuse.Errno(syscall.ENAMETOOLONG)
	}
	e, err := d.fs.cfg.Tree.Create(ctx, d.id(), req.NewName, namespace.Symlink,
		namespace.Attr{Mode: 0o777, Uid: req.Uid, Gid: d.gidFor(req.Gid)}, req.Target)
	if err != nil {
		return nil, errno(d.fs.log, "symlink", err)
	}
	return d.fs.node(e.Node, e.Inode), nil
}

// Link makes a hard link to old.
func (d *Dir) Link(ctx context.Context, req *fuse.LinkRequest, old fusefs.Node) (fusefs.Node, error) {
	// Files, symlinks and special files can have several names (link(2)
	// does not follow a symlink on Linux); directories cannot.
	l, ok := old.(dentried)
	if !ok {
		return nil, fuse.Errno(syscall.EPERM)
	}
	e, err := d.fs.cfg.Tree.Link(ctx, l.getDentry(), d.id(), req.NewName)
	if err != nil {
		return nil, errno(d.fs.log, "link", err)
	}
	return d.fs.node(e.Node, e.Inode), nil
}

// Remove unlinks a file or removes an empty directory.
func (d *Dir) Remove(ctx context.Context, req *fuse.RemoveRequest) error {
	d.fs.keepLast(d.id(), req.Name)
	return errno(d.fs.log, "remove", d.fs.cfg.Tree.Remove(ctx, d.id(), req.Name, req.Dir))
}

// Rename moves an entry, replacing the destination as rename(2) does.
func (d *Dir) Rename(ctx context.Context, req *fuse.RenameRequest, newDir fusefs.Node) error {
	nd, ok := newDir.(*Dir)
	if !ok {
		return fuse.Errno(syscall.ENOTDIR)
	}
	switch req.Flags {
	case 0, fuse.RenameNoReplace:
		noReplace := req.Flags == fuse.RenameNoReplace
		if !noReplace {
			d.fs.keepLast(nd.id(), req.NewName)
		}
		return errno(d.fs.log, "rename", d.fs.cfg.Tree.Rename(ctx, d.id(), req.OldName, nd.id(), req.NewName, noReplace))
	case fuse.RenameExchange:
		return errno(d.fs.log, "rename", d.fs.cfg.Tree.Exchange(ctx, d.id(), req.OldName, nd.id(), req.NewName))
	default:
		// RENAME_WHITEOUT is overlayfs's, and flags together are
		// invalid: EINVAL, as from a filesystem without them.
		return fuse.Errno(syscall.EINVAL)
	}
}

// Setattr changes mode, owner or times of the directory.
func (d *Dir) Setattr(ctx context.Context, req *fuse.SetattrRequest, resp *fuse.SetattrResponse) error {
	if req.Valid.Size() {
		return fuse.Errno(syscall.EISDIR)
	}
	in, err := d.fs.setattr(ctx, d.ino, req)
	if err != nil {
		return errno(d.fs.log, "setattr", err)
	}
	d.fs.fillAttr(in, &resp.Attr)
	return nil
}

// Fsync of a directory makes the changes in it durable (and every other
// namespace change of this peer made before it).
func (d *Dir) Fsync(ctx context.Context, req *fuse.FsyncRequest) error {
	return errno(d.fs.log, "fsync", d.fs.synced(uninterruptible(ctx)))
}

// Forget drops the node when the kernel no longer refers to it.
func (d *Dir) Forget() {
	if d.ino != namespace.InodeID(namespace.RootID) {
		d.fs.forget(d.ino)
	}
}

// Symlink is a symbolic link.
type Symlink struct {
	bareNode
	linkable
}

var (
	_ fusefs.Node           = (*Symlink)(nil)
	_ fusefs.NodeReadlinker = (*Symlink)(nil)
	_ fusefs.NodeSetattrer  = (*Symlink)(nil)
	_ fusefs.NodeForgetter  = (*Symlink)(nil)
)

// Attr reports the link's attributes.
func (s *Symlink) Attr(ctx context.Context, a *fuse.Attr) error {
	in, err := s.fs.inode(s.ino)
	if err != nil {
		return errno(s.fs.log, "getattr", err)
	}
	s.fs.fillAttr(in, a)
	a.Size = uint64(len(in.Target))
	return nil
}

// Readlink returns the target.
func (s *Symlink) Readlink(ctx context.Context, req *fuse.ReadlinkRequest) (string, error) {
	in, err := s.fs.inode(s.ino)
	if err != nil {
		return "", errno(s.fs.log, "readlink", err)
	}
	return in.Target, nil
}

// Setattr changes a link's owner or times (lchown, lutimes); its mode is
// always 0777.
func (s *Symlink) Setattr(ctx context.Context, req *fuse.SetattrRequest, resp *fuse.SetattrResponse) error {
	if req.Valid.Size() {
		return fuse.Errno(syscall.EINVAL)
	}
	req.Valid &^= fuse.SetattrMode
	in, err := s.fs.setattr(ctx, s.ino, req)
	if err != nil {
		return errno(s.fs.log, "setattr", err)
	}
	s.fs.fillAttr(in, &resp.Attr)
	resp.Attr.Size = uint64(len(in.Target))
	return nil
}

// Forget drops the node.
func (s *Symlink) Forget() { s.fs.forget(s.ino) }
