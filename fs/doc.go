// Package fs is the FUSE face of a reef volume (bazil.org/fuse).
//
// The tree comes from a replicated namespace (interface Tree) and file bytes
// from the chunk store (interface Content); fs knows nothing else of the
// cluster. One kernel node exists per inode, so hard links share it.
//
// # Writes
//
// A file opened for writing gets a staging file on the peer's local disk,
// filled with the current content on the first write or truncate that needs
// it. Writes, truncates and reads of that inode on this mount go to the
// staging file. Flush (close) and fsync store it: small files (up to
// Config.InlineMax) inline in the namespace, bigger ones through Content as
// chunks, then set the content in the namespace, replicated before the call
// returns. So close and fsync return only when the data is durable.
//
// # Freshness
//
// Attributes and entries are cached by the kernel for one second at most;
// changes that arrive from other peers invalidate the kernel's caches at
// once (Tree.Subscribe).
//
// # Errors
//
// Every error reaches the kernel through errno, the one place where errors
// become error numbers.
package fs
