package contract

import (
	"context"
	"encoding/json"
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/rueidis"

	"github.com/voltedge/voltedge/internal/keys"
	"github.com/voltedge/voltedge/internal/lualib"
	"github.com/voltedge/voltedge/internal/redistest"
)

// patience bounds every wait of these tests; a passing test never waits this long.
const patience = 15 * time.Second

func ctxFor(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), patience)
	t.Cleanup(cancel)
	return ctx
}

// eventually polls cond until it holds, failing the test after patience.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(patience); !cond(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

// newRedis starts a private Redis with the library loaded.
func newRedis(t *testing.T) (*redistest.Server, rueidis.Client) {
	t.Helper()
	srv := redistest.Start(t)
	c := srv.Client(t)
	if _, err := lualib.Ensure(context.Background(), c); err != nil {
		t.Fatal(err)
	}
	return srv, c
}

func TestParse(t *testing.T) {
	c, err := Parse([]byte(`{"id":7,"channel":"1001","point":"40001","value":1.5,"model":"pm","control":"sp","ts":1000,"deadline":3000}`))
	if err != nil || c.ID != "7" || c.Value != "1.5" || c.Deadline.Sub(c.Queued) != 2*time.Second {
		t.Fatalf("Parse = %+v, %v", c, err)
	}
	if c.Expired(time.UnixMilli(3000)) || !c.Expired(time.UnixMilli(3001)) {
		t.Error("Expired")
	}
	for _, in := range []string{`{}`, `{"id":"x","channel":"a","point":"b","value":1}`, `not json`, strings.Repeat(" ", MaxCommand+1)} {
		if _, err := Parse([]byte(in)); err == nil {
			t.Errorf("Parse(%.30q) accepted", in)
		}
	}
	for in, want := range map[string]string{"0042": "42", "0": "", "x": "", "18446744073709551615": "18446744073709551615"} {
		if got, ok := CommandID(in); got != want || ok != (want != "") {
			t.Errorf("CommandID(%q) = %q, %v", in, got, ok)
		}
	}
	for in, want := range map[string]bool{"1.5": true, "-0": true, "1e999": false, "NaN": false, "": false, "05": false, "1e-3": true, "1e-999": true} {
		if ValidValue(in) != want {
			t.Errorf("ValidValue(%q) = %v", in, !want)
		}
	}
}

func TestOutcomeString(t *testing.T) {
	for o, want := range map[Outcome]string{
		{Status: OK}: "ok",
		{Status: Exception, Code: 3, Message: "illegal data value"}: "exception 3 (illegal data value)",
		{Status: Timeout}:                         "timeout",
		{Status: Failed, Message: "link\nclosed"}: "failed (link closed)",
	} {
		if got := o.String(); got != want {
			t.Errorf("%+v: %q, want %q", o, got, want)
		}
	}
}

func TestParseReloadReply(t *testing.T) {
	r, err := ParseReloadReply([]byte(`{"id":"ab12","ok":true,"message":"","added":2,"changed":1,"removed":0}`))
	if err != nil || r != (ReloadReply{ID: "ab12", OK: true, Added: 2, Changed: 1}) {
		t.Errorf("ParseReloadReply = %+v, %v", r, err)
	}
	b, _ := json.Marshal(ReloadReply{ID: "x", Message: "bad template"})
	if string(b) != `{"id":"x","ok":false,"message":"bad template","added":0,"changed":0,"removed":0}` {
		t.Errorf("Marshal = %s", b)
	}
	for _, in := range []string{``, `{}`, `{"ok":true}`, `{"id":5}`, `not json`, `{"id":"x"` + strings.Repeat(" ", MaxReloadReply) + `}`} {
		if _, err := ParseReloadReply([]byte(in)); err == nil {
			t.Errorf("ParseReloadReply(%.40q) accepted", in)
		}
	}
}

func TestCompareIDs(t *testing.T) {
	for _, c := range []struct {
		a, b string
		want int
	}{{"1-0", "1-0", 0}, {"2-0", "10-0", -1}, {"5-10", "5-9", 1}, {"0-0", "x", 0}} {
		if got := CompareIDs(c.a, c.b); got != c.want {
			t.Errorf("CompareIDs(%s, %s) = %d", c.a, c.b, got)
		}
	}
}

// FuzzParse checks that no queue entry or reload reply makes the parsers
// panic, and that a parsed command has a command number.
func FuzzParse(f *testing.F) {
	for _, s := range []string{`{"id":1,"channel":"1001","point":"40001","value":1,"model":"pm","control":"sp","ts":1,"deadline":2}`, `{"id":"1"}`, `null`, ``} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if c, err := Parse([]byte(s)); err == nil {
			if _, ok := CommandID(c.ID); !ok && c.ID != "0" {
				t.Fatalf("Parse(%q) gave %+v", s, c)
			}
		}
		_, _ = ParseReloadReply([]byte(s))
	})
}

// record writes the outcome of command id as comsrv does, capping the stream at maxlen.
func record(t *testing.T, c rueidis.Client, id, status, maxlen string) rueidis.Completed {
	t.Helper()
	return c.B().Fcall().Function("control_result").Numkeys(0).
		Arg(id, status, "0", "", "1001", "40001", "1", "pm", "sp", "3600000", maxlen).Build()
}

func mustDo(t *testing.T, c rueidis.Client, cmds ...rueidis.Completed) {
	t.Helper()
	for _, r := range c.DoMulti(context.Background(), cmds...) {
		if err := r.Error(); err != nil {
			t.Fatal(err)
		}
	}
}

// runResults runs a watcher until the test ends.
func runResults(t *testing.T, c rueidis.Client) *Results {
	t.Helper()
	r := NewResults(c, nil)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); r.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(patience):
			t.Error("Run did not return")
		}
	})
	eventually(t, "the watcher's start", func() bool { return r.Gaps() > 0 })
	return r
}

func TestSendAndErrors(t *testing.T) {
	_, c := newRedis(t)
	redistest.Do(t, c, "HSET", keys.MappingReverse, "pm:sp", "1001:40001", "pm:bad", "nonsense", "other:sp", "1002:1")
	r := runResults(t, c)
	s := NewSender(c, lualib.NewCaller(c, nil), r)
	ctx := ctxFor(t)

	cmd, err := s.Send(ctx, Request{Model: "pm", Control: "sp", Value: "1", TTL: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	defer cmd.Close()
	mustDo(t, c, record(t, c, cmd.ID, "exception", "100"))
	res, err := cmd.Wait(ctx)
	if err != nil || res.ID != cmd.ID || res.Status != Exception || res.Fields["channel"] != "1001" || res.Fields[ResultID] != "" {
		t.Fatalf("Wait = %+v, %v", res, err)
	}

	for _, tc := range []struct {
		req  Request
		kind error
		msg  string
	}{
		{Request{Model: "pm", Control: "nothing", Value: "1", TTL: time.Second}, ErrUnknownControl, `model "pm" has no control "nothing"`},
		{Request{Model: "nope", Control: "sp", Value: "1", TTL: time.Second}, ErrUnknownModel, `unknown model "nope"`},
		{Request{Model: "pm", Control: "bad", Value: "1", TTL: time.Second}, ErrBadMapping, `holds "nonsense"`},
		{Request{Model: "pm", Control: "sp", Value: "abc", TTL: time.Second}, ErrInvalidValue, "not a decimal number"},
		{Request{Model: "p m", Control: "sp", Value: "1", TTL: time.Second}, ErrInvalidModel, "invalid model id"},
		{Request{Model: "pm", Control: "s:p", Value: "1", TTL: time.Second}, ErrInvalidControl, "invalid control name"},
		{Request{Model: "pm", Control: "sp", Value: "1"}, ErrInvalidTTL, "ttl"},
	} {
		_, err := s.Send(ctx, tc.req)
		if !errors.Is(err, tc.kind) || !strings.Contains(err.Error(), tc.msg) {
			t.Errorf("%+v: %v, want %v containing %q", tc.req, err, tc.kind, tc.msg)
		}
	}
	cmd.Close()
	if n := len(r.waiters) + len(r.early); n != 0 {
		t.Errorf("%d waiters left", n)
	}
}

// TestOutcomeWhileQueueing: an outcome recorded between send_control and
// the waiter's registration under its id is not lost, whether the watcher
// kept it for the waiter or the waiter reads the hash.
func TestOutcomeWhileQueueing(t *testing.T) {
	_, c := newRedis(t)
	r := runResults(t, c)
	ctx := ctxFor(t)

	w := r.prepare("")
	mustDo(t, c, record(t, c, "41", "ok", "1000"))
	eventually(t, "the outcome kept for the waiter", func() bool {
		r.mu.Lock()
		defer r.mu.Unlock()
		return len(w.seen) == 1
	})
	r.bind(w, "41")
	p := &Pending{ID: "41", w: w, r: r}
	if res, err := p.Wait(ctx); err != nil || res.Status != OK {
		t.Fatalf("kept outcome: %+v, %v", res, err)
	}
	p.Close()

	// More outcomes than a waiter keeps: it reads its hash.
	w = r.prepare("")
	cmds := []rueidis.Completed{record(t, c, "42", "timeout", "1000")}
	for i := range maxSeen {
		cmds = append(cmds, record(t, c, strconv.Itoa(1000+i), "ok", "1000"))
	}
	mustDo(t, c, cmds...)
	eventually(t, "the overflow", func() bool {
		r.mu.Lock()
		defer r.mu.Unlock()
		return w.lost
	})
	r.bind(w, "42")
	p = &Pending{ID: "42", w: w, r: r}
	if res, err := p.Wait(ctx); err != nil || res.Status != Timeout {
		t.Fatalf("overflowed outcome: %+v, %v", res, err)
	}
	p.Close()

	// Recorded before anyone waited: Results.Wait reads the hash.
	if res, err := r.Wait(ctx, "0041"); err != nil || res.ID != "41" || res.Status != OK {
		t.Fatalf("Wait for a recorded outcome: %+v, %v", res, err)
	}
}

// waitInBackground waits for the outcome of id in a goroutine, once the
// waiter is registered.
func waitInBackground(t *testing.T, r *Results, id string) <-chan Result {
	t.Helper()
	got := make(chan Result, 1)
	go func() {
		res, _ := r.Wait(ctxFor(t), id)
		got <- res
	}()
	eventually(t, "the waiter", func() bool { r.mu.Lock(); defer r.mu.Unlock(); return len(r.waiters[id]) == 1 })
	return got
}

// receive checks that got delivers an outcome of status want.
func receive(t *testing.T, got <-chan Result, want Status) {
	t.Helper()
	select {
	case res := <-got:
		if res.Status != want {
			t.Fatalf("outcome %+v, want %s", res, want)
		}
	case <-time.After(patience):
		t.Fatalf("no %s outcome", want)
	}
}

// TestOutcomeTrimmed: an outcome trimmed from the stream before the watcher
// read it is read from its hash.
func TestOutcomeTrimmed(t *testing.T) {
	_, c := newRedis(t)
	r := runResults(t, c)
	got := waitInBackground(t, r, "7")
	gaps := r.Gaps()
	// One transaction: the blocked reader sees the stream only after the trim.
	cmds := []rueidis.Completed{c.B().Multi().Build(), record(t, c, "7", "offline", "100")}
	for i := range 300 {
		cmds = append(cmds, record(t, c, strconv.Itoa(100+i), "ok", "100"))
	}
	mustDo(t, c, append(cmds, c.B().Exec().Build())...)
	if n, _ := redistest.Do(t, c, "XLEN", keys.CommandResults).AsInt64(); n >= 301 {
		t.Fatalf("the stream was not trimmed: %d entries", n)
	}
	receive(t, got, Offline)
	if r.Gaps() == gaps {
		t.Error("the trim was not noticed")
	}
}

// TestOutcomeAfterRestart: the watcher survives a Redis restart and hands
// out outcomes recorded afterwards.
func TestOutcomeAfterRestart(t *testing.T) {
	srv, c := newRedis(t)
	r := runResults(t, c)
	ctx := ctxFor(t)
	got := waitInBackground(t, r, "3")
	srv.Restart(t)
	eventually(t, "the library loaded again", func() bool {
		_, err := lualib.Ensure(ctx, c)
		return err == nil
	})
	mustDo(t, c, record(t, c, "3", "failed", "100"))
	receive(t, got, Failed)
}

// FuzzParseDataEntry: any data stream entry either parses into valid
// points or is refused, without a panic.
func FuzzParseDataEntry(f *testing.F) {
	f.Add("1001", "1732212345678", "p:10001", "220.5 power_meter:voltage", "p:2", "3")
	f.Add("", "x", "p:", " ", "q", ":")
	f.Fuzz(func(t *testing.T, ch, ts, k1, v1, k2, v2 string) {
		e, err := ParseDataEntry(map[string]string{DataChannel: ch, DataTS: ts, k1: v1, k2: v2})
		for _, p := range e.Points {
			if err == nil && (p.Point == "" || p.Value == "") {
				t.Fatalf("accepted an empty point or value: %+v", e)
			}
		}
	})
}
