package service

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/rueidis"

	"github.com/voltedge/voltedge/alarmsrv/config"
	"github.com/voltedge/voltedge/alarmsrv/webhook"
	"github.com/voltedge/voltedge/internal/alerting"
	"github.com/voltedge/voltedge/internal/keys"
	"github.com/voltedge/voltedge/internal/metrics"
	"github.com/voltedge/voltedge/internal/redisconn"
	"github.com/voltedge/voltedge/internal/redistest"
	"github.com/voltedge/voltedge/internal/wait"
)

const within = 10 * time.Second

// recorder is an Enqueuer that records deliveries, or refuses them while
// failing is set.
type recorder struct {
	mu      sync.Mutex
	got     []webhook.Delivery
	failing bool
	refused int
}

func (r *recorder) Enqueue(_ context.Context, d webhook.Delivery) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.failing {
		r.refused++
		return errors.New("queue unavailable")
	}
	r.got = append(r.got, d)
	return nil
}

func (r *recorder) setFailing(f bool) { r.mu.Lock(); r.failing = f; r.mu.Unlock() }

func (r *recorder) deliveries() []webhook.Delivery {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.got)
}

func (r *recorder) refusals() int { r.mu.Lock(); defer r.mu.Unlock(); return r.refused }

// events decodes the delivered bodies.
func (r *recorder) events(t *testing.T) []alerting.Event {
	t.Helper()
	var out []alerting.Event
	for _, d := range r.deliveries() {
		var e alerting.Event
		if err := json.Unmarshal(d.Body, &e); err != nil {
			t.Fatal(err)
		}
		out = append(out, e)
	}
	return out
}

// waitCount waits for n deliveries.
func (r *recorder) waitCount(t *testing.T, n int) []webhook.Delivery {
	t.Helper()
	wait.For(t, within, fmt.Sprintf("%d deliveries", n), func() error { return wait.Equal(len(r.deliveries()), n) })
	return r.deliveries()
}

// testConfig parses alarmsrv.toml text with the test's fast settings.
func testConfig(t *testing.T, extra string) *config.Config {
	t.Helper()
	text := `site = "test"
listen = "127.0.0.1:0"
tick_every = "50ms"
reload_every = "200ms"
` + extra
	cfg, err := config.Parse(t.TempDir()+"/alarmsrv.toml", []byte(text))
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// running is an alarmsrv started by a test.
type running struct {
	addr net.Addr
	stop func()
}

// start runs alarmsrv on srv until the returned stop (or the test's end).
func start(t *testing.T, srv *redistest.Server, cfg *config.Config, rec *recorder) *running {
	t.Helper()
	client, err := redisconn.New(srv.URL(), redisconn.Options{ClientName: "alarmsrv", BlockingPool: len(Streams) + 2})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan net.Addr, 1)
	done := make(chan error, 1)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	if testing.Verbose() {
		log = slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	go func() {
		done <- Run(ctx, cfg, Deps{Redis: client, Log: log, Metrics: metrics.NewRegistry(), Enqueuer: rec, Ready: func(a net.Addr) { ready <- a }})
	}()
	var r running
	select {
	case r.addr = <-ready:
	case err := <-done:
		t.Fatalf("alarmsrv stopped: %v", err)
	case <-time.After(within):
		t.Fatal("alarmsrv did not start")
	}
	rc := srv.Client(t)
	wait.For(t, within, "the consumer groups", func() error {
		for _, s := range Streams {
			res, err := rc.Do(context.Background(), rc.B().XinfoGroups().Key(s).Build()).ToArray()
			if err != nil || len(res) == 0 {
				return fmt.Errorf("%s: %v", s, err)
			}
		}
		return nil
	})
	var once sync.Once
	r.stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("alarmsrv: %v", err)
			}
			client.Close()
		})
	}
	t.Cleanup(r.stop)
	return &r
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

func xadd(t *testing.T, rc rueidis.Client, stream string, fv ...string) string {
	t.Helper()
	id, err := redistest.Do(t, rc, append([]string{"XADD", stream, "*"}, fv...)...).ToString()
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// pending is the number of entries of alarmsrv's group not acknowledged.
func pending(t *testing.T, rc rueidis.Client, stream string) int64 {
	t.Helper()
	res, err := rc.Do(context.Background(), rc.B().Xpending().Key(stream).Group(Group).Build()).ToArray()
	if err != nil {
		t.Fatalf("xpending %s: %v", stream, err)
	}
	n, _ := res[0].AsInt64()
	return n
}

func allAcked(t *testing.T, rc rueidis.Client) {
	t.Helper()
	wait.For(t, within, "every entry acknowledged", func() error {
		for _, s := range Streams {
			if n := pending(t, rc, s); n != 0 {
				return fmt.Errorf("%s: %d pending", s, n)
			}
		}
		return nil
	})
}

// everyStream are rules for an event of each stream, all to target ops.
const everyStream = `
[[rule]]
id = "alarms"
events = ["alarm_*"]
model = "meter?"
level = "critical"
targets = ["ops"]

[[rule]]
id = "devices"
events = ["device_offline", "device_online"]
channel = "DTU*"
targets = ["ops"]

[[rule]]
id = "hv"
events = ["data"]
model = "meter1"
point = "voltage"
condition = { op = ">=", value = 250.0 }
targets = ["ops", "sms"]

[[rule]]
id = "controls"
events = ["control_result"]
min_level = "warning"
targets = ["ops"]

[[rule]]
id = "upload"
events = ["upload_warning"]
targets = ["ops"]

[[rule]]
id = "doors"
events = ["custom:door*"]
targets = ["ops"]
`

// TestEveryStreamNotifies appends an event of each kind and checks the
// deliveries, their ids, order keys and bodies, the run logs and the
// acknowledgements.
func TestEveryStreamNotifies(t *testing.T) {
	srv := redistest.Start(t)
	rc := srv.Client(t)
	rec := &recorder{}
	start(t, srv, testConfig(t, everyStream), rec)

	id := xadd(t, rc, keys.AlarmEvents, "type", "raise", "model", "meter1", "point", "voltage", "kind", "high", "value", "260", "limit", "250", "ts", "1000")
	xadd(t, rc, keys.AlarmEvents, "type", "raise", "model", "pcs1", "point", "temp", "kind", "high", "value", "90", "limit", "80", "ts", "1000")
	xadd(t, rc, keys.ConnectionEvents, "event", "offline", "channel", "DTU1001", "reason", "eof", "ts", "1001")
	xadd(t, rc, keys.ConnectionEvents, "event", "online", "channel", "1001", "ts", "1002")
	xadd(t, rc, keys.DataSamples, "channel", "1001", "ts", "1003", "p:10001", "251 meter1:voltage", "p:10002", "5 meter1:current", "p:10003", "7")
	xadd(t, rc, keys.CommandResults, "id", "1", "status", "timeout", "channel", "1001", "point", "20001", "model", "meter1", "control", "setpoint", "value", "3", "ts", "1004")
	xadd(t, rc, keys.CommandResults, "id", "2", "status", "ok", "channel", "1001", "point", "20001", "value", "3", "ts", "1005")
	xadd(t, rc, keys.NetsrvEvents, "event", "db_unreachable", "site", "s9", "detail", "refused", "ts", "1006")
	xadd(t, rc, keys.CustomEvents, "type", "door_open", "channel", "DTU1001", "level", "critical")
	xadd(t, rc, keys.CustomEvents, "type", "smoke")
	xadd(t, rc, keys.CustomEvents, "no_type", "x") // skipped

	ds := rec.waitCount(t, 7)
	allAcked(t, rc)
	byRule := map[string][]alerting.Event{}
	for i, e := range rec.events(t) {
		byRule[e.Rule] = append(byRule[e.Rule], e)
		if ds[i].ID != DeliveryID(e.ID, e.Rule, ds[i].Target) {
			t.Errorf("delivery id %s of %+v", ds[i].ID, e)
		}
	}
	if a := byRule["alarms"]; len(a) != 1 || a[0].ID != keys.AlarmEvents+"/"+id || a[0].Type != alerting.AlarmRaised || a[0].Level != "critical" ||
		a[0].Model != "meter1" || a[0].Fields["limit"] != "250" || a[0].TS != 1000 || a[0].Site != "test" {
		t.Errorf("alarms: %+v", a)
	}
	if d := byRule["devices"]; len(d) != 1 || d[0].Type != alerting.DeviceOffline || d[0].Channel != "DTU1001" || d[0].Level != "warning" {
		t.Errorf("devices: %+v", d)
	}
	if d := byRule["hv"]; len(d) != 2 || d[0].Type != alerting.Data || d[0].Value != "251" || d[0].Point != "voltage" || d[0].Fields["condition"] != ">= 250" {
		t.Errorf("hv: %+v", d)
	}
	if c := byRule["controls"]; len(c) != 1 || c[0].Point != "setpoint" || c[0].Level != "warning" {
		t.Errorf("controls: %+v", c)
	}
	if u := byRule["upload"]; len(u) != 1 || u[0].Site != "s9" || u[0].Fields["detail"] != "refused" {
		t.Errorf("upload: %+v", u)
	}
	if c := byRule["doors"]; len(c) != 1 || c[0].Type != "custom:door_open" || c[0].Level != "critical" {
		t.Errorf("doors: %+v", c)
	}
	keysByTarget := map[string]string{}
	for _, d := range ds {
		keysByTarget[d.Target+" "+d.Key] += "x"
	}
	if keysByTarget["ops meter1:voltage"] != "xx" || keysByTarget["sms meter1:voltage"] != "x" || keysByTarget["ops DTU1001"] != "x" {
		t.Errorf("order keys: %v", keysByTarget)
	}

	runs, err := alerting.ReadRuns(context.Background(), rc, "hv", 0)
	if err != nil || len(runs) != 1 || runs[0].Kind != alerting.RunRaise || len(runs[0].Actions) != 2 || runs[0].Actions[1].Target != "sms" {
		t.Fatalf("run log of hv: %+v %v", runs, err)
	}
}

// TestDataRuleOnDelayFiresFromTicker: a brief spike does not fire; a
// value held past the on-delay fires without a new sample.
func TestDataRuleOnDelayFiresFromTicker(t *testing.T) {
	srv := redistest.Start(t)
	rc := srv.Client(t)
	rec := &recorder{}
	start(t, srv, testConfig(t, `
[[rule]]
id = "hv"
events = ["data"]
point = "voltage"
condition = { op = ">", value = 250.0, on_delay = "1s", off_delay = "500ms" }
targets = ["ops"]
`), rec)
	xadd(t, rc, keys.DataSamples, "channel", "1001", "ts", "1", "p:1", "260 m:voltage")
	time.Sleep(100 * time.Millisecond)
	xadd(t, rc, keys.DataSamples, "channel", "1001", "ts", "2", "p:1", "240 m:voltage")
	time.Sleep(1200 * time.Millisecond)
	if n := len(rec.deliveries()); n != 0 {
		t.Fatalf("a spike of 100ms fired %d deliveries", n)
	}
	id := xadd(t, rc, keys.DataSamples, "channel", "1001", "ts", "3", "p:1", "261 m:voltage")
	ds := rec.waitCount(t, 1)
	ev := rec.events(t)[0]
	if ev.ID != keys.DataSamples+"/"+id+"/1#raise" || ev.Fields["state"] != "raise" || ds[0].Key != "m:voltage" {
		t.Fatalf("%+v %+v", ev, ds[0])
	}
	xadd(t, rc, keys.DataSamples, "channel", "1001", "ts", "4", "p:1", "200 m:voltage")
	rec.waitCount(t, 2)
	if ev := rec.events(t)[1]; ev.Fields["state"] != "clear" || ev.Value != "200" {
		t.Fatalf("%+v", ev)
	}
}

// TestRuleChangedAtRunTime: a rule written to alarm:rules and announced
// applies to the next event; a deleted one no longer does. File rules
// are written at start, replacing stale file rules and keeping API rules.
func TestRuleChangedAtRunTime(t *testing.T) {
	srv := redistest.Start(t)
	rc := srv.Client(t)
	stale, _ := json.Marshal(alerting.Rule{ID: "old", Enabled: true, Events: []string{"custom:*"}, Origin: alerting.OriginFile})
	api, _ := json.Marshal(alerting.Rule{ID: "mine", Enabled: true, Events: []string{"custom:kept"}, Targets: []string{"api"}, Origin: alerting.OriginAPI})
	redistest.Do(t, rc, "HSET", keys.AlarmRules, "old", string(stale), "mine", string(api))
	cfg := testConfig(t, `
[[rule]]
id = "file"
events = ["custom:file"]
targets = ["ops"]
`)
	cfg.ReloadEvery.Duration = time.Hour // only announcements reload
	rec := &recorder{}
	start(t, srv, cfg, rec)
	ids, err := rc.Do(context.Background(), rc.B().Hkeys().Key(keys.AlarmRules).Build()).AsStrSlice()
	slices.Sort(ids)
	if err != nil || !slices.Equal(ids, []string{"file", "mine"}) {
		t.Fatalf("alarm:rules after start: %v %v", ids, err)
	}
	xadd(t, rc, keys.CustomEvents, "type", "kept")
	xadd(t, rc, keys.CustomEvents, "type", "file")
	rec.waitCount(t, 2)

	added, _ := json.Marshal(alerting.Rule{ID: "new", Enabled: true, Events: []string{"custom:new"}, Targets: []string{"api"}, Origin: alerting.OriginAPI})
	redistest.Do(t, rc, "HSET", keys.AlarmRules, "new", string(added))
	redistest.Do(t, rc, "PUBLISH", keys.AlarmRulesChanged, "new")
	wait.For(t, within, "the new rule to apply", func() error {
		xadd(t, rc, keys.CustomEvents, "type", "new")
		time.Sleep(50 * time.Millisecond)
		for _, e := range rec.events(t) {
			if e.Rule == "new" {
				return nil
			}
		}
		return errors.New("not yet")
	})
	redistest.Do(t, rc, "HDEL", keys.AlarmRules, "mine")
	redistest.Do(t, rc, "PUBLISH", keys.AlarmRulesChanged, "mine")
	wait.For(t, within, "the deleted rule to stop", func() error {
		n := len(rec.deliveries())
		xadd(t, rc, keys.CustomEvents, "type", "kept")
		allAcked(t, rc)
		return wait.Check(len(rec.deliveries()) == n, "still delivered")
	})
}

// TestShelvedUntilExpiry: a shelved alarm's events are not delivered until
// the shelving expires; the run log says why.
func TestShelvedUntilExpiry(t *testing.T) {
	srv := redistest.Start(t)
	rc := srv.Client(t)
	rec := &recorder{}
	start(t, srv, testConfig(t, `
[[rule]]
id = "alarms"
events = ["alarm_raised"]
targets = ["ops"]
`), rec)
	now := time.Now().UnixMilli()
	shelf, _ := json.Marshal(map[string]any{"user": "op", "ts": now, "until": now + 3000})
	redistest.Do(t, rc, "HSET", keys.AlarmShelved, "meter1:voltage", string(shelf))
	xadd(t, rc, keys.AlarmEvents, "type", "raise", "model", "meter1", "point", "voltage", "value", "260", "limit", "250")
	xadd(t, rc, keys.AlarmEvents, "type", "raise", "model", "meter2", "point", "voltage", "value", "260", "limit", "250")
	rec.waitCount(t, 1)
	allAcked(t, rc)
	if e := rec.events(t)[0]; e.Model != "meter2" {
		t.Fatalf("delivered %+v", e)
	}
	runs, _ := alerting.ReadRuns(context.Background(), rc, "alarms", 0)
	if len(runs) != 2 || runs[1].Suppressed != "shelved" || len(runs[1].Actions) != 0 {
		t.Fatalf("run log %+v", runs)
	}
	time.Sleep(time.Until(time.UnixMilli(now + 3100)))
	xadd(t, rc, keys.AlarmEvents, "type", "raise", "model", "meter1", "point", "voltage", "value", "261", "limit", "250")
	rec.waitCount(t, 2)
	if e := rec.events(t)[1]; e.Model != "meter1" {
		t.Fatalf("after expiry %+v", e)
	}
}

// TestFailedEnqueueReadAgain: an entry whose delivery is refused stays
// unacknowledged and is delivered once the queue takes it.
func TestFailedEnqueueReadAgain(t *testing.T) {
	srv := redistest.Start(t)
	rc := srv.Client(t)
	rec := &recorder{failing: true}
	start(t, srv, testConfig(t, everyStream), rec)
	xadd(t, rc, keys.CustomEvents, "type", "door_open")
	xadd(t, rc, keys.DataSamples, "channel", "1001", "ts", "1", "p:1", "260 meter1:voltage")
	wait.For(t, within, "refused deliveries", func() error { return wait.Check(rec.refusals() >= 2, "%d", rec.refusals()) })
	if pending(t, rc, keys.CustomEvents) != 1 || pending(t, rc, keys.DataSamples) != 1 {
		t.Fatal("a refused entry was acknowledged")
	}
	rec.setFailing(false)
	rec.waitCount(t, 3) // door, hv to ops and sms
	allAcked(t, rc)
	if runs, _ := alerting.ReadRuns(context.Background(), rc, "hv", 0); len(runs) != 1 {
		t.Fatalf("run log %+v", runs)
	}
}

// TestRestartMidRun: alarmsrv stops with entries read and not queued, and
// events arrive while it is down; the next alarmsrv delivers them all.
func TestRestartMidRun(t *testing.T) {
	srv := redistest.Start(t)
	rc := srv.Client(t)
	cfg := testConfig(t, everyStream)
	first := &recorder{failing: true}
	r := start(t, srv, cfg, first)
	xadd(t, rc, keys.CustomEvents, "type", "door_open")
	xadd(t, rc, keys.AlarmEvents, "type", "raise", "model", "meter1", "point", "voltage", "value", "260", "limit", "250")
	xadd(t, rc, keys.DataSamples, "channel", "1001", "ts", "1", "p:1", "260 meter1:voltage")
	wait.For(t, within, "refused deliveries", func() error { return wait.Check(first.refusals() >= 3, "%d", first.refusals()) })
	r.stop()
	xadd(t, rc, keys.ConnectionEvents, "event", "offline", "channel", "DTU7")
	xadd(t, rc, keys.CustomEvents, "type", "door_closed")

	second := &recorder{}
	start(t, srv, cfg, second)
	second.waitCount(t, 6) // door_open, alarm, hv ×2, offline, door_closed
	allAcked(t, rc)
	seen := map[string]int{}
	for _, e := range second.events(t) {
		seen[e.Rule+" "+e.Type]++
	}
	want := map[string]int{"doors custom:door_open": 1, "doors custom:door_closed": 1, "alarms alarm_raised": 1, "hv data": 2, "devices device_offline": 1}
	for k, n := range want {
		if seen[k] != n {
			t.Errorf("%s: %d deliveries, want %d (all: %v)", k, seen[k], n, seen)
		}
	}
}

// TestRedisRestart: Redis restarts empty under alarmsrv; the groups are
// made again (NOGROUP), the file rules written again, and new events
// notify.
func TestRedisRestart(t *testing.T) {
	srv := redistest.Start(t)
	rc := srv.Client(t)
	rec := &recorder{}
	start(t, srv, testConfig(t, everyStream), rec)
	xadd(t, rc, keys.CustomEvents, "type", "door_open")
	rec.waitCount(t, 1)

	srv.Restart(t)
	wait.For(t, within, "the file rules written again", func() error {
		n, err := rc.Do(context.Background(), rc.B().Hlen().Key(keys.AlarmRules).Build()).AsInt64()
		if err != nil {
			return err
		}
		return wait.Equal(n, int64(6))
	})
	xadd(t, rc, keys.CustomEvents, "type", "door_open")
	xadd(t, rc, keys.AlarmEvents, "type", "raise", "model", "meter1", "point", "voltage", "value", "260", "limit", "250")
	rec.waitCount(t, 3)
	allAcked(t, rc)
}

// TestHealthAndMetrics checks /health and the alarm gauges of /metrics.
func TestHealthAndMetrics(t *testing.T) {
	srv := redistest.Start(t)
	rc := srv.Client(t)
	rec := &recorder{}
	r := start(t, srv, testConfig(t, everyStream), rec)
	redistest.Do(t, rc, "HSET", keys.AlarmActive, "meter1:voltage", `{"kind":"high","value":260,"limit":250,"ts":1}`,
		"pcs1:temp", `{"kind":"high","value":90,"limit":80,"ts":1}`)
	now := time.Now().UnixMilli()
	redistest.Do(t, rc, "HSET", keys.AlarmShelved, "pcs1:temp", fmt.Sprintf(`{"user":"op","ts":%d,"until":%d}`, now, now+60000),
		"x:y", fmt.Sprintf(`{"user":"op","ts":%d,"until":%d}`, now-2000, now-1000))
	xadd(t, rc, keys.CustomEvents, "type", "door_open")
	rec.waitCount(t, 1)

	get := func(path string) (int, string) {
		resp, err := http.Get("http://" + r.addr.String() + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	code, body := get("/metrics")
	for _, want := range []string{"alarmsrv_alarms_active_critical 1", "alarmsrv_alarms_active_warning 1", "alarmsrv_alarms_shelved 1",
		`alarmsrv_entries_read_total{stream="events:custom"} 1`, `alarmsrv_notifications_total{rule="doors"} 1`, "alarmsrv_rules 6"} {
		if code != 200 || !strings.Contains(body, want+"\n") {
			t.Errorf("/metrics has no %q:\n%s", want, body)
		}
	}
	code, body = get("/health")
	var h Health
	if err := json.Unmarshal([]byte(body), &h); err != nil || code != 200 || h.Status != "ok" || h.Rules != 6 || h.Streams[keys.CustomEvents].Acked != 1 {
		t.Fatalf("/health %d %s", code, body)
	}
}

// TestRenotifyFromTicker: a raised alarm is notified again while active,
// up to max_notifications, and the run log shows each.
func TestRenotifyFromTicker(t *testing.T) {
	srv := redistest.Start(t)
	rc := srv.Client(t)
	rec := &recorder{}
	start(t, srv, testConfig(t, `
[[rule]]
id = "alarms"
events = ["alarm_raised"]
targets = ["ops"]
renotify_every = "1s"
max_notifications = 2
`), rec)
	id := xadd(t, rc, keys.AlarmEvents, "type", "raise", "model", "m", "point", "v", "value", "9", "limit", "5")
	ds := rec.waitCount(t, 2)
	if ev := rec.events(t); ev[1].ID != keys.AlarmEvents+"/"+id+"#renotify-1" || ds[0].ID == ds[1].ID || ds[1].Key != "m:v" {
		t.Fatalf("%+v %+v", ev, ds)
	}
	time.Sleep(1500 * time.Millisecond)
	if n := len(rec.deliveries()); n != 2 {
		t.Fatalf("%d deliveries past max_notifications", n)
	}
	runs, err := alerting.ReadRuns(context.Background(), rc, "alarms", 0)
	if err != nil || len(runs) != 2 || runs[0].Kind != alerting.RunRenotify || runs[1].Kind != alerting.RunNotify {
		t.Fatalf("run log %+v %v", runs, err)
	}
}
