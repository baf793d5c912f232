package namespace

import (
	"errors"
	"slices"
	"testing"
)

func twoPeers(t *testing.T) (*testPeer, *testPeer) {
	a, b := newPeer(t, "peer-1", nil), newPeer(t, "peer-3", nil)
	return a, b
}

func content(t *testing.T, ns *Namespace, p string) string {
	t.Helper()
	return string(mustEntry(t, ns, p).Inode.Content.Inline)
}

// Rule 1: the same name created concurrently in one directory.
func TestRule1SameName(t *testing.T) {
	a, b := twoPeers(t)
	a.time.set("2026-11-22T09:59:59Z")
	b.time.set("2026-11-22T10:00:00Z")
	ea := mustCreate(t, a.Namespace, RootID, "report.txt", File)
	eb := mustCreate(t, b.Namespace, RootID, "report.txt", File)
	write(t, a.Namespace, ea.Inode.ID, "from a", ea.Inode.Version)
	write(t, b.Namespace, eb.Inode.ID, "from b", eb.Inode.Version)
	syncAll(t, a, b)
	sameViews(t, a, b)
	want := []string{"report (conflict from peer-3 2026-11-22T10:00:00).txt", "report.txt"}
	if got := names(t, a.Namespace, RootID); !slices.Equal(got, want) {
		t.Fatalf("names = %q, want %q", got, want)
	}
	for _, tc := range []struct{ name, data string }{
		{"/report.txt", "from a"},
		{"/report (conflict from peer-3 2026-11-22T10:00:00).txt", "from b"},
	} {
		if got := content(t, b.Namespace, tc.name); got != tc.data {
			t.Errorf("%s = %q, want %q", tc.name, got, tc.data)
		}
	}
	// A file created elsewhere with the displayed name (a plain name takes
	// precedence) pushes the conflict name to " 2".
	c := newPeer(t, "peer-5", nil)
	c.time.set("2026-11-22T11:00:00Z")
	a.time.set("2026-11-22T11:00:00Z") // within MaxClockAhead of c's clock
	b.time.set("2026-11-22T11:00:00Z")
	mustCreate(t, c.Namespace, RootID, "report (conflict from peer-3 2026-11-22T10:00:00).txt", File)
	syncAll(t, a, b, c)
	sameViews(t, a, b, c)
	want = []string{"report (conflict from peer-3 2026-11-22T10:00:00) 2.txt", "report (conflict from peer-3 2026-11-22T10:00:00).txt", "report.txt"}
	if got := names(t, a.Namespace, RootID); !slices.Equal(got, want) {
		t.Fatalf("names = %q, want %q", got, want)
	}
	if got := content(t, a.Namespace, "/report (conflict from peer-3 2026-11-22T10:00:00) 2.txt"); got != "from b" {
		t.Errorf("renumbered conflict copy = %q", got)
	}
	// Deleting the winner gives the plain name back to the other one.
	if err := b.Remove(bg, RootID, "report.txt", false); err != nil {
		t.Fatal(err)
	}
	syncAll(t, a, b, c)
	sameViews(t, a, b, c)
	if got := content(t, a.Namespace, "/report.txt"); got != "from b" {
		t.Errorf("after delete, report.txt = %q, want from b", got)
	}
}

// Rule 2: concurrent writes of one file.
func TestRule2ConcurrentWrites(t *testing.T) {
	a, b := twoPeers(t)
	e := mustCreate(t, a.Namespace, RootID, "notes.txt", File)
	syncAll(t, a, b)
	a.time.set("2026-11-22T10:00:00Z")
	b.time.set("2026-11-22T10:00:05Z")
	write(t, a.Namespace, e.Inode.ID, "version A", e.Inode.Version)
	write(t, b.Namespace, e.Inode.ID, "version B", e.Inode.Version)
	syncAll(t, a, b)
	sameViews(t, a, b)
	want := []string{"notes (conflict from peer-1 2026-11-22T10:00:00).txt", "notes.txt"}
	if got := names(t, a.Namespace, RootID); !slices.Equal(got, want) {
		t.Fatalf("names = %q, want %q", got, want)
	}
	if got := content(t, a.Namespace, "/notes.txt"); got != "version B" {
		t.Errorf("winner = %q", got)
	}
	if got := content(t, a.Namespace, "/"+want[0]); got != "version A" {
		t.Errorf("conflict copy = %q", got)
	}
	// A sequential write (base = current version) makes no copy.
	in, _ := a.GetInode(e.Inode.ID)
	write(t, a.Namespace, e.Inode.ID, "version C", in.Version)
	if got := len(names(t, a.Namespace, RootID)); got != 2 {
		t.Errorf("after sequential write: %d entries, want 2", got)
	}
}

// Rule 3: delete against write.
func TestRule3DeleteVsWrite(t *testing.T) {
	t.Run("write after delete restores", func(t *testing.T) {
		a, b := twoPeers(t)
		d := mustCreate(t, a.Namespace, RootID, "d", Dir)
		f := mustCreate(t, a.Namespace, d.Node, "f", File)
		syncAll(t, a, b)
		b.time.t += 5e9 // b's write is later
		if err := a.Remove(bg, d.Node, "f", false); err != nil {
			t.Fatal(err)
		}
		if err := a.Remove(bg, RootID, "d", true); err != nil {
			t.Fatal(err)
		}
		write(t, b.Namespace, f.Inode.ID, "kept", f.Inode.Version)
		syncAll(t, a, b)
		sameViews(t, a, b)
		if got := content(t, a.Namespace, "/d/f"); got != "kept" {
			t.Errorf("/d/f = %q, want kept", got)
		}
	})
	t.Run("delete of a newer version is skipped", func(t *testing.T) {
		a, b := twoPeers(t)
		f := mustCreate(t, a.Namespace, RootID, "f", File)
		syncAll(t, a, b)
		a.time.t += 5e9 // a's delete is later, but a never saw b's write
		write(t, b.Namespace, f.Inode.ID, "kept", f.Inode.Version)
		if err := a.Remove(bg, RootID, "f", false); err != nil {
			t.Fatal(err)
		}
		syncAll(t, a, b)
		sameViews(t, a, b)
		if got := content(t, a.Namespace, "/f"); got != "kept" {
			t.Errorf("/f = %q, want kept", got)
		}
	})
	t.Run("delete after seeing the write wins", func(t *testing.T) {
		a, b := twoPeers(t)
		f := mustCreate(t, a.Namespace, RootID, "f", File)
		syncAll(t, a, b)
		write(t, b.Namespace, f.Inode.ID, "x", f.Inode.Version)
		syncAll(t, a, b)
		if err := a.Remove(bg, RootID, "f", false); err != nil {
			t.Fatal(err)
		}
		syncAll(t, a, b)
		if _, err := b.Resolve("/f"); !errors.Is(err, ErrNotExist) {
			t.Errorf("resolve /f = %v, want ErrNotExist", err)
		}
	})
}

// Rule 4: rename against delete, and create into a deleted directory.
func TestRule4RenameVsDelete(t *testing.T) {
	for _, tc := range []struct {
		name        string
		renameLater bool
		want        string // path that exists afterwards ("" = none)
	}{
		{"rename after delete brings it back", true, "/g"},
		{"delete after rename deletes it", false, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a, b := twoPeers(t)
			mustCreate(t, a.Namespace, RootID, "f", File)
			syncAll(t, a, b)
			if tc.renameLater {
				b.time.t += 5e9
			} else {
				a.time.t += 5e9
			}
			if err := a.Remove(bg, RootID, "f", false); err != nil {
				t.Fatal(err)
			}
			if err := b.Rename(bg, RootID, "f", RootID, "g", false); err != nil {
				t.Fatal(err)
			}
			syncAll(t, a, b)
			sameViews(t, a, b)
			got := names(t, a.Namespace, RootID)
			if tc.want == "" && len(got) != 0 {
				t.Errorf("root = %q, want empty", got)
			}
			if tc.want != "" {
				mustEntry(t, a, tc.want)
			}
		})
	}
	t.Run("create into deleted directory restores it", func(t *testing.T) {
		a, b := twoPeers(t)
		p := mustCreate(t, a.Namespace, RootID, "p", Dir)
		d := mustCreate(t, a.Namespace, p.Node, "d", Dir)
		syncAll(t, a, b)
		b.time.t += 5e9
		if err := a.Remove(bg, p.Node, "d", true); err != nil {
			t.Fatal(err)
		}
		if err := a.Remove(bg, RootID, "p", true); err != nil {
			t.Fatal(err)
		}
		mustCreate(t, b.Namespace, d.Node, "x", File)
		syncAll(t, a, b)
		sameViews(t, a, b)
		mustEntry(t, a, "/p/d/x")
	})
	t.Run("rmdir of a directory that got an entry concurrently is skipped", func(t *testing.T) {
		a, b := twoPeers(t)
		d := mustCreate(t, a.Namespace, RootID, "d", Dir)
		syncAll(t, a, b)
		a.time.t += 5e9 // the rmdir is later
		mustCreate(t, b.Namespace, d.Node, "x", File)
		if err := a.Remove(bg, RootID, "d", true); err != nil {
			t.Fatal(err)
		}
		syncAll(t, a, b)
		sameViews(t, a, b)
		mustEntry(t, a, "/d/x")
	})
}

// Rule 5 is TestCycle. Rule 6: rename over an existing name on one peer.
func TestRule6RenameReplace(t *testing.T) {
	a, b := twoPeers(t)
	src := mustCreate(t, a.Namespace, RootID, "new", File)
	dst := mustCreate(t, a.Namespace, RootID, "old", File)
	write(t, a.Namespace, src.Inode.ID, "new data", src.Inode.Version)
	syncAll(t, a, b)
	before := a.VersionVector()["peer-1"]
	if err := a.Rename(bg, RootID, "new", RootID, "old", false); err != nil {
		t.Fatal(err)
	}
	if got := a.VersionVector()["peer-1"] - before; got != 2 {
		t.Errorf("rename over a target made %d ops, want 2", got)
	}
	ops, _, _ := a.OpsSince(map[string]uint64{"peer-1": before}, 10)
	if len(ops) != 2 || ops[0].NewParent != TrashID || ops[0].Node != dst.Node || ops[1].Node != src.Node {
		t.Fatalf("ops = %+v", ops)
	}
	if ts0, ts1 := ops[0].TS, ops[1].TS; ts0.Wall != ts1.Wall || ts1.Logical != ts0.Logical+1 {
		t.Errorf("timestamps %v, %v are not consecutive", ts0, ts1)
	}
	syncAll(t, a, b)
	sameViews(t, a, b)
	if got := names(t, b.Namespace, RootID); !slices.Equal(got, []string{"old"}) {
		t.Errorf("names = %q", got)
	}
	if got := content(t, b.Namespace, "/old"); got != "new data" {
		t.Errorf("/old = %q", got)
	}
	if _, err := b.GetInode(dst.Inode.ID); !errors.Is(err, ErrNotExist) {
		t.Errorf("replaced inode: %v, want ErrNotExist", err)
	}
}

func TestHardLinks(t *testing.T) {
	a, b := twoPeers(t)
	f := mustCreate(t, a.Namespace, RootID, "f", File)
	d := mustCreate(t, a.Namespace, RootID, "d", Dir)
	if _, err := a.Link(bg, f.Node, d.Node, "g"); err != nil {
		t.Fatal(err)
	}
	syncAll(t, a, b)
	if got := mustEntry(t, b, "/d/g").Inode.Nlink; got != 2 {
		t.Errorf("nlink = %d, want 2", got)
	}
	if err := b.Remove(bg, RootID, "d", true); !errors.Is(err, ErrNotEmpty) {
		t.Errorf("rmdir non-empty = %v", err)
	}
	if err := b.Remove(bg, d.Node, "g", false); err != nil {
		t.Fatal(err)
	}
	if got := mustEntry(t, b, "/f").Inode.Nlink; got != 1 {
		t.Errorf("nlink = %d, want 1", got)
	}
	if got := mustEntry(t, b, "/").Inode.Nlink; got != 3 {
		t.Errorf("root nlink = %d, want 3", got)
	}
}
