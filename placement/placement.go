package placement

import (
	"cmp"
	"math"
	"slices"
)

// Member is one live peer that can hold shards.
type Member struct {
	// ID is the peer's stable identifier. Members are identified, sorted
	// and deduplicated by ID alone.
	ID string
	// Zone is the peer's failure zone. Shards of one stripe are spread
	// over zones as evenly as the members allow. The empty string is a
	// zone like any other (named "").
	Zone string
	// Weight is the peer's relative capacity, for example its free bytes;
	// only ratios between members matter. A weight that is not a positive
	// finite number (zero, negative, NaN, ±Inf) is treated as MinWeight.
	Weight float64
}

// MinWeight is the weight used for members whose Weight is zero, negative,
// NaN or infinite. Such a member still takes part in placement, so it is
// used when distinct holders are needed, but against members of ordinary
// weight (1 or more) it practically never wins a shard on its own merit.
const MinWeight = 1e-9

// sanitizeWeight maps an arbitrary Weight to the positive finite weight
// used for scoring.
func sanitizeWeight(w float64) float64 {
	if w > 0 && !math.IsInf(w, 1) { // false for NaN
		return w
	}
	return MinWeight
}

// prepared is a member set in canonical form: deduplicated, sorted by ID,
// with sanitised weights, member hashes and dense zone indexes.
type prepared struct {
	ms    []Member
	w     []float64
	mh    []uint64
	zone  []int // zone index of each member, zones sorted by name
	zsize []int // number of members per zone
}

// prepare canonicalises members. Input order never matters: the members
// are sorted by ID, and of several entries with the same ID only one is
// kept, chosen by content (largest sanitised weight, then smallest zone
// name) rather than by position.
func prepare(members []Member) prepared {
	ms := members
	if !strictlySortedByID(ms) {
		ms = slices.Clone(members)
		slices.SortFunc(ms, func(a, b Member) int {
			if c := cmp.Compare(a.ID, b.ID); c != 0 {
				return c
			}
			if c := cmp.Compare(sanitizeWeight(b.Weight), sanitizeWeight(a.Weight)); c != 0 {
				return c
			}
			return cmp.Compare(a.Zone, b.Zone)
		})
		ms = slices.CompactFunc(ms, func(a, b Member) bool { return a.ID == b.ID })
	}

	L := len(ms)
	w := make([]float64, L)
	mh := make([]uint64, L)
	zone := make([]int, L)
	p := prepared{ms: ms, w: w, mh: mh, zone: zone}
	// Zones are numbered in order of first appearance in the ID-sorted
	// list; the numbering is internal bookkeeping and never affects which
	// member wins.
	var names []string
	var index map[string]int
	if L > 32 {
		index = make(map[string]int)
	}
	for j, m := range ms {
		w[j] = sanitizeWeight(m.Weight)
		mh[j] = memberHash(m.ID)
		z := -1
		if index != nil {
			if v, ok := index[m.Zone]; ok {
				z = v
			}
		} else {
			z = slices.Index(names, m.Zone)
		}
		if z < 0 {
			z = len(names)
			names = append(names, m.Zone)
			p.zsize = append(p.zsize, 0)
			if index != nil {
				index[m.Zone] = z
			}
		}
		zone[j] = z
		p.zsize[z]++
	}
	return p
}

// strictlySortedByID reports whether ms is sorted by ID with no duplicate
// IDs, the common case, which needs neither a copy nor a sort.
func strictlySortedByID(ms []Member) bool {
	for i := 1; i < len(ms); i++ {
		if ms[i-1].ID >= ms[i].ID {
			return false
		}
	}
	return true
}

// better reports whether candidate (s1, h1, j1) outranks (s2, h2, j2):
// higher score first, then higher hash, then smaller ID (the index into
// the ID-sorted member list), so rankings are total and deterministic.
func better(s1 float64, h1 uint64, j1 int, s2 float64, h2 uint64, j2 int) bool {
	if s1 != s2 {
		return s1 > s2
	}
	if h1 != h2 {
		return h1 > h2
	}
	return j1 < j2
}

// Rank returns all members ordered by their rendezvous score for shard
// index of the chunk key, best first: the order in which a reader should
// ask peers for that shard. Members are deduplicated by ID as in Place.
// Rank ignores the distinctness and zone constraints of Place, so the
// holder Place chooses for a shard is usually, but not always, Rank's
// first member; members ranked above it were taken by shards they score
// higher for, or excluded by the constraints. It returns nil if members
// is empty.
func Rank(key []byte, index int, members []Member) []Member {
	if len(members) == 0 {
		return nil
	}
	p := prepare(members)
	seed := shardSeed(keyHash(key), index)
	type cand struct {
		s float64
		h uint64
		j int
	}
	cs := make([]cand, len(p.ms))
	for j := range p.ms {
		h := pairHash(seed, p.mh[j])
		cs[j] = cand{score(h, p.w[j]), h, j}
	}
	slices.SortFunc(cs, func(a, b cand) int {
		if better(a.s, a.h, a.j, b.s, b.h, b.j) {
			return -1
		}
		if better(b.s, b.h, b.j, a.s, a.h, a.j) {
			return 1
		}
		return 0
	})
	out := make([]Member, len(cs))
	for i, c := range cs {
		out[i] = p.ms[c.j]
	}
	return out
}

// betterPair orders (shard, member) pairs: as better, then the smaller
// shard index.
func betterPair(s1 float64, h1 uint64, i1, j1 int, s2 float64, h2 uint64, i2, j2 int) bool {
	if s1 == s2 && h1 == h2 && j1 == j2 {
		return i1 < i2
	}
	return better(s1, h1, j1, s2, h2, j2)
}

// clamp limits v to [lo, hi].
func clamp(v, lo, hi int) int {
	return max(lo, min(v, hi))
}

// Place returns, for each shard index 0..n-1 of the chunk key, the member
// that holds it. See the package documentation for the algorithm and the
// guarantees. The returned Members are copies of the canonical input
// entries (with their Weight as given). Place returns nil if n <= 0 or
// members is empty.
func Place(key []byte, n int, members []Member) []Member {
	if n <= 0 || len(members) == 0 {
		return nil
	}
	p := prepare(members)
	L := len(p.ms)
	nz := len(p.zsize)

	// Per-member bounds: distinct holders when there are enough members,
	// otherwise every member holds floor(n/L) or ceil(n/L) shards.
	mlo, mhi := 0, 1
	if L < n {
		mlo, mhi = n/L, (n+L-1)/L
	}

	// Per-zone bounds, by water-filling: zone z can hold between
	// low = size*mlo and high = size*mhi shards because of the member
	// bounds; find the smallest level q with sum clamp(q, low, high) >= n.
	// Each zone then holds clamp(q-1, ...) to clamp(q, ...) shards, the
	// most even spread the member bounds permit.
	level := func(q int) int {
		t := 0
		for _, c := range p.zsize {
			t += clamp(q, c*mlo, c*mhi)
		}
		return t
	}
	qlo, qhi := 0, n // level(n) >= n because sum(size*mhi) = L*mhi >= n
	for qlo < qhi {
		mid := int(uint(qlo+qhi) >> 1)
		if level(mid) >= n {
			qhi = mid
		} else {
			qlo = mid + 1
		}
	}
	q := qlo

	// State of the greedy assignment. For zone z the shards still to be
	// placed there must number between alo(z) and ahi(z):
	//   alo = max(zlo - zcnt, deficit of its members below mlo)
	//   ahi = min(zhi - zcnt, spare room of its members below mhi)
	// and the remaining shard count must lie between their sums. Members
	// nest inside zones, so these interval conditions are exactly
	// feasibility; checking them for each tentative assignment means the
	// greedy never paints itself into a corner.
	zlo := make([]int, nz)
	zhi := make([]int, nz)
	zcnt := make([]int, nz)
	def := make([]int, nz)
	room := make([]int, nz)
	alo := make([]int, nz)
	ahi := make([]int, nz)
	sumLo, sumHi := 0, 0
	for z, c := range p.zsize {
		zlo[z] = clamp(q-1, c*mlo, c*mhi)
		zhi[z] = clamp(q, c*mlo, c*mhi)
		def[z] = c * mlo
		room[z] = c * mhi
		alo[z] = max(zlo[z], def[z])
		ahi[z] = min(zhi[z], room[z])
		sumLo += alo[z]
		sumHi += ahi[z]
	}
	cnt := make([]int, L)

	// Scores of every (shard, member) pair.
	seed0 := keyHash(key)
	sc := make([]float64, n*L)
	hs := make([]uint64, n*L)
	for i := range n {
		seed := shardSeed(seed0, i)
		for j := range L {
			h := pairHash(seed, p.mh[j])
			hs[i*L+j] = h
			sc[i*L+j] = score(h, p.w[j])
		}
	}

	// Commit, n times, the best-scoring pair of an unplaced shard and a
	// member that keeps the assignment feasible.
	out := make([]Member, n)
	done := make([]bool, n)
	for placed := range n {
		rest := n - placed - 1 // shards left after this one
		bi, bj := -1, -1
		var bdef, broom, bzcnt int
		for j := range L {
			if cnt[j] >= mhi {
				continue
			}
			z := p.zone[j]
			d := def[z]
			if cnt[j] < mlo {
				d--
			}
			r := room[z] - 1
			zc := zcnt[z] + 1
			lo := max(zlo[z]-zc, d)
			hi := min(zhi[z]-zc, r)
			if lo > hi || sumLo-alo[z]+lo > rest || sumHi-ahi[z]+hi < rest {
				continue
			}
			for i := range n {
				if done[i] {
					continue
				}
				if bi < 0 || betterPair(sc[i*L+j], hs[i*L+j], i, j, sc[bi*L+bj], hs[bi*L+bj], bi, bj) {
					bi, bj = i, j
					bdef, broom, bzcnt = d, r, zc
				}
			}
		}
		// bi >= 0: the state before this step is feasible, so some member
		// keeps it feasible (one a feasible completion would use).
		z := p.zone[bj]
		cnt[bj]++
		def[z], room[z], zcnt[z] = bdef, broom, bzcnt
		sumLo -= alo[z]
		sumHi -= ahi[z]
		alo[z] = max(zlo[z]-zcnt[z], def[z])
		ahi[z] = min(zhi[z]-zcnt[z], room[z])
		sumLo += alo[z]
		sumHi += ahi[z]
		out[bi] = p.ms[bj]
		done[bi] = true
	}
	return out
}
