package erasure_test

import (
	"bytes"
	"errors"
	"testing"

	"github.com/reefproject/reef/erasure"
)

// FuzzVerify feeds arbitrary bytes to Verify: it must never panic, and what it
// accepts must be self-consistent.
func FuzzVerify(f *testing.F) {
	c, err := erasure.New(4, 2)
	if err != nil {
		f.Fatal(err)
	}
	for _, n := range []int{0, 1, 5, 1000} {
		shards, err := c.Encode(randBytes(uint64(n), n))
		if err != nil {
			f.Fatal(err)
		}
		for _, s := range shards {
			f.Add(s)
		}
	}
	f.Add([]byte(nil))
	f.Add([]byte("RSH1"))
	f.Add(bytes.Repeat([]byte{0xff}, erasure.HeaderSize))
	f.Fuzz(func(t *testing.T, shard []byte) {
		h, err := erasure.Verify(shard)
		if err != nil {
			if !errors.Is(err, erasure.ErrCorrupt) {
				t.Fatalf("error %v does not wrap ErrCorrupt", err)
			}
			return
		}
		if h.K < 1 || h.M < 0 || h.K+h.M > 256 || h.Index < 0 || h.Index >= h.K+h.M || h.DataLen < 0 {
			t.Fatalf("accepted impossible header %+v", h)
		}
		if want := (h.DataLen + int64(h.K) - 1) / int64(h.K); int64(len(shard)-erasure.HeaderSize) != want {
			t.Fatalf("accepted %d byte payload for %+v", len(shard)-erasure.HeaderSize, h)
		}
	})
}

// FuzzDecode encodes data with (4, 2), drops the shards in mask, flips one bit
// (if flip is not 0) and replaces one shard by garbage (if garbage is not
// empty). Decode must return the data or a *TooFewShardsError, never wrong
// data and never a panic, and Reconstruct must agree.
func FuzzDecode(f *testing.F) {
	f.Add([]byte("hello, world"), uint8(0), uint32(0), []byte(nil))
	f.Add([]byte{}, uint8(0b000011), uint32(0), []byte(nil))
	f.Add([]byte{1}, uint8(0b100000), uint32(1+8*3), []byte("RSH1"))
	f.Add(randBytes(1, 1000), uint8(0b010001), uint32(1+8*40), []byte(nil))
	f.Add(randBytes(2, 4097), uint8(0b000100), uint32(1+8*300), bytes.Repeat([]byte{0}, 100))
	c, err := erasure.New(4, 2)
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, data []byte, mask uint8, flip uint32, garbage []byte) {
		shards, err := c.Encode(data)
		if err != nil {
			t.Fatal(err)
		}
		orig := cloneShards(shards)
		for i := range shards {
			if mask&(1<<i) != 0 {
				shards[i] = nil
			}
		}
		if flip != 0 {
			// Flip bit flip-1 of the concatenation of the remaining shards.
			bit := int(flip - 1)
			for _, s := range shards {
				if bit < len(s)*8 {
					s[bit/8] ^= 1 << (bit % 8)
					break
				}
				bit -= len(s) * 8
			}
		}
		if len(garbage) > 0 {
			i := int(garbage[0]) % len(shards)
			if _, err := erasure.Verify(garbage); err == nil && !bytes.Equal(garbage, orig[i]) {
				// A forged shard with valid checksums: by design only the
				// caller's address check catches it.
				t.Skip("garbage is a valid shard")
			}
			shards[i] = garbage
		}
		bad := 0
		for i := range shards {
			if !bytes.Equal(shards[i], orig[i]) || shards[i] == nil {
				bad++
			}
		}
		got, err := c.Decode(shards)
		if err != nil {
			var tf *erasure.TooFewShardsError
			if !errors.As(err, &tf) || tf.Need != 4 || tf.Found != 6-bad {
				t.Fatalf("Decode error %v with %d bad shards", err, bad)
			}
		} else if !bytes.Equal(got, data) {
			t.Fatalf("Decode returned wrong data with %d bad shards", bad)
		} else if bad > 2 {
			t.Fatalf("Decode succeeded with %d bad shards", bad)
		}
		rerr := c.Reconstruct(shards)
		if (err == nil) != (rerr == nil) {
			t.Fatalf("Decode error %v but Reconstruct error %v", err, rerr)
		}
		if rerr == nil {
			for i := range shards {
				if !bytes.Equal(shards[i], orig[i]) {
					t.Fatalf("Reconstruct: shard %d differs", i)
				}
			}
		}
	})
}
