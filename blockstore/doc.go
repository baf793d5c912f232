// Package blockstore is a peer's local shard store: it keeps erasure-code
// shards (opaque byte slices, typically 64 KiB–1 MiB, occasionally tiny)
// under opaque binary keys (typically a 32-byte chunk address plus a 2-byte
// shard index, at most MaxKeySize bytes) in a badger v4 database.
//
// # Durability
//
// Put returns only after the value has been written and synced (fsync of
// badger's value log, msync of its memtable logs): once Put returns nil the
// value survives kill -9 of the process and, as far as fsync goes, a power
// cut. PutLazy and Delete return once the change is written (in the page
// cache: it survives kill -9, the kernel holds it); a background loop syncs
// within Options.SyncEvery (100 ms) of any write, and Sync waits for everything
// written before it. Syncs are shared: one caller syncs for everyone who
// is waiting (group commit), and badger's single write goroutine gathers
// the commits that arrive meanwhile. The peer writes a file's shards with
// PutLazy (its durability is several peers holding them; fsync(2) on the
// mount syncs every peer) and repair's and rebalance's with Put.
//
// # Integrity
//
// Every value is stored together with a small index record holding a format
// byte, the CRC-32C (Castagnoli) of the value and its length. Get recomputes
// the checksum on every read; a mismatch, a malformed record or an unreadable
// value yields an error wrapping ErrCorrupt and no data. The store never
// panics on corrupt data.
//
// # On-disk layout
//
// For a user key K the store keeps two badger entries, written atomically in
// one transaction:
//
//	'm' + K -> index record: format (1 byte, = 1) | crc32c(value) (4, LE) | len(value) (8, LE)
//	'v' + K -> the value bytes, unmodified
//
// Keeping the checksum in a separate record rather than as a header in front
// of the value means Put hands the caller's slice to badger without building
// a header+value copy, and the exact value length is known from the tiny
// index record, which lives in the LSM tree: Open computes Stats and List
// reports sizes by scanning only the LSM tree, never the value log.
// Badger's own ValueSize is only an estimate, so it is not used.
//
// # Badger options and why
//
//   - SyncWrites = false, with the syncs above instead: SyncWrites costs two
//     fsyncs (value log, then memtable log) for every write batch, and the
//     six peers of the test set-up share one disk, where a 200 KB file's
//     close waited 13 ms for its twelve shard writes' syncs. Four places in
//     badger sync that upstream leaves to SyncWrites (vendored patch 2).
//   - DropSyncedValueCache (vendored patch 5): once synced, the value log's
//     pages are dropped from the page cache (fadvise DONTNEED). A peer is
//     written far more than it is read, and its shards are read back at most
//     once or twice (a reader's cache holds what it decoded). On the
//     project's VMs each page the guest touches for the first time costs
//     about three times the write itself (the host backs it then, and takes
//     back memory the guest frees), and a receiving peer whose page cache
//     grew by every shard spent 1.2 of its 1.5 CPU-s per 256 MiB there; with
//     the drop the same pages are written again and again (0.3-0.4 CPU-s).
//     Reads of shards written long ago come from the disk either way.
//     Shards that are read (16 KiB and more) are read around the page cache
//     too, with O_DIRECT once synced (vendored patch 6): a peer serving a
//     cold read of 1 GiB through a mount spent 0.5-0.7 CPU-s each before,
//     0.4-0.5 after, and the reader went from 272 to 330-419 MB/s together
//     with its own cache change (store's drop-behind).
//   - ValueThreshold = 1 KiB: values of 1 KiB and more go to the value log and
//     the LSM tree holds only a small pointer. With badger's default (1 MiB)
//     every shard below 1 MiB lives inside the LSM tree and is rewritten by
//     every compaction; measured write amplification and throughput are in
//     "Measurements". Index records and tiny shards stay in the LSM tree.
//   - VLogPercentile = 0: fixed threshold, no dynamic tuning.
//   - Compression = None: shards are encrypted, hence incompressible, and the
//     LSM tree holds only keys and pointers.
//   - BlockCacheSize = 0: with compression and encryption off badger reads
//     table blocks straight from its memory map; a block cache would only
//     duplicate the OS page cache (badger's own advice).
//   - IndexCacheSize = 0: table indexes and bloom filters stay in memory
//     uncached. They are small here (two ~40-byte keys per shard, roughly
//     3 MB per million shards), so a ristretto cache would cost more than it
//     saves.
//   - MemTableSize = 16 MiB, NumMemtables = 3: memtables hold only keys and
//     value pointers (~100 bytes per entry), so 16 MiB absorbs ~150k writes
//     between flushes; badger's 64 MiB x 5 default is needlessly large with
//     ~8 stores on one machine.
//   - NumCompactors = 2: the LSM tree is tiny, and badger needs at least two
//     (compactor 0 is reserved for level 0); the machine has two cores.
//   - ValueLogFileSize = 256 MiB: value-log GC rewrites whole files, so
//     smaller files reclaim space in smaller, cheaper steps than the 1 GiB
//     default, at the cost of a few more files.
//   - NumVersionsToKeep = 1: old versions are garbage immediately.
//   - DetectConflicts = false: the store serialises Put/Delete per key itself
//     (needed to keep Stats exact), so badger's conflict tracking is overhead.
//   - VerifyValueChecksum = true: badger checks its own per-entry CRC before
//     decoding a value-log entry. Without it, a corrupted entry header can make
//     badger slice out of range (panic) or leave a file lock held; with it the
//     read fails cleanly and is reported as ErrCorrupt. Costs one extra CRC
//     pass per read (CRC-32C runs at many GB/s).
//   - MetricsEnabled = false: badger's expvar metrics are process-global and
//     unused here.
//   - Logger: badger's log lines go to Options.Logger through a small adapter
//     (discarded when nil).
//
// # Space reclaim
//
// Open starts a goroutine that calls badger's value-log GC every
// GCInterval with discard ratio 0.5 (a file is rewritten when at least half
// of it is garbage, bounding value-log space amplification at about 2x), and
// repeats immediately while GC succeeds. Close stops it and waits for it.
//
// # Measurements
//
// On the development VM (2 cores, ext4 on a virtio disk; fsync latency
// 3–15 ms and noisy), from bench_test.go:
//
//   - 256 KiB Puts: ~190 puts/s (~50 MB/s) from one goroutine, ~330 puts/s
//     (~85 MB/s) from 16 goroutines. 4 KiB Puts: ~190 puts/s from one
//     goroutine versus 60–950 puts/s from 16 (very noisy disk), so
//     concurrent Puts do share syncs. The gain is limited by badger itself:
//     every new transaction (including the read Put does to detect identical
//     content and keep Stats exact) waits until all earlier commits are
//     synced, so the next batch only forms after the current sync ends.
//   - Putting identical content: ~60 µs for 256 KiB (no write, no sync).
//   - 256 KiB Gets from the page cache, checksum verified: ~1.6 GB/s.
//   - ValueThreshold, 4000 Puts of 256 KiB from 16 goroutines: 1 KiB gives
//     111 puts/s and 3.3 bytes dirtied per user byte; badger's 1 MiB default
//     gives 47 puts/s and 8.8 bytes per user byte (memtable WAL, L0 flush
//     and compactions all rewrite the shards).
package blockstore
