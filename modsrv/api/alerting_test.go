package api

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/rueidis"

	"github.com/voltedge/voltedge/internal/alerting"
	"github.com/voltedge/voltedge/internal/keys"
)

// fileRule writes a rule the way alarmsrv writes those of its file.
func fileRule(t *testing.T, e *env, js string) {
	t.Helper()
	var r alerting.Rule
	if err := json.Unmarshal([]byte(js), &r); err != nil {
		t.Fatal(err)
	}
	r.Origin = alerting.OriginFile
	b, _ := json.Marshal(r)
	e.redis(t, "HSET", keys.AlarmRules, r.ID, string(b))
}

// subscribeRules collects the messages of keys.AlarmRulesChanged.
func subscribeRules(t *testing.T, e *env) func() []string {
	t.Helper()
	var mu sync.Mutex
	var got []string
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = e.rc.Receive(ctx, e.rc.B().Subscribe().Channel(keys.AlarmRulesChanged).Build(), func(m rueidis.PubSubMessage) {
			mu.Lock()
			got = append(got, m.Message)
			mu.Unlock()
		})
	}()
	// The subscription is in place once a message published now arrives.
	go func() {
		defer close(ready)
		deadline := time.Now().Add(patience)
		for time.Now().Before(deadline) {
			e.redis(t, "PUBLISH", keys.AlarmRulesChanged, "probe")
			time.Sleep(20 * time.Millisecond)
			mu.Lock()
			n := len(got)
			mu.Unlock()
			if n > 0 {
				return
			}
		}
	}()
	<-ready
	t.Cleanup(func() { cancel(); <-done })
	return func() []string {
		mu.Lock()
		defer mu.Unlock()
		var out []string
		for _, m := range got {
			if m != "probe" {
				out = append(out, m)
			}
		}
		return out
	}
}

func TestRulesCRUD(t *testing.T) {
	e := newEnv(t, "")
	fileRule(t, e, `{"id":"hot","events":["alarm_raised"],"model":"pcs*","level":"critical","targets":["ops"]}`)
	changed := subscribeRules(t, e)

	e.redis(t, "HSET", keys.AlarmRules, "broken", `{"id":"broken","events":[]}`)
	r := e.do(t, "GET", "/rules", "").ok(t, 200)
	if l := r.list(t, "rules"); len(l) != 1 || l[0].(map[string]any)["origin"] != "file" ||
		!strings.Contains(fmt.Sprint(r.obj(t, "invalid")["broken"]), "events") {
		t.Fatalf("rules: %s", r.raw)
	}
	e.redis(t, "HDEL", keys.AlarmRules, "broken")
	e.do(t, "GET", "/rules/hot", "").ok(t, 200)
	e.do(t, "GET", "/rules/nope", "").fails(t, 404, "not_found", `no rule "nope"`)
	e.do(t, "GET", "/rules/a%20b", "").fails(t, 400, "bad_request", "invalid rule id")

	// Writes need credentials.
	body := `{"id":"door","name":"Door open","events":["custom:door"],"targets":["ops"]}`
	e.do(t, "POST", "/rules", body).fails(t, 401, "unauthorized", "credentials")
	r = e.do(t, "POST", "/rules", body, "auth", token).ok(t, 201)
	if r.body["origin"] != "api" || r.body["enabled"] != true {
		t.Fatalf("created: %s", r.raw)
	}
	e.do(t, "POST", "/rules", body, "auth", token).fails(t, 409, "conflict", `rule "door" exists`)
	e.do(t, "POST", "/rules", `{"id":"hot","events":["alarm_raised"]}`, "auth", token).fails(t, 409, "conflict", "exists")

	// 400 names the field.
	for in, want := range map[string]string{
		`{"id":"x","events":[]}`:                                        "events: no event type",
		`{"id":"x","events":["nonsense"]}`:                              "events[0]:",
		`{"id":"x","events":["data"],"condition":{"op":"~","value":1}}`: "condition.op:",
		`{"id":"x","events":["data"],"condition":{"op":">","valu":1}}`:  "condition.valu: unknown field",
		`{"id":"x","events":["alarm_raised"],"level":"loud"}`:           "level:",
		`{"id":"x","events":["alarm_raised"],"colour":"red"}`:           "colour: unknown field",
		`{"id":"x","events":"alarm_raised"}`:                            "events: want []string",
		`{"id":"bad id","events":["alarm_raised"]}`:                     "id:",
		`[1]`: "body must be a JSON object",
	} {
		e.do(t, "POST", "/rules", in, "auth", token).fails(t, 400, "bad_request", want)
	}
	big := `{"id":"x","events":["alarm_raised"],"name":"` + strings.Repeat("a", RuleBodyLimit) + `"}`
	e.do(t, "POST", "/rules", big, "auth", token).fails(t, 413, "payload_too_large", "at most")

	// Change: the id may be left out; a file rule cannot be changed.
	r = e.do(t, "PUT", "/rules/door", `{"events":["custom:door"],"enabled":false,"level":"info"}`, "auth", token).ok(t, 200)
	if r.body["enabled"] != false || r.body["id"] != "door" {
		t.Fatalf("changed: %s", r.raw)
	}
	if got := e.do(t, "GET", "/rules/door", "").ok(t, 200); got.body["enabled"] != false || got.body["level"] != "info" {
		t.Fatalf("stored: %s", got.raw)
	}
	e.do(t, "PUT", "/rules/door", `{"id":"other","events":["custom:door"]}`, "auth", token).fails(t, 400, "bad_request", "differs")
	e.do(t, "PUT", "/rules/nope", `{"events":["custom:door"]}`, "auth", token).fails(t, 404, "not_found", "no rule")
	e.do(t, "PUT", "/rules/hot", `{"events":["alarm_raised"]}`, "auth", token).fails(t, 409, "conflict", "configuration file")
	e.do(t, "DELETE", "/rules/hot", "", "auth", token).fails(t, 409, "conflict", "configuration file")

	// Runs of the rule, newest first.
	run := alerting.Run{Event: alerting.Event{ID: "events:custom/1-0", Type: "custom:door"}, TS: 1732212345678, Kind: alerting.RunNotify,
		Actions: []alerting.Action{{Target: "ops", Delivery: "abc"}}}
	b, _ := json.Marshal(run)
	run.TS++
	b2, _ := json.Marshal(run)
	e.redis(t, "LPUSH", keys.AlarmRuleRuns("door"), string(b), string(b2))
	r = e.do(t, "GET", "/rules/door/runs?limit=1", "").ok(t, 200)
	if l := r.list(t, "runs"); len(l) != 1 || l[0].(map[string]any)["ts"] != float64(1732212345679) {
		t.Fatalf("runs: %s", r.raw)
	}
	e.do(t, "GET", "/rules/nope/runs", "").fails(t, 404, "not_found", "no rule")
	e.do(t, "GET", "/rules/door/runs?limit=0", "").fails(t, 400, "bad_request", "limit")

	r = e.do(t, "DELETE", "/rules/door", "", "auth", token).ok(t, 200)
	if r.body["deleted"] != true || redisInt(t, e, "EXISTS", keys.AlarmRuleRuns("door")) != 0 {
		t.Fatalf("deleted: %s", r.raw)
	}
	e.do(t, "DELETE", "/rules/door", "", "auth", token).fails(t, 404, "not_found", "no rule")

	// Each write was announced for alarmsrv.
	var got []string
	deadline := time.Now().Add(patience)
	for time.Now().Before(deadline) {
		if got = changed(); len(got) >= 3 {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if strings.Join(got, ",") != "door,door,door" {
		t.Fatalf("announcements %v", got)
	}
}

func redisInt(t *testing.T, e *env, args ...string) int64 {
	t.Helper()
	n, err := e.redis(t, args...).AsInt64()
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func TestRuleTest(t *testing.T) {
	e := newEnv(t, "")
	fileRule(t, e, `{"id":"hot","events":["data"],"model":"pcs*","point":"temp","level":"critical","targets":["ops"],
		"condition":{"op":">","value":80,"on_delay":"30s"}}`)
	r := e.do(t, "POST", "/rules/hot/test", `{"type":"data","model":"pcs1","point":"temp","value":"85"}`, "auth", token).ok(t, 200)
	if r.body["matched"] != true || r.body["fires"] != true || r.body["level"] != "critical" ||
		!strings.Contains(r.body["reason"].(string), "30s") || r.obj(t, "event")["rule"] != "hot" {
		t.Fatalf("test: %s", r.raw)
	}
	r = e.do(t, "POST", "/rules/hot/test", `{"type":"data","model":"pcs1","point":"temp","value":"70"}`, "auth", token).ok(t, 200)
	if r.body["matched"] != true || r.body["fires"] != false {
		t.Fatalf("below the limit: %s", r.raw)
	}
	r = e.do(t, "POST", "/rules/hot/test", `{"type":"data","model":"bms1","point":"temp","value":"85"}`, "auth", token).ok(t, 200)
	if r.body["matched"] != false || !strings.Contains(r.body["reason"].(string), "model") {
		t.Fatalf("other model: %s", r.raw)
	}
	// Nothing was written.
	if n := redisInt(t, e, "EXISTS", keys.AlarmRuleRuns("hot")); n != 0 {
		t.Fatal("the test wrote a run")
	}
	e.do(t, "POST", "/rules/hot/test", `{"model":"pcs1"}`).fails(t, 401, "unauthorized", "credentials")
	e.do(t, "POST", "/rules/hot/test", `{"model":"pcs1"}`, "auth", token).fails(t, 400, "bad_request", "event.type: required")
	e.do(t, "POST", "/rules/hot/test", `{"type":"data","lvl":"x"}`, "auth", token).fails(t, 400, "bad_request", "event.lvl: unknown field")
	e.do(t, "POST", "/rules/nope/test", `{"type":"data"}`, "auth", token).fails(t, 404, "not_found", "no rule")

	// An unsaved rule.
	r = e.do(t, "POST", "/rules/test", `{"rule":{"id":"draft","events":["device_offline"],"channel":"10*","targets":["a","b"]},
		"event":{"type":"device_offline","channel":"1001"}}`, "auth", token).ok(t, 200)
	if r.body["fires"] != true || len(r.list(t, "targets")) != 2 {
		t.Fatalf("unsaved: %s", r.raw)
	}
	e.do(t, "POST", "/rules/test", `{"rule":{"id":"draft","events":[]},"event":{"type":"x"}}`, "auth", token).
		fails(t, 400, "bad_request", "events: no event type")
	e.do(t, "POST", "/rules/test", `{"rule":{"id":"draft","events":["data"]}}`, "auth", token).fails(t, 400, "bad_request", "event: required")
	e.do(t, "POST", "/rules/test", `{"event":{"type":"x"}}`, "auth", token).fails(t, 400, "bad_request", "rule: required")
	if n := redisInt(t, e, "HEXISTS", keys.AlarmRules, "draft"); n != 0 {
		t.Fatal("the unsaved rule was saved")
	}
}

func TestShelveAndLevels(t *testing.T) {
	e := newEnv(t, "")
	now := time.Now().UnixMilli()
	for ref, kind := range map[string]string{"pcs1:temp": "high", "pcs2:temp": "high", "bms:soc": "low"} {
		e.redis(t, "HSET", keys.AlarmActive, ref, fmt.Sprintf(`{"kind":%q,"value":90,"limit":80,"ts":%d}`, kind, now))
	}
	fileRule(t, e, `{"id":"hot","events":["alarm_raised"],"model":"pcs*","level":"critical"}`)
	fileRule(t, e, `{"id":"low","events":["alarm_*"],"point":"soc","level":"info"}`)
	fileRule(t, e, `{"id":"off","events":["alarm_raised"],"model":"bms","level":"critical","enabled":false}`)

	r := e.do(t, "GET", "/alarms", "").ok(t, 200)
	levels := map[string]string{}
	for _, a := range r.list(t, "active") {
		m := a.(map[string]any)
		levels[m["ref"].(string)] = m["level"].(string)
		if m["shelved"] != nil {
			t.Fatalf("shelved before shelving: %v", m)
		}
	}
	if levels["pcs1:temp"] != "critical" || levels["pcs2:temp"] != "critical" || levels["bms:soc"] != "info" {
		t.Fatalf("levels %v", levels)
	}
	if bl := r.obj(t, "by_level"); bl["critical"] != float64(2) || bl["info"] != float64(1) || bl["warning"] != float64(0) {
		t.Fatalf("by_level %v", bl)
	}

	e.do(t, "POST", "/alarms/pcs1:temp/shelve", `{"until":"2h"}`).fails(t, 401, "unauthorized", "credentials")
	r = e.do(t, "POST", "/alarms/pcs1:temp/shelve", `{"until":"2h"}`, "auth", token).ok(t, 200)
	until := int64(r.body["until"].(float64))
	if r.body["user"] != "scada" || r.body["active"] != true || until < now+2*3600_000-1000 || until > time.Now().UnixMilli()+2*3600_000 {
		t.Fatalf("shelved: %s", r.raw)
	}
	var sh Shelf
	js, _ := e.redis(t, "HGET", keys.AlarmShelved, "pcs1:temp").ToString()
	if err := json.Unmarshal([]byte(js), &sh); err != nil {
		t.Fatal(err)
	}
	if sh.User != "scada" || sh.Until != until {
		t.Fatalf("alarm:shelved %+v", sh)
	}
	for _, a := range e.do(t, "GET", "/alarms", "").ok(t, 200).list(t, "active") {
		m := a.(map[string]any)
		s, _ := m["shelved"].(map[string]any)
		if (m["ref"] == "pcs1:temp") != (s != nil) || (s != nil && (s["user"] != "scada" || s["until"] != float64(until))) {
			t.Fatalf("alarm %v", m)
		}
	}
	// Unix ms, and an inactive point (shelved ahead of maintenance).
	r = e.do(t, "POST", "/alarms/pcs9:temp/shelve", fmt.Sprintf(`{"until":%d}`, now+60_000), "auth", token).ok(t, 200)
	if r.body["active"] != false || r.body["until"] != float64(now+60_000) {
		t.Fatalf("ms: %s", r.raw)
	}
	// An expired entry is not shown.
	e.redis(t, "HSET", keys.AlarmShelved, "pcs2:temp", fmt.Sprintf(`{"user":"x","ts":%d,"until":%d}`, now-2000, now-1000))
	for _, a := range e.do(t, "GET", "/alarms", "").ok(t, 200).list(t, "active") {
		if m := a.(map[string]any); m["ref"] == "pcs2:temp" && m["shelved"] != nil {
			t.Fatalf("expired shelving shown: %v", m)
		}
	}
	for in, want := range map[string]string{
		`{}`:                   "until: required",
		`{"until":"-2h"}`:      "not positive",
		`{"until":"soon"}`:     "neither Unix ms nor a duration",
		`{"until":"200h"}`:     "more than 168h",
		`{"until":1}`:          "not in the future",
		`{"until":true}`:       "until:",
		`{"until":"2h","x":1}`: "unknown field",
	} {
		e.do(t, "POST", "/alarms/pcs1:temp/shelve", in, "auth", token).fails(t, 400, "bad_request", want)
	}
	e.do(t, "POST", "/alarms/pcs1/shelve", `{"until":"2h"}`, "auth", token).fails(t, 400, "bad_request", "invalid alarm reference")

	e.do(t, "DELETE", "/alarms/pcs1:temp/shelve", "", "auth", token).ok(t, 200)
	e.do(t, "DELETE", "/alarms/pcs1:temp/shelve", "", "auth", token).fails(t, 404, "not_found", "not shelved")
	if n := redisInt(t, e, "HEXISTS", keys.AlarmShelved, "pcs1:temp"); n != 0 {
		t.Fatal("still shelved")
	}
}

// receiver is a webhook receiver that checks signatures.
type receiver struct {
	*httptest.Server
	secret string
	mu     sync.Mutex
	got    []*http.Request
	bodies []string
	status int
}

func newReceiver(t *testing.T, secret string, status int) *receiver {
	rc := &receiver{secret: secret, status: status}
	rc.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		ts, _ := strconv.ParseInt(r.Header.Get(alerting.HeaderTimestamp), 10, 64)
		want, err := alerting.Sign([]string{rc.secret}, r.Header.Get(alerting.HeaderID), time.Unix(ts, 0), b)
		rc.mu.Lock()
		rc.got = append(rc.got, r)
		rc.bodies = append(rc.bodies, string(b))
		status := rc.status
		rc.mu.Unlock()
		if err != nil || want != r.Header.Get(alerting.HeaderSignature) {
			http.Error(w, "bad signature", http.StatusUnauthorized)
			return
		}
		w.Header().Set("X-Receiver", "test")
		w.WriteHeader(status)
		fmt.Fprintf(w, "received %d bytes", len(b))
	}))
	t.Cleanup(rc.Close)
	return rc
}

const testSecret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"

func TestWebhookTargets(t *testing.T) {
	e := newEnv(t, "")
	rcv := newReceiver(t, testSecret, 200)
	r := e.do(t, "GET", "/webhooks/targets", "").ok(t, 200)
	if len(r.list(t, "targets")) != 0 {
		t.Fatalf("targets: %s", r.raw)
	}
	body := fmt.Sprintf(`{"id":"ops","url":%q,"secrets":[%q],"headers":{"Authorization":"Bearer abc","X-Site":"north"},"enabled":true}`, rcv.URL, testSecret)
	e.do(t, "POST", "/webhooks/targets", body).fails(t, 401, "unauthorized", "credentials")
	r = e.do(t, "POST", "/webhooks/targets", body, "auth", token).ok(t, 201)
	if strings.Contains(r.raw, testSecret) || strings.Contains(r.raw, "abc") {
		t.Fatalf("secret in the answer: %s", r.raw)
	}
	e.do(t, "POST", "/webhooks/targets", body, "auth", token).fails(t, 409, "conflict", "exists")
	// Without "enabled", a new target is enabled.
	if r := e.do(t, "POST", "/webhooks/targets", `{"id":"plain","url":"http://127.0.0.1:1/x"}`, "auth", token).ok(t, 201); r.body["enabled"] != true {
		t.Fatalf("a target created without enabled: %s", r.raw)
	}
	e.do(t, "DELETE", "/webhooks/targets/plain", "", "auth", token).ok(t, 200)
	e.do(t, "POST", "/webhooks/targets", `{"id":"x","url":"ftp://a"}`, "auth", token).fails(t, 400, "bad_request", "only http and https")
	e.do(t, "POST", "/webhooks/targets", `{"id":"x","url":"http://a","secret":"s"}`, "auth", token).fails(t, 400, "bad_request", "secret: unknown field")

	// Counters and the queue as alarmsrv keeps them: of 3 queued
	// deliveries its group has read 2, one of which waits for a retry.
	now := time.Now().UnixMilli()
	e.redis(t, "HSET", keys.WebhookStats("ops"), alerting.StatMatched, "10", alerting.StatDelivered, "5", alerting.StatDead, "1",
		alerting.StatDropped, "1", alerting.StatAttempts, "9", alerting.StatFailingSince, strconv.FormatInt(now-60_000, 10),
		alerting.StatLastStatus, "500", alerting.StatLastError, "HTTP 500")
	e.redis(t, "XGROUP", "CREATE", keys.WebhookQueue("ops"), alerting.QueueGroup, "0", "MKSTREAM")
	var first string
	for i := 0; i < 3; i++ {
		id, _ := e.redis(t, "XADD", keys.WebhookQueue("ops"), "*", "id", "d"+strconv.Itoa(i), "key", "", "body", "{}", "ts", "1").ToString()
		if i == 0 {
			first = id
		}
	}
	e.redis(t, "XREADGROUP", "GROUP", alerting.QueueGroup, "alarmsrv-1", "COUNT", "2", "STREAMS", keys.WebhookQueue("ops"), ">")
	e.redis(t, "HSET", keys.WebhookRetry("ops"), first, `{"attempt":1,"next_at":0,"last_status":500,"last_error":"HTTP 500"}`)
	r = e.do(t, "GET", "/webhooks/targets", "").ok(t, 200)
	ts := r.list(t, "targets")[0].(map[string]any)
	c, h := ts["counters"].(map[string]any), ts["health"].(map[string]any)
	tg := ts["target"].(map[string]any)
	if c["matched"] != float64(10) || c["delivered"] != float64(5) || c["failed"] != float64(1) || c["in_flight"] != float64(1) ||
		c["queued"] != float64(1) || c["dropped"] != float64(1) ||
		c["dead"] != float64(1) || c["last_status"] != float64(500) || h["enabled"] != true || h["failing_since"] != float64(now-60_000) ||
		tg["secrets"].([]any)[0] != alerting.RedactedSecret || tg["headers"].(map[string]any)["Authorization"] != "****" ||
		tg["headers"].(map[string]any)["X-Site"] != "north" {
		t.Fatalf("target: %s", r.raw)
	}
	if strings.Contains(r.raw, testSecret) || strings.Contains(r.raw, "Bearer abc") {
		t.Fatalf("secret in the answer: %s", r.raw)
	}

	// alarmsrv disabled it; sending back the redacted target enables it
	// and keeps the secret and the credential header.
	var stored alerting.Target
	js, _ := e.redis(t, "HGET", keys.WebhookTargets, "ops").ToString()
	_ = json.Unmarshal([]byte(js), &stored)
	stored.Enabled, stored.DisabledReason = false, "410 Gone"
	b, _ := json.Marshal(stored)
	e.redis(t, "HSET", keys.WebhookTargets, "ops", string(b))
	h = e.do(t, "GET", "/webhooks/targets", "").ok(t, 200).list(t, "targets")[0].(map[string]any)["health"].(map[string]any)
	if h["enabled"] != false || h["disabled_reason"] != "410 Gone" {
		t.Fatalf("health %v", h)
	}
	tg["enabled"] = true
	b, _ = json.Marshal(tg)
	e.do(t, "PUT", "/webhooks/targets/ops", string(b), "auth", token).ok(t, 200)
	js, _ = e.redis(t, "HGET", keys.WebhookTargets, "ops").ToString()
	stored = alerting.Target{}
	_ = json.Unmarshal([]byte(js), &stored)
	if !stored.Enabled || stored.DisabledReason != "" || stored.Secrets[0] != testSecret || stored.Headers["Authorization"] != "Bearer abc" {
		t.Fatalf("stored %s", js)
	}
	e.do(t, "PUT", "/webhooks/targets/new", `{"url":"http://x","secrets":["whsec_****"]}`, "auth", token).fails(t, 400, "bad_request", "there is none")
	e.do(t, "PUT", "/webhooks/targets/new", `{"url":"http://127.0.0.1:9/x","enabled":true}`, "auth", token).ok(t, 201)
	e.do(t, "PUT", "/webhooks/targets/new", `{"id":"other","url":"http://x"}`, "auth", token).fails(t, 400, "bad_request", "differs")

	// The test request reaches the receiver signed; its answer comes back.
	r = e.do(t, "POST", "/webhooks/test", `{"target":"ops"}`, "auth", token).ok(t, 200)
	if r.body["status"] != float64(200) || r.body["ok"] != true || r.body["signed"] != true ||
		!strings.HasPrefix(r.body["body"].(string), "received ") || r.obj(t, "headers")["X-Receiver"] == nil {
		t.Fatalf("test: %s", r.raw)
	}
	rcv.mu.Lock()
	if len(rcv.got) != 1 || rcv.got[0].Header.Get("Authorization") != "Bearer abc" || !strings.Contains(rcv.bodies[0], `"sample_model"`) {
		t.Fatalf("received %v %v", rcv.got, rcv.bodies)
	}
	rcv.mu.Unlock()
	r = e.do(t, "POST", "/webhooks/test", `{"target":"ops","event":{"type":"custom:door","model":"gate"}}`, "auth", token).ok(t, 200)
	rcv.mu.Lock()
	if !strings.Contains(rcv.bodies[1], `"custom:door"`) {
		t.Fatalf("event body %s", rcv.bodies[1])
	}
	rcv.mu.Unlock()
	rcv.mu.Lock()
	rcv.status = 503
	rcv.mu.Unlock()
	if r = e.do(t, "POST", "/webhooks/test", `{"target":"ops"}`, "auth", token).ok(t, 200); r.body["ok"] != false || r.body["status"] != float64(503) {
		t.Fatalf("503: %s", r.raw)
	}
	// Nothing answers at port 9 of this host: 502.
	r = e.do(t, "POST", "/webhooks/test", `{"target":"new"}`, "auth", token)
	if r.code != 502 || r.obj(t, "error")["code"] != "bad_gateway" {
		t.Fatalf("unreachable: %s", r.raw)
	}
	e.do(t, "POST", "/webhooks/test", `{"target":"gone"}`, "auth", token).fails(t, 404, "not_found", "no webhook target")
	e.do(t, "POST", "/webhooks/test", `{"target":"ops"}`).fails(t, 401, "unauthorized", "credentials")

	e.do(t, "DELETE", "/webhooks/targets/new", "", "auth", token).ok(t, 200)
	e.do(t, "DELETE", "/webhooks/targets/new", "", "auth", token).fails(t, 404, "not_found", "no webhook target")
}

// deadLetter adds a dead letter the way alarmsrv does after the last
// attempt: an entry of keys.WebhookDead and the target's dead counter.
func deadLetter(t *testing.T, e *env, target, id string, deadAt int64) string {
	t.Helper()
	entry, err := e.redis(t, "XADD", keys.WebhookDead, strconv.FormatInt(deadAt, 10)+"-*",
		alerting.FieldTarget, target, alerting.FieldID, id, alerting.FieldKey, "pcs1:temp",
		alerting.FieldBody, `{"type":"alarm_raised","model":"pcs1"}`, alerting.FieldTS, strconv.FormatInt(deadAt-1000, 10),
		alerting.FieldAttempts, "8", alerting.FieldLastStatus, "500", alerting.FieldLastError, "HTTP 500",
		alerting.FieldDeadAt, strconv.FormatInt(deadAt, 10)).ToString()
	if err != nil {
		t.Fatal(err)
	}
	e.redis(t, "HINCRBY", keys.WebhookStats(target), alerting.StatMatched, "1")
	e.redis(t, "HINCRBY", keys.WebhookStats(target), alerting.StatDead, "1")
	return entry
}

func TestDeadLetters(t *testing.T) {
	e := newEnv(t, "")
	e.redis(t, "HSET", keys.WebhookTargets, "ops", `{"id":"ops","url":"http://127.0.0.1:9/","enabled":true}`)
	e.redis(t, "HSET", keys.WebhookTargets, "crm", `{"id":"crm","url":"http://127.0.0.1:9/","enabled":true}`)
	var entries []string
	for i := 0; i < 5; i++ {
		entries = append(entries, deadLetter(t, e, "ops", "d"+strconv.Itoa(i), int64(1000_000+i*1000)))
	}
	deadLetter(t, e, "crm", "c0", 1005_000)
	gone := deadLetter(t, e, "gone", "g0", 1006_000)

	r := e.do(t, "GET", "/webhooks/dead?count=3", "").ok(t, 200)
	l := r.list(t, "dead")
	if len(l) != 3 || r.body["total"] != float64(7) || r.body["next"] == "" || l[0].(map[string]any)["entry"] != entries[0] ||
		l[0].(map[string]any)["attempts"] != float64(8) || l[0].(map[string]any)["target"] != "ops" {
		t.Fatalf("page 1: %s", r.raw)
	}
	r = e.do(t, "GET", "/webhooks/dead?count=3&from="+r.body["next"].(string), "").ok(t, 200)
	if len(r.list(t, "dead")) != 3 {
		t.Fatalf("page 2: %s", r.raw)
	}
	e.do(t, "GET", "/webhooks/dead?from=x", "").fails(t, 400, "bad_request", "entry id")

	e.do(t, "POST", "/webhooks/dead/"+entries[0]+"/retry", "").fails(t, 401, "unauthorized", "credentials")
	e.do(t, "POST", "/webhooks/dead/"+entries[0]+"/retry", "", "auth", token).ok(t, 200)
	e.do(t, "POST", "/webhooks/dead/"+entries[0]+"/retry", "", "auth", token).fails(t, 404, "not_found", "no such dead letter")
	e.do(t, "POST", "/webhooks/dead/"+gone+"/retry", "", "auth", token).fails(t, 409, "conflict", "target was deleted")
	e.do(t, "POST", "/webhooks/dead/nope/retry", "", "auth", token).fails(t, 400, "bad_request", "invalid dead letter id")
	if n := redisInt(t, e, "XLEN", keys.WebhookQueue("ops")); n != 1 {
		t.Fatalf("queue of ops: %d", n)
	}
	st := e.do(t, "GET", "/webhooks/targets", "").ok(t, 200).list(t, "targets")
	for _, x := range st {
		m := x.(map[string]any)
		if c := m["counters"].(map[string]any); m["id"] == "ops" && (c["dead"] != float64(4) || c["queued"] != float64(1)) {
			t.Fatalf("counters after a retry: %v", c)
		}
	}

	// A time range for one target, then for all: ops d1, d2 and d3 died in 1001..1003 s.
	r = e.do(t, "POST", "/webhooks/dead/retry?from=1001000&to=1005999&target=crm", "", "auth", token).ok(t, 200)
	if r.body["retried"] != float64(1) || redisInt(t, e, "XLEN", keys.WebhookQueue("crm")) != 1 {
		t.Fatalf("crm: %s", r.raw)
	}
	r = e.do(t, "POST", "/webhooks/dead/retry?from=1001000&to="+time.UnixMilli(1003999).UTC().Format(time.RFC3339Nano), "", "auth", token).ok(t, 200)
	if r.body["retried"] != float64(3) || redisInt(t, e, "XLEN", keys.WebhookQueue("ops")) != 4 {
		t.Fatalf("range: %s", r.raw)
	}
	e.do(t, "POST", "/webhooks/dead/retry?from=soon", "", "auth", token).fails(t, 400, "bad_request", "Unix ms or an RFC 3339")
	e.do(t, "POST", "/webhooks/dead/retry?from=5&to=4", "", "auth", token).fails(t, 400, "bad_request", "before")
	r = e.do(t, "GET", "/webhooks/dead", "").ok(t, 200)
	if r.body["total"] != float64(2) { // ops d4 and the deleted target's
		t.Fatalf("left: %s", r.raw)
	}
}
