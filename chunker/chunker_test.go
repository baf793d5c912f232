package chunker

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"testing/iotest"
)

var update = flag.Bool("update", false, "rewrite testdata/golden.txt from the current implementation")

// smallParams are tiny bounds that give many chunks on little data.
var smallParams = Params{Min: 64, Avg: 256, Max: 1024}

// midParams are bounds between smallParams and DefaultParams.
var midParams = Params{Min: 4 << 10, Avg: 16 << 10, Max: 64 << 10}

// randomData returns n pseudo-random bytes from a ChaCha8 generator keyed by
// seed. The math/rand/v2 ChaCha8 output is fixed by its specification, so
// the data (and therefore the golden vectors) never changes.
func randomData(n int, seed uint64) []byte {
	var key [32]byte
	binary.LittleEndian.PutUint64(key[:], seed)
	b := make([]byte, n)
	_, _ = rand.NewChaCha8(key).Read(b)
	return b
}

var (
	big64Once sync.Once
	big64     []byte
)

// random64MiB returns 64 MiB of random data (seed 1), shared between tests.
func random64MiB() []byte {
	big64Once.Do(func() { big64 = randomData(64<<20, 1) })
	return big64
}

// chunkAll reads r to the end and returns copies of all chunks.
func chunkAll(t testing.TB, r io.Reader, p Params) [][]byte {
	t.Helper()
	c, err := New(r, p)
	if err != nil {
		t.Fatalf("New(%+v): %v", p, err)
	}
	var chunks [][]byte
	for {
		b, err := c.Next()
		if err == io.EOF {
			return chunks
		}
		if err != nil {
			t.Fatalf("Next: %v", err)
		}
		chunks = append(chunks, bytes.Clone(b))
	}
}

// lengths returns the lengths of chunks.
func lengths(chunks [][]byte) []int {
	l := make([]int, len(chunks))
	for i, c := range chunks {
		l[i] = len(c)
	}
	return l
}

// reference is a deliberately naive implementation of the algorithm over an
// in-memory slice: one byte per step, no buffering, masks built bit by bit.
// The streaming Chunker must agree with it exactly.
func reference(data []byte, p Params) []int {
	log2 := 0
	for 1<<log2 < p.Avg {
		log2++
	}
	mask := func(n int) uint64 {
		var m uint64
		for b := 62; b > 62-n; b-- {
			m |= 1 << b
		}
		return m
	}
	strict, loose := mask(log2+2), mask(log2-2)
	var lens []int
	for len(data) > 0 {
		n := min(len(data), p.Max)
		cut := n
		var h uint64
		for i := p.Min; i < n; i++ {
			h = h<<1 + gear[data[i]]
			m := loose
			if i < p.Avg {
				m = strict
			}
			if h&m == 0 {
				cut = i + 1
				break
			}
		}
		lens = append(lens, cut)
		data = data[cut:]
	}
	return lens
}

// checkChunks verifies the invariants every chunking of data must satisfy.
func checkChunks(t testing.TB, data []byte, chunks [][]byte, p Params) {
	t.Helper()
	if got, want := bytes.Join(chunks, nil), data; !bytes.Equal(got, want) {
		t.Errorf("concatenation of %d chunks (%d bytes) differs from the %d byte input", len(chunks), len(got), len(want))
	}
	for i, c := range chunks {
		last := i == len(chunks)-1
		if len(c) == 0 || len(c) > p.Max || (!last && len(c) < p.Min) {
			t.Errorf("chunk %d/%d has length %d, outside [%d, %d]", i, len(chunks), len(c), p.Min, p.Max)
		}
	}
}

func TestDefaultParams(t *testing.T) {
	p := DefaultParams()
	if got, want := p, (Params{Min: 256 << 10, Avg: 1 << 20, Max: 4 << 20}); got != want {
		t.Errorf("DefaultParams() = %+v, want %+v", got, want)
	}
	if err := p.Validate(); err != nil {
		t.Errorf("DefaultParams().Validate() = %v, want nil", err)
	}
}

func TestValidate(t *testing.T) {
	tests := []struct {
		name    string
		p       Params
		wantErr string // substring; "" means valid
	}{
		{"default", DefaultParams(), ""},
		{"small", smallParams, ""},
		{"smallest", Params{Min: 64, Avg: 128, Max: 129}, ""},
		{"largest", Params{Min: 1 << 20, Avg: 32 << 20, Max: 64 << 20}, ""},
		{"zero", Params{}, "min size 0 is below"},
		{"min too small", Params{Min: 63, Avg: 256, Max: 1024}, "min size 63 is below"},
		{"negative", Params{Min: -1, Avg: 256, Max: 1024}, "min size -1"},
		{"min equals avg", Params{Min: 256, Avg: 256, Max: 1024}, "average size 256 must be greater than min size 256"},
		{"min above avg", Params{Min: 512, Avg: 256, Max: 1024}, "must be greater than min size"},
		{"avg equals max", Params{Min: 64, Avg: 1024, Max: 1024}, "max size 1024 must be greater than average size 1024"},
		{"avg not power of two", Params{Min: 64, Avg: 300, Max: 1024}, "average size 300 is not a power of two"},
		{"max too large", Params{Min: 1 << 20, Avg: 32 << 20, Max: 64<<20 + 1}, "exceeds the limit"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.p.Validate()
			if tt.wantErr == "" {
				if err != nil {
					t.Errorf("Validate(%+v) = %v, want nil", tt.p, err)
				}
				return
			}
			if err == nil {
				t.Fatalf("Validate(%+v) = nil, want error containing %q", tt.p, tt.wantErr)
			}
			if got := err.Error(); !strings.HasPrefix(got, "chunker: ") || !strings.Contains(got, tt.wantErr) {
				t.Errorf("Validate(%+v) = %q, want \"chunker: \" prefix and %q", tt.p, got, tt.wantErr)
			}
			if _, err := New(bytes.NewReader(nil), tt.p); err == nil {
				t.Errorf("New with %+v succeeded, want error", tt.p)
			}
		})
	}
}

func TestNewNilReader(t *testing.T) {
	if _, err := New(nil, DefaultParams()); err == nil || !strings.HasPrefix(err.Error(), "chunker: ") {
		t.Errorf("New(nil, ...) error = %v, want a \"chunker: \" error", err)
	}
}

func TestEmptyInput(t *testing.T) {
	c, err := New(bytes.NewReader(nil), DefaultParams())
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		if b, err := c.Next(); b != nil || err != io.EOF {
			t.Errorf("call %d: Next() = %d bytes, %v; want nil, io.EOF", i, len(b), err)
		}
	}
}

// goldenCase describes one input of the golden vector file.
type goldenCase struct {
	name string
	p    Params
	data func() []byte
}

var goldenCases = []goldenCase{
	{"default-random-8MiB-seed1", DefaultParams(), func() []byte { return randomData(8<<20, 1) }},
	{"mid-random-1MiB-seed2", midParams, func() []byte { return randomData(1<<20, 2) }},
	{"small-random-64KiB-seed3", smallParams, func() []byte { return randomData(64<<10, 3) }},
	{"default-zeros-10MiB", DefaultParams(), func() []byte { return make([]byte, 10<<20) }},
	{"small-text-16KiB", smallParams, func() []byte {
		return []byte(strings.Repeat("the quick brown fox jumps over the lazy dog; ", 16<<10/45+1)[:16<<10])
	}},
}

// goldenLines renders the chunking of every golden case as text: a header
// line per case and one "length sha256" line per chunk.
func goldenLines(t *testing.T) []string {
	var lines []string
	for _, gc := range goldenCases {
		lines = append(lines, fmt.Sprintf("== %s min=%d avg=%d max=%d", gc.name, gc.p.Min, gc.p.Avg, gc.p.Max))
		for _, c := range chunkAll(t, bytes.NewReader(gc.data()), gc.p) {
			sum := sha256.Sum256(c)
			lines = append(lines, strconv.Itoa(len(c))+" "+hex.EncodeToString(sum[:]))
		}
	}
	return lines
}

// TestGolden pins the chunk boundaries. If it fails, chunk identities have
// changed, which invalidates deduplication against all existing data: do not
// run with -update unless that is intended.
func TestGolden(t *testing.T) {
	path := filepath.Join("testdata", "golden.txt")
	got := goldenLines(t)
	if *update {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(strings.Join(got, "\n")+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("wrote %s", path)
		return
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var want []string
	s := bufio.NewScanner(f)
	for s.Scan() {
		want = append(want, s.Text())
	}
	if err := s.Err(); err != nil {
		t.Fatal(err)
	}
	if got, want := len(got), len(want); got != want {
		t.Errorf("got %d golden lines, want %d", got, want)
	}
	for i := range min(len(got), len(want)) {
		if got, want := got[i], want[i]; got != want {
			t.Errorf("golden line %d:\n got %s\nwant %s", i+1, got, want)
		}
	}
}

func TestBounds(t *testing.T) {
	for _, p := range []Params{smallParams, midParams, DefaultParams()} {
		sizes := []int{0, 1, p.Min - 1, p.Min, p.Min + 1, p.Avg - 1, p.Avg, p.Avg + 1,
			p.Max - 1, p.Max, p.Max + 1, 2*p.Max - 1, 2 * p.Max, 2*p.Max + 1, 5*p.Max + 12345}
		for i, n := range sizes {
			t.Run(fmt.Sprintf("%d-%d-%d/size=%d", p.Min, p.Avg, p.Max, n), func(t *testing.T) {
				for _, kind := range []string{"random", "zeros"} {
					data := randomData(n, uint64(i))
					if kind == "zeros" {
						data = make([]byte, n)
					}
					chunks := chunkAll(t, bytes.NewReader(data), p)
					checkChunks(t, data, chunks, p)
					if got, want := fmt.Sprint(lengths(chunks)), fmt.Sprint(reference(data, p)); got != want {
						t.Errorf("%s: lengths %s, reference %s", kind, got, want)
					}
					if n == 0 {
						if got, want := len(chunks), 0; got != want {
							t.Errorf("%s: %d chunks for empty input, want %d", kind, got, want)
						}
					}
				}
			})
		}
	}
}

// oddReader returns data in reads of 1, 3, 7, 13, ... bytes, cycling.
type oddReader struct {
	r io.Reader
	i int
}

func (o *oddReader) Read(p []byte) (int, error) {
	sizes := [...]int{1, 3, 7, 13, 64, 1000, 4093, 65537, 2}
	n := min(len(p), sizes[o.i%len(sizes)])
	o.i++
	return o.r.Read(p[:n])
}

func TestReaderSizes(t *testing.T) {
	readers := []struct {
		name string
		wrap func(io.Reader) io.Reader
	}{
		{"OneByteReader", iotest.OneByteReader},
		{"HalfReader", iotest.HalfReader},
		{"DataErrReader", iotest.DataErrReader},
		{"oddReader", func(r io.Reader) io.Reader { return &oddReader{r: r} }},
	}
	inputs := []struct {
		p Params
		n int
	}{
		{smallParams, 200 << 10},
		{midParams, 2 << 20},
		{DefaultParams(), 12 << 20},
	}
	for _, in := range inputs {
		data := randomData(in.n, 7)
		want := lengths(chunkAll(t, bytes.NewReader(data), in.p))
		for _, rd := range readers {
			t.Run(fmt.Sprintf("%s/%d-%d-%d", rd.name, in.p.Min, in.p.Avg, in.p.Max), func(t *testing.T) {
				if testing.Short() && rd.name == "OneByteReader" && in.n > 4<<20 {
					t.Skip("slow in -short mode")
				}
				chunks := chunkAll(t, rd.wrap(bytes.NewReader(data)), in.p)
				checkChunks(t, data, chunks, in.p)
				if got, want := fmt.Sprint(lengths(chunks)), fmt.Sprint(want); got != want {
					t.Errorf("lengths %s, want %s (whole reads)", got, want)
				}
			})
		}
	}
}

// chunkDigests returns the SHA-256 digests of the chunks of data, in order,
// and the chunk lengths.
func chunkDigests(t *testing.T, data []byte, p Params) ([][sha256.Size]byte, []int) {
	chunks := chunkAll(t, bytes.NewReader(data), p)
	sums := make([][sha256.Size]byte, len(chunks))
	for i, c := range chunks {
		sums[i] = sha256.Sum256(c)
	}
	return sums, lengths(chunks)
}

// TestShiftResistance edits a 64 MiB random file and checks that almost all
// of the edited file is still covered by chunks of the original.
func TestShiftResistance(t *testing.T) {
	orig := random64MiB()
	edits := []struct {
		name string
		edit func([]byte) []byte
	}{
		{"insert byte at 1000", func(b []byte) []byte {
			return append(append(append([]byte{}, b[:1000]...), 0x42), b[1000:]...)
		}},
		{"delete byte at 1000", func(b []byte) []byte {
			return append(append([]byte{}, b[:1000]...), b[1001:]...)
		}},
		{"insert 100 bytes at 32 MiB", func(b []byte) []byte {
			return append(append(append([]byte{}, b[:32<<20]...), make([]byte, 100)...), b[32<<20:]...)
		}},
	}
	for _, p := range []Params{DefaultParams(), midParams} {
		if testing.Short() && p != DefaultParams() {
			continue
		}
		oldSums, _ := chunkDigests(t, orig, p)
		old := make(map[[sha256.Size]byte]bool, len(oldSums))
		for _, s := range oldSums {
			old[s] = true
		}
		for j, e := range edits {
			t.Run(fmt.Sprintf("%d-%d-%d/%s", p.Min, p.Avg, p.Max, e.name), func(t *testing.T) {
				if testing.Short() && (j > 0 || p != DefaultParams()) {
					t.Skip("only the first edit with DefaultParams in -short mode")
				}
				edited := e.edit(orig)
				sums, lens := chunkDigests(t, edited, p)
				var same int
				for i, s := range sums {
					if old[s] {
						same += lens[i]
					}
				}
				frac := float64(same) / float64(len(edited))
				t.Logf("%.2f%% of the edited file (%d of %d bytes) is in unchanged chunks", 100*frac, same, len(edited))
				if frac < 0.90 {
					t.Errorf("only %.2f%% of the bytes are in unchanged chunks, want >= 90%%", 100*frac)
				}
			})
		}
	}
}

func TestMeanChunkSize(t *testing.T) {
	data := random64MiB()
	for _, p := range []Params{DefaultParams(), midParams, smallParams, {Min: 64, Avg: 64 << 10, Max: 1 << 20}} {
		t.Run(fmt.Sprintf("%d-%d-%d", p.Min, p.Avg, p.Max), func(t *testing.T) {
			in := data
			if p.Avg < 1<<20 {
				in = data[:16<<20]
			}
			lens := reference(in, p) // same as the Chunker, which TestBounds checks
			if got, want := fmt.Sprint(lengths(chunkAll(t, bytes.NewReader(in), p))), fmt.Sprint(lens); got != want {
				t.Fatalf("Chunker disagrees with reference")
			}
			mean := float64(len(in)) / float64(len(lens))
			t.Logf("%d chunks, mean size %.0f bytes = %.3f x Avg", len(lens), mean, mean/float64(p.Avg))
			if r := mean / float64(p.Avg); r < 0.75 || r > 1.25 {
				t.Errorf("mean chunk size %.0f is %.3f x Avg %d, want within ±25%%", mean, r, p.Avg)
			}
		})
	}
}

// errReader returns data and then err, in reads of at most chunk bytes.
type errReader struct {
	data  []byte
	err   error
	chunk int
}

func (e *errReader) Read(p []byte) (int, error) {
	if len(e.data) == 0 {
		return 0, e.err
	}
	n := copy(p[:min(len(p), e.chunk)], e.data)
	e.data = e.data[n:]
	return n, nil
}

func TestReadError(t *testing.T) {
	p := midParams
	data := randomData(1<<20, 9)
	ref := reference(data, p)
	boom := errors.New("boom")
	for _, tt := range []struct {
		name string
		r    io.Reader
	}{
		{"after 300KiB", &errReader{data: data[:300<<10], err: boom, chunk: 1 << 20}},
		{"after 300KiB small reads", &errReader{data: data[:300<<10], err: boom, chunk: 1000}},
		{"with data", iotest.DataErrReader(&errReader{data: data[:300<<10], err: boom, chunk: 4096})},
		{"immediately", iotest.ErrReader(boom)},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c, err := New(tt.r, p)
			if err != nil {
				t.Fatal(err)
			}
			var got []int
			for {
				b, err := c.Next()
				if err == nil {
					got = append(got, len(b))
					continue
				}
				if !errors.Is(err, boom) {
					t.Fatalf("Next error = %v, want one wrapping %v", err, boom)
				}
				if msg := err.Error(); !strings.HasPrefix(msg, "chunker: ") {
					t.Errorf("error %q lacks the \"chunker: \" prefix", msg)
				}
				break
			}
			// Chunks returned before the error are correct, and the error is
			// sticky.
			if got, want := fmt.Sprint(got), fmt.Sprint(ref[:len(got)]); got != want {
				t.Errorf("chunks before error %s, want prefix of reference %s", got, want)
			}
			var sum int
			for _, n := range got {
				sum += n
			}
			if sum > 300<<10 {
				t.Errorf("returned %d bytes of chunks, more than the %d readable", sum, 300<<10)
			}
			if _, err := c.Next(); !errors.Is(err, boom) {
				t.Errorf("second Next error = %v, want %v again", err, boom)
			}
		})
	}
}

// emptyReader always returns 0, nil.
type emptyReader struct{}

func (emptyReader) Read([]byte) (int, error) { return 0, nil }

func TestNoProgress(t *testing.T) {
	c, err := New(emptyReader{}, smallParams)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Next(); !errors.Is(err, io.ErrNoProgress) {
		t.Errorf("Next error = %v, want io.ErrNoProgress", err)
	}
}

// TestChunkCapacity checks that appending to a returned chunk cannot
// overwrite the data of the next one.
func TestChunkCapacity(t *testing.T) {
	data := randomData(64<<10, 4)
	c, err := New(bytes.NewReader(data), smallParams)
	if err != nil {
		t.Fatal(err)
	}
	var all []byte
	var prev []byte
	for {
		b, err := c.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if got, want := cap(b), len(b); got != want {
			t.Fatalf("cap(chunk) = %d, want len %d", got, want)
		}
		_ = append(prev, 0xff) // must not clobber b
		all = append(all, b...)
		prev = b
	}
	if !bytes.Equal(all, data) {
		t.Errorf("chunks do not reassemble the input")
	}
}

// TestSteadyStateAllocs checks that Next does not allocate once the buffer
// has reached its full size.
func TestSteadyStateAllocs(t *testing.T) {
	data := randomData(4<<20, 5)
	c, err := New(bytes.NewReader(data), smallParams)
	if err != nil {
		t.Fatal(err)
	}
	for range 100 { // let the buffer grow to 2*Max
		if _, err := c.Next(); err != nil {
			t.Fatal(err)
		}
	}
	allocs := testing.AllocsPerRun(1000, func() {
		if _, err := c.Next(); err != nil {
			t.Fatal(err)
		}
	})
	if got, want := allocs, 0.0; got != want {
		t.Errorf("Next allocates %v times per call, want %v", got, want)
	}
}

// TestMemoryBound checks that the buffer never exceeds 2*Max.
func TestMemoryBound(t *testing.T) {
	p := midParams
	c, err := New(iotest.HalfReader(bytes.NewReader(randomData(3<<20, 6))), p)
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := c.Next(); err == io.EOF {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		if got, limit := cap(c.buf), 2*p.Max; got > limit {
			t.Fatalf("buffer capacity %d exceeds 2*Max = %d", got, limit)
		}
	}
}

// TestRollTwoBytes checks the two-bytes-per-iteration loop against the plain
// gear hash from every start offset parity, for masks of all used widths.
func TestRollTwoBytes(t *testing.T) {
	data := randomData(1<<16, 8)
	for _, n := range []int{5, 8, 12, 16} {
		mask := highMask(n)
		for _, start := range []int{0, 1, 2, 3, 100, 101} {
			var h uint64
			want := 0
			for i := start; i < len(data); i++ {
				h = h<<1 + gear[data[i]]
				if h&mask == 0 {
					want = i + 1
					break
				}
			}
			got, _ := roll(data, start, 0, mask)
			if got != want {
				t.Errorf("roll(mask bits %d, start %d) = %d, want %d", n, start, got, want)
			}
		}
	}
}

// FuzzChunker checks the invariants on arbitrary input: the chunks reassemble
// the input, respect the bounds and do not depend on how the input is read.
func FuzzChunker(f *testing.F) {
	f.Add([]byte{}, uint16(1))
	f.Add([]byte("hello, world"), uint16(3))
	f.Add(make([]byte, 5000), uint16(7))
	f.Add(randomData(3000, 1), uint16(1))
	f.Add(randomData(10000, 2), uint16(1000))
	f.Add(bytes.Repeat([]byte("abcdefgh"), 700), uint16(64))
	p := smallParams
	f.Fuzz(func(t *testing.T, data []byte, readSize uint16) {
		whole := chunkAll(t, bytes.NewReader(data), p)
		checkChunks(t, data, whole, p)
		n := max(int(readSize), 1)
		pieces := chunkAll(t, &errReader{data: data, err: io.EOF, chunk: n}, p)
		if got, want := fmt.Sprint(lengths(pieces)), fmt.Sprint(lengths(whole)); got != want {
			t.Errorf("reads of %d bytes: lengths %s, whole reads %s", n, got, want)
		}
		if got, want := fmt.Sprint(lengths(whole)), fmt.Sprint(reference(data, p)); got != want {
			t.Errorf("lengths %s, reference %s", got, want)
		}
	})
}

// TestZeroRuns: runs of zeros (a sparse file's holes), which are cut
// without hashing them, are cut exactly where the reference cuts them,
// whether a chunk starts inside a run, a run starts inside a chunk, or the
// input is zeros only; with whole and with odd reads.
func TestZeroRuns(t *testing.T) {
	zeros := func(n int) []byte { return make([]byte, n) }
	cat := func(parts ...[]byte) []byte { return bytes.Join(parts, nil) }
	for _, p := range []Params{smallParams, midParams, DefaultParams()} {
		inputs := map[string][]byte{
			"zeros only":            zeros(5*p.Max + 17),
			"exactly Max zeros":     zeros(p.Max),
			"fewer than Min zeros":  zeros(p.Min - 1),
			"data then zeros":       cat(randomData(3*p.Avg, 1), zeros(4*p.Max+3)),
			"zeros then data":       cat(zeros(3*p.Max+5), randomData(3*p.Avg, 2)),
			"data, zeros and data":  cat(randomData(p.Avg, 3), zeros(2*p.Max+p.Min), randomData(2*p.Avg, 4)),
			"short runs among data": cat(randomData(p.Min, 5), zeros(p.Min), randomData(p.Min, 6), zeros(p.Avg), randomData(p.Avg, 7)),
		}
		for name, data := range inputs {
			t.Run(fmt.Sprintf("%d-%d-%d/%s", p.Min, p.Avg, p.Max, name), func(t *testing.T) {
				want := fmt.Sprint(reference(data, p))
				for _, r := range []io.Reader{bytes.NewReader(data), &oddReader{r: bytes.NewReader(data)}} {
					chunks := chunkAll(t, r, p)
					checkChunks(t, data, chunks, p)
					if got := fmt.Sprint(lengths(chunks)); got != want {
						t.Errorf("%T: lengths %s, want %s", r, got, want)
					}
				}
			})
		}
	}
}

func TestIsZero(t *testing.T) {
	for _, n := range []int{0, 1, 100, len(zeroPage), len(zeroPage) + 1, 3*len(zeroPage) + 7} {
		b := make([]byte, n)
		if !IsZero(b) {
			t.Errorf("IsZero(%d zeros) = false", n)
		}
		if n > 0 {
			b[n-1] = 1
			if IsZero(b) {
				t.Errorf("IsZero(%d bytes, the last one 1) = true", n)
			}
		}
	}
}
