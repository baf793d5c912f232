// Package placement decides which peers hold the shards of a chunk.
//
// A chunk with a 32-byte address is erasure coded into n = k+m shards,
// numbered 0..n-1. Where each shard lives is not stored anywhere: every
// peer computes it from the chunk key and the current member list with
// [Place], and gets the same answer. A reader that cannot find shard i at
// its placed holder (because membership changed since the write) walks
// the members in the order returned by [Rank] for that shard.
//
// # Rendezvous hashing
//
// Placement uses rendezvous, or highest random weight, hashing. For shard
// i of chunk key, every member j gets a pseudo-random 64-bit hash
// h(key, i, j), and the member with the highest value wins. Because each
// member's hash depends only on the key, the shard index and its own ID,
// adding or removing a member only changes the outcome where that member
// is (or was) the winner: about 1/N of all rankings change their winner
// when an N-th member joins, and only the departed member's when one
// leaves. No tables, virtual nodes or coordination are needed.
//
// # Weights
//
// Members have different capacities. The hash is mapped to u in (0,1) and
// the member's score is -Weight/ln(u), the logarithmic method for weighted
// rendezvous hashing: -ln(u)/Weight is exponentially distributed with
// rate Weight, and the smallest of independent exponentials belongs to
// member j with probability Weight_j / sum(Weight). So a member of weight
// 2 wins twice as many rankings as one of weight 1, and changing one
// member's weight only moves placements to or from that member. Weights
// that are not positive and finite are treated as [MinWeight].
//
// # Per-shard rankings
//
// Each shard index has its own ranking of the members (the index is part
// of the hash). The alternative, ranking the members once per chunk and
// giving shard i to the i-th member, is fragile: a new member entering the
// top n shifts everyone below it by one position, so it moves many shard
// indexes, not just the one it takes. With per-shard rankings a new member
// takes a shard only where it tops that shard's ranking.
//
// Rankings conflict when one member tops several shards' rankings but may
// hold only one of them. Place resolves conflicts by score, not by shard
// index: it repeatedly commits the highest-scoring pair of a still
// unplaced shard and a member still allowed to take it. (Without zones
// this is the unique stable matching between shards and members: no
// shard and member would both rather be paired with each other.) Giving
// the member to the lowest index instead is simpler but causes more
// knock-on moves: measured with 10 equal members, n = 6, adding an 11th
// member moved 12.2% of (chunk, shard) placements by index order against
// 10.6% by score order, the ideal being 1/11 = 9.1%; removing one moved
// 14.1% against 12.1% (ideal 10%).
//
// When a member holds no conflict, Place gives shard i the first member of
// Rank(key, i). Otherwise the holder is still high in Rank's order, which
// is why readers walk that order.
//
// # Constraints and their precedence
//
// Within one stripe, in order of precedence:
//
//  1. Distinct holders. With at least n members, no member holds two
//     shards of a stripe. With fewer members, members are reused as
//     evenly as possible: each holds floor(n/len) or ceil(n/len) shards.
//  2. Zone spread. Subject to 1, shards are spread over failure zones as
//     evenly as possible. With z zones that each have enough members, no
//     zone holds more than ceil(n/z) shards nor fewer than ceil(n/z)-1.
//     A zone too small to take its share (it cannot hold more shards
//     than distinctness allows its members) holds all it can, and the
//     other zones share the rest as evenly as possible. For example,
//     with zones of 5 members and 1 member and n = 6, the small zone
//     holds 1 shard and the large one 5: distinct peers win over zone
//     balance.
//
// Place enforces both with per-member and per-zone lower and upper bounds
// (the zone bounds come from water-filling the shards over the zones up
// to what their members can hold). Before giving a shard to a member it
// checks that the remaining shards can still be placed within all bounds;
// members nest inside zones, so that check is a handful of interval sums
// and the greedy never reaches a dead end. The bounds only ever exclude
// pairs; among the pairs they allow, the best score wins.
//
// # Determinism
//
// Every peer must compute the same placement, so:
//
//   - Input order never matters: members are sorted by ID, and duplicate
//     IDs count once (the entry with the largest weight, then the smallest
//     zone name, is kept).
//   - No map iteration order and no randomness is used.
//   - Hashes are FNV-1a 64 followed by the splitmix64 finaliser, defined
//     on bytes and independent of the platform.
//   - Scores use only individually rounded IEEE 754 float64 operations.
//     The logarithm is computed by this package (a short atanh series)
//     rather than by math.Log, whose result may differ in the last bit
//     between architectures (assembly on amd64 and s390x, Go elsewhere,
//     where the compiler may fuse multiply-adds), and every product is
//     wrapped in an explicit float64 conversion to forbid fusion.
//   - Ties in score are broken by the hash and then by member ID.
//
// The placement for a given key and member list is therefore part of the
// storage format: changing the hash, the score or the constraint order
// moves data, and the golden tests in this package guard against that.
package placement
