package notify_test

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/voltedge/voltedge/alarmsrv/config"
	"github.com/voltedge/voltedge/alarmsrv/notify"
	"github.com/voltedge/voltedge/alarmsrv/service"
	"github.com/voltedge/voltedge/alarmsrv/webhook"
	"github.com/voltedge/voltedge/internal/alerting"
	"github.com/voltedge/voltedge/internal/keys"
	"github.com/voltedge/voltedge/internal/metrics"
	"github.com/voltedge/voltedge/internal/redisconn"
	"github.com/voltedge/voltedge/internal/redistest"
	"github.com/voltedge/voltedge/internal/wait"
	"github.com/voltedge/voltedge/scripts"
)

// secret is a whsec_ secret of 32 bytes.
var secret = "whsec_" + base64.StdEncoding.EncodeToString([]byte("0123456789abcdef0123456789abcdef"))

// receiver records requests whose Standard Webhooks signature it verified
// itself (from the spec, not with alerting's code).
type receiver struct {
	mu   sync.Mutex
	got  []alerting.Event
	bad  int
	srv  *httptest.Server
	fail int // answer 500 to this many requests first
}

func (r *receiver) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	body, _ := io.ReadAll(req.Body)
	id, ts, sigs := req.Header.Get("webhook-id"), req.Header.Get("webhook-timestamp"), req.Header.Get("webhook-signature")
	key, _ := base64.StdEncoding.DecodeString(strings.TrimPrefix(secret, "whsec_"))
	mac := hmac.New(sha256.New, key)
	mac.Write([]byte(id + "." + ts + "." + string(body)))
	want := "v1," + base64.StdEncoding.EncodeToString(mac.Sum(nil))
	ok := false
	for _, s := range strings.Fields(sigs) {
		ok = ok || hmac.Equal([]byte(s), []byte(want))
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if !ok {
		r.bad++
		w.WriteHeader(http.StatusUnauthorized)
		return
	}
	if r.fail > 0 {
		r.fail--
		w.WriteHeader(http.StatusInternalServerError)
		return
	}
	var ev alerting.Event
	_ = json.Unmarshal(body, &ev)
	r.got = append(r.got, ev)
}

func (r *receiver) events() []alerting.Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]alerting.Event(nil), r.got...)
}

// TestAlarmToWebhook runs alarmsrv (rules service, notifier and webhook
// engine) on a private Redis: a threshold crossing written by the Lua
// library reaches a real receiver as a signed webhook, its clear after it
// (even when the first attempt of the raise fails), and a rule changed at
// run time applies to the next event.
func TestAlarmToWebhook(t *testing.T) {
	srv := redistest.Start(t)
	rc, err := redisconn.New(srv.URL(), redisconn.Options{ClientName: "alarmsrv", BlockingPool: 16})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(rc.Close)
	redistest.Do(t, rc, "FUNCTION", "LOAD", scripts.Source())
	redistest.Do(t, rc, "HSET", keys.Mapping, "1001:1", "meter:voltage")
	redistest.Do(t, rc, "HSET", keys.AlarmThreshold, "meter:voltage", "250")

	rec := &receiver{fail: 1}
	rec.srv = httptest.NewServer(rec)
	defer rec.srv.Close()
	doc := fmt.Sprintf(`site = "t1"
listen = "127.0.0.1:0"
include = []
tick_every = "100ms"
reload_every = "500ms"
[[target]]
id = "ops"
url = %q
secrets = [%q]
schedule = ["0s", "200ms", "200ms"]
[[rule]]
id = "voltage"
events = ["alarm_raised", "alarm_cleared"]
model = "meter"
targets = ["ops"]
[[rule]]
id = "ghost"
events = ["alarm_raised"]
targets = ["nobody"]
`, rec.srv.URL, secret)
	cfg, err := config.Parse("alarmsrv.toml", []byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	log := slog.New(slog.DiscardHandler)
	if testing.Verbose() {
		log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	if _, err := notify.SeedTargets(ctx, rc, cfg.Targets); err != nil {
		t.Fatal(err)
	}
	eng := webhook.New(rc, webhook.Options{Consumer: "t1", Log: log, Reload: 200 * time.Millisecond})
	note := notify.New(rc, eng, log)
	go eng.Run(ctx)
	done := make(chan error, 1)
	go func() {
		done <- service.Run(ctx, cfg, service.Deps{Redis: rc, Log: log, Metrics: metrics.NewRegistry(), Enqueuer: note})
	}()
	wait.For(t, 10*time.Second, "alarmsrv's group on alarm:events", func() error {
		n, _ := rc.Do(ctx, rc.B().Exists().Key(keys.AlarmEvents).Build()).AsInt64()
		return wait.Check(n == 1, "not yet")
	})

	fcall := func(ts, v string) {
		if err := rc.Do(ctx, rc.B().Fcall().Function(scripts.FnSyncMeasurement).Numkeys(0).Arg("1001", "1", v, ts).Build()).Error(); err != nil {
			t.Fatal(err)
		}
	}
	fcall("1000", "260") // raise
	fcall("2000", "240") // clear
	wait.For(t, 15*time.Second, "the raise and the clear at the receiver", func() error {
		return wait.Check(len(rec.events()) == 2, "%d events", len(rec.events()))
	})
	got := rec.events()
	if got[0].Type != alerting.AlarmRaised || got[1].Type != alerting.AlarmCleared || got[0].Model != "meter" || got[0].Rule != "voltage" {
		t.Fatalf("received %+v, want the raise, then the clear", got)
	}

	// A rule changed at run time applies to the next event.
	var r alerting.Rule
	raw, _ := rc.Do(ctx, rc.B().Hget().Key(keys.AlarmRules).Field("voltage").Build()).ToString()
	if err := json.Unmarshal([]byte(raw), &r); err != nil {
		t.Fatal(err)
	}
	r.ID, r.Origin, r.Events = "voltage-api", "api", []string{"alarm_raised"}
	b, _ := json.Marshal(r)
	redistest.Do(t, rc, "HSET", keys.AlarmRules, "voltage-api", string(b))
	redistest.Do(t, rc, "PUBLISH", keys.AlarmRulesChanged, "voltage-api")
	time.Sleep(300 * time.Millisecond)
	fcall("3000", "270")
	wait.For(t, 15*time.Second, "the raise through both rules", func() error {
		return wait.Check(len(rec.events()) == 4, "%d events", len(rec.events()))
	})
	rules := map[string]bool{}
	for _, e := range rec.events()[2:] {
		rules[e.Rule] = true
	}
	if !rules["voltage"] || !rules["voltage-api"] || rec.bad != 0 {
		t.Fatalf("rules %v, %d badly signed", rules, rec.bad)
	}
	// The receiver has the calls a moment before the engine has recorded
	// their outcome.
	wait.For(t, 10*time.Second, "4 deliveries counted", func() error {
		st, err := alerting.ReadStats(ctx, rc, "ops")
		if err != nil || !st.Reconciles() {
			return fmt.Errorf("counters %+v %v", st, err)
		}
		return wait.Equal(st.Delivered, int64(4))
	})
	cancel()
	<-done
}

func TestSeedTargetsStrict(t *testing.T) {
	srv := redistest.Start(t)
	rc := srv.Client(t)
	_, err := notify.SeedTargets(context.Background(), rc, []map[string]any{{"id": "ops", "url": "http://127.0.0.1/x", "secrest": []any{"x"}}})
	if err == nil || !strings.Contains(err.Error(), "secrest") {
		t.Fatalf("a misspelt key: %v", err)
	}
	n, err := notify.SeedTargets(context.Background(), rc, []map[string]any{{"id": "ops", "url": "http://127.0.0.1/x"}})
	if err != nil || n != 1 {
		t.Fatal(n, err)
	}
	raw, _ := rc.Do(context.Background(), rc.B().Hget().Key(keys.WebhookTargets).Field("ops").Build()).ToString()
	if !strings.Contains(raw, `"enabled":true`) {
		t.Fatalf("stored %s", raw)
	}
}
