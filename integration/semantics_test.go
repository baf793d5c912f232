package integration

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// asUser runs a shell command as uid/gid 1000 with no supplementary groups
// (setpriv; the test must run as root). It returns the combined output and
// whether the command succeeded.
func asUser(t *testing.T, script string) (string, bool) {
	t.Helper()
	out, err := exec.Command("setpriv", "--reuid", "1000", "--regid", "1000", "--clear-groups", "sh", "-c", script).CombinedOutput()
	return strings.TrimSpace(string(out)), err == nil
}

// reachable lets other users reach the mount point: the test's temporary
// directories above it are 0700.
func reachable(t *testing.T, mnt string) {
	t.Helper()
	for d := filepath.Dir(mnt); d != "/" && d != os.TempDir(); d = filepath.Dir(d) {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chmod(mnt, 0o777); err != nil {
		t.Fatal(err)
	}
}

func requireRootSetpriv(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root (to act as another user with setpriv)")
	}
	if _, err := exec.LookPath("setpriv"); err != nil {
		t.Skip("no setpriv")
	}
}

// TestPOSIXSemantics checks, through a real mount and the second one, the
// errno and attribute semantics a shared drive's users rely on and that
// posixtest does not cover.
func TestPOSIXSemantics(t *testing.T) {
	if testing.Short() {
		t.Skip("multi-process FUSE test; run without -short")
	}
	_, _, A, B := mountCluster(t)
	stat := func(t *testing.T, p string) *syscall.Stat_t {
		t.Helper()
		var st syscall.Stat_t
		if err := syscall.Lstat(p, &st); err != nil {
			t.Fatal(err)
		}
		return &st
	}

	t.Run("sticky directory", func(t *testing.T) {
		dir := filepath.Join(A, "shared-tmp")
		if err := os.Mkdir(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(dir, 0o777|os.ModeSticky); err != nil {
			t.Fatal(err)
		}
		for _, m := range []string{A, B} {
			waitFor(t, "sticky bit on "+m, 10*time.Second, func() (bool, string) {
				var st syscall.Stat_t
				if err := syscall.Stat(filepath.Join(m, "shared-tmp"), &st); err != nil {
					return false, err.Error()
				}
				return st.Mode&07777 == 01777, fmt.Sprintf("mode %#o, want 01777", st.Mode&07777)
			})
		}
		requireRootSetpriv(t)
		reachable(t, A)
		if err := os.WriteFile(filepath.Join(dir, "roots"), []byte("r"), 0o666); err != nil {
			t.Fatal(err)
		}
		os.Chmod(filepath.Join(dir, "roots"), 0o666)
		if out, ok := asUser(t, "rm -f "+filepath.Join(dir, "roots")); ok {
			t.Errorf("another user removed root's file from a sticky directory (%s)", out)
		}
		if out, ok := asUser(t, "mv "+filepath.Join(dir, "roots")+" "+filepath.Join(dir, "mine")); ok {
			t.Errorf("another user renamed root's file in a sticky directory (%s)", out)
		}
		if out, ok := asUser(t, "echo x > "+filepath.Join(dir, "own")+" && rm "+filepath.Join(dir, "own")); !ok {
			t.Errorf("a user cannot remove their own file from a sticky directory: %s", out)
		}
		if _, err := os.Stat(filepath.Join(dir, "roots")); err != nil {
			t.Errorf("root's file: %v", err)
		}
	})
	t.Run("write to an unlinked open file", func(t *testing.T) {
		// mkstemp, unlink, write, close: a temporary file as sort(1),
		// editors and databases use them.
		for _, size := range []int{100, 3 << 20} {
			p := filepath.Join(A, fmt.Sprintf("tmpfile-%d", size))
			f, err := os.Create(p)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.Remove(p); err != nil {
				t.Fatal(err)
			}
			data := make([]byte, size)
			if _, err := f.Write(data); err != nil {
				t.Fatal(err)
			}
			if err := f.Sync(); err != nil {
				t.Errorf("size %d: fsync: %v", size, err)
			}
			if got, err := f.ReadAt(make([]byte, size), 0); err != nil || got != size {
				t.Errorf("size %d: read back %d bytes: %v", size, got, err)
			}
			if err := f.Close(); err != nil {
				t.Errorf("size %d: close: %v", size, err)
			}
			if _, err := os.Stat(filepath.Join(B, filepath.Base(p))); !os.IsNotExist(err) {
				t.Errorf("size %d: the unlinked file came back on B: %v", size, err)
			}
		}
	})
	t.Run("attributes of an unlinked open file", func(t *testing.T) {
		// open, unlink, then fchmod, fchown, futimes, ftruncate or an
		// xattr call on the descriptor: each succeeds and shows in fstat
		// until close, as on a local filesystem (stress-ng's fsize
		// stressor: create, unlink, ftruncate to 0 of the empty file).
		for _, c := range []struct {
			name  string
			write bool // the file has content before the unlink
			op    func(fd int) error
			check func(st *syscall.Stat_t, fd int) error
		}{
			{"ftruncate 0 of a new empty file", false, func(fd int) error { return syscall.Ftruncate(fd, 0) }, nil},
			{"ftruncate to its own size", true, func(fd int) error { return syscall.Ftruncate(fd, 4) }, func(st *syscall.Stat_t, _ int) error {
				if st.Size != 4 {
					return fmt.Errorf("size %d, want 4", st.Size)
				}
				return nil
			}},
			{"fchmod", true, func(fd int) error { return syscall.Fchmod(fd, 0o600) }, func(st *syscall.Stat_t, _ int) error {
				if st.Mode&0o7777 != 0o600 {
					return fmt.Errorf("mode %o, want 600", st.Mode&0o7777)
				}
				return nil
			}},
			{"fchown", true, func(fd int) error { return syscall.Fchown(fd, 1, 2) }, func(st *syscall.Stat_t, _ int) error {
				if st.Uid != 1 || st.Gid != 2 {
					return fmt.Errorf("owner %d:%d, want 1:2", st.Uid, st.Gid)
				}
				return nil
			}},
			{"futimes", true, func(fd int) error {
				return syscall.Futimes(fd, []syscall.Timeval{{Sec: 5}, {Sec: 6}})
			}, func(st *syscall.Stat_t, _ int) error {
				if st.Mtim.Sec != 6 {
					return fmt.Errorf("mtime %d, want 6", st.Mtim.Sec)
				}
				return nil
			}},
			{"fsetxattr", true, func(fd int) error { return unix.Fsetxattr(fd, "user.k", []byte("v"), 0) }, func(_ *syscall.Stat_t, fd int) error {
				b := make([]byte, 16)
				n, err := unix.Fgetxattr(fd, "user.k", b)
				if err != nil || string(b[:n]) != "v" {
					return fmt.Errorf("fgetxattr after fsetxattr: %q, %v", b[:n], err)
				}
				return nil
			}},
			{"fremovexattr", true, func(fd int) error { return unix.Fremovexattr(fd, "user.old") }, func(_ *syscall.Stat_t, fd int) error {
				if _, err := unix.Fgetxattr(fd, "user.old", make([]byte, 16)); err != unix.ENODATA {
					return fmt.Errorf("fgetxattr after fremovexattr: %v, want ENODATA", err)
				}
				return nil
			}},
		} {
			p := filepath.Join(A, "unlinked-"+strings.ReplaceAll(c.name, " ", "-"))
			if c.write {
				if err := os.WriteFile(p, []byte("data"), 0o644); err != nil {
					t.Fatal(err)
				}
				if err := unix.Setxattr(p, "user.old", []byte("1"), 0); err != nil {
					t.Fatal(err)
				}
			}
			fd, err := syscall.Open(p, syscall.O_RDWR|syscall.O_CREAT, 0o644)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.Remove(p); err != nil {
				t.Fatal(err)
			}
			if err := c.op(fd); err != nil {
				t.Errorf("%s after unlink: %v", c.name, err)
			}
			var st syscall.Stat_t
			if err := syscall.Fstat(fd, &st); err != nil {
				t.Errorf("%s: fstat: %v", c.name, err)
			} else if st.Nlink != 0 {
				t.Errorf("%s: nlink %d, want 0", c.name, st.Nlink)
			} else if c.check != nil {
				if err := c.check(&st, fd); err != nil {
					t.Errorf("%s: %v", c.name, err)
				}
			}
			if err := syscall.Close(fd); err != nil {
				t.Errorf("%s: close: %v", c.name, err)
			}
			waitFor(t, c.name+": the unlinked file gone on B", 5*time.Second, func() (bool, string) {
				_, err := os.Lstat(filepath.Join(B, filepath.Base(p)))
				return os.IsNotExist(err), fmt.Sprint(err)
			})
		}
	})
	t.Run("signals do not fail writes and truncations with EINTR", func(t *testing.T) {
		// The kernel interrupts a FUSE request whenever its caller gets a
		// signal; a SIGCHLD or SIGALRM with a handler made ftruncate(2)
		// fail with EINTR (stress-ng's fcntl stressor), which no local
		// filesystem does. Reads give way only once they have run for a
		// second (a stuck one to Ctrl-C), so these quick ones never. SIGURG (Go's preemption signal, handled and
		// harmless) is sent to the thread making the calls, which are
		// raw system calls: no retry hides an EINTR.
		p := filepath.Join(A, "signalled")
		data := make([]byte, 3<<20)
		for i := range data {
			data[i] = byte(i * 7)
		}
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
		errs := make(chan error, 1)
		tids := make(chan int, 1)
		stop := make(chan struct{})
		go func() {
			runtime.LockOSThread()
			defer runtime.UnlockOSThread()
			tids <- syscall.Gettid()
			fd, err := syscall.Open(p, syscall.O_RDWR, 0)
			if err != nil {
				errs <- err
				return
			}
			defer syscall.Close(fd)
			var first error
			eintr := 0
			for i := range 60 {
				size := int64(1<<20 + i*4096)
				if i%2 == 1 {
					size = 3<<20 - int64(i)
				}
				if err := syscall.Ftruncate(fd, size); err != nil {
					if err == syscall.EINTR {
						eintr++
					} else if first == nil {
						first = fmt.Errorf("ftruncate %d: %w", size, err)
					}
				}
				if _, err := syscall.Pwrite(fd, data[:64<<10], int64(i)*8192); err != nil {
					if err == syscall.EINTR {
						eintr++
					} else if first == nil {
						first = fmt.Errorf("pwrite: %w", err)
					}
				}
				if _, err := syscall.Pread(fd, make([]byte, 128<<10), int64(i)*16384); err != nil {
					if err == syscall.EINTR {
						eintr++
					} else if first == nil {
						first = fmt.Errorf("pread: %w", err)
					}
				}
				if i%10 == 9 {
					if err := syscall.Fsync(fd); err == syscall.EINTR {
						eintr++
					} else if err != nil && first == nil {
						first = fmt.Errorf("fsync: %w", err)
					}
				}
			}
			if eintr > 0 && first == nil {
				first = fmt.Errorf("%d of 186 calls failed with EINTR", eintr)
			}
			errs <- first
		}()
		tid := <-tids
		go func() {
			for {
				select {
				case <-stop:
					return
				case <-time.After(100 * time.Microsecond):
					syscall.Tgkill(os.Getpid(), tid, syscall.SIGURG)
				}
			}
		}()
		err := <-errs
		close(stop)
		if err != nil {
			t.Error(err)
		}
	})
	t.Run("fifos sockets and devices", func(t *testing.T) {
		// rsync -a, tar x and cp -a of trees holding them failed: mknod
		// answered EPERM.
		dir := filepath.Join(A, "special")
		os.Mkdir(dir, 0o755)
		if err := syscall.Mkfifo(filepath.Join(dir, "fifo"), 0o640); err != nil {
			t.Fatalf("mkfifo: %v", err)
		}
		if err := syscall.Mknod(filepath.Join(dir, "sock"), syscall.S_IFSOCK|0o600, 0); err != nil {
			t.Fatalf("mknod socket: %v", err)
		}
		if os.Geteuid() == 0 {
			if err := syscall.Mknod(filepath.Join(dir, "null"), syscall.S_IFCHR|0o666, int(1<<8|3)); err != nil {
				t.Fatalf("mknod char device: %v", err)
			}
		}
		for _, m := range []string{A, B} {
			waitFor(t, "special files on "+m, 10*time.Second, func() (bool, string) {
				var st syscall.Stat_t
				if err := syscall.Lstat(filepath.Join(m, "special", "fifo"), &st); err != nil {
					return false, err.Error()
				}
				if st.Mode != syscall.S_IFIFO|0o640 {
					return false, fmt.Sprintf("fifo mode %#o", st.Mode)
				}
				if err := syscall.Lstat(filepath.Join(m, "special", "sock"), &st); err != nil || st.Mode&syscall.S_IFMT != syscall.S_IFSOCK {
					return false, fmt.Sprintf("socket: %v mode %#o", err, st.Mode)
				}
				if os.Geteuid() == 0 {
					if err := syscall.Lstat(filepath.Join(m, "special", "null"), &st); err != nil || st.Mode&syscall.S_IFMT != syscall.S_IFCHR || st.Rdev != 1<<8|3 {
						return false, fmt.Sprintf("device: %v mode %#o rdev %#x", err, st.Mode, st.Rdev)
					}
				}
				return true, ""
			})
		}
		// A FIFO on the mount is a pipe on the machine that opens it.
		done := make(chan error, 1)
		go func() { done <- os.WriteFile(filepath.Join(B, "special", "fifo"), []byte("through the pipe"), 0) }()
		got, err := os.ReadFile(filepath.Join(B, "special", "fifo"))
		if err != nil || string(got) != "through the pipe" || <-done != nil {
			t.Errorf("pipe through the fifo on B: %q, %v", got, err)
		}
		if _, err := exec.LookPath("rsync"); err != nil {
			return
		}
		src := t.TempDir()
		os.WriteFile(filepath.Join(src, "file"), []byte("f"), 0o644)
		syscall.Mkfifo(filepath.Join(src, "fifo"), 0o600)
		dst := filepath.Join(A, "special-rsync") + "/"
		run(t, "rsync", "-a", src+"/", dst)
		if out, err := exec.Command("rsync", "-ai", src+"/", dst).CombinedOutput(); err != nil || len(out) != 0 {
			t.Errorf("second rsync -ai of a tree with a fifo: %v\n%s", err, out)
		}
	})
	t.Run("hard links to symlinks and special files", func(t *testing.T) {
		// link(2) does not follow a symlink on Linux: cp -a, rsync -H and
		// tar keep such links, and POSIX suites link every file type.
		// They failed with EPERM.
		dir := filepath.Join(A, "links")
		os.Mkdir(dir, 0o755)
		if err := os.Symlink("target/elsewhere", filepath.Join(dir, "sym")); err != nil {
			t.Fatal(err)
		}
		if err := syscall.Mkfifo(filepath.Join(dir, "fifo"), 0o600); err != nil {
			t.Fatal(err)
		}
		for _, name := range []string{"sym", "fifo"} {
			if err := syscall.Link(filepath.Join(dir, name), filepath.Join(dir, name+"2")); err != nil {
				t.Fatalf("link %s: %v", name, err)
			}
		}
		for _, m := range []string{A, B} {
			waitFor(t, "links on "+m, 10*time.Second, func() (bool, string) {
				for _, name := range []string{"sym", "fifo"} {
					var a, b syscall.Stat_t
					if err := syscall.Lstat(filepath.Join(m, "links", name), &a); err != nil {
						return false, err.Error()
					}
					if err := syscall.Lstat(filepath.Join(m, "links", name+"2"), &b); err != nil {
						return false, err.Error()
					}
					if a.Ino != b.Ino || a.Nlink != 2 || b.Mode != a.Mode {
						return false, fmt.Sprintf("%s: inodes %d and %d, nlink %d, modes %#o %#o", name, a.Ino, b.Ino, a.Nlink, a.Mode, b.Mode)
					}
				}
				if got, err := os.Readlink(filepath.Join(m, "links", "sym2")); err != nil || got != "target/elsewhere" {
					return false, fmt.Sprintf("readlink sym2: %q, %v", got, err)
				}
				return true, ""
			})
		}
		if err := os.Remove(filepath.Join(dir, "sym")); err != nil {
			t.Fatal(err)
		}
		var st syscall.Stat_t
		if err := syscall.Lstat(filepath.Join(dir, "sym2"), &st); err != nil || st.Nlink != 1 {
			t.Errorf("sym2 after removing sym: nlink %d, %v; want 1", st.Nlink, err)
		}
	})
	t.Run("mtime of a write shows at once", func(t *testing.T) {
		p := filepath.Join(A, "written")
		if err := os.WriteFile(p, []byte("old"), 0o644); err != nil {
			t.Fatal(err)
		}
		past := time.Date(2020, 1, 2, 3, 4, 5, 0, time.UTC)
		if err := os.Chtimes(p, past, past); err != nil {
			t.Fatal(err)
		}
		os.Stat(p) // the kernel caches the old attributes
		for _, trunc := range []bool{false, true} {
			flags := os.O_WRONLY
			if trunc {
				flags |= os.O_TRUNC
			}
			before := time.Now().Add(-time.Millisecond)
			f, err := os.OpenFile(p, flags, 0)
			if err != nil {
				t.Fatal(err)
			}
			f.Write([]byte("new content"))
			fi, _ := f.Stat()
			if fi.ModTime().Before(before) {
				t.Errorf("trunc %v: fstat while writing: mtime %v, want after %v", trunc, fi.ModTime(), before)
			}
			if err := f.Close(); err != nil {
				t.Fatal(err)
			}
			fi, _ = os.Stat(p)
			if fi.ModTime().Before(before) {
				t.Errorf("trunc %v: stat right after close: mtime %v, want after %v", trunc, fi.ModTime(), before)
			}
			if err := os.Chtimes(p, past, past); err != nil {
				t.Fatal(err)
			}
			os.Stat(p)
		}
	})
	t.Run("write-only writes reach the cached pages of readers", func(t *testing.T) {
		// A write-only open bypasses the kernel's page cache (fs,
		// Handle.answer): pages another open of the same file read
		// before must not hide what it writes, through read(2) or a
		// shared mapping, and neither must its appends.
		p := filepath.Join(A, "cached-then-written")
		old := bytes.Repeat([]byte("o"), 1<<20)
		if err := os.WriteFile(p, old, 0o644); err != nil {
			t.Fatal(err)
		}
		// The change notice of that write drops the file's pages a
		// moment later: let it pass before caching them.
		time.Sleep(300 * time.Millisecond)
		r, err := os.Open(p)
		if err != nil {
			t.Fatal(err)
		}
		defer r.Close()
		if got, err := r.ReadAt(make([]byte, len(old)), 0); err != nil || got != len(old) {
			t.Fatalf("read %d bytes: %v", got, err)
		}
		m, err := syscall.Mmap(int(r.Fd()), 0, len(old), syscall.PROT_READ, syscall.MAP_SHARED)
		if err != nil {
			t.Fatal(err)
		}
		defer syscall.Munmap(m)
		_ = m[len(old)-1]                  // fault the mapping in
		vec := make([]byte, len(old)/4096) // mincore(2): which pages are cached
		syscall.Syscall(syscall.SYS_MINCORE, uintptr(unsafe.Pointer(&m[0])), uintptr(len(m)), uintptr(unsafe.Pointer(&vec[0])))
		res := 0
		for _, v := range vec {
			res += int(v & 1)
		}
		if res < len(vec)/2 {
			t.Fatalf("%d of the file's %d pages in the page cache after reading it: nothing stale to show", res, len(vec))
		}
		w, err := os.OpenFile(p, os.O_WRONLY, 0)
		if err != nil {
			t.Fatal(err)
		}
		const at = 300_000
		if _, err := w.WriteAt([]byte("NEW"), at); err != nil {
			t.Fatal(err)
		}
		if string(m[at:at+3]) != "NEW" {
			t.Errorf("the reader's mapping right after the write: %q, want NEW", m[at:at+3])
		}
		got := make([]byte, 3)
		if _, err := r.ReadAt(got, at); err != nil || string(got) != "NEW" {
			t.Errorf("read(2) through the reader's open right after the write: %q, %v; want NEW", got, err)
		}
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		a, err := os.OpenFile(p, os.O_WRONLY|os.O_APPEND, 0)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := a.Write([]byte("tail")); err != nil {
			t.Fatal(err)
		}
		if err := a.Close(); err != nil {
			t.Fatal(err)
		}
		want := append(append(append([]byte{}, old[:at]...), "NEW"...), old[at+3:]...)
		want = append(want, "tail"...)
		for _, m := range []string{A, B} {
			q := filepath.Join(m, "cached-then-written")
			waitFor(t, "the written file on "+m, 10*time.Second, func() (bool, string) {
				b, err := os.ReadFile(q)
				if err != nil {
					return false, err.Error()
				}
				return bytes.Equal(b, want), fmt.Sprintf("%d bytes, want %d (equal: %v)", len(b), len(want), bytes.Equal(b, want))
			})
		}
		tail := make([]byte, 4)
		if _, err := r.ReadAt(tail, int64(len(old))); err != nil || string(tail) != "tail" {
			t.Errorf("the reader's open after the append: %q, %v; want tail", tail, err)
		}
	})
	t.Run("directory mtime on create, rename and unlink", func(t *testing.T) {
		dir := filepath.Join(A, "maildir")
		if err := os.Mkdir(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		last := stat(t, dir).Mtim
		changed := func(what string) {
			t.Helper()
			for _, m := range []string{A, B} {
				p := filepath.Join(m, "maildir")
				waitFor(t, what+": directory mtime on "+m, 10*time.Second, func() (bool, string) {
					var st syscall.Stat_t
					if err := syscall.Lstat(p, &st); err != nil {
						return false, err.Error()
					}
					return st.Mtim != last && st.Ctim == st.Mtim, fmt.Sprintf("mtime %v ctime %v, was %v", st.Mtim, st.Ctim, last)
				})
			}
			last = stat(t, dir).Mtim
			if got := stat(t, filepath.Join(B, "maildir")).Mtim; got != last {
				t.Errorf("%s: mtime %v on A, %v on B", what, last, got)
			}
		}
		time.Sleep(10 * time.Millisecond)
		if err := os.WriteFile(filepath.Join(dir, "new"), []byte("mail"), 0o600); err != nil {
			t.Fatal(err)
		}
		changed("create")
		time.Sleep(10 * time.Millisecond)
		if err := os.Rename(filepath.Join(dir, "new"), filepath.Join(dir, "cur")); err != nil {
			t.Fatal(err)
		}
		changed("rename")
		time.Sleep(10 * time.Millisecond)
		if err := os.Remove(filepath.Join(dir, "cur")); err != nil {
			t.Fatal(err)
		}
		changed("unlink")
	})
}

// unsynced returns each peer's reef_shard_writes_unsynced.
func unsynced(t *testing.T, peers []*peerProc) []int {
	t.Helper()
	var out []int
	for _, p := range peers {
		n := -1
		for line := range strings.Lines(httpGet(t, "http://"+p.listen+"/metrics")) {
			if strings.HasPrefix(line, "reef_shard_writes_unsynced{") {
				f := strings.Fields(line)
				v, err := strconv.ParseFloat(f[len(f)-1], 64)
				if err != nil {
					t.Fatalf("%s: %q: %v", p.name, line, err)
				}
				n = int(v)
			}
		}
		if n < 0 {
			t.Fatalf("%s: no reef_shard_writes_unsynced in /metrics", p.name)
		}
		out = append(out, n)
	}
	return out
}

// TestFsyncSyncsShards: a file's shards are written lazily at close (each
// holder syncs them on its own schedule, here never: --shard-sync-every
// 1h), and fsync(2) through the mount, or `reef put`, returns only when
// all but m peers have synced, the rest soon after.
func TestFsyncSyncsShards(t *testing.T) {
	if testing.Short() {
		t.Skip("multi-process FUSE test; run without -short")
	}
	c, peers, A, _ := mountClusterWith(t, "--shard-sync-every", "1h")
	const m = 2
	zeros := func(u []int) int {
		n := 0
		for _, v := range u {
			if v == 0 {
				n++
			}
		}
		return n
	}
	allSynced := func(t *testing.T, what string) {
		t.Helper()
		u := unsynced(t, peers)
		if z := zeros(u); z < len(peers)-m {
			t.Errorf("right after %s: %d of %d peers synced (unsynced writes %v), want at least %d", what, z, len(peers), u, len(peers)-m)
		}
		waitFor(t, "every peer synced after "+what, 10*time.Second, func() (bool, string) {
			u := unsynced(t, peers)
			return zeros(u) == len(peers), fmt.Sprint(u)
		})
	}

	name := filepath.Join(A, "f")
	data := randBytes(1<<20, 7)
	if err := os.WriteFile(name, data, 0o644); err != nil {
		t.Fatal(err)
	}
	if u := unsynced(t, peers); len(peers)-zeros(u) < 5 {
		t.Fatalf("after close without fsync, unsynced writes per peer %v: want the shards written lazily on at least k+1 = 5 peers", u)
	}
	f, err := os.OpenFile(name, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Sync(); err != nil {
		t.Fatal(err)
	}
	allSynced(t, "fsync")
	f.Close()

	src := filepath.Join(t.TempDir(), "put")
	if err := os.WriteFile(src, randBytes(1<<20, 8), 0o644); err != nil {
		t.Fatal(err)
	}
	c.put(peers[2], src)
	allSynced(t, "reef put")
}

// TestStoppedPeer: a peer that stops answering without closing its
// connections (SIGSTOP: a hung process, or a link that drops packets) must
// not hold up closes, fsyncs and reads until the 10 s request timeout while
// membership has not given up on it yet. Peer 3 is one of mount A's ring
// neighbours, so it is in the quorum of every namespace push from A, and
// with 6 peers and k+m = 6 it holds a shard of every stripe.
func TestStoppedPeer(t *testing.T) {
	if testing.Short() {
		t.Skip("multi-process FUSE test; run without -short")
	}
	c, peers, A, B := mountCluster(t)
	before := randBytes(3<<20, 40)
	if err := os.WriteFile(filepath.Join(A, "before"), before, 0o644); err != nil {
		t.Fatal(err)
	}
	stopped := peers[2]
	if err := stopped.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	resumed := false
	resume := func() {
		if !resumed {
			stopped.cmd.Process.Signal(syscall.SIGCONT)
			resumed = true
		}
	}
	defer resume()
	// The request timeout is 10 s: an operation that waited for the stopped
	// peer takes at least that long. The bound is no speed goal, only what
	// tells waiting for it from not.
	const bound = 7 * time.Second
	while := stopped.name + " stopped"
	step := func(what string, f func() error) {
		t.Helper()
		t0 := time.Now()
		if err := f(); err != nil {
			t.Fatalf("%s, %s: %v", what, while, err)
		}
		if took := time.Since(t0); took > bound {
			t.Errorf("%s, %s, took %v: it waited for a stopped peer", what, while, took.Round(time.Millisecond))
		}
	}
	small := []byte("written while a peer is stopped\n")
	big := randBytes(2<<20, 41)
	step("close of a small file", func() error { return os.WriteFile(filepath.Join(A, "small"), small, 0o644) })
	step("close of a 2 MiB file", func() error { return os.WriteFile(filepath.Join(A, "big"), big, 0o644) })
	step("fsync", func() error {
		f, err := os.OpenFile(filepath.Join(A, "big"), os.O_RDWR, 0)
		if err != nil {
			return err
		}
		defer f.Close()
		return f.Sync()
	})
	for name, want := range map[string][]byte{"before": before, "small": small, "big": big} {
		step("read of "+name+" through B", func() error {
			var got []byte
			var err error
			waitFor(t, name+" on B", 10*time.Second, func() (bool, string) {
				got, err = os.ReadFile(filepath.Join(B, name))
				if err != nil {
					return false, err.Error()
				}
				return bytes.Equal(got, want), fmt.Sprintf("%d bytes, want %d", len(got), len(want))
			})
			return err
		})
	}
	// The operator sees which peer held A up.
	for _, m := range c.status(peers[0]).Members {
		if m.Slow != (m.ID == stopped.name) {
			t.Errorf("status through %s: %s slow = %v", peers[0].name, m.ID, m.Slow)
		}
	}
	resume()
	c.waitStates(peers[0], map[string]string{stopped.name: "alive"}, 30*time.Second)
	for name, want := range map[string][]byte{"before": before, "small": small, "big": big} {
		if got, err := os.ReadFile(filepath.Join(A, name)); err != nil || !bytes.Equal(got, want) {
			t.Errorf("%s through A after %s resumed: %v", name, stopped.name, err)
		}
	}

	// Every peer but the two mounting ones stopped: a close cannot reach
	// its quorum and fails. Once they resume, closes work again at once,
	// though A remembers them all as slow.
	for _, p := range peers[2:] {
		p.cmd.Process.Signal(syscall.SIGSTOP)
	}
	err := os.WriteFile(filepath.Join(A, "cut off"), small, 0o644)
	for _, p := range peers[2:] {
		p.cmd.Process.Signal(syscall.SIGCONT)
	}
	if err == nil {
		t.Errorf("a close with 4 of 6 peers stopped succeeded: its change is on 2 peers, m+1 = 3 needed")
	}
	alive := map[string]string{}
	for _, p := range peers {
		alive[p.name] = "alive"
	}
	c.waitStates(peers[0], alive, 30*time.Second)
	while = "the stopped peers resumed"
	step("close", func() error { return os.WriteFile(filepath.Join(A, "resumed"), small, 0o644) })
}
