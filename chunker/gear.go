package chunker

// gearSeed is the fixed seed from which the gear table is derived. Changing
// it changes every chunk boundary ever produced, and with it the identity of
// every stored chunk, so it must never change.
const gearSeed uint64 = 0x7265_6566_6364_6301 // "reefcdc" followed by 0x01

// gear maps every byte value to a pseudo-random 64-bit constant. It is the
// only source of "randomness" in the rolling hash.
var gear = makeGear(gearSeed)

// gearShifted holds gear[b]<<1. Rolling two bytes per iteration needs it: see
// scan in chunker.go.
var gearShifted = shiftTable(&gear)

// splitmix64 advances *state and returns the next output of the SplitMix64
// generator (Steele, Lea and Flood, "Fast splittable pseudorandom number
// generators", OOPSLA 2014). It is tiny, has no dependencies and its output
// is fully specified, which makes the table reproducible forever.
func splitmix64(state *uint64) uint64 {
	*state += 0x9e3779b97f4a7c15
	z := *state
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9
	z = (z ^ (z >> 27)) * 0x94d049bb133111eb
	return z ^ (z >> 31)
}

// makeGear builds a gear table from seed.
func makeGear(seed uint64) [256]uint64 {
	var t [256]uint64
	s := seed
	for i := range t {
		t[i] = splitmix64(&s)
	}
	return t
}

// shiftTable returns a table whose entries are those of t shifted left by one.
func shiftTable(t *[256]uint64) [256]uint64 {
	var s [256]uint64
	for i, v := range t {
		s[i] = v << 1
	}
	return s
}
