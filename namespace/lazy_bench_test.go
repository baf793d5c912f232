package namespace

import (
	"fmt"
	"testing"
)

// BenchmarkCreateLazy is BenchmarkCreate with LazySync, as peers run it.
func BenchmarkCreateLazy(b *testing.B) {
	ns, err := Open(Config{Dir: b.TempDir(), Peer: "p", LazySync: true})
	if err != nil {
		b.Fatal(err)
	}
	defer ns.Close()
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := ns.Create(bg, RootID, fmt.Sprint("f", i), File, Attr{Mode: 0o644}, ""); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkApplyRemoteOne applies single-op batches (one pushed close) with
// LazySync, as peers run it.
func BenchmarkApplyRemoteOne(b *testing.B) {
	ns, err := Open(Config{Dir: b.TempDir(), Peer: "p", LazySync: true})
	if err != nil {
		b.Fatal(err)
	}
	defer ns.Close()
	ts := Timestamp{Wall: 1, Peer: "r"}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		ts.Logical++
		ops := []Op{{Kind: OpMove, TS: ts, Origin: "r", Seq: uint64(i + 1), Node: NodeID(10 + i), NewParent: RootID,
			Name: fmt.Sprint("f", i), Inode: InodeID(10 + i), Init: &InodeInit{Type: File}}}
		if _, err := ns.ApplyRemote(ops); err != nil {
			b.Fatal(err)
		}
	}
}
