package store

import (
	"bytes"
	"context"
	"io"
	"math/rand/v2"
	"syscall"
	"testing"
	"time"

	"github.com/reefproject/reef/addr"
	"github.com/reefproject/reef/chunker"
	"github.com/reefproject/reef/crypt"
	"github.com/reefproject/reef/erasure"
)

// BenchmarkPipeline is the write path's CPU work on one goroutine: chunk,
// seal (convergent key + AES-GCM), address (BLAKE3), erasure-code 4+2 with
// checksums. No network, no disk.
func BenchmarkPipeline(b *testing.B) {
	data := make([]byte, 64<<20)
	r := rand.New(rand.NewPCG(1, 1))
	for i := range data {
		data[i] = byte(r.Uint32())
	}
	keys, _ := crypt.NewKeys(bytes.Repeat([]byte{1}, 32))
	coder, _ := erasure.New(4, 2)
	sealBuf := make([]byte, 0, 5<<20)
	shardBuf := make([]byte, 0, 8<<20) // as storeStripe's pool gives
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		ch, _ := chunker.New(bytes.NewReader(data), chunker.DefaultParams())
		for {
			c, err := ch.Next()
			if err == io.EOF {
				break
			}
			blob, _ := keys.Seal(sealBuf, c)
			a := addr.Sum(blob)
			_ = a
			if _, err := coder.EncodeTo(shardBuf, blob); err != nil {
				b.Fatal(err)
			}
		}
	}
}

// benchNet is the in-memory cluster of the unit tests, but a shard read
// allocates and fills its buffer as the peer's HTTP client does (make, then
// io.ReadFull of the body), so the reader's allocation costs show.
type benchNet struct{ *fakeNet }

func (n benchNet) GetShard(ctx context.Context, peer string, k ShardKey) ([]byte, error) {
	n.mu.Lock()
	src, ok := n.data[peer][k]
	n.mu.Unlock()
	if !ok {
		return nil, ErrShardNotFound
	}
	b := make([]byte, len(src))
	if _, err := io.ReadFull(bytes.NewReader(src), b); err != nil {
		return nil, err
	}
	return b, nil
}

// GetShardTo implements BufferedNet: the body is read into buf when it
// fits, as the peer's client does.
func (n benchNet) GetShardTo(ctx context.Context, peer string, k ShardKey, buf []byte) ([]byte, error) {
	n.mu.Lock()
	src, ok := n.data[peer][k]
	n.mu.Unlock()
	if !ok {
		return nil, ErrShardNotFound
	}
	b := buf[:cap(buf)]
	if len(b) < len(src) {
		b = make([]byte, len(src))
	}
	b = b[:len(src)]
	if _, err := io.ReadFull(bytes.NewReader(src), b); err != nil {
		return nil, err
	}
	return b, nil
}

// benchFile stores size random bytes with the default chunking (1 MiB
// average chunks) on an in-memory 6-peer cluster, k=4 m=2, and returns a
// store that reads through benchNet, and the file's address.
func benchFile(b *testing.B, size int) (*Store, []byte, addr.Addr) {
	b.Helper()
	n := newFakeNet(6)
	keys, err := crypt.NewKeys(bytes.Repeat([]byte{7}, 32))
	if err != nil {
		b.Fatal(err)
	}
	s, err := New(Config{Keys: keys, K: 4, M: 2, Net: benchNet{n}, Members: n.members})
	if err != nil {
		b.Fatal(err)
	}
	data := randBytes(size, 1)
	a, _, err := s.PutFile(context.Background(), bytes.NewReader(data))
	if err != nil {
		b.Fatal(err)
	}
	return s, data, a
}

// BenchmarkGetBlob is the reading peer's CPU per data chunk, with every data
// shard present: fetch k shards, check them, join, check the address, open.
// No network, no disk.
func BenchmarkGetBlob(b *testing.B) {
	ctx := context.Background()
	s, _, a := benchFile(b, 16<<20)
	ix, err := s.index(ctx, a)
	if err != nil {
		b.Fatal(err)
	}
	var total int64
	for _, e := range ix.entries {
		total += e.Length
	}
	for _, e := range ix.entries { // warm up
		if _, err := s.GetBlob(ctx, e); err != nil {
			b.Fatal(err)
		}
	}
	b.SetBytes(total / int64(len(ix.entries)))
	b.ReportAllocs()
	b.ResetTimer()
	cpu := cpuTime()
	i := 0
	for b.Loop() {
		if _, err := s.GetBlob(ctx, ix.entries[i%len(ix.entries)]); err != nil {
			b.Fatal(err)
		}
		i++
	}
	reportCPU(b, cpu)
}

// cpuTime is the CPU time the process has used (user and system, every
// thread: GC and background goroutines count).
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// reportCPU reports the CPU time used since start per iteration, as
// cpu-ns/op: on a shared 2-core machine it varies less than the wall time,
// and CPU is what a reading peer runs out of.
func reportCPU(b *testing.B, start time.Duration) {
	b.ReportMetric(float64(cpuTime()-start)/float64(b.N), "cpu-ns/op")
}

// BenchmarkReadAt reads a 16 MiB file sequentially in 1 MiB reads (what the
// mount asks for) through a cold chunk cache, read-ahead included.
func BenchmarkReadAt(b *testing.B) {
	ctx := context.Background()
	s0, data, a := benchFile(b, 16<<20)
	buf := make([]byte, 1<<20)
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	b.ResetTimer()
	cpu := cpuTime()
	for b.Loop() {
		s, err := New(s0.cfg) // an empty cache
		if err != nil {
			b.Fatal(err)
		}
		for off := int64(0); off < int64(len(data)); off += int64(len(buf)) {
			n, err := s.ReadAt(ctx, a, buf, off)
			if err != nil && err != io.EOF {
				b.Fatal(err)
			}
			if n != min(len(buf), len(data)-int(off)) {
				b.Fatalf("ReadAt(%d) = %d bytes", off, n)
			}
		}
	}
	reportCPU(b, cpu)
}
