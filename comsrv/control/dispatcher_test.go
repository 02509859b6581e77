package control

import (
	"bytes"
	"context"
	"log/slog"
	"runtime"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/rueidis"

	"github.com/voltedge/voltedge/internal/contract"
	"github.com/voltedge/voltedge/internal/keys"
	"github.com/voltedge/voltedge/internal/lualib"
	"github.com/voltedge/voltedge/internal/redisconn"
	"github.com/voltedge/voltedge/internal/redistest"
	"github.com/voltedge/voltedge/internal/wait"
	"github.com/voltedge/voltedge/scripts"
)

// patience bounds every wait of these tests: generous, as they run on
// loaded machines; a passing test never waits this long.
const patience = 15 * time.Second

// syncBuffer is a log destination the tests can read while goroutines write.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// recorder is a Target that records what it is given and, unless told
// otherwise, reports each command OK.
type recorder struct {
	r Reporter

	mu       sync.Mutex
	accept   func(attempt int) bool // nil: accept every command
	attempts int
	got      []*contract.Command
}

func newRecorder(r Reporter) *recorder { return &recorder{r: r} }

// acceptIf sets which delivery attempts (0, 1, ...) are accepted.
func (t *recorder) acceptIf(f func(attempt int) bool) {
	t.mu.Lock()
	t.accept = f
	t.mu.Unlock()
}

func (t *recorder) Deliver(c *contract.Command) bool {
	t.mu.Lock()
	n := t.attempts
	t.attempts++
	if t.accept != nil && !t.accept(n) {
		t.mu.Unlock()
		return false
	}
	t.got = append(t.got, c)
	t.mu.Unlock()
	t.r.Report(c, contract.Outcome{Status: contract.OK})
	return true
}

func (t *recorder) ids() []string {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make([]string, len(t.got))
	for i, c := range t.got {
		out[i] = c.ID
	}
	return out
}

// env is a private Redis with the library loaded.
type env struct {
	srv     *redistest.Server
	c       rueidis.Client
	log     *syncBuffer
	results *contract.Results // started by the first result
}

func newEnv(t *testing.T) *env {
	t.Helper()
	srv := redistest.Start(t)
	c := srv.Client(t)
	if _, err := lualib.Ensure(context.Background(), c); err != nil {
		t.Fatal(err)
	}
	redistest.Do(t, c, "HSET", keys.MappingReverse,
		keys.PointRef("pm", "setpoint"), keys.PointRef("1001", "40001"),
		keys.PointRef("pm2", "setpoint"), keys.PointRef("9", "40001"))
	return &env{srv: srv, c: c, log: &syncBuffer{}}
}

func (e *env) dispatcher(opt Options) *Dispatcher {
	return NewDispatcher(e.c, opt, slog.New(slog.NewTextHandler(e.log, &slog.HandlerOptions{Level: slog.LevelDebug})))
}

// run starts d and stops it (waiting for Run to return) when the test ends.
func (e *env) run(t *testing.T, d *Dispatcher) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		d.Run(ctx)
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(patience):
			t.Error("Run did not return after its context ended")
		}
	})
}

// send queues a control through send_control and returns its id.
func (e *env) send(t *testing.T, model, value, ttl string) string {
	t.Helper()
	args := []string{model, "setpoint", value}
	if ttl != "" {
		args = append(args, ttl)
	}
	id, err := e.c.Do(context.Background(), e.c.B().Fcall().Function(scripts.FnSendControl).Numkeys(0).Arg(args...).Build()).AsInt64()
	if err != nil {
		t.Fatalf("send_control %v: %v", args, err)
	}
	return strconv.FormatInt(id, 10)
}

// patternSubscriber returns the id of the client subscribed to keys.CommandPattern, or "".
func (e *env) patternSubscriber(t *testing.T) string {
	t.Helper()
	list, err := e.c.Do(context.Background(), e.c.B().ClientList().Build()).ToString()
	if err != nil {
		t.Fatalf("CLIENT LIST: %v", err)
	}
	for _, line := range strings.Split(list, "\n") {
		if strings.Contains(line, " psub=1 ") {
			for _, f := range strings.Fields(line) {
				if id, ok := strings.CutPrefix(f, "id="); ok {
					return id
				}
			}
		}
	}
	return ""
}

// waitSubscribed waits until a client other than not is subscribed to the command pattern.
func (e *env) waitSubscribed(t *testing.T, not string) string {
	t.Helper()
	var id string
	wait.For(t, patience, "subscription to "+keys.CommandPattern, func() error {
		id = e.patternSubscriber(t)
		return wait.Check(id != "" && id != not, "pattern subscriber %q (the old one is %q)", id, not)
	})
	return id
}

func (e *env) result(t *testing.T, id string) map[string]string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), patience)
	defer cancel()
	if e.results == nil {
		e.results = contract.NewResults(e.c, slog.New(slog.DiscardHandler))
		rctx, stop := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { defer close(done); e.results.Run(rctx) }()
		t.Cleanup(func() { stop(); <-done })
	}
	res, err := e.results.Wait(ctx, id)
	if err != nil {
		t.Fatalf("result of %s: %v", id, err)
	}
	return res.Fields
}

func (e *env) queue(t *testing.T, channel string) []string {
	t.Helper()
	q, err := redistest.Do(t, e.c, "LRANGE", keys.CommandQueue(channel), "0", "-1").AsStrSlice()
	if err != nil {
		t.Fatal(err)
	}
	return q
}

func (e *env) pending(t *testing.T, channel string) bool {
	t.Helper()
	n, _ := redistest.Do(t, e.c, "SISMEMBER", keys.CommandPending, channel).AsInt64()
	return n == 1
}

// TestDeliverOnPublish: with sweeps far apart, a command reaches its target
// through the pub/sub wake-up, and the target's report lands in Redis.
func TestDeliverOnPublish(t *testing.T) {
	e := newEnv(t)
	d := e.dispatcher(Options{SweepInterval: time.Hour})
	rec := newRecorder(d)
	d.Attach("1001", rec)
	e.run(t, d)
	e.waitSubscribed(t, "")

	id := e.send(t, "pm", "12.5", "")
	wait.For(t, patience, "delivery of command "+id, func() error { return wait.Equal(len(rec.ids()), 1) })
	c := rec.got[0]
	if c.ID != id || c.Channel != "1001" || c.Point != "40001" || c.Value != "12.5" || c.Model != "pm" || c.Control != "setpoint" {
		t.Errorf("delivered %+v", c)
	}
	if m := e.result(t, id); m["status"] != "ok" || m["channel"] != "1001" || m["value"] != "12.5" {
		t.Errorf("result = %v", m)
	}

	// Only the message can wake this one: the channel is not in cmd:pending.
	redistest.Do(t, e.c, "LPUSH", keys.CommandQueue("1001"), `{"id":500,"channel":"1001","point":"40001","value":3,"ts":1,"deadline":0}`)
	redistest.Do(t, e.c, "PUBLISH", keys.Command("1001"), "40001:3")
	wait.For(t, patience, "delivery on the message alone", func() error { return wait.Equal(len(rec.ids()), 2) })
	if got := rec.ids(); got[1] != "500" {
		t.Errorf("delivered %v", got)
	}
}

// TestDeliverBySweep: a command whose message was missed is found by the sweep.
func TestDeliverBySweep(t *testing.T) {
	e := newEnv(t)
	d := e.dispatcher(Options{SweepInterval: 50 * time.Millisecond})
	rec := newRecorder(d)
	d.Attach("1001", rec)
	e.run(t, d)
	e.waitSubscribed(t, "")

	redistest.Do(t, e.c, "LPUSH", keys.CommandQueue("1001"), `{"id":7,"channel":"1001","point":"40001","value":1,"ts":1,"deadline":0}`)
	redistest.Do(t, e.c, "SADD", keys.CommandPending, "1001")
	wait.For(t, patience, "delivery by sweep", func() error { return wait.Equal(len(rec.ids()), 1) })
	wait.For(t, patience, "cmd:pending emptied", func() error { return wait.Check(!e.pending(t, "1001"), "1001 still pending") })
	if m := e.result(t, "7"); m["status"] != "ok" {
		t.Errorf("result = %v", m)
	}
}

// TestStartupGrace: the commands of a channel without a target stay queued
// during the grace, however often it is swept.
func TestStartupGrace(t *testing.T) {
	e := newEnv(t)
	id := e.send(t, "pm2", "1", "")
	d := e.dispatcher(Options{StartupGrace: time.Hour, SweepInterval: 20 * time.Millisecond})
	e.run(t, d)
	wait.For(t, patience, "five sweeps", func() error { return wait.Check(d.Stats().Sweeps >= 5, "%d sweeps", d.Stats().Sweeps) })
	if q := e.queue(t, "9"); len(q) != 1 || !e.pending(t, "9") {
		t.Errorf("queue = %v, pending %v: want the command left queued during the grace", q, e.pending(t, "9"))
	}
	if n, _ := redistest.Do(t, e.c, "EXISTS", keys.CommandResult(id)).AsInt64(); n != 0 || d.Stats().Taken != 0 {
		t.Errorf("a result was written (%d) or commands taken (%d) during the grace", n, d.Stats().Taken)
	}

	// A link that attaches during the grace gets its commands at once.
	rec := newRecorder(d)
	d.Attach("9", rec)
	wait.For(t, patience, "delivery after Attach", func() error { return wait.Equal(len(rec.ids()), 1) })
}

// TestOfflineAfterGrace: after the grace, commands of a channel without a
// target are answered offline.
func TestOfflineAfterGrace(t *testing.T) {
	e := newEnv(t)
	id := e.send(t, "pm2", "1", "")
	d := e.dispatcher(Options{StartupGrace: 200 * time.Millisecond, SweepInterval: 50 * time.Millisecond})
	e.run(t, d)
	m := e.result(t, id)
	if m["status"] != "offline" || m["message"] != MsgOffline || m["channel"] != "9" || m["model"] != "pm2" {
		t.Errorf("result = %v", m)
	}
	if q := e.queue(t, "9"); len(q) != 0 || e.pending(t, "9") {
		t.Errorf("queue = %v after the offline answer", q)
	}

	// A detached target no longer gets commands.
	rec := newRecorder(d)
	d.Attach("9", rec)
	d.Detach("9", newRecorder(d)) // not the attached one: ignored
	d.Detach("9", rec)
	id = e.send(t, "pm2", "2", "")
	if m := e.result(t, id); m["status"] != "offline" || len(rec.ids()) != 0 {
		t.Errorf("after Detach: result %v, delivered %v", m, rec.ids())
	}
}

// TestExpired: a command past its deadline is answered expired, never delivered.
func TestExpired(t *testing.T) {
	e := newEnv(t)
	id := e.send(t, "pm", "1", "1")
	time.Sleep(20 * time.Millisecond) // past the 1 ms deadline
	d := e.dispatcher(Options{})
	rec := newRecorder(d)
	d.Attach("1001", rec)
	e.run(t, d)
	if m := e.result(t, id); m["status"] != "expired" || m["message"] != MsgExpired {
		t.Errorf("result = %v", m)
	}
	if got := rec.ids(); len(got) != 0 {
		t.Errorf("expired command delivered: %v", got)
	}
}

// TestOrder: commands are delivered oldest first, across several batches.
func TestOrder(t *testing.T) {
	e := newEnv(t)
	var want []string
	for i := 0; i < 40; i++ {
		want = append(want, e.send(t, "pm", strconv.Itoa(i), ""))
	}
	d := e.dispatcher(Options{Batch: 16})
	rec := newRecorder(d)
	d.Attach("1001", rec)
	e.run(t, d)
	wait.For(t, patience, "40 deliveries", func() error { return wait.Equal(len(rec.ids()), 40) })
	if got := rec.ids(); strings.Join(got, ",") != strings.Join(want, ",") {
		t.Errorf("delivered %v, want %v", got, want)
	}
	if e.pending(t, "1001") {
		t.Error("channel still pending after its queue was drained")
	}
}

// TestLinkBusy: a refused command is answered failed "link busy"; the rest
// of its batch goes back to the queue in order, and the channel is left
// alone, whatever wakes it, until the next periodic sweep or a new target.
func TestLinkBusy(t *testing.T) {
	e := newEnv(t)
	var ids []string
	for i := 0; i < 5; i++ {
		ids = append(ids, e.send(t, "pm", strconv.Itoa(i), ""))
	}
	d := e.dispatcher(Options{SweepInterval: time.Hour})
	rec := newRecorder(d)
	rec.acceptIf(func(n int) bool { return n < 2 })
	d.Attach("1001", rec)
	e.run(t, d)

	if m := e.result(t, ids[2]); m["status"] != "failed" || m["message"] != MsgBusy {
		t.Errorf("refused command: %v", m)
	}
	e.waitSubscribed(t, "")
	redistest.Do(t, e.c, "PUBLISH", keys.Command("1001"), "40001:0") // ignored while busy
	if got := rec.ids(); strings.Join(got, ",") != strings.Join(ids[:2], ",") {
		t.Errorf("delivered %v, want %v", got, ids[:2])
	}
	q := e.queue(t, "1001") // newest first
	if len(q) != 2 || !strings.Contains(q[1], `"id":`+ids[3]+`,`) || !strings.Contains(q[0], `"id":`+ids[4]+`,`) || !e.pending(t, "1001") {
		t.Errorf("queue after the refusal = %v (pending %v)", q, e.pending(t, "1001"))
	}
	if st := d.Stats(); st.Busy != 1 || st.Requeued != 2 || st.Delivered != 2 {
		t.Errorf("stats = %+v", st)
	}

	// A new link for the channel gets the rest at once, in order.
	rec2 := newRecorder(d)
	d.Attach("1001", rec2)
	wait.For(t, patience, "the requeued commands", func() error { return wait.Equal(len(rec2.ids()), 2) })
	if got := rec2.ids(); strings.Join(got, ",") != strings.Join(ids[3:], ",") {
		t.Errorf("delivered %v after the link freed up", got)
	}
	if st := d.Stats(); st.Busy != 1 {
		t.Errorf("the busy channel was tried again before a sweep: %+v", st)
	}
}

// TestLinkBusyRetriedBySweep: commands a busy link could not take are
// delivered by a later sweep, still in order.
func TestLinkBusyRetriedBySweep(t *testing.T) {
	e := newEnv(t)
	var ids []string
	for i := 0; i < 5; i++ {
		ids = append(ids, e.send(t, "pm", strconv.Itoa(i), ""))
	}
	d := e.dispatcher(Options{SweepInterval: 100 * time.Millisecond})
	rec := newRecorder(d)
	rec.acceptIf(func(n int) bool { return n != 2 })
	d.Attach("1001", rec)
	e.run(t, d)
	wait.For(t, patience, "four deliveries", func() error { return wait.Equal(len(rec.ids()), 4) })
	want := []string{ids[0], ids[1], ids[3], ids[4]}
	if got := rec.ids(); strings.Join(got, ",") != strings.Join(want, ",") {
		t.Errorf("delivered %v, want %v", got, want)
	}
	if m := e.result(t, ids[2]); m["status"] != "failed" {
		t.Errorf("refused command: %v", m)
	}
}

// TestUnreadableEntries: entries that are not commands are logged with
// their text; those with an id are answered invalid; the queue goes on.
func TestUnreadableEntries(t *testing.T) {
	e := newEnv(t)
	for _, entry := range []string{
		`garbage "id": 77 garbage`,
		`{"id":78,"channel":"1001"}`,
		`{"channel":"1001","point":"1"}`,
		`{"id":79,"channel":"2002","point":"40001","value":1,"ts":1,"deadline":0}`,
	} {
		redistest.Do(t, e.c, "LPUSH", keys.CommandQueue("1001"), entry)
	}
	good := e.send(t, "pm", "5", "")
	d := e.dispatcher(Options{})
	rec := newRecorder(d)
	d.Attach("1001", rec)
	e.run(t, d)

	wait.For(t, patience, "the good command", func() error { return wait.Equal(len(rec.ids()), 1) })
	if rec.ids()[0] != good {
		t.Errorf("delivered %v", rec.ids())
	}
	for _, id := range []string{"77", "78", "79"} {
		if m := e.result(t, id); m["status"] != "invalid" || m["message"] == "" || m["channel"] == "" {
			t.Errorf("result of %s = %v", id, m)
		}
	}
	if m := e.result(t, "79"); m["channel"] != "2002" || !strings.Contains(m["message"], "names channel") {
		t.Errorf("result of the misplaced command = %v", m)
	}
	if st := d.Stats(); st.Unreadable != 4 {
		t.Errorf("stats = %+v", st)
	}
	if log := e.log.String(); !strings.Contains(log, `garbage \"id\": 77 garbage`) || !strings.Contains(log, `{\"channel\":\"1001\",\"point\":\"1\"}`) {
		t.Errorf("log lacks the raw entries:\n%s", log)
	}
}

// TestReport: an outcome is written to cmd:result:{id}, with its expiry,
// and to the cmd:results stream.
func TestReport(t *testing.T) {
	e := newEnv(t)
	d := e.dispatcher(Options{ResultTTL: time.Minute, ResultsMaxLen: 100})
	c := &contract.Command{ID: "42", Channel: "1001", Point: "40001", Value: "-2.5", Model: "pm", Control: "setpoint"}
	d.Report(c, contract.Outcome{Status: contract.Exception, Code: 2, Message: "illegal data address"}) // queued before Run
	e.run(t, d)

	m := e.result(t, "42")
	if m["status"] != "exception" || m["code"] != "2" || m["message"] != "illegal data address" || m["point"] != "40001" ||
		m["value"] != "-2.5" || m["model"] != "pm" || m["control"] != "setpoint" || m["ts"] == "" {
		t.Errorf("result = %v", m)
	}
	if ttl, _ := redistest.Do(t, e.c, "PTTL", keys.CommandResult("42")).AsInt64(); ttl <= 0 || ttl > 60000 {
		t.Errorf("PTTL = %d", ttl)
	}
	entries, err := e.c.Do(context.Background(), e.c.B().Xrange().Key(keys.CommandResults).Start("-").End("+").Build()).AsXRange()
	if err != nil || len(entries) != 1 || entries[0].FieldValues["id"] != "42" || entries[0].FieldValues["status"] != "exception" {
		t.Fatalf("stream = %v, %v", entries, err)
	}

	// Fields the library would refuse are written empty; a long message is cut.
	long := strings.Repeat("é", 400)
	d.Report(&contract.Command{ID: "0043", Channel: "1001", Point: "a b", Value: "NaN"}, contract.Outcome{Status: contract.Failed, Message: long})
	m = e.result(t, "43")
	if m["status"] != "failed" || m["point"] != "" || m["value"] != "" || len(m["message"]) != 512 || !strings.HasPrefix(long, m["message"]) {
		t.Errorf("result = %v", m)
	}
	// An outcome without a usable id is logged, not written.
	d.Report(&contract.Command{ID: "x", Channel: "1001"}, contract.Outcome{Status: contract.OK})
	wait.For(t, patience, "the refused outcome", func() error { return wait.Equal(d.Stats().ReportErrors, 1) })
}

// TestReportQueueFull: Report never blocks; beyond the queue it drops and
// counts; what was queued before Run is written once it runs.
func TestReportQueueFull(t *testing.T) {
	e := newEnv(t)
	d := e.dispatcher(Options{})
	for i := 1; i <= reportQueue+10; i++ {
		d.Report(&contract.Command{ID: strconv.Itoa(i), Channel: "1001"}, contract.Outcome{Status: contract.OK})
	}
	if st := d.Stats(); st.ReportsDropped != 10 {
		t.Errorf("dropped %d, want 10", st.ReportsDropped)
	}
	if !strings.Contains(e.log.String(), "result queue full") {
		t.Error("the drop was not logged")
	}
	e.run(t, d)
	wait.For(t, patience, "all queued outcomes written", func() error { return wait.Equal(d.Stats().Reported, reportQueue) })
	if n, _ := redistest.Do(t, e.c, "XLEN", keys.CommandResults).AsInt64(); n != reportQueue {
		t.Errorf("XLEN = %d", n)
	}
}

// TestResubscribe: when the subscription's connection is killed, the
// dispatcher subscribes again and wakes channels on messages.
func TestResubscribe(t *testing.T) {
	e := newEnv(t)
	d := e.dispatcher(Options{SweepInterval: time.Hour})
	rec := newRecorder(d)
	d.Attach("1001", rec)
	e.run(t, d)
	first := e.waitSubscribed(t, "")
	redistest.Do(t, e.c, "CLIENT", "KILL", "ID", first)
	e.waitSubscribed(t, first)

	// Not in cmd:pending: only the message can wake the channel.
	redistest.Do(t, e.c, "LPUSH", keys.CommandQueue("1001"), `{"id":9,"channel":"1001","point":"40001","value":3,"ts":1,"deadline":0}`)
	redistest.Do(t, e.c, "PUBLISH", keys.Command("1001"), "40001:3")
	wait.For(t, patience, "delivery after re-subscription", func() error { return wait.Equal(len(rec.ids()), 1) })
}

// TestMessageChannels: only messages on exactly "cmd:{valid id}" wake a channel.
func TestMessageChannels(t *testing.T) {
	d := NewDispatcher(nil, Options{}, slog.New(slog.DiscardHandler))
	for _, name := range []string{"cmd:1001", "cmd:1001:queue", "cmd:", "cmd:a b", "cmd:x*", "update:1001", "cmd:" + strings.Repeat("x", 129), "cmd:ok_2"} {
		d.onMessage(name)
	}
	if got := strings.Join(d.order, ","); got != "1001,ok_2" {
		t.Errorf("woken %q, want 1001,ok_2", got)
	}
}

// TestRunStopsCleanly: Run returns after ctx ends and leaves no goroutine
// or connection behind.
func TestRunStopsCleanly(t *testing.T) {
	e := newEnv(t)
	before := runtime.NumGoroutine()
	client, err := redisconn.New(e.srv.URL(), redisconn.Options{ClientName: "dispatcher"})
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()

	d := NewDispatcher(client, Options{SweepInterval: 10 * time.Millisecond, StartupGrace: -1}, slog.New(slog.DiscardHandler))
	rec := newRecorder(d)
	d.Attach("1001", rec)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		d.Run(ctx)
	}()
	e.waitSubscribed(t, "")
	for _, model := range []string{"pm", "pm2"} { // pm2: offline, no grace
		id := e.send(t, model, "1", "")
		wait.For(t, patience, "the outcome of "+id, func() error {
			n, _ := redistest.Do(t, e.c, "EXISTS", keys.CommandResult(id)).AsInt64()
			return wait.Equal(n, 1)
		})
	}
	cancel()
	select {
	case <-done:
	case <-time.After(patience):
		t.Fatal("Run did not return")
	}
	wait.For(t, patience, "the subscription to end", func() error { return wait.Equal(e.patternSubscriber(t), "") })
	if stacks := goroutines(); strings.Contains(stacks, "control.(*Dispatcher)") {
		t.Fatalf("dispatcher goroutines left after Run returned:\n%s", stacks)
	}
	client.Close()
	wait.For(t, patience, "the goroutines to end", func() error {
		n := runtime.NumGoroutine()
		return wait.Check(n <= before, "%d goroutines after Run returned and the client closed, %d before:\n%s",
			n, before, goroutines())
	})
}

func goroutines() string {
	var b strings.Builder
	_ = pprof.Lookup("goroutine").WriteTo(&b, 1)
	return b.String()
}

func TestOptionsDefaults(t *testing.T) {
	o := Options{Batch: 500, StartupGrace: -time.Second}.withDefaults()
	want := Options{StartupGrace: 0, SweepInterval: DefaultSweepInterval, ResultTTL: DefaultResultTTL,
		ResultsMaxLen: DefaultResultsMaxLen, Batch: MaxBatch}
	if o != want {
		t.Errorf("withDefaults = %+v, want %+v", o, want)
	}
	if o := (Options{}).withDefaults(); o.StartupGrace != DefaultStartupGrace || o.Batch != DefaultBatch {
		t.Errorf("zero options = %+v", o)
	}
}

func TestSalvageID(t *testing.T) {
	for in, want := range map[string]string{
		`{"id":78,"channel":"1001"}`:   "78",
		`{"id":"0079"}`:                "79",
		`garbage "id": 77 garbage`:     "77",
		`{"id":"abc"}`:                 "",
		`{"id":0}`:                     "",
		`{"channel":"1"}`:              "",
		`{"id":123abc`:                 "",
		`{"id":99999999999999999999}`:  "",
		`[1,2`:                         "",
		`{"id": "12", "x": [1, 2, 3]}`: "12",
	} {
		if got := salvageID(in); got != want {
			t.Errorf("salvageID(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestHelpers(t *testing.T) {
	for in, want := range map[string]string{"1.5": "1.5", "-0": "-0", "1e999": "", "NaN": "", "": "", "05": "", "1e-3": "1e-3"} {
		if got := numberOrEmpty(in); got != want {
			t.Errorf("numberOrEmpty(%q) = %q", in, got)
		}
	}
	if got := truncate("aé", 2); got != "a" {
		t.Errorf("truncate split a rune: %q", got)
	}
	if got := truncate("abc", 5); got != "abc" {
		t.Errorf("truncate = %q", got)
	}
}

// FuzzParse checks that no queue entry makes Parse or salvageID panic, and
// that a parsed command has a command number.
func FuzzParse(f *testing.F) {
	for _, s := range []string{
		`{"id":1,"channel":"1001","point":"40001","value":1,"model":"pm","control":"sp","ts":1,"deadline":2}`,
		`{"id":"1"}`, `garbage "id": 7`, `{"id":1e3,"channel":"a","point":"b","value":"x"}`, `null`, `[]`, ``,
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if c, err := contract.Parse([]byte(s)); err == nil {
			if _, err := strconv.ParseUint(c.ID, 10, 64); err != nil || c.Channel == "" {
				t.Fatalf("contract.Parse(%q) gave %+v", s, c)
			}
		}
		if id := salvageID(s); id != "" {
			if _, ok := contract.CommandID(id); !ok {
				t.Fatalf("salvageID(%q) = %q", s, id)
			}
		}
	})
}

// BenchmarkDispatch measures commands per second from queued to delivered
// and their outcomes recorded, on one channel, in batches of 16.
func BenchmarkDispatch(b *testing.B) {
	srv := redistest.Start(b)
	c := srv.Client(b)
	if _, err := lualib.Ensure(context.Background(), c); err != nil {
		b.Fatal(err)
	}
	redistest.Do(b, c, "HSET", keys.MappingReverse, keys.PointRef("pm", "setpoint"), keys.PointRef("1001", "40001"))
	ctx := context.Background()
	for queued := 0; queued < b.N; {
		n := min(b.N-queued, 1000) // the queue keeps the newest 1000 per channel
		cmds := make(rueidis.Commands, n)
		for i := range cmds {
			cmds[i] = c.B().Fcall().Function(scripts.FnSendControl).Numkeys(0).Arg("pm", "setpoint", "1").Build()
		}
		for _, r := range c.DoMulti(ctx, cmds...) {
			if err := r.Error(); err != nil {
				b.Fatal(err)
			}
		}
		d := NewDispatcher(c, Options{Batch: 16}, slog.New(slog.DiscardHandler))
		rec := newRecorder(d)
		d.Attach("1001", rec)
		if queued == 0 {
			b.ResetTimer()
		} else {
			b.StartTimer()
		}
		rctx, cancel := context.WithCancel(ctx)
		done := make(chan struct{})
		go func() {
			defer close(done)
			d.Run(rctx)
		}()
		for d.Stats().Reported < uint64(n) {
			time.Sleep(time.Millisecond) // a fine poll: the wait is part of the measured time
		}

		b.StopTimer()
		cancel()
		<-done
		queued += n
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "commands/s")
}
