package fs

import (
	"errors"
	"fmt"
	"io"
	"os"
	"syscall"
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

// contents returns a reader of the first size bytes of the file that hands
// out its holes as zeros without reading them (SEEK_DATA, SEEK_HOLE): a
// file extended by truncate or written sparsely is mostly holes, which
// read(2) fills with zeros at a fraction of memory speed (4 GiB of them
// took 3.4 CPU-s to read on the CI VM). Where the file system cannot
// tell, everything is read.
func (f *fileStage) contents(size int64) io.Reader {
	return &holeReader{f: f.File, size: size}
}

type holeReader struct {
	f       *os.File
	off     int64 // next byte to hand out
	size    int64
	dataEnd int64 // [off, dataEnd) is data, when off < dataEnd
	holeEnd int64 // [off, holeEnd) is a hole, when off < holeEnd
}

func (r *holeReader) Read(p []byte) (int, error) {
	if r.off >= r.size {
		return 0, io.EOF
	}
	if int64(len(p)) > r.size-r.off {
		p = p[:r.size-r.off]
	}
	if r.off >= r.dataEnd && r.off >= r.holeEnd {
		r.locate()
	}
	if r.off < r.holeEnd {
		n := int(min(int64(len(p)), r.holeEnd-r.off))
		clear(p[:n])
		r.off += int64(n)
		return n, nil
	}
	n, err := r.f.ReadAt(p[:min(int64(len(p)), r.dataEnd-r.off)], r.off)
	r.off += int64(n)
	if err == io.EOF && r.off < r.size {
		err = io.ErrUnexpectedEOF
	}
	if n > 0 && err == io.EOF {
		err = nil
	}
	return n, err
}

// locate finds the extent at r.off: a hole up to the next data, or data up
// to the next hole.
func (r *holeReader) locate() {
	r.dataEnd = r.size // unless told otherwise: data
	data, err := r.seek(r.off, seekData)
	switch {
	case errors.Is(err, syscall.ENXIO): // no data after off
		r.holeEnd = r.size
		return
	case err != nil:
		return
	case data > r.off:
		r.holeEnd = min(data, r.size)
		return
	}
	if hole, err := r.seek(r.off, seekHole); err == nil && hole > r.off {
		r.dataEnd = min(hole, r.size)
	}
}

const (
	seekData = 3 // SEEK_DATA
	seekHole = 4 // SEEK_HOLE
)

// seek is lseek(2) without touching the os.File's state (reads and writes
// of a stage are all positional).
func (r *holeReader) seek(off int64, whence int) (int64, error) {
	rc, err := r.f.SyscallConn()
	if err != nil {
		return 0, err
	}
	var pos int64
	var serr error
	if err := rc.Control(func(fd uintptr) { pos, serr = syscall.Seek(int(fd), off, whence) }); err != nil {
		return 0, err
	}
	return pos, serr
}
