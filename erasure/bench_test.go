package erasure_test

import (
	"fmt"
	"testing"

	"github.com/klauspost/reedsolomon"

	"github.com/reefproject/reef/erasure"
)

const benchSize = 1 << 20

var benchParams = []struct{ k, m int }{{4, 2}, {10, 4}}

func BenchmarkEncode(b *testing.B) {
	for _, p := range benchParams {
		b.Run(fmt.Sprintf("k=%d,m=%d,1MiB", p.k, p.m), func(b *testing.B) {
			c := mustNew(b, p.k, p.m)
			data := randBytes(1, benchSize)
			mustEncode(b, c, data) // warm up
			b.SetBytes(benchSize)
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				if _, err := c.Encode(data); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkDecode decodes with two data shards missing, so it measures
// reconstruction.
func BenchmarkDecode(b *testing.B) {
	for _, p := range benchParams {
		b.Run(fmt.Sprintf("k=%d,m=%d,1MiB,2missing", p.k, p.m), func(b *testing.B) {
			c := mustNew(b, p.k, p.m)
			data := randBytes(1, benchSize)
			shards := mustEncode(b, c, data)
			shards[0], shards[1] = nil, nil
			if _, err := c.Decode(shards); err != nil { // warm up
				b.Fatal(err)
			}
			b.SetBytes(benchSize)
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				if _, err := c.Decode(shards); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkDecodeAllData decodes with every data shard present: checksums and
// concatenation only (concatenation only for DecodeUnchecked).
func BenchmarkDecodeAllData(b *testing.B) {
	for _, p := range benchParams {
		for _, v := range []struct {
			name   string
			decode func(*erasure.Coder, [][]byte) ([]byte, error)
		}{
			{"", (*erasure.Coder).Decode},
			{",unchecked", (*erasure.Coder).DecodeUnchecked},
		} {
			b.Run(fmt.Sprintf("k=%d,m=%d,1MiB%s", p.k, p.m, v.name), func(b *testing.B) {
				c := mustNew(b, p.k, p.m)
				shards := mustEncode(b, c, randBytes(1, benchSize))
				b.SetBytes(benchSize)
				b.ReportAllocs()
				b.ResetTimer()
				for range b.N {
					if _, err := v.decode(c, shards); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}

// BenchmarkRawReedSolomon is plain reedsolomon Split+Encode on the same data,
// with the library defaults and with one goroutine per call, for comparison.
func BenchmarkRawReedSolomon(b *testing.B) {
	for _, v := range []struct {
		name string
		opts []reedsolomon.Option
	}{
		{"default", nil},
		{"1goroutine", []reedsolomon.Option{reedsolomon.WithMaxGoroutines(1)}},
	} {
		b.Run("k=4,m=2,1MiB,"+v.name, func(b *testing.B) {
			enc, err := reedsolomon.New(4, 2, v.opts...)
			if err != nil {
				b.Fatal(err)
			}
			data := randBytes(1, benchSize)
			run := func() {
				// Split slices data in place (1 MiB splits evenly) and
				// allocates only the parity shards; Encode never writes to
				// the data shards, so data can be reused.
				shards, err := enc.Split(data)
				if err != nil {
					b.Fatal(err)
				}
				if err := enc.Encode(shards); err != nil {
					b.Fatal(err)
				}
			}
			run()
			b.SetBytes(benchSize)
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				run()
			}
		})
	}
}
