// Package crypt holds a volume's secret and what is derived from it.
//
// # The key file
//
// `reef init --key FILE` writes 32 random bytes, hex encoded after a
// "reef-key-v1 " tag, with mode 0600. Every peer of a cluster is started with
// the same file. Independent subkeys are derived from it with HKDF-SHA256:
// the content key (convergent chunk keys), the wrap key (chunk key wrapping),
// the gossip key (memberlist encryption) and the peer token (data-plane
// authentication).
//
// # Chunk encryption (convergent within a volume)
//
// A chunk's key is BLAKE3-keyed(contentKey, plaintext): equal content in one
// volume gets an equal key, so it encrypts to equal bytes and dedups, while
// someone without the volume secret cannot confirm a guessed plaintext.
// The sealed blob is
//
//	version(1) | wrapNonce(12) | AES-256-GCM(wrapKey, wrapNonce, chunkKey)(48) | AES-256-GCM(chunkKey, 0, plaintext)
//
// wrapNonce is BLAKE3-keyed(nonceKey, chunkKey) (a synthetic IV), so sealing is
// deterministic. A zero nonce for the body is safe because every chunk key
// encrypts exactly one plaintext. A reader that has the volume secret needs
// nothing but the blob: it unwraps the chunk key, then opens the body; both
// GCM tags authenticate what they cover. The blob's BLAKE3 is its address.
//
// # Records (not convergent)
//
// What needs no dedup (the namespace's ops, checkpoints and logs) is sealed
// by SealRecord with one AEAD and a random nonce:
//
//	recordVersion(1) | nonce(12, random) | AES-256-GCM(recordKey, nonce, plaintext)
//
// A convergent seal derives and schedules a fresh AES key per blob (two
// BLAKE3 passes, a key expansion and GCM set-up), which for records of a
// few hundred bytes cost more than the encryption: a tenth of a peer's CPU
// while a tree was untarred. Random 96-bit nonces keep the chance of a
// repeated nonce below 2^-32 for 2^32 records under one volume secret.
// Open opens both kinds.
package crypt

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"

	"github.com/zeebo/blake3"
)

const (
	keyTag     = "reef-key-v1 "
	secretSize = 32
	version    = 1
	// recordVersion marks a blob made by SealRecord.
	recordVersion = 2
	nonceSize     = 12
	tagSize       = 16
	// Overhead is the number of bytes Seal adds to a plaintext.
	Overhead = 1 + nonceSize + secretSize + tagSize + tagSize
	// RecordOverhead is the number of bytes SealRecord adds.
	RecordOverhead = 1 + nonceSize + tagSize
)

// ErrDecrypt is returned (wrapped) when a blob cannot be opened: it was made
// with another volume secret, or it is damaged.
var ErrDecrypt = errors.New("cannot decrypt")

// Keys holds the subkeys derived from one volume secret. It is safe for
// concurrent use.
type Keys struct {
	content [32]byte
	wrap    cipher.AEAD
	record  cipher.AEAD
	nonce   [32]byte
	gossip  [32]byte
	token   string
	id      string
	macs    sync.Pool // of *blake3.Hasher keyed with content
}

// GenerateKeyFile creates a new key file at path. It refuses to overwrite an
// existing file, so a volume's secret is never lost by mistake.
func GenerateKeyFile(path string) error {
	var s [secretSize]byte
	if _, err := rand.Read(s[:]); err != nil {
		return fmt.Errorf("crypt: generate key: %w", err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("crypt: create key file: %w", err)
	}
	if _, err := fmt.Fprintf(f, "%s%s\n", keyTag, hex.EncodeToString(s[:])); err != nil {
		f.Close()
		os.Remove(path)
		return fmt.Errorf("crypt: write key file %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("crypt: sync key file %s: %w", path, err)
	}
	return f.Close()
}

// LoadKeyFile reads a key file written by GenerateKeyFile.
func LoadKeyFile(path string) (*Keys, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("crypt: read key file: %w", err)
	}
	if len(b) > 4096 {
		return nil, fmt.Errorf("crypt: key file %s: too large to be a reef key", path)
	}
	s := strings.TrimSpace(string(b))
	if !strings.HasPrefix(s, keyTag) {
		return nil, fmt.Errorf("crypt: key file %s: not a reef key (want a line starting %q; create one with `reef init --key FILE`)", path, strings.TrimSpace(keyTag))
	}
	raw, err := hex.DecodeString(strings.TrimPrefix(s, keyTag))
	if err != nil || len(raw) != secretSize {
		return nil, fmt.Errorf("crypt: key file %s: want %d hex-encoded bytes after the tag", path, secretSize)
	}
	return NewKeys(raw)
}

// NewKeys derives the subkeys from a raw 32-byte secret.
func NewKeys(secret []byte) (*Keys, error) {
	if len(secret) != secretSize {
		return nil, fmt.Errorf("crypt: secret must be %d bytes, got %d", secretSize, len(secret))
	}
	derive := func(label string) [32]byte {
		out, err := hkdf.Key(sha256.New, secret, nil, "reef v1 "+label, 32)
		if err != nil {
			panic(err) // only for lengths out of range, which these are not
		}
		return [32]byte(out)
	}
	k := &Keys{
		content: derive("content"),
		nonce:   derive("wrap nonce"),
		gossip:  derive("gossip"),
	}
	wk := derive("wrap")
	block, err := aes.NewCipher(wk[:])
	if err != nil {
		return nil, fmt.Errorf("crypt: %w", err)
	}
	if k.wrap, err = cipher.NewGCM(block); err != nil {
		return nil, fmt.Errorf("crypt: %w", err)
	}
	rk := derive("record")
	if block, err = aes.NewCipher(rk[:]); err != nil {
		return nil, fmt.Errorf("crypt: %w", err)
	}
	if k.record, err = cipher.NewGCM(block); err != nil {
		return nil, fmt.Errorf("crypt: %w", err)
	}
	tok := derive("peer token")
	k.token = hex.EncodeToString(tok[:])
	id := derive("volume id")
	k.id = hex.EncodeToString(id[:8])
	k.macs.New = func() any {
		h, err := blake3.NewKeyed(k.content[:])
		if err != nil {
			panic(err) // the key is 32 bytes
		}
		return h
	}
	return k, nil
}

// GossipKey is the 32-byte memberlist encryption key.
func (k *Keys) GossipKey() []byte { return append([]byte(nil), k.gossip[:]...) }

// PeerToken authenticates peers to each other on the data plane.
func (k *Keys) PeerToken() string { return k.token }

// VolumeID is a short public name of the volume, derived from the secret; it
// lets peers and operators tell volumes apart without revealing anything.
func (k *Keys) VolumeID() string { return k.id }

// Seal encrypts plaintext into a blob (appended to dst[:0] when dst has room)
// and returns the blob. Equal plaintexts give equal blobs.
func (k *Keys) Seal(dst, plaintext []byte) ([]byte, error) {
	mac := k.macs.Get().(*blake3.Hasher)
	mac.Reset()
	mac.Write(plaintext)
	var ck [32]byte
	mac.Sum(ck[:0])
	k.macs.Put(mac)

	n := Overhead + len(plaintext)
	if cap(dst) < n {
		dst = make([]byte, 0, n)
	}
	out := dst[:1+nonceSize]
	out[0] = version
	nm, err := blake3.NewKeyed(k.nonce[:])
	if err != nil {
		return nil, fmt.Errorf("crypt: %w", err)
	}
	nm.Write(ck[:])
	var sum [32]byte
	copy(out[1:], nm.Sum(sum[:0])[:nonceSize])
	out = k.wrap.Seal(out, out[1:1+nonceSize], ck[:], out[:1])

	body, err := bodyAEAD(ck[:])
	if err != nil {
		return nil, err
	}
	var zero [nonceSize]byte
	out = body.Seal(out, zero[:], plaintext, out[:1])
	return out, nil
}

// SealRecord encrypts plaintext with a random nonce (appended to dst[:0]
// when dst has room): for data that needs no dedup. Open opens it.
func (k *Keys) SealRecord(dst, plaintext []byte) ([]byte, error) {
	n := RecordOverhead + len(plaintext)
	if cap(dst) < n {
		dst = make([]byte, 0, n)
	}
	out := dst[:1+nonceSize]
	out[0] = recordVersion
	if _, err := rand.Read(out[1:]); err != nil {
		return nil, fmt.Errorf("crypt: record nonce: %w", err)
	}
	return k.record.Seal(out, out[1:1+nonceSize], plaintext, out[:1]), nil
}

// Open decrypts a blob made by Seal or SealRecord with the same volume
// secret. The result is a new slice.
func (k *Keys) Open(blob []byte) ([]byte, error) { return k.open(blob, false) }

// OpenInPlace is Open decrypting in blob's own memory: the plaintext is a
// sub-slice of blob, and blob's bytes are overwritten, also when it fails.
// For a caller that has no use for the sealed bytes once opened (the store
// after a read): a chunk-sized plaintext buffer, allocated and zeroed, was a
// tenth of a reading peer's CPU.
func (k *Keys) OpenInPlace(blob []byte) ([]byte, error) { return k.open(blob, true) }

// open is Open; with inPlace the plaintext is written over the ciphertext
// (which the AEAD interface allows when dst is ciphertext[:0]).
func (k *Keys) open(blob []byte, inPlace bool) ([]byte, error) {
	dst := func(ct []byte, n int) []byte {
		if inPlace {
			return ct[:0]
		}
		return make([]byte, 0, n)
	}
	if len(blob) > 0 && blob[0] == recordVersion {
		if len(blob) < RecordOverhead {
			return nil, fmt.Errorf("crypt: open: record of %d bytes is shorter than the %d-byte envelope: %w", len(blob), RecordOverhead, ErrDecrypt)
		}
		ct := blob[1+nonceSize:]
		pt, err := k.record.Open(dst(ct, len(blob)-RecordOverhead), blob[1:1+nonceSize], ct, blob[:1])
		if err != nil {
			return nil, fmt.Errorf("crypt: open: record fails authentication (another volume's key, or damaged): %w", ErrDecrypt)
		}
		return pt, nil
	}
	if len(blob) < Overhead {
		return nil, fmt.Errorf("crypt: open: blob of %d bytes is shorter than the %d-byte envelope: %w", len(blob), Overhead, ErrDecrypt)
	}
	if blob[0] != version {
		return nil, fmt.Errorf("crypt: open: unknown envelope version %d: %w", blob[0], ErrDecrypt)
	}
	hdrEnd := 1 + nonceSize + secretSize + tagSize
	ck, err := k.wrap.Open(nil, blob[1:1+nonceSize], blob[1+nonceSize:hdrEnd], blob[:1])
	if err != nil {
		return nil, fmt.Errorf("crypt: open: chunk key does not unwrap (another volume's key, or damaged): %w", ErrDecrypt)
	}
	body, err := bodyAEAD(ck)
	if err != nil {
		return nil, err
	}
	var zero [nonceSize]byte
	ct := blob[hdrEnd:]
	pt, err := body.Open(dst(ct, len(blob)-Overhead), zero[:], ct, blob[:1])
	if err != nil {
		return nil, fmt.Errorf("crypt: open: body fails authentication: %w", ErrDecrypt)
	}
	return pt, nil
}

func bodyAEAD(key []byte) (cipher.AEAD, error) {
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("crypt: %w", err)
	}
	g, err := cipher.NewGCM(block)
	if err != nil {
		return nil, fmt.Errorf("crypt: %w", err)
	}
	return g, nil
}
