// Package peer is one reef daemon: it owns a blockstore, joins the cluster
// through membership gossip, serves shards to other peers and files to
// commands over HTTP, and writes and reads files through package store.
//
// Every peer is equal: any of them accepts a file, and any of them can read
// any file back. What a peer knows of the others comes from gossip only.
package peer

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/reefproject/reef/addr"
	"github.com/reefproject/reef/api"
	"github.com/reefproject/reef/blockstore"
	"github.com/reefproject/reef/chunker"
	"github.com/reefproject/reef/crypt"
	"github.com/reefproject/reef/fs"
	"github.com/reefproject/reef/internal/bufpool"
	"github.com/reefproject/reef/membership"
	"github.com/reefproject/reef/metrics"
	"github.com/reefproject/reef/namespace"
	"github.com/reefproject/reef/placement"
	"github.com/reefproject/reef/store"
)

// Version is the software version advertised in gossip.
var Version = "0.1.0"

// Config configures a peer.
type Config struct {
	DataDir     string
	Name        string // peer id to use on first start; "" picks one
	Listen      string // data plane and command API, host:port
	Gossip      string // gossip host:port
	Join        []string
	Zone        string
	Capacity    int64 // bytes offered; 0 means the size of the file system under DataDir
	K, M        int
	WriteQuorum int
	Chunking    chunker.Params
	Keys        *crypt.Keys
	Logger      *slog.Logger
	Mount       string // mount the volume here; "" for none

	RepairAfter time.Duration // a gone peer's shards are rebuilt after this; 0 means 10m
	RepairRate  int64         // bytes/s of repair and rebalance traffic; 0 means unlimited
	ScrubRate   int64         // bytes/s of the scheduled scrub; 0 means 8 MB/s
	ScrubEvery  time.Duration // between scheduled scrub passes; 0 means 24h, < 0 never
	MaintEvery  time.Duration // between repair/rebalance passes; 0 means 30s
	// TrashRetention is the least time a deleted entry stays in the
	// namespace's trash before it is purged; 0 means
	// namespace.DefaultTrashRetention.
	TrashRetention time.Duration
	// GCGrace is how long a chunk nothing references any more waits
	// before the shards this peer holds of it are deleted (gc.go); 0 means
	// DefaultGCGrace, negative disables chunk collection.
	GCGrace time.Duration
	// ShardSyncEvery bounds how long a lazily written shard stays unsynced
	// (blockstore.Options.SyncEvery); 0 means 100ms.
	ShardSyncEvery time.Duration
	// CacheBytes bounds the decoded chunks kept for reads; 0 means
	// DefaultMountCache on a peer that mounts, the store's default (128
	// MiB) otherwise.
	CacheBytes int64
}

// DefaultMountCache is the read cache of a peer that mounts: random reads
// of a file fetch and decode a whole chunk (about 1 MiB) for each miss, so
// a working set that fits saves most of them.
const DefaultMountCache = 512 << 20

// Peer is a running reef daemon.
type Peer struct {
	cfg Config
	// capacity is the bytes this peer offers: Config.Capacity, or when
	// that is unset the size of the disk under the data directory, read
	// again as the peer runs (a disk or volume that grows counts).
	capacity atomic.Int64
	capAuto  bool
	id       string
	log      *slog.Logger
	bs       *blockstore.Store
	node     *membership.Node
	ln       net.Listener
	srv      *http.Server
	store    *store.Store
	net      *shardNet
	ns       *namespace.Namespace
	repl     *replicator
	maint    *maint
	gc       *collector // nil: chunks are not collected (gc.go)
	metrics  *metrics.Metrics
	streams  streamSet    // connections served as streams (stream.go)
	served   bufpool.Pool // buffers of shards being served (handleGetShard)
	inbox    *inbox       // pushed namespace ops (inbox.go)
	locks    *lockKeeper  // file locks this peer keeps (locks.go)
	mount    *fs.Mount

	slowMu   sync.Mutex           // guards slowPush
	slowPush map[string]time.Time // peers that held up a push: when (replicate.go)

	stop      chan struct{}
	wg        sync.WaitGroup
	closeOnce sync.Once
	closeErr  error
}

var validName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$`)

// Start opens the data directory, starts serving and joins the cluster.
func Start(ctx context.Context, cfg Config) (*Peer, error) {
	if cfg.Keys == nil {
		return nil, errors.New("peer: a volume key is required")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("peer: data dir: %w", err)
	}
	id, err := peerID(cfg.DataDir, cfg.Name, cfg.Keys.VolumeID())
	if err != nil {
		return nil, err
	}
	if cfg.RepairAfter <= 0 {
		cfg.RepairAfter = 10 * time.Minute
	}
	if cfg.ScrubRate <= 0 {
		cfg.ScrubRate = 8 << 20
	}
	if cfg.ScrubEvery == 0 {
		cfg.ScrubEvery = 24 * time.Hour
	}
	if cfg.MaintEvery <= 0 {
		cfg.MaintEvery = 30 * time.Second
	}
	if cfg.GCGrace == 0 {
		cfg.GCGrace = DefaultGCGrace
	}
	p := &Peer{cfg: cfg, id: id, log: cfg.Logger.With("peer", id), stop: make(chan struct{}), metrics: metrics.New(id)}
	if p.bs, err = blockstore.Open(filepath.Join(cfg.DataDir, "shards"), blockstore.Options{Logger: p.log, SyncEvery: cfg.ShardSyncEvery}); err != nil {
		return nil, fmt.Errorf("peer: %w", err)
	}
	p.metrics.WatchUnsynced(func() int64 { return p.bs.Stats().Unsynced })
	p.metrics.WatchNamespace(func() (int64, int64) {
		held, purged := p.ns.Trash()
		return int64(held), purged
	})
	if cfg.GCGrace > 0 {
		p.gc = newCollector(p, cfg.GCGrace)
		p.metrics.WatchGC(func() (int64, int64) {
			p.gc.mu.Lock()
			n := len(p.gc.cands)
			p.gc.mu.Unlock()
			return int64(n), p.gc.deleted.Load()
		})
	}
	p.capAuto = p.cfg.Capacity <= 0
	p.capacity.Store(p.cfg.Capacity)
	p.refreshCapacity()
	if p.ln, err = net.Listen("tcp", cfg.Listen); err != nil {
		p.bs.Close()
		return nil, fmt.Errorf("peer: listen %s: %w", cfg.Listen, err)
	}
	p.net = newShardNet(p)
	p.repl = newReplicator(p)
	p.locks = newLockKeeper(p)
	p.maint = newMaint(p)
	p.ns, err = namespace.Open(namespace.Config{
		Dir:            filepath.Join(cfg.DataDir, "namespace"),
		Peer:           id,
		Seal:           func(b []byte) ([]byte, error) { return cfg.Keys.SealRecord(nil, b) },
		SealTo:         cfg.Keys.SealRecord,
		Open:           cfg.Keys.Open,
		Replicate:      p.repl.enqueue,
		LazySync:       true,
		Observe:        p.metrics.ObserveNS,
		TrashRetention: cfg.TrashRetention,
		TrackDropped:   p.gc != nil,
		Logger:         p.log.With("component", "namespace"),
	})
	if err != nil {
		p.ln.Close()
		p.bs.Close()
		return nil, fmt.Errorf("peer: %w", err)
	}
	if p.inbox, err = openInbox(filepath.Join(cfg.DataDir, "inbox.log"), p.ns, p.log.With("component", "namespace")); err != nil {
		p.ns.Close()
		p.ln.Close()
		p.bs.Close()
		return nil, err
	}
	st := p.bs.Stats()
	p.node, err = membership.Start(ctx, membership.Config{
		ID:        id,
		BindAddr:  cfg.Gossip,
		Join:      cfg.Join,
		Rejoin:    readKnown(cfg.DataDir),
		SecretKey: cfg.Keys.GossipKey(),
		Logger:    p.log.With("component", "gossip"),
		Meta: membership.Meta{
			DataAddr: p.ln.Addr().String(),
			Zone:     cfg.Zone,
			Capacity: p.capacity.Load(),
			Free:     p.free(st.Bytes),
			Used:     st.Bytes,
			Shards:   st.Count,
			Version:  Version,
			Flags:    p.drainFlag(),
		},
	})
	if err != nil {
		p.inbox.close()
		p.ns.Close()
		p.ln.Close()
		p.bs.Close()
		return nil, fmt.Errorf("peer: %w", err)
	}
	cache := cfg.CacheBytes
	if cache == 0 && cfg.Mount != "" {
		cache = DefaultMountCache
	}
	p.store, err = store.New(store.Config{
		CacheBytes:  cache,
		Keys:        cfg.Keys,
		K:           cfg.K,
		M:           cfg.M,
		WriteQuorum: cfg.WriteQuorum,
		Chunking:    cfg.Chunking,
		Net:         lazyNet{p.net},
		Members:     p.liveMembers,
		Placement:   p.placementMembers,
		Others:      p.otherMembers,
		ZeroReuse:   zeroReuse(cfg.GCGrace),
		Logger:      p.log,
	})
	if err != nil {
		p.node.Shutdown()
		p.inbox.close()
		p.ns.Close()
		p.ln.Close()
		p.bs.Close()
		return nil, fmt.Errorf("peer: %w", err)
	}
	p.srv = &http.Server{
		Handler:           p.routes(),
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(p.log.Handler(), slog.LevelDebug),
	}
	p.wg.Add(5)
	go func() {
		defer p.wg.Done()
		if err := p.srv.Serve(p.ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			p.log.Error("http server stopped", "err", err)
		}
	}()
	go func() { defer p.wg.Done(); p.metaLoop() }()
	go func() { defer p.wg.Done(); p.antiEntropy() }()
	go func() { defer p.wg.Done(); p.repl.run() }()
	go func() { defer p.wg.Done(); p.maint.run() }()
	p.wg.Add(2)
	go func() { defer p.wg.Done(); p.locks.run() }()
	go func() { defer p.wg.Done(); p.checkpointLoop() }()
	if cfg.Mount != "" {
		if err := p.startMount(ctx); err != nil {
			p.Shutdown(context.Background())
			return nil, err
		}
	}
	return p, nil
}

// startMount catches up with the cluster, then mounts the volume.
func (p *Peer) startMount(ctx context.Context) error {
	// A mount should show the cluster's tree, not a stale one: pull from
	// the live peers first (bounded, best effort).
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	for _, m := range p.node.Live() {
		if m.ID != p.id {
			if err := p.pullFrom(cctx, m.ID); err != nil {
				p.log.Warn("catching up before mount", "peer", m.ID, "err", err)
			}
		}
	}
	cancel()
	locks := newLockClient(p)
	p.wg.Add(1)
	go func() { defer p.wg.Done(); locks.run() }()
	f, err := fs.New(fs.Config{
		Tree:       p.ns,
		Content:    contentAdapter{p.store},
		Capacity:   p,
		Durable:    p.repl.Barrier,
		Health:     p.healthXattr,
		Sync:       p.repl.SyncBarrier,
		StagingDir: filepath.Join(p.cfg.DataDir, "staging"),
		Logger:     p.log.With("component", "fuse"),
		ObserveOp:  p.metrics.ObserveFUSE,
		Locks:      locks,
	})
	if err != nil {
		return fmt.Errorf("peer: %w", err)
	}
	if p.mount, err = f.Mount(p.cfg.Mount); err != nil {
		return fmt.Errorf("peer: %w", err)
	}
	p.inbox.eager.Store(true) // this mount's users see pushed changes at once
	if err := p.node.UpdateMeta(func(m *membership.Meta) { m.Flags |= membership.FlagMounted }); err != nil {
		p.log.Warn("advertising the mount", "err", err)
	}
	return nil
}

// healthXattr is the health report of one path, for user.reef.health.
func (p *Peer) healthXattr(ctx context.Context, node namespace.NodeID) ([]byte, error) {
	path, err := p.ns.Path(node)
	if err != nil {
		return nil, err
	}
	h, err := p.health(ctx, path)
	if err != nil {
		return nil, err
	}
	h.Peers = nil
	return json.Marshal(h)
}

// MountDir is where the volume is mounted, or "".
func (p *Peer) MountDir() string {
	if p.mount == nil {
		return ""
	}
	return p.mount.Dir
}

// contentAdapter gives the mount the store's file operations.
type contentAdapter struct{ s *store.Store }

func (c contentAdapter) Store(ctx context.Context, r io.Reader) (fs.Stored, error) {
	a, st, err := c.s.PutFile(ctx, r)
	return fs.Stored{Manifest: a, Size: st.Size, Zero: st.Zero}, err
}

func (c contentAdapter) StoreRange(ctx context.Context, base [32]byte, r io.ReaderAt, size, start, end int64) (fs.Stored, error) {
	a, st, err := c.s.PutRange(ctx, addr.Addr(base), r, size, start, end)
	return fs.Stored{Manifest: a, Size: st.Size, Zero: st.Zero}, err
}

func (c contentAdapter) Pin(m [32]byte)   { c.s.Pin(addr.Addr(m)) }
func (c contentAdapter) Unpin(m [32]byte) { c.s.Unpin(addr.Addr(m)) }

func (c contentAdapter) Seek(ctx context.Context, m [32]byte, off int64, hole bool) (int64, bool, error) {
	return c.s.Seek(ctx, addr.Addr(m), off, hole)
}

func (c contentAdapter) ReadAt(ctx context.Context, m [32]byte, b []byte, off int64) (int, error) {
	return c.s.ReadAt(ctx, addr.Addr(m), b, off)
}

// Capacity is the cluster's usable capacity: raw bytes of the live peers
// scaled by k/(k+m).
func (p *Peer) Capacity() (total, free int64) {
	for _, m := range p.node.Live() {
		total += m.Meta.Capacity
		free += m.Meta.Free
	}
	k, n := int64(p.cfg.K), int64(p.cfg.K+p.cfg.M)
	return total / n * k, free / n * k
}

func (p *Peer) drainFlag() uint64 {
	if p.maint.isDraining() {
		return membership.FlagDraining
	}
	return 0
}

// ID is the peer's stable name.
func (p *Peer) ID() string { return p.id }

// DataAddr is the bound --listen address.
func (p *Peer) DataAddr() string { return p.ln.Addr().String() }

// GossipAddr is the bound gossip address.
func (p *Peer) GossipAddr() string { return p.node.GossipAddr() }

// Store is the peer's file store.
func (p *Peer) Store() *store.Store { return p.store }

// Shutdown leaves the cluster cleanly and stops serving. It is idempotent.
func (p *Peer) Shutdown(ctx context.Context) error {
	p.closeOnce.Do(func() {
		var errs []error
		if p.mount != nil {
			if err := p.mount.Close(); err != nil {
				errs = append(errs, err)
			}
		}
		// Give changes made just before the stop a moment to reach others.
		bctx, cancel := context.WithTimeout(ctx, 3*time.Second)
		if err := p.repl.Barrier(bctx); err != nil {
			p.log.Warn("stopping with namespace changes not yet replicated (anti-entropy sends them after restart)", "err", err)
		}
		cancel()
		close(p.stop)
		p.repl.close()
		if err := p.node.Leave(3 * time.Second); err != nil {
			errs = append(errs, err)
		}
		if err := p.srv.Shutdown(ctx); err != nil {
			errs = append(errs, fmt.Errorf("peer: http shutdown: %w", err))
			p.srv.Close()
		}
		p.streams.closeAll() // taken over from the server: Shutdown does not see them
		p.wg.Wait()
		if err := p.node.Shutdown(); err != nil {
			errs = append(errs, err)
		}
		if err := p.inbox.close(); err != nil {
			errs = append(errs, err)
		}
		if err := p.ns.Close(); err != nil {
			errs = append(errs, err)
		}
		if err := p.bs.Close(); err != nil {
			errs = append(errs, err)
		}
		p.closeErr = errors.Join(errs...)
	})
	return p.closeErr
}

// liveMembers returns the members that count for placement.
func (p *Peer) liveMembers() []placement.Member {
	live := p.node.Live()
	out := make([]placement.Member, 0, len(live))
	for _, m := range live {
		out = append(out, placement.Member{ID: m.ID, Zone: m.Meta.Zone, Weight: float64(m.Meta.Capacity)})
	}
	return out
}

// placementMembers returns the live members that take new shards: not the
// draining ones.
func (p *Peer) placementMembers() []placement.Member {
	live := p.node.Live()
	out := make([]placement.Member, 0, len(live))
	for _, m := range live {
		if m.Meta.Flags&membership.FlagDraining != 0 || (m.ID == p.id && p.maint.isDraining()) {
			continue
		}
		out = append(out, placement.Member{ID: m.ID, Zone: m.Meta.Zone, Weight: float64(m.Meta.Capacity)})
	}
	return out
}

// otherMembers returns the members believed gone.
func (p *Peer) otherMembers() []placement.Member {
	var out []placement.Member
	for _, m := range p.node.Members() {
		if m.State == membership.StateDead || m.State == membership.StateLeft {
			out = append(out, placement.Member{ID: m.ID, Zone: m.Meta.Zone, Weight: float64(m.Meta.Capacity)})
		}
	}
	return out
}

// refreshCapacity reads the disk's size again when the capacity follows it.
func (p *Peer) refreshCapacity() {
	if p.capAuto {
		p.capacity.Store(diskSize(p.cfg.DataDir))
	}
}

func (p *Peer) free(used int64) int64 {
	free := p.capacity.Load() - used
	if df := diskFree(p.cfg.DataDir); df >= 0 && df < free {
		free = df
	}
	return max(free, 0)
}

// metaLoop keeps this peer's gossiped usage figures current.
func (p *Peer) metaLoop() {
	t := time.NewTicker(2 * time.Second)
	defer t.Stop()
	type figures struct {
		st             blockstore.Stats
		capacity, free int64
	}
	var last figures
	lastKnown := knownAddrs(nil, "")
	for {
		select {
		case <-p.stop:
			return
		case <-t.C:
		}
		p.refreshCapacity()
		if k := knownAddrs(p.node.Live(), p.id); !bytes.Equal(k, lastKnown) {
			if err := writeKnown(p.cfg.DataDir, k); err != nil {
				p.log.Warn("saving the addresses of the other peers", "err", err)
			} else {
				lastKnown = k
			}
		}
		st := p.bs.Stats()
		p.metrics.SetStored(st.Count, st.Bytes)
		var counts [4]int
		for _, m := range p.node.Members() {
			if int(m.State) < len(counts) {
				counts[m.State]++
			}
		}
		p.metrics.SetMembers(counts[membership.StateAlive], counts[membership.StateSuspect], counts[membership.StateDead], counts[membership.StateLeft])
		// Peers that report a full disk are passed over by new stripes
		// while they stay full (their writes would fail with ENOSPC).
		var full []string
		for _, m := range p.node.Live() {
			if m.Meta.Capacity > 0 && m.Meta.Free < api.FullBelow {
				full = append(full, m.ID)
			}
		}
		p.store.PassOver(full...)
		// Free space changes without a write here too: other files on
		// the disk, a disk that filled or grew.
		now := figures{st, p.capacity.Load(), p.free(st.Bytes)}
		if now == last {
			continue
		}
		last = now
		err := p.node.UpdateMeta(func(m *membership.Meta) {
			m.Used, m.Shards, m.Free, m.Capacity = st.Bytes, st.Count, now.free, now.capacity
		})
		if err != nil {
			p.log.Warn("gossip metadata update failed", "err", err)
		}
	}
}

// peerID reads the data directory's peer id, creating it on first start.
func peerID(dir, name, volume string) (string, error) {
	idPath := filepath.Join(dir, "peer-id")
	b, err := os.ReadFile(idPath)
	if err == nil {
		fields := strings.Fields(string(b))
		if len(fields) != 2 || !validName.MatchString(fields[0]) {
			return "", fmt.Errorf("peer: %s is damaged (want \"ID VOLUME\")", idPath)
		}
		if fields[1] != volume {
			return "", fmt.Errorf("peer: data dir %s belongs to volume %s, but the key file is for volume %s", dir, fields[1], volume)
		}
		if name != "" && name != fields[0] {
			return "", fmt.Errorf("peer: data dir %s belongs to peer %q, not %q", dir, fields[0], name)
		}
		return fields[0], nil
	}
	if !errors.Is(err, os.ErrNotExist) {
		return "", fmt.Errorf("peer: %w", err)
	}
	if name == "" {
		var r [3]byte
		rand.Read(r[:])
		name = "peer-" + hex.EncodeToString(r[:])
	}
	if !validName.MatchString(name) {
		return "", fmt.Errorf("peer: name %q: use letters, digits, '.', '_' and '-' (at most 63)", name)
	}
	tmp := idPath + ".tmp"
	if err := os.WriteFile(tmp, []byte(name+" "+volume+"\n"), 0o600); err != nil {
		return "", fmt.Errorf("peer: %w", err)
	}
	if err := os.Rename(tmp, idPath); err != nil {
		return "", fmt.Errorf("peer: %w", err)
	}
	return name, nil
}

func diskSize(dir string) int64 {
	var s syscall.Statfs_t
	if syscall.Statfs(dir, &s) != nil {
		return 1 << 40
	}
	return int64(s.Blocks) * s.Bsize
}

func diskFree(dir string) int64 {
	var s syscall.Statfs_t
	if syscall.Statfs(dir, &s) != nil {
		return -1
	}
	return int64(s.Bavail) * s.Bsize
}

// checkpointLoop checkpoints the namespace on a timer, not only every
// namespace.DefaultCheckpointEvery ops: a checkpoint is when deleted
// entries are purged from the trash (namespace/purge.go), and a volume
// that went quiet after a big deletion would otherwise keep them until
// the next burst of changes. Every half TrashRetention, within [1s, 5m].
func (p *Peer) checkpointLoop() {
	r := p.cfg.TrashRetention
	if r <= 0 {
		r = namespace.DefaultTrashRetention
	}
	t := time.NewTicker(min(max(r/2, time.Second), 5*time.Minute))
	defer t.Stop()
	for {
		select {
		case <-p.stop:
			return
		case <-t.C:
		}
		if err := p.ns.Checkpoint(); err != nil && !errors.Is(err, namespace.ErrClosed) {
			p.log.Warn("namespace checkpoint", "err", err)
		}
	}
}

// zeroReuse is store.Config.ZeroReuse for a chunk collection grace: well
// under it (see gc.go).
func zeroReuse(grace time.Duration) time.Duration {
	if grace <= 0 {
		return 10 * time.Minute // nothing is collected
	}
	return min(10*time.Minute, max(grace/2, time.Second))
}
