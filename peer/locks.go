package peer

import (
	"context"
	crand "crypto/rand"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"maps"
	"net/http"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/reefproject/reef/api"
	"github.com/reefproject/reef/lock"
	"github.com/reefproject/reef/namespace"
)

// File locks across mounts. Each file's locks are kept in memory by one
// peer, its keeper: the first of the live peers in a rendezvous ranking by
// the file's inode, so no peer is central and every peer agrees on the
// keeper once membership agrees. A mount sends fcntl and flock requests to
// the keeper (stream frames), keeps a mirror of what it was granted, and
// re-asserts all of it every lockRefresh: the keeper's table is a lease
// that expires lockTTL after a mount stops refreshing (it crashed or was
// cut off), and a keeper that just took files over (it started, or the
// membership changed) refuses new locks on them for lockGrace while the
// holders re-assert theirs. Lock waits are polled; see lockClient.Set.
const (
	frameLock    = 5
	maxLockFrame = 16 << 20
	lockRefresh  = 2 * time.Second
	lockTTL      = 10 * time.Second
	lockGrace    = 6 * time.Second
	// lockTimeout is how long a request keeps trying to reach its keeper
	// (one unreachable, or in its grace period) before it fails (ENOLCK).
	lockTimeout = 10 * time.Second
	// lockCallTimeout bounds one request to a keeper.
	lockCallTimeout = 2 * time.Second
	// maxHeldLocks bounds the locks one mount holds (ENOLCK past it).
	maxHeldLocks = 50000
)

// ErrNoLocks is a lock request that could not be served: its keeper was
// unreachable for lockTimeout, or the mount holds maxHeldLocks.
var ErrNoLocks = errors.New("no locks available")

type lockRequest struct {
	Op      string          `json:"op"` // "set", "test" or "refresh"
	File    uint64          `json:"file,omitempty"`
	Lock    lock.Lock       `json:"lock"`
	Session lock.Session    `json:"session"`
	Held    []lock.FileLock `json:"held,omitempty"` // refresh: all the session's locks
	// Frontier (unlock) is the unlocking peer's own namespace sequence:
	// its changes to the file up to there are durable.
	Frontier map[string]uint64 `json:"frontier,omitempty"`
}

type lockAnswer struct {
	// Conflict is the lock that blocks a set (not granted) or a test.
	Conflict *lock.Lock `json:"conflict,omitempty"`
	// Retry says why the request was not served here now ("grace",
	// "not keeper"): the requester tries again shortly.
	Retry string          `json:"retry,omitempty"`
	Lost  []lock.FileLock `json:"lost,omitempty"` // refresh: locks granted to others meanwhile
	Kept  []lock.FileLock `json:"kept,omitempty"` // list: every lock the keeper keeps
	// Frontier (grant) is what the file's last unlockers had written: the
	// new holder catches up with it before its process goes on.
	Frontier map[string]uint64 `json:"frontier,omitempty"`
}

// maxFrontier bounds the origins a frontier names.
const maxFrontier = 64

// markTTL is how long a file's unlock frontier is kept: anti-entropy
// spreads every change within seconds, so a later holder needs none.
const markTTL = 30 * time.Second

type mark struct {
	frontier map[string]uint64
	at       time.Time
}

// keeperOf is the peer that keeps file's locks among live (sorted or not):
// the highest rendezvous score.
func keeperOf(live []string, file uint64) string {
	best, bestScore := "", uint64(0)
	for _, id := range live {
		h := fnv.New64a()
		h.Write([]byte(id))
		s := mix64(h.Sum64() ^ mix64(file))
		if best == "" || s > bestScore || (s == bestScore && id < best) {
			best, bestScore = id, s
		}
	}
	return best
}

// mix64 is splitmix64's finalizer.
func mix64(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return x
}

// lockKeeper serves the locks of the files this peer keeps.
type lockKeeper struct {
	p    *Peer
	self string          // this peer's id
	live func() []string // the live peers' ids, sorted
	now  func() time.Time

	mu      sync.Mutex // guards the fields below
	table   *lock.Table
	started time.Time
	view    []string   // the live peers as last seen, sorted
	history []pastView // views replaced less than lockGrace ago
	marks   map[uint64]mark
}

type pastView struct {
	ids   []string
	until time.Time
}

func newLockKeeper(p *Peer) *lockKeeper {
	return &lockKeeper{p: p, self: p.id, live: p.liveIDs, now: time.Now, table: lock.NewTable(), started: time.Now(), marks: map[uint64]mark{}}
}

// liveIDs returns the live peers' ids, sorted.
func (p *Peer) liveIDs() []string {
	var ids []string
	for _, m := range p.node.Live() {
		ids = append(ids, m.ID)
	}
	slices.Sort(ids)
	return ids
}

// observeLocked records the current view of the membership.
func (k *lockKeeper) observeLocked(ids []string, now time.Time) {
	if k.view == nil {
		k.view = ids // the first look: started covers the grace
	} else if !slices.Equal(ids, k.view) {
		k.history = append(k.history, pastView{ids: k.view, until: now.Add(lockGrace)})
		k.view = ids
	}
	for len(k.history) > 0 && now.After(k.history[0].until) {
		k.history = k.history[1:]
	}
}

// inGraceLocked reports whether file came to this keeper less than
// lockGrace ago: after its start, or from a view in which another peer
// kept it.
func (k *lockKeeper) inGraceLocked(file uint64, now time.Time) bool {
	if now.Sub(k.started) < lockGrace {
		return true
	}
	for _, h := range k.history {
		if keeperOf(h.ids, file) != k.self {
			return true
		}
	}
	return false
}

// serve answers one lock request.
func (k *lockKeeper) serve(req lockRequest) (lockAnswer, error) {
	now := k.now()
	ids := k.live()
	k.mu.Lock()
	defer k.mu.Unlock()
	k.observeLocked(ids, now)
	mine := func(file uint64) bool { return keeperOf(ids, file) == k.self }
	switch req.Op {
	case "set", "test":
		if err := req.Lock.Validate(); err != nil {
			return lockAnswer{}, err
		}
		if !mine(req.File) {
			return lockAnswer{Retry: "not keeper"}, nil
		}
		if req.Op == "test" {
			c, ok := k.table.Test(req.File, req.Lock)
			if !ok {
				return lockAnswer{}, nil
			}
			if c.Owner.Session != req.Lock.Owner.Session {
				c.PID = 0 // a process on another machine
			}
			return lockAnswer{Conflict: &c}, nil
		}
		if req.Lock.Kind != lock.Unlock && k.inGraceLocked(req.File, now) {
			return lockAnswer{Retry: "grace"}, nil
		}
		if len(req.Frontier) > maxFrontier {
			return lockAnswer{}, fmt.Errorf("lock request: frontier of %d origins", len(req.Frontier))
		}
		c, err := k.table.Set(req.File, req.Lock, now)
		if errors.Is(err, lock.ErrConflict) {
			if c.Owner.Session != req.Lock.Owner.Session {
				c.PID = 0
			}
			return lockAnswer{Conflict: &c}, nil
		}
		if err != nil {
			return lockAnswer{}, err
		}
		m := k.marks[req.File]
		if req.Lock.Kind == lock.Unlock {
			if len(req.Frontier) > 0 {
				if m.frontier == nil {
					m.frontier = map[string]uint64{}
				}
				for o, q := range req.Frontier {
					if len(m.frontier) < maxFrontier || m.frontier[o] > 0 {
						m.frontier[o] = max(m.frontier[o], q)
					}
				}
				m.at = now
				k.marks[req.File] = m
			}
			return lockAnswer{}, nil
		}
		return lockAnswer{Frontier: maps.Clone(m.frontier)}, nil
	case "list":
		var kept []lock.FileLock
		for _, fl := range k.table.All() {
			if mine(fl.File) { // not copies of locks another keeper took over
				kept = append(kept, fl)
			}
		}
		return lockAnswer{Kept: kept}, nil
	case "refresh":
		if req.Session.Peer == "" || len(req.Held) > maxHeldLocks {
			return lockAnswer{}, fmt.Errorf("lock refresh: bad session or %d locks", len(req.Held))
		}
		for _, fl := range req.Held {
			if err := fl.Lock.Validate(); err != nil {
				return lockAnswer{}, err
			}
		}
		return lockAnswer{Lost: k.table.Refresh(req.Session, req.Held, mine, now)}, nil
	}
	return lockAnswer{}, fmt.Errorf("unknown lock op %q", req.Op)
}

// serveFrame answers a frameLock.
func (k *lockKeeper) serveFrame(body []byte) ([]byte, error) {
	var req lockRequest
	if err := json.Unmarshal(body, &req); err != nil {
		return nil, fmt.Errorf("lock request: %w", err)
	}
	ans, err := k.serve(req)
	if err != nil {
		return nil, err
	}
	return json.Marshal(ans)
}

// run expires the locks of sessions that stopped refreshing.
func (k *lockKeeper) run() {
	t := time.NewTicker(lockRefresh)
	defer t.Stop()
	for {
		select {
		case <-k.p.stop:
			return
		case now := <-t.C:
			k.mu.Lock()
			gone := k.table.Expire(now, lockTTL)
			for f, m := range k.marks {
				if now.Sub(m.at) > markTTL {
					delete(k.marks, f)
				}
			}
			k.mu.Unlock()
			for _, s := range gone {
				k.p.log.Warn("file locks of a mount expired: it stopped refreshing them", "peer", s.Peer, "session", s.ID)
			}
		}
	}
}

// handleLocks serves GET /v1/locks: every live peer's kept locks.
func (p *Peer) handleLocks(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
	defer cancel()
	var out api.Locks
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, id := range p.liveIDs() {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var ans lockAnswer
			var err error
			if id == p.id {
				ans, err = p.locks.serve(lockRequest{Op: "list"})
			} else {
				ans, err = (&lockClient{p: p}).callPeer(ctx, id, lockRequest{Op: "list"})
			}
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				out.Unreachable = append(out.Unreachable, id)
				return
			}
			for _, fl := range ans.Kept {
				l := fl.Lock
				path, _ := p.ns.InodePath(namespace.InodeID(fl.File))
				fam := "posix"
				if l.Flock {
					fam = "flock"
				}
				out.Locks = append(out.Locks, api.FileLock{Path: path, Inode: fl.File, Keeper: id,
					Holder: l.Owner.Peer, Session: l.Owner.ID, Family: fam, Kind: l.Kind.String(),
					Start: l.Start, End: l.End, PID: l.PID})
			}
		}()
	}
	wg.Wait()
	sort.Slice(out.Locks, func(i, j int) bool {
		a, b := out.Locks[i], out.Locks[j]
		if a.Path != b.Path {
			return a.Path < b.Path
		}
		return a.Start < b.Start
	})
	sort.Strings(out.Unreachable)
	if out.Locks == nil {
		out.Locks = []api.FileLock{}
	}
	api.WriteJSON(w, out)
}

// lockClient is a mount's side of the locks: fs.Locker.
type lockClient struct {
	p       *Peer
	session lock.Session

	// refresh is shared by lock requests and held alone by a refresh, so
	// a refresh's list never misses a grant or an unlock in flight.
	refresh sync.RWMutex

	mu     sync.Mutex // guards held and active
	held   *lock.Table
	active time.Time // the last lock request
}

func newLockClient(p *Peer) *lockClient {
	var b [8]byte
	crand.Read(b[:])
	return &lockClient{p: p, session: lock.Session{Peer: p.id, ID: binary.LittleEndian.Uint64(b[:])}, held: lock.NewTable()}
}

// Holds reports whether this mount holds a lock on file.
func (c *lockClient) Holds(file uint64) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.held.Holds(file)
}

// call sends req to file's keeper (this peer's own keeper directly).
func (c *lockClient) call(ctx context.Context, file uint64, req lockRequest) (lockAnswer, string, error) {
	keeper := keeperOf(c.p.liveIDs(), file)
	if keeper == "" {
		return lockAnswer{}, "", errors.New("no live peer")
	}
	ans, err := c.callPeer(ctx, keeper, req)
	return ans, keeper, err
}

func (c *lockClient) callPeer(ctx context.Context, peer string, req lockRequest) (lockAnswer, error) {
	if peer == c.p.id {
		return c.p.locks.serve(req)
	}
	body, err := json.Marshal(req)
	if err != nil {
		return lockAnswer{}, err
	}
	ctx, cancel := context.WithTimeout(ctx, lockCallTimeout)
	defer cancel()
	out, err := c.p.net.streamCallTo(ctx, peer, frameLock, maxLockFrame, nil, body)
	if err != nil {
		return lockAnswer{}, err
	}
	var ans lockAnswer
	if err := json.Unmarshal(out, &ans); err != nil {
		return lockAnswer{}, fmt.Errorf("lock answer from %s: %w", peer, err)
	}
	return ans, nil
}

// Set applies l (its Owner.Kernel set by the mount) to file. Without wait a
// lock another owner holds gives lock.ErrConflict; with wait Set polls the
// keeper until the lock is granted or ctx ends (a signal to the waiting
// process). Polling, not a wait at the keeper: a request is sent only
// while ctx is live and its answer is always applied, so an interrupted
// wait never leaves a lock granted that its process does not know of. The
// price is fairness (no queue: a waiter may lose to a newcomer) and up to
// 50 ms between an unlock and the waiter's grant.
func (c *lockClient) Set(ctx context.Context, file uint64, l lock.Lock, wait bool) error {
	l.Owner.Session = c.session
	c.mu.Lock()
	c.active = time.Now()
	if l.Kind != lock.Unlock && c.held.Count() >= maxHeldLocks {
		c.mu.Unlock()
		return fmt.Errorf("lock: this mount holds %d locks: %w", maxHeldLocks, ErrNoLocks)
	}
	if l.Kind == lock.Unlock && !c.held.Holds(file) {
		c.mu.Unlock()
		return nil // nothing of ours to unlock
	}
	c.mu.Unlock()
	req := lockRequest{Op: "set", File: file, Lock: l}
	if l.Kind == lock.Unlock {
		// The mount made its changes durable before it unlocks (fs): the
		// next holder catches up to here.
		req.Frontier = map[string]uint64{c.p.id: c.p.ns.VersionVector()[c.p.id]}
	}
	rpc := context.WithoutCancel(ctx) // an answer in flight is always applied
	deadline := time.Now().Add(lockTimeout)
	backoff := 2 * time.Millisecond
	for {
		c.refresh.RLock()
		ans, keeper, err := c.call(rpc, file, req)
		if err == nil && ans.Retry == "" && ans.Conflict == nil {
			c.mu.Lock()
			c.held.Apply(file, l)
			c.mu.Unlock()
		}
		c.refresh.RUnlock()
		switch {
		case err == nil && ans.Retry == "" && ans.Conflict == nil:
			c.catchUp(ans.Frontier)
			return nil
		case err == nil && ans.Conflict != nil:
			if !wait {
				return lock.ErrConflict
			}
			deadline = time.Now().Add(lockTimeout) // the keeper answers: wait on
		case l.Kind == lock.Unlock && time.Now().After(deadline):
			// The kernel counts it unlocked whatever we answer; the next
			// refresh tells the keeper.
			c.mu.Lock()
			c.held.Apply(file, l)
			c.mu.Unlock()
			c.p.log.Warn("unlock did not reach the lock keeper; the next refresh drops it", "keeper", keeper, "err", err, "retry", ans.Retry)
			return nil
		case time.Now().After(deadline):
			if err == nil {
				err = errors.New(ans.Retry)
			}
			return fmt.Errorf("lock keeper %s: %v: %w", keeper, err, ErrNoLocks)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 50*time.Millisecond)
	}
}

// catchUp waits (up to catchUpMax) until this peer's namespace holds what
// a file's last unlockers had written, so that a process that takes a lock
// reads what the previous holder wrote, as on one machine. Those changes
// were pushed to every mounting peer before the unlock (fs makes them
// durable first), so this rarely waits at all; after catchUpPull it pulls
// from the live peers.
func (c *lockClient) catchUp(frontier map[string]uint64) {
	behind := func() []string {
		vv := c.p.ns.VersionVector()
		var out []string
		for o, q := range frontier {
			if o != c.p.id && vv[o] < q {
				out = append(out, o)
			}
		}
		return out
	}
	if len(behind()) == 0 {
		return
	}
	t0 := time.Now()
	pulled := false
	for {
		lag := behind()
		if len(lag) == 0 {
			return
		}
		if time.Since(t0) > catchUpMax {
			c.p.log.Warn("lock granted before this peer caught up with the previous holder's changes", "behind_on", lag)
			return
		}
		if !pulled && time.Since(t0) > catchUpPull {
			pulled = true
			ctx, cancel := context.WithTimeout(context.Background(), catchUpMax)
			for _, id := range c.p.liveIDs() {
				if id != c.p.id {
					c.p.pullFrom(ctx, id)
					if len(behind()) == 0 {
						break
					}
				}
			}
			cancel()
			continue
		}
		time.Sleep(time.Millisecond)
	}
}

const (
	catchUpPull = 100 * time.Millisecond
	catchUpMax  = 3 * time.Second
)

// Test returns the lock that would block l on file, if any (F_GETLK).
func (c *lockClient) Test(ctx context.Context, file uint64, l lock.Lock) (lock.Lock, bool, error) {
	l.Owner.Session = c.session
	req := lockRequest{Op: "test", File: file, Lock: l}
	deadline := time.Now().Add(lockTimeout)
	for {
		ans, keeper, err := c.call(ctx, file, req)
		if err == nil && ans.Retry == "" {
			if ans.Conflict == nil {
				return lock.Lock{}, false, nil
			}
			return *ans.Conflict, true, nil
		}
		if time.Now().After(deadline) {
			if err == nil {
				err = errors.New(ans.Retry)
			}
			return lock.Lock{}, false, fmt.Errorf("lock keeper %s: %v: %w", keeper, err, ErrNoLocks)
		}
		select {
		case <-ctx.Done():
			return lock.Lock{}, false, ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// run re-asserts this mount's locks every lockRefresh until the peer stops.
func (c *lockClient) run() {
	t := time.NewTicker(lockRefresh)
	defer t.Stop()
	for {
		select {
		case <-c.p.stop:
			return
		case <-t.C:
			c.refreshOnce()
		}
	}
}

// refreshOnce sends every live peer the whole list of this mount's locks;
// each keeps what it keeps (so peers whose views of the membership differ
// for a moment still agree on every lock). A mount that never locked, or
// held nothing for lockTTL, sends nothing.
func (c *lockClient) refreshOnce() {
	c.refresh.Lock()
	defer c.refresh.Unlock()
	c.mu.Lock()
	held := c.held.All()
	idle := len(held) == 0 && time.Since(c.active) > lockTTL
	c.mu.Unlock()
	if idle {
		return
	}
	req := lockRequest{Op: "refresh", Session: c.session, Held: held}
	ctx, cancel := context.WithTimeout(context.Background(), lockCallTimeout)
	defer cancel()
	var wg sync.WaitGroup
	var mu sync.Mutex
	var lost []lock.FileLock
	for _, id := range c.p.liveIDs() {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ans, err := c.callPeer(ctx, id, req)
			if err != nil {
				c.p.log.Debug("lock refresh", "peer", id, "err", err)
				return
			}
			mu.Lock()
			lost = append(lost, ans.Lost...)
			mu.Unlock()
		}()
	}
	wg.Wait()
	if len(lost) == 0 {
		return
	}
	c.mu.Lock()
	for _, fl := range lost {
		u := fl.Lock
		u.Kind = lock.Unlock
		c.held.Apply(fl.File, u)
	}
	c.mu.Unlock()
	for _, fl := range lost {
		c.p.log.Error("file lock lost: another mount was granted it while this one could not reach the keeper", "inode", fl.File, "kind", fl.Lock.Kind, "start", fl.Lock.Start, "end", fl.Lock.End, "pid", fl.Lock.PID)
	}
}
