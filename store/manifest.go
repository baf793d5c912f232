package store

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/reefproject/reef/addr"
)

// A manifest is the plaintext of a blob that describes a file: the ordered
// list of its chunks. Big files get a tree: an indirect manifest lists
// manifests. Manifests are sealed, coded and placed like any chunk, so a
// file's address is the address of its root manifest blob.
//
//	magic "RFM1" | kind u8 | 3 reserved bytes | size u64 | count u32 | count × entry
//	entry: addr [32]byte | length u64 | k u16 | m u16
//
// kind 1 lists data chunks; kind 2 lists manifests (length = bytes covered);
// kind 3 ("self") has no entries and is followed by the file's size bytes
// themselves: a file of one chunk is stored as one blob, its manifest,
// instead of a chunk and a manifest listing it (half the shard writes of
// every file between the namespace's inline limit and one chunk).
// All integers are little endian.
const (
	manifestMagic    = "RFM1"
	manifestHdrSize  = 4 + 4 + 8 + 4
	entrySize        = addr.Size + 8 + 2 + 2
	kindData         = 1
	kindIndirect     = 2
	kindSelf         = 3
	maxEntries       = 1 << 16 // 2.9 MB of entries per manifest blob
	maxManifestDepth = 5       // 65536^5 chunks: more than any file
)

// ErrBadManifest is returned (wrapped) for a manifest blob that does not parse.
var ErrBadManifest = errors.New("malformed manifest")

// Entry is one line of a manifest.
type Entry struct {
	Addr   addr.Addr
	Length int64
	K, M   int
	// self: the chunk is a self manifest (Addr is the file's root), whose
	// plaintext is the header and then the bytes (see fileIndex).
	self bool
}

type manifest struct {
	kind    byte
	size    int64
	entries []Entry
	data    []byte // kindSelf: the file
}

// appendSelfManifest appends the self manifest of data to b.
func appendSelfManifest(b, data []byte) []byte {
	var hdr [manifestHdrSize]byte
	copy(hdr[:], manifestMagic)
	hdr[4] = kindSelf
	binary.LittleEndian.PutUint64(hdr[8:], uint64(len(data)))
	return append(append(b, hdr[:]...), data...)
}

func encodeManifest(m manifest) []byte {
	if m.kind == kindSelf {
		return appendSelfManifest(nil, m.data)
	}
	b := make([]byte, manifestHdrSize+entrySize*len(m.entries))
	copy(b, manifestMagic)
	b[4] = m.kind
	binary.LittleEndian.PutUint64(b[8:], uint64(m.size))
	binary.LittleEndian.PutUint32(b[16:], uint32(len(m.entries)))
	p := b[manifestHdrSize:]
	for _, e := range m.entries {
		copy(p, e.Addr[:])
		binary.LittleEndian.PutUint64(p[32:], uint64(e.Length))
		binary.LittleEndian.PutUint16(p[40:], uint16(e.K))
		binary.LittleEndian.PutUint16(p[42:], uint16(e.M))
		p = p[entrySize:]
	}
	return b
}

func decodeManifest(b []byte) (manifest, error) {
	var m manifest
	if len(b) < manifestHdrSize || string(b[:4]) != manifestMagic {
		return m, fmt.Errorf("store: %w: no manifest header", ErrBadManifest)
	}
	m.kind = b[4]
	if m.kind != kindData && m.kind != kindIndirect && m.kind != kindSelf {
		return m, fmt.Errorf("store: %w: unknown kind %d", ErrBadManifest, m.kind)
	}
	size := binary.LittleEndian.Uint64(b[8:])
	n := binary.LittleEndian.Uint32(b[16:])
	if m.kind == kindSelf {
		if n != 0 || uint64(len(b)-manifestHdrSize) != size {
			return m, fmt.Errorf("store: %w: self manifest of %d bytes with %d entries says %d", ErrBadManifest, len(b), n, size)
		}
		m.size, m.data = int64(size), b[manifestHdrSize:]
		return m, nil
	}
	if n > maxEntries || len(b) != manifestHdrSize+int(n)*entrySize {
		return m, fmt.Errorf("store: %w: %d entries in %d bytes", ErrBadManifest, n, len(b))
	}
	if size > 1<<62 {
		return m, fmt.Errorf("store: %w: size %d", ErrBadManifest, size)
	}
	m.size = int64(size)
	m.entries = make([]Entry, n)
	var sum int64
	p := b[manifestHdrSize:]
	for i := range m.entries {
		e := &m.entries[i]
		copy(e.Addr[:], p[:32])
		l := binary.LittleEndian.Uint64(p[32:])
		e.K = int(binary.LittleEndian.Uint16(p[40:]))
		e.M = int(binary.LittleEndian.Uint16(p[42:]))
		if l > 1<<62 || e.K < 1 || e.K+e.M > 256 {
			return m, fmt.Errorf("store: %w: entry %d: length %d, k=%d m=%d", ErrBadManifest, i, l, e.K, e.M)
		}
		e.Length = int64(l)
		sum += e.Length
		if sum > m.size {
			return m, fmt.Errorf("store: %w: entries exceed size %d", ErrBadManifest, m.size)
		}
		p = p[entrySize:]
	}
	if sum != m.size {
		return m, fmt.Errorf("store: %w: entries sum to %d, header says %d", ErrBadManifest, sum, m.size)
	}
	return m, nil
}
