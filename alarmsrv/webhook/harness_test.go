package webhook

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/redis/rueidis"

	"github.com/voltedge/voltedge/internal/alerting"
	"github.com/voltedge/voltedge/internal/conf"
	"github.com/voltedge/voltedge/internal/keys"
	"github.com/voltedge/voltedge/internal/redistest"
)

// request is one request a receiver saw.
type request struct {
	ID   string
	Body string
	At   time.Time
	Head http.Header
}

// receiver is a real HTTP server on a fixed loopback port; it can be
// closed and opened again on the same port.
type receiver struct {
	t    testing.TB
	addr string

	mu      sync.Mutex
	srv     *http.Server
	reqs    []request
	answer  func(r request, n int) (status int, header map[string]string) // n: how many times this id was seen before
	seen    map[string]int
	delay   time.Duration
	okCount int
}

func newReceiver(t testing.TB) *receiver {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r := &receiver{t: t, addr: l.Addr().String(), seen: map[string]int{}}
	r.serve(l)
	t.Cleanup(r.close)
	return r
}

func (r *receiver) url() string { return "http://" + r.addr + "/hook" }

func (r *receiver) serve(l net.Listener) {
	srv := &http.Server{Handler: http.HandlerFunc(r.handle), ReadHeaderTimeout: 5 * time.Second}
	r.mu.Lock()
	r.srv = srv
	r.mu.Unlock()
	go func() { _ = srv.Serve(l) }()
}

// close stops listening (connections are refused).
func (r *receiver) close() {
	r.mu.Lock()
	srv := r.srv
	r.srv = nil
	r.mu.Unlock()
	if srv != nil {
		_ = srv.Close()
	}
}

// open listens again on the same port.
func (r *receiver) open() {
	var l net.Listener
	var err error
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if l, err = net.Listen("tcp", r.addr); err == nil {
			r.serve(l)
			return
		}
	}
	r.t.Fatalf("listen again on %s: %v", r.addr, err)
}

func (r *receiver) handle(w http.ResponseWriter, hr *http.Request) {
	b, _ := io.ReadAll(hr.Body)
	req := request{ID: hr.Header.Get(alerting.HeaderID), Body: string(b), At: time.Now(), Head: hr.Header.Clone()}
	r.mu.Lock()
	n := r.seen[req.ID]
	r.seen[req.ID]++
	answer, delay := r.answer, r.delay
	r.mu.Unlock()
	if delay > 0 {
		time.Sleep(delay)
	}
	status, header := 200, map[string]string(nil)
	if answer != nil {
		status, header = answer(req, n)
	}
	r.mu.Lock()
	r.reqs = append(r.reqs, req)
	if status >= 200 && status < 300 {
		r.okCount++
	}
	r.mu.Unlock()
	for k, v := range header {
		w.Header().Set(k, v)
	}
	w.WriteHeader(status)
}

func (r *receiver) setAnswer(f func(req request, n int) (int, map[string]string)) {
	r.mu.Lock()
	r.answer = f
	r.mu.Unlock()
}

func (r *receiver) requests() []request {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]request(nil), r.reqs...)
}

// times returns how many requests came for each id.
func (r *receiver) times() map[string]int {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make(map[string]int, len(r.seen))
	for k, v := range r.seen {
		out[k] = v
	}
	return out
}

func durations(ds ...time.Duration) []conf.Duration {
	out := make([]conf.Duration, len(ds))
	for i, d := range ds {
		out[i] = conf.Duration{Duration: d}
	}
	return out
}

// putTarget stores t in keys.WebhookTargets.
func putTarget(t testing.TB, c rueidis.Client, tg alerting.Target) {
	t.Helper()
	if err := tg.Validate(); err != nil {
		t.Fatal(err)
	}
	js, _ := json.Marshal(tg)
	redistest.Do(t, c, "HSET", keys.WebhookTargets, tg.ID, string(js))
}

func getTarget(t testing.TB, c rueidis.Client, id string) alerting.Target {
	t.Helper()
	js, err := redistest.Do(t, c, "HGET", keys.WebhookTargets, id).ToString()
	if err != nil {
		t.Fatalf("target %s: %v", id, err)
	}
	tg, err := alerting.ParseTarget(id, []byte(js))
	if err != nil {
		t.Fatal(err)
	}
	return tg
}

// running is an engine under test.
type running struct {
	*Engine
	cancel context.CancelFunc
	done   chan struct{}
	events chan OperatorEvent
}

func startEngine(t testing.TB, c rueidis.Client, opt Options) *running {
	t.Helper()
	if opt.Reload == 0 {
		opt.Reload = 100 * time.Millisecond
	}
	if opt.Log == nil && os.Getenv("WEBHOOK_TEST_LOG") == "" {
		opt.Log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	r := &running{cancel: func() {}, done: make(chan struct{}), events: make(chan OperatorEvent, 100)}
	opt.OnEvent = func(ev OperatorEvent) { r.events <- ev }
	r.Engine = New(c, opt)
	ctx, cancel := context.WithCancel(context.Background())
	r.cancel = cancel
	go func() {
		defer close(r.done)
		_ = r.Run(ctx)
	}()
	t.Cleanup(r.stop)
	return r
}

func (r *running) stop() {
	r.cancel()
	<-r.done
}

func (r *running) enqueue(t testing.TB, target, id, key, body string) {
	t.Helper()
	if err := r.Enqueue(context.Background(), Delivery{ID: id, Target: target, Key: key, Body: []byte(body)}); err != nil {
		t.Fatalf("enqueue %s: %v", id, err)
	}
}

// waitFor polls cond until it holds or the timeout passes.
func waitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func stats(t testing.TB, c rueidis.Client, target string) alerting.TargetStats {
	t.Helper()
	s, err := alerting.ReadStats(context.Background(), c, target)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// watchReconcile reads the targets' counters every few milliseconds until
// the test ends and fails it if they ever do not reconcile.
func watchReconcile(t testing.TB, c rueidis.Client, targets ...string) (checks func() int) {
	ctx, cancel := context.WithCancel(context.Background())
	var mu sync.Mutex
	n := 0
	done := make(chan struct{})
	go func() {
		defer close(done)
		for ctx.Err() == nil {
			for _, tg := range targets {
				s, err := alerting.ReadStats(ctx, c, tg)
				if err != nil {
					continue // Redis restarting
				}
				if !s.Reconciles() {
					t.Errorf("counters do not reconcile: %+v", s)
					return
				}
				mu.Lock()
				n++
				mu.Unlock()
			}
			time.Sleep(3 * time.Millisecond)
		}
	}()
	t.Cleanup(func() { cancel(); <-done })
	return func() int { mu.Lock(); defer mu.Unlock(); return n }
}

func target(id, url string, schedule ...time.Duration) alerting.Target {
	tg := alerting.Target{ID: id, URL: url, Enabled: true, Jitter: -1}
	if len(schedule) > 0 {
		tg.Schedule = durations(schedule...)
	}
	return tg
}

func ids(prefix string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("%s-%04d", prefix, i)
	}
	return out
}
