package fs

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"syscall"

	"bazil.org/fuse"
	fusefs "bazil.org/fuse/fs"

	"github.com/reefproject/reef/namespace"
)

// Extended attribute flags of setxattr(2).
const (
	xattrCreate  = 1
	xattrReplace = 2
)

// unsupportedXattr reports the attribute names reef neither stores nor
// serves, answered with EOPNOTSUPP: POSIX ACLs (the mount checks mode bits
// only; an ACL stored but not enforced would mislead) and SELinux labels
// (a FUSE mount is labelled as a whole, with mount -o context=). The errno
// matters beyond honesty: ls -l, cp and friends remember per file system
// that these are unsupported and stop asking, while ENODATA makes them ask
// again for every file (two round trips per entry of ls -l).
// So are names outside the four namespaces Linux defines (user., trusted.,
// security., system.), as on a local filesystem; other system. names are
// refused too: each of them has a meaning the mount would not give it.
func unsupportedXattr(name string) bool {
	switch name {
	case "system.posix_acl_access", "system.posix_acl_default", "security.selinux":
		return true
	}
	for _, ns := range []string{"user.", "trusted.", "security."} {
		if strings.HasPrefix(name, ns) && len(name) > len(ns) {
			return false
		}
	}
	return true
}

var errXattrUnsupported = fuse.Errno(syscall.EOPNOTSUPP)

// Getxattr reads an extended attribute.
func (f *FS) getxattr(ctx context.Context, ino namespace.InodeID, req *fuse.GetxattrRequest, resp *fuse.GetxattrResponse) error {
	if unsupportedXattr(req.Name) {
		return errXattrUnsupported
	}
	in, err := f.inode(ino)
	if err != nil {
		return errno(f.log, "getxattr", err)
	}
	v, ok := in.Xattrs[req.Name]
	if !ok {
		return fuse.ErrNoXattr
	}
	resp.Xattr = append([]byte(nil), v...)
	return nil
}

// Listxattr lists extended attribute names.
func (f *FS) listxattr(ctx context.Context, ino namespace.InodeID, req *fuse.ListxattrRequest, resp *fuse.ListxattrResponse) error {
	in, err := f.inode(ino)
	if err != nil {
		return errno(f.log, "listxattr", err)
	}
	for name := range in.Xattrs {
		// trusted.* is root's: the kernel refuses anyone else's
		// getxattr and setxattr of it, and a local filesystem leaves it
		// out of their listxattr too (the mount sees the caller's uid,
		// not its capabilities).
		if !unsupportedXattr(name) && (req.Header.Uid == 0 || !strings.HasPrefix(name, "trusted.")) {
			resp.Append(name)
		}
	}
	return nil
}

// Setxattr sets an extended attribute.
func (f *FS) setxattr(ctx context.Context, ino namespace.InodeID, req *fuse.SetxattrRequest) error {
	if unsupportedXattr(req.Name) {
		return errXattrUnsupported
	}
	in, err := f.inode(ino)
	if err != nil {
		return errno(f.log, "setxattr", err)
	}
	_, exists := in.Xattrs[req.Name]
	if req.Flags&xattrCreate != 0 && exists {
		return fuse.Errno(syscall.EEXIST)
	}
	if req.Flags&xattrReplace != 0 && !exists {
		return fuse.ErrNoXattr
	}
	err = f.cfg.Tree.SetXattr(ctx, ino, req.Name, req.Xattr)
	if _, ok, oerr := f.orphan(ino, err, func(in *namespace.Inode) error {
		if _, has := in.Xattrs[req.Name]; !has && len(in.Xattrs) >= namespace.MaxXattrs {
			return fmt.Errorf("xattr %q: %d attributes: %w", req.Name, len(in.Xattrs), namespace.ErrNoXattrRoom)
		}
		if in.Xattrs == nil {
			in.Xattrs = map[string][]byte{}
		}
		in.Xattrs[req.Name] = bytes.Clone(req.Xattr)
		return nil
	}); ok {
		err = oerr
	}
	return errno(f.log, "setxattr", err)
}

// Removexattr removes an extended attribute.
func (f *FS) removexattr(ctx context.Context, ino namespace.InodeID, req *fuse.RemovexattrRequest) error {
	if unsupportedXattr(req.Name) {
		return errXattrUnsupported
	}
	return errno(f.log, "removexattr", f.removeXattr(ctx, ino, req.Name))
}

// removeXattr removes an extended attribute, from the state kept of an
// unlinked open file too (see orphan).
func (f *FS) removeXattr(ctx context.Context, ino namespace.InodeID, name string) error {
	err := f.cfg.Tree.RemoveXattr(ctx, ino, name)
	if _, ok, oerr := f.orphan(ino, err, func(in *namespace.Inode) error {
		if _, has := in.Xattrs[name]; !has {
			return namespace.ErrNoXattr
		}
		delete(in.Xattrs, name)
		return nil
	}); ok {
		return oerr
	}
	return err
}

// HealthXattr is the extended attribute that reports a file's or a
// directory's redundancy (JSON, as `reef health PATH --json`). It is not
// listed, so copying tools do not copy it.
const HealthXattr = "user.reef.health"

func (f *FS) healthXattr(ctx context.Context, node namespace.NodeID, resp *fuse.GetxattrResponse) error {
	if f.cfg.Health == nil {
		return fuse.ErrNoXattr
	}
	b, err := f.cfg.Health(ctx, node)
	if err != nil {
		return errno(f.log, "getxattr", err)
	}
	resp.Xattr = b
	return nil
}

// Getxattr reads an extended attribute.
func (f *File) Getxattr(ctx context.Context, req *fuse.GetxattrRequest, resp *fuse.GetxattrResponse) error {
	if req.Name == HealthXattr {
		return f.fs.healthXattr(ctx, f.getDentry(), resp)
	}
	return f.fs.getxattr(ctx, f.ino, req, resp)
}

// Getxattr reads an extended attribute.
func (d *Dir) Getxattr(ctx context.Context, req *fuse.GetxattrRequest, resp *fuse.GetxattrResponse) error {
	if req.Name == HealthXattr {
		return d.fs.healthXattr(ctx, d.id(), resp)
	}
	return d.fs.getxattr(ctx, d.ino, req, resp)
}

var (
	_ fusefs.NodeGetxattrer    = (*Dir)(nil)
	_ fusefs.NodeListxattrer   = (*Dir)(nil)
	_ fusefs.NodeSetxattrer    = (*Dir)(nil)
	_ fusefs.NodeRemovexattrer = (*Dir)(nil)
)

// bareNode is what every node is: an inode of a mount. It serves the
// extended-attribute calls (File and Dir answer Getxattr themselves, for
// the health attribute); symlinks and special files are nothing more. On
// those the kernel allows only trusted.* and security.*, for root; without
// the calls, listxattr of a symlink failed with EOPNOTSUPP and tar --xattrs
// warned for every symlink.
type bareNode struct {
	fs  *FS
	ino namespace.InodeID
}

// Getxattr reads an extended attribute.
func (n *bareNode) Getxattr(ctx context.Context, req *fuse.GetxattrRequest, resp *fuse.GetxattrResponse) error {
	return n.fs.getxattr(ctx, n.ino, req, resp)
}

// Listxattr lists the extended attribute names.
func (n *bareNode) Listxattr(ctx context.Context, req *fuse.ListxattrRequest, resp *fuse.ListxattrResponse) error {
	return n.fs.listxattr(ctx, n.ino, req, resp)
}

// Setxattr sets an extended attribute.
func (n *bareNode) Setxattr(ctx context.Context, req *fuse.SetxattrRequest) error {
	return n.fs.setxattr(ctx, n.ino, req)
}

// Removexattr removes an extended attribute.
func (n *bareNode) Removexattr(ctx context.Context, req *fuse.RemovexattrRequest) error {
	return n.fs.removexattr(ctx, n.ino, req)
}

var (
	_ fusefs.NodeGetxattrer    = (*Symlink)(nil)
	_ fusefs.NodeListxattrer   = (*Symlink)(nil)
	_ fusefs.NodeSetxattrer    = (*Symlink)(nil)
	_ fusefs.NodeRemovexattrer = (*Symlink)(nil)
	_ fusefs.NodeGetxattrer    = (*Special)(nil)
	_ fusefs.NodeListxattrer   = (*Special)(nil)
	_ fusefs.NodeSetxattrer    = (*Special)(nil)
	_ fusefs.NodeRemovexattrer = (*Special)(nil)
)
