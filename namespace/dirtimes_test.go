package namespace

import (
	"testing"
	"time"
)

// TestDirectoryTimes: creating, linking, removing and renaming entries set
// the directory's mtime and ctime to the op's time, and link, unlink and
// rename set the inode's ctime, as on a local file system; another peer
// computes the same times.
func TestDirectoryTimes(t *testing.T) {
	a, b := newPeer(t, "a", nil), newPeer(t, "b", nil)
	step := func() int64 {
		a.time.t += int64(time.Second)
		return a.time.t
	}
	dirTimes := func(id NodeID) (int64, int64) {
		t.Helper()
		in, err := a.GetInode(InodeID(id))
		if err != nil {
			t.Fatal(err)
		}
		return in.Mtime, in.Ctime
	}
	expect := func(what string, id NodeID, want int64) {
		t.Helper()
		if m, c := dirTimes(id); m != want || c != want {
			t.Errorf("%s: mtime %d ctime %d, want both %d", what, m, c, want)
		}
	}
	d1 := mustCreate(t, a.Namespace, RootID, "d1", Dir)
	d2 := mustCreate(t, a.Namespace, RootID, "d2", Dir)

	now := step()
	f := mustCreate(t, a.Namespace, d1.Node, "f", File)
	expect("create", d1.Node, now)

	now = step()
	if _, err := a.Link(bg, f.Node, d2.Node, "hard"); err != nil {
		t.Fatal(err)
	}
	expect("link: new parent", d2.Node, now)
	if in, _ := a.GetInode(f.Inode.ID); in.Ctime != now || in.Mtime == now {
		t.Errorf("link: file ctime %d mtime %d, want ctime %d and mtime unchanged", in.Ctime, in.Mtime, now)
	}

	now = step()
	if err := a.Rename(bg, d1.Node, "f", d2.Node, "g", false); err != nil {
		t.Fatal(err)
	}
	expect("rename: old parent", d1.Node, now)
	expect("rename: new parent", d2.Node, now)
	if in, _ := a.GetInode(f.Inode.ID); in.Ctime != now {
		t.Errorf("rename: file ctime %d, want %d", in.Ctime, now)
	}

	now = step()
	if err := a.Remove(bg, d2.Node, "hard", false); err != nil {
		t.Fatal(err)
	}
	expect("unlink", d2.Node, now)
	if in, _ := a.GetInode(f.Inode.ID); in.Ctime != now || in.Nlink != 1 {
		t.Errorf("unlink: remaining link's ctime %d nlink %d, want %d and 1", in.Ctime, in.Nlink, now)
	}

	now = step()
	sub := mustCreate(t, a.Namespace, d1.Node, "sub", Dir)
	expect("mkdir", d1.Node, now)
	now = step()
	if err := a.Remove(bg, d1.Node, "sub", true); err != nil {
		t.Fatal(err)
	}
	expect("rmdir", d1.Node, now)
	_ = sub

	now = step()
	mustCreate(t, a.Namespace, RootID, "l", Symlink)
	expect("symlink in the root", RootID, now)

	// An explicit utimens after the changes wins, as on a local disk.
	past := time.Date(2001, 2, 3, 4, 5, 6, 0, time.UTC).UnixNano()
	step()
	if _, err := a.SetAttr(bg, InodeID(d1.Node), AttrChange{Mask: SetMtime, Mtime: past}); err != nil {
		t.Fatal(err)
	}
	if m, _ := dirTimes(d1.Node); m != past {
		t.Errorf("utimens of a directory: mtime %d, want %d", m, past)
	}

	syncAll(t, a, b)
	sameViews(t, a, b)
	for _, id := range []NodeID{RootID, d1.Node, d2.Node} {
		ia, _ := a.GetInode(InodeID(id))
		ib, _ := b.GetInode(InodeID(id))
		if ia.Mtime != ib.Mtime || ia.Ctime != ib.Ctime {
			t.Errorf("dir %d: times %d/%d on a, %d/%d on b", id, ia.Mtime, ia.Ctime, ib.Mtime, ib.Ctime)
		}
	}
}
