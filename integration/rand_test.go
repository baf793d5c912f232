package integration

import (
	"encoding/binary"
	"math/rand/v2"
	"strconv"
)

// randReader yields a deterministic pseudo-random stream.
type randReader struct{ r *rand.ChaCha8 }

func newRandReader(seed uint64) *randReader {
	var s [32]byte
	binary.LittleEndian.PutUint64(s[:], seed)
	return &randReader{rand.NewChaCha8(s)}
}

func (r *randReader) Read(b []byte) (int, error) { return r.r.Read(b) }

func itoa(n int64) string   { return strconv.FormatInt(n, 10) }
func ftoa(f float64) string { return strconv.FormatFloat(f, 'f', 1, 64) }

// randBytes returns n deterministic pseudo-random bytes.
func randBytes(n int, seed uint64) []byte {
	b := make([]byte, n)
	newRandReader(seed).Read(b)
	return b
}
