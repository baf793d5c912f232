package integration

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// requireFUSE skips (or, in CI, fails) when FUSE cannot be used here.
func requireFUSE(t *testing.T) {
	t.Helper()
	if _, err := os.Stat("/dev/fuse"); err != nil {
		skipOrFail(t, "no /dev/fuse: %v", err)
	}
	if _, err := exec.LookPath("fusermount3"); err != nil {
		if _, err := exec.LookPath("fusermount"); err != nil {
			skipOrFail(t, "no fusermount (install fuse3; `make test` does)")
		}
	}
}

// mountCluster starts six peers; the first two mount the volume.
func mountCluster(t *testing.T) (*cluster, []*peerProc, string, string) {
	t.Helper()
	return mountClusterWith(t)
}

// mountClusterWith is mountCluster with extra flags for every peer.
func mountClusterWith(t *testing.T, flags ...string) (*cluster, []*peerProc, string, string) {
	t.Helper()
	return mountClusterPrepared(t, nil, flags...)
}

// mountClusterPrepared is mountClusterWith that calls prepare (if not
// nil) before it starts the peers: peer i's data directory will be
// c.dir/peer<i>.
func mountClusterPrepared(t *testing.T, prepare func(c *cluster), flags ...string) (*cluster, []*peerProc, string, string) {
	t.Helper()
	requireFUSE(t)
	c := newCluster(t)
	if prepare != nil {
		prepare(c)
	}
	a := filepath.Join(c.dir, "mountA")
	b := filepath.Join(c.dir, "mountB")
	os.Mkdir(a, 0o755)
	os.Mkdir(b, 0o755)
	var peers []*peerProc
	for i := range 6 {
		var extra []string
		switch i {
		case 0:
			extra = []string{"--mount", a}
		case 1:
			extra = []string{"--mount", b}
		}
		peers = append(peers, c.addPeer(append(extra, flags...)...))
	}
	c.waitAlive(peers)
	return c, peers, a, b
}

// makeTree writes a tree of nfiles small files in nested directories, some
// medium files past the inline threshold, one large file, symlinks and a
// hard link, with varied modes.
func makeTree(t *testing.T, dir string, nfiles int, large int64) {
	t.Helper()
	rng := rand.New(rand.NewPCG(42, 42))
	for i := range nfiles {
		d := filepath.Join(dir, fmt.Sprintf("d%02d", i%37), fmt.Sprintf("s%d", i%5))
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		b := make([]byte, rng.IntN(6000))
		for j := range b {
			b[j] = byte('a' + rng.IntN(26))
		}
		mode := os.FileMode(0o644)
		if i%9 == 0 {
			mode = 0o755
		}
		if i%13 == 0 {
			mode = 0o600
		}
		if err := os.WriteFile(filepath.Join(d, fmt.Sprintf("f%05d.txt", i)), b, mode); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 12 {
		writeRandom(t, filepath.Join(dir, fmt.Sprintf("medium%d.bin", i)), int64(60<<10+i*40<<10), uint64(i+100))
	}
	writeRandom(t, filepath.Join(dir, "large.bin"), large, 7)
	os.MkdirAll(filepath.Join(dir, "empty", "deeper"), 0o700)
	for _, l := range [][2]string{
		{"d00/s0/f00000.txt", "rel-link"},
		{"/etc/hostname", "abs-link"},
		{"does-not-exist", "dangling-link"},
		{"d01", "dir-link"},
	} {
		if err := os.Symlink(l[0], filepath.Join(dir, l[1])); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Link(filepath.Join(dir, "medium0.bin"), filepath.Join(dir, "hardlink.bin")); err != nil {
		t.Fatal(err)
	}
}

// diffTrees runs diff -r (no dereferencing of symlinks to directories
// outside: diff compares link targets with --no-dereference).
func diffTrees(a, b string) (bool, string) {
	out, err := exec.Command("diff", "-r", "--no-dereference", a, b).CombinedOutput()
	if err != nil {
		s := string(out)
		if len(s) > 2000 {
			s = s[:2000] + "..."
		}
		return false, fmt.Sprintf("%v: %s", err, s)
	}
	return true, ""
}

func waitSame(t *testing.T, what, a, b string) {
	t.Helper()
	waitFor(t, what, 30*time.Second, func() (bool, string) { return diffTrees(a, b) })
}

func run(t *testing.T, name string, args ...string) {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
}

// TestSharedDrive is the acceptance test of the mount: real trees copied
// with cp -a and rsync -a into one mount read back identical through the
// other, through peer loss, remounts and restarts.
func TestSharedDrive(t *testing.T) {
	if testing.Short() {
		t.Skip("multi-process FUSE test; run without -short")
	}
	c, peers, A, B := mountCluster(t)
	src := filepath.Join(t.TempDir(), "src")
	makeTree(t, src, 3000, 24<<20)

	t.Run("cp -a into A, diff through B", func(t *testing.T) {
		run(t, "cp", "-a", src, filepath.Join(A, "cp"))
		waitSame(t, "cp tree on B", src, filepath.Join(B, "cp"))
	})
	t.Run("rsync -a into A, diff through B", func(t *testing.T) {
		if _, err := exec.LookPath("rsync"); err != nil {
			skipOrFail(t, "rsync not installed")
		}
		run(t, "rsync", "-a", src+"/", filepath.Join(A, "rs")+"/")
		waitSame(t, "rsync tree on B", src, filepath.Join(B, "rs"))
		// A second rsync finds nothing to do: metadata came through.
		out, err := exec.Command("rsync", "-a", "-i", "--dry-run", src+"/", filepath.Join(B, "rs")+"/").CombinedOutput()
		if err != nil || len(bytes.TrimSpace(out)) != 0 {
			t.Errorf("rsync -i against B wants to change: %v\n%.2000s", err, out)
		}
	})

	c.kill9(peers[2])
	c.kill9(peers[3])
	t.Run("two non-mounting peers killed", func(t *testing.T) {
		waitSame(t, "tree on B after kills", src, filepath.Join(B, "cp"))
		waitSame(t, "tree on A after kills", src, filepath.Join(A, "rs"))
		// Four peers left take writes; a chunked file needs k+1 = 5, and
		// reef status says so once membership has noticed.
		waitFor(t, "status to count 4 writable peers of 5 needed", 30*time.Second, func() (bool, string) {
			st := c.status(peers[0])
			return st.WritablePeers == 4 && st.WritePeersNeeded == 5, fmt.Sprintf("%d of %d", st.WritablePeers, st.WritePeersNeeded)
		})
		if out := c.reef("status", "--peer", peers[0].listen).ok(t).stdout; !strings.Contains(out, "WRITES REFUSED") {
			t.Errorf("reef status with 4 of 6 peers does not warn that chunked writes are refused:\n%s", out)
		}
	})
	c.restart(peers[2])
	c.restart(peers[3])

	t.Run("unmount and mount again", func(t *testing.T) {
		c.stop(peers[1])
		if isMounted(B) {
			t.Fatalf("%s still mounted after SIGTERM", B)
		}
		c.restart(peers[1])
		waitSame(t, "tree on B after remount", src, filepath.Join(B, "cp"))
	})

	t.Run("a stopped peer catches up", func(t *testing.T) {
		p := peers[4]
		c.stop(p)
		os.MkdirAll(filepath.Join(A, "later", "sub"), 0o755)
		for i := range 50 {
			os.WriteFile(filepath.Join(A, "later", "sub", fmt.Sprintf("n%d", i)), []byte(strings.Repeat("x", i)), 0o644)
		}
		os.Rename(filepath.Join(A, "cp", "d01"), filepath.Join(A, "later", "moved-d01"))
		C := filepath.Join(c.dir, "mountC")
		os.Mkdir(C, 0o755)
		p.args = append(p.args, "--mount", C)
		c.restart(p)
		waitSame(t, "caught-up tree on C", A, C)
	})
}

func isMounted(dir string) bool {
	b, _ := os.ReadFile("/proc/self/mounts")
	return strings.Contains(string(b), " "+dir+" ")
}

// listing returns every path under dir with its content hash, sorted.
func listing(dir string) ([]string, error) {
	var out []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		if d.Type().IsRegular() {
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			out = append(out, rel+"="+string(b))
		} else {
			out = append(out, rel)
		}
		return nil
	})
	sort.Strings(out)
	return out, err
}

// TestConcurrentMounts: concurrent creates and renames of the same names on
// two mounts converge to one tree on both, with conflicts visible and
// nothing created lost.
func TestConcurrentMounts(t *testing.T) {
	if testing.Short() {
		t.Skip("multi-process FUSE test; run without -short")
	}
	_, _, A, B := mountCluster(t)
	os.Mkdir(filepath.Join(A, "race"), 0o755)
	waitFor(t, "race dir on B", 10*time.Second, func() (bool, string) {
		_, err := os.Stat(filepath.Join(B, "race"))
		return err == nil, fmt.Sprint(err)
	})
	var mu sync.Mutex
	var created []string // contents of files whose exclusive create succeeded
	var wg sync.WaitGroup
	for _, m := range []struct{ dir, tag string }{{A, "A"}, {B, "B"}} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 40 {
				content := fmt.Sprintf("%s-%d", m.tag, i)
				f, err := os.OpenFile(filepath.Join(m.dir, "race", fmt.Sprintf("same-%d.txt", i)), os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644)
				if err != nil {
					continue // the other mount's file was already visible: fine
				}
				f.WriteString(content)
				if err := f.Close(); err == nil {
					mu.Lock()
					created = append(created, content)
					mu.Unlock()
				}
			}
			for i := range 10 {
				src := filepath.Join(m.dir, "race", fmt.Sprintf("ren-%s-%d", m.tag, i))
				os.WriteFile(src, []byte(m.tag), 0o644)
				os.Rename(src, filepath.Join(m.dir, "race", fmt.Sprintf("renamed-%d", i)))
			}
		}()
	}
	wg.Wait()
	var la, lb []string
	waitFor(t, "both mounts to converge", 30*time.Second, func() (bool, string) {
		var err error
		if la, err = listing(filepath.Join(A, "race")); err != nil {
			return false, err.Error()
		}
		if lb, err = listing(filepath.Join(B, "race")); err != nil {
			return false, err.Error()
		}
		if strings.Join(la, "\n") != strings.Join(lb, "\n") {
			return false, fmt.Sprintf("A has %d entries, B has %d", len(la), len(lb))
		}
		return true, ""
	})
	all := strings.Join(la, "\n")
	for _, content := range created {
		if !strings.Contains(all, "="+content+"\n") && !strings.HasSuffix(all, "="+content) {
			t.Errorf("content %q of an acknowledged create is gone", content)
		}
	}
	if len(created) > 40 && !strings.Contains(all, "conflict from") {
		t.Errorf("%d creates of 40 names succeeded but no conflict name is visible:\n%s", len(created), all)
	}
	t.Logf("%d of 80 exclusive creates succeeded; %d entries; conflicts visible: %v", len(created), len(la), strings.Count(all, "conflict from"))
}

// TestFileSemantics covers fsync, ftruncate on an open file, rename over an
// existing file, the editor save pattern, append, sparse files and a write
// in the middle of a large file, each checked through the other mount.
func TestFileSemantics(t *testing.T) {
	if testing.Short() {
		t.Skip("multi-process FUSE test; run without -short")
	}
	c, peers, A, B := mountCluster(t)
	seeOnB := func(t *testing.T, name string, want []byte) {
		t.Helper()
		waitFor(t, name+" on B", 10*time.Second, func() (bool, string) {
			got, err := os.ReadFile(filepath.Join(B, name))
			if err != nil {
				return false, err.Error()
			}
			if !bytes.Equal(got, want) {
				return false, fmt.Sprintf("%d bytes, want %d", len(got), len(want))
			}
			return true, ""
		})
	}
	t.Run("sparse file made by truncate", func(t *testing.T) {
		// Extended by truncate, then a few bytes written in the hole and
		// past it: the holes read back as zeros through the other mount.
		name := filepath.Join(A, "holes")
		const size = 1 << 30
		if err := os.Truncate(name, 0); err != nil && !os.IsNotExist(err) {
			t.Fatal(err)
		}
		f, err := os.Create(name)
		if err != nil {
			t.Fatal(err)
		}
		if err := f.Truncate(size); err != nil {
			t.Fatal(err)
		}
		marks := map[int64]string{300 << 20: "in the hole", size + 10: "past the end"}
		for off, s := range marks {
			if _, err := f.WriteAt([]byte(s), off); err != nil {
				t.Fatal(err)
			}
		}
		if err := f.Close(); err != nil {
			t.Fatal(err)
		}
		// B sees the close as the other checks here do: once its peer
		// has applied the pushed op (close waits for m peers, which need
		// not include B's).
		wantSize := size + 10 + int64(len(marks[size+10]))
		waitFor(t, "holes' size on B", 10*time.Second, func() (bool, string) {
			fi, err := os.Stat(filepath.Join(B, "holes"))
			if err != nil {
				return false, err.Error()
			}
			return fi.Size() == wantSize, fmt.Sprintf("size %d, want %d", fi.Size(), wantSize)
		})
		g, err := os.Open(filepath.Join(B, "holes"))
		if err != nil {
			t.Fatal(err)
		}
		defer g.Close()
		for off, s := range marks {
			buf := make([]byte, len(s)+2<<20)
			n, err := g.ReadAt(buf, off-1<<20)
			if err != nil && err != io.EOF {
				t.Fatal(err)
			}
			want := append(append(make([]byte, 1<<20), s...), make([]byte, 1<<20)...)
			if !bytes.Equal(buf[:n], want[:n]) || n < 1<<20+len(s) {
				t.Errorf("%d bytes around %q through B differ from zeros, %q, zeros", n, s, s)
			}
		}
		// Its holes take no room: st_blocks, which du and the sparse
		// checks of cp, tar and rsync read, counts the chunks with data
		// (a few MiB of 1 GiB), as on a local filesystem.
		var sb syscall.Stat_t
		if err := syscall.Stat(filepath.Join(B, "holes"), &sb); err != nil {
			t.Fatal(err)
		}
		if used := sb.Blocks * 512; used > 32<<20 {
			t.Errorf("st_blocks through B: %d MiB used of a 1 GiB file that is nearly all holes", used>>20)
		}
		// lseek finds them (cp, tar -S and qemu-img skip holes so): the
		// file starts with a hole, its first data holds the first mark,
		// and the next hole starts a few MiB later.
		const seekData, seekHole = 3, 4
		if pos, err := g.Seek(0, seekHole); err != nil || pos != 0 {
			t.Errorf("SEEK_HOLE from 0 = %d, %v; want 0 (the file starts with a hole)", pos, err)
		}
		data, err := g.Seek(0, seekData)
		if err != nil || data > 300<<20 || data < 290<<20 {
			t.Errorf("SEEK_DATA from 0 = %d, %v; want the chunk holding offset %d", data, err, 300<<20)
		}
		if hole, err := g.Seek(data, seekHole); err != nil || hole <= 300<<20 || hole > 310<<20 {
			t.Errorf("SEEK_HOLE from %d = %d, %v; want just past the first mark", data, hole, err)
		}
		if _, err := g.Seek(size+100, seekData); !errors.Is(err, syscall.ENXIO) {
			t.Errorf("SEEK_DATA past the end: %v, want ENXIO", err)
		}
	})
	t.Run("ftruncate on an open file", func(t *testing.T) {
		f, err := os.Create(filepath.Join(A, "trunc"))
		if err != nil {
			t.Fatal(err)
		}
		f.Write(bytes.Repeat([]byte("z"), 100000))
		if err := f.Truncate(10); err != nil {
			t.Fatal(err)
		}
		if fi, _ := f.Stat(); fi.Size() != 10 {
			t.Errorf("size after ftruncate = %d, want 10", fi.Size())
		}
		f.WriteAt([]byte("x"), 20)
		if err := f.Close(); err != nil {
			t.Fatal(err)
		}
		want := append(bytes.Repeat([]byte("z"), 10), make([]byte, 10)...)
		seeOnB(t, "trunc", append(want, 'x'))
	})
	t.Run("a file being streamed is read, overwritten, fsynced and appended to", func(t *testing.T) {
		// Past 1 MiB a sequential write streams to the store from memory;
		// each of these ends the stream and goes on over what it stored.
		data := make([]byte, 12<<20)
		for i := range data {
			data[i] = byte(i*131 + i>>12)
		}
		want := bytes.Clone(data)
		f, err := os.OpenFile(filepath.Join(A, "streamed"), os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o644)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		write := func(p []byte) {
			t.Helper()
			for len(p) > 0 {
				n := min(len(p), 1<<20)
				if _, err := f.Write(p[:n]); err != nil {
					t.Fatal(err)
				}
				p = p[n:]
			}
		}
		write(data[:5<<20])
		// O_DIRECT: the read reaches the mount, not the page cache
		// that the writes filled.
		d, err := os.OpenFile(filepath.Join(A, "streamed"), os.O_RDONLY|syscall.O_DIRECT, 0)
		if err != nil {
			t.Fatal(err)
		}
		raw := make([]byte, 64<<10+4096)
		off := 4096 - int(uintptr(unsafe.Pointer(&raw[0]))%4096)
		got := raw[off : off+64<<10]
		_, err = d.ReadAt(got, 3<<20)
		d.Close()
		if err != nil || !bytes.Equal(got, data[3<<20:3<<20+64<<10]) {
			t.Fatalf("O_DIRECT read back while streaming: %v, equal %v", err, bytes.Equal(got, data[3<<20:3<<20+64<<10]))
		}
		write(data[5<<20 : 8<<20])
		if _, err := f.WriteAt([]byte("overwritten in the middle"), 2<<20+7); err != nil {
			t.Fatal(err)
		}
		copy(want[2<<20+7:], "overwritten in the middle")
		if err := f.Sync(); err != nil {
			t.Fatal(err)
		}
		write(data[8<<20:])
		if err := f.Close(); err != nil {
			t.Fatal(err)
		}
		seeOnB(t, "streamed", want)
		if got, err := os.ReadFile(filepath.Join(A, "streamed")); err != nil || !bytes.Equal(got, want) {
			t.Errorf("read back through A after close: %d bytes, %v, equal %v", len(got), err, bytes.Equal(got, want))
		}
	})
	t.Run("extended attributes of files, directories and symlinks", func(t *testing.T) {
		f, d, l := filepath.Join(A, "xf"), filepath.Join(A, "xd"), filepath.Join(A, "xl")
		if err := os.WriteFile(f, bytes.Repeat([]byte("x"), 3<<20), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink("xf", l); err != nil {
			t.Fatal(err)
		}
		for _, p := range []string{f, d} {
			if err := syscall.Setxattr(p, "user.reef-test", []byte("v1"), 0); err != nil {
				t.Fatalf("setxattr %s: %v", p, err)
			}
			onB := filepath.Join(B, filepath.Base(p))
			waitFor(t, "xattr of "+p+" on B", 10*time.Second, func() (bool, string) {
				buf := make([]byte, 64)
				n, err := syscall.Getxattr(onB, "user.reef-test", buf)
				return err == nil && string(buf[:n]) == "v1", fmt.Sprint(n, err)
			})
			if err := syscall.Removexattr(p, "user.reef-test"); err != nil {
				t.Fatalf("removexattr %s: %v", p, err)
			}
			if _, err := syscall.Getxattr(p, "user.reef-test", make([]byte, 64)); err != syscall.ENODATA {
				t.Errorf("getxattr after removexattr of %s = %v, want ENODATA", p, err)
			}
		}
		// The health report of a chunked file, as JSON.
		buf := make([]byte, 1<<20)
		n, err := syscall.Getxattr(f, "user.reef.health", buf)
		if err != nil || !bytes.Contains(buf[:n], []byte(`"chunks_total"`)) {
			t.Errorf("user.reef.health of a chunked file: %v, %.200q", err, buf[:max(n, 0)])
		}
		if n, err := unix.Llistxattr(l, make([]byte, 1024)); err != nil || n != 0 {
			t.Errorf("llistxattr of a symlink = %d, %v; want 0, nil", n, err)
		}
	})
	t.Run("rename over an existing file", func(t *testing.T) {
		os.WriteFile(filepath.Join(A, "old"), []byte("old"), 0o644)
		os.WriteFile(filepath.Join(A, "new"), []byte("new"), 0o644)
		if err := os.Rename(filepath.Join(A, "new"), filepath.Join(A, "old")); err != nil {
			t.Fatal(err)
		}
		seeOnB(t, "old", []byte("new"))
		if _, err := os.Stat(filepath.Join(B, "new")); !os.IsNotExist(err) {
			waitFor(t, "new gone on B", 5*time.Second, func() (bool, string) {
				_, err := os.Stat(filepath.Join(B, "new"))
				return os.IsNotExist(err), fmt.Sprint(err)
			})
		}
	})
	t.Run("editor save pattern", func(t *testing.T) {
		target := filepath.Join(A, "doc.txt")
		os.WriteFile(target, []byte("version 1\n"), 0o640)
		tmp := filepath.Join(A, ".doc.txt.swp")
		f, _ := os.Create(tmp)
		f.WriteString("version 2\n")
		if err := f.Sync(); err != nil {
			t.Fatal(err)
		}
		f.Close()
		if err := os.Rename(tmp, target); err != nil {
			t.Fatal(err)
		}
		seeOnB(t, "doc.txt", []byte("version 2\n"))
	})
	t.Run("append", func(t *testing.T) {
		p := filepath.Join(A, "log")
		for i := range 3 {
			f, err := os.OpenFile(p, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
			if err != nil {
				t.Fatal(err)
			}
			fmt.Fprintf(f, "line %d\n", i)
			f.Close()
		}
		seeOnB(t, "log", []byte("line 0\nline 1\nline 2\n"))
	})
	t.Run("sparse file", func(t *testing.T) {
		f, _ := os.Create(filepath.Join(A, "sparse"))
		f.WriteAt([]byte("end"), 3<<20)
		f.Close()
		seeOnB(t, "sparse", append(make([]byte, 3<<20), "end"...))
	})
	t.Run("overwrite in the middle of a large file", func(t *testing.T) {
		p := filepath.Join(A, "large")
		writeRandom(t, p, 20<<20, 9)
		want, _ := os.ReadFile(p)
		f, _ := os.OpenFile(p, os.O_WRONLY, 0)
		f.WriteAt([]byte("MIDDLE"), 10<<20)
		f.Close()
		copy(want[10<<20:], "MIDDLE")
		seeOnB(t, "large", want)
	})
	t.Run("times set on an open file survive its close", func(t *testing.T) {
		// tar and rsync set mtimes (futimens/utimensat) before close;
		// storing the content at close must not reset them.
		past := time.Date(2020, 2, 3, 4, 5, 6, 0, time.UTC)
		name := filepath.Join(A, "timed")
		f, err := os.Create(name)
		if err != nil {
			t.Fatal(err)
		}
		f.Write([]byte("content written before the times are set"))
		if err := os.Chtimes(name, past, past); err != nil {
			t.Fatal(err)
		}
		if err := f.Close(); err != nil {
			t.Fatal(err)
		}
		// A write after the times were set makes the mtime current again.
		later := filepath.Join(A, "timed-then-written")
		g, err := os.Create(later)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.Chtimes(later, past, past); err != nil {
			t.Fatal(err)
		}
		g.Write([]byte("written after"))
		if err := g.Close(); err != nil {
			t.Fatal(err)
		}
		for _, m := range []string{A, B} {
			waitFor(t, "mtime of timed on "+m, 10*time.Second, func() (bool, string) {
				fi, err := os.Stat(filepath.Join(m, "timed"))
				if err != nil {
					return false, err.Error()
				}
				if !fi.ModTime().Equal(past) {
					return false, fmt.Sprintf("mtime %v, want %v", fi.ModTime(), past)
				}
				return true, ""
			})
			waitFor(t, "mtime of timed-then-written on "+m, 10*time.Second, func() (bool, string) {
				fi, err := os.Stat(filepath.Join(m, "timed-then-written"))
				if err != nil {
					return false, err.Error()
				}
				if fi.ModTime().Before(time.Now().Add(-time.Hour)) {
					return false, fmt.Sprintf("mtime %v: the write after utimens did not update it", fi.ModTime())
				}
				return true, ""
			})
		}
		if _, err := exec.LookPath("tar"); err != nil {
			return
		}
		// tar x: the extracted files carry the archive's mtimes.
		srcDir := t.TempDir()
		for i := range 20 {
			p := filepath.Join(srcDir, fmt.Sprintf("f%02d", i))
			os.WriteFile(p, bytes.Repeat([]byte{byte(i)}, 1000*i), 0o640)
			os.Chtimes(p, past.Add(time.Duration(i)*time.Hour), past.Add(time.Duration(i)*time.Hour))
		}
		archive := filepath.Join(t.TempDir(), "t.tar")
		run(t, "tar", "-cf", archive, "-C", srcDir, ".")
		os.Mkdir(filepath.Join(A, "untarred"), 0o755)
		run(t, "tar", "-xf", archive, "-C", filepath.Join(A, "untarred"))
		for i := range 20 {
			want := past.Add(time.Duration(i) * time.Hour)
			rel := fmt.Sprintf("untarred/f%02d", i)
			waitFor(t, "mtime of "+rel+" on B", 10*time.Second, func() (bool, string) {
				fi, err := os.Stat(filepath.Join(B, rel))
				if err != nil {
					return false, err.Error()
				}
				if !fi.ModTime().Equal(want) || fi.Mode().Perm() != 0o640 {
					return false, fmt.Sprintf("mtime %v mode %v, want %v 0640", fi.ModTime(), fi.Mode().Perm(), want)
				}
				return true, ""
			})
		}
	})
	t.Run("readdir of 100k entries", func(t *testing.T) {
		const n = 100000
		dir := filepath.Join(A, "big")
		if err := os.Mkdir(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		// mknod makes regular files without open/close barriers.
		var wg sync.WaitGroup
		errs := make(chan error, 4)
		for w := range 4 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := w; i < n; i += 4 {
					if err := syscall.Mknod(filepath.Join(dir, fmt.Sprintf("entry-%06d", i)), syscall.S_IFREG|0o644, 0); err != nil {
						errs <- err
						return
					}
				}
			}()
		}
		wg.Wait()
		close(errs)
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
		for _, m := range []string{A, B} {
			var names []string
			waitFor(t, "100k entries on "+m, 60*time.Second, func() (bool, string) {
				es, err := os.ReadDir(filepath.Join(m, "big"))
				if err != nil {
					return false, err.Error()
				}
				names = names[:0]
				for _, e := range es {
					names = append(names, e.Name())
				}
				return len(names) == n, fmt.Sprintf("%d entries", len(names))
			})
			sort.Strings(names)
			for i, name := range names {
				if want := fmt.Sprintf("entry-%06d", i); name != want {
					t.Fatalf("%s: entry %d is %q, want %q", m, i, name, want)
				}
			}
		}
		// ls -l (READDIRPLUS: names with attributes) lists every entry.
		out, err := exec.Command("ls", "-l", filepath.Join(B, "big")).Output()
		if err != nil {
			t.Fatalf("ls -l: %v", err)
		}
		if lines := bytes.Count(out, []byte("\n")); lines != n+1 {
			t.Errorf("ls -l printed %d lines, want %d (total + entries)", lines, n+1)
		}
		if !bytes.Contains(out, []byte("-rw-r--r-- 1 ")) {
			t.Errorf("ls -l shows no regular file entry with mode and link count:\n%.300s", out)
		}
	})
	t.Run("mkdir rmdir ENOTEMPTY", func(t *testing.T) {
		os.MkdirAll(filepath.Join(A, "dd", "x"), 0o755)
		err := syscall.Rmdir(filepath.Join(A, "dd"))
		if err != syscall.ENOTEMPTY {
			t.Errorf("rmdir of a non-empty dir = %v, want ENOTEMPTY", err)
		}
	})
	t.Run("fsync then kill -9 of the writing peer", func(t *testing.T) {
		data := bytes.Repeat([]byte("durable!"), 200000) // 1.6 MB: chunks, not inline
		f, err := os.Create(filepath.Join(A, "fsynced"))
		if err != nil {
			t.Fatal(err)
		}
		f.Write(data)
		if err := f.Sync(); err != nil {
			t.Fatalf("fsync: %v", err)
		}
		c.kill9(peers[0]) // the file is still open: only fsync vouches for it
		f.Close()
		exec.Command("fusermount3", "-uz", A).Run()
		seeOnB(t, "fsynced", data)
	})
}
