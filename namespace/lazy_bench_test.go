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
