// Package metrics holds the Prometheus metrics a reef peer serves at /metrics.
//
// One peer process owns one *Metrics, created with New. Each Metrics has its
// own prometheus.Registry (never the global default registry), so several
// peers can run in one process, as they do in tests. Every metric, including
// the Go runtime and process collectors, carries the constant label
// peer="<id>".
//
// # HTTP (recorded by Instrument)
//
// op is the fixed operation name given to Instrument ("put_shard",
// "get_shard", "list_shards", "put_file", "get_file", "status", "ns_ops",
// "ns_sync", ...); code is the status class of the response ("2xx", "3xx",
// "4xx", "5xx").
//
//	reef_http_requests_total{op,code}            counter    requests served
//	reef_http_request_duration_seconds{op,code}  histogram  time from the call of the handler until it returned
//	reef_http_request_bytes_total{op}            counter    request body bytes read by handlers
//	reef_http_response_bytes_total{op}           counter    response body bytes written by handlers
//	reef_http_requests_in_flight{op}             gauge      requests being served now
//
// # Local storage (SetStored)
//
//	reef_shards_stored   gauge  shards in this peer's block store
//	reef_bytes_stored    gauge  bytes of shard data in this peer's block store
//	reef_shard_writes_unsynced  gauge  writes not yet synced to disk (WatchUnsynced, read at each scrape)
//
// # Durability, as this peer last computed it (SetHealth, SetRepairQueue)
//
//	reef_chunks{state}          gauge  chunks by state: "healthy" (all shards present),
//	                                   "degraded" (some missing, still decodable), "lost" (not decodable)
//	reef_bytes_at_risk          gauge  bytes of file data in degraded or lost chunks
//	reef_repair_queue_chunks    gauge  chunks waiting to be repaired
//
// # Repair (AddRepaired)
//
//	reef_repair_chunks_total   counter  chunks repaired
//	reef_repair_shards_total   counter  shards rebuilt and written
//	reef_repair_bytes_total    counter  bytes of rebuilt shards written
//
// # Scrub (SetScrubProgress, AddScrubbed)
//
//	reef_scrub_pass_shards_checked    gauge    shards checked so far in the current scrub pass
//	reef_scrub_pass_shards            gauge    shards to check in the current scrub pass
//	reef_scrub_shards_checked_total   counter  shards checked, over all passes
//	reef_scrub_bytes_total            counter  shard bytes read and verified
//	reef_scrub_corrupt_total          counter  shards found corrupt
//
// # Rebalance (AddRebalanced)
//
//	reef_rebalance_shards_total  counter  shards moved to their placement targets
//	reef_rebalance_bytes_total   counter  bytes of shards moved
//
// # Store operations (ObserveStore)
//
//	reef_store_op_seconds{op,result}  histogram  latency of store operations;
//	                                             op is "put_file", "get_file", "put_chunk", "get_chunk" or "read_at",
//	                                             result is "ok" or "error"
//
// # Peer streams (ObserveStream)
//
// op is "ns_ops", "put_shard", "has_shard" or "get_shard"; result "ok", "error" or "not_found".
//
//	reef_stream_request_duration_seconds{op,result}  histogram  time to handle a request that arrived on a stream
//	reef_stream_bytes_total{op,dir}                  counter    payload bytes of requests (in) and answers (out)
//
// # FUSE mount (ObserveFUSE)
//
//	reef_fuse_requests_total{op,errno}        counter    FUSE requests answered by the mount, by operation
//	                                                     ("Lookup", "Getattr", "Create", "Write", "Getxattr", ...)
//	                                                     and errno name ("" for success, "ENOENT", ...)
//	reef_fuse_request_duration_seconds{op}    histogram  time from a request's arrival to its answer
//
// # Namespace replication (ObserveNS)
//
//	reef_ns_seconds{op}  histogram  "push": a batch of this peer's namespace ops until m other peers
//	                                hold it (what close and fsync wait for); "apply": applying a batch
//	                                pushed by another peer
//
// # Membership (SetMembers)
//
//	reef_members{state}  gauge  members this peer knows, by state: "alive", "suspect", "dead", "left"
//
// # Runtime
//
// The standard go_* (collectors.NewGoCollector), process_* (collectors.NewProcessCollector)
// and promhttp_metric_handler_* (promhttp.InstrumentMetricHandler) metrics.
//
// Latency histograms use the buckets in Buckets, from 100µs to 30s.
package metrics

import (
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Buckets are the upper bounds, in seconds, of the latency histograms: from
// 100µs (a shard read over loopback) to 30s (a large file over a slow link).
var Buckets = []float64{
	0.0001, 0.00025, 0.0005,
	0.001, 0.0025, 0.005,
	0.01, 0.025, 0.05,
	0.1, 0.25, 0.5,
	1, 2.5, 5, 10, 30,
}

// storeOps are the op values of reef_store_op_seconds whose series New
// creates up front, so they are exported (as zeros) before the first call.
var storeOps = []string{"put_file", "get_file", "put_chunk", "get_chunk", "read_at"}

// Metrics is the set of metrics of one peer. Create it with New. All methods
// are safe for concurrent use.
type Metrics struct {
	reg     *prometheus.Registry
	r       prometheus.Registerer // reg, with the peer label
	handler http.Handler

	httpRequests *prometheus.CounterVec   // op, code
	httpDuration *prometheus.HistogramVec // op, code
	httpBytesIn  *prometheus.CounterVec   // op
	httpBytesOut *prometheus.CounterVec   // op
	httpInFlight *prometheus.GaugeVec     // op

	shardsStored prometheus.Gauge
	bytesStored  prometheus.Gauge

	chunksHealthy  prometheus.Gauge
	chunksDegraded prometheus.Gauge
	chunksLost     prometheus.Gauge
	bytesAtRisk    prometheus.Gauge
	repairQueue    prometheus.Gauge

	repairChunks prometheus.Counter
	repairShards prometheus.Counter
	repairBytes  prometheus.Counter

	scrubPassChecked prometheus.Gauge
	scrubPassTotal   prometheus.Gauge
	scrubChecked     prometheus.Counter
	scrubBytes       prometheus.Counter
	scrubCorrupt     prometheus.Counter

	rebalanceShards prometheus.Counter
	rebalanceBytes  prometheus.Counter

	storeOp *prometheus.HistogramVec // op, result

	streamFrames *prometheus.HistogramVec // op, result
	streamBytes  *prometheus.CounterVec   // op, dir
	fuseOps      *prometheus.CounterVec   // op, errno
	nsOp         *prometheus.HistogramVec // op
	fuseDur      *prometheus.HistogramVec // op
	// storeObs holds the observers for storeOps: [0] result="ok", [1] "error".
	// Written only in New, read-only afterwards.
	storeObs map[string]*[2]prometheus.Observer

	membersAlive   prometheus.Gauge
	membersSuspect prometheus.Gauge
	membersDead    prometheus.Gauge
	membersLeft    prometheus.Gauge
}

// New returns the metrics of the peer with the given id, registered on a new
// private registry together with the Go runtime and process collectors. The
// id becomes the constant label peer="<id>" of every metric; it should be
// non-empty valid UTF-8 (New panics if the label is invalid).
func New(peer string) *Metrics {
	reg := prometheus.NewRegistry()
	r := prometheus.WrapRegistererWith(prometheus.Labels{"peer": peer}, reg)

	counter := func(name, help string) prometheus.Counter {
		c := prometheus.NewCounter(prometheus.CounterOpts{Name: name, Help: help})
		r.MustRegister(c)
		return c
	}
	gauge := func(name, help string) prometheus.Gauge {
		g := prometheus.NewGauge(prometheus.GaugeOpts{Name: name, Help: help})
		r.MustRegister(g)
		return g
	}

	m := &Metrics{reg: reg, r: r}

	m.httpRequests = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "reef_http_requests_total",
		Help: "HTTP requests served, by operation and status class.",
	}, []string{"op", "code"})
	m.httpDuration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "reef_http_request_duration_seconds",
		Help:    "Time spent in HTTP handlers, by operation and status class.",
		Buckets: Buckets,
	}, []string{"op", "code"})
	m.httpBytesIn = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "reef_http_request_bytes_total",
		Help: "Request body bytes read by HTTP handlers, by operation.",
	}, []string{"op"})
	m.httpBytesOut = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "reef_http_response_bytes_total",
		Help: "Response body bytes written by HTTP handlers, by operation.",
	}, []string{"op"})
	m.httpInFlight = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "reef_http_requests_in_flight",
		Help: "HTTP requests being served, by operation.",
	}, []string{"op"})
	r.MustRegister(m.httpRequests, m.httpDuration, m.httpBytesIn, m.httpBytesOut, m.httpInFlight)

	m.shardsStored = gauge("reef_shards_stored", "Shards in this peer's block store.")
	m.bytesStored = gauge("reef_bytes_stored", "Bytes of shard data in this peer's block store.")

	chunks := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "reef_chunks",
		Help: "Chunks by durability state (healthy, degraded, lost), as this peer last computed them.",
	}, []string{"state"})
	r.MustRegister(chunks)
	m.chunksHealthy = chunks.WithLabelValues("healthy")
	m.chunksDegraded = chunks.WithLabelValues("degraded")
	m.chunksLost = chunks.WithLabelValues("lost")
	m.bytesAtRisk = gauge("reef_bytes_at_risk", "Bytes of file data in degraded or lost chunks, as this peer last computed them.")
	m.repairQueue = gauge("reef_repair_queue_chunks", "Chunks waiting to be repaired.")

	m.repairChunks = counter("reef_repair_chunks_total", "Chunks repaired.")
	m.repairShards = counter("reef_repair_shards_total", "Shards rebuilt and written by repair.")
	m.repairBytes = counter("reef_repair_bytes_total", "Bytes of shards rebuilt and written by repair.")

	m.scrubPassChecked = gauge("reef_scrub_pass_shards_checked", "Shards checked so far in the current scrub pass.")
	m.scrubPassTotal = gauge("reef_scrub_pass_shards", "Shards to check in the current scrub pass.")
	m.scrubChecked = counter("reef_scrub_shards_checked_total", "Shards checked by scrub, over all passes.")
	m.scrubBytes = counter("reef_scrub_bytes_total", "Shard bytes read and verified by scrub.")
	m.scrubCorrupt = counter("reef_scrub_corrupt_total", "Shards found corrupt by scrub.")

	m.rebalanceShards = counter("reef_rebalance_shards_total", "Shards moved by rebalance.")
	m.rebalanceBytes = counter("reef_rebalance_bytes_total", "Bytes of shards moved by rebalance.")

	m.storeOp = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "reef_store_op_seconds",
		Help:    "Latency of store operations, by operation and result (ok, error).",
		Buckets: Buckets,
	}, []string{"op", "result"})
	r.MustRegister(m.storeOp)
	m.storeObs = make(map[string]*[2]prometheus.Observer, len(storeOps))
	for _, op := range storeOps {
		m.storeObs[op] = &[2]prometheus.Observer{
			m.storeOp.WithLabelValues(op, "ok"),
			m.storeOp.WithLabelValues(op, "error"),
		}
	}

	m.streamFrames = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "reef_stream_request_duration_seconds",
		Help:    "Time to handle a request that arrived on a peer stream (shard writes and reads, namespace pushes), by operation and result (ok, error, not_found).",
		Buckets: Buckets,
	}, []string{"op", "result"})
	m.streamBytes = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "reef_stream_bytes_total",
		Help: "Payload bytes of stream requests and answers, by operation and direction (in, out).",
	}, []string{"op", "dir"})
	r.MustRegister(m.streamFrames, m.streamBytes)

	m.fuseOps = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "reef_fuse_requests_total",
		Help: "FUSE requests answered by this peer's mount, by operation and errno name (empty for success).",
	}, []string{"op", "errno"})
	m.fuseDur = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "reef_fuse_request_duration_seconds",
		Help:    "Time from a FUSE request's arrival to its answer, by operation.",
		Buckets: fuseBuckets,
	}, []string{"op"})
	r.MustRegister(m.fuseOps, m.fuseDur)
	m.nsOp = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "reef_ns_seconds",
		Help:    "Namespace: commit (writing a local change to the log), push (a batch of this peer's ops until m others hold it), apply (a batch pushed by another peer).",
		Buckets: fuseBuckets,
	}, []string{"op"})
	r.MustRegister(m.nsOp)

	members := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "reef_members",
		Help: "Cluster members known to this peer, by state (alive, suspect, dead, left).",
	}, []string{"state"})
	r.MustRegister(members)
	m.membersAlive = members.WithLabelValues("alive")
	m.membersSuspect = members.WithLabelValues("suspect")
	m.membersDead = members.WithLabelValues("dead")
	m.membersLeft = members.WithLabelValues("left")

	r.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)

	m.handler = promhttp.InstrumentMetricHandler(r, promhttp.HandlerFor(reg, promhttp.HandlerOpts{
		ErrorHandling: promhttp.ContinueOnError,
	}))
	return m
}

// Handler returns the handler that serves this peer's metrics in the
// Prometheus exposition formats. It returns the same handler on every call.
func (m *Metrics) Handler() http.Handler { return m.handler }

// WatchUnsynced registers reef_shard_writes_unsynced, read from fn at
// every scrape: the block store's writes not yet on stable storage. Call it
// at most once.
func (m *Metrics) WatchUnsynced(fn func() int64) {
	m.r.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "reef_shard_writes_unsynced",
		Help: "Shard writes and deletes of this peer's block store not yet synced to disk (lazy ones, until the next sync).",
	}, func() float64 { return float64(fn()) }))
}

// WatchNamespace registers reef_namespace_trash_entries and
// reef_namespace_purged_entries_total, read from fn at every scrape: the
// deleted entries the namespace holds in its trash, and those it purged
// since the peer started. Call it at most once.
func (m *Metrics) WatchNamespace(fn func() (trashed, purged int64)) {
	m.r.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "reef_namespace_trash_entries",
		Help: "Deleted entries the namespace still holds (until no peer can need them: see docs/ARCHITECTURE.md).",
	}, func() float64 { t, _ := fn(); return float64(t) }))
	m.r.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{
		Name: "reef_namespace_purged_entries_total",
		Help: "Deleted entries purged from the namespace's trash since this peer started.",
	}, func() float64 { _, p := fn(); return float64(p) }))
}

// WatchGC registers reef_gc_candidate_chunks and
// reef_gc_deleted_shards_total, read from fn at every scrape: chunks this
// peer holds shards of that nothing referenced when last looked at
// (deleted once their grace is over), and the shards it deleted since it
// started. Call it at most once.
func (m *Metrics) WatchGC(fn func() (candidates, deleted int64)) {
	m.r.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "reef_gc_candidate_chunks",
		Help: "Chunks this peer holds shards of that no file referenced when last looked at; their shards are deleted after the grace period unless something uses them again.",
	}, func() float64 { c, _ := fn(); return float64(c) }))
	m.r.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{
		Name: "reef_gc_deleted_shards_total",
		Help: "Shards of chunks nothing references deleted by this peer since it started.",
	}, func() float64 { _, d := fn(); return float64(d) }))
}

// SetStored sets reef_shards_stored and reef_bytes_stored: the shards and
// bytes in this peer's block store.
func (m *Metrics) SetStored(shards, bytes int64) {
	m.shardsStored.Set(float64(shards))
	m.bytesStored.Set(float64(bytes))
}

// SetHealth sets reef_chunks{state="healthy|degraded|lost"} and
// reef_bytes_at_risk to the values this peer last computed.
func (m *Metrics) SetHealth(healthy, degraded, lost int64, bytesAtRisk int64) {
	m.chunksHealthy.Set(float64(healthy))
	m.chunksDegraded.Set(float64(degraded))
	m.chunksLost.Set(float64(lost))
	m.bytesAtRisk.Set(float64(bytesAtRisk))
}

// SetRepairQueue sets reef_repair_queue_chunks, the chunks waiting for repair.
func (m *Metrics) SetRepairQueue(chunks int64) {
	m.repairQueue.Set(float64(chunks))
}

// AddRepaired adds to reef_repair_chunks_total, reef_repair_shards_total and
// reef_repair_bytes_total. Negative values are ignored.
func (m *Metrics) AddRepaired(chunks, shards, bytes int64) {
	add(m.repairChunks, chunks)
	add(m.repairShards, shards)
	add(m.repairBytes, bytes)
}

// SetScrubProgress sets the progress of the current scrub pass:
// reef_scrub_pass_shards_checked to done and reef_scrub_pass_shards to total.
func (m *Metrics) SetScrubProgress(done, total int64) {
	m.scrubPassChecked.Set(float64(done))
	m.scrubPassTotal.Set(float64(total))
}

// AddScrubbed adds to reef_scrub_shards_checked_total, reef_scrub_bytes_total
// and reef_scrub_corrupt_total. Negative values are ignored.
func (m *Metrics) AddScrubbed(shards, bytes, corrupt int64) {
	add(m.scrubChecked, shards)
	add(m.scrubBytes, bytes)
	add(m.scrubCorrupt, corrupt)
}

// AddRebalanced adds to reef_rebalance_shards_total and
// reef_rebalance_bytes_total. Negative values are ignored.
func (m *Metrics) AddRebalanced(shards, bytes int64) {
	add(m.rebalanceShards, shards)
	add(m.rebalanceBytes, bytes)
}

// ObserveStore records one store operation that took seconds in
// reef_store_op_seconds{op, result}; result is "ok" if err is nil and "error"
// otherwise. op should be one of "put_file", "get_file", "put_chunk",
// "get_chunk", "read_at": those are cheap, while any other op creates a
// series of its own (keep the set small and fixed).
func (m *Metrics) ObserveStore(op string, seconds float64, err error) {
	i := 0
	if err != nil {
		i = 1
	}
	if obs, ok := m.storeObs[op]; ok {
		obs[i].Observe(seconds)
		return
	}
	m.storeOp.WithLabelValues(op, [2]string{"ok", "error"}[i]).Observe(seconds)
}

// fuseBuckets are finer than Buckets at the low end: most FUSE requests
// take tens of microseconds.
var fuseBuckets = []float64{10e-6, 25e-6, 50e-6, 100e-6, 250e-6, 500e-6, 1e-3, 2.5e-3, 5e-3, 10e-3, 25e-3, 50e-3, 100e-3, 250e-3, 1, 5, 30}

// ObserveFUSE records one answered FUSE request in reef_fuse_requests_total
// and reef_fuse_request_duration_seconds. op and errno come from a small
// fixed set (the FUSE operations, the errno names).
func (m *Metrics) ObserveFUSE(op, errno string, d time.Duration) {
	m.fuseOps.WithLabelValues(op, errno).Inc()
	m.fuseDur.WithLabelValues(op).Observe(d.Seconds())
}

// ObserveNS records one namespace replication step ("push" or "apply")
// in reef_ns_seconds.
func (m *Metrics) ObserveNS(op string, d time.Duration) {
	m.nsOp.WithLabelValues(op).Observe(d.Seconds())
}

// ObserveStream records one request served on a peer stream:
// reef_stream_request_duration_seconds{op,result} and
// reef_stream_bytes_total{op,dir}. result is "ok", "error" or "not_found".
func (m *Metrics) ObserveStream(op, result string, d time.Duration, in, out int) {
	m.streamFrames.WithLabelValues(op, result).Observe(d.Seconds())
	if in > 0 {
		m.streamBytes.WithLabelValues(op, "in").Add(float64(in))
	}
	if out > 0 {
		m.streamBytes.WithLabelValues(op, "out").Add(float64(out))
	}
}

// SetMembers sets reef_members{state="alive|suspect|dead|left"}.
func (m *Metrics) SetMembers(alive, suspect, dead, left int) {
	m.membersAlive.Set(float64(alive))
	m.membersSuspect.Set(float64(suspect))
	m.membersDead.Set(float64(dead))
	m.membersLeft.Set(float64(left))
}

// add adds n to c if n is positive; Counter.Add panics on negative values.
func add(c prometheus.Counter, n int64) {
	if n > 0 {
		c.Add(float64(n))
	}
}

// Instrument wraps h so that each request is recorded under the operation
// name op, which must come from a small fixed set ("put_shard", "get_shard",
// "list_shards", "put_file", "get_file", "status", "ns_ops", "ns_sync", ...):
// reef_http_requests_total and reef_http_request_duration_seconds by op and
// status class, reef_http_request_bytes_total (request body bytes the handler
// read), reef_http_response_bytes_total (body bytes it wrote) and
// reef_http_requests_in_flight.
//
// The status is the one h passes to WriteHeader, or 200 if h writes a body
// without it or writes nothing. A request whose handler panics before writing
// a header counts as 5xx. The http.ResponseWriter given to h implements
// http.Flusher and io.ReaderFrom and has an Unwrap method, so
// http.NewResponseController(w) still reaches the underlying writer
// (SetReadDeadline, SetWriteDeadline, Hijack, EnableFullDuplex).
//
// Instrument creates the series of op up front; call it once per route, not
// per request.
func (m *Metrics) Instrument(op string, h http.HandlerFunc) http.HandlerFunc {
	var byClass [6]classMetrics // index: status / 100; [2..5] filled here
	for c := 2; c <= 5; c++ {
		byClass[c] = m.classMetrics(op, c)
	}
	bytesIn := m.httpBytesIn.WithLabelValues(op)
	bytesOut := m.httpBytesOut.WithLabelValues(op)
	inFlight := m.httpInFlight.WithLabelValues(op)

	return func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		inFlight.Inc()
		rec := &recorder{w: responseWriter{rw: w}}
		if r.Body != nil && r.Body != http.NoBody {
			rec.b.rc = r.Body
			r.Body = &rec.b
		}
		defer func() {
			// Runs also when h panics; then, if no header was sent, net/http
			// answers 500 (or drops the connection).
			status := rec.w.status
			if status == 0 {
				status = http.StatusOK
				if !rec.done {
					status = http.StatusInternalServerError
				}
			}
			c := status / 100
			var cm classMetrics
			if c >= 2 && c <= 5 {
				cm = byClass[c]
			} else {
				cm = m.classMetrics(op, c)
			}
			cm.requests.Inc()
			cm.duration.Observe(time.Since(start).Seconds())
			add(bytesIn, rec.b.n)
			add(bytesOut, rec.w.n)
			inFlight.Dec()
		}()
		h(&rec.w, r)
		rec.done = true
	}
}

// classMetrics are the series of one op and one status class.
type classMetrics struct {
	requests prometheus.Counter
	duration prometheus.Observer
}

func (m *Metrics) classMetrics(op string, class int) classMetrics {
	code := strconv.Itoa(class) + "xx"
	return classMetrics{
		requests: m.httpRequests.WithLabelValues(op, code),
		duration: m.httpDuration.WithLabelValues(op, code),
	}
}
