/*
 * SPDX-FileCopyrightText: © 2017-2025 Istari Digital, Inc.
 * SPDX-License-Identifier: Apache-2.0
 */

package y

import "golang.org/x/sys/unix"

// DropCache asks the kernel to drop the clean page-cache pages of
// [off, off+n) of the file fd (reef patch 5). Dirty or mapped pages are kept.
func DropCache(fd int, off, n int64) error {
	return unix.Fadvise(fd, off, n, unix.FADV_DONTNEED)
}
