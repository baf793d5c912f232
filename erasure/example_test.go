package erasure_test

import (
	"errors"
	"fmt"

	"github.com/reefproject/reef/erasure"
)

func Example() {
	c, err := erasure.New(4, 2) // 4 data + 2 parity shards
	if err != nil {
		panic(err)
	}
	chunk := []byte("an encrypted chunk, in real life up to a few MiB")
	shards, err := c.Encode(chunk)
	if err != nil {
		panic(err)
	}
	h, _ := erasure.Verify(shards[5])
	fmt.Printf("%d shards of %d bytes; shard 5: %+v\n", len(shards), len(shards[5]), h)

	// Lose one shard and damage another: still decodable.
	shards[0] = nil
	shards[3][erasure.HeaderSize] ^= 1
	_, err = erasure.Verify(shards[3])
	fmt.Println(err)
	got, err := c.Decode(shards)
	fmt.Printf("%q %v\n", got, err)

	// Repair rewrites the lost and damaged shards.
	fmt.Println(c.Reconstruct(shards))

	// Three bad shards are one too many.
	shards[0], shards[1], shards[2] = nil, nil, nil
	_, err = c.Decode(shards)
	fmt.Println(err, errors.Is(err, erasure.ErrTooFewShards))
	// Output:
	// 6 shards of 40 bytes; shard 5: {K:4 M:2 Index:5 DataLen:48}
	// erasure: corrupt shard: payload checksum 90c1b871, header says a1b06c41
	// "an encrypted chunk, in real life up to a few MiB" <nil>
	// <nil>
	// erasure: 3 shards usable, need 4 true
}
