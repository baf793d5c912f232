package blockstore

import (
	"bufio"
	"context"
	"encoding/binary"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"
)

const benchValueSize = 256 << 10

func benchValue(seed uint64) []byte {
	b := make([]byte, benchValueSize)
	r := rand.New(rand.NewPCG(seed, 1))
	for i := 0; i < len(b); i += 8 {
		binary.LittleEndian.PutUint64(b[i:], r.Uint64())
	}
	return b
}

func benchKey(i uint64) []byte {
	k := make([]byte, 34)
	binary.BigEndian.PutUint64(k, i*0x9e3779b97f4a7c15)
	binary.BigEndian.PutUint64(k[24:], i)
	return k
}

func benchOpen(b *testing.B, tweak func(*badger.Options)) *Store {
	b.Helper()
	s, err := open(b.TempDir(), Options{}, tweak)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = s.Close() })
	return s
}

// BenchmarkPut measures durable 256 KiB Puts, from one goroutine and from
// 16 goroutines (RunParallel with parallelism 8 on 2 CPUs) to show group
// commit.
func BenchmarkPut(b *testing.B) {
	val := benchValue(1)
	ctx := context.Background()
	b.Run("sequential", func(b *testing.B) {
		s := benchOpen(b, nil)
		b.SetBytes(benchValueSize)
		b.ReportAllocs()
		var i uint64
		for b.Loop() {
			i++
			if err := s.Put(ctx, benchKey(i), val); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "puts/s")
	})
	b.Run("parallel16", func(b *testing.B) {
		s := benchOpen(b, nil)
		b.SetBytes(benchValueSize)
		b.ReportAllocs()
		b.SetParallelism((16 + runtimeProcs() - 1) / runtimeProcs())
		var n atomic.Uint64
		start := time.Now()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if err := s.Put(ctx, benchKey(n.Add(1)), val); err != nil {
					b.Error(err)
					return
				}
			}
		})
		b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "puts/s")
	})
	// 4 KiB values: syncs dominate, so this isolates group commit from disk
	// bandwidth.
	small := val[:4<<10]
	b.Run("sequential4KiB", func(b *testing.B) {
		s := benchOpen(b, nil)
		b.SetBytes(int64(len(small)))
		var i uint64
		for b.Loop() {
			i++
			if err := s.Put(ctx, benchKey(i), small); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "puts/s")
	})
	b.Run("parallel16_4KiB", func(b *testing.B) {
		s := benchOpen(b, nil)
		b.SetBytes(int64(len(small)))
		b.SetParallelism((16 + runtimeProcs() - 1) / runtimeProcs())
		var n atomic.Uint64
		start := time.Now()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if err := s.Put(ctx, benchKey(n.Add(1)), small); err != nil {
					b.Error(err)
					return
				}
			}
		})
		b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "puts/s")
	})
	b.Run("identical", func(b *testing.B) {
		s := benchOpen(b, nil)
		if err := s.Put(ctx, benchKey(0), val); err != nil {
			b.Fatal(err)
		}
		b.SetBytes(benchValueSize)
		b.ReportAllocs()
		for b.Loop() {
			if err := s.Put(ctx, benchKey(0), val); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkGet measures verified 256 KiB Gets of values in the page cache.
func BenchmarkGet(b *testing.B) {
	const n = 256
	ctx := context.Background()
	s := benchOpen(b, nil)
	for i := range uint64(n) {
		if err := s.Put(ctx, benchKey(i), benchValue(i)); err != nil {
			b.Fatal(err)
		}
	}
	b.Run("sequential", func(b *testing.B) {
		b.SetBytes(benchValueSize)
		b.ReportAllocs()
		var i uint64
		for b.Loop() {
			i++
			if _, err := s.Get(ctx, benchKey(i%n)); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("parallel", func(b *testing.B) {
		b.SetBytes(benchValueSize)
		b.ReportAllocs()
		var c atomic.Uint64
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if _, err := s.Get(ctx, benchKey(c.Add(1)%n)); err != nil {
					b.Error(err)
					return
				}
			}
		})
	})
}

// BenchmarkValueThreshold compares the chosen 1 KiB ValueThreshold (shards
// in the value log) with badger's 1 MiB default (shards inside the LSM tree)
// for 256 KiB Puts from 16 goroutines. It reports write amplification as
// bytes the process dirtied for the disk (/proc/self/io write_bytes) per user
// byte, and the directory's final disk usage per user byte. Run with a fixed
// count to get compactions going, e.g. -benchtime=4000x.
func BenchmarkValueThreshold(b *testing.B) {
	for _, th := range []int64{1 << 10, 1 << 20} {
		b.Run(fmt.Sprintf("threshold=%dKiB", th>>10), func(b *testing.B) {
			dir := b.TempDir()
			s, err := open(dir, Options{}, func(o *badger.Options) { o.ValueThreshold = th })
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			val := benchValue(2)
			ctx := context.Background()
			b.SetBytes(benchValueSize)
			w0 := procWriteBytes(b)
			b.ResetTimer()
			var next atomic.Uint64
			var wg sync.WaitGroup
			for range 16 {
				wg.Go(func() {
					for {
						i := next.Add(1)
						if i > uint64(b.N) {
							return
						}
						if err := s.Put(ctx, benchKey(i), val); err != nil {
							b.Error(err)
							return
						}
					}
				})
			}
			wg.Wait()
			b.StopTimer()
			// Let background compaction finish its current work a little.
			time.Sleep(2 * time.Second)
			user := float64(b.N) * benchValueSize
			b.ReportMetric(float64(procWriteBytes(b)-w0)/user, "wamp")
			b.ReportMetric(float64(dirSize(b, dir))/user, "space")
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "puts/s")
		})
	}
}

func runtimeProcs() int {
	n, _ := strconv.Atoi(os.Getenv("GOMAXPROCS"))
	if n > 0 {
		return n
	}
	return max(1, numCPU())
}

func procWriteBytes(b *testing.B) int64 {
	f, err := os.Open("/proc/self/io")
	if err != nil {
		b.Skip("no /proc/self/io")
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "write_bytes: "); ok {
			n, _ := strconv.ParseInt(v, 10, 64)
			return n
		}
	}
	b.Skip("no write_bytes in /proc/self/io")
	return 0
}

// dirSize returns the allocated size of the files in dir (sparse value-log
// files count only their allocated blocks).
func dirSize(b *testing.B, dir string) int64 {
	var total int64
	err := filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		total += allocated(fi)
		return nil
	})
	if err != nil {
		b.Fatal(err)
	}
	return total
}
