package integration

import (
	"bytes"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// TestStorageFoundation is the acceptance test of the storage layer: six
// peer processes with k=4, m=2; files survive any two peers killed with -9;
// a third loss fails clearly and fast; restarted peers serve their shards;
// identical content stores nothing new; no plaintext reaches a data dir.
func TestStorageFoundation(t *testing.T) {
	if testing.Short() {
		t.Skip("multi-process test; run without -short")
	}
	c := newCluster(t)
	var peers []*peerProc
	for range 6 {
		peers = append(peers, c.addPeer("--k", "4", "--m", "2"))
	}
	want := map[string]string{}
	for _, p := range peers {
		want[p.name] = "alive"
	}
	// Every writer must see every member, or its placement doubles up.
	for _, p := range peers {
		c.waitStates(p, want, 30*time.Second)
	}

	src := t.TempDir()
	files := []struct {
		name string
		size int64
	}{{"empty", 0}, {"one", 1}, {"onemib", 1 << 20}, {"big", 64 << 20}}
	addrs := map[string]string{}
	for i, f := range files {
		p := filepath.Join(src, f.name)
		writeRandom(t, p, f.size, uint64(i+1))
		// Spread the writes over several peers: every peer is equal.
		addrs[f.name] = c.put(peers[i%len(peers)], p)
	}

	checkAll := func(t *testing.T, via *peerProc) {
		t.Helper()
		for _, f := range files {
			got, r := c.get(via, addrs[f.name])
			if r.code != 0 {
				t.Fatalf("get %s via %s: exit %d: %s", f.name, via.name, r.code, r.stderr)
			}
			if !sameFile(t, filepath.Join(src, f.name), got) {
				t.Fatalf("get %s via %s: content differs", f.name, via.name)
			}
		}
	}
	t.Run("read back through every peer", func(t *testing.T) {
		for _, p := range peers {
			checkAll(t, p)
		}
	})

	var totalShards int64
	t.Run("every peer holds about its fair share", func(t *testing.T) {
		waitFor(t, "usage figures in gossip", 20*time.Second, func() (bool, string) {
			st := c.status(peers[0])
			var sum int64
			for _, m := range st.Members {
				sum += m.Shards
			}
			fair := float64(sum) / float64(len(st.Members))
			for _, m := range st.Members {
				if s := float64(m.Shards); s < fair/2 || s > 2*fair || sum == 0 {
					return false, m.ID + " holds " + itoa(m.Shards) + " shards, fair share " + ftoa(fair)
				}
			}
			totalShards = sum
			return true, ""
		})
	})

	t.Run("same file twice stores no new shards", func(t *testing.T) {
		r := c.reef("put", "--peer", peers[3].listen, filepath.Join(src, "big")).ok(t)
		if got := r.lastLine(); got != addrs["big"] {
			t.Fatalf("second put gave address %s, first %s", got, addrs["big"])
		}
		if !strings.Contains(r.stderr, "(0 new shards") {
			t.Errorf("second put stored new shards: %s", r.stderr)
		}
		time.Sleep(3 * time.Second) // two gossip rounds of usage figures
		var sum int64
		for _, m := range c.status(peers[1]).Members {
			sum += m.Shards
		}
		if sum != totalShards {
			t.Errorf("shards after second put = %d, before = %d", sum, totalShards)
		}
	})

	t.Run("no plaintext on disk", func(t *testing.T) {
		marker := []byte("REEF-PLAINTEXT-MARKER-7f3a9c")
		p := filepath.Join(src, "marker")
		os.WriteFile(p, bytes.Repeat(append(marker, '\n'), 50000), 0o644)
		c.put(peers[2], p)
		for _, pp := range peers {
			filepath.WalkDir(pp.data, func(path string, d fs.DirEntry, err error) error {
				if err != nil || d.IsDir() {
					return nil
				}
				b, err := os.ReadFile(path)
				if err == nil && bytes.Contains(b, marker) {
					t.Errorf("%s contains the plaintext marker", path)
				}
				return nil
			})
		}
	})

	// Kill -9 two peers, neither the one we read through.
	c.kill9(peers[1])
	c.kill9(peers[4])
	t.Run("any two peers down: every file reads back", func(t *testing.T) {
		checkAll(t, peers[0])
		checkAll(t, peers[5])
	})

	c.kill9(peers[2])
	t.Run("three peers down: get fails fast and says why", func(t *testing.T) {
		_, r := c.get(peers[0], addrs["big"])
		if r.code == 0 {
			t.Fatal("get succeeded with 3 of 6 peers down")
		}
		if r.elapsed > 10*time.Second {
			t.Errorf("get took %v to fail, want < 10s", r.elapsed)
		}
		if !regexp.MustCompile(`found [0-3] of 6 shards, need 4`).MatchString(r.stderr) {
			t.Errorf("error does not say how many shards were found and needed: %q", r.stderr)
		}
		if n := strings.Count(strings.TrimSpace(r.stderr), "\n"); n != 0 {
			t.Errorf("error is %d lines, want one: %q", n+1, r.stderr)
		}
	})

	for _, p := range []*peerProc{peers[1], peers[2], peers[4]} {
		c.restart(p)
	}
	for _, p := range []*peerProc{peers[0], peers[1], peers[4]} {
		c.waitStates(p, want, 30*time.Second)
	}
	t.Run("restarted peers serve their shards", func(t *testing.T) {
		// Take down two peers that never went away: reads now need the
		// shards of the restarted ones.
		c.kill9(peers[0])
		c.kill9(peers[3])
		checkAll(t, peers[1])
		checkAll(t, peers[4])
	})
}

// TestCLIErrors checks that mistakes give one clear line and a non-zero exit.
func TestCLIErrors(t *testing.T) {
	if testing.Short() {
		t.Skip("multi-process test; run without -short")
	}
	c := newCluster(t)
	p := c.addPeer()
	dir := t.TempDir()
	for _, tc := range []struct {
		name string
		args []string
		code int
		want string
	}{
		{"no command", nil, 2, "usage"},
		{"unknown command", []string{"frobnicate"}, 2, "unknown command"},
		{"bad address", []string{"get", "--peer", p.listen, "xyz", "-o", filepath.Join(dir, "x")}, 2, "want 64 hex digits"},
		{"unknown address", []string{"get", "--peer", p.listen, strings.Repeat("ab", 32), "-o", filepath.Join(dir, "x")}, 1, "no shard found"},
		{"missing file", []string{"put", "--peer", p.listen, filepath.Join(dir, "nope")}, 1, "no such file"},
		{"directory", []string{"put", "--peer", p.listen, dir}, 1, "not a regular file"},
		{"peer down", []string{"status", "--peer", "127.0.0.1:1"}, 1, "connection refused"},
		{"bad peer", []string{"status", "--peer", "nonsense"}, 2, "HOST:PORT"},
		{"unknown flag", []string{"status", "--frob"}, 2, "flag provided but not defined"},
		{"serve without key", []string{"serve", "--data", dir}, 2, "--key FILE is required"},
		{"serve with bad key", []string{"serve", "--data", dir, "--key", "/etc/hostname"}, 1, "not a reef key"},
		{"init over existing", []string{"init", "--key", c.key}, 1, "exists"},
		{"bad capacity", []string{"serve", "--data", dir, "--key", c.key, "--capacity", "lots"}, 2, "bad size"},
		{"bad coding", []string{"serve", "--data", filepath.Join(dir, "d2"), "--key", c.key, "--k", "0", "--listen", "127.0.0.1:0", "--gossip", "127.0.0.1:0"}, 1, "k"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := c.reef(tc.args...)
			if r.code != tc.code {
				t.Errorf("exit %d, want %d; stderr: %s", r.code, tc.code, r.stderr)
			}
			if !strings.Contains(r.stderr, tc.want) {
				t.Errorf("stderr %q does not contain %q", r.stderr, tc.want)
			}
		})
	}
	_, r := c.get(p, strings.Repeat("ab", 32))
	if _, err := os.Stat(filepath.Join(dir, "x")); err == nil {
		t.Errorf("a failed get left a file behind (%v)", r.stderr)
	}
}

// TestSeedRestartRejoins: the first peer of a cluster, started without
// --join, finds the others again after kill -9 and a restart (it keeps the
// addresses of the members it saw in its data directory). It came back
// alone before: the others had given it up and it had nobody to ask.
func TestSeedRestartRejoins(t *testing.T) {
	if testing.Short() {
		t.Skip("multi-process test; run without -short")
	}
	c := newCluster(t)
	var peers []*peerProc
	for range 3 {
		peers = append(peers, c.addPeer("--k", "1", "--m", "1"))
	}
	c.waitAlive(peers)
	seed := peers[0]
	waitFor(t, "the seed's known-peers file", 20*time.Second, func() (bool, string) {
		b, err := os.ReadFile(filepath.Join(seed.data, "known-peers"))
		if err != nil {
			return false, err.Error()
		}
		for _, p := range peers[1:] {
			if !strings.Contains(string(b), p.gossip+"\n") {
				return false, fmt.Sprintf("%q lacks %s", b, p.gossip)
			}
		}
		return true, ""
	})
	c.kill9(seed)
	waitFor(t, "the others give the seed up", 30*time.Second, func() (bool, string) {
		for _, m := range c.status(peers[1]).Members {
			if m.ID == seed.name {
				return m.State == "dead" || m.State == "left", m.State
			}
		}
		return true, "gone"
	})
	// Past memberlist's gossip to the dead (15 s): from then on nobody
	// contacts the seed's address unless it asks first.
	time.Sleep(20 * time.Second)
	c.restart(seed)
	c.waitAlive(peers)
}
