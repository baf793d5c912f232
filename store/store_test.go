package store

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/reefproject/reef/addr"
	"github.com/reefproject/reef/chunker"
	"github.com/reefproject/reef/crypt"
	"github.com/reefproject/reef/erasure"
	"github.com/reefproject/reef/placement"
)

// fakeNet is an in-memory cluster: peer -> shard key -> bytes.
type fakeNet struct {
	mu    sync.Mutex // guards the fields below
	data  map[string]map[ShardKey][]byte
	down  map[string]bool
	puts  int
	gets  int
	lists int
	tries map[string]int // PutShard calls per peer
}

func newFakeNet(peers int) *fakeNet {
	n := &fakeNet{data: map[string]map[ShardKey][]byte{}, down: map[string]bool{}}
	for i := range peers {
		n.data[fmt.Sprintf("p%d", i)] = map[ShardKey][]byte{}
	}
	return n
}

// setDown marks peers down (or up again), under the lock: read-ahead
// goroutines may still be fetching.
func (n *fakeNet) setDown(down bool, peers ...string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	for _, p := range peers {
		n.down[p] = down
	}
}

func (n *fakeNet) members() []placement.Member {
	n.mu.Lock()
	defer n.mu.Unlock()
	var out []placement.Member
	for id := range n.data {
		out = append(out, placement.Member{ID: id, Weight: 1})
	}
	return out
}

func (n *fakeNet) PutShard(ctx context.Context, peer string, k ShardKey, b []byte) (bool, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.puts++
	if n.tries == nil {
		n.tries = map[string]int{}
	}
	n.tries[peer]++
	if n.down[peer] {
		return false, errors.New("connection refused")
	}
	if _, ok := n.data[peer][k]; ok {
		return false, nil
	}
	n.data[peer][k] = bytes.Clone(b)
	return true, nil
}

func (n *fakeNet) GetShard(ctx context.Context, peer string, k ShardKey) ([]byte, error) {
	return n.GetShardTo(ctx, peer, k, nil)
}

// GetShardTo implements BufferedNet.
func (n *fakeNet) GetShardTo(ctx context.Context, peer string, k ShardKey, buf []byte) ([]byte, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.gets++
	if n.down[peer] {
		return nil, errors.New("connection refused")
	}
	b, ok := n.data[peer][k]
	if !ok {
		return nil, ErrShardNotFound
	}
	if cap(buf) < len(b) {
		return bytes.Clone(b), nil
	}
	return append(buf[:0], b...), nil
}

var _ BufferedNet = (*fakeNet)(nil)

func (n *fakeNet) ListShards(ctx context.Context, peer string, a addr.Addr) ([]int, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.lists++
	if n.down[peer] {
		return nil, errors.New("connection refused")
	}
	var out []int
	for k := range n.data[peer] {
		if k.Addr == a {
			out = append(out, k.Index)
		}
	}
	return out, nil
}

func (n *fakeNet) shardCount() int {
	n.mu.Lock()
	defer n.mu.Unlock()
	c := 0
	for _, m := range n.data {
		c += len(m)
	}
	return c
}

func newTestStore(t *testing.T, n *fakeNet, k, m int) *Store {
	t.Helper()
	keys, err := crypt.NewKeys(bytes.Repeat([]byte{7}, 32))
	if err != nil {
		t.Fatal(err)
	}
	s, err := New(Config{Keys: keys, K: k, M: m, Net: n, Members: n.members,
		Chunking: chunker.Params{Min: 4 << 10, Avg: 16 << 10, Max: 64 << 10}})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func randBytes(n int, seed uint64) []byte {
	r := rand.New(rand.NewPCG(seed, seed))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

func TestPutGetRoundTrip(t *testing.T) {
	for _, size := range []int{0, 1, 4095, 100 << 10, 1 << 20} {
		t.Run(fmt.Sprint(size), func(t *testing.T) {
			n := newFakeNet(6)
			s := newTestStore(t, n, 4, 2)
			data := randBytes(size, uint64(size))
			a, st, err := s.PutFile(context.Background(), bytes.NewReader(data))
			if err != nil {
				t.Fatal(err)
			}
			if st.Size != int64(size) {
				t.Errorf("PutStats.Size = %d, want %d", st.Size, size)
			}
			var out bytes.Buffer
			if _, err := s.WriteFile(context.Background(), a, &out); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(out.Bytes(), data) {
				t.Fatal("read back differs")
			}
			// Every shard of every stripe on a distinct peer.
			for p, m := range n.data {
				seen := map[addr.Addr]int{}
				for k := range m {
					seen[k.Addr]++
					if seen[k.Addr] > 1 {
						t.Fatalf("peer %s holds two shards of %s", p, k.Addr.Short())
					}
				}
			}
		})
	}
}

func TestSurvivesMDown(t *testing.T) {
	n := newFakeNet(6)
	s := newTestStore(t, n, 4, 2)
	data := randBytes(300<<10, 1)
	a, _, err := s.PutFile(context.Background(), bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	n.setDown(true, "p1", "p4")
	var out bytes.Buffer
	if _, err := s.WriteFile(context.Background(), a, &out); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(out.Bytes(), data) {
		t.Fatal("read back differs with 2 peers down")
	}
	// ReadAt at odd offsets, through the cache.
	buf := make([]byte, 70000)
	for _, off := range []int64{0, 1, 65535, 200000, int64(len(data)) - 10} {
		nr, err := s.ReadAt(context.Background(), a, buf, off)
		want := data[off:min(off+int64(len(buf)), int64(len(data)))]
		if nr != len(want) || !bytes.Equal(buf[:nr], want) {
			t.Errorf("ReadAt(%d) = %d bytes (%v), want %d", off, nr, err, len(want))
		}
		if nr < len(buf) && err != io.EOF {
			t.Errorf("short ReadAt(%d) error = %v, want io.EOF", off, err)
		}
	}
	n.setDown(true, "p2")
	s2 := newTestStore(t, n, 4, 2) // no cache
	_, err = s2.WriteFile(context.Background(), a, io.Discard)
	var se *ShardsError
	if !errors.As(err, &se) || !errors.Is(err, ErrUnavailable) {
		t.Fatalf("with 3 down: err = %v, want ShardsError", err)
	}
	if !strings.Contains(err.Error(), "found 3 of 6 shards, need 4") {
		t.Errorf("error %q does not count shards", err)
	}
}

func TestDedup(t *testing.T) {
	n := newFakeNet(6)
	s := newTestStore(t, n, 4, 2)
	data := randBytes(500<<10, 2)
	a1, st1, err := s.PutFile(context.Background(), bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	before := n.shardCount()
	a2, st2, err := s.PutFile(context.Background(), bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	if a1 != a2 || n.shardCount() != before || st2.NewShards != 0 || st2.DupShards != st1.NewShards {
		t.Errorf("second put: addr equal %v, shards %d -> %d, stats %+v (first %+v)", a1 == a2, before, n.shardCount(), st2, st1)
	}
}

func TestWriteQuorum(t *testing.T) {
	n := newFakeNet(6)
	s := newTestStore(t, n, 4, 2)
	// With peers down, writes go to the next peers of each ranking.
	n.setDown(true, "p0")
	data := randBytes(100<<10, 3)
	a, _, err := s.PutFile(context.Background(), bytes.NewReader(data))
	if err != nil {
		t.Fatalf("put with one peer down: %v", err)
	}
	n.setDown(false, "p0")
	var out bytes.Buffer
	if _, err := s.WriteFile(context.Background(), a, &out); err != nil || !bytes.Equal(out.Bytes(), data) {
		t.Fatalf("read back after sloppy write: %v", err)
	}
	// With 4 of 6 down there are not 6 holders: the write must fail.
	n.setDown(true, "p0", "p1", "p2", "p3")
	_, _, err = s.PutFile(context.Background(), bytes.NewReader(randBytes(1000, 4)))
	if !errors.Is(err, ErrUnavailable) {
		t.Errorf("put with 4 of 6 down: err = %v, want ErrUnavailable", err)
	}
}

func TestManifestTree(t *testing.T) {
	var entries []Entry
	for i := range maxEntries + 10 {
		entries = append(entries, Entry{Addr: addr.Sum([]byte{byte(i), byte(i >> 8), byte(i >> 16)}), Length: 1, K: 4, M: 2})
	}
	m := manifest{kind: kindData, size: int64(len(entries)), entries: entries}
	if _, err := decodeManifest(encodeManifest(m)); err == nil {
		t.Error("a manifest with too many entries decoded")
	}
	ok := manifest{kind: kindData, size: 3, entries: entries[:3]}
	got, err := decodeManifest(encodeManifest(ok))
	if err != nil || got.size != 3 || len(got.entries) != 3 || got.entries[2] != entries[2] {
		t.Errorf("round trip: %+v, %v", got, err)
	}
	for _, bad := range [][]byte{nil, []byte("RFM1"), append([]byte("XXXX"), make([]byte, 16)...)} {
		if _, err := decodeManifest(bad); !errors.Is(err, ErrBadManifest) {
			t.Errorf("decodeManifest(%q) = %v, want ErrBadManifest", bad, err)
		}
	}
}

func FuzzDecodeManifest(f *testing.F) {
	f.Add(encodeManifest(manifest{kind: kindData, size: 5, entries: []Entry{{Length: 5, K: 1}}}))
	f.Add([]byte("RFM1\x02\x00\x00\x00"))
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := decodeManifest(b)
		if err == nil && !bytes.Equal(encodeManifest(m), b[:len(encodeManifest(m))]) {
			t.Errorf("re-encoding differs")
		}
	})
}

func TestPutRange(t *testing.T) {
	n := newFakeNet(6)
	s := newTestStore(t, n, 4, 2)
	ctx := context.Background()
	data := randBytes(2<<20, 11)
	base, _, err := s.PutFile(ctx, bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name       string
		edit       func([]byte) []byte
		start, end int64
	}{
		{"overwrite middle", func(b []byte) []byte { copy(b[1<<20:], "HELLO"); return b }, 1 << 20, 1<<20 + 5},
		{"overwrite start", func(b []byte) []byte { b[0] ^= 1; return b }, 0, 1},
		{"append", func(b []byte) []byte { return append(b, randBytes(100000, 3)...) }, 2 << 20, 2<<20 + 100000},
		{"truncate", func(b []byte) []byte { return b[:1500000] }, 1500000, 1500000},
	} {
		t.Run(tc.name, func(t *testing.T) {
			want := tc.edit(bytes.Clone(data))
			got, st, err := s.PutRange(ctx, base, bytes.NewReader(want), int64(len(want)), tc.start, tc.end)
			if err != nil {
				t.Fatal(err)
			}
			full, _, err := s.PutFile(ctx, bytes.NewReader(want))
			if err != nil {
				t.Fatal(err)
			}
			if got != full {
				t.Errorf("PutRange gave %s, a full PutFile %s", got.Short(), full.Short())
			}
			var out bytes.Buffer
			if _, err := s.WriteFile(ctx, got, &out); err != nil || !bytes.Equal(out.Bytes(), want) {
				t.Fatalf("read back: %v", err)
			}
			if tc.name == "overwrite middle" && (st.NewChunks > 3 || st.KeptChunks == 0) {
				t.Errorf("a 5-byte change re-chunked %d chunks, kept %d", st.NewChunks, st.KeptChunks)
			}
			t.Logf("%+v", st)
		})
	}
}

func TestReadAheadDepth(t *testing.T) {
	s := newTestStore(t, newFakeNet(6), 4, 2)
	ix := &fileIndex{}
	steps := []struct {
		off, n int64
		want   int
	}{
		{0, 128 << 10, s.cfg.Parallel},         // a read from the start
		{128 << 10, 128 << 10, s.cfg.Parallel}, // continues it
		{384 << 10, 128 << 10, s.cfg.Parallel}, // a little out of order
		{100 << 20, 4096, randomAhead},         // a jump
		{50 << 20, 4096, randomAhead},          // and back
		{50<<20 + 4096, 4096, s.cfg.Parallel},  // sequential again
	}
	for _, st := range steps {
		if got := s.aheadFor(ix, st.off, st.n); got != st.want {
			t.Errorf("aheadFor(off %d, n %d) = %d, want %d", st.off, st.n, got, st.want)
		}
	}
}

// TestSequentialScanDropsBehind: chunks a sequential scan has passed leave
// the chunk cache (the kernel caches what it read), a second scan drops
// again, and reads that jump about keep what they fetched.
func TestSequentialScanDropsBehind(t *testing.T) {
	ctx := context.Background()
	s := newTestStore(t, newFakeNet(6), 4, 2)
	data := randBytes(16<<20, 3)
	a, _, err := s.PutFile(ctx, bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	cached := func() int64 {
		s.cache.chunks.mu.Lock()
		defer s.cache.chunks.mu.Unlock()
		return s.cache.chunks.size
	}
	// What may stay: the slack behind, the chunk being read and the
	// read-ahead (chunks are at most 64 KiB here).
	bound := int64(seqSlack + (s.cfg.Parallel+2)*(64<<10+64))
	buf := make([]byte, 128<<10)
	for pass := range 2 {
		for off := int64(0); off < int64(len(data)); off += int64(len(buf)) {
			n, err := s.ReadAt(ctx, a, buf, off)
			if n != len(buf) || !bytes.Equal(buf[:n], data[off:off+int64(n)]) {
				t.Fatalf("pass %d: ReadAt(%d) = %d, %v: wrong bytes", pass, off, n, err)
			}
		}
		if c := cached(); c > bound {
			t.Errorf("pass %d: %d bytes cached after a sequential scan of %d, want at most %d", pass, c, len(data), bound)
		}
	}
	// Random 4 KiB reads, each far from the one before: what they fetch stays.
	before := cached()
	for i, off := range []int64{9 << 20, 1 << 20, 13 << 20, 5 << 20} {
		n, err := s.ReadAt(ctx, a, buf[:4096], off)
		if n != 4096 || !bytes.Equal(buf[:n], data[off:off+4096]) {
			t.Fatalf("random read %d at %d = %d, %v: wrong bytes", i, off, n, err)
		}
	}
	if c := cached(); c <= before {
		t.Errorf("random reads cached nothing: %d bytes before, %d after", before, c)
	}
}

// gateNet holds every shard write until writes for want distinct blobs have
// started, so a writer that waits for one blob's shards before sending the
// next never gets going and fails after a timeout.
type gateNet struct {
	*fakeNet
	want int
	mu   sync.Mutex
	seen map[addr.Addr]bool
	open chan struct{}
}

func (g *gateNet) PutShard(ctx context.Context, peer string, k ShardKey, b []byte) (bool, error) {
	g.mu.Lock()
	if !g.seen[k.Addr] {
		g.seen[k.Addr] = true
		if len(g.seen) == g.want {
			close(g.open)
		}
	}
	g.mu.Unlock()
	select {
	case <-g.open:
	case <-time.After(2 * time.Second):
		return false, errors.New("gate: the writer sent one blob at a time")
	}
	return g.fakeNet.PutShard(ctx, peer, k, b)
}

// TestUploadOneRound: a file's chunks and its manifest are stored in one
// round of shard writes, and PutRange stores its new chunks in parallel.
func TestUploadOneRound(t *testing.T) {
	ctx := context.Background()
	base := newFakeNet(6)
	s0 := newTestStore(t, base, 4, 2)
	old := randBytes(256<<10, 21)
	oldAddr, _, err := s0.PutFile(ctx, bytes.NewReader(old))
	if err != nil {
		t.Fatal(err)
	}
	fresh := randBytes(256<<10, 22)
	// A file of a few chunks: its chunks and its manifest in one round.
	two := randBytes(40<<10, 23)
	_, st, err := s0.PutFile(ctx, bytes.NewReader(two))
	if err != nil || st.Chunks < 2 || st.Chunks+1 > s0.cfg.Parallel {
		t.Fatalf("PutFile of the few-chunk file: %d chunks, %v", st.Chunks, err)
	}
	for _, tc := range []struct {
		name string
		want int // distinct blobs whose writes must be in flight together
		put  func(s *Store) (addr.Addr, error)
		data []byte
	}{
		{"chunks and their manifest", st.Chunks + 1, func(s *Store) (addr.Addr, error) {
			a, _, err := s.PutFile(ctx, bytes.NewReader(two))
			return a, err
		}, two},
		{"rewrite of every chunk", 4, func(s *Store) (addr.Addr, error) {
			a, _, err := s.PutRange(ctx, oldAddr, bytes.NewReader(fresh), int64(len(fresh)), 0, int64(len(fresh)))
			return a, err
		}, fresh},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := &gateNet{fakeNet: base, want: tc.want, seen: map[addr.Addr]bool{}, open: make(chan struct{})}
			s := newTestStore(t, base, 4, 2)
			s.cfg.Net = g
			a, err := tc.put(s)
			if err != nil {
				t.Fatal(err)
			}
			var out bytes.Buffer
			if _, err := s0.WriteFile(ctx, a, &out); err != nil || !bytes.Equal(out.Bytes(), tc.data) {
				t.Fatalf("read back: %v", err)
			}
		})
	}
}

// damage applies f to every stored copy of shard key.
func (n *fakeNet) damage(key ShardKey, f func(shard []byte) []byte) {
	n.mu.Lock()
	defer n.mu.Unlock()
	for _, m := range n.data {
		if b, ok := m[key]; ok {
			m[key] = f(b)
		}
	}
}

// flipPayload flips a bit in a shard's payload, leaving its header (and
// the payload checksum the header holds) as it was.
func flipPayload(b []byte) []byte { b[erasure.HeaderSize+7] ^= 0x10; return b }

// forge flips a bit in the payload and recomputes both checksums, as someone
// who wants the shard to pass its checks would.
func forge(b []byte) []byte {
	b = flipPayload(b)
	crc := func(p []byte) uint32 { return crc32.Checksum(p, crc32.MakeTable(crc32.Castagnoli)) }
	binary.LittleEndian.PutUint32(b[20:], crc(b[erasure.HeaderSize:]))
	binary.LittleEndian.PutUint32(b[24:], crc(b[:24]))
	return b
}

// TestCorruptShards: damaged shards of a data chunk are found and read
// around as long as k good ones remain; a damaged payload is found only
// once the decoded chunk fails its address check.
func TestCorruptShards(t *testing.T) {
	ctx := context.Background()
	data := randBytes(3000, 31) // one chunk
	for _, tc := range []struct {
		name   string
		damage map[int]func([]byte) []byte
		down   int // index of a shard whose holder is down, or -1
		gets   int // shard reads of the chunk, 0: not checked
		err    string
	}{
		{"intact", nil, -1, 4, ""},
		{"data payload flipped, header intact", map[int]func([]byte) []byte{1: flipPayload}, -1, 5, ""},
		{"two data payloads flipped", map[int]func([]byte) []byte{0: flipPayload, 3: flipPayload}, -1, 6, ""},
		{"data header flipped", map[int]func([]byte) []byte{2: func(b []byte) []byte { b[10] ^= 1; return b }}, -1, 5, ""},
		{"payload checksum field wrong, payload intact: not looked at", map[int]func([]byte) []byte{0: func(b []byte) []byte {
			b[20] ^= 1
			binary.LittleEndian.PutUint32(b[24:], crc32.Checksum(b[:24], crc32.MakeTable(crc32.Castagnoli)))
			return b
		}}, -1, 4, ""},
		{"parity payload flipped, a data shard's holder down", map[int]func([]byte) []byte{4: flipPayload}, 0, 0, ""},
		{"three payloads flipped", map[int]func([]byte) []byte{0: flipPayload, 1: flipPayload, 5: flipPayload}, -1, 0,
			"found 3 of 6 shards, need 4"},
		{"two payloads flipped, a holder down", map[int]func([]byte) []byte{1: flipPayload, 4: flipPayload}, 2, 0,
			"found 3 of 6 shards, need 4"},
		{"forged with valid checksums", map[int]func([]byte) []byte{3: forge}, -1, 0, "do not match the address"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n := newFakeNet(6)
			s := newTestStore(t, n, 4, 2)
			a, _, err := s.PutFile(ctx, bytes.NewReader(data))
			if err != nil {
				t.Fatal(err)
			}
			st, err := s.Stripes(ctx, a)
			if err != nil {
				t.Fatal(err)
			}
			// The stripe holding the bytes: a file of one chunk is its
			// self manifest, whose plaintext has a header first.
			e, want := st[len(st)-1], data
			if len(st) == 1 {
				want = appendSelfManifest(nil, data)
			}
			for i, f := range tc.damage {
				n.damage(ShardKey{e.Addr, i}, f)
			}
			if tc.down >= 0 {
				n.setDown(true, s.PlaceShards(e)[tc.down].ID)
			}
			// Through the recycled buffers of a BufferedNet, and without.
			for _, net := range []Net{n, plainNet{n}} {
				n.mu.Lock()
				before := n.gets
				n.mu.Unlock()
				r := newTestStore(t, n, 4, 2)
				r.cfg.Net = net
				got, err := r.GetBlob(ctx, e)
				n.mu.Lock()
				gets := n.gets - before
				n.mu.Unlock()
				if tc.err != "" {
					if err == nil || !strings.Contains(err.Error(), tc.err) {
						t.Fatalf("%T: GetBlob err = %v, want one saying %q", net, err, tc.err)
					}
					if strings.Contains(tc.err, "found") && (!errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), "payload checksum")) {
						t.Errorf("%T: GetBlob err = %v, want ErrUnavailable naming the bad checksums", net, err)
					}
					if strings.Contains(tc.err, "address") && !errors.Is(err, ErrCorrupt) {
						t.Errorf("%T: GetBlob err = %v, want ErrCorrupt", net, err)
					}
					continue
				}
				if err != nil || !bytes.Equal(got, want) {
					t.Fatalf("%T: GetBlob = %d bytes, %v; want the %d bytes stored", net, len(got), err, len(want))
				}
				if tc.gets != 0 && gets != tc.gets {
					t.Errorf("%T: GetBlob read %d shards, want %d", net, gets, tc.gets)
				}
			}
		})
	}
}

// plainNet hides fakeNet's GetShardTo: a Net that is not a BufferedNet.
type plainNet struct{ Net }

// TestReadBuffersNotShared: what a read returns is its own, though shard
// buffers are recycled from one read to the next.
func TestReadBuffersNotShared(t *testing.T) {
	ctx := context.Background()
	for _, c := range []struct{ k, m int }{{4, 2}, {2, 1}, {1, 1}} {
		t.Run(fmt.Sprintf("k=%d,m=%d", c.k, c.m), func(t *testing.T) {
			n := newFakeNet(6)
			s := newTestStore(t, n, c.k, c.m)
			data := randBytes(400<<10, 41)
			a, _, err := s.PutFile(ctx, bytes.NewReader(data))
			if err != nil {
				t.Fatal(err)
			}
			st, err := s.Stripes(ctx, a)
			if err != nil {
				t.Fatal(err)
			}
			var got, want [][]byte
			for _, e := range st[1:] {
				b, err := s.GetBlob(ctx, e)
				if err != nil {
					t.Fatal(err)
				}
				got, want = append(got, b), append(want, bytes.Clone(b))
			}
			if len(got) < 3 {
				t.Fatalf("%d chunks, want more", len(got))
			}
			if !bytes.Equal(bytes.Join(want, nil), data) {
				t.Fatal("chunks read do not make the file")
			}
			for i := range got {
				if !bytes.Equal(got[i], want[i]) {
					t.Errorf("chunk %d changed after later reads", i)
				}
			}
		})
	}
}

// TestRootWithoutListing: a file's root manifest, whose coding the reader
// does not know, is fetched where the reader's own coding places it, with
// no round of shard lists when it is there (per-shard rankings do not
// depend on the coding, so another coding's first shards are found too),
// and still found by listing when the shards sit elsewhere (written while
// the writer saw other members).
func TestRootWithoutListing(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name      string
		wk, wm    int    // the writer's coding
		sees      string // the only members the writer sees ("" = all)
		wantLists bool
	}{
		{"same coding", 4, 2, "", false},
		{"other coding", 2, 1, "", false},
		{"placed elsewhere", 2, 1, "p3 p4 p5", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n := newFakeNet(6)
			w := newTestStore(t, n, tc.wk, tc.wm)
			if tc.sees != "" {
				var ms []placement.Member
				for _, id := range strings.Fields(tc.sees) {
					ms = append(ms, placement.Member{ID: id, Weight: 1})
				}
				w.cfg.Members = func() []placement.Member { return ms }
				w.cfg.Placement = w.cfg.Members
			}
			data := randBytes(300<<10, 31)
			a, _, err := w.PutFile(ctx, bytes.NewReader(data))
			if err != nil {
				t.Fatal(err)
			}
			r := newTestStore(t, n, 4, 2)
			n.mu.Lock()
			n.lists = 0
			n.mu.Unlock()
			var out bytes.Buffer
			if _, err := r.WriteFile(ctx, a, &out); err != nil || !bytes.Equal(out.Bytes(), data) {
				t.Fatalf("read back: %v", err)
			}
			n.mu.Lock()
			lists := n.lists
			n.mu.Unlock()
			if got := lists > 0; got != tc.wantLists {
				t.Errorf("%d shard lists to read the file; want lists: %v", lists, tc.wantLists)
			}
		})
	}
}

// hangNet never answers shard writes to the peers in hang until their
// context ends: a stopped process, not a dead one.
type hangNet struct {
	*fakeNet
	hang map[string]bool
}

func (h *hangNet) PutShard(ctx context.Context, peer string, k ShardKey, b []byte) (bool, error) {
	if h.hang[peer] {
		<-ctx.Done()
		return false, ctx.Err()
	}
	return h.fakeNet.PutShard(ctx, peer, k, b)
}

// TestWriteHedge: a holder that hangs costs a write about HedgeAfter, not
// the request timeout, and the stripe still gets all k+m shards, readable
// without the hung peer. With more than m holders hung there is nothing to
// hedge with that keeps the stripe's promise: the write waits.
func TestWriteHedge(t *testing.T) {
	for _, tc := range []struct {
		name    string
		hung    []string
		succeed bool
	}{
		{"one holder hangs", []string{"p3"}, true},
		{"m holders hang", []string{"p1", "p4"}, true},
		{"m+1 holders hang", []string{"p1", "p2", "p4"}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			base := newFakeNet(7)
			h := &hangNet{fakeNet: base, hang: map[string]bool{}}
			for _, p := range tc.hung {
				h.hang[p] = true
			}
			s := newTestStore(t, base, 4, 2)
			s.cfg.Net = h
			s.cfg.HedgeAfter = 50 * time.Millisecond
			data := randBytes(100<<10, 31)
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			defer cancel()
			t0 := time.Now()
			a, _, err := s.PutFile(ctx, bytes.NewReader(data))
			took := time.Since(t0)
			if !tc.succeed {
				if err == nil {
					t.Fatalf("PutFile with %d of 6 holders hung succeeded", len(tc.hung))
				}
				return
			}
			if err != nil {
				t.Fatalf("PutFile: %v (after %v)", err, took)
			}
			if took > time.Second {
				t.Fatalf("PutFile took %v with a hedge after 50ms", took)
			}
			// Every shard of every stripe is held by a peer that answers.
			base.setDown(true, tc.hung...)
			held := map[addr.Addr]map[int]bool{}
			base.mu.Lock()
			for p, m := range base.data {
				if h.hang[p] {
					continue
				}
				for k := range m {
					if held[k.Addr] == nil {
						held[k.Addr] = map[int]bool{}
					}
					held[k.Addr][k.Index] = true
				}
			}
			base.mu.Unlock()
			for a, idx := range held {
				if len(idx) != 6 {
					t.Errorf("blob %s: shards %v held, want all 6", a.Short(), idx)
				}
			}
			var out bytes.Buffer
			if _, err := s.WriteFile(context.Background(), a, &out); err != nil || !bytes.Equal(out.Bytes(), data) {
				t.Fatalf("read back without the hung peers: %v", err)
			}
		})
	}
}

// TestSelfManifest: a file of one chunk is one stripe, its self manifest,
// and reads, streams, sizes and rewrites of it work as for any file.
func TestSelfManifest(t *testing.T) {
	ctx := context.Background()
	for _, size := range []int{1, 3000, 4 << 10} { // 4 KiB: the test chunking's Min
		t.Run(fmt.Sprint(size), func(t *testing.T) {
			n := newFakeNet(6)
			s := newTestStore(t, n, 4, 2)
			data := randBytes(size, uint64(size))
			a, st, err := s.PutFile(ctx, bytes.NewReader(data))
			if err != nil || st.Chunks != 1 {
				t.Fatalf("PutFile: %d chunks, %v", st.Chunks, err)
			}
			if got := n.shardCount(); got != 6 {
				t.Errorf("%d shards stored, want 6: one stripe", got)
			}
			stripes, err := s.Stripes(ctx, a)
			if err != nil || len(stripes) != 1 || stripes[0].Addr != a {
				t.Fatalf("Stripes = %v, %v; want the root's only", stripes, err)
			}
			// A reader that never saw the file, then the same reader once
			// its chunk cache has dropped the bytes.
			r := newTestStore(t, n, 4, 2)
			for round := range 2 {
				if round == 1 {
					r.cache.chunks = newLRU[addr.Addr, []byte](1<<20, func(b []byte) int64 { return int64(cap(b)) })
				}
				buf := make([]byte, size+10)
				got, err := r.ReadAt(ctx, a, buf, 0)
				if got != size || !bytes.Equal(buf[:got], data) || (err != nil && err != io.EOF) {
					t.Fatalf("round %d: ReadAt = %d, %v", round, got, err)
				}
				if size > 2 {
					mid := make([]byte, 2)
					if _, err := r.ReadAt(ctx, a, mid, int64(size/2)); err != nil || !bytes.Equal(mid, data[size/2:size/2+2]) {
						t.Fatalf("round %d: ReadAt in the middle: %v", round, err)
					}
				}
			}
			var out bytes.Buffer
			if m, err := r.WriteFile(ctx, a, &out); err != nil || m != int64(size) || !bytes.Equal(out.Bytes(), data) {
				t.Fatalf("WriteFile = %d, %v", m, err)
			}
			if sz, err := r.Stat(ctx, a); err != nil || sz != int64(size) {
				t.Fatalf("Stat = %d, %v", sz, err)
			}
			// Rewrites over it: in place, then growing past one chunk.
			edit := bytes.Clone(data)
			edit[size/2] ^= 0xff
			b, _, err := r.PutRange(ctx, a, bytes.NewReader(edit), int64(size), int64(size/2), int64(size/2)+1)
			if err != nil {
				t.Fatal(err)
			}
			out.Reset()
			if _, err := r.WriteFile(ctx, b, &out); err != nil || !bytes.Equal(out.Bytes(), edit) {
				t.Fatalf("after an overwrite: %v", err)
			}
			if stripes, err := r.Stripes(ctx, b); err != nil || len(stripes) != 1 {
				t.Errorf("the overwritten file has %d stripes (%v), want 1: still one chunk", len(stripes), err)
			}
			grown := append(bytes.Clone(edit), randBytes(100<<10, 9)...)
			c, _, err := r.PutRange(ctx, b, bytes.NewReader(grown), int64(len(grown)), int64(size), int64(len(grown)))
			if err != nil {
				t.Fatal(err)
			}
			out.Reset()
			if _, err := newTestStore(t, n, 4, 2).WriteFile(ctx, c, &out); err != nil || !bytes.Equal(out.Bytes(), grown) {
				t.Fatalf("after an append past one chunk: %v", err)
			}
		})
	}
}

// TestZeroChunks: the chunks of a hole are stored once; later holes of any
// file refer to them without writing a shard, and read back as zeros.
func TestZeroChunks(t *testing.T) {
	ctx := context.Background()
	n := newFakeNet(6)
	s := newTestStore(t, n, 4, 2)
	hole := make([]byte, 2<<20) // 32 chunks of the test chunking's 64 KiB Max
	first := append(randBytes(100<<10, 51), hole...)
	if _, _, err := s.PutFile(ctx, bytes.NewReader(first)); err != nil {
		t.Fatal(err)
	}
	n.mu.Lock()
	before := n.puts
	n.mu.Unlock()
	second := append(append(randBytes(50<<10, 52), hole...), randBytes(50<<10, 53)...)
	a, st, err := s.PutFile(ctx, bytes.NewReader(second))
	if err != nil {
		t.Fatal(err)
	}
	n.mu.Lock()
	puts := n.puts - before
	n.mu.Unlock()
	// Only the chunks with data, the one where the hole starts and the
	// manifest are written: far fewer than the file's chunks.
	t.Logf("%d chunks, %d shard writes", st.Chunks, puts)
	if st.Chunks < 32 || puts > 6*16 {
		t.Errorf("%d chunks, %d shard writes: the hole's chunks were written again", st.Chunks, puts)
	}
	var out bytes.Buffer
	if _, err := newTestStore(t, n, 4, 2).WriteFile(ctx, a, &out); err != nil || !bytes.Equal(out.Bytes(), second) {
		t.Fatalf("read back: %v", err)
	}
}

// TestZeroBytes: PutFile and PutRange report how many of a file's bytes
// are in chunks of zeros (holes), counting the holes of kept old chunks
// too, and a file of zeros alone is a hole, not a self manifest.
func TestZeroBytes(t *testing.T) {
	ctx := context.Background()
	n := newFakeNet(6)
	s := newTestStore(t, n, 4, 2)
	zc := int64(s.cfg.Chunking.ZeroCut())
	data := func(size int, seed uint64) []byte { return randBytes(size, seed) }
	zeros := func(size int) []byte { return make([]byte, size) }
	cat := func(parts ...[]byte) []byte { return bytes.Join(parts, nil) }
	tests := []struct {
		name string
		file []byte
		// holes: zero bytes at least this many (the hole's middle) and
		// at most the zeros in the file.
		min, max int64
	}{
		{"data only", data(300<<10, 61), 0, 0},
		{"zeros only, one chunk", zeros(10 << 10), 10 << 10, 10 << 10},
		{"zeros only", zeros(1 << 20), 1 << 20, 1 << 20},
		{"hole in the middle", cat(data(100<<10, 62), zeros(2<<20), data(100<<10, 63)), 2<<20 - 2*zc, 2 << 20},
		{"hole at the end", cat(data(100<<10, 64), zeros(1<<20)), 1<<20 - zc, 1 << 20},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a, st, err := s.PutFile(ctx, bytes.NewReader(tc.file))
			if err != nil {
				t.Fatal(err)
			}
			if st.Zero < tc.min || st.Zero > tc.max {
				t.Errorf("PutFile: %d zero bytes, want %d..%d", st.Zero, tc.min, tc.max)
			}
			// A rewrite of one byte keeps most old chunks: their holes
			// still count, as many as a fresh store of the result finds.
			changed := bytes.Clone(tc.file)
			changed[len(changed)-1] ^= 0xff
			b, rst, err := s.PutRange(ctx, a, bytes.NewReader(changed), int64(len(changed)), int64(len(changed)-1), int64(len(changed)))
			if err != nil {
				t.Fatal(err)
			}
			_, fresh, err := s.PutFile(ctx, bytes.NewReader(changed))
			if err != nil {
				t.Fatal(err)
			}
			if rst.Zero != fresh.Zero {
				t.Errorf("PutRange: %d zero bytes; a fresh PutFile of the same bytes: %d", rst.Zero, fresh.Zero)
			}
			var out bytes.Buffer
			if _, err := s.WriteFile(ctx, b, &out); err != nil || !bytes.Equal(out.Bytes(), changed) {
				t.Fatalf("read back the rewrite: %v", err)
			}
		})
	}
}

// TestSeek: SEEK_DATA and SEEK_HOLE over a stored file find its chunks of
// zeros, at chunk granularity.
func TestSeek(t *testing.T) {
	ctx := context.Background()
	s := newTestStore(t, newFakeNet(6), 4, 2)
	zc := int64(s.cfg.Chunking.ZeroCut())
	const head, hole, tail = 100 << 10, 2 << 20, 100 << 10
	file := bytes.Join([][]byte{randBytes(head, 71), make([]byte, hole), randBytes(tail, 72)}, nil)
	a, _, err := s.PutFile(ctx, bytes.NewReader(file))
	if err != nil {
		t.Fatal(err)
	}
	size := int64(len(file))
	seek := func(off int64, isHole bool) (int64, bool) {
		t.Helper()
		pos, ok, err := s.Seek(ctx, a, off, isHole)
		if err != nil {
			t.Fatal(err)
		}
		return pos, ok
	}
	if pos, ok := seek(0, false); !ok || pos != 0 {
		t.Errorf("SEEK_DATA 0 = %d, %v; want 0", pos, ok)
	}
	h, ok := seek(0, true)
	if !ok || h < head || h > head+zc {
		t.Errorf("SEEK_HOLE 0 = %d, %v; want within a chunk after %d", h, ok, head)
	}
	d, ok := seek(h, false)
	if !ok || d <= h || d > head+hole || d < head+hole-zc {
		t.Errorf("SEEK_DATA %d = %d, %v; want within a chunk before %d", h, d, ok, head+hole)
	}
	if pos, ok := seek(d, true); !ok || pos != size {
		t.Errorf("SEEK_HOLE %d = %d, %v; want the end, %d", d, pos, ok, size)
	}
	if _, ok := seek(size, false); ok {
		t.Error("SEEK_DATA at the end found data")
	}
	if _, ok := seek(size, true); ok {
		t.Error("SEEK_HOLE at the end found a hole")
	}
}

// TestFailedPeerPassedOver: a peer that fails shard writes while it is a
// member (its disk is full) is left out of the next stripes' placement,
// as a slow one is (until the mark lapses), instead of costing every
// stripe a failed write.
func TestFailedPeerPassedOver(t *testing.T) {
	n := newFakeNet(8)
	s := newTestStore(t, n, 4, 2)
	s.cfg.Parallel = 1 // one stripe at a time: each sees the marks of the last
	n.setDown(true, "p0")
	data := randBytes(2<<20, 81) // about 40 chunks of 6 shards on 8 peers
	a, st, err := s.PutFile(context.Background(), bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	n.mu.Lock()
	tries := n.tries["p0"]
	n.mu.Unlock()
	t.Logf("%d chunks, %d writes tried on the failing peer", st.Chunks, tries)
	if st.Chunks < 20 || tries > 2 {
		t.Errorf("%d chunks, %d shard writes tried on the failing peer: want it passed over after the first", st.Chunks, tries)
	}
	var out bytes.Buffer
	if _, err := s.WriteFile(context.Background(), a, &out); err != nil || !bytes.Equal(out.Bytes(), data) {
		t.Fatalf("read back: %v", err)
	}
}
