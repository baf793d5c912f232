package peer

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/reefproject/reef/addr"
	"github.com/reefproject/reef/blockstore"
	"github.com/reefproject/reef/store"
)

// TestCollectorTouchAndRestart: a candidate's shards go only once its
// grace has passed without a write or dedup check of it here; a touch
// restarts the grace under the lock the deletion holds; the candidates and
// their times survive a restart; a damaged candidates file is ignored.
func TestCollectorTouchAndRestart(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	bs, err := blockstore.Open(t.TempDir(), blockstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer bs.Close()
	p := &Peer{cfg: Config{DataDir: dir}, log: slog.New(slog.DiscardHandler), bs: bs}
	grace := time.Hour
	c := newCollector(p, grace)
	a, b := addr.Sum([]byte("a")), addr.Sum([]byte("b"))
	for _, x := range []addr.Addr{a, b} {
		for i := range 2 {
			if err := bs.Put(ctx, shardKey(store.ShardKey{Addr: x, Index: i}), []byte("shard")); err != nil {
				t.Fatal(err)
			}
		}
	}
	old := time.Now().Add(-2 * grace)
	c.mu.Lock()
	c.cands[a], c.cands[b] = old, old
	c.dirty = true
	c.active.Store(true)
	if err := c.saveLocked(); err != nil {
		t.Fatal(err)
	}
	c.mu.Unlock()

	c.touch(b) // a writer asked about b: it stays for another grace
	limit := time.Now().Add(-grace)
	tests := []struct {
		name   string
		a      addr.Addr
		ok     bool
		shards int64
	}{
		{"due and untouched", a, true, 2},
		{"touched", b, false, 0},
		{"gone already", addr.Sum([]byte("c")), false, 0},
	}
	for _, tt := range tests {
		n, _, ok := c.collect(ctx, tt.a, limit)
		if ok != tt.ok || n != tt.shards {
			t.Errorf("%s: collect = %d shards, %v; want %d, %v", tt.name, n, ok, tt.shards, tt.ok)
		}
	}
	held := func(x addr.Addr) int {
		idx, err := p.listLocal(ctx, x)
		if err != nil {
			t.Fatal(err)
		}
		return len(idx)
	}
	if held(a) != 0 || held(b) != 2 {
		t.Errorf("shards held after collect: a %d, b %d; want 0, 2", held(a), held(b))
	}

	// Restart: the saved candidates come back with their times.
	c2 := newCollector(p, grace)
	if got := c2.cands[a]; got.UnixNano() != old.UnixNano() {
		t.Errorf("reloaded a: %v, want %v", got, old)
	}
	if !c2.active.Load() {
		t.Error("reloaded collector does not record touches")
	}
	// A damaged file: ignored, nothing collected.
	if err := os.WriteFile(filepath.Join(dir, gcFile), []byte("not a multiple of the record size"), 0o600); err != nil {
		t.Fatal(err)
	}
	if c3 := newCollector(p, grace); len(c3.cands) != 0 {
		t.Errorf("damaged file gave %d candidates", len(c3.cands))
	}
}

func TestParsePins(t *testing.T) {
	a, b := addr.Sum([]byte("a")), addr.Sum([]byte("b"))
	good := append([]byte{0, 0, 0, 1}, a[:]...)
	good = append(good, b[:]...)
	tests := []struct {
		name          string
		in            []byte
		roots, chunks int
		err           bool
	}{
		{"one root one chunk", good, 1, 1, false},
		{"empty", []byte{0, 0, 0, 0}, 0, 0, false},
		{"short", []byte{0, 0}, 0, 0, true},
		{"torn entry", good[:len(good)-1], 0, 0, true},
		{"more roots than entries", append([]byte{0, 0, 0, 9}, a[:]...), 0, 0, true},
	}
	for _, tt := range tests {
		r, c, err := parsePins(tt.in)
		if (err != nil) != tt.err || len(r) != tt.roots || len(c) != tt.chunks {
			t.Errorf("%s: %d roots, %d chunks, %v", tt.name, len(r), len(c), err)
		}
	}
}
