package bufpool

import "testing"

func TestGetPut(t *testing.T) {
	var p Pool
	for _, n := range []int{0, 1, 4096, 4097, 256<<10 + 44, 1 << 20, 16 << 20, 16<<20 + 1} {
		b := p.Get(n)
		if len(b) != n {
			t.Fatalf("Get(%d) has length %d", n, len(b))
		}
		p.Put(b)
		// Whatever is in the pool now, Get must not return less.
		if b := p.Get(n); len(b) != n || cap(b) < n {
			t.Fatalf("Get(%d) after Put: len %d cap %d", n, len(b), cap(b))
		}
	}
	// A buffer that did not come from Get, of a capacity between classes,
	// is filed under the class it covers fully.
	p.Put(make([]byte, 0, 300<<10))
	if b := p.Get(300 << 10); cap(b) < 300<<10 {
		t.Fatalf("Get(300 KiB) returned cap %d", cap(b))
	}
}

func TestReuse(t *testing.T) {
	var p Pool
	// sync.Pool may drop an item (a GC, another P, and on purpose under the
	// race detector), so the buffer need not come back every time; in ten
	// tries it does.
	reused := 0
	for range 10 {
		b := p.Get(100 << 10)
		p.Put(b)
		if c := p.Get(90 << 10); &c[:1][0] == &b[:1][0] {
			reused++
		}
	}
	if reused == 0 {
		t.Error("no buffer was reused")
	}
}
