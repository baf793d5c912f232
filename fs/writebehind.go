package fs

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
)

// writeBehindEnabled turns write-behind on: a file written sequentially is
// stored while it is being written, not all at once at close.
const writeBehindEnabled = true

// streamMin is the size a sequentially written file must pass before its
// bytes are streamed to the store. Smaller files are stored at close (inline
// in the namespace up to Config.InlineMax); a stream for them would cost a
// goroutine and a chunker for nothing.
const streamMin = memStageMax

var (
	errStreamEnded   = errors.New("fs: write-behind store ended before its input")
	errStreamAborted = errors.New("fs: write-behind stream abandoned")
)

// maxAhead bounds how far the application's writes may run ahead of the
// background store: past it a write waits for the store (back-pressure). The
// bytes in between are held in memory (pooled buffers). With many files
// streamed at once (a parallel copy) each gets a share of streamBudget
// instead, but never less than minAhead: the memory held stays below
// max(streamBudget, minAhead x streams) for the whole process.
const (
	maxAhead     = 32 << 20
	minAhead     = 4 << 20
	streamBudget = 256 << 20
)

// streams counts the write-behind streams running in this process.
var streams atomic.Int64

// aheadLimit is how far one stream may run ahead when n are running.
func aheadLimit(n int64) int64 {
	return max(minAhead, min(maxAhead, streamBudget/max(n, 1)))
}

// writeBehind runs a Content.Store in the background over the bytes of a
// file being appended, so that chunking, encoding and uploading overlap with
// the application's writes. The store reads the bytes staged before the
// stream started from the staging file and every later append from memory
// (a tailReader): while a stream runs, appended bytes are not written to
// the staging file at all. Writing them there cost the mount peer a copy
// into freshly allocated page cache and a read back, about 1.5 CPU-s per
// GiB on the project's VM. Whatever needs the staging copy to be whole
// (a read, an overwrite, a truncate) first ends the stream and continues
// over the manifest it stored (openFile.settle), as for any big file.
//
// A writeBehind belongs to one openFile and is used under its mutex. Its
// goroutine is stopped by finish or abort.
type writeBehind struct {
	tail   *tailReader
	cancel context.CancelFunc

	done chan struct{} // closed when Store has returned
	// Set before done is closed.
	res Stored
	err error
}

// startWriteBehind starts c.Store on the first staged bytes of r, then on
// the bytes pushed. The store runs detached from any FUSE request; abort
// cancels it.
func startWriteBehind(c Content, r io.ReaderAt, staged int64) *writeBehind {
	ctx, cancel := context.WithCancel(context.Background())
	t := &tailReader{r: r, rEnd: staged, avail: staged}
	t.cond = sync.NewCond(&t.mu)
	w := &writeBehind{tail: t, cancel: cancel, done: make(chan struct{})}
	streams.Add(1)
	go func() {
		defer close(w.done)
		defer streams.Add(-1)
		w.res, w.err = c.Store(ctx, t)
		// A store that stopped early must not leave a writer waiting.
		if w.err != nil {
			t.fail(w.err)
		} else {
			t.fail(errStreamEnded)
		}
	}()
	return w
}

// fed returns how many bytes were handed to the store.
func (w *writeBehind) fed() int64 {
	w.tail.mu.Lock()
	defer w.tail.mu.Unlock()
	return w.tail.avail
}

// finish ends the input and waits for the store: it returns the manifest of
// exactly the bytes fed, or the error that stopped the store.
func (w *writeBehind) finish(ctx context.Context) (Stored, error) {
	w.tail.end()
	select {
	case <-w.done:
	case <-ctx.Done():
		w.abort()
		return Stored{}, ctx.Err()
	}
	w.cancel()
	fed := w.fed()
	switch {
	case w.err != nil:
		return Stored{}, w.err
	case w.res.Size != fed:
		return Stored{}, fmt.Errorf("fs: write-behind stored %d bytes of %d", w.res.Size, fed)
	}
	return w.res, nil
}

// abort abandons the stream: the store is cancelled and its result ignored.
// It does not wait for the store's goroutine, which ends on its own.
func (w *writeBehind) abort() {
	w.cancel()
	w.tail.fail(errStreamAborted)
}

// tailReader is the io.Reader the background store consumes: the first
// rEnd bytes from the staging file, then the appended bytes queued in
// memory, waiting for more until end. The staged bytes are never changed
// while it is in use: a write that would change them ends the stream first.
type tailReader struct {
	r    io.ReaderAt
	rEnd int64 // bytes below this come from r

	mu    sync.Mutex // guards the fields below
	cond  *sync.Cond // on mu: avail, pos, ended or err changed
	pos   int64      // bytes read
	avail int64      // bytes appended
	q     [][]byte   // appended bytes from max(pos, rEnd) on, in order
	qoff  int        // bytes of q[0] already read
	ended bool       // no more bytes will be appended
	err   error      // the stream failed or was abandoned
}

// streamBuf holds the bytes of one write while the store catches up.
var streamBuf = sync.Pool{New: func() any { b := make([]byte, 0, 1<<20); return &b }}

// Read reads appended bytes, waiting for some when it has read them all.
func (t *tailReader) Read(p []byte) (int, error) {
	t.mu.Lock()
	for t.pos >= t.avail && !t.ended && t.err == nil {
		t.cond.Wait()
	}
	if t.err != nil {
		err := t.err
		t.mu.Unlock()
		return 0, err
	}
	if t.pos >= t.avail {
		t.mu.Unlock()
		return 0, io.EOF
	}
	if t.pos >= t.rEnd {
		// From memory, one buffer per call, copied without the lock:
		// only this goroutine consumes q, pushes only append to it.
		b := t.q[0][t.qoff:]
		t.mu.Unlock()
		n := copy(p, b)
		t.mu.Lock()
		if t.err != nil { // abandoned meanwhile: q is gone
			err := t.err
			t.mu.Unlock()
			return 0, err
		}
		t.pos += int64(n)
		t.qoff += n
		if n == len(b) {
			done := t.q[0]
			t.q[0] = nil
			t.q = t.q[1:]
			t.qoff = 0
			if cap(done) == 1<<20 {
				done = done[:0]
				streamBuf.Put(&done)
			}
		}
		t.cond.Broadcast()
		t.mu.Unlock()
		return n, nil
	}
	pos, n := t.pos, min(int64(len(p)), t.rEnd-t.pos)
	t.mu.Unlock()
	m, err := t.r.ReadAt(p[:n], pos)
	if int64(m) < n && err == nil {
		err = io.ErrUnexpectedEOF
	}
	if err != nil && !(errors.Is(err, io.EOF) && int64(m) == n) {
		return m, fmt.Errorf("fs: read staging: %w", err)
	}
	t.mu.Lock()
	t.pos += n
	t.cond.Broadcast()
	t.mu.Unlock()
	return m, nil
}

// push queues a copy of p (just appended) for the store, then waits while
// the reader is more than aheadLimit bytes behind. It returns the stream's
// error, if any: then p was not taken.
func (t *tailReader) push(p []byte) error {
	if len(p) == 0 {
		return nil // an empty buffer in q would make Read return 0, nil
	}
	var b []byte
	if len(p) <= 1<<20 {
		b = append((*streamBuf.Get().(*[]byte))[:0], p...)
	} else {
		b = bytes.Clone(p)
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.err != nil {
		return t.err
	}
	t.q = append(t.q, b)
	t.avail += int64(len(p))
	t.cond.Broadcast()
	for t.avail-t.pos > aheadLimit(streams.Load()) && t.err == nil {
		t.cond.Wait()
	}
	return t.err
}

// end says that no more bytes come: Read returns io.EOF after the last.
func (t *tailReader) end() {
	t.mu.Lock()
	t.ended = true
	t.cond.Broadcast()
	t.mu.Unlock()
}

// fail makes Read and add return err from now on (the first error stays).
func (t *tailReader) fail(err error) {
	t.mu.Lock()
	if t.err == nil {
		t.err = err
	}
	t.q = nil // nobody reads them now
	t.cond.Broadcast()
	t.mu.Unlock()
}

// appended records that p was just appended to the staging copy and
// starts a write-behind stream over the staged bytes once the file passes
// streamMin; later appends go to the stream (openFile.push), not to the
// staging file. Holds of.mu.
func (of *openFile) appended(p []byte) {
	if !writeBehindEnabled || !of.seq || of.wb != nil {
		return
	}
	st, ok := of.staging.(*fileStage)
	if !ok || of.size <= streamMin || of.size <= of.fs.cfg.InlineMax {
		return
	}
	// The reader keeps st: a fileStage is never replaced while the stream
	// runs (truncate and release end the stream first).
	of.wb = startWriteBehind(of.fs.cfg.Content, st, of.size)
}

// push appends p through the running stream. On an error the stream has
// failed and the bytes not stored are gone: the file is lost (every later
// read and commit fails) until it is truncated to zero. Holds of.mu.
func (of *openFile) push(p []byte) error {
	if err := of.wb.tail.push(p); err != nil {
		of.wb.abort()
		of.wb = nil
		of.lost = fmt.Errorf("fs: write-behind store: %w", err)
		return of.lost
	}
	of.size += int64(len(p))
	return nil
}

// breakSeq records that the file is about to change otherwise than by an
// append: the stream, if any, is ended first and the file continues over
// what it stored (settle). Holds of.mu.
func (of *openFile) breakSeq(ctx context.Context) error {
	of.seq = false
	return of.settle(ctx)
}

// settle ends the write-behind stream, if any, and makes the staging copy
// a lazily staged one over the manifest the stream stored (which holds
// exactly the file as written here): unchanged blocks are read from it,
// and the next commit stores only what changes from now on. Holds of.mu.
func (of *openFile) settle(ctx context.Context) error {
	if of.wb == nil {
		return nil
	}
	st, err := of.finishStream(uninterruptible(ctx))
	if err != nil {
		return err
	}
	return of.adopt(st)
}

// finishStream ends the stream and returns its manifest; on a failure the
// file is lost (see push). Holds of.mu.
func (of *openFile) finishStream(ctx context.Context) (Stored, error) {
	wb := of.wb
	of.wb = nil
	st, err := wb.finish(ctx)
	if err == nil && st.Size != of.size {
		err = fmt.Errorf("stored %d bytes of %d", st.Size, of.size)
	}
	if err != nil {
		of.lost = fmt.Errorf("fs: write-behind store: %w", err)
		return st, of.lost
	}
	return st, nil
}

// adopt makes m, stored content equal to the file as written here, the
// content that unstaged blocks come from; the staging file holds none of
// it (its first blocks may still hold the bytes staged before the stream:
// they are dropped). Holds of.mu.
func (of *openFile) adopt(st Stored) error {
	if err := of.staging.Truncate(0); err != nil {
		return err
	}
	if err := of.staging.Truncate(of.size); err != nil {
		return err
	}
	of.old, of.oldZero, of.cut, of.have = st.Manifest, st.Zero, of.size, map[int64]bool{}
	of.keepOld()
	of.dirtyStart, of.dirtyEnd = 1<<62, 0
	of.seq = false
	return nil
}

// dropStream abandons the write-behind stream, if any. Holds of.mu.
func (of *openFile) dropStream() {
	if of.wb != nil {
		of.wb.abort()
		of.wb = nil
	}
}
