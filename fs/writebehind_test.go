package fs

import (
	"bytes"
	"context"
	"errors"
	"math/rand/v2"
	"syscall"
	"testing"

	"bazil.org/fuse"
)

func randBytes(n int, seed uint64) []byte {
	b := make([]byte, n)
	r := rand.New(rand.NewPCG(seed, 2))
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

// appendAll writes data from off in pieces of the kernel's write size.
func appendAll(t *testing.T, h *Handle, off int64, data []byte) {
	t.Helper()
	for i := 0; i < len(data); i += 128 << 10 {
		write(t, h, off+int64(i), data[i:min(i+128<<10, len(data))])
	}
}

// appendUntilError appends data from 0 as appendAll does and returns the
// first write's error (a failed stream fails the write that finds it).
func appendUntilError(h *Handle, data []byte) error {
	for i := 0; i < len(data); i += 128 << 10 {
		req := &fuse.WriteRequest{Offset: int64(i), Data: data[i:min(i+128<<10, len(data))]}
		if err := h.Write(context.Background(), req, &fuse.WriteResponse{}); err != nil {
			return err
		}
	}
	return nil
}

func flush(t *testing.T, h *Handle) {
	t.Helper()
	if err := h.Flush(context.Background(), &fuse.FlushRequest{}); err != nil {
		t.Fatalf("flush: %v", err)
	}
}

// stored returns the bytes the namespace says the file holds now.
func stored(t *testing.T, f *FS, file *File) []byte {
	t.Helper()
	in, err := f.cfg.Tree.GetInode(file.ino)
	if err != nil {
		t.Fatal(err)
	}
	if in.Content.Manifest == ([32]byte{}) {
		return in.Content.Inline
	}
	mc := f.cfg.Content.(*memContent)
	mc.mu.Lock()
	defer mc.mu.Unlock()
	b, ok := mc.files[in.Content.Manifest]
	if !ok {
		t.Fatalf("manifest %x not in the store", in.Content.Manifest[:4])
	}
	if int64(len(b)) != in.Size {
		t.Fatalf("stored %d bytes, inode says %d", len(b), in.Size)
	}
	return b
}

func streaming(h *Handle) bool {
	h.of.mu.Lock()
	defer h.of.mu.Unlock()
	return h.of.wb != nil
}

// TestWriteBehind checks that what is stored always equals what was written,
// whether the write-behind stream is used or abandoned.
func TestWriteBehind(t *testing.T) {
	const size = 5<<20 + 12345
	data := randBytes(size, 1)
	tests := []struct {
		name string
		// run writes through h and returns the expected content.
		run func(t *testing.T, file *File, h *Handle) []byte
		// stores is how many Store calls succeed when the streams are
		// used and nothing is uploaded twice; 0: not checked.
		stores int
	}{
		{"sequential", func(t *testing.T, file *File, h *Handle) []byte {
			appendAll(t, h, 0, data)
			if !streaming(h) {
				t.Error("no write-behind stream after a sequential write")
			}
			return data
		}, 1},
		{"sequential then overwrite", func(t *testing.T, file *File, h *Handle) []byte {
			appendAll(t, h, 0, data)
			want := bytes.Clone(data)
			write(t, h, 1000, []byte("overwritten"))
			copy(want[1000:], "overwritten")
			if streaming(h) {
				t.Error("stream still running after an overwrite")
			}
			return want
		}, 0},
		{"sequential then truncate and append", func(t *testing.T, file *File, h *Handle) []byte {
			appendAll(t, h, 0, data[:3<<20])
			if err := file.Setattr(context.Background(), &fuse.SetattrRequest{Valid: fuse.SetattrSize, Size: 2 << 20}, &fuse.SetattrResponse{}); err != nil {
				t.Fatal(err)
			}
			appendAll(t, h, 2<<20, data[2<<20:])
			return data
		}, 0},
		{"sequential then truncate", func(t *testing.T, file *File, h *Handle) []byte {
			appendAll(t, h, 0, data)
			if err := file.Setattr(context.Background(), &fuse.SetattrRequest{Valid: fuse.SetattrSize, Size: 3 << 20}, &fuse.SetattrResponse{}); err != nil {
				t.Fatal(err)
			}
			return data[:3<<20]
		}, 0},
		{"flushes mid-file", func(t *testing.T, file *File, h *Handle) []byte {
			flush(t, h) // bash closes a dup'd fd before writing
			appendAll(t, h, 0, data[:2<<20])
			flush(t, h)
			if got := stored(t, file.fs, file); !bytes.Equal(got, data[:2<<20]) {
				t.Errorf("after the first flush: stored %d bytes, differ", len(got))
			}
			flush(t, h) // nothing new
			appendAll(t, h, 2<<20, data[2<<20:])
			if streaming(h) {
				t.Error("a new stream after a flush: the file continues over the stored manifest")
			}
			return data
		}, 1}, // the stream, then StoreRange of what was appended after the flush
		{"sequential then read back", func(t *testing.T, file *File, h *Handle) []byte {
			appendAll(t, h, 0, data[:4<<20])
			if got := readAll(t, h, 4<<20); !bytes.Equal(got, data[:4<<20]) {
				t.Errorf("read back while streaming: %d bytes, differ", len(got))
			}
			if streaming(h) {
				t.Error("stream still running after a read")
			}
			appendAll(t, h, 4<<20, data[4<<20:])
			return data
		}, 1},
		{"sequential then punch hole", func(t *testing.T, file *File, h *Handle) []byte {
			appendAll(t, h, 0, data)
			want := bytes.Clone(data)
			req := &fuse.FAllocateRequest{Offset: 100000, Length: 600000, Mode: fuse.FAllocatePunchHole | fuse.FAllocateKeepSize}
			if err := h.FAllocate(context.Background(), req); err != nil {
				t.Fatal(err)
			}
			clear(want[100000:700000])
			return want
		}, 1},
		{"append mode", func(t *testing.T, file *File, h *Handle) []byte {
			for i := 0; i < len(data); i += 100000 {
				var resp fuse.WriteResponse
				req := &fuse.WriteRequest{Offset: 0, Data: data[i:min(i+100000, len(data))], FileFlags: fuse.OpenAppend}
				if err := h.Write(context.Background(), req, &resp); err != nil {
					t.Fatal(err)
				}
			}
			return data
		}, 1},
		{"small", func(t *testing.T, file *File, h *Handle) []byte {
			appendAll(t, h, 0, data[:streamMin])
			if streaming(h) {
				t.Error("a stream for a file below streamMin")
			}
			return data[:streamMin]
		}, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, _, mc := newTestFS(t)
			file, h := create(t, f, "f")
			want := tt.run(t, file, h)
			flush(t, h)
			if got := stored(t, f, file); !bytes.Equal(got, want) {
				t.Errorf("stored %d bytes, want %d, content differs", len(got), len(want))
			}
			if got := readAll(t, h, len(want)+1); !bytes.Equal(got, want) {
				t.Errorf("read back through the handle: %d bytes, differ", len(got))
			}
			if err := h.Release(context.Background(), &fuse.ReleaseRequest{}); err != nil {
				t.Fatal(err)
			}
			if got := stored(t, f, file); !bytes.Equal(got, want) {
				t.Errorf("after release: stored %d bytes, want %d, content differs", len(got), len(want))
			}
			mc.mu.Lock()
			defer mc.mu.Unlock()
			if tt.stores != 0 && mc.stores != tt.stores {
				t.Errorf("Store calls = %d, want %d", mc.stores, tt.stores)
			}
		})
	}
}

// TestWriteBehindStoreError checks that a failure of the background store
// reaches the writer as EIO (at a write or at flush) and keeps failing:
// the bytes the stream took are gone, so nothing may be stored as if the
// file were whole; the namespace keeps the version before; a truncate to
// zero starts afresh.
func TestWriteBehindStoreError(t *testing.T) {
	f, _, mc := newTestFS(t)
	mc.failAfter = 3 << 20
	file, h := create(t, f, "f")
	data := randBytes(8<<20, 3)
	failed := appendUntilError(h, data)
	if failed == nil {
		failed = h.Flush(context.Background(), &fuse.FlushRequest{})
	}
	if !errors.Is(failed, fuse.Errno(syscall.EIO)) {
		t.Fatalf("write or flush after a store failure = %v, want EIO", failed)
	}
	mc.mu.Lock()
	mc.failAfter = 0
	mc.mu.Unlock()
	for _, step := range []struct {
		name string
		err  error
	}{
		{"flush", h.Flush(context.Background(), &fuse.FlushRequest{})},
		{"read", h.Read(context.Background(), &fuse.ReadRequest{Offset: 0, Size: 4096}, &fuse.ReadResponse{})},
		{"write", h.Write(context.Background(), &fuse.WriteRequest{Offset: 0, Data: []byte("x")}, &fuse.WriteResponse{})},
	} {
		if !errors.Is(step.err, fuse.Errno(syscall.EIO)) {
			t.Errorf("%s after the failure = %v, want EIO", step.name, step.err)
		}
	}
	if got := stored(t, f, file); len(got) != 0 {
		t.Errorf("the namespace holds %d bytes: a partial file was stored", len(got))
	}
	if err := file.Setattr(context.Background(), &fuse.SetattrRequest{Valid: fuse.SetattrSize, Size: 0}, &fuse.SetattrResponse{}); err != nil {
		t.Fatalf("truncate to zero after the failure: %v", err)
	}
	appendAll(t, h, 0, data)
	flush(t, h)
	if got := stored(t, f, file); !bytes.Equal(got, data) {
		t.Errorf("stored %d bytes after writing again, content differs", len(got))
	}
	h.Release(context.Background(), &fuse.ReleaseRequest{})
}

// TestWriteBehindFsyncError checks that fsync reports the failure too.
func TestWriteBehindFsyncError(t *testing.T) {
	f, _, mc := newTestFS(t)
	mc.failAfter = 1
	file, h := create(t, f, "f")
	if err := appendUntilError(h, randBytes(3<<20, 4)); err != nil && !errors.Is(err, fuse.Errno(syscall.EIO)) {
		t.Fatalf("write after a store failure = %v, want EIO", err)
	}
	err := file.Fsync(context.Background(), &fuse.FsyncRequest{})
	if !errors.Is(err, fuse.Errno(syscall.EIO)) {
		t.Fatalf("fsync after a store failure = %v, want EIO", err)
	}
	err = h.Release(context.Background(), &fuse.ReleaseRequest{})
	if !errors.Is(err, fuse.Errno(syscall.EIO)) {
		t.Errorf("release after a store failure = %v, want EIO", err)
	}
}

// TestAheadLimit checks the memory bound of concurrent streams: each gets
// a share of the budget, between minAhead and maxAhead.
func TestAheadLimit(t *testing.T) {
	for _, tt := range []struct {
		streams int64
		want    int64
	}{
		{0, maxAhead},
		{1, maxAhead},
		{8, maxAhead},
		{16, streamBudget / 16},
		{64, minAhead},
		{1000, minAhead},
	} {
		if got := aheadLimit(tt.streams); got != tt.want {
			t.Errorf("aheadLimit(%d) = %d, want %d", tt.streams, got, tt.want)
		}
		if total := aheadLimit(tt.streams) * max(tt.streams, 1); total > max(streamBudget, minAhead*tt.streams) {
			t.Errorf("%d streams may hold %d bytes", tt.streams, total)
		}
	}
}
