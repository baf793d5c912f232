package fuse

import (
	"os"
	"syscall"
	"testing"
)

// TestAttrModeBits: the set-id and sticky bits reach the kernel's mode (reef
// patch 7: the sticky bit was dropped, so sticky directories were not
// enforced).
func TestAttrModeBits(t *testing.T) {
	for _, tc := range []struct {
		mode os.FileMode
		want uint32
	}{
		{os.ModeDir | os.ModeSticky | 0o777, syscall.S_IFDIR | syscall.S_ISVTX | 0o777},
		{os.ModeSetuid | os.ModeSetgid | 0o755, syscall.S_IFREG | syscall.S_ISUID | syscall.S_ISGID | 0o755},
		{os.ModeDir | os.ModeSetgid | os.ModeSticky | 0o770, syscall.S_IFDIR | syscall.S_ISGID | syscall.S_ISVTX | 0o770},
		{0o644, syscall.S_IFREG | 0o644},
	} {
		var out attr
		a := Attr{Mode: tc.mode}
		a.attr(&out, Protocol{7, 31})
		if out.Mode != tc.want {
			t.Errorf("mode %v: kernel mode %#o, want %#o", tc.mode, out.Mode, tc.want)
		}
	}
}
