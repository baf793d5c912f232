package fs

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"bazil.org/fuse"
	fusefs "bazil.org/fuse/fs"
	"golang.org/x/sys/unix"

	"github.com/reefproject/reef/namespace"
)

// File is a regular file: one node per inode, whatever its links.
type File struct {
	bareNode // fs, ino and the extended-attribute calls (Getxattr is File's)
	linkable
	// read is set by the first read of the file through this mount: from
	// then on the kernel may hold its pages, which a write through a
	// direct-I/O handle must drop (Handle.Write).
	read atomic.Bool

	lockMu   sync.Mutex          // guards lockSeen
	lockSeen namespace.Timestamp // the version the kernel's cache held at the last lock (freshen)
}

// linkable is the part of a node that can have several names (a file, a
// symlink, a special file): one of its dentries, the one link(2) names
// (the namespace links by dentry, the kernel by inode).
type linkable struct {
	mu     sync.Mutex // guards dentry
	dentry namespace.NodeID
}

// dentried is a node that knows one of its dentries.
type dentried interface {
	setDentry(namespace.NodeID)
	getDentry() namespace.NodeID
}

var (
	_ fusefs.Node              = (*File)(nil)
	_ fusefs.NodeOpener        = (*File)(nil)
	_ fusefs.NodeSetattrer     = (*File)(nil)
	_ fusefs.NodeFsyncer       = (*File)(nil)
	_ fusefs.NodeForgetter     = (*File)(nil)
	_ fusefs.NodeGetxattrer    = (*File)(nil)
	_ fusefs.NodeListxattrer   = (*File)(nil)
	_ fusefs.NodeSetxattrer    = (*File)(nil)
	_ fusefs.NodeRemovexattrer = (*File)(nil)
)

func (l *linkable) setDentry(d namespace.NodeID) {
	l.mu.Lock()
	l.dentry = d
	l.mu.Unlock()
}

func (l *linkable) getDentry() namespace.NodeID {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.dentry
}

// Attr reports the file's attributes; while this mount has unsaved writes,
// the size is theirs.
func (f *File) Attr(ctx context.Context, a *fuse.Attr) error {
	in, err := f.fs.inode(f.ino)
	if err != nil {
		return errno(f.fs.log, "getattr", err)
	}
	f.fs.fillAttr(f.fs.openFile(f.ino).view(in), a)
	return nil
}

// view is in as this mount shows it while the file is open here: with the
// size of the unsaved writes and the attribute changes waiting for the
// next commit. of may be nil. Never takes of.mu: a store or fetch can hold
// it for seconds, and getattr and setattr are served inline (FS.inline).
func (of *openFile) view(in namespace.Inode) namespace.Inode {
	if of == nil {
		return in
	}
	if n := of.shown.Load(); n > 0 && !(of.remote.Load() && of.wtime.Load() == 0) {
		in.Size = n - 1 // unless a newer version from another peer replaces a clean copy
	}
	of.amu.Lock()
	p := of.pend
	of.amu.Unlock()
	in = p.ApplyTo(in)
	in.Ctime = max(in.Ctime, of.ctime.Load())
	if w := of.wtime.Load(); w != 0 {
		// Unsaved writes changed the file: shown as modified then, as a
		// local file system does, not at the time of the last commit.
		in.Ctime = max(in.Ctime, w)
		if p.Mask&namespace.SetMtime == 0 {
			in.Mtime = max(in.Mtime, w)
		}
	}
	return in
}

// Open opens the file. Handles of one inode share its staging state.
func (f *File) Open(ctx context.Context, req *fuse.OpenRequest, resp *fuse.OpenResponse) (fusefs.Handle, error) {
	in, err := f.fs.inode(f.ino)
	if err != nil {
		return nil, errno(f.fs.log, "open", err)
	}
	h := f.openHandle(in, !req.Flags.IsReadOnly())
	h.answer(req.Flags, resp)
	if req.OpenFlags&fuse.OpenKillSUIDGID != 0 { // O_TRUNC by an unprivileged caller
		var ch namespace.AttrChange
		err := f.killPriv(ctx, h.of, &ch)
		if err == nil && ch.Mask != 0 && !h.of.fold(ch) {
			_, err = f.fs.applyAttr(ctx, f.ino, ch)
		}
		if err != nil {
			h.release(ctx)
			return nil, errno(f.fs.log, "open", err)
		}
	}
	return h, nil
}

// answer sets the flags of the kernel's open of h (by open or create).
func (h *Handle) answer(flags fuse.OpenFlags, resp *fuse.OpenResponse) {
	// The kernel may keep the file's cached pages across opens: every
	// change from another peer invalidates them (FS.invalidate), and
	// changes made here go through the cache. Without this each open
	// dropped them and re-read the file.
	resp.Flags |= fuse.OpenKeepCache
	if flags.IsWriteOnly() {
		// Writes through a handle that cannot read bypass the kernel's
		// page cache (FOPEN_DIRECT_IO): the kernel otherwise copied each
		// written byte into a page of its cache first, a copy and a
		// fresh page per 4 KiB that a backup or a cp never reads back.
		// Such a handle cannot be mapped or read, so nothing else
		// changes for it; pages other handles cached are dropped as
		// the writes land (Handle.Write).
		resp.Flags |= fuse.OpenDirectIO
		h.direct = true
	}
}

func (f *File) openHandle(in namespace.Inode, write bool) *Handle {
	f.fs.mu.Lock()
	defer f.fs.mu.Unlock()
	of := f.fs.open[f.ino]
	if of == nil {
		of = &openFile{fs: f.fs, ino: f.ino}
		f.fs.open[f.ino] = of
	}
	of.refs++
	if write {
		of.writers++
	}
	if of.refs == 1 {
		of.pinRead(in.Content.Manifest)
	}
	return &Handle{file: f, of: of, write: write}
}

// openFile returns the shared open state of ino, if any.
func (fs *FS) openFile(ino namespace.InodeID) *openFile {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	return fs.open[ino]
}

func (fs *FS) hasDirtyOpen(ino namespace.InodeID) bool {
	of := fs.openFile(ino)
	if of == nil {
		return false
	}
	of.mu.Lock()
	defer of.mu.Unlock()
	return of.dirty
}

// Setattr handles chmod, chown, utimens and truncate. ftruncate on an open
// handle arrives here too (bazil delivers setattr to the node), and acts on
// the shared staging file so the handle sees it.
func (f *File) Setattr(ctx context.Context, req *fuse.SetattrRequest, resp *fuse.SetattrResponse) error {
	resized := false // a truncation that changed the size: the file is stored (or dirty) anew
	if req.Valid.Size() {
		in, err := f.fs.inode(f.ino)
		if err != nil {
			return errno(f.fs.log, "truncate", err)
		}
		h := f.openHandle(in, true)
		resized, err = h.of.truncate(ctx, int64(req.Size))
		if err == nil && h.of.refs == 1 {
			err = h.of.commit(ctx) // no handle open: truncate(2) is durable at once
		}
		if rerr := h.release(ctx); err == nil {
			err = rerr
		}
		if err != nil {
			return errno(f.fs.log, "truncate", err)
		}
	}
	ch := attrChange(req)
	of := f.fs.openFile(f.ino)
	if req.Valid.Size() && ch.Mask&namespace.SetMtime == 0 && !resized {
		// truncate(2), ftruncate(2) and open(O_TRUNC) stamp the file's
		// mtime and ctime even when the size stays (an empty file opened
		// with O_TRUNC), as a local filesystem does; the kernel sends
		// just the size. A truncation that changed the size made the
		// file dirty, like a write: its store stamps them. So does a
		// file's pending store: the truncation counts as one more write
		// (an explicit mtime folded into it would win over the later
		// writes' time).
		if !of.touch() {
			ch.Mask |= namespace.SetMtime
			ch.Mtime = time.Now().UnixNano()
		}
	}
	// chown clears the set-id bits, as does truncation by a caller the
	// kernel flags (it left both to the mount: fuse.HandleKillPriv).
	// chown(path, -1, -1) arrives as a change of ctime alone (ctimeOnly).
	chown := (ch.Mask&(namespace.SetUid|namespace.SetGid) != 0 || ctimeOnly(req.Valid)) && ch.Mask&namespace.SetMode == 0
	if chown || (req.Valid.Size() && req.Valid.SetattrKillSUIDGID()) {
		if err := f.killPriv(ctx, of, &ch); err != nil {
			return errno(f.fs.log, "setattr", err)
		}
	}
	if ch.Mask != 0 && of.fold(ch) {
		// Folded into the commit the open file's unsaved writes are
		// waiting for (tar and rsync set mode and times on the file
		// before closing it): one replicated op at close, not three.
		in, err := f.fs.inode(f.ino)
		if err != nil {
			return errno(f.fs.log, "setattr", err)
		}
		f.fs.fillAttr(of.view(in), &resp.Attr)
		return nil
	}
	in, err := f.fs.applyAttr(ctx, f.ino, ch)
	if err != nil {
		return errno(f.fs.log, "setattr", err)
	}
	f.fs.fillAttr(of.view(in), &resp.Attr)
	return nil
}

// ctimeOnly reports whether a setattr request changes nothing but ctime,
// or nothing at all: that is how the kernel sends chown(2) with both ids
// -1, and its request to drop the set-id bits before a write by a caller
// without CAP_FSETID. Both clear the bits on a local filesystem.
func ctimeOnly(v fuse.SetattrValid) bool {
	return v&^(fuse.SetattrHandle|fuse.SetattrLockOwner|fuse.SetattrCTime) == 0
}

// killPriv adds to ch the mode change that clears the file's set-user-ID
// bit and its set-group-ID bit if group-executable, as a local filesystem
// does on chown and on a write or truncation by an unprivileged caller;
// it removes the security.capability attribute. of may be nil.
func (f *File) killPriv(ctx context.Context, of *openFile, ch *namespace.AttrChange) error {
	in, err := f.fs.inode(f.ino)
	if err != nil {
		return err
	}
	if _, ok := in.Xattrs[capabilityXattr]; ok {
		if err := f.fs.removeXattr(ctx, f.ino, capabilityXattr); err != nil && !errors.Is(err, namespace.ErrNoXattr) {
			return err
		}
	}
	mode := of.view(in).Mode
	if ch.Mask&namespace.SetMode != 0 {
		mode = ch.Mode
	}
	kill := mode
	if kill&syscall.S_ISUID != 0 {
		kill &^= syscall.S_ISUID
	}
	if kill&(syscall.S_ISGID|syscall.S_IXGRP) == syscall.S_ISGID|syscall.S_IXGRP {
		kill &^= syscall.S_ISGID
	}
	if kill != mode {
		ch.Mask |= namespace.SetMode
		ch.Mode = kill
	}
	return nil
}

// capabilityXattr holds file capabilities; a write or chown drops it.
const capabilityXattr = "security.capability"

// Fsync stores the file's unsaved writes durably (bazil delivers fsync to
// the node, not the handle).
func (f *File) Fsync(ctx context.Context, req *fuse.FsyncRequest) error {
	ctx = uninterruptible(ctx)
	if of := f.fs.openFile(f.ino); of != nil {
		changed := of.wtime.Load() != 0
		if err := of.commit(ctx); err != nil && !unlinked(err) {
			return errno(f.fs.log, "fsync", err)
		}
		if changed {
			f.fs.stale(f)
		}
	}
	return errno(f.fs.log, "fsync", f.fs.synced(ctx))
}

// synced is durable for fsync(2): on stable storage of enough peers.
func (fs *FS) synced(ctx context.Context) error {
	if fs.cfg.Sync == nil {
		return fs.durable(ctx)
	}
	return fs.cfg.Sync(ctx)
}

// uninterruptible detaches ctx from FUSE interrupts. The kernel interrupts
// a request when its caller gets any signal (Go programs get SIGURG for
// preemption all the time), but close(2) cannot be retried, so the calls
// that store data finish or fail on their own deadline instead.
func uninterruptible(ctx context.Context) context.Context {
	return context.WithoutCancel(ctx)
}

// durable waits until the namespace changes made so far are replicated.
func (fs *FS) durable(ctx context.Context) error {
	if fs.cfg.Durable == nil {
		return nil
	}
	return fs.cfg.Durable(ctx)
}

// Forget drops the node.
func (f *File) Forget() { f.fs.forget(f.ino) }

// openFile is the state shared by every handle of one inode on this mount.
//
// Small files are staged whole (in memory up to memStageMax). A big chunked
// file is staged lazily: the staging file is sparse, and only the blocks a
// write touches are filled from the stored content first; reads of other
// blocks go to the stored content. At close only the changed region is
// chunked again (Content.StoreRange), so a small change to a big file costs
// a few chunks, not the file.
type openFile struct {
	fs  *FS
	ino namespace.InodeID

	mu      sync.Mutex // guards the fields below
	refs    int        // handles open (guarded by FS.mu, not mu)
	writers int        // of which may write (FS.mu)
	staging stage      // local copy being written; nil until needed
	size    int64      // size of the file as written here
	dirty   bool       // staging differs from what the namespace holds
	base    namespace.Timestamp

	// Write-behind (writebehind.go): seq says the staging copy holds
	// exactly the bytes appended since it was created empty; while it
	// does, wb (once the file passes streamMin) stores them as they come.
	seq bool
	wb  *writeBehind
	// lost is set when a write-behind store failed: the bytes it had
	// taken are gone, so the file cannot be stored; every read and
	// commit returns it until a truncate to zero starts the file afresh.
	lost error

	// Lazy staging of a big chunked file.
	old        [32]byte       // manifest the unchanged blocks come from; zero: staging holds everything
	pinned     [32]byte       // the old manifest pinned with the Content (keepOld)
	pmu        sync.Mutex     // guards rpinned
	rpinned    [32]byte       // the version reads are served from, pinned (pinRead)
	oldZero    int64          // bytes of holes in old (namespace.Content.Zero)
	cut        int64          // old content is valid below this offset only
	have       map[int64]bool // blocks (lazyBlock bytes) present in staging
	dirtyStart int64          // the changed region since the last commit
	dirtyEnd   int64

	// wtime is when the staging copy last changed (unix ns), 0 once it is
	// committed: view shows it as the mtime meanwhile.
	wtime atomic.Int64

	// remote is set when another peer changed the inode since the last
	// refresh: a clean staging copy may be stale (see refresh).
	remote atomic.Bool

	// shown mirrors the staged size for Attr, which must not wait for mu:
	// size+1 while staging holds the file, 0 when nothing is staged.
	// Every change of size or staging calls publish.
	shown atomic.Int64

	// Attribute changes (chmod, chown, utimens) made while the file has
	// unsaved writes wait for the commit that stores them and go in the
	// same namespace commit, after the content: storing content sets the
	// mtime to the time of the store, and an explicit one set before
	// close (tar, rsync, cp -p) must win over it. Guarded by amu, not mu,
	// because setattr and getattr are served inline.
	amu      sync.Mutex
	pend     namespace.AttrChange // changes to apply at the next commit
	ctime    atomic.Int64         // when a change was last folded into pend (unix ns): the ctime shown until the commit
	foldable bool                 // dirty and not yet being committed: setattr may fold into pend
}

// fold adds ch to the changes waiting for the next commit, if one is
// pending; it reports whether it did. of may be nil.
func (of *openFile) fold(ch namespace.AttrChange) bool {
	if of == nil {
		return false
	}
	of.amu.Lock()
	defer of.amu.Unlock()
	if !of.foldable {
		return false
	}
	of.pend = of.pend.Merge(ch)
	of.ctime.Store(time.Now().UnixNano())
	return true
}

// setDirty marks the staging copy as differing from the namespace. Holds
// of.mu.
func (of *openFile) setDirty() {
	of.dirty = true
	of.wtime.Store(time.Now().UnixNano())
	of.amu.Lock()
	of.foldable = true
	of.amu.Unlock()
}

// dropMtime forgets a waiting explicit mtime.
func (of *openFile) dropMtime() {
	of.amu.Lock()
	of.pend.Mask &^= namespace.SetMtime
	of.amu.Unlock()
}

// takeAttrs hands the waiting attribute changes to a commit; no change
// folds in after this until the file is dirty again.
func (of *openFile) takeAttrs() namespace.AttrChange {
	of.amu.Lock()
	defer of.amu.Unlock()
	p := of.pend
	of.pend, of.foldable = namespace.AttrChange{}, false
	return p
}

// untakeAttrs gives back changes taken by a commit that failed: the file
// stays dirty and they go with the next try. Changes folded since win.
func (of *openFile) untakeAttrs(p namespace.AttrChange) {
	of.amu.Lock()
	defer of.amu.Unlock()
	of.pend, of.foldable = p.Merge(of.pend), true
}

// publish updates shown. Holds of.mu.
func (of *openFile) publish() {
	if of.staging == nil {
		of.shown.Store(0)
		return
	}
	of.shown.Store(of.size + 1)
}

// lazyBlock is the unit in which a lazily staged file is filled.
const lazyBlock = 256 << 10

// stage makes sure a staging copy exists, holding the first keep bytes of
// the current content (a truncate to zero needs nothing). Holds of.mu.
// refresh drops a clean staging copy that a newer version from another
// peer made stale, so that a file kept open here (a database, a log
// follower) reads what the other mount wrote, and the next write here
// starts from that version instead of overwriting it with the old one. A
// dirty copy stays: writes on two mounts at once are concurrent writes,
// resolved at commit (the later close wins the name, the other version
// becomes a conflict copy). Holds of.mu.
func (of *openFile) refresh() {
	if !of.remote.Load() {
		return
	}
	if of.staging == nil || of.dirty || of.wb != nil || of.lost != nil {
		of.remote.Store(false)
		return
	}
	in, err := of.fs.inode(of.ino)
	if err != nil {
		return
	}
	of.remote.Store(false)
	if in.Version == of.base {
		return
	}
	of.dropStream()
	of.staging.Close()
	of.staging = nil
	of.old, of.oldZero, of.cut, of.have = [32]byte{}, 0, 0, nil
	of.keepOld()
	of.publish()
}

func (of *openFile) stage(ctx context.Context, keep int64) error {
	of.refresh()
	if of.staging != nil {
		return nil
	}
	in, err := of.fs.inode(of.ino)
	if err != nil {
		return err
	}
	n := min(in.Size, keep)
	of.base = in.Version
	of.dirtyStart, of.dirtyEnd = 1<<62, 0
	if in.Content.Manifest != ([32]byte{}) && n > memStageMax {
		st, err := newFileStage(of.fs.cfg.StagingDir)
		if err != nil {
			return err
		}
		if err := st.Truncate(n); err != nil {
			st.Close()
			return err
		}
		of.staging, of.size = st, n
		of.publish()
		of.old, of.oldZero, of.cut, of.have = in.Content.Manifest, in.Content.Zero, n, map[int64]bool{}
		of.keepOld()
		of.dirty, of.seq = false, false
		if n != in.Size {
			of.markDirty(n, in.Size)
		}
		return nil
	}
	var st stage = &memStage{}
	if n > memStageMax {
		if st, err = newFileStage(of.fs.cfg.StagingDir); err != nil {
			return err
		}
	}
	if n > 0 {
		if err := of.fs.copyContent(ctx, in, st, n); err != nil {
			st.Close()
			return err
		}
	}
	of.staging, of.size, of.old, of.oldZero = st, n, [32]byte{}, 0
	of.keepOld()
	of.publish()
	of.dirty = false
	if n != in.Size {
		of.setDirty()
	}
	of.seq = n == 0
	return nil
}

func (of *openFile) markDirty(start, end int64) {
	of.setDirty()
	of.dirtyStart = min(of.dirtyStart, start)
	of.dirtyEnd = max(of.dirtyEnd, end)
}

// present reports whether the block at b is in staging (not in the old
// content). Holds of.mu.
func (of *openFile) present(b int64) bool {
	return of.old == ([32]byte{}) || of.have[b] || b*lazyBlock >= of.cut
}

// fill copies block b from the old content into staging. Holds of.mu.
func (of *openFile) fill(ctx context.Context, b int64) error {
	if of.present(b) {
		return nil
	}
	start := b * lazyBlock
	end := min(start+lazyBlock, of.cut)
	buf := make([]byte, end-start)
	n, err := of.fs.cfg.Content.ReadAt(ctx, of.old, buf, start)
	if err != nil && !errors.Is(err, io.EOF) {
		return err
	}
	if _, err := of.staging.WriteAt(buf[:n], start); err != nil {
		return err
	}
	of.have[b] = true
	return nil
}

// prepareWrite fills the blocks that a write of [off, end) only partly
// covers; fully covered blocks need nothing. Holds of.mu.
func (of *openFile) prepareWrite(ctx context.Context, off, end int64) error {
	if of.old == ([32]byte{}) || off >= end {
		return nil
	}
	first, last := off/lazyBlock, (end-1)/lazyBlock
	for b := first; b <= last; b++ {
		bs, be := b*lazyBlock, (b+1)*lazyBlock
		if off <= bs && end >= be {
			of.have[b] = true
			continue
		}
		if err := of.fill(ctx, b); err != nil {
			return err
		}
	}
	return nil
}

// readAt reads the file as written here: staged blocks from staging, the
// others from the old content. Holds of.mu.
func (of *openFile) readAt(ctx context.Context, p []byte, off int64) (int, error) {
	if off >= of.size {
		return 0, io.EOF
	}
	p = p[:min(int64(len(p)), of.size-off)]
	n := 0
	for n < len(p) {
		pos := off + int64(n)
		b := pos / lazyBlock
		end := min((b+1)*lazyBlock-pos, int64(len(p)-n))
		q := p[n : n+int(end)]
		var m int
		var err error
		if of.present(b) {
			m, err = of.staging.ReadAt(q, pos)
		} else {
			m, err = of.fs.cfg.Content.ReadAt(ctx, of.old, q, pos)
		}
		if m < len(q) {
			clear(q[m:]) // a hole: zeros
		}
		if err != nil && !errors.Is(err, io.EOF) {
			return n, err
		}
		n += len(q)
	}
	if int64(n)+off >= of.size {
		return n, io.EOF
	}
	return n, nil
}

// readerAt adapts readAt for Content.StoreRange.
type readerAt struct {
	ctx context.Context
	of  *openFile
}

func (r readerAt) ReadAt(p []byte, off int64) (int, error) { return r.of.readAt(r.ctx, p, off) }

// grow moves an in-memory staging copy to a file before it passes
// memStageMax bytes. Holds of.mu.
func (of *openFile) grow(end int64) error {
	m, ok := of.staging.(*memStage)
	if !ok || end <= memStageMax {
		return nil
	}
	f, err := spill(of.fs.cfg.StagingDir, m, of.size)
	if err != nil {
		return err
	}
	of.staging = f
	return nil
}

// copyContent writes the first n bytes of in's content to w.
func (fs *FS) copyContent(ctx context.Context, in namespace.Inode, w io.WriterAt, n int64) error {
	c := in.Content
	if c.Manifest == ([32]byte{}) {
		_, err := w.WriteAt(c.Inline[:min(int64(len(c.Inline)), n)], 0)
		return err
	}
	buf := make([]byte, 1<<20)
	for off := int64(0); off < n; {
		m, err := fs.cfg.Content.ReadAt(ctx, c.Manifest, buf[:min(int64(len(buf)), n-off)], off)
		if m > 0 {
			if _, werr := w.WriteAt(buf[:m], off); werr != nil {
				return werr
			}
			off += int64(m)
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// truncate sets the staged size; it reports whether the size changed.
func (of *openFile) truncate(ctx context.Context, size int64) (bool, error) {
	of.mu.Lock()
	defer of.mu.Unlock()
	of.refresh()
	prev := of.size
	if of.staging == nil {
		// Staging keeps at most size bytes: it may do the resize itself.
		in, err := of.fs.inode(of.ino)
		if err != nil {
			return false, err
		}
		prev = in.Size
	}
	if err := of.stage(ctx, size); err != nil {
		return false, err
	}
	if of.lost != nil {
		if size != 0 {
			return false, of.lost
		}
		of.lost, of.old, of.oldZero, of.have = nil, [32]byte{}, 0, nil
		of.keepOld()
	}
	if size == of.size {
		return size != prev, nil
	}
	if err := of.breakSeq(ctx); err != nil {
		return false, err
	}
	lo, hi := min(size, of.size), max(size, of.size)
	if of.old != ([32]byte{}) {
		// The block holding the new end keeps its head: fill it first.
		// Old content past the new end is never valid again.
		if lo%lazyBlock != 0 {
			if err := of.fill(ctx, lo/lazyBlock); err != nil {
				return false, err
			}
		}
		of.cut = min(of.cut, lo)
	}
	if err := of.grow(size); err != nil {
		return false, err
	}
	if err := of.staging.Truncate(size); err != nil {
		return false, err
	}
	of.size = size
	of.publish()
	of.markDirty(lo, hi)
	return true, nil
}

// touch counts as a write to the file if it has unsaved writes: the view
// shows it modified now, and the pending store stamps mtime and ctime. It
// reports whether it did; of may be nil.
func (of *openFile) touch() bool {
	if of == nil {
		return false
	}
	of.mu.Lock()
	defer of.mu.Unlock()
	if !of.dirty {
		return false
	}
	of.wtime.Store(time.Now().UnixNano())
	return true
}

// commit stores unsaved writes: inline in the namespace when small, as
// chunks otherwise (only the changed region of a lazily staged file); it
// returns when both are durable.
func (of *openFile) commit(ctx context.Context) error {
	of.mu.Lock()
	defer of.mu.Unlock()
	if !of.dirty || of.staging == nil {
		return nil
	}
	if of.lost != nil {
		return of.lost
	}
	var c namespace.Content
	c.Size = of.size
	if of.wb != nil {
		// The stream holds the file as written here: it becomes the
		// content, and the file continues staged lazily over it.
		if err := of.settle(ctx); err != nil {
			return err
		}
	}
	switch {
	case of.size <= of.fs.cfg.InlineMax:
		c.Inline = make([]byte, of.size)
		if _, err := of.readAt(ctx, c.Inline, 0); err != nil && !errors.Is(err, io.EOF) {
			return fmt.Errorf("fs: read staging: %w", err)
		}
	case of.old != ([32]byte{}) && of.dirtyStart >= of.dirtyEnd && of.cut == of.size:
		c.Manifest, c.Zero = of.old, of.oldZero // stored by the stream, nothing changed since
	case of.old != ([32]byte{}):
		st, err := of.fs.cfg.Content.StoreRange(ctx, of.old, readerAt{ctx, of}, of.size, of.dirtyStart, of.dirtyEnd)
		if err != nil {
			return err
		}
		c.Manifest, c.Zero = st.Manifest, st.Zero
	default:
		var r io.Reader = io.NewSectionReader(of.staging, 0, of.size)
		if f, ok := of.staging.(*fileStage); ok {
			r = f.contents(of.size)
		}
		st, err := of.fs.cfg.Content.Store(ctx, r)
		if err != nil {
			return err
		}
		if st.Size != of.size {
			return fmt.Errorf("fs: stored %d bytes of %d", st.Size, of.size)
		}
		c.Manifest, c.Zero = st.Manifest, st.Zero
	}
	var (
		taken  namespace.AttrChange
		handed bool
	)
	in, err := of.fs.cfg.Tree.SetContentAttr(ctx, of.ino, c, of.base, func() namespace.AttrChange {
		taken, handed = of.takeAttrs(), true
		return taken
	})
	if err != nil {
		if handed {
			of.untakeAttrs(taken)
		}
		return err
	}
	of.base = in.Version
	of.dirty = false
	of.wtime.Store(0)
	of.dirtyStart, of.dirtyEnd = 1<<62, 0
	if of.old != ([32]byte{}) && c.Manifest != ([32]byte{}) {
		// Unstaged blocks now come from the new version: same bytes.
		of.old, of.oldZero, of.cut = c.Manifest, c.Zero, of.size
		of.keepOld()
	}
	return nil
}

// keepOld pins of.old with the Content, if it is a Pinner, in place of
// the manifest pinned before: while the file is open here, unchanged
// blocks are read from that version and a rewrite reuses its chunks, so
// the peers must not collect them even once another mount has replaced
// the version. Holds of.mu; called after every change of of.old.
func (of *openFile) keepOld() {
	if of.old == of.pinned {
		return
	}
	if p, ok := of.fs.cfg.Content.(Pinner); ok {
		if of.pinned != ([32]byte{}) {
			p.Unpin(of.pinned)
		}
		if of.old != ([32]byte{}) {
			p.Pin(of.old)
		}
	}
	of.pinned = of.old
}

// pinRead pins m, the version reads of the open file are served from, in
// place of the one pinned before (zero: none). A file unlinked while open
// is read from its last version until the last close, even once the
// namespace has purged it: the peers must not collect that version
// meanwhile. Taken at open and on each read of chunked content.
func (of *openFile) pinRead(m [32]byte) {
	of.pmu.Lock()
	defer of.pmu.Unlock()
	if m == of.rpinned {
		return
	}
	if p, ok := of.fs.cfg.Content.(Pinner); ok {
		if of.rpinned != ([32]byte{}) {
			p.Unpin(of.rpinned)
		}
		if m != ([32]byte{}) {
			p.Pin(m)
		}
	}
	of.rpinned = m
}

// Handle is one open of a file.
type Handle struct {
	file   *File
	of     *openFile
	write  bool
	direct bool // opened write-only, with FOPEN_DIRECT_IO
}

var (
	_ fusefs.HandleReader     = (*Handle)(nil)
	_ fusefs.HandleWriter     = (*Handle)(nil)
	_ fusefs.HandleFlusher    = (*Handle)(nil)
	_ fusefs.HandleReleaser   = (*Handle)(nil)
	_ fusefs.HandleFAllocater = (*Handle)(nil)
	_ fusefs.HandleLSeeker    = (*Handle)(nil)
)

// seeker finds data and holes in stored content (store.Store.Seek).
type seeker interface {
	Seek(ctx context.Context, manifest [32]byte, off int64, hole bool) (int64, bool, error)
}

// LSeek answers lseek(2)'s SEEK_DATA and SEEK_HOLE from the stored
// content, whose chunks of zeros are its holes: cp, tar and qemu-img skip
// them instead of reading gigabytes of zeros. While the file may have
// writes this mount has not stored (a handle open for writing here: the
// kernel's writeback cache may hold pages not sent yet) the answer is the
// one a filesystem without holes gives, data up to the end, which is
// never wrong. Never ENOSYS: that turns SEEK_HOLE off for the mount.
func (h *Handle) LSeek(ctx context.Context, req *fuse.LSeekRequest) (int64, error) {
	f := h.file.fs
	hole := false
	switch req.Whence {
	case seekData:
	case seekHole:
		hole = true
	default:
		return 0, fuse.Errno(syscall.EINVAL)
	}
	in, err := f.inode(h.file.ino)
	if err != nil {
		return 0, errno(f.log, "lseek", err)
	}
	f.mu.Lock()
	writing := h.of.writers > 0
	f.mu.Unlock()
	h.of.mu.Lock()
	dirty := h.of.dirty || h.of.wb != nil
	h.of.mu.Unlock()
	in = h.of.view(in)
	off := req.Offset
	if off < 0 || off >= in.Size {
		return 0, fuse.Errno(syscall.ENXIO)
	}
	sk, ok := f.cfg.Content.(seeker)
	if writing || dirty || !ok || in.Content.Manifest == ([32]byte{}) || in.Content.Zero == 0 {
		if hole {
			return in.Size, nil
		}
		return off, nil
	}
	pos, found, err := sk.Seek(ctx, in.Content.Manifest, off, hole)
	if err != nil {
		return 0, errno(f.log, "lseek", err)
	}
	if !found {
		return 0, fuse.Errno(syscall.ENXIO)
	}
	return pos, nil
}

// FAllocate reserves space (mode 0 extends the file), keeps the size
// (KEEP_SIZE: nothing to reserve in a replicated store), punches a hole
// or zeroes a range (ZERO_RANGE, extending the file unless KEEP_SIZE: a
// hole too, the store keeps runs of zeros once for the whole volume).
// COLLAPSE_RANGE and INSERT_RANGE are not supported (EOPNOTSUPP; never
// ENOSYS, which would turn fallocate off for the whole mount).
func (h *Handle) FAllocate(ctx context.Context, req *fuse.FAllocateRequest) error {
	h.of.mu.Lock()
	defer h.of.mu.Unlock()
	if req.Offset > 1<<62 || req.Length > 1<<62 {
		return fuse.Errno(syscall.EFBIG)
	}
	end := int64(req.Offset + req.Length)
	switch req.Mode {
	case 0:
		return errno(h.file.fs.log, "fallocate", h.extend(ctx, end))
	case fuse.FAllocateKeepSize:
		return nil
	case fuse.FAllocatePunchHole | fuse.FAllocateKeepSize, zeroRange, zeroRange | fuse.FAllocateKeepSize:
		if err := h.of.stage(ctx, 1<<62); err != nil {
			return errno(h.file.fs.log, "fallocate", err)
		}
		if start := int64(req.Offset); start < h.of.size {
			if err := h.of.breakSeq(ctx); err != nil {
				return errno(h.file.fs.log, "fallocate", err)
			}
			stop := min(end, h.of.size)
			if err := h.of.prepareWrite(ctx, start, stop); err != nil {
				return errno(h.file.fs.log, "fallocate", err)
			}
			if err := zeroStaged(h.of.staging, start, stop); err != nil {
				return errno(h.file.fs.log, "fallocate", err)
			}
			h.of.markDirty(start, stop)
		}
		if req.Mode == zeroRange {
			return errno(h.file.fs.log, "fallocate", h.extend(ctx, end))
		}
		return nil
	default:
		return fuse.Errno(syscall.EOPNOTSUPP)
	}
}

// zeroRange is FALLOC_FL_ZERO_RANGE (bazil.org/fuse leaves it out).
const zeroRange = fuse.FAllocateFlags(unix.FALLOC_FL_ZERO_RANGE)

// extend makes the file at least end bytes long, the new bytes zeros (a
// hole). Holds of.mu.
func (h *Handle) extend(ctx context.Context, end int64) error {
	if err := h.of.stage(ctx, 1<<62); err != nil {
		return err
	}
	if end <= h.of.size {
		return nil
	}
	if err := h.of.breakSeq(ctx); err != nil {
		return err
	}
	if err := h.of.grow(end); err != nil {
		return err
	}
	if err := h.of.staging.Truncate(end); err != nil {
		return err
	}
	h.of.size = end
	h.of.setDirty()
	h.of.publish()
	return nil
}

// zeroStaged zeroes [start, stop) of a staging copy: a hole punched in
// the local file, or zeros written a piece at a time (a punch over a
// terabyte once allocated a buffer of its whole length).
func zeroStaged(st stage, start, stop int64) error {
	if fst, ok := st.(*fileStage); ok {
		err := unix.Fallocate(int(fst.Fd()), unix.FALLOC_FL_PUNCH_HOLE|unix.FALLOC_FL_KEEP_SIZE, start, stop-start)
		if err == nil {
			return nil
		}
		if !errors.Is(err, unix.EOPNOTSUPP) && !errors.Is(err, unix.ENOSYS) {
			return fmt.Errorf("punching a hole in the staging copy: %w", err)
		}
	}
	zero := make([]byte, min(stop-start, 1<<20))
	for off := start; off < stop; off += int64(len(zero)) {
		n := min(int64(len(zero)), stop-off)
		if _, err := st.WriteAt(zero[:n], off); err != nil {
			return err
		}
	}
	return nil
}

// Read reads from this mount's unsaved copy if there is one, else from the
// stored content.
func (h *Handle) Read(ctx context.Context, req *fuse.ReadRequest, resp *fuse.ReadResponse) error {
	// The server hands in a buffer of the request's size: reuse it rather
	// than allocate (and zero) another one (up to 1 MiB) per request.
	h.file.read.Store(true) // before the content is read: see Handle.Write
	buf := resp.Data[:0]
	if cap(buf) >= req.Size {
		buf = buf[:req.Size]
	} else {
		buf = make([]byte, req.Size)
	}
	h.of.mu.Lock()
	h.of.refresh()
	if h.of.staging != nil {
		err := h.of.lost
		if err == nil {
			err = h.of.settle(ctx) // the stream holds what staging lacks
		}
		if err != nil {
			h.of.mu.Unlock()
			return errno(h.file.fs.log, "read", err)
		}
		n, err := h.of.readAt(ctx, buf, req.Offset)
		h.of.mu.Unlock()
		if err != nil && !errors.Is(err, io.EOF) {
			return errno(h.file.fs.log, "read", err)
		}
		resp.Data = buf[:n]
		return nil
	}
	h.of.mu.Unlock()
	in, err := h.file.fs.inode(h.file.ino)
	if err != nil {
		return errno(h.file.fs.log, "read", err)
	}
	if req.Offset >= in.Size {
		return nil
	}
	c := in.Content
	if c.Manifest == ([32]byte{}) {
		if req.Offset < int64(len(c.Inline)) {
			resp.Data = append(buf[:0], c.Inline[req.Offset:min(int64(len(c.Inline)), req.Offset+int64(req.Size))]...)
		}
		return nil
	}
	h.of.pinRead(c.Manifest)
	n, err := h.file.fs.cfg.Content.ReadAt(ctx, c.Manifest, buf, req.Offset)
	if err != nil && !errors.Is(err, io.EOF) {
		return errno(h.file.fs.log, "read", err)
	}
	resp.Data = buf[:n]
	return nil
}

// Write writes into the staging copy.
func (h *Handle) Write(ctx context.Context, req *fuse.WriteRequest, resp *fuse.WriteResponse) error {
	off, err := h.write1(ctx, req, resp)
	if err == nil && h.direct && h.file.read.Load() && h.file.fs.server != nil {
		// The write bypassed the page cache, where another handle's
		// reads may have left pages of this range: drop them before
		// write(2) returns, so that every read after it sees the new
		// bytes. Not under of.mu: the kernel waits here for pages being
		// read, whose READ may be waiting for of.mu. The flag was set
		// before such a read looked at the file (Handle.Read), so a
		// read that saw the old content is covered. Linux 6.18 drops
		// the range on a direct write by itself (the integration
		// test passes without this); the FUSE direct-I/O path of
		// older kernels left the pages in place.
		h.file.fs.server.InvalidateNodeDataRange(h.file, off, int64(resp.Size))
	}
	return err
}

// write1 is Write under the file's lock; it returns where it wrote.
func (h *Handle) write1(ctx context.Context, req *fuse.WriteRequest, resp *fuse.WriteResponse) (int64, error) {
	h.of.mu.Lock()
	defer h.of.mu.Unlock()
	if err := h.of.stage(ctx, 1<<62); err != nil {
		return 0, errno(h.file.fs.log, "write", err)
	}
	off := req.Offset
	if req.FileFlags&fuse.OpenAppend != 0 {
		off = h.of.size
	}
	if h.of.lost != nil {
		return 0, errno(h.file.fs.log, "write", h.of.lost)
	}
	end := off + int64(len(req.Data))
	if off != h.of.size {
		if err := h.of.breakSeq(ctx); err != nil {
			return 0, errno(h.file.fs.log, "write", err)
		}
	}
	n := len(req.Data)
	if h.of.wb != nil {
		// Appended through the stream, not the staging file.
		if err := h.of.push(req.Data); err != nil {
			h.of.publish()
			return 0, errno(h.file.fs.log, "write", err)
		}
	} else {
		if err := h.of.grow(end); err != nil {
			return 0, errno(h.file.fs.log, "write", err)
		}
		if err := h.of.prepareWrite(ctx, off, end); err != nil {
			return 0, errno(h.file.fs.log, "write", err)
		}
		var err error
		n, err = h.of.staging.WriteAt(req.Data, off)
		if err != nil {
			h.of.seq = false // no stream runs here (see above)
			if errors.Is(err, syscall.ENOSPC) {
				return 0, fuse.Errno(syscall.ENOSPC)
			}
			return 0, errno(h.file.fs.log, "write", err)
		}
		h.of.size = max(h.of.size, off+int64(n))
		h.of.appended(req.Data[:n])
	}
	h.of.publish()
	h.of.dropMtime() // a write after utimens makes the mtime now again
	h.of.markDirty(off, off+int64(n))
	if req.Flags&fuse.WriteKillSUIDGID != 0 {
		// Folds into the commit this write now waits for.
		var ch namespace.AttrChange
		if err := h.file.killPriv(ctx, h.of, &ch); err != nil {
			return 0, errno(h.file.fs.log, "write", err)
		}
		if ch.Mask != 0 {
			h.of.fold(ch)
		}
	}
	resp.Size = n
	return off, nil
}

// Flush stores unsaved writes: close(2) returns when they are durable.
func (h *Handle) Flush(ctx context.Context, req *fuse.FlushRequest) error {
	ctx = uninterruptible(ctx)
	if h.write {
		changed := h.of.wtime.Load() != 0
		if err := h.of.commit(ctx); err != nil && !unlinked(err) {
			return errno(h.file.fs.log, "flush", err)
		}
		if changed {
			h.file.fs.stale(h.file)
		}
		if err := h.file.fs.durable(ctx); err != nil {
			return errno(h.file.fs.log, "flush", err)
		}
	}
	// Then (the next holder must see what was written under the lock) a
	// close drops the POSIX locks its process holds on the file, through
	// any descriptor (fcntl(2)).
	return h.releaseLocks(ctx, req.LockOwner, false)
}

// Release ends the handle; the last one drops the staging copy.
func (h *Handle) Release(ctx context.Context, req *fuse.ReleaseRequest) error {
	ctx = uninterruptible(ctx)
	if req.ReleaseFlags&fuse.ReleaseFlockUnlock != 0 {
		// The last close of an open file drops its flock(2) lock.
		if err := h.releaseLocks(ctx, req.LockOwner, true); err != nil {
			h.file.fs.log.Warn("release: flock unlock", "err", err)
		}
	}
	return errno(h.file.fs.log, "release", h.release(ctx))
}

func (h *Handle) release(ctx context.Context) error {
	fs := h.file.fs
	fs.mu.Lock()
	h.of.refs--
	if h.write {
		h.of.writers--
	}
	last := h.of.refs == 0
	if last {
		delete(fs.open, h.file.ino)
	}
	fs.mu.Unlock()
	if !last {
		return nil
	}
	err := h.of.commit(ctx)
	h.of.mu.Lock()
	h.of.dropStream()
	if h.of.staging != nil {
		h.of.staging.Close()
		h.of.staging = nil
		h.of.publish()
	}
	h.of.old = [32]byte{}
	h.of.keepOld()
	h.of.mu.Unlock()
	h.of.pinRead([32]byte{})
	if unlinked(err) {
		return nil
	}
	return err
}

// unlinked reports whether a commit failed because the file has no name
// left (unlinked while open, here or on another peer). Writes to such a
// file succeed and stay readable through its open handles, and POSIX drops
// the data at the last close: close(2) and fsync(2) must not fail for it.
func unlinked(err error) bool { return errors.Is(err, namespace.ErrNotExist) }

// Poll answers ENOSYS, after which the kernel answers poll and epoll for
// every file of the mount itself (always ready, as for a local file)
// instead of asking here on each open by a program that registers its
// files with epoll, as every Go program does.
func (h *Handle) Poll(ctx context.Context, req *fuse.PollRequest, resp *fuse.PollResponse) error {
	return fuse.Errno(syscall.ENOSYS)
}

var _ fusefs.HandlePoller = (*Handle)(nil)
