package crypt

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func testKeys(t testing.TB, seed byte) *Keys {
	t.Helper()
	k, err := NewKeys(bytes.Repeat([]byte{seed}, 32))
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func TestSealOpen(t *testing.T) {
	k := testKeys(t, 1)
	rng := rand.New(rand.NewPCG(1, 2))
	for _, n := range []int{0, 1, 15, 16, 17, 1000, 1 << 20} {
		pt := make([]byte, n)
		for i := range pt {
			pt[i] = byte(rng.IntN(256))
		}
		blob, err := k.Seal(nil, pt)
		if err != nil {
			t.Fatal(err)
		}
		if got, want := len(blob), n+Overhead; got != want {
			t.Errorf("len(Seal(%d bytes)) = %d, want %d", n, got, want)
		}
		blob2, _ := k.Seal(make([]byte, 0, 10), pt)
		if !bytes.Equal(blob, blob2) {
			t.Errorf("Seal is not deterministic for %d bytes", n)
		}
		back, err := k.Open(blob)
		if err != nil {
			t.Fatalf("Open: %v", err)
		}
		if !bytes.Equal(back, pt) {
			t.Errorf("Open(Seal(%d bytes)) differs", n)
		}
		if n >= 16 && bytes.Contains(blob, pt[:16]) {
			t.Errorf("blob contains plaintext")
		}
	}
}

func TestOpenRejects(t *testing.T) {
	k := testKeys(t, 1)
	other := testKeys(t, 2)
	blob, _ := k.Seal(nil, []byte("secret plaintext marker"))
	flip := func(i int) []byte { b := bytes.Clone(blob); b[i] ^= 1; return b }
	for _, tc := range []struct {
		name string
		keys *Keys
		blob []byte
	}{
		{"other volume", other, blob},
		{"short", k, blob[:10]},
		{"empty", k, nil},
		{"version", k, flip(0)},
		{"nonce", k, flip(3)},
		{"wrapped key", k, flip(20)},
		{"body", k, flip(len(blob) - 20)},
		{"tag", k, flip(len(blob) - 1)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := tc.keys.Open(tc.blob); !errors.Is(err, ErrDecrypt) {
				t.Errorf("Open = %v, want ErrDecrypt", err)
			}
			if _, err := tc.keys.OpenInPlace(bytes.Clone(tc.blob)); !errors.Is(err, ErrDecrypt) {
				t.Errorf("OpenInPlace = %v, want ErrDecrypt", err)
			}
		})
	}
}

// TestOpenInPlace: the plaintext is Open's, in the blob's memory.
func TestOpenInPlace(t *testing.T) {
	k := testKeys(t, 1)
	for _, tc := range []struct {
		name string
		seal func([]byte) ([]byte, error)
	}{
		{"chunk", func(pt []byte) ([]byte, error) { return k.Seal(nil, pt) }},
		{"record", func(pt []byte) ([]byte, error) { return k.SealRecord(nil, pt) }},
	} {
		for _, n := range []int{0, 1, 1000, 1 << 20} {
			t.Run(fmt.Sprintf("%s,%d", tc.name, n), func(t *testing.T) {
				pt := bytes.Repeat([]byte{0xa5}, n)
				blob, err := tc.seal(pt)
				if err != nil {
					t.Fatal(err)
				}
				got, err := k.OpenInPlace(blob)
				if err != nil || !bytes.Equal(got, pt) {
					t.Fatalf("OpenInPlace = %d bytes, %v; want the %d bytes sealed", len(got), err, n)
				}
				// A sub-slice of blob ends where blob's capacity does.
				if g, b := got[:cap(got)], blob[:cap(blob)]; cap(got) == 0 || &g[len(g)-1] != &b[len(b)-1] {
					t.Errorf("plaintext is not in the blob's memory")
				}
			})
		}
	}
}

func TestDifferentVolumesDiffer(t *testing.T) {
	a, _ := testKeys(t, 1).Seal(nil, []byte("same"))
	b, _ := testKeys(t, 2).Seal(nil, []byte("same"))
	if bytes.Equal(a, b) {
		t.Error("two volumes produce the same blob for the same content")
	}
}

func TestKeyFile(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "key")
	if err := GenerateKeyFile(p); err != nil {
		t.Fatal(err)
	}
	if err := GenerateKeyFile(p); err == nil {
		t.Error("GenerateKeyFile overwrote an existing file")
	}
	fi, _ := os.Stat(p)
	if got, want := fi.Mode().Perm(), os.FileMode(0o600); got != want {
		t.Errorf("mode = %v, want %v", got, want)
	}
	k1, err := LoadKeyFile(p)
	if err != nil {
		t.Fatal(err)
	}
	k2, _ := LoadKeyFile(p)
	if k1.PeerToken() != k2.PeerToken() || k1.VolumeID() != k2.VolumeID() {
		t.Error("loading the same file twice gives different keys")
	}
	for _, tc := range []struct{ name, content, want string }{
		{"empty", "", "not a reef key"},
		{"garbage", "hello world", "not a reef key"},
		{"short", keyTag + "abcd", "want 32 hex-encoded bytes"},
		{"nothex", keyTag + strings.Repeat("zz", 32), "want 32 hex-encoded bytes"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			bad := filepath.Join(dir, tc.name)
			os.WriteFile(bad, []byte(tc.content), 0o600)
			if _, err := LoadKeyFile(bad); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("LoadKeyFile = %v, want error containing %q", err, tc.want)
			}
		})
	}
	if _, err := LoadKeyFile(filepath.Join(dir, "missing")); err == nil {
		t.Error("LoadKeyFile of a missing file succeeded")
	}
}

func BenchmarkSeal(b *testing.B) {
	k := testKeys(b, 1)
	pt := make([]byte, 1<<20)
	dst := make([]byte, 0, len(pt)+Overhead)
	b.SetBytes(int64(len(pt)))
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		k.Seal(dst, pt)
	}
}

func TestSealRecord(t *testing.T) {
	k := testKeys(t, 1)
	other := testKeys(t, 2)
	for _, n := range []int{0, 1, 200, 1 << 16} {
		pt := bytes.Repeat([]byte{byte(n)}, n)
		blob, err := k.SealRecord(nil, pt)
		if err != nil {
			t.Fatal(err)
		}
		if got, want := len(blob), n+RecordOverhead; got != want {
			t.Errorf("len(SealRecord(%d bytes)) = %d, want %d", n, got, want)
		}
		if again, _ := k.SealRecord(nil, pt); bytes.Equal(blob, again) {
			t.Errorf("SealRecord of %d bytes repeated its nonce", n)
		}
		back, err := k.Open(blob)
		if err != nil || !bytes.Equal(back, pt) {
			t.Fatalf("Open(SealRecord(%d bytes)) = %d bytes, %v", n, len(back), err)
		}
		if n >= 16 && bytes.Contains(blob, pt[:16]) {
			t.Errorf("record contains plaintext")
		}
		flip := func(i int) []byte { b := bytes.Clone(blob); b[i] ^= 1; return b }
		for _, tc := range []struct {
			name string
			keys *Keys
			blob []byte
		}{
			{"other volume", other, blob},
			{"short", k, blob[:RecordOverhead-1]},
			{"version", k, flip(0)},
			{"nonce", k, flip(5)},
			{"tag", k, flip(len(blob) - 1)},
		} {
			if _, err := tc.keys.Open(tc.blob); !errors.Is(err, ErrDecrypt) {
				t.Errorf("%d bytes, %s: Open = %v, want ErrDecrypt", n, tc.name, err)
			}
		}
	}
}

func BenchmarkSealSmall(b *testing.B) {
	k, _ := NewKeys(bytes.Repeat([]byte{1}, 32))
	pt := make([]byte, 200) // a namespace op
	for _, bc := range []struct {
		name string
		seal func(dst, pt []byte) ([]byte, error)
	}{{"convergent", k.Seal}, {"record", k.SealRecord}} {
		b.Run(bc.name, func(b *testing.B) {
			dst := make([]byte, 0, 512)
			for b.Loop() {
				if _, err := bc.seal(dst, pt); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
