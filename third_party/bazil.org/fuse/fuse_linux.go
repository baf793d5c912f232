package fuse

// Maximum file write size we are prepared to receive from the kernel.
//
// Linux 4.2.0 has been observed to cap this value at 128kB
// (FUSE_MAX_PAGES_PER_REQ=32, 4kB pages).
// maxWrite is the largest read or write request: 1 MiB, negotiated with
// FUSE_MAX_PAGES where the kernel offers it (Linux 4.20+; older kernels cap
// requests at 128 KiB themselves). (reef patch: was 128 KiB, which made a
// 1 GiB sequential read or write cost 8,192 requests instead of 1,024.)
const maxWrite = 1 << 20
