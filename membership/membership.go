// Package membership tracks which peers form a reef cluster.
//
// Every peer runs a Node. Nodes find each other by gossip (the SWIM
// protocol, implemented by hashicorp/memberlist, whose types never leave
// this package): a new Node joins through the gossip address of any
// existing member, after which membership changes spread epidemically and
// failed peers are detected by randomized probing.
//
// Each member advertises a small Meta record (data-plane address, zone,
// capacity and usage). A Node changes its own record with UpdateMeta; the
// change is gossiped and seen by the others within a fraction of a second.
//
// A member is in one of four states: alive; suspect (it stopped answering
// probes but has not yet been declared failed, and still counts for
// placement); dead (declared failed); or left (it announced a clean
// departure with Leave). Dead and left members stay in Members for at least
// an hour so operators can see them. A peer that restarts with the same ID
// becomes alive again, even on a different gossip port once its old
// incarnation has been dead for a few seconds.
//
// The timing is tuned for LANs and loopback: a killed peer is suspected
// within about two seconds and declared dead a few seconds later.
package membership

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/memberlist"
)

// State is the liveness state of a member as seen by the local node.
type State int

const (
	// StateAlive means the member answers probes.
	StateAlive State = iota
	// StateSuspect means the member stopped answering probes and will be
	// declared dead unless it refutes the suspicion soon. Suspect members
	// still count as live.
	StateSuspect
	// StateDead means the member was declared failed.
	StateDead
	// StateLeft means the member announced a clean departure.
	StateLeft
)

// String returns "alive", "suspect", "dead" or "left".
func (s State) String() string {
	switch s {
	case StateAlive:
		return "alive"
	case StateSuspect:
		return "suspect"
	case StateDead:
		return "dead"
	case StateLeft:
		return "left"
	}
	return "State(" + strconv.Itoa(int(s)) + ")"
}

// Meta is what each member advertises to the others. Its encoded form
// (see Meta.Encode) must fit in MaxMetaSize bytes.
type Meta struct {
	DataAddr string // host:port of the peer's data plane
	Zone     string // failure domain, for placement
	Capacity int64  // bytes offered
	Free     int64  // bytes free
	Used     int64  // bytes stored (shards)
	Shards   int64  // shards stored
	Version  string // software version
	Flags    uint64 // FlagDraining, ...
}

// FlagDraining in Meta.Flags says the peer is moving its shards away and
// takes no new ones.
const FlagDraining uint64 = 1

// FlagMounted in Meta.Flags says the peer serves a mount: it wants namespace
// changes pushed at once (others catch up by anti-entropy).
const FlagMounted uint64 = 2

// Member is one peer as seen by the local node.
type Member struct {
	ID         string    // the peer's stable ID (Config.ID on that peer)
	GossipAddr string    // host:port the peer gossips on
	Meta       Meta      // the peer's last advertised metadata
	State      State     // liveness state
	LastSeen   time.Time // last time it was known alive, or its state changed
}

// Config configures a Node.
//
// Timing is not configurable: probes every 500 ms, so a killed peer is
// suspected within about 2 s and declared dead 1.5-6 s later; a peer
// restarted with the same ID on another address is accepted once its old
// incarnation has been dead for 5 s.
type Config struct {
	// ID is the node's unique, stable name; a restarted peer should reuse it.
	ID string
	// BindAddr is the host:port to gossip on (TCP and UDP). Port 0 picks a
	// free port; GossipAddr reports the one bound. The host must be an IP
	// address or a name resolving to one; 0.0.0.0 advertises a private IP
	// of this machine.
	BindAddr string
	// Join lists gossip addresses of existing members. Start tries them
	// once; if none answers it does not fail but keeps retrying in the
	// background, and it retries again whenever the node finds itself
	// without any live peer.
	Join []string
	// Rejoin lists more addresses, the members a restarted node knew
	// (saved by its owner): tried like Join's, but Start does not wait
	// for them when Join is empty.
	Rejoin []string
	// Meta is the initial metadata advertised.
	Meta Meta
	// SecretKey, if set, is a 16, 24 or 32-byte AES key encrypting all
	// gossip. Peers with a different key (or none) cannot join.
	SecretKey []byte
	// Logger receives the node's log output; gossip library messages are
	// logged at debug level. Nil means slog.Default().
	Logger *slog.Logger
}

// Errors returned by Node methods (wrapped).
var (
	// ErrShutdown is returned by operations on a node that was shut down.
	ErrShutdown = errors.New("membership: node is shut down")
	// ErrLeft is returned by UpdateMeta after Leave.
	ErrLeft = errors.New("membership: node has left the cluster")
)

// Timing and housekeeping parameters.
const (
	probeInterval     = 500 * time.Millisecond
	probeTimeout      = 250 * time.Millisecond
	suspicionMult     = 3 // suspicion timeout = 3 probe intervals (× log10 n) ...
	suspicionMaxMult  = 4 // ... up to 4 times that without confirmations
	gossipInterval    = 200 * time.Millisecond
	pushPullInterval  = 10 * time.Second
	tcpTimeout        = 3 * time.Second
	gossipToTheDead   = 15 * time.Second
	deadReclaimTime   = 5 * time.Second
	refreshInterval   = 250 * time.Millisecond
	listRefresh       = 20 * time.Millisecond
	updateTimeout     = time.Second
	defaultLeaveWait  = time.Second
	retention         = time.Hour
	joinRetryMin      = 500 * time.Millisecond
	joinRetryMax      = 10 * time.Second
	joinCheckInterval = 5 * time.Second
	settleWindow      = 30 * time.Second
	settleInterval    = deadReclaimTime + time.Second
)

// Node is a running member of the cluster. Its methods are safe for
// concurrent use.
type Node struct {
	id         string
	gossipAddr string
	listed     atomic.Int64 // UnixNano of the last refresh by list
	log        *slog.Logger
	ml         *memberlist.Memberlist
	seeds      []string
	stateOK    atomic.Bool // memberlist's node states are readable (see mlstate.go)

	metaMu    sync.Mutex
	meta      Meta
	metaBytes []byte

	mu      sync.Mutex
	members map[string]*Member
	gen     uint64 // bumped by every event callback
	subs    []chan struct{}
	closed  bool // subscriptions closed; no more refreshes

	lifeMu   sync.Mutex // serializes Leave and Shutdown
	left     atomic.Bool
	shutdown atomic.Bool
	done     chan struct{}
	wg       sync.WaitGroup
}

// Start creates a Node, binds its gossip listeners and joins the cluster
// through cfg.Join. It fails on invalid configuration or if it cannot bind,
// but not because no seed answers: joining is then retried in the
// background. ctx bounds only Start itself; the node runs until Shutdown.
func Start(ctx context.Context, cfg Config) (*Node, error) {
	if cfg.ID == "" {
		return nil, errors.New("membership: config: empty ID")
	}
	switch len(cfg.SecretKey) {
	case 0, 16, 24, 32:
	default:
		return nil, fmt.Errorf("membership: config: secret key is %d bytes, want 16, 24 or 32", len(cfg.SecretKey))
	}
	metaBytes, err := cfg.Meta.Encode()
	if err != nil {
		return nil, fmt.Errorf("membership: config: %w", err)
	}
	host, port, err := resolveBind(ctx, cfg.BindAddr)
	if err != nil {
		return nil, err
	}
	logger := cfg.Logger
	if logger == nil {
		logger = slog.Default()
	}

	n := &Node{
		id:        cfg.ID,
		log:       logger,
		meta:      cfg.Meta,
		metaBytes: metaBytes,
		members:   make(map[string]*Member),
		done:      make(chan struct{}),
	}

	mc := memberlist.DefaultLANConfig()
	mc.Name = cfg.ID
	mc.BindAddr = host
	mc.BindPort = port
	mc.AdvertisePort = port // with port 0 memberlist replaces both by the bound port
	mc.ProbeInterval = probeInterval
	mc.ProbeTimeout = probeTimeout
	mc.SuspicionMult = suspicionMult
	mc.SuspicionMaxTimeoutMult = suspicionMaxMult
	mc.GossipInterval = gossipInterval
	mc.PushPullInterval = pushPullInterval
	mc.TCPTimeout = tcpTimeout
	mc.GossipToTheDeadTime = gossipToTheDead
	mc.DeadNodeReclaimTime = deadReclaimTime
	if len(cfg.SecretKey) > 0 {
		mc.SecretKey = bytes.Clone(cfg.SecretKey)
	}
	mc.Logger = slog.NewLogLogger(logger.Handler(), slog.LevelDebug)
	mc.Delegate = (*delegate)(n)
	mc.Events = (*events)(n)

	ml, err := memberlist.Create(mc)
	if err != nil {
		return nil, fmt.Errorf("membership: start gossip on %s: %w", cfg.BindAddr, err)
	}
	n.ml = ml
	// Nothing else knows this node yet, so its record is not being written.
	self := ml.LocalNode()
	n.gossipAddr = net.JoinHostPort(self.Addr.String(), strconv.Itoa(int(self.Port)))
	if layoutOK(self) {
		n.stateOK.Store(true)
	} else {
		logger.Warn("membership: cannot read gossip node states; suspect and left will not be reported", "id", n.id)
	}

	addSeeds := func(addrs []string) {
		for _, s := range addrs {
			if s = strings.TrimSpace(s); s != "" && s != n.gossipAddr && s != cfg.BindAddr && !slices.Contains(n.seeds, s) {
				n.seeds = append(n.seeds, s)
			}
		}
	}
	addSeeds(cfg.Join)
	joinSeeds := len(n.seeds)
	addSeeds(cfg.Rejoin)

	if len(n.seeds) > 0 && joinSeeds == 0 {
		n.wg.Add(1)
		go n.joinLoop() // only saved addresses: try them in the background
	} else if len(n.seeds) > 0 {
		joined := make(chan struct{})
		go func() {
			defer close(joined)
			n.tryJoin(true)
		}()
		select {
		case <-joined:
		case <-ctx.Done():
			_ = n.Shutdown()
			return nil, fmt.Errorf("membership: start: %w", ctx.Err())
		}
		n.wg.Add(1)
		go n.joinLoop()
	}
	n.wg.Add(1)
	go n.refreshLoop()
	return n, nil
}

// resolveBind splits and resolves a bind address into an IP string and a port.
func resolveBind(ctx context.Context, addr string) (string, int, error) {
	host, portStr, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, fmt.Errorf("membership: config: bind address %q: %w", addr, err)
	}
	port, err := strconv.Atoi(portStr)
	if err != nil || port < 0 || port > 65535 {
		return "", 0, fmt.Errorf("membership: config: bind address %q: invalid port", addr)
	}
	if host == "" {
		return "0.0.0.0", port, nil
	}
	if net.ParseIP(host) != nil {
		return host, port, nil
	}
	ips, err := net.DefaultResolver.LookupIPAddr(ctx, host)
	if err != nil {
		return "", 0, fmt.Errorf("membership: config: bind address %q: %w", addr, err)
	}
	if len(ips) == 0 {
		return "", 0, fmt.Errorf("membership: config: bind address %q: no addresses", addr)
	}
	for _, ip := range ips { // prefer IPv4, the common LAN case
		if ip.IP.To4() != nil {
			return ip.IP.String(), port, nil
		}
	}
	return ips[0].IP.String(), port, nil
}

// tryJoin contacts the seeds once and reports whether the node now knows
// another live member.
func (n *Node) tryJoin(first bool) bool {
	cnt, err := n.ml.Join(n.seeds)
	if err == nil && n.hasPeers() {
		n.log.Debug("membership: joined cluster", "id", n.id, "seeds_answered", cnt)
		return true
	}
	level := slog.LevelDebug
	if first {
		level = slog.LevelWarn
	}
	n.log.Log(context.Background(), level, "membership: join failed; will retry in the background",
		"id", n.id, "seeds", n.seeds, "err", err)
	return false
}

// joinLoop re-joins the seeds while the node has no live peer, with
// exponential backoff, until Leave or Shutdown.
//
// During the first settleWindow after Start it also re-joins every
// settleInterval even when it has peers: a peer restarted with the same ID
// on a new address is refused by members that still remember its previous
// incarnation until that one has been dead for DeadNodeReclaimTime, and
// memberlist itself only retries at the next push/pull.
func (n *Node) joinLoop() {
	defer n.wg.Done()
	started := time.Now()
	wait := joinRetryMin
	t := time.NewTimer(wait)
	defer t.Stop()
	for {
		select {
		case <-n.done:
			return
		case <-t.C:
		}
		if n.left.Load() || n.shutdown.Load() {
			return
		}
		switch {
		case n.hasPeers():
			wait = joinCheckInterval
			if time.Since(started) < settleWindow {
				n.settle()
				wait = settleInterval
			}
		case n.tryJoin(false):
			wait = settleInterval
		default:
			if wait >= joinCheckInterval {
				wait = joinRetryMin // newly isolated: start backing off afresh
			} else {
				wait = min(2*wait, joinRetryMax)
			}
		}
		t.Reset(wait)
	}
}

// settle re-announces this node by a push/pull with the seeds and one
// other live member.
func (n *Node) settle() {
	addrs := slices.Clone(n.seeds)
	n.mu.Lock()
	for id, m := range n.members {
		if id != n.id && m.State == StateAlive {
			addrs = append(addrs, m.GossipAddr)
			break
		}
	}
	n.mu.Unlock()
	if _, err := n.ml.Join(addrs); err != nil {
		n.log.Debug("membership: re-announce incomplete", "id", n.id, "err", err)
	}
}

// hasPeers reports whether another member is alive or suspect.
func (n *Node) hasPeers() bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	for id, m := range n.members {
		if id != n.id && (m.State == StateAlive || m.State == StateSuspect) {
			return true
		}
	}
	return false
}

// refreshLoop periodically picks up suspect transitions, which memberlist
// reports through no callback, so that subscribers hear of them.
func (n *Node) refreshLoop() {
	defer n.wg.Done()
	t := time.NewTicker(refreshInterval)
	defer t.Stop()
	for {
		select {
		case <-n.done:
			return
		case <-t.C:
			n.refresh()
		}
	}
}

// refresh syncs alive/suspect states from memberlist, bumps LastSeen of
// alive members and forgets long-dead ones.
func (n *Node) refresh() {
	n.mu.Lock()
	if n.closed {
		n.mu.Unlock()
		return
	}
	gen := n.gen
	n.mu.Unlock()

	// memberlist hands out pointers into its live node table, so the state
	// is read without its lock (see hashicorp/memberlist#306). Copy it at
	// once, then take memberlist's lock again (NumMembers) so that later
	// writes are ordered after these reads; this keeps the window tiny.
	type snap struct {
		id    string
		state memberlist.NodeStateType
	}
	nodes := n.ml.Members()
	states := make([]snap, len(nodes))
	stateOK := n.stateOK.Load()
	for i, nd := range nodes {
		states[i] = snap{nd.Name, memberlist.StateAlive}
		if stateOK {
			states[i].state = mlState(nd)
		}
	}
	n.ml.NumMembers()

	now := time.Now()
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.closed {
		return
	}
	changed := false
	if n.gen == gen { // otherwise an event raced us; the next tick retries
		for _, s := range states {
			m := n.members[s.id]
			if m == nil || (m.State != StateAlive && m.State != StateSuspect) {
				continue // dead/left are driven by events only
			}
			var st State
			switch s.state {
			case memberlist.StateAlive:
				st = StateAlive
			case memberlist.StateSuspect:
				st = StateSuspect
			default:
				continue
			}
			if m.State != st {
				m.State = st
				m.LastSeen = now
				changed = true
			} else if st == StateAlive {
				m.LastSeen = now
			}
		}
	}
	for id, m := range n.members {
		if (m.State == StateDead || m.State == StateLeft) && now.Sub(m.LastSeen) > retention {
			delete(n.members, id)
			changed = true
		}
	}
	if changed {
		n.notifyLocked()
	}
}

// notifyLocked wakes every subscriber without blocking. n.mu must be held.
func (n *Node) notifyLocked() {
	if n.closed {
		return
	}
	for _, ch := range n.subs {
		select {
		case ch <- struct{}{}:
		default:
		}
	}
}

// ID returns the node's ID.
func (n *Node) ID() string { return n.id }

// GossipAddr returns the host:port the node gossips on, with the actual
// port if Config.BindAddr asked for port 0.
func (n *Node) GossipAddr() string { return n.gossipAddr }

// Members returns every member known, including this node and suspect,
// dead and left ones (dead and left ones are kept for at least an hour),
// sorted by ID. The slice is the caller's.
func (n *Node) Members() []Member {
	return n.list(false)
}

// Live returns the members that are alive or suspect (these still count
// for placement), sorted by ID. The slice is the caller's.
func (n *Node) Live() []Member {
	return n.list(true)
}

func (n *Node) list(liveOnly bool) []Member {
	// Every data-plane request lists the members; refreshing from
	// memberlist at most every listRefresh keeps that cheap, and is far
	// below gossip's own detection times.
	if now := time.Now().UnixNano(); now-n.listed.Load() > int64(listRefresh) {
		n.listed.Store(now)
		n.refresh()
	}
	n.mu.Lock()
	out := make([]Member, 0, len(n.members))
	for _, m := range n.members {
		if !liveOnly || m.State == StateAlive || m.State == StateSuspect {
			out = append(out, *m)
		}
	}
	n.mu.Unlock()
	slices.SortFunc(out, func(a, b Member) int { return strings.Compare(a.ID, b.ID) })
	return out
}

// UpdateMeta applies f to a copy of this node's metadata and, if the result
// encodes within MaxMetaSize, adopts and gossips it. It waits at most about
// a second for the first broadcast and does not fail if that times out
// (the change still spreads). It fails after Leave or Shutdown.
func (n *Node) UpdateMeta(f func(*Meta)) error {
	if n.shutdown.Load() {
		return fmt.Errorf("membership: update meta: %w", ErrShutdown)
	}
	if n.left.Load() {
		return fmt.Errorf("membership: update meta: %w", ErrLeft)
	}
	n.metaMu.Lock()
	m := n.meta
	f(&m)
	b, err := m.Encode()
	if err != nil {
		n.metaMu.Unlock()
		return fmt.Errorf("membership: update meta: %w", err)
	}
	n.meta, n.metaBytes = m, b
	n.metaMu.Unlock()

	if err := n.ml.UpdateNode(updateTimeout); err != nil {
		n.log.Debug("membership: metadata broadcast not yet acknowledged", "id", n.id, "err", err)
	}
	return nil
}

// Subscribe returns a channel that receives a value whenever membership or
// any member's state or metadata changes. Notifications are coalesced (the
// channel has a buffer of one and is never blocked on), so receivers should
// re-read Members or Live. The channel is closed by Shutdown.
func (n *Node) Subscribe() <-chan struct{} {
	ch := make(chan struct{}, 1)
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.closed {
		close(ch)
		return ch
	}
	n.subs = append(n.subs, ch)
	return ch
}

// Leave announces a clean departure, after which other members see this
// node as StateLeft, and waits up to timeout (one second if timeout is not
// positive) for the announcement to spread. The node keeps answering
// gossip until Shutdown. Calling Leave again does nothing.
func (n *Node) Leave(timeout time.Duration) error {
	n.lifeMu.Lock()
	defer n.lifeMu.Unlock()
	if n.shutdown.Load() {
		return fmt.Errorf("membership: leave: %w", ErrShutdown)
	}
	if n.left.Swap(true) {
		return nil
	}
	if timeout <= 0 {
		timeout = defaultLeaveWait
	}
	if err := n.ml.Leave(timeout); err != nil {
		return fmt.Errorf("membership: leave: %w", err)
	}
	return nil
}

// Shutdown stops the node, with or without a preceding Leave (without it,
// others detect the departure as a failure). It closes the Subscribe
// channels. It is idempotent.
func (n *Node) Shutdown() error {
	n.lifeMu.Lock()
	defer n.lifeMu.Unlock()
	if n.shutdown.Swap(true) {
		return nil
	}
	close(n.done)
	err := n.ml.Shutdown()
	n.wg.Wait()
	n.mu.Lock()
	n.closed = true
	for _, ch := range n.subs {
		close(ch)
	}
	n.subs = nil
	n.mu.Unlock()
	if err != nil {
		return fmt.Errorf("membership: shutdown: %w", err)
	}
	return nil
}
