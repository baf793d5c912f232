package peer

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/reefproject/reef/crypt"
	"github.com/reefproject/reef/namespace"
)

func syncAnswer(ctype string, body []byte) *http.Response {
	h := http.Header{}
	h.Set("Content-Type", ctype)
	return &http.Response{StatusCode: http.StatusOK, Header: h, Body: io.NopCloser(bytes.NewReader(body))}
}

func binarySync(hdr []byte, ops []byte) []byte {
	var b bytes.Buffer
	var n [4]byte
	binary.BigEndian.PutUint32(n[:], uint32(len(hdr)))
	b.Write(n[:])
	b.Write(hdr)
	b.Write(ops)
	return b.Bytes()
}

// TestReadSync checks both forms of a sync answer and that a malformed or
// oversized binary one is an error, not a panic or a huge allocation.
func TestReadSync(t *testing.T) {
	hdr, _ := json.Marshal(syncResponse{VV: map[string]uint64{"p1": 7}, More: true})
	ops := []byte("sealed ops \x00\x01\x02")
	jsonBody, _ := json.Marshal(syncResponse{VV: map[string]uint64{"p1": 7}, More: true, Ops: ops})
	huge := make([]byte, 4)
	binary.BigEndian.PutUint32(huge, maxSyncHeader+1)
	tests := []struct {
		name    string
		resp    *http.Response
		wantErr string
	}{
		{"binary", syncAnswer(syncBinary, binarySync(hdr, ops)), ""},
		{"json", syncAnswer("application/json", jsonBody), ""},
		{"binary without ops", syncAnswer(syncBinary, binarySync(hdr, nil)), ""},
		{"header length too large", syncAnswer(syncBinary, huge), "exceeds"},
		{"truncated length", syncAnswer(syncBinary, []byte{0, 0}), "header length"},
		{"truncated header", syncAnswer(syncBinary, binarySync(hdr, nil)[:10]), "header"},
		{"header not JSON", syncAnswer(syncBinary, binarySync([]byte("{nope"), ops)), "decoding"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sr, err := readSync(tt.resp)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if sr.VV["p1"] != 7 || !sr.More {
				t.Errorf("header = %+v", sr)
			}
			if want := ops; tt.name == "binary without ops" {
				if len(sr.Ops) != 0 {
					t.Errorf("ops = %q, want none", sr.Ops)
				}
			} else if !bytes.Equal(sr.Ops, want) {
				t.Errorf("ops = %q, want %q", sr.Ops, want)
			}
		})
	}
}

// TestHandleSync checks that the answers of handleSync, in both forms
// (a client that asks for the binary one, and an older one that does not),
// decode as clients decode them (readSync, DecodeOps) to the ops, more and
// compacted flag that the previous server sent (OpsSince and EncodeOps):
// the format is unchanged, so peers of either version understand each
// other.
func TestHandleSync(t *testing.T) {
	keys, err := crypt.NewKeys(bytes.Repeat([]byte{3}, 32))
	if err != nil {
		t.Fatal(err)
	}
	ns, err := namespace.Open(namespace.Config{Dir: t.TempDir(), Peer: "a",
		Retention: time.Nanosecond, // compaction up to the base, at the end
		Seal:      func(b []byte) ([]byte, error) { return keys.SealRecord(nil, b) },
		SealTo:    keys.SealRecord, Open: keys.Open})
	if err != nil {
		t.Fatal(err)
	}
	defer ns.Close()
	ctx := context.Background()
	for i := range 20 {
		e, err := ns.Create(ctx, namespace.RootID, fmt.Sprint("f", i), namespace.File, namespace.Attr{Mode: 0o644}, "")
		if err != nil {
			t.Fatal(err)
		}
		data := bytes.Repeat([]byte{byte(i)}, 100*i)
		if _, err := ns.SetContent(ctx, e.Inode.ID, namespace.Content{Size: int64(len(data)), Inline: data}, e.Inode.Version); err != nil {
			t.Fatal(err)
		}
	}
	p := &Peer{ns: ns}
	ask := func(t *testing.T, accept string, vv map[string]uint64) syncResponse {
		body, _ := json.Marshal(syncRequest{VV: vv})
		r := httptest.NewRequest(http.MethodPost, "/v1/ns/sync", bytes.NewReader(body))
		if accept != "" {
			r.Header.Set("Accept", accept)
		}
		w := httptest.NewRecorder()
		p.handleSync(w, r)
		resp := w.Result()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("status %d: %s", resp.StatusCode, w.Body)
		}
		if got, want := resp.Header.Get("Content-Type") == syncBinary, accept == syncBinary; got != want {
			t.Errorf("Content-Type %q for Accept %q", resp.Header.Get("Content-Type"), accept)
		}
		sr, err := readSync(resp)
		if err != nil {
			t.Fatal(err)
		}
		return sr
	}
	for _, accept := range []string{syncBinary, ""} {
		for _, vv := range []map[string]uint64{nil, {"a": 10}, {"a": 39}, {"a": 40}} {
			t.Run(fmt.Sprintf("accept %q vv %v", accept, vv), func(t *testing.T) {
				sr := ask(t, accept, vv)
				want, more, err := ns.OpsSince(vv, syncBatch)
				if err != nil {
					t.Fatal(err)
				}
				var got []namespace.Op
				if len(sr.Ops) > 0 {
					if got, err = ns.DecodeOps(sr.Ops); err != nil {
						t.Fatal(err)
					}
				}
				if !reflect.DeepEqual(got, want) || sr.More != more || sr.Compacted {
					t.Errorf("answer: %d ops, more %v, compacted %v; want %d ops, more %v", len(got), sr.More, sr.Compacted, len(want), more)
				}
			})
		}
	}
	ns.ObservePeer("b", ns.VersionVector(), ns.Clock())
	if err := ns.Checkpoint(); err != nil {
		t.Fatal(err)
	}
	for _, accept := range []string{syncBinary, ""} {
		if sr := ask(t, accept, nil); !sr.Compacted || len(sr.Ops) != 0 {
			t.Errorf("accept %q, after compaction: compacted %v, %d bytes of ops", accept, sr.Compacted, len(sr.Ops))
		}
	}
}
