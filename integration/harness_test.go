// Package integration runs real reef peer processes on loopback addresses and
// checks what their users see. It imports no reef package: it builds the
// reef binary once and drives it like a person would.
package integration

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

var reefBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "reef-integration-bin")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	reefBin = filepath.Join(dir, "reef")
	if env := os.Getenv("REEF_BIN"); env != "" {
		reefBin = env
	} else {
		cmd := exec.Command("go", "build", "-o", reefBin, "../cmd/reef")
		cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
		if err := cmd.Run(); err != nil {
			fmt.Fprintln(os.Stderr, "building reef:", err)
			os.Exit(1)
		}
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// inCI reports whether tests that cannot run must fail rather than skip.
func inCI() bool { return os.Getenv("CI") == "true" || os.Getenv("CI") == "1" }

// skipOrFail skips a test that cannot run here, but fails it in CI.
func skipOrFail(t *testing.T, format string, args ...any) {
	t.Helper()
	if inCI() {
		t.Fatalf("cannot run in CI: "+format, args...)
	}
	t.Skipf(format, args...)
}

// cluster is a set of reef peer processes sharing a key.
type cluster struct {
	t     *testing.T
	dir   string
	key   string
	mu    sync.Mutex
	peers []*peerProc
}

type peerProc struct {
	name   string
	ip     string
	data   string
	listen string
	gossip string
	args   []string
	cmd    *exec.Cmd
	log    *os.File
	done   chan struct{}
}

func newCluster(t *testing.T) *cluster {
	t.Helper()
	dir := t.TempDir()
	c := &cluster{t: t, dir: dir, key: filepath.Join(dir, "volume.key")}
	c.reef("init", "--key", c.key).ok(t)
	t.Cleanup(c.stopAll)
	return c
}

// freePort finds a port free on ip for TCP and UDP (gossip uses both).
func freePort(t *testing.T, ip string) int {
	t.Helper()
	for range 50 {
		l, err := net.Listen("tcp", ip+":0")
		if err != nil {
			t.Fatalf("listen on %s: %v", ip, err)
		}
		port := l.Addr().(*net.TCPAddr).Port
		u, err := net.ListenPacket("udp", fmt.Sprintf("%s:%d", ip, port))
		l.Close()
		if err == nil {
			u.Close()
			return port
		}
	}
	t.Fatal("no free port")
	return 0
}

// addPeer starts the i-th peer (1-based) on 127.0.0.(10+i); extra flags are
// appended to `reef serve`.
func (c *cluster) addPeer(extra ...string) *peerProc {
	c.t.Helper()
	c.mu.Lock()
	i := len(c.peers) + 1
	c.mu.Unlock()
	ip := fmt.Sprintf("127.0.0.%d", 10+i)
	p := &peerProc{
		name:   fmt.Sprintf("peer%d", i),
		ip:     ip,
		data:   filepath.Join(c.dir, fmt.Sprintf("peer%d", i)),
		listen: fmt.Sprintf("%s:%d", ip, freePort(c.t, ip)),
		gossip: fmt.Sprintf("%s:%d", ip, freePort(c.t, ip)),
	}
	p.args = []string{"serve", "--data", p.data, "--key", c.key, "--name", p.name,
		"--listen", p.listen, "--gossip", p.gossip, "--log-level", "debug"}
	c.mu.Lock()
	if len(c.peers) > 0 {
		p.args = append(p.args, "--join", c.peers[0].gossip)
	}
	c.peers = append(c.peers, p)
	c.mu.Unlock()
	p.args = append(p.args, extra...)
	c.start(p)
	return p
}

// start runs p's process and waits for its ready line.
func (c *cluster) start(p *peerProc) {
	c.t.Helper()
	logf, err := os.OpenFile(filepath.Join(c.dir, p.name+".log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		c.t.Fatal(err)
	}
	p.log = logf
	cmd := exec.Command(reefBin, p.args...)
	cmd.Stderr = logf
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		c.t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		c.t.Fatalf("start %s: %v", p.name, err)
	}
	p.cmd = cmd
	p.done = make(chan struct{})
	ready := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			line := sc.Text()
			fmt.Fprintf(logf, "[stdout] %s\n", line)
			if strings.Contains(line, " ready: ") {
				select {
				case ready <- line:
				default:
				}
			}
		}
	}()
	go func() { cmd.Wait(); close(p.done) }()
	select {
	case line := <-ready:
		if !strings.Contains(line, "data="+p.listen) || !strings.Contains(line, "gossip="+p.gossip) {
			c.t.Fatalf("%s: ready line %q does not show its addresses", p.name, line)
		}
	case <-p.done:
		c.t.Fatalf("%s exited before it was ready:\n%s", p.name, c.tail(p))
	case <-time.After(30 * time.Second):
		c.t.Fatalf("%s not ready after 30s:\n%s", p.name, c.tail(p))
	}
}

func (c *cluster) tail(p *peerProc) string {
	b, _ := os.ReadFile(filepath.Join(c.dir, p.name+".log"))
	lines := strings.Split(string(b), "\n")
	if len(lines) > 40 {
		lines = lines[len(lines)-40:]
	}
	return strings.Join(lines, "\n")
}

// kill9 kills p without warning.
func (c *cluster) kill9(p *peerProc) {
	c.t.Helper()
	if p.cmd == nil {
		return
	}
	p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.done
	p.cmd = nil
	p.log.Close()
}

// stop stops p with SIGTERM (a clean leave), then SIGKILL after 20 s.
func (c *cluster) stop(p *peerProc) {
	if p.cmd == nil {
		return
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(20 * time.Second):
		p.cmd.Process.Signal(syscall.SIGKILL)
		<-p.done
	}
	p.cmd = nil
	p.log.Close()
}

// restart starts a stopped peer again on its data directory and addresses.
func (c *cluster) restart(p *peerProc) {
	c.t.Helper()
	c.start(p)
}

func (c *cluster) stopAll() {
	c.mu.Lock()
	peers := append([]*peerProc(nil), c.peers...)
	c.mu.Unlock()
	var wg sync.WaitGroup
	for _, p := range peers {
		wg.Add(1)
		go func() { defer wg.Done(); c.stop(p) }()
	}
	wg.Wait()
	// Never leave a mount behind, whatever happened (a peer killed with
	// -9 leaves its mount dead).
	for _, p := range peers {
		for i, a := range p.args {
			if a == "--mount" && i+1 < len(p.args) {
				exec.Command("fusermount3", "-uz", p.args[i+1]).Run()
			}
		}
	}
	if c.t.Failed() {
		for _, p := range peers {
			c.t.Logf("--- log of %s (last lines) ---\n%s", p.name, c.tail(p))
		}
	}
}

// result is the outcome of one reef command.
type result struct {
	args           []string
	stdout, stderr string
	code           int
	elapsed        time.Duration
}

func (r result) ok(t *testing.T) result {
	t.Helper()
	if r.code != 0 {
		t.Fatalf("reef %s: exit %d\nstdout: %s\nstderr: %s", strings.Join(r.args, " "), r.code, r.stdout, r.stderr)
	}
	return r
}

// lastLine is the last non-empty line of stdout.
func (r result) lastLine() string {
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	return strings.TrimSpace(lines[len(lines)-1])
}

// reef runs the reef binary with a 2-minute limit.
func (c *cluster) reef(args ...string) result {
	return runReef(c.t, nil, args...)
}

func runReef(t *testing.T, env []string, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, reefBin, args...)
	cmd.Env = append(os.Environ(), env...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	start := time.Now()
	err := cmd.Run()
	r := result{args: args, stdout: out.String(), stderr: errb.String(), elapsed: time.Since(start)}
	if ee, ok := err.(*exec.ExitError); ok {
		r.code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("reef %v: %v", args, err)
	}
	if strings.Contains(r.stderr, "goroutine ") || strings.Contains(r.stderr, "panic:") {
		t.Errorf("reef %v printed a Go panic:\n%s", args, r.stderr)
	}
	return r
}

// status is the subset of `reef status --json` the tests read.
type status struct {
	Peer             string `json:"peer"`
	WritablePeers    int    `json:"writable_peers"`
	WritePeersNeeded int    `json:"write_peers_needed"`
	Members          []struct {
		ID     string `json:"id"`
		State  string `json:"state"`
		Used   int64  `json:"used_bytes"`
		Shards int64  `json:"shards"`
		Slow   bool   `json:"slow"`
		Full   bool   `json:"full"`
	} `json:"members"`
}

func (c *cluster) status(via *peerProc) status {
	c.t.Helper()
	r := c.reef("status", "--json", "--peer", via.listen).ok(c.t)
	var st status
	if err := json.Unmarshal([]byte(r.stdout), &st); err != nil {
		c.t.Fatalf("status --json: %v\n%s", err, r.stdout)
	}
	return st
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, what string, timeout time.Duration, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var last string
	for time.Now().Before(deadline) {
		ok, msg := cond()
		if ok {
			return
		}
		last = msg
		time.Sleep(250 * time.Millisecond)
	}
	t.Fatalf("timed out after %v waiting for %s: %s", timeout, what, last)
}

// waitAlive waits until each of peers sees all of them alive.
func (c *cluster) waitAlive(peers []*peerProc) {
	c.t.Helper()
	want := map[string]string{}
	for _, p := range peers {
		want[p.name] = "alive"
	}
	for _, p := range peers {
		c.waitStates(p, want, 30*time.Second)
	}
}

// waitStates waits until via sees every named peer in the wanted state.
func (c *cluster) waitStates(via *peerProc, want map[string]string, timeout time.Duration) {
	c.t.Helper()
	waitFor(c.t, "member states", timeout, func() (bool, string) {
		st := c.status(via)
		got := map[string]string{}
		for _, m := range st.Members {
			got[m.ID] = m.State
		}
		for id, s := range want {
			if got[id] != s {
				return false, fmt.Sprintf("%s is %q, want %q (all: %v)", id, got[id], s, got)
			}
		}
		return true, ""
	})
}

// put stores a file through via and returns its address.
func (c *cluster) put(via *peerProc, path string) string {
	c.t.Helper()
	r := c.reef("put", "--peer", via.listen, path).ok(c.t)
	a := r.lastLine()
	if !regexp.MustCompile(`^[0-9a-f]{64}$`).MatchString(a) {
		c.t.Fatalf("put %s: last line %q is not an address", path, a)
	}
	return a
}

// get reads addr through via into a new file and returns its path.
func (c *cluster) get(via *peerProc, addr string) (string, result) {
	c.t.Helper()
	out := filepath.Join(c.t.TempDir(), "got")
	r := c.reef("get", "--peer", via.listen, addr, "-o", out)
	return out, r
}

func writeRandom(t *testing.T, path string, size int64, seed uint64) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := io.CopyN(f, newRandReader(seed), size); err != nil {
		t.Fatal(err)
	}
}

func sameFile(t *testing.T, a, b string) bool {
	t.Helper()
	x, err := os.ReadFile(a)
	if err != nil {
		t.Fatal(err)
	}
	y, err := os.ReadFile(b)
	if err != nil {
		t.Fatal(err)
	}
	return bytes.Equal(x, y)
}
