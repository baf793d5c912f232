package namespace

import (
	"fmt"
	"math/rand/v2"
	"testing"
	"time"
)

// liveNodes lists every live node of a peer (files and dirs), root first.
func liveNodes(t testing.TB, ns *Namespace) (dirs, all []Entry) {
	t.Helper()
	root, _ := ns.Get(RootID)
	dirs = []Entry{root}
	for i := 0; i < len(dirs); i++ {
		es, err := ns.ReadDir(dirs[i].Node)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range es {
			all = append(all, e)
			if e.Inode.Type == Dir {
				dirs = append(dirs, e)
			}
		}
	}
	return dirs, all
}

var opNames = []string{"a", "b", "c.txt", "d"}

// randomOp performs one random write on p through the public API. Errors
// that the local view justifies are fine.
func randomOp(t testing.TB, rng *rand.Rand, p *testPeer) {
	t.Helper()
	dirs, all := liveNodes(t, p.Namespace)
	dir := dirs[rng.IntN(len(dirs))]
	name := opNames[rng.IntN(len(opNames))]
	var err error
	var pick Entry
	if len(all) > 0 {
		pick = all[rng.IntN(len(all))]
	}
	switch k := rng.IntN(10); {
	case k < 2 || len(all) == 0:
		typ := []Type{File, Dir, Dir, Symlink}[rng.IntN(4)]
		_, err = p.Create(bg, dir.Node, name, typ, Attr{Mode: 0o640}, "t")
	case k < 4:
		err = p.Rename(bg, pick.Parent, pick.Name, dir.Node, name, rng.IntN(2) == 0)
	case k < 5:
		err = p.Remove(bg, pick.Parent, pick.Name, pick.Inode.Type == Dir)
	case k < 7:
		if pick.Inode.Type == File {
			base := pick.Inode.Version
			if rng.IntN(4) == 0 {
				base = Timestamp{} // a writer that opened long ago
			}
			_, err = p.SetContent(bg, pick.Inode.ID, Content{Size: 3, Inline: []byte(fmt.Sprint(rng.IntN(1000)))}, base)
		}
	case k < 8:
		_, err = p.SetAttr(bg, pick.Inode.ID, AttrChange{Mask: SetMode | SetUid, Mode: uint32(rng.IntN(0o777)), Uid: uint32(rng.IntN(3))})
	case k < 9:
		if pick.Inode.Type != Dir {
			_, err = p.Link(bg, pick.Node, dir.Node, name)
		}
	default:
		err = p.SetXattr(bg, pick.Inode.ID, "user."+name, []byte{byte(rng.IntN(9))})
	}
	if err != nil && !isAny(err, ErrExist, ErrNotEmpty, ErrInvalid, ErrNotDir, ErrIsDir, ErrNotExist) {
		t.Fatalf("%s: unexpected error %v", p.cfg.Peer, err)
	}
}

func TestConvergence(t *testing.T) {
	seeds := 200
	if testing.Short() {
		seeds = 30
	}
	for seed := 0; seed < seeds; seed++ {
		t.Run(fmt.Sprint("seed", seed), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(uint64(seed), 7))
			n := 3 + rng.IntN(3)
			ps := make([]*testPeer, n)
			for i := range ps {
				ps[i] = newPeer(t, fmt.Sprintf("peer-%d", i), rand.New(rand.NewPCG(uint64(seed), uint64(i))))
				ps[i].time.t += int64(rng.IntN(5000)) * int64(time.Millisecond) // skew
			}
			steps := 40 + rng.IntN(40)
			for s := 0; s < steps; s++ {
				p := ps[rng.IntN(n)]
				p.time.t += int64(rng.IntN(3)) * int64(time.Millisecond)
				randomOp(t, rng, p)
				if rng.IntN(8) == 0 { // partial anti-entropy between two peers
					a, b := ps[rng.IntN(n)], ps[rng.IntN(n)]
					if a != b {
						syncTo(t, a, b)
					}
				}
			}
			// Final delivery: every op to every peer, in a different random
			// order, in random batches, with duplicates.
			all := map[Timestamp]Op{}
			for _, p := range ps {
				ops, _, err := p.OpsSince(nil, 1<<20)
				if err != nil {
					t.Fatal(err)
				}
				for _, op := range ops {
					all[op.TS] = op
				}
			}
			var list []Op
			for _, op := range all {
				list = append(list, op)
			}
			for _, p := range ps {
				ops := append([]Op(nil), list...)
				for i := 0; i < len(list)/4; i++ {
					ops = append(ops, list[rng.IntN(len(list))])
				}
				rng.Shuffle(len(ops), func(i, j int) { ops[i], ops[j] = ops[j], ops[i] })
				for len(ops) > 0 {
					k := min(len(ops), 1+rng.IntN(10))
					if _, err := p.ApplyRemote(ops[:k]); err != nil {
						t.Fatal(err)
					}
					ops = ops[k:]
				}
			}
			sameViews(t, ps...)
			if testing.Verbose() && seed < 3 {
				t.Logf("%d ops, view:\n%s", len(all), view(t, ps[0].Namespace))
			}
			for _, p := range ps {
				checkTree(t, p.Namespace, all)
			}
			// Restart one peer (checkpoint + replay) and one crash.
			ps[0].reopen(t, false)
			ps[1].reopen(t, true)
			sameViews(t, ps...)
		})
	}
}

// TestCycle is the case of Kleppmann et al.: A moves /a under /b while B
// moves /b under /a.
func TestCycle(t *testing.T) {
	for _, aFirst := range []bool{true, false} {
		t.Run(fmt.Sprint("aFirst=", aFirst), func(t *testing.T) {
			a, b := newPeer(t, "A", nil), newPeer(t, "B", nil)
			mustCreate(t, a.Namespace, RootID, "a", Dir)
			mustCreate(t, a.Namespace, RootID, "b", Dir)
			syncAll(t, a, b)
			if aFirst {
				b.time.t += int64(time.Second)
			} else {
				a.time.t += int64(time.Second)
			}
			if err := a.Rename(bg, RootID, "a", mustEntry(t, a, "/b").Node, "a", false); err != nil {
				t.Fatal(err)
			}
			if err := b.Rename(bg, RootID, "b", mustEntry(t, b, "/a").Node, "b", false); err != nil {
				t.Fatal(err)
			}
			syncAll(t, a, b)
			sameViews(t, a, b)
			want := "/b/a"
			if !aFirst {
				want = "/a/b"
			}
			mustEntry(t, a, want)
			if got := names(t, a.Namespace, RootID); len(got) != 1 {
				t.Errorf("root = %v, want one directory", got)
			}
		})
	}
}
