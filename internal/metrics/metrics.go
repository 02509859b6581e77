// Package metrics is a small registry of counters and gauges exposed in the
// Prometheus text format (version 0.0.4), for the /metrics endpoint of every
// VoltEdge service.
//
// It has what the services need and nothing more: counters, gauges, values
// read at scrape time (CounterFunc, GaugeFunc) and labelled counters whose
// number of label sets is bounded, so that values from the network can
// never grow the registry without limit. Updates are lock-free atomics;
// a labelled counter takes a read lock to find its series.
//
//	reg := metrics.NewRegistry()
//	reqs := reg.CounterVec("modsrv_http_requests_total", "HTTP requests.", []string{"route", "status"}, 500)
//	reqs.With("/models", "200").Inc()
//	http.Handle("/metrics", reg.Handler())
//
// Registering a name twice, or an invalid metric or label name, is a
// programming error and panics.
package metrics

import (
	"bufio"
	"fmt"
	"io"
	"math"
	"net/http"
	"runtime"
	rtmetrics "runtime/metrics"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
)

// ContentType is the media type of the text exposition format.
const ContentType = "text/plain; version=0.0.4; charset=utf-8"

// OverflowValue is the label value of the series that collects the updates
// of label sets beyond a CounterVec's bound.
const OverflowValue = "_other"

// maxLabelValue bounds the length of one label value; longer values are cut.
const maxLabelValue = 256

// Registry holds named metrics. It is safe for concurrent use.
type Registry struct {
	mu      sync.RWMutex
	metrics map[string]metric
	extra   []func(io.Writer) error // see Collect
}

// metric is one registered family.
type metric interface {
	kind() string
	help() string
	write(w *bufio.Writer, name string)
}

// NewRegistry returns an empty registry.
func NewRegistry() *Registry {
	return &Registry{metrics: make(map[string]metric)}
}

func (r *Registry) register(name string, m metric) {
	if !validName(name, true) {
		panic(fmt.Sprintf("metrics: invalid metric name %q", name))
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, dup := r.metrics[name]; dup {
		panic(fmt.Sprintf("metrics: %q registered twice", name))
	}
	r.metrics[name] = m
}

// Counter registers and returns a counter (a value that only goes up).
func (r *Registry) Counter(name, help string) *Counter {
	c := &Counter{h: help}
	r.register(name, c)
	return c
}

// Gauge registers and returns a gauge (a value that goes up and down).
func (r *Registry) Gauge(name, help string) *Gauge {
	g := &Gauge{h: help}
	r.register(name, g)
	return g
}

// CounterFunc registers a counter whose value f returns at each scrape.
// f must be safe for concurrent use and quick.
func (r *Registry) CounterFunc(name, help string, f func() float64) {
	r.register(name, &funcMetric{k: "counter", h: help, f: f})
}

// GaugeFunc registers a gauge whose value f returns at each scrape.
// f must be safe for concurrent use and quick.
func (r *Registry) GaugeFunc(name, help string, f func() float64) {
	r.register(name, &funcMetric{k: "gauge", h: help, f: f})
}

// CounterVec registers a family of counters told apart by the values of
// labels. At most maxSeries label sets get their own series; updates of
// further sets go to one series whose labels are all OverflowValue.
// maxSeries below 1 means 1.
func (r *Registry) CounterVec(name, help string, labels []string, maxSeries int) *CounterVec {
	if len(labels) == 0 {
		panic(fmt.Sprintf("metrics: %q: a CounterVec needs labels", name))
	}
	for i, l := range labels {
		if !validName(l, false) || strings.HasPrefix(l, "__") || slices.Contains(labels[:i], l) {
			panic(fmt.Sprintf("metrics: %q: invalid or repeated label name %q", name, l))
		}
	}
	v := &CounterVec{h: help, labels: slices.Clone(labels), max: max(maxSeries, 1), series: make(map[string]*series)}
	r.register(name, v)
	return v
}

// WriteTo writes every metric in the text format, sorted by name.
func (r *Registry) WriteTo(w io.Writer) (int64, error) {
	r.mu.RLock()
	names := make([]string, 0, len(r.metrics))
	for n := range r.metrics {
		names = append(names, n)
	}
	ms := make([]metric, len(names))
	slices.Sort(names)
	for i, n := range names {
		ms[i] = r.metrics[n]
	}
	r.mu.RUnlock()
	extra := slices.Clone(r.extra)
	cw := &countWriter{w: w}
	bw := bufio.NewWriterSize(cw, 4096)
	for i, m := range ms {
		bw.WriteString("# HELP ")
		bw.WriteString(names[i])
		bw.WriteByte(' ')
		bw.WriteString(escapeHelp(m.help()))
		bw.WriteString("\n# TYPE ")
		bw.WriteString(names[i])
		bw.WriteByte(' ')
		bw.WriteString(m.kind())
		bw.WriteByte('\n')
		m.write(bw, names[i])
	}
	for _, f := range extra {
		if err := f(bw); err != nil {
			return cw.n, fmt.Errorf("write metrics: %w", err)
		}
	}
	err := bw.Flush()
	if err != nil {
		err = fmt.Errorf("write metrics: %w", err)
	}
	return cw.n, err
}

// Collect adds f, which writes metrics in the text format itself (with
// their HELP and TYPE lines), after the registry's own at every scrape: for
// families read from elsewhere at scrape time, such as the webhook
// counters kept in Redis. Its names must not clash with registered ones.
func (r *Registry) Collect(f func(io.Writer) error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.extra = append(r.extra, f)
}

// Handler serves the registry over net/http (GET and HEAD).
func (r *Registry) Handler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if req.Method != http.MethodGet && req.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		w.Header().Set("Content-Type", ContentType)
		if req.Method == http.MethodHead {
			return
		}
		_, _ = r.WriteTo(w)
	})
}

// RegisterRuntime adds the Go runtime's gauges: go_goroutines and
// go_heap_objects_bytes (live and not yet swept heap objects).
func RegisterRuntime(r *Registry) {
	r.GaugeFunc("go_goroutines", "Number of goroutines that currently exist.", func() float64 {
		return float64(runtime.NumGoroutine())
	})
	r.GaugeFunc("go_heap_objects_bytes", "Bytes of heap memory occupied by objects.", func() float64 {
		s := []rtmetrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
		rtmetrics.Read(s)
		if s[0].Value.Kind() != rtmetrics.KindUint64 {
			return math.NaN()
		}
		return float64(s[0].Value.Uint64())
	})
}

// Counter is a monotonically increasing count.
type Counter struct {
	v atomic.Uint64
	h string
}

// Inc adds one.
func (c *Counter) Inc() { c.v.Add(1) }

// Add adds n.
func (c *Counter) Add(n uint64) { c.v.Add(n) }

// Value returns the current count.
func (c *Counter) Value() uint64 { return c.v.Load() }

func (c *Counter) kind() string { return "counter" }
func (c *Counter) help() string { return c.h }
func (c *Counter) write(w *bufio.Writer, name string) {
	w.WriteString(name)
	w.WriteByte(' ')
	w.WriteString(strconv.FormatUint(c.v.Load(), 10))
	w.WriteByte('\n')
}

// Gauge is a value that can go up and down.
type Gauge struct {
	bits atomic.Uint64
	h    string
}

// Set sets the gauge to v.
func (g *Gauge) Set(v float64) { g.bits.Store(math.Float64bits(v)) }

// Add adds d (which may be negative).
func (g *Gauge) Add(d float64) {
	for {
		old := g.bits.Load()
		if g.bits.CompareAndSwap(old, math.Float64bits(math.Float64frombits(old)+d)) {
			return
		}
	}
}

// Inc adds one.
func (g *Gauge) Inc() { g.Add(1) }

// Dec subtracts one.
func (g *Gauge) Dec() { g.Add(-1) }

// Value returns the current value.
func (g *Gauge) Value() float64 { return math.Float64frombits(g.bits.Load()) }

func (g *Gauge) kind() string { return "gauge" }
func (g *Gauge) help() string { return g.h }
func (g *Gauge) write(w *bufio.Writer, name string) {
	w.WriteString(name)
	w.WriteByte(' ')
	w.WriteString(formatFloat(g.Value()))
	w.WriteByte('\n')
}

// funcMetric is a counter or gauge read at scrape time.
type funcMetric struct {
	k, h string
	f    func() float64
}

func (m *funcMetric) kind() string { return m.k }
func (m *funcMetric) help() string { return m.h }
func (m *funcMetric) write(w *bufio.Writer, name string) {
	w.WriteString(name)
	w.WriteByte(' ')
	w.WriteString(formatFloat(m.f()))
	w.WriteByte('\n')
}

// CounterVec is a family of counters with labels and a bounded number of series.
type CounterVec struct {
	h      string
	labels []string
	max    int

	mu       sync.RWMutex
	series   map[string]*series // key: label values joined by 0xff
	overflow *series
}

type series struct {
	values []string
	c      Counter
}

// With returns the counter of the given label values, one per label in the
// order of registration (missing values are empty, extra ones ignored).
// Values longer than 256 bytes are cut, invalid UTF-8 is replaced. Once the bound is reached, new
// label sets share the overflow series.
func (v *CounterVec) With(values ...string) *Counter {
	var buf [192]byte
	key := buf[:0]
	for i := range v.labels {
		if i > 0 {
			key = append(key, 0xff)
		}
		if i < len(values) {
			key = append(key, cut(values[i])...)
		}
	}
	v.mu.RLock()
	s, ok := v.series[string(key)]
	v.mu.RUnlock()
	if ok {
		return &s.c
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	if s, ok := v.series[string(key)]; ok {
		return &s.c
	}
	if len(v.series) >= v.max {
		if v.overflow == nil {
			vals := make([]string, len(v.labels))
			for i := range vals {
				vals[i] = OverflowValue
			}
			v.overflow = &series{values: vals}
		}
		return &v.overflow.c
	}
	vals := make([]string, len(v.labels))
	for i := range vals {
		if i < len(values) {
			vals[i] = strings.ToValidUTF8(strings.Clone(cut(values[i])), "\uFFFD")
		}
	}
	s = &series{values: vals}
	v.series[string(key)] = s
	return &s.c
}

// Overflowed reports whether updates went to the overflow series.
func (v *CounterVec) Overflowed() bool {
	v.mu.RLock()
	defer v.mu.RUnlock()
	return v.overflow != nil
}

func (v *CounterVec) kind() string { return "counter" }
func (v *CounterVec) help() string { return v.h }
func (v *CounterVec) write(w *bufio.Writer, name string) {
	v.mu.RLock()
	all := make([]*series, 0, len(v.series)+1)
	for _, s := range v.series {
		all = append(all, s)
	}
	if v.overflow != nil {
		all = append(all, v.overflow)
	}
	v.mu.RUnlock()
	slices.SortFunc(all, func(a, b *series) int { return slices.Compare(a.values, b.values) })
	for _, s := range all {
		w.WriteString(name)
		w.WriteByte('{')
		for i, l := range v.labels {
			if i > 0 {
				w.WriteByte(',')
			}
			w.WriteString(l)
			w.WriteString(`="`)
			writeLabelValue(w, s.values[i])
			w.WriteByte('"')
		}
		w.WriteString("} ")
		w.WriteString(strconv.FormatUint(s.c.Value(), 10))
		w.WriteByte('\n')
	}
}

func cut(s string) string {
	if len(s) > maxLabelValue {
		return s[:maxLabelValue]
	}
	return s
}

// validName checks a metric name ([a-zA-Z_:][a-zA-Z0-9_:]*) or, with
// colon false, a label name ([a-zA-Z_][a-zA-Z0-9_]*).
func validName(s string, colon bool) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c == '_':
		case c == ':' && colon:
		case c >= '0' && c <= '9' && i > 0:
		default:
			return false
		}
	}
	return true
}

func formatFloat(v float64) string {
	switch {
	case math.IsNaN(v):
		return "NaN"
	case math.IsInf(v, 1):
		return "+Inf"
	case math.IsInf(v, -1):
		return "-Inf"
	}
	return strconv.FormatFloat(v, 'g', -1, 64)
}

func escapeHelp(s string) string {
	if !strings.ContainsAny(s, "\\\n") {
		return s
	}
	return strings.NewReplacer(`\`, `\\`, "\n", `\n`).Replace(s)
}

func writeLabelValue(w *bufio.Writer, s string) {
	for i := 0; i < len(s); i++ {
		switch c := s[i]; c {
		case '\\':
			w.WriteString(`\\`)
		case '"':
			w.WriteString(`\"`)
		case '\n':
			w.WriteString(`\n`)
		default:
			w.WriteByte(c)
		}
	}
}

type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}
