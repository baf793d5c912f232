package fs

import (
	"context"
	"errors"
	"log/slog"
	"syscall"

	"bazil.org/fuse"

	"github.com/reefproject/reef/namespace"
)

// errno turns an error into the error number the kernel gets, logging the
// cause of anything unexpected. It is the only place that does so.
func errno(log *slog.Logger, op string, err error) error {
	if err == nil {
		return nil
	}
	var e syscall.Errno
	switch {
	case errors.As(err, &e):
	case errors.Is(err, context.Canceled):
		e = syscall.EINTR
	case errors.Is(err, context.DeadlineExceeded):
		e = syscall.ETIMEDOUT
	case errors.Is(err, namespace.ErrNotExist):
		e = syscall.ENOENT
	case errors.Is(err, namespace.ErrExist):
		e = syscall.EEXIST
	case errors.Is(err, namespace.ErrNotEmpty):
		e = syscall.ENOTEMPTY
	case errors.Is(err, namespace.ErrNotDir):
		e = syscall.ENOTDIR
	case errors.Is(err, namespace.ErrIsDir):
		e = syscall.EISDIR
	case errors.Is(err, namespace.ErrInvalid):
		e = syscall.EINVAL
	case errors.Is(err, namespace.ErrNameTooLong):
		e = syscall.ENAMETOOLONG
	case errors.Is(err, namespace.ErrNoXattr):
		return fuse.ErrNoXattr
	case errors.Is(err, syscall.ENOSPC), errors.Is(err, namespace.ErrNoXattrRoom):
		e = syscall.ENOSPC
	default:
		log.Error("fuse operation failed", "op", op, "err", err)
		e = syscall.EIO
	}
	if e == syscall.EIO {
		log.Warn("fuse operation failed", "op", op, "err", err)
	} else {
		log.Debug("fuse operation", "op", op, "errno", e.Error(), "err", err)
	}
	return fuse.Errno(e)
}
