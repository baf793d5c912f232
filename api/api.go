// Package api is the HTTP interface a reef peer offers to commands (put, get,
// status) and the client that cmd/reef uses to talk to it.
//
// Endpoints (all on the peer's --listen address):
//
//	POST /v1/files          body: file content  -> PutResult (JSON)
//	GET  /v1/files/{addr}   -> the content; header Reef-Size; trailer Reef-Error on a failure mid-stream
//	GET  /v1/status         -> Status (JSON)
//
// Errors are JSON {"error": "..."} with a 4xx/5xx status. Requests from
// loopback addresses are accepted without credentials; others must carry the
// volume's peer token in the Reef-Token header (the client sends it when it
// was given the key file).
package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Header and trailer names.
const (
	TokenHeader  = "Reef-Token"
	SizeHeader   = "Reef-Size"
	ErrorTrailer = "Reef-Error"
)

// PutResult is the answer to a file upload.
type PutResult struct {
	Addr      string `json:"addr"`
	Size      int64  `json:"size"`
	Chunks    int    `json:"chunks"`
	NewShards int    `json:"new_shards"`
	DupShards int    `json:"dup_shards"`
}

// Member is one peer as the answering peer sees it.
type Member struct {
	ID         string    `json:"id"`
	State      string    `json:"state"`
	Zone       string    `json:"zone"`
	DataAddr   string    `json:"data_addr"`
	GossipAddr string    `json:"gossip_addr"`
	Capacity   int64     `json:"capacity_bytes"`
	Free       int64     `json:"free_bytes"`
	Used       int64     `json:"used_bytes"`
	Shards     int64     `json:"shards"`
	LastSeen   time.Time `json:"last_seen"`
	Self       bool      `json:"self,omitempty"`
	Draining   bool      `json:"draining,omitempty"`
	Version    string    `json:"version,omitempty"`
	// Slow: the answering peer saw this one hold up a shard request or a
	// namespace push (no answer within the hedge delay) in the last 30 s,
	// and has not heard from it since; it passes it over meanwhile.
	Slow bool `json:"slow,omitempty"`
	// Full: the peer reports less than FullBelow bytes free; its shard
	// writes fail with ENOSPC, and writers pass it over as a slow peer.
	Full bool `json:"full,omitempty"`
	// ClockAheadSeconds: the answering peer refused this one's changes
	// in the last two minutes because its clock was that far ahead (more
	// than a minute); its closes fail until the clocks agree.
	ClockAheadSeconds float64 `json:"clock_ahead_seconds,omitempty"`
}

// FullBelow is the free space under which a peer counts as full: about
// what its stores need to go on (two memtable logs and a shard).
const FullBelow = 64 << 20

// Status is the cluster as one peer sees it.
type Status struct {
	Peer     string       `json:"peer"`
	VolumeID string       `json:"volume_id"`
	K        int          `json:"k"`
	M        int          `json:"m"`
	Quorum   int          `json:"write_quorum"`
	Members  []Member     `json:"members"`
	Repair   RepairStatus `json:"repair"` // the answering peer's repair, scrub and rebalance activity
	// WritablePeers counts the alive members that take new shards (not
	// draining, not full); a file stored as chunks needs its shards on
	// WritePeersNeeded distinct peers (k+1, so that it survives the loss
	// of one), and fails to store with fewer. Small files, kept in the
	// namespace, need only m+1 alive peers.
	WritablePeers    int `json:"writable_peers"`
	WritePeersNeeded int `json:"write_peers_needed"`
}

// Error is the JSON body of an error response.
type Error struct {
	Error string `json:"error"`
}

// Client talks to one peer.
type Client struct {
	Base  string // "http://host:port"
	Token string // optional peer token
	HTTP  *http.Client
}

// NewClient returns a client for the peer at hostport.
func NewClient(hostport, token string) (*Client, error) {
	if _, _, err := net.SplitHostPort(hostport); err != nil {
		return nil, fmt.Errorf("peer address %q: want HOST:PORT (the peer's --listen): %w", hostport, err)
	}
	tr := &http.Transport{
		DialContext:           (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		ResponseHeaderTimeout: 10 * time.Minute, // an upload is answered when all of it is stored
		MaxIdleConnsPerHost:   4,
		DisableCompression:    true,
	}
	return &Client{Base: "http://" + hostport, Token: token, HTTP: &http.Client{Transport: tr}}, nil
}

func (c *Client) do(ctx context.Context, method, path string, body io.Reader, size int64) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, method, c.Base+path, body)
	if err != nil {
		return nil, err
	}
	if size >= 0 && body != nil {
		req.ContentLength = size
	}
	if c.Token != "" {
		req.Header.Set(TokenHeader, c.Token)
	}
	resp, err := c.HTTP.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return nil, fmt.Errorf("peer %s: %w", strings.TrimPrefix(c.Base, "http://"), err)
	}
	if resp.StatusCode/100 != 2 {
		defer resp.Body.Close()
		return nil, readError(resp)
	}
	return resp, nil
}

func readError(resp *http.Response) error {
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	var e Error
	if json.Unmarshal(b, &e) == nil && e.Error != "" {
		return errors.New(e.Error)
	}
	return fmt.Errorf("peer answered %s: %s", resp.Status, strings.TrimSpace(string(b)))
}

// PutFile uploads r (size bytes, or -1 if unknown) and returns what the peer
// stored.
func (c *Client) PutFile(ctx context.Context, r io.Reader, size int64) (PutResult, error) {
	var res PutResult
	resp, err := c.do(ctx, http.MethodPost, "/v1/files", r, size)
	if err != nil {
		return res, err
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&res); err != nil {
		return res, fmt.Errorf("bad answer from peer: %w", err)
	}
	return res, nil
}

// GetFile writes the file at addr to w. It returns the size announced by the
// peer as soon as it is known through onSize (may be nil), and fails if the
// stream ends early or the peer reports an error mid-stream.
func (c *Client) GetFile(ctx context.Context, addr string, w io.Writer, onSize func(int64)) (int64, error) {
	resp, err := c.do(ctx, http.MethodGet, "/v1/files/"+addr, nil, -1)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	size, err := strconv.ParseInt(resp.Header.Get(SizeHeader), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("bad answer from peer: no %s header", SizeHeader)
	}
	if onSize != nil {
		onSize(size)
	}
	n, err := io.Copy(w, resp.Body)
	if msg := resp.Trailer.Get(ErrorTrailer); msg != "" {
		return n, errors.New(msg)
	}
	if err != nil {
		return n, fmt.Errorf("reading from peer: %w", err)
	}
	if n != size {
		return n, fmt.Errorf("peer sent %d of %d bytes", n, size)
	}
	return n, nil
}

// Status returns the cluster as the peer sees it.
func (c *Client) Status(ctx context.Context) (Status, error) {
	var st Status
	resp, err := c.do(ctx, http.MethodGet, "/v1/status", nil, -1)
	if err != nil {
		return st, err
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(io.LimitReader(resp.Body, 16<<20)).Decode(&st); err != nil {
		return st, fmt.Errorf("bad answer from peer: %w", err)
	}
	return st, nil
}

// Locks is every file lock of the volume, gathered from every live peer
// (GET /v1/locks).
type Locks struct {
	Locks []FileLock `json:"locks"`
	// Unreachable lists the live peers that did not answer: their locks
	// are missing.
	Unreachable []string `json:"unreachable,omitempty"`
}

// FileLock is one lock: the file, its holder and the peer keeping it.
type FileLock struct {
	Path    string `json:"path"`  // "" for a file with no name left (unlinked while open)
	Inode   uint64 `json:"inode"` // the file's inode number
	Keeper  string `json:"keeper"`
	Holder  string `json:"holder"`  // the mount's peer
	Session uint64 `json:"session"` // the mount process
	Family  string `json:"family"`  // "posix" (fcntl) or "flock"
	Kind    string `json:"kind"`    // "read" or "write"
	Start   uint64 `json:"start"`
	End     uint64 `json:"end"`           // inclusive; 9223372036854775807 is to end of file
	PID     uint32 `json:"pid,omitempty"` // the holding process, on the holder's machine
}

// Locks returns every file lock of the volume.
func (c *Client) Locks(ctx context.Context) (Locks, error) {
	var l Locks
	resp, err := c.do(ctx, http.MethodGet, "/v1/locks", nil, -1)
	if err != nil {
		return l, err
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(io.LimitReader(resp.Body, 64<<20)).Decode(&l); err != nil {
		return l, fmt.Errorf("bad answer from peer: %w", err)
	}
	return l, nil
}

// WriteError writes a JSON error response.
func WriteError(w http.ResponseWriter, code int, err error) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	b, _ := json.Marshal(Error{Error: err.Error()})
	w.Write(append(b, '\n'))
}

// WriteJSON writes v as a JSON response.
func WriteJSON(w http.ResponseWriter, v any) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetIndent("", "  ")
	if err := enc.Encode(v); err != nil {
		WriteError(w, http.StatusInternalServerError, err)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Write(buf.Bytes())
}

// Health is the redundancy of what the namespace references, as one peer
// sees it: a chunk is healthy with all k+m shards on live peers, degraded
// with k..k+m-1, lost below k.
type Health struct {
	Scope          string        `json:"scope"`        // "cluster" or the path asked for
	Files          int           `json:"files"`        // files stored as chunks
	InlineFiles    int           `json:"inline_files"` // small files kept in the namespace, on every peer
	ChunksTotal    int           `json:"chunks_total"`
	ChunksHealthy  int           `json:"chunks_healthy"`
	ChunksDegraded int           `json:"chunks_degraded"`
	ChunksLost     int           `json:"chunks_lost"`
	BytesAtRisk    int64         `json:"bytes_at_risk"`  // bytes in chunks that are not healthy
	MinRedundancy  int           `json:"min_redundancy"` // fewest further peer losses any chunk survives; -1 if a chunk is lost
	Peers          []PeerHealth  `json:"peers,omitempty"`
	FileDetail     []FileHealth  `json:"file_detail,omitempty"`
	ChunkDetail    []ChunkHealth `json:"chunk_detail,omitempty"` // for a single file
	Repair         RepairStatus  `json:"repair"`
	Errors         []string      `json:"errors,omitempty"` // files whose manifests could not be read
}

// PeerHealth is one member in a health report.
type PeerHealth struct {
	ID       string    `json:"id"`
	State    string    `json:"state"`
	Draining bool      `json:"draining,omitempty"`
	Shards   int64     `json:"shards"`
	Bytes    int64     `json:"bytes"`
	LastSeen time.Time `json:"last_seen"`
}

// FileHealth is one file in a health report.
type FileHealth struct {
	Path     string `json:"path"`
	Size     int64  `json:"size"`
	Chunks   int    `json:"chunks"`
	Healthy  int    `json:"healthy"`
	Degraded int    `json:"degraded"`
	Lost     int    `json:"lost"`
}

// ChunkHealth is one stripe of a file with its shard holders.
type ChunkHealth struct {
	Addr    string           `json:"addr"`
	Kind    string           `json:"kind"` // "manifest" or "data"
	Offset  int64            `json:"offset"`
	Length  int64            `json:"length"`
	K       int              `json:"k"`
	M       int              `json:"m"`
	Present int              `json:"present"` // distinct shards on live peers
	State   string           `json:"state"`
	Holders map[string][]int `json:"holders"` // live peer -> shard indexes
}

// RepairStatus is a peer's repair, scrub and rebalance activity.
type RepairStatus struct {
	Queue          int       `json:"queue"`
	Running        bool      `json:"running"`
	RepairedChunks int64     `json:"repaired_chunks"`
	RepairedShards int64     `json:"repaired_shards"`
	RepairedBytes  int64     `json:"repaired_bytes"`
	MovedShards    int64     `json:"moved_shards"`
	LastPass       time.Time `json:"last_pass"`
	LastError      string    `json:"last_error,omitempty"`
	ScrubChecked   int64     `json:"scrub_checked"`
	ScrubTotal     int64     `json:"scrub_total"`
	ScrubCorrupt   int64     `json:"scrub_corrupt"`
	ScrubRunning   bool      `json:"scrub_running"`
	// Space given back on this peer (its own since it started): chunk
	// collection (off when GCOff) and the namespace's trash.
	GCOff           bool  `json:"gc_off,omitempty"`
	GCCandidates    int64 `json:"gc_candidate_chunks"`
	GCDeletedShards int64 `json:"gc_deleted_shards"`
	GCDeletedBytes  int64 `json:"gc_deleted_bytes"`
	TrashEntries    int64 `json:"trash_entries"`
	TrashPurged     int64 `json:"trash_purged"`
}

// RepairPlan answers `reef repair`: what is (or would be) rebuilt.
type RepairPlan struct {
	Apply   bool     `json:"apply"`
	Chunks  int      `json:"chunks"`  // stripes needing shards
	Shards  int      `json:"shards"`  // shards to rebuild
	Bytes   int64    `json:"bytes"`   // bytes of shards to rebuild
	Lost    int      `json:"lost"`    // stripes that cannot be rebuilt (< k shards)
	Samples []string `json:"samples"` // a few "path: chunk: missing shards" lines
	Done    bool     `json:"done"`
	Rebuilt int      `json:"rebuilt"` // shards rebuilt so far (apply)
	Errors  []string `json:"errors,omitempty"`
}

// ScrubResult is one peer's scrub pass.
type ScrubResult struct {
	Peer    string `json:"peer"`
	Apply   bool   `json:"apply"`
	Running bool   `json:"running"`
	Checked int64  `json:"checked"`
	Total   int64  `json:"total"`
	Bytes   int64  `json:"bytes"`
	Corrupt int64  `json:"corrupt"`
	Dropped int64  `json:"dropped"`
	Error   string `json:"error,omitempty"`
}

// DrainStatus is a draining peer's progress.
type DrainStatus struct {
	Peer     string `json:"peer"`
	Draining bool   `json:"draining"`
	Shards   int64  `json:"shards"` // shards still held
	Moved    int64  `json:"moved"`
	Error    string `json:"error,omitempty"`
}

func (c *Client) getJSON(ctx context.Context, path string, v any) error {
	resp, err := c.do(ctx, http.MethodGet, path, nil, -1)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(io.LimitReader(resp.Body, 256<<20)).Decode(v); err != nil {
		return fmt.Errorf("bad answer from peer: %w", err)
	}
	return nil
}

func (c *Client) postJSON(ctx context.Context, path string, v any) error {
	resp, err := c.do(ctx, http.MethodPost, path, nil, -1)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(io.LimitReader(resp.Body, 256<<20)).Decode(v); err != nil {
		return fmt.Errorf("bad answer from peer: %w", err)
	}
	return nil
}

// Health returns the health of the cluster (path "") or of a path.
func (c *Client) Health(ctx context.Context, path string) (Health, error) {
	var h Health
	return h, c.getJSON(ctx, "/v1/health?path="+url.QueryEscape(path), &h)
}

// Repair starts (apply) or plans a repair of path ("" for everything).
func (c *Client) Repair(ctx context.Context, path string, apply bool) (RepairPlan, error) {
	var p RepairPlan
	return p, c.postJSON(ctx, fmt.Sprintf("/v1/repair?path=%s&apply=%t", url.QueryEscape(path), apply), &p)
}

// RepairProgress returns the progress of the repair started by Repair.
func (c *Client) RepairProgress(ctx context.Context) (RepairPlan, error) {
	var p RepairPlan
	return p, c.getJSON(ctx, "/v1/repair", &p)
}

// Scrub starts a scrub pass on the peer (apply drops corrupt shards).
func (c *Client) Scrub(ctx context.Context, apply bool) (ScrubResult, error) {
	var r ScrubResult
	return r, c.postJSON(ctx, fmt.Sprintf("/v1/scrub?apply=%t", apply), &r)
}

// ScrubProgress returns the peer's current or last scrub pass.
func (c *Client) ScrubProgress(ctx context.Context) (ScrubResult, error) {
	var r ScrubResult
	return r, c.getJSON(ctx, "/v1/scrub", &r)
}

// Drain starts moving the peer's shards away.
func (c *Client) Drain(ctx context.Context) (DrainStatus, error) {
	var d DrainStatus
	return d, c.postJSON(ctx, "/v1/drain", &d)
}

// DrainProgress returns the draining peer's progress.
func (c *Client) DrainProgress(ctx context.Context) (DrainStatus, error) {
	var d DrainStatus
	return d, c.getJSON(ctx, "/v1/drain", &d)
}
