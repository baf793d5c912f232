// Package lock keeps file locks with the semantics Linux gives fcntl(2)
// record locks and flock(2): the lock table a volume's lock keeper holds
// for the inodes it keeps, and the mirror a mount keeps of the locks its
// own processes hold.
//
// A lock belongs to an Owner: the mount (peer and session, one per mount
// process) and the kernel's lock owner, which is a process's file table
// for POSIX locks and an open file description for flock. Locks of one
// owner never conflict with each other; a new POSIX lock replaces the
// owner's overlapping ranges (splitting them) and merges with adjacent
// ranges of the same type, as fcntl(F_SETLK) does. flock locks and POSIX
// locks are independent families, as on Linux.
//
// The table is leased: every session refreshes its locks (Refresh), and
// Expire drops the locks of sessions that stopped doing so (a mount that
// crashed or was cut off from the keeper).
package lock

import (
	"errors"
	"fmt"
	"math"
	"time"
)

// Kind is a lock's type.
type Kind uint8

const (
	Unlock Kind = iota // F_UNLCK: removes the owner's locks in the range
	Read               // F_RDLCK: shared
	Write              // F_WRLCK: exclusive
)

func (k Kind) String() string {
	switch k {
	case Unlock:
		return "unlock"
	case Read:
		return "read"
	case Write:
		return "write"
	}
	return fmt.Sprintf("kind(%d)", uint8(k))
}

// MaxOffset is the end of a lock that runs to the end of the file
// (OFFSET_MAX, as the kernel sends it).
const MaxOffset = math.MaxInt64

// Session names one mount process: its peer and a random number it drew
// at start.
type Session struct {
	Peer string `json:"peer"`
	ID   uint64 `json:"id"`
}

// Owner is who holds a lock.
type Owner struct {
	Session
	// Kernel is the kernel's lock owner: per process file table for
	// POSIX locks, per open file for flock.
	Kernel uint64 `json:"kernel"`
}

// Lock is a lock on the byte range [Start, End] (inclusive) of one file.
type Lock struct {
	Owner Owner  `json:"owner"`
	Flock bool   `json:"flock,omitempty"` // flock(2) rather than fcntl(2)
	Kind  Kind   `json:"kind"`
	Start uint64 `json:"start"`
	End   uint64 `json:"end"`
	PID   uint32 `json:"pid,omitempty"` // the holding process, on its mount's machine
}

// ErrConflict is the answer to a lock that another owner's lock blocks.
var ErrConflict = errors.New("lock: held by another owner")

// Validate checks a lock received from elsewhere.
func (l Lock) Validate() error {
	if l.Kind > Write {
		return fmt.Errorf("lock: unknown kind %d", l.Kind)
	}
	if l.Start > l.End || l.End > MaxOffset {
		return fmt.Errorf("lock: bad range %d..%d", l.Start, l.End)
	}
	if l.Flock && (l.Start != 0 || l.End != MaxOffset) {
		return fmt.Errorf("lock: flock lock on a range %d..%d", l.Start, l.End)
	}
	if l.Owner.Peer == "" || len(l.Owner.Peer) > 256 {
		return errors.New("lock: owner without a peer")
	}
	return nil
}

func (l Lock) overlaps(o Lock) bool { return l.Start <= o.End && o.Start <= l.End }

// blocks reports whether held keeps l from being granted.
func (held Lock) blocks(l Lock) bool {
	return held.Flock == l.Flock && held.Owner != l.Owner && held.overlaps(l) &&
		(held.Kind == Write || l.Kind == Write)
}

// Table is a set of locks on many files. The zero value is not usable;
// use NewTable. A Table is not safe for concurrent use.
type Table struct {
	files map[uint64][]Lock
	seen  map[Session]time.Time // last lock request or refresh of each session
}

// NewTable returns an empty table.
func NewTable() *Table {
	return &Table{files: map[uint64][]Lock{}, seen: map[Session]time.Time{}}
}

// Test returns the first lock that would keep l from being granted on
// file, as fcntl(F_GETLK) does.
func (t *Table) Test(file uint64, l Lock) (Lock, bool) {
	if l.Kind == Unlock {
		return Lock{}, false
	}
	for _, h := range t.files[file] {
		if h.blocks(l) {
			return h, true
		}
	}
	return Lock{}, false
}

// Set applies l to file: a Read or Write lock is granted unless another
// owner's lock blocks it (ErrConflict, with that lock); Unlock removes the
// owner's locks of l's family in its range. The owner's session counts as
// seen at now.
func (t *Table) Set(file uint64, l Lock, now time.Time) (Lock, error) {
	if c, ok := t.Test(file, l); ok {
		return c, ErrConflict
	}
	t.seen[l.Owner.Session] = now
	t.set(file, l)
	return Lock{}, nil
}

// Apply applies l without checking for conflicts: for a mirror of locks
// granted elsewhere.
func (t *Table) Apply(file uint64, l Lock) { t.set(file, l) }

// Count returns the number of locks in the table.
func (t *Table) Count() int {
	n := 0
	for _, ls := range t.files {
		n += len(ls)
	}
	return n
}

// set applies l without checking for conflicts.
func (t *Table) set(file uint64, l Lock) {
	old := t.files[file]
	out := make([]Lock, 0, len(old)+2)
	for _, h := range old {
		if h.Owner != l.Owner || h.Flock != l.Flock || !h.overlaps(l) {
			out = append(out, h)
			continue
		}
		// The owner's lock under l: keep the parts outside l's range.
		if h.Start < l.Start {
			left := h
			left.End = l.Start - 1
			out = append(out, left)
		}
		if h.End > l.End {
			right := h
			right.Start = l.End + 1
			out = append(out, right)
		}
	}
	if l.Kind != Unlock {
		// Merge with the owner's adjacent locks of the same kind.
		merged := out[:0]
		for _, h := range out {
			if h.Owner == l.Owner && h.Flock == l.Flock && h.Kind == l.Kind && adjacent(h, l) {
				l.Start = min(l.Start, h.Start)
				l.End = max(l.End, h.End)
				continue
			}
			merged = append(merged, h)
		}
		out = append(merged, l)
	}
	if len(out) == 0 {
		delete(t.files, file)
		return
	}
	t.files[file] = out
}

// adjacent reports whether a and b overlap or touch.
func adjacent(a, b Lock) bool {
	return a.overlaps(b) || (a.End != math.MaxUint64 && a.End+1 == b.Start) || (b.End != math.MaxUint64 && b.End+1 == a.Start)
}

// ReleaseOwner drops every lock of owner's family on file: a close (POSIX)
// or the last close of an open file (flock).
func (t *Table) ReleaseOwner(file uint64, owner Owner, flock bool) {
	t.set(file, Lock{Owner: owner, Flock: flock, Kind: Unlock, Start: 0, End: math.MaxUint64})
}

// Holds reports whether the table has any lock on file.
func (t *Table) Holds(file uint64) bool { return len(t.files[file]) > 0 }

// Files returns the files that have locks.
func (t *Table) Files() []uint64 {
	out := make([]uint64, 0, len(t.files))
	for f := range t.files {
		out = append(out, f)
	}
	return out
}

// Locks returns the locks on file.
func (t *Table) Locks(file uint64) []Lock {
	return append([]Lock(nil), t.files[file]...)
}

// FileLock is a lock with the file it is on.
type FileLock struct {
	File uint64 `json:"file"`
	Lock Lock   `json:"lock"`
}

// All returns every lock in the table.
func (t *Table) All() []FileLock {
	var out []FileLock
	for f, ls := range t.files {
		for _, l := range ls {
			out = append(out, FileLock{File: f, Lock: l})
		}
	}
	return out
}

// Refresh makes the locks of held on the files keep selects the whole of
// s's locks in the table: the session's other locks are dropped (an unlock
// that never reached this table, or copies of locks on files another
// keeper has taken over), and each of held on a file keep selects is
// granted again unless another owner's lock now blocks it (a keeper that
// took over and granted it to someone else first): those are returned as
// lost. The session counts as seen at now.
func (t *Table) Refresh(s Session, held []FileLock, keep func(file uint64) bool, now time.Time) (lost []FileLock) {
	t.seen[s] = now
	t.dropSession(s)
	for _, fl := range held {
		if fl.Lock.Owner.Session != s || !keep(fl.File) {
			continue
		}
		if _, err := t.Set(fl.File, fl.Lock, now); err != nil {
			lost = append(lost, fl)
		}
	}
	return lost
}

// dropSession drops s's locks and returns how many there were.
func (t *Table) dropSession(s Session) int {
	n := 0
	for f, ls := range t.files {
		out := ls[:0]
		for _, l := range ls {
			if l.Owner.Session != s {
				out = append(out, l)
			} else {
				n++
			}
		}
		if len(out) == 0 {
			delete(t.files, f)
		} else {
			t.files[f] = out
		}
	}
	return n
}

// Expire forgets the sessions not seen since before now-ttl, drops their
// locks, and returns those of them that held any.
func (t *Table) Expire(now time.Time, ttl time.Duration) []Session {
	var gone []Session
	for s, at := range t.seen {
		if now.Sub(at) > ttl {
			delete(t.seen, s)
			if t.dropSession(s) > 0 {
				gone = append(gone, s)
			}
		}
	}
	return gone
}
