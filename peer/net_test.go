package peer

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"math/rand/v2"
	"net/http/httptest"
	"net/url"
	"syscall"
	"testing"
	"time"

	"github.com/reefproject/reef/addr"
	"github.com/reefproject/reef/blockstore"
	"github.com/reefproject/reef/crypt"
	"github.com/reefproject/reef/erasure"
	"github.com/reefproject/reef/metrics"
	"github.com/reefproject/reef/store"
)

// shardPair is a serving peer (a blockstore behind the real routes on an
// httptest server) and a reading peer's shardNet pointed at it.
type shardPair struct {
	server *Peer
	net    *shardNet
}

func newShardPair(tb testing.TB) *shardPair {
	tb.Helper()
	keys, err := crypt.NewKeys(bytes.Repeat([]byte{3}, 32))
	if err != nil {
		tb.Fatal(err)
	}
	bs, err := blockstore.Open(tb.TempDir(), blockstore.Options{})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { bs.Close() })
	srv := &Peer{cfg: Config{Keys: keys, Capacity: 1 << 30}, id: "server", log: slog.New(slog.DiscardHandler), bs: bs, metrics: metrics.New("server")}
	srv.capacity.Store(srv.cfg.Capacity)
	ts := httptest.NewServer(srv.routes())
	tb.Cleanup(ts.Close)
	u, err := url.Parse(ts.URL)
	if err != nil {
		tb.Fatal(err)
	}
	reader := &Peer{cfg: Config{Keys: keys}, id: "reader", log: slog.New(slog.DiscardHandler)}
	n := newShardNet(reader)
	n.lookup = func(peer string) (string, error) {
		if peer != "server" {
			return "", errors.New("unknown peer " + peer)
		}
		return u.Host, nil
	}
	tb.Cleanup(n.client.CloseIdleConnections)
	return &shardPair{server: srv, net: n}
}

// testShards returns the 4+2 stripe of a random blob of size bytes.
func testShards(tb testing.TB, size int) (addr.Addr, [][]byte) {
	tb.Helper()
	blob := make([]byte, size)
	r := rand.New(rand.NewPCG(uint64(size), 1))
	for i := range blob {
		blob[i] = byte(r.Uint32())
	}
	c, err := erasure.New(4, 2)
	if err != nil {
		tb.Fatal(err)
	}
	shards, err := c.Encode(blob)
	if err != nil {
		tb.Fatal(err)
	}
	return addr.Sum(blob), shards
}

func TestGetShardHTTP(t *testing.T) {
	ctx := context.Background()
	sp := newShardPair(t)
	a, shards := testShards(t, 1<<20)
	k := store.ShardKey{Addr: a, Index: 1}
	if _, err := sp.server.putLocal(ctx, k, shards[1], false); err != nil {
		t.Fatal(err)
	}
	got, err := sp.net.GetShard(ctx, "server", k)
	if err != nil || !bytes.Equal(got, shards[1]) {
		t.Fatalf("GetShard = %d bytes, %v; want the %d bytes stored", len(got), err, len(shards[1]))
	}
	for _, tc := range []struct {
		name string
		get  func(context.Context, string, store.ShardKey, []byte) ([]byte, error)
	}{{"GetShardTo", sp.net.GetShardTo}, {"getShardHTTP", sp.net.getShardHTTP}} {
		if _, err := tc.get(ctx, "server", store.ShardKey{Addr: a, Index: 2}, nil); !errors.Is(err, store.ErrShardNotFound) {
			t.Errorf("%s of a missing shard: err = %v, want ErrShardNotFound", tc.name, err)
		}
	}
	// Over HTTP (what an older peer serves; streams: stream_test.go) and
	// locally (the server's own shardNet), the shard is read into the
	// buffer when it fits.
	local := newShardNet(sp.server)
	for _, tc := range []struct {
		name    string
		get     func(context.Context, string, store.ShardKey, []byte) ([]byte, error)
		buf     []byte
		inPlace bool
	}{
		{"remote, nil", sp.net.getShardHTTP, nil, false},
		{"remote, too small", sp.net.getShardHTTP, make([]byte, 100), false},
		{"remote, fits", sp.net.getShardHTTP, bytes.Repeat([]byte{1}, len(shards[1])+1000), true},
		{"local, too small", local.GetShardTo, make([]byte, 0, 100), false},
		{"local, fits", local.GetShardTo, make([]byte, 0, len(shards[1])), true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := tc.get(ctx, "server", k, tc.buf)
			if err != nil || !bytes.Equal(got, shards[1]) {
				t.Fatalf("GetShardTo = %d bytes, %v; want the %d bytes stored", len(got), err, len(shards[1]))
			}
			if inPlace := cap(tc.buf) > 0 && &got[0] == &tc.buf[:1][0]; inPlace != tc.inPlace {
				t.Errorf("result in buf's memory: %v, want %v", inPlace, tc.inPlace)
			}
		})
	}
}

// BenchmarkGetShard is one shard read over loopback, on a stream (what
// GetShardTo uses) and over HTTP (what an older peer gets): the serving
// peer's blockstore Get (both checksums) and answer, and the reading
// peer's request and read into a recycled buffer, as the store reads, in
// one process. A 1 MiB chunk's 256 KiB shard.
func BenchmarkGetShard(b *testing.B) {
	ctx := context.Background()
	sp := newShardPair(b)
	a, shards := testShards(b, 1<<20)
	k := store.ShardKey{Addr: a, Index: 0}
	if _, err := sp.server.putLocal(ctx, k, shards[0], false); err != nil {
		b.Fatal(err)
	}
	for _, bb := range []struct {
		name string
		get  func(ctx context.Context, peer string, k store.ShardKey, buf []byte) ([]byte, error)
	}{
		{"stream", sp.net.GetShardTo},
		{"http", sp.net.getShardHTTP},
	} {
		b.Run(bb.name, func(b *testing.B) {
			buf := make([]byte, len(shards[0]))
			if got, err := bb.get(ctx, "server", k, buf); err != nil || !bytes.Equal(got, shards[0]) { // warm up
				b.Fatalf("read %d bytes, %v", len(got), err)
			}
			b.SetBytes(int64(len(shards[0])))
			b.ReportAllocs()
			b.ResetTimer()
			cpu := cpuTime()
			for b.Loop() {
				if _, err := bb.get(ctx, "server", k, buf); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(cpuTime()-cpu)/float64(b.N), "cpu-ns/op")
		})
	}
}

// cpuTime is the CPU time the process has used (user and system, every
// thread), which varies less than wall time on a shared machine.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
