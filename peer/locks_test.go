package peer

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/reefproject/reef/lock"
)

// testKeeper is a lock keeper named self whose membership and clock the
// test sets.
type testKeeper struct {
	*lockKeeper
	ids   []string
	clock time.Time
}

func newTestKeeper(self string, ids []string) *testKeeper {
	tk := &testKeeper{ids: ids, clock: time.Unix(1_000_000, 0)}
	tk.lockKeeper = &lockKeeper{self: self, live: func() []string { return tk.ids }, now: func() time.Time { return tk.clock },
		table: lock.NewTable(), started: tk.clock, marks: map[uint64]mark{}}
	return tk
}

// fileKeptBy returns a file that keeperOf gives to want among ids, and
// (when other is not "") to other among otherIDs.
func fileKeptBy(t *testing.T, ids []string, want string, otherIDs []string, other string) uint64 {
	t.Helper()
	for f := uint64(1); f < 10000; f++ {
		if keeperOf(ids, f) == want && (other == "" || keeperOf(otherIDs, f) == other) {
			return f
		}
	}
	t.Fatalf("no file kept by %s", want)
	return 0
}

func setReq(file uint64, peer string, kernel uint64, kind lock.Kind) lockRequest {
	return lockRequest{Op: "set", File: file, Lock: lock.Lock{
		Owner: lock.Owner{Session: lock.Session{Peer: peer, ID: 1}, Kernel: kernel}, Kind: kind, Start: 0, End: lock.MaxOffset}}
}

func TestKeeperOf(t *testing.T) {
	ids := []string{"p1", "p2", "p3", "p4", "p5", "p6"}
	count := map[string]int{}
	moved := 0
	for f := uint64(0); f < 6000; f++ {
		k := keeperOf(ids, f)
		count[k]++
		if keeperOf([]string{"p6", "p3", "p1", "p5", "p2", "p4"}, f) != k {
			t.Fatalf("file %d: the keeper depends on the order of the members", f)
		}
		// Losing p3 moves only p3's files.
		if k2 := keeperOf([]string{"p1", "p2", "p4", "p5", "p6"}, f); k2 != k {
			if k != "p3" {
				t.Fatalf("file %d moved from %s to %s when p3 left", f, k, k2)
			}
			moved++
		}
	}
	for _, id := range ids {
		if count[id] < 700 || count[id] > 1300 {
			t.Errorf("%s keeps %d of 6000 files: %v", id, count[id], count)
		}
	}
	if moved != count["p3"] {
		t.Errorf("%d files moved when p3 left, it kept %d", moved, count["p3"])
	}
	if keeperOf(nil, 1) != "" {
		t.Error("a keeper among no peers")
	}
}

func TestLockKeeper(t *testing.T) {
	ids := []string{"p1", "p2", "p3"}
	t.Run("grace after start, then grants and conflicts", func(t *testing.T) {
		k := newTestKeeper("p1", ids)
		f := fileKeptBy(t, ids, "p1", nil, "")
		ans, err := k.serve(setReq(f, "p2", 1, lock.Write))
		if err != nil || ans.Retry != "grace" {
			t.Fatalf("a lock right after start: %+v, %v; want retry in grace", ans, err)
		}
		k.clock = k.clock.Add(lockGrace + time.Second)
		if ans, err := k.serve(setReq(f, "p2", 1, lock.Write)); err != nil || ans.Retry != "" || ans.Conflict != nil {
			t.Fatalf("lock after the grace period: %+v, %v", ans, err)
		}
		ans, err = k.serve(setReq(f, "p3", 1, lock.Read))
		if err != nil || ans.Conflict == nil || ans.Conflict.Owner.Peer != "p2" || ans.Conflict.PID != 0 {
			t.Fatalf("a conflicting lock: %+v, %v", ans, err)
		}
		other := fileKeptBy(t, ids, "p2", nil, "")
		if ans, _ := k.serve(setReq(other, "p3", 1, lock.Read)); ans.Retry != "not keeper" {
			t.Fatalf("a file p2 keeps, asked of p1: %+v", ans)
		}
	})
	t.Run("a membership change puts only the files that moved in grace", func(t *testing.T) {
		k := newTestKeeper("p1", ids)
		k.clock = k.clock.Add(time.Minute)
		stay := fileKeptBy(t, ids, "p1", nil, "")
		k.serve(setReq(stay, "p2", 1, lock.Read)) // the keeper's first look at the membership
		// p3 leaves: its files (some now p1's) come with a grace period.
		k.ids = []string{"p1", "p2"}
		came := fileKeptBy(t, ids, "p3", k.ids, "p1")
		if ans, _ := k.serve(setReq(came, "p2", 1, lock.Write)); ans.Retry != "grace" {
			t.Fatalf("a file that came from p3: %+v, want grace", ans)
		}
		if ans, _ := k.serve(setReq(stay, "p2", 2, lock.Read)); ans.Retry != "" {
			t.Fatalf("a file p1 kept all along: %+v, want served", ans)
		}
		// The holder re-asserts its lock on the moved file; an unlock is
		// served in grace too.
		held := setReq(came, "p3", 7, lock.Write).Lock
		held.Owner.Session = lock.Session{Peer: "p3", ID: 1}
		ans, err := k.serve(lockRequest{Op: "refresh", Session: held.Owner.Session, Held: []lock.FileLock{{File: came, Lock: held}}})
		if err != nil || len(ans.Lost) != 0 {
			t.Fatalf("refresh: %+v, %v", ans, err)
		}
		if ans, _ := k.serve(setReq(came, "p2", 1, lock.Unlock)); ans.Retry != "" {
			t.Fatalf("an unlock in grace: %+v", ans)
		}
		k.clock = k.clock.Add(lockGrace + time.Second)
		if ans, _ := k.serve(setReq(came, "p2", 1, lock.Write)); ans.Conflict == nil || ans.Conflict.Owner.Kernel != 7 {
			t.Fatalf("after grace, the re-asserted lock must block: %+v", ans)
		}
	})
	t.Run("expiry and unlock frontiers", func(t *testing.T) {
		k := newTestKeeper("p1", ids)
		k.clock = k.clock.Add(time.Minute)
		f := fileKeptBy(t, ids, "p1", nil, "")
		k.serve(setReq(f, "p2", 1, lock.Write))
		u := setReq(f, "p2", 1, lock.Unlock)
		u.Frontier = map[string]uint64{"p2": 41}
		k.serve(u)
		ans, _ := k.serve(setReq(f, "p3", 1, lock.Write))
		if ans.Conflict != nil || ans.Frontier["p2"] != 41 {
			t.Fatalf("grant after p2's unlock: %+v, want p2's frontier 41", ans)
		}
		k.clock = k.clock.Add(lockTTL + time.Second)
		k.table.Expire(k.clock, lockTTL)
		if ans, _ := k.serve(setReq(f, "p2", 2, lock.Write)); ans.Conflict != nil {
			t.Fatalf("p3 stopped refreshing, its lock must expire: %+v", ans)
		}
	})
}

func TestLockFrameBadInput(t *testing.T) {
	k := newTestKeeper("p1", []string{"p1"})
	k.clock = k.clock.Add(time.Minute)
	huge := make(map[string]uint64)
	for i := range maxFrontier + 1 {
		huge[fmt.Sprint(i)] = 1
	}
	bad := []string{
		`not json`,
		`{"op":"set","file":1,"lock":{"owner":{"peer":"","id":1,"kernel":1},"kind":2,"start":0,"end":5}}`,
		`{"op":"set","file":1,"lock":{"owner":{"peer":"p2","id":1,"kernel":1},"kind":9,"start":0,"end":5}}`,
		`{"op":"set","file":1,"lock":{"owner":{"peer":"p2","id":1,"kernel":1},"kind":2,"start":6,"end":5}}`,
		`{"op":"refresh","session":{"peer":"","id":1}}`,
		`{"op":"explode"}`,
	}
	b, _ := json.Marshal(lockRequest{Op: "set", File: 1, Lock: setReq(1, "p2", 1, lock.Unlock).Lock, Frontier: huge})
	bad = append(bad, string(b))
	for _, body := range bad {
		if ans, err := k.serveFrame([]byte(body)); err == nil {
			t.Errorf("%.60s: answered %s, want an error", body, ans)
		}
	}
	if n := len(k.table.All()); n != 0 {
		t.Errorf("bad requests left %d locks", n)
	}
	if _, err := k.serveFrame([]byte(`{"op":"list"}`)); err != nil {
		t.Errorf("list: %v", err)
	}
	if !strings.Contains(frameName(frameLock), "lock") || frameLimit(frameLock) != maxLockFrame {
		t.Error("lock frames are not named or bounded")
	}
}
