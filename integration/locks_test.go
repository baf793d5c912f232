package integration

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// locksView is the subset of `reef locks --json` the tests read.
type locksView struct {
	Locks []struct {
		Path   string `json:"path"`
		Keeper string `json:"keeper"`
		Holder string `json:"holder"`
		Family string `json:"family"`
		Kind   string `json:"kind"`
		Start  uint64 `json:"start"`
		End    uint64 `json:"end"`
		PID    uint32 `json:"pid"`
	} `json:"locks"`
	Unreachable []string `json:"unreachable"`
}

func (c *cluster) locks(via *peerProc) locksView {
	c.t.Helper()
	r := c.reef("locks", "--json", "--peer", via.listen).ok(c.t)
	var v locksView
	if err := json.Unmarshal([]byte(r.stdout), &v); err != nil {
		c.t.Fatalf("locks --json: %v\n%s", err, r.stdout)
	}
	return v
}

// TestLocks: fcntl record locks and flock taken through one mount exclude
// processes on the other, are dropped when their holder closes the file or
// dies, and survive the loss of the peer that keeps them.
func TestLocks(t *testing.T) {
	if testing.Short() {
		t.Skip("multi-process FUSE test; run without -short")
	}
	flockBin, err := exec.LookPath("flock")
	if err != nil {
		skipOrFail(t, "no flock(1) (util-linux): %v", err)
	}
	c, peers, A, B := mountCluster(t)
	open := func(t *testing.T, path string) *os.File {
		t.Helper()
		f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { f.Close() })
		return f
	}
	onB := func(t *testing.T, name string) *os.File {
		t.Helper()
		waitFor(t, name+" on B", 10*time.Second, func() (bool, string) {
			_, err := os.Stat(filepath.Join(B, name))
			return err == nil, fmt.Sprint(err)
		})
		return open(t, filepath.Join(B, name))
	}
	flock := func(f *os.File, how int) error { return unix.Flock(int(f.Fd()), how) }
	setlk := func(f *os.File, cmd int, typ int16, start, n int64) error {
		return unix.FcntlFlock(f.Fd(), cmd, &unix.Flock_t{Type: typ, Whence: 0, Start: start, Len: n})
	}

	t.Run("flock excludes across mounts", func(t *testing.T) {
		fa := open(t, filepath.Join(A, "flock"))
		if err := flock(fa, unix.LOCK_EX|unix.LOCK_NB); err != nil {
			t.Fatalf("LOCK_EX through A: %v", err)
		}
		fb := onB(t, "flock")
		if err := flock(fb, unix.LOCK_EX|unix.LOCK_NB); !errors.Is(err, unix.EWOULDBLOCK) {
			t.Fatalf("LOCK_EX through B while A holds it: %v, want EWOULDBLOCK", err)
		}
		if err := flock(fb, unix.LOCK_SH|unix.LOCK_NB); !errors.Is(err, unix.EWOULDBLOCK) {
			t.Fatalf("LOCK_SH through B while A holds LOCK_EX: %v, want EWOULDBLOCK", err)
		}
		// The last close of A's open file drops its lock (FUSE RELEASE,
		// which the kernel sends after close returns).
		fa.Close()
		waitFor(t, "B's LOCK_EX after A closed", 10*time.Second, func() (bool, string) {
			err := flock(fb, unix.LOCK_EX|unix.LOCK_NB)
			return err == nil, fmt.Sprint(err)
		})
		fa2 := open(t, filepath.Join(A, "flock"))
		if err := flock(fa2, unix.LOCK_SH|unix.LOCK_NB); !errors.Is(err, unix.EWOULDBLOCK) {
			t.Fatalf("LOCK_SH through A while B holds LOCK_EX: %v, want EWOULDBLOCK", err)
		}
		if err := flock(fb, unix.LOCK_UN); err != nil {
			t.Fatal(err)
		}
		if err := flock(fa2, unix.LOCK_SH|unix.LOCK_NB); err != nil {
			t.Fatalf("LOCK_SH through A after B's LOCK_UN: %v", err)
		}
		if err := flock(fb, unix.LOCK_SH|unix.LOCK_NB); err != nil {
			t.Fatalf("a second LOCK_SH through B: %v", err)
		}
	})

	t.Run("fcntl byte ranges across mounts", func(t *testing.T) {
		fa := open(t, filepath.Join(A, "ranges"))
		fa.WriteString("0123456789abcdefghij")
		if err := setlk(fa, unix.F_SETLK, unix.F_WRLCK, 0, 10); err != nil {
			t.Fatalf("F_WRLCK 0-9 through A: %v", err)
		}
		fb := onB(t, "ranges")
		if err := setlk(fb, unix.F_SETLK, unix.F_RDLCK, 9, 1); !errors.Is(err, unix.EAGAIN) && !errors.Is(err, unix.EACCES) {
			t.Fatalf("F_RDLCK 9 through B over A's write lock: %v, want EAGAIN", err)
		}
		if err := setlk(fb, unix.F_SETLK, unix.F_WRLCK, 10, 10); err != nil {
			t.Fatalf("F_WRLCK 10-19 through B, next to A's range: %v", err)
		}
		q := unix.Flock_t{Type: unix.F_WRLCK, Start: 0, Len: 0}
		if err := unix.FcntlFlock(fb.Fd(), unix.F_GETLK, &q); err != nil {
			t.Fatal(err)
		}
		if q.Type != unix.F_WRLCK || q.Start != 0 || q.Len != 10 {
			t.Fatalf("F_GETLK through B: %+v, want A's write lock on 0-9", q)
		}
		// A blocking F_SETLKW through B waits for A's unlock.
		got := make(chan error, 1)
		go func() { got <- setlk(fb, unix.F_SETLKW, unix.F_WRLCK, 5, 1) }()
		select {
		case err := <-got:
			t.Fatalf("F_SETLKW through B returned (%v) while A holds the range", err)
		case <-time.After(time.Second):
		}
		if err := setlk(fa, unix.F_SETLK, unix.F_UNLCK, 0, 10); err != nil {
			t.Fatal(err)
		}
		select {
		case err := <-got:
			if err != nil {
				t.Fatalf("F_SETLKW through B: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("F_SETLKW through B still waiting 10 s after A's unlock")
		}
		// A close through B drops every POSIX lock this process took
		// through B (fcntl semantics: any descriptor of the file).
		fb2 := open(t, filepath.Join(B, "ranges"))
		fb2.Close()
		waitFor(t, "A's lock after B's close", 10*time.Second, func() (bool, string) {
			err := setlk(fa, unix.F_SETLK, unix.F_WRLCK, 0, 0)
			return err == nil, fmt.Sprint(err)
		})
	})

	t.Run("a file kept open reads the other mount's newer version", func(t *testing.T) {
		// B writes through a descriptor it keeps open (its mount then
		// holds a copy of the file), A writes a new version and closes: B
		// must read A's version, and B's next write must start from it
		// rather than overwrite it with B's old copy.
		os.WriteFile(filepath.Join(A, "kept-open"), []byte("version-1"), 0o644)
		fb := onB(t, "kept-open")
		if _, err := fb.WriteAt([]byte("B"), 0); err != nil {
			t.Fatal(err)
		}
		if err := fb.Sync(); err != nil {
			t.Fatal(err)
		}
		waitFor(t, "B's write on A", 10*time.Second, func() (bool, string) {
			b, err := os.ReadFile(filepath.Join(A, "kept-open"))
			return string(b) == "Bersion-1", fmt.Sprintf("%q %v", b, err)
		})
		if err := os.WriteFile(filepath.Join(A, "kept-open"), []byte("version-2, longer"), 0o644); err != nil {
			t.Fatal(err)
		}
		waitFor(t, "A's version through B's open descriptor", 2*time.Second, func() (bool, string) {
			buf := make([]byte, 64)
			n, _ := fb.ReadAt(buf, 0)
			return string(buf[:n]) == "version-2, longer", fmt.Sprintf("%q", buf[:n])
		})
		if _, err := fb.WriteAt([]byte("V"), 0); err != nil {
			t.Fatal(err)
		}
		if err := fb.Close(); err != nil {
			t.Fatal(err)
		}
		waitFor(t, "B's write over A's version", 10*time.Second, func() (bool, string) {
			b, err := os.ReadFile(filepath.Join(A, "kept-open"))
			return string(b) == "Version-2, longer", fmt.Sprintf("%q %v", b, err)
		})
		if names, _ := filepath.Glob(filepath.Join(A, "kept-open (conflict*")); len(names) > 0 {
			t.Errorf("conflict copies: %v (B wrote over a stale copy)", names)
		}
	})

	t.Run("a counter incremented under the lock from both mounts", func(t *testing.T) {
		// Each side takes the lock, reads the counter through a descriptor
		// it keeps open, writes it plus one, and unlocks: the next holder,
		// on either mount, must read what the previous one wrote (its
		// writes are stored and the reader's caches dropped at each hand
		// over), so no increment is lost.
		const each = 100
		os.WriteFile(filepath.Join(A, "counter"), []byte("0\n"), 0o644)
		fb := onB(t, "counter")
		fa := open(t, filepath.Join(A, "counter"))
		errs := make(chan error, 2)
		for _, f := range []*os.File{fa, fb} {
			go func() {
				errs <- func() error {
					buf := make([]byte, 32)
					for range each {
						if err := flock(f, unix.LOCK_EX); err != nil {
							return err
						}
						n, err := f.ReadAt(buf, 0)
						if err != nil && n == 0 {
							return err
						}
						var v int
						fmt.Sscan(string(buf[:n]), &v)
						if _, err := f.WriteAt([]byte(fmt.Sprintf("%-20d\n", v+1)), 0); err != nil {
							return err
						}
						if err := flock(f, unix.LOCK_UN); err != nil {
							return err
						}
					}
					return nil
				}()
			}()
		}
		for range 2 {
			if err := <-errs; err != nil {
				t.Fatal(err)
			}
		}
		for _, m := range []string{A, B} {
			waitFor(t, "the counter through "+m, 10*time.Second, func() (bool, string) {
				b, err := os.ReadFile(filepath.Join(m, "counter"))
				var v int
				fmt.Sscan(string(b), &v)
				return err == nil && v == 2*each, fmt.Sprintf("%q, %v: want %d", b, err, 2*each)
			})
		}
		if names, _ := filepath.Glob(filepath.Join(A, "counter (conflict*")); len(names) > 0 {
			t.Errorf("conflict copies of the counter: %v", names)
		}
	})

	t.Run("a lock dies with its process, and an interrupted wait leaves none", func(t *testing.T) {
		path := filepath.Join(A, "holder")
		os.WriteFile(path, []byte("x"), 0o644)
		// -o: the lock is flock(1)'s own, not inherited by sleep.
		holder := exec.Command(flockBin, "-o", "-x", path, "sleep", "30")
		if err := holder.Start(); err != nil {
			t.Fatal(err)
		}
		defer holder.Process.Kill()
		fb := onB(t, "holder")
		waitFor(t, "the holder's lock", 10*time.Second, func() (bool, string) {
			err := flock(fb, unix.LOCK_EX|unix.LOCK_NB)
			if err == nil {
				flock(fb, unix.LOCK_UN)
				return false, "B got the lock: the holder has not taken it yet"
			}
			return errors.Is(err, unix.EWOULDBLOCK), fmt.Sprint(err)
		})
		v := c.locks(peers[1])
		found := false
		for _, l := range v.Locks {
			if l.Path == "/holder" && l.Family == "flock" && l.Kind == "write" && l.Holder == peers[0].name && l.PID == uint32(holder.Process.Pid) {
				found = true
			}
		}
		if !found {
			t.Errorf("reef locks does not show the holder's flock (pid %d): %+v", holder.Process.Pid, v)
		}
		// flock -w 1 through B: the wait ends with SIGALRM after a second.
		t0 := time.Now()
		out, err := exec.Command(flockBin, "-w", "1", filepath.Join(B, "holder"), "true").CombinedOutput()
		if err == nil {
			t.Fatalf("flock -w 1 through B got the lock the holder has: %s", out)
		}
		if took := time.Since(t0); took > 8*time.Second {
			t.Errorf("flock -w 1 took %v: the interrupt did not end the wait", took)
		}
		holder.Process.Signal(syscall.SIGKILL)
		holder.Wait()
		waitFor(t, "the lock after its holder was killed", 10*time.Second, func() (bool, string) {
			err := flock(fb, unix.LOCK_EX|unix.LOCK_NB)
			return err == nil, fmt.Sprint(err)
		})
		flock(fb, unix.LOCK_UN)
	})

	t.Run("the keeper is killed: the lock holds on the next keeper", func(t *testing.T) {
		// A file whose locks a peer without a mount keeps.
		var name, keeper string
		var fa *os.File
		for i := 0; keeper == ""; i++ {
			if i == 30 {
				t.Fatal("no file of 30 kept by a peer without a mount")
			}
			name = fmt.Sprintf("kept-%d", i)
			fa = open(t, filepath.Join(A, name))
			if err := flock(fa, unix.LOCK_EX|unix.LOCK_NB); err != nil {
				t.Fatal(err)
			}
			for _, l := range c.locks(peers[0]).Locks {
				if l.Path == "/"+name && l.Keeper != peers[0].name && l.Keeper != peers[1].name {
					keeper = l.Keeper
				}
			}
			if keeper == "" {
				fa.Close()
			}
		}
		var victim *peerProc
		for _, p := range peers {
			if p.name == keeper {
				victim = p
			}
		}
		fb := onB(t, name)
		c.kill9(victim)
		// Through the failover, B never gets the lock A holds: each
		// try answers EWOULDBLOCK, or ENOLCK while no keeper answers.
		deadline := time.Now().Add(20 * time.Second)
		moved := false
		for time.Now().Before(deadline) && !moved {
			err := flock(fb, unix.LOCK_EX|unix.LOCK_NB)
			if err == nil {
				t.Fatalf("B got the lock A holds after %s (its keeper) was killed", keeper)
			}
			if !errors.Is(err, unix.EWOULDBLOCK) && !errors.Is(err, unix.ENOLCK) {
				t.Fatalf("flock through B during the failover: %v", err)
			}
			for _, l := range c.locks(peers[1]).Locks {
				if l.Path == "/"+name && l.Keeper != keeper && l.Holder == peers[0].name {
					moved = errors.Is(err, unix.EWOULDBLOCK)
				}
			}
			time.Sleep(200 * time.Millisecond)
		}
		if !moved {
			t.Fatalf("the lock did not move to another keeper within 20 s of killing %s: %+v", keeper, c.locks(peers[1]))
		}
		if err := flock(fb, unix.LOCK_EX|unix.LOCK_NB); !errors.Is(err, unix.EWOULDBLOCK) {
			t.Fatalf("B after the failover: %v, want EWOULDBLOCK", err)
		}
		if err := flock(fa, unix.LOCK_UN); err != nil {
			t.Fatal(err)
		}
		if err := flock(fb, unix.LOCK_EX|unix.LOCK_NB); err != nil {
			t.Fatalf("B after A's unlock on the new keeper: %v", err)
		}
		if v := c.locks(peers[0]); len(v.Unreachable) != 0 || !strings.Contains(fmt.Sprint(v.Locks), peers[1].name) {
			t.Errorf("reef locks after the failover: %+v", v)
		}
	})
}
