package metrics

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sort"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// scrape GETs /metrics from m.Handler and returns every sample keyed as
// name{label="value",...} with labels sorted by name. Histograms give
// name_count, name_sum and name_bucket{...,le="..."} samples.
func scrape(t *testing.T, m *Metrics) map[string]float64 {
	t.Helper()
	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	if rec.Code != http.StatusOK {
		t.Fatalf("GET /metrics: status %d: %s", rec.Code, rec.Body)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	mfs, err := p.TextToMetricFamilies(rec.Body)
	if err != nil {
		t.Fatalf("parse /metrics: %v", err)
	}
	out := make(map[string]float64)
	for name, mf := range mfs {
		for _, mt := range mf.GetMetric() {
			labels := mt.GetLabel()
			switch mf.GetType() {
			case dto.MetricType_COUNTER:
				out[key(name, labels)] = mt.GetCounter().GetValue()
			case dto.MetricType_GAUGE:
				out[key(name, labels)] = mt.GetGauge().GetValue()
			case dto.MetricType_UNTYPED:
				out[key(name, labels)] = mt.GetUntyped().GetValue()
			case dto.MetricType_HISTOGRAM:
				h := mt.GetHistogram()
				out[key(name+"_count", labels)] = float64(h.GetSampleCount())
				out[key(name+"_sum", labels)] = h.GetSampleSum()
				for _, b := range h.GetBucket() {
					le := fmt.Sprint(b.GetUpperBound())
					out[key(name+"_bucket", labels, "le", le)] = float64(b.GetCumulativeCount())
				}
			}
		}
	}
	return out
}

func key(name string, labels []*dto.LabelPair, extra ...string) string {
	var kv []string
	for _, l := range labels {
		kv = append(kv, fmt.Sprintf("%s=%q", l.GetName(), l.GetValue()))
	}
	for i := 0; i+1 < len(extra); i += 2 {
		kv = append(kv, fmt.Sprintf("%s=%q", extra[i], extra[i+1]))
	}
	sort.Strings(kv)
	if len(kv) == 0 {
		return name
	}
	return name + "{" + strings.Join(kv, ",") + "}"
}

// checkSamples reports every sample of want that is missing from got or has
// another value.
func checkSamples(t *testing.T, got, want map[string]float64) {
	t.Helper()
	for k, w := range want {
		g, ok := got[k]
		switch {
		case !ok:
			t.Errorf("missing sample %s (want %v)", k, w)
		case g != w:
			t.Errorf("%s = %v, want %v", k, g, w)
		}
	}
}

func TestSetters(t *testing.T) {
	tests := []struct {
		name string
		call func(m *Metrics)
		want map[string]float64
	}{
		{"SetStored", func(m *Metrics) { m.SetStored(12, 1<<20) }, map[string]float64{
			`reef_shards_stored{peer="p1"}`: 12,
			`reef_bytes_stored{peer="p1"}`:  1 << 20,
		}},
		{"SetStored twice", func(m *Metrics) { m.SetStored(12, 100); m.SetStored(3, 30) }, map[string]float64{
			`reef_shards_stored{peer="p1"}`: 3,
			`reef_bytes_stored{peer="p1"}`:  30,
		}},
		{"SetHealth", func(m *Metrics) { m.SetHealth(7, 2, 1, 4096) }, map[string]float64{
			`reef_chunks{peer="p1",state="healthy"}`:  7,
			`reef_chunks{peer="p1",state="degraded"}`: 2,
			`reef_chunks{peer="p1",state="lost"}`:     1,
			`reef_bytes_at_risk{peer="p1"}`:           4096,
		}},
		{"SetRepairQueue", func(m *Metrics) { m.SetRepairQueue(5) }, map[string]float64{
			`reef_repair_queue_chunks{peer="p1"}`: 5,
		}},
		{"AddRepaired", func(m *Metrics) { m.AddRepaired(1, 2, 300); m.AddRepaired(1, 1, 100) }, map[string]float64{
			`reef_repair_chunks_total{peer="p1"}`: 2,
			`reef_repair_shards_total{peer="p1"}`: 3,
			`reef_repair_bytes_total{peer="p1"}`:  400,
		}},
		{"AddRepaired negative ignored", func(m *Metrics) { m.AddRepaired(1, -2, 0) }, map[string]float64{
			`reef_repair_chunks_total{peer="p1"}`: 1,
			`reef_repair_shards_total{peer="p1"}`: 0,
			`reef_repair_bytes_total{peer="p1"}`:  0,
		}},
		{"SetScrubProgress", func(m *Metrics) { m.SetScrubProgress(40, 100) }, map[string]float64{
			`reef_scrub_pass_shards_checked{peer="p1"}`: 40,
			`reef_scrub_pass_shards{peer="p1"}`:         100,
		}},
		{"AddScrubbed", func(m *Metrics) { m.AddScrubbed(10, 5000, 1); m.AddScrubbed(5, 2500, 0) }, map[string]float64{
			`reef_scrub_shards_checked_total{peer="p1"}`: 15,
			`reef_scrub_bytes_total{peer="p1"}`:          7500,
			`reef_scrub_corrupt_total{peer="p1"}`:        1,
		}},
		{"AddRebalanced", func(m *Metrics) { m.AddRebalanced(4, 8192) }, map[string]float64{
			`reef_rebalance_shards_total{peer="p1"}`: 4,
			`reef_rebalance_bytes_total{peer="p1"}`:  8192,
		}},
		{"ObserveStore", func(m *Metrics) {
			m.ObserveStore("put_file", 0.002, nil)
			m.ObserveStore("put_file", 0.5, nil)
			m.ObserveStore("get_chunk", 0.00005, errors.New("boom"))
		}, map[string]float64{
			`reef_store_op_seconds_count{op="put_file",peer="p1",result="ok"}`:                  2,
			`reef_store_op_seconds_sum{op="put_file",peer="p1",result="ok"}`:                    0.502,
			`reef_store_op_seconds_bucket{le="0.0025",op="put_file",peer="p1",result="ok"}`:     1,
			`reef_store_op_seconds_bucket{le="0.5",op="put_file",peer="p1",result="ok"}`:        2,
			`reef_store_op_seconds_count{op="put_file",peer="p1",result="error"}`:               0,
			`reef_store_op_seconds_count{op="get_chunk",peer="p1",result="error"}`:              1,
			`reef_store_op_seconds_bucket{le="0.0001",op="get_chunk",peer="p1",result="error"}`: 1,
			`reef_store_op_seconds_count{op="read_at",peer="p1",result="ok"}`:                   0,
		}},
		{"ObserveStore other op", func(m *Metrics) { m.ObserveStore("delete", 1, nil) }, map[string]float64{
			`reef_store_op_seconds_count{op="delete",peer="p1",result="ok"}`: 1,
		}},
		{"ObserveStream", func(m *Metrics) {
			m.ObserveStream("put_shard", "ok", 2*time.Millisecond, 65536, 1)
			m.ObserveStream("put_shard", "ok", time.Millisecond, 65536, 1)
			m.ObserveStream("get_shard", "not_found", time.Millisecond, 35, 0)
		}, map[string]float64{
			`reef_stream_request_duration_seconds_count{op="put_shard",peer="p1",result="ok"}`:        2,
			`reef_stream_request_duration_seconds_sum{op="put_shard",peer="p1",result="ok"}`:          0.003,
			`reef_stream_bytes_total{dir="in",op="put_shard",peer="p1"}`:                              131072,
			`reef_stream_bytes_total{dir="out",op="put_shard",peer="p1"}`:                             2,
			`reef_stream_request_duration_seconds_count{op="get_shard",peer="p1",result="not_found"}`: 1,
			`reef_stream_bytes_total{dir="in",op="get_shard",peer="p1"}`:                              35,
		}},
		{"WatchUnsynced", func(m *Metrics) { m.WatchUnsynced(func() int64 { return 7 }) }, map[string]float64{
			`reef_shard_writes_unsynced{peer="p1"}`: 7,
		}},
		{"SetMembers", func(m *Metrics) { m.SetMembers(3, 1, 2, 4) }, map[string]float64{
			`reef_members{peer="p1",state="alive"}`:   3,
			`reef_members{peer="p1",state="suspect"}`: 1,
			`reef_members{peer="p1",state="dead"}`:    2,
			`reef_members{peer="p1",state="left"}`:    4,
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := New("p1")
			tt.call(m)
			checkSamples(t, scrape(t, m), tt.want)
		})
	}
}

// TestAllMetricsExported checks that every reef_ metric named in the package
// doc is exported before any setter is called, and that the runtime
// collectors are registered.
func TestAllMetricsExported(t *testing.T) {
	m := New("p1")
	m.Instrument("status", func(http.ResponseWriter, *http.Request) {})
	got := scrape(t, m)
	for _, k := range []string{
		`reef_shards_stored{peer="p1"}`,
		`reef_bytes_stored{peer="p1"}`,
		`reef_chunks{peer="p1",state="healthy"}`,
		`reef_bytes_at_risk{peer="p1"}`,
		`reef_repair_queue_chunks{peer="p1"}`,
		`reef_repair_chunks_total{peer="p1"}`,
		`reef_repair_shards_total{peer="p1"}`,
		`reef_repair_bytes_total{peer="p1"}`,
		`reef_scrub_pass_shards_checked{peer="p1"}`,
		`reef_scrub_pass_shards{peer="p1"}`,
		`reef_scrub_shards_checked_total{peer="p1"}`,
		`reef_scrub_bytes_total{peer="p1"}`,
		`reef_scrub_corrupt_total{peer="p1"}`,
		`reef_rebalance_shards_total{peer="p1"}`,
		`reef_rebalance_bytes_total{peer="p1"}`,
		`reef_store_op_seconds_count{op="get_file",peer="p1",result="ok"}`,
		`reef_members{peer="p1",state="alive"}`,
		`reef_http_requests_total{code="2xx",op="status",peer="p1"}`,
		`reef_http_requests_total{code="4xx",op="status",peer="p1"}`,
		`reef_http_requests_total{code="5xx",op="status",peer="p1"}`,
		`reef_http_request_duration_seconds_count{code="2xx",op="status",peer="p1"}`,
		`reef_http_request_bytes_total{op="status",peer="p1"}`,
		`reef_http_response_bytes_total{op="status",peer="p1"}`,
		`reef_http_requests_in_flight{op="status",peer="p1"}`,
		`go_goroutines{peer="p1"}`,
		`process_open_fds{peer="p1"}`,
	} {
		if _, ok := got[k]; !ok {
			t.Errorf("missing sample %s", k)
		}
	}
}

func TestInstrument(t *testing.T) {
	tests := []struct {
		name    string
		h       http.HandlerFunc
		body    string
		code    int    // status the client sees
		class   string // code label
		bytesIn float64
		out     float64
	}{
		{"201 with body", func(w http.ResponseWriter, r *http.Request) {
			b, _ := io.ReadAll(r.Body)
			w.WriteHeader(http.StatusCreated)
			w.Write([]byte("stored " + string(b)))
		}, "shard-data", 201, "2xx", 10, 17},
		{"nothing written", func(http.ResponseWriter, *http.Request) {}, "", 200, "2xx", 0, 0},
		{"body without WriteHeader", func(w http.ResponseWriter, r *http.Request) {
			io.WriteString(w, "hello")
		}, "", 200, "2xx", 0, 5},
		{"io.Copy response", func(w http.ResponseWriter, r *http.Request) {
			io.Copy(w, io.LimitReader(strings.NewReader(strings.Repeat("x", 100000)), 70000))
		}, "", 200, "2xx", 0, 70000},
		{"404", func(w http.ResponseWriter, r *http.Request) {
			http.Error(w, "no such shard", http.StatusNotFound)
		}, "", 404, "4xx", 0, float64(len("no such shard\n"))},
		{"400 after partial read", func(w http.ResponseWriter, r *http.Request) {
			io.ReadFull(r.Body, make([]byte, 4))
			w.WriteHeader(http.StatusBadRequest)
		}, "0123456789", 400, "4xx", 4, 0},
		{"500", func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(http.StatusInternalServerError)
			w.WriteHeader(http.StatusOK) // superfluous, ignored
		}, "", 500, "5xx", 0, 0},
		{"503 after 103 early hints", func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(http.StatusEarlyHints)
			w.WriteHeader(http.StatusServiceUnavailable)
		}, "", 503, "5xx", 0, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := New("p1")
			srv := httptest.NewServer(m.Instrument("put_shard", tt.h))
			defer srv.Close()
			for range 2 {
				res, err := http.Post(srv.URL, "application/octet-stream", strings.NewReader(tt.body))
				if err != nil {
					t.Fatal(err)
				}
				io.Copy(io.Discard, res.Body)
				res.Body.Close()
				if got, want := res.StatusCode, tt.code; got != want {
					t.Fatalf("status = %d, want %d", got, want)
				}
			}
			checkSamples(t, scrape(t, m), map[string]float64{
				`reef_http_requests_total{code="` + tt.class + `",op="put_shard",peer="p1"}`:                 2,
				`reef_http_request_duration_seconds_count{code="` + tt.class + `",op="put_shard",peer="p1"}`: 2,
				`reef_http_request_bytes_total{op="put_shard",peer="p1"}`:                                    2 * tt.bytesIn,
				`reef_http_response_bytes_total{op="put_shard",peer="p1"}`:                                   2 * tt.out,
				`reef_http_requests_in_flight{op="put_shard",peer="p1"}`:                                     0,
			})
			for _, c := range []string{"2xx", "4xx", "5xx"} {
				if c == tt.class {
					continue
				}
				k := `reef_http_requests_total{code="` + c + `",op="put_shard",peer="p1"}`
				if got := scrape(t, m)[k]; got != 0 {
					t.Errorf("%s = %v, want 0", k, got)
				}
			}
		})
	}
}

func TestInstrumentPanic(t *testing.T) {
	m := New("p1")
	h := m.Instrument("get_shard", func(http.ResponseWriter, *http.Request) { panic("boom") })
	func() {
		defer func() {
			if r := recover(); r != "boom" {
				t.Errorf("recover() = %v, want boom", r)
			}
		}()
		h(httptest.NewRecorder(), httptest.NewRequest("GET", "/", nil))
	}()
	checkSamples(t, scrape(t, m), map[string]float64{
		`reef_http_requests_total{code="5xx",op="get_shard",peer="p1"}`: 1,
		`reef_http_requests_total{code="2xx",op="get_shard",peer="p1"}`: 0,
		`reef_http_requests_in_flight{op="get_shard",peer="p1"}`:        0,
	})
}

// TestInstrumentResponseController checks that the wrapped writer still
// reaches the server's writer through http.ResponseController.
func TestInstrumentResponseController(t *testing.T) {
	m := New("p1")
	h := m.Instrument("get_file", func(w http.ResponseWriter, r *http.Request) {
		rc := http.NewResponseController(w)
		var errs []string
		if err := rc.SetReadDeadline(time.Now().Add(time.Minute)); err != nil {
			errs = append(errs, "SetReadDeadline: "+err.Error())
		}
		if err := rc.SetWriteDeadline(time.Now().Add(time.Minute)); err != nil {
			errs = append(errs, "SetWriteDeadline: "+err.Error())
		}
		if err := rc.EnableFullDuplex(); err != nil {
			errs = append(errs, "EnableFullDuplex: "+err.Error())
		}
		if _, ok := w.(http.Flusher); !ok {
			errs = append(errs, "not an http.Flusher")
		}
		io.WriteString(w, "part1;")
		if err := rc.Flush(); err != nil {
			errs = append(errs, "Flush: "+err.Error())
		}
		io.WriteString(w, strings.Join(errs, ";"))
	})
	srv := httptest.NewServer(h)
	defer srv.Close()
	res, err := http.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(res.Body)
	res.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	if got, want := string(b), "part1;"; got != want {
		t.Errorf("body = %q, want %q", got, want)
	}
	// Flush sends the header early: the response is chunked.
	if got, want := res.TransferEncoding, []string{"chunked"}; len(got) != 1 || got[0] != want[0] {
		t.Errorf("TransferEncoding = %v, want %v", got, want)
	}

	// Control: under a writer without deadlines the error is ErrNotSupported,
	// so the check above is not vacuous.
	var err2 error
	m.Instrument("get_file", func(w http.ResponseWriter, r *http.Request) {
		err2 = http.NewResponseController(w).SetReadDeadline(time.Now())
	})(httptest.NewRecorder(), httptest.NewRequest("GET", "/", nil))
	if !errors.Is(err2, http.ErrNotSupported) {
		t.Errorf("SetReadDeadline on a ResponseRecorder = %v, want ErrNotSupported", err2)
	}
}

func TestTwoPeers(t *testing.T) {
	a, b := New("a"), New("b")
	a.SetStored(1, 10)
	b.SetStored(2, 20)
	a.Instrument("status", func(http.ResponseWriter, *http.Request) {})(httptest.NewRecorder(), httptest.NewRequest("GET", "/", nil))

	ga, gb := scrape(t, a), scrape(t, b)
	checkSamples(t, ga, map[string]float64{
		`reef_shards_stored{peer="a"}`:                              1,
		`reef_bytes_stored{peer="a"}`:                               10,
		`reef_http_requests_total{code="2xx",op="status",peer="a"}`: 1,
	})
	checkSamples(t, gb, map[string]float64{
		`reef_shards_stored{peer="b"}`: 2,
		`reef_bytes_stored{peer="b"}`:  20,
	})
	for k := range ga {
		if !strings.Contains(k, `peer="a"`) {
			t.Errorf("peer a exports %s", k)
		}
	}
	for k := range gb {
		if !strings.Contains(k, `peer="b"`) {
			t.Errorf("peer b exports %s", k)
		}
		if strings.HasPrefix(k, "reef_http_requests_total") {
			t.Errorf("peer b exports %s, recorded by peer a", k)
		}
	}
}

func TestSettersDoNotAllocate(t *testing.T) {
	m := New("p1")
	err := errors.New("x")
	for _, tt := range []struct {
		name string
		f    func()
	}{
		{"SetStored", func() { m.SetStored(1, 2) }},
		{"SetHealth", func() { m.SetHealth(1, 2, 3, 4) }},
		{"SetRepairQueue", func() { m.SetRepairQueue(1) }},
		{"AddRepaired", func() { m.AddRepaired(1, 2, 3) }},
		{"SetScrubProgress", func() { m.SetScrubProgress(1, 2) }},
		{"AddScrubbed", func() { m.AddScrubbed(1, 2, 3) }},
		{"AddRebalanced", func() { m.AddRebalanced(1, 2) }},
		{"ObserveStore", func() { m.ObserveStore("get_chunk", 0.001, err) }},
		{"SetMembers", func() { m.SetMembers(1, 2, 3, 4) }},
	} {
		if got := testing.AllocsPerRun(100, tt.f); got != 0 {
			t.Errorf("%s: %v allocs per call, want 0", tt.name, got)
		}
	}
}

func BenchmarkInstrument(b *testing.B) {
	m := New("p1")
	h := m.Instrument("get_shard", func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusOK)
	})
	w := httptest.NewRecorder()
	r := httptest.NewRequest("GET", "/", nil)
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		h(w, r)
	}
}
