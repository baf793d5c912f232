package namespace

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"
)

var bg = context.Background()

// fakeTime is a settable physical clock for one peer.
type fakeTime struct{ t int64 }

func (f *fakeTime) now() int64 { return f.t }

func (f *fakeTime) set(s string) {
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		panic(err)
	}
	f.t = t.UnixNano()
}

type testPeer struct {
	*Namespace
	dir  string
	cfg  Config
	time *fakeTime
}

// newPeer opens a namespace in a temp dir with a fake clock and
// deterministic IDs.
func newPeer(t testing.TB, name string, rng *rand.Rand) *testPeer {
	t.Helper()
	ft := &fakeTime{}
	ft.set("2020-01-01T09:00:00Z")
	cfg := Config{Dir: t.TempDir(), Peer: name, clockNow: ft.now}
	ns, err := Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if rng != nil {
		ns.newID = func() uint64 { return rng.Uint64() }
	}
	p := &testPeer{Namespace: ns, dir: cfg.Dir, cfg: cfg, time: ft}
	t.Cleanup(func() { p.Close() })
	return p
}

// reopen closes (or, if crash, abandons without checkpoint) and reopens p.
func (p *testPeer) reopen(t testing.TB, crash bool) {
	t.Helper()
	if crash {
		p.wmu.Lock()
		p.closed = true
		p.wmu.Unlock()
		if err := p.db.abandon(); err != nil {
			t.Fatal(err)
		}
	} else if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	ns, err := Open(p.cfg)
	if err != nil {
		t.Fatal(err)
	}
	ns.newID = p.newID
	p.Namespace = ns
}

// syncTo sends what b lacks from a, in pages.
func syncTo(t testing.TB, a, b *testPeer) {
	t.Helper()
	for {
		ops, more, err := a.OpsSince(b.VersionVector(), 7)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := b.ApplyRemote(ops); err != nil {
			t.Fatal(err)
		}
		if !more {
			return
		}
	}
}

func syncAll(t testing.TB, ps ...*testPeer) {
	t.Helper()
	for _, a := range ps {
		for _, b := range ps {
			if a != b {
				syncTo(t, a, b)
			}
		}
	}
}

// view renders the visible tree: paths, displayed names, attributes, content.
func view(t testing.TB, ns *Namespace) string {
	t.Helper()
	var sb strings.Builder
	var walk func(dir NodeID, p string)
	walk = func(dir NodeID, p string) {
		es, err := ns.ReadDir(dir)
		if err != nil {
			t.Fatalf("readdir %s: %v", p, err)
		}
		for _, e := range es {
			in := e.Inode
			fmt.Fprintf(&sb, "%s/%s node=%d ino=%d %v mode=%o uid=%d nlink=%d size=%d m=%d tgt=%q x=%v c=%x/%q v=%v\n",
				p, e.Name, e.Node, in.ID, in.Type, in.Mode, in.Uid, in.Nlink, in.Size, in.Mtime, in.Target, in.Xattrs,
				in.Content.Manifest[:4], in.Content.Inline, in.Version)
			if in.Type == Dir {
				walk(e.Node, p+"/"+e.Name)
			}
		}
	}
	walk(RootID, "")
	return sb.String()
}

// rawState encodes the whole state (trash included), sorted by ID.
func rawState(ns *Namespace) string {
	ns.mu.RLock()
	defer ns.mu.RUnlock()
	return string(encodeCheckpoint(&checkpoint{st: ns.s, baseVV: map[string]uint64{}}))
}

// checkTree verifies that every node reaches the root or the trash, and
// that every node not live sits under a node deleted by a delete op.
func checkTree(t testing.TB, ns *Namespace, ops map[Timestamp]Op) {
	t.Helper()
	ns.mu.RLock()
	defer ns.mu.RUnlock()
	s := ns.s
	for id, n := range s.nodes {
		if s.live(id) {
			continue
		}
		r := s.trashRoot(id)
		if r == 0 {
			t.Fatalf("node %d (%q) reaches neither root nor trash", id, n.name)
		}
		rn := s.nodes[r]
		op, ok := ops[rn.nameTS]
		if ok && (op.Kind != OpMove || op.Node != r || op.NewParent != TrashID) {
			t.Fatalf("node %d in trash, but the op that put it there is %+v", r, op)
		}
	}
	for ts, op := range ops {
		if op.Kind == OpMove && op.Init != nil && s.nodes[op.Node] == nil {
			t.Fatalf("created node %d (op %v) vanished", op.Node, ts)
		}
	}
}

func mustEntry(t testing.TB, ns interface{ Resolve(string) (Entry, error) }, p string) Entry {
	t.Helper()
	e, err := ns.Resolve(p)
	if err != nil {
		t.Fatalf("resolve %s: %v", p, err)
	}
	return e
}

func names(t testing.TB, ns *Namespace, dir NodeID) []string {
	t.Helper()
	es, err := ns.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range es {
		out = append(out, e.Name)
	}
	return out
}

func mustCreate(t testing.TB, ns *Namespace, parent NodeID, name string, typ Type) Entry {
	t.Helper()
	var target string
	if typ == Symlink {
		target = "/x"
	}
	e, err := ns.Create(bg, parent, name, typ, Attr{Mode: 0o644}, target)
	if err != nil {
		t.Fatalf("create %s: %v", name, err)
	}
	return e
}

func write(t testing.TB, ns *Namespace, ino InodeID, data string, base Timestamp) Inode {
	t.Helper()
	in, err := ns.SetContent(bg, ino, Content{Size: int64(len(data)), Inline: []byte(data)}, base)
	if err != nil {
		t.Fatalf("write %d: %v", ino, err)
	}
	return in
}

func sameViews(t testing.TB, ps ...*testPeer) {
	t.Helper()
	v0, r0 := view(t, ps[0].Namespace), rawState(ps[0].Namespace)
	for _, p := range ps[1:] {
		if v := view(t, p.Namespace); v != v0 {
			t.Fatalf("views differ:\n%s:\n%s\n%s:\n%s", ps[0].cfg.Peer, v0, p.cfg.Peer, v)
		}
		if rawState(p.Namespace) != r0 {
			t.Fatalf("raw states of %s and %s differ", ps[0].cfg.Peer, p.cfg.Peer)
		}
	}
}

func isAny(err error, targets ...error) bool {
	return slices.ContainsFunc(targets, func(e error) bool { return errors.Is(err, e) })
}

// abandon closes the store as a crash would leave it: ops still in the op
// log are not moved into badger (badger itself is closed cleanly: a killed
// process loses nothing it wrote).
func (s *store) abandon() error {
	close(s.stop)
	<-s.done
	<-s.fdone
	s.ops.close()
	return s.db.Close()
}
