/*
 * SPDX-FileCopyrightText: © 2017-2025 Istari Digital, Inc.
 * SPDX-License-Identifier: Apache-2.0
 */

package y

import "syscall"

// fallocate is fallocate(2) (reef patch 4).
func fallocate(fd int, mode uint32, off, n int64) error {
	return syscall.Fallocate(fd, mode, off, n)
}
