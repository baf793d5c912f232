package namespace

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"
)

func TestPOSIXErrors(t *testing.T) {
	p := newPeer(t, "p", nil)
	ns := p.Namespace
	d := mustCreate(t, ns, RootID, "d", Dir)
	sub := mustCreate(t, ns, d.Node, "sub", Dir)
	mustCreate(t, ns, RootID, "e", Dir)
	f := mustCreate(t, ns, RootID, "f", File)
	mustCreate(t, ns, RootID, "g", File)
	mustCreate(t, ns, d.Node, "inner", File)
	long := strings.Repeat("x", 256)
	for _, tc := range []struct {
		name string
		fn   func() error
		want error
	}{
		{"create exists", func() error { _, err := ns.Create(bg, RootID, "f", File, Attr{}, ""); return err }, ErrExist},
		{"create in file", func() error { _, err := ns.Create(bg, f.Node, "x", File, Attr{}, ""); return err }, ErrNotDir},
		{"create in missing", func() error { _, err := ns.Create(bg, 12345, "x", File, Attr{}, ""); return err }, ErrNotExist},
		{"create slash", func() error { _, err := ns.Create(bg, RootID, "a/b", File, Attr{}, ""); return err }, ErrInvalid},
		{"create nul", func() error { _, err := ns.Create(bg, RootID, "a\x00", File, Attr{}, ""); return err }, ErrInvalid},
		{"create dotdot", func() error { _, err := ns.Create(bg, RootID, "..", Dir, Attr{}, ""); return err }, ErrInvalid},
		{"create long", func() error { _, err := ns.Create(bg, RootID, long, File, Attr{}, ""); return err }, ErrNameTooLong},
		{"symlink no target", func() error { _, err := ns.Create(bg, RootID, "s", Symlink, Attr{}, ""); return err }, ErrInvalid},
		{"link dir", func() error { _, err := ns.Link(bg, d.Node, RootID, "d2"); return err }, ErrIsDir},
		{"link exists", func() error { _, err := ns.Link(bg, f.Node, RootID, "g"); return err }, ErrExist},
		{"rename missing", func() error { return ns.Rename(bg, RootID, "nope", RootID, "x", false) }, ErrNotExist},
		{"rename dir into itself", func() error { return ns.Rename(bg, RootID, "d", sub.Node, "d", false) }, ErrInvalid},
		{"rename dir onto itself child", func() error { return ns.Rename(bg, RootID, "d", d.Node, "x", false) }, ErrInvalid},
		{"rename dir over file", func() error { return ns.Rename(bg, RootID, "e", RootID, "f", false) }, ErrNotDir},
		{"rename file over dir", func() error { return ns.Rename(bg, RootID, "f", RootID, "e", false) }, ErrIsDir},
		{"rename over non-empty dir", func() error { return ns.Rename(bg, RootID, "e", RootID, "d", false) }, ErrNotEmpty},
		{"rename noreplace", func() error { return ns.Rename(bg, RootID, "f", RootID, "g", true) }, ErrExist},
		{"rename bad name", func() error { return ns.Rename(bg, RootID, "f", RootID, "", false) }, ErrInvalid},
		{"rename into file", func() error { return ns.Rename(bg, RootID, "f", f.Node, "x", false) }, ErrNotDir},
		{"rmdir file", func() error { return ns.Remove(bg, RootID, "f", true) }, ErrNotDir},
		{"unlink dir", func() error { return ns.Remove(bg, RootID, "e", false) }, ErrIsDir},
		{"rmdir non-empty", func() error { return ns.Remove(bg, RootID, "d", true) }, ErrNotEmpty},
		{"remove missing", func() error { return ns.Remove(bg, RootID, "zz", false) }, ErrNotExist},
		{"setcontent dir", func() error { _, err := ns.SetContent(bg, d.Inode.ID, Content{}, Timestamp{}); return err }, ErrIsDir},
		{"setcontent missing", func() error { _, err := ns.SetContent(bg, 999, Content{}, Timestamp{}); return err }, ErrNotExist},
		{"setattr missing", func() error { _, err := ns.SetAttr(bg, 999, AttrChange{}); return err }, ErrNotExist},
		{"removexattr unset", func() error { return ns.RemoveXattr(bg, f.Inode.ID, "user.x") }, ErrNoXattr},
		{"setxattr empty name", func() error { return ns.SetXattr(bg, f.Inode.ID, "", nil) }, ErrInvalid},
		{"lookup missing", func() error { _, err := ns.Lookup(RootID, "zz"); return err }, ErrNotExist},
		{"readdir file", func() error { _, err := ns.ReadDir(f.Node); return err }, ErrNotDir},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := tc.fn(); !errors.Is(err, tc.want) {
				t.Errorf("got %v, want %v", err, tc.want)
			}
		})
	}
	// The successful forms.
	if err := ns.Rename(bg, RootID, "e", RootID, "f2", false); err != nil {
		t.Error(err)
	}
	if err := ns.Rename(bg, RootID, "f", RootID, "f", false); err != nil {
		t.Errorf("rename onto itself: %v", err)
	}
	if err := ns.SetXattr(bg, f.Inode.ID, "user.x", []byte("v")); err != nil {
		t.Error(err)
	}
	if err := ns.RemoveXattr(bg, f.Inode.ID, "user.x"); err != nil {
		t.Error(err)
	}
	in, err := ns.SetAttr(bg, f.Inode.ID, AttrChange{Mask: SetMode | SetGid, Mode: 0o4755, Gid: 7})
	if err != nil || in.Mode != 0o4755 || in.Gid != 7 {
		t.Errorf("setattr = %+v, %v", in, err)
	}
	if got, err := ns.Path(sub.Node); err != nil || got != "/d/sub" {
		t.Errorf("path = %q, %v", got, err)
	}
}

func TestPersistence(t *testing.T) {
	for _, crash := range []bool{false, true} {
		t.Run(fmt.Sprint("crash=", crash), func(t *testing.T) {
			p := newPeer(t, "p", rand.New(rand.NewPCG(1, 2)))
			d := mustCreate(t, p.Namespace, RootID, "d", Dir)
			f := mustCreate(t, p.Namespace, d.Node, "f", File)
			write(t, p.Namespace, f.Inode.ID, "data", f.Inode.Version)
			if err := p.SetXattr(bg, f.Inode.ID, "user.k", []byte("v")); err != nil {
				t.Fatal(err)
			}
			mustCreate(t, p.Namespace, RootID, "gone", File)
			if err := p.Remove(bg, RootID, "gone", false); err != nil {
				t.Fatal(err)
			}
			before, raw := view(t, p.Namespace), rawState(p.Namespace)
			vv := p.VersionVector()
			p.reopen(t, crash)
			if got := view(t, p.Namespace); got != before {
				t.Fatalf("after reopen:\n%s\nwant:\n%s", got, before)
			}
			if rawState(p.Namespace) != raw {
				t.Error("raw state differs after reopen")
			}
			if got := p.VersionVector(); got["p"] != vv["p"] {
				t.Errorf("vv = %v, want %v", got, vv)
			}
			// New ops continue the sequence and the clock.
			mustCreate(t, p.Namespace, RootID, "after", File)
			if got := p.VersionVector()["p"]; got != vv["p"]+1 {
				t.Errorf("seq after reopen = %d, want %d", got, vv["p"]+1)
			}
		})
	}
}

func TestAntiEntropy(t *testing.T) {
	a, b := newPeer(t, "a", nil), newPeer(t, "b", nil)
	for i := 0; i < 30; i++ {
		mustCreate(t, a.Namespace, RootID, fmt.Sprint("f", i), File)
	}
	mustCreate(t, b.Namespace, RootID, "fromb", Dir)
	ops, more, err := a.OpsSince(b.VersionVector(), 10)
	if err != nil || !more || len(ops) != 10 {
		t.Fatalf("OpsSince = %d ops, more=%v, %v", len(ops), more, err)
	}
	for i, op := range ops {
		if op.Seq != uint64(i+1) {
			t.Fatalf("op %d has seq %d", i, op.Seq)
		}
	}
	// Apply twice: idempotent.
	for i := 0; i < 2; i++ {
		n, err := b.ApplyRemote(ops)
		if err != nil {
			t.Fatal(err)
		}
		if want := []int{10, 0}[i]; n != want {
			t.Errorf("applied = %d, want %d", n, want)
		}
	}
	syncAll(t, a, b)
	sameViews(t, a, b)
	if got, want := b.VersionVector(), map[string]uint64{"a": 30, "b": 1}; got["a"] != want["a"] || got["b"] != want["b"] {
		t.Errorf("vv = %v, want %v", got, want)
	}
	// Wire format, sealed.
	a.cfg.Seal = func(p []byte) ([]byte, error) { return append([]byte("S"), p...), nil }
	a.db.seal = a.cfg.Seal
	a.db.open = func(s []byte) ([]byte, error) {
		if len(s) == 0 || s[0] != 'S' {
			return nil, errors.New("bad seal")
		}
		return s[1:], nil
	}
	w, err := a.EncodeOps(ops)
	if err != nil {
		t.Fatal(err)
	}
	back, err := a.DecodeOps(w)
	if err != nil || len(back) != len(ops) || back[3].Name != ops[3].Name || back[3].TS != ops[3].TS {
		t.Fatalf("round trip: %v", err)
	}
	// A malformed op is refused.
	bad := ops[0]
	bad.Origin = "someone-else"
	if _, err := b.ApplyRemote([]Op{bad}); !errors.Is(err, ErrInvalid) {
		t.Errorf("bad op: %v", err)
	}
}

func TestSubscribe(t *testing.T) {
	a, b := newPeer(t, "a", nil), newPeer(t, "b", nil)
	ch := b.Subscribe()
	d := mustCreate(t, a.Namespace, RootID, "d", Dir)
	syncTo(t, a, b)
	mustCreate(t, a.Namespace, d.Node, "x", File)
	syncTo(t, a, b) // the consumer is slow: the two changes coalesce
	c := <-ch
	if !slices.Contains(c.Dirs, RootID) || !slices.Contains(c.Dirs, d.Node) || !slices.Contains(c.Names, DirName{d.Node, "x"}) {
		t.Errorf("change = %+v", c)
	}
	select {
	case c := <-ch:
		t.Errorf("unexpected second change %+v", c)
	default:
	}
}

func TestSnapshot(t *testing.T) {
	a, c := newPeer(t, "a", nil), newPeer(t, "c", nil)
	for i := 0; i < 5; i++ {
		mustCreate(t, a.Namespace, RootID, fmt.Sprint("f", i), File)
	}
	a.ObservePeer("c", nil, a.Clock()) // lets a's horizon move to its clock
	if err := a.Checkpoint(); err != nil {
		t.Fatal(err)
	}
	mustCreate(t, a.Namespace, RootID, "late", Dir) // after the base
	c.time.t += 5e9
	mustCreate(t, c.Namespace, RootID, "mine", File)
	snap, err := a.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	if err := c.InstallSnapshot(snap); err != nil {
		t.Fatal(err)
	}
	mustEntry(t, c, "/mine")
	mustEntry(t, c, "/late")
	syncAll(t, a, c)
	sameViews(t, a, c)
	c.reopen(t, false)
	sameViews(t, a, c)
	if err := c.InstallSnapshot([]byte("garbage")); !errors.Is(err, ErrCorrupt) {
		t.Errorf("garbage snapshot: %v", err)
	}
}

func TestCompaction(t *testing.T) {
	a := newPeer(t, "a", nil)
	for i := 0; i < 20; i++ {
		mustCreate(t, a.Namespace, RootID, fmt.Sprint("f", i), File)
	}
	// Peer b reports it holds what we hold, at our clock.
	a.ObservePeer("b", a.VersionVector(), a.Clock())
	if err := a.Checkpoint(); err != nil {
		t.Fatal(err)
	}
	st := a.Stats()
	if st.Ops != 0 || st.UndoOps != 0 || st.Nodes != 20 {
		t.Errorf("stats after compaction = %+v", st)
	}
	if _, _, err := a.OpsSince(nil, 10); !errors.Is(err, ErrCompacted) {
		t.Errorf("OpsSince(nil) = %v, want ErrCompacted", err)
	}
	if ops, _, err := a.OpsSince(a.VersionVector(), 10); err != nil || len(ops) != 0 {
		t.Errorf("OpsSince(current) = %d, %v", len(ops), err)
	}
	// A new peer catches up with the snapshot instead.
	b := newPeer(t, "b", nil)
	snap, err := a.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	if err := b.InstallSnapshot(snap); err != nil {
		t.Fatal(err)
	}
	sameViews(t, a, b)
	// Restart from the checkpoint alone.
	before := view(t, a.Namespace)
	a.reopen(t, false)
	if view(t, a.Namespace) != before {
		t.Error("view changed after reopen from checkpoint")
	}
	// A peer that holds ops we lack keeps the horizon where it was.
	a.ObservePeer("c", map[string]uint64{"c": 5}, Timestamp{Wall: 1 << 62})
	if h := a.Horizon(); h.Wall == 1<<62 {
		t.Error("horizon advanced past a peer whose ops we lack")
	}
}

func makeBigDir(tb testing.TB, n int) *testPeer {
	tb.Helper()
	p := newPeer(tb, "p", nil)
	p.time.set("2026-01-01T00:00:00Z") // the remote ops' time: not ahead of this peer's clock
	ops := make([]Op, 0, 10000)
	ts := Timestamp{Wall: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano(), Peer: "remote"}
	for i := 0; i < n; i++ {
		ts.Logical++
		id := uint64(1000 + i)
		ops = append(ops, Op{Kind: OpMove, TS: ts, Origin: "remote", Seq: uint64(i + 1), Node: NodeID(id), NewParent: RootID,
			Name: fmt.Sprintf("file-%07d", i), Inode: InodeID(id), Init: &InodeInit{Type: File, Mode: 0o644}})
		if len(ops) == cap(ops) || i == n-1 {
			if _, err := p.ApplyRemote(ops); err != nil {
				tb.Fatal(err)
			}
			ops = ops[:0]
		}
	}
	return p
}

func TestReadDir100k(t *testing.T) {
	p := makeBigDir(t, 100000)
	start := time.Now()
	es, err := p.ReadDir(RootID)
	el := time.Since(start)
	if err != nil || len(es) != 100000 {
		t.Fatalf("readdir = %d, %v", len(es), err)
	}
	if !slices.IsSortedFunc(es, func(a, b Entry) int { return strings.Compare(a.Name, b.Name) }) {
		t.Error("not sorted")
	}
	// Speed is BenchmarkReadDir100k's business, not a test's: a loaded
	// machine made a time limit here fail with nothing wrong.
	t.Logf("ReadDir 100k: %v", el)
}

func BenchmarkReadDir100k(b *testing.B) {
	p := makeBigDir(b, 100000)
	_, _ = p.ReadDir(RootID)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := p.ReadDir(RootID); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkCreate(b *testing.B) {
	p := newPeer(b, "p", nil)
	p.time.t = time.Now().UnixNano()
	mustCreate(b, p.Namespace, RootID, "warm", File)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := p.Create(bg, RootID, fmt.Sprint("f", i), File, Attr{Mode: 0o644}, ""); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkApplyRemote(b *testing.B) {
	p := newPeer(b, "p", nil)
	ts := Timestamp{Wall: 1, Peer: "r"}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i += 1000 {
		var ops []Op
		for j := i; j < i+1000; j++ {
			ts.Logical++
			ops = append(ops, Op{Kind: OpMove, TS: ts, Origin: "r", Seq: uint64(j + 1), Node: NodeID(10 + j), NewParent: RootID,
				Name: fmt.Sprint("f", j), Inode: InodeID(10 + j), Init: &InodeInit{Type: File}})
		}
		if _, err := p.ApplyRemote(ops); err != nil {
			b.Fatal(err)
		}
	}
}

func FuzzDecodeOps(f *testing.F) {
	ts := Timestamp{Wall: 123456789, Logical: 3, Peer: "peer-1"}
	seed := []Op{
		{Kind: OpMove, TS: ts, Seq: 1, Node: 10, NewParent: 1, Name: "a.txt", Inode: 11, Init: &InodeInit{Type: File, Mode: 0o644, Target: "x"}},
		{Kind: OpMove, TS: ts, Seq: 2, Node: 10, NewParent: 2, Name: "a.txt", Base: ts},
		{Kind: OpSetAttr, TS: ts, Seq: 3, Inode: 11, Attr: AttrChange{Mask: SetMode, Mode: 0o600, Atime: -5}},
		{Kind: OpSetContent, TS: ts, Seq: 4, Inode: 11, Content: Content{Manifest: [32]byte{1, 2}, Size: 3 << 20, Zero: 1 << 20}, Base: ts},
		{Kind: OpSetContent, TS: ts, Seq: 4, Inode: 12, Content: Content{Size: 3, Inline: []byte("abc")}, Base: ts},
		{Kind: OpSetXattr, TS: ts, Seq: 5, Inode: 11, Name: "user.k", Value: []byte{0, 1}},
		{Kind: OpRemoveXattr, TS: ts, Seq: 6, Inode: 11, Name: "user.k"},
	}
	for i := range seed {
		seed[i].Origin = ts.Peer
	}
	b, err := EncodeOps(seed)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(b)
	f.Add([]byte{})
	f.Add([]byte{1, 0xff, 0xff, 0xff, 0xff, 0x0f})
	f.Fuzz(func(t *testing.T, data []byte) {
		ops, err := DecodeOps(data)
		if err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("error %v does not wrap ErrCorrupt", err)
			}
			return
		}
		again, err := EncodeOps(ops)
		if err != nil {
			t.Fatal(err)
		}
		ops2, err := DecodeOps(again)
		if err != nil {
			t.Fatalf("re-decode: %v", err)
		}
		again2, _ := EncodeOps(ops2)
		if !bytes.Equal(again, again2) {
			t.Fatal("encoding is not stable")
		}
		for i := range ops {
			_ = validateOp(&ops[i])
		}
	})
}

func TestDecodeOpsRoundTrip(t *testing.T) {
	ts := Timestamp{Wall: -5, Logical: 1 << 31, Peer: "p"}
	for _, c := range []Content{
		{Size: 2, Inline: []byte("hi")},
		{Manifest: [32]byte{7}, Size: 10 << 30},
		{Manifest: [32]byte{7}, Size: 10 << 30, Zero: 10<<30 - 5},
		{Manifest: [32]byte{7}, Size: 1, Zero: 1},
	} {
		ops := []Op{{Kind: OpSetContent, TS: ts, Origin: "p", Seq: 9, Inode: 4, Content: c, Base: ts}}
		b, _ := EncodeOps(ops)
		got, err := DecodeOps(b)
		if err != nil || len(got) != 1 || got[0].TS != ts || got[0].Origin != "p" ||
			string(got[0].Content.Inline) != string(c.Inline) || got[0].Content.Manifest != c.Manifest ||
			got[0].Content.Size != c.Size || got[0].Content.Zero != c.Zero {
			t.Fatalf("round trip of %+v = %+v, %v", c, got, err)
		}
		for i := 0; i < len(b); i++ {
			if _, err := DecodeOps(b[:i]); err == nil {
				t.Errorf("%+v: truncated at %d decoded without error", c, i)
			}
		}
	}
}

// TestContentZeroCodec: a chunked file's content as written before Zero
// existed (an empty bytes field) still decodes, with Zero 0; a count of
// zero bytes beyond the size, or a malformed one, is refused.
func TestContentZeroCodec(t *testing.T) {
	m := [32]byte{9}
	enc := func(size int64, ext []byte) []byte {
		e := &encoder{}
		e.b = append(e.b, m[:]...)
		e.iv(size)
		e.bytes(ext)
		return e.b
	}
	tests := []struct {
		name     string
		b        []byte
		wantZero int64
		wantErr  bool
	}{
		{"old record", enc(100, nil), 0, false},
		{"zero bytes", enc(100, []byte{40}), 40, false},
		{"all zero", enc(100, []byte{100}), 100, false},
		{"more zeros than bytes", enc(100, []byte{101}), 0, true},
		{"trailing garbage", enc(100, []byte{40, 1}), 0, true},
		{"unterminated varint", enc(100, []byte{0x80}), 0, true},
	}
	for _, tc := range tests {
		d := &decoder{b: tc.b}
		c := decodeContent(d)
		if (d.err != nil) != tc.wantErr {
			t.Errorf("%s: err %v, want error %v", tc.name, d.err, tc.wantErr)
			continue
		}
		if !tc.wantErr && (c.Zero != tc.wantZero || c.Size != 100 || c.Manifest != m || c.Inline != nil) {
			t.Errorf("%s: decoded %+v", tc.name, c)
		}
	}
}

func TestClock(t *testing.T) {
	ft := &fakeTime{t: 100}
	c := NewClock("x")
	c.now = ft.now
	a := c.Now()
	b := c.Now()
	if !a.Less(b) {
		t.Errorf("%v !< %v", a, b)
	}
	remote := Timestamp{Wall: 500, Logical: 7, Peer: "y"}
	c.Observe(remote)
	if n := c.Now(); !remote.Less(n) {
		t.Errorf("after observe %v, now = %v", remote, n)
	}
	ft.t = 1000
	if n := c.Now(); n.Wall != 1000 || n.Logical != 0 {
		t.Errorf("physical clock ahead: %v", n)
	}
}

// TestConcurrentReadsAndWrites is meant for -race: readers run while local
// writes and remote ops are applied.
func TestConcurrentReadsAndWrites(t *testing.T) {
	a, b := newPeer(t, "a", nil), newPeer(t, "b", nil)
	d := mustCreate(t, a.Namespace, RootID, "d", Dir)
	syncTo(t, a, b)
	done := make(chan struct{})
	errc := make(chan error, 2)
	go func() {
		defer close(done)
		for i := 0; i < 50; i++ {
			if _, err := a.Create(bg, d.Node, fmt.Sprint("x", i), File, Attr{}, ""); err != nil {
				errc <- err
				return
			}
			ops, _, err := a.OpsSince(b.VersionVector(), 100)
			if err == nil {
				_, err = b.ApplyRemote(ops)
			}
			if err != nil {
				errc <- err
				return
			}
		}
	}()
	ch := b.Subscribe()
	for running := true; running; {
		select {
		case <-done:
			running = false
		case <-ch:
		default:
		}
		for _, ns := range []*Namespace{a.Namespace, b.Namespace} {
			_, _ = ns.ReadDir(d.Node)
			_, _ = ns.Resolve("/d/x1")
			_ = ns.Stats()
			_ = ns.VersionVector()
		}
	}
	select {
	case err := <-errc:
		t.Fatal(err)
	default:
	}
	sameViews(t, a, b)
}

func FuzzDecodeCheckpoint(f *testing.F) {
	p := newPeer(f, "p", rand.New(rand.NewPCG(3, 4)))
	d := mustCreate(f, p.Namespace, RootID, "d", Dir)
	x := mustCreate(f, p.Namespace, d.Node, "x.txt", File)
	write(f, p.Namespace, x.Inode.ID, "hi", Timestamp{})
	_ = p.SetXattr(bg, x.Inode.ID, "user.a", []byte("b"))
	_ = p.Remove(bg, RootID, "d", true)
	f.Add([]byte(rawState(p.Namespace)))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := decodeCheckpoint(data, nil)
		if err != nil {
			return
		}
		for id := range c.st.nodes {
			c.st.entry(id)
			c.st.path(id)
		}
	})
}

// keysWith lists the stored keys that start with pfx.
func keysWith(t *testing.T, ns *Namespace, pfx byte) [][]byte {
	t.Helper()
	var keys [][]byte
	err := ns.db.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte{pfx}})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			keys = append(keys, it.Item().KeyCopy(nil))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return keys
}

// TestCheckpointKeepsInlineContentApart: a checkpoint stores each version
// of a small file's content once, under its own key, not again in every
// checkpoint; it is written in parts; a restart reads it back whole and
// sweeps what a crash left behind.
func TestCheckpointKeepsInlineContentApart(t *testing.T) {
	defer func(n int) { ckptPart = n }(ckptPart)
	ckptPart = 1000 // several parts
	a := newPeer(t, "a", nil)
	big := func(i int) string { return strings.Repeat(fmt.Sprint(i%10), apartMin+i) }
	var files []Inode
	for i := range 30 {
		e := mustCreate(t, a.Namespace, RootID, fmt.Sprint("f", i), File)
		files = append(files, write(t, a.Namespace, e.Inode.ID, big(i), e.Inode.Version))
	}
	for i := range 5 {
		e := mustCreate(t, a.Namespace, RootID, fmt.Sprint("tiny", i), File)
		write(t, a.Namespace, e.Inode.ID, "x", e.Inode.Version)
	}
	checkpoint := func() {
		t.Helper()
		a.ObservePeer("b", a.VersionVector(), a.Clock())
		if err := a.Checkpoint(); err != nil {
			t.Fatal(err)
		}
	}
	checkpoint()
	if got := len(keysWith(t, a.Namespace, pfxInline)); got != 30 {
		t.Errorf("%d inline contents stored apart, want 30 (the 5 tiny ones stay in the checkpoint)", got)
	}
	gen, parts, err := a.db.ckptGen()
	if err != nil || gen != 1 || parts < 2 {
		t.Errorf("checkpoint generation %d in %d parts (%v), want 1 in several", gen, parts, err)
	}
	// A new version of f0 replaces its stored content; f1 deleted is in
	// the trash, which keeps its content.
	write(t, a.Namespace, files[0].ID, "new content "+big(99), files[0].Version)
	if err := a.Remove(bg, RootID, "f1", false); err != nil {
		t.Fatal(err)
	}
	checkpoint()
	keys := keysWith(t, a.Namespace, pfxInline)
	if len(keys) != 30 {
		t.Errorf("%d inline contents after the second checkpoint, want 30", len(keys))
	}
	for _, k := range keys {
		if r, _ := parseInlineKey(k); r == (inlineRef{files[0].ID, files[0].Version}) {
			t.Error("the replaced version of f0 is still stored")
		}
	}
	gen, parts, _ = a.db.ckptGen()
	if n := len(keysWith(t, a.Namespace, pfxPart)); gen != 2 || n != int(parts) {
		t.Errorf("generation %d, %d parts stored for %d: the previous checkpoint's parts were not deleted", gen, n, parts)
	}
	// What a crash between writing and switching leaves: swept at open.
	orphan := inlineKey(inlineRef{12345, a.Clock()})
	err = a.db.db.Update(func(txn *badger.Txn) error {
		if err := txn.Set(orphan, []byte("x")); err != nil {
			return err
		}
		return txn.Set(partKey(7, 0), []byte("x"))
	})
	if err != nil {
		t.Fatal(err)
	}
	before := view(t, a.Namespace)
	a.reopen(t, false)
	if got := view(t, a.Namespace); got != before {
		t.Errorf("view after restart from the checkpoint differs:\n%s\nwant\n%s", got, before)
	}
	if v, _ := a.db.get(string(orphan)); v != nil {
		t.Error("orphaned inline content not swept at open")
	}
	if v, _ := a.db.get(string(partKey(7, 0))); v != nil {
		t.Error("orphaned checkpoint part not swept at open")
	}
	if got := len(keysWith(t, a.Namespace, pfxInline)); got != 30 {
		t.Errorf("%d inline contents after restart, want 30", got)
	}
}

// TestOpLogReplay: ops committed but not yet moved from the op log into
// badger survive a crash, and the sequence number continues after them
// (a reused one would make peers disagree about which op it names).
func TestOpLogReplay(t *testing.T) {
	a := newPeer(t, "a", nil)
	for i := range 5 {
		mustCreate(t, a.Namespace, RootID, fmt.Sprint("f", i), File)
	}
	seq := a.VersionVector()["a"]
	if pending := len(a.db.ops.pending); pending == 0 {
		t.Fatal("nothing waits in the op log: the test proves nothing")
	}
	before := view(t, a.Namespace)
	a.reopen(t, true)
	if got := view(t, a.Namespace); got != before {
		t.Errorf("after a crash:\n%s\nwant\n%s", got, before)
	}
	if got := a.VersionVector()["a"]; got != seq {
		t.Errorf("version vector after replay = %d, want %d", got, seq)
	}
	e := mustCreate(t, a.Namespace, RootID, "after", File)
	ops, _, err := a.OpsSince(map[string]uint64{"a": seq}, 10)
	if err != nil || len(ops) != 1 || ops[0].Seq != seq+1 || ops[0].Node != e.Node {
		t.Errorf("op after restart: %+v (%v), want one with seq %d", ops, err, seq+1)
	}
	// A torn record (a commit that never returned) is ignored.
	a.reopen(t, true)
	f, err := os.OpenFile(filepath.Join(a.dir, "reef-ops.log"), os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.Write([]byte{0, 0, 1, 0, 1, 2, 3})
	f.Close()
	a.reopen(t, true)
	mustEntry(t, a, "/after")
}

// TestOpLogTornWrite: after a write to the op log fails and the log cannot
// be rewritten, nothing more is acknowledged until it can be: a record
// appended after the partial one would be lost at replay, which stops at
// the first damaged record.
func TestOpLogTornWrite(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ops.log")
	id := func(b []byte) ([]byte, error) { return bytes.Clone(b), nil }
	var replayed []Op
	put := func(ops []Op) error { replayed = append(replayed, ops...); return nil }
	l, err := openLog(path, id, id, false, put)
	if err != nil {
		t.Fatal(err)
	}
	op := func(i int) []Op {
		return []Op{{Kind: OpSetAttr, Origin: "a", Seq: uint64(i), TS: Timestamp{Wall: int64(i), Peer: "a"}, Inode: 7}}
	}
	if _, _, err := l.append(op(1), false); err != nil {
		t.Fatal(err)
	}
	// A write fails (a read-only handle stands in for a full disk), and the
	// rewrite cannot happen (a directory holds its temporary name).
	good := l.f
	ro, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer ro.Close()
	l.f = ro
	if err := os.Mkdir(path+".tmp", 0o755); err != nil {
		t.Fatal(err)
	}
	if _, _, err := l.append(op(2), false); err == nil {
		t.Fatal("append to a failing file succeeded")
	}
	// The failed write left part of a record; then the disk works again.
	good.Write([]byte{0, 0, 1, 0, 9, 9})
	l.f = good
	acked := []uint64{1}
	if _, _, err := l.append(op(3), false); err == nil {
		acked = append(acked, 3)
	}
	if err := os.Remove(path + ".tmp"); err != nil {
		t.Fatal(err)
	}
	if _, _, err := l.append(op(4), false); err != nil {
		t.Fatalf("append once the log can be rewritten: %v", err)
	}
	acked = append(acked, 4)
	l.f.Close()
	replayed = nil
	if _, err := openLog(path, id, id, false, put); err != nil {
		t.Fatal(err)
	}
	got := map[uint64]bool{}
	for _, o := range replayed {
		got[o.Seq] = true
	}
	for _, s := range acked {
		if !got[s] {
			t.Errorf("acknowledged op %d lost at replay (replayed %d ops)", s, len(replayed))
		}
	}
}

// TestExchange: Exchange swaps two names (files, directories, or one of
// each) in one commit, on every peer; it refuses a swap that would put a
// directory inside itself, and missing names.
func TestExchange(t *testing.T) {
	a, b := newPeer(t, "a", nil), newPeer(t, "b", nil)
	d1 := mustCreate(t, a.Namespace, RootID, "d1", Dir)
	d2 := mustCreate(t, a.Namespace, d1.Node, "d2", Dir)
	f := mustCreate(t, a.Namespace, RootID, "f", File)
	g := mustCreate(t, a.Namespace, d1.Node, "g", File)
	syncTo(t, a, b)
	// A file in / and a file in d1.
	if err := a.Exchange(bg, RootID, "f", d1.Node, "g"); err != nil {
		t.Fatal(err)
	}
	if e, _ := a.Lookup(RootID, "f"); e.Inode.ID != g.Inode.ID {
		t.Errorf("/f is inode %d, want g's %d", e.Inode.ID, g.Inode.ID)
	}
	if e, _ := a.Lookup(d1.Node, "g"); e.Inode.ID != f.Inode.ID {
		t.Errorf("/d1/g is inode %d, want f's %d", e.Inode.ID, f.Inode.ID)
	}
	// A directory and a file: /d1/d2 <-> /f; then d1's link count.
	if err := a.Exchange(bg, d1.Node, "d2", RootID, "f"); err != nil {
		t.Fatal(err)
	}
	if e, _ := a.Lookup(RootID, "f"); e.Node != d2.Node || e.Inode.Type != Dir {
		t.Errorf("/f is node %d (%v), want the directory d2", e.Node, e.Inode.Type)
	}
	if e, _ := a.Lookup(RootID, "d1"); e.Inode.Nlink != 2 {
		t.Errorf("d1 nlink %d after its subdirectory left, want 2", e.Inode.Nlink)
	}
	for _, tc := range []struct {
		name string
		p1   NodeID
		n1   string
		p2   NodeID
		n2   string
		want error
	}{
		{"into itself", RootID, "d1", d1.Node, "d2", ErrInvalid}, // d1/d2 is the file now: d1 would go under d1
		{"missing source", RootID, "nope", RootID, "f", ErrNotExist},
		{"missing target", RootID, "f", RootID, "nope", ErrNotExist},
	} {
		if err := a.Exchange(bg, tc.p1, tc.n1, tc.p2, tc.n2); !errors.Is(err, tc.want) {
			t.Errorf("%s: %v, want %v", tc.name, err, tc.want)
		}
	}
	syncTo(t, a, b)
	sameViews(t, a, b)
	if got := names(t, b.Namespace, RootID); !slices.Equal(got, []string{"d1", "f"}) {
		t.Errorf("root on b: %v", got)
	}
}

// TestClockAhead: ops stamped more than MaxClockAhead ahead of this peer's
// clock are refused (ErrClockAhead), and a peer's clock that far ahead in
// an anti-entropy answer is not followed: the peer's clock stays its own,
// and the mtimes of its later changes stay true. Within the bound, ops
// apply and the clock follows, as hybrid clocks do.
func TestClockAhead(t *testing.T) {
	a, fast := newPeer(t, "a", nil), newPeer(t, "fast", nil)
	a.time.set("2026-12-02T10:00:00Z")
	for _, tc := range []struct {
		name  string
		at    string
		apply bool
	}{
		{"30 s ahead", "2026-12-02T10:00:30Z", true},
		{"a day ahead", "2026-12-03T10:00:00Z", false},
	} {
		fast.time.set(tc.at)
		mustCreate(t, fast.Namespace, RootID, tc.name, File)
		ops, _, err := fast.OpsSince(a.VersionVector(), 100)
		if err != nil {
			t.Fatal(err)
		}
		_, err = a.ApplyRemote(ops)
		if tc.apply && err != nil {
			t.Errorf("%s: %v", tc.name, err)
		}
		if !tc.apply && !errors.Is(err, ErrClockAhead) {
			t.Errorf("%s: err %v, want ErrClockAhead", tc.name, err)
		}
		if _, err := a.Lookup(RootID, tc.name); (err == nil) != tc.apply {
			t.Errorf("%s: lookup on a: %v", tc.name, err)
		}
		a.ObservePeer("fast", fast.VersionVector(), fast.Clock())
	}
	if got := a.ClockAhead(); len(got) != 1 || got["fast"] < 23*time.Hour {
		t.Errorf("ClockAhead = %v, want fast about a day ahead", got)
	}
	// a's clock followed the peer 30 s ahead, not the one a day ahead.
	e := mustCreate(t, a.Namespace, RootID, "after", File)
	if got, limit := time.Unix(0, e.Inode.Mtime).UTC(), time.Date(2026, 12, 2, 10, 1, 0, 0, time.UTC); got.After(limit) {
		t.Errorf("mtime of a file made on a after seeing the fast peer: %v, want about 10:00:30", got)
	}
}
