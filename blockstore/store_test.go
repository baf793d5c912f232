package blockstore_test

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/reefproject/reef/blockstore"
	"github.com/reefproject/reef/blockstore/storetest"
)

func testLogger(t *testing.T) *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	}
	return nil
}

func open(t *testing.T, dir string) *blockstore.Store {
	t.Helper()
	s, err := blockstore.Open(dir, blockstore.Options{Logger: testLogger(t)})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	return s
}

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) storetest.Interface {
		s := open(t, t.TempDir())
		t.Cleanup(func() { _ = s.Close() })
		return s
	})
}

func wantStats(t *testing.T, s *blockstore.Store, count, size int64) {
	t.Helper()
	if got := s.Stats(); got.Count != count || got.Bytes != size {
		t.Fatalf("Stats() = %+v, want {Count:%d Bytes:%d}", got, count, size)
	}
}

func TestStatsAfterReopen(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	s := open(t, dir)
	var count, size int64
	for i := range 40 {
		n := []int{0, 10, 1023, 1024, 64 << 10, 300 << 10}[i%6]
		if err := s.Put(ctx, storetest.Key(uint64(i), 0), storetest.Value(uint64(i), n)); err != nil {
			t.Fatal(err)
		}
		count++
		size += int64(n)
	}
	// Overwrite some, delete some.
	for i := range 5 {
		old := []int{0, 10, 1023, 1024, 64 << 10, 300 << 10}[i%6]
		if err := s.Put(ctx, storetest.Key(uint64(i), 0), storetest.Value(99, 777)); err != nil {
			t.Fatal(err)
		}
		size += 777 - int64(old)
	}
	for i := 30; i < 40; i++ {
		n := []int{0, 10, 1023, 1024, 64 << 10, 300 << 10}[i%6]
		if err := s.Delete(ctx, storetest.Key(uint64(i), 0)); err != nil {
			t.Fatal(err)
		}
		count--
		size -= int64(n)
	}
	wantStats(t, s, count, size)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	for round := range 2 {
		t.Run(fmt.Sprintf("reopen %d", round), func(t *testing.T) {
			s := open(t, dir)
			defer s.Close()
			wantStats(t, s, count, size)
			for i := 5; i < 30; i++ {
				n := []int{0, 10, 1023, 1024, 64 << 10, 300 << 10}[i%6]
				got, err := s.Get(ctx, storetest.Key(uint64(i), 0))
				if err != nil || !bytes.Equal(got, storetest.Value(uint64(i), n)) {
					t.Fatalf("Get %d: %d bytes, %v", i, len(got), err)
				}
			}
		})
	}
	t.Run("read-only", func(t *testing.T) {
		s, err := blockstore.Open(dir, blockstore.Options{ReadOnly: true})
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		wantStats(t, s, count, size)
		if _, err := s.Get(ctx, storetest.Key(7, 0)); err != nil {
			t.Fatal(err)
		}
		if err := s.Put(ctx, []byte("x"), []byte("y")); err == nil {
			t.Fatal("Put on read-only store succeeded")
		}
	})
}

func TestLoggerAdapter(t *testing.T) {
	var buf bytes.Buffer
	var mu = make(chan struct{}, 1)
	mu <- struct{}{}
	h := slog.NewTextHandler(lockedWriter{&buf, mu}, &slog.HandlerOptions{Level: slog.LevelDebug})
	s, err := blockstore.Open(t.TempDir(), blockstore.Options{Logger: slog.New(h)})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	<-mu
	out := buf.String()
	if !strings.Contains(out, "component=badger") {
		t.Fatalf("no badger log lines reached the logger:\n%s", out)
	}
}

type lockedWriter struct {
	w  io.Writer
	mu chan struct{}
}

func (l lockedWriter) Write(p []byte) (int, error) {
	<-l.mu
	defer func() { l.mu <- struct{}{} }()
	return l.w.Write(p)
}

// flipInVlogs finds needle in the directory's .vlog files and inverts count
// bytes in the middle of it. It reports the file it modified.
func flipInVlogs(t *testing.T, dir string, needle []byte, count int) string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(dir, "*.vlog"))
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		i := bytes.Index(data, needle)
		if i < 0 {
			continue
		}
		fh, err := os.OpenFile(f, os.O_RDWR, 0)
		if err != nil {
			t.Fatal(err)
		}
		mid := i + len(needle)/2
		patch := make([]byte, count)
		for j := range patch {
			patch[j] = data[mid+j] ^ 0xff
		}
		if _, err := fh.WriteAt(patch, int64(mid)); err != nil {
			t.Fatal(err)
		}
		if err := fh.Close(); err != nil {
			t.Fatal(err)
		}
		return filepath.Base(f)
	}
	t.Fatalf("value not found in any of %v", files)
	return ""
}

func TestCorruption(t *testing.T) {
	ctx := context.Background()
	victim := storetest.Key(1, 1)
	victimVal := storetest.Value(1, 256<<10)
	other := storetest.Key(2, 2)
	otherVal := storetest.Value(2, 256<<10)
	cases := []struct {
		name string
		// older: write the victim, close, reopen and write other data so the
		// victim's value-log file is no longer the newest one.
		older bool
		flip  int
	}{
		{"newest vlog one byte", false, 1},
		{"newest vlog 100 bytes", false, 100},
		{"older vlog one byte", true, 1},
		{"older vlog 4KiB", true, 4096},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			s := open(t, dir)
			if err := s.Put(ctx, victim, victimVal); err != nil {
				t.Fatal(err)
			}
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			if c.older {
				s = open(t, dir)
				if err := s.Put(ctx, other, otherVal); err != nil {
					t.Fatal(err)
				}
				if err := s.Close(); err != nil {
					t.Fatal(err)
				}
			}
			file := flipInVlogs(t, dir, victimVal, c.flip)
			t.Logf("corrupted %s", file)

			s = open(t, dir)
			defer func() {
				if err := s.Close(); err != nil {
					t.Errorf("Close: %v", err)
				}
			}()
			for range 2 {
				got, err := s.Get(ctx, victim)
				if !errors.Is(err, blockstore.ErrCorrupt) {
					t.Fatalf("Get corrupted value: %d bytes, err %v; want ErrCorrupt", len(got), err)
				}
				if got != nil {
					t.Fatalf("Get returned data with ErrCorrupt")
				}
				t.Logf("Get: %v", err)
			}
			if ok, err := s.Has(ctx, victim); err != nil || !ok {
				t.Fatalf("Has = %v, %v", ok, err)
			}
			if c.older {
				got, err := s.Get(ctx, other)
				if err != nil || !bytes.Equal(got, otherVal) {
					t.Fatalf("uncorrupted value: %d bytes, %v", len(got), err)
				}
			}
			// Repair: putting the correct content again must rewrite it
			// (not be skipped as "identical").
			if err := s.Put(ctx, victim, victimVal); err != nil {
				t.Fatal(err)
			}
			got, err := s.Get(ctx, victim)
			if err != nil || !bytes.Equal(got, victimVal) {
				t.Fatalf("after repair: %d bytes, %v", len(got), err)
			}
			n := int64(1)
			if c.older {
				n = 2
			}
			wantStats(t, s, n, n*256<<10)
		})
	}
}

const (
	crashEnvDir  = "BLOCKSTORE_CRASH_DIR"
	crashEnvLazy = "BLOCKSTORE_CRASH_LAZY" // the child uses PutLazy
	crashValues  = 2000
)

func crashValue(i int) []byte { return storetest.Value(uint64(i), 64<<10+i%5000) }

// TestCrashChild is the child half of TestCrashDurability; it does nothing
// unless started by it.
func TestCrashChild(t *testing.T) {
	dir := os.Getenv(crashEnvDir)
	if dir == "" {
		t.Skip("helper process for TestCrashDurability")
	}
	s, err := blockstore.Open(dir, blockstore.Options{})
	if err != nil {
		fmt.Println("open error", err)
		os.Exit(2)
	}
	out := bufio.NewWriter(os.Stdout)
	put := s.Put
	if os.Getenv(crashEnvLazy) != "" {
		put = s.PutLazy
	}
	for i := range crashValues {
		if err := put(context.Background(), storetest.Key(uint64(i), 0), crashValue(i)); err != nil {
			fmt.Fprintln(out, "put error", err)
			out.Flush()
			os.Exit(2)
		}
		fmt.Fprintln(out, "acked", i)
		out.Flush()
	}
	fmt.Fprintln(out, "done")
	out.Flush()
	time.Sleep(time.Hour) // wait to be killed; never Close
}

func TestCrashDurability(t *testing.T) {
	if testing.Short() {
		t.Skip("short")
	}
	// PutLazy's writes are not synced when it returns, but the page cache
	// holds them: a killed process loses none of them either.
	for round, tc := range []struct {
		killAfter int
		lazy      bool
	}{{50, false}, {400, false}, {50, true}, {400, true}} {
		killAfter := tc.killAfter
		t.Run(fmt.Sprintf("kill after %d acks, lazy %v", killAfter, tc.lazy), func(t *testing.T) {
			dir := t.TempDir()
			cmd := exec.Command(os.Args[0], "-test.run=^TestCrashChild$", "-test.count=1")
			cmd.Env = append(os.Environ(), crashEnvDir+"="+dir)
			if tc.lazy {
				cmd.Env = append(cmd.Env, crashEnvLazy+"=1")
			}
			stdout, err := cmd.StdoutPipe()
			if err != nil {
				t.Fatal(err)
			}
			cmd.Stderr = os.Stderr
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			acked := -1
			sc := bufio.NewScanner(stdout)
			for sc.Scan() {
				line := sc.Text()
				if n, ok := strings.CutPrefix(line, "acked "); ok {
					acked, _ = strconv.Atoi(n)
					if acked+1 >= killAfter {
						// Kill mid-stream; more Puts are in flight.
						if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
							t.Fatal(err)
						}
						break
					}
				} else if strings.Contains(line, "error") {
					t.Fatalf("child: %s", line)
				}
			}
			// Drain anything printed before the kill landed: those were acked too.
			for sc.Scan() {
				if n, ok := strings.CutPrefix(sc.Text(), "acked "); ok {
					acked, _ = strconv.Atoi(n)
				}
			}
			_ = cmd.Wait()
			if acked < 0 {
				t.Fatal("child acknowledged nothing")
			}
			t.Logf("round %d: child killed after %d acks", round, acked+1)

			s := open(t, dir)
			defer s.Close()
			ctx := context.Background()
			for i := 0; i <= acked; i++ {
				got, err := s.Get(ctx, storetest.Key(uint64(i), 0))
				if err != nil {
					t.Fatalf("acked value %d: %v", i, err)
				}
				if !bytes.Equal(got, crashValue(i)) {
					t.Fatalf("acked value %d: wrong content", i)
				}
			}
			// Unacked values may or may not be there but must be intact.
			var extra int
			for i := acked + 1; i < crashValues; i++ {
				got, err := s.Get(ctx, storetest.Key(uint64(i), 0))
				if errors.Is(err, blockstore.ErrNotFound) {
					continue
				}
				if err != nil || !bytes.Equal(got, crashValue(i)) {
					t.Fatalf("unacked value %d present but bad: %v", i, err)
				}
				extra++
			}
			if st := s.Stats(); st.Count != int64(acked+1+extra) {
				t.Fatalf("Stats().Count = %d, want %d", st.Count, acked+1+extra)
			}
			t.Logf("all %d acked values intact, %d unacked values also present", acked+1, extra)
		})
	}
}

// TestSyncShared: concurrent Puts share syncs, PutLazy's writes are synced
// by the background loop within a few SyncEvery, and Sync covers them at
// once.
func TestSyncShared(t *testing.T) {
	ctx := context.Background()
	s := open(t, t.TempDir())
	defer s.Close()
	syncs := func() uint64 { return blockstore.SyncCount(s) }

	before := syncs()
	var wg sync.WaitGroup
	const writers, each = 16, 20
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				if err := s.Put(ctx, storetest.Key(uint64(w*each+i), 0), storetest.Value(uint64(i), 4<<10)); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	if n := syncs() - before; n == 0 || n >= writers*each {
		t.Errorf("%d durable Puts from %d writers took %d syncs; want at least one and fewer than one each", writers*each, writers, n)
	}

	for i := range 50 {
		if err := s.PutLazy(ctx, storetest.Key(uint64(10000+i), 0), storetest.Value(uint64(i), 4<<10)); err != nil {
			t.Fatal(err)
		}
	}
	if blockstore.Unsynced(s) == 0 {
		t.Fatal("PutLazy synced before returning")
	}
	deadline := time.Now().Add(20 * blockstore.DefaultSyncEvery)
	for blockstore.Unsynced(s) != 0 && time.Now().Before(deadline) {
		time.Sleep(blockstore.DefaultSyncEvery / 4)
	}
	if n := blockstore.Unsynced(s); n != 0 {
		t.Fatalf("%d lazy writes still unsynced after %v", n, 20*blockstore.DefaultSyncEvery)
	}

	if err := s.PutLazy(ctx, storetest.Key(20000, 0), []byte("x")); err != nil {
		t.Fatal(err)
	}
	if err := s.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	if n := blockstore.Unsynced(s); n != 0 {
		t.Fatalf("Sync returned with %d writes unsynced", n)
	}
}

func TestGetTo(t *testing.T) {
	ctx := context.Background()
	s := open(t, t.TempDir())
	defer s.Close()
	val := bytes.Repeat([]byte("shard"), 1000) // in the value log
	if err := s.Put(ctx, []byte("k"), val); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name    string
		dst     []byte
		inPlace bool
	}{
		{"nil", nil, false},
		{"too small", make([]byte, 10, len(val)-1), false},
		{"fits", make([]byte, 0, len(val)), true},
		{"larger, old bytes", bytes.Repeat([]byte{0xff}, 2*len(val)), true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			asked := -1
			got, err := s.GetTo(ctx, []byte("k"), func(n int) []byte { asked = n; return tc.dst })
			if err != nil || !bytes.Equal(got, val) {
				t.Fatalf("GetTo = %d bytes, %v; want the %d bytes stored", len(got), err, len(val))
			}
			if inPlace := cap(tc.dst) > 0 && &got[0] == &tc.dst[:1][0]; inPlace != tc.inPlace {
				t.Errorf("result in dst's memory: %v, want %v", inPlace, tc.inPlace)
			}
			if asked != len(val) {
				t.Errorf("buf was asked for %d bytes, want %d", asked, len(val))
			}
		})
	}
	if _, err := s.GetTo(ctx, []byte("missing"), func(int) []byte { return nil }); !errors.Is(err, blockstore.ErrNotFound) {
		t.Errorf("GetTo(missing) = %v, want ErrNotFound", err)
	}
}
