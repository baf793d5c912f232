//go:build !linux

/*
 * SPDX-FileCopyrightText: © 2017-2025 Istari Digital, Inc.
 * SPDX-License-Identifier: Apache-2.0
 */

package y

import (
	"errors"
	"os"
)

// DirectAlign is the alignment O_DIRECT reads keep (reef patch 6).
const DirectAlign = 4096

// DropCache does nothing where fadvise(2) is not available (reef patch 5).
func DropCache(fd int, off, n int64) error { return nil }

// OpenDirect fails where O_DIRECT is not available (reef patch 6): callers
// read through the page cache instead.
func OpenDirect(path string) (*os.File, error) {
	return nil, errors.ErrUnsupported
}

// DropMappedCache does nothing where fadvise(2) is not available (reef
// patch 6).
func DropMappedCache(data []byte, fd int, n int64) error { return nil }
