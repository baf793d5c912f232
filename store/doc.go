// Package store turns files into sealed, erasure-coded, placed shards and
// back.
//
// # Write path
//
// A file streams through the chunker. Each chunk is sealed (crypt: convergent
// encryption under the volume secret), addressed by the hash of the sealed
// blob, coded into k data + m parity shards (erasure), and each shard i goes
// to the peer that placement names for (address, i). A chunk is acknowledged
// when the write quorum (default k+m, at least k+1) of its shards is durably
// stored; a holder that fails is replaced by the next peer of that shard's
// ranking. A peer that already holds a shard answers before its body is sent
// (HTTP "Expect: 100-continue"), so writing the same content twice moves and
// stores nothing new. Several chunks are in flight at once (Config.Parallel).
//
// When all chunks are stored, the ordered list of their addresses (the
// manifest) is sealed and stored the same way; big files get a tree of
// manifests. The address of the root manifest names the file.
//
// # Read path
//
// The root manifest's coding is not known in advance, so its shards are
// located by asking the live peers which shards of it they hold. For a data
// chunk the manifest gives k and m: the reader asks the placement holders of
// the k data shards first; a holder that fails or is missing is replaced by a
// parity shard's holder, a holder that is slow (Config.HedgeAfter) gets a
// parallel hedge request, and when the placement holders are exhausted every
// live peer is asked which shards it has (shards may sit elsewhere after
// membership changed). Every shard's header is checked as it arrives; the
// blob is joined from the data shards (decoded only when one is missing),
// its address is verified, then it is opened in place. Shard payload
// checksums are checked only when the address check fails: then the bad
// shards are dropped and replaced, and the blob is decoded again. Shards
// are read into recycled buffers when the Net is a BufferedNet. Files
// stream out in order with several chunks fetched ahead.
package store
