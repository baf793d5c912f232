package fs

import (
	"context"
	"errors"
	"fmt"
	"io"
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

// writeBehind feeds the bytes of a file being appended to a Content.Store
// running in the background on a pipe, so that chunking, encoding and
// uploading overlap with the application's writes. The pipe has no buffer:
// a write returns when the store has taken the bytes, so a slow cluster
// slows the writer down instead of filling memory.
//
// A writeBehind belongs to one openFile and is used under its mutex. Its
// goroutine is stopped by finish or abort.
type writeBehind struct {
	pw     *io.PipeWriter
	cancel context.CancelFunc
	fed    int64 // bytes the store has taken
	failed error // the first feed error; the stream is unusable after it

	done chan struct{} // closed when Store has returned
	// Set before done is closed.
	manifest [32]byte
	n        int64
	err      error
}

// startWriteBehind starts c.Store on a pipe. The store runs detached from
// any FUSE request; abort cancels it.
func startWriteBehind(c Content) *writeBehind {
	pr, pw := io.Pipe()
	ctx, cancel := context.WithCancel(context.Background())
	w := &writeBehind{pw: pw, cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(w.done)
		w.manifest, w.n, w.err = c.Store(ctx, pr)
		// A store that stopped early must not leave a writer blocked.
		if w.err != nil {
			pr.CloseWithError(w.err)
		} else {
			pr.CloseWithError(errStreamEnded)
		}
	}()
	return w
}

// feed hands p to the store, blocking until it has taken it. After a
// failure it does nothing: the error is reported by finish.
func (w *writeBehind) feed(p []byte) {
	if w.failed != nil {
		return
	}
	n, err := w.pw.Write(p)
	w.fed += int64(n)
	if err != nil {
		w.failed = err
	}
}

// feedFrom feeds the bytes [0, n) of r.
func (w *writeBehind) feedFrom(r io.ReaderAt, n int64) error {
	buf := make([]byte, min(n, 1<<20))
	for off := int64(0); off < n && w.failed == nil; {
		m, err := r.ReadAt(buf[:min(int64(len(buf)), n-off)], off)
		if m > 0 {
			w.feed(buf[:m])
			off += int64(m)
		}
		if err != nil && !(errors.Is(err, io.EOF) && off == n) {
			return fmt.Errorf("fs: read staging: %w", err)
		}
	}
	return nil
}

// finish ends the input and waits for the store: it returns the manifest of
// exactly the bytes fed, or the error that stopped the store.
func (w *writeBehind) finish(ctx context.Context) ([32]byte, int64, error) {
	w.pw.Close()
	select {
	case <-w.done:
	case <-ctx.Done():
		w.abort()
		return [32]byte{}, 0, ctx.Err()
	}
	w.cancel()
	switch {
	case w.err != nil:
		return [32]byte{}, 0, w.err
	case w.failed != nil:
		return [32]byte{}, 0, w.failed
	case w.n != w.fed:
		return [32]byte{}, 0, fmt.Errorf("fs: write-behind stored %d bytes of %d", w.n, w.fed)
	}
	return w.manifest, w.n, nil
}

// abort abandons the stream: the store is cancelled and its result ignored.
// It does not wait for the store's goroutine, which ends on its own.
func (w *writeBehind) abort() {
	w.cancel()
	w.pw.CloseWithError(errStreamAborted)
}

// appended records that p was just appended to the staging copy and feeds
// it to the write-behind stream, starting one (with the staged bytes before
// p) once the file passes streamMin. Holds of.mu.
func (of *openFile) appended(p []byte) {
	if !writeBehindEnabled || !of.seq {
		return
	}
	if of.wb == nil {
		if of.size <= streamMin || of.size <= of.fs.cfg.InlineMax {
			return
		}
		of.wb = startWriteBehind(of.fs.cfg.Content)
		prefix := of.size - int64(len(p))
		if err := of.wb.feedFrom(of.staging, prefix); err != nil {
			of.fs.log.Warn("write-behind: replaying the staged start", "err", err)
			of.breakSeq()
			return
		}
	}
	of.wb.feed(p)
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
	if !of.seq || of.old != ([32]byte{}) || wb.fed != of.size && wb.failed == nil {
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
