package integration

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// metric returns the value of the unlabelled (but for peer) metric name in
// p's /metrics, -1 if it is not there.
func metric(t *testing.T, p *peerProc, name string) float64 {
	t.Helper()
	for line := range strings.Lines(httpGet(t, "http://"+p.listen+"/metrics")) {
		if strings.HasPrefix(line, name+"{") || strings.HasPrefix(line, name+" ") {
			f := strings.Fields(line)
			v, err := strconv.ParseFloat(f[len(f)-1], 64)
			if err != nil {
				t.Fatalf("%s: %q: %v", p.name, line, err)
			}
			return v
		}
	}
	return -1
}

// TestTrashPurge: deleted entries leave every peer's namespace once no
// peer can need them (--trash-retention 2s here, 1h by default), so a
// volume that keeps deleting does not grow forever. What is left works:
// a hard link of a deleted name keeps its file, deleted names can be used
// again, and the purge survives a restart (it is checkpointed).
func TestTrashPurge(t *testing.T) {
	if testing.Short() {
		t.Skip("multi-process FUSE test; run without -short")
	}
	c, peers, A, B := mountClusterWith(t, "--trash-retention", "2s")
	dir := filepath.Join(A, "tree")
	for d := range 4 {
		sub := filepath.Join(dir, fmt.Sprint("d", d))
		if err := os.MkdirAll(sub, 0o755); err != nil {
			t.Fatal(err)
		}
		for i := range 50 {
			if err := os.WriteFile(filepath.Join(sub, fmt.Sprint("f", i)), bytes.Repeat([]byte{byte(i)}, 100+i), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	keep := []byte("kept through a hard link")
	if err := os.WriteFile(filepath.Join(dir, "d0", "linked"), keep, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Link(filepath.Join(dir, "d0", "linked"), filepath.Join(A, "link")); err != nil {
		t.Fatal(err)
	}
	big := randBytes(3<<20, 7) // chunked, not inline
	if err := os.WriteFile(filepath.Join(dir, "big"), big, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	// 4 dirs + 200 files + linked + big + tree itself.
	const deleted = 4 + 200 + 1 + 1 + 1
	waitFor(t, "every peer purges the deleted entries", 90*time.Second, func() (bool, string) {
		var s []string
		done := true
		for _, p := range peers {
			trash, purged := metric(t, p, "reef_namespace_trash_entries"), metric(t, p, "reef_namespace_purged_entries_total")
			if trash != 0 || purged < deleted {
				done = false
			}
			s = append(s, fmt.Sprintf("%s: trash %v purged %v", p.name, trash, purged))
		}
		return done, strings.Join(s, "; ")
	})
	for _, m := range []string{A, B} {
		if got, err := os.ReadFile(filepath.Join(m, "link")); err != nil || !bytes.Equal(got, keep) {
			t.Errorf("the hard link through %s after the purge: %q, %v", m, got, err)
		}
		if _, err := os.Stat(filepath.Join(m, "tree")); !os.IsNotExist(err) {
			t.Errorf("tree through %s after the purge: %v, want it gone", m, err)
		}
	}
	// The names can be used again, and both mounts agree.
	if err := os.MkdirAll(filepath.Join(B, "tree", "d0"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(B, "tree", "d0", "f1"), []byte("again"), 0o644); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the new file through A", 10*time.Second, func() (bool, string) {
		got, err := os.ReadFile(filepath.Join(A, "tree", "d0", "f1"))
		return err == nil && string(got) == "again", fmt.Sprintf("%q, %v", got, err)
	})
	// A restarted peer loads the purged state from its checkpoint.
	p := peers[3]
	c.stop(p)
	c.start(p)
	c.waitAlive(peers)
	if trash := metric(t, p, "reef_namespace_trash_entries"); trash != 0 {
		t.Errorf("%s after a restart: %v entries in the trash, want 0", p.name, trash)
	}
	if entries, err := os.ReadDir(A); err != nil || len(entries) != 2 {
		t.Errorf("the root through A: %v, %v; want link and tree", entries, err)
	}
}
