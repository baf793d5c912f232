package fs

import (
	"fmt"
	"io"
	"os"
)

// memStageMax is the size up to which a file being written is staged in
// memory; past it, the staging copy moves to a local file.
const memStageMax = 1 << 20

// stage is the local copy of a file being written.
type stage interface {
	io.ReaderAt
	io.WriterAt
	Truncate(size int64) error
	Close() error
}

// memStage is a staging copy in memory.
type memStage struct{ b []byte }

func (m *memStage) ReadAt(p []byte, off int64) (int, error) {
	if off >= int64(len(m.b)) {
		return 0, io.EOF
	}
	n := copy(p, m.b[off:])
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

func (m *memStage) WriteAt(p []byte, off int64) (int, error) {
	end := off + int64(len(p))
	if end > int64(len(m.b)) {
		m.grow(end)
	}
	copy(m.b[off:], p)
	return len(p), nil
}

func (m *memStage) grow(n int64) {
	if n <= int64(cap(m.b)) {
		old := len(m.b)
		m.b = m.b[:n]
		clear(m.b[old:])
		return
	}
	nb := make([]byte, n, max(n, 2*int64(cap(m.b))))
	copy(nb, m.b)
	m.b = nb
}

func (m *memStage) Truncate(size int64) error {
	if size > int64(len(m.b)) {
		m.grow(size)
	} else {
		m.b = m.b[:size]
	}
	return nil
}

func (m *memStage) Close() error { m.b = nil; return nil }

// fileStage is a staging copy in an unnamed local file.
type fileStage struct{ *os.File }

func newFileStage(dir string) (*fileStage, error) {
	f, err := os.CreateTemp(dir, "stage-*")
	if err != nil {
		return nil, fmt.Errorf("fs: staging file: %w", err)
	}
	os.Remove(f.Name()) // unnamed: nothing to clean up after a crash
	return &fileStage{f}, nil
}

// spill moves a memory stage of size bytes to a file.
func spill(dir string, m *memStage, size int64) (*fileStage, error) {
	f, err := newFileStage(dir)
	if err != nil {
		return nil, err
	}
	if _, err := f.WriteAt(m.b[:size], 0); err != nil {
		f.Close()
		return nil, err
	}
	m.Close()
	return f, nil
}
