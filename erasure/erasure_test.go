package erasure_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/crc32"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"

	"github.com/reefproject/reef/erasure"
)

// randBytes returns n deterministic pseudo-random bytes for the seed.
func randBytes(seed uint64, n int) []byte {
	r := rand.New(rand.NewPCG(seed, 0x5eed))
	b := make([]byte, n)
	var w [8]byte
	for i := 0; i < n; i += 8 {
		binary.LittleEndian.PutUint64(w[:], r.Uint64())
		copy(b[i:], w[:])
	}
	return b
}

func mustNew(t testing.TB, k, m int) *erasure.Coder {
	t.Helper()
	c, err := erasure.New(k, m)
	if err != nil {
		t.Fatalf("New(%d, %d): %v", k, m, err)
	}
	return c
}

func mustEncode(t testing.TB, c *erasure.Coder, data []byte) [][]byte {
	t.Helper()
	shards, err := c.Encode(data)
	if err != nil {
		t.Fatalf("Encode(%d bytes): %v", len(data), err)
	}
	return shards
}

// cloneShards deep-copies a stripe so tests can damage it freely.
func cloneShards(shards [][]byte) [][]byte {
	out := make([][]byte, len(shards))
	for i, s := range shards {
		if s != nil {
			out[i] = bytes.Clone(s)
		}
	}
	return out
}

func checkTooFew(t *testing.T, err error, found, need int) {
	t.Helper()
	var tf *erasure.TooFewShardsError
	if !errors.As(err, &tf) {
		t.Fatalf("error %v (%T), want *TooFewShardsError", err, err)
	}
	if tf.Found != found || tf.Need != need {
		t.Fatalf("TooFewShardsError{Found: %d, Need: %d}, want {%d, %d}", tf.Found, tf.Need, found, need)
	}
	if !errors.Is(err, erasure.ErrTooFewShards) {
		t.Fatalf("errors.Is(%v, ErrTooFewShards) = false", err)
	}
	want := fmt.Sprintf("erasure: %d shards usable, need %d", found, need)
	if err.Error() != want {
		t.Fatalf("error text %q, want %q", err.Error(), want)
	}
}

var params = []struct{ k, m int }{
	{1, 0}, {1, 1}, {2, 1}, {4, 2}, {10, 4}, {3, 0}, {1, 255}, {200, 56},
}

func TestRoundTrip(t *testing.T) {
	for _, p := range params {
		k, m := p.k, p.m
		c := mustNew(t, k, m)
		if c.K() != k || c.M() != m {
			t.Fatalf("K, M = %d, %d, want %d, %d", c.K(), c.M(), k, m)
		}
		lengths := []int{0, 1, k - 1, k, k + 1, 1 << 20, 4<<20 + 3}
		for _, n := range lengths {
			t.Run(fmt.Sprintf("k=%d,m=%d,n=%d", k, m, n), func(t *testing.T) {
				if testing.Short() && n > 1<<20 && k+m > 16 {
					t.Skip("large stripe in -short mode")
				}
				data := randBytes(uint64(n), n)
				shards := mustEncode(t, c, data)
				if len(shards) != k+m {
					t.Fatalf("%d shards, want %d", len(shards), k+m)
				}
				wantPayload := (n + k - 1) / k
				for i, s := range shards {
					if len(s) != erasure.HeaderSize+wantPayload || cap(s) != len(s) {
						t.Fatalf("shard %d: len %d cap %d, want %d", i, len(s), cap(s), erasure.HeaderSize+wantPayload)
					}
					h, err := erasure.Verify(s)
					if err != nil {
						t.Fatalf("Verify(shard %d): %v", i, err)
					}
					if want := (erasure.Header{K: k, M: m, Index: i, DataLen: int64(n)}); h != want {
						t.Fatalf("shard %d header %+v, want %+v", i, h, want)
					}
				}
				got, err := c.Decode(shards)
				if err != nil {
					t.Fatalf("Decode: %v", err)
				}
				if !bytes.Equal(got, data) || got == nil {
					t.Fatalf("Decode returned %d bytes (nil=%v), want the %d input bytes", len(got), got == nil, n)
				}
				// Lose the first min(m, k) shards: the data path must use parity.
				if m > 0 {
					lost := cloneShards(shards)
					for i := 0; i < min(m, k); i++ {
						lost[i] = nil
					}
					got, err := c.Decode(lost)
					if err != nil || !bytes.Equal(got, data) {
						t.Fatalf("Decode without %d data shards: err %v, equal %v", min(m, k), err, bytes.Equal(got, data))
					}
					if err := c.Reconstruct(lost); err != nil {
						t.Fatalf("Reconstruct: %v", err)
					}
					for i := range lost {
						if !bytes.Equal(lost[i], shards[i]) {
							t.Fatalf("reconstructed shard %d differs", i)
						}
					}
				}
			})
		}
	}
}

// TestEncodeDoesNotRetain checks that Encode copies its input.
func TestEncodeDoesNotRetain(t *testing.T) {
	c := mustNew(t, 4, 2)
	data := randBytes(7, 1000)
	orig := bytes.Clone(data)
	shards := mustEncode(t, c, data)
	for i := range data {
		data[i] ^= 0xff
	}
	got, err := c.Decode(shards)
	if err != nil || !bytes.Equal(got, orig) {
		t.Fatalf("Decode after changing input: err %v, equal %v", err, bytes.Equal(got, orig))
	}
	// Appending to one shard must not clobber the next one.
	_ = append(shards[0], 1, 2, 3)
	if _, err := erasure.Verify(shards[1]); err != nil {
		t.Fatalf("append to shard 0 damaged shard 1: %v", err)
	}
}

// TestMissingExhaustive drops every subset of shards of a (4, 2) stripe.
func TestMissingExhaustive(t *testing.T) {
	const k, m = 4, 2
	c := mustNew(t, k, m)
	for _, n := range []int{0, 1, 3, 4, 5, 1000, 65536 + 7} {
		data := randBytes(uint64(n)+1, n)
		shards := mustEncode(t, c, data)
		for mask := 0; mask < 1<<(k+m); mask++ {
			t.Run(fmt.Sprintf("n=%d,missing=%06b", n, mask), func(t *testing.T) {
				lost := cloneShards(shards)
				missing := 0
				for i := range lost {
					if mask&(1<<i) != 0 {
						lost[i] = nil
						missing++
					}
				}
				got, err := c.Decode(lost)
				rerr := c.Reconstruct(lost)
				if missing > m {
					checkTooFew(t, err, k+m-missing, k)
					checkTooFew(t, rerr, k+m-missing, k)
					return
				}
				if err != nil || !bytes.Equal(got, data) {
					t.Fatalf("Decode: err %v, equal %v", err, bytes.Equal(got, data))
				}
				if rerr != nil {
					t.Fatalf("Reconstruct: %v", rerr)
				}
				for i := range lost {
					if !bytes.Equal(lost[i], shards[i]) {
						t.Fatalf("reconstructed shard %d differs", i)
					}
				}
			})
		}
	}
}

// TestMissingRandom drops random subsets of shards of bigger stripes.
func TestMissingRandom(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for _, p := range []struct{ k, m int }{{10, 4}, {6, 3}, {1, 255}, {200, 56}, {17, 3}} {
		k, m := p.k, p.m
		c := mustNew(t, k, m)
		for _, n := range []int{1, k + 1, 100000} {
			data := randBytes(uint64(n*k), n)
			shards := mustEncode(t, c, data)
			for trial := range 20 {
				missing := r.IntN(m + 2) // 0..m+1
				perm := r.Perm(k + m)[:missing]
				t.Run(fmt.Sprintf("k=%d,m=%d,n=%d,trial=%d", k, m, n, trial), func(t *testing.T) {
					lost := cloneShards(shards)
					for _, i := range perm {
						lost[i] = nil
					}
					got, err := c.Decode(lost)
					rerr := c.Reconstruct(lost)
					if missing > m {
						checkTooFew(t, err, k+m-missing, k)
						checkTooFew(t, rerr, k+m-missing, k)
						return
					}
					if err != nil || !bytes.Equal(got, data) {
						t.Fatalf("Decode without %v: err %v, equal %v", perm, err, bytes.Equal(got, data))
					}
					if rerr != nil {
						t.Fatalf("Reconstruct: %v", rerr)
					}
					for i := range lost {
						if !bytes.Equal(lost[i], shards[i]) {
							t.Fatalf("reconstructed shard %d differs", i)
						}
					}
				})
			}
		}
	}
}

// TestBitFlips flips every bit of every shard of a small (4, 2) stripe, and
// random bits of bigger stripes: the shard must fail Verify, and Decode and
// Reconstruct must treat it as missing.
func TestBitFlips(t *testing.T) {
	for _, tc := range []struct {
		k, m, n    int
		exhaustive bool
	}{
		{4, 2, 0, true},
		{4, 2, 1, true},
		{4, 2, 301, true},
		{10, 4, 1 << 20, false},
		{1, 1, 5000, false},
	} {
		t.Run(fmt.Sprintf("k=%d,m=%d,n=%d", tc.k, tc.m, tc.n), func(t *testing.T) {
			c := mustNew(t, tc.k, tc.m)
			data := randBytes(uint64(tc.n)+3, tc.n)
			shards := mustEncode(t, c, data)
			r := rand.New(rand.NewPCG(3, 4))
			for si := range shards {
				bits := len(shards[si]) * 8
				var positions []int
				if tc.exhaustive {
					for b := range bits {
						positions = append(positions, b)
					}
				} else {
					for b := range erasure.HeaderSize * 8 { // whole header
						positions = append(positions, b)
					}
					for range 20 {
						positions = append(positions, r.IntN(bits))
					}
				}
				for _, bit := range positions {
					bad := cloneShards(shards)
					bad[si][bit/8] ^= 1 << (bit % 8)
					if _, err := erasure.Verify(bad[si]); !errors.Is(err, erasure.ErrCorrupt) {
						t.Fatalf("shard %d bit %d flipped: Verify error %v, want ErrCorrupt", si, bit, err)
					}
					// Also lose m-1 other shards, so the bad one must be excluded.
					for j, lost := 0, 0; j < len(bad) && lost < tc.m-1; j++ {
						if j != si {
							bad[j] = nil
							lost++
						}
					}
					got, err := c.Decode(bad)
					if err != nil || !bytes.Equal(got, data) {
						t.Fatalf("shard %d bit %d flipped: Decode err %v, equal %v", si, bit, err, bytes.Equal(got, data))
					}
					kept := bad[si]
					if err := c.Reconstruct(bad); err != nil {
						t.Fatalf("shard %d bit %d flipped: Reconstruct: %v", si, bit, err)
					}
					for j := range bad {
						if !bytes.Equal(bad[j], shards[j]) {
							t.Fatalf("shard %d bit %d flipped: reconstructed shard %d differs", si, bit, j)
						}
					}
					if bytes.Equal(kept, shards[si]) {
						t.Fatalf("Reconstruct wrote into the corrupt shard's memory")
					}
				}
			}
		})
	}
}

// TestTooManyCorrupt: m+1 damaged shards are too many.
func TestTooManyCorrupt(t *testing.T) {
	c := mustNew(t, 4, 2)
	data := randBytes(9, 999)
	shards := mustEncode(t, c, data)
	bad := cloneShards(shards)
	bad[0][erasure.HeaderSize] ^= 1 // payload
	bad[3][2] ^= 1                  // magic
	bad[5] = bad[5][:len(bad[5])-1] // truncated
	_, err := c.Decode(bad)
	checkTooFew(t, err, 3, 4)
	before := cloneShards(bad)
	checkTooFew(t, c.Reconstruct(bad), 3, 4)
	for i := range bad {
		if !bytes.Equal(bad[i], before[i]) {
			t.Fatalf("failed Reconstruct changed shard %d", i)
		}
	}
}

// TestMismatchedHeaders: valid shards that belong elsewhere count as missing.
func TestMismatchedHeaders(t *testing.T) {
	c := mustNew(t, 4, 2)
	data := randBytes(11, 1000)
	shards := mustEncode(t, c, data)

	// Same payload length (250), different dataLen: a stale shard.
	stale := mustEncode(t, c, randBytes(12, 999))
	// Same k+m, different k and m.
	other := mustEncode(t, mustNew(t, 3, 3), randBytes(13, 750))
	// Same k, different m.
	otherM := mustEncode(t, mustNew(t, 4, 1), data)

	tests := []struct {
		name   string
		mutate func(s [][]byte)
		bad    []int // shards that must be rebuilt
	}{
		{"stale dataLen", func(s [][]byte) { s[1] = stale[1] }, []int{1}},
		{"two stale", func(s [][]byte) { s[0], s[5] = stale[0], stale[5] }, []int{0, 5}},
		{"swapped index", func(s [][]byte) { s[0], s[1] = s[1], s[0] }, []int{0, 1}},
		{"other k,m", func(s [][]byte) { s[2] = other[2] }, []int{2}},
		{"other m", func(s [][]byte) { s[4] = otherM[4] }, []int{4}},
		{"empty slice", func(s [][]byte) { s[3] = []byte{} }, []int{3}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := cloneShards(shards)
			tt.mutate(s)
			got, err := c.Decode(s)
			if err != nil || !bytes.Equal(got, data) {
				t.Fatalf("Decode: err %v, equal %v", err, bytes.Equal(got, data))
			}
			if err := c.Reconstruct(s); err != nil {
				t.Fatalf("Reconstruct: %v", err)
			}
			for i := range s {
				if !bytes.Equal(s[i], shards[i]) {
					t.Fatalf("shard %d differs after Reconstruct", i)
				}
			}
		})
	}

	// A majority of stale shards wins: Decode returns the stale chunk's data
	// (the caller's address check is what catches this).
	s := cloneShards(stale)
	s[0], s[1] = shards[0], shards[1]
	got, err := c.Decode(s)
	if err != nil {
		t.Fatalf("Decode majority stale: %v", err)
	}
	if want, _ := c.Decode(stale); !bytes.Equal(got, want) {
		t.Fatalf("majority vote did not pick the stale dataLen")
	}
	// Three against three: neither side has k = 4 shards.
	s = cloneShards(stale)
	s[0], s[1], s[2] = shards[0], shards[1], shards[2]
	_, err = c.Decode(s)
	checkTooFew(t, err, 3, 4)
}

func TestWrongShardCount(t *testing.T) {
	c := mustNew(t, 4, 2)
	shards := mustEncode(t, c, []byte("hello"))
	for _, s := range [][][]byte{nil, shards[:5], append(shards, nil)} {
		if _, err := c.Decode(s); !errors.Is(err, erasure.ErrInvalidParams) {
			t.Errorf("Decode(%d shards) error %v, want ErrInvalidParams", len(s), err)
		}
		if err := c.Reconstruct(s); !errors.Is(err, erasure.ErrInvalidParams) {
			t.Errorf("Reconstruct(%d shards) error %v, want ErrInvalidParams", len(s), err)
		}
	}
}

func TestInvalidParams(t *testing.T) {
	tests := []struct {
		k, m int
		want string
	}{
		{0, 2, "erasure: invalid parameters: k = 0, must be at least 1"},
		{-1, 2, "erasure: invalid parameters: k = -1, must be at least 1"},
		{4, -1, "erasure: invalid parameters: m = -1, must be at least 0"},
		{200, 57, "erasure: invalid parameters: k+m = 257 (k = 200, m = 57), must be at most 256"},
		{257, 0, "erasure: invalid parameters: k+m = 257 (k = 257, m = 0), must be at most 256"},
		{1, 1 << 62, "erasure: invalid parameters: k+m = 4611686018427387905 (k = 1, m = 4611686018427387904), must be at most 256"},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("k=%d,m=%d", tt.k, tt.m), func(t *testing.T) {
			c, err := erasure.New(tt.k, tt.m)
			if c != nil || !errors.Is(err, erasure.ErrInvalidParams) {
				t.Fatalf("New = %v, %v; want nil, ErrInvalidParams", c, err)
			}
			if err.Error() != tt.want {
				t.Fatalf("error %q, want %q", err.Error(), tt.want)
			}
		})
	}
}

func TestNewCached(t *testing.T) {
	a, b := mustNew(t, 10, 4), mustNew(t, 10, 4)
	if a != b {
		t.Fatalf("New(10, 4) returned different coders")
	}
	if allocs := testing.AllocsPerRun(100, func() { _, _ = erasure.New(10, 4) }); allocs != 0 {
		t.Fatalf("cached New allocates %v times", allocs)
	}
}

// TestConcurrent exercises one Coder from many goroutines (run with -race).
func TestConcurrent(t *testing.T) {
	c := mustNew(t, 4, 2)
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 20 {
				data := randBytes(uint64(g*100+i), 10000+i)
				shards, err := c.Encode(data)
				if err != nil {
					t.Error(err)
					return
				}
				shards[i%6], shards[(i+1)%6] = nil, nil
				got, err := c.Decode(shards)
				if err != nil || !bytes.Equal(got, data) {
					t.Errorf("Decode: err %v, equal %v", err, bytes.Equal(got, data))
					return
				}
			}
		}()
	}
	wg.Wait()
}

func TestVerifyErrors(t *testing.T) {
	c := mustNew(t, 4, 2)
	good := mustEncode(t, c, randBytes(5, 100))[2]
	// rewrite patches a header field and fixes the header checksum, so the
	// field check itself is exercised.
	rewrite := func(off int, v []byte) []byte {
		s := bytes.Clone(good)
		copy(s[off:], v)
		h := crc32c(s[:24])
		binary.LittleEndian.PutUint32(s[24:], h)
		return s
	}
	u16 := func(v uint16) []byte { return binary.LittleEndian.AppendUint16(nil, v) }
	u64 := func(v uint64) []byte { return binary.LittleEndian.AppendUint64(nil, v) }
	tests := []struct {
		name  string
		shard []byte
		want  string
	}{
		{"nil", nil, "shorter than the 28 byte header"},
		{"short", good[:27], "shorter than the 28 byte header"},
		{"magic", append([]byte("RSH2"), good[4:]...), "bad magic"},
		{"header crc", func() []byte { s := bytes.Clone(good); s[25] ^= 4; return s }(), "header checksum"},
		{"k zero", rewrite(4, u16(0)), "impossible k = 0"},
		{"k+m big", rewrite(4, u16(255)), "impossible k = 255, m = 2"},
		{"index", rewrite(8, u16(6)), "index 6 out of range"},
		{"reserved", rewrite(10, u16(1)), "reserved field"},
		{"dataLen long", rewrite(12, u64(101)), "payload is 25 bytes, but dataLen 101 with k = 4 needs 26"},
		{"dataLen short", rewrite(12, u64(96)), "needs 24"},
		{"dataLen huge", rewrite(12, u64(1<<64-1)), "dataLen 18446744073709551615"},
		{"truncated payload", good[:len(good)-1], "payload is 24 bytes"},
		{"extended payload", append(bytes.Clone(good), 0), "payload is 26 bytes"},
		{"payload crc", func() []byte { s := bytes.Clone(good); s[30] ^= 0x80; return s }(), "payload checksum"},
		{"header bit", func() []byte { s := bytes.Clone(good); s[13] ^= 1; return s }(), "header checksum"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h, err := erasure.Verify(tt.shard)
			if !errors.Is(err, erasure.ErrCorrupt) || h != (erasure.Header{}) {
				t.Fatalf("Verify = %+v, %v; want ErrCorrupt", h, err)
			}
			if !strings.HasPrefix(err.Error(), "erasure: corrupt shard: ") || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %q does not contain %q", err, tt.want)
			}
		})
	}
	// The same shard with k = 1 describes a valid one-shard stripe.
	if h, err := erasure.Verify(rewrite(4, append(u16(1), u16(0)...))); err == nil {
		t.Fatalf("header with k=1 m=0 index 2 accepted: %+v", h)
	}
}

// TestGolden pins the on-disk format: the shards of a fixed input must never
// change. If this fails, the format changed and needs a new magic.
func TestGolden(t *testing.T) {
	c := mustNew(t, 4, 2)
	data := randBytes(42, 100000)
	if got := hex.EncodeToString(sha256Sum(data)); got != goldenInput {
		t.Fatalf("input sha256 %s, want %s (math/rand/v2 PCG changed?)", got, goldenInput)
	}
	shards := mustEncode(t, c, data)
	for i, s := range shards {
		if got := hex.EncodeToString(sha256Sum(s)); got != goldenShards[i] {
			t.Errorf("shard %d sha256 %s, want %s", i, got, goldenShards[i])
		}
	}
	// The header of shard 5, spelled out.
	wantHdr := "52534831" + "0400" + "0200" + "0500" + "0000" + "a086010000000000"
	if got := hex.EncodeToString(shards[5][:20]); got != wantHdr {
		t.Errorf("shard 5 header %s, want %s", got, wantHdr)
	}
}

const goldenInput = "1028a4bf57013cc139487236bc1e61b178a832a0a7a218b49b966c5575e4b1fd"

var goldenShards = [6]string{
	"12e0b693639df1ac22afef1df7b6d4ab1f77607ed3a3a77a9ab644ee50c35167",
	"670914440d17469f24654f146854b028a3712ce059b4cda8ed8f5060840463cb",
	"f1b5aec5a0d943247395a8794d8c69961638f98a5569c678ed51dcd0b13f7644",
	"5678d8b64876c54b3e8ee063b2cfb57296d25df3ece766e57b154e3aff36801e",
	"0fc3684a3bf025d25467ea30f8f37f741329115f8e868aa7291a0e20bd3a112b",
	"2c09cbd7f744f7cd7ab99292f093a36c47504b643f259bcfde55125e02476bb0",
}

func crc32c(b []byte) uint32 { return crc32.Checksum(b, crc32.MakeTable(crc32.Castagnoli)) }

func sha256Sum(b []byte) []byte {
	s := sha256.Sum256(b)
	return s[:]
}

// TestEncodeToReusedBuffer checks that shards carved out of a reused buffer
// full of old bytes equal those of a fresh Encode (the zero padding of the
// last data shard must not keep the old bytes).
func TestEncodeToReusedBuffer(t *testing.T) {
	c, err := erasure.New(4, 2)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range []int{0, 1, 3, 4, 5, 1000, 4096, 1<<20 + 7} {
		data := make([]byte, n)
		for i := range data {
			data[i] = byte(i*31 + 7)
		}
		buf := make([]byte, c.EncodeSize(n))
		for i := range buf {
			buf[i] = 0xAB
		}
		want, err := c.Encode(data)
		if err != nil {
			t.Fatal(err)
		}
		got, err := c.EncodeTo(buf[:0], data)
		if err != nil {
			t.Fatal(err)
		}
		for i := range want {
			if !bytes.Equal(got[i], want[i]) {
				t.Errorf("n=%d: shard %d from a reused buffer differs", n, i)
			}
			if len(got[i]) > 0 && &got[i][0] != &buf[i*len(want[i])] {
				t.Errorf("n=%d: shard %d not carved out of the buffer", n, i)
			}
		}
		back, err := c.Decode(got)
		if err != nil || !bytes.Equal(back, data) {
			t.Errorf("n=%d: decode = %d bytes, %v", n, len(back), err)
		}
	}
}

// TestDecodeUnchecked: headers are checked as in Decode, payloads are not.
func TestDecodeUnchecked(t *testing.T) {
	c := mustNew(t, 4, 2)
	data := randBytes(21, 100_001)
	shards := mustEncode(t, c, data)
	flipped := bytes.Clone(data)
	flipped[1] ^= 0x80 // what shard 0 with its payload byte 1 flipped holds
	for _, tc := range []struct {
		name    string
		damage  func(s [][]byte) [][]byte
		want    []byte // nil: an error
		checked []byte // what Decode returns (nil: an error)
	}{
		{"intact", func(s [][]byte) [][]byte { return s }, data, data},
		{"data payload flipped: used as it is", func(s [][]byte) [][]byte {
			s[0][erasure.HeaderSize+1] ^= 0x80
			return s
		}, flipped, data},
		{"data shard missing: rebuilt from parity", func(s [][]byte) [][]byte { s[2] = nil; return s }, data, data},
		{"data header flipped: counts as missing", func(s [][]byte) [][]byte { s[1][offsetIndex] ^= 1; return s }, data, data},
		{"payload checksum field wrong: not looked at", func(s [][]byte) [][]byte {
			s[3][20] ^= 1 // payloadCRC, which the header checksum covers too
			fixHeaderCRC(s[3])
			return s
		}, data, data},
		{"too few headers fine", func(s [][]byte) [][]byte {
			s[0][0] ^= 1
			s[4] = nil
			s[5] = s[5][:len(s[5])-1]
			return s
		}, nil, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			bad := tc.damage(cloneShards(shards))
			got, err := c.DecodeUnchecked(bad)
			switch {
			case tc.want == nil && err == nil:
				t.Errorf("DecodeUnchecked = %d bytes, want an error", len(got))
			case tc.want != nil && (err != nil || !bytes.Equal(got, tc.want)):
				t.Errorf("DecodeUnchecked = %d bytes, %v; want the %d bytes expected", len(got), err, len(tc.want))
			}
			got, err = c.Decode(bad)
			switch {
			case tc.checked == nil && err == nil:
				t.Errorf("Decode = %d bytes, want an error", len(got))
			case tc.checked != nil && (err != nil || !bytes.Equal(got, tc.checked)):
				t.Errorf("Decode = %d bytes, %v; want the original", len(got), err)
			}
		})
	}
}

// offsetIndex is the offset of the index field in a shard header.
const offsetIndex = 8

// fixHeaderCRC recomputes a shard's header checksum after a header edit.
func fixHeaderCRC(shard []byte) {
	binary.LittleEndian.PutUint32(shard[24:], crc32c(shard[:24]))
}
