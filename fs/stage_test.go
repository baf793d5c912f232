package fs

import (
	"bytes"
	"io"
	"math/rand/v2"
	"testing"
	"testing/iotest"
)

// TestHoleReader: a staging file's contents read with its holes handed out
// as zeros are the bytes read(2) gives, for files of holes only, data only
// and both, through reads of every size.
func TestHoleReader(t *testing.T) {
	const mib = 1 << 20
	type extent struct {
		off int64
		n   int
	}
	for _, tc := range []struct {
		name    string
		size    int64
		extents []extent
	}{
		{"empty", 0, nil},
		{"holes only", 64 * mib, nil},
		{"data only", 3 * mib, []extent{{0, 3 * mib}}},
		{"data then a hole", 16 * mib, []extent{{0, mib + 5}}},
		{"a hole then data", 16*mib + 3, []extent{{15 * mib, mib + 3}}},
		{"data between holes", 32 * mib, []extent{{7*mib + 11, 4096}, {20 * mib, 100}}},
		{"size short of the file", 2 * mib, []extent{{0, 100}, {5 * mib, 100}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f, err := newFileStage(t.TempDir())
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			if err := f.Truncate(tc.size); err != nil {
				t.Fatal(err)
			}
			r := rand.New(rand.NewPCG(1, 2))
			for _, e := range tc.extents {
				b := make([]byte, e.n)
				for i := range b {
					b[i] = byte(r.Uint32()) | 1
				}
				if _, err := f.WriteAt(b, e.off); err != nil {
					t.Fatal(err)
				}
			}
			want, err := io.ReadAll(io.NewSectionReader(f, 0, tc.size))
			if err != nil {
				t.Fatal(err)
			}
			for name, rd := range map[string]io.Reader{
				"whole":  f.contents(tc.size),
				"halves": iotest.HalfReader(f.contents(tc.size)),
			} {
				got, err := io.ReadAll(rd)
				if err != nil || !bytes.Equal(got, want) {
					t.Errorf("%s reads: %d bytes, %v; want the %d bytes read(2) gives", name, len(got), err, len(want))
				}
			}
		})
	}
}
