package namespace

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"sync"
)

// The op log: this peer's own ops are appended to a file at commit, one
// write(2) per commit, and moved into badger in the background (every
// flushEvery, or sooner once flushOps are waiting), and before anything
// reads ops from badger.
//
// Why: a badger transaction readies four or five of badger's goroutines
// (read and commit watermarks, the write queue, the value threshold) and
// waits for one of them; on two shared cores that cost each create, mkdir
// or close 55-65 µs and, in scheduling delay, more than that again (a
// sender's trace: 830 ms of goroutine wake-up delay in 2 s of small-file
// creates). An append costs a few microseconds.
//
// Durability is unchanged: a commit returns when its ops are in the file
// (fsynced too, without LazySync), as it returned when they were in badger.
// Records are [4-byte length][4-byte CRC-32C][sealed encoded ops]. At
// open, every intact record of path.old and path is put into badger
// (idempotent: the keys are the ops' timestamps), so the sequence number
// is restored from badger as before; a torn tail (a commit that never
// returned) is ignored. Each flush moves the file aside to path.old (new
// commits go to a fresh file), writes the ops to badger and removes
// path.old.
type opLog struct {
	path string
	seal func([]byte) ([]byte, error)
	open func([]byte) ([]byte, error)
	sync bool // fsync each append

	mu      sync.Mutex // guards f, pending and torn
	f       *os.File
	pending []Op // appended and not in badger yet
	// torn: a write failed and the file could not be rewritten, so it may
	// end in a partial record, and replay stops there: nothing is
	// appended (acknowledged) after it until a rewrite succeeds.
	torn bool

	fmu sync.Mutex // serializes flushes
}

const (
	// flushOps waiting ops wake the flusher early.
	flushOps = 2048
	// maxLogRecord bounds one record at replay.
	maxLogRecord = 256 << 20
)

var logCRC = crc32.MakeTable(crc32.Castagnoli)

// openLog puts every op left in the log files into badger with put, then
// starts an empty log.
func openLog(path string, seal, open func([]byte) ([]byte, error), sync bool, put func([]Op) error) (*opLog, error) {
	l := &opLog{path: path, seal: seal, open: open, sync: sync}
	for _, p := range []string{path + ".old", path} {
		ops, err := l.read(p)
		if err != nil {
			return nil, err
		}
		if len(ops) > 0 {
			if err := put(ops); err != nil {
				return nil, fmt.Errorf("namespace: op log: replay %s: %w", p, err)
			}
		}
	}
	if err := os.Remove(path + ".old"); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("namespace: op log: %w", err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC|os.O_APPEND, 0o600)
	if err != nil {
		return nil, fmt.Errorf("namespace: op log: %w", err)
	}
	l.f = f
	return l, nil
}

// read decodes every intact record of the file at p.
func (l *opLog) read(p string) ([]Op, error) {
	f, err := os.Open(p)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("namespace: op log: %w", err)
	}
	defer f.Close()
	br := bufio.NewReader(f)
	var ops []Op
	for {
		var hdr [8]byte
		if _, err := io.ReadFull(br, hdr[:]); err != nil {
			break // end, or a torn header: never acknowledged
		}
		n := binary.BigEndian.Uint32(hdr[:4])
		if n > maxLogRecord {
			break
		}
		body := make([]byte, n)
		if _, err := io.ReadFull(br, body); err != nil {
			break
		}
		if crc32.Checksum(body, logCRC) != binary.BigEndian.Uint32(hdr[4:]) {
			break
		}
		plain, err := l.open(body)
		if err != nil {
			return nil, fmt.Errorf("namespace: op log %s: open record: %w", p, err)
		}
		batch, err := DecodeOps(plain)
		if err != nil {
			return nil, fmt.Errorf("namespace: op log %s: %w", p, err)
		}
		ops = append(ops, batch...)
	}
	return ops, nil
}

// record encodes ops as one framed, sealed record. With parts, it also
// returns each op's encoding.
func (l *opLog) record(ops []Op, parts bool) ([]byte, [][]byte, error) {
	plain, ps, err := encodeOps(ops, parts)
	if err != nil {
		return nil, nil, err
	}
	body, err := l.seal(plain)
	if err != nil {
		return nil, nil, fmt.Errorf("namespace: op log: seal: %w", err)
	}
	rec := make([]byte, 8, 8+len(body))
	binary.BigEndian.PutUint32(rec[:4], uint32(len(body)))
	binary.BigEndian.PutUint32(rec[4:], crc32.Checksum(body, logCRC))
	return append(rec, body...), ps, nil
}

// append writes ops as one record and, with parts, returns each op's
// encoding (encodeOp). It reports whether enough ops wait for the flusher
// to be woken early.
func (l *opLog) append(ops []Op, parts bool) ([][]byte, bool, error) {
	rec, ps, err := l.record(ops, parts)
	if err != nil {
		return nil, false, err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.f == nil {
		return nil, false, ErrClosed
	}
	if l.torn && !l.restartLocked() {
		return nil, false, errors.New("namespace: op log: an earlier write failed and the log could not be rewritten since")
	}
	if _, err := l.f.Write(rec); err != nil {
		// A partial record is a torn tail at replay, and what follows
		// it would be lost with it: start a new file with what waits.
		l.restartLocked()
		return nil, false, fmt.Errorf("namespace: op log: %w", err)
	}
	if l.sync {
		if err := l.f.Sync(); err != nil {
			l.restartLocked()
			return nil, false, fmt.Errorf("namespace: op log: sync: %w", err)
		}
	}
	l.pending = append(l.pending, ops...)
	return ps, len(l.pending) >= flushOps, nil
}

// restartLocked replaces the file with one holding only the pending ops,
// and reports whether it could; if not, the log is torn until it can.
func (l *opLog) restartLocked() bool {
	l.torn = true
	f, err := os.OpenFile(l.path+".tmp", os.O_WRONLY|os.O_CREATE|os.O_TRUNC|os.O_APPEND, 0o600)
	if err != nil {
		return false
	}
	if len(l.pending) > 0 {
		rec, _, err := l.record(l.pending, false)
		if err == nil {
			_, err = f.Write(rec)
		}
		if err != nil {
			f.Close()
			os.Remove(l.path + ".tmp")
			return false
		}
	}
	if err := f.Sync(); err != nil || os.Rename(l.path+".tmp", l.path) != nil {
		f.Close()
		return false
	}
	l.f.Close()
	l.f = f
	l.torn = false
	return true
}

// flush puts every op appended so far into badger with put.
func (l *opLog) flush(put func([]Op) error) error {
	l.fmu.Lock()
	defer l.fmu.Unlock()
	l.mu.Lock()
	if len(l.pending) == 0 || l.f == nil {
		l.mu.Unlock()
		return nil
	}
	ops := l.pending
	// Move the file aside: commits from now on go to a new one, and the
	// old one goes once its ops are in badger.
	err := os.Rename(l.path, l.path+".old")
	var f *os.File
	if err == nil {
		f, err = os.OpenFile(l.path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC|os.O_APPEND, 0o600)
	}
	if err != nil {
		if _, serr := os.Stat(l.path); serr != nil {
			os.Rename(l.path+".old", l.path) // keep appending to the one file
		}
		l.mu.Unlock()
		return fmt.Errorf("namespace: op log: rotate: %w", err)
	}
	l.f.Close()
	l.f = f
	l.pending = nil
	l.mu.Unlock()
	for len(ops) > 0 {
		n := min(len(ops), MaxOpsPerBatch)
		if err := put(ops[:n]); err != nil {
			// Keep them pending for the next flush, and on disk in the
			// current file (the next flush moves that one aside, over
			// path.old).
			l.mu.Lock()
			l.pending = append(ops, l.pending...)
			l.restartLocked()
			l.mu.Unlock()
			return err
		}
		ops = ops[n:]
	}
	if err := os.Remove(l.path + ".old"); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("namespace: op log: %w", err)
	}
	return nil
}

// close closes the file (after a final flush by the caller).
func (l *opLog) close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.f == nil {
		return nil
	}
	err := l.f.Close()
	l.f = nil
	return err
}
