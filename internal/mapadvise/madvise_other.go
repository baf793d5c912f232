//go:build !linux

package mapadvise

const supported = false

func madvise(start, length uintptr, random bool) error { return nil }
