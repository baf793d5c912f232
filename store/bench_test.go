package store

import (
	"bytes"
	"io"
	"math/rand/v2"
	"testing"

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
