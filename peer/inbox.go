package peer

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/reefproject/reef/namespace"
)

// The inbox acknowledges namespace ops pushed by other peers as soon as
// they are in a local append-only file, and applies them to the namespace
// in the background, in batches.
//
// Why: a push is acknowledged only once the ops are as durable here as
// this peer's own changes (written, not yet fsynced: a killed process
// loses nothing, the periodic sync covers power loss), and close(2) on the
// writing peer waits for m such acknowledgements. Written straight into
// the namespace's badger, that took 0.5-1 ms per push on the 2-vCPU CI VM
// (a transaction costs several hand-offs between badger's goroutines:
// timestamps, write queue, watermarks), against ~45 µs of work. One
// write(2) to a file takes microseconds, and the background applier folds
// whatever arrived meanwhile into one namespace transaction.
//
// File: records of [4-byte length][4-byte CRC-32C][sealed ops as pushed].
// At start every intact record is applied again (ApplyRemote skips ops it
// holds), a torn tail is ignored (it was never acknowledged), and the file
// is emptied. While running, a file past inboxTrim is emptied once
// everything in it is applied, or, if pushes never pause, moved aside to
// path.old (replayed first at start) and removed once applied.
type inbox struct {
	ns   *namespace.Namespace
	log  *slog.Logger
	path string

	mu       sync.Mutex
	cond     *sync.Cond // signalled when pending grows or applied moves
	f        *os.File
	size     int64            // bytes in f
	pending  [][]byte         // records appended and not yet applied
	ops      [][]namespace.Op // their decoded ops
	appended uint64           // batches appended so far
	rotated  uint64           // batches in path.old (0: none); it goes once all are applied
	applied  uint64           // batches applied so far
	closed   bool
	torn     bool // a write failed and the rewrite did not succeed yet (rewriteLocked)
	done     chan struct{}
	hurry    chan struct{} // drain's wake-up for an applier waiting for company
	eager    atomic.Bool   // apply at once, never wait for company (the peer mounts)
}

const (
	inboxMaxRecord = maxOpsBody
)

var crcTable = crc32.MakeTable(crc32.Castagnoli)

// inboxTrim: the file is emptied (or moved aside) once it is this big.
var inboxTrim int64 = 4 << 20

// openInbox replays dir's inbox file into ns, empties it and starts the
// applier.
func openInbox(path string, ns *namespace.Namespace, log *slog.Logger) (*inbox, error) {
	in := &inbox{ns: ns, log: log, path: path, done: make(chan struct{}), hurry: make(chan struct{}, 1)}
	in.cond = sync.NewCond(&in.mu)
	if err := in.replay(); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return nil, fmt.Errorf("peer: inbox: %w", err)
	}
	in.f = f
	go in.run()
	return in, nil
}

// replay applies every intact record of the file.
func (in *inbox) replay() error {
	for _, p := range []string{in.path + ".old", in.path} {
		if err := in.replayFile(p); err != nil {
			return err
		}
	}
	if err := os.Remove(in.path + ".old"); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("peer: inbox: %w", err)
	}
	return nil
}

// replayFile applies every intact record of one file.
func (in *inbox) replayFile(path string) error {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("peer: inbox: %w", err)
	}
	defer f.Close()
	br := bufio.NewReader(f)
	n := 0
	for {
		body, err := readRecord(br)
		if err != nil {
			if !errors.Is(err, io.EOF) {
				in.log.Warn("inbox: ignoring a damaged tail (never acknowledged)", "after_records", n, "err", err)
			}
			break
		}
		ops, err := in.ns.DecodeOps(body)
		if err != nil {
			in.log.Warn("inbox: skipping a record that does not decode", "err", err)
			continue
		}
		if _, err := in.ns.ApplyRemote(ops); err != nil {
			if namespace.Refused(err) {
				// Acknowledged by a build that did not check it, or
				// before this peer's clock went back: anti-entropy
				// offers the ops again once they can be applied.
				in.log.Warn("inbox: skipping a record the namespace refuses", "err", err)
				continue
			}
			return fmt.Errorf("peer: inbox: replaying: %w", err)
		}
		n++
	}
	if n > 0 {
		if err := in.ns.Sync(); err != nil {
			return fmt.Errorf("peer: inbox: %w", err)
		}
		in.log.Info("inbox: replayed pushed changes", "records", n)
	}
	return nil
}

func readRecord(r io.Reader) ([]byte, error) {
	var hdr [8]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		if errors.Is(err, io.ErrUnexpectedEOF) {
			return nil, fmt.Errorf("torn record header: %w", err)
		}
		return nil, err
	}
	n := binary.BigEndian.Uint32(hdr[:4])
	if int64(n) > inboxMaxRecord {
		return nil, fmt.Errorf("record of %d bytes, limit %d", n, inboxMaxRecord)
	}
	body := make([]byte, n)
	if _, err := io.ReadFull(r, body); err != nil {
		return nil, fmt.Errorf("torn record: %w", err)
	}
	if crc32.Checksum(body, crcTable) != binary.BigEndian.Uint32(hdr[4:]) {
		return nil, errors.New("record checksum mismatch")
	}
	return body, nil
}

// add decodes a pushed batch, appends it to the file and queues it for the
// applier. When add returns nil the batch is acknowledged.
func (in *inbox) add(body []byte) error {
	ops, err := in.ns.DecodeOps(body)
	if err != nil {
		return err
	}
	// Refused before it is acknowledged: once in the inbox, a batch the
	// namespace refuses would be retried forever.
	if err := in.ns.CheckRemote(ops); err != nil {
		return err
	}
	rec := make([]byte, 8, 8+len(body))
	binary.BigEndian.PutUint32(rec[:4], uint32(len(body)))
	binary.BigEndian.PutUint32(rec[4:], crc32.Checksum(body, crcTable))
	rec = append(rec, body...)
	in.mu.Lock()
	defer in.mu.Unlock()
	if in.closed {
		return errors.New("peer is stopping")
	}
	if in.torn {
		if in.rewriteLocked(); in.torn {
			return errors.New("peer: inbox: an earlier write failed and the file could not be rewritten since")
		}
	}
	if _, err := in.f.Write(rec); err != nil {
		// A partial record is a torn tail for replay; later appends would
		// follow it, so start the file over with what is still pending.
		in.rewriteLocked()
		return fmt.Errorf("peer: inbox: %w", err)
	}
	in.size += int64(len(rec))
	in.ops = append(in.ops, ops)
	in.pending = append(in.pending, rec)
	in.appended++
	in.cond.Broadcast()
	return nil
}

// rewriteLocked rewrites the file with the pending records only. Until a
// rewrite succeeds the file may end in a partial record, where replay
// stops, so add acknowledges nothing (torn).
func (in *inbox) rewriteLocked() {
	in.torn = true
	if err := in.f.Truncate(0); err != nil {
		in.log.Error("inbox: truncate", "err", err)
		return
	}
	in.f.Seek(0, io.SeekStart)
	in.size = 0
	for _, rec := range in.pending {
		if _, err := in.f.Write(rec); err != nil {
			in.log.Error("inbox: rewrite", "err", err)
			return
		}
		in.size += int64(len(rec))
	}
	in.torn = false
}

// trimLocked keeps the file small: emptied when all is applied; under a
// stream that never pauses, moved aside to path.old (a new file takes the
// appends) and deleted once everything in it is applied.
func (in *inbox) trimLocked() {
	if in.rotated > 0 && in.applied >= in.rotated {
		if err := os.Remove(in.path + ".old"); err != nil {
			in.log.Warn("inbox: removing the applied old file", "err", err)
		}
		in.rotated = 0
	}
	if in.size <= inboxTrim {
		return
	}
	if len(in.pending) == 0 {
		in.rewriteLocked()
		return
	}
	if in.rotated > 0 {
		return // the previous old file still holds unapplied records
	}
	if err := os.Rename(in.path, in.path+".old"); err != nil {
		in.log.Warn("inbox: moving the file aside", "err", err)
		return
	}
	f, err := os.OpenFile(in.path, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		// Appends go on into the renamed file; replay reads it.
		in.log.Error("inbox: new file", "err", err)
		return
	}
	in.f.Close()
	in.f, in.size, in.rotated = f, 0, in.appended
}

// On a peer that serves no mount, under a stream of pushes (the previous
// apply ended less than applyBusy ago) the applier waits applyDelay before
// it applies, so that one namespace transaction takes the batches of
// several pushes: each transaction wakes several of badger's goroutines,
// competing on shared cores with the acknowledgements closes wait for.
// Nobody looks at such a peer's tree but other peers (anti-entropy and
// fsync wait for the inbox to drain, and drain cuts the wait short). A
// peer that mounts applies at once: cross-mount visibility. With a 10 ms
// wait rather than 2 ms, the two receivers of 10,000 small-file closes
// spent 2.6-3.2 CPU-s instead of 3.2-3.8.
const (
	applyBusy  = 20 * time.Millisecond
	applyDelay = 10 * time.Millisecond
)

// run applies queued batches until close.
func (in *inbox) run() {
	defer close(in.done)
	var last time.Time // when the previous apply ended
	for {
		in.mu.Lock()
		for len(in.ops) == 0 && !in.closed {
			in.cond.Wait()
		}
		if len(in.ops) == 0 {
			in.mu.Unlock()
			return
		}
		if !in.closed && !in.eager.Load() && time.Since(last) < applyBusy {
			in.mu.Unlock()
			t := time.NewTimer(applyDelay)
			select {
			case <-t.C:
			case <-in.hurry:
				t.Stop()
			}
			in.mu.Lock()
		}
		batches := in.ops
		in.mu.Unlock()

		var all []namespace.Op
		for _, ops := range batches {
			all = append(all, ops...)
		}
		_, err := in.ns.ApplyRemote(all)
		if namespace.Refused(err) {
			// One batch is refused (accepted when this peer's clock was
			// later, say): apply the others one by one and drop it;
			// anti-entropy offers its ops again once they can be applied.
			err = nil
			for _, ops := range batches {
				if _, berr := in.ns.ApplyRemote(ops); namespace.Refused(berr) {
					in.log.Error("inbox: dropping a pushed batch the namespace refuses", "err", berr)
				} else if berr != nil {
					err = berr
					break
				}
			}
		}
		last = time.Now()

		in.mu.Lock()
		if err == nil {
			in.ops = in.ops[len(batches):]
			in.pending = in.pending[len(batches):]
			in.applied += uint64(len(batches))
			in.trimLocked()
		}
		in.cond.Broadcast()
		closed := in.closed
		in.mu.Unlock()
		if err != nil {
			if closed {
				return // the namespace is closing: replayed at the next start
			}
			in.log.Error("inbox: applying pushed changes (retrying)", "err", err)
			time.Sleep(100 * time.Millisecond)
		}
	}
}

// drain waits until every batch appended before the call is applied, or
// the timeout passes.
func (in *inbox) drain(timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	t := time.AfterFunc(timeout, func() {
		in.mu.Lock()
		in.cond.Broadcast()
		in.mu.Unlock()
	})
	defer t.Stop()
	select {
	case in.hurry <- struct{}{}: // the applier need not wait for company
	default:
	}
	in.mu.Lock()
	defer in.mu.Unlock()
	target := in.appended
	for in.applied < target && !in.closed {
		if time.Now().After(deadline) {
			return fmt.Errorf("pushed changes not applied within %v", timeout)
		}
		in.cond.Wait()
	}
	return nil
}

// close applies what is queued (briefly), stops the applier and closes
// the file; anything not applied is in the file for the next start.
func (in *inbox) close() error {
	in.drain(5 * time.Second)
	in.mu.Lock()
	in.closed = true
	in.cond.Broadcast()
	in.mu.Unlock()
	<-in.done
	return in.f.Close()
}
