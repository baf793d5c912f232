package namespace

import (
	"bytes"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/reefproject/reef/crypt"
)

// newSyncPeer is newPeer with ops sealed as peers seal them (crypt
// records, SealTo included) and a sync cache of cache bytes.
func newSyncPeer(t testing.TB, name string, cache int) *testPeer {
	t.Helper()
	keys, err := crypt.NewKeys(bytes.Repeat([]byte{9}, 32))
	if err != nil {
		t.Fatal(err)
	}
	ft := &fakeTime{}
	ft.set("2020-01-01T09:00:00Z")
	cfg := Config{Dir: t.TempDir(), Peer: name, clockNow: ft.now, SyncCacheBytes: cache,
		Seal:   func(p []byte) ([]byte, error) { return keys.SealRecord(nil, p) },
		SealTo: keys.SealRecord, Open: keys.Open,
		Observe: func(op string, _ time.Duration) {
			if op == "sync_cache" || op == "sync_store" {
				lastSync.Store(op)
			}
		}}
	ns, err := Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	p := &testPeer{Namespace: ns, dir: cfg.Dir, cfg: cfg, time: ft}
	t.Cleanup(func() { p.Close() })
	return p
}

// lastSync is the kind of the last answer a sync peer gave (Config.Observe).
var lastSync atomic.Value

// files creates n files named prefix-i in the root of p, each with size
// bytes of content and a chmod: 3 ops each.
func files(t testing.TB, p *testPeer, prefix string, n, size int) {
	t.Helper()
	for i := range n {
		e := mustCreate(t, p.Namespace, RootID, fmt.Sprintf("%s-%d", prefix, i), File)
		data := bytes.Repeat([]byte{byte('a' + i%26)}, size+i%7)
		if _, err := p.SetContent(bg, e.Inode.ID, Content{Size: int64(len(data)), Inline: data}, e.Inode.Version); err != nil {
			t.Fatal(err)
		}
		if _, err := p.SetAttr(bg, e.Inode.ID, AttrChange{Mask: SetMode, Mode: 0o600}); err != nil {
			t.Fatal(err)
		}
	}
}

// opsOf returns every op p holds of origin, in seq order.
func opsOf(t testing.TB, p *testPeer, origin string) []Op {
	t.Helper()
	ops, _, err := p.OpsSince(map[string]uint64{}, MaxOpsPerBatch)
	if err != nil {
		t.Fatal(err)
	}
	var out []Op
	for _, op := range ops {
		if op.Origin == origin {
			out = append(out, op)
		}
	}
	return out
}

// apply applies ops to p, the ones whose seq keep selects.
func apply(t testing.TB, p *testPeer, ops []Op, keep func(seq uint64) bool) {
	t.Helper()
	var sel []Op
	for _, op := range ops {
		if keep == nil || keep(op.Seq) {
			sel = append(sel, op)
		}
	}
	if _, err := p.ApplyRemote(sel); err != nil {
		t.Fatal(err)
	}
}

// sameAnswer checks that SealOpsSince answers vv as OpsSince and EncodeOps
// do: the same plain bytes (so the same ops in the same order), the same
// more and the same error.
func sameAnswer(t testing.TB, p *testPeer, vv map[string]uint64, max int) {
	t.Helper()
	ops, more, err := p.OpsSince(vv, max)
	b, berr := p.SealOpsSince(vv, max)
	defer b.Release()
	if (err == nil) != (berr == nil) || errors.Is(err, ErrCompacted) != errors.Is(berr, ErrCompacted) {
		t.Fatalf("vv %v max %d: SealOpsSince error %v, OpsSince %v", vv, max, berr, err)
	}
	if err != nil {
		return
	}
	if b.N != len(ops) || b.More != more {
		t.Fatalf("vv %v max %d: SealOpsSince gives %d ops, more %v; OpsSince %d, more %v", vv, max, b.N, b.More, len(ops), more)
	}
	if len(ops) == 0 {
		if b.Sealed != nil {
			t.Fatalf("vv %v max %d: %d sealed bytes for no ops", vv, max, len(b.Sealed))
		}
		return
	}
	want, err := EncodeOps(ops)
	if err != nil {
		t.Fatal(err)
	}
	got, err := p.db.open(b.Sealed)
	if err != nil {
		t.Fatalf("vv %v max %d: open: %v", vv, max, err)
	}
	if !bytes.Equal(got, want) {
		dec, err := DecodeOps(got)
		t.Fatalf("vv %v max %d: SealOpsSince's ops differ from OpsSince's (decode: %v):\n got %v\nwant %v", vv, max, err, seqsOf(dec), seqsOf(ops))
	}
}

func seqsOf(ops []Op) []string {
	var s []string
	for _, op := range ops {
		s = append(s, fmt.Sprintf("%s/%d", op.Origin, op.Seq))
	}
	return s
}

// askers are version vectors of peers lacking various ops of p.
func askers(p *testPeer) []map[string]uint64 {
	vv := p.VersionVector()
	out := []map[string]uint64{nil, {}, vv}
	for _, o := range slices.Sorted(maps.Keys(vv)) {
		for _, back := range []uint64{1, 3, 10, vv[o] / 2, vv[o]} {
			w := maps.Clone(vv)
			w[o] -= min(back, w[o])
			out = append(out, w)
		}
		only := map[string]uint64{o: vv[o]}
		out = append(out, only)
		ahead := maps.Clone(vv)
		ahead[o] += 5
		out = append(out, ahead)
	}
	return out
}

// checkCache checks the cache's invariant against ns.have and the store:
// above each origin's floor it holds exactly the seqs held, each with the
// encoding of the stored op; and it fits its budget.
func checkCache(t testing.TB, p *testPeer) {
	t.Helper()
	p.mu.RLock()
	defer p.mu.RUnlock()
	c := p.opc
	if !c.ready {
		return
	}
	if c.bytes > c.budget {
		t.Errorf("cache holds %d bytes, budget %d", c.bytes, c.budget)
	}
	for o, oc := range c.origins {
		var want []uint64
		if q := p.have[o]; q != nil {
			for s := oc.floor + 1; s <= q.contig; s++ {
				want = append(want, s)
			}
			for s := range q.extra {
				if s > oc.floor && s > q.contig {
					want = append(want, s)
				}
			}
		}
		slices.Sort(want)
		var got []uint64
		for _, e := range oc.ops {
			got = append(got, e.seq)
		}
		if !slices.Equal(got, want) {
			t.Errorf("origin %s, floor %d: cache holds seqs %v, have %v", o, oc.floor, got, want)
			continue
		}
		if len(got) == 0 {
			continue
		}
		stored, _, err := p.db.opsFrom(o, oc.floor, MaxOpsPerBatch)
		if err != nil {
			t.Fatal(err)
		}
		if len(stored) != len(oc.ops) {
			t.Errorf("origin %s, floor %d: cache holds %d ops, the store %d", o, oc.floor, len(oc.ops), len(stored))
			continue
		}
		for i, e := range oc.ops {
			enc := &encoder{}
			encodeOp(enc, &stored[i])
			if stored[i].Seq != e.seq || !bytes.Equal(enc.b, e.enc) {
				t.Errorf("origin %s seq %d: cached encoding differs from the stored op's (seq %d)", o, e.seq, stored[i].Seq)
			}
		}
	}
}

// TestSealOpsSince checks that SealOpsSince answers every asker as
// OpsSince and EncodeOps do, whatever the cache holds.
func TestSealOpsSince(t *testing.T) {
	tests := []struct {
		name  string
		cache int
		build func(t *testing.T, a *testPeer)
	}{
		{"local commits", 0, func(t *testing.T, a *testPeer) {
			files(t, a, "f", 20, 100)
		}},
		{"several origins", 0, func(t *testing.T, a *testPeer) {
			b, c := newPeer(t, "b", nil), newPeer(t, "c", nil)
			files(t, b, "b", 10, 300)
			files(t, c, "c", 10, 10)
			files(t, a, "a", 5, 50)
			syncTo(t, b, a)
			syncTo(t, c, a)
			files(t, a, "a2", 5, 50)
		}},
		{"gaps filled late", 0, func(t *testing.T, a *testPeer) {
			b := newPeer(t, "b", nil)
			files(t, b, "b", 10, 40)
			ops := opsOf(t, b, "b")
			apply(t, a, ops, func(s uint64) bool { return s != 4 && (s < 7 || s > 12) && s != 20 })
			files(t, a, "a", 3, 10)
			apply(t, a, ops, func(s uint64) bool { return s == 9 || s == 11 }) // out of order
		}},
		{"gaps left", 0, func(t *testing.T, a *testPeer) {
			b := newPeer(t, "b", nil)
			files(t, b, "b", 10, 40)
			ops := opsOf(t, b, "b")
			apply(t, a, ops, func(s uint64) bool { return s%3 != 0 })
			files(t, a, "a", 1, 10)
		}},
		{"evicted", 2 << 10, func(t *testing.T, a *testPeer) {
			b := newPeer(t, "b", nil)
			files(t, b, "b", 10, 300)
			files(t, a, "a", 10, 200)
			syncTo(t, b, a)
			files(t, a, "a2", 3, 200)
		}},
		{"no cache", -1, func(t *testing.T, a *testPeer) {
			b := newPeer(t, "b", nil)
			files(t, b, "b", 5, 300)
			files(t, a, "a", 5, 200)
			syncTo(t, b, a)
		}},
		{"reopened", 0, func(t *testing.T, a *testPeer) {
			b := newPeer(t, "b", nil)
			files(t, b, "b", 10, 30)
			files(t, a, "a", 10, 30)
			syncTo(t, b, a)
			a.reopen(t, false)
			files(t, a, "a2", 4, 30)
			files(t, b, "b2", 4, 30)
			syncTo(t, b, a)
		}},
		{"crashed with ops in the op log", 0, func(t *testing.T, a *testPeer) {
			files(t, a, "a", 10, 30)
			a.reopen(t, true)
			files(t, a, "a2", 4, 30)
		}},
		{"compacted", 0, func(t *testing.T, a *testPeer) {
			b := newPeer(t, "b", nil)
			files(t, b, "b", 6, 30)
			files(t, a, "a", 6, 30)
			syncTo(t, b, a)
			// b holds what a holds at a's clock now: a's horizon.
			a.ObservePeer("b", a.VersionVector(), a.Clock())
			a.time.t += 1e9
			b.time.t += 1e9
			files(t, a, "a2", 4, 30)
			files(t, b, "b2", 4, 30)
			syncTo(t, b, a)
			if err := a.Checkpoint(); err != nil {
				t.Fatal(err)
			}
			a.mu.RLock()
			comp := maps.Clone(a.compacted)
			a.mu.RUnlock()
			if comp["a"] == 0 || comp["b"] == 0 {
				t.Fatalf("compacted %v: the test compacts nothing", comp)
			}
		}},
		{"seqs out of timestamp order", -1, func(t *testing.T, a *testPeer) {
			var ops []Op
			for i, wall := range []int64{500, 300, 400, 100, 600} {
				ops = append(ops, Op{Kind: OpMove, TS: Timestamp{Wall: wall, Peer: "z"}, Origin: "z", Seq: uint64(i + 1),
					Node: NodeID(100 + i), NewParent: RootID, Name: fmt.Sprint("z", i), Inode: InodeID(100 + i), Init: &InodeInit{Type: File}})
			}
			if _, err := a.ApplyRemote(ops); err != nil {
				t.Fatal(err)
			}
			files(t, a, "a", 2, 10)
		}},
		{"snapshot installed", 0, func(t *testing.T, a *testPeer) {
			x := newSyncPeer(t, "x", 0) // the same volume key
			files(t, x, "x", 6, 30)
			files(t, a, "a", 6, 30)
			snap, err := x.Snapshot()
			if err != nil {
				t.Fatal(err)
			}
			if err := a.InstallSnapshot(snap); err != nil {
				t.Fatal(err)
			}
			files(t, a, "a2", 3, 30)
			files(t, x, "x2", 3, 30)
			syncTo(t, x, a)
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := newSyncPeer(t, "a", tt.cache)
			tt.build(t, a)
			checkCache(t, a)
			// The last op written comes from the cache, if any (with
			// the gaps' ops: the asker may lack them).
			vv := a.VersionVector()
			vv["a"]--
			b, err := a.SealOpsSince(vv, 10)
			b.Release()
			if got, want := lastSync.Load(), map[bool]string{true: "sync_cache", false: "sync_store"}[tt.cache >= 0]; err != nil || b.N == 0 || got != want {
				t.Errorf("answer for the last op: %d ops, %v, from %v; want some from %s", b.N, err, got, want)
			}
			for _, vv := range askers(a) {
				for _, max := range []int{1, 2, 7, 1000} {
					sameAnswer(t, a, vv, max)
				}
			}
		})
	}
}

// TestSealOpsSinceCompacted checks that an asker behind the compacted ops
// is told so, by both paths.
func TestSealOpsSinceCompacted(t *testing.T) {
	a := newSyncPeer(t, "a", 0)
	files(t, a, "a", 5, 30)
	a.ObservePeer("b", a.VersionVector(), a.Clock())
	if err := a.Checkpoint(); err != nil {
		t.Fatal(err)
	}
	if _, err := a.SealOpsSince(nil, 10); !errors.Is(err, ErrCompacted) {
		t.Errorf("SealOpsSince(nil) = %v, want ErrCompacted", err)
	}
	if b, err := a.SealOpsSince(a.VersionVector(), 10); err != nil || b.N != 0 || b.More {
		t.Errorf("SealOpsSince(current) = %d ops, more %v, %v", b.N, b.More, err)
	}
	checkCache(t, a)
	if n, _ := a.opc.held(); n != 0 {
		t.Errorf("cache holds %d ops after they were all compacted", n)
	}
}

func cacheOp(origin string, seq uint64, size int) (Op, []byte) {
	op := Op{Kind: OpSetContent, TS: Timestamp{Wall: int64(seq), Peer: origin}, Origin: origin, Seq: seq}
	return op, bytes.Repeat([]byte{byte(seq)}, size)
}

// TestOpCache checks the cache's bookkeeping: floors, order, eviction of
// the oldest first, compaction and forgetting.
func TestOpCache(t *testing.T) {
	type step struct {
		do     string // add, compact, forget
		origin string
		seqs   []uint64
	}
	type ask struct {
		origin string
		from   uint64
		limit  int
		want   []uint64 // nil with !ok: a miss
		more   bool
		ok     bool
	}
	tests := []struct {
		name   string
		budget int
		have   map[string]*seqSet
		steps  []step
		asks   []ask
	}{
		{"in order", 1 << 20, nil, []step{{"add", "a", []uint64{1, 2, 3}}}, []ask{
			{"a", 0, 10, []uint64{1, 2, 3}, false, true},
			{"a", 1, 1, []uint64{2}, true, true},
			{"a", 1, 2, []uint64{2, 3}, false, true},
			{"a", 3, 5, nil, false, true},
			{"a", 9, 5, nil, false, true},
			{"b", 0, 5, nil, false, false},
		}},
		{"floor from have", 1 << 20, map[string]*seqSet{"a": {contig: 4, extra: map[uint64]bool{7: true}}},
			[]step{{"add", "a", []uint64{5, 8}}, {"add", "b", []uint64{1}}}, []ask{
				{"a", 0, 10, nil, false, false},
				{"a", 6, 10, nil, false, false},
				{"a", 7, 10, []uint64{8}, false, true},
				{"b", 0, 10, []uint64{1}, false, true},
			}},
		{"out of order and duplicates", 1 << 20, nil, []step{{"add", "a", []uint64{1, 5, 3, 4, 3, 2, 5}}}, []ask{
			{"a", 0, 10, []uint64{1, 2, 3, 4, 5}, false, true},
			{"a", 2, 2, []uint64{3, 4}, true, true},
		}},
		{"oldest evicted first", 3 * (100 + cachedOpOverhead), nil, []step{
			{"add", "a", []uint64{1}}, {"add", "b", []uint64{1}}, {"add", "a", []uint64{2}}, {"add", "b", []uint64{2}},
		}, []ask{
			{"a", 0, 10, nil, false, false},
			{"a", 1, 10, []uint64{2}, false, true},
			{"b", 0, 10, []uint64{1, 2}, false, true},
		}},
		{"compacted", 1 << 20, nil, []step{{"add", "a", []uint64{1, 2, 3, 4}}, {"compact", "a", []uint64{2}}}, []ask{
			{"a", 1, 10, nil, false, false},
			{"a", 2, 10, []uint64{3, 4}, false, true},
		}},
		{"forgotten after a failed write", 1 << 20, nil, []step{{"add", "a", []uint64{1, 2}}, {"forget", "a", []uint64{4, 3}}, {"forget", "c", []uint64{2}}}, []ask{
			{"a", 2, 10, nil, false, false},
			{"a", 4, 10, nil, false, true},
			{"c", 0, 10, nil, false, false},
			{"c", 2, 10, nil, false, true},
		}},
		{"disabled", -1, nil, []step{{"add", "a", []uint64{1}}}, []ask{
			{"a", 0, 10, nil, false, false},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newOpCache(tt.budget)
			have := tt.have
			if have == nil {
				have = map[string]*seqSet{}
			}
			c.reset(have)
			for _, s := range tt.steps {
				var ops []Op
				var encs [][]byte
				for _, q := range s.seqs {
					op, enc := cacheOp(s.origin, q, 100)
					ops, encs = append(ops, op), append(encs, enc)
				}
				switch s.do {
				case "add":
					c.add(ops, encs)
				case "compact":
					c.compact(Timestamp{Wall: int64(s.seqs[0]), Peer: "zz"})
				case "forget":
					c.forget(ops)
				}
			}
			if c.bytes > max(c.budget, 0) {
				t.Errorf("holds %d bytes, budget %d", c.bytes, c.budget)
			}
			for _, a := range tt.asks {
				got, more, ok := c.get(a.origin, a.from, a.limit, nil)
				var seqs []uint64
				for _, enc := range got {
					seqs = append(seqs, uint64(enc[0]))
				}
				if ok != a.ok || more != a.more || !slices.Equal(seqs, a.want) {
					t.Errorf("get(%s, %d, %d) = %v, more %v, ok %v; want %v, %v, %v", a.origin, a.from, a.limit, seqs, more, ok, a.want, a.more, a.ok)
				}
			}
		})
	}
}

// TestSealOpsSinceConcurrent answers while ops are committed, applied,
// evicted and compacted (run with -race), then checks the answers agree
// with OpsSince once all is quiet.
func TestSealOpsSinceConcurrent(t *testing.T) {
	a := newSyncPeer(t, "a", 8<<10)
	b := newPeer(t, "b", nil)
	files(t, b, "b", 60, 100)
	bops := opsOf(t, b, "b")
	var wg sync.WaitGroup
	stop := make(chan struct{})
	errs := make(chan error, 4)
	wg.Add(3)
	go func() { // local commits
		defer wg.Done()
		for i := range 40 {
			e, err := a.Create(bg, RootID, fmt.Sprint("c", i), File, Attr{Mode: 0o644}, "")
			if err == nil {
				_, err = a.SetContent(bg, e.Inode.ID, Content{Size: 200, Inline: bytes.Repeat([]byte{1}, 200)}, e.Inode.Version)
			}
			if err != nil {
				errs <- err
				return
			}
		}
	}()
	go func() { // remote ops, some out of order
		defer wg.Done()
		rng := rand.New(rand.NewPCG(1, 2))
		for i := 0; i < len(bops); i += 5 {
			page := slices.Clone(bops[i:min(i+5, len(bops))])
			rng.Shuffle(len(page), func(i, j int) { page[i], page[j] = page[j], page[i] })
			if _, err := a.ApplyRemote(page); err != nil {
				errs <- err
				return
			}
		}
	}()
	go func() { // checkpoints, compacting what b reported
		defer wg.Done()
		for range 5 {
			a.ObservePeer("b", a.VersionVector(), a.Clock())
			if err := a.Checkpoint(); err != nil {
				errs <- err
				return
			}
		}
	}()
	var rwg sync.WaitGroup
	rwg.Add(1)
	go func() { // askers
		defer rwg.Done()
		rng := rand.New(rand.NewPCG(3, 4))
		for {
			select {
			case <-stop:
				return
			default:
			}
			vv := a.VersionVector()
			for o := range vv {
				vv[o] -= min(vv[o], rng.Uint64N(20))
			}
			bt, err := a.SealOpsSince(vv, 1+rng.IntN(30))
			if errors.Is(err, ErrCompacted) {
				continue
			}
			if err == nil && bt.N > 0 {
				err = checkBatch(a, bt, vv)
			}
			bt.Release()
			if err != nil {
				errs <- err
				return
			}
		}
	}()
	wg.Wait()
	close(stop)
	rwg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	checkCache(t, a)
	for _, vv := range askers(a) {
		for _, max := range []int{1, 7, 1000} {
			sameAnswer(t, a, vv, max)
		}
	}
}

// checkBatch checks that a batch decodes to ops each origin of which
// ascends in seq from above vv.
func checkBatch(p *testPeer, b Batch, vv map[string]uint64) error {
	ops, err := p.DecodeOps(b.Sealed)
	if err != nil {
		return err
	}
	if len(ops) != b.N {
		return fmt.Errorf("batch of %d ops decodes to %d", b.N, len(ops))
	}
	last := maps.Clone(vv)
	if last == nil {
		last = map[string]uint64{}
	}
	for _, op := range ops {
		if op.Seq <= last[op.Origin] {
			return fmt.Errorf("op %s/%d after %d", op.Origin, op.Seq, last[op.Origin])
		}
		last[op.Origin] = op.Seq
	}
	return nil
}
