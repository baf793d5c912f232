package peer

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/reefproject/reef/addr"
	"github.com/reefproject/reef/api"
	"github.com/reefproject/reef/erasure"
	"github.com/reefproject/reef/internal/bufpool"
	"github.com/reefproject/reef/store"
)

// Streams: namespace pushes travel on long-lived connections taken over
// from the HTTP server (an Upgrade, like WebSocket's), as length-prefixed
// frames answered in order. An HTTP request costs both sides a header to
// write and parse and the client two goroutine hand-offs (net/http's
// write and read loops); on the 2-vCPU CI VM a small POST round trip took
// 150-175 µs against 31-39 µs for the same bytes framed on a raw
// connection, and every close(2) waits for one such round trip to m
// peers. The upgrade request carries the peer token like any peer-only
// request, so streams need no authentication of their own.
//
// Frame, both ways: a 4-byte big-endian payload length, a 1-byte kind
// (request) or status (answer), the payload. Requests:
//   - frameOps: namespace.EncodeOps; answered with no payload;
//   - frameShardPut: a shard header (below) and the shard; answered with
//     one byte, 1 if the shard was stored, 0 if it was held already;
//   - frameShardHas: a shard header; answered with one byte, 1 if held;
//   - frameShardGet: a shard header with flags 0; answered with the shard,
//     or statusNotFound when this peer does not hold it.
//
// A shard header is a flags byte (shardLazy: write without waiting for the
// disk, see lazyNet), the 32-byte chunk address and the 2-byte big-endian
// shard index. Answers: statusOK, statusError (payload: the error text) or
// statusNotFound (frameShardGet only; payload: the error text). Every read
// and write has a deadline; lengths are bounded before anything is
// allocated: requests per kind, answers by what was asked (a shard for
// frameShardGet, maxErrorFrame for any other answer and for every error).
// A peer of an older version answers an unknown kind with statusError:
// callers then use HTTP (errNoStream). statusNotFound is a status of its
// own, not error text to match, so that no error a peer reports (a disk
// error naming a missing file, say) reads as a missing shard; only peers
// that know frameShardGet send it, and only in answer to it.
const (
	streamProto    = "reef-stream-1"
	streamPath     = "/v1/stream"
	frameOps       = 1
	frameShardPut  = 2
	frameShardHas  = 3
	frameShardGet  = 4
	statusOK       = 0
	statusError    = 1
	statusNotFound = 2
	maxErrorFrame  = 64 << 10
	streamIdle     = 2 * time.Minute // a server closes a connection idle this long
	streamIdleKeep = 16              // idle connections kept per peer (8 chunks in flight put ~8 shards on each)

	shardLazy       = 1
	shardHeaderSize = 1 + addr.Size + 2
)

// errNoStream means the peer does not offer streams (an older version):
// the caller falls back to plain HTTP.
var errNoStream = errors.New("peer does not offer streams")

// handleStream takes the connection over and serves frames until the
// client closes it, it idles for streamIdle, or the peer stops.
func (p *Peer) handleStream(w http.ResponseWriter, r *http.Request) {
	if !strings.EqualFold(r.Header.Get("Upgrade"), streamProto) {
		api.WriteError(w, http.StatusBadRequest, fmt.Errorf("want Upgrade: %s", streamProto))
		return
	}
	hj, ok := w.(http.Hijacker)
	if !ok {
		api.WriteError(w, http.StatusInternalServerError, errors.New("connection cannot be taken over"))
		return
	}
	conn, brw, err := hj.Hijack()
	if err != nil {
		p.log.Warn("stream: take over connection", "err", err)
		return
	}
	if !p.streams.add(conn) {
		conn.Close() // stopping
		return
	}
	defer func() {
		p.streams.remove(conn)
		conn.Close()
	}()
	conn.SetWriteDeadline(time.Now().Add(nsTimeout))
	brw.WriteString("HTTP/1.1 101 Switching Protocols\r\nUpgrade: " + streamProto + "\r\nConnection: Upgrade\r\n\r\n")
	if err := brw.Flush(); err != nil {
		return
	}
	serveFrames(conn, brw.Reader, bufio.NewWriter(conn), frameLimit, func(kind byte, body []byte) ([]byte, func(), error) {
		t0 := time.Now()
		ans, release, err := p.serveFrame(kind, body)
		result := "ok"
		switch {
		case errors.Is(err, store.ErrShardNotFound):
			result = "not_found"
		case err != nil:
			result = "error"
		}
		p.metrics.ObserveStream(frameName(kind), result, time.Since(t0), len(body), len(ans))
		return ans, release, err
	})
}

func (p *Peer) serveFrame(kind byte, body []byte) ([]byte, func(), error) {
	switch kind {
	case frameOps:
		return nil, nil, p.applyOps(body)
	case frameShardPut, frameShardHas:
		ans, err := p.streamShard(kind, body)
		return ans, nil, err
	case frameShardGet:
		return p.streamGetShard(body)
	case frameLock:
		ans, err := p.locks.serveFrame(body)
		return ans, nil, err
	}
	return nil, nil, fmt.Errorf("unknown frame kind %d", kind)
}

// frameName is a frame kind's op label in the stream metrics.
func frameName(kind byte) string {
	switch kind {
	case frameOps:
		return "ns_ops"
	case frameShardPut:
		return "put_shard"
	case frameShardHas:
		return "has_shard"
	case frameShardGet:
		return "get_shard"
	case frameLock:
		return "lock"
	}
	return "unknown"
}

// frameLimit bounds a request frame's payload by its kind.
func frameLimit(kind byte) int64 {
	switch kind {
	case frameShardPut:
		return shardHeaderSize + store.MaxShard
	case frameShardHas, frameShardGet:
		return shardHeaderSize
	case frameLock:
		return maxLockFrame
	}
	return maxOpsBody
}

// unknownKindPrefix starts the error an older peer answers a frame kind it
// does not know with.
const unknownKindPrefix = "unknown frame kind"

// streamShard serves a shard frame: the same checks and the same store as
// PUT /v1/shard (handlePutShard).
func (p *Peer) streamShard(kind byte, body []byte) ([]byte, error) {
	k, lazy, shard, err := parseShardFrame(body)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), shardTimeout)
	defer cancel()
	if kind == frameShardHas {
		p.gc.touch(k.Addr) // a writer's dedup check: it may use the chunk
		has, err := p.bs.Has(ctx, shardKey(k))
		if err != nil || !has {
			return []byte{0}, err
		}
		return []byte{1}, p.heldDurably(ctx, lazy)
	}
	h, err := erasure.Verify(shard)
	if err != nil {
		return nil, err
	}
	if h.Index != k.Index {
		return nil, fmt.Errorf("shard header says index %d, frame says %d", h.Index, k.Index)
	}
	stored, err := p.putLocal(ctx, k, shard, lazy)
	if err != nil {
		if !errors.Is(err, ErrFull) {
			p.log.Error("storing shard", "shard", k.String(), "err", err)
		}
		return nil, err
	}
	if stored {
		return []byte{1}, nil
	}
	return []byte{0}, nil
}

// streamGetShard serves frameShardGet: GET /v1/shard (handleGetShard) on
// a stream. The shard is copied out of the store into a recycled buffer,
// which release gives back once the answer is written.
func (p *Peer) streamGetShard(body []byte) (shard []byte, release func(), err error) {
	k, lazy, rest, err := parseShardFrame(body)
	if err != nil {
		return nil, nil, err
	}
	if lazy || len(rest) != 0 {
		return nil, nil, fmt.Errorf("shard get frame with flags or %d trailing bytes", len(rest))
	}
	ctx, cancel := context.WithTimeout(context.Background(), shardTimeout)
	defer cancel()
	b, err := p.getLocal(ctx, k, p.served.Get)
	if err != nil {
		if !errors.Is(err, store.ErrShardNotFound) {
			p.log.Error("reading shard", "shard", k.String(), "err", err)
		}
		return nil, nil, err
	}
	return b, func() { p.served.Put(b) }, nil
}

// getShardStream is GET /v1/shard on a stream, the answer read into buf
// when it fits. errNoStream: use HTTP.
func (n *shardNet) getShardStream(ctx context.Context, peer string, k store.ShardKey, buf []byte) ([]byte, error) {
	return n.streamCallTo(ctx, peer, frameShardGet, store.MaxShard, buf, shardFrameHeader(k, false))
}

// shardFrameHeader encodes the header of a shard frame.
func shardFrameHeader(k store.ShardKey, lazy bool) []byte {
	b := make([]byte, shardHeaderSize)
	if lazy {
		b[0] = shardLazy
	}
	copy(b[1:], k.Addr[:])
	binary.BigEndian.PutUint16(b[1+addr.Size:], uint16(k.Index))
	return b
}

// parseShardFrame splits a shard frame's payload.
func parseShardFrame(b []byte) (k store.ShardKey, lazy bool, shard []byte, err error) {
	if len(b) < shardHeaderSize {
		return k, false, nil, fmt.Errorf("shard frame of %d bytes, header is %d", len(b), shardHeaderSize)
	}
	if b[0]&^shardLazy != 0 {
		return k, false, nil, fmt.Errorf("shard frame flags %#x", b[0])
	}
	copy(k.Addr[:], b[1:1+addr.Size])
	k.Index = int(binary.BigEndian.Uint16(b[1+addr.Size:]))
	if k.Index > 255 {
		return k, false, nil, fmt.Errorf("bad shard index %d", k.Index)
	}
	return k, b[0]&shardLazy != 0, b[shardHeaderSize:], nil
}

// putShardStream is PUT /v1/shard on a stream: a shard bigger than
// expectMin is first asked about (the has-check that lets dedup skip the
// transfer), smaller ones are sent at once. errNoStream: use HTTP.
func (n *shardNet) putShardStream(ctx context.Context, peer string, k store.ShardKey, shard []byte, lazy bool) (bool, error) {
	hdr := shardFrameHeader(k, lazy)
	if len(shard) > expectMin && n.dedup.ask() {
		ans, err := n.streamCall(ctx, peer, frameShardHas, hdr)
		if err != nil {
			return false, err
		}
		held := len(ans) == 1 && ans[0] == 1
		n.dedup.saw(held)
		if held {
			return false, nil
		}
	}
	ans, err := n.streamCall(ctx, peer, frameShardPut, hdr, shard)
	if err != nil {
		return false, err
	}
	if len(ans) != 1 {
		return false, fmt.Errorf("shard put answered with %d bytes, want 1", len(ans))
	}
	return ans[0] == 1, nil
}

// putBodies recycles the bodies of shard put frames (serveFrames); a
// handler of frameShardPut must not keep its body past its return.
var putBodies bufpool.Pool

// serveFrames answers frames on one connection, in order, with handle's
// result, until the connection fails or idles for streamIdle. limit bounds
// each kind's payload. release, when handle returns one, is called once
// the answer is written (the answer's buffer may then be reused). An error
// that is store.ErrShardNotFound is answered with statusNotFound.
func serveFrames(conn net.Conn, br *bufio.Reader, bw *bufio.Writer, limit func(kind byte) int64, handle func(kind byte, body []byte) (answer []byte, release func(), err error)) {
	var hdr [5]byte
	for {
		conn.SetReadDeadline(time.Now().Add(streamIdle))
		if _, err := io.ReadFull(br, hdr[:1]); err != nil {
			return // closed or idle
		}
		conn.SetReadDeadline(time.Now().Add(nsTimeout))
		if _, err := io.ReadFull(br, hdr[1:]); err != nil {
			return
		}
		n := binary.BigEndian.Uint32(hdr[:4])
		if max := limit(hdr[4]); int64(n) > max {
			// The payload is not read: the connection cannot continue.
			writeFrame(conn, bw, statusError, []byte(fmt.Sprintf("frame of %d bytes, limit %d", n, max)))
			return
		}
		// A shard put's body is dead once handled (the store has copied
		// it into its log): it is read into a recycled buffer. Allocated
		// afresh, each one cost a zeroed 256 KiB and its share of GC.
		var body []byte
		pooled := hdr[4] == frameShardPut && n > 0
		if pooled {
			body = putBodies.Get(int(n))
		} else {
			body = make([]byte, n)
		}
		if _, err := io.ReadFull(br, body); err != nil {
			if pooled {
				putBodies.Put(body)
			}
			return
		}
		var status byte = statusOK
		answer, release, err := handle(hdr[4], body)
		if pooled {
			putBodies.Put(body)
		}
		switch {
		case errors.Is(err, store.ErrShardNotFound):
			status, answer = statusNotFound, []byte(err.Error())
		case err != nil:
			status, answer = statusError, []byte(err.Error())
		}
		err = writeFrame(conn, bw, status, answer)
		if release != nil {
			release()
		}
		if err != nil {
			return
		}
	}
}

// writeFrame writes one answer. Error text is cut to maxErrorFrame, what
// a client accepts of it. A payload bigger than bw's buffer (a shard) goes
// out with its header in one writev, from the caller's memory: through bw
// it took a copy of the first 4 KiB and two writes.
func writeFrame(conn net.Conn, bw *bufio.Writer, status byte, payload []byte) error {
	if status != statusOK && len(payload) > maxErrorFrame {
		payload = payload[:maxErrorFrame]
	}
	conn.SetWriteDeadline(time.Now().Add(nsTimeout))
	var hdr [5]byte
	binary.BigEndian.PutUint32(hdr[:4], uint32(len(payload)))
	hdr[4] = status
	if len(hdr)+len(payload) > bw.Available() {
		if err := bw.Flush(); err != nil { // empty: every answer is flushed
			return err
		}
		bufs := net.Buffers{hdr[:], payload}
		_, err := bufs.WriteTo(conn)
		return err
	}
	bw.Write(hdr[:])
	bw.Write(payload)
	return bw.Flush()
}

// applyOps takes an encoded batch of namespace ops from another peer into
// the inbox (inbox.go): on success it is as durable here as this peer's
// own changes and will be applied within moments.
func (p *Peer) applyOps(body []byte) error {
	defer func(t0 time.Time) { p.metrics.ObserveNS("apply", time.Since(t0)) }(time.Now())
	return p.inbox.add(body)
}

// streamSet tracks the connections a peer serves, to close them on stop.
type streamSet struct {
	mu     sync.Mutex
	conns  map[net.Conn]bool
	closed bool
}

func (s *streamSet) add(c net.Conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	if s.conns == nil {
		s.conns = make(map[net.Conn]bool)
	}
	s.conns[c] = true
	return true
}

func (s *streamSet) remove(c net.Conn) {
	s.mu.Lock()
	delete(s.conns, c)
	s.mu.Unlock()
}

// closeAll closes every connection and refuses new ones.
func (s *streamSet) closeAll() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	for c := range s.conns {
		c.Close()
	}
}

// streamConn is a client connection in a stream pool.
type streamConn struct {
	net.Conn
	br   *bufio.Reader
	idle time.Time // when it went back to the pool
}

// streamClientIdle is how long a client keeps an idle connection: well
// under streamIdle, after which the server closes it. A connection kept
// longer was dead when next used, and so were all the others of the pool:
// after two quiet minutes every write of a mount failed with EIO (bonnie++
// between its phases, fio after a pause), the retry taking another dead one.
const streamClientIdle = streamIdle / 2

// streamPool keeps idle client connections per data address.
type streamPool struct {
	mu   sync.Mutex
	idle map[string][]*streamConn
}

// get returns the most recently used idle connection to addr, nil if none;
// those idle past streamClientIdle are closed.
func (sp *streamPool) get(addr string) *streamConn {
	sp.mu.Lock()
	defer sp.mu.Unlock()
	l := sp.idle[addr]
	// The oldest come first: drop the expired ones from the front.
	expired := 0
	for expired < len(l) && time.Since(l[expired].idle) > streamClientIdle {
		l[expired].Close()
		expired++
	}
	l = l[expired:]
	if len(l) == 0 {
		delete(sp.idle, addr)
		return nil
	}
	c := l[len(l)-1]
	sp.idle[addr] = l[:len(l)-1]
	return c
}

func (sp *streamPool) put(addr string, c *streamConn) {
	sp.mu.Lock()
	defer sp.mu.Unlock()
	if sp.idle == nil {
		sp.idle = make(map[string][]*streamConn)
	}
	if len(sp.idle[addr]) >= streamIdleKeep {
		c.Close()
		return
	}
	c.idle = time.Now()
	sp.idle[addr] = append(sp.idle[addr], c)
}

// drop closes every idle connection to addr: one was found dead (the peer
// restarted, or the network dropped them), so the others likely are too.
func (sp *streamPool) drop(addr string) {
	sp.mu.Lock()
	l := sp.idle[addr]
	delete(sp.idle, addr)
	sp.mu.Unlock()
	for _, c := range l {
		c.Close()
	}
}

// dialStream opens a stream to addr: a TCP connection upgraded by an HTTP
// request that carries the peer token.
func (n *shardNet) dialStream(ctx context.Context, addr string) (*streamConn, error) {
	d := net.Dialer{Timeout: dialTimeout, KeepAlive: 30 * time.Second}
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	deadline := time.Now().Add(nsTimeout)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	conn.SetDeadline(deadline)
	req := "GET " + streamPath + " HTTP/1.1\r\nHost: " + addr + "\r\nConnection: Upgrade\r\nUpgrade: " + streamProto +
		"\r\n" + api.TokenHeader + ": " + n.p.cfg.Keys.PeerToken() + "\r\n\r\n"
	if _, err := io.WriteString(conn, req); err != nil {
		conn.Close()
		return nil, err
	}
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("stream upgrade: %w", err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		err := peerError(resp)
		resp.Body.Close()
		conn.Close()
		if resp.StatusCode == http.StatusNotFound || resp.StatusCode == http.StatusMethodNotAllowed {
			return nil, errNoStream
		}
		return nil, fmt.Errorf("stream upgrade: %w", err)
	}
	return &streamConn{Conn: conn, br: br}, nil
}

// streamCall sends one frame, its payload the concatenation of parts, to
// peer and returns the answer's payload. A pooled connection that turns out
// dead before any answer arrived is replaced once by a new one, and the
// peer's other idle connections are closed (the requests are
// idempotent: ops and shards already held are skipped). A peer that does
// not know the frame kind gives errNoStream.
func (n *shardNet) streamCall(ctx context.Context, peer string, kind byte, parts ...[]byte) ([]byte, error) {
	return n.streamCallTo(ctx, peer, kind, maxErrorFrame, nil, parts...)
}

// streamCallTo is streamCall for an answer of up to limit bytes (errors
// stay bounded by maxErrorFrame), read into buf when it fits (see
// streamConn.call).
func (n *shardNet) streamCallTo(ctx context.Context, peer string, kind byte, limit int64, buf []byte, parts ...[]byte) ([]byte, error) {
	addr, err := n.lookup(peer)
	if err != nil {
		return nil, err
	}
	for attempt := 0; ; attempt++ {
		var c *streamConn
		if attempt == 0 {
			c = n.streams.get(addr) // a retry dials: the pool's others may be dead too
		}
		pooled := c != nil
		if c == nil {
			if c, err = n.dialStream(ctx, addr); err != nil {
				return nil, err
			}
		}
		answer, answered, err := c.callTo(ctx, kind, parts, limit, buf)
		if err == nil || answered {
			n.streams.put(addr, c)
			if unknownKind(kind, err) {
				return nil, errNoStream
			}
			return answer, err
		}
		c.Close()
		if !pooled || attempt > 0 {
			return nil, err
		}
		n.streams.drop(addr)
	}
}

// unknownKind reports whether err is a peer's answer that it does not know
// kind (a peer of an older version, for any kind but frameOps).
func unknownKind(kind byte, err error) bool {
	var pe peerFrameError
	return kind != frameOps && errors.As(err, &pe) && strings.HasPrefix(string(pe), unknownKindPrefix)
}

// peerFrameError is the error text a peer answered a frame with.
type peerFrameError string

func (e peerFrameError) Error() string { return "peer: " + string(e) }

// call writes one frame and reads the answer. answered reports whether a
// whole answer frame was read (the connection is then still usable); err
// is then the peer's error, if it sent one.
func (c *streamConn) call(ctx context.Context, kind byte, parts [][]byte) (answer []byte, answered bool, err error) {
	return c.callTo(ctx, kind, parts, maxErrorFrame, nil)
}

// callTo is call for an answer of up to limit bytes, read into buf when it
// fits (its contents are then overwritten, even when the call fails). The
// length a peer announces is checked against the limit of its status
// before anything is allocated or read: an error or a not-found answer is
// bounded by maxErrorFrame whatever limit is. statusNotFound gives
// store.ErrShardNotFound.
func (c *streamConn) callTo(ctx context.Context, kind byte, parts [][]byte, limit int64, buf []byte) (answer []byte, answered bool, err error) {
	deadline := time.Now().Add(nsTimeout)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	c.SetDeadline(deadline)
	size := 0
	for _, p := range parts {
		size += len(p)
	}
	var hdr [5]byte
	binary.BigEndian.PutUint32(hdr[:4], uint32(size))
	hdr[4] = kind
	// One writev: the shard is not copied into a frame buffer. (Empty
	// parts are left out: on a net.Pipe an empty write waits for a read.)
	bufs := net.Buffers{hdr[:]}
	for _, p := range parts {
		if len(p) > 0 {
			bufs = append(bufs, p)
		}
	}
	if _, err := bufs.WriteTo(c.Conn); err != nil {
		return nil, false, err
	}
	if _, err := io.ReadFull(c.br, hdr[:]); err != nil {
		return nil, false, err
	}
	n := binary.BigEndian.Uint32(hdr[:4])
	status := hdr[4]
	switch status {
	case statusOK:
	case statusError, statusNotFound:
		limit = maxErrorFrame
	default:
		return nil, false, fmt.Errorf("answer with unknown status %d", status)
	}
	if int64(n) > limit {
		return nil, false, fmt.Errorf("answer frame of %d bytes, limit %d", n, limit)
	}
	var payload []byte
	if status == statusOK && uint64(cap(buf)) >= uint64(n) {
		// Straight from the connection's reader into the caller's
		// buffer: a shard is not copied again.
		payload = buf[:n]
	} else {
		payload = make([]byte, n)
	}
	if _, err := io.ReadFull(c.br, payload); err != nil {
		return nil, false, err
	}
	switch status {
	case statusError:
		return nil, true, peerFrameError(payload)
	case statusNotFound:
		return nil, true, fmt.Errorf("%w (peer: %s)", store.ErrShardNotFound, payload)
	}
	return payload, true, nil
}

// dedupProbe decides whether a big shard write first asks the holder if it
// has the shard (frameShardHas). The question saves sending what a peer
// holds already (a second copy of a file, a backup of unchanged data), and
// costs a round trip otherwise: for new data, every shard of a 1 GiB write
// was two requests instead of one. After dedupMisses answers in a row of
// "not held", only one shard in dedupEvery asks, until one is held.
type dedupProbe struct {
	misses atomic.Int64 // "not held" answers since the last "held"
	n      atomic.Int64 // shards written since, to pick the probes
}

const (
	dedupMisses = 16
	dedupEvery  = 16
)

func (d *dedupProbe) ask() bool {
	if d.misses.Load() < dedupMisses {
		return true
	}
	return d.n.Add(1)%dedupEvery == 0
}

func (d *dedupProbe) saw(held bool) {
	if held {
		d.misses.Store(0)
		return
	}
	d.misses.Add(1)
}
