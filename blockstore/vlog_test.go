package blockstore

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"testing"

	badger "github.com/dgraph-io/badger/v4"
)

// TestValueLogAppends stores values of sizes around the disk's block size
// and past the value log's write buffer, in files small enough to roll
// over, and reads each back before a sync, after one, and after a reopen.
// The patched badger drops synced value-log pages from the cache and
// reads them back with pread (third_party REEF-PATCHES.md): values that
// straddle a page, a sync or a file boundary are each a case of their own.
func TestValueLogAppends(t *testing.T) {
	for _, tc := range []struct {
		name  string
		sizes []int
	}{
		{"just past the inline threshold", []int{1025, 1100, 2000, 3000}},
		{"around a block", []int{4095, 4096, 4097, 8191, 8192, 8193}},
		{"shards", []int{64 << 10, 256<<10 + 13, 256 << 10, 100<<10 + 1}},
		{"past the write buffer", []int{9<<20 + 7, 1500, 12 << 20}},
		{"mixed", []int{1025, 9<<20 + 3, 4096, 300 << 10, 5000, 2 << 20, 1 << 20, 1030}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			ctx := context.Background()
			small := func(o *badger.Options) { *o = o.WithValueLogFileSize(16 << 20) }
			s, err := open(dir, Options{}, small)
			if err != nil {
				t.Fatal(err)
			}
			rng := rand.New(rand.NewPCG(7, uint64(len(tc.sizes))))
			want := map[string][]byte{}
			check := func(when string) {
				t.Helper()
				for k, v := range want {
					got, err := s.Get(ctx, []byte(k))
					if err != nil || !bytes.Equal(got, v) {
						t.Fatalf("%s: value %s: %d bytes (want %d), %v", when, k, len(got), len(v), err)
					}
				}
			}
			n := 0
			for round := range 3 {
				for _, size := range tc.sizes {
					v := make([]byte, size)
					for j := range v {
						v[j] = byte(rng.Uint32())
					}
					k := fmt.Sprintf("k%04d", n)
					n++
					if err := s.PutLazy(ctx, []byte(k), v); err != nil {
						t.Fatal(err)
					}
					want[k] = v
				}
				check(fmt.Sprintf("round %d, before a sync", round))
				if err := s.Sync(ctx); err != nil {
					t.Fatal(err)
				}
				check(fmt.Sprintf("round %d, synced", round))
			}
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			if s, err = open(dir, Options{}, small); err != nil {
				t.Fatal(err)
			}
			check("reopened")
			// And the reopened store appends where the old one ended.
			if err := s.Put(ctx, []byte("after"), bytes.Repeat([]byte{7}, 5000)); err != nil {
				t.Fatal(err)
			}
			want["after"] = bytes.Repeat([]byte{7}, 5000)
			check("written after reopening")
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
		})
	}
}
