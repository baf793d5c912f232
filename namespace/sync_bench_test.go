package namespace

import (
	"bytes"
	"fmt"
	"testing"

	"github.com/reefproject/reef/crypt"
)

// syncBenchFiles is the number of files in the benchmark's namespace: each
// is a create, a content and a chmod (3 ops), so 30,000 ops.
const syncBenchFiles = 10000

// openSyncBench opens a namespace sealed as peers seal it (crypt records),
// holding syncBenchFiles small files written through its API: one in four
// has 8 KiB of inline content, the others 1 KiB (an untar of a source
// tree). It returns the version vector of a peer missing the last
// syncBatch (5000) ops. cache is Config.SyncCacheBytes.
func openSyncBench(b *testing.B, dir string, cache int) (*Namespace, map[string]uint64) {
	b.Helper()
	keys, err := crypt.NewKeys(bytes.Repeat([]byte{7}, 32))
	if err != nil {
		b.Fatal(err)
	}
	ns, err := Open(Config{Dir: dir, Peer: "a", LazySync: true, SyncCacheBytes: cache,
		Seal: func(p []byte) ([]byte, error) { return keys.SealRecord(nil, p) }, SealTo: keys.SealRecord, Open: keys.Open})
	if err != nil {
		b.Fatal(err)
	}
	if ns.Stats().Ops == 0 {
		big, small := bytes.Repeat([]byte{'x'}, 8<<10), bytes.Repeat([]byte{'y'}, 1<<10)
		for i := range syncBenchFiles {
			e, err := ns.Create(bg, RootID, fmt.Sprintf("file-%05d.go", i), File, Attr{Mode: 0o600}, "")
			if err != nil {
				b.Fatal(err)
			}
			data := small
			if i%4 == 0 {
				data = big
			}
			if _, err := ns.SetContent(bg, e.Inode.ID, Content{Size: int64(len(data)), Inline: data}, e.Inode.Version); err != nil {
				b.Fatal(err)
			}
			if _, err := ns.SetAttr(bg, e.Inode.ID, AttrChange{Mask: SetMode | SetMtime, Mode: 0o644, Mtime: int64(i)}); err != nil {
				b.Fatal(err)
			}
		}
	}
	vv := ns.VersionVector()
	vv["a"] -= 5000
	return ns, vv
}

// BenchmarkSyncAnswer produces the ops of an anti-entropy answer (as
// peer.handleSync does) for a peer missing the last 5000 of 30,000 ops:
// as before (OpsSince+EncodeOps) and with SealOpsSince, once with the
// cache filled as the ops were written, once reopened (the cache holds
// none of them: a peer restarted since, or a cache too small) and the ops
// read from badger's tables rather than its memtables.
func BenchmarkSyncAnswer(b *testing.B) {
	dir := b.TempDir()
	ns, vv := openSyncBench(b, dir, 0)
	old := func(b *testing.B) {
		ops, _, err := ns.OpsSince(vv, 5000)
		if err != nil {
			b.Fatal(err)
		}
		enc, err := ns.EncodeOps(ops)
		if err != nil {
			b.Fatal(err)
		}
		b.SetBytes(int64(len(enc)))
		b.ReportAllocs()
		b.ResetTimer()
		for b.Loop() {
			ops, more, err := ns.OpsSince(vv, 5000)
			if err != nil || !more || len(ops) != 5000 {
				b.Fatalf("OpsSince: %d ops, more %v, %v", len(ops), more, err)
			}
			if _, err := ns.EncodeOps(ops); err != nil {
				b.Fatal(err)
			}
		}
	}
	sealed := func(b *testing.B) {
		bt, err := ns.SealOpsSince(vv, 5000)
		if err != nil {
			b.Fatal(err)
		}
		b.SetBytes(int64(len(bt.Sealed)))
		bt.Release()
		b.ReportAllocs()
		b.ResetTimer()
		for b.Loop() {
			bt, err := ns.SealOpsSince(vv, 5000)
			if err != nil || !bt.More || bt.N != 5000 {
				b.Fatalf("SealOpsSince: %d ops, more %v, %v", bt.N, bt.More, err)
			}
			bt.Release()
		}
	}
	b.Run("written/OpsSince+EncodeOps", old)
	b.Run("written/SealOpsSince", sealed)
	if err := ns.Close(); err != nil {
		b.Fatal(err)
	}
	ns, _ = openSyncBench(b, dir, 0)
	defer ns.Close()
	b.Run("reopened/OpsSince+EncodeOps", old)
	b.Run("reopened/SealOpsSince", sealed)
}
