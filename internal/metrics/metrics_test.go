package metrics

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"
)

func scrape(t *testing.T, r *Registry) string {
	t.Helper()
	var b strings.Builder
	n, err := r.WriteTo(&b)
	if err != nil {
		t.Fatal(err)
	}
	if int(n) != b.Len() {
		t.Fatalf("WriteTo reported %d bytes, wrote %d", n, b.Len())
	}
	return b.String()
}

func TestExposition(t *testing.T) {
	r := NewRegistry()
	c := r.Counter("b_total", "Things counted.")
	c.Add(41)
	c.Inc()
	g := r.Gauge("a_gauge", "A gauge with a \\ and a\nnewline.")
	g.Set(2.5)
	g.Dec()
	r.GaugeFunc("c_func", "Read at scrape time.", func() float64 { return math.Inf(1) })
	r.CounterFunc("d_func_total", "A counter read at scrape time.", func() float64 { return 1e6 })
	v := r.CounterVec("e_requests_total", "Requests.", []string{"route", "status"}, 10)
	v.With("/b", "200").Add(3)
	v.With("/a", "404").Inc()
	v.With("/q\"x\\y\nz", "500").Inc()
	want := `# HELP a_gauge A gauge with a \\ and a\nnewline.
# TYPE a_gauge gauge
a_gauge 1.5
# HELP b_total Things counted.
# TYPE b_total counter
b_total 42
# HELP c_func Read at scrape time.
# TYPE c_func gauge
c_func +Inf
# HELP d_func_total A counter read at scrape time.
# TYPE d_func_total counter
d_func_total 1e+06
# HELP e_requests_total Requests.
# TYPE e_requests_total counter
e_requests_total{route="/a",status="404"} 1
e_requests_total{route="/b",status="200"} 3
e_requests_total{route="/q\"x\\y\nz",status="500"} 1
`
	if got := scrape(t, r); got != want {
		t.Fatalf("got:\n%s\nwant:\n%s", got, want)
	}
	if c.Value() != 42 || g.Value() != 1.5 {
		t.Fatalf("values %d %v", c.Value(), g.Value())
	}
}

// TestFormatParses checks every sample line against the grammar of the
// text format: name{labels} value, with a value Go can parse back.
func TestFormatParses(t *testing.T) {
	r := NewRegistry()
	RegisterRuntime(r)
	r.Gauge("nan_gauge", "x").Set(math.NaN())
	v := r.CounterVec("v_total", "x", []string{"l"}, 3)
	v.With("\xff\xfe bad utf8").Inc()
	v.With(strings.Repeat("é", 200)).Inc()
	sc := bufio.NewScanner(strings.NewReader(scrape(t, r)))
	samples := 0
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "# HELP ") || strings.HasPrefix(line, "# TYPE ") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			t.Fatalf("no value in %q", line)
		}
		var f float64
		val := line[i+1:]
		if val != "NaN" && val != "+Inf" && val != "-Inf" {
			if _, err := fmt.Sscan(val, &f); err != nil {
				t.Fatalf("value of %q: %v", line, err)
			}
		}
		if !strings.ContainsRune(line[:i], '{') && !validName(line[:i], true) {
			t.Fatalf("bad name in %q", line)
		}
		if !utf8.ValidString(line) {
			t.Fatalf("invalid UTF-8 in %q", line)
		}
		samples++
	}
	if samples != 5 {
		t.Fatalf("got %d samples", samples)
	}
}

func TestCounterVecBound(t *testing.T) {
	r := NewRegistry()
	v := r.CounterVec("bounded_total", "x", []string{"a", "b"}, 2)
	v.With("1", "x").Inc()
	v.With("2", "x").Inc()
	if v.Overflowed() {
		t.Fatal("overflow before the bound")
	}
	for i := range 1000 {
		v.With(fmt.Sprint(i+3), "y").Inc()
	}
	v.With("1", "x").Inc()
	out := scrape(t, r)
	if strings.Count(out, "bounded_total{") != 3 {
		t.Fatalf("want 2 series and the overflow:\n%s", out)
	}
	if !strings.Contains(out, `bounded_total{a="_other",b="_other"} 1000`) || !strings.Contains(out, `bounded_total{a="1",b="x"} 2`) {
		t.Fatalf("got:\n%s", out)
	}
	if !v.Overflowed() {
		t.Fatal("Overflowed false")
	}
	// Missing values are empty, extra ones ignored.
	w := r.CounterVec("w_total", "x", []string{"a", "b"}, 5)
	w.With("only").Inc()
	w.With("p", "q", "extra").Inc()
	out = scrape(t, r)
	if !strings.Contains(out, `w_total{a="only",b=""} 1`) || !strings.Contains(out, `w_total{a="p",b="q"} 1`) {
		t.Fatalf("got:\n%s", out)
	}
}

func TestRegistrationPanics(t *testing.T) {
	r := NewRegistry()
	r.Counter("ok_total", "x")
	for name, f := range map[string]func(){
		"duplicate":     func() { r.Gauge("ok_total", "x") },
		"bad name":      func() { r.Counter("1abc", "x") },
		"space":         func() { r.Counter("a b", "x") },
		"no labels":     func() { r.CounterVec("v1", "x", nil, 1) },
		"bad label":     func() { r.CounterVec("v2", "x", []string{"a:b"}, 1) },
		"reserved":      func() { r.CounterVec("v3", "x", []string{"__name"}, 1) },
		"repeated":      func() { r.CounterVec("v4", "x", []string{"a", "a"}, 1) },
		"empty metric":  func() { r.Gauge("", "x") },
		"empty label":   func() { r.CounterVec("v5", "x", []string{""}, 1) },
		"digit label 0": func() { r.CounterVec("v6", "x", []string{"0a"}, 1) },
	} {
		t.Run(name, func(t *testing.T) {
			defer func() {
				if recover() == nil {
					t.Fatal("no panic")
				}
			}()
			f()
		})
	}
	r.Counter("ns:sub_total", "colons are allowed in metric names")
}

func TestConcurrentUpdates(t *testing.T) {
	r := NewRegistry()
	c := r.Counter("c_total", "x")
	g := r.Gauge("g", "x")
	v := r.CounterVec("v_total", "x", []string{"k"}, 4)
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 1000 {
				c.Inc()
				g.Add(1)
				v.With(fmt.Sprint((w + i) % 6)).Inc()
				if i%100 == 0 {
					_, _ = r.WriteTo(io.Discard)
				}
			}
		}()
	}
	wg.Wait()
	if c.Value() != 8000 || g.Value() != 8000 {
		t.Fatalf("counter %d gauge %v", c.Value(), g.Value())
	}
	var sum uint64
	v.mu.RLock()
	for _, s := range v.series {
		sum += s.c.Value()
	}
	sum += v.overflow.c.Value()
	v.mu.RUnlock()
	if sum != 8000 {
		t.Fatalf("vec sum %d", sum)
	}
}

func TestHandler(t *testing.T) {
	r := NewRegistry()
	r.Counter("x_total", "x").Inc()
	h := r.Handler()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	if rec.Code != 200 || rec.Header().Get("Content-Type") != ContentType || !strings.Contains(rec.Body.String(), "x_total 1\n") {
		t.Fatalf("GET: %d %q %q", rec.Code, rec.Header().Get("Content-Type"), rec.Body.String())
	}
	rec = httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodHead, "/metrics", nil))
	if rec.Code != 200 || rec.Body.Len() != 0 {
		t.Fatalf("HEAD: %d %q", rec.Code, rec.Body.String())
	}
	rec = httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/metrics", nil))
	if rec.Code != http.StatusMethodNotAllowed {
		t.Fatalf("POST: %d", rec.Code)
	}
}

func TestWriteError(t *testing.T) {
	r := NewRegistry()
	r.Counter("x_total", strings.Repeat("h", 10000)).Inc()
	if _, err := r.WriteTo(failWriter{}); err == nil {
		t.Fatal("expected an error")
	}
}

type failWriter struct{}

func (failWriter) Write([]byte) (int, error) { return 0, io.ErrClosedPipe }

func BenchmarkCounterVecWith(b *testing.B) {
	r := NewRegistry()
	v := r.CounterVec("b_total", "x", []string{"route", "method", "status"}, 100)
	b.ReportAllocs()
	for b.Loop() {
		v.With("/models/:id/values", "GET", "200").Inc()
	}
}

// FuzzLabelValue: any label value is written so that unescaping the
// exposition gives back the stored (cut, valid UTF-8) value, on one line.
func FuzzLabelValue(f *testing.F) {
	for _, s := range []string{"", "/models/:id", "a\"b\\c\nd", "\xff", strings.Repeat("é", 200)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, v string) {
		r := NewRegistry()
		r.CounterVec("f_total", "x", []string{"l"}, 1).With(v).Inc()
		out := scrape(t, r)
		line := out[strings.Index(out, "f_total{"):]
		if strings.Count(line, "\n") != 1 || !strings.HasSuffix(line, "} 1\n") {
			t.Fatalf("sample %q", line)
		}
		esc := strings.TrimSuffix(strings.TrimPrefix(line, `f_total{l="`), "\"} 1\n")
		got := strings.NewReplacer(`\\`, `\`, `\"`, `"`, `\n`, "\n").Replace(esc)
		if want := strings.ToValidUTF8(cut(v), "\uFFFD"); got != want || !utf8.ValidString(line) {
			t.Fatalf("value %q written as %q", v, esc)
		}
	})
}

func TestServe(t *testing.T) {
	r := NewRegistry()
	r.Counter("served_total", "x").Add(3)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	addrc := make(chan net.Addr, 1)
	done := make(chan error, 1)
	go func() { done <- Serve(ctx, "127.0.0.1:0", r, func(a net.Addr) { addrc <- a }) }()
	addr := <-addrc
	hc := &http.Client{Timeout: 20 * time.Second}
	resp, err := hc.Get("http://" + addr.String() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(b), "served_total 3\n") {
		t.Fatalf("%d %s", resp.StatusCode, b)
	}
	if resp, err := hc.Get("http://" + addr.String() + "/other"); err != nil || resp.StatusCode != 404 {
		t.Fatalf("other path: %v %v", resp, err)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("Serve did not return")
	}
	if err := Serve(context.Background(), "256.0.0.1:x", r, nil); err == nil {
		t.Fatal("bad address accepted")
	}
}

func TestCollect(t *testing.T) {
	r := NewRegistry()
	r.Counter("a_total", "A.").Inc()
	r.Collect(func(w io.Writer) error {
		_, err := io.WriteString(w, "# HELP b_total B.\n# TYPE b_total counter\nb_total{target=\"x\"} 2\n")
		return err
	})
	var sb strings.Builder
	if _, err := r.WriteTo(&sb); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(sb.String(), "a_total 1\n") || !strings.HasSuffix(sb.String(), "b_total{target=\"x\"} 2\n") {
		t.Fatalf("%s", sb.String())
	}
}
