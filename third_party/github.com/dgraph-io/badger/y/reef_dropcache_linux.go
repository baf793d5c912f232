/*
 * SPDX-FileCopyrightText: © 2017-2025 Istari Digital, Inc.
 * SPDX-License-Identifier: Apache-2.0
 */

package y

import (
	"os"

	"golang.org/x/sys/unix"
)

// DirectAlign is the alignment O_DIRECT reads keep (reef patch 6).
const DirectAlign = 4096

// DropCache asks the kernel to drop the clean page-cache pages of
// [off, off+n) of the file fd (reef patch 5). Dirty or mapped pages are kept.
func DropCache(fd int, off, n int64) error {
	return unix.Fadvise(fd, off, n, unix.FADV_DONTNEED)
}

// OpenDirect opens the file at path for reading with O_DIRECT, which
// bypasses the page cache (reef patch 6). Reads through it must be aligned
// to the logical block size in offset, length and memory; DirectAlign is
// safe for every common file system.
func OpenDirect(path string) (*os.File, error) {
	return os.OpenFile(path, os.O_RDONLY|unix.O_DIRECT, 0)
}

// DropMappedCache drops the page cache of a file that data maps (reef patch
// 6): the pages are unmapped from this process first (MADV_DONTNEED on a
// shared file map keeps the file's contents), since the kernel keeps mapped
// pages whatever fadvise asks. Dirty pages are kept.
func DropMappedCache(data []byte, fd int, n int64) error {
	if len(data) > 0 {
		if err := unix.Madvise(data, unix.MADV_DONTNEED); err != nil {
			return err
		}
	}
	return DropCache(fd, 0, n)
}
