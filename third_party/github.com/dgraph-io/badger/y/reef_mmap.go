/*
 * SPDX-FileCopyrightText: © 2017-2025 Istari Digital, Inc.
 * SPDX-License-Identifier: Apache-2.0
 */

package y

import (
	"errors"
	"fmt"
	"os"
	"syscall"

	"github.com/dgraph-io/ristretto/v2/z"
)

// OpenMmapFile is z.OpenMmapFile that first reserves disk blocks for the
// first reserve bytes of a file it creates (reef patch 4). Badger writes
// its memtable logs, the head of value logs, new tables and the discard
// stats through a shared memory map of a sparse file; on a full disk the
// kernel cannot back a page being written there and delivers SIGBUS, which
// kills the process. With the blocks reserved beforehand, a full disk is an
// ENOSPC error from this call instead, returned to the writer.
// Filesystems without fallocate(2) keep the old behaviour.
func OpenMmapFile(filename string, flag int, maxSz, reserve int) (*z.MmapFile, error) {
	fd, err := os.OpenFile(filename, flag, 0666)
	if err != nil {
		return nil, errors.Join(err, fmt.Errorf("unable to open: %s", filename))
	}
	if reserve > 0 && maxSz > 0 {
		fi, err := fd.Stat()
		if err != nil {
			fd.Close()
			return nil, fmt.Errorf("cannot stat file %s: %w", filename, err)
		}
		if fi.Size() == 0 {
			if err := reserveBlocks(fd, int64(min(reserve, maxSz))); err != nil {
				fd.Close()
				if flag&os.O_EXCL != 0 {
					os.Remove(filename)
				}
				return nil, fmt.Errorf("while reserving %d bytes for %s: %w", min(reserve, maxSz), filename, err)
			}
		}
	}
	return z.OpenMmapFileUsing(fd, maxSz, flag != os.O_RDONLY)
}

// reserveBlocks allocates the first n bytes of fd's blocks without
// changing its size (FALLOC_FL_KEEP_SIZE), so that z.OpenMmapFileUsing
// still sees a new, empty file.
func reserveBlocks(fd *os.File, n int64) error {
	const keepSize = 0x1 // FALLOC_FL_KEEP_SIZE
	for {
		err := fallocate(int(fd.Fd()), keepSize, 0, n)
		switch {
		case err == nil:
			return nil
		case errors.Is(err, syscall.EINTR):
			continue
		case errors.Is(err, syscall.EOPNOTSUPP), errors.Is(err, syscall.ENOSYS):
			return nil // cannot reserve here: sparse, as upstream
		default:
			return err
		}
	}
}
