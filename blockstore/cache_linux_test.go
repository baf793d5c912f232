package blockstore

import (
	"bytes"
	"context"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"
)

// residentBytes is how many bytes of the files matching pattern in dir are
// in the page cache (mincore(2) over a fresh map of each).
func residentBytes(t *testing.T, dir, pattern string) int64 {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(dir, pattern))
	if err != nil || len(files) == 0 {
		t.Fatalf("no %s in %s: %v", pattern, dir, err)
	}
	var n int64
	page := int64(os.Getpagesize())
	for _, name := range files {
		f, err := os.Open(name)
		if err != nil {
			t.Fatal(err)
		}
		fi, err := f.Stat()
		if err != nil || fi.Size() == 0 {
			f.Close()
			continue
		}
		m, err := unix.Mmap(int(f.Fd()), 0, int(fi.Size()), unix.PROT_READ, unix.MAP_SHARED)
		f.Close()
		if err != nil {
			t.Fatal(err)
		}
		vec := make([]byte, (fi.Size()+page-1)/page)
		if _, _, e := unix.Syscall(unix.SYS_MINCORE, uintptr(unsafe.Pointer(&m[0])), uintptr(len(m)), uintptr(unsafe.Pointer(&vec[0]))); e != 0 {
			t.Fatal(e)
		}
		unix.Munmap(m)
		for _, v := range vec {
			if v&1 != 0 {
				n += page
			}
		}
	}
	return n
}

// TestSyncedShardsLeaveCache: once synced, stored shards do not stay in the
// page cache, and reading them does not bring them back for good. A peer is written far more than it is read, and on the
// project's VMs every page of memory the guest touches for the first time
// costs about as much as writing it three times over (the host backs it
// then, and takes back what the guest frees), so a receiving peer whose
// cache grew by each shard spent most of its CPU there (1.2 of 1.5 CPU-s
// per 256 MiB received).
func TestSyncedShardsLeaveCache(t *testing.T) {
	if fs, err := os.MkdirTemp("", "reef-cache"); err == nil {
		var st unix.Statfs_t
		unix.Statfs(fs, &st)
		os.RemoveAll(fs)
		if st.Type == unix.TMPFS_MAGIC {
			t.Skip("temporary directory on tmpfs: no page cache to drop")
		}
	}
	const n, size = 128, 256 << 10
	key := func(i int) []byte { return []byte{byte(i >> 8), byte(i)} }
	value := func(rng *rand.Rand, val []byte) {
		for j := range val {
			val[j] = byte(rng.Uint32())
		}
	}
	// put stores n values, syncs, reads them all back and returns what was
	// resident after the sync and after the reads.
	put := func(t *testing.T) (synced, read int64) {
		dir := t.TempDir()
		s, err := Open(dir, Options{})
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		rng := rand.New(rand.NewPCG(3, 4))
		val := make([]byte, size)
		ctx := context.Background()
		for i := range n {
			value(rng, val)
			if err := s.PutLazy(ctx, key(i), val); err != nil {
				t.Fatal(err)
			}
		}
		if err := s.Sync(ctx); err != nil {
			t.Fatal(err)
		}
		synced = residentBytes(t, dir, "*.vlog")
		rng = rand.New(rand.NewPCG(3, 4))
		for i := range n { // still readable, now from the disk
			value(rng, val)
			got, err := s.Get(ctx, key(i))
			if err != nil || !bytes.Equal(got, val) {
				t.Fatalf("get %d after the drop: %d bytes (want %d), %v", i, len(got), size, err)
			}
		}
		return synced, residentBytes(t, dir, "*.vlog")
	}
	t.Run("kept", func(t *testing.T) {
		keepValueCache = true
		defer func() { keepValueCache = false }()
		synced, read := put(t)
		t.Logf("synced shards kept in the cache: %d of %d KiB resident, %d KiB after reading them", synced>>10, n*size>>10, read>>10)
	})
	synced, read := put(t)
	t.Logf("synced shards dropped from the cache: %d of %d KiB resident, %d KiB after reading them", synced>>10, n*size>>10, read>>10)
	if synced > n*size/8 {
		t.Errorf("%d of %d KiB of synced shards resident in the page cache, want <= 1/8", synced>>10, n*size>>10)
	}
	// Reads go through pread and drop what they read (badger patch 6).
	if read > n*size/8 {
		t.Errorf("%d of %d KiB resident after reading every shard once, want <= 1/8", read>>10, n*size>>10)
	}

	// After a restart every value log file found at open is read around
	// the cache too, unsynced tail or not.
	t.Run("reopened", func(t *testing.T) {
		dir := t.TempDir()
		ctx := context.Background()
		s, err := Open(dir, Options{})
		if err != nil {
			t.Fatal(err)
		}
		rng := rand.New(rand.NewPCG(5, 6))
		val := make([]byte, size)
		for i := range n {
			value(rng, val)
			if err := s.PutLazy(ctx, key(i), val); err != nil {
				t.Fatal(err)
			}
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		// The files written before the restart; the one opened for new
		// writes starts with a few MiB of fresh pages of its own.
		old, err := filepath.Glob(filepath.Join(dir, "*.vlog"))
		if err != nil || len(old) == 0 {
			t.Fatalf("no value log in %s: %v", dir, err)
		}
		if s, err = Open(dir, Options{}); err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		rng = rand.New(rand.NewPCG(5, 6))
		for i := range n {
			value(rng, val)
			got, err := s.Get(ctx, key(i))
			if err != nil || !bytes.Equal(got, val) {
				t.Fatalf("get %d after reopening: %d bytes (want %d), %v", i, len(got), size, err)
			}
		}
		var res int64
		for _, f := range old {
			res += residentBytes(t, dir, filepath.Base(f))
		}
		t.Logf("after reopening and reading every shard: %d of %d KiB resident", res>>10, n*size>>10)
		if res > n*size/8 {
			t.Errorf("%d of %d KiB resident after reopening and reading every shard, want <= 1/8", res>>10, n*size>>10)
		}
	})
}
