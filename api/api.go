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
	Version    string    `json:"version,omitempty"`
}

// Status is the cluster as one peer sees it.
type Status struct {
	Peer     string   `json:"peer"`
	VolumeID string   `json:"volume_id"`
	K        int      `json:"k"`
	M        int      `json:"m"`
	Quorum   int      `json:"write_quorum"`
	Members  []Member `json:"members"`
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
