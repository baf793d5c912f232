package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"time"

	"github.com/reefproject/reef/blockstore"
	"github.com/reefproject/reef/crypt"
	"github.com/reefproject/reef/namespace"
	"github.com/reefproject/reef/peer"
)

var version = peer.Version

// serveOptions are the flags of `reef serve`.
type serveOptions struct {
	data, key, listen, gossip, zone, name, logLevel, mount string
	join                                                   []string
	capacity, repairRate, scrubRate, cache                 int64
	repairAfter, scrubEvery, maintEvery, shardSyncEvery    time.Duration
	trashRetention, gcGrace                                time.Duration
	k, m, quorum                                           int
}

func runServeCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var o serveOptions
	fs := newFlags("serve", "--data DIR --key FILE [--listen HOST:PORT] [--gossip HOST:PORT] [--join HOST:PORT]...", stderr)
	fs.StringVar(&o.data, "data", "", "data directory of this peer (created if missing)")
	fs.StringVar(&o.key, "key", os.Getenv("REEF_KEY"), "volume key file from 'reef init' (env REEF_KEY)")
	fs.StringVar(&o.listen, "listen", defaultPeer, "data plane and command address, HOST:PORT (port 0 picks one)")
	fs.StringVar(&o.gossip, "gossip", "127.0.0.1:7401", "gossip address, HOST:PORT (port 0 picks one)")
	fs.Var(listFlag{&o.join}, "join", "gossip address of a member to join (repeatable)")
	fs.StringVar(&o.zone, "zone", "", "failure zone of this peer (shards of a chunk spread over zones)")
	fs.Var(sizeFlag{&o.capacity}, "capacity", "bytes this peer offers, e.g. 100G (default: the size of the disk under --data)")
	fs.IntVar(&o.k, "k", 4, "data shards per chunk for what this peer writes")
	fs.IntVar(&o.m, "m", 2, "parity shards per chunk for what this peer writes")
	fs.IntVar(&o.quorum, "write-quorum", 0, "shards durably stored before a write is acknowledged, k+1..k+m (default k+m)")
	fs.StringVar(&o.name, "name", "", "peer id on first start (default: a random one, kept in the data directory)")
	fs.StringVar(&o.logLevel, "log-level", "info", "debug, info, warn or error")
	fs.DurationVar(&o.repairAfter, "repair-after", 10*time.Minute, "rebuild the shards of a peer gone longer than this")
	o.repairRate = 256 << 20
	fs.Var(sizeFlag{&o.repairRate}, "repair-rate", "bytes per second of repair and rebalance traffic of this peer, so user traffic is not starved (0 = unlimited)")
	fs.Var(sizeFlag{&o.scrubRate}, "scrub-rate", "bytes per second of the scheduled scrub (default 8M)")
	fs.DurationVar(&o.scrubEvery, "scrub-every", 24*time.Hour, "time between scheduled scrub passes (0 disables)")
	fs.DurationVar(&o.maintEvery, "maint-every", 30*time.Second, "time between repair and rebalance passes")
	fs.DurationVar(&o.gcGrace, "gc-grace", peer.DefaultGCGrace, "delete the shards of chunks that no file references this long after they stopped being referenced (0 = never delete)")
	fs.DurationVar(&o.trashRetention, "trash-retention", namespace.DefaultTrashRetention, "least time a deleted file's entry is kept (for changes made concurrently on other peers) before it is purged")
	fs.DurationVar(&o.shardSyncEvery, "shard-sync-every", blockstore.DefaultSyncEvery, "longest a file's shard stays written but not synced to disk (fsync(2) on a mount syncs at once)")
	fs.StringVar(&o.mount, "mount", "", "mount the volume at this directory (FUSE); unmounted on SIGTERM/SIGINT")
	fs.Var(sizeFlag{&o.cache}, "cache", "bytes of decoded chunks kept in memory for reads (default 512M with --mount, else 128M)")
	pos, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return usagef("unexpected argument %q", pos[0])
	}
	if o.data == "" {
		return usagef("--data DIR is required")
	}
	if o.key == "" {
		return usagef("--key FILE is required (create one with 'reef init --key FILE')")
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(o.logLevel)); err != nil {
		return usagef("--log-level %q: want debug, info, warn or error", o.logLevel)
	}
	keys, err := crypt.LoadKeyFile(o.key)
	if err != nil {
		return err
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
	p, err := peer.Start(ctx, peer.Config{
		DataDir: o.data, Name: o.name, Listen: o.listen, Gossip: o.gossip, Join: o.join, Zone: o.zone,
		Capacity: o.capacity, K: o.k, M: o.m, WriteQuorum: o.quorum, Keys: keys, Logger: log, Mount: o.mount,
		RepairAfter: o.repairAfter, RepairRate: o.repairRate, ScrubRate: o.scrubRate, ScrubEvery: scrubEvery(o.scrubEvery), MaintEvery: o.maintEvery,
		ShardSyncEvery: o.shardSyncEvery, CacheBytes: o.cache, TrashRetention: o.trashRetention, GCGrace: gcGrace(o.gcGrace),
	})
	if err != nil {
		return err
	}
	mounted := ""
	if d := p.MountDir(); d != "" {
		mounted = " mount=" + d
	}
	fmt.Fprintf(stdout, "reef peer %s ready: data=%s gossip=%s volume=%s coding=%d+%d%s\n", p.ID(), p.DataAddr(), p.GossipAddr(), keys.VolumeID(), o.k, o.m, mounted)
	if f, ok := stdout.(*os.File); ok {
		f.Sync()
	}
	<-ctx.Done()
	log.Info("shutting down")
	sctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	if err := p.Shutdown(sctx); err != nil {
		return fmt.Errorf("shutdown: %w", err)
	}
	log.Info("stopped")
	return nil
}

// scrubEvery maps the flag's 0 (disabled) to the peer's "never".
// gcGrace maps the flag's 0 (never collect) to peer.Config's negative.
func gcGrace(d time.Duration) time.Duration {
	if d <= 0 {
		return -1
	}
	return d
}

func scrubEvery(d time.Duration) time.Duration {
	if d == 0 {
		return -1
	}
	return d
}
