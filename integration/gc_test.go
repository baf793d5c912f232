package integration

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// TestChunkCollection: deleting and overwriting files through a mount gives
// the space back on every peer (--gc-grace 4s here, 1h by default), and
// nothing still in use is taken: files kept, the new version of an
// overwritten file, a `reef put` address, a file written again with the
// bytes of a deleted one while its chunks wait for collection, and the
// unchanged blocks of a big file kept open for writing on one mount while
// the other mount replaces it.
func TestChunkCollection(t *testing.T) {
	if testing.Short() {
		t.Skip("multi-process FUSE test; run without -short")
	}
	c, peers, A, B := mountClusterWith(t, "--gc-grace", "4s", "--trash-retention", "1s", "--maint-every", "1s")
	sumMetric := func(name string) float64 {
		var s float64
		for _, p := range peers {
			s += metric(t, p, name)
		}
		return s
	}
	const mib = 1 << 20
	write := func(path string, size int, seed uint64) {
		t.Helper()
		if err := writeSync(path, randBytes(size, seed)); err != nil {
			t.Fatalf("write %s: %v", path, err)
		}
	}
	check := func(when, path string, size int, seed uint64) {
		t.Helper()
		got, err := os.ReadFile(path)
		if err != nil || !bytes.Equal(got, randBytes(size, seed)) {
			t.Fatalf("%s: %s: %v (or different bytes: %d of %d)", when, path, err, len(got), size)
		}
	}
	candidates := func() float64 { return sumMetric("reef_gc_candidate_chunks") }
	noCandidates := func(what string) {
		t.Helper()
		waitFor(t, what, 60*time.Second, func() (bool, string) {
			n := candidates()
			return n == 0, fmt.Sprintf("%v candidates, %v shards deleted", n, sumMetric("reef_gc_deleted_shards_total"))
		})
	}
	write(filepath.Join(A, "keep"), 6*mib, 1)
	write(filepath.Join(A, "drop"), 8*mib, 2)
	write(filepath.Join(A, "over"), 6*mib, 3)
	src := filepath.Join(t.TempDir(), "put")
	writeRandom(t, src, 4*mib, 4)
	putAddr := c.put(peers[2], src)

	// Deleted and overwritten: drop (8 MiB) and the old over (6 MiB) are
	// about 14 chunks and 2 manifests, 6 shards each.
	if err := os.Remove(filepath.Join(A, "drop")); err != nil {
		t.Fatal(err)
	}
	write(filepath.Join(A, "over"), 6*mib, 30)
	waitFor(t, "shards of the deleted and replaced versions deleted", 90*time.Second, func() (bool, string) {
		n := sumMetric("reef_gc_deleted_shards_total")
		return n >= 80, fmt.Sprintf("%v shards deleted, %v candidates", n, candidates())
	})
	noCandidates("nothing left to collect")

	// Written again with the bytes of a deleted file while that file's
	// chunks are candidates: dedup finds them, and they must stay.
	write(filepath.Join(A, "x"), 6*mib, 6)
	if err := os.Remove(filepath.Join(A, "x")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "x's chunks become candidates", 30*time.Second, func() (bool, string) {
		n := candidates()
		return n > 0, fmt.Sprintf("%v candidates", n)
	})
	write(filepath.Join(B, "y"), 6*mib, 6)
	noCandidates("x's chunks back in use by y")

	// A big file opened for writing on A reads its unchanged blocks from
	// its stored version; B replaces that version; A's handle pins it.
	write(filepath.Join(A, "open"), 12*mib, 5)
	time.Sleep(11 * time.Second) // past store.PinLinger: the upload's own pins are gone
	f, err := os.OpenFile(filepath.Join(A, "open"), os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteAt([]byte("edited on A"), 0); err != nil {
		t.Fatal(err)
	}
	write(filepath.Join(B, "open"), 3*mib, 50)
	waitFor(t, "the replaced version's chunks become candidates", 30*time.Second, func() (bool, string) {
		n := candidates()
		return n > 0, fmt.Sprintf("%v candidates", n)
	})
	time.Sleep(10 * time.Second) // past the grace, twice: the pin keeps them
	if _, err := f.WriteAt([]byte("edited on A again"), 100); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatalf("close of the file kept open on A: %v", err)
	}
	want := randBytes(12*mib, 5)
	copy(want, "edited on A")
	copy(want[100:], "edited on A again")
	waitFor(t, "A's version of open, here or as a conflict copy, through B", 20*time.Second, func() (bool, string) {
		entries, err := os.ReadDir(B)
		if err != nil {
			return false, err.Error()
		}
		var names []string
		for _, e := range entries {
			names = append(names, e.Name())
			if strings.HasPrefix(e.Name(), "open") {
				if got, err := os.ReadFile(filepath.Join(B, e.Name())); err == nil && bytes.Equal(got, want) {
					return true, ""
				}
			}
		}
		return false, strings.Join(names, ", ")
	})
	noCandidates("the old version's chunks in use by A's version")

	// A file unlinked while open on A stays readable there until the last
	// close, after the namespace purged it and the others were collected.
	write(filepath.Join(A, "unlinked"), 6*mib, 7)
	write(filepath.Join(A, "bait"), 6*mib, 8)
	time.Sleep(11 * time.Second) // past store.PinLinger
	held, err := os.Open(filepath.Join(A, "unlinked"))
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	deleted := sumMetric("reef_gc_deleted_shards_total")
	for _, name := range []string{"unlinked", "bait"} {
		if err := os.Remove(filepath.Join(B, name)); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "bait collected", 90*time.Second, func() (bool, string) {
		n := sumMetric("reef_gc_deleted_shards_total")
		return n >= deleted+30, fmt.Sprintf("%v shards deleted, %v before, %v candidates", n, deleted, candidates())
	})
	if got, err := io.ReadAll(held); err != nil || !bytes.Equal(got, randBytes(6*mib, 7)) {
		t.Fatalf("the unlinked file through the descriptor A holds: %v (or different bytes: %d)", err, len(got))
	}
	held.Close()
	noCandidates("the unlinked file collected after its last close")

	for _, m := range []string{A, B} {
		check("after collection", filepath.Join(m, "keep"), 6*mib, 1)
		check("after collection", filepath.Join(m, "over"), 6*mib, 30)
		check("after collection", filepath.Join(m, "y"), 6*mib, 6)
	}
	got, r := c.get(peers[4], putAddr)
	r.ok(t)
	if !sameFile(t, got, src) {
		t.Fatal("reef get of the put address after collection: different bytes")
	}
	if h := c.health(peers[1]); !h.allHealthy() {
		t.Fatalf("health after collection: %+v", h)
	}
	// Operators see it in reef status.
	out := c.reef("status", "--peer", peers[0].listen).ok(t).stdout
	re := regexp.MustCompile(`space on ` + regexp.QuoteMeta(peers[0].name) + `: 0 chunks no file references wait for collection, [1-9][0-9]* shards \(.+\) collected; trash 0 entries kept, [1-9][0-9]* purged`)
	if !re.MatchString(out) {
		t.Errorf("reef status does not show what was collected:\n%s", out)
	}
}
