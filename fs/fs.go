package fs

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"os"
	"strconv"
	"sync"
	"syscall"
	"time"

	"bazil.org/fuse"
	fusefs "bazil.org/fuse/fs"

	"github.com/reefproject/reef/namespace"
)

// Tree is the namespace as the mount uses it. *namespace.Namespace
// implements it.
type Tree interface {
	Lookup(parent namespace.NodeID, name string) (namespace.Entry, error)
	Get(node namespace.NodeID) (namespace.Entry, error)
	GetInode(id namespace.InodeID) (namespace.Inode, error)
	ReadDir(dir namespace.NodeID) ([]namespace.Entry, error)
	Create(ctx context.Context, parent namespace.NodeID, name string, typ namespace.Type, attr namespace.Attr, target string) (namespace.Entry, error)
	Link(ctx context.Context, node namespace.NodeID, newParent namespace.NodeID, newName string) (namespace.Entry, error)
	Rename(ctx context.Context, parent namespace.NodeID, name string, newParent namespace.NodeID, newName string, noReplace bool) error
	Exchange(ctx context.Context, parent namespace.NodeID, name string, newParent namespace.NodeID, newName string) error
	Remove(ctx context.Context, parent namespace.NodeID, name string, dir bool) error
	SetAttr(ctx context.Context, ino namespace.InodeID, a namespace.AttrChange) (namespace.Inode, error)
	// SetContentAttr replaces the content and then applies attr() in the
	// same commit; attr is called once, under the tree's write lock.
	SetContentAttr(ctx context.Context, ino namespace.InodeID, c namespace.Content, base namespace.Timestamp, attr func() namespace.AttrChange) (namespace.Inode, error)
	SetXattr(ctx context.Context, ino namespace.InodeID, name string, value []byte) error
	RemoveXattr(ctx context.Context, ino namespace.InodeID, name string) error
	Subscribe() <-chan namespace.Change
}

// Content stores and reads file bytes by manifest address.
type Content interface {
	// Store stores everything r yields.
	Store(ctx context.Context, r io.Reader) (Stored, error)
	// ReadAt reads like io.ReaderAt from the file with that manifest.
	ReadAt(ctx context.Context, manifest [32]byte, p []byte, off int64) (int, error)
	// StoreRange stores a new version of the file at base that differs
	// only in [dirtyStart, dirtyEnd) (and past base's end), read from r.
	StoreRange(ctx context.Context, base [32]byte, r io.ReaderAt, size, dirtyStart, dirtyEnd int64) (Stored, error)
}

// Pinner is implemented by a Content whose unreferenced chunks may be
// collected: the mount pins the manifest an open file reads its unchanged
// blocks from, for as long as it does.
type Pinner interface {
	Pin(manifest [32]byte)
	Unpin(manifest [32]byte)
}

// Stored is what storing a file's content gave.
type Stored struct {
	Manifest [32]byte
	Size     int64 // bytes stored
	Zero     int64 // of which in chunks of zeros: holes, left out of st_blocks
}

// Capacity reports the volume's usable bytes for statfs.
type Capacity interface {
	Capacity() (total, free int64)
}

// Config configures a mount.
type Config struct {
	Tree     Tree
	Content  Content
	Capacity Capacity // optional
	// Durable returns when every namespace change made so far is durable
	// on enough peers; close and fsync call it. Optional.
	Durable func(ctx context.Context) error
	// Health returns the redundancy report of the file or directory at a
	// dentry, served as the extended attribute user.reef.health. Optional.
	Health func(ctx context.Context, node namespace.NodeID) ([]byte, error)
	// Sync is Durable for fsync(2): the changes must also be on stable
	// storage of those peers. Optional (Durable is used then).
	Sync       func(ctx context.Context) error
	StagingDir string // local directory for files being written
	InlineMax  int64  // files up to this size live in the namespace; 0 means DefaultInlineMax
	Logger     *slog.Logger
	// AttrValid bounds how long the kernel trusts attributes and entries
	// without asking (remote changes also invalidate at once); 0 means 1s.
	AttrValid time.Duration
	// ObserveOp, when set, is called once per answered FUSE request with
	// the operation's name, the errno name ("" on success) and how long
	// the request took (metrics: round trips per file operation).
	ObserveOp func(op, errno string, d time.Duration)
	// Locks keeps fcntl and flock locks for the whole volume. Optional:
	// without it the kernel keeps them, for this mount only.
	Locks Locker
}

// DefaultInlineMax is the largest file kept inline in the namespace: 64 KiB.
// Below it a file costs one replicated namespace operation instead of k+m
// shard writes; above it, erasure coding's storage efficiency wins.
const DefaultInlineMax = 64 << 10

// FS is a mounted volume.
type FS struct {
	cfg Config
	log *slog.Logger

	mu    sync.Mutex // guards nodes, open and last
	nodes map[namespace.InodeID]fusefs.Node
	open  map[namespace.InodeID]*openFile
	last  map[namespace.InodeID]namespace.Inode // last state seen of each kernel node

	server *fusefs.Server
}

var _ fusefs.FS = (*FS)(nil)
var _ fusefs.FSStatfser = (*FS)(nil)

// New returns the file system; Mount serves it.
func New(cfg Config) (*FS, error) {
	if cfg.Tree == nil || cfg.Content == nil || cfg.StagingDir == "" {
		return nil, errors.New("fs: Tree, Content and StagingDir are required")
	}
	if cfg.InlineMax <= 0 {
		cfg.InlineMax = DefaultInlineMax
	}
	if cfg.InlineMax > namespace.MaxInlineLen {
		cfg.InlineMax = namespace.MaxInlineLen
	}
	if cfg.AttrValid <= 0 {
		cfg.AttrValid = time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if err := os.MkdirAll(cfg.StagingDir, 0o700); err != nil {
		return nil, fmt.Errorf("fs: staging dir: %w", err)
	}
	return &FS{cfg: cfg, log: cfg.Logger, nodes: map[namespace.InodeID]fusefs.Node{}, open: map[namespace.InodeID]*openFile{},
		last: map[namespace.InodeID]namespace.Inode{}}, nil
}

// Root returns the root directory.
func (f *FS) Root() (fusefs.Node, error) {
	in, err := f.cfg.Tree.GetInode(namespace.InodeID(namespace.RootID))
	if err != nil {
		return nil, err
	}
	return f.node(namespace.RootID, in), nil
}

// node returns the one kernel node of an inode, creating it if needed.
// dentry is a dentry that names it (files need one to make hard links).
func (f *FS) node(dentry namespace.NodeID, in namespace.Inode) fusefs.Node {
	typ, ino := in.Type, in.ID
	f.mu.Lock()
	defer f.mu.Unlock()
	f.last[ino] = in
	if n, ok := f.nodes[ino]; ok {
		if d, ok := n.(dentried); ok {
			d.setDentry(dentry)
		}
		return n
	}
	var n fusefs.Node
	switch typ {
	case namespace.Dir:
		n = &Dir{bareNode{fs: f, ino: ino}}
	case namespace.Symlink:
		n = &Symlink{bareNode: bareNode{fs: f, ino: ino}, linkable: linkable{dentry: dentry}}
	case namespace.Fifo, namespace.Socket, namespace.CharDev, namespace.BlockDev:
		n = &Special{bareNode: bareNode{fs: f, ino: ino}, linkable: linkable{dentry: dentry}}
	default:
		n = &File{bareNode: bareNode{fs: f, ino: ino}, linkable: linkable{dentry: dentry}}
	}
	f.nodes[ino] = n
	return n
}

func (f *FS) forget(ino namespace.InodeID) {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.nodes, ino)
	delete(f.last, ino)
}

// inode returns the current state of ino. An inode whose last name went
// away while the kernel still holds it (open, or the cwd of someone) keeps
// its last state with Nlink 0, as on a local file system: fstat, read and
// fchmod of an unlinked open file work until the last close.
func (f *FS) inode(ino namespace.InodeID) (namespace.Inode, error) {
	in, err := f.cfg.Tree.GetInode(ino)
	if err == nil {
		f.keep(in)
		return in, nil
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if errors.Is(err, namespace.ErrNotExist) {
		if last, ok := f.last[ino]; ok {
			last.Nlink = 0
			return last, nil
		}
	}
	return in, err
}

// keepLast refreshes the kept state (see inode) of the inode that name in
// parent names, before an unlink or a rename over it may take its last
// name: the kernel may hold it open, and what fstat and fgetxattr show of
// it then must be its latest state, not the one of the last getattr.
func (f *FS) keepLast(parent namespace.NodeID, name string) {
	if e, err := f.cfg.Tree.Lookup(parent, name); err == nil {
		f.keep(e.Inode)
	}
}

// keep records in as the last state seen of its inode, if the kernel holds
// a node for it.
func (f *FS) keep(in namespace.Inode) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, known := f.nodes[in.ID]; known {
		f.last[in.ID] = in
	}
}

// orphan applies change to the last state of ino, kept for the kernel
// (see inode), when the namespace no longer has ino: the file was unlinked
// while open. On a local file system fchmod, fchown, futimes, ftruncate and
// the xattr calls of an unlinked open file succeed and show in its fstat
// until the last close; here too, on this mount only (nobody else can name
// the file). It reports false when err is not the namespace's ErrNotExist
// or no state is kept; the caller then returns err. change may fail (a
// removexattr of an attribute the file lacks).
func (f *FS) orphan(ino namespace.InodeID, err error, change func(*namespace.Inode) error) (namespace.Inode, bool, error) {
	if !errors.Is(err, namespace.ErrNotExist) {
		return namespace.Inode{}, false, nil
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	last, ok := f.last[ino]
	if !ok {
		return namespace.Inode{}, false, nil
	}
	last.Xattrs = maps.Clone(last.Xattrs) // shared with earlier copies
	if cerr := change(&last); cerr != nil {
		return namespace.Inode{}, true, cerr
	}
	last.Nlink = 0
	last.Ctime = time.Now().UnixNano()
	f.last[ino] = last
	return last, true, nil
}

func (f *FS) cached(ino namespace.InodeID) fusefs.Node {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.nodes[ino]
}

// Statfs reports the cluster's usable capacity.
func (f *FS) Statfs(ctx context.Context, req *fuse.StatfsRequest, resp *fuse.StatfsResponse) error {
	const bs = 4096
	total, free := int64(1<<40), int64(1<<40)
	if f.cfg.Capacity != nil {
		total, free = f.cfg.Capacity.Capacity()
	}
	resp.Bsize = bs
	resp.Frsize = bs
	resp.Blocks = uint64(total / bs)
	resp.Bfree = uint64(free / bs)
	resp.Bavail = uint64(free / bs)
	resp.Files = 1 << 40
	resp.Ffree = 1 << 40
	resp.Namelen = namespace.MaxNameLen
	return nil
}

// fillAttr converts an inode to kernel attributes.
func (f *FS) fillAttr(in namespace.Inode, a *fuse.Attr) {
	a.Valid = f.cfg.AttrValid
	a.Inode = uint64(in.ID)
	a.Size = uint64(in.Size)
	// Holes (chunks of zeros, stored once for the whole volume) take no
	// room, as on a local filesystem: du, and the sparse-file checks of
	// cp, tar and rsync, see a sparse file as sparse.
	used := in.Size
	if in.Content.Manifest != ([32]byte{}) {
		used -= min(max(in.Content.Zero, 0), in.Size)
	}
	a.Blocks = (uint64(max(used, 0)) + 511) / 512
	if in.Type == namespace.Dir {
		// A directory shows one block, as on ext4: some tools take a
		// size of 0 for an empty or unreadable directory.
		a.Size, a.Blocks = 4096, 8
	}
	a.BlockSize = 64 << 10
	a.Atime = time.Unix(0, in.Atime)
	a.Mtime = time.Unix(0, in.Mtime)
	a.Ctime = time.Unix(0, in.Ctime)
	a.Nlink = in.Nlink
	a.Uid = in.Uid
	a.Gid = in.Gid
	a.Mode = toFileMode(in.Type, in.Mode)
	if in.Type == namespace.CharDev || in.Type == namespace.BlockDev {
		rdev, _ := strconv.ParseUint(in.Target, 10, 32)
		a.Rdev = uint32(rdev)
	}
}

func toFileMode(t namespace.Type, m uint32) os.FileMode {
	mode := os.FileMode(m & 0o777)
	if m&syscall.S_ISUID != 0 {
		mode |= os.ModeSetuid
	}
	if m&syscall.S_ISGID != 0 {
		mode |= os.ModeSetgid
	}
	if m&syscall.S_ISVTX != 0 {
		mode |= os.ModeSticky
	}
	switch t {
	case namespace.Dir:
		mode |= os.ModeDir
	case namespace.Symlink:
		mode |= os.ModeSymlink
	case namespace.Fifo:
		mode |= os.ModeNamedPipe
	case namespace.Socket:
		mode |= os.ModeSocket
	case namespace.CharDev:
		mode |= os.ModeDevice | os.ModeCharDevice
	case namespace.BlockDev:
		mode |= os.ModeDevice
	}
	return mode
}

func fromFileMode(mode os.FileMode) uint32 {
	m := uint32(mode.Perm())
	if mode&os.ModeSetuid != 0 {
		m |= syscall.S_ISUID
	}
	if mode&os.ModeSetgid != 0 {
		m |= syscall.S_ISGID
	}
	if mode&os.ModeSticky != 0 {
		m |= syscall.S_ISVTX
	}
	return m
}

// setattr applies the non-size parts of a setattr request.
func (f *FS) setattr(ctx context.Context, ino namespace.InodeID, req *fuse.SetattrRequest) (namespace.Inode, error) {
	return f.applyAttr(ctx, ino, attrChange(req))
}

// attrChange is the non-size part of a setattr request.
func attrChange(req *fuse.SetattrRequest) namespace.AttrChange {
	var ch namespace.AttrChange
	if req.Valid.Mode() {
		ch.Mask |= namespace.SetMode
		ch.Mode = fromFileMode(req.Mode)
	}
	if req.Valid.Uid() {
		ch.Mask |= namespace.SetUid
		ch.Uid = req.Uid
	}
	if req.Valid.Gid() {
		ch.Mask |= namespace.SetGid
		ch.Gid = req.Gid
	}
	now := time.Now().UnixNano()
	if req.Valid.AtimeNow() {
		ch.Mask |= namespace.SetAtime
		ch.Atime = now
	} else if req.Valid.Atime() {
		ch.Mask |= namespace.SetAtime
		ch.Atime = req.Atime.UnixNano()
	}
	if req.Valid.MtimeNow() {
		ch.Mask |= namespace.SetMtime
		ch.Mtime = now
	} else if req.Valid.Mtime() {
		ch.Mask |= namespace.SetMtime
		ch.Mtime = req.Mtime.UnixNano()
	}
	return ch
}

// applyAttr commits ch as a replicated op.
func (f *FS) applyAttr(ctx context.Context, ino namespace.InodeID, ch namespace.AttrChange) (namespace.Inode, error) {
	// Owner and mode set to what they are already (tar and cp -a chown
	// every file to its current owner) change nothing: no replicated op.
	if ch.Mask&(namespace.SetMode|namespace.SetUid|namespace.SetGid) != 0 {
		if in, err := f.inode(ino); err == nil {
			if ch.Mask&namespace.SetMode != 0 && ch.Mode == in.Mode {
				ch.Mask &^= namespace.SetMode
			}
			if ch.Mask&namespace.SetUid != 0 && ch.Uid == in.Uid {
				ch.Mask &^= namespace.SetUid
			}
			if ch.Mask&namespace.SetGid != 0 && ch.Gid == in.Gid {
				ch.Mask &^= namespace.SetGid
			}
		}
	}
	if ch.Mask == 0 {
		return f.inode(ino)
	}
	in, err := f.cfg.Tree.SetAttr(ctx, ino, ch)
	if oin, ok, oerr := f.orphan(ino, err, func(in *namespace.Inode) error { *in = ch.ApplyTo(*in); return nil }); ok {
		return oin, oerr
	}
	return in, err
}

// stale drops the kernel's cached attributes of n after this mount stored
// its content: the commit stamped a new mtime, and the kernel would keep
// showing the one it cached before (for up to AttrValid) after close.
func (f *FS) stale(n fusefs.Node) {
	if f.server != nil {
		f.server.InvalidateNodeAttr(n)
	}
}

// remoteChange tells ino's open state, if the file is open here, that
// another peer changed it, and drops a clean staging copy it made stale
// (openFile.refresh) in the background: of.mu may be held for seconds by a
// store, and invalidate must go on meanwhile.
func (f *FS) remoteChange(ino namespace.InodeID) {
	of := f.openFile(ino)
	if of == nil {
		return
	}
	of.remote.Store(true)
	go func() {
		of.mu.Lock()
		of.refresh()
		of.mu.Unlock()
	}()
}

// invalidate keeps kernel caches fresh when other peers change the tree.
// It runs until the subscription closes.
func (f *FS) invalidate(changes <-chan namespace.Change) {
	for c := range changes {
		if f.server == nil {
			continue
		}
		if c.All {
			f.mu.Lock()
			nodes := make([]fusefs.Node, 0, len(f.nodes))
			for _, n := range f.nodes {
				nodes = append(nodes, n)
			}
			f.mu.Unlock()
			for _, n := range nodes {
				if fl, ok := n.(*File); ok {
					f.remoteChange(fl.ino)
				}
				f.server.InvalidateNodeData(n)
				f.server.InvalidateNodeAttr(n)
			}
			continue
		}
		for _, ino := range c.Inodes {
			f.remoteChange(ino)
			if n := f.cached(ino); n != nil {
				if fl, ok := n.(*File); ok && fl.fs.hasDirtyOpen(ino) {
					continue // this mount's own unsaved writes win until close
				}
				f.server.InvalidateNodeAttr(n)
				f.server.InvalidateNodeData(n)
			}
		}
		for _, dn := range c.Names {
			if n := f.cached(namespace.InodeID(dn.Dir)); n != nil {
				f.server.InvalidateEntry(n, dn.Name)
			}
		}
		for _, d := range c.Dirs {
			if n := f.cached(namespace.InodeID(d)); n != nil {
				f.server.InvalidateNodeData(n)
				f.server.InvalidateNodeAttr(n)
			}
		}
	}
}
