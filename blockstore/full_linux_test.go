package blockstore_test

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/reefproject/reef/blockstore"
	"github.com/reefproject/reef/blockstore/storetest"
)

const fullEnvDir = "BLOCKSTORE_FULL_DIR"

func fullValue(i int) []byte {
	if i%3 == 0 {
		return storetest.Value(uint64(i), 300) // kept in the LSM tree: memtable log
	}
	return storetest.Value(uint64(i), 256<<10) // in the value log
}

// TestDiskFullChild is the child half of TestDiskFull; it does nothing
// unless started by it. It puts values until the disk is full, and goes on
// for a while after the first error, printing each acknowledged one.
func TestDiskFullChild(t *testing.T) {
	dir := os.Getenv(fullEnvDir)
	if dir == "" {
		t.Skip("helper process for TestDiskFull")
	}
	s, err := blockstore.Open(dir, blockstore.Options{})
	if err != nil {
		fmt.Println("open error", err)
		os.Exit(2)
	}
	out := bufio.NewWriter(os.Stdout)
	failed := 0
	for i := 0; failed < 60; i++ {
		if err := s.Put(context.Background(), storetest.Key(uint64(i), 0), fullValue(i)); err != nil {
			if failed == 0 {
				fmt.Fprintln(out, "error", strings.ReplaceAll(err.Error(), "\n", " "))
			}
			failed++
			continue
		}
		fmt.Fprintln(out, "acked", i)
		out.Flush()
	}
	// Close may not finish while the disk is full (badger retries the
	// flush of its memtable until it succeeds): the parent reopens the
	// store as after a crash.
	closed := make(chan error, 1)
	go func() { closed <- s.Close() }()
	select {
	case err := <-closed:
		fmt.Fprintln(out, "close", err)
	case <-time.After(2 * time.Second):
		fmt.Fprintln(out, "close still waiting")
	}
	out.Flush()
	os.Exit(0)
}

// TestDiskFull: a store whose disk fills up returns errors and keeps
// every write it acknowledged. Badger writes some files through a memory
// map of a sparse file, where a full disk used to kill the process with
// SIGBUS (a peer crashed in a fill test); reef's badger patch 4 reserves
// those blocks first. The store lives on a small tmpfs of its own.
func TestDiskFull(t *testing.T) {
	if testing.Short() {
		t.Skip("short")
	}
	dir := filepath.Join(t.TempDir(), "small")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, "size=40m"); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("mount a tmpfs for the test (needs root): %v", err)
		}
		t.Skipf("cannot mount a tmpfs (needs root): %v", err)
	}
	t.Cleanup(func() { syscall.Unmount(dir, syscall.MNT_DETACH) })

	cmd := exec.Command(os.Args[0], "-test.run=^TestDiskFullChild$", "-test.count=1")
	cmd.Env = append(os.Environ(), fullEnvDir+"="+dir)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	stdout, err := cmd.Output()
	if err != nil {
		t.Fatalf("child: %v (a crash on the full disk?)\n%s\n%s", err, lastLines(stdout, 5), lastLines(stderr.Bytes(), 30))
	}
	var acked []int
	var firstErr string
	for _, line := range strings.Split(string(stdout), "\n") {
		switch {
		case strings.HasPrefix(line, "acked "):
			i, _ := strconv.Atoi(strings.TrimPrefix(line, "acked "))
			acked = append(acked, i)
		case strings.HasPrefix(line, "error "):
			firstErr = line
		}
	}
	if firstErr == "" || len(acked) == 0 {
		t.Fatalf("want some writes acknowledged, then errors; got %d acked, error %q\n%s", len(acked), firstErr, lastLines(stdout, 5))
	}
	if !strings.Contains(firstErr, "no space left") {
		t.Errorf("first error %q does not say the disk is full", firstErr)
	}
	t.Logf("%d values acknowledged; then %s", len(acked), firstErr)

	// With room again, the store opens and holds every acknowledged value.
	if err := syscall.Mount("tmpfs", dir, "tmpfs", syscall.MS_REMOUNT, "size=512m"); err != nil {
		t.Fatal(err)
	}
	s, err := blockstore.Open(dir, blockstore.Options{})
	if err != nil {
		t.Fatalf("reopen after the disk was full: %v", err)
	}
	defer s.Close()
	ctx := context.Background()
	for _, i := range acked {
		got, err := s.Get(ctx, storetest.Key(uint64(i), 0))
		if err != nil {
			t.Fatalf("acknowledged value %d: %v", i, err)
		}
		if !bytes.Equal(got, fullValue(i)) {
			t.Fatalf("acknowledged value %d differs", i)
		}
	}
	if err := s.Put(ctx, storetest.Key(1<<40, 0), fullValue(1)); err != nil {
		t.Errorf("put once there is room again: %v", err)
	}
}

func lastLines(b []byte, n int) string {
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}
