package erasure

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"math"
	"sync"

	"github.com/klauspost/reedsolomon"
)

// Sentinel errors. Errors returned by this package wrap one of them (or, for
// too few shards, are a *TooFewShardsError that matches ErrTooFewShards), so
// callers test with errors.Is.
var (
	// ErrInvalidParams reports an unusable k or m, or a shard slice of the
	// wrong length.
	ErrInvalidParams = errors.New("erasure: invalid parameters")
	// ErrCorrupt reports a shard whose header or checksums are wrong.
	ErrCorrupt = errors.New("erasure: corrupt shard")
	// ErrTooFewShards reports that fewer than k usable shards were given.
	ErrTooFewShards = errors.New("erasure: too few usable shards")
)

// TooFewShardsError is returned by Decode and Reconstruct when fewer than Need
// (= k) usable shards are available. It matches ErrTooFewShards with
// errors.Is.
type TooFewShardsError struct {
	// Found is the number of usable shards that were given.
	Found int
	// Need is the number of usable shards required, k.
	Need int
}

// Error implements error.
func (e *TooFewShardsError) Error() string {
	return fmt.Sprintf("erasure: %d shards usable, need %d", e.Found, e.Need)
}

// Is reports whether target is ErrTooFewShards.
func (e *TooFewShardsError) Is(target error) bool { return target == ErrTooFewShards }

// Header is the decoded header of one shard.
type Header struct {
	// K is the number of data shards of the stripe.
	K int
	// M is the number of parity shards of the stripe.
	M int
	// Index is the position of the shard in the stripe, 0..K+M-1.
	Index int
	// DataLen is the length of the original chunk in bytes.
	DataLen int64
}

// HeaderSize is the size in bytes of the header at the start of every shard.
// See the package documentation for the layout.
const HeaderSize = 28

// Header field offsets.
const (
	offMagic      = 0
	offK          = 4
	offM          = 6
	offIndex      = 8
	offReserved   = 10
	offDataLen    = 12
	offPayloadCRC = 20
	offHeaderCRC  = 24
)

// maxShards is the largest k+m the GF(2^8) code supports.
const maxShards = 256

var magic = [4]byte{'R', 'S', 'H', '1'}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

func checksum(b []byte) uint32 { return crc32.Checksum(b, castagnoli) }

// rsOptions are the reedsolomon options of every encoder. A single goroutine
// per call: the caller already works on several chunks in parallel, and for
// 64 KiB..1 MiB shards the extra goroutines buy little (see bench_test.go).
var rsOptions = []reedsolomon.Option{reedsolomon.WithMaxGoroutines(1)}

// Coder encodes and decodes stripes of k data and m parity shards. It is
// immutable and safe for concurrent use.
type Coder struct {
	k, m int
	enc  reedsolomon.Encoder // nil when m == 0
}

type coderKey struct{ k, m int }

// coders caches one *Coder per (k, m), so New is cheap.
var coders sync.Map // coderKey -> *Coder

// New returns a Coder for k data shards and m parity shards. k must be at
// least 1, m at least 0 and k+m at most 256; otherwise the error wraps
// ErrInvalidParams. Coders are cached, so calling New repeatedly is cheap.
func New(k, m int) (*Coder, error) {
	switch {
	case k < 1:
		return nil, fmt.Errorf("%w: k = %d, must be at least 1", ErrInvalidParams, k)
	case m < 0:
		return nil, fmt.Errorf("%w: m = %d, must be at least 0", ErrInvalidParams, m)
	case k > maxShards || m > maxShards || k+m > maxShards:
		return nil, fmt.Errorf("%w: k+m = %d (k = %d, m = %d), must be at most %d", ErrInvalidParams, k+m, k, m, maxShards)
	}
	key := coderKey{k, m}
	if c, ok := coders.Load(key); ok {
		return c.(*Coder), nil
	}
	c := &Coder{k: k, m: m}
	if m > 0 {
		enc, err := reedsolomon.New(k, m, rsOptions...)
		if err != nil {
			return nil, fmt.Errorf("erasure: reedsolomon.New(%d, %d): %w", k, m, err)
		}
		c.enc = enc
	}
	actual, _ := coders.LoadOrStore(key, c)
	return actual.(*Coder), nil
}

// K returns the number of data shards.
func (c *Coder) K() int { return c.k }

// M returns the number of parity shards.
func (c *Coder) M() int { return c.m }

// payloadLen returns the payload length of every shard for a chunk of n bytes
// cut into k pieces.
func payloadLen(n int64, k int) int64 {
	return (n + int64(k) - 1) / int64(k)
}

// putHeader writes the header of a shard whose payload already follows it.
func putHeader(shard []byte, k, m, index int, dataLen int64) {
	h := shard[:HeaderSize]
	copy(h[offMagic:], magic[:])
	binary.LittleEndian.PutUint16(h[offK:], uint16(k))
	binary.LittleEndian.PutUint16(h[offM:], uint16(m))
	binary.LittleEndian.PutUint16(h[offIndex:], uint16(index))
	binary.LittleEndian.PutUint16(h[offReserved:], 0)
	binary.LittleEndian.PutUint64(h[offDataLen:], uint64(dataLen))
	binary.LittleEndian.PutUint32(h[offPayloadCRC:], checksum(shard[HeaderSize:]))
	binary.LittleEndian.PutUint32(h[offHeaderCRC:], checksum(h[:offHeaderCRC]))
}

// allocShards returns count shard slices of HeaderSize+p bytes each, carved
// out of buf when it is large enough (its bytes are not cleared) or out of
// one new allocation. Each shard is capped, so appending to one never
// overwrites its neighbour.
func allocShards(buf []byte, count int, p int) [][]byte {
	size := HeaderSize + p
	if cap(buf) >= count*size {
		buf = buf[:count*size]
	} else {
		buf = make([]byte, count*size)
	}
	out := make([][]byte, count)
	for i := range out {
		out[i] = buf[i*size : (i+1)*size : (i+1)*size]
	}
	return out
}

// Encode cuts data into k data shards and computes m parity shards. It returns
// k+m shards; shard i is the one with index i. All shards may share one
// backing allocation (each is capped to its own length); the caller owns them.
// data is not retained.
func (c *Coder) Encode(data []byte) ([][]byte, error) {
	return c.EncodeTo(nil, data)
}

// EncodeSize is the number of bytes the shards of data of n bytes take, the
// capacity EncodeTo needs to use its buffer.
func (c *Coder) EncodeSize(n int) int {
	return (c.k + c.m) * (HeaderSize + int(payloadLen(int64(n), c.k)))
}

// EncodeTo is Encode with the shards carved out of buf when its capacity is
// at least EncodeSize(len(data)): then they share buf's memory, and buf must
// not be reused while they are in use. Old bytes in buf do not matter.
func (c *Coder) EncodeTo(buf, data []byte) ([][]byte, error) {
	n := len(data)
	p64 := payloadLen(int64(n), c.k)
	total := c.k + c.m
	if p64 > (math.MaxInt/int64(total))-HeaderSize {
		return nil, fmt.Errorf("%w: data of %d bytes is too large", ErrInvalidParams, n)
	}
	p := int(p64)
	shards := allocShards(buf, total, p)
	if p > 0 {
		for i := 0; i < c.k; i++ {
			lo := min(i*p, n)
			c := copy(shards[i][HeaderSize:], data[lo:])
			clear(shards[i][HeaderSize+c:]) // zero padding (buf may be reused)
		}
		if c.m > 0 {
			payloads := make([][]byte, total)
			for i, s := range shards {
				payloads[i] = s[HeaderSize:]
			}
			if err := c.enc.Encode(payloads); err != nil {
				return nil, fmt.Errorf("erasure: encode: %w", err)
			}
		}
	}
	for i, s := range shards {
		putHeader(s, c.k, c.m, i, int64(n))
	}
	return shards, nil
}

// Verify checks one shard: its length, magic, header fields, header checksum
// and payload checksum. It returns the decoded header, or an error wrapping
// ErrCorrupt that says what is wrong. Verify never panics, whatever the input.
func Verify(shard []byte) (Header, error) {
	h, err := parseHeader(shard)
	if err != nil {
		return Header{}, err
	}
	if err := checkPayload(shard); err != nil {
		return Header{}, err
	}
	return h, nil
}

// ParseHeader checks everything about a shard except its payload checksum
// (the header's own checksum and fields, and the payload's length) and
// returns the decoded header: what a caller that must not read the whole
// payload again (it was just verified, say) can afford.
func ParseHeader(shard []byte) (Header, error) { return parseHeader(shard) }

// parseHeader checks everything about a shard except its payload checksum.
func parseHeader(shard []byte) (Header, error) {
	if len(shard) < HeaderSize {
		return Header{}, fmt.Errorf("%w: %d bytes, shorter than the %d byte header", ErrCorrupt, len(shard), HeaderSize)
	}
	b := shard[:HeaderSize]
	if [4]byte(b[offMagic:offMagic+4]) != magic {
		return Header{}, fmt.Errorf("%w: bad magic %q", ErrCorrupt, b[offMagic:offMagic+4])
	}
	if got, want := checksum(b[:offHeaderCRC]), binary.LittleEndian.Uint32(b[offHeaderCRC:]); got != want {
		return Header{}, fmt.Errorf("%w: header checksum %08x, header says %08x", ErrCorrupt, got, want)
	}
	k := int(binary.LittleEndian.Uint16(b[offK:]))
	m := int(binary.LittleEndian.Uint16(b[offM:]))
	index := int(binary.LittleEndian.Uint16(b[offIndex:]))
	reserved := binary.LittleEndian.Uint16(b[offReserved:])
	dataLen := binary.LittleEndian.Uint64(b[offDataLen:])
	switch {
	case k < 1 || k+m > maxShards:
		return Header{}, fmt.Errorf("%w: impossible k = %d, m = %d", ErrCorrupt, k, m)
	case index >= k+m:
		return Header{}, fmt.Errorf("%w: index %d out of range for k+m = %d", ErrCorrupt, index, k+m)
	case reserved != 0:
		return Header{}, fmt.Errorf("%w: reserved field is %#04x, not 0", ErrCorrupt, reserved)
	}
	// The payload must be exactly ceil(dataLen/k) bytes. Compare without
	// overflow: p <= MaxInt and k <= 256, so p*k fits in a uint64.
	p := uint64(len(shard) - HeaderSize)
	var ok bool
	if p == 0 {
		ok = dataLen == 0
	} else {
		ok = dataLen > (p-1)*uint64(k) && dataLen <= p*uint64(k)
	}
	if !ok {
		return Header{}, fmt.Errorf("%w: payload is %d bytes, but dataLen %d with k = %d needs %d", ErrCorrupt, p, dataLen, k, dataLen/uint64(k)+min(dataLen%uint64(k), 1))
	}
	return Header{K: k, M: m, Index: index, DataLen: int64(dataLen)}, nil
}

// checkPayload checks the payload checksum of a shard whose header passed
// parseHeader.
func checkPayload(shard []byte) error {
	got := checksum(shard[HeaderSize:])
	if want := binary.LittleEndian.Uint32(shard[offPayloadCRC:]); got != want {
		return fmt.Errorf("%w: payload checksum %08x, header says %08x", ErrCorrupt, got, want)
	}
	return nil
}

// Shard states during Decode and Reconstruct.
const (
	stateBad       uint8 = iota // missing, corrupt or not matching the stripe
	stateHeaderOK               // header fine, payload not checked yet
	statePayloadOK              // header and payload fine (or not checked: DecodeUnchecked): usable
)

// stripe is the parsed state of the shards passed to Decode or Reconstruct.
type stripe struct {
	state   []uint8
	dataLen int64 // the majority dataLen, valid when some header is fine
	p       int   // payload length for dataLen
}

// scan checks the headers of all shards against the coder and picks the
// majority dataLen; shards that disagree with it are marked bad. Payloads are
// not checked yet.
func (c *Coder) scan(shards [][]byte) (*stripe, error) {
	total := c.k + c.m
	if len(shards) != total {
		return nil, fmt.Errorf("%w: got %d shards, want k+m = %d", ErrInvalidParams, len(shards), total)
	}
	st := &stripe{state: make([]uint8, total)}
	lens := make([]int64, total)
	for i, s := range shards {
		if s == nil {
			continue
		}
		h, err := parseHeader(s)
		if err != nil || h.K != c.k || h.M != c.m || h.Index != i {
			continue
		}
		st.state[i] = stateHeaderOK
		lens[i] = h.DataLen
	}
	// Majority vote on dataLen; ties go to the value first seen in index
	// order. total <= 256, so quadratic is fine.
	best, bestVotes := int64(0), 0
	for i := range total {
		if st.state[i] == stateBad {
			continue
		}
		votes := 0
		for j := range total {
			if st.state[j] != stateBad && lens[j] == lens[i] {
				votes++
			}
		}
		if votes > bestVotes {
			best, bestVotes = lens[i], votes
		}
	}
	for i := range total {
		if st.state[i] != stateBad && lens[i] != best {
			st.state[i] = stateBad
		}
	}
	st.dataLen = best
	st.p = int(payloadLen(best, c.k))
	return st, nil
}

// usable checks the payload of shard i if needed and reports whether it is
// usable. With check false a shard whose header is fine is taken as usable
// without a look at its payload (DecodeUnchecked).
func (st *stripe) usable(shards [][]byte, i int, check bool) bool {
	if st.state[i] == stateHeaderOK {
		if !check || checkPayload(shards[i]) == nil {
			st.state[i] = statePayloadOK
		} else {
			st.state[i] = stateBad
		}
	}
	return st.state[i] == statePayloadOK
}

// Decode returns the original chunk from its shards. len(shards) must be k+m
// and shards[i] is the shard with index i, or nil if it is missing. A shard
// whose checksums fail, or whose header does not match the stripe (k, m,
// index i, or a dataLen that differs from the majority of valid shards),
// counts as missing. When all k data shards are usable the chunk is their
// concatenation and no reconstruction runs. With fewer than k usable shards
// Decode returns a *TooFewShardsError. The shards are not modified or
// retained.
func (c *Coder) Decode(shards [][]byte) ([]byte, error) { return c.decode(shards, true) }

// DecodeUnchecked is Decode without the payload checksums: a shard whose
// header is fine and fits the stripe is used as it is, whatever its payload.
// Headers (magic, header checksum, k, m, index, lengths, the majority
// dataLen) are checked as in Decode. It is for a caller that checks the
// result end to end, as the store checks a chunk against its cryptographic
// address: that check covers every byte the checksums would, and they cost
// a pass over every shard. When the end-to-end check fails, Verify tells
// which shards are bad; decode again without them.
func (c *Coder) DecodeUnchecked(shards [][]byte) ([]byte, error) { return c.decode(shards, false) }

// decode is Decode, checking payloads when check is true.
func (c *Coder) decode(shards [][]byte, check bool) ([]byte, error) {
	st, err := c.scan(shards)
	if err != nil {
		return nil, err
	}
	// Check data shards first, then only as many parity shards as needed.
	found, dataOK := 0, true
	for i := 0; i < c.k; i++ {
		if st.usable(shards, i, check) {
			found++
		} else {
			dataOK = false
		}
	}
	for i := c.k; i < c.k+c.m && found < c.k; i++ {
		if st.usable(shards, i, check) {
			found++
		}
	}
	if found < c.k {
		return nil, &TooFewShardsError{Found: found, Need: c.k}
	}
	n, p := int(st.dataLen), st.p
	if dataOK {
		// bytes.Join allocates without zeroing the memory first (every
		// byte is copied over): a zeroed 1 MiB per chunk was a tenth of a
		// reading peer's CPU in memclr.
		var arr [16][]byte
		parts := arr[:0] // on the stack for k <= 16
		for i := 0; i < c.k && i*p < n; i++ {
			parts = append(parts, shards[i][HeaderSize:HeaderSize+min(p, n-i*p)])
		}
		if len(parts) == 0 {
			return []byte{}, nil
		}
		return bytes.Join(parts, nil), nil
	}
	// Some data shard is missing but k shards are usable, so m > 0. An empty
	// chunk has empty payloads and nothing to reconstruct.
	if p == 0 {
		return []byte{}, nil
	}
	out := make([]byte, c.k*p)
	rs := make([][]byte, c.k+c.m)
	for i := 0; i < c.k; i++ {
		seg := out[i*p : (i+1)*p : (i+1)*p]
		if st.state[i] == statePayloadOK {
			copy(seg, shards[i][HeaderSize:])
			rs[i] = seg
		} else {
			rs[i] = seg[:0] // reedsolomon reconstructs into this capacity
		}
	}
	for i := c.k; i < c.k+c.m; i++ {
		if st.state[i] == statePayloadOK {
			rs[i] = shards[i][HeaderSize:]
		}
	}
	if err := c.enc.ReconstructData(rs); err != nil {
		return nil, fmt.Errorf("erasure: reconstruct data: %w", err)
	}
	for i := 0; i < c.k; i++ {
		// Defensive: reedsolomon must have used the capacity we gave it.
		if len(rs[i]) != p || &rs[i][0] != &out[i*p] {
			copy(out[i*p:(i+1)*p], rs[i])
		}
	}
	return out[:n:n], nil
}

// Reconstruct rebuilds every missing or corrupt shard of a stripe, for repair.
// len(shards) must be k+m; shards[i] is the shard with index i or nil. Shards
// are judged as in Decode; every shard that is not usable is replaced in the
// slice by a newly allocated, byte-identical copy of the original shard (the
// bad shard's memory is not written). Usable shards are left alone. With fewer
// than k usable shards Reconstruct returns a *TooFewShardsError and changes
// nothing.
func (c *Coder) Reconstruct(shards [][]byte) error {
	st, err := c.scan(shards)
	if err != nil {
		return err
	}
	total := c.k + c.m
	found := 0
	for i := range total {
		if st.usable(shards, i, true) {
			found++
		}
	}
	if found < c.k {
		return &TooFewShardsError{Found: found, Need: c.k}
	}
	if found == total {
		return nil
	}
	p := st.p
	fresh := allocShards(nil, total-found, p)
	rs := make([][]byte, total)
	rebuilt := make([]int, 0, total-found)
	for i := range total {
		if st.state[i] == statePayloadOK {
			rs[i] = shards[i][HeaderSize:]
		} else {
			s := fresh[len(rebuilt)]
			rebuilt = append(rebuilt, i)
			rs[i] = s[HeaderSize:HeaderSize]
		}
	}
	if p > 0 {
		if err := c.enc.Reconstruct(rs); err != nil {
			return fmt.Errorf("erasure: reconstruct: %w", err)
		}
	}
	for j, i := range rebuilt {
		s := fresh[j]
		if p > 0 && &rs[i][0] != &s[HeaderSize] {
			copy(s[HeaderSize:], rs[i]) // defensive, as in Decode
		}
		putHeader(s, c.k, c.m, i, st.dataLen)
		shards[i] = s
	}
	return nil
}
