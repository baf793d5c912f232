package peer

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
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
