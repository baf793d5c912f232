//go:build !linux

/*
 * SPDX-FileCopyrightText: © 2017-2025 Istari Digital, Inc.
 * SPDX-License-Identifier: Apache-2.0
 */

package y

// DropCache does nothing where fadvise(2) is not available (reef patch 5).
func DropCache(fd int, off, n int64) error { return nil }
