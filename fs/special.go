package fs

import (
	"context"
	"syscall"

	"bazil.org/fuse"
	fusefs "bazil.org/fuse/fs"
)

// Special is a FIFO, a socket or a device node (mknod). It has attributes
// and extended attributes but no content: the kernel opens such files
// itself (a FIFO is a pipe on this machine; devices cannot be opened on
// the nodev mount).
type Special struct {
	bareNode
	linkable
}

var (
	_ fusefs.Node              = (*Special)(nil)
	_ fusefs.NodeSetattrer     = (*Special)(nil)
	_ fusefs.NodeForgetter     = (*Special)(nil)
	_ fusefs.NodeGetxattrer    = (*Special)(nil)
	_ fusefs.NodeListxattrer   = (*Special)(nil)
	_ fusefs.NodeSetxattrer    = (*Special)(nil)
	_ fusefs.NodeRemovexattrer = (*Special)(nil)
)

// Attr reports the node's attributes (a device's number as Rdev).
func (s *Special) Attr(ctx context.Context, a *fuse.Attr) error {
	in, err := s.fs.inode(s.ino)
	if err != nil {
		return errno(s.fs.log, "getattr", err)
	}
	s.fs.fillAttr(in, a)
	a.Size = 0
	return nil
}

// Setattr changes mode, owner or times; a special file has no size to set.
func (s *Special) Setattr(ctx context.Context, req *fuse.SetattrRequest, resp *fuse.SetattrResponse) error {
	if req.Valid.Size() {
		return fuse.Errno(syscall.EINVAL)
	}
	in, err := s.fs.setattr(ctx, s.ino, req)
	if err != nil {
		return errno(s.fs.log, "setattr", err)
	}
	s.fs.fillAttr(in, &resp.Attr)
	return nil
}

// Forget drops the node.
func (s *Special) Forget() { s.fs.forget(s.ino) }
