package metrics

import (
	"io"
	"net/http"
)

// recorder holds the per-request state of Instrument in one allocation.
// It is used by the handler's goroutine only.
type recorder struct {
	w    responseWriter
	b    countingBody
	done bool // the handler returned without panicking
}

// responseWriter records the status and counts the body bytes written
// through it. It is used by the handler's goroutine only.
type responseWriter struct {
	rw     http.ResponseWriter
	status int   // final status sent, 0 until the header is written
	n      int64 // body bytes written
}

var (
	_ http.ResponseWriter = (*responseWriter)(nil)
	_ http.Flusher        = (*responseWriter)(nil)
	_ io.ReaderFrom       = (*responseWriter)(nil)
)

// Header returns the header map of the underlying writer.
func (w *responseWriter) Header() http.Header { return w.rw.Header() }

// WriteHeader records the first final status (not 1xx, except 101) and
// passes code on. Invalid codes are not recorded: net/http panics on them.
func (w *responseWriter) WriteHeader(code int) {
	if w.status == 0 && (code >= 200 && code <= 999 || code == http.StatusSwitchingProtocols) {
		w.status = code
	}
	w.rw.WriteHeader(code)
}

// Write counts the bytes written; the first Write implies status 200.
func (w *responseWriter) Write(p []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	n, err := w.rw.Write(p)
	w.n += int64(n)
	return n, err
}

// ReadFrom keeps the underlying writer's io.ReaderFrom (sendfile) and counts
// the bytes copied.
func (w *responseWriter) ReadFrom(r io.Reader) (int64, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	var n int64
	var err error
	if rf, ok := w.rw.(io.ReaderFrom); ok {
		n, err = rf.ReadFrom(r)
	} else {
		n, err = io.Copy(writerOnly{w.rw}, r)
	}
	w.n += n
	return n, err
}

// Flush sends buffered data to the client, as http.Flusher.
func (w *responseWriter) Flush() { _ = w.FlushError() }

// FlushError is Flush returning the error; http.ResponseController.Flush
// calls it.
func (w *responseWriter) FlushError() error {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return http.NewResponseController(w.rw).Flush()
}

// Unwrap returns the underlying writer, for http.ResponseController.
func (w *responseWriter) Unwrap() http.ResponseWriter { return w.rw }

// writerOnly hides every method of a writer but Write, so io.Copy does not
// call back into ReadFrom.
type writerOnly struct{ io.Writer }

// countingBody counts the request body bytes the handler reads.
type countingBody struct {
	rc io.ReadCloser
	n  int64
}

var _ io.ReadCloser = (*countingBody)(nil)

// Read reads from the request body and counts the bytes.
func (b *countingBody) Read(p []byte) (int, error) {
	n, err := b.rc.Read(p)
	b.n += int64(n)
	return n, err
}

// Close closes the request body.
func (b *countingBody) Close() error { return b.rc.Close() }
