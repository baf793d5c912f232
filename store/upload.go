package store

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/reefproject/reef/addr"
	"github.com/reefproject/reef/chunker"
	"golang.org/x/sync/errgroup"
)

// upload stores the blobs of one file with up to Config.Parallel in flight.
//
// A blob's entry (address and length) is known once it is sealed, long
// before its shards are stored, so the manifest listing a file's chunks is
// sealed and sent while the chunks are still on their way: a file costs one
// round of shard writes, not one for its chunks and then another for its
// manifest. Closing a 200 KB file (one chunk and its manifest) took two
// rounds of six synced writes, about 13 ms on the CI VM. Nothing can refer
// to the manifest before the upload as a whole has succeeded (the caller
// commits the root address only then), so its chunks landing after it is
// harmless; a failed upload leaves unreferenced shards, as it did before.
type upload struct {
	s      *Store
	g      *errgroup.Group
	ctx    context.Context
	sealed sync.WaitGroup // chunks queued and not yet sealed

	mu      sync.Mutex
	nw, dup int
	pinned  []addr.Addr  // chunks pinned for the upload (pins.go), released by finish
	zero    atomic.Int64 // bytes in the zero chunks given to chunk and owned
}

// pin pins a for the rest of the upload.
func (u *upload) pin(a addr.Addr) {
	u.s.pins.chunk(a)
	u.mu.Lock()
	u.pinned = append(u.pinned, a)
	u.mu.Unlock()
}

func (s *Store) newUpload(ctx context.Context) *upload {
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(s.cfg.Parallel)
	return &upload{s: s, g: g, ctx: gctx}
}

// chunk copies c (the chunker's buffer, which its next call reuses) into
// a pooled buffer, seals it and stores it in the background. The entry it
// returns is set once the chunk is sealed (after u.waitSealed).
func (u *upload) chunk(c []byte) *Entry {
	zero := chunker.IsZero(c)
	if zero {
		u.zero.Add(int64(len(c)))
		// A hole: the zero chunk of this length is stored already (every
		// hole of a sparse file, and of every file, is the same chunk).
		if e, ok := u.s.zeroEntry(len(c)); ok {
			u.pin(e.Addr) // referenced without a write: no holder sees it
			return &e
		}
	}
	return u.store(u.copy(c), zero)
}

// copy copies a chunk into a pooled buffer.
func (u *upload) copy(c []byte) *[]byte {
	bp := u.s.bufs.Get().(*[]byte)
	*bp = append((*bp)[:0], c...)
	return bp
}

// owned is chunk for a chunk already in a pooled buffer, which it gives
// back.
func (u *upload) owned(bp *[]byte) *Entry {
	zero := chunker.IsZero(*bp)
	if zero {
		u.zero.Add(int64(len(*bp)))
	}
	return u.store(bp, zero)
}

// store seals and stores the chunk in bp (zero: all its bytes are zero, so
// it is recorded as the zero chunk of its length once stored).
func (u *upload) store(bp *[]byte, zero bool) *Entry {
	data := *bp
	e := &Entry{}
	u.sealed.Add(1)
	u.g.Go(func() error {
		defer func() { *bp = data[:0]; u.s.bufs.Put(bp) }()
		blob, done, got, err := u.s.seal(data)
		if err != nil {
			u.sealed.Done()
			return err
		}
		defer done()
		*e = got
		u.sealed.Done()
		if err := u.stripe(got.Addr, blob); err != nil {
			return err
		}
		if zero {
			u.s.storedZero(got)
		}
		return nil
	})
	return e
}

// blob stores an already sealed blob in the background; done is called when
// it is no longer needed.
func (u *upload) blob(a addr.Addr, blob []byte, done func()) {
	u.g.Go(func() error {
		defer done()
		return u.stripe(a, blob)
	})
}

func (u *upload) stripe(a addr.Addr, blob []byte) error {
	u.pin(a)
	nw, dup, err := u.s.storeStripe(u.ctx, a, blob)
	u.mu.Lock()
	u.nw += nw
	u.dup += dup
	u.mu.Unlock()
	return err
}

// waitSealed waits until every queued chunk is sealed, and reports whether
// all of them were (a failure cancels the upload: finish returns the error).
func (u *upload) waitSealed() bool {
	u.sealed.Wait()
	return u.ctx.Err() == nil
}

// finish waits for every blob to be stored and returns the shards stored
// and found held, and the first error of: reading the input (readErr),
// storing, sealing the manifest (merr), the caller's context.
func (u *upload) finish(ctx context.Context, readErr, merr error) (nw, dup int, err error) {
	err = u.g.Wait()
	u.mu.Lock()
	nw, dup = u.nw, u.dup
	pinned := u.pinned
	u.pinned = nil
	u.mu.Unlock()
	u.s.pins.release(pinned)
	switch {
	case readErr != nil:
		return nw, dup, fmt.Errorf("store: read input: %w", readErr)
	case err != nil:
		return nw, dup, err
	case merr != nil:
		return nw, dup, merr
	}
	return nw, dup, ctx.Err()
}

// manifests seals entries as one manifest, or as a tree when they do not fit
// in one, queues them for storing and returns the root. Called once every
// entry is sealed.
func (u *upload) manifests(entries []Entry, kind byte) (Entry, error) {
	for len(entries) > maxEntries {
		var up []Entry
		for part := range slices.Chunk(entries, maxEntries) {
			e, err := u.manifest(part, kind)
			if err != nil {
				return Entry{}, err
			}
			up = append(up, e)
		}
		entries, kind = up, kindIndirect
	}
	return u.manifest(entries, kind)
}

// self stores data (in a pooled buffer, given back) as the self manifest
// of a file of one chunk, and returns the root.
func (u *upload) self(bp *[]byte) (Entry, error) {
	mp := u.s.bufs.Get().(*[]byte)
	plain := appendSelfManifest((*mp)[:0], *bp)
	size := int64(len(*bp))
	*bp = (*bp)[:0]
	u.s.bufs.Put(bp)
	blob, done, e, err := u.s.seal(plain)
	*mp = plain[:0]
	u.s.bufs.Put(mp)
	if err != nil {
		return Entry{}, err
	}
	e.Length = size
	u.blob(e.Addr, blob, done)
	return e, nil
}

func (u *upload) manifest(entries []Entry, kind byte) (Entry, error) {
	var size int64
	for _, e := range entries {
		size += e.Length
	}
	blob, done, e, err := u.s.seal(encodeManifest(manifest{kind: kind, size: size, entries: entries}))
	if err != nil {
		return Entry{}, err
	}
	e.Length = size
	u.blob(e.Addr, blob, done)
	return e, nil
}

// seal encrypts one plaintext chunk into a pooled buffer and addresses it;
// done gives the buffer back.
func (s *Store) seal(plain []byte) ([]byte, func(), Entry, error) {
	bp := s.blobs.Get().(*[]byte)
	blob, err := s.cfg.Keys.Seal((*bp)[:0], plain)
	if err != nil {
		s.blobs.Put(bp)
		return nil, nil, Entry{}, fmt.Errorf("store: seal: %w", err)
	}
	a := addr.Sum(blob)
	return blob, func() { s.blobs.Put(bp) }, Entry{Addr: a, Length: int64(len(plain)), K: s.cfg.K, M: s.cfg.M}, nil
}

// zeroEntry returns the entry of the chunk of n zero bytes, if this store
// stored it less than Config.ZeroReuse ago (its stripe is then whole).
// Older, it is stored again: every write of it tells its holders it is in
// use, and the peers' chunk collection deletes only what nobody wrote or
// asked about for longer than its grace, which ZeroReuse stays under.
func (s *Store) zeroEntry(n int) (Entry, bool) {
	s.zeroMu.Lock()
	defer s.zeroMu.Unlock()
	e, ok := s.zeros[n]
	if ok && time.Since(s.zeroAt[n]) > s.cfg.ZeroReuse {
		return Entry{}, false
	}
	return e, ok
}

// zeroBytes returns how many bytes of entries, old chunks of a file that
// a rewrite keeps, are chunks of zeros. Only a hole's chunks (ZeroCut
// long) and the file's last chunk (last: entries end the file) can be:
// their addresses are compared with the zero chunk's of that length,
// computed once per length.
func (s *Store) zeroBytes(entries []Entry, last bool) (int64, error) {
	var n int64
	for i, e := range entries {
		if e.self || (e.Length != int64(s.zeroCut) && !(last && i == len(entries)-1)) {
			continue
		}
		a, err := s.zeroAddr(e.Length)
		if err != nil {
			return 0, err
		}
		if a == e.Addr {
			n += e.Length
		}
	}
	return n, nil
}

// zeroAddr is the address of the chunk of n zero bytes.
func (s *Store) zeroAddr(n int64) (addr.Addr, error) {
	if n <= 0 || n > int64(s.cfg.Chunking.Max) {
		return addr.Addr{}, nil // no chunk is that long: matches nothing
	}
	s.zeroMu.Lock()
	if e, ok := s.zeros[int(n)]; ok {
		s.zeroMu.Unlock()
		return e.Addr, nil
	}
	a, ok := s.zeroAddrs[n]
	s.zeroMu.Unlock()
	if ok {
		return a, nil
	}
	_, done, e, err := s.seal(make([]byte, n))
	if err != nil {
		return addr.Addr{}, err
	}
	done()
	s.zeroMu.Lock()
	defer s.zeroMu.Unlock()
	if s.zeroAddrs == nil || len(s.zeroAddrs) >= 64 {
		s.zeroAddrs = map[int64]addr.Addr{} // the tails of a few files' holes
	}
	s.zeroAddrs[n] = e.Addr
	return e.Addr, nil
}

// storedZero records that the zero chunk e is stored.
func (s *Store) storedZero(e Entry) {
	s.zeroMu.Lock()
	defer s.zeroMu.Unlock()
	if s.zeros == nil {
		s.zeros, s.zeroAt = map[int]Entry{}, map[int]time.Time{}
	}
	if _, ok := s.zeros[int(e.Length)]; ok || len(s.zeros) < 64 { // a hole's length is Max or its remainder: few
		s.zeros[int(e.Length)] = e
		s.zeroAt[int(e.Length)] = time.Now()
	}
}
