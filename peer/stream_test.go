package peer

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/reefproject/reef/addr"
	"github.com/reefproject/reef/store"
)

// framePair serves frames with handle on one end of a pipe and returns
// the client end.
func framePair(t *testing.T, handle func(kind byte, body []byte) ([]byte, error)) *streamConn {
	t.Helper()
	return framePairRelease(t, func(kind byte, body []byte) ([]byte, func(), error) {
		ans, err := handle(kind, body)
		return ans, nil, err
	})
}

// framePairRelease is framePair with a handler that may return a release
// function.
func framePairRelease(t *testing.T, handle func(kind byte, body []byte) ([]byte, func(), error)) *streamConn {
	t.Helper()
	cli, srv := net.Pipe()
	done := make(chan struct{})
	go func() {
		defer close(done)
		serveFrames(srv, bufio.NewReader(srv), bufio.NewWriter(srv), frameLimit, handle)
		srv.Close()
	}()
	t.Cleanup(func() { cli.Close(); <-done })
	return &streamConn{Conn: cli, br: bufio.NewReader(cli)}
}

func TestStreamFrames(t *testing.T) {
	var got []string
	c := framePair(t, func(kind byte, body []byte) ([]byte, error) {
		if kind != frameOps {
			// What a peer of an older version answers.
			return nil, fmt.Errorf("unknown frame kind %d", kind)
		}
		if string(body) == "bad" {
			return nil, errors.New("malformed ops")
		}
		got = append(got, string(body))
		return []byte("ok:" + string(body)), nil
	})
	ctx := context.Background()
	tests := []struct {
		name     string
		kind     byte
		body     string
		wantErr  string
		answered bool
		old      bool // the answer of a peer that does not know the kind
	}{
		{"ops", frameOps, "batch-1", "", true, false},
		{"empty payload", frameOps, "", "", true, false},
		{"handler error", frameOps, "bad", "malformed ops", true, false},
		{"unknown kind", 9, "x", "unknown frame kind", true, true},
		{"shard put to an old peer", frameShardPut, "x", "unknown frame kind", true, true},
		{"still usable after errors", frameOps, "batch-2", "", true, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			answer, answered, err := c.call(ctx, tt.kind, [][]byte{[]byte(tt.body)})
			if answered != tt.answered {
				t.Errorf("answered = %v, want %v", answered, tt.answered)
			}
			if got := unknownKind(tt.kind, err); got != tt.old {
				t.Errorf("unknownKind = %v, want %v (err %v)", got, tt.old, err)
			}
			if err == nil && string(answer) != "ok:"+tt.body {
				t.Errorf("answer %q, want %q", answer, "ok:"+tt.body)
			}
			if tt.wantErr == "" && err != nil {
				t.Errorf("err = %v, want nil", err)
			}
			if tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)) {
				t.Errorf("err = %v, want one containing %q", err, tt.wantErr)
			}
		})
	}
	if want := []string{"batch-1", "", "batch-2"}; strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("handled %q, want %q", got, want)
	}
}

// An oversized frame is refused without reading (or allocating) it, and
// the connection is closed.
func TestStreamOversizedFrame(t *testing.T) {
	for _, tt := range []struct {
		name string
		kind byte
		size int64
	}{
		{"ops", frameOps, maxOpsBody + 1},
		{"shard put", frameShardPut, shardHeaderSize + store.MaxShard + 1},
		{"shard has", frameShardHas, shardHeaderSize + 1},
		{"shard get", frameShardGet, shardHeaderSize + 1},
	} {
		t.Run(tt.name, func(t *testing.T) { testOversized(t, tt.kind, tt.size) })
	}
}

func testOversized(t *testing.T, kind byte, size int64) {
	c := framePair(t, func(byte, []byte) ([]byte, error) { t.Error("handler called"); return nil, nil })
	var hdr [5]byte
	binary.BigEndian.PutUint32(hdr[:4], uint32(size))
	hdr[4] = kind
	if _, err := c.Write(hdr[:]); err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(c.br, hdr[:]); err != nil {
		t.Fatalf("reading the refusal: %v", err)
	}
	if hdr[4] != statusError {
		t.Fatalf("status %d, want error", hdr[4])
	}
	msg := make([]byte, binary.BigEndian.Uint32(hdr[:4]))
	io.ReadFull(c.br, msg)
	if !strings.Contains(string(msg), "limit") {
		t.Errorf("refusal %q does not name the limit", msg)
	}
	if _, err := c.br.ReadByte(); err == nil {
		t.Error("connection still open after an oversized frame")
	}
}

// A peer answering with an oversized or unknown frame is an error, and the
// connection is not reused (answered false).
func TestStreamBadAnswers(t *testing.T) {
	for _, tt := range []struct {
		name string
		hdr  [5]byte
	}{
		{"oversized", func() (h [5]byte) { binary.BigEndian.PutUint32(h[:4], maxErrorFrame+1); return }()},
		{"unknown status", [5]byte{0, 0, 0, 0, 7}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			cli, srv := net.Pipe()
			defer cli.Close()
			go func() {
				io.ReadFull(srv, make([]byte, 5+3))
				srv.Write(tt.hdr[:])
				srv.Close()
			}()
			c := &streamConn{Conn: cli, br: bufio.NewReader(cli)}
			_, answered, err := c.call(context.Background(), frameOps, [][]byte{[]byte("ops")})
			if err == nil || answered {
				t.Errorf("call = %v, %v; want an error and answered false", answered, err)
			}
		})
	}
}

func TestShardFrameHeader(t *testing.T) {
	k := store.ShardKey{Addr: addr.Sum([]byte("chunk")), Index: 5}
	for _, lazy := range []bool{false, true} {
		b := append(shardFrameHeader(k, lazy), "shard bytes"...)
		gk, glazy, shard, err := parseShardFrame(b)
		if err != nil || gk != k || glazy != lazy || string(shard) != "shard bytes" {
			t.Errorf("lazy %v: round trip gave %v %v %q %v", lazy, gk, glazy, shard, err)
		}
	}
	good := shardFrameHeader(k, true)
	bad := func(f func(b []byte) []byte) []byte { return f(append([]byte(nil), good...)) }
	for _, tt := range []struct {
		name string
		b    []byte
	}{
		{"empty", nil},
		{"short", good[:shardHeaderSize-1]},
		{"unknown flag", bad(func(b []byte) []byte { b[0] = 0x80; return b })},
		{"index past 255", bad(func(b []byte) []byte { binary.BigEndian.PutUint16(b[1+addr.Size:], 256); return b })},
	} {
		if _, _, _, err := parseShardFrame(tt.b); err == nil {
			t.Errorf("%s: parsed", tt.name)
		}
	}
}

// frameShardGet end to end: the real routes on an httptest server, the
// reading peer's shardNet dialing a stream to it.
func TestStreamGetShard(t *testing.T) {
	ctx := context.Background()
	sp := newShardPair(t)
	a, shards := testShards(t, 1<<20)
	for _, i := range []int{0, 1} {
		if _, err := sp.server.putLocal(ctx, store.ShardKey{Addr: a, Index: i}, shards[i], false); err != nil {
			t.Fatal(err)
		}
	}
	size := len(shards[0])
	fits := make([]byte, size+1000)
	for _, tt := range []struct {
		name     string
		index    int
		buf      []byte
		notFound bool
		inPlace  bool
	}{
		{"found, nil buffer", 0, nil, false, false},
		{"found, buffer too small", 1, make([]byte, size-1), false, false},
		{"found, into the buffer", 0, fits, false, true},
		{"found again, the same buffer reused", 1, fits, false, true},
		{"buffer of zero length, enough capacity", 0, fits[:0], false, true},
		{"not found", 2, fits, true, false},
		{"found after a not-found (connection still usable)", 1, nil, false, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			k := store.ShardKey{Addr: a, Index: tt.index}
			got, err := sp.net.getShardStream(ctx, "server", k, tt.buf)
			if tt.notFound {
				if !errors.Is(err, store.ErrShardNotFound) || got != nil {
					t.Fatalf("getShardStream = %d bytes, %v; want ErrShardNotFound", len(got), err)
				}
				return
			}
			if err != nil || !bytes.Equal(got, shards[tt.index]) {
				t.Fatalf("getShardStream = %d bytes, %v; want the %d bytes of shard %d", len(got), err, size, tt.index)
			}
			if inPlace := cap(tt.buf) > 0 && &got[0] == &tt.buf[:1][0]; inPlace != tt.inPlace {
				t.Errorf("result in buf's memory: %v, want %v", inPlace, tt.inPlace)
			}
		})
	}
	// Every call above used one pooled connection: the stream, not HTTP.
	if n := len(sp.net.streams.idle[mustLookup(t, sp.net, "server")]); n != 1 {
		t.Errorf("%d idle stream connections, want 1", n)
	}
	// GetShardTo takes the stream too, and maps not-found the same way.
	if got, err := sp.net.GetShardTo(ctx, "server", store.ShardKey{Addr: a, Index: 1}, fits); err != nil || !bytes.Equal(got, shards[1]) || &got[0] != &fits[0] {
		t.Errorf("GetShardTo = %d bytes, %v (in place: %v)", len(got), err, len(got) > 0 && &got[0] == &fits[0])
	}
	if _, err := sp.net.GetShardTo(ctx, "server", store.ShardKey{Addr: a, Index: 5}, fits); !errors.Is(err, store.ErrShardNotFound) {
		t.Errorf("GetShardTo of a missing shard: %v, want ErrShardNotFound", err)
	}
}

func mustLookup(t *testing.T, n *shardNet, peer string) string {
	t.Helper()
	a, err := n.lookup(peer)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// A peer of an older version answers frameShardGet "unknown frame kind":
// getShardStream says errNoStream and GetShardTo reads over HTTP.
func TestStreamGetShardOldPeer(t *testing.T) {
	ctx := context.Background()
	sp := newShardPair(t)
	a, shards := testShards(t, 64<<10)
	k := store.ShardKey{Addr: a, Index: 3}
	if _, err := sp.server.putLocal(ctx, k, shards[3], false); err != nil {
		t.Fatal(err)
	}
	old := func(kind byte, body []byte) ([]byte, error) {
		if kind == frameOps {
			return nil, nil
		}
		return nil, fmt.Errorf("unknown frame kind %d", kind)
	}
	// The old peer's stream, as the pool would hold it.
	hp := mustLookup(t, sp.net, "server")
	sp.net.streams.put(hp, framePair(t, old))
	if _, err := sp.net.getShardStream(ctx, "server", k, nil); !errors.Is(err, errNoStream) {
		t.Fatalf("getShardStream from an old peer: %v, want errNoStream", err)
	}
	got, err := sp.net.GetShardTo(ctx, "server", k, nil)
	if err != nil || !bytes.Equal(got, shards[3]) {
		t.Fatalf("GetShardTo from an old peer = %d bytes, %v; want the shard over HTTP", len(got), err)
	}
}

// The server side of frameShardGet: the answer is the handler's buffer,
// written before release gives it back; a request with flags is refused.
func TestStreamGetShardServe(t *testing.T) {
	shard := bytes.Repeat([]byte("shard"), 100<<10) // past bufio's buffer: the writev path
	var released atomic.Int32
	var wrongKind int
	c := framePairRelease(t, func(kind byte, body []byte) ([]byte, func(), error) {
		if kind != frameShardGet {
			wrongKind++
		}
		k, lazy, rest, err := parseShardFrame(body)
		if err != nil || lazy || len(rest) != 0 {
			return nil, nil, fmt.Errorf("bad shard get frame")
		}
		if k.Index == 9 {
			return nil, nil, fmt.Errorf("reading: %w", store.ErrShardNotFound)
		}
		// A buffer of its own, wiped on release: an answer written after
		// release would arrive wiped.
		b := append([]byte(nil), shard...)
		return b, func() { clear(b); released.Add(1) }, nil
	})
	ctx := context.Background()
	k := store.ShardKey{Addr: addr.Sum([]byte("chunk")), Index: 1}
	got, answered, err := c.callTo(ctx, frameShardGet, [][]byte{shardFrameHeader(k, false)}, store.MaxShard, nil)
	if err != nil || !answered || !bytes.Equal(got, shard) {
		t.Fatalf("callTo = %d bytes, %v, %v; want the %d-byte shard", len(got), answered, err, len(shard))
	}
	k.Index = 9
	if _, answered, err := c.callTo(ctx, frameShardGet, [][]byte{shardFrameHeader(k, false)}, store.MaxShard, nil); !answered || !errors.Is(err, store.ErrShardNotFound) {
		t.Errorf("not found: answered %v, err %v; want ErrShardNotFound", answered, err)
	}
	// Frames are served in order: the first answer's release has run
	// before the second was answered.
	if n := released.Load(); n != 1 {
		t.Errorf("released %d times, want 1", n)
	}
	// The same shard asked for with a limit below its size: refused, and
	// the connection is not to be reused.
	k.Index = 1
	if _, answered, err := c.callTo(ctx, frameShardGet, [][]byte{shardFrameHeader(k, false)}, int64(len(shard)-1), nil); err == nil || answered {
		t.Errorf("answer over the limit: answered %v, err %v; want refused", answered, err)
	}
	if wrongKind != 0 {
		t.Errorf("%d frames of another kind", wrongKind)
	}
}

// The client bounds a frameShardGet answer by what was asked: a shard up
// to the limit, an error or not-found answer by maxErrorFrame, whatever
// the limit.
func TestStreamGetShardBadAnswers(t *testing.T) {
	for _, tt := range []struct {
		name   string
		status byte
		size   uint32
		limit  int64
	}{
		{"shard over MaxShard", statusOK, store.MaxShard + 1, store.MaxShard},
		{"shard of 4 GiB", statusOK, 1<<32 - 1, store.MaxShard},
		{"error over maxErrorFrame", statusError, maxErrorFrame + 1, store.MaxShard},
		{"not-found over maxErrorFrame", statusNotFound, maxErrorFrame + 1, store.MaxShard},
		{"unknown status", 7, 0, store.MaxShard},
	} {
		t.Run(tt.name, func(t *testing.T) {
			cli, srv := net.Pipe()
			defer cli.Close()
			go func() {
				io.ReadFull(srv, make([]byte, 5+shardHeaderSize))
				var h [5]byte
				binary.BigEndian.PutUint32(h[:4], tt.size)
				h[4] = tt.status
				srv.Write(h[:])
				srv.Close()
			}()
			c := &streamConn{Conn: cli, br: bufio.NewReader(cli)}
			k := store.ShardKey{Addr: addr.Sum([]byte("chunk"))}
			_, answered, err := c.callTo(context.Background(), frameShardGet, [][]byte{shardFrameHeader(k, false)}, tt.limit, nil)
			if err == nil || answered {
				t.Errorf("callTo = %v, %v; want an error and answered false", answered, err)
			}
		})
	}
}

// Every idle connection of the pool dead (the server closed them after
// streamIdle, or restarted): the call still succeeds on a new connection,
// and the other dead ones are dropped. The retry used to take the next
// pooled connection, as dead, and every write of a mount that had been
// quiet for two minutes failed.
func TestStreamPoolAllDead(t *testing.T) {
	ctx := context.Background()
	sp := newShardPair(t)
	a, shards := testShards(t, 64<<10)
	k := store.ShardKey{Addr: a, Index: 2}
	hp := mustLookup(t, sp.net, "server")
	for range 5 {
		c := framePair(t, func(byte, []byte) ([]byte, error) { return nil, nil })
		sp.net.streams.put(hp, c)
		c.Close() // as if the far end had gone away
	}
	if _, err := sp.net.putShardStream(ctx, "server", k, shards[2], false); err != nil {
		t.Fatalf("shard put with only dead pooled connections: %v", err)
	}
	sp.net.streams.mu.Lock()
	n := len(sp.net.streams.idle[hp])
	sp.net.streams.mu.Unlock()
	if n != 1 {
		t.Errorf("%d idle connections after the call, want 1 (the new one)", n)
	}
}

// An idle connection older than streamClientIdle is not handed out (the
// server closes its end after streamIdle) but closed.
func TestStreamPoolExpiry(t *testing.T) {
	var sp streamPool
	fresh := &streamConn{Conn: &countClose{}}
	old := &streamConn{Conn: &countClose{}}
	sp.put("a", old)
	sp.put("a", fresh)
	old.idle = time.Now().Add(-streamClientIdle - time.Second)
	if got := sp.get("a"); got != fresh {
		t.Fatalf("get = %v, want the fresh connection", got)
	}
	if got := sp.get("a"); got != nil {
		t.Fatalf("get handed out an expired connection")
	}
	if old.Conn.(*countClose).n != 1 || fresh.Conn.(*countClose).n != 0 {
		t.Errorf("closes: expired %d, fresh %d; want 1 and 0", old.Conn.(*countClose).n, fresh.Conn.(*countClose).n)
	}
}

type countClose struct {
	net.Conn
	n int
}

func (c *countClose) Close() error { c.n++; return nil }
