package webhook

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/voltedge/voltedge/internal/alerting"
	"github.com/voltedge/voltedge/internal/keys"
	"github.com/voltedge/voltedge/internal/redistest"
)

const ms = time.Millisecond

// TestDeliverAndReconcile: every delivery arrives with its id, signed, and
// the counters reconcile at every reading during the run.
func TestDeliverAndReconcile(t *testing.T) {
	s := redistest.Start(t)
	c := s.Client(t)
	rc := newReceiver(t)
	sec, _ := alerting.GenerateSecret()
	tg := target("a", rc.url())
	tg.Secrets = []string{sec}
	putTarget(t, c, tg)
	checks := watchReconcile(t, c, "a")
	e := startEngine(t, c, Options{})
	if err := e.Enqueue(context.Background(), Delivery{ID: "x", Target: "nope", Body: []byte("{}")}); !errors.Is(err, alerting.ErrUnknownTarget) {
		t.Fatalf("enqueue for an unknown target: %v", err)
	}
	all := ids("d", 500)
	for i, id := range all {
		e.enqueue(t, "a", id, fmt.Sprintf("k%d", i%20), `{"n":`+fmt.Sprint(i)+`}`)
	}
	waitFor(t, 20*time.Second, "500 deliveries", func() bool { return stats(t, c, "a").Delivered == 500 })
	st := stats(t, c, "a")
	if st.Matched != 500 || st.Queued != 0 || st.InFlight != 0 || st.Failed != 0 || st.Attempts != 500 {
		t.Fatalf("stats %+v", st)
	}
	got := rc.times()
	for _, id := range all {
		if got[id] != 1 {
			t.Fatalf("%s received %d times", id, got[id])
		}
	}
	// As a receiver checks it (Standard Webhooks): HMAC-SHA256 with the
	// decoded secret over "id.timestamp.body".
	key, _ := base64.StdEncoding.DecodeString(strings.TrimPrefix(sec, "whsec_"))
	for _, r := range rc.requests() {
		mac := hmac.New(sha256.New, key)
		mac.Write([]byte(r.Head.Get("webhook-id") + "." + r.Head.Get("webhook-timestamp") + "." + r.Body))
		want := "v1," + base64.StdEncoding.EncodeToString(mac.Sum(nil))
		if r.Head.Get("webhook-signature") != want || !strings.HasPrefix(r.Body, `{"n":`) {
			t.Fatalf("request %+v: signature %q, want %q", r, r.Head.Get("webhook-signature"), want)
		}
	}
	if n := redistest.Do(t, c, "XLEN", keys.WebhookQueue("a")); n.String() == "" {
		t.Fatal("no queue")
	}
	all2, err := e.Stats(context.Background())
	if err != nil || len(all2) != 1 {
		t.Fatalf("Stats: %v %v", all2, err)
	}
	var m strings.Builder
	if err := alerting.WriteMetrics(&m, all2); err != nil {
		t.Fatal(err)
	}
	for _, line := range []string{`alarmsrv_webhook_matched_total{target="a"} 500`, `alarmsrv_webhook_deliveries{target="a",state="delivered"} 500`, `alarmsrv_webhook_deliveries{target="a",state="queued"} 0`} {
		if !strings.Contains(m.String(), line+"\n") {
			t.Errorf("metrics lack %s:\n%s", line, m.String())
		}
	}
	if checks() < 20 {
		t.Fatalf("only %d readings of the counters", checks())
	}
}

// TestDownThenBack: the receiver's port refuses connections, then listens
// again: the deliveries are retried and all arrive.
func TestDownThenBack(t *testing.T) {
	s := redistest.Start(t)
	c := s.Client(t)
	rc := newReceiver(t)
	rc.close()
	putTarget(t, c, target("a", rc.url(), 0, 100*ms, 200*ms, 300*ms, 300*ms, 300*ms, 300*ms, 300*ms))
	watchReconcile(t, c, "a")
	e := startEngine(t, c, Options{})
	for _, id := range ids("d", 20) {
		e.enqueue(t, "a", id, "", "{}")
	}
	waitFor(t, 5*time.Second, "failures", func() bool { s := stats(t, c, "a"); return s.Failed == 20 && s.Attempts >= 40 })
	if st := stats(t, c, "a"); st.LastStatus != 0 || st.LastError == "" || st.FailingSince == 0 {
		t.Fatalf("stats while down %+v", st)
	}
	rc.open()
	waitFor(t, 5*time.Second, "delivered after the receiver came back", func() bool { return stats(t, c, "a").Delivered == 20 })
	st := stats(t, c, "a")
	if st.FailingSince != 0 || st.Failed != 0 || st.Dead != 0 {
		t.Fatalf("stats %+v", st)
	}
	if n, _ := redistest.Do(t, c, "HLEN", keys.WebhookRetry("a")).AsInt64(); n != 0 {
		t.Fatalf("%d retry states left", n)
	}
}

// Test500Then200: each delivery fails once with 500 and is delivered by
// its second attempt, with the same webhook-id.
func Test500Then200(t *testing.T) {
	s := redistest.Start(t)
	c := s.Client(t)
	rc := newReceiver(t)
	rc.setAnswer(func(r request, n int) (int, map[string]string) {
		if n == 0 {
			return 500, nil
		}
		return 200, nil
	})
	putTarget(t, c, target("a", rc.url(), 0, 50*ms, 50*ms))
	watchReconcile(t, c, "a")
	e := startEngine(t, c, Options{})
	for _, id := range ids("d", 30) {
		e.enqueue(t, "a", id, "", "{}")
	}
	waitFor(t, 5*time.Second, "deliveries", func() bool { return stats(t, c, "a").Delivered == 30 })
	for id, n := range rc.times() {
		if n != 2 {
			t.Errorf("%s: %d requests, want 2", id, n)
		}
	}
	if st := stats(t, c, "a"); st.Attempts != 60 || st.LastStatus != 200 {
		t.Fatalf("stats %+v", st)
	}
}

// TestSlowTargetDoesNotDelayOthers: a target that answers after 2 s does
// not slow down the deliveries to a healthy one.
func TestSlowTargetDoesNotDelayOthers(t *testing.T) {
	s := redistest.Start(t)
	c := s.Client(t)
	slow, fast := newReceiver(t), newReceiver(t)
	slow.delay = 2 * time.Second
	putTarget(t, c, target("slow", slow.url()))
	putTarget(t, c, target("fast", fast.url()))
	e := startEngine(t, c, Options{})
	waitFor(t, 2*time.Second, "workers", func() bool { e.mu.Lock(); defer e.mu.Unlock(); return len(e.workers) == 2 })
	sent := map[string]time.Time{}
	for i := range 100 {
		e.enqueue(t, "slow", fmt.Sprintf("s%d", i), "", "{}")
		id := fmt.Sprintf("f%d", i)
		sent[id] = time.Now()
		e.enqueue(t, "fast", id, "", "{}")
		time.Sleep(2 * ms)
	}
	waitFor(t, 5*time.Second, "fast deliveries", func() bool { return stats(t, c, "fast").Delivered == 100 })
	var lat []time.Duration
	for _, r := range fast.requests() {
		lat = append(lat, r.At.Sub(sent[r.ID]))
	}
	slices.Sort(lat)
	p99 := lat[len(lat)*99/100]
	t.Logf("healthy target's latency beside a slow one: p50 %v, p99 %v", lat[len(lat)/2], p99)
	if p99 > 500*ms { // the slow target answers after 2 s; this box is shared
		t.Fatalf("p99 %v", p99)
	}
	if st := stats(t, c, "slow"); st.Delivered > 10 {
		t.Fatalf("slow target delivered %d already", st.Delivered)
	}
}

// Test410Disables: 410 disables the target (stored, with a reason, and an
// operator event); later deliveries wait, counted queued, until the target
// is enabled again.
func Test410Disables(t *testing.T) {
	s := redistest.Start(t)
	c := s.Client(t)
	rc := newReceiver(t)
	rc.setAnswer(func(request, int) (int, map[string]string) { return 410, nil })
	putTarget(t, c, target("a", rc.url(), 0, 50*ms))
	watchReconcile(t, c, "a")
	e := startEngine(t, c, Options{})
	e.enqueue(t, "a", "first", "", "{}")
	select {
	case ev := <-e.events:
		if ev.Kind != EventTargetDisabled || ev.Target != "a" || !strings.Contains(ev.Reason, "410") {
			t.Fatalf("event %+v", ev)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no event")
	}
	if tg := getTarget(t, c, "a"); tg.Enabled || !strings.Contains(tg.DisabledReason, "410") || tg.URL != rc.url() {
		t.Fatalf("target %+v", tg)
	}
	for _, id := range ids("later", 5) {
		e.enqueue(t, "a", id, "", "{}")
	}
	time.Sleep(400 * ms)
	if n := len(rc.requests()); n != 1 {
		t.Fatalf("%d requests to a disabled target", n)
	}
	if st := stats(t, c, "a"); st.Queued != 5 || st.Failed != 1 || st.Matched != 6 {
		t.Fatalf("stats %+v", st)
	}
	rc.setAnswer(nil)
	putTarget(t, c, target("a", rc.url(), 0, 50*ms))
	waitFor(t, 5*time.Second, "deliveries after enabling", func() bool { return stats(t, c, "a").Delivered == 6 })
}

// Test429RetryAfter: the next attempt to the target comes no sooner than
// the Retry-After of a 429.
func Test429RetryAfter(t *testing.T) {
	s := redistest.Start(t)
	c := s.Client(t)
	rc := newReceiver(t)
	rc.setAnswer(func(r request, n int) (int, map[string]string) {
		if n == 0 && r.ID == "one" {
			return 429, map[string]string{"Retry-After": "1"}
		}
		return 200, nil
	})
	putTarget(t, c, target("a", rc.url(), 0, 10*ms, 10*ms))
	e := startEngine(t, c, Options{})
	e.enqueue(t, "a", "one", "", "{}")
	waitFor(t, 2*time.Second, "the 429", func() bool { return len(rc.requests()) == 1 })
	e.enqueue(t, "a", "two", "", "{}")
	waitFor(t, 5*time.Second, "deliveries", func() bool { return stats(t, c, "a").Delivered == 2 })
	reqs := rc.requests()
	for _, r := range reqs[1:] {
		if d := r.At.Sub(reqs[0].At); d < 950*ms {
			t.Errorf("%s sent %v after the 429 with Retry-After: 1", r.ID, d)
		}
	}
}

// TestPerKeyOrder: raise and clear pairs of many keys, with a receiver that
// fails a third of the requests at random and answers slowly: per key the
// receiver accepts them in the order they were queued, while different
// keys go in parallel.
func TestPerKeyOrder(t *testing.T) {
	s := redistest.Start(t)
	c := s.Client(t)
	rc := newReceiver(t)
	var mu sync.Mutex
	inflight, maxInflight := 0, 0
	rc.setAnswer(func(r request, n int) (int, map[string]string) {
		mu.Lock()
		inflight++
		maxInflight = max(maxInflight, inflight)
		mu.Unlock()
		time.Sleep(time.Duration(rand.IntN(3)) * ms)
		mu.Lock()
		inflight--
		mu.Unlock()
		if rand.IntN(3) == 0 {
			return 500, nil
		}
		return 200, nil
	})
	tg := target("a", rc.url(), 0, 5*ms, 5*ms, 5*ms, 5*ms, 5*ms, 5*ms, 5*ms, 5*ms, 5*ms, 5*ms, 5*ms, 5*ms, 5*ms, 5*ms, 5*ms, 5*ms, 5*ms, 5*ms, 5*ms)
	tg.Concurrency = 8
	putTarget(t, c, tg)
	watchReconcile(t, c, "a")
	e := startEngine(t, c, Options{Window: 64})
	const keysN, rounds = 50, 4
	for r := range rounds {
		for k := range keysN {
			kind := "raise"
			if r%2 == 1 {
				kind = "clear"
			}
			e.enqueue(t, "a", fmt.Sprintf("k%d-%d", k, r), fmt.Sprintf("k%d", k), fmt.Sprintf(`{"key":"k%d","n":%d,"kind":%q}`, k, r, kind))
		}
	}
	waitFor(t, 30*time.Second, "deliveries", func() bool { s := stats(t, c, "a"); return s.Delivered+s.Dead == keysN*rounds })
	if st := stats(t, c, "a"); st.Dead != 0 {
		t.Fatalf("dead letters: %+v", st)
	}
	last := map[string]int{}
	for _, r := range rc.requests() {
		var b struct {
			Key string
			N   int
		}
		if err := json.Unmarshal([]byte(r.Body), &b); err != nil {
			t.Fatal(err)
		}
		prev, ok := last[b.Key]
		if (!ok && b.N != 0) || (ok && b.N != prev && b.N != prev+1) {
			t.Fatalf("key %s: request for %d after %d (ok %v)", b.Key, b.N, prev, ok)
		}
		last[b.Key] = b.N
	}
	if maxInflight < 2 {
		t.Fatalf("at most %d requests at once: unrelated keys did not go in parallel", maxInflight)
	}
	if maxInflight > 8 {
		t.Fatalf("%d requests at once, concurrency 8", maxInflight)
	}
	t.Logf("at most %d requests at once", maxInflight)
}

// TestEnqueueBatch: a batch for two targets is queued in one step; a batch
// naming an unknown target queues nothing.
func TestEnqueueBatch(t *testing.T) {
	s := redistest.Start(t)
	c := s.Client(t)
	ra, rb := newReceiver(t), newReceiver(t)
	putTarget(t, c, target("a", ra.url()))
	putTarget(t, c, target("b", rb.url()))
	watchReconcile(t, c, "a", "b")
	e := startEngine(t, c, Options{})
	ctx := context.Background()
	var batch []Delivery
	for i := range 100 {
		tg := "a"
		if i%3 == 0 {
			tg = "b"
		}
		batch = append(batch, Delivery{ID: fmt.Sprintf("d%d", i), Target: tg, Key: fmt.Sprintf("k%d", i%7), Body: []byte(fmt.Sprintf(`{"n":%d}`, i))})
	}
	bad := append(slices.Clone(batch[:3]), Delivery{ID: "x", Target: "nope", Body: []byte("{}")})
	if err := e.EnqueueBatch(ctx, bad); !errors.Is(err, alerting.ErrUnknownTarget) || !strings.Contains(err.Error(), "nope") {
		t.Fatalf("a batch with an unknown target: %v", err)
	}
	if st := stats(t, c, "a"); st.Matched != 0 {
		t.Fatalf("a refused batch queued something: %+v", st)
	}
	if err := e.EnqueueBatch(ctx, batch); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "deliveries", func() bool {
		return stats(t, c, "a").Delivered == 66 && stats(t, c, "b").Delivered == 34
	})
	if st := stats(t, c, "b"); st.Matched != 34 {
		t.Fatalf("stats %+v", st)
	}
	for _, rc := range []*receiver{ra, rb} {
		last := map[int]int{}
		for _, r := range rc.requests() {
			var n int
			if _, err := fmt.Sscanf(r.Body, `{"n":%d}`, &n); err != nil {
				t.Fatal(err)
			}
			if p, ok := last[n%7]; ok && p > n {
				t.Fatalf("key k%d: %d after %d", n%7, n, p)
			}
			last[n%7] = n
		}
	}
}
