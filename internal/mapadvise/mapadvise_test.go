package mapadvise

import (
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"
)

func TestLogMapsAndAdvice(t *testing.T) {
	maps := []byte(`55d0c0a00000-55d0c0b00000 r-xp 00000000 fd:01 100 /usr/bin/reef
7f0000000000-7f0010000000 rw-s 00000000 fd:01 200 /data/shards/000001.vlog
7f0010000000-7f0020000000 rw-s 00000000 fd:01 201 /data/shards/000002.vlog
7f0020000000-7f0022000000 rw-s 00000000 fd:01 202 /data/shards/00003.mem
7f0022000000-7f0022100000 r--s 00000000 fd:01 203 /data/shards/000004.sst
7f0030000000-7f0031000000 rw-s 00000000 fd:01 204 /data/shards/sub/000009.vlog
7f0040000000-7f0041000000 rw-s 00000000 fd:01 205 /data/shards2/000009.vlog
7f0050000000-7f0051000000 rw-p 00000000 00:00 0
bad line
zz-yy rw-s 00000000 fd:01 206 /data/shards/000003.vlog
`)
	ms := logMaps(maps, "/data/shards/")
	want := []struct {
		path   string
		random bool
	}{
		{"/data/shards/000001.vlog", false},
		{"/data/shards/000002.vlog", false}, // appended with pwrite: reads only
		{"/data/shards/00003.mem", true},
	}
	if len(ms) != len(want) {
		t.Fatalf("got %d maps %+v, want %d", len(ms), ms, len(want))
	}
	adv := advice(ms)
	for i, w := range want {
		if ms[i].path != w.path || adv[i] != w.random {
			t.Errorf("map %d: %s random=%v, want %s random=%v", i, ms[i].path, adv[i], w.path, w.random)
		}
	}
	if ms[1].start != 0x7f0010000000 || ms[1].end != 0x7f0020000000 {
		t.Errorf("map 1 range %x-%x", ms[1].start, ms[1].end)
	}
}

// TestApply maps a real file named like a badger log and advises it.
func TestApply(t *testing.T) {
	if !supported {
		t.Skip("madvise is only used on Linux")
	}
	dir := t.TempDir()
	f, err := os.Create(filepath.Join(dir, "000001.vlog"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := f.Truncate(1 << 20); err != nil {
		t.Fatal(err)
	}
	b, err := syscall.Mmap(int(f.Fd()), 0, 1<<20, syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_SHARED)
	if err != nil {
		t.Fatal(err)
	}
	defer syscall.Munmap(b)
	maps, err := os.ReadFile("/proc/self/maps")
	if err != nil {
		t.Fatal(err)
	}
	if got := logMaps(maps, dir); len(got) != 1 {
		t.Fatalf("found %d maps of %s, want 1", len(got), dir)
	}
	if err := Apply(dir); err != nil {
		t.Fatalf("Apply: %v", err)
	}
	// The periodic pass advises a map once, not on every pass.
	calls := 0
	adviseFn = func(start, length uintptr, random bool) error { calls++; return madvise(start, length, random) }
	defer func() { adviseFn = madvise }()
	seen := map[mapping]bool{}
	for range 3 {
		if err := apply(dir, seen); err != nil {
			t.Fatal(err)
		}
	}
	if calls != 1 {
		t.Errorf("three passes over one unchanged map made %d madvise calls, want 1", calls)
	}
}

// TestWatchNewFile checks that Watch advises the map of a log file created
// after it started within a few intervals (the directory changed).
func TestWatchNewFile(t *testing.T) {
	if !supported {
		t.Skip("madvise is only used on Linux")
	}
	dir := t.TempDir()
	var mu sync.Mutex
	advised := 0
	adviseFn = func(start, length uintptr, random bool) error {
		mu.Lock()
		advised++
		mu.Unlock()
		return madvise(start, length, random)
	}
	defer func() { adviseFn = madvise }()
	stop := make(chan struct{})
	defer close(stop)
	if err := Watch(dir, 10*time.Millisecond, stop); err != nil {
		t.Fatal(err)
	}
	// Mapped elsewhere, then renamed into dir: the map appears under dir
	// at the moment dir changes (as a new badger log does, give or take
	// the microseconds between its creation and its map).
	other := filepath.Join(t.TempDir(), "000001.mem")
	f, err := os.Create(other)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := f.Truncate(1 << 20); err != nil {
		t.Fatal(err)
	}
	b, err := syscall.Mmap(int(f.Fd()), 0, 1<<20, syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_SHARED)
	if err != nil {
		t.Fatal(err)
	}
	defer syscall.Munmap(b)
	time.Sleep(50 * time.Millisecond) // a few idle passes first
	if err := os.Rename(other, filepath.Join(dir, "000001.mem")); err != nil {
		t.Fatal(err)
	}
	// Well within fullEvery: the directory's change must trigger it.
	for i := 0; i < 100; i++ {
		mu.Lock()
		n := advised
		mu.Unlock()
		if n > 0 {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatal("the map of a file created after Watch started was not advised within 1 s")
}
