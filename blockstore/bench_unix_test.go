//go:build unix

package blockstore

import (
	"io/fs"
	"runtime"
	"syscall"
)

func numCPU() int { return runtime.GOMAXPROCS(0) }

func allocated(fi fs.FileInfo) int64 {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return st.Blocks * 512
	}
	return fi.Size()
}
