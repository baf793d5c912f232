package peer

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/reefproject/reef/api"
	"github.com/reefproject/reef/membership"
	"github.com/reefproject/reef/namespace"
)

// Namespace replication. Every op a peer creates is pushed to every live
// peer at once; the write returns when M other peers hold it durably (so it
// is on M+1 peers). Anti-entropy repairs everything else: once a second
// each peer pulls what it lacks from a random live peer, so a peer that was
// down or cut off catches up on its own; one too far behind installs a
// snapshot.
const (
	maxOpsBody      = 64 << 20
	maxSnapshotBody = 1 << 30
	nsTimeout       = 10 * time.Second
	syncBatch       = 5000
	syncEvery       = time.Second
	// linger is how long an op may wait for company before it is pushed
	// when nobody waits for it (see replicator).
	linger = 10 * time.Millisecond
)

// replicator sends this peer's namespace ops to the others in the
// background, in batches. A write returns once its ops are durable locally;
// close and fsync wait (Barrier) until everything this peer wrote before
// them is held by M other peers. So a create, chmod or rename costs no
// network round trip of its own, and close costs one.
//
// Ops linger in the queue until a Barrier asks for them, the oldest has
// waited linger, or a batch is full: a file's create, write and close then
// travel in one push instead of two or three, and so do the chmod and
// utimens tar issues after a close with the next file's ops. Each push
// costs every receiver a request, so this halves the work per small file.
type replicator struct {
	p *Peer

	mu      sync.Mutex // guards the fields below
	wake    *sync.Cond // signalled when queue grows or acked moves
	queue   []namespace.Op
	queued  uint64 // highest seq ever queued
	acked   uint64 // every seq up to this one is held by M other peers
	lastErr error  // why the last batch did not reach its quorum
	closed  bool
	waiters int  // Barrier calls waiting for acks
	pushing bool // a batch is in flight (one at a time keeps acked in order)
	due     bool // the queued ops have lingered long enough
	timer   *time.Timer
}

func newReplicator(p *Peer) *replicator {
	r := &replicator{p: p}
	r.wake = sync.NewCond(&r.mu)
	return r
}

// enqueue is namespace.Config.Replicate: it never blocks on the network.
func (r *replicator) enqueue(ctx context.Context, ops []namespace.Op) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.queue) == 0 {
		r.armLocked()
	}
	r.queue = append(r.queue, ops...)
	for _, op := range ops {
		r.queued = max(r.queued, op.Seq)
	}
	if r.readyLocked() {
		// Only then: the linger timer and Barrier wake the sender
		// otherwise, and a needless wake-up costs this goroutine (a FUSE
		// request) its turn on the CPU.
		r.wake.Broadcast()
	}
	return nil
}

// armLocked starts the linger clock of the ops queued from now on.
func (r *replicator) armLocked() {
	r.due = false
	if r.timer == nil {
		r.timer = time.AfterFunc(linger, func() {
			r.mu.Lock()
			r.due = true
			r.wake.Broadcast()
			r.mu.Unlock()
		})
		return
	}
	r.timer.Reset(linger)
}

// readyLocked reports whether run should push the queue now.
func (r *replicator) readyLocked() bool {
	return len(r.queue) > 0 && (r.waiters > 0 || r.due || len(r.queue) >= syncBatch)
}

// Barrier waits until every op queued before the call is held by M other
// peers, or fails after nsTimeout (a peer cut off from the cluster gets an
// error, not a hang).
func (r *replicator) Barrier(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, nsTimeout)
	defer cancel()
	stop := context.AfterFunc(ctx, func() {
		r.mu.Lock()
		r.wake.Broadcast()
		r.mu.Unlock()
	})
	defer stop()
	r.mu.Lock()
	defer r.mu.Unlock()
	target := r.queued
	r.waiters++
	defer func() { r.waiters-- }()
	tried := false
	for r.acked < target && !r.closed {
		if ctx.Err() != nil {
			if r.lastErr != nil {
				return fmt.Errorf("namespace change not replicated: %w", r.lastErr)
			}
			return fmt.Errorf("namespace change not replicated: %w", ctx.Err())
		}
		if !r.pushing && len(r.queue) > 0 && !tried {
			// Push on this goroutine: waking the sender and being woken
			// by it again would cost two thread hand-offs per close.
			// After a failure the sender retries with backoff.
			if r.pushLocked() != nil {
				tried = true
			}
			continue
		}
		r.wake.Broadcast() // the sender: the queue need not linger
		r.wake.Wait()
	}
	if r.acked < target {
		return errors.New("namespace change not replicated: peer is shutting down")
	}
	return nil
}

// pushLocked pushes the next batch (at most syncBatch ops) and records the
// outcome. Called with r.mu held and no push in flight; r.mu is released
// during the push and held again on return.
func (r *replicator) pushLocked() error {
	r.pushing = true
	batch := r.queue[:min(len(r.queue), syncBatch)]
	r.mu.Unlock()
	t0 := time.Now()
	err := r.p.push(batch)
	r.p.metrics.ObserveNS("push", time.Since(t0))
	r.mu.Lock()
	r.pushing = false
	if err == nil {
		top := uint64(0)
		for _, op := range batch {
			top = max(top, op.Seq)
		}
		r.queue = r.queue[len(batch):]
		r.acked = max(r.acked, top)
		r.lastErr = nil
		if len(r.queue) > 0 {
			r.armLocked() // what came in during the push lingers afresh
		}
	} else {
		r.lastErr = err
	}
	r.wake.Broadcast()
	return err
}

// SyncBarrier is Barrier for fsync(2): it also asks the live peers to put
// every op and every shard they hold on stable storage, and does so here.
// It returns when M other peers have synced (the namespace change is then
// on the disks of M+1 peers) and all but M of the others have (shards are
// written lazily, see lazyNet: with at most M peers unsynced, every stripe
// written to the live peers keeps K synced shards).
func (r *replicator) SyncBarrier(ctx context.Context) error {
	if err := r.Barrier(ctx); err != nil {
		return err
	}
	if err := r.p.bs.Sync(ctx); err != nil {
		return err
	}
	if err := r.p.ns.Sync(); err != nil {
		return err
	}
	r.mu.Lock()
	target := r.queued
	r.mu.Unlock()
	path := fmt.Sprintf("/v1/ns/fsync?origin=%s&seq=%d", url.QueryEscape(r.p.id), target)
	// The requests past the first need finish in the background: cancelled
	// at the return, as they were, a peer could drop its sync half way,
	// and the "rest soon after" did not come (TestFsyncSyncsShards).
	bg, cancel := context.WithTimeout(context.WithoutCancel(ctx), nsTimeout)
	var wg sync.WaitGroup
	defer func() { go func() { wg.Wait(); cancel() }() }()
	var others []string
	for _, m := range r.p.node.Live() {
		if m.ID != r.p.id {
			others = append(others, m.ID)
		}
	}
	need := min(max(r.p.cfg.M, len(others)-r.p.cfg.M), len(others))
	acks := make(chan error, len(others))
	for _, o := range others {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := r.p.net.request(bg, http.MethodPost, o, path, nil)
			if err == nil {
				if resp.StatusCode != http.StatusOK {
					err = peerError(resp)
				}
				drain(resp)
			}
			acks <- err
		}()
	}
	got := 0
	var errs []string
	for range others {
		if got >= need {
			return nil
		}
		if err := <-acks; err != nil {
			errs = append(errs, err.Error())
		} else {
			got++
		}
	}
	if got >= need {
		return nil
	}
	return fmt.Errorf("changes synced on %d other peers, need %d: %s", got, need, strings.Join(errs, "; "))
}

// handleNSFsync puts every op and shard this peer holds on stable storage,
// after fetching from the asking peer any of its ops up to seq it lacks.
func (p *Peer) handleNSFsync(w http.ResponseWriter, r *http.Request) {
	origin := r.URL.Query().Get("origin")
	seq, _ := strconv.ParseUint(r.URL.Query().Get("seq"), 10, 64)
	if err := p.inbox.drain(nsTimeout); err != nil {
		api.WriteError(w, http.StatusServiceUnavailable, err)
		return
	}
	if origin != "" && p.ns.VersionVector()[origin] < seq {
		if err := p.pullFrom(r.Context(), origin); err != nil {
			api.WriteError(w, http.StatusServiceUnavailable, fmt.Errorf("fetching %s's changes: %w", origin, err))
			return
		}
		if p.ns.VersionVector()[origin] < seq {
			api.WriteError(w, http.StatusServiceUnavailable, fmt.Errorf("still missing %s's changes up to %d", origin, seq))
			return
		}
	}
	if err := p.bs.Sync(r.Context()); err != nil {
		api.WriteError(w, http.StatusInternalServerError, err)
		return
	}
	if err := p.ns.Sync(); err != nil {
		api.WriteError(w, http.StatusInternalServerError, err)
		return
	}
	w.WriteHeader(http.StatusOK)
}

func (r *replicator) close() {
	r.mu.Lock()
	r.closed = true
	r.wake.Broadcast()
	r.mu.Unlock()
}

// run sends batches until the peer stops.
func (r *replicator) run() {
	backoff := 100 * time.Millisecond
	for {
		r.mu.Lock()
		for (!r.readyLocked() || r.pushing) && !r.closed {
			r.wake.Wait()
		}
		if r.closed {
			r.mu.Unlock()
			return
		}
		err := r.pushLocked()
		r.mu.Unlock()
		if err == nil {
			backoff = 100 * time.Millisecond
			continue
		}
		r.p.log.Warn("namespace replication", "err", err)
		select {
		case <-r.p.stop:
			return
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 2*time.Second)
	}
}

// push sends ops to the peers that need them now and returns when M of
// them hold them: every peer that serves a mount (so its users see the
// change within a round trip) and the M peers that follow this one in id
// order (so durability does not depend on who mounts). When those cannot
// give M acks, the remaining live peers are asked too. Peers not pushed to
// get the ops by anti-entropy within a second or so.
func (p *Peer) push(ops []namespace.Op) error {
	body, err := p.ns.EncodeOps(ops)
	if err != nil {
		return err
	}
	var ids []string
	mounted := map[string]bool{}
	for _, m := range p.node.Live() {
		if m.ID != p.id {
			ids = append(ids, m.ID)
			mounted[m.ID] = m.Meta.Flags&membership.FlagMounted != 0
		}
	}
	need := min(p.cfg.M, len(ids))
	if p.cfg.M > 0 && need == 0 {
		return fmt.Errorf("no other live peer to hold the change (need %d)", p.cfg.M)
	}
	// Ring order starting after this peer.
	sort.Strings(ids)
	at := sort.SearchStrings(ids, p.id)
	ring := append(ids[at:len(ids):len(ids)], ids[:at]...)
	var first, rest, late []string
	buddies := 0
	slow := p.slowPushers()
	for _, id := range ring {
		switch {
		case mounted[id]:
			first = append(first, id)
		case slow[id]:
			late = append(late, id) // the quorum's last resort
		case buddies < need:
			first = append(first, id)
			buddies++
		default:
			rest = append(rest, id)
		}
	}
	got, errs := p.pushTo(first, append(rest, late...), body, need)
	if got >= need {
		return nil
	}
	return fmt.Errorf("change held by %d other peers, need %d: %s", got, need, strings.Join(errs, "; "))
}

// pushHedge is how long a push waits for its quorum before it also asks the
// next peers of the ring.
const pushHedge = 250 * time.Millisecond

// pushSlowFor is how long a peer that held up a push is passed over as a
// quorum member, unless it answers a push before.
const pushSlowFor = 30 * time.Second

// pushTo sends body to first in parallel and returns once need of them
// acknowledged (the others finish in the background) or all answered.
// Each failure brings in the next peer of spare, and so does each
// pushHedge without the quorum: a peer that hangs (stopped, or cut off
// without a reset) holds up a close for pushHedge, not for the request
// timeout, and is then passed over (markPushSlow) until it answers again
// or membership gives up on it.
func (p *Peer) pushTo(first, spare []string, body []byte, need int) (int, []string) {
	type ack struct {
		peer string
		err  error
	}
	acks := make(chan ack, len(first)+len(spare))
	bg, cancel := context.WithTimeout(context.Background(), nsTimeout)
	var wg sync.WaitGroup
	waiting := map[string]bool{}
	start := func(o string) {
		waiting[o] = true
		wg.Add(1)
		go func() {
			defer wg.Done()
			acks <- ack{o, p.pushOps(bg, o, body)}
		}()
	}
	for _, o := range first {
		start(o)
	}
	// Too few in first (its quorum members are all known slow): the
	// spares make up the quorum at once.
	for len(waiting) < need && len(spare) > 0 {
		start(spare[0])
		spare = spare[1:]
	}
	defer func() { go func() { wg.Wait(); cancel() }() }()
	hedge := time.NewTimer(pushHedge)
	defer hedge.Stop()
	var errs []string
	got := 0
	for got < need && len(waiting) > 0 {
		select {
		case a := <-acks:
			delete(waiting, a.peer)
			if a.err != nil {
				errs = append(errs, a.err.Error())
				if len(spare) > 0 {
					start(spare[0])
					spare = spare[1:]
				}
				continue
			}
			p.pushAnswered(a.peer)
			got++
		case <-hedge.C:
			var lag []string
			for o := range waiting {
				lag = append(lag, o)
			}
			p.markPushSlow(lag)
			for range min(need-got, len(spare)) {
				p.log.Warn("namespace push slow, asking another peer", "waiting_for", lag, "also", spare[0])
				start(spare[0])
				spare = spare[1:]
			}
			hedge.Reset(pushHedge)
		}
	}
	return got, errs
}

// slowPushers returns the peers passed over as quorum members now.
func (p *Peer) slowPushers() map[string]bool {
	p.slowMu.Lock()
	defer p.slowMu.Unlock()
	if len(p.slowPush) == 0 {
		return nil
	}
	now := time.Now()
	out := map[string]bool{}
	for o, t := range p.slowPush {
		if now.Sub(t) > pushSlowFor {
			delete(p.slowPush, o)
			continue
		}
		out[o] = true
	}
	return out
}

func (p *Peer) markPushSlow(peers []string) {
	p.slowMu.Lock()
	defer p.slowMu.Unlock()
	if p.slowPush == nil {
		p.slowPush = map[string]time.Time{}
	}
	for _, o := range peers {
		p.slowPush[o] = time.Now()
	}
}

func (p *Peer) pushAnswered(peer string) {
	p.slowMu.Lock()
	defer p.slowMu.Unlock()
	delete(p.slowPush, peer)
}

func (p *Peer) pushOps(ctx context.Context, peer string, body []byte) error {
	_, err := p.net.streamCall(ctx, peer, frameOps, body)
	if !errors.Is(err, errNoStream) {
		if err != nil {
			return fmt.Errorf("%s: %w", peer, err)
		}
		return nil
	}
	resp, err := p.net.request(ctx, http.MethodPost, peer, "/v1/ns/ops", body)
	if err != nil {
		return fmt.Errorf("%s: %w", peer, err)
	}
	defer drain(resp)
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: %w", peer, peerError(resp))
	}
	return nil
}

func (p *Peer) handleOps(w http.ResponseWriter, r *http.Request) {
	b, err := readBody(w, r, maxOpsBody)
	if err != nil {
		api.WriteError(w, http.StatusBadRequest, err)
		return
	}
	if err := p.applyOps(b); err != nil {
		api.WriteError(w, http.StatusBadRequest, err)
		return
	}
	w.WriteHeader(http.StatusOK)
}

func readBody(w http.ResponseWriter, r *http.Request, max int64) ([]byte, error) {
	http.NewResponseController(w).SetReadDeadline(time.Now().Add(nsTimeout))
	if r.ContentLength > max {
		return nil, fmt.Errorf("body of %d bytes exceeds %d", r.ContentLength, max)
	}
	b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, max))
	if err != nil {
		return nil, fmt.Errorf("reading body: %w", err)
	}
	return b, nil
}

// syncRequest and syncResponse are the anti-entropy exchange.
type syncRequest struct {
	VV map[string]uint64 `json:"vv"`
}

type syncResponse struct {
	VV        map[string]uint64   `json:"vv"`
	Clock     namespace.Timestamp `json:"clock"`
	Ops       []byte              `json:"ops"` // sealed
	More      bool                `json:"more"`
	Compacted bool                `json:"compacted"`
}

func (p *Peer) handleSync(w http.ResponseWriter, r *http.Request) {
	b, err := readBody(w, r, 1<<20)
	if err != nil {
		api.WriteError(w, http.StatusBadRequest, err)
		return
	}
	var req syncRequest
	if err := json.Unmarshal(b, &req); err != nil {
		api.WriteError(w, http.StatusBadRequest, err)
		return
	}
	resp := syncResponse{VV: p.ns.VersionVector(), Clock: p.ns.Clock()}
	// The ops as OpsSince and EncodeOps would give them, mostly from
	// memory: reading and re-encoding them cost a mounting peer 12% of
	// its CPU during an untar (namespace.SealOpsSince).
	batch, err := p.ns.SealOpsSince(req.VV, syncBatch)
	defer batch.Release()
	switch {
	case errors.Is(err, namespace.ErrCompacted):
		resp.Compacted = true
	case err != nil:
		api.WriteError(w, http.StatusInternalServerError, err)
		return
	case batch.N > 0:
		resp.Ops = batch.Sealed
		resp.More = batch.More
	}
	if r.Header.Get("Accept") == syncBinary {
		// The ops as they are, after a small JSON header: base64 in
		// JSON cost encoding here and a scanning decode there (a fifth
		// of a peer's CPU when it caught up by anti-entropy during an
		// untar).
		ops := resp.Ops
		resp.Ops = nil
		hdr, err := json.Marshal(resp)
		if err != nil {
			api.WriteError(w, http.StatusInternalServerError, err)
			return
		}
		w.Header().Set("Content-Type", syncBinary)
		var n [4]byte
		binary.BigEndian.PutUint32(n[:], uint32(len(hdr)))
		w.Write(n[:])
		w.Write(hdr)
		w.Write(ops)
		return
	}
	// Compact, not api.WriteJSON's indented form: indenting re-scanned
	// megabytes of base64 ops on every anti-entropy round (8% of a busy
	// peer's CPU while a tree was untarred).
	b, err = json.Marshal(resp)
	if err != nil {
		api.WriteError(w, http.StatusInternalServerError, err)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Write(b)
}

// syncBinary is the media type of a sync answer sent as a 4-byte big-endian
// length, that many bytes of JSON (a syncResponse without its ops), then the
// sealed ops up to the end of the body. Asked for with Accept; a peer that
// does not know it answers JSON.
const syncBinary = "application/x-reef-sync"

// maxSyncHeader bounds the JSON header of a binary sync answer.
const maxSyncHeader = 1 << 20

// readSync decodes a sync answer of either form, reading at most
// maxOpsBody bytes.
func readSync(resp *http.Response) (syncResponse, error) {
	var sr syncResponse
	body := io.LimitReader(resp.Body, maxOpsBody)
	if resp.Header.Get("Content-Type") != syncBinary {
		err := json.NewDecoder(body).Decode(&sr)
		return sr, err
	}
	var n [4]byte
	if _, err := io.ReadFull(body, n[:]); err != nil {
		return sr, fmt.Errorf("reading the answer's header length: %w", err)
	}
	hl := binary.BigEndian.Uint32(n[:])
	if hl > maxSyncHeader {
		return sr, fmt.Errorf("answer header of %d bytes exceeds %d", hl, maxSyncHeader)
	}
	hdr := make([]byte, hl)
	if _, err := io.ReadFull(body, hdr); err != nil {
		return sr, fmt.Errorf("reading the answer's header: %w", err)
	}
	if err := json.Unmarshal(hdr, &sr); err != nil {
		return sr, fmt.Errorf("decoding the answer's header: %w", err)
	}
	ops, err := io.ReadAll(body)
	if err != nil {
		return sr, fmt.Errorf("reading the answer's ops: %w", err)
	}
	if int64(len(ops)) >= maxOpsBody-int64(4+hl) {
		return sr, fmt.Errorf("answer exceeds %d bytes", maxOpsBody)
	}
	sr.Ops = ops
	return sr, nil
}

func (p *Peer) handleSnapshot(w http.ResponseWriter, r *http.Request) {
	b, err := p.ns.Snapshot()
	if err != nil {
		api.WriteError(w, http.StatusInternalServerError, err)
		return
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Write(b)
}

// pullFrom fetches what this peer lacks from peer, in batches.
func (p *Peer) pullFrom(ctx context.Context, peer string) error {
	for range 1000 {
		ctx, cancel := context.WithTimeout(ctx, nsTimeout)
		body, _ := json.Marshal(syncRequest{VV: p.ns.VersionVector()})
		resp, err := p.net.requestAccept(ctx, http.MethodPost, peer, "/v1/ns/sync", body, syncBinary)
		if err != nil {
			cancel()
			return err
		}
		sr, err := readSync(resp)
		status := resp.StatusCode
		drain(resp)
		cancel()
		if status != http.StatusOK {
			return fmt.Errorf("sync with %s: %s", peer, http.StatusText(status))
		}
		if err != nil {
			return fmt.Errorf("sync with %s: %w", peer, err)
		}
		if sr.Compacted {
			return p.installSnapshotFrom(ctx, peer)
		}
		if len(sr.Ops) > 0 {
			ops, err := p.ns.DecodeOps(sr.Ops)
			if err != nil {
				return fmt.Errorf("sync with %s: %w", peer, err)
			}
			n, err := p.ns.ApplyRemote(ops)
			if err != nil {
				return fmt.Errorf("sync with %s: %w", peer, err)
			}
			if n > 0 {
				p.log.Debug("caught up", "from", peer, "ops", n)
			}
		}
		p.ns.ObservePeer(peer, sr.VV, sr.Clock)
		if !sr.More {
			return nil
		}
	}
	return nil
}

func (p *Peer) installSnapshotFrom(ctx context.Context, peer string) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	resp, err := p.net.request(ctx, http.MethodGet, peer, "/v1/ns/snapshot", nil)
	if err != nil {
		return err
	}
	defer drain(resp)
	if resp.StatusCode != http.StatusOK {
		return peerError(resp)
	}
	var buf bytes.Buffer
	if _, err := io.Copy(&buf, io.LimitReader(resp.Body, maxSnapshotBody)); err != nil {
		return err
	}
	p.log.Info("installing namespace snapshot", "from", peer, "bytes", buf.Len())
	return p.ns.InstallSnapshot(buf.Bytes())
}

// antiEntropy pulls from a random live peer every second, and from every
// live peer when membership changes (a peer came back).
func (p *Peer) antiEntropy() {
	t := time.NewTicker(syncEvery)
	defer t.Stop()
	changes := p.node.Subscribe()
	for {
		all := false
		select {
		case <-p.stop:
			return
		case <-t.C:
		case _, ok := <-changes:
			if !ok {
				return
			}
			all = true
		}
		var others []string
		for _, m := range p.node.Live() {
			if m.ID != p.id {
				others = append(others, m.ID)
			}
		}
		if len(others) == 0 {
			continue
		}
		if !all {
			others = []string{others[rand.IntN(len(others))]}
		}
		ctx, cancel := context.WithCancel(context.Background())
		go func() { <-p.stop; cancel() }()
		for _, o := range others {
			if err := p.pullFrom(ctx, o); err != nil && ctx.Err() == nil {
				p.log.Debug("anti-entropy", "peer", o, "err", err)
			}
		}
		cancel()
	}
}
