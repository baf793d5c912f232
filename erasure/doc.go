// Package erasure cuts chunks into Reed-Solomon stripes of self-describing,
// checksummed shards, and puts them back together.
//
// # Stripes, k and m
//
// A chunk is an encrypted blob of 0 bytes to a few MiB. The Coder returned by
// New(k, m) cuts it into a stripe of k+m shards: k data shards, which hold the
// chunk itself cut into k equal pieces (the last one padded with zeros), and
// m parity shards computed from them with a systematic Reed-Solomon code over
// GF(2^8) (github.com/klauspost/reedsolomon with its default matrix). Any k of
// the k+m shards are enough to recover the chunk, so a stripe survives the
// loss of any m shards. The storage overhead is (k+m)/k; for example (4, 2)
// stores 1.5 times the chunk and tolerates two lost shards, (10, 4) stores 1.4
// times the chunk and tolerates four. k must be at least 1, m at least 0 and
// k+m at most 256. (1, m) is plain replication: every shard is a copy of the
// chunk.
//
// When all k data shards are intact, decoding is a plain concatenation of
// their payloads and no Reed-Solomon arithmetic runs at all; parity is only
// touched when a data shard is missing or damaged.
//
// # Shard format (version 1)
//
// Every shard is a byte slice of HeaderSize (28) bytes of header followed by
// the payload. All integers are little endian:
//
//	offset size field
//	     0    4 magic       "RSH1" (the trailing "1" is the format version)
//	     4    2 k           number of data shards, 1..256
//	     6    2 m           number of parity shards, 0..255, k+m <= 256
//	     8    2 index       position of this shard in the stripe, 0..k+m-1;
//	                        0..k-1 are data shards, k..k+m-1 parity shards
//	    10    2 reserved    must be zero
//	    12    8 dataLen     length in bytes of the original chunk
//	    20    4 payloadCRC  CRC-32C (Castagnoli) of the payload
//	    24    4 headerCRC   CRC-32C (Castagnoli) of header bytes 0..23
//	    28    - payload     exactly ceil(dataLen/k) bytes (0 when dataLen is 0)
//
// Data shard i holds chunk bytes [i*p, (i+1)*p) where p is the payload
// length, zero-padded past dataLen. Parity shard k+j holds, byte by byte, the
// GF(2^8) (polynomial 0x11d) dot product of row k+j of the encoding matrix E
// with the data shards, where E = V * inverse(top k rows of V) and V is the
// (k+m) x k Vandermonde matrix V[r][c] = r^c; this is the default matrix of
// github.com/klauspost/reedsolomon, and the golden test in this package pins
// it (it was checked against an independent implementation). A shard is therefore self-describing: one
// shard alone tells how the stripe was built, where it belongs and how long
// the chunk is. Any change to the layout, the field meanings or the
// Reed-Solomon matrix needs a new magic; readers of version 1 reject any other
// magic and any nonzero reserved field.
//
// # What a checksum failure means
//
// The two CRC-32C checksums detect accidental damage: bit rot on a disk,
// truncated or torn writes, a buffer mixed up in transit. CRC-32C catches
// every error of up to three flipped bits and every burst of up to 32 bits in
// a shard of any practical size, and all but about one in four billion random
// corruptions. A shard whose checksums fail, whose header
// fields are impossible, or whose header does not fit the stripe being decoded
// (different k or m, the wrong index for its position, or a dataLen that
// disagrees with the majority of the valid shards, as when a stale shard from
// an older chunk turns up) is simply treated as missing, just like a shard that
// could not be fetched. Decoding still succeeds as long as k usable shards
// remain, and Coder.Reconstruct rewrites the damaged shards for repair.
//
// The checksums are not a MAC. Anyone who wants to forge a shard can compute a
// matching CRC, so the checksums give no protection against byzantine peers.
// That protection comes from the layer above: chunks are content addressed, and
// the caller checks the decoded chunk against its cryptographic address. A
// mismatch there means some shard that passed its checksum was forged; the
// caller can retry with other subsets of shards or fetch more of them.
//
// Because that address check covers every byte, a caller that makes it can
// skip the payload checksums on the common path: DecodeUnchecked checks the
// headers only, and only when the decoded chunk fails its address check
// does the caller Verify the shards to find the damaged ones and decode
// again without them (what the store does on every read).
package erasure
