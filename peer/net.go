package peer

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/reefproject/reef/addr"
	"github.com/reefproject/reef/api"
	"github.com/reefproject/reef/blockstore"
	"github.com/reefproject/reef/erasure"
	"github.com/reefproject/reef/store"
)

// Timeouts of the data plane. Every request has a deadline; every body read
// is bounded in size.
const (
	dialTimeout  = 3 * time.Second
	expectMin    = 128 << 10 // shard bodies above this ask "100-continue" first
	shardTimeout = 30 * time.Second
	listTimeout  = 5 * time.Second
	maxListBody  = 64 << 10
)

// shardKey is the blockstore key of a shard: address, then index big endian,
// so that a list by address prefix finds every shard of a chunk.
func shardKey(k store.ShardKey) []byte {
	b := make([]byte, addr.Size+2)
	copy(b, k.Addr[:])
	binary.BigEndian.PutUint16(b[addr.Size:], uint16(k.Index))
	return b
}

// shardNet implements store.Net: shards for this peer go to the local
// blockstore, others over HTTP with pooled keep-alive connections.
type shardNet struct {
	p       *Peer
	client  *http.Client
	streams streamPool // namespace pushes (stream.go)
	dedup   dedupProbe // whether big shard writes ask first (stream.go)
	// lookup finds a peer's data address: dataAddr, or a fixed table in
	// tests and benchmarks that run without gossip.
	lookup func(peer string) (string, error)
}

var _ store.BufferedNet = (*shardNet)(nil)

func newShardNet(p *Peer) *shardNet {
	tr := &http.Transport{
		DialContext:           (&net.Dialer{Timeout: dialTimeout, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:          256,
		MaxIdleConnsPerHost:   32,
		IdleConnTimeout:       90 * time.Second,
		ResponseHeaderTimeout: shardTimeout,
		ExpectContinueTimeout: 2 * time.Second,
		DisableCompression:    true,
		WriteBufferSize:       64 << 10,
		ReadBufferSize:        64 << 10,
	}
	n := &shardNet{p: p, client: &http.Client{Transport: tr}}
	n.lookup = n.dataAddr
	return n
}

// dataAddr finds a member's data address in gossip.
func (n *shardNet) dataAddr(peer string) (string, error) {
	for _, m := range n.p.node.Members() {
		if m.ID == peer {
			if m.Meta.DataAddr == "" {
				return "", fmt.Errorf("peer %s has no data address", peer)
			}
			return m.Meta.DataAddr, nil
		}
	}
	return "", fmt.Errorf("peer %s is not a member", peer)
}

func (n *shardNet) request(ctx context.Context, method, peer, path string, body []byte) (*http.Response, error) {
	return n.requestAccept(ctx, method, peer, path, body, "")
}

// requestAccept is request with an Accept header (none when accept is "").
func (n *shardNet) requestAccept(ctx context.Context, method, peer, path string, body []byte, accept string) (*http.Response, error) {
	hp, err := n.lookup(peer)
	if err != nil {
		return nil, err
	}
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, "http://"+hp+path, rd)
	if err != nil {
		return nil, err
	}
	req.Header.Set(api.TokenHeader, n.p.cfg.Keys.PeerToken())
	if accept != "" {
		req.Header.Set("Accept", accept)
	}
	if body != nil {
		req.ContentLength = int64(len(body))
		if strings.HasPrefix(path, "/v1/shard/") && len(body) > expectMin {
			// A peer that holds the shard already answers before the
			// body is sent: dedup costs no transfer. Smaller bodies are
			// sent at once: the extra round trip would cost more than
			// sending them again (small files store two one-chunk
			// stripes, data then manifest, one after the other).
			req.Header.Set("Expect", "100-continue")
		}
	}
	resp, err := n.client.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return nil, err
	}
	return resp, nil
}

func shardPath(k store.ShardKey) string {
	return "/v1/shard/" + k.Addr.String() + "/" + strconv.Itoa(k.Index)
}

// PutShard writes a shard durably: the holder has synced it when this
// returns (repair and rebalance, which may delete another copy next).
func (n *shardNet) PutShard(ctx context.Context, peer string, k store.ShardKey, shard []byte) (bool, error) {
	return n.putShard(ctx, peer, k, shard, false)
}

// lazyNet is the shard network the store writes files through: the holder
// answers once the shard is written, and syncs it within
// blockstore.Options.SyncEvery. A file is as durable as its namespace change, which
// receivers hold the same way: a killed process loses neither (the kernel
// holds the writes), a machine that loses power loses only its own share
// (the other peers' shards rebuild it), and fsync(2) on the mount syncs
// every peer (replicator.SyncBarrier). With six peers on one shared disk
// (the test set-up) the two fsyncs per shard write made a 200 KB file's
// close wait 13 ms; lazily, 6.7 ms.
type lazyNet struct{ *shardNet }

func (n lazyNet) PutShard(ctx context.Context, peer string, k store.ShardKey, shard []byte) (bool, error) {
	return n.putShard(ctx, peer, k, shard, true)
}

func (n *shardNet) putShard(ctx context.Context, peer string, k store.ShardKey, shard []byte, lazy bool) (bool, error) {
	if peer == n.p.id {
		return n.p.putLocal(ctx, k, shard, lazy)
	}
	ctx, cancel := context.WithTimeout(ctx, shardTimeout)
	defer cancel()
	// On a stream: an HTTP PUT cost the writer a header to write and parse
	// and two goroutine hand-offs; a 200 KB file's twelve shard writes
	// took 1.9 ms each (median) against ~0.1 ms of work at the holder.
	if stored, err := n.putShardStream(ctx, peer, k, shard, lazy); !errors.Is(err, errNoStream) {
		return stored, err
	}
	path := shardPath(k)
	if lazy {
		path += "?lazy=1" // a peer that does not know it syncs: safe
	}
	resp, err := n.request(ctx, http.MethodPut, peer, path, shard)
	if err != nil {
		return false, err
	}
	defer drain(resp)
	switch resp.StatusCode {
	case http.StatusCreated:
		return true, nil
	case http.StatusOK:
		return false, nil
	default:
		return false, peerError(resp)
	}
}

func (n *shardNet) GetShard(ctx context.Context, peer string, k store.ShardKey) ([]byte, error) {
	return n.GetShardTo(ctx, peer, k, nil)
}

// GetShardTo implements store.BufferedNet: the body (or the local value) is
// read into buf when it fits, so the store's recycled buffers spare the
// allocation, and zeroing, of one per shard.
func (n *shardNet) GetShardTo(ctx context.Context, peer string, k store.ShardKey, buf []byte) ([]byte, error) {
	if peer == n.p.id {
		return n.p.getLocal(ctx, k, func(int) []byte { return buf })
	}
	ctx, cancel := context.WithTimeout(ctx, shardTimeout)
	defer cancel()
	// On a stream, like writes (putShard): the HTTP GET's headers and
	// net/http's goroutine hand-offs cost more CPU than the shard's bytes
	// (BenchmarkGetShard).
	if b, err := n.getShardStream(ctx, peer, k, buf); !errors.Is(err, errNoStream) {
		return b, err
	}
	return n.getShardHTTP(ctx, peer, k, buf)
}

// getShardHTTP is GetShardTo from a peer that offers no stream for it.
func (n *shardNet) getShardHTTP(ctx context.Context, peer string, k store.ShardKey, buf []byte) ([]byte, error) {
	resp, err := n.request(ctx, http.MethodGet, peer, shardPath(k), nil)
	if err != nil {
		return nil, err
	}
	defer drain(resp)
	switch resp.StatusCode {
	case http.StatusOK:
	case http.StatusNotFound:
		return nil, store.ErrShardNotFound
	default:
		return nil, peerError(resp)
	}
	if resp.ContentLength > store.MaxShard {
		return nil, fmt.Errorf("shard of %d bytes exceeds the %d-byte limit", resp.ContentLength, store.MaxShard)
	}
	return readBounded(resp.Body, resp.ContentLength, store.MaxShard, buf)
}

func (n *shardNet) ListShards(ctx context.Context, peer string, a addr.Addr) ([]int, error) {
	if peer == n.p.id {
		return n.p.listLocal(ctx, a)
	}
	ctx, cancel := context.WithTimeout(ctx, listTimeout)
	defer cancel()
	resp, err := n.request(ctx, http.MethodGet, peer, "/v1/shards/"+a.String(), nil)
	if err != nil {
		return nil, err
	}
	defer drain(resp)
	if resp.StatusCode != http.StatusOK {
		return nil, peerError(resp)
	}
	var out struct{ Indexes []int }
	if err := json.NewDecoder(io.LimitReader(resp.Body, maxListBody)).Decode(&out); err != nil {
		return nil, fmt.Errorf("bad shard list: %w", err)
	}
	return out.Indexes, nil
}

// readBounded reads a body of the announced length (or up to max when
// unknown), never more than max, into buf when it fits.
func readBounded(r io.Reader, n, max int64, buf []byte) ([]byte, error) {
	if n >= 0 {
		b := buf[:0]
		if int64(cap(b)) >= n {
			b = b[:n]
		} else {
			b = make([]byte, n)
		}
		if _, err := io.ReadFull(r, b); err != nil {
			return nil, fmt.Errorf("short body: %w", err)
		}
		return b, nil
	}
	b, err := io.ReadAll(io.LimitReader(r, max+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > max {
		return nil, fmt.Errorf("body exceeds %d bytes", max)
	}
	return b, nil
}

func peerError(resp *http.Response) error {
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<10))
	var e api.Error
	if json.Unmarshal(b, &e) == nil && e.Error != "" {
		return fmt.Errorf("%s: %s", resp.Status, e.Error)
	}
	return fmt.Errorf("%s", resp.Status)
}

// drain lets the connection be reused.
func drain(resp *http.Response) {
	io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
}

// ErrFull is returned when a shard does not fit in the peer's capacity.
var ErrFull = errors.New("peer is full")

func (p *Peer) putLocal(ctx context.Context, k store.ShardKey, shard []byte, lazy bool) (bool, error) {
	p.gc.touch(k.Addr) // a writer uses the chunk: not collected now (gc.go)
	key := shardKey(k)
	has, err := p.bs.Has(ctx, key)
	if err != nil {
		return false, err
	}
	if has {
		return false, p.heldDurably(ctx, lazy)
	}
	return p.storeLocal(ctx, key, shard, lazy)
}

// heldDurably is what a write of a shard this peer holds already waits
// for: nothing when lazy, else the sync of an earlier lazy write of it (a
// no-op when nothing is unsynced). Repair and rebalance, which delete a
// shard elsewhere once it is written, never rely on a lazy copy.
func (p *Peer) heldDurably(ctx context.Context, lazy bool) error {
	if lazy {
		return nil
	}
	return p.bs.Sync(ctx)
}

// storeLocal stores a shard known not to be here yet (the caller checked);
// lazy stores it with PutLazy (see shardNet.PutShard).
func (p *Peer) storeLocal(ctx context.Context, key, shard []byte, lazy bool) (bool, error) {
	if used, capacity := p.bs.Stats().Bytes, p.capacity.Load(); used+int64(len(shard)) > capacity {
		return false, fmt.Errorf("%w: %d of %d bytes used", ErrFull, used, capacity)
	}
	put := p.bs.Put
	if lazy {
		put = p.bs.PutLazy
	}
	if err := put(ctx, key, shard); err != nil {
		return false, err
	}
	// The maintenance pass needs every local shard's coding; learning it
	// here saves reading the shard back from the store to get it.
	if h, err := erasure.ParseHeader(shard); err == nil && p.maint != nil {
		p.maint.learnCoding(key, h.K, h.M)
	}
	return true, nil
}

// getLocal reads a local shard into the buffer buf returns for its length
// when it fits (see blockstore.GetTo; nil: a new slice).
func (p *Peer) getLocal(ctx context.Context, k store.ShardKey, buf func(n int) []byte) ([]byte, error) {
	b, err := p.bs.GetTo(ctx, shardKey(k), buf)
	if errors.Is(err, blockstore.ErrNotFound) {
		return nil, store.ErrShardNotFound
	}
	return b, err
}

func (p *Peer) listLocal(ctx context.Context, a addr.Addr) ([]int, error) {
	var out []int
	err := p.bs.List(ctx, a[:], func(key []byte, _ int64) error {
		if len(key) == addr.Size+2 {
			out = append(out, int(binary.BigEndian.Uint16(key[addr.Size:])))
		}
		return nil
	})
	return out, err
}
