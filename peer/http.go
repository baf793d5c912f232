package peer

import (
	"crypto/subtle"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/pprof"
	"strconv"
	"time"

	"github.com/reefproject/reef/addr"
	"github.com/reefproject/reef/api"
	"github.com/reefproject/reef/erasure"
	"github.com/reefproject/reef/membership"
	"github.com/reefproject/reef/store"
)

// bodyIdle bounds how long a request body may stall between reads, and a
// response between writes.
const bodyIdle = 60 * time.Second

func (p *Peer) routes() http.Handler {
	mux := http.NewServeMux()
	in := p.metrics.Instrument
	mux.HandleFunc("PUT /v1/shard/{addr}/{index}", in("put_shard", p.peerOnly(p.handlePutShard)))
	mux.HandleFunc("GET /v1/shard/{addr}/{index}", in("get_shard", p.peerOnly(p.handleGetShard)))
	mux.HandleFunc("GET /v1/shards/{addr}", in("list_shards", p.peerOnly(p.handleListShards)))
	mux.Handle("GET /metrics", p.metrics.Handler())
	mux.HandleFunc("POST /v1/ns/ops", in("ns_ops", p.peerOnly(p.handleOps)))
	mux.HandleFunc("GET "+streamPath, p.peerOnly(p.handleStream)) // not wrapped: taken over (see stream.go)
	mux.HandleFunc("POST /v1/ns/sync", in("ns_sync", p.peerOnly(p.handleSync)))
	mux.HandleFunc("POST /v1/ns/fsync", p.peerOnly(p.handleNSFsync))
	mux.HandleFunc("GET /v1/ns/snapshot", p.peerOnly(p.handleSnapshot))
	mux.HandleFunc("POST /v1/files", in("put_file", p.clientOnly(p.handlePutFile)))
	mux.HandleFunc("GET /v1/files/{addr}", in("get_file", p.clientOnly(p.handleGetFile)))
	mux.HandleFunc("GET /v1/status", in("status", p.clientOnly(p.handleStatus)))
	mux.HandleFunc("GET /v1/inventory", p.peerOnly(p.handleInventory))
	mux.HandleFunc("GET /v1/gc/pins", p.peerOnly(p.handleGCPins))
	mux.HandleFunc("GET /v1/health", p.clientOnly(p.handleHealth))
	mux.HandleFunc("GET /v1/locks", in("locks", p.clientOnly(p.handleLocks)))
	mux.HandleFunc("/v1/repair", p.clientOnly(p.handleRepair))
	mux.HandleFunc("/v1/scrub", p.clientOnly(p.handleScrub))
	mux.HandleFunc("/v1/drain", p.clientOnly(p.handleDrain))
	mux.HandleFunc("/debug/pprof/", p.clientOnly(pprof.Index))
	mux.HandleFunc("/debug/pprof/profile", p.clientOnly(pprof.Profile))
	mux.HandleFunc("/debug/pprof/trace", p.clientOnly(pprof.Trace))
	return mux
}

func (p *Peer) tokenOK(r *http.Request) bool {
	got := r.Header.Get(api.TokenHeader)
	return subtle.ConstantTimeCompare([]byte(got), []byte(p.cfg.Keys.PeerToken())) == 1
}

// peerOnly admits requests that carry the volume's peer token.
func (p *Peer) peerOnly(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if !p.tokenOK(r) {
			api.WriteError(w, http.StatusUnauthorized, errors.New("missing or wrong peer token (is this peer started with the cluster's key file?)"))
			return
		}
		h(w, r)
	}
}

// clientOnly admits commands from loopback, and from elsewhere with the token.
func (p *Peer) clientOnly(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		host, _, _ := net.SplitHostPort(r.RemoteAddr)
		if ip := net.ParseIP(host); (ip == nil || !ip.IsLoopback()) && !p.tokenOK(r) {
			api.WriteError(w, http.StatusUnauthorized, errors.New("commands from other hosts need the volume key (--key FILE or REEF_KEY)"))
			return
		}
		h(w, r)
	}
}

func parseShardKey(r *http.Request) (store.ShardKey, error) {
	a, err := addr.Parse(r.PathValue("addr"))
	if err != nil {
		return store.ShardKey{}, err
	}
	i, err := strconv.Atoi(r.PathValue("index"))
	if err != nil || i < 0 || i > 255 {
		return store.ShardKey{}, fmt.Errorf("bad shard index %q", r.PathValue("index"))
	}
	return store.ShardKey{Addr: a, Index: i}, nil
}

func (p *Peer) handlePutShard(w http.ResponseWriter, r *http.Request) {
	k, err := parseShardKey(r)
	if err != nil {
		api.WriteError(w, http.StatusBadRequest, err)
		return
	}
	lazy := r.URL.Query().Get("lazy") == "1"
	p.gc.touch(k.Addr)
	// Answer before the body is sent when the shard is here already.
	if has, err := p.bs.Has(r.Context(), shardKey(k)); err == nil && has {
		if err := p.heldDurably(r.Context(), lazy); err != nil {
			api.WriteError(w, http.StatusInternalServerError, err)
			return
		}
		// Flush at once: the client is waiting for this answer (or for
		// "100 Continue") before it sends the body.
		w.Header().Set("Connection", "close")
		w.WriteHeader(http.StatusOK)
		http.NewResponseController(w).Flush()
		return
	}
	if r.ContentLength < 0 || r.ContentLength > store.MaxShard {
		api.WriteError(w, http.StatusRequestEntityTooLarge, fmt.Errorf("shard body must have a length of at most %d bytes", store.MaxShard))
		return
	}
	http.NewResponseController(w).SetReadDeadline(time.Now().Add(shardTimeout))
	shard := make([]byte, r.ContentLength)
	if _, err := io.ReadFull(r.Body, shard); err != nil {
		api.WriteError(w, http.StatusBadRequest, fmt.Errorf("reading shard: %w", err))
		return
	}
	h, err := erasure.Verify(shard)
	if err != nil {
		api.WriteError(w, http.StatusBadRequest, err)
		return
	}
	if h.Index != k.Index {
		api.WriteError(w, http.StatusBadRequest, fmt.Errorf("shard header says index %d, path says %d", h.Index, k.Index))
		return
	}
	// Has was checked above, before the body was read.
	stored, err := p.storeLocal(r.Context(), shardKey(k), shard, lazy)
	switch {
	case errors.Is(err, ErrFull):
		api.WriteError(w, http.StatusInsufficientStorage, err)
	case err != nil:
		p.log.Error("storing shard", "shard", k.String(), "err", err)
		api.WriteError(w, http.StatusInternalServerError, err)
	case stored:
		w.WriteHeader(http.StatusCreated)
	default:
		w.WriteHeader(http.StatusOK)
	}
}

func (p *Peer) handleGetShard(w http.ResponseWriter, r *http.Request) {
	k, err := parseShardKey(r)
	if err != nil {
		api.WriteError(w, http.StatusBadRequest, err)
		return
	}
	// The value is copied into a recycled buffer, given back once written:
	// net/http keeps nothing of it after Write returns.
	b, err := p.getLocal(r.Context(), k, p.served.Get)
	switch {
	case errors.Is(err, store.ErrShardNotFound):
		api.WriteError(w, http.StatusNotFound, err)
		return
	case err != nil:
		p.log.Error("reading shard", "shard", k.String(), "err", err)
		api.WriteError(w, http.StatusInternalServerError, err)
		return
	}
	http.NewResponseController(w).SetWriteDeadline(time.Now().Add(shardTimeout))
	w.Header().Set("Content-Length", strconv.Itoa(len(b)))
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Write(b)
	p.served.Put(b)
}

func (p *Peer) handleListShards(w http.ResponseWriter, r *http.Request) {
	a, err := addr.Parse(r.PathValue("addr"))
	if err != nil {
		api.WriteError(w, http.StatusBadRequest, err)
		return
	}
	idx, err := p.listLocal(r.Context(), a)
	if err != nil {
		api.WriteError(w, http.StatusInternalServerError, err)
		return
	}
	if idx == nil {
		idx = []int{}
	}
	api.WriteJSON(w, struct {
		Indexes []int `json:"indexes"`
	}{idx})
}

// idleReader extends the read deadline before every read, so a stalled
// upload fails after bodyIdle but a long one does not.
type idleReader struct {
	r  io.Reader
	rc *http.ResponseController
}

func (ir idleReader) Read(b []byte) (int, error) {
	ir.rc.SetReadDeadline(time.Now().Add(bodyIdle))
	return ir.r.Read(b)
}

// idleWriter does the same for responses.
type idleWriter struct {
	w  io.Writer
	rc *http.ResponseController
}

func (iw idleWriter) Write(b []byte) (int, error) {
	iw.rc.SetWriteDeadline(time.Now().Add(bodyIdle))
	return iw.w.Write(b)
}

func (p *Peer) handlePutFile(w http.ResponseWriter, r *http.Request) {
	rc := http.NewResponseController(w)
	a, st, err := p.store.PutFile(r.Context(), idleReader{r.Body, rc})
	if err != nil {
		p.log.Error("put failed", "err", err)
		api.WriteError(w, statusFor(err), err)
		return
	}
	// The shards were written lazily (lazyNet); an address handed out
	// stays readable through a power cut of every peer.
	if err := p.repl.SyncBarrier(r.Context()); err != nil {
		p.log.Error("put: syncing the shards", "err", err)
		api.WriteError(w, http.StatusServiceUnavailable, fmt.Errorf("stored but not yet synced: %w", err))
		return
	}
	p.log.Info("file stored", "addr", a.String(), "bytes", st.Size, "chunks", st.Chunks, "new_shards", st.NewShards, "dup_shards", st.DupShards)
	api.WriteJSON(w, api.PutResult{Addr: a.String(), Size: st.Size, Chunks: st.Chunks, NewShards: st.NewShards, DupShards: st.DupShards})
}

func (p *Peer) handleGetFile(w http.ResponseWriter, r *http.Request) {
	a, err := addr.Parse(r.PathValue("addr"))
	if err != nil {
		api.WriteError(w, http.StatusBadRequest, err)
		return
	}
	size, stream, err := p.store.Open(r.Context(), a)
	if err != nil {
		api.WriteError(w, statusFor(err), err)
		return
	}
	w.Header().Set("Trailer", api.ErrorTrailer)
	w.Header().Set(api.SizeHeader, strconv.FormatInt(size, 10))
	w.Header().Set("Content-Type", "application/octet-stream")
	w.WriteHeader(http.StatusOK)
	if _, err := stream(r.Context(), idleWriter{w, http.NewResponseController(w)}); err != nil {
		p.log.Error("get failed mid-stream", "addr", a.String(), "err", err)
		w.Header().Set(api.ErrorTrailer, err.Error())
	}
}

func statusFor(err error) int {
	var se *store.ShardsError
	switch {
	case errors.As(err, &se) && se.Total == 0:
		return http.StatusNotFound
	case errors.Is(err, store.ErrUnavailable):
		return http.StatusServiceUnavailable
	case errors.Is(err, store.ErrCorrupt):
		return http.StatusUnprocessableEntity
	default:
		return http.StatusInternalServerError
	}
}

func (p *Peer) handleStatus(w http.ResponseWriter, r *http.Request) {
	st := api.Status{Peer: p.id, VolumeID: p.cfg.Keys.VolumeID(), K: p.cfg.K, M: p.cfg.M, Quorum: p.cfg.WriteQuorum, Repair: p.maint.snapshot()}
	if st.Quorum == 0 {
		st.Quorum = p.cfg.K + p.cfg.M
	}
	slow := p.store.SlowPeers()
	for o := range p.slowPushers() {
		slow[o] = true
	}
	ahead := p.ns.ClockAhead()
	for _, m := range p.node.Members() {
		st.Members = append(st.Members, api.Member{
			ClockAheadSeconds: ahead[m.ID].Seconds(),
			Slow:              slow[m.ID],
			Full:              m.Meta.Capacity > 0 && m.Meta.Free < api.FullBelow,
			ID:                m.ID, State: m.State.String(), Zone: m.Meta.Zone, DataAddr: m.Meta.DataAddr, GossipAddr: m.GossipAddr,
			Capacity: m.Meta.Capacity, Free: m.Meta.Free, Used: m.Meta.Used, Shards: m.Meta.Shards,
			LastSeen: m.LastSeen, Self: m.ID == p.id, Version: m.Meta.Version, Draining: m.Meta.Flags&membership.FlagDraining != 0,
		})
		if mm := st.Members[len(st.Members)-1]; mm.State == "alive" && !mm.Draining && !mm.Full {
			st.WritablePeers++
		}
	}
	st.WritePeersNeeded = p.cfg.K + 1
	api.WriteJSON(w, st)
}
