package fs

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"slices"
	"sync"
	"syscall"
	"testing"
	"time"

	"bazil.org/fuse"
	fusefs "bazil.org/fuse/fs"

	"github.com/reefproject/reef/namespace"
)

// memContent is an in-memory Content for unit tests.
type memContent struct {
	mu     sync.Mutex // guards the fields below
	files  map[[32]byte][]byte
	ranges [][2]int64 // dirty ranges StoreRange was given
	stores int        // Store calls that returned a manifest
	// failAfter, when > 0, makes Store fail once it has read that many
	// bytes, without reading the rest (as store.PutFile does).
	failAfter int64
}

var errFakeStore = errors.New("fake store: write failed")

func (c *memContent) put(b []byte) [32]byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	k := sha256.Sum256(b)
	c.files[k] = b
	return k
}

func (c *memContent) Store(ctx context.Context, r io.Reader) (Stored, error) {
	c.mu.Lock()
	fail := c.failAfter
	c.mu.Unlock()
	if fail > 0 {
		if _, err := io.CopyN(io.Discard, r, fail); err != nil {
			return Stored{}, err
		}
		return Stored{}, errFakeStore
	}
	b, err := io.ReadAll(r)
	if err != nil {
		return Stored{}, err
	}
	if err := ctx.Err(); err != nil {
		return Stored{}, err
	}
	k := c.put(b)
	c.mu.Lock()
	c.stores++
	c.mu.Unlock()
	return Stored{Manifest: k, Size: int64(len(b))}, nil
}

func (c *memContent) ReadAt(ctx context.Context, m [32]byte, p []byte, off int64) (int, error) {
	c.mu.Lock()
	b := c.files[m]
	c.mu.Unlock()
	if off >= int64(len(b)) {
		return 0, io.EOF
	}
	n := copy(p, b[off:])
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

func (c *memContent) StoreRange(ctx context.Context, base [32]byte, r io.ReaderAt, size, start, end int64) (Stored, error) {
	b := make([]byte, size)
	if _, err := r.ReadAt(b, 0); err != nil && err != io.EOF {
		return Stored{}, err
	}
	c.mu.Lock()
	c.ranges = append(c.ranges, [2]int64{start, end})
	c.mu.Unlock()
	return Stored{Manifest: c.put(b), Size: size}, nil
}

func newTestFS(t *testing.T) (*FS, *namespace.Namespace, *memContent) {
	t.Helper()
	ns, err := namespace.Open(namespace.Config{Dir: t.TempDir(), Peer: "p1"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ns.Close() })
	mc := &memContent{files: map[[32]byte][]byte{}}
	f, err := New(Config{Tree: ns, Content: mc, StagingDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	return f, ns, mc
}

func create(t *testing.T, f *FS, name string) (*File, *Handle) {
	t.Helper()
	root, _ := f.Root()
	n, h, err := root.(*Dir).Create(context.Background(), &fuse.CreateRequest{Name: name, Mode: 0o644}, &fuse.CreateResponse{})
	if err != nil {
		t.Fatal(err)
	}
	return n.(*File), h.(*Handle)
}

func write(t *testing.T, h *Handle, off int64, data []byte) {
	t.Helper()
	var resp fuse.WriteResponse
	if err := h.Write(context.Background(), &fuse.WriteRequest{Offset: off, Data: data}, &resp); err != nil {
		t.Fatal(err)
	}
	if resp.Size != len(data) {
		t.Fatalf("wrote %d of %d", resp.Size, len(data))
	}
}

func readAll(t *testing.T, h *Handle, size int) []byte {
	t.Helper()
	var out []byte
	for off := 0; off < size; {
		var resp fuse.ReadResponse
		if err := h.Read(context.Background(), &fuse.ReadRequest{Offset: int64(off), Size: 128 << 10}, &resp); err != nil {
			t.Fatal(err)
		}
		if len(resp.Data) == 0 {
			break
		}
		out = append(out, resp.Data...)
		off += len(resp.Data)
	}
	return out
}

func TestWriteReadSmallAndBig(t *testing.T) {
	for _, size := range []int{0, 10, DefaultInlineMax, DefaultInlineMax + 1, 3 << 20} {
		f, ns, _ := newTestFS(t)
		file, h := create(t, f, "f")
		data := make([]byte, size)
		r := rand.New(rand.NewPCG(uint64(size), 1))
		for i := range data {
			data[i] = byte(r.Uint32())
		}
		for off := 0; off < size; off += 100000 {
			write(t, h, int64(off), data[off:min(off+100000, size)])
		}
		if err := h.Flush(context.Background(), &fuse.FlushRequest{}); err != nil {
			t.Fatal(err)
		}
		in, _ := ns.GetInode(file.ino)
		if in.Size != int64(size) || (size <= DefaultInlineMax) != (in.Content.Manifest == [32]byte{}) {
			t.Errorf("size %d: inode size %d, inline %v", size, in.Size, in.Content.Manifest == [32]byte{})
		}
		h.Release(context.Background(), &fuse.ReleaseRequest{})
		h2, _ := file.Open(context.Background(), &fuse.OpenRequest{Flags: fuse.OpenReadOnly}, &fuse.OpenResponse{})
		if got := readAll(t, h2.(*Handle), size); !bytes.Equal(got, data) {
			t.Errorf("size %d: read back %d bytes, differs", size, len(got))
		}
	}
}

func TestLazyOverwriteStoresOnlyTheChange(t *testing.T) {
	f, _, mc := newTestFS(t)
	file, h := create(t, f, "big")
	data := bytes.Repeat([]byte("0123456789abcdef"), 400000) // 6.4 MB
	write(t, h, 0, data)
	h.Flush(context.Background(), &fuse.FlushRequest{})
	h.Release(context.Background(), &fuse.ReleaseRequest{})

	ho, err := file.Open(context.Background(), &fuse.OpenRequest{Flags: fuse.OpenReadWrite}, &fuse.OpenResponse{})
	if err != nil {
		t.Fatal(err)
	}
	h = ho.(*Handle)
	write(t, h, 3000000, []byte("HELLO"))
	copy(data[3000000:], "HELLO")
	if got := readAll(t, h, len(data)); !bytes.Equal(got, data) {
		t.Fatal("read through the lazily staged handle differs")
	}
	if err := h.Flush(context.Background(), &fuse.FlushRequest{}); err != nil {
		t.Fatal(err)
	}
	if len(mc.ranges) != 1 || mc.ranges[0] != [2]int64{3000000, 3000005} {
		t.Errorf("StoreRange dirty ranges = %v, want one [3000000 3000005]", mc.ranges)
	}
	// Truncate through setattr on the node (ftruncate arrives there).
	if err := file.Setattr(context.Background(), &fuse.SetattrRequest{Valid: fuse.SetattrSize, Size: 1000}, &fuse.SetattrResponse{}); err != nil {
		t.Fatal(err)
	}
	if got := readAll(t, h, len(data)); !bytes.Equal(got, data[:1000]) {
		t.Errorf("after ftruncate: %d bytes", len(got))
	}
	h.Release(context.Background(), &fuse.ReleaseRequest{})
}

func TestUnlinkedOpenFile(t *testing.T) {
	f, _, _ := newTestFS(t)
	file, h := create(t, f, "gone")
	write(t, h, 0, []byte("still here"))
	h.Flush(context.Background(), &fuse.FlushRequest{})
	// Set after the last getattr: the state kept at unlink has it.
	if err := file.Setxattr(context.Background(), &fuse.SetxattrRequest{Name: "user.late", Xattr: []byte("v")}); err != nil {
		t.Fatal(err)
	}
	root, _ := f.Root()
	if err := root.(*Dir).Remove(context.Background(), &fuse.RemoveRequest{Name: "gone"}); err != nil {
		t.Fatal(err)
	}
	var xr fuse.GetxattrResponse
	if err := file.Getxattr(context.Background(), &fuse.GetxattrRequest{Name: "user.late"}, &xr); err != nil || string(xr.Xattr) != "v" {
		t.Errorf("getxattr after unlink of an attribute set before: %q, %v", xr.Xattr, err)
	}
	var a fuse.Attr
	if err := file.Attr(context.Background(), &a); err != nil {
		t.Fatalf("fstat of an unlinked open file: %v", err)
	}
	if a.Nlink != 0 || a.Size != 10 {
		t.Errorf("attr after unlink: nlink %d size %d, want 0 and 10", a.Nlink, a.Size)
	}
	if got := readAll(t, h, 10); string(got) != "still here" {
		t.Errorf("read after unlink = %q", got)
	}
	if err := h.Release(context.Background(), &fuse.ReleaseRequest{}); err != nil {
		t.Errorf("release of an unlinked file: %v", err)
	}
	if _, err := root.(*Dir).Lookup(context.Background(), "gone"); err == nil {
		t.Error("lookup finds an unlinked file")
	}
	_ = os.ErrNotExist
}

// TestWriteToUnlinkedOpenFile: writing to a file after its last name is
// gone (open, unlink, write: how mkstemp-based temporary files are used)
// succeeds, reads back, and fsync and close (flush) do not fail.
func TestWriteToUnlinkedOpenFile(t *testing.T) {
	ctx := context.Background()
	for _, size := range []int{10, 3 << 20} {
		f, _, _ := newTestFS(t)
		file, h := create(t, f, "tmp")
		write(t, h, 0, []byte("before"))
		if err := h.Flush(ctx, &fuse.FlushRequest{}); err != nil {
			t.Fatal(err)
		}
		root, _ := f.Root()
		if err := root.(*Dir).Remove(ctx, &fuse.RemoveRequest{Name: "tmp"}); err != nil {
			t.Fatal(err)
		}
		data := bytes.Repeat([]byte("x"), size)
		write(t, h, 6, data)
		if err := file.Fsync(ctx, &fuse.FsyncRequest{}); err != nil {
			t.Errorf("size %d: fsync of an unlinked file with unsaved writes: %v", size, err)
		}
		if got := readAll(t, h, 6+size); !bytes.Equal(got, append([]byte("before"), data...)) {
			t.Errorf("size %d: read back %d bytes", size, len(got))
		}
		if err := h.Flush(ctx, &fuse.FlushRequest{}); err != nil {
			t.Errorf("size %d: close of an unlinked file with unsaved writes: %v", size, err)
		}
		if err := h.Release(ctx, &fuse.ReleaseRequest{}); err != nil {
			t.Errorf("size %d: release: %v", size, err)
		}
	}
}

// TestSetattrFoldsIntoCommit: chmod and utimens on a file with unsaved
// writes (what tar, rsync and cp -p do before close) show at once through
// this mount and reach the namespace with the content, in one commit.
func TestSetattrFoldsIntoCommit(t *testing.T) {
	ctx := context.Background()
	mtime := time.Unix(1700000000, 123)
	tests := []struct {
		name      string
		reqs      []fuse.SetattrRequest
		writeLast bool // a write after the setattrs
		wantMode  os.FileMode
		wantMtime bool // mtime is the explicit one
	}{
		{"chmod and utimens", []fuse.SetattrRequest{
			{Valid: fuse.SetattrMtime, Mtime: mtime},
			{Valid: fuse.SetattrMode, Mode: 0o640},
		}, false, 0o640, true},
		{"chmod there and back", []fuse.SetattrRequest{
			{Valid: fuse.SetattrMode, Mode: 0o600},
			{Valid: fuse.SetattrMode, Mode: 0o644},
		}, false, 0o644, false},
		{"write after utimens", []fuse.SetattrRequest{
			{Valid: fuse.SetattrMtime, Mtime: mtime},
		}, true, 0o644, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f, ns, _ := newTestFS(t)
			file, h := create(t, f, "f")
			write(t, h, 0, []byte("hello"))
			before := ns.Stats().Ops
			for _, req := range tc.reqs {
				var resp fuse.SetattrResponse
				if err := file.Setattr(ctx, &req, &resp); err != nil {
					t.Fatal(err)
				}
				if resp.Attr.Size != 5 {
					t.Errorf("setattr answered size %d, want the unsaved 5", resp.Attr.Size)
				}
			}
			if tc.writeLast {
				write(t, h, 5, []byte("!"))
			}
			if got := ns.Stats().Ops; got != before {
				t.Errorf("%d ops committed before close, want none", got-before)
			}
			var a fuse.Attr
			if err := file.Attr(ctx, &a); err != nil {
				t.Fatal(err)
			}
			if a.Mode.Perm() != tc.wantMode {
				t.Errorf("mode before close = %v, want %v", a.Mode.Perm(), tc.wantMode)
			}
			if tc.wantMtime && !a.Mtime.Equal(mtime) {
				t.Errorf("mtime before close = %v, want %v", a.Mtime, mtime)
			}
			if err := h.Flush(ctx, &fuse.FlushRequest{}); err != nil {
				t.Fatal(err)
			}
			if got, max := ns.Stats().Ops-before, int64(2); got < 1 || got > max {
				t.Errorf("close committed %d ops, want content plus at most one setattr", got)
			}
			in, _ := ns.GetInode(file.ino)
			if os.FileMode(in.Mode) != tc.wantMode {
				t.Errorf("stored mode = %o, want %o", in.Mode, tc.wantMode)
			}
			if got := in.Mtime == mtime.UnixNano(); got != tc.wantMtime {
				t.Errorf("stored mtime %v, explicit one kept: %v, want %v", time.Unix(0, in.Mtime), got, tc.wantMtime)
			}
			// Nothing is waiting now: a chmod is its own op at once.
			var resp fuse.SetattrResponse
			if err := file.Setattr(ctx, &fuse.SetattrRequest{Valid: fuse.SetattrMode, Mode: 0o600}, &resp); err != nil {
				t.Fatal(err)
			}
			if in, _ := ns.GetInode(file.ino); in.Mode != 0o600 {
				t.Errorf("chmod after close: stored mode %o, want 600", in.Mode)
			}
			h.Release(ctx, &fuse.ReleaseRequest{})
		})
	}
}

// TestKillPriv: with fuse.HandleKillPriv the mount clears set-id bits
// itself: on chown, on a write the kernel flags, on a flagged truncation.
func TestKillPriv(t *testing.T) {
	ctx := context.Background()
	const suid, sgid = os.ModeSetuid, os.ModeSetgid
	tests := []struct {
		name string
		mode os.FileMode // set before
		do   func(t *testing.T, file *File, h *Handle)
		want os.FileMode
	}{
		{"chown clears suid and sgid+x", 0o755 | suid | sgid, func(t *testing.T, file *File, h *Handle) {
			if err := file.Setattr(ctx, &fuse.SetattrRequest{Valid: fuse.SetattrUid, Uid: 7}, &fuse.SetattrResponse{}); err != nil {
				t.Fatal(err)
			}
		}, 0o755},
		{"chown keeps sgid without group x", 0o745 | sgid, func(t *testing.T, file *File, h *Handle) {
			if err := file.Setattr(ctx, &fuse.SetattrRequest{Valid: fuse.SetattrGid, Gid: 7}, &fuse.SetattrResponse{}); err != nil {
				t.Fatal(err)
			}
		}, 0o745 | sgid},
		{"chown -1 -1 clears suid", 0o755 | suid | sgid, func(t *testing.T, file *File, h *Handle) {
			if err := file.Setattr(ctx, &fuse.SetattrRequest{Valid: fuse.SetattrCTime}, &fuse.SetattrResponse{}); err != nil {
				t.Fatal(err)
			}
		}, 0o755},
		{"utimens keeps suid", 0o755 | suid, func(t *testing.T, file *File, h *Handle) {
			req := &fuse.SetattrRequest{Valid: fuse.SetattrMtime | fuse.SetattrCTime, Mtime: time.Unix(5, 0)}
			if err := file.Setattr(ctx, req, &fuse.SetattrResponse{}); err != nil {
				t.Fatal(err)
			}
		}, 0o755 | suid},
		{"flagged write", 0o755 | suid, func(t *testing.T, file *File, h *Handle) {
			var resp fuse.WriteResponse
			if err := h.Write(ctx, &fuse.WriteRequest{Data: []byte("x"), Flags: fuse.WriteKillSUIDGID}, &resp); err != nil {
				t.Fatal(err)
			}
		}, 0o755},
		{"unflagged write (root)", 0o755 | suid, func(t *testing.T, file *File, h *Handle) {
			write(t, h, 0, []byte("x"))
		}, 0o755 | suid},
		{"flagged truncate", 0o755 | suid, func(t *testing.T, file *File, h *Handle) {
			req := &fuse.SetattrRequest{Valid: fuse.SetattrSize | fuse.SetattrKillSUIDGID, Size: 0}
			if err := file.Setattr(ctx, req, &fuse.SetattrResponse{}); err != nil {
				t.Fatal(err)
			}
		}, 0o755},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f, ns, _ := newTestFS(t)
			file, h := create(t, f, "f")
			if err := h.Flush(ctx, &fuse.FlushRequest{}); err != nil {
				t.Fatal(err)
			}
			if err := file.Setattr(ctx, &fuse.SetattrRequest{Valid: fuse.SetattrMode, Mode: tc.mode}, &fuse.SetattrResponse{}); err != nil {
				t.Fatal(err)
			}
			tc.do(t, file, h)
			if err := h.Flush(ctx, &fuse.FlushRequest{}); err != nil {
				t.Fatal(err)
			}
			var a fuse.Attr
			if err := file.Attr(ctx, &a); err != nil {
				t.Fatal(err)
			}
			in, _ := ns.GetInode(file.ino)
			if got := toFileMode(in.Type, in.Mode); got.Perm()|got&(suid|sgid) != tc.want {
				t.Errorf("stored mode %v, want %v", got, tc.want)
			}
			if a.Mode.Perm()|a.Mode&(suid|sgid) != tc.want {
				t.Errorf("attr mode %v, want %v", a.Mode, tc.want)
			}
			h.Release(ctx, &fuse.ReleaseRequest{})
		})
	}
}

// TestTruncateStampsTimes: a truncation that keeps the size (open with
// O_TRUNC of an empty file, ftruncate to the same length) still changes
// mtime and ctime, as on a local filesystem; POSIX requires it of O_TRUNC.
func TestTruncateStampsTimes(t *testing.T) {
	ctx := context.Background()
	for _, open := range []bool{false, true} {
		t.Run(fmt.Sprintf("open=%v", open), func(t *testing.T) {
			f, ns, _ := newTestFS(t)
			file, h := create(t, f, "f")
			if err := h.Flush(ctx, &fuse.FlushRequest{}); err != nil {
				t.Fatal(err)
			}
			if !open {
				h.Release(ctx, &fuse.ReleaseRequest{})
			}
			before, _ := ns.GetInode(file.ino)
			time.Sleep(5 * time.Millisecond)
			var resp fuse.SetattrResponse
			if err := file.Setattr(ctx, &fuse.SetattrRequest{Valid: fuse.SetattrSize, Size: 0}, &resp); err != nil {
				t.Fatal(err)
			}
			if open {
				if err := h.Flush(ctx, &fuse.FlushRequest{}); err != nil {
					t.Fatal(err)
				}
				h.Release(ctx, &fuse.ReleaseRequest{})
			}
			after, _ := ns.GetInode(file.ino)
			if after.Mtime <= before.Mtime || after.Ctime <= before.Ctime {
				t.Errorf("mtime %d -> %d, ctime %d -> %d: want both later", before.Mtime, after.Mtime, before.Ctime, after.Ctime)
			}
			if !resp.Attr.Mtime.After(time.Unix(0, before.Mtime)) {
				t.Errorf("reply mtime %v, not after %v", resp.Attr.Mtime, time.Unix(0, before.Mtime))
			}
		})
	}
}

// TestXattrNamespaces: names outside user., trusted. and security. are
// refused with EOPNOTSUPP, as a local filesystem refuses them.
func TestXattrNamespaces(t *testing.T) {
	ctx := context.Background()
	f, _, _ := newTestFS(t)
	file, h := create(t, f, "f")
	defer h.Release(ctx, &fuse.ReleaseRequest{})
	tests := []struct {
		name string
		want error
	}{
		{"user.a", nil},
		{"trusted.a", nil},
		{"security.a", nil},
		{"bogus.a", fuse.Errno(syscall.EOPNOTSUPP)},
		{"user.", fuse.Errno(syscall.EOPNOTSUPP)},
		{"system.foo", fuse.Errno(syscall.EOPNOTSUPP)},
		{"system.posix_acl_access", fuse.Errno(syscall.EOPNOTSUPP)},
		{"usera", fuse.Errno(syscall.EOPNOTSUPP)},
	}
	for _, tc := range tests {
		err := file.Setxattr(ctx, &fuse.SetxattrRequest{Name: tc.name, Xattr: []byte("v")})
		if !errors.Is(err, tc.want) && err != tc.want {
			t.Errorf("setxattr %q: %v, want %v", tc.name, err, tc.want)
		}
	}
}

// TestXattrRoom: a file takes namespace.MaxXattrs extended attributes; one
// more is ENOSPC, as when a local filesystem's attribute space is full
// (stress-ng's xattr stressor stops there and failed on EINVAL), whether the
// file has a name or was unlinked while open. Replacing one still works.
func TestXattrRoom(t *testing.T) {
	ctx := context.Background()
	for _, unlink := range []bool{false, true} {
		f, _, _ := newTestFS(t)
		file, h := create(t, f, "f")
		for i := range namespace.MaxXattrs {
			if i == namespace.MaxXattrs/2 && unlink {
				root, _ := f.Root()
				if err := root.(*Dir).Remove(ctx, &fuse.RemoveRequest{Name: "f"}); err != nil {
					t.Fatal(err)
				}
			}
			if err := file.Setxattr(ctx, &fuse.SetxattrRequest{Name: fmt.Sprint("user.", i), Xattr: []byte("v")}); err != nil {
				t.Fatalf("unlinked %v: setxattr %d: %v", unlink, i, err)
			}
		}
		err := file.Setxattr(ctx, &fuse.SetxattrRequest{Name: "user.one-more", Xattr: []byte("v")})
		if !errors.Is(err, fuse.Errno(syscall.ENOSPC)) {
			t.Errorf("unlinked %v: setxattr past the limit: %v, want ENOSPC", unlink, err)
		}
		if err := file.Setxattr(ctx, &fuse.SetxattrRequest{Name: "user.0", Xattr: []byte("w")}); err != nil {
			t.Errorf("unlinked %v: replacing an attribute at the limit: %v", unlink, err)
		}
		h.Release(ctx, &fuse.ReleaseRequest{})
	}
}

// TestListxattrTrusted: trusted.* names are listed to root only, as on a
// local filesystem.
func TestListxattrTrusted(t *testing.T) {
	ctx := context.Background()
	f, _, _ := newTestFS(t)
	file, h := create(t, f, "f")
	defer h.Release(ctx, &fuse.ReleaseRequest{})
	for _, name := range []string{"trusted.t", "user.u"} {
		if err := file.Setxattr(ctx, &fuse.SetxattrRequest{Name: name, Xattr: []byte("v")}); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct {
		uid  uint32
		want []string
	}{{0, []string{"trusted.t", "user.u"}}, {1000, []string{"user.u"}}} {
		req := &fuse.ListxattrRequest{Header: fuse.Header{Uid: tc.uid}}
		var resp fuse.ListxattrResponse
		if err := file.Listxattr(ctx, req, &resp); err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, n := range bytes.Split(resp.Xattr, []byte{0}) {
			if len(n) > 0 {
				got = append(got, string(n))
			}
		}
		slices.Sort(got)
		if !slices.Equal(got, tc.want) {
			t.Errorf("uid %d lists %v, want %v", tc.uid, got, tc.want)
		}
	}
}

// TestSymlinkXattrs: listxattr and getxattr of a symlink answer as for any
// inode (tar --xattrs asked for every symlink and warned on EOPNOTSUPP),
// and root's trusted.* attributes on a symlink are kept.
func TestSymlinkXattrs(t *testing.T) {
	ctx := context.Background()
	f, _, _ := newTestFS(t)
	root, _ := f.Root()
	n, err := root.(*Dir).Symlink(ctx, &fuse.SymlinkRequest{NewName: "l", Target: "somewhere"})
	if err != nil {
		t.Fatal(err)
	}
	lx, ok := n.(fusefs.NodeListxattrer)
	if !ok {
		t.Fatal("a symlink does not serve listxattr (the kernel answers EOPNOTSUPP)")
	}
	var lr fuse.ListxattrResponse
	if err := lx.Listxattr(ctx, &fuse.ListxattrRequest{Size: 4096}, &lr); err != nil || len(lr.Xattr) != 0 {
		t.Fatalf("listxattr of a new symlink = %q, %v; want none", lr.Xattr, err)
	}
	sx, ok := n.(fusefs.NodeSetxattrer)
	if !ok {
		t.Fatal("a symlink does not serve setxattr")
	}
	if err := sx.Setxattr(ctx, &fuse.SetxattrRequest{Name: "trusted.t", Xattr: []byte("v")}); err != nil {
		t.Fatal(err)
	}
	var gr fuse.GetxattrResponse
	if err := n.(fusefs.NodeGetxattrer).Getxattr(ctx, &fuse.GetxattrRequest{Name: "trusted.t", Size: 100}, &gr); err != nil || string(gr.Xattr) != "v" {
		t.Errorf("getxattr = %q, %v", gr.Xattr, err)
	}
	if err := n.(fusefs.NodeGetxattrer).Getxattr(ctx, &fuse.GetxattrRequest{Name: "trusted.none", Size: 100}, &gr); err != fuse.ErrNoXattr {
		t.Errorf("getxattr of a missing name = %v, want ENODATA", err)
	}
	if err := n.(fusefs.NodeRemovexattrer).Removexattr(ctx, &fuse.RemovexattrRequest{Name: "trusted.t"}); err != nil {
		t.Error(err)
	}
}

// TestMtimeOfUnsavedWrites: a write or truncation shows as a modification
// at once through this mount (fstat of a file being written, stat right
// after close), not only once the commit at close stamps the mtime; an
// explicit mtime set after the writes still wins.
func TestMtimeOfUnsavedWrites(t *testing.T) {
	ctx := context.Background()
	f, _, _ := newTestFS(t)
	file, h := create(t, f, "f")
	write(t, h, 0, []byte("one"))
	if err := h.Flush(ctx, &fuse.FlushRequest{}); err != nil {
		t.Fatal(err)
	}
	var a fuse.Attr
	file.Attr(ctx, &a)
	stored := a.Mtime
	time.Sleep(5 * time.Millisecond)
	before := time.Now()
	write(t, h, 3, []byte("two"))
	file.Attr(ctx, &a)
	if a.Mtime.Before(before) || a.Ctime.Before(before) {
		t.Errorf("after a write: mtime %v ctime %v, want at least %v (stored %v)", a.Mtime, a.Ctime, before, stored)
	}
	time.Sleep(5 * time.Millisecond)
	before = time.Now()
	var sr fuse.SetattrResponse
	if err := file.Setattr(ctx, &fuse.SetattrRequest{Valid: fuse.SetattrSize, Size: 1}, &sr); err != nil {
		t.Fatal(err)
	}
	if sr.Attr.Mtime.Before(before) {
		t.Errorf("after ftruncate of an open file: mtime %v, want at least %v", sr.Attr.Mtime, before)
	}
	past := time.Unix(1500000000, 0)
	if err := file.Setattr(ctx, &fuse.SetattrRequest{Valid: fuse.SetattrMtime, Mtime: past}, &sr); err != nil {
		t.Fatal(err)
	}
	file.Attr(ctx, &a)
	if !a.Mtime.Equal(past) {
		t.Errorf("utimens after the writes: mtime %v, want %v", a.Mtime, past)
	}
	if err := h.Flush(ctx, &fuse.FlushRequest{}); err != nil {
		t.Fatal(err)
	}
	file.Attr(ctx, &a)
	if !a.Mtime.Equal(past) {
		t.Errorf("after close: mtime %v, want %v", a.Mtime, past)
	}
	h.Release(ctx, &fuse.ReleaseRequest{})
}

// TestMknodSpecialFiles: mkfifo, sockets and device nodes are made (they
// answered EPERM, so rsync -a, tar x and cp -a of trees holding them
// failed), with their type, mode and device number, and listed with their
// type.
func TestMknodSpecialFiles(t *testing.T) {
	ctx := context.Background()
	f, _, _ := newTestFS(t)
	root, _ := f.Root()
	d := root.(*Dir)
	for _, tc := range []struct {
		name string
		mode os.FileMode
		rdev uint32
		dt   fuse.DirentType
	}{
		{"fifo", os.ModeNamedPipe | 0o640, 0, fuse.DT_FIFO},
		{"sock", os.ModeSocket | 0o600, 0, fuse.DT_Socket},
		{"null", os.ModeDevice | os.ModeCharDevice | 0o666, 259, fuse.DT_Char},
		{"sda", os.ModeDevice | 0o660, 2048, fuse.DT_Block},
		{"plain", 0o644, 0, fuse.DT_File},
	} {
		n, err := d.Mknod(ctx, &fuse.MknodRequest{Name: tc.name, Mode: tc.mode, Rdev: tc.rdev})
		if err != nil {
			t.Fatalf("mknod %s: %v", tc.name, err)
		}
		var a fuse.Attr
		if err := n.Attr(ctx, &a); err != nil {
			t.Fatal(err)
		}
		if a.Mode != tc.mode || a.Rdev != tc.rdev || a.Nlink != 1 {
			t.Errorf("%s: mode %v rdev %d nlink %d, want %v %d 1", tc.name, a.Mode, a.Rdev, a.Nlink, tc.mode, tc.rdev)
		}
		if tc.mode&os.ModeType != 0 {
			var sr fuse.SetattrResponse
			if err := n.(fusefs.NodeSetattrer).Setattr(ctx, &fuse.SetattrRequest{Valid: fuse.SetattrMode | fuse.SetattrUid, Mode: 0o600, Uid: 7}, &sr); err != nil {
				t.Errorf("%s: chmod/chown: %v", tc.name, err)
			} else if sr.Attr.Mode != tc.mode&os.ModeType|0o600 || sr.Attr.Uid != 7 {
				t.Errorf("%s: after chmod/chown: mode %v uid %d", tc.name, sr.Attr.Mode, sr.Attr.Uid)
			}
		}
		found := false
		es, _ := d.ReadDirAll(ctx)
		for _, e := range es {
			if e.Name == tc.name {
				found = true
				if e.Type != tc.dt {
					t.Errorf("%s: listed as type %v, want %v", tc.name, e.Type, tc.dt)
				}
			}
		}
		if !found {
			t.Errorf("%s: not listed", tc.name)
		}
	}
}

// holeContent is memContent that knows holes, in blocks of holeBlock zero
// bytes, as the store knows chunks of zeros.
type holeContent struct{ *memContent }

const holeBlock = 64 << 10

func zeroBlock(b []byte, i int64) bool {
	end := min(int64(len(b)), (i+1)*holeBlock)
	return !slices.ContainsFunc(b[i*holeBlock:end], func(c byte) bool { return c != 0 })
}

func (c holeContent) Store(ctx context.Context, r io.Reader) (Stored, error) {
	st, err := c.memContent.Store(ctx, r)
	if err != nil {
		return st, err
	}
	c.mu.Lock()
	b := c.files[st.Manifest]
	c.mu.Unlock()
	for i := int64(0); i*holeBlock < int64(len(b)); i++ {
		if zeroBlock(b, i) {
			st.Zero += min(int64(len(b)), (i+1)*holeBlock) - i*holeBlock
		}
	}
	return st, nil
}

func (c holeContent) Seek(ctx context.Context, m [32]byte, off int64, hole bool) (int64, bool, error) {
	c.mu.Lock()
	b := c.files[m]
	c.mu.Unlock()
	for i := off / holeBlock; i*holeBlock < int64(len(b)); i++ {
		if zeroBlock(b, i) == hole {
			return max(off, i*holeBlock), true, nil
		}
	}
	if hole {
		return int64(len(b)), true, nil
	}
	return 0, false, nil
}

// TestLSeek: SEEK_DATA and SEEK_HOLE come from the stored content's holes
// once the file is closed; while a handle may write, the answer is data up
// to the end (never wrong: the kernel may hold writes not yet stored).
func TestLSeek(t *testing.T) {
	ctx := context.Background()
	ns, err := namespace.Open(namespace.Config{Dir: t.TempDir(), Peer: "p1"})
	if err != nil {
		t.Fatal(err)
	}
	defer ns.Close()
	f, err := New(Config{Tree: ns, Content: holeContent{&memContent{files: map[[32]byte][]byte{}}}, StagingDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	const size = 1 << 20
	file, h := create(t, f, "sparse")
	write(t, h, 5*holeBlock, []byte("data")) // blocks 0-4 hole, 5 data, 6-15 hole
	write(t, h, size-1, []byte{0})
	if err := h.Flush(ctx, &fuse.FlushRequest{}); err != nil {
		t.Fatal(err)
	}
	seek := func(h *Handle, off int64, whence int) (int64, error) {
		return h.LSeek(ctx, &fuse.LSeekRequest{Offset: off, Whence: whence})
	}
	enxio := fuse.Errno(syscall.ENXIO)
	type want struct {
		off    int64
		whence int
		pos    int64
		err    error
	}
	check := func(what string, h *Handle, tests []want) {
		t.Helper()
		for _, w := range tests {
			pos, err := seek(h, w.off, w.whence)
			if pos != w.pos || !errors.Is(err, w.err) && err != w.err {
				t.Errorf("%s: lseek(%d, %d) = %d, %v; want %d, %v", what, w.off, w.whence, pos, err, w.pos, w.err)
			}
		}
	}
	// Open for writing: no holes reported.
	check("writable", h, []want{
		{0, seekData, 0, nil},
		{0, seekHole, size, nil},
		{size, seekData, 0, enxio},
	})
	h.Release(ctx, &fuse.ReleaseRequest{})
	r, err := file.Open(ctx, &fuse.OpenRequest{Flags: fuse.OpenReadOnly}, &fuse.OpenResponse{})
	if err != nil {
		t.Fatal(err)
	}
	rh := r.(*Handle)
	defer rh.Release(ctx, &fuse.ReleaseRequest{})
	check("closed", rh, []want{
		{0, seekData, 5 * holeBlock, nil},
		{0, seekHole, 0, nil},
		{5*holeBlock + 10, seekData, 5*holeBlock + 10, nil},
		{5 * holeBlock, seekHole, 6 * holeBlock, nil},
		{6 * holeBlock, seekData, 0, enxio},
		{6 * holeBlock, seekHole, 6 * holeBlock, nil},
		{size, seekHole, 0, enxio},
		{-1, seekData, 0, enxio},
		{0, 0, 0, fuse.Errno(syscall.EINVAL)},
	})
	var a fuse.Attr
	if err := file.Attr(ctx, &a); err != nil {
		t.Fatal(err)
	}
	if a.Blocks*512 != holeBlock {
		t.Errorf("st_blocks %d (%d bytes), want the one block with data (%d)", a.Blocks, a.Blocks*512, holeBlock)
	}
}

// TestRename2Flags: renameat2's RENAME_NOREPLACE refuses an existing
// name with EEXIST and renames to a free one; RENAME_EXCHANGE swaps two
// names; RENAME_WHITEOUT (overlayfs's) and flags together are refused with
// EINVAL, as by a filesystem without them.
func TestRename2Flags(t *testing.T) {
	ctx := context.Background()
	f, ns, _ := newTestFS(t)
	for _, name := range []string{"a", "b"} {
		_, h := create(t, f, name)
		h.Release(ctx, &fuse.ReleaseRequest{})
	}
	root, _ := f.Root()
	d := root.(*Dir)
	tests := []struct {
		old, new string
		flags    fuse.RenameFlags
		want     error
	}{
		{"a", "b", fuse.RenameNoReplace, fuse.Errno(syscall.EEXIST)},
		{"a", "b", fuse.RenameExchange, nil},
		{"a", "b", fuse.RenameExchange | fuse.RenameNoReplace, fuse.Errno(syscall.EINVAL)},
		{"a", "w", fuse.RenameWhiteout, fuse.Errno(syscall.EINVAL)},
		{"a", "c", fuse.RenameNoReplace, nil},
		{"c", "b", 0, nil}, // plain rename replaces
	}
	for _, tc := range tests {
		err := d.Rename(ctx, &fuse.RenameRequest{OldName: tc.old, NewName: tc.new, Flags: tc.flags}, d)
		if !errors.Is(err, tc.want) && err != tc.want {
			t.Errorf("rename %s -> %s flags %#x: %v, want %v", tc.old, tc.new, tc.flags, err, tc.want)
		}
	}
	if err := d.Rename(ctx, &fuse.RenameRequest{OldName: "b", NewName: "b", Flags: fuse.RenameExchange}, d); err != nil {
		t.Errorf("exchange of a name with itself: %v", err)
	}
	entries, err := ns.ReadDir(namespace.RootID)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name)
	}
	if !slices.Equal(names, []string{"b"}) {
		t.Errorf("names left: %v, want [b]", names)
	}
}

// TestDirAttrSize: a directory shows one block (4096 bytes), as on ext4.
func TestDirAttrSize(t *testing.T) {
	f, _, _ := newTestFS(t)
	root, _ := f.Root()
	var a fuse.Attr
	if err := root.Attr(context.Background(), &a); err != nil {
		t.Fatal(err)
	}
	if a.Size != 4096 || a.Blocks != 8 || !a.Mode.IsDir() {
		t.Errorf("root: size %d, blocks %d, mode %v; want a directory of 4096 bytes, 8 blocks", a.Size, a.Blocks, a.Mode)
	}
}

// TestTruncateWhileWriting: an ftruncate between writes of an open file is
// one more write: the stored mtime is that of the store after the last
// write, not the truncation's (as an explicit utimens would be).
func TestTruncateWhileWriting(t *testing.T) {
	ctx := context.Background()
	for _, newSize := range []uint64{10, 4} { // shrink, and the size it has
		t.Run(fmt.Sprint(newSize), func(t *testing.T) {
			f, ns, _ := newTestFS(t)
			file, h := create(t, f, "f")
			write(t, h, 0, []byte("0123"))
			if err := file.Setattr(ctx, &fuse.SetattrRequest{Valid: fuse.SetattrSize | fuse.SetattrHandle, Size: newSize}, &fuse.SetattrResponse{}); err != nil {
				t.Fatal(err)
			}
			time.Sleep(20 * time.Millisecond)
			lastWrite := time.Now()
			write(t, h, 0, []byte("ab"))
			if err := h.Flush(ctx, &fuse.FlushRequest{}); err != nil {
				t.Fatal(err)
			}
			h.Release(ctx, &fuse.ReleaseRequest{})
			in, _ := ns.GetInode(file.ino)
			if got := time.Unix(0, in.Mtime); got.Before(lastWrite) {
				t.Errorf("stored mtime %v is before the last write (%v)", got, lastWrite)
			}
		})
	}
}

// TestTruncateOneOp: truncating a closed file to a new size is one
// replicated op (its store stamps mtime), not a store and then a setattr.
func TestTruncateOneOp(t *testing.T) {
	ctx := context.Background()
	f, ns, _ := newTestFS(t)
	file, h := create(t, f, "f")
	write(t, h, 0, []byte("0123456789"))
	if err := h.Flush(ctx, &fuse.FlushRequest{}); err != nil {
		t.Fatal(err)
	}
	h.Release(ctx, &fuse.ReleaseRequest{})
	before := ns.VersionVector()["p1"]
	if err := file.Setattr(ctx, &fuse.SetattrRequest{Valid: fuse.SetattrSize, Size: 3}, &fuse.SetattrResponse{}); err != nil {
		t.Fatal(err)
	}
	if ops := ns.VersionVector()["p1"] - before; ops != 1 {
		all, _, _ := ns.OpsSince(map[string]uint64{"p1": before}, 10)
		for _, op := range all {
			t.Logf("op %+v", op)
		}
		t.Errorf("truncate of a closed file: %d ops, want 1", ops)
	}
	if in, _ := ns.GetInode(file.ino); in.Size != 3 {
		t.Errorf("size %d, want 3", in.Size)
	}
}

// TestFAllocateZeroRange: FALLOC_FL_ZERO_RANGE zeroes the range and extends
// the file unless KEEP_SIZE; a punched hole keeps the size; both work on a
// file staged in memory and on one staged in a local file.
func TestFAllocateZeroRange(t *testing.T) {
	ctx := context.Background()
	for _, size := range []int{4096, 3 << 20} {
		for _, tc := range []struct {
			name     string
			mode     fuse.FAllocateFlags
			off, len int64
			wantSize int64
		}{
			{"zero range inside", zeroRange, 100, 200, int64(size)},
			{"zero range past the end", zeroRange, int64(size) - 10, 100, int64(size) + 90},
			{"zero range past the end, keep size", zeroRange | fuse.FAllocateKeepSize, int64(size) - 10, 100, int64(size)},
			{"punch hole past the end", fuse.FAllocatePunchHole | fuse.FAllocateKeepSize, int64(size) - 10, 1 << 40, int64(size)},
		} {
			f, _, _ := newTestFS(t)
			_, h := create(t, f, "f")
			data := bytes.Repeat([]byte("abcdefgh"), size/8)
			write(t, h, 0, data)
			if err := h.FAllocate(ctx, &fuse.FAllocateRequest{Mode: tc.mode, Offset: uint64(tc.off), Length: uint64(tc.len)}); err != nil {
				t.Fatalf("size %d, %s: %v", size, tc.name, err)
			}
			want := append([]byte(nil), data...)
			if tc.wantSize > int64(len(want)) {
				want = append(want, make([]byte, tc.wantSize-int64(len(want)))...)
			}
			clear(want[tc.off:min(tc.off+tc.len, int64(len(want)))])
			if got := readAll(t, h, int(tc.wantSize)+10); !bytes.Equal(got, want) {
				t.Errorf("size %d, %s: read back %d bytes, want %d (equal length: %v)", size, tc.name, len(got), len(want), len(got) == len(want))
			}
			if err := h.Flush(ctx, &fuse.FlushRequest{}); err != nil {
				t.Fatal(err)
			}
			h.Release(ctx, &fuse.ReleaseRequest{})
		}
	}
}
