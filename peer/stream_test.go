package peer

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"

	"github.com/reefproject/reef/addr"
	"github.com/reefproject/reef/store"
)

// framePair serves frames with handle on one end of a pipe and returns
// the client end.
func framePair(t *testing.T, handle func(kind byte, body []byte) ([]byte, error)) *streamConn {
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
