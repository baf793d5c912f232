package fs

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"bazil.org/fuse"
	fusefs "bazil.org/fuse/fs"

	"github.com/reefproject/reef/namespace"
)

// Mount is a mounted volume.
type Mount struct {
	Dir  string
	fs   *FS
	conn *fuse.Conn
	done chan error
}

// Mount mounts f at dir and serves it in the background until Close.
func (f *FS) Mount(dir string) (*Mount, error) {
	if abs, err := filepath.Abs(dir); err == nil {
		dir = abs
	}
	fi, err := os.Stat(dir)
	if err != nil {
		// A stale mount of a dead process answers ENOTCONN: clear it once.
		if errors.Is(err, errNotConnected) || isNotConnected(err) {
			lazyUnmount(dir)
			fi, err = os.Stat(dir)
		}
		if err != nil {
			return nil, fmt.Errorf("fs: mount point: %w", err)
		}
	}
	if !fi.IsDir() {
		return nil, fmt.Errorf("fs: mount point %s is not a directory", dir)
	}
	opts := []fuse.MountOption{
		fuse.FSName("reef"),
		fuse.Subtype("reef"),
		fuse.DefaultPermissions(),
		fuse.AllowOther(),
		fuse.MaxReadahead(readahead),
		fuse.AsyncRead(),
		// The mount clears set-user-ID and set-group-ID bits itself (see
		// killPriv): without this the kernel asks for security.capability
		// before every write(2), a request each.
		fuse.HandleKillPriv(),
		fuse.ReaddirPlus(),
	}
	if f.cfg.Locks != nil {
		// fcntl and flock locks go to the volume's lock keepers, so
		// processes on different mounts exclude each other (lock.go).
		opts = append(opts, fuse.LockingPOSIX(), fuse.LockingFlock())
	}
	conn, err := fuse.Mount(dir, opts...)
	if err != nil {
		return nil, fmt.Errorf("fs: mount %s: %w", dir, err)
	}
	scfg := &fusefs.Config{Inline: f.inline, Interruptible: interruptible, InterruptAfter: interruptAfter}
	if f.cfg.ObserveOp != nil {
		scfg.Observe = observer(f.cfg.ObserveOp)
	}
	if os.Getenv("REEF_FUSE_DEBUG") != "" {
		// Every request and answer, at Debug level (serve --log-level debug).
		scfg.Debug = func(msg interface{}) { f.log.Debug("fuse", "msg", fmt.Sprint(msg)) }
	}
	srv := fusefs.New(conn, scfg)
	f.server = srv
	m := &Mount{Dir: dir, fs: f, conn: conn, done: make(chan error, 1)}
	go func() { m.done <- srv.Serve(f) }()
	go f.invalidate(f.cfg.Tree.Subscribe())
	if err := raiseReadahead(dir, readahead); err != nil {
		f.log.Info("kernel read-ahead of the mount stays at its default", "err", err)
	}
	return m, nil
}

// readahead is the kernel's read-ahead on the mount. The FUSE init reply's
// max_readahead can only lower the 128 KiB default of the mount's
// backing device (the kernel takes the minimum), so raiseReadahead sets it
// through sysfs. 128 KiB means one FUSE read of 128 KiB at a time: each
// waits a full round trip through the kernel and this process. With 1 MiB
// up to 8 are in flight (AsyncRead), which hides that latency.
const readahead = 1 << 20

// raiseReadahead sets the read-ahead of the backing device of the FUSE
// mount at dir to n bytes (needs root; best effort). The device is found in
// /proc/self/mountinfo, not by stat, which would wait for this server.
func raiseReadahead(dir string, n int) error {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return fmt.Errorf("fs: read-ahead: %w", err)
	}
	dev := ""
	for _, line := range strings.Split(string(b), "\n") {
		// id parent major:minor root mountpoint options ... - fstype source ...
		f := strings.Fields(line)
		if len(f) > 4 && f[4] == dir && strings.Contains(line, " - fuse") {
			dev = f[2] // the last one: mounts stack
		}
	}
	if dev == "" {
		return fmt.Errorf("fs: read-ahead: %s not in /proc/self/mountinfo", dir)
	}
	p := filepath.Join("/sys/class/bdi", dev, "read_ahead_kb")
	if err := os.WriteFile(p, []byte(strconv.Itoa(n>>10)), 0o644); err != nil {
		return fmt.Errorf("fs: read-ahead: %w", err)
	}
	return nil
}

var errNotConnected = errors.New("transport endpoint is not connected")

func isNotConnected(err error) bool {
	var pe *os.PathError
	return errors.As(err, &pe) && pe.Err.Error() == errNotConnected.Error()
}

// isMountedAt reports whether a file system is mounted at dir.
func isMountedAt(dir string) bool {
	b, err := os.ReadFile("/proc/self/mounts")
	if err != nil {
		return true
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) > 1 && f[1] == dir {
			return true
		}
	}
	return false
}

func lazyUnmount(dir string) {
	for _, bin := range []string{"fusermount3", "fusermount"} {
		if exec.Command(bin, "-uz", dir).Run() == nil {
			return
		}
	}
}

// Close unmounts, retrying while the mount is busy, and waits for the
// server to stop. After a timeout it detaches the mount lazily.
func (m *Mount) Close() error {
	var err error
	deadline := time.Now().Add(10 * time.Second)
	for {
		if err = fuse.Unmount(m.Dir); err == nil || !isMountedAt(m.Dir) {
			err = nil // unmounted, or detached by someone else
			break
		}
		if time.Now().After(deadline) {
			lazyUnmount(m.Dir)
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	select {
	case <-m.done:
	case <-time.After(10 * time.Second):
	}
	m.conn.Close()
	if err != nil {
		return fmt.Errorf("fs: unmount %s: %w (detached lazily)", m.Dir, err)
	}
	return nil
}

// interruptible picks the requests a signal to their caller may cancel
// (see Config.Interruptible in third_party/bazil.org/fuse): those that
// change nothing and may wait on the network, once they have run for
// interruptAfter. A read of a file whose chunks cannot be fetched gives way
// to Ctrl-C; a write, truncation, rename or close is never failed with
// EINTR by a signal (a local filesystem never does that), and each has a
// deadline of its own.
func interruptible(req fuse.Request) bool {
	switch r := req.(type) {
	case *fuse.ReadRequest:
		return !r.Dir
	case *fuse.GetxattrRequest:
		return r.Name == HealthXattr
	case *fuse.StatfsRequest:
		return true
	case *fuse.LockWaitRequest:
		return true // at once: the wait changes nothing until granted
	}
	return false
}

// interruptAfter is how long an interruptible request runs before a
// signal cancels it.
const interruptAfter = time.Second

// inline picks the requests the server answers on the goroutine that
// reads them (see Config.Inline in third_party/bazil.org/fuse): those
// answered from memory and the local namespace, which never wait on the
// network or on another FUSE request. A goroutine hand-off costs a thread
// wake-up (about 100 µs on a 2-vCPU VM), more than most of these take.
// Content reads and writes, flush, fsync, release of files (which may
// store), truncation, statfs and user.reef.health stay on goroutines.
func (f *FS) inline(req fuse.Request, _ fusefs.Node, handle fusefs.Handle) bool {
	switch r := req.(type) {
	case *fuse.LookupRequest, *fuse.ForgetRequest, *fuse.BatchForgetRequest,
		*fuse.InterruptRequest, *fuse.ReadlinkRequest, *fuse.ListxattrRequest,
		*fuse.AccessRequest, *fuse.OpenRequest, *fuse.PollRequest,
		*fuse.CreateRequest, *fuse.MkdirRequest, *fuse.MknodRequest,
		*fuse.SymlinkRequest, *fuse.LinkRequest, *fuse.RemoveRequest,
		*fuse.RenameRequest, *fuse.SetxattrRequest, *fuse.RemovexattrRequest:
		return true
	case *fuse.GetxattrRequest:
		return r.Name != HealthXattr
	case *fuse.ReadRequest:
		if r.Dir {
			return true
		}
		// A file whose content lives in the namespace and is not staged
		// here: the read is a copy from memory.
		h, ok := handle.(*Handle)
		return ok && h.of.shown.Load() == 0 && f.inlineContent(h.file.ino)
	case *fuse.FlushRequest:
		h, ok := handle.(*Handle)
		// A read-only handle has nothing to store, and without locks of
		// this mount on the file nothing to unlock.
		return ok && !h.write && !h.holdsLocks()
	case *fuse.ReleaseRequest:
		return r.Dir
	case *fuse.GetattrRequest:
		return true // File.Attr never waits for an open file's lock
	case *fuse.SetattrRequest:
		return !r.Valid.Size() // truncation may fetch content
	}
	return false
}

// inlineContent reports whether ino's content lives in the namespace,
// without copying it when the tree can say so (namespace.Namespace can).
func (f *FS) inlineContent(ino namespace.InodeID) bool {
	if t, ok := f.cfg.Tree.(interface{ HasInlineContent(namespace.InodeID) bool }); ok {
		return t.HasInlineContent(ino)
	}
	in, err := f.cfg.Tree.GetInode(ino)
	return err == nil && in.Content.Manifest == ([32]byte{})
}
