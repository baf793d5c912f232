package store

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/bits"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/reefproject/reef/addr"
	"github.com/reefproject/reef/chunker"
	"github.com/reefproject/reef/crypt"
	"github.com/reefproject/reef/erasure"
	"github.com/reefproject/reef/internal/bufpool"
	"github.com/reefproject/reef/placement"
)

// MaxBlob is the largest sealed blob the store writes or accepts: the largest
// chunk or manifest plus the envelope. Peers bound shard sizes by it.
const MaxBlob = 8 << 20

// MaxShard bounds one shard on the wire and on disk (k=1 puts a whole blob in
// one shard).
const MaxShard = MaxBlob + erasure.HeaderSize

var (
	// ErrShardNotFound is returned (wrapped) by Net.GetShard when the peer
	// does not hold the shard.
	ErrShardNotFound = errors.New("shard not found")
	// ErrCorrupt is returned (wrapped) when decoded bytes do not match their
	// address or do not open.
	ErrCorrupt = errors.New("corrupt chunk")
	// ErrUnavailable is returned (wrapped) when too few shards of a chunk can
	// be read or written.
	ErrUnavailable = errors.New("chunk unavailable")
)

// ShardKey names one shard: a chunk address and a shard index.
type ShardKey struct {
	Addr  addr.Addr
	Index int
}

func (k ShardKey) String() string { return fmt.Sprintf("%s/%d", k.Addr.Short(), k.Index) }

// Net moves shards to and from peers, this one included. Implementations are
// safe for concurrent use; slices passed in are not retained after return and
// slices returned belong to the caller.
type Net interface {
	// PutShard stores a shard durably on peer. It reports whether the peer
	// stored it now (false: the peer held it already).
	PutShard(ctx context.Context, peer string, key ShardKey, shard []byte) (stored bool, err error)
	// GetShard reads a shard from peer; ErrShardNotFound if it has none.
	GetShard(ctx context.Context, peer string, key ShardKey) ([]byte, error)
	// ListShards returns the indexes of a's shards that peer holds.
	ListShards(ctx context.Context, peer string, a addr.Addr) ([]int, error)
}

// BufferedNet is a Net that can read a shard into a buffer the caller
// gives. A Store whose Net has it reads data shards into recycled buffers
// instead of a new (zeroed) one per shard.
type BufferedNet interface {
	Net
	// GetShardTo is GetShard reading into buf's memory: when the shard fits
	// in cap(buf) the result is buf[:len(shard)], otherwise a new slice.
	// buf's old contents do not matter, and buf is not retained after
	// GetShardTo returns.
	GetShardTo(ctx context.Context, peer string, key ShardKey, buf []byte) ([]byte, error)
}

// Config configures a Store.
type Config struct {
	Keys        *crypt.Keys
	K, M        int // the coding of what this store writes
	WriteQuorum int // shards that must be durable before a chunk is acknowledged; 0 means K+M
	Chunking    chunker.Params
	Net         Net
	// Members returns the live members: where shards are looked for. It is
	// called once per chunk and must be cheap.
	Members func() []placement.Member
	// Placement returns the live members that take new shards (Members
	// less the draining ones); nil means Members.
	Placement func() []placement.Member
	// Others returns the members that are not live (suspect-dead, dead,
	// left): asked for shards as a last resort, since a stale view of
	// membership must not make data unreadable. May be nil.
	Others     func() []placement.Member
	Parallel   int           // chunks in flight per file; 0 means 8
	HedgeAfter time.Duration // a shard read slower than this gets a hedge request; 0 means 500ms
	CacheBytes int64         // decoded chunks kept for ReadAt; 0 means 128 MiB
	// ZeroReuse is how long a stored chunk of zeros is reused by later
	// holes without being written again (zeroEntry); 0 means 10 minutes.
	// It must stay under the grace of the peers' chunk collection.
	ZeroReuse time.Duration
	Logger    *slog.Logger
}

// Store reads and writes files through the cluster.
type Store struct {
	cfg   Config
	coder *erasure.Coder
	bufs  sync.Pool // *[]byte with cap >= chunk max
	// Sealed blobs and the shards of one stripe, reused across chunks;
	// bufMax is the largest sealed chunk.
	blobs     sync.Pool
	shardBufs sync.Pool
	bufMax    int
	// fetched holds shard buffers of reads: a shard is dead once decoded
	// (Decode copies what it keeps), so its buffer serves the next read.
	fetched bufpool.Pool
	log     *slog.Logger
	cache   *readCache

	pins      pins                 // what a chunk collector must leave (pins.go)
	zeroMu    sync.Mutex           // guards zeros and zeroAddrs
	zeros     map[int]Entry        // zero chunks stored, by length (upload.go)
	zeroAt    map[int]time.Time    // when each was stored
	zeroAddrs map[int64]addr.Addr  // addresses of zero chunks, by length (zeroBytes)
	zeroCut   int                  // Chunking.ZeroCut(): the length of a hole's chunks
	slowMu    sync.Mutex           // guards slow
	slow      map[string]time.Time // peers that held up a shard write: when
	nslow     atomic.Int32         // len(slow), read without the lock
}

// shardFetchBudget bounds a background read-ahead.
const shardFetchBudget = 30 * time.Second

// New checks cfg and returns a Store.
func New(cfg Config) (*Store, error) {
	if cfg.Keys == nil || cfg.Net == nil || cfg.Members == nil {
		return nil, errors.New("store: Keys, Net and Members are required")
	}
	coder, err := erasure.New(cfg.K, cfg.M)
	if err != nil {
		return nil, fmt.Errorf("store: %w", err)
	}
	n := cfg.K + cfg.M
	if cfg.WriteQuorum == 0 {
		cfg.WriteQuorum = n
	}
	if min := min(cfg.K+1, n); cfg.WriteQuorum < min || cfg.WriteQuorum > n {
		return nil, fmt.Errorf("store: write quorum %d out of range [%d, %d] for k=%d m=%d", cfg.WriteQuorum, min, n, cfg.K, cfg.M)
	}
	if cfg.Chunking == (chunker.Params{}) {
		cfg.Chunking = chunker.DefaultParams()
	}
	if cfg.ZeroReuse <= 0 {
		cfg.ZeroReuse = 10 * time.Minute
	}
	if err := cfg.Chunking.Validate(); err != nil {
		return nil, fmt.Errorf("store: %w", err)
	}
	if cfg.Chunking.Max+crypt.Overhead > MaxBlob {
		return nil, fmt.Errorf("store: chunk max %d too large (limit %d)", cfg.Chunking.Max, MaxBlob-crypt.Overhead)
	}
	if cfg.Parallel <= 0 {
		cfg.Parallel = 8
	}
	if cfg.HedgeAfter <= 0 {
		cfg.HedgeAfter = 500 * time.Millisecond
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Placement == nil {
		cfg.Placement = cfg.Members
	}
	if cfg.CacheBytes <= 0 {
		cfg.CacheBytes = 128 << 20
	}
	s := &Store{cfg: cfg, coder: coder, log: cfg.Logger, cache: newReadCache(cfg.CacheBytes), zeroCut: cfg.Chunking.ZeroCut()}
	max := cfg.Chunking.Max
	// Room for a chunk, or a self manifest: a chunk and a header.
	s.bufs.New = func() any { b := make([]byte, 0, max+manifestHdrSize); return &b }
	s.bufMax = max + manifestHdrSize + crypt.Overhead
	s.blobs.New = func() any { b := make([]byte, 0, s.bufMax); return &b }
	s.shardBufs.New = func() any { b := []byte(nil); return &b }
	return s, nil
}

// PutStats describes one PutFile.
type PutStats struct {
	Size      int64 // bytes of the file
	Zero      int64 // bytes of the file in chunks of zeros (holes)
	Chunks    int   // data chunks
	NewShards int   // shards stored now
	DupShards int   // shards that were already held
}

// PutFile stores everything r yields and returns the file's address.
func (s *Store) PutFile(ctx context.Context, r io.Reader) (addr.Addr, PutStats, error) {
	var st PutStats
	ch, err := chunker.New(r, s.cfg.Chunking)
	if err != nil {
		return addr.Addr{}, st, fmt.Errorf("store: %w", err)
	}
	u := s.newUpload(ctx)
	var entries []*Entry
	var readErr error
	// The first chunk waits for the second: alone, it is stored as the
	// file's self manifest instead (manifest.go).
	var first *[]byte
	for u.ctx.Err() == nil {
		c, err := ch.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			readErr = err
			break
		}
		if first == nil && len(entries) == 0 {
			first = u.copy(c)
			continue
		}
		if first != nil {
			entries = append(entries, u.owned(first))
			first = nil
		}
		entries = append(entries, u.chunk(c))
	}
	var root Entry
	var merr error
	if first != nil && (readErr != nil || u.ctx.Err() != nil) {
		*first = (*first)[:0]
		s.bufs.Put(first)
		first = nil
	}
	if first != nil && chunker.IsZero(*first) {
		// A hole, not a self manifest: the zero chunk is stored once for
		// every file, and the file's zero bytes are known.
		entries = append(entries, u.owned(first))
		first = nil
	}
	if first != nil {
		st.Size, st.Chunks = int64(len(*first)), 1
		root, merr = u.self(first)
	} else if readErr == nil && u.waitSealed() {
		flat := make([]Entry, len(entries))
		for i, e := range entries {
			flat[i] = *e
			st.Size += e.Length
		}
		st.Chunks = len(flat)
		st.Zero = u.zero.Load()
		root, merr = u.manifests(flat, kindData)
	}
	st.NewShards, st.DupShards, err = u.finish(ctx, readErr, merr)
	if err != nil {
		return addr.Addr{}, st, err
	}
	return root.Addr, st, nil
}

type putResult struct {
	index  int
	peer   string
	stored bool
	err    error
}

// storeStripe codes blob and writes its shards to their holders, returning at
// the write quorum.
func (s *Store) storeStripe(ctx context.Context, a addr.Addr, blob []byte) (int, int, error) {
	// The shards come from a pooled buffer, given back once every upload
	// has returned (some outlive this call: see below). A fresh 1.5 MiB per
	// 1 MiB chunk cost the writer zeroing and page faults (a CPU profile of
	// a 1 GiB write: 6% of the mounting peer in mallocgcLarge's memclr).
	sp := s.shardBufs.Get().(*[]byte)
	if need := s.coder.EncodeSize(len(blob)); cap(*sp) < need {
		*sp = make([]byte, 0, 1<<bits.Len(uint(need-1))) // a power of two: reused by chunks of about that size
	}
	shards, err := s.coder.EncodeTo(*sp, blob)
	if err != nil {
		s.shardBufs.Put(sp)
		return 0, 0, fmt.Errorf("store: encode %s: %w", a.Short(), err)
	}
	live := s.cfg.Placement()
	if len(live) == 0 {
		return 0, 0, fmt.Errorf("store: chunk %s: no live peers: %w", a.Short(), ErrUnavailable)
	}
	n := len(shards)
	// Peers that held up a shard request lately are left out while enough
	// others remain, as if they were down: each stripe would wait for them
	// until its hedge otherwise. (Rebalance moves the shards to their
	// placement once the peer is quick again.)
	if slow := s.slowNow(); len(slow) > 0 {
		quick := make([]placement.Member, 0, len(live))
		for _, m := range live {
			if !slow[m.ID] {
				quick = append(quick, m)
			}
		}
		if len(quick) >= min(s.cfg.K+1, n) {
			live = quick
		}
	}
	holders := placement.Place(a[:], n, live)
	var mu sync.Mutex // guards used
	used := make(map[string]int, n)
	for _, h := range holders {
		used[h.ID]++
	}
	// Shards not yet acknowledged when the quorum is reached keep going in
	// the background, bounded in time, so the stripe ends up complete.
	bg, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Minute)
	// Room for every answer, hedges included: late ones are never read.
	// (A hedge round starts at most m writes.)
	results := make(chan putResult, n+maxHedgeRounds*s.cfg.M)
	var wg sync.WaitGroup
	put := func(i int, peer string) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results <- s.putShard(bg, ShardKey{a, i}, shards[i], peer, live, &mu, used)
		}()
	}
	// This call holds the buffer too, until it returns: a hedge may start
	// another write of a shard until then.
	wg.Add(1)
	defer wg.Done()
	for i := range n {
		put(i, holders[i].ID)
	}
	go func() {
		wg.Wait()
		cancel()
		if cap(*sp) <= 2*s.coder.EncodeSize(s.bufMax) { // not a big manifest's
			s.shardBufs.Put(sp)
		}
	}()

	// Shards on fewer than k+1 distinct peers would not survive the loss
	// of one peer: like Ceph's min_size, such a write is not acknowledged.
	minDistinct := min(s.cfg.K+1, n)
	distinct := map[string]bool{}
	var ok, nw, dup, failed int
	var errs []string
	// A holder that neither answers nor fails (a stopped process, a link
	// that drops packets: nothing tells until the request times out, 10 s,
	// and membership takes seconds too) would hold up every write. When
	// at most m shards are still out and they have taken HedgeAfter, and
	// four times what the others took, each is also written to a stand-in
	// peer, and whichever copy lands first counts (the stripe is then whole
	// on the peers that answer; the late copy, if it lands, is one more).
	// The slow peers are remembered (markSlow) so that no stripe picks
	// them as stand-ins until they answer again.
	inflight := make([]int, n)     // writes of each shard still out
	writing := make([][]string, n) // the peers they went to
	stored := make([]bool, n)
	for i := range inflight {
		inflight[i] = 1
		writing[i] = []string{holders[i].ID}
	}
	out := n // answers still to come
	t0 := time.Now()
	var hedgeC <-chan time.Time
	var wait time.Duration
	rounds := 0
	for out > 0 {
		var r putResult
		select {
		case r = <-results:
			out--
		case <-hedgeC:
			rounds++
			hedgeC = nil
			if rounds < maxHedgeRounds {
				// A stand-in may hang too (its peer is not known slow
				// yet): one more round then, past the peers known by now.
				hedgeC = time.After(wait)
			}
			var lag []string
			for i := range n {
				if !stored[i] && inflight[i] > 0 {
					lag = append(lag, writing[i]...)
				}
			}
			slow := s.markSlow(lag)
			for i := range n {
				if stored[i] || inflight[i] == 0 {
					continue
				}
				if p := s.standIn(ShardKey{a, i}, live, &mu, used, slow); p != "" {
					s.log.Warn("shard write slow, also writing it to a stand-in", "shard", ShardKey{a, i}.String(), "peers", writing[i], "stand_in", p)
					inflight[i]++
					writing[i] = append(writing[i], p)
					out++
					put(i, p)
				}
			}
			continue
		case <-ctx.Done():
			return nw, dup, ctx.Err()
		}
		inflight[r.index]--
		if stored[r.index] {
			continue // the other copy of a hedged shard
		}
		if r.err != nil {
			errs = append(errs, fmt.Sprintf("shard %d: %v", r.index, r.err))
			if inflight[r.index] > 0 {
				continue // its other copy may still land
			}
			failed++
			if n-failed < s.cfg.WriteQuorum {
				return nw, dup, fmt.Errorf("store: chunk %s: %d of %d shards could not be stored, write quorum is %d: %s: %w",
					a.Short(), failed, n, s.cfg.WriteQuorum, strings.Join(errs, "; "), ErrUnavailable)
			}
			continue
		}
		stored[r.index] = true
		ok++
		distinct[r.peer] = true
		if r.stored {
			nw++
		} else {
			dup++
		}
		if ok >= s.cfg.WriteQuorum && len(distinct) >= minDistinct {
			return nw, dup, nil
		}
		if rounds == 0 && hedgeC == nil && n-ok-failed <= s.cfg.M {
			wait = max(s.cfg.HedgeAfter, 4*time.Since(t0))
			hedgeC = time.After(wait)
		}
	}
	return nw, dup, fmt.Errorf("store: chunk %s: shards reached only %d distinct peers, need %d to survive a peer's loss: %w",
		a.Short(), len(distinct), minDistinct, ErrUnavailable)
}

// maxHedgeRounds bounds the stand-in rounds of one stripe.
const maxHedgeRounds = 3

// slowFor is how long a peer that held up a shard write stays out of the
// stand-in picks, unless it answers a write before.
const slowFor = 30 * time.Second

// markSlow records peers as slow and returns every peer slow now.
func (s *Store) markSlow(peers []string) map[string]bool {
	s.slowMu.Lock()
	defer s.slowMu.Unlock()
	now := time.Now()
	if s.slow == nil {
		s.slow = map[string]time.Time{}
	}
	for _, p := range peers {
		s.slow[p] = now
	}
	out := make(map[string]bool, len(s.slow))
	for p, t := range s.slow {
		if now.Sub(t) > slowFor {
			delete(s.slow, p)
			continue
		}
		out[p] = true
	}
	s.nslow.Store(int32(len(s.slow)))
	return out
}

// PassOver marks peers as slow (see markSlow) without waiting for them to
// hold up or fail a write: peers known to be full, say. The mark lapses
// after 30 s unless renewed, or when a peer answers a write.
func (s *Store) PassOver(peers ...string) {
	if len(peers) > 0 {
		s.markSlow(peers)
	}
}

// SlowPeers returns the peers that held up a shard request lately (see
// storeStripe) and have not answered one since. The map is the caller's.
func (s *Store) SlowPeers() map[string]bool {
	if sl := s.slowNow(); sl != nil {
		return sl
	}
	return map[string]bool{}
}

// slowNow returns the peers marked slow, nil if none.
func (s *Store) slowNow() map[string]bool {
	if s.nslow.Load() == 0 {
		return nil
	}
	return s.markSlow(nil)
}

// answered clears peer's slow mark after a shard write it answered.
func (s *Store) answered(peer string) {
	if s.nslow.Load() == 0 {
		return
	}
	s.slowMu.Lock()
	defer s.slowMu.Unlock()
	delete(s.slow, peer)
	s.nslow.Store(int32(len(s.slow)))
}

// standIn picks the peer that takes a shard in place of its holder (one
// that failed, or a copy of a slow write): the best-ranked peer of the
// shard that holds nothing of the stripe, else the least used one; never
// one in not. It counts the pick in used; "" when every peer is in not.
func (s *Store) standIn(key ShardKey, live []placement.Member, mu *sync.Mutex, used map[string]int, not map[string]bool) string {
	mu.Lock()
	defer mu.Unlock()
	ranked := placement.Rank(key.Addr[:], key.Index, live)
	next, least := "", -1
	for _, m := range ranked {
		if not[m.ID] {
			continue
		}
		if used[m.ID] == 0 {
			next = m.ID
			break
		}
		if least < 0 || used[m.ID] < least {
			next, least = m.ID, used[m.ID]
		}
	}
	if next != "" {
		used[next]++
	}
	return next
}

// putShard writes one shard to its holder. When the holder fails, the next
// peer of the shard's ranking that holds no shard of this stripe takes it;
// when every peer holds one already (fewer reachable peers than k+m, as when
// a peer has just died), the best-ranked peer that has not failed takes a
// second one, as placement itself does with fewer members than k+m.
func (s *Store) putShard(ctx context.Context, key ShardKey, shard []byte, holder string, live []placement.Member, mu *sync.Mutex, used map[string]int) putResult {
	const attempts = 3
	peer := holder
	var errs []string
	failed := map[string]bool{}
	for try := 0; ; try++ {
		stored, err := s.cfg.Net.PutShard(ctx, peer, key, shard)
		if err == nil {
			s.answered(peer)
			return putResult{index: key.Index, peer: peer, stored: stored}
		}
		errs = append(errs, fmt.Sprintf("%s: %v", peer, err))
		failed[peer] = true
		s.log.Warn("shard write failed", "shard", key.String(), "peer", peer, "err", err)
		if ctx.Err() == nil {
			// Passed over by the next stripes' placement, as a slow
			// peer is, until it answers a write again: a peer whose
			// disk is full failed every shard it was given, and each
			// failure cost a round trip before the stand-in.
			s.markSlow([]string{peer})
		}
		if try+1 >= attempts || ctx.Err() != nil {
			break
		}
		next := s.standIn(key, live, mu, used, failed)
		if next == "" {
			break
		}
		peer = next
	}
	return putResult{index: key.Index, err: errors.New(strings.Join(errs, "; "))}
}

// GetBlob returns the plaintext of one chunk. e.K == 0 means the coding is
// unknown (a root manifest): it is learned from the first shard found.
func (s *Store) GetBlob(ctx context.Context, e Entry) ([]byte, error) {
	plain, _, err := s.getBlob(ctx, e)
	return plain, err
}

// getBlob is GetBlob that also returns the entry with the coding filled in.
func (s *Store) getBlob(ctx context.Context, e Entry) ([]byte, Entry, error) {
	blob, k, m, err := s.fetchStripe(ctx, e.Addr, e.K, e.M, shardSize(e))
	if err != nil {
		return nil, e, err
	}
	plain, err := s.open(e, blob)
	if e.K == 0 {
		e.Length = int64(len(plain))
	}
	e.K, e.M = k, m
	return plain, e, err
}

// open opens a fetched blob, in its own memory: the plaintext returned
// shares blob's allocation, and blob is not usable afterwards.
func (s *Store) open(e Entry, blob []byte) ([]byte, error) {
	plain, err := s.cfg.Keys.OpenInPlace(blob)
	if err != nil {
		return nil, fmt.Errorf("store: chunk %s: %w: %w", e.Addr.Short(), ErrCorrupt, err)
	}
	if e.K != 0 && int64(len(plain)) != e.Length {
		return nil, fmt.Errorf("store: chunk %s: %w: %d bytes, manifest says %d", e.Addr.Short(), ErrCorrupt, len(plain), e.Length)
	}
	return plain, nil
}

// shardSize is the length of each shard of data chunk e, or 0 when it is
// not known: the coding is unknown, or e is an indirect manifest (whose
// Length is the bytes of file it covers, not its own), which the bound
// weeds out since only files of more than 65,536 chunks have them. Only a
// hint for buffer sizes: a wrong one costs an allocation, nothing else.
func shardSize(e Entry) int {
	if e.K <= 0 || e.Length < 0 || e.Length > MaxBlob {
		return 0
	}
	return erasure.HeaderSize + int((e.Length+crypt.Overhead+int64(e.K)-1)/int64(e.K))
}

// recycle gives a shard buffer that is no longer used back for reads.
func (s *Store) recycle(shard []byte) {
	if shard != nil {
		s.fetched.Put(shard)
	}
}

// getShard reads one shard, into a recycled buffer of size bytes when the
// Net can and size is known.
func (s *Store) getShard(ctx context.Context, peer string, key ShardKey, size int) ([]byte, error) {
	bn, ok := s.cfg.Net.(BufferedNet)
	if !ok || size <= 0 {
		return s.cfg.Net.GetShard(ctx, peer, key)
	}
	buf := s.fetched.Get(size)
	sh, err := bn.GetShardTo(ctx, peer, key, buf)
	if err != nil || cap(sh) == 0 || &sh[:1][0] != &buf[:1][0] {
		s.fetched.Put(buf) // not used for the result
	}
	return sh, err
}

// ShardsError says how many shards of a chunk could be found.
type ShardsError struct {
	Addr        addr.Addr
	Found, Need int
	Total       int // k+m, 0 when not even the coding is known
	Asked       int // peers asked
	Causes      []string
}

func (e *ShardsError) Error() string {
	var b strings.Builder
	if e.Total == 0 {
		fmt.Fprintf(&b, "chunk %s: no shard found on any of %d live peers", e.Addr.Short(), e.Asked)
	} else {
		fmt.Fprintf(&b, "chunk %s: found %d of %d shards, need %d", e.Addr.Short(), e.Found, e.Total, e.Need)
	}
	if len(e.Causes) > 0 {
		c := e.Causes
		if len(c) > 4 {
			c = append(c[:4:4], fmt.Sprintf("and %d more", len(e.Causes)-4))
		}
		fmt.Fprintf(&b, " (%s)", strings.Join(c, "; "))
	}
	return b.String()
}

// Unwrap makes errors.Is(err, ErrUnavailable) true.
func (e *ShardsError) Unwrap() error { return ErrUnavailable }

type cand struct {
	index int
	peer  string
}

type getResult struct {
	c     cand
	shard []byte
	err   error
}

// fetchStripe gathers k shards of a, decodes them and checks the result
// against the address. size is the expected length of each shard, 0 if
// unknown; shards are read into recycled buffers, which go back once the
// blob is decoded.
//
// A shard's header is checked when it arrives, but its payload checksum
// only once a decoded blob fails its address check: a blob that matches its
// BLAKE3 address is right, whatever the checksums of the shards it came
// from would have said (a damaged byte the blob does not depend on, such as
// the last data shard's padding, is left to scrub), and the k checksums
// were a pass over every shard, a tenth of a reading peer's CPU. When the
// address does not match, every shard held is
// verified, the bad ones are dropped (and counted in the causes) and
// replaced by others, which are then verified as they arrive: the same
// outcome as checking each shard first, with the checks paid for only when
// something is wrong.
func (s *Store) fetchStripe(ctx context.Context, a addr.Addr, k, m, size int) ([]byte, int, int, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	live := s.cfg.Members()
	placed := s.cfg.Placement()
	var queue []cand
	// guess: the coding of a root manifest is not known, but it is most
	// likely this store's own, so its data shards are asked for where that
	// coding places them, all at once; only when none turns up are the live
	// peers asked which shards they hold (a round of list requests to every
	// peer before each file's first read, otherwise).
	guess := 0
	switch {
	case k > 0:
		for i, h := range placement.Place(a[:], k+m, placed) {
			queue = append(queue, cand{i, h.ID})
		}
	case s.cfg.K > 0:
		guess = s.cfg.K
		for i, h := range placement.Place(a[:], s.cfg.K+s.cfg.M, placed) {
			queue = append(queue, cand{i, h.ID})
		}
	}
	// Shards on peers that held up a request lately are asked for last.
	if slow := s.slowNow(); len(slow) > 0 {
		sort.SliceStable(queue, func(i, j int) bool { return !slow[queue[i].peer] && slow[queue[j].peer] })
	}
	if guess > 0 {
		queue = queue[:min(len(queue), guess)]
	}
	results := make(chan getResult)
	got := make(map[int][]byte)
	from := make(map[int]string) // the peer each shard in got came from
	tried := make(map[cand]bool)
	var causes []string
	inflight, located, asked := 0, 0, 0
	out := make(map[cand]time.Time) // requests in flight: since when
	verify := false                 // check payload checksums on arrival: set after a failed address check
	launch := func() bool {
		for len(queue) > 0 {
			c := queue[0]
			queue = queue[1:]
			if tried[c] || got[c.index] != nil {
				continue
			}
			tried[c] = true
			inflight++
			out[c] = time.Now()
			go func() {
				sh, err := s.getShard(ctx, c.peer, ShardKey{a, c.index}, size)
				select {
				case results <- getResult{c, sh, err}:
				case <-ctx.Done():
					s.recycle(sh) // nobody else saw it
				}
			}()
			return true
		}
		return false
	}
	need := func() int {
		if k == 0 {
			return max(guess, 1)
		}
		return k
	}
	topUp := func() {
		for inflight < need()-len(got) && launch() {
		}
	}
	check := func(shard []byte) (erasure.Header, error) {
		if verify {
			return erasure.Verify(shard)
		}
		return erasure.ParseHeader(shard)
	}
	topUp()
	hedge := time.NewTimer(s.cfg.HedgeAfter)
	defer hedge.Stop()
	for {
		for k == 0 || len(got) < k {
			if inflight == 0 {
				// Placement holders are exhausted: ask the live peers which
				// shards they have, then, last, the ones believed gone.
				var who []placement.Member
				switch located {
				case 0:
					who = live
				case 1:
					if s.cfg.Others != nil {
						who = s.cfg.Others()
					}
				}
				if located >= 2 || (located == 1 && len(who) == 0) {
					e := &ShardsError{Addr: a, Found: len(got), Need: k, Asked: asked, Causes: dedupe(causes)}
					if k > 0 {
						e.Total = k + m
					}
					return nil, 0, 0, e
				}
				located++
				asked += len(who)
				queue = append(queue, s.locate(ctx, a, who, &causes)...)
				topUp()
				continue
			}
			select {
			case r := <-results:
				inflight--
				delete(out, r.c)
				if r.err == nil {
					s.answered(r.c.peer)
				}
				if r.err != nil {
					if !errors.Is(r.err, ErrShardNotFound) {
						causes = append(causes, fmt.Sprintf("%s: %v", r.c.peer, r.err))
					}
				} else if h, err := check(r.shard); err != nil {
					causes = append(causes, fmt.Sprintf("%s: shard %d: %v", r.c.peer, r.c.index, err))
					s.recycle(r.shard)
				} else if h.Index != r.c.index || (k != 0 && (h.K != k || h.M != m)) {
					causes = append(causes, fmt.Sprintf("%s: shard %d: header says %d/%d+%d", r.c.peer, r.c.index, h.Index, h.K, h.M))
					s.recycle(r.shard)
				} else if got[r.c.index] != nil {
					s.recycle(r.shard) // two requests for one index both answered
				} else {
					if k == 0 {
						k, m = h.K, h.M
						for i, p := range placement.Place(a[:], k+m, placed) {
							queue = append(queue, cand{i, p.ID})
						}
						sort.SliceStable(queue, func(i, j int) bool { return queue[i].index < queue[j].index })
					}
					got[r.c.index], from[r.c.index] = r.shard, r.c.peer
				}
				topUp()
			case <-hedge.C:
				// Out for two hedge periods: the peer is held up, not just
				// busy (the stripes after this one ask it last).
				var lag []string
				for c, t := range out {
					if time.Since(t) >= 2*s.cfg.HedgeAfter {
						lag = append(lag, c.peer)
					}
				}
				if len(lag) > 0 {
					s.markSlow(lag)
				}
				launch()
				hedge.Reset(s.cfg.HedgeAfter)
			case <-ctx.Done():
				return nil, 0, 0, ctx.Err()
			}
		}
		coder, err := erasure.New(k, m)
		if err != nil {
			return nil, 0, 0, fmt.Errorf("store: chunk %s: %w", a.Short(), err)
		}
		shards := make([][]byte, k+m)
		for i, sh := range got {
			shards[i] = sh
		}
		// Unchecked: the address check below covers the payloads, and
		// once verify is set every shard in got has passed Verify.
		blob, err := coder.DecodeUnchecked(shards)
		if err != nil {
			return nil, 0, 0, fmt.Errorf("store: chunk %s: %w", a.Short(), err)
		}
		// blob is a copy, so the shards are dead once the address check
		// has passed, or has failed for good; after a first failure they
		// are kept to be verified below.
		ok := addr.Sum(blob) == a
		if ok || verify {
			for _, sh := range got {
				s.recycle(sh)
			}
		}
		if ok {
			return blob, k, m, nil
		}
		if verify {
			return nil, 0, 0, fmt.Errorf("store: chunk %s: %w: decoded bytes do not match the address", a.Short(), ErrCorrupt)
		}
		// Find the shards whose payload is damaged, drop them and fetch
		// others. If every checksum holds, a shard was forged with valid
		// checksums (or a bug): no other subset is tried, as before.
		verify = true
		bad := 0
		for i, sh := range got {
			if _, err := erasure.Verify(sh); err != nil {
				causes = append(causes, fmt.Sprintf("%s: shard %d: %v", from[i], i, err))
				delete(got, i)
				s.recycle(sh)
				bad++
			}
		}
		if bad == 0 {
			for _, sh := range got {
				s.recycle(sh)
			}
			return nil, 0, 0, fmt.Errorf("store: chunk %s: %w: decoded bytes do not match the address", a.Short(), ErrCorrupt)
		}
		s.log.Warn("corrupt shards dropped after a failed address check", "chunk", a.Short(), "bad", bad)
		topUp()
	}
}

// locate asks every live peer which shards of a it holds, and returns them
// as candidates, data shards first.
func (s *Store) locate(ctx context.Context, a addr.Addr, live []placement.Member, causes *[]string) []cand {
	var mu sync.Mutex
	var out []cand
	var wg sync.WaitGroup
	for _, p := range live {
		wg.Add(1)
		go func() {
			defer wg.Done()
			idx, err := s.cfg.Net.ListShards(ctx, p.ID, a)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				*causes = append(*causes, fmt.Sprintf("%s: %v", p.ID, err))
				return
			}
			for _, i := range idx {
				out = append(out, cand{i, p.ID})
			}
		}()
	}
	wg.Wait()
	sort.Slice(out, func(i, j int) bool {
		if out[i].index != out[j].index {
			return out[i].index < out[j].index
		}
		return out[i].peer < out[j].peer
	})
	return out
}

// dedupe keeps the first of equal messages, in order.
func dedupe(msgs []string) []string {
	seen := make(map[string]bool, len(msgs))
	out := msgs[:0:0]
	for _, m := range msgs {
		if !seen[m] {
			seen[m] = true
			out = append(out, m)
		}
	}
	return out
}

// Stat returns the size of the file at a.
func (s *Store) Stat(ctx context.Context, a addr.Addr) (int64, error) {
	root, err := s.root(ctx, a)
	if err != nil {
		return 0, err
	}
	return root.size, nil
}

func (s *Store) root(ctx context.Context, a addr.Addr) (manifest, error) {
	m, _, err := s.rootEntry(ctx, a)
	return m, err
}

// rootEntry fetches a file's root manifest and returns it with the root's
// own stripe entry (its coding learned from the shards).
func (s *Store) rootEntry(ctx context.Context, a addr.Addr) (manifest, Entry, error) {
	plain, e, err := s.getBlob(ctx, Entry{Addr: a})
	if err != nil {
		return manifest{}, e, err
	}
	m, err := decodeManifest(plain)
	if err != nil {
		return manifest{}, e, fmt.Errorf("store: %s is not a file: %w", a.Short(), err)
	}
	return m, e, nil
}

// Rebuild reads stripe e (any k shards) and returns all k+m shards, encoded
// again: byte-identical to the originals, since encoding is deterministic.
func (s *Store) Rebuild(ctx context.Context, e Entry) ([][]byte, error) {
	blob, k, m, err := s.fetchStripe(ctx, e.Addr, e.K, e.M, shardSize(e))
	if err != nil {
		return nil, err
	}
	coder, err := erasure.New(k, m)
	if err != nil {
		return nil, err
	}
	return coder.Encode(blob)
}

// PlaceShards is where the shards of stripe e belong now.
func (s *Store) PlaceShards(e Entry) []placement.Member {
	return placement.Place(e.Addr[:], e.K+e.M, s.cfg.Placement())
}

// WriteFile writes the file at a to w and returns the bytes written. It
// fetches the root first, so a missing or unreadable file fails before any
// byte is written.
func (s *Store) WriteFile(ctx context.Context, a addr.Addr, w io.Writer) (int64, error) {
	root, err := s.root(ctx, a)
	if err != nil {
		return 0, err
	}
	return s.writeTree(ctx, root, w)
}

// Open fetches the root of the file at a and returns its size and a function
// that streams its content to w.
func (s *Store) Open(ctx context.Context, a addr.Addr) (int64, func(context.Context, io.Writer) (int64, error), error) {
	root, err := s.root(ctx, a)
	if err != nil {
		return 0, nil, err
	}
	return root.size, func(ctx context.Context, w io.Writer) (int64, error) { return s.writeTree(ctx, root, w) }, nil
}

type fetched struct {
	data []byte
	err  error
}

func (s *Store) writeTree(ctx context.Context, root manifest, w io.Writer) (int64, error) {
	if root.kind == kindSelf {
		n, err := w.Write(root.data)
		if err != nil {
			return int64(n), fmt.Errorf("store: write output: %w", err)
		}
		return int64(n), nil
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	futures := make(chan chan fetched, s.cfg.Parallel)
	var walkErr error
	go func() {
		defer close(futures)
		walkErr = s.walk(ctx, root, 0, func(e Entry) bool {
			f := make(chan fetched, 1)
			select {
			case futures <- f:
			case <-ctx.Done():
				return false
			}
			go func() {
				d, err := s.GetBlob(ctx, e)
				f <- fetched{d, err}
			}()
			return true
		})
	}()
	var n int64
	for f := range futures {
		r := <-f
		if r.err != nil {
			cancel()
			for range futures {
			}
			return n, r.err
		}
		m, err := w.Write(r.data)
		n += int64(m)
		if err != nil {
			cancel()
			for range futures {
			}
			return n, fmt.Errorf("store: write output: %w", err)
		}
	}
	if walkErr != nil {
		return n, walkErr
	}
	if n != root.size {
		return n, fmt.Errorf("store: %w: file has %d bytes, manifest says %d", ErrCorrupt, n, root.size)
	}
	return n, nil
}

// walk calls fn for each data entry under m in order; fn returns false to stop.
func (s *Store) walk(ctx context.Context, m manifest, depth int, fn func(Entry) bool) error {
	return s.walkAll(ctx, m, depth, nil, fn)
}

// walkAll is walk that also reports each indirect manifest's entry.
func (s *Store) walkAll(ctx context.Context, m manifest, depth int, onManifest func(Entry), fn func(Entry) bool) error {
	if depth > maxManifestDepth {
		return fmt.Errorf("store: %w: deeper than %d levels", ErrBadManifest, maxManifestDepth)
	}
	if m.kind == kindSelf && depth > 0 {
		return fmt.Errorf("store: %w: a self manifest under another", ErrBadManifest)
	}
	for _, e := range m.entries {
		if m.kind == kindData {
			if !fn(e) {
				return ctx.Err()
			}
			continue
		}
		if onManifest != nil {
			onManifest(e)
		}
		plain, err := s.GetBlob(ctx, e)
		if err != nil {
			return err
		}
		sub, err := decodeManifest(plain)
		if err != nil {
			return err
		}
		if sub.size != e.Length {
			return fmt.Errorf("store: %w: sub-manifest covers %d bytes, parent says %d", ErrBadManifest, sub.size, e.Length)
		}
		if err := s.walkAll(ctx, sub, depth+1, onManifest, fn); err != nil {
			return err
		}
	}
	return nil
}
