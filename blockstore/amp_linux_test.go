package blockstore

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"strings"
	"testing"
)

// writeBytes is this process's bytes sent to block devices so far.
func writeBytes(t *testing.T) int64 {
	b, err := os.ReadFile("/proc/self/io")
	if err != nil {
		t.Skipf("no /proc/self/io: %v", err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		var v int64
		if n, _ := fmt.Sscanf(l, "write_bytes: %d", &v); n == 1 {
			return v
		}
	}
	t.Skip("no write_bytes in /proc/self/io")
	return 0
}

// TestWriteAmplification: synced puts must not write much more to the disk
// than they store. Before internal/mapadvise, badger's msync of its mapped
// value log rewrote a large page-cache folio per put: 64 MiB of 256 KiB
// puts wrote 301 MiB on ext4 with Linux 6.18. The figure without the advice
// is logged too (it depends on the kernel and file system, so it is not
// asserted).
func TestWriteAmplification(t *testing.T) {
	t.Run("without map advice", func(t *testing.T) {
		noMapAdvise = true
		defer func() { noMapAdvise = false }()
		ratio := putAmplification(t)
		t.Logf("without the advice: %.2fx", ratio)
	})
	ratio := putAmplification(t)
	if ratio > 1.5 {
		t.Errorf("write amplification %.2fx, want <= 1.5x", ratio)
	}
}

// putAmplification puts 64 MiB in 256 KiB values into a new store and
// returns the bytes written to the device over the bytes put.
func putAmplification(t *testing.T) float64 {
	dir := t.TempDir()
	s, err := Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	const n, size = 256, 256 << 10
	val := make([]byte, size)
	rng := rand.New(rand.NewPCG(1, 2))
	w0 := writeBytes(t)
	for i := range n {
		for j := range val {
			val[j] = byte(rng.Uint32())
		}
		if err := s.Put(context.Background(), []byte(fmt.Sprint("key-", i)), val); err != nil {
			t.Fatal(err)
		}
	}
	written := writeBytes(t) - w0
	if written == 0 {
		t.Skipf("%s is not on a block device (nothing counted in write_bytes)", dir)
	}
	ratio := float64(written) / float64(n*size)
	t.Logf("%d MiB put, %.1f MiB written: %.2fx", n*size>>20, float64(written)/(1<<20), ratio)
	return ratio
}
