// Package addr is reef's vocabulary for content addresses.
//
// An Addr is the BLAKE3-256 hash of the bytes that are stored (for a chunk:
// its encrypted form), so any peer can check what it holds without being able
// to read it. Addresses print as 64 lowercase hex digits. BLAKE3 rather than
// SHA-256 because it hashes about twice as fast here (3.0 GB/s against
// 1.5 GB/s with SHA-NI on one core), and every byte written is hashed.
package addr

import (
	"encoding/hex"
	"errors"
	"fmt"
	"github.com/zeebo/blake3"
)

// Size is the length of an address in bytes.
const Size = 32

// Addr is the address of a stored blob.
type Addr [Size]byte

// ErrInvalid is returned (wrapped) by Parse for malformed addresses.
var ErrInvalid = errors.New("invalid address")

// Sum returns the address of b.
func Sum(b []byte) Addr { return Addr(blake3.Sum256(b)) }

// String returns the address as 64 lowercase hex digits.
func (a Addr) String() string { return hex.EncodeToString(a[:]) }

// Short returns the first 12 hex digits, for logs and tables.
func (a Addr) Short() string { return hex.EncodeToString(a[:6]) }

// IsZero reports whether a is the zero address (no address).
func (a Addr) IsZero() bool { return a == Addr{} }

// Verify reports whether b is the content a names.
func (a Addr) Verify(b []byte) bool { return Sum(b) == a }

// Parse reads an address printed by String.
func Parse(s string) (Addr, error) {
	var a Addr
	if len(s) != 2*Size {
		return a, fmt.Errorf("addr: %q: want %d hex digits, got %d: %w", truncate(s), 2*Size, len(s), ErrInvalid)
	}
	if _, err := hex.Decode(a[:], []byte(s)); err != nil {
		return a, fmt.Errorf("addr: %q: not hex: %w", truncate(s), ErrInvalid)
	}
	return a, nil
}

// FromBytes converts a raw 32-byte slice.
func FromBytes(b []byte) (Addr, error) {
	var a Addr
	if len(b) != Size {
		return a, fmt.Errorf("addr: want %d bytes, got %d: %w", Size, len(b), ErrInvalid)
	}
	copy(a[:], b)
	return a, nil
}

func truncate(s string) string {
	if len(s) > 80 {
		return s[:80] + "…"
	}
	return s
}
