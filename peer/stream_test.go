package peer

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"strings"
	"testing"
)

// framePair serves frames with handle on one end of a pipe and returns
// the client end.
func framePair(t *testing.T, handle func(kind byte, body []byte) error) *streamConn {
	t.Helper()
	cli, srv := net.Pipe()
	done := make(chan struct{})
	go func() {
		defer close(done)
		serveFrames(srv, bufio.NewReader(srv), bufio.NewWriter(srv), handle)
		srv.Close()
	}()
	t.Cleanup(func() { cli.Close(); <-done })
	return &streamConn{Conn: cli, br: bufio.NewReader(cli)}
}

func TestStreamFrames(t *testing.T) {
	var got []string
	c := framePair(t, func(kind byte, body []byte) error {
		if kind != frameOps {
			return errors.New("unknown frame kind")
		}
		if string(body) == "bad" {
			return errors.New("malformed ops")
		}
		got = append(got, string(body))
		return nil
	})
	ctx := context.Background()
	tests := []struct {
		name     string
		kind     byte
		body     string
		wantErr  string
		answered bool
	}{
		{"ops", frameOps, "batch-1", "", true},
		{"empty payload", frameOps, "", "", true},
		{"handler error", frameOps, "bad", "malformed ops", true},
		{"unknown kind", 9, "x", "unknown frame kind", true},
		{"still usable after errors", frameOps, "batch-2", "", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			answered, err := c.call(ctx, tt.kind, []byte(tt.body))
			if answered != tt.answered {
				t.Errorf("answered = %v, want %v", answered, tt.answered)
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
	c := framePair(t, func(byte, []byte) error { t.Error("handler called"); return nil })
	var hdr [5]byte
	binary.BigEndian.PutUint32(hdr[:4], uint32(maxOpsBody+1))
	hdr[4] = frameOps
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
			answered, err := c.call(context.Background(), frameOps, []byte("ops"))
			if err == nil || answered {
				t.Errorf("call = %v, %v; want an error and answered false", answered, err)
			}
		})
	}
}
