package lock

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"
)

var (
	sa = Session{Peer: "a", ID: 1}
	sb = Session{Peer: "b", ID: 2}
	a1 = Owner{Session: sa, Kernel: 1}
	a2 = Owner{Session: sa, Kernel: 2}
	b1 = Owner{Session: sb, Kernel: 1}
)

func lk(o Owner, k Kind, start, end uint64) Lock {
	return Lock{Owner: o, Kind: k, Start: start, End: end}
}

func fl(o Owner, k Kind) Lock {
	return Lock{Owner: o, Flock: true, Kind: k, Start: 0, End: MaxOffset}
}

// show renders a file's locks sorted, as "owner:kind:start-end".
func show(t *Table, file uint64) string {
	var out []string
	for _, l := range t.Locks(file) {
		fam := ""
		if l.Flock {
			fam = "F"
		}
		out = append(out, fmt.Sprintf("%s%d%s:%s:%d-%d", l.Owner.Peer, l.Owner.Kernel, fam, l.Kind, l.Start, l.End))
	}
	slices.Sort(out)
	return strings.Join(out, " ")
}

func TestSet(t *testing.T) {
	now := time.Unix(1000, 0)
	tests := []struct {
		name     string
		steps    []Lock
		conflict int // index of the step that must fail with ErrConflict, -1 for none
		want     string
	}{
		{"two readers share", []Lock{lk(a1, Read, 0, 9), lk(b1, Read, 5, 20)}, -1, "a1:read:0-9 b1:read:5-20"},
		{"writer blocks reader", []Lock{lk(a1, Write, 0, 9), lk(b1, Read, 9, 20)}, 1, "a1:write:0-9"},
		{"reader blocks writer", []Lock{lk(a1, Read, 0, 9), lk(b1, Write, 0, 0)}, 1, "a1:read:0-9"},
		{"disjoint writers", []Lock{lk(a1, Write, 0, 9), lk(b1, Write, 10, 20)}, -1, "a1:write:0-9 b1:write:10-20"},
		{"owners of one session conflict", []Lock{lk(a1, Write, 0, 9), lk(a2, Write, 5, 5)}, 1, "a1:write:0-9"},
		{"own locks never conflict: upgrade in the middle splits", []Lock{lk(a1, Read, 0, 99), lk(a1, Write, 40, 59)}, -1, "a1:read:0-39 a1:read:60-99 a1:write:40-59"},
		{"unlock in the middle splits", []Lock{lk(a1, Write, 0, 99), lk(a1, Unlock, 10, 19)}, -1, "a1:write:0-9 a1:write:20-99"},
		{"adjacent ranges of one kind merge", []Lock{lk(a1, Write, 0, 9), lk(a1, Write, 10, 19), lk(a1, Write, 30, 39), lk(a1, Write, 15, 29)}, -1, "a1:write:0-39"},
		{"adjacent ranges of two kinds stay apart", []Lock{lk(a1, Write, 0, 9), lk(a1, Read, 10, 19)}, -1, "a1:read:10-19 a1:write:0-9"},
		{"to end of file", []Lock{lk(a1, Write, 100, MaxOffset), lk(b1, Write, 1<<40, 1<<40)}, 1, "a1:write:100-9223372036854775807"},
		{"unlock of another owner's range changes nothing", []Lock{lk(a1, Write, 0, 9), lk(b1, Unlock, 0, MaxOffset)}, -1, "a1:write:0-9"},
		{"whole unlock", []Lock{lk(a1, Write, 0, 9), lk(a1, Read, 20, 29), lk(a1, Unlock, 0, MaxOffset)}, -1, ""},
		{"flock and POSIX are independent", []Lock{fl(a1, Write), lk(b1, Write, 0, MaxOffset)}, -1, "a1F:write:0-9223372036854775807 b1:write:0-9223372036854775807"},
		{"flock exclusive blocks flock shared", []Lock{fl(a1, Write), fl(b1, Read)}, 1, "a1F:write:0-9223372036854775807"},
		{"flock conversion", []Lock{fl(a1, Read), fl(a1, Write)}, -1, "a1F:write:0-9223372036854775807"},
		{"flock conversion blocked by a sharer", []Lock{fl(a1, Read), fl(b1, Read), fl(a1, Write)}, 2, "a1F:read:0-9223372036854775807 b1F:read:0-9223372036854775807"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tab := NewTable()
			for i, l := range tt.steps {
				c, err := tab.Set(7, l, now)
				switch {
				case i == tt.conflict && !errors.Is(err, ErrConflict):
					t.Fatalf("step %d: err %v, want ErrConflict", i, err)
				case i == tt.conflict && c.Owner == l.Owner:
					t.Fatalf("step %d: conflict names the requester %+v", i, c)
				case i != tt.conflict && err != nil:
					t.Fatalf("step %d: %v", i, err)
				}
			}
			if got := show(tab, 7); got != tt.want {
				t.Fatalf("locks %q, want %q", got, tt.want)
			}
			if tab.Holds(7) != (tt.want != "") {
				t.Fatalf("Holds = %v with locks %q", tab.Holds(7), tt.want)
			}
			if tab.Holds(8) {
				t.Fatal("another file holds locks")
			}
		})
	}
}

func TestTest(t *testing.T) {
	tab := NewTable()
	now := time.Unix(1000, 0)
	if _, err := tab.Set(1, lk(a1, Write, 10, 19), now); err != nil {
		t.Fatal(err)
	}
	c, ok := tab.Test(1, lk(b1, Read, 0, 10))
	if !ok || c.Owner != a1 || c.Start != 10 || c.End != 19 || c.Kind != Write {
		t.Fatalf("Test = %+v, %v", c, ok)
	}
	if _, ok := tab.Test(1, lk(b1, Read, 20, 30)); ok {
		t.Fatal("Test found a conflict past the lock")
	}
	if _, ok := tab.Test(1, lk(a1, Write, 0, 100)); ok {
		t.Fatal("an owner's own lock reported as a conflict")
	}
	if _, ok := tab.Test(2, lk(b1, Write, 0, 100)); ok {
		t.Fatal("conflict on another file")
	}
}

func TestReleaseOwner(t *testing.T) {
	tab := NewTable()
	now := time.Unix(1000, 0)
	for _, l := range []Lock{lk(a1, Write, 0, 9), lk(a1, Read, 50, 59), fl(a1, Write), lk(a2, Read, 100, 200)} {
		if _, err := tab.Set(3, l, now); err != nil {
			t.Fatal(err)
		}
	}
	tab.ReleaseOwner(3, a1, false)
	if got, want := show(tab, 3), "a1F:write:0-9223372036854775807 a2:read:100-200"; got != want {
		t.Fatalf("after releasing a1's POSIX locks: %q, want %q", got, want)
	}
	tab.ReleaseOwner(3, a1, true)
	tab.ReleaseOwner(3, a2, false)
	if tab.Holds(3) || len(tab.Files()) != 0 {
		t.Fatalf("locks left: %q", show(tab, 3))
	}
}

func TestRefresh(t *testing.T) {
	now := time.Unix(1000, 0)
	keepAll := func(uint64) bool { return true }
	t.Run("authoritative: drops what the session no longer holds", func(t *testing.T) {
		tab := NewTable()
		tab.Set(1, lk(a1, Write, 0, 9), now)
		tab.Set(2, lk(a1, Write, 0, 9), now)
		tab.Set(2, lk(b1, Write, 10, 19), now)
		lost := tab.Refresh(sa, []FileLock{{2, lk(a1, Write, 0, 9)}}, keepAll, now)
		if len(lost) != 0 || tab.Holds(1) || show(tab, 2) != "a1:write:0-9 b1:write:10-19" {
			t.Fatalf("lost %v, file 1 %q, file 2 %q", lost, show(tab, 1), show(tab, 2))
		}
	})
	t.Run("a new keeper learns the locks; a conflicting one is lost", func(t *testing.T) {
		tab := NewTable()
		tab.Set(5, lk(b1, Write, 0, 0), now) // granted here while a1's lock was elsewhere
		lost := tab.Refresh(sa, []FileLock{{4, lk(a1, Read, 0, 9)}, {5, lk(a1, Write, 0, 9)}}, keepAll, now)
		if len(lost) != 1 || lost[0].File != 5 || show(tab, 4) != "a1:read:0-9" || show(tab, 5) != "b1:write:0-0" {
			t.Fatalf("lost %v, file 4 %q, file 5 %q", lost, show(tab, 4), show(tab, 5))
		}
	})
	t.Run("only files this keeper keeps", func(t *testing.T) {
		tab := NewTable()
		tab.Set(1, lk(a1, Write, 0, 9), now)
		tab.Set(2, lk(a1, Write, 0, 9), now)
		odd := func(f uint64) bool { return f%2 == 1 }
		tab.Refresh(sa, []FileLock{{3, lk(a1, Write, 0, 9)}, {4, lk(a1, Write, 0, 9)}}, odd, now)
		if tab.Holds(1) || tab.Holds(2) || !tab.Holds(3) || tab.Holds(4) {
			t.Fatalf("files with locks %v", tab.Files())
		}
	})
	t.Run("another session's locks in the list are ignored", func(t *testing.T) {
		tab := NewTable()
		tab.Refresh(sa, []FileLock{{1, lk(b1, Write, 0, 9)}}, keepAll, now)
		if tab.Holds(1) {
			t.Fatal("a session refreshed another session's lock")
		}
	})
}

func TestExpire(t *testing.T) {
	t0 := time.Unix(1000, 0)
	tab := NewTable()
	tab.Set(1, lk(a1, Write, 0, 9), t0)
	tab.Set(1, lk(b1, Write, 10, 19), t0)
	sc := Session{Peer: "c", ID: 3}
	tab.Refresh(sc, nil, func(uint64) bool { return true }, t0) // a session without locks expires silently
	tab.Refresh(sb, []FileLock{{1, lk(b1, Write, 10, 19)}}, func(uint64) bool { return true }, t0.Add(8*time.Second))
	gone := tab.Expire(t0.Add(11*time.Second), 10*time.Second)
	if len(gone) != 1 || gone[0] != sa || show(tab, 1) != "b1:write:10-19" {
		t.Fatalf("expired %v, left %q", gone, show(tab, 1))
	}
	if _, err := tab.Set(1, lk(b1, Write, 0, 9), t0.Add(11*time.Second)); err != nil {
		t.Fatalf("the expired session's range is still locked: %v", err)
	}
}

func TestValidate(t *testing.T) {
	tests := []struct {
		l  Lock
		ok bool
	}{
		{lk(a1, Write, 0, 9), true},
		{lk(a1, Read, 0, MaxOffset), true},
		{lk(a1, Write, 10, 9), false},
		{lk(a1, Write, 0, MaxOffset+1), false},
		{Lock{Owner: a1, Kind: 3, End: 1}, false},
		{Lock{Owner: Owner{Kernel: 1}, Kind: Read, End: 1}, false},
		{Lock{Owner: a1, Flock: true, Kind: Read, Start: 1, End: MaxOffset}, false},
		{fl(a1, Write), true},
	}
	for i, tt := range tests {
		if err := tt.l.Validate(); (err == nil) != tt.ok {
			t.Errorf("%d: %+v: Validate() = %v, want ok=%v", i, tt.l, err, tt.ok)
		}
	}
}
