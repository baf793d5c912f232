package chunker

import (
	"bytes"
	"io"
	"testing"

	fastcdc "github.com/jotfs/fastcdc-go"
	restic "github.com/restic/chunker"
)

// benchSize is the amount of random data every benchmark chunks per op.
const benchSize = 64 << 20

// resticPol is restic's well-known default polynomial.
const resticPol = restic.Pol(0x3DA3358B4DC173)

func BenchmarkChunker(b *testing.B) {
	data := randomData(benchSize, 1)
	p := DefaultParams()
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	b.ResetTimer()
	var chunks int
	for b.Loop() {
		c, err := New(bytes.NewReader(data), p)
		if err != nil {
			b.Fatal(err)
		}
		chunks = 0
		for {
			_, err := c.Next()
			if err == io.EOF {
				break
			}
			if err != nil {
				b.Fatal(err)
			}
			chunks++
		}
	}
	b.ReportMetric(float64(len(data))/float64(chunks), "B/chunk")
}

func BenchmarkResticChunker(b *testing.B) {
	data := randomData(benchSize, 1)
	p := DefaultParams()
	buf := make([]byte, p.Max)
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	b.ResetTimer()
	var chunks int
	for b.Loop() {
		c := restic.NewWithBoundaries(bytes.NewReader(data), resticPol, uint(p.Min), uint(p.Max))
		chunks = 0
		for {
			_, err := c.Next(buf)
			if err == io.EOF {
				break
			}
			if err != nil {
				b.Fatal(err)
			}
			chunks++
		}
	}
	b.ReportMetric(float64(len(data))/float64(chunks), "B/chunk")
}

func BenchmarkFastCDCGo(b *testing.B) {
	data := randomData(benchSize, 1)
	p := DefaultParams()
	opts := fastcdc.Options{MinSize: p.Min, AverageSize: p.Avg, MaxSize: p.Max}
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	b.ResetTimer()
	var chunks int
	for b.Loop() {
		c, err := fastcdc.NewChunker(bytes.NewReader(data), opts)
		if err != nil {
			b.Fatal(err)
		}
		chunks = 0
		for {
			_, err := c.Next()
			if err == io.EOF {
				break
			}
			if err != nil {
				b.Fatal(err)
			}
			chunks++
		}
	}
	b.ReportMetric(float64(len(data))/float64(chunks), "B/chunk")
}
