package peer

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/reefproject/reef/addr"
	"github.com/reefproject/reef/api"
	"github.com/reefproject/reef/blockstore"
	"github.com/reefproject/reef/erasure"
	"github.com/reefproject/reef/membership"
	"github.com/reefproject/reef/namespace"
	"github.com/reefproject/reef/placement"
	"github.com/reefproject/reef/store"
)

// Keeping the redundancy, without a coordinator.
//
// Every peer runs the same maintenance pass every MaintEvery:
//   - census: every live peer lists the shards it holds;
//   - repair: for every stripe the namespace references, the shards missing
//     from the live peers are rebuilt from any k and written where placement
//     now puts them. Exactly one peer repairs a stripe: the live peer that
//     ranks first for (address, shard 0). A missing shard whose expected
//     holder has been gone for less than RepairAfter is left alone (the peer
//     may come back); a shard dropped by scrub on a live peer is rebuilt at
//     once;
//   - rebalance: each peer moves the shards it holds that placement now puts
//     elsewhere (a peer joined, or this one drains) to their holder, copying
//     before deleting, so no stripe drops below what it had.
// Scrub re-reads and verifies every local shard at a low rate; corrupt ones
// are dropped, and the next repair pass rebuilds them.

// maint is the state of repair, scrub, rebalance and drain on one peer.
type maint struct {
	p *Peer

	mu       sync.Mutex // guards the fields below
	status   api.RepairStatus
	plan     api.RepairPlan
	scrub    api.ScrubResult
	draining bool
	drained  int64
	coding   map[string][2]int // shard key -> k, m (read once from the shard header)
	running  bool              // a pass is in progress

	kick chan struct{} // asks for a pass now
}

func newMaint(p *Peer) *maint {
	m := &maint{p: p, coding: map[string][2]int{}, kick: make(chan struct{}, 1)}
	if _, err := os.Stat(filepath.Join(p.cfg.DataDir, "draining")); err == nil {
		m.draining = true
	}
	return m
}

func (m *maint) poke() {
	select {
	case m.kick <- struct{}{}:
	default:
	}
}

// run does maintenance passes until the peer stops.
func (m *maint) run() {
	every := m.p.cfg.MaintEvery
	t := time.NewTicker(every)
	defer t.Stop()
	changes := m.p.node.Subscribe()
	scrubNext := time.Now().Add(m.p.cfg.ScrubEvery)
	for {
		select {
		case <-m.p.stop:
			return
		case <-t.C:
		case <-m.kick:
		case _, ok := <-changes:
			if !ok {
				return
			}
			continue // membership settles first; the next tick sees it
		}
		ctx, cancel := context.WithCancel(context.Background())
		go func() {
			select {
			case <-m.p.stop:
				cancel()
			case <-ctx.Done():
			}
		}()
		m.pass(ctx)
		if m.p.cfg.ScrubEvery > 0 && time.Now().After(scrubNext) {
			m.scrubPass(ctx, true, m.p.cfg.ScrubRate)
			scrubNext = time.Now().Add(m.p.cfg.ScrubEvery)
		}
		cancel()
	}
}

// pass is one repair + rebalance pass.
func (m *maint) pass(ctx context.Context) {
	m.mu.Lock()
	if m.running {
		m.mu.Unlock()
		return
	}
	m.running = true
	m.status.Running = true
	m.mu.Unlock()
	defer func() {
		m.mu.Lock()
		m.running = false
		m.status.Running = false
		m.status.LastPass = time.Now()
		m.mu.Unlock()
	}()
	gc := m.p.gc
	if m.isDraining() {
		gc = nil // a draining peer moves everything away
	}
	var err error
	if gc != nil {
		// Before rebalance, which leaves candidates where they are.
		err = gc.walkHints(ctx)
	}
	if rerr := m.repair(ctx, "", false); err == nil {
		err = rerr
	}
	if rerr := m.rebalance(ctx); err == nil {
		err = rerr
	}
	if gc != nil {
		if gerr := gc.sweep(ctx); err == nil {
			err = gerr
		}
	}
	m.p.metrics.SetRepairQueue(0)
	m.mu.Lock()
	if err != nil && ctx.Err() == nil {
		m.status.LastError = err.Error()
		m.p.log.Warn("maintenance pass", "err", err)
	} else {
		m.status.LastError = ""
	}
	m.mu.Unlock()
}

// fileRef is a file of the namespace with chunked content.
type fileRef struct {
	path     string
	size     int64
	manifest addr.Addr
}

// files lists the chunked files under the entry at dir (a file or a
// directory), each inode once.
func (p *Peer) files(dir string) ([]fileRef, error) {
	out, _, err := p.filesAndInline(dir)
	return out, err
}

// filesAndInline is files, and also counts the files whose content lives
// inline in the namespace (on every peer, so never short of copies).
func (p *Peer) filesAndInline(dir string) ([]fileRef, int, error) {
	root, err := p.ns.Resolve(dir)
	if err != nil {
		return nil, 0, fmt.Errorf("%s: %w", dir, err)
	}
	var out []fileRef
	inline := 0
	seen := map[namespace.InodeID]bool{}
	add := func(e namespace.Entry, path string) {
		if e.Inode.Type != namespace.File || seen[e.Inode.ID] {
			return
		}
		seen[e.Inode.ID] = true
		if e.Inode.Content.Manifest == ([32]byte{}) {
			inline++
			return
		}
		out = append(out, fileRef{path: path, size: e.Inode.Size, manifest: addr.Addr(e.Inode.Content.Manifest)})
	}
	if root.Inode.Type != namespace.Dir {
		add(root, dir)
		return out, inline, nil
	}
	type item struct {
		node namespace.NodeID
		path string
	}
	stack := []item{{root.Node, strings.TrimSuffix(dir, "/")}}
	for len(stack) > 0 {
		it := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		es, err := p.ns.ReadDir(it.node)
		if err != nil {
			continue // removed meanwhile
		}
		for _, e := range es {
			pth := it.path + "/" + e.Name
			if e.Inode.Type == namespace.Dir {
				stack = append(stack, item{e.Node, pth})
			} else {
				add(e, pth)
			}
		}
	}
	return out, inline, nil
}

// census maps every stripe address to the shard indexes live peers hold,
// and returns the peers that answered.
func (p *Peer) census(ctx context.Context) (map[addr.Addr]map[int][]string, map[string]bool, error) {
	out := map[addr.Addr]map[int][]string{}
	answered := map[string]bool{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	var errs []string
	for _, mem := range p.node.Live() {
		wg.Add(1)
		go func() {
			defer wg.Done()
			keys, err := p.inventory(ctx, mem.ID)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				errs = append(errs, fmt.Sprintf("%s: %v", mem.ID, err))
				return
			}
			answered[mem.ID] = true
			for _, k := range keys {
				h := out[k.Addr]
				if h == nil {
					h = map[int][]string{}
					out[k.Addr] = h
				}
				h[k.Index] = append(h[k.Index], mem.ID)
			}
		}()
	}
	wg.Wait()
	if len(answered) == 0 {
		return nil, nil, fmt.Errorf("census: no peer answered: %s", strings.Join(errs, "; "))
	}
	return out, answered, nil
}

const keySize = addr.Size + 2

func parseKeyBytes(b []byte) (store.ShardKey, bool) {
	if len(b) != keySize {
		return store.ShardKey{}, false
	}
	var k store.ShardKey
	copy(k.Addr[:], b)
	k.Index = int(binary.BigEndian.Uint16(b[addr.Size:]))
	return k, true
}

// localKeys lists this peer's shards.
func (p *Peer) localKeys(ctx context.Context) ([]store.ShardKey, error) {
	var out []store.ShardKey
	err := p.bs.List(ctx, nil, func(key []byte, _ int64) error {
		if k, ok := parseKeyBytes(key); ok {
			out = append(out, k)
		}
		return nil
	})
	return out, err
}

// inventory lists a peer's shards.
func (p *Peer) inventory(ctx context.Context, peer string) ([]store.ShardKey, error) {
	if peer == p.id {
		return p.localKeys(ctx)
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	resp, err := p.net.request(ctx, http.MethodGet, peer, "/v1/inventory", nil)
	if err != nil {
		return nil, err
	}
	defer drain(resp)
	if resp.StatusCode != http.StatusOK {
		return nil, peerError(resp)
	}
	const maxInventory = 1 << 31
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxInventory+1))
	if err != nil {
		return nil, err
	}
	if len(b) > maxInventory || len(b)%keySize != 0 {
		return nil, fmt.Errorf("bad inventory of %d bytes", len(b))
	}
	out := make([]store.ShardKey, 0, len(b)/keySize)
	for i := 0; i < len(b); i += keySize {
		k, _ := parseKeyBytes(b[i : i+keySize])
		out = append(out, k)
	}
	return out, nil
}

func (p *Peer) handleInventory(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/octet-stream")
	p.bs.List(r.Context(), nil, func(key []byte, _ int64) error {
		if len(key) != keySize {
			return nil
		}
		_, err := w.Write(key)
		return err
	})
}

// stripe is one stripe referenced by a file.
type stripe struct {
	e    store.Entry
	kind string
	file string
	off  int64
}

// stripesOf lists the stripes of files, each address once.
func (p *Peer) stripesOf(ctx context.Context, files []fileRef) ([]stripe, []string) {
	var out []stripe
	var errs []string
	seen := map[addr.Addr]bool{}
	for _, f := range files {
		es, err := p.store.Stripes(ctx, f.manifest)
		if err != nil {
			errs = append(errs, fmt.Sprintf("%s: %v", f.path, err))
			continue
		}
		var off int64
		for i, e := range es {
			kind := "data"
			if e.Addr == f.manifest || i == 0 {
				kind = "manifest"
			}
			if !seen[e.Addr] {
				seen[e.Addr] = true
				out = append(out, stripe{e: e, kind: kind, file: f.path, off: off})
			}
			if kind == "data" {
				off += e.Length
			}
		}
	}
	return out, errs
}

// peerRedundancy is how many more peers a stripe survives losing: peers
// holding two shards of it (a small or degraded cluster) count for two.
// Worst case: the peers holding the most distinct shards go first.
func peerRedundancy(held map[int][]string, k int) int {
	if len(held) < k {
		return -1
	}
	per := map[string]int{}
	for _, peers := range held {
		for _, p := range peers {
			per[p]++
		}
	}
	counts := make([]int, 0, len(per))
	for _, c := range per {
		counts = append(counts, c)
	}
	sort.Sort(sort.Reverse(sort.IntSlice(counts)))
	left, n := len(held), 0
	for _, c := range counts {
		// A shard index held by several peers is only lost with all of
		// them; counting per peer is the pessimistic bound.
		if left-c < k {
			break
		}
		left -= c
		n++
	}
	return n
}

func stateOf(present, k, m int) string {
	switch {
	case present >= k+m:
		return "healthy"
	case present >= k:
		return "degraded"
	default:
		return "lost"
	}
}

// health reports the redundancy of the files under dir ("" = everything).
func (p *Peer) health(ctx context.Context, dir string) (api.Health, error) {
	h := api.Health{Scope: "cluster", MinRedundancy: -1}
	scope := "/"
	if dir != "" && dir != "/" {
		scope = path.Clean("/" + dir)
		h.Scope = scope
	}
	files, inline, err := p.filesAndInline(scope)
	if err != nil {
		return h, err
	}
	h.InlineFiles = inline
	census, _, err := p.census(ctx)
	if err != nil {
		return h, err
	}
	h.Files = len(files)
	perFile := map[string]*api.FileHealth{}
	for _, f := range files {
		perFile[f.path] = &api.FileHealth{Path: f.path, Size: f.size}
	}
	stripes, errs := p.stripesOf(ctx, files)
	h.Errors = errs
	first := true
	for _, s := range stripes {
		present := len(census[s.e.Addr])
		st := stateOf(present, s.e.K, s.e.M)
		h.ChunksTotal++
		fh := perFile[s.file]
		fh.Chunks++
		switch st {
		case "healthy":
			h.ChunksHealthy++
			fh.Healthy++
		case "degraded":
			h.ChunksDegraded++
			fh.Degraded++
			h.BytesAtRisk += s.e.Length
		default:
			h.ChunksLost++
			fh.Lost++
			h.BytesAtRisk += s.e.Length
		}
		if red := peerRedundancy(census[s.e.Addr], s.e.K); first || red < h.MinRedundancy {
			h.MinRedundancy = max(red, -1)
			first = false
		}
		if len(files) == 1 && scope != "/" {
			holders := map[string][]int{}
			for idx, peers := range census[s.e.Addr] {
				for _, pr := range peers {
					holders[pr] = append(holders[pr], idx)
				}
			}
			for _, v := range holders {
				sort.Ints(v)
			}
			h.ChunkDetail = append(h.ChunkDetail, api.ChunkHealth{Addr: s.e.Addr.String(), Kind: s.kind, Offset: s.off,
				Length: s.e.Length, K: s.e.K, M: s.e.M, Present: present, State: st, Holders: holders})
		}
	}
	if first {
		h.MinRedundancy = 0
	}
	if dir != "" && dir != "/" {
		for _, f := range files {
			h.FileDetail = append(h.FileDetail, *perFile[f.path])
		}
		sort.Slice(h.FileDetail, func(i, j int) bool { return h.FileDetail[i].Path < h.FileDetail[j].Path })
	}
	for _, mem := range p.node.Members() {
		h.Peers = append(h.Peers, api.PeerHealth{ID: mem.ID, State: mem.State.String(), Draining: mem.Meta.Flags&membership.FlagDraining != 0,
			Shards: mem.Meta.Shards, Bytes: mem.Meta.Used, LastSeen: mem.LastSeen})
	}
	h.Repair = p.maint.snapshot()
	return h, nil
}

func (m *maint) snapshot() api.RepairStatus {
	m.mu.Lock()
	st := m.status
	st.ScrubChecked, st.ScrubTotal, st.ScrubCorrupt, st.ScrubRunning = m.scrub.Checked, m.scrub.Total, m.scrub.Corrupt, m.scrub.Running
	m.mu.Unlock()
	if g := m.p.gc; g != nil {
		g.mu.Lock()
		st.GCCandidates = int64(len(g.cands))
		g.mu.Unlock()
		st.GCDeletedShards, st.GCDeletedBytes = g.deleted.Load(), g.deletedBytes.Load()
	} else {
		st.GCOff = true
	}
	held, purged := m.p.ns.Trash()
	st.TrashEntries, st.TrashPurged = int64(held), purged
	return st
}

// repairParallel is how many stripes one peer rebuilds at once.
const repairParallel = 4

// repairJob is one stripe to rebuild.
type repairJob struct {
	s       stripe
	missing []int
}

// repair rebuilds what is missing under dir. manual (reef repair --apply)
// rebuilds everything missing now, whoever would lead and however recently
// a peer went away; the automatic pass waits RepairAfter and leaves each
// stripe to its leader.
func (m *maint) repair(ctx context.Context, dir string, manual bool) error {
	p := m.p
	jobs, lost, plan, err := m.findWork(ctx, dir, manual)
	if err != nil {
		return err
	}
	p.metrics.SetRepairQueue(int64(len(jobs)))
	m.mu.Lock()
	m.status.Queue = len(jobs)
	if manual {
		m.plan = plan
		m.plan.Apply = true
	}
	m.mu.Unlock()
	if lost > 0 && !manual {
		p.log.Warn("stripes lost (fewer than k shards on live peers)", "count", lost)
	}
	// Several stripes at once: a rebuild waits on k reads and a few
	// fsync'd writes, so one at a time leaves the machine idle.
	var emu sync.Mutex
	var errs []string
	sem := make(chan struct{}, repairParallel)
	var wg sync.WaitGroup
	for _, j := range jobs {
		if ctx.Err() != nil {
			break
		}
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			n, bytes, err := m.rebuild(ctx, j)
			m.mu.Lock()
			m.status.Queue--
			if err != nil {
				emu.Lock()
				errs = append(errs, fmt.Sprintf("%s: %v", j.s.e.Addr.Short(), err))
				emu.Unlock()
				if manual {
					m.plan.Errors = append(m.plan.Errors, err.Error())
				}
			} else {
				m.status.RepairedChunks++
				m.status.RepairedShards += int64(n)
				m.status.RepairedBytes += bytes
				if manual {
					m.plan.Rebuilt += n
				}
			}
			m.mu.Unlock()
			if err == nil {
				p.metrics.AddRepaired(1, int64(n), bytes)
			}
			m.throttle(ctx, bytes*repairParallel, p.cfg.RepairRate)
		}()
	}
	wg.Wait()
	if ctx.Err() != nil {
		return ctx.Err()
	}
	m.mu.Lock()
	m.status.Queue = 0
	if manual {
		m.plan.Done = true
	}
	m.mu.Unlock()
	if len(errs) > 0 {
		return fmt.Errorf("repair: %d of %d stripes failed: %s", len(errs), len(jobs), strings.Join(errs[:min(3, len(errs))], "; "))
	}
	return nil
}

// findWork finds the stripes under dir that need shards rebuilt.
func (m *maint) findWork(ctx context.Context, dir string, manual bool) ([]repairJob, int, api.RepairPlan, error) {
	p := m.p
	var plan api.RepairPlan
	scope := "/"
	if dir != "" {
		scope = path.Clean("/" + dir)
	}
	files, err := p.files(scope)
	if err != nil {
		return nil, 0, plan, err
	}
	census, answered, err := p.census(ctx)
	if err != nil {
		return nil, 0, plan, err
	}
	stripes, errs := p.stripesOf(ctx, files)
	plan.Errors = errs
	// Peers gone for less than RepairAfter, and live ones that did not
	// answer the census, may still hold their shards.
	waiting := map[string]bool{}
	var expectSet []placement.Member
	for _, mem := range p.node.Members() {
		live := mem.State == membership.StateAlive || mem.State == membership.StateSuspect
		if live && answered[mem.ID] {
			if mem.Meta.Flags&membership.FlagDraining == 0 {
				expectSet = append(expectSet, toPlacement(mem))
			}
			continue
		}
		if live || time.Since(mem.LastSeen) < p.cfg.RepairAfter {
			waiting[mem.ID] = true
			expectSet = append(expectSet, toPlacement(mem))
		}
	}
	var leaders []placement.Member
	for _, mem := range p.node.Live() {
		if answered[mem.ID] {
			leaders = append(leaders, toPlacement(mem))
		}
	}
	var jobs []repairJob
	lost := 0
	var healthy, degraded, atRisk int64
	defer func() {
		if !manual && dir == "" {
			p.metrics.SetHealth(healthy, degraded, int64(lost), atRisk)
		}
	}()
	for _, s := range stripes {
		n := s.e.K + s.e.M
		have := census[s.e.Addr]
		switch {
		case len(have) >= n:
			healthy++
		case len(have) >= s.e.K:
			degraded++
			atRisk += s.e.Length
		default:
			atRisk += s.e.Length
		}
		if len(have) >= n {
			continue
		}
		if len(have) < s.e.K {
			lost++
			plan.Lost++
			continue
		}
		var missing []int
		var expected []placement.Member
		if !manual {
			expected = placement.Place(s.e.Addr[:], n, expectSet)
		}
		for i := range n {
			if len(have[i]) > 0 {
				continue
			}
			if !manual && i < len(expected) && waiting[expected[i].ID] {
				continue
			}
			missing = append(missing, i)
		}
		if len(missing) == 0 {
			continue
		}
		if !manual {
			if r := placement.Rank(s.e.Addr[:], 0, leaders); len(r) == 0 || r[0].ID != p.id {
				continue
			}
		}
		jobs = append(jobs, repairJob{s, missing})
		plan.Chunks++
		plan.Shards += len(missing)
		shardLen := (s.e.Length + int64(s.e.K) - 1) / int64(s.e.K)
		plan.Bytes += shardLen * int64(len(missing))
		if len(plan.Samples) < 10 {
			plan.Samples = append(plan.Samples, fmt.Sprintf("%s: %s chunk %s at %d: rebuild shards %v (%d of %d present)",
				s.file, s.kind, s.e.Addr.Short(), s.off, missing, len(have), n))
		}
	}
	return jobs, lost, plan, nil
}

func toPlacement(m membership.Member) placement.Member {
	return placement.Member{ID: m.ID, Zone: m.Meta.Zone, Weight: float64(m.Meta.Capacity)}
}

// rebuild reconstructs a stripe's missing shards and writes them where
// placement puts them now.
func (m *maint) rebuild(ctx context.Context, j repairJob) (int, int64, error) {
	shards, err := m.p.store.Rebuild(ctx, j.s.e)
	if err != nil {
		return 0, 0, err
	}
	holders := m.p.store.PlaceShards(j.s.e)
	n := 0
	var bytes int64
	for _, i := range j.missing {
		if i >= len(shards) || i >= len(holders) {
			continue
		}
		key := store.ShardKey{Addr: j.s.e.Addr, Index: i}
		target := holders[i].ID
		if _, err := m.p.net.PutShard(ctx, target, key, shards[i]); err != nil {
			// The named holder is unreachable: any other live peer will do
			// until rebalance moves it.
			placed := false
			for _, alt := range placement.Rank(key.Addr[:], i, m.p.liveMembers()) {
				if alt.ID == target {
					continue
				}
				if _, err2 := m.p.net.PutShard(ctx, alt.ID, key, shards[i]); err2 == nil {
					placed = true
					break
				}
			}
			if !placed {
				return n, bytes, fmt.Errorf("shard %d: %w", i, err)
			}
		}
		n++
		bytes += int64(len(shards[i]))
	}
	return n, bytes, nil
}

// throttle sleeps so that work proceeds at about rate bytes per second.
func (m *maint) throttle(ctx context.Context, bytes, rate int64) {
	if rate <= 0 || bytes <= 0 {
		return
	}
	d := time.Duration(float64(bytes) / float64(rate) * float64(time.Second))
	select {
	case <-ctx.Done():
	case <-m.p.stop:
	case <-time.After(d):
	}
}

// learnCoding records the coding of a shard just stored here.
func (m *maint) learnCoding(key []byte, k, mm int) {
	m.mu.Lock()
	m.coding[string(key)] = [2]int{k, mm}
	m.mu.Unlock()
}

// codingOf returns a local shard's k and m, from a cache or its header.
func (m *maint) codingOf(ctx context.Context, k store.ShardKey) (int, int, error) {
	ks := string(shardKey(k))
	m.mu.Lock()
	c, ok := m.coding[ks]
	m.mu.Unlock()
	if ok {
		return c[0], c[1], nil
	}
	b, err := m.p.bs.Get(ctx, shardKey(k))
	if err != nil {
		return 0, 0, err
	}
	h, err := erasure.Verify(b)
	if err != nil {
		return 0, 0, err
	}
	m.mu.Lock()
	m.coding[ks] = [2]int{h.K, h.M}
	m.mu.Unlock()
	return h.K, h.M, nil
}

// rebalance moves local shards that placement puts elsewhere to their
// holder: copy, then delete. Peers gone for less than RepairAfter still
// count, so a short absence moves nothing.
func (m *maint) rebalance(ctx context.Context) error {
	p := m.p
	keys, err := p.localKeys(ctx)
	if err != nil {
		return err
	}
	var set []placement.Member
	for _, mem := range p.node.Members() {
		live := mem.State == membership.StateAlive || mem.State == membership.StateSuspect
		if mem.Meta.Flags&membership.FlagDraining != 0 || (mem.ID == p.id && m.isDraining()) {
			continue
		}
		if live || (mem.State == membership.StateDead && time.Since(mem.LastSeen) < p.cfg.RepairAfter) {
			set = append(set, toPlacement(mem))
		}
	}
	if len(set) == 0 {
		return nil
	}
	liveIDs := map[string]bool{}
	for _, mem := range p.node.Live() {
		liveIDs[mem.ID] = true
	}
	var errs []string
	draining := m.isDraining()
	for _, k := range keys {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if !draining && p.gc.isCandidate(k.Addr) {
			// Nothing references it: moved, it would reach a peer that
			// does not know it is garbage. It is collected here.
			continue
		}
		kk, mm, err := m.codingOf(ctx, k)
		if err != nil {
			continue // scrub deals with unreadable shards
		}
		holders := placement.Place(k.Addr[:], kk+mm, set)
		if k.Index >= len(holders) || holders[k.Index].ID == p.id {
			continue
		}
		target := holders[k.Index].ID
		if !liveIDs[target] {
			continue // its holder is away for now
		}
		shard, err := p.bs.Get(ctx, shardKey(k))
		if err != nil {
			continue
		}
		if _, err := p.net.PutShard(ctx, target, k, shard); err != nil {
			errs = append(errs, fmt.Sprintf("%s to %s: %v", k, target, err))
			continue
		}
		if err := p.bs.Delete(ctx, shardKey(k)); err != nil {
			errs = append(errs, fmt.Sprintf("delete %s: %v", k, err))
			continue
		}
		m.mu.Lock()
		delete(m.coding, string(shardKey(k)))
		m.status.MovedShards++
		if m.draining {
			m.drained++
		}
		m.mu.Unlock()
		p.metrics.AddRebalanced(1, int64(len(shard)))
		m.throttle(ctx, int64(len(shard)), p.cfg.RepairRate)
	}
	if len(errs) > 0 {
		return fmt.Errorf("rebalance: %d shards not moved: %s", len(errs), strings.Join(errs[:min(3, len(errs))], "; "))
	}
	return nil
}

func (m *maint) isDraining() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.draining
}

// scrubPass re-reads and verifies every local shard; with apply, corrupt
// ones are dropped (the repair pass rebuilds them).
func (m *maint) scrubPass(ctx context.Context, apply bool, rate int64) api.ScrubResult {
	p := m.p
	m.mu.Lock()
	if m.scrub.Running {
		r := m.scrub
		m.mu.Unlock()
		return r
	}
	m.scrub = api.ScrubResult{Peer: p.id, Apply: apply, Running: true}
	m.mu.Unlock()
	keys, err := p.localKeys(ctx)
	m.mu.Lock()
	m.scrub.Total = int64(len(keys))
	if err != nil {
		m.scrub.Error = err.Error()
	}
	m.mu.Unlock()
	for _, k := range keys {
		if ctx.Err() != nil {
			break
		}
		b, err := p.bs.Get(ctx, shardKey(k))
		corrupt := errors.Is(err, blockstore.ErrCorrupt)
		if err == nil {
			if h, verr := erasure.Verify(b); verr != nil || h.Index != k.Index {
				corrupt = true
			}
		} else if !corrupt {
			continue // deleted meanwhile, or closing
		}
		dropped := false
		if corrupt {
			p.log.Warn("scrub: corrupt shard", "shard", k.String(), "err", err)
			if apply {
				if derr := p.bs.Delete(ctx, shardKey(k)); derr == nil {
					dropped = true
				}
			}
		}
		m.mu.Lock()
		m.scrub.Checked++
		m.scrub.Bytes += int64(len(b))
		if corrupt {
			m.scrub.Corrupt++
		}
		if dropped {
			m.scrub.Dropped++
		}
		m.mu.Unlock()
		var c int64
		if corrupt {
			c = 1
		}
		p.metrics.AddScrubbed(1, int64(len(b)), c)
		m.mu.Lock()
		p.metrics.SetScrubProgress(m.scrub.Checked, m.scrub.Total)
		m.mu.Unlock()
		m.throttle(ctx, int64(len(b)), rate)
	}
	m.mu.Lock()
	m.scrub.Running = false
	r := m.scrub
	m.mu.Unlock()
	if r.Dropped > 0 {
		m.poke() // rebuild what was dropped
	}
	return r
}

// setDraining marks this peer as draining (persisted, and gossiped).
func (m *maint) setDraining() error {
	m.mu.Lock()
	m.draining = true
	m.mu.Unlock()
	if err := os.WriteFile(filepath.Join(m.p.cfg.DataDir, "draining"), []byte("draining\n"), 0o600); err != nil {
		return err
	}
	if err := m.p.node.UpdateMeta(func(meta *membership.Meta) { meta.Flags |= membership.FlagDraining }); err != nil {
		return err
	}
	m.poke()
	return nil
}
