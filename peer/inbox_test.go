package peer

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/reefproject/reef/namespace"
)

// origin makes n creates on a fresh namespace and returns each create's
// ops encoded as a push.
func originBatches(t *testing.T, n int) [][]byte {
	t.Helper()
	var mu sync.Mutex
	var got [][]namespace.Op
	ns, err := namespace.Open(namespace.Config{Dir: t.TempDir(), Peer: "origin",
		Replicate: func(_ context.Context, ops []namespace.Op) error {
			mu.Lock()
			got = append(got, ops)
			mu.Unlock()
			return nil
		}})
	if err != nil {
		t.Fatal(err)
	}
	defer ns.Close()
	for i := range n {
		if _, err := ns.Create(context.Background(), namespace.RootID, fmt.Sprint("f", i), namespace.File, namespace.Attr{Mode: 0o644}, ""); err != nil {
			t.Fatal(err)
		}
	}
	var out [][]byte
	for _, ops := range got {
		b, err := ns.EncodeOps(ops)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, b)
	}
	return out
}

func openNS(t *testing.T, name string) *namespace.Namespace {
	t.Helper()
	ns, err := namespace.Open(namespace.Config{Dir: t.TempDir(), Peer: name})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ns.Close() })
	return ns
}

func TestInboxApplies(t *testing.T) {
	batches := originBatches(t, 20)
	ns := openNS(t, "receiver")
	in, err := openInbox(filepath.Join(t.TempDir(), "inbox.log"), ns, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range batches {
		if err := in.add(b); err != nil {
			t.Fatal(err)
		}
	}
	if err := in.add([]byte("not sealed ops")); err == nil {
		t.Error("a batch that does not decode was acknowledged")
	}
	if err := in.drain(5 * time.Second); err != nil {
		t.Fatal(err)
	}
	if got := ns.VersionVector()["origin"]; got != 20 {
		t.Errorf("receiver holds origin's ops up to %d, want 20", got)
	}
	for i := range 20 {
		if _, err := ns.Lookup(namespace.RootID, fmt.Sprint("f", i)); err != nil {
			t.Errorf("f%d: %v", i, err)
		}
	}
	if err := in.close(); err != nil {
		t.Fatal(err)
	}
}

// Records left in the file (a killed peer) are applied at the next start;
// a torn or corrupt tail (never acknowledged) is ignored; the file is
// emptied afterwards.
func TestInboxReplay(t *testing.T) {
	batches := originBatches(t, 5)
	path := filepath.Join(t.TempDir(), "inbox.log")
	var file []byte
	for _, b := range batches[:3] {
		var hdr [8]byte
		binary.BigEndian.PutUint32(hdr[:4], uint32(len(b)))
		binary.BigEndian.PutUint32(hdr[4:], crc32.Checksum(b, crcTable))
		file = append(append(file, hdr[:]...), b...)
	}
	for _, tail := range []struct {
		name string
		b    []byte
	}{
		{"torn header", []byte{0, 0, 1}},
		{"torn body", append(binary.BigEndian.AppendUint32(binary.BigEndian.AppendUint32(nil, 100), 0), 1, 2, 3)},
		{"bad checksum", append(binary.BigEndian.AppendUint32(binary.BigEndian.AppendUint32(nil, uint32(len(batches[3]))), 12345), batches[3]...)},
	} {
		t.Run(tail.name, func(t *testing.T) {
			if err := os.WriteFile(path, append(append([]byte{}, file...), tail.b...), 0o600); err != nil {
				t.Fatal(err)
			}
			ns := openNS(t, "receiver")
			in, err := openInbox(path, ns, slog.New(slog.DiscardHandler))
			if err != nil {
				t.Fatal(err)
			}
			defer in.close()
			if got := ns.VersionVector()["origin"]; got != 3 {
				t.Errorf("after replay the receiver holds origin's ops up to %d, want 3", got)
			}
			if fi, err := os.Stat(path); err != nil || fi.Size() != 0 {
				t.Errorf("inbox file after replay: %v, %v; want empty", fi.Size(), err)
			}
		})
	}
}

// Under pushes that never pause, a big file is moved aside (the appends go
// to a new one) and removed once all its records are applied; a start in
// between replays both.
func TestInboxRotation(t *testing.T) {
	batches := originBatches(t, 6)
	path := filepath.Join(t.TempDir(), "inbox.log")
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	// No applier goroutine: the test plays its part.
	in := &inbox{ns: openNS(t, "r1"), log: slog.New(slog.DiscardHandler), path: path, f: f, done: make(chan struct{})}
	in.cond = sync.NewCond(&in.mu)
	defer f.Close()
	saved := inboxTrim
	inboxTrim = 1
	defer func() { inboxTrim = saved }()
	for _, b := range batches[:3] {
		if err := in.add(b); err != nil {
			t.Fatal(err)
		}
	}
	in.mu.Lock()
	in.trimLocked() // 3 pending: rotate
	in.mu.Unlock()
	if _, err := os.Stat(path + ".old"); err != nil {
		t.Fatalf("no old file after rotation: %v", err)
	}
	for _, b := range batches[3:] {
		if err := in.add(b); err != nil {
			t.Fatal(err)
		}
	}
	// A start now replays both files.
	ns2 := openNS(t, "r2")
	in2 := &inbox{ns: ns2, log: slog.New(slog.DiscardHandler), path: path}
	if err := in2.replayFile(path + ".old"); err != nil {
		t.Fatal(err)
	}
	if err := in2.replayFile(path); err != nil {
		t.Fatal(err)
	}
	if got := ns2.VersionVector()["origin"]; got != 6 {
		t.Errorf("replay of both files holds origin's ops up to %d, want 6", got)
	}
	// Everything applied: the old file goes, the current one is emptied.
	in.mu.Lock()
	in.applied, in.pending, in.ops = in.appended, nil, nil
	in.trimLocked()
	in.mu.Unlock()
	if _, err := os.Stat(path + ".old"); !os.IsNotExist(err) {
		t.Errorf("old file still there after all was applied: %v", err)
	}
	if fi, _ := os.Stat(path); fi.Size() != 0 {
		t.Errorf("inbox file %d bytes after all was applied, want 0", fi.Size())
	}
}

// A write that fails and cannot be repaired by rewriting the file leaves the
// inbox torn: it acknowledges nothing more until a rewrite succeeds, so no
// acknowledged record ever follows a torn one (replay stops at a torn
// record, and would lose it). Then the file holds exactly the acknowledged
// records.
func TestInboxTornWrite(t *testing.T) {
	batches := originBatches(t, 4)
	path := filepath.Join(t.TempDir(), "inbox.log")
	rw, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer rw.Close()
	ro, err := os.Open(path) // writes and truncates fail on it
	if err != nil {
		t.Fatal(err)
	}
	defer ro.Close()
	in := &inbox{ns: openNS(t, "r1"), log: slog.New(slog.DiscardHandler), path: path, f: rw, done: make(chan struct{})}
	in.cond = sync.NewCond(&in.mu)
	if err := in.add(batches[0]); err != nil {
		t.Fatal(err)
	}
	in.f = ro
	if err := in.add(batches[1]); err == nil {
		t.Fatal("add acknowledged a batch whose write failed")
	}
	if err := in.add(batches[2]); err == nil {
		t.Fatal("add acknowledged a batch while the file is torn")
	}
	in.f = rw // the disk works again
	if err := in.add(batches[3]); err != nil {
		t.Fatalf("add once the file can be rewritten: %v", err)
	}
	ns2 := openNS(t, "r2")
	in2 := &inbox{ns: ns2, log: slog.New(slog.DiscardHandler), path: path}
	if err := in2.replayFile(path); err != nil {
		t.Fatal(err)
	}
	for i, want := range []bool{true, false, false, true} {
		_, err := ns2.Lookup(namespace.RootID, fmt.Sprint("f", i))
		if got := err == nil; got != want {
			t.Errorf("after replay, f%d present = %v (%v), want %v: acknowledged batches are 0 and 3", i, got, err, want)
		}
	}
}

// TestInboxRefusesClockAhead: a push whose ops are stamped a day ahead of
// the receiver's clock is refused before it is acknowledged (once in the
// inbox, it would be retried forever, holding up every later push), and a
// refused record already in the file (left by an older build) is skipped
// at start instead of stopping the peer from starting.
func TestInboxRefusesClockAhead(t *testing.T) {
	batches := originBatches(t, 3)
	ns := openNS(t, "receiver")
	future := []namespace.Op{{Kind: namespace.OpMove, Origin: "fast", Seq: 1,
		TS:   namespace.Timestamp{Wall: time.Now().Add(24 * time.Hour).UnixNano(), Peer: "fast"},
		Node: 1 << 40, NewParent: namespace.RootID, Name: "tomorrow", Inode: 1 << 40,
		Init: &namespace.InodeInit{Type: namespace.File, Mode: 0o644}}}
	bad, err := ns.EncodeOps(future)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "inbox.log")
	// A refused record left in the file, then a good one.
	var file []byte
	for _, body := range [][]byte{bad, batches[0]} {
		rec := make([]byte, 8, 8+len(body))
		binary.BigEndian.PutUint32(rec[:4], uint32(len(body)))
		binary.BigEndian.PutUint32(rec[4:], crc32.Checksum(body, crcTable))
		file = append(file, append(rec, body...)...)
	}
	if err := os.WriteFile(path, file, 0o600); err != nil {
		t.Fatal(err)
	}
	in, err := openInbox(path, ns, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatalf("open with a refused record in the file: %v", err)
	}
	defer in.close()
	if _, err := ns.Lookup(namespace.RootID, "f0"); err != nil {
		t.Errorf("the good record after the refused one was not replayed: %v", err)
	}
	if err := in.add(bad); !errors.Is(err, namespace.ErrClockAhead) {
		t.Errorf("push stamped a day ahead: %v, want ErrClockAhead", err)
	}
	for _, b := range batches[1:] {
		if err := in.add(b); err != nil {
			t.Fatal(err)
		}
	}
	if err := in.drain(5 * time.Second); err != nil {
		t.Fatalf("later pushes held up: %v", err)
	}
	for i := range 3 {
		if _, err := ns.Lookup(namespace.RootID, fmt.Sprint("f", i)); err != nil {
			t.Errorf("f%d: %v", i, err)
		}
	}
	if _, err := ns.Lookup(namespace.RootID, "tomorrow"); err == nil {
		t.Error("the op stamped a day ahead was applied")
	}
}
