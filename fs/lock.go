package fs

import (
	"context"
	"errors"
	"syscall"

	"bazil.org/fuse"
	fusefs "bazil.org/fuse/fs"

	"github.com/reefproject/reef/lock"
)

// Locker keeps the volume's file locks, shared by every mount (peer's
// lockClient implements it). Locks name their owner by Owner.Kernel, the
// kernel's lock owner; the Locker adds the mount's session.
type Locker interface {
	// Set applies l to file. A lock another owner holds gives
	// lock.ErrConflict, or with wait is waited for until ctx ends.
	Set(ctx context.Context, file uint64, l lock.Lock, wait bool) error
	// Test returns the lock that would block l, if any (F_GETLK).
	Test(ctx context.Context, file uint64, l lock.Lock) (lock.Lock, bool, error)
	// Holds reports whether this mount holds any lock on file.
	Holds(file uint64) bool
}

var (
	_ fusefs.HandleLocker      = (*Handle)(nil)
	_ fusefs.HandleFlockLocker = (*Handle)(nil)
	_ fusefs.HandlePOSIXLocker = (*Handle)(nil)
)

// fileLock converts a FUSE lock request.
func fileLock(owner fuse.LockOwner, fl fuse.FileLock, flags fuse.LockFlags) (lock.Lock, error) {
	l := lock.Lock{
		Owner: lock.Owner{Kernel: uint64(owner)},
		Flock: flags&fuse.LockFlock != 0,
		Start: fl.Start,
		End:   min(fl.End, lock.MaxOffset),
	}
	if fl.PID > 0 {
		l.PID = uint32(fl.PID)
	}
	switch fl.Type {
	case fuse.LockRead:
		l.Kind = lock.Read
	case fuse.LockWrite:
		l.Kind = lock.Write
	case fuse.LockUnlock:
		l.Kind = lock.Unlock
	default:
		return l, syscall.EINVAL
	}
	if l.Flock {
		l.Start, l.End = 0, lock.MaxOffset
	}
	if l.Start > l.End {
		return l, syscall.EINVAL
	}
	return l, nil
}

func (h *Handle) setLock(ctx context.Context, r *fuse.LockRequest, wait bool) error {
	lk := h.file.fs.cfg.Locks
	if lk == nil {
		return fuse.Errno(syscall.ENOSYS) // the kernel keeps the locks itself
	}
	l, err := fileLock(r.LockOwner, r.Lock, r.LockFlags)
	if err != nil {
		return err
	}
	if l.Kind == lock.Unlock {
		if err := h.publishWrites(ctx); err != nil {
			return err
		}
	}
	if err := lk.Set(ctx, uint64(h.file.ino), l, wait); err != nil {
		return lockErrno(h.file.fs, "lock", err)
	}
	if l.Kind != lock.Unlock {
		h.file.fs.freshen(h.file)
	}
	return nil
}

// publishWrites stores the file's unsaved writes on this mount and waits
// until they are durable, before an unlock: the next holder of the lock,
// on any mount, reads what was written under it (as NFS flushes at
// unlock).
func (h *Handle) publishWrites(ctx context.Context) error {
	if h.of.wtime.Load() == 0 {
		return nil
	}
	if err := h.of.commit(ctx); err != nil && !unlinked(err) {
		return errno(h.file.fs.log, "unlock", err)
	}
	h.file.fs.stale(h.file)
	return errno(h.file.fs.log, "unlock", h.file.fs.durable(ctx))
}

// freshen makes the kernel drop its cached pages of f when another mount
// changed the file since the last lock taken here, so a process reads what
// the previous holder of the lock wrote (remote changes invalidate the
// cache anyway, but in the background). The Locker has already caught up
// with the previous holder's changes.
func (fs *FS) freshen(f *File) {
	in, err := fs.inode(f.ino)
	if err != nil || fs.hasDirtyOpen(f.ino) {
		return // nothing to read, or this mount's own writes win
	}
	f.lockMu.Lock()
	same := in.Version == f.lockSeen
	f.lockSeen = in.Version
	f.lockMu.Unlock()
	if same {
		return
	}
	if of := fs.openFile(f.ino); of != nil {
		of.remote.Store(true) // a clean staging copy may be stale: refresh
	}
	if fs.server != nil {
		fs.server.InvalidateNodeData(f)
		fs.server.InvalidateNodeAttr(f)
	}
}

// Lock is fcntl(F_SETLK) and flock(LOCK_NB).
func (h *Handle) Lock(ctx context.Context, req *fuse.LockRequest) error {
	return h.setLock(ctx, req, false)
}

// LockWait is fcntl(F_SETLKW) and a blocking flock: it waits until the
// lock is granted or the caller gets a signal (EINTR).
func (h *Handle) LockWait(ctx context.Context, req *fuse.LockWaitRequest) error {
	return h.setLock(ctx, (*fuse.LockRequest)(req), true)
}

// Unlock is F_UNLCK and LOCK_UN.
func (h *Handle) Unlock(ctx context.Context, req *fuse.UnlockRequest) error {
	return h.setLock(uninterruptible(ctx), (*fuse.LockRequest)(req), false)
}

// QueryLock is fcntl(F_GETLK): resp.Lock is one lock that blocks the
// request, with the holder's PID when it runs on this machine (0 for a
// process on another mount).
func (h *Handle) QueryLock(ctx context.Context, req *fuse.QueryLockRequest, resp *fuse.QueryLockResponse) error {
	lk := h.file.fs.cfg.Locks
	if lk == nil {
		return fuse.Errno(syscall.ENOSYS)
	}
	l, err := fileLock(req.LockOwner, req.Lock, req.LockFlags)
	if err != nil {
		return err
	}
	c, ok, err := lk.Test(ctx, uint64(h.file.ino), l)
	if err != nil {
		return lockErrno(h.file.fs, "getlk", err)
	}
	if !ok {
		return nil // resp.Lock is F_UNLCK
	}
	resp.Lock = fuse.FileLock{Start: c.Start, End: c.End, Type: fuse.LockRead, PID: int32(c.PID)}
	if c.Kind == lock.Write {
		resp.Lock.Type = fuse.LockWrite
	}
	return nil
}

// releaseLocks drops owner's locks of one family on the handle's file: the
// POSIX locks of a process at each close of one of its descriptors
// (flush), its flock locks at the last close of the open file (release).
func (h *Handle) releaseLocks(ctx context.Context, owner fuse.LockOwner, flock bool) error {
	lk := h.file.fs.cfg.Locks
	if lk == nil || !lk.Holds(uint64(h.file.ino)) {
		return nil
	}
	l := lock.Lock{Owner: lock.Owner{Kernel: uint64(owner)}, Flock: flock, Kind: lock.Unlock, Start: 0, End: lock.MaxOffset}
	return lockErrno(h.file.fs, "unlock", lk.Set(ctx, uint64(h.file.ino), l, false))
}

// holdsLocks reports whether this mount holds a lock on the handle's file.
func (h *Handle) holdsLocks() bool {
	lk := h.file.fs.cfg.Locks
	return lk != nil && lk.Holds(uint64(h.file.ino))
}

// lockErrno maps a lock error: a conflict is EAGAIN (fcntl's F_SETLK
// answer; flock's EWOULDBLOCK is the same number), an interrupted wait
// EINTR, a keeper out of reach ENOLCK.
func lockErrno(f *FS, op string, err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, lock.ErrConflict):
		return fuse.Errno(syscall.EAGAIN)
	case errors.Is(err, context.Canceled):
		return fuse.Errno(syscall.EINTR)
	}
	f.log.Warn("file lock", "op", op, "err", err)
	return fuse.Errno(syscall.ENOLCK)
}
