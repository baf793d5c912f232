package placement

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
)

// mkMembers returns count members "m00".., weight 1, zone "".
func mkMembers(count int) []Member {
	ms := make([]Member, count)
	for j := range ms {
		ms[j] = Member{ID: fmt.Sprintf("m%02d", j), Weight: 1}
	}
	return ms
}

func ids(ms []Member) []string {
	out := make([]string, len(ms))
	for i, m := range ms {
		out[i] = m.ID
	}
	return out
}

func randKey(r *rand.Rand) []byte {
	k := make([]byte, 32)
	for i := range k {
		k[i] = byte(r.Uint32())
	}
	return k
}

func TestLn(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for range 200000 {
		h := r.Uint64()
		x := unit(h)
		got, want := ln(x), math.Log(x)
		if d := math.Abs(got-want) / math.Abs(want); d > 1e-15 {
			t.Fatalf("ln(%v) = %v, math.Log = %v, rel err %g", x, got, want, d)
		}
	}
	for _, x := range []float64{unit(0), unit(math.MaxUint64), 0.5, 0.70710678118654752, 0.70710678118654757, 1 - 1.0/(1<<52)} {
		got, want := ln(x), math.Log(x)
		if d := math.Abs(got-want) / math.Abs(want); d > 1e-15 {
			t.Errorf("ln(%v) = %v, math.Log = %v, rel err %g", x, got, want, d)
		}
	}
	if got := unit(math.MaxUint64); !(got < 1) {
		t.Errorf("unit(max) = %v, want < 1", got)
	}
	if got := unit(0); !(got > 0) {
		t.Errorf("unit(0) = %v, want > 0", got)
	}
}

func TestDeterminismShuffled(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	base := []Member{
		{"a", "z1", 1}, {"b", "z1", 2}, {"c", "z2", 1}, {"d", "z2", 3},
		{"e", "z3", 1}, {"f", "z3", 1}, {"g", "", 0.5}, {"h", "", 1},
	}
	for _, n := range []int{1, 3, 6, 8, 11} {
		t.Run(fmt.Sprintf("n=%d", n), func(t *testing.T) {
			for range 200 {
				key := randKey(r)
				want := ids(Place(key, n, base))
				sh := slices.Clone(base)
				// duplicate an entry, then shuffle
				sh = append(sh, base[r.IntN(len(base))])
				r.Shuffle(len(sh), func(i, j int) { sh[i], sh[j] = sh[j], sh[i] })
				if got := ids(Place(key, n, sh)); !slices.Equal(got, want) {
					t.Fatalf("key %x: shuffled placement %v, want %v", key, got, want)
				}
				for i := range n {
					a, b := ids(Rank(key, i, base)), ids(Rank(key, i, sh))
					if !slices.Equal(a, b) {
						t.Fatalf("key %x shard %d: shuffled rank %v, want %v", key, i, b, a)
					}
				}
			}
		})
	}
}

func TestDuplicateIDsCanonical(t *testing.T) {
	a := []Member{{"x", "z1", 1}, {"x", "z2", 5}, {"y", "z1", 1}}
	b := []Member{{"y", "z1", 1}, {"x", "z2", 5}, {"x", "z1", 1}}
	key := []byte("dup")
	pa, pb := Place(key, 2, a), Place(key, 2, b)
	if !slices.Equal(pa, pb) {
		t.Errorf("Place with reordered duplicates: %v vs %v", pa, pb)
	}
	for _, m := range pa {
		if m.ID == "x" {
			if got, want := m, (Member{"x", "z2", 5}); got != want {
				t.Errorf("kept duplicate = %v, want %v", got, want)
			}
		}
	}
	if got, want := len(Rank(key, 0, a)), 2; got != want {
		t.Errorf("len(Rank) with duplicate = %d, want %d", got, want)
	}
}

// TestGolden pins the placement function: if it fails, the hash, score or
// constraint order changed, which would move stored data on upgrade.
func TestGolden(t *testing.T) {
	ms := []Member{
		{"peer-a", "rack1", 1}, {"peer-b", "rack1", 1}, {"peer-c", "rack2", 2},
		{"peer-d", "rack2", 1}, {"peer-e", "rack3", 1}, {"peer-f", "rack3", 4},
		{"peer-g", "rack3", 1}, {"peer-h", "", 1},
	}
	key32 := make([]byte, 32)
	for i := range key32 {
		key32[i] = byte(i)
	}
	tests := []struct {
		key  []byte
		n    int
		want string
	}{
		{[]byte("hello"), 6, "peer-b peer-d peer-c peer-f peer-e peer-h"},
		{key32, 6, "peer-d peer-f peer-b peer-h peer-g peer-c"},
		{key32, 3, "peer-a peer-f peer-c"},
		{[]byte{}, 10, "peer-a peer-h peer-h peer-e peer-d peer-a peer-g peer-f peer-b peer-c"},
		{[]byte("chunk-0001"), 12, "peer-e peer-d peer-h peer-d peer-f peer-a peer-g peer-g peer-b peer-c peer-a peer-h"},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%x/%d", tt.key, tt.n), func(t *testing.T) {
			if got, want := strings.Join(ids(Place(tt.key, tt.n, ms)), " "), tt.want; got != want {
				t.Errorf("Place = %q, want %q", got, want)
			}
		})
	}
	if got, want := strings.Join(ids(Rank(key32, 2, ms)), " "), "peer-f peer-c peer-d peer-h peer-b peer-e peer-g peer-a"; got != want {
		t.Errorf("Rank = %q, want %q", got, want)
	}
}

// checkStripe verifies the member and zone bounds of one placement.
func checkStripe(t *testing.T, key []byte, n int, members []Member, got []Member) {
	t.Helper()
	if len(got) != n {
		t.Fatalf("len(Place) = %d, want %d", len(got), n)
	}
	p := prepare(members)
	L := len(p.ms)
	per := map[string]int{}
	for _, m := range got {
		per[m.ID]++
	}
	lo, hi := n/L, (n+L-1)/L
	if L >= n {
		lo, hi = 0, 1
	}
	for _, m := range p.ms {
		if c := per[m.ID]; c < lo || c > hi {
			t.Fatalf("key %x: member %s holds %d shards, want %d..%d (%v)", key, m.ID, c, lo, hi, ids(got))
		}
	}
}

func TestDistinctAndEvenReuse(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	for _, tt := range []struct{ members, n int }{
		{1, 6}, {2, 6}, {3, 6}, {4, 6}, {5, 6}, {6, 6}, {7, 6}, {10, 6}, {3, 7}, {4, 14}, {20, 3}, {1, 1},
	} {
		t.Run(fmt.Sprintf("members=%d/n=%d", tt.members, tt.n), func(t *testing.T) {
			ms := mkMembers(tt.members)
			for j := range ms {
				ms[j].Weight = float64(1 + j%3) // unequal weights must not break bounds
			}
			for range 500 {
				key := randKey(r)
				got := Place(key, tt.n, ms)
				checkStripe(t, key, tt.n, ms, got)
				if tt.members >= tt.n {
					seen := map[string]bool{}
					for _, m := range got {
						if seen[m.ID] {
							t.Fatalf("key %x: %s holds two shards: %v", key, m.ID, ids(got))
						}
						seen[m.ID] = true
					}
				}
			}
		})
	}
}

// TestPlaceIsStable checks the conflict rule without zones: for every
// shard, each member ranked above its holder in Rank holds another shard
// for which it has a higher score (no member and shard would both rather
// be paired with each other).
func TestPlaceIsStable(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 8))
	ms := mkMembers(10)
	for j := range ms {
		ms[j].Weight = float64(1 + j)
	}
	w := map[string]float64{}
	for _, m := range ms {
		w[m.ID] = m.Weight
	}
	pairScore := func(key []byte, i int, id string) float64 {
		return score(pairHash(shardSeed(keyHash(key), i), memberHash(id)), w[id])
	}
	for range 500 {
		key := randKey(r)
		got := Place(key, 6, ms)
		holds := map[string]int{}
		for i, m := range got {
			holds[m.ID] = i
		}
		for i, m := range got {
			if top := Rank(key, i, ms)[0]; !slices.Contains(ids(got), top.ID) {
				t.Fatalf("key %x shard %d: top-ranked %s holds nothing", key, i, top.ID)
			}
			for _, c := range Rank(key, i, ms) {
				if c.ID == m.ID {
					break
				}
				i2, ok := holds[c.ID]
				if !ok || pairScore(key, i2, c.ID) <= pairScore(key, i, c.ID) {
					t.Fatalf("key %x: shard %d held by %s, but %s ranks higher and is free or prefers it", key, i, m.ID, c.ID)
				}
			}
		}
	}
}

// moved counts (key, shard) placements that differ between two member sets.
func moved(keys [][]byte, n int, before, after []Member) (changed, total int) {
	for _, k := range keys {
		a, b := Place(k, n, before), Place(k, n, after)
		for i := range n {
			if a[i].ID != b[i].ID {
				changed++
			}
			total++
		}
	}
	return changed, total
}

func TestMovement(t *testing.T) {
	r := rand.New(rand.NewPCG(9, 10))
	keys := make([][]byte, 20000)
	for i := range keys {
		keys[i] = randKey(r)
	}
	ten := mkMembers(10)
	eleven := append(slices.Clone(ten), Member{ID: "new", Weight: 1})
	nine := slices.Clone(ten[1:])
	tests := []struct {
		name          string
		before, after []Member
		ideal         float64
	}{
		{"add 11th", ten, eleven, 1.0 / 11},
		{"remove 1 of 10", ten, nine, 1.0 / 10},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, tot := moved(keys, 6, tt.before, tt.after)
			f := float64(c) / float64(tot)
			t.Logf("%s: %d of %d (key, shard) placements moved: %.4f (ideal %.4f)", tt.name, c, tot, f, tt.ideal)
			if f < 0.06 || f > 0.14 {
				t.Errorf("moved fraction = %.4f, want in [0.06, 0.14]", f)
			}
		})
	}
	// For contrast: zoned members (3 zones), add one member to zone b.
	zoned := make([]Member, 9)
	for j := range zoned {
		zoned[j] = Member{ID: fmt.Sprintf("z%d", j), Zone: string(rune('a' + j%3)), Weight: 1}
	}
	c, tot := moved(keys, 6, zoned, append(slices.Clone(zoned), Member{ID: "zn", Zone: "b", Weight: 1}))
	t.Logf("zoned 9->10 members: moved %.4f (ideal for zone b's shards: 1/4 of 1/3 = %.4f)", float64(c)/float64(tot), 1.0/12)
}

func TestFairness(t *testing.T) {
	r := rand.New(rand.NewPCG(11, 12))
	const nkeys = 20000
	tests := []struct {
		name    string
		members []Member
		n       int
	}{
		{"10 equal n=6", mkMembers(10), 6},
		{"20 equal n=3", mkMembers(20), 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			count := map[string]int{}
			for range nkeys {
				for _, m := range Place(randKey(r), tt.n, tt.members) {
					count[m.ID]++
				}
			}
			fair := float64(nkeys*tt.n) / float64(len(tt.members))
			worst := 0.0
			for _, m := range tt.members {
				dev := float64(count[m.ID])/fair - 1
				worst = max(worst, math.Abs(dev))
				if math.Abs(dev) > 0.15 {
					t.Errorf("member %s: %d shards, fair %.0f (%+.1f%%)", m.ID, count[m.ID], fair, 100*dev)
				}
			}
			t.Logf("%s: worst deviation from fair share %.2f%%", tt.name, 100*worst)
		})
	}

	// Weighted: one member of weight 2 among 19 of weight 1, n=3.
	for _, n := range []int{1, 3} {
		t.Run(fmt.Sprintf("weight 2 among 20, n=%d", n), func(t *testing.T) {
			ms := mkMembers(20)
			ms[7].Weight = 2
			count := map[string]int{}
			for range nkeys {
				for _, m := range Place(randKey(r), n, ms) {
					count[m.ID]++
				}
			}
			other := 0
			for _, m := range ms {
				if m.ID != ms[7].ID {
					other += count[m.ID]
				}
			}
			ratio := float64(count[ms[7].ID]) / (float64(other) / 19)
			t.Logf("n=%d: weight-2 member got %d shards, weight-1 average %.1f: ratio %.3f", n, count[ms[7].ID], float64(other)/19, ratio)
			if ratio < 1.75 || ratio > 2.25 {
				t.Errorf("ratio = %.3f, want about 2", ratio)
			}
		})
	}
}

func TestZones(t *testing.T) {
	r := rand.New(rand.NewPCG(13, 14))
	zoneCount := func(got []Member) map[string]int {
		c := map[string]int{}
		for _, m := range got {
			c[m.Zone]++
		}
		return c
	}
	t.Run("3x3 n=6", func(t *testing.T) {
		var ms []Member
		for z := range 3 {
			for j := range 3 {
				ms = append(ms, Member{ID: fmt.Sprintf("z%d-m%d", z, j), Zone: fmt.Sprintf("zone%d", z), Weight: float64(1 + j)})
			}
		}
		for range 2000 {
			key := randKey(r)
			got := Place(key, 6, ms)
			checkStripe(t, key, 6, ms, got)
			c := zoneCount(got)
			for z := range 3 {
				if got, want := c[fmt.Sprintf("zone%d", z)], 2; got != want {
					t.Fatalf("key %x: zone%d holds %d shards, want %d", key, z, got, want)
				}
			}
		}
	})
	t.Run("5+1 n=6 distinct wins", func(t *testing.T) {
		ms := []Member{{ID: "solo", Zone: "small", Weight: 1}}
		for j := range 5 {
			ms = append(ms, Member{ID: fmt.Sprintf("big%d", j), Zone: "big", Weight: 1})
		}
		for range 2000 {
			key := randKey(r)
			got := Place(key, 6, ms)
			checkStripe(t, key, 6, ms, got)
			c := zoneCount(got)
			if c["small"] != 1 || c["big"] != 5 {
				t.Fatalf("key %x: zones %v, want small 1 big 5", key, c)
			}
		}
	})
	t.Run("5+1 n=4 zone quota 2", func(t *testing.T) {
		ms := []Member{{ID: "solo", Zone: "small", Weight: 1}}
		for j := range 5 {
			ms = append(ms, Member{ID: fmt.Sprintf("big%d", j), Zone: "big", Weight: 1})
		}
		for range 2000 {
			key := randKey(r)
			got := Place(key, 4, ms)
			c := zoneCount(got)
			// small can hold only 1 distinct shard; big takes the rest.
			if c["small"] != 1 || c["big"] != 3 {
				t.Fatalf("key %x: zones %v, want small 1 big 3", key, c)
			}
		}
	})
	t.Run("3 zones n=4 no zone starved", func(t *testing.T) {
		var ms []Member
		for z := range 3 {
			for j := range 4 {
				ms = append(ms, Member{ID: fmt.Sprintf("z%d-m%d", z, j), Zone: fmt.Sprintf("zone%d", z), Weight: 1})
			}
		}
		for range 2000 {
			key := randKey(r)
			c := zoneCount(Place(key, 4, ms))
			for z := range 3 {
				if v := c[fmt.Sprintf("zone%d", z)]; v < 1 || v > 2 {
					t.Fatalf("key %x: zones %v, want each 1..2", key, c)
				}
			}
		}
	})
	t.Run("2 zones 2 members n=6 reuse", func(t *testing.T) {
		// 1 member in each of 2 zones and 1 more in zone a: 3 members,
		// each holds 2; zone a holds 4, zone b 2.
		ms := []Member{{"a1", "a", 1}, {"a2", "a", 1}, {"b1", "b", 1}}
		for range 500 {
			key := randKey(r)
			got := Place(key, 6, ms)
			checkStripe(t, key, 6, ms, got)
			c := zoneCount(got)
			if c["a"] != 4 || c["b"] != 2 {
				t.Fatalf("key %x: zones %v, want a 4 b 2", key, c)
			}
		}
	})
	t.Run("empty zone name is a zone", func(t *testing.T) {
		ms := []Member{{"x1", "", 1}, {"x2", "", 1}, {"y1", "y", 1}, {"y2", "y", 1}}
		for range 500 {
			c := zoneCount(Place(randKey(r), 2, ms))
			if c[""] != 1 || c["y"] != 1 {
				t.Fatalf("zones %v, want one shard each in \"\" and y", c)
			}
		}
	})
}

func TestEdges(t *testing.T) {
	key := []byte("edge")
	ms := mkMembers(4)
	if got := Place(key, 0, ms); got != nil {
		t.Errorf("Place(n=0) = %v, want nil", got)
	}
	if got := Place(key, -1, ms); got != nil {
		t.Errorf("Place(n=-1) = %v, want nil", got)
	}
	if got := Place(key, 3, nil); got != nil {
		t.Errorf("Place(no members) = %v, want nil", got)
	}
	if got := Rank(key, 0, nil); got != nil {
		t.Errorf("Rank(no members) = %v, want nil", got)
	}
	if got, want := len(Place(nil, 3, ms)), 3; got != want {
		t.Errorf("len(Place(nil key)) = %d, want %d", got, want)
	}
	if got, want := len(Rank(key, -5, ms)), 4; got != want {
		t.Errorf("len(Rank(index -5)) = %d, want %d", got, want)
	}

	// Odd weights are treated as MinWeight: the member is still used when
	// needed, but otherwise loses to ordinary members.
	for _, w := range []float64{0, -1, math.NaN(), math.Inf(1), math.Inf(-1)} {
		t.Run(fmt.Sprintf("weight=%v", w), func(t *testing.T) {
			ms := mkMembers(4)
			ms[2].Weight = w
			r := rand.New(rand.NewPCG(15, 16))
			wins := 0
			for range 2000 {
				k := randKey(r)
				got := Place(k, 3, ms)
				checkStripe(t, k, 3, ms, got)
				for _, m := range got {
					if m.ID == ms[2].ID {
						wins++
					}
				}
				if got, want := len(Place(k, 4, ms)), 4; got != want {
					t.Fatalf("len = %d, want %d", got, want)
				}
				if !slices.Contains(ids(Place(k, 4, ms)), ms[2].ID) {
					t.Fatalf("minimum-weight member not used when needed")
				}
			}
			if wins != 0 {
				t.Errorf("minimum-weight member won %d of 2000 stripes among weight-1 members", wins)
			}
		})
	}
	t.Run("all weights invalid", func(t *testing.T) {
		ms := []Member{{"a", "", 0}, {"b", "", math.NaN()}, {"c", "", -3}}
		got := Place(key, 2, ms)
		checkStripe(t, key, 2, ms, got)
	})
	t.Run("huge weight", func(t *testing.T) {
		ms := mkMembers(3)
		ms[0].Weight = math.MaxFloat64
		ms[1].Weight = math.MaxFloat64
		got := Place(key, 3, ms)
		checkStripe(t, key, 3, ms, got)
	})
}

func BenchmarkPlace(b *testing.B) {
	ms := mkMembers(10)
	for j := range ms {
		ms[j].Zone = fmt.Sprintf("zone%d", j%3)
		ms[j].Weight = float64(1+j%4) * 1e12
	}
	r := rand.New(rand.NewPCG(1, 1))
	keys := make([][]byte, 1024)
	for i := range keys {
		keys[i] = randKey(r)
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		Place(keys[i&1023], 6, ms)
		i++
	}
}

func BenchmarkRank(b *testing.B) {
	ms := mkMembers(10)
	key := make([]byte, 32)
	b.ReportAllocs()
	for b.Loop() {
		Rank(key, 3, ms)
	}
}
