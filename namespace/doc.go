// Package namespace is the replicated directory tree of a reef volume.
//
// Every peer holds the whole namespace. A mutation on any peer (through
// FUSE) becomes one or more operations (Op) stamped with a hybrid logical
// clock (HLC) Timestamp. Every peer applies the same set of ops in one
// order, by Timestamp, so every peer computes the same tree: there is no
// leader, and a partitioned peer keeps working and converges when it heals.
// Replication transport, FUSE and file content are not here: the package
// offers hooks (Config.Replicate, ApplyRemote, VersionVector, OpsSince,
// Snapshot, InstallSnapshot, ObservePeer, Subscribe).
//
// # Model
//
// Dentries are the nodes of the tree (NodeID); RootID is the root and
// TrashID the parent of deleted nodes (never shown). A dentry has a parent,
// a raw name and an inode (InodeID). Inodes hold attributes and content;
// a directory's inode ID equals its NodeID; files and symlinks may have
// several dentries (hard links), and Nlink counts the live ones (those
// reachable from the root). An inode without live dentries is deleted from
// the view (GetInode returns ErrNotExist) but its record is kept, so that a
// later op can bring it back.
//
// A new file, directory, symlink or special file (FIFO, socket, device) is
// created by a single Move op whose Init field carries the initial inode
// record; the inode's Version is that op's Timestamp. Hard links are Moves
// of a new node naming an existing inode. New IDs are random 64-bit values
// from crypto/rand (never 0, 1, 2).
//
// # Ordering: the move operation of Kleppmann et al.
//
// The package follows "A highly-available move operation for replicated
// trees" (Kleppmann, Mulligan, Gomes, Beresford; IEEE TPDS 2021). Ops are
// kept in an in-memory log sorted by Timestamp. Applying an op records
// what it replaced: for every node and inode it touched, the previous value
// or "did not exist". When an op arrives with a Timestamp lower than ops
// already applied, the later ops are undone (newest first), the new op is
// applied, and the later ops are applied again. The state is therefore a
// pure function of the set of ops, whatever order they arrive in, with
// duplicates removed by (Origin, Seq). An op whose effect is invalid when
// its turn comes (a move that would make a node its own ancestor, a parent
// that does not exist or is not a directory) is a no-op, but it stays in
// the log so the order stays the same everywhere.
//
// Because ops are applied in Timestamp order, last-writer-wins by
// Timestamp needs no per-field stamps: SetAttr simply sets the fields its
// mask selects, and the later op always runs last.
//
// # Conflict rules
//
// All rules are functions of the ops in Timestamp order, so every peer
// reaches the same result.
//
//  1. Same name in one directory. Both dentries survive. Within a
//     directory, the dentries with one raw name are ordered by the
//     Timestamp of the op that gave them that name (then by NodeID). The
//     first shows the plain name; each later one shows
//     "stem (conflict from PEER YYYY-MM-DDTHH:MM:SS).ext", where PEER is
//     that op's origin and the time is its Timestamp in UTC (the extension
//     is kept; a dotfile has none). Plain names take precedence: when a
//     displayed conflict name equals a plain name or an earlier conflict
//     name, " 2", " 3", ... is added before the extension. Lookup, Resolve
//     and ReadDir use displayed names, so both names work. When the winner
//     goes away, the next one takes the plain name.
//  2. Concurrent writes of one file. SetContent carries Base, the Version
//     the writer saw. If, when it is applied, Base differs from the inode's
//     Version, the write still wins (it is the later op), and the version
//     it replaces is first copied to a new file beside the lowest-numbered
//     live dentry of the inode, named "stem (conflict from PEER TIME).ext"
//     with PEER and TIME from the replaced Version (the losing op). The
//     copy's node and inode IDs are derived from the winning op's Timestamp
//     (SHA-256), so every peer creates the same copy. Nothing is dropped.
//  3. Delete against write. A SetContent on an inode whose dentries are all
//     deleted restores the dentry deleted last to its old parent and name
//     (stored in the trashed node), restoring deleted parent directories
//     too, so an acknowledged write is never lost. Conversely a delete
//     carries Base, the content Version the deleter saw; if the file has a
//     newer Version when the delete is applied, the delete is skipped (the
//     write wins). A local write to a file that is already deleted on this
//     peer fails with ErrNotExist (the application unlinked it itself).
//  4. Rename against delete. In Timestamp order the later op wins: a rename
//     applied after the delete moves the node out of the trash (it comes
//     back under its new name); a delete applied after the rename deletes
//     it. A create or move into a directory that is in the trash first
//     restores that directory (and its deleted ancestors) where it was
//     deleted from. An rmdir applied when the directory is not empty
//     (something was created or moved into it concurrently, earlier in
//     Timestamp order) is skipped. A restored node whose old parent is gone
//     or would form a cycle goes to the root.
//  5. Concurrent moves that would form a cycle: the later move is skipped
//     (it would make a node its own ancestor when its turn comes).
//  6. POSIX rename over an existing name on one peer: Rename emits two ops
//     with consecutive Timestamps, the old target to the trash and then the
//     move, applied together under one lock, so the local view replaces the
//     target atomically.
//
// A restored node takes the restoring op's Timestamp for its name, so if its
// old name was taken meanwhile it shows as a conflict copy (rule 1).
//
// # Persistence
//
// Ops are stored in badger keyed by Timestamp and indexed by (Origin, Seq),
// sealed with Config.Seal; every write method and ApplyRemote returns only
// after the ops are synced. Every Config.CheckpointEvery ops and on Close,
// the state as of the stability base is written (sealed) with the version
// vector it implies; Open loads it and replays the ops after it. The
// stability base is where the undo log is cut: ops at or below the horizon
// are folded in and dropped from memory.
//
// # Stability horizon and compaction
//
// The replication layer calls ObservePeer after each anti-entropy exchange
// with the peer's version vector and clock. Once this peer holds every op
// the other peer held, no op with a smaller Timestamp can come from it any
// more. The horizon is the minimum, over peers heard from in the last
// PeerHorizonWindow (24 h), of the last such clock, and of our own clock. A
// namespace that has never seen another peer, has no Replicate hook and
// holds no foreign op is standalone: its horizon is its own clock. Ops at
// or below the base and older than Config.Retention (1 h) are deleted after
// a checkpoint covers them; OpsSince then returns ErrCompacted to a peer
// that still lacks them, and that peer uses Snapshot/InstallSnapshot.
//
// Deleted entries leave the trash at a checkpoint once no op that could
// bring them back can still come (purge.go; Config.TrashRetention).
//
// Limitation: a peer gone longer than 24 h no longer holds the horizon back.
// If it comes back with ops older than the horizon, those ops are applied
// late (after the base, with a warning) and different peers may then order
// them differently; peers should be rebuilt with InstallSnapshot instead of
// rejoining with old unsent ops. A peer must never reuse its id with a new,
// empty data directory: its new ops would have seqs that others already
// hold and would be ignored.
package namespace
