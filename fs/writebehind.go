package fs

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
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
// bytes in between sit in the staging file, not in memory.
const maxAhead = 32 << 20

// writeBehind runs a Content.Store in the background over the bytes of a
// file being appended, so that chunking, encoding and uploading overlap with
// the application's writes. The store reads the appended bytes from the
// staging file itself (a tailReader): a write only records that more bytes
// are there and wakes the store, so it neither copies the bytes again nor
// waits for the store's goroutine to be scheduled, which on a busy machine
// costs more than the write itself.
//
// A writeBehind belongs to one openFile and is used under its mutex. Its
// goroutine is stopped by finish or abort.
type writeBehind struct {
	tail   *tailReader
	cancel context.CancelFunc

	done chan struct{} // closed when Store has returned
	// Set before done is closed.
	manifest [32]byte
	n        int64
	err      error
}

// startWriteBehind starts c.Store on the bytes of r as they are appended.
// The store runs detached from any FUSE request; abort cancels it.
func startWriteBehind(c Content, r io.ReaderAt) *writeBehind {
	ctx, cancel := context.WithCancel(context.Background())
	t := &tailReader{r: r}
	t.cond = sync.NewCond(&t.mu)
	w := &writeBehind{tail: t, cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(w.done)
		w.manifest, w.n, w.err = c.Store(ctx, t)
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
func (w *writeBehind) finish(ctx context.Context) ([32]byte, int64, error) {
	w.tail.end()
	select {
	case <-w.done:
	case <-ctx.Done():
		w.abort()
		return [32]byte{}, 0, ctx.Err()
	}
	w.cancel()
	fed := w.fed()
	switch {
	case w.err != nil:
		return [32]byte{}, 0, w.err
	case w.n != fed:
		return [32]byte{}, 0, fmt.Errorf("fs: write-behind stored %d bytes of %d", w.n, fed)
	}
	return w.manifest, w.n, nil
}

// abort abandons the stream: the store is cancelled and its result ignored.
// It does not wait for the store's goroutine, which ends on its own.
func (w *writeBehind) abort() {
	w.cancel()
	w.tail.fail(errStreamAborted)
}

// tailReader reads a staging file up to the bytes appended so far, waiting
// for more until end; it is the io.Reader the background store consumes.
// The bytes below avail are never changed while it is in use: a write that
// would change them abandons the stream first.
type tailReader struct {
	r io.ReaderAt

	mu    sync.Mutex // guards the fields below
	cond  *sync.Cond // on mu: avail, pos, ended or err changed
	pos   int64      // bytes read
	avail int64      // bytes appended
	ended bool       // no more bytes will be appended
	err   error      // the stream failed or was abandoned
}

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
	pos, n := t.pos, min(int64(len(p)), t.avail-t.pos)
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

// add records that n more bytes were appended, then waits while the reader
// is more than maxAhead bytes behind. It returns the stream's error, if any.
func (t *tailReader) add(n int64) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.err != nil {
		return t.err
	}
	t.avail += n
	t.cond.Broadcast()
	for t.avail-t.pos > maxAhead && t.err == nil {
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
	t.cond.Broadcast()
	t.mu.Unlock()
}

// appended records that p was just appended to the staging copy and hands
// it to the write-behind stream, starting one (over the staged bytes before
// p too) once the file passes streamMin. Holds of.mu.
func (of *openFile) appended(p []byte) {
	if !writeBehindEnabled || !of.seq {
		return
	}
	n := int64(len(p))
	if of.wb == nil {
		st, ok := of.staging.(*fileStage)
		if !ok || of.size <= streamMin || of.size <= of.fs.cfg.InlineMax {
			return
		}
		// The reader keeps st: a fileStage is never replaced while the
		// stream runs (truncate and release abandon the stream first).
		of.wb = startWriteBehind(of.fs.cfg.Content, st)
		n = of.size // the staged bytes before p too
	}
	// An error ends the stream; finish reports it at commit.
	_ = of.wb.tail.add(n)
}

// breakSeq records that the staging copy is no longer just the bytes
// appended from offset 0: a write-behind stream cannot describe it, and
// commit stores the staging copy instead. Holds of.mu.
func (of *openFile) breakSeq() {
	of.seq = false
	of.dropStream()
}

// dropStream abandons the write-behind stream, if any. Holds of.mu.
func (of *openFile) dropStream() {
	if of.wb != nil {
		of.wb.abort()
		of.wb = nil
	}
}

// takeStream ends the write-behind stream and returns its manifest when it
// describes the staging copy exactly (ok false: store the staging copy).
// An error of the background store is returned: it must reach the caller
// of flush or fsync. Holds of.mu.
func (of *openFile) takeStream(ctx context.Context) (m [32]byte, ok bool, err error) {
	wb := of.wb
	if wb == nil {
		return m, false, nil
	}
	of.wb = nil
	if !of.seq || of.old != ([32]byte{}) {
		wb.abort()
		return m, false, nil
	}
	m, n, err := wb.finish(ctx)
	if err != nil {
		return m, false, fmt.Errorf("fs: write-behind store: %w", err)
	}
	if n != of.size {
		return m, false, fmt.Errorf("fs: write-behind stored %d bytes of %d", n, of.size)
	}
	return m, true, nil
}
