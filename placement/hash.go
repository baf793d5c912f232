package placement

import "math"

// The hashing and scoring primitives below are the part of the placement
// that every peer must compute bit for bit identically. They use only
// integer arithmetic and individually rounded IEEE 754 float64 operations:
// every intermediate product is wrapped in an explicit float64 conversion,
// which the Go specification guarantees prevents the compiler from fusing
// it into a multiply-add (some architectures, and amd64 with GOAMD64=v3,
// otherwise may). math.Log is deliberately not used: it is implemented in
// assembly on some architectures and in Go (with fusable expressions) on
// others, so its last bit is not guaranteed to agree across platforms.

const (
	fnvOffset64 = 14695981039346656037
	fnvPrime64  = 1099511628211

	// golden is 2^64 divided by the golden ratio, the usual odd increment
	// for spreading small integers over 64 bits.
	golden = 0x9e3779b97f4a7c15

	// Domain separators so a key and a member ID with equal bytes do not
	// hash alike.
	keyDomain    = 0x6b65792d72656566 // "key-reef"
	memberDomain = 0x6d656d2d72656566 // "mem-reef"
)

// fnv1a returns the 64-bit FNV-1a hash of b.
func fnv1a(b []byte) uint64 {
	h := uint64(fnvOffset64)
	for _, c := range b {
		h ^= uint64(c)
		h *= fnvPrime64
	}
	return h
}

// fnv1aString is fnv1a for a string, without converting it to []byte.
func fnv1aString(s string) uint64 {
	h := uint64(fnvOffset64)
	for i := 0; i < len(s); i++ {
		h ^= uint64(s[i])
		h *= fnvPrime64
	}
	return h
}

// mix64 is the splitmix64 finaliser: a bijection on uint64 with good
// avalanche, used to repair FNV's weak mixing of the final bytes.
func mix64(z uint64) uint64 {
	z ^= z >> 30
	z *= 0xbf58476d1ce4e5b9
	z ^= z >> 27
	z *= 0x94d049bb133111eb
	z ^= z >> 31
	return z
}

// keyHash returns the well-mixed 64-bit hash of a chunk key.
func keyHash(key []byte) uint64 {
	return mix64(fnv1a(key) ^ keyDomain ^ uint64(len(key))*golden)
}

// memberHash returns the well-mixed 64-bit hash of a member ID.
func memberHash(id string) uint64 {
	return mix64(fnv1aString(id) ^ memberDomain ^ uint64(len(id))*golden)
}

// shardSeed derives the per-shard seed from the key hash, so that every
// shard index has an independent ranking of the members.
func shardSeed(kh uint64, index int) uint64 {
	return mix64(kh + (uint64(index)+1)*golden)
}

// pairHash is the rendezvous hash of (key, shard index, member): seed comes
// from shardSeed and mh from memberHash. Two finaliser rounds keep the
// members' hashes for one seed independent even when member hashes share
// structure.
func pairHash(seed, mh uint64) uint64 {
	return mix64(mix64(seed^mh) + mh)
}

// unit maps a hash to a float64 strictly inside (0, 1): the top 52 bits
// plus one half, divided by 2^52. Both steps are exact.
func unit(h uint64) float64 {
	return (float64(h>>12) + 0.5) / (1 << 52)
}

// score is the weighted rendezvous score -w/ln(u) for the hash h. For
// u uniform on (0,1), -ln(u)/w is exponentially distributed with rate w,
// so the member with the highest score (smallest exponential) wins with
// probability proportional to its weight. w must be positive and finite.
func score(h uint64, w float64) float64 {
	return w / -ln(unit(h))
}

const (
	ln2    = 0.693147180559945309417232121458176568
	sqrt2  = 1.41421356237309504880168872420969808
	expOne = 1023
)

// ln returns the natural logarithm of x for normal, positive, finite x
// (score only passes values in [2^-53, 1)). It is accurate to a few ulps
// and, unlike math.Log, bit-for-bit reproducible on every platform.
//
// x is split exactly into m * 2^e with m in [sqrt(2)/2, sqrt(2)); then
// ln(m) = 2 atanh(s) with s = (m-1)/(m+1), |s| < 0.172, summed as the odd
// series 2s (1 + s^2/3 + s^4/5 + ...), which has converged below 1 ulp by
// the s^22 term.
func ln(x float64) float64 {
	bits := math.Float64bits(x)
	e := int(bits>>52&0x7ff) - expOne
	m := math.Float64frombits(bits&(1<<52-1) | expOne<<52) // [1, 2)
	if m > sqrt2 {
		m /= 2 // exact
		e++
	}
	f := m - 1 // exact (Sterbenz)
	s := f / (2 + f)
	s2 := float64(s * s)
	p := 1.0 / 23
	p = float64(p*s2) + 1.0/21
	p = float64(p*s2) + 1.0/19
	p = float64(p*s2) + 1.0/17
	p = float64(p*s2) + 1.0/15
	p = float64(p*s2) + 1.0/13
	p = float64(p*s2) + 1.0/11
	p = float64(p*s2) + 1.0/9
	p = float64(p*s2) + 1.0/7
	p = float64(p*s2) + 1.0/5
	p = float64(p*s2) + 1.0/3
	p = float64(p*s2) + 1
	lm := float64(float64(2*s) * p)
	return float64(float64(e)*ln2) + lm
}
