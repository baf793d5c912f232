package mapadvise

import "syscall"

const supported = true

func madvise(start, length uintptr, random bool) error {
	adv := syscall.MADV_NORMAL
	if random {
		adv = syscall.MADV_RANDOM
	}
	// Addresses come from /proc/self/maps: no Go pointer is involved.
	if _, _, e := syscall.Syscall(syscall.SYS_MADVISE, start, length, uintptr(adv)); e != 0 {
		return e
	}
	return nil
}
