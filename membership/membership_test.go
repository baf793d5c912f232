package membership

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"testing"
	"time"
)

func testLogger() *slog.Logger {
	if testing.Verbose() && os.Getenv("MEMBERSHIP_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

func testMeta(id string) Meta {
	return Meta{DataAddr: "127.0.0.1:1" + fmt.Sprint(len(id)), Zone: "zone-" + id, Capacity: 1000, Free: 900, Used: 100, Shards: 1, Version: "test"}
}

// startNode starts a node on 127.0.0.1 with a free port; it is shut down
// when the test ends.
func startNode(t *testing.T, cfg Config) *Node {
	t.Helper()
	if cfg.BindAddr == "" {
		cfg.BindAddr = "127.0.0.1:0"
	}
	if cfg.Logger == nil {
		cfg.Logger = testLogger()
	}
	if cfg.Meta == (Meta{}) {
		cfg.Meta = testMeta(cfg.ID)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	n, err := Start(ctx, cfg)
	if err != nil {
		t.Fatalf("Start(%s): %v", cfg.ID, err)
	}
	t.Cleanup(func() {
		if err := n.Shutdown(); err != nil {
			t.Errorf("Shutdown(%s): %v", cfg.ID, err)
		}
	})
	return n
}

// waitFor polls cond until it returns "" or the deadline passes.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() string) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		msg := cond()
		if msg == "" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s: %s", timeout, what, msg)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func memberOf(n *Node, id string) (Member, bool) {
	for _, m := range n.Members() {
		if m.ID == id {
			return m, true
		}
	}
	return Member{}, false
}

// stateIs returns a condition that every observer sees id in state want.
func stateIs(id string, want State, observers ...*Node) func() string {
	return func() string {
		for _, o := range observers {
			m, ok := memberOf(o, id)
			if !ok {
				return fmt.Sprintf("%s does not know %s", o.ID(), id)
			}
			if m.State != want {
				return fmt.Sprintf("%s sees %s as %v", o.ID(), id, m.State)
			}
		}
		return ""
	}
}

// cluster starts ids as nodes joining the first one and waits until every
// node sees all of them alive.
func cluster(t *testing.T, key []byte, ids ...string) []*Node {
	t.Helper()
	var nodes []*Node
	for i, id := range ids {
		cfg := Config{ID: id, SecretKey: key}
		if i > 0 {
			cfg.Join = []string{nodes[0].GossipAddr()}
		}
		nodes = append(nodes, startNode(t, cfg))
	}
	waitFor(t, 10*time.Second, "full membership", func() string {
		for _, n := range nodes {
			if live := n.Live(); len(live) != len(ids) {
				return fmt.Sprintf("%s sees %d live members", n.ID(), len(live))
			}
		}
		return ""
	})
	return nodes
}

func TestStateString(t *testing.T) {
	for s, want := range map[State]string{StateAlive: "alive", StateSuspect: "suspect", StateDead: "dead", StateLeft: "left", State(9): "State(9)"} {
		if got := s.String(); got != want {
			t.Errorf("State(%d).String() = %q, want %q", int(s), got, want)
		}
	}
}

func TestStartConfigErrors(t *testing.T) {
	for name, cfg := range map[string]Config{
		"empty id":      {BindAddr: "127.0.0.1:0"},
		"no port":       {ID: "x", BindAddr: "127.0.0.1"},
		"bad port":      {ID: "x", BindAddr: "127.0.0.1:99999"},
		"short key":     {ID: "x", BindAddr: "127.0.0.1:0", SecretKey: []byte("short")},
		"oversize meta": {ID: "x", BindAddr: "127.0.0.1:0", Meta: Meta{Zone: strings.Repeat("z", 600)}},
	} {
		t.Run(name, func(t *testing.T) {
			cfg.Logger = testLogger()
			n, err := Start(context.Background(), cfg)
			if err == nil {
				n.Shutdown()
				t.Fatal("Start succeeded")
			}
			if !strings.HasPrefix(err.Error(), "membership: ") {
				t.Errorf("error %q lacks package prefix", err)
			}
		})
	}
}

func TestThreeNodesJoin(t *testing.T) {
	t.Parallel()
	a := startNode(t, Config{ID: "a"})
	if strings.HasSuffix(a.GossipAddr(), ":0") || !strings.HasPrefix(a.GossipAddr(), "127.0.0.1:") {
		t.Fatalf("GossipAddr = %q, want the bound 127.0.0.1 port", a.GossipAddr())
	}
	sub := a.Subscribe()
	select { // drain anything from a's own start
	case <-sub:
	default:
	}
	b := startNode(t, Config{ID: "b", Join: []string{a.GossipAddr()}})
	select {
	case <-sub:
	case <-time.After(5 * time.Second):
		t.Fatal("Subscribe did not fire when b joined")
	}
	c := startNode(t, Config{ID: "c", Join: []string{b.GossipAddr()}}) // via a non-first member
	nodes := []*Node{a, b, c}

	waitFor(t, 10*time.Second, "three alive members everywhere", func() string {
		for _, n := range nodes {
			ms := n.Members()
			if len(ms) != 3 {
				return fmt.Sprintf("%s sees %d members", n.ID(), len(ms))
			}
			for i, m := range ms {
				want := nodes[i]
				if m.ID != want.ID() {
					return fmt.Sprintf("%s: member %d is %q, want %q (sorted)", n.ID(), i, m.ID, want.ID())
				}
				if m.State != StateAlive {
					return fmt.Sprintf("%s sees %s as %v", n.ID(), m.ID, m.State)
				}
				if m.Meta != testMeta(m.ID) {
					return fmt.Sprintf("%s sees %s meta %+v", n.ID(), m.ID, m.Meta)
				}
				if m.GossipAddr != want.GossipAddr() {
					return fmt.Sprintf("%s sees %s at %s, want %s", n.ID(), m.ID, m.GossipAddr, want.GossipAddr())
				}
				if m.LastSeen.IsZero() {
					return fmt.Sprintf("%s: %s LastSeen is zero", n.ID(), m.ID)
				}
			}
			if len(n.Live()) != 3 {
				return fmt.Sprintf("%s: Live has %d", n.ID(), len(n.Live()))
			}
		}
		return ""
	})

	// The returned slice belongs to the caller.
	ms := a.Members()
	ms[0].ID = "mutated"
	if a.Members()[0].ID == "mutated" {
		t.Fatal("Members returned shared storage")
	}
}

func TestUpdateMetaPropagates(t *testing.T) {
	t.Parallel()
	nodes := cluster(t, nil, "a", "b", "c")
	a := nodes[0]
	subB := nodes[1].Subscribe()
	start := time.Now()
	if err := a.UpdateMeta(func(m *Meta) { m.Free = 42; m.Shards = 7; m.Zone = "moved" }); err != nil {
		t.Fatalf("UpdateMeta: %v", err)
	}
	want := testMeta("a")
	want.Free, want.Shards, want.Zone = 42, 7, "moved"
	waitFor(t, 5*time.Second, "updated meta everywhere", func() string {
		for _, n := range nodes {
			m, _ := memberOf(n, "a")
			if m.Meta != want {
				return fmt.Sprintf("%s sees %+v", n.ID(), m.Meta)
			}
		}
		return ""
	})
	t.Logf("meta update seen by all after %v", time.Since(start))
	select {
	case <-subB:
	default:
		t.Error("Subscribe did not fire on b for a's meta update")
	}

	if err := a.UpdateMeta(func(m *Meta) { m.Version = strings.Repeat("v", MaxMetaSize) }); !errors.Is(err, ErrMetaTooLarge) {
		t.Fatalf("oversize UpdateMeta: err = %v, want ErrMetaTooLarge", err)
	}
	if m, _ := memberOf(a, "a"); m.Meta != want {
		t.Fatalf("failed UpdateMeta changed meta to %+v", m.Meta)
	}
}

func TestLeave(t *testing.T) {
	t.Parallel()
	nodes := cluster(t, nil, "a", "b", "c")
	a, b, c := nodes[0], nodes[1], nodes[2]
	if err := c.Leave(2 * time.Second); err != nil {
		t.Fatalf("Leave: %v", err)
	}
	waitFor(t, 5*time.Second, "c left", stateIs("c", StateLeft, a, b, c))
	for _, n := range []*Node{a, b} {
		for _, m := range n.Live() {
			if m.ID == "c" {
				t.Errorf("%s: left member in Live", n.ID())
			}
		}
	}
	if err := c.Leave(time.Second); err != nil {
		t.Errorf("second Leave: %v", err)
	}
	if err := c.UpdateMeta(func(*Meta) {}); !errors.Is(err, ErrLeft) {
		t.Errorf("UpdateMeta after Leave: %v, want ErrLeft", err)
	}
	if err := c.Shutdown(); err != nil {
		t.Fatalf("Shutdown after Leave: %v", err)
	}
	// Still left (not dead) after the process is gone.
	waitFor(t, time.Second, "c still left", stateIs("c", StateLeft, a, b))
}

func TestCrashDetected(t *testing.T) {
	t.Parallel()
	nodes := cluster(t, nil, "a", "b", "c")
	a, b, c := nodes[0], nodes[1], nodes[2]
	sub := a.Subscribe()
	crashed := time.Now()
	if err := c.Shutdown(); err != nil { // no Leave: looks like a crash
		t.Fatal(err)
	}
	var suspectAt, deadAt time.Duration
	sawSuspect := false
	notified := false
	waitFor(t, 15*time.Second, "c dead", func() string {
		select {
		case <-sub:
			notified = true
		default:
		}
		m, _ := memberOf(a, "c")
		switch m.State {
		case StateSuspect:
			if !sawSuspect {
				sawSuspect, suspectAt = true, time.Since(crashed)
				live := false
				for _, l := range a.Live() {
					live = live || l.ID == "c"
				}
				if !live {
					t.Error("suspect member missing from Live")
				}
			}
		case StateDead:
			deadAt = time.Since(crashed)
			return ""
		}
		return "c is " + m.State.String()
	})
	t.Logf("crash: suspected after %v, dead after %v", suspectAt, deadAt)
	if !sawSuspect {
		t.Error("never observed c as suspect before dead")
	}
	if !notified {
		t.Error("Subscribe did not fire")
	}
	waitFor(t, 5*time.Second, "b sees c dead", stateIs("c", StateDead, b))
	if ms := a.Members(); len(ms) != 3 {
		t.Errorf("dead member dropped from Members: %d members", len(ms))
	}
}

func TestRestartSameIDNewPort(t *testing.T) {
	t.Parallel()
	nodes := cluster(t, nil, "a", "b", "c")
	a, c := nodes[0], nodes[2]
	oldAddr := c.GossipAddr()
	if err := c.Shutdown(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 15*time.Second, "c dead", stateIs("c", StateDead, a))
	// Restart with the same ID on a fresh port; it is accepted once the old
	// incarnation has been dead for DeadNodeReclaimTime (the join loop
	// retries until then).
	c2 := startNode(t, Config{ID: "c", Join: []string{a.GossipAddr()}, Meta: Meta{Zone: "reborn"}})
	if c2.GossipAddr() == oldAddr {
		t.Fatalf("restart reused port %s", oldAddr)
	}
	waitFor(t, 15*time.Second, "restarted c alive at its new address", func() string {
		for _, n := range nodes[:2] {
			m, _ := memberOf(n, "c")
			if m.State != StateAlive || m.GossipAddr != c2.GossipAddr() || m.Meta.Zone != "reborn" {
				return fmt.Sprintf("%s sees %+v", n.ID(), m)
			}
		}
		if len(c2.Live()) != 3 {
			return fmt.Sprintf("c2 sees %d live", len(c2.Live()))
		}
		return ""
	})
}

func TestJoinRetriesWhenSeedDown(t *testing.T) {
	t.Parallel()
	// Find a port, then free it so the seed is down when b starts.
	// A private key keeps other tests' nodes out should one of them grab
	// the freed port first.
	key := []byte("join-retry-test-key-0123")
	a := startNode(t, Config{ID: "a", SecretKey: key})
	seed := a.GossipAddr()
	if err := a.Shutdown(); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	b := startNode(t, Config{ID: "b", Join: []string{seed}, SecretKey: key})
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("Start with a dead seed took %v", d)
	}
	if live := b.Live(); len(live) != 1 || live[0].ID != "b" {
		t.Fatalf("b alone should see only itself, got %+v", live)
	}
	a2 := startNode(t, Config{ID: "a", BindAddr: seed, SecretKey: key})
	waitFor(t, 15*time.Second, "b joined the restarted seed", func() string {
		if n := len(b.Live()); n != 2 {
			return fmt.Sprintf("b sees %d live", n)
		}
		if n := len(a2.Live()); n != 2 {
			return fmt.Sprintf("a sees %d live", n)
		}
		return ""
	})
}

func TestSecretKeyMismatch(t *testing.T) {
	t.Parallel()
	key1 := []byte("0123456789abcdef")
	key2 := []byte("fedcba9876543210")
	nodes := cluster(t, key1, "a", "b") // same key: joins fine
	a := nodes[0]

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for name, key := range map[string][]byte{"other key": key2, "no key": nil} {
		n, err := Start(ctx, Config{ID: "intruder-" + strings.ReplaceAll(name, " ", "-"), BindAddr: "127.0.0.1:0", Join: []string{a.GossipAddr()}, SecretKey: key, Logger: testLogger()})
		if err != nil {
			t.Logf("%s: Start failed: %v", name, err)
			continue
		}
		// Negative check: give gossip ample time (many gossip/probe
		// rounds), then verify neither side learned of the other.
		deadline := time.Now().Add(2 * time.Second)
		for time.Now().Before(deadline) {
			if len(n.Live()) != 1 || len(a.Members()) != 2 || len(nodes[1].Members()) != 2 {
				t.Fatalf("%s: intruder sees %d, a sees %d members", name, len(n.Live()), len(a.Members()))
			}
			time.Sleep(50 * time.Millisecond)
		}
		if err := n.Shutdown(); err != nil {
			t.Fatal(err)
		}
	}
}

// TestNodeStateLayout fails if memberlist's internal node record no longer
// matches mlNodeState (e.g. after upgrading memberlist).
func TestNodeStateLayout(t *testing.T) {
	n := startNode(t, Config{ID: "layout"})
	if !n.stateOK.Load() {
		t.Fatal("memberlist nodeState layout changed; update mlstate.go")
	}
}

func TestShutdownSemantics(t *testing.T) {
	t.Parallel()
	n := startNode(t, Config{ID: "solo"})
	if got := n.Live(); len(got) != 1 || got[0].ID != "solo" || got[0].Meta != testMeta("solo") || got[0].GossipAddr != n.GossipAddr() {
		t.Fatalf("solo Live = %+v", got)
	}
	if err := n.Leave(time.Second); err != nil { // no peers: returns at once
		t.Fatalf("solo Leave: %v", err)
	}
	sub := n.Subscribe()
	if err := n.Shutdown(); err != nil {
		t.Fatal(err)
	}
	if err := n.Shutdown(); err != nil {
		t.Fatalf("second Shutdown: %v", err)
	}
	select {
	case _, ok := <-sub:
		for ok { // drain a pending notification
			_, ok = <-sub
		}
	case <-time.After(time.Second):
		t.Fatal("Subscribe channel not closed by Shutdown")
	}
	if _, ok := <-n.Subscribe(); ok {
		t.Fatal("Subscribe after Shutdown returned an open channel")
	}
	if err := n.Leave(time.Second); !errors.Is(err, ErrShutdown) {
		t.Fatalf("Leave after Shutdown: %v", err)
	}
	if err := n.UpdateMeta(func(*Meta) {}); !errors.Is(err, ErrShutdown) {
		t.Fatalf("UpdateMeta after Shutdown: %v", err)
	}
	if len(n.Members()) != 1 {
		t.Fatal("Members after Shutdown should return the last view")
	}
}
