package fs

import (
	"strconv"
	"syscall"
	"time"

	"bazil.org/fuse"
	"golang.org/x/sys/unix"
)

// observer adapts Config.ObserveOp to the server's per-request hook
// (Config.Observe of the patched bazil in third_party): errno names such
// as "ENOENT", "" for success.
func observer(observe func(op, errno string, d time.Duration)) func(string, fuse.Errno, time.Duration) {
	return func(op string, e fuse.Errno, d time.Duration) {
		name := ""
		if e != 0 {
			if name = unix.ErrnoName(syscall.Errno(e)); name == "" {
				name = "errno" + strconv.Itoa(int(e))
			}
		}
		observe(op, name, d)
	}
}
