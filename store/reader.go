package store

import (
	"container/list"
	"context"
	"fmt"
	"io"
	"sort"
	"sync"
	"sync/atomic"

	"github.com/reefproject/reef/addr"
)

// fileIndex is a flattened manifest: every data chunk with its offset.
type fileIndex struct {
	size      int64
	entries   []Entry
	offsets   []int64 // offsets[i] is where entries[i] starts
	manifests []Entry // the root and indirect manifests' own stripes

	// next is where the last ReadAt of this file ended: a read starting
	// near it continues a sequential scan, which gets a deeper read-ahead.
	next atomic.Int64
	// behind counts the entries a sequential scan has left behind and
	// dropped from the chunk cache (dropBehind).
	behind atomic.Int64

	holesOnce sync.Once
	holes     []bool // holes[i]: entries[i] is a chunk of zeros (Seek)
}

// Seek answers lseek(2)'s SEEK_DATA (hole false) and SEEK_HOLE (hole true)
// for the file at a: the first offset at or after off in data, or in a
// hole. The holes are the file's chunks of zeros and the implicit one at
// its end; a chunk with any data in it is data throughout, so holes are
// found at chunk granularity (a hole's chunks are ZeroCut long). ok is
// false when there is none: SEEK_DATA in the last hole, or off at or past
// the end.
func (s *Store) Seek(ctx context.Context, a addr.Addr, off int64, hole bool) (pos int64, ok bool, err error) {
	ix, err := s.index(ctx, a)
	if err != nil {
		return 0, false, err
	}
	if off < 0 || off >= ix.size {
		return 0, false, nil
	}
	ix.holesOnce.Do(func() {
		ix.holes = make([]bool, len(ix.entries))
		for i, e := range ix.entries {
			// An error (a seal failed) counts the chunk as data: data
			// is always a safe answer.
			z, err := s.zeroBytes([]Entry{e}, i == len(ix.entries)-1)
			ix.holes[i] = err == nil && z > 0
		}
	})
	i := sort.Search(len(ix.entries), func(i int) bool { return ix.offsets[i]+ix.entries[i].Length > off })
	for ; i < len(ix.entries); i++ {
		if ix.holes[i] == hole {
			return max(off, ix.offsets[i]), true, nil
		}
	}
	if hole {
		return ix.size, true, nil
	}
	return 0, false, nil
}

func (ix *fileIndex) find(off int64) int {
	return sort.Search(len(ix.offsets), func(i int) bool { return ix.offsets[i]+ix.entries[i].Length > off })
}

// lru is a small byte-bounded LRU cache, safe for concurrent use.
type lru[K comparable, V any] struct {
	mu    sync.Mutex // guards the fields below
	max   int64
	size  int64
	order *list.List // of *lruItem[K, V], most recent at the front
	items map[K]*list.Element
	cost  func(V) int64
}

type lruItem[K comparable, V any] struct {
	key K
	val V
}

func newLRU[K comparable, V any](max int64, cost func(V) int64) *lru[K, V] {
	return &lru[K, V]{max: max, order: list.New(), items: map[K]*list.Element{}, cost: cost}
}

func (c *lru[K, V]) get(k K) (V, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.items[k]; ok {
		c.order.MoveToFront(e)
		return e.Value.(*lruItem[K, V]).val, true
	}
	var zero V
	return zero, false
}

func (c *lru[K, V]) put(k K, v V) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.items[k]; ok {
		c.size -= c.cost(e.Value.(*lruItem[K, V]).val)
		c.order.Remove(e)
	}
	c.items[k] = c.order.PushFront(&lruItem[K, V]{k, v})
	c.size += c.cost(v)
	for c.size > c.max && c.order.Len() > 1 {
		e := c.order.Back()
		it := e.Value.(*lruItem[K, V])
		c.order.Remove(e)
		delete(c.items, it.key)
		c.size -= c.cost(it.val)
	}
}

// remove drops k from the cache, if it is there.
func (c *lru[K, V]) remove(k K) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.items[k]; ok {
		c.size -= c.cost(e.Value.(*lruItem[K, V]).val)
		c.order.Remove(e)
		delete(c.items, k)
	}
}

// flight collapses concurrent fetches of one key into one.
type flight[K comparable, V any] struct {
	mu    sync.Mutex // guards calls
	calls map[K]*flightCall[V]
}

type flightCall[V any] struct {
	done chan struct{}
	val  V
	err  error
}

// pending reports whether a fetch of k is under way.
func (f *flight[K, V]) pending(k K) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	_, ok := f.calls[k]
	return ok
}

func (f *flight[K, V]) do(k K, fn func() (V, error)) (V, error) {
	f.mu.Lock()
	if f.calls == nil {
		f.calls = map[K]*flightCall[V]{}
	}
	if c, ok := f.calls[k]; ok {
		f.mu.Unlock()
		<-c.done
		return c.val, c.err
	}
	c := &flightCall[V]{done: make(chan struct{})}
	f.calls[k] = c
	f.mu.Unlock()
	c.val, c.err = fn()
	close(c.done)
	f.mu.Lock()
	delete(f.calls, k)
	f.mu.Unlock()
	return c.val, c.err
}

// readCache holds decoded chunks and flattened manifests for ReadAt.
type readCache struct {
	chunks  *lru[addr.Addr, []byte]
	indexes *lru[addr.Addr, *fileIndex]
	cf      flight[addr.Addr, []byte]
	xf      flight[addr.Addr, *fileIndex]
}

func newReadCache(chunkBytes int64) *readCache {
	return &readCache{
		chunks:  newLRU[addr.Addr, []byte](chunkBytes, func(b []byte) int64 { return int64(cap(b)) + 64 }),
		indexes: newLRU[addr.Addr, *fileIndex](32<<20, func(ix *fileIndex) int64 { return int64(len(ix.entries))*64 + 64 }),
	}
}

func (s *Store) index(ctx context.Context, a addr.Addr) (*fileIndex, error) {
	if ix, ok := s.cache.indexes.get(a); ok {
		return ix, nil
	}
	return s.cache.xf.do(a, func() (*fileIndex, error) {
		root, re, err := s.rootEntry(ctx, a)
		if err != nil {
			return nil, err
		}
		ix := &fileIndex{size: root.size, manifests: []Entry{re}}
		if root.kind == kindSelf {
			// The root is the one chunk: its bytes are here already.
			self := re
			self.Length, self.self = root.size, true
			ix.entries, ix.offsets = []Entry{self}, []int64{0}
			s.cache.chunks.put(a, root.data)
			s.cache.indexes.put(a, ix)
			return ix, nil
		}
		var off int64
		err = s.walkAll(ctx, root, 0, func(e Entry) { ix.manifests = append(ix.manifests, e) }, func(e Entry) bool {
			ix.entries = append(ix.entries, e)
			ix.offsets = append(ix.offsets, off)
			off += e.Length
			return true
		})
		if err != nil {
			return nil, err
		}
		if off != root.size {
			return nil, fmt.Errorf("store: %w: chunks cover %d bytes, manifest says %d", ErrBadManifest, off, root.size)
		}
		s.cache.indexes.put(a, ix)
		return ix, nil
	})
}

// chunk returns a chunk's plaintext through the cache. The slice is shared:
// callers must not modify it.
func (s *Store) chunk(ctx context.Context, e Entry) ([]byte, error) {
	if b, ok := s.cache.chunks.get(e.Addr); ok {
		return b, nil
	}
	return s.cache.cf.do(e.Addr, func() ([]byte, error) {
		b, err := s.chunkBlob(ctx, e)
		if err != nil {
			return nil, err
		}
		s.cache.chunks.put(e.Addr, b)
		return b, nil
	})
}

// chunkBlob is GetBlob for a data entry of a file index: a self entry's
// blob is the file's self manifest, whose bytes follow its header.
func (s *Store) chunkBlob(ctx context.Context, e Entry) ([]byte, error) {
	if !e.self {
		return s.GetBlob(ctx, e)
	}
	plain, err := s.GetBlob(ctx, Entry{Addr: e.Addr, Length: manifestHdrSize + e.Length, K: e.K, M: e.M})
	if err != nil {
		return nil, err
	}
	m, err := decodeManifest(plain)
	if err == nil && (m.kind != kindSelf || m.size != e.Length) {
		err = fmt.Errorf("store: %w: %s is no longer the self manifest of %d bytes", ErrBadManifest, e.Addr.Short(), e.Length)
	}
	if err != nil {
		return nil, err
	}
	return m.data, nil
}

// Stripes returns every stripe of the file at a: its manifests first, then
// its data chunks in order (none for a self manifest, the root's stripe
// holding the bytes). The slice is the caller's.
func (s *Store) Stripes(ctx context.Context, a addr.Addr) ([]Entry, error) {
	ix, err := s.index(ctx, a)
	if err != nil {
		return nil, err
	}
	out := append([]Entry(nil), ix.manifests...)
	for _, e := range ix.entries {
		if !e.self {
			out = append(out, e)
		}
	}
	return out, nil
}

// Size returns the size of the file at a.
func (s *Store) Size(ctx context.Context, a addr.Addr) (int64, error) {
	ix, err := s.index(ctx, a)
	if err != nil {
		return 0, err
	}
	return ix.size, nil
}

// ReadAt reads len(p) bytes of the file at a from off, like io.ReaderAt:
// fewer bytes only at the end of the file, with io.EOF. Chunks are cached,
// and the chunks after the range are fetched ahead in the background.
func (s *Store) ReadAt(ctx context.Context, a addr.Addr, p []byte, off int64) (int, error) {
	ix, err := s.index(ctx, a)
	if err != nil {
		return 0, err
	}
	if off < 0 {
		return 0, fmt.Errorf("store: negative offset %d", off)
	}
	if off >= ix.size {
		return 0, io.EOF
	}
	n := 0
	i := ix.find(off)
	for n < len(p) && i < len(ix.entries) {
		b, err := s.chunk(ctx, ix.entries[i])
		if err != nil {
			return n, err
		}
		n += copy(p[n:], b[off+int64(n)-ix.offsets[i]:])
		i++
	}
	ahead := s.aheadFor(ix, off, int64(n))
	if ahead > randomAhead {
		s.dropBehind(ix, off)
	}
	s.readAhead(ix, i, ahead)
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

// Read-ahead depths in chunks: any read fetches the next randomAhead
// chunk (it was two: fio's 4 KiB random reads of a 256 MiB file fetched
// three chunks each, 254 IOPS; with none, 364); a read that continues the previous one (a sequential scan, as the
// kernel's 128 KiB FUSE reads of `cp` or `dd` are) fetches Config.Parallel
// chunks ahead, like WriteFile keeps that many in flight. The kernel's own
// read-ahead on a FUSE mount is only 128 KiB, so without a deep read-ahead
// here each chunk's fetch latency would stall the reader.
const (
	randomAhead = 1
	// seqSlack is how far from the previous read's end a read may start
	// and still count as sequential: asynchronous FUSE reads arrive a little
	// out of order.
	seqSlack = 4 << 20
)

// aheadFor returns the read-ahead depth for a read of n bytes at off and
// records where it ended.
func (s *Store) aheadFor(ix *fileIndex, off, n int64) int {
	prev := ix.next.Swap(off + n)
	if off == 0 || (off >= prev-seqSlack && off <= prev+seqSlack) {
		return max(s.cfg.Parallel, randomAhead)
	}
	return randomAhead
}

// dropBehind drops from the chunk cache the chunks a sequential scan now
// at off has left more than seqSlack behind. The kernel keeps what it read
// in its own page cache (files are opened with keep_cache), so the chunk
// cache matters for small reads inside a chunk and for the read-ahead, not
// for the chunks a `cp` or `dd` has passed: kept, a 1 GiB read filled the
// whole cache (512 MiB by default) with chunks nobody asks for again, and
// every one of them was fresh memory, which costs on the VMs this runs on
// (see BENCHMARKS, eighth session). Dropped, the reading peer's heap stays
// at about the read-ahead's size and reuses its memory. A chunk another
// file shares (dedup) is only fetched again if that file wants it.
func (s *Store) dropBehind(ix *fileIndex, off int64) {
	if off <= seqSlack {
		return
	}
	// Entries ending at or before off-seqSlack are behind.
	upto := int64(ix.find(off - seqSlack))
	from := ix.behind.Load()
	// A scan that started again lower moves the mark back (the loop then
	// drops nothing).
	if upto == from || !ix.behind.CompareAndSwap(from, upto) {
		return
	}
	for j := from; j < upto; j++ {
		s.cache.chunks.remove(ix.entries[j].Addr)
	}
}

// readAhead fetches up to count chunks from index i in the background.
func (s *Store) readAhead(ix *fileIndex, i, count int) {
	for j := i; j < i+count && j < len(ix.entries); j++ {
		e := ix.entries[j]
		if _, ok := s.cache.chunks.get(e.Addr); ok || s.cache.cf.pending(e.Addr) {
			continue
		}
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), 2*shardFetchBudget)
			defer cancel()
			s.chunk(ctx, e)
		}()
	}
}
