package webhook

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/voltedge/voltedge/internal/alerting"
	"github.com/voltedge/voltedge/internal/keys"
	"github.com/voltedge/voltedge/internal/redistest"
)

// TestEngineRestartKeepsSchedule: an engine stopped after two attempts of
// each delivery is replaced by a new one on the same Redis; the new one
// goes on with the third attempt (four in all, then dead letters), not
// from the first.
func TestEngineRestartKeepsSchedule(t *testing.T) {
	s := redistest.Start(t)
	c := s.Client(t)
	rc := newReceiver(t)
	rc.setAnswer(func(request, int) (int, map[string]string) { return 500, nil })
	putTarget(t, c, target("a", rc.url(), 0, 100*ms, time.Second, 100*ms))
	watchReconcile(t, c, "a")
	e := startEngine(t, c, Options{})
	all := ids("d", 10)
	for _, id := range all {
		e.enqueue(t, "a", id, "", "{}")
	}
	waitFor(t, 5*time.Second, "two attempts of each recorded", func() bool {
		states, err := redistest.Do(t, c, "HVALS", keys.WebhookRetry("a")).AsStrSlice()
		if err != nil || len(states) != 10 {
			return false
		}
		for _, js := range states {
			var rs retryState
			if json.Unmarshal([]byte(js), &rs) != nil || rs.Attempt < 2 {
				return false
			}
		}
		return true
	})
	e.stop()
	states, err := redistest.Do(t, c, "HGETALL", keys.WebhookRetry("a")).AsStrMap()
	if err != nil {
		t.Fatal(err)
	}
	for entry, js := range states {
		var rs retryState
		if err := json.Unmarshal([]byte(js), &rs); err != nil || rs.Attempt < 2 || rs.LastStatus != 500 {
			t.Fatalf("retry state %s: %s %v", entry, js, err)
		}
	}
	if st := stats(t, c, "a"); st.InFlight != 0 || st.Failed != 10 {
		t.Fatalf("stats after the stop %+v", st)
	}
	e2 := startEngine(t, c, Options{})
	_ = e2
	waitFor(t, 5*time.Second, "dead letters", func() bool { return stats(t, c, "a").Dead == 10 })
	for _, id := range all {
		if n := rc.times()[id]; n != 4 {
			t.Errorf("%s: %d attempts, want the schedule's 4", id, n)
		}
	}
}

// TestEngineRestartMidRun: engines are stopped and replaced while
// deliveries flow; each delivery arrives at least once and the counters
// end exact.
func TestEngineRestartMidRun(t *testing.T) {
	s := redistest.Start(t)
	c := s.Client(t)
	rc := newReceiver(t)
	rc.delay = 2 * ms
	putTarget(t, c, target("a", rc.url(), 0, 50*ms, 50*ms))
	watchReconcile(t, c, "a")
	all := ids("d", 600)
	e := startEngine(t, c, Options{})
	for i, id := range all {
		e.enqueue(t, "a", id, "", "{}")
		if i%200 == 199 {
			e.stop()
			e = startEngine(t, c, Options{})
		}
	}
	waitFor(t, 20*time.Second, "deliveries", func() bool { return stats(t, c, "a").Delivered == 600 })
	got := rc.times()
	for _, id := range all {
		if got[id] < 1 {
			t.Fatalf("%s lost", id)
		}
	}
	if st := stats(t, c, "a"); st.Matched != 600 || st.Queued != 0 || st.Failed != 0 || st.InFlight != 0 {
		t.Fatalf("stats %+v", st)
	}
}

// TestRedisRestartPersistent: Redis, writing its append-only file at every
// command, is killed and started again while deliveries are queued and
// retried: none is lost and the counters still reconcile.
func TestRedisRestartPersistent(t *testing.T) {
	s := redistest.StartPersistent(t)
	c := s.Client(t)
	rc := newReceiver(t)
	rc.setAnswer(func(r request, n int) (int, map[string]string) {
		if n == 0 && strings.HasSuffix(r.ID, "7") {
			return 503, nil
		}
		return 200, nil
	})
	putTarget(t, c, target("a", rc.url(), 0, 200*ms, 200*ms, 200*ms))
	watchReconcile(t, c, "a")
	e := startEngine(t, c, Options{})
	all := ids("d", 300)
	for i, id := range all {
		for {
			err := e.Enqueue(context.Background(), Delivery{ID: id, Target: "a", Body: []byte("{}")})
			if err == nil {
				break
			}
			if errors.Is(err, alerting.ErrUnknownTarget) {
				t.Fatal(err)
			}
			time.Sleep(20 * ms) // Redis restarting
		}
		if i == 150 {
			s.Restart(t)
		}
	}
	waitFor(t, 20*time.Second, "deliveries", func() bool {
		st, err := alerting.ReadStats(context.Background(), c, "a")
		return err == nil && st.Delivered == 300
	})
	got := rc.times()
	for _, id := range all {
		if got[id] < 1 {
			t.Fatalf("%s lost", id)
		}
	}
	if st := stats(t, c, "a"); st.Matched != 300 || !st.Reconciles() || st.Queued != 0 {
		t.Fatalf("stats %+v", st)
	}
}

// TestDeadLetters: deliveries out of attempts are listed as dead letters;
// one is sent again by id, the others by time range.
func TestDeadLetters(t *testing.T) {
	s := redistest.Start(t)
	c := s.Client(t)
	rc := newReceiver(t)
	rc.setAnswer(func(request, int) (int, map[string]string) { return 500, nil })
	putTarget(t, c, target("a", rc.url(), 0, 20*ms))
	watchReconcile(t, c, "a")
	e := startEngine(t, c, Options{})
	start := time.Now()
	for _, id := range ids("d", 5) {
		e.enqueue(t, "a", id, "k", `{"x":1}`)
	}
	waitFor(t, 5*time.Second, "dead letters", func() bool { return stats(t, c, "a").Dead == 5 })
	ctx := context.Background()
	dl, next, err := alerting.ListDead(ctx, c, "", 3)
	if err != nil || len(dl) != 3 || next == "" {
		t.Fatalf("ListDead: %d %q %v", len(dl), next, err)
	}
	if d := dl[0]; d.Target != "a" || d.ID != "d-0000" || d.Key != "k" || d.Body != `{"x":1}` || d.Attempts != 2 || d.LastStatus != 500 || d.LastError == "" {
		t.Fatalf("dead letter %+v", d)
	}
	rest, next2, err := alerting.ListDead(ctx, c, next, 3)
	if err != nil || len(rest) != 2 || next2 != "" {
		t.Fatalf("ListDead page 2: %d %q %v", len(rest), next2, err)
	}
	rc.setAnswer(nil)
	if err := alerting.RetryDead(ctx, c, dl[0].Entry); err != nil {
		t.Fatal(err)
	}
	if err := alerting.RetryDead(ctx, c, dl[0].Entry); !errors.Is(err, alerting.ErrNotFound) {
		t.Fatalf("retrying it twice: %v", err)
	}
	waitFor(t, 5*time.Second, "the retried dead letter", func() bool { return stats(t, c, "a").Delivered == 1 })
	n, err := alerting.RetryDeadRange(ctx, c, "a", start, time.Time{})
	if err != nil || n != 4 {
		t.Fatalf("RetryDeadRange: %d %v", n, err)
	}
	waitFor(t, 5*time.Second, "the rest", func() bool { return stats(t, c, "a").Delivered == 5 })
	if st := stats(t, c, "a"); st.Dead != 0 || st.Matched != 5 {
		t.Fatalf("stats %+v", st)
	}
}

// TestDeleteTargetDrops: the queue of a deleted target is dropped and
// counted so.
func TestDeleteTargetDrops(t *testing.T) {
	s := redistest.Start(t)
	c := s.Client(t)
	rc := newReceiver(t)
	tg := target("a", rc.url())
	tg.Enabled = false
	putTarget(t, c, tg)
	watchReconcile(t, c, "a")
	e := startEngine(t, c, Options{})
	for _, id := range ids("d", 10) {
		e.enqueue(t, "a", id, "", "{}")
	}
	if st := stats(t, c, "a"); st.Queued != 10 {
		t.Fatalf("stats %+v", st)
	}
	redistest.Do(t, c, "HDEL", keys.WebhookTargets, "a")
	e.Reload()
	waitFor(t, 5*time.Second, "the drop", func() bool { return stats(t, c, "a").Dropped == 10 })
	if n, _ := redistest.Do(t, c, "EXISTS", keys.WebhookQueue("a")).AsInt64(); n != 0 {
		t.Fatal("queue left")
	}
	if ev := <-e.events; ev.Kind != EventTargetDropped || ev.Count != 10 {
		t.Fatalf("event %+v", ev)
	}
	if len(rc.requests()) != 0 {
		t.Fatal("a disabled target received requests")
	}
}

// TestDisableAfter: a target failing for longer than its DisableAfter is
// disabled with an event.
func TestDisableAfter(t *testing.T) {
	s := redistest.Start(t)
	c := s.Client(t)
	rc := newReceiver(t)
	rc.setAnswer(func(request, int) (int, map[string]string) { return 502, nil })
	tg := target("a", rc.url(), 0, 100*ms, 100*ms, 100*ms, 100*ms, 100*ms, 100*ms, 100*ms)
	tg.DisableAfter.Duration = 250 * ms
	putTarget(t, c, tg)
	watchReconcile(t, c, "a")
	e := startEngine(t, c, Options{})
	e.enqueue(t, "a", "d", "", "{}")
	select {
	case ev := <-e.events:
		if ev.Kind != EventTargetDisabled || !strings.Contains(ev.Reason, "failing since") {
			t.Fatalf("event %+v", ev)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("not disabled")
	}
	if got := getTarget(t, c, "a"); got.Enabled || got.DisabledReason == "" {
		t.Fatalf("target %+v", got)
	}
	if n := rc.times()["d"]; n < 2 || n > 5 {
		t.Fatalf("%d attempts before it was disabled", n)
	}
}

// TestBacklogBounded: with thousands of deliveries waiting for a target
// that refuses connections, the engine reads no more than its window:
// the others stay in Redis, counted queued.
func TestBacklogBounded(t *testing.T) {
	s := redistest.Start(t)
	c := s.Client(t)
	putTarget(t, c, target("a", "http://127.0.0.1:1/hook", 0, time.Hour))
	ctx := context.Background()
	for _, id := range ids("d", 3000) {
		if _, err := alerting.Enqueue(ctx, c, "a", alerting.QueueEntry{ID: id, Body: []byte("{}")}); err != nil {
			t.Fatal(err)
		}
	}
	watchReconcile(t, c, "a")
	startEngine(t, c, Options{Window: 32})
	waitFor(t, 5*time.Second, "first attempts", func() bool { return stats(t, c, "a").Failed == 32 })
	time.Sleep(300 * ms)
	pending, err := redistest.Do(t, c, "XPENDING", keys.WebhookQueue("a"), alerting.QueueGroup).ToArray()
	if err != nil {
		t.Fatal(err)
	}
	n, _ := pending[0].AsInt64()
	if n > 32 {
		t.Fatalf("%d entries read from the queue, window 32", n)
	}
	if st := stats(t, c, "a"); st.Failed != 32 || st.Queued != 3000-32 || st.Attempts != 32 {
		t.Fatalf("stats %+v", st)
	}
}

// TestRedisRestartEmpty: Redis restarts without its data (no persistence);
// once the target is written again, the engine goes on: the group is
// created anew and new deliveries arrive.
func TestRedisRestartEmpty(t *testing.T) {
	s := redistest.Start(t)
	c := s.Client(t)
	rc := newReceiver(t)
	putTarget(t, c, target("a", rc.url(), 0, 50*ms, 50*ms))
	e := startEngine(t, c, Options{})
	for _, id := range ids("before", 20) {
		e.enqueue(t, "a", id, "", "{}")
	}
	waitFor(t, 5*time.Second, "deliveries before", func() bool { return stats(t, c, "a").Delivered == 20 })
	s.Restart(t)
	waitFor(t, 5*time.Second, "Redis back", func() bool {
		return c.Do(context.Background(), c.B().Ping().Build()).Error() == nil
	})
	putTarget(t, c, target("a", rc.url(), 0, 50*ms, 50*ms))
	for _, id := range ids("after", 20) {
		e.enqueue(t, "a", id, "", "{}")
	}
	waitFor(t, 10*time.Second, "deliveries after", func() bool { return stats(t, c, "a").Delivered == 20 })
	got := rc.times()
	for _, id := range ids("after", 20) {
		if got[id] != 1 {
			t.Fatalf("%s received %d times", id, got[id])
		}
	}
}
