package integration

import (
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"
)

// health is the subset of `reef health --json` the tests read.
type health struct {
	Files          int   `json:"files"`
	InlineFiles    int   `json:"inline_files"`
	ChunksTotal    int   `json:"chunks_total"`
	ChunksHealthy  int   `json:"chunks_healthy"`
	ChunksDegraded int   `json:"chunks_degraded"`
	ChunksLost     int   `json:"chunks_lost"`
	BytesAtRisk    int64 `json:"bytes_at_risk"`
	MinRedundancy  int   `json:"min_redundancy"`
}

func (c *cluster) health(via *peerProc, path ...string) health {
	c.t.Helper()
	args := append([]string{"health", "--json", "--peer", via.listen}, path...)
	r := c.reef(args...).ok(c.t)
	var h health
	if err := json.Unmarshal([]byte(r.stdout), &h); err != nil {
		c.t.Fatalf("health --json: %v\n%s", err, r.stdout)
	}
	return h
}

func (h health) allHealthy() bool {
	return h.ChunksTotal > 0 && h.ChunksHealthy == h.ChunksTotal && h.ChunksDegraded == 0 && h.ChunksLost == 0
}

// shardCounts reads each live member's shard count from status.
func (c *cluster) shardCounts(via *peerProc) map[string]int64 {
	st := c.status(via)
	out := map[string]int64{}
	for _, m := range st.Members {
		if m.State == "alive" {
			out[m.ID] = m.Shards
		}
	}
	return out
}

// TestReplicaHealth is the acceptance test of repair: 8 peers, k=4 m=2,
// 200 MiB written through a mount; a peer killed and kept down is
// repaired around; corrupted shards are found by scrub and rebuilt; a new
// peer gets its share; a drain keeps everything healthy.
func TestReplicaHealth(t *testing.T) {
	if testing.Short() {
		t.Skip("multi-process FUSE test; run without -short")
	}
	requireFUSE(t)
	c := newCluster(t)
	mnt := filepath.Join(c.dir, "mnt")
	os.Mkdir(mnt, 0o755)
	common := []string{"--k", "4", "--m", "2", "--repair-after", "6s", "--maint-every", "1s", "--scrub-every", "0"}
	var peers []*peerProc
	for i := range 8 {
		extra := append([]string(nil), common...)
		if i == 0 {
			extra = append(extra, "--mount", mnt)
		}
		peers = append(peers, c.addPeer(extra...))
	}
	want := map[string]string{}
	for _, p := range peers {
		want[p.name] = "alive"
	}
	for _, p := range peers {
		c.waitStates(p, want, 30*time.Second)
	}
	src := t.TempDir()
	for i := range 2 {
		name := fmt.Sprintf("data%d.bin", i)
		writeRandom(t, filepath.Join(src, name), 100<<20, uint64(50+i))
		run(t, "cp", filepath.Join(src, name), filepath.Join(mnt, name))
	}
	// Small files live in the namespace; health counts them apart.
	for i := range 3 {
		if err := os.WriteFile(filepath.Join(mnt, fmt.Sprintf("note%d.txt", i)), []byte("small"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	checkData := func(t *testing.T) {
		t.Helper()
		for i := range 2 {
			name := fmt.Sprintf("data%d.bin", i)
			if !sameFile(t, filepath.Join(src, name), filepath.Join(mnt, name)) {
				t.Fatalf("%s differs through the mount", name)
			}
		}
	}
	via := peers[0]
	waitHealthy := func(t *testing.T, what string, timeout time.Duration) health {
		t.Helper()
		var h health
		waitFor(t, what, timeout, func() (bool, string) {
			h = c.health(via)
			return h.allHealthy(), fmt.Sprintf("%+v", h)
		})
		return h
	}
	h0 := waitHealthy(t, "initial health", 30*time.Second)
	if h0.ChunksTotal < 150 {
		t.Fatalf("200 MiB gave only %d chunks", h0.ChunksTotal)
	}
	if h0.Files != 2 || h0.InlineFiles != 3 {
		t.Errorf("health counts %d chunked and %d inline files, want 2 and 3", h0.Files, h0.InlineFiles)
	}

	victim := peers[5]
	t.Run("peer killed: degraded, then repaired on the rest", func(t *testing.T) {
		c.kill9(victim)
		var h health
		waitFor(t, "degraded health", 10*time.Second, func() (bool, string) {
			h = c.health(via)
			return h.ChunksDegraded > 0, fmt.Sprintf("%+v", h)
		})
		if h.ChunksLost != 0 || h.MinRedundancy != 1 {
			t.Errorf("one peer down: %+v, want no lost chunks and redundancy 1", h)
		}
		// Before the repair delay, reef repair without --apply reports and
		// changes nothing.
		r := c.reef("repair", "--json", "--peer", via.listen).ok(t)
		var plan struct {
			Shards int  `json:"shards"`
			Apply  bool `json:"apply"`
		}
		json.Unmarshal([]byte(r.stdout), &plan)
		if plan.Shards == 0 || plan.Apply {
			t.Errorf("repair plan = %s, want shards to rebuild and no apply", r.stdout)
		}
		if h2 := c.health(via); h2.ChunksDegraded < h.ChunksDegraded {
			// Only the automatic repair (after 6 s) may have started.
			t.Logf("degraded went %d -> %d (automatic repair after the delay)", h.ChunksDegraded, h2.ChunksDegraded)
		}
		waitHealthy(t, "repair after the delay", 3*time.Minute)
		checkData(t)
		// The repair shows in the peers' Prometheus metrics.
		var repaired float64
		for _, p := range peers {
			if p == victim {
				continue
			}
			body := httpGet(t, "http://"+p.listen+"/metrics")
			for _, line := range strings.Split(body, "\n") {
				if strings.HasPrefix(line, "reef_repair_shards_total{") {
					var v float64
					fmt.Sscanf(line[strings.LastIndex(line, " ")+1:], "%g", &v)
					repaired += v
				}
			}
			if !strings.Contains(body, `reef_chunks{`) || !strings.Contains(body, "reef_http_requests_total{") {
				t.Errorf("%s /metrics lacks reef_chunks or reef_http_requests_total", p.name)
			}
		}
		if repaired == 0 {
			t.Error("no peer reports repaired shards in reef_repair_shards_total")
		}
	})

	t.Run("corrupted shards: scrub finds them, repair restores", func(t *testing.T) {
		p := peers[3]
		c.stop(p)
		n := corruptVlogs(t, filepath.Join(p.data, "shards"), 40)
		if n == 0 {
			t.Fatal("no value log bytes to corrupt")
		}
		c.restart(p)
		c.waitStates(via, map[string]string{p.name: "alive"}, 30*time.Second)
		r := c.reef("scrub", "--apply", "--json", "--peer", via.listen).ok(t)
		var res []struct {
			Peer    string `json:"peer"`
			Corrupt int64  `json:"corrupt"`
			Dropped int64  `json:"dropped"`
		}
		if err := json.Unmarshal([]byte(r.stdout), &res); err != nil {
			t.Fatalf("scrub --json: %v\n%s", err, r.stdout)
		}
		var found int64
		for _, x := range res {
			if x.Peer == p.name {
				found = x.Corrupt
			} else if x.Corrupt != 0 {
				t.Errorf("scrub found %d corrupt shards on untouched %s", x.Corrupt, x.Peer)
			}
		}
		if found == 0 {
			t.Fatalf("scrub found nothing after %d bytes were flipped on %s:\n%s", n, p.name, r.stdout)
		}
		t.Logf("flipped %d bytes; scrub found and dropped %d corrupt shards on %s", n, found, p.name)
		waitHealthy(t, "repair after scrub", 3*time.Minute)
		checkData(t)
		r = c.reef("scrub", "--json", "--peer", via.listen).ok(t)
		if strings.Contains(strings.ReplaceAll(r.stdout, " ", ""), `"corrupt":`) && !allZeroCorrupt(r.stdout) {
			t.Errorf("second scrub still finds corruption:\n%s", r.stdout)
		}
	})

	t.Run("a new peer gets its share", func(t *testing.T) {
		extra := append([]string(nil), common...)
		p9 := c.addPeer(extra...)
		waitFor(t, "rebalance onto "+p9.name, 3*time.Minute, func() (bool, string) {
			counts := c.shardCounts(via)
			var total int64
			for _, n := range counts {
				total += n
			}
			fair := float64(total) / float64(len(counts))
			got := float64(counts[p9.name])
			return got >= 0.6*fair && got <= 1.4*fair, fmt.Sprintf("%s holds %v shards, fair share %.0f (%v)", p9.name, got, fair, counts)
		})
		waitHealthy(t, "health after rebalance", time.Minute)
		checkData(t)
	})

	t.Run("drain keeps every chunk healthy", func(t *testing.T) {
		d := peers[2]
		done := make(chan result, 1)
		go func() { done <- runReef(t, nil, "drain", "--peer", via.listen, d.name) }()
		polls := 0
		for finished := false; !finished; {
			select {
			case r := <-done:
				if r.code != 0 {
					t.Fatalf("drain: exit %d: %s", r.code, r.stderr)
				}
				finished = true
			case <-time.After(300 * time.Millisecond):
			}
			h := c.health(via)
			polls++
			if !h.allHealthy() {
				t.Fatalf("during the drain: %+v", h)
			}
		}
		counts := c.shardCounts(via)
		waitFor(t, d.name+" empty", 30*time.Second, func() (bool, string) {
			counts = c.shardCounts(via)
			return counts[d.name] == 0, fmt.Sprintf("%v", counts)
		})
		t.Logf("drain finished after %d health polls, all healthy throughout", polls)
		c.stop(d)
		waitHealthy(t, "health after the drained peer left", time.Minute)
		checkData(t)
	})
}

func httpGet(t *testing.T, url string) string {
	t.Helper()
	c := http.Client{Timeout: 10 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if resp.StatusCode != 200 {
		t.Fatalf("GET %s: %s", url, resp.Status)
	}
	return string(b)
}

func allZeroCorrupt(s string) bool {
	var res []struct {
		Corrupt int64 `json:"corrupt"`
	}
	if json.Unmarshal([]byte(s), &res) != nil {
		return false
	}
	for _, r := range res {
		if r.Corrupt != 0 {
			return false
		}
	}
	return true
}

// corruptVlogs flips n bytes spread over the written part of the badger
// value logs in dir, and returns how many were flipped.
func corruptVlogs(t *testing.T, dir string, n int) int {
	t.Helper()
	files, _ := filepath.Glob(filepath.Join(dir, "*.vlog"))
	sort.Strings(files)
	rng := rand.New(rand.NewPCG(9, 9))
	flipped := 0
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		end := len(b)
		for end > 0 && b[end-1] == 0 {
			end--
		}
		if end < 1<<20 {
			continue
		}
		for range n {
			off := 4096 + rng.IntN(end-4096)
			b[off] ^= 0xff
			flipped++
		}
		if err := os.WriteFile(f, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return flipped
}
