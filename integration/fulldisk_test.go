package integration

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// TestFullDisk: one peer's data directory is a small tmpfs that fills up
// while files are written through a mount. The peer keeps running (badger
// used to die of SIGBUS there), `reef status` marks it full, every write
// succeeds on the other peers, and everything reads back through the other
// mount. Once there is room again, rebalance moves the shards the stand-ins
// took back to it and the cluster is fully redundant again.
func TestFullDisk(t *testing.T) {
	if testing.Short() {
		t.Skip("multi-process FUSE test; run without -short")
	}
	var small string
	c, peers, A, B := mountClusterPrepared(t, func(c *cluster) {
		small = filepath.Join(c.dir, "peer3")
		if err := os.Mkdir(small, 0o755); err != nil {
			t.Fatal(err)
		}
		// Room for the stores' reserved memtable logs (48 MiB) and a few
		// MiB of shards: far less than its share of what is written.
		if err := syscall.Mount("tmpfs", small, "tmpfs", 0, "size=72m"); err != nil {
			skipOrFail(t, "mount a tmpfs for peer3's data (needs root): %v", err)
		}
		t.Cleanup(func() { syscall.Unmount(small, syscall.MNT_DETACH) })
	}, "--maint-every", "1s")
	full := peers[2]

	var files []string
	for i := range 6 {
		name := fmt.Sprintf("f%d", i)
		data := randBytes(24<<20, uint64(100+i))
		if err := writeSync(filepath.Join(A, name), data); err != nil {
			t.Fatalf("write %s (24 MiB) while %s's disk fills: %v", name, full.name, err)
		}
		files = append(files, name)
	}
	for i := range 50 {
		if err := writeSync(filepath.Join(A, fmt.Sprintf("small%02d", i)), []byte(fmt.Sprint("small ", i))); err != nil {
			t.Fatalf("small file %d: %v", i, err)
		}
	}
	var st syscall.Statfs_t
	if err := syscall.Statfs(small, &st); err != nil {
		t.Fatal(err)
	}
	t.Logf("%s's tmpfs: %d KiB free", full.name, st.Bavail*uint64(st.Bsize)>>10)
	select {
	case <-full.done:
		t.Fatalf("%s exited on the full disk:\n%s", full.name, c.tail(full))
	default:
	}
	waitFor(t, full.name+" shown full in reef status", 30*time.Second, func() (bool, string) {
		for _, m := range c.status(peers[0]).Members {
			if m.ID == full.name {
				return m.Full && m.State == "alive", fmt.Sprintf("%s: %s, full %v", m.ID, m.State, m.Full)
			}
		}
		return false, "not listed"
	})
	readAll := func(when string) {
		t.Helper()
		for i, name := range files {
			got, err := os.ReadFile(filepath.Join(B, name))
			if err != nil || !bytes.Equal(got, randBytes(24<<20, uint64(100+i))) {
				t.Fatalf("%s: %s through B: %v (or different bytes)", when, name, err)
			}
		}
		for i := range 50 {
			got, err := os.ReadFile(filepath.Join(B, fmt.Sprintf("small%02d", i)))
			if err != nil || string(got) != fmt.Sprint("small ", i) {
				t.Fatalf("%s: small%02d through B: %q, %v", when, i, got, err)
			}
		}
	}
	readAll("disk full")

	// Room again: the shards that went to stand-ins move back, and every
	// chunk has its k+m shards on k+m distinct peers.
	if err := syscall.Mount("tmpfs", small, "tmpfs", syscall.MS_REMOUNT, "size=1g"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "full redundancy after the disk has room", 120*time.Second, func() (bool, string) {
		h := c.health(peers[0])
		return h.allHealthy() && h.MinRedundancy == 2, fmt.Sprintf("%+v", h)
	})
	waitFor(t, full.name+" no longer full", 30*time.Second, func() (bool, string) {
		for _, m := range c.status(peers[0]).Members {
			if m.ID == full.name {
				return !m.Full, fmt.Sprintf("full %v", m.Full)
			}
		}
		return false, "not listed"
	})
	// Two peers other than the mounting ones and the one that was full
	// can go now without a byte lost.
	c.kill9(peers[3])
	c.kill9(peers[4])
	readAll("after the disk had room and two other peers were killed")
}

// writeSync writes data to a new file and fsyncs it.
func writeSync(path string, data []byte) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
