package namespace

import (
	"slices"
	"strings"
	"testing"
	"time"
)

// advance moves a test peer's physical clock forward.
func (p *testPeer) advance(d time.Duration) { p.time.t += int64(d) }

func TestPurgeStandalone(t *testing.T) {
	a := newPeer(t, "a", nil)
	d := mustCreate(t, a.Namespace, RootID, "d", Dir)
	f := mustCreate(t, a.Namespace, d.Node, "f", File)
	write(t, a.Namespace, f.Inode.ID, strings.Repeat("secret", 100), f.Inode.Version)
	h := mustCreate(t, a.Namespace, RootID, "h", File) // hard-linked: one name goes, the inode stays
	if _, err := a.Link(bg, h.Node, d.Node, "h2"); err != nil {
		t.Fatal(err)
	}
	for _, rm := range []struct {
		dir   NodeID
		name  string
		isDir bool
	}{{d.Node, "f", false}, {d.Node, "h2", false}, {RootID, "d", true}} {
		if err := a.Remove(bg, rm.dir, rm.name, rm.isDir); err != nil {
			t.Fatalf("remove %s: %v", rm.name, err)
		}
	}
	if st := a.Stats(); st.Trashed != 3 {
		t.Fatalf("trashed = %d, want 3", st.Trashed)
	}
	if held, _ := a.Trash(); held != 3 {
		t.Fatalf("Trash() = %d, want 3 (as Stats)", held)
	}
	// Younger than TrashRetention: kept.
	a.advance(DefaultTrashRetention / 2)
	if err := a.Checkpoint(); err != nil {
		t.Fatal(err)
	}
	if st := a.Stats(); st.Trashed != 3 || st.Purged != 0 {
		t.Fatalf("purged too soon: %+v", st)
	}
	a.advance(DefaultTrashRetention)
	if err := a.Checkpoint(); err != nil {
		t.Fatal(err)
	}
	st := a.Stats()
	if st.Trashed != 0 || st.Purged != 3 {
		t.Fatalf("after the retention: %+v, want nothing trashed and 3 purged", st)
	}
	if held, purged := a.Trash(); held != 0 || purged != 3 {
		t.Fatalf("Trash() = %d, %d; want 0, 3 (as Stats)", held, purged)
	}
	a.mu.RLock()
	_, fIno := a.s.inodes[f.Inode.ID]
	_, hIno := a.s.inodes[h.Inode.ID]
	_, dNode := a.s.nodes[d.Node]
	a.mu.RUnlock()
	if fIno || dNode || !hIno {
		t.Errorf("f's inode held %v, d's node held %v, h's inode held %v; want false, false, true", fIno, dNode, hIno)
	}
	if in, err := a.GetInode(h.Inode.ID); err != nil || in.Nlink != 1 {
		t.Errorf("h = %+v, %v; want it with one link", in, err)
	}
	before, raw := view(t, a.Namespace), rawState(a.Namespace)
	a.reopen(t, false)
	if view(t, a.Namespace) != before || rawState(a.Namespace) != raw {
		t.Error("the state changed across a reopen: the purge was not checkpointed")
	}
}

func TestPurgeWaitsForEveryPeer(t *testing.T) {
	a, b := newPeer(t, "a", nil), newPeer(t, "b", nil)
	// Compaction cuts by the real clock, and these peers live in 2020:
	// keep the ops, so that b can still fetch what it lacks.
	a.Namespace.cfg.Retention = 1 << 62
	f := mustCreate(t, a.Namespace, RootID, "f", File)
	mustCreate(t, b.Namespace, RootID, "g", File)
	syncAll(t, a, b)
	if err := a.Remove(bg, RootID, "f", false); err != nil {
		t.Fatal(err)
	}
	a.advance(2 * DefaultTrashRetention)
	b.advance(2 * DefaultTrashRetention)
	mustCreate(t, b.Namespace, RootID, "later", File) // b goes on without the delete
	syncTo(t, b, a)
	checkpoint := func(step string, wantTrashed int) {
		t.Helper()
		a.ObservePeer("b", b.VersionVector(), b.Clock())
		if err := a.Checkpoint(); err != nil {
			t.Fatal(err)
		}
		if st := a.Stats(); st.Trashed != wantTrashed {
			t.Fatalf("%s: trashed = %d, want %d (%+v)", step, st.Trashed, wantTrashed, st)
		}
		if held, _ := a.Trash(); held != wantTrashed {
			t.Fatalf("%s: Trash() = %d, want %d (as Stats)", step, held, wantTrashed)
		}
	}
	// b has not applied the delete: it could still rename or write f.
	checkpoint("b lacks the delete", 1)
	checkpoint("b still lacks the delete", 1)
	// b renames f concurrently (after the delete in Timestamp order): the
	// rename brings f back, on both peers, once they exchange.
	if err := b.Rename(bg, RootID, "f", RootID, "f-renamed", false); err != nil {
		t.Fatal(err)
	}
	checkpoint("a lacks b's rename", 1)
	syncAll(t, a, b)
	checkpoint("after the exchange", 0)
	if e, err := a.Lookup(RootID, "f-renamed"); err != nil || e.Inode.ID != f.Inode.ID {
		t.Fatalf("f-renamed = %+v, %v; want f back under its new name", e, err)
	}
	sameViews(t, a, b)
	if st := a.Stats(); st.Purged != 0 {
		t.Fatalf("purged %d, want 0", st.Purged)
	}

	// A delete both peers hold is purged once a sees b hold it.
	if err := a.Remove(bg, RootID, "f-renamed", false); err != nil {
		t.Fatal(err)
	}
	a.advance(2 * DefaultTrashRetention)
	b.advance(2 * DefaultTrashRetention)
	checkpoint("b lacks the second delete", 1)
	syncAll(t, a, b)
	checkpoint("b holds the second delete, a not yet seen it hold a base past it", 1)
	checkpoint("b holds it", 0)
	if st := a.Stats(); st.Purged != 1 {
		t.Fatalf("purged %d, want 1", st.Purged)
	}
	if v := view(t, a.Namespace); v != view(t, b.Namespace) {
		t.Fatalf("visible trees differ after the purge:\n%s\n%s", v, view(t, b.Namespace))
	}
}

func TestTakeDropped(t *testing.T) {
	cfg := Config{Dir: t.TempDir(), Peer: "a", TrackDropped: true}
	ns, err := Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { ns.Close() }()
	m := func(b byte) [32]byte { return [32]byte{b} }
	set := func(ino InodeID, base Timestamp, man [32]byte) Inode {
		t.Helper()
		in, err := ns.SetContent(bg, ino, Content{Size: 10 << 20, Manifest: man}, base)
		if err != nil {
			t.Fatal(err)
		}
		return in
	}
	take := func(step string, want ...[32]byte) {
		t.Helper()
		got := ns.TakeDropped()
		slices.SortFunc(got, func(a, b [32]byte) int { return int(a[0]) - int(b[0]) })
		if !slices.Equal(got, want) {
			t.Fatalf("%s: dropped %x, want %x", step, got, want)
		}
	}
	f := mustCreate(t, ns, RootID, "f", File)
	g := mustCreate(t, ns, RootID, "g", File)
	in := set(f.Inode.ID, f.Inode.Version, m(1))
	set(g.Inode.ID, g.Inode.Version, m(1)) // the same content in another file
	take("nothing replaced yet")
	in = set(f.Inode.ID, in.Version, m(2))
	take("m1 still in g")
	// A stale base: the replaced version becomes a conflict copy, which
	// keeps pointing at m2.
	set(f.Inode.ID, f.Inode.Version, m(3))
	take("m2 kept by the conflict copy")
	if err := ns.Remove(bg, RootID, "g", false); err != nil {
		t.Fatal(err)
	}
	take("g in the trash still points at m1")
	ns.clock.now = func() int64 { return time.Now().Add(2 * DefaultTrashRetention).UnixNano() }
	if err := ns.Checkpoint(); err != nil {
		t.Fatal(err)
	}
	take("g purged", m(1))
	take("taken once")
	// Reopened, the counts are rebuilt from the checkpoint.
	if err := ns.Close(); err != nil {
		t.Fatal(err)
	}
	if ns, err = Open(cfg); err != nil {
		t.Fatal(err)
	}
	in, err = ns.GetInode(f.Inode.ID)
	if err != nil {
		t.Fatal(err)
	}
	set(f.Inode.ID, in.Version, m(4))
	take("after a reopen", m(3))
}
