package membership

import (
	"encoding/binary"
	"errors"
	"fmt"
	"unicode/utf8"
)

// MaxMetaSize is the largest encoded Meta accepted, in bytes. It equals
// the node metadata limit of the gossip layer.
const MaxMetaSize = 512

// metaFormat is the version byte that starts every encoded Meta. A decoder
// understands every format up to and including its own; bytes after the
// fields it knows are ignored only when the format is newer than its own,
// so that newer peers can append fields without breaking older ones.
const metaFormat = 2

// ErrMetaTooLarge is returned (wrapped) by Meta.Encode and DecodeMeta when
// the encoded form would exceed MaxMetaSize.
var ErrMetaTooLarge = errors.New("membership: meta too large")

// errMalformedMeta is wrapped by every DecodeMeta error about the content.
var errMalformedMeta = errors.New("membership: malformed meta")

// Encode returns the compact binary form of m: a format byte, then DataAddr,
// Zone and Version as length-prefixed UTF-8 strings, then Capacity, Free,
// Used and Shards as zig-zag varints. It fails if a string is not valid
// UTF-8 or the result would exceed MaxMetaSize.
func (m Meta) Encode() ([]byte, error) {
	for _, s := range [...]string{m.DataAddr, m.Zone, m.Version} {
		if !utf8.ValidString(s) {
			return nil, fmt.Errorf("membership: encode meta: %w: string is not valid UTF-8", errMalformedMeta)
		}
	}
	strLen := len(m.DataAddr) + len(m.Zone) + len(m.Version)
	if strLen > MaxMetaSize {
		// Avoid allocating for absurd inputs; the exact check follows.
		return nil, fmt.Errorf("membership: encode meta: %w (limit %d bytes)", ErrMetaTooLarge, MaxMetaSize)
	}
	b := make([]byte, 0, 1+strLen+7*binary.MaxVarintLen64)
	b = append(b, metaFormat)
	for _, s := range [...]string{m.DataAddr, m.Zone, m.Version} {
		b = binary.AppendUvarint(b, uint64(len(s)))
		b = append(b, s...)
	}
	for _, v := range [...]int64{m.Capacity, m.Free, m.Used, m.Shards} {
		b = binary.AppendVarint(b, v)
	}
	b = binary.AppendUvarint(b, m.Flags) // format 2
	if len(b) > MaxMetaSize {
		return nil, fmt.Errorf("membership: encode meta: %w (%d bytes, limit %d)", ErrMetaTooLarge, len(b), MaxMetaSize)
	}
	return b, nil
}

// DecodeMeta parses the output of Meta.Encode. It never panics; empty,
// truncated, oversize or otherwise malformed input yields an error.
func DecodeMeta(b []byte) (Meta, error) {
	var m Meta
	if len(b) > MaxMetaSize {
		return m, fmt.Errorf("membership: decode meta: %w (%d bytes, limit %d)", ErrMetaTooLarge, len(b), MaxMetaSize)
	}
	if len(b) == 0 {
		return m, fmt.Errorf("membership: decode meta: %w: empty", errMalformedMeta)
	}
	format := b[0]
	if format == 0 {
		return m, fmt.Errorf("membership: decode meta: %w: format 0", errMalformedMeta)
	}
	d := metaDecoder{b: b[1:]}
	m.DataAddr = d.str("data address")
	m.Zone = d.str("zone")
	m.Version = d.str("version")
	m.Capacity = d.varint("capacity")
	m.Free = d.varint("free")
	m.Used = d.varint("used")
	m.Shards = d.varint("shards")
	if format >= 2 {
		m.Flags = d.uvarint("flags")
	}
	if d.err != nil {
		return Meta{}, d.err
	}
	if len(d.b) != 0 && format <= metaFormat {
		return Meta{}, fmt.Errorf("membership: decode meta: %w: %d trailing bytes", errMalformedMeta, len(d.b))
	}
	return m, nil
}

// metaDecoder consumes fields from b, remembering the first error.
type metaDecoder struct {
	b   []byte
	err error
}

func (d *metaDecoder) fail(field, why string) {
	if d.err == nil {
		d.err = fmt.Errorf("membership: decode meta: %w: %s: %s", errMalformedMeta, field, why)
	}
}

func (d *metaDecoder) str(field string) string {
	if d.err != nil {
		return ""
	}
	l, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.fail(field, "bad length")
		return ""
	}
	d.b = d.b[n:]
	if l > uint64(len(d.b)) {
		d.fail(field, "truncated")
		return ""
	}
	s := d.b[:l]
	d.b = d.b[l:]
	if !utf8.Valid(s) {
		d.fail(field, "not valid UTF-8")
		return ""
	}
	return string(s)
}

func (d *metaDecoder) varint(field string) int64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Varint(d.b)
	if n <= 0 {
		d.fail(field, "bad or truncated varint")
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *metaDecoder) uvarint(field string) uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.fail(field, "bad or truncated varint")
		return 0
	}
	d.b = d.b[n:]
	return v
}
