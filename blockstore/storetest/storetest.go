// Package storetest is a conformance suite for implementations of the
// blockstore API (blockstore.Store and memstore.Store).
package storetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"

	"github.com/reefproject/reef/blockstore"
)

// Interface is the part of the blockstore API the suite exercises.
type Interface interface {
	Put(ctx context.Context, key, val []byte) error
	Get(ctx context.Context, key []byte) ([]byte, error)
	Has(ctx context.Context, key []byte) (bool, error)
	Delete(ctx context.Context, key []byte) error
	List(ctx context.Context, prefix []byte, fn func(key []byte, size int64) error) error
	Stats() blockstore.Stats
	Close() error
}

// Value returns n deterministic pseudo-random bytes derived from seed.
func Value(seed uint64, n int) []byte {
	r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	b := make([]byte, n)
	for i := 0; i+8 <= n; i += 8 {
		v := r.Uint64()
		for j := range 8 {
			b[i+j] = byte(v >> (8 * j))
		}
	}
	for i := n &^ 7; i < n; i++ {
		b[i] = byte(r.Uint32())
	}
	return b
}

// Key returns a shard-like key: a 32-byte address derived from chunk plus a
// 2-byte big-endian shard index.
func Key(chunk uint64, shard uint16) []byte {
	k := Value(chunk, 34)
	k[32], k[33] = byte(shard>>8), byte(shard)
	return k
}

// Run runs the conformance suite. open must return a new, empty store for
// each call; Run closes it (Close must be idempotent).
func Run(t *testing.T, open func(t *testing.T) Interface) {
	tests := []struct {
		name string
		fn   func(t *testing.T, s Interface)
	}{
		{"PutGet", testPutGet},
		{"NotFound", testNotFound},
		{"Overwrite", testOverwrite},
		{"Delete", testDelete},
		{"List", testList},
		{"ListStop", testListStop},
		{"Stats", testStats},
		{"GetReturnsCopy", testGetReturnsCopy},
		{"PutDoesNotRetain", testPutDoesNotRetain},
		{"ConcurrentPuts", testConcurrentPuts},
		{"ContextCancelled", testContextCancelled},
		{"Closed", testClosed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := open(t)
			defer func() {
				if err := s.Close(); err != nil {
					t.Errorf("Close: %v", err)
				}
			}()
			tt.fn(t, s)
		})
	}
}

func mustPut(t *testing.T, s Interface, key, val []byte) {
	t.Helper()
	if err := s.Put(context.Background(), key, val); err != nil {
		t.Fatalf("Put(%x): %v", key, err)
	}
}

func mustGet(t *testing.T, s Interface, key, want []byte) {
	t.Helper()
	got, err := s.Get(context.Background(), key)
	if err != nil {
		t.Fatalf("Get(%x): %v", key, err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("Get(%x) = %d bytes, want %d bytes (equal prefix? %v)", key, len(got), len(want),
			bytes.HasPrefix(got, want[:min(len(want), len(got))]))
	}
}

func wantStats(t *testing.T, s Interface, count, size int64) {
	t.Helper()
	if got := s.Stats(); got.Count != count || got.Bytes != size {
		t.Fatalf("Stats() = %+v, want {Count:%d Bytes:%d}", got, count, size)
	}
}

func testPutGet(t *testing.T, s Interface) {
	cases := []struct {
		name string
		key  []byte
		val  []byte
	}{
		{"empty value", []byte("empty"), []byte{}},
		{"nil value", []byte("nil"), nil},
		{"one byte", []byte("one"), []byte{42}},
		{"just below 1KiB", Key(1, 0), Value(1, 1023)},
		{"1KiB", Key(1, 1), Value(2, 1024)},
		{"64KiB", Key(2, 0), Value(3, 64<<10)},
		{"256KiB", Key(3, 0), Value(4, 256<<10)},
		{"1MiB", Key(4, 0), Value(5, 1<<20)},
		{"1.1MiB", Key(5, 0), Value(6, 1<<20+100<<10)},
		{"2MiB", Key(6, 0), Value(7, 2<<20)},
		{"max key", bytes.Repeat([]byte{0xff}, blockstore.MaxKeySize), Value(8, 100)},
		{"empty key", []byte{}, Value(9, 10)},
	}
	ctx := context.Background()
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			mustPut(t, s, c.key, c.val)
			got, err := s.Get(ctx, c.key)
			if err != nil {
				t.Fatalf("Get: %v", err)
			}
			if got == nil {
				t.Fatalf("Get returned nil slice, want non-nil (empty) slice")
			}
			if !bytes.Equal(got, c.val) {
				t.Fatalf("Get returned %d bytes, want %d", len(got), len(c.val))
			}
			ok, err := s.Has(ctx, c.key)
			if err != nil || !ok {
				t.Fatalf("Has = %v, %v; want true, nil", ok, err)
			}
		})
	}
	// Re-read everything after all the writes.
	for _, c := range cases {
		mustGet(t, s, c.key, c.val)
	}
	t.Run("key too long", func(t *testing.T) {
		if err := s.Put(ctx, make([]byte, blockstore.MaxKeySize+1), []byte("x")); err == nil {
			t.Fatal("Put with oversized key succeeded")
		}
	})
}

func testNotFound(t *testing.T, s Interface) {
	ctx := context.Background()
	mustPut(t, s, []byte("present"), []byte("v"))
	for _, key := range [][]byte{[]byte("absent"), []byte("presen"), []byte("present0"), {}} {
		_, err := s.Get(ctx, key)
		if !errors.Is(err, blockstore.ErrNotFound) {
			t.Errorf("Get(%q) err = %v, want ErrNotFound", key, err)
		}
		if errors.Is(err, blockstore.ErrCorrupt) {
			t.Errorf("Get(%q) err = %v, is also ErrCorrupt", key, err)
		}
		ok, err := s.Has(ctx, key)
		if err != nil || ok {
			t.Errorf("Has(%q) = %v, %v; want false, nil", key, ok, err)
		}
	}
}

func testOverwrite(t *testing.T, s Interface) {
	ctx := context.Background()
	key := Key(7, 3)
	steps := []struct {
		name string
		val  []byte
	}{
		{"first", Value(1, 300<<10)},
		{"identical", Value(1, 300<<10)},
		{"different same size", Value(2, 300<<10)},
		{"smaller", Value(3, 10)},
		{"empty", []byte{}},
		{"larger", Value(4, 1<<20+1)},
		{"identical again", Value(4, 1<<20+1)},
	}
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			mustPut(t, s, key, st.val)
			mustGet(t, s, key, st.val)
			wantStats(t, s, 1, int64(len(st.val)))
		})
	}
	if err := s.Delete(ctx, key); err != nil {
		t.Fatal(err)
	}
	wantStats(t, s, 0, 0)
}

func testDelete(t *testing.T, s Interface) {
	ctx := context.Background()
	a, b := Key(1, 1), Key(1, 2)
	mustPut(t, s, a, Value(1, 5000))
	mustPut(t, s, b, Value(2, 7000))
	cases := []struct {
		name    string
		key     []byte
		present [][]byte
		absent  [][]byte
	}{
		{"existing", a, [][]byte{b}, [][]byte{a}},
		{"again", a, [][]byte{b}, [][]byte{a}},
		{"never existed", []byte("nope"), [][]byte{b}, [][]byte{a}},
		{"last", b, nil, [][]byte{a, b}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if err := s.Delete(ctx, c.key); err != nil {
				t.Fatalf("Delete: %v", err)
			}
			for _, k := range c.present {
				if ok, err := s.Has(ctx, k); err != nil || !ok {
					t.Errorf("Has(%x) = %v, %v; want true", k, ok, err)
				}
			}
			for _, k := range c.absent {
				if _, err := s.Get(ctx, k); !errors.Is(err, blockstore.ErrNotFound) {
					t.Errorf("Get(%x) err = %v, want ErrNotFound", k, err)
				}
			}
		})
	}
	wantStats(t, s, 0, 0)
	// A deleted key can be stored again.
	mustPut(t, s, a, Value(3, 10))
	mustGet(t, s, a, Value(3, 10))
	wantStats(t, s, 1, 10)
}

type listed struct {
	key  string
	size int64
}

func list(t *testing.T, s Interface, prefix []byte) []listed {
	t.Helper()
	var out []listed
	err := s.List(context.Background(), prefix, func(key []byte, size int64) error {
		out = append(out, listed{string(key), size})
		return nil
	})
	if err != nil {
		t.Fatalf("List(%x): %v", prefix, err)
	}
	return out
}

func testList(t *testing.T, s Interface) {
	keys := map[string]int{
		"a":        1,
		"ab":       2,
		"abc":      3,
		"abd":      0,
		"b":        5,
		"b\x00":    6,
		"b\xff":    7,
		"\x00":     8,
		"\xff\xff": 2000,
		"c/1":      256 << 10,
		"c/2":      9,
	}
	// Insert in random order.
	order := make([]string, 0, len(keys))
	for k := range keys {
		order = append(order, k)
	}
	for i, k := range order {
		mustPut(t, s, []byte(k), Value(uint64(i), keys[k]))
	}
	want := func(prefix string) []listed {
		var out []listed
		for k, n := range keys {
			if len(k) >= len(prefix) && k[:len(prefix)] == prefix {
				out = append(out, listed{k, int64(n)})
			}
		}
		slices.SortFunc(out, func(a, b listed) int { return bytes.Compare([]byte(a.key), []byte(b.key)) })
		return out
	}
	for _, prefix := range []string{"", "a", "ab", "abc", "abcd", "b", "b\x00", "c/", "\xff", "\xff\xff", "z", "\x00"} {
		t.Run(fmt.Sprintf("prefix %q", prefix), func(t *testing.T) {
			got := list(t, s, []byte(prefix))
			if w := want(prefix); !slices.Equal(got, w) {
				t.Fatalf("List(%q) = %v, want %v", prefix, got, w)
			}
		})
	}
	t.Run("nil prefix", func(t *testing.T) {
		if got, w := list(t, s, nil), want(""); !slices.Equal(got, w) {
			t.Fatalf("List(nil) = %v, want %v", got, w)
		}
	})
	t.Run("after delete", func(t *testing.T) {
		if err := s.Delete(context.Background(), []byte("ab")); err != nil {
			t.Fatal(err)
		}
		delete(keys, "ab")
		if got, w := list(t, s, []byte("a")), want("a"); !slices.Equal(got, w) {
			t.Fatalf("List(a) = %v, want %v", got, w)
		}
	})
	t.Run("many shard keys", func(t *testing.T) {
		var wantKeys []string
		for c := range uint64(20) {
			for sh := range uint16(9) {
				k := Key(1000+c, sh)
				k[0] = 0xfe // common prefix, after every key above except \xff...
				mustPut(t, s, k, []byte{byte(sh)})
				wantKeys = append(wantKeys, string(k))
			}
		}
		slices.Sort(wantKeys)
		got := list(t, s, []byte{0xfe})
		if len(got) != len(wantKeys) {
			t.Fatalf("List returned %d keys, want %d", len(got), len(wantKeys))
		}
		for i := range got {
			if got[i].key != wantKeys[i] || got[i].size != 1 {
				t.Fatalf("List[%d] = %x/%d, want %x/1", i, got[i].key, got[i].size, wantKeys[i])
			}
		}
	})
}

func testListStop(t *testing.T, s Interface) {
	for i := range 10 {
		mustPut(t, s, []byte{'k', byte(i)}, []byte{byte(i)})
	}
	stop := errors.New("stop here")
	var n int
	err := s.List(context.Background(), []byte("k"), func(key []byte, size int64) error {
		n++
		if n == 3 {
			return stop
		}
		return nil
	})
	if !errors.Is(err, stop) {
		t.Fatalf("List err = %v, want the callback's error", err)
	}
	if n != 3 {
		t.Fatalf("callback ran %d times after returning an error at 3", n)
	}
	// The callback may call back into the store.
	err = s.List(context.Background(), []byte("k"), func(key []byte, size int64) error {
		v, err := s.Get(context.Background(), key)
		if err != nil {
			return err
		}
		if int64(len(v)) != size {
			return fmt.Errorf("size %d, value %d bytes", size, len(v))
		}
		return nil
	})
	if err != nil {
		t.Fatalf("List with Get in callback: %v", err)
	}
}

func testStats(t *testing.T, s Interface) {
	ctx := context.Background()
	wantStats(t, s, 0, 0)
	steps := []struct {
		name        string
		op          func() error
		count, size int64
	}{
		{"put a", func() error { return s.Put(ctx, []byte("a"), Value(1, 100)) }, 1, 100},
		{"put b", func() error { return s.Put(ctx, []byte("b"), Value(2, 256<<10)) }, 2, 100 + 256<<10},
		{"put empty", func() error { return s.Put(ctx, []byte("c"), nil) }, 3, 100 + 256<<10},
		{"overwrite a bigger", func() error { return s.Put(ctx, []byte("a"), Value(3, 2000)) }, 3, 2000 + 256<<10},
		{"identical b", func() error { return s.Put(ctx, []byte("b"), Value(2, 256<<10)) }, 3, 2000 + 256<<10},
		{"delete missing", func() error { return s.Delete(ctx, []byte("zz")) }, 3, 2000 + 256<<10},
		{"delete b", func() error { return s.Delete(ctx, []byte("b")) }, 2, 2000},
		{"delete b again", func() error { return s.Delete(ctx, []byte("b")) }, 2, 2000},
		{"delete c", func() error { return s.Delete(ctx, []byte("c")) }, 1, 2000},
		{"get does not change", func() error { _, err := s.Get(ctx, []byte("a")); return err }, 1, 2000},
		{"delete a", func() error { return s.Delete(ctx, []byte("a")) }, 0, 0},
	}
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			if err := st.op(); err != nil {
				t.Fatal(err)
			}
			wantStats(t, s, st.count, st.size)
		})
	}
}

func testGetReturnsCopy(t *testing.T, s Interface) {
	val := Value(1, 4096)
	mustPut(t, s, []byte("k"), val)
	got, err := s.Get(context.Background(), []byte("k"))
	if err != nil {
		t.Fatal(err)
	}
	for i := range got {
		got[i] ^= 0xff
	}
	mustGet(t, s, []byte("k"), val)
}

func testPutDoesNotRetain(t *testing.T, s Interface) {
	for _, n := range []int{10, 200 << 10} {
		val := Value(uint64(n), n)
		buf := slices.Clone(val)
		mustPut(t, s, []byte("k"), buf)
		for i := range buf {
			buf[i] ^= 0xff
		}
		mustGet(t, s, []byte("k"), val)
	}
}

func testConcurrentPuts(t *testing.T, s Interface) {
	const (
		workers = 16
		perW    = 8
		size    = 64 << 10
	)
	ctx := context.Background()
	var wg sync.WaitGroup
	errs := make(chan error, workers*perW)
	for w := range workers {
		wg.Go(func() {
			for i := range perW {
				k := Key(uint64(w), uint16(i))
				if err := s.Put(ctx, k, Value(uint64(w*1000+i), size)); err != nil {
					errs <- err
				}
				// Same-key contention: every worker also rewrites a shared key.
				if err := s.Put(ctx, []byte("shared"), Value(uint64(i), size)); err != nil {
					errs <- err
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	for w := range workers {
		for i := range perW {
			mustGet(t, s, Key(uint64(w), uint16(i)), Value(uint64(w*1000+i), size))
		}
	}
	wantStats(t, s, workers*perW+1, (workers*perW+1)*size)

	// Concurrent deletes of the same keys keep Stats exact.
	for w := range workers {
		wg.Go(func() {
			for i := range perW {
				_ = s.Delete(ctx, Key(uint64(i), uint16(i)))
				_ = s.Delete(ctx, Key(uint64(w), uint16(i)))
			}
		})
	}
	wg.Wait()
	wantStats(t, s, 1, size)
}

func testContextCancelled(t *testing.T, s Interface) {
	mustPut(t, s, []byte("k"), []byte("v"))
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	ops := []struct {
		name string
		op   func() error
	}{
		{"Put", func() error { return s.Put(ctx, []byte("k2"), []byte("v")) }},
		{"Get", func() error { _, err := s.Get(ctx, []byte("k")); return err }},
		{"Has", func() error { _, err := s.Has(ctx, []byte("k")); return err }},
		{"Delete", func() error { return s.Delete(ctx, []byte("k")) }},
		{"List", func() error { return s.List(ctx, nil, func([]byte, int64) error { return nil }) }},
	}
	for _, o := range ops {
		t.Run(o.name, func(t *testing.T) {
			if err := o.op(); !errors.Is(err, context.Canceled) {
				t.Fatalf("err = %v, want context.Canceled", err)
			}
		})
	}
	// Nothing happened.
	mustGet(t, s, []byte("k"), []byte("v"))
	if ok, _ := s.Has(context.Background(), []byte("k2")); ok {
		t.Fatal("Put with cancelled context stored the value")
	}
	wantStats(t, s, 1, 1)
}

func testClosed(t *testing.T, s Interface) {
	mustPut(t, s, []byte("k"), []byte("v"))
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	ctx := context.Background()
	if err := s.Put(ctx, []byte("k"), []byte("v")); err == nil {
		t.Error("Put after Close succeeded")
	}
	if _, err := s.Get(ctx, []byte("k")); err == nil {
		t.Error("Get after Close succeeded")
	}
	if _, err := s.Has(ctx, []byte("k")); err == nil {
		t.Error("Has after Close succeeded")
	}
	if err := s.Delete(ctx, []byte("k")); err == nil {
		t.Error("Delete after Close succeeded")
	}
	if err := s.List(ctx, nil, func([]byte, int64) error { return nil }); err == nil {
		t.Error("List after Close succeeded")
	}
}
