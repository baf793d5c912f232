package store

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sort"

	"github.com/reefproject/reef/addr"
	"github.com/reefproject/reef/chunker"
)

// RewriteStats describes one PutRange.
type RewriteStats struct {
	Size        int64
	Zero        int64 // bytes of the new version in chunks of zeros (holes)
	KeptChunks  int   // old chunks reused as they were
	NewChunks   int   // chunks cut and stored again
	RechunkFrom int64 // where re-chunking started
	RechunkTo   int64 // where it stopped (re-synchronised with the old cuts, or the end)
}

// PutRange stores a new version of the file at base whose bytes differ
// from base only in [dirtyStart, dirtyEnd) (and past base's end): r reads
// the new version, size bytes long. Only the changed region is chunked
// again: from the start of the old chunk holding dirtyStart until a new cut
// falls on an old cut past dirtyEnd (content-defined chunking
// re-synchronises there), and the old chunks after it are reused as they
// are. The result is the same file a full PutFile would give, in far less
// work for a small change to a big file.
func (s *Store) PutRange(ctx context.Context, base addr.Addr, r io.ReaderAt, size, dirtyStart, dirtyEnd int64) (addr.Addr, RewriteStats, error) {
	st := RewriteStats{Size: size}
	ix, err := s.index(ctx, base)
	if err != nil {
		return addr.Addr{}, st, err
	}
	dirtyStart = max(min(dirtyStart, size), 0)
	// Start at the old chunk holding dirtyStart; the last old chunk was cut
	// by the end of the file, not by content, so an append starts there.
	i0 := sort.Search(len(ix.entries), func(i int) bool { return ix.offsets[i]+ix.entries[i].Length > dirtyStart })
	if i0 == len(ix.entries) && i0 > 0 {
		i0--
	}
	var start int64
	if i0 < len(ix.entries) {
		start = ix.offsets[i0]
	}
	entries := append([]Entry(nil), ix.entries[:i0]...)
	st.KeptChunks = i0
	st.RechunkFrom = start
	// Old cut positions after the dirty region that can be reused: only
	// when the file kept its size (truncation or growth shifts the tail).
	reusable := map[int64]int{}
	if size == ix.size {
		for j := i0; j < len(ix.entries); j++ {
			// (A self entry is a manifest, not a chunk to list.)
			if ix.offsets[j] >= dirtyEnd && !ix.entries[j].self {
				reusable[ix.offsets[j]] = j
			}
		}
	}
	ch, err := chunker.New(io.NewSectionReader(r, start, size-start), s.cfg.Chunking)
	if err != nil {
		return addr.Addr{}, st, fmt.Errorf("store: %w", err)
	}
	// New chunks are sealed and stored in parallel, as PutFile's are.
	u := s.newUpload(ctx)
	var fresh []*Entry
	var tail []Entry
	var readErr error
	pos := start
	// A result of one new chunk and nothing kept is a self manifest, as
	// in PutFile: the first new chunk waits to see.
	var first *[]byte
	release := func() {
		if first != nil {
			fresh = append(fresh, u.owned(first))
			first = nil
		}
	}
	for u.ctx.Err() == nil {
		if j, ok := reusable[pos]; ok {
			release()
			tail = ix.entries[j:]
			st.KeptChunks += len(ix.entries) - j
			break
		}
		c, err := ch.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			readErr = err
			break
		}
		st.NewChunks++
		pos += int64(len(c))
		if i0 == 0 && len(fresh) == 0 && first == nil {
			first = u.copy(c)
			continue
		}
		release()
		fresh = append(fresh, u.chunk(c))
	}
	st.RechunkTo = pos
	var root Entry
	var merr error
	if first != nil && chunker.IsZero(*first) {
		fresh = append(fresh, u.owned(first)) // a hole, as in PutFile
		first = nil
	}
	if first != nil {
		if readErr == nil && u.ctx.Err() == nil && int64(len(*first)) == size {
			root, merr = u.self(first)
		} else {
			*first = (*first)[:0]
			s.bufs.Put(first)
			if readErr == nil && u.ctx.Err() == nil {
				merr = fmt.Errorf("store: rewrite produced %d bytes, want %d", pos, size)
			}
		}
	} else if readErr == nil && u.waitSealed() {
		for _, e := range fresh {
			entries = append(entries, *e)
		}
		entries = append(entries, tail...)
		var total int64
		for _, e := range entries {
			total += e.Length
		}
		kept, zerr := s.zeroBytes(entries[:i0], len(fresh) == 0 && len(tail) == 0)
		keptTail, terr := s.zeroBytes(tail, true)
		st.Zero = u.zero.Load() + kept + keptTail
		switch {
		case total != size:
			merr = fmt.Errorf("store: rewrite produced %d bytes, want %d", total, size)
		case zerr != nil || terr != nil:
			merr = errors.Join(zerr, terr)
		default:
			root, merr = u.manifests(entries, kindData)
		}
	}
	if _, _, err := u.finish(ctx, readErr, merr); err != nil {
		return addr.Addr{}, st, err
	}
	return root.Addr, st, nil
}
