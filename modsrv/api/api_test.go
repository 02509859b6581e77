package api

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/redis/rueidis"
	"golang.org/x/crypto/bcrypt"

	"github.com/voltedge/voltedge/internal/contract"
	"github.com/voltedge/voltedge/internal/contract/contracttest"
	"github.com/voltedge/voltedge/internal/keys"
	"github.com/voltedge/voltedge/internal/lualib"
	"github.com/voltedge/voltedge/internal/metrics"
	"github.com/voltedge/voltedge/internal/redisconn"
	"github.com/voltedge/voltedge/internal/redistest"
	"github.com/voltedge/voltedge/internal/svc"
	"github.com/voltedge/voltedge/internal/wait"
	"github.com/voltedge/voltedge/modsrv/auth"
	"github.com/voltedge/voltedge/modsrv/config"
	"github.com/voltedge/voltedge/scripts"
)

// patience bounds every wait of these tests: generous, as they run on
// loaded machines; a passing test never waits this long.
const patience = 20 * time.Second

const token = "test-token-0123456789-abcdefghijk"

// env is a private Redis with the Lua library and an API application on it.
type env struct {
	srv  *redistest.Server
	rc   rueidis.Client
	app  *fiber.App
	reg  *metrics.Registry
	deps Deps
}

// newEnv starts Redis and builds the app from a configuration with the
// token "scada" and the user "op" (password "pw"); extra is appended to it.
func newEnv(t *testing.T, extra string) *env {
	t.Helper()
	srv := redistest.Start(t)
	rc := srv.Client(t)
	if _, err := lualib.Ensure(context.Background(), rc); err != nil {
		t.Fatal(err)
	}
	h, err := bcrypt.GenerateFromPassword([]byte("pw"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	doc := extra + "\n[[token]]\nname = \"scada\"\ntoken = \"" + token + "\"\n[[user]]\nname = \"op\"\nbcrypt = \"" + string(h) + "\"\n"
	cfg, err := config.Parse("test.toml", []byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	o := auth.Options{ReadOpen: cfg.ReadOpen, LoginRate: cfg.LoginRate, SessionTTL: cfg.SessionTTL.Duration, MaxSessions: cfg.MaxSessions}
	for _, tk := range cfg.Tokens {
		o.Tokens = append(o.Tokens, auth.Token{Name: tk.Name, Secret: tk.Token})
	}
	for _, u := range cfg.Users {
		o.Users = append(o.Users, auth.User{Name: u.Name, Hash: u.Bcrypt})
	}
	a, err := auth.New(o)
	if err != nil {
		t.Fatal(err)
	}
	reg := svc.BaseMetrics("modsrv", rc, time.Now())
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	results := contract.NewResults(rc, log)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); results.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	deps := Deps{Redis: rc, Auth: a, Log: log, Metrics: reg, Config: cfg, Results: results}
	app, err := New(deps)
	if err != nil {
		t.Fatal(err)
	}
	return &env{srv: srv, rc: rc, app: app, reg: reg, deps: deps}
}

func (e *env) redis(t *testing.T, args ...string) rueidis.RedisResult {
	t.Helper()
	return redistest.Do(t, e.rc, args...)
}

func (e *env) fcall(t *testing.T, fn string, args ...string) rueidis.RedisResult {
	t.Helper()
	r := e.rc.Do(context.Background(), e.rc.B().Fcall().Function(fn).Numkeys(0).Arg(args...).Build())
	if err := r.Error(); err != nil {
		t.Fatalf("%s %v: %v", fn, args, err)
	}
	return r
}

// reply is an answer of the app.
type reply struct {
	code int
	raw  string
	body map[string]any
	resp *http.Response
}

// do sends a request; hdr is name, value pairs. "auth" as a name sends the
// bearer token.
func (e *env) do(t *testing.T, method, path, body string, hdr ...string) reply {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req := httptest.NewRequest(method, path, rd)
	req.Host = "localhost" // not httptest's example.com: by default only IP addresses and localhost pass
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		if hdr[i] == "auth" {
			req.Header.Set("Authorization", "Bearer "+hdr[i+1])
			continue
		}
		if hdr[i] == "Host" {
			req.Host = hdr[i+1]
			continue
		}
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := e.app.Test(req, int(patience/time.Millisecond))
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	r := reply{code: resp.StatusCode, raw: string(b), resp: resp}
	if method != "HEAD" && strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") {
		if err := json.Unmarshal(b, &r.body); err != nil {
			t.Fatalf("%s %s: body %q: %v", method, path, b, err)
		}
	}
	return r
}

// ok checks a success answer.
func (r reply) ok(t *testing.T, code int) reply {
	t.Helper()
	if r.code != code {
		t.Fatalf("status %d, want %d: %s", r.code, code, r.raw)
	}
	if r.resp.Header.Get("X-Content-Type-Options") != "nosniff" {
		t.Fatalf("no nosniff header: %v", r.resp.Header)
	}
	return r
}

// fails checks an error answer: status, the error shape and its code, and
// that the message contains msg.
func (r reply) fails(t *testing.T, code int, errCode, msg string) reply {
	t.Helper()
	if r.code != code {
		t.Fatalf("status %d, want %d: %s", r.code, code, r.raw)
	}
	if ct := r.resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Fatalf("error with content type %q: %s", ct, r.raw)
	}
	e, _ := r.body["error"].(map[string]any)
	if e == nil || e["code"] != errCode || !strings.Contains(fmt.Sprint(e["message"]), msg) || len(e) != 2 {
		t.Fatalf("error %s, want code %q with message containing %q", r.raw, errCode, msg)
	}
	return r
}

func (r reply) obj(t *testing.T, path ...string) map[string]any {
	t.Helper()
	var v any = r.body
	for _, p := range path {
		m, ok := v.(map[string]any)
		if !ok {
			t.Fatalf("%v: not an object at %q in %s", path, p, r.raw)
		}
		v = m[p]
	}
	m, ok := v.(map[string]any)
	if !ok {
		t.Fatalf("%v: not an object in %s", path, r.raw)
	}
	return m
}

func (r reply) list(t *testing.T, name string) []any {
	t.Helper()
	l, ok := r.body[name].([]any)
	if !ok {
		t.Fatalf("%q is not a list in %s", name, r.raw)
	}
	return l
}

func TestHealth(t *testing.T) {
	e := newEnv(t, "")
	r := e.do(t, "GET", "/health", "").ok(t, 200)
	if r.body["redis"] != "ok" || r.body["lua_version"] != float64(scripts.Version()) || r.body["uptime_s"] == nil {
		t.Fatalf("health %s", r.raw)
	}
	if len(r.obj(t, "services")) != 0 {
		t.Fatalf("services without comsrv stats: %s", r.raw)
	}
	now := time.Now().UnixMilli()
	confirmRestore(t, e)
	e.redis(t, "HSET", keys.ComsrvStats, "updated_at", strconv.FormatInt(now-3000, 10))
	r = e.do(t, "GET", "/health", "").ok(t, 200)
	cs := r.obj(t, "services", "comsrv")
	if cs["updated_at"] != float64(now-3000) || cs["age_s"].(float64) < 2.9 || cs["age_s"].(float64) > 60 {
		t.Fatalf("comsrv heartbeat: %s", r.raw)
	}
}

// confirmRestore writes comsrv's configuration marker for the current Redis run.
func confirmRestore(t *testing.T, e *env) {
	t.Helper()
	run, err := redisconn.RunID(context.Background(), e.rc)
	if err != nil {
		t.Fatal(err)
	}
	e.redis(t, "HSET", keys.ConfigRestore, contract.RestoreRunID, run,
		contract.RestoreAt, strconv.FormatInt(time.Now().UnixMilli(), 10))
}

// TestHealthDegradedUntilRestored: after Redis restarted, /health answers
// 503 until comsrv's marker says the run-time configuration is back.
func TestHealthDegradedUntilRestored(t *testing.T) {
	e := newEnv(t, "")
	confirmRestore(t, e)
	r := e.do(t, "GET", "/health", "").ok(t, 200)
	if r.body["config"] != "restored" {
		t.Fatalf("health before the restart: %s", r.raw)
	}
	e.srv.Restart(t)
	wait.For(t, patience, "/health to answer 503 with Redis up after the restart", func() error {
		r = e.do(t, "GET", "/health", "")
		return wait.Check(r.code == 503 && r.body["redis"] == "ok", "%d %s", r.code, r.raw)
	})
	r.fails(t, 503, "unavailable", "run-time configuration not restored")
	if r.body["redis"] != "ok" || r.body["config"] != "restoring" {
		t.Fatalf("health after the restart: %s", r.raw)
	}
	// Still degraded on the next call, and with comsrv running on the new Redis.
	e.redis(t, "HSET", keys.ComsrvStats, "updated_at", strconv.FormatInt(time.Now().UnixMilli(), 10))
	e.do(t, "GET", "/health", "").fails(t, 503, "unavailable", "run-time configuration not restored")

	// A marker of the previous run (Redis with AOF) is not enough either.
	e.redis(t, "HSET", keys.ConfigRestore, contract.RestoreRunID, "0000")
	e.do(t, "GET", "/health", "").fails(t, 503, "unavailable", "run-time configuration not restored")

	confirmRestore(t, e)
	r = e.do(t, "GET", "/health", "").ok(t, 200)
	if r.body["config"] != "restored" {
		t.Fatalf("health after the restore: %s", r.raw)
	}

	// A restore that could not read the snapshot is degraded too, with the reason.
	e.redis(t, "HSET", keys.ConfigRestore, contract.RestoreProblem, "snapshot corrupt")
	r = e.do(t, "GET", "/health", "").fails(t, 503, "unavailable", "snapshot corrupt")
	if r.body["config"] != "restore_failed" {
		t.Fatalf("health with a restore problem: %s", r.raw)
	}
}

// TestHealthFreshRedis: a Redis that never restarted under modsrv and that
// no comsrv has used is not reported degraded.
func TestHealthFreshRedis(t *testing.T) {
	e := newEnv(t, "")
	r := e.do(t, "GET", "/health", "").ok(t, 200)
	if r.body["config"] != "unknown" {
		t.Fatalf("health of a fresh Redis: %s", r.raw)
	}
}

func TestHealthRedisDown(t *testing.T) {
	e := newEnv(t, "")
	// Stop this test's own Redis.
	_ = e.rc.Do(context.Background(), e.rc.B().Shutdown().Nosave().Build()).Error()
	var r reply
	wait.For(t, patience, "/health to answer 503", func() error {
		r = e.do(t, "GET", "/health", "")
		return wait.Equal(r.code, 503)
	})
	r.fails(t, 503, "unavailable", "redis")

	if r.body["redis"] != "down" {
		t.Fatalf("health %s", r.raw)
	}
	e.do(t, "GET", "/models", "").fails(t, 503, "unavailable", "redis unavailable")
	e.do(t, "POST", "/devices", `{"id":"D1","template":"t"}`, "auth", token).fails(t, 503, "unavailable", "redis unavailable")
}

// demoData maps channel 1001 to model pm and writes two samples, one stale.
func demoData(t *testing.T, e *env) {
	t.Helper()
	e.redis(t, "HSET", keys.Mapping,
		keys.PointRef("1001", "10001"), keys.PointRef("pm", "voltage"),
		keys.PointRef("1001", "10002"), keys.PointRef("pm", "current"))
	e.fcall(t, scripts.FnSyncBatch, "1001", "1732212345678", "3", "10001", "230.10", "10002", "3.5e0", "10003", "7")
	e.fcall(t, scripts.FnSetQuality, "1001", "stale", "10002")
}

func TestModels(t *testing.T) {
	e := newEnv(t, "")
	r := e.do(t, "GET", "/models", "").ok(t, 200)
	if l := r.list(t, "models"); len(l) != 0 || r.body["truncated"] != nil {
		t.Fatalf("empty: %s", r.raw)
	}
	demoData(t, e)
	e.redis(t, "SET", keys.ModelValues("notahash"), "x") // not a hash: skipped
	r = e.do(t, "GET", "/models", "").ok(t, 200)
	want := `{"models":[{"id":"pm","points":2,"updated_at":1732212345678}]}`
	if r.raw != want {
		t.Fatalf("got %s, want %s", r.raw, want)
	}
}

func TestModelsBound(t *testing.T) {
	e := newEnv(t, "")
	cmds := make(rueidis.Commands, 0, MaxScanKeys+500)
	for i := range MaxScanKeys + 500 {
		cmds = append(cmds, e.rc.B().Hset().Key(keys.ModelValues("m"+strconv.Itoa(i))).FieldValue().FieldValue("v", "1").Build())
	}
	for _, res := range e.rc.DoMulti(context.Background(), cmds...) {
		if err := res.Error(); err != nil {
			t.Fatal(err)
		}
	}
	r := e.do(t, "GET", "/models", "").ok(t, 200)
	n := len(r.list(t, "models"))
	if r.body["truncated"] != true || n < MaxScanKeys || n >= MaxScanKeys+500 {
		t.Fatalf("truncated %v with %d models", r.body["truncated"], n)
	}
}

func TestModelValues(t *testing.T) {
	e := newEnv(t, "")
	demoData(t, e)
	r := e.do(t, "GET", "/models/pm/values", "").ok(t, 200)
	want := `{"model":"pm","values":{"current":{"value":"3.5e0","ts":1732212345678,"quality":"stale"},"voltage":{"value":"230.10","ts":1732212345678,"quality":"good"}}}`
	if r.raw != want {
		t.Fatalf("got %s\nwant %s", r.raw, want)
	}
	e.do(t, "GET", "/models/nope/values", "").fails(t, 404, "not_found", `model "nope" has no values`)
	e.do(t, "GET", "/models/a*b/values", "").fails(t, 400, "bad_request", "invalid model id")
	e.do(t, "GET", "/models/a%3Ab/values", "").fails(t, 400, "bad_request", `invalid model id "a:b"`)
}

// delivered records the commands the responder answered.
type delivered struct {
	mu  sync.Mutex
	got []*contract.Command
}

// respond stands for comsrv: channel 1001 answers every command with the
// outcome its value asks for; channel 9 has no link and its commands stay queued.
func respond(t *testing.T, e *env) *delivered {
	t.Helper()
	e.redis(t, "HSET", keys.MappingReverse,
		keys.PointRef("pm", "setpoint"), keys.PointRef("1001", "40001"),
		keys.PointRef("pm", "lost"), keys.PointRef("9", "40001"))
	tg := &delivered{}
	contracttest.Respond(t, e.srv.Client(t), func(c *contract.Command) (contract.Outcome, bool) {
		tg.mu.Lock()
		tg.got = append(tg.got, c)
		tg.mu.Unlock()
		switch c.Value {
		case "13":
			return contract.Outcome{Status: contract.Invalid, Message: "value out of range 0..10"}, true
		case "66":
			return contract.Outcome{Status: contract.Exception, Code: 2, Message: "illegal data address"}, true
		case "77":
			return contract.Outcome{Status: contract.Offline, Message: "channel not connected"}, true
		}
		return contract.Outcome{Status: contract.OK}, true
	}, "1001")
	return tg
}

func TestControl(t *testing.T) {
	e := newEnv(t, `control_timeout = "15s"`)
	tg := respond(t, e)

	r := e.do(t, "POST", "/models/pm/control/setpoint", `{"value": 50.25}`, "auth", token).ok(t, 200)
	id := r.body["id"].(string)
	if r.body["status"] != "ok" || r.body["value"] != "50.25" || r.body["channel"] != "1001" || r.body["point"] != "40001" ||
		r.body["model"] != "pm" || r.body["control"] != "setpoint" || r.body["ts"] == nil || id == "" {
		t.Fatalf("ok: %s", r.raw)
	}
	tg.mu.Lock()
	if len(tg.got) != 1 || tg.got[0].ID != id || tg.got[0].Value != "50.25" {
		t.Fatalf("delivered %+v", tg.got)
	}
	tg.mu.Unlock()

	// A string and a boolean are values too.
	if r := e.do(t, "POST", "/models/pm/control/setpoint", `{"value":"7"}`, "auth", token).ok(t, 200); r.body["value"] != "7" {
		t.Fatalf("string value: %s", r.raw)
	}
	if r := e.do(t, "POST", "/models/pm/control/setpoint", `{"value":true}`, "auth", token).ok(t, 200); r.body["value"] != "1" {
		t.Fatalf("bool value: %s", r.raw)
	}

	// Outcomes other than ok.
	r = e.do(t, "POST", "/models/pm/control/setpoint", `{"value":13}`, "auth", token).fails(t, 400, "bad_request", "invalid (value out of range 0..10)")
	if r.body["status"] != "invalid" || r.body["id"] == nil || r.obj(t, "result")["message"] != "value out of range 0..10" {
		t.Fatalf("invalid: %s", r.raw)
	}
	r = e.do(t, "POST", "/models/pm/control/setpoint", `{"value":66}`, "auth", token).fails(t, 502, "bad_gateway", "exception 2 (illegal data address)")
	if r.body["status"] != "exception" || r.obj(t, "result")["code"] != "2" {
		t.Fatalf("exception: %s", r.raw)
	}
	e.do(t, "POST", "/models/pm/control/setpoint", `{"value":77}`, "auth", token).fails(t, 502, "bad_gateway", "offline")

	// Nobody serves channel 9: no outcome within the timeout.
	start := time.Now()
	r = e.do(t, "POST", "/models/pm/control/lost?timeout=300ms", `{"value":1}`, "auth", token).fails(t, 504, "timeout", "no outcome for command")
	if r.body["id"] == nil || time.Since(start) < 300*time.Millisecond {
		t.Fatalf("timeout: %s after %s", r.raw, time.Since(start))
	}
	// Its deadline is the timeout: comsrv would answer "expired".
	q := e.redis(t, "LRANGE", keys.CommandQueue("9"), "0", "-1")
	entries, _ := q.AsStrSlice()
	if len(entries) != 1 {
		t.Fatalf("queue of channel 9: %v", entries)
	}
	cmd, err := contract.Parse([]byte(entries[0]))
	if err != nil || d(cmd.Deadline.Sub(cmd.Queued)) != 300*time.Millisecond {
		t.Fatalf("queued command %+v: %v", cmd, err)
	}

	// Refusals.
	e.do(t, "POST", "/models/pm/control/nothing", `{"value":1}`, "auth", token).fails(t, 404, "not_found", `model "pm" has no control "nothing"`)
	e.do(t, "POST", "/models/nope/control/setpoint", `{"value":1}`, "auth", token).fails(t, 404, "not_found", `unknown model "nope"`)
	e.do(t, "POST", "/models/pm/control/setpoint", `{"value":"abc"}`, "auth", token).fails(t, 400, "bad_request", "not a decimal number")
	e.do(t, "POST", "/models/pm/control/setpoint", `{"value":"1e999"}`, "auth", token).fails(t, 400, "bad_request", "not a decimal number")
	e.do(t, "POST", "/models/pm/control/setpoint", `{}`, "auth", token).fails(t, 400, "bad_request", `"value" is required`)
	e.do(t, "POST", "/models/pm/control/setpoint", `{"value":1,"x":2}`, "auth", token).fails(t, 400, "bad_request", "unknown field")
	e.do(t, "POST", "/models/pm/control/setpoint", `{"value":1}{}`, "auth", token).fails(t, 400, "bad_request", "one JSON object")
	e.do(t, "POST", "/models/pm/control/setpoint?timeout=1ms", `{"value":1}`, "auth", token).fails(t, 400, "bad_request", "timeout")
	e.do(t, "POST", "/models/pm/control/setpoint?timeout=x", `{"value":1}`, "auth", token).fails(t, 400, "bad_request", "timeout")
	e.do(t, "POST", "/models/pm/control/setpoint", `{"value":1}`).fails(t, 401, "unauthorized", "credentials required")
	e.do(t, "POST", "/models/pm/control/setpoint", `{"value":1}`, "auth", token+"x").fails(t, 401, "unauthorized", "invalid")

	m := scrapeMetrics(t, e)
	for _, want := range []string{`modsrv_controls_total{status="ok"} 3`, `modsrv_controls_total{status="invalid"} 1`,
		`modsrv_controls_total{status="exception"} 1`, `modsrv_controls_total{status="wait_timeout"} 1`,
		`modsrv_controls_total{status="refused"} 2`} {
		if !strings.Contains(m, want) {
			t.Errorf("metrics lack %s:\n%s", want, m)
		}
	}
}

// d rounds a duration to milliseconds.
func d(x time.Duration) time.Duration { return x.Round(time.Millisecond) }

func TestParseControlValue(t *testing.T) {
	for in, want := range map[string]string{`5`: "5", ` -3.25 `: "-3.25", `"1e3"`: "1e3", `true`: "1", `false`: "0", `0`: "0"} {
		if got, err := ParseControlValue(json.RawMessage(in)); err != nil || got != want {
			t.Errorf("%s: %q %v", in, got, err)
		}
	}
	for _, in := range []string{``, `null`, `"05"`, `" 5"`, `"+5"`, `".5"`, `"nan"`, `[1]`, `{"a":1}`, `"` + strings.Repeat("1", 65) + `"`, `"0x10"`, `tru`} {
		if got, err := ParseControlValue(json.RawMessage(in)); err == nil {
			t.Errorf("%s accepted as %q", in, got)
		}
	}
}

func TestChannels(t *testing.T) {
	e := newEnv(t, "")
	demoData(t, e)
	e.redis(t, "SADD", keys.Channels, "1001", "1002", "1003")
	e.redis(t, "HSET", keys.ChannelStatus("1001"), "online", "1", "polls_ok", "12", "remote", "10.0.0.5:4000",
		"connected_at", "1732212345000", "registration", "<b>DTU1001</b>")
	e.redis(t, "HSET", keys.ChannelStatus("1002"), "online", "0", "disconnect_reason", "heartbeat timeout")

	r := e.do(t, "GET", "/channels", "").ok(t, 200)
	l := r.list(t, "channels")
	if len(l) != 3 || r.body["total"] != float64(3) {
		t.Fatalf("channels: %s", r.raw)
	}
	c0 := l[0].(map[string]any)
	if c0["id"] != "1001" || c0["online"] != true || c0["polls_ok"] != float64(12) || c0["connected_at"] != float64(1732212345000) ||
		c0["remote"] != "10.0.0.5:4000" || c0["registration"] != "<b>DTU1001</b>" {
		t.Fatalf("channel 1001: %v", c0)
	}
	if strings.Contains(r.raw, "<b>") || !strings.Contains(r.raw, `\u003cb\u003eDTU1001\u003c/b\u003e`) {
		t.Fatalf("device strings must be JSON-escaped for HTML: %s", r.raw)
	}
	if c2 := l[2].(map[string]any); c2["id"] != "1003" || c2["online"] != false {
		t.Fatalf("channel 1003 without status: %v", c2)
	}
	r = e.do(t, "GET", "/channels?offset=1&limit=1", "").ok(t, 200)
	if l := r.list(t, "channels"); len(l) != 1 || l[0].(map[string]any)["id"] != "1002" || r.body["total"] != float64(3) {
		t.Fatalf("page: %s", r.raw)
	}
	if l := e.do(t, "GET", "/channels?offset=10", "").ok(t, 200).list(t, "channels"); len(l) != 0 {
		t.Fatalf("beyond the end: %v", l)
	}
	e.do(t, "GET", "/channels?limit=0", "").fails(t, 400, "bad_request", "limit")
	e.do(t, "GET", "/channels?offset=-1", "").fails(t, 400, "bad_request", "offset")

	r = e.do(t, "GET", "/channels/1001", "").ok(t, 200)
	if st := r.obj(t, "status"); st["online"] != true || st["remote"] != "10.0.0.5:4000" || st["polls_ok"] != nil {
		t.Fatalf("status: %s", r.raw)
	}
	if stats := r.obj(t, "stats"); stats["polls_ok"] != float64(12) || len(stats) != 1 {
		t.Fatalf("stats: %s", r.raw)
	}
	if r.body["id"] != "1001" || r.body["points"] != float64(3) || r.body["served"] != true {
		t.Fatalf("channel: %s", r.raw)
	}
	e.do(t, "GET", "/channels/9999", "").fails(t, 404, "not_found", `channel "9999" is unknown`)

	r = e.do(t, "GET", "/channels/1001/points", "").ok(t, 200)
	p := r.obj(t, "points", "10002")
	if p["value"] != "3.5e0" || p["quality"] != "stale" || p["ts"] != float64(1732212345678) || len(r.obj(t, "points")) != 3 {
		t.Fatalf("points: %s", r.raw)
	}
	if r := e.do(t, "GET", "/channels/1003/points", "").ok(t, 200); len(r.obj(t, "points")) != 0 {
		t.Fatalf("served channel without values: %s", r.raw)
	}
	e.do(t, "GET", "/channels/9999/points", "").fails(t, 404, "not_found", "unknown")
}

func TestFrames(t *testing.T) {
	e := newEnv(t, "")
	e.redis(t, "SADD", keys.Channels, "1001", "77")
	for i := range 30 {
		e.redis(t, "LPUSH", keys.ChannelFrames("1001"), fmt.Sprintf(`{"ts":%d,"dir":"rx","kind":"rtu","hex":"0103"}`, 1000+i))
	}
	e.redis(t, "LPUSH", keys.ChannelFrames("1001"), `not json <script>`)
	r := e.do(t, "GET", "/channels/1001/frames", "").ok(t, 200)
	l := r.list(t, "frames")
	if len(l) != DefaultFrames || l[0].(map[string]any)["raw"] != "not json <script>" || l[1].(map[string]any)["ts"] != float64(1029) {
		t.Fatalf("frames: %s", r.raw)
	}
	if strings.Contains(r.raw, "<script>") {
		t.Fatalf("unescaped: %s", r.raw)
	}
	if l := e.do(t, "GET", "/channels/1001/frames?limit=5", "").ok(t, 200).list(t, "frames"); len(l) != 5 {
		t.Fatalf("limit 5: %d", len(l))
	}
	if l := e.do(t, "GET", "/channels/77/frames", "").ok(t, 200).list(t, "frames"); len(l) != 0 {
		t.Fatalf("no frames: %v", l)
	}
	e.do(t, "GET", "/channels/1001/frames?limit=1001", "").fails(t, 400, "bad_request", "limit")
}

func TestEventsPaging(t *testing.T) {
	e := newEnv(t, "")
	var ids []string
	for i := range 7 {
		id, err := e.redis(t, "XADD", keys.ConnectionEvents, "*", "event", "online", "channel", strconv.Itoa(1000+i)).ToString()
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	var got []string
	before := ""
	for page := 0; ; page++ {
		path := "/events?count=3"
		if before != "" {
			path += "&before=" + before
		}
		r := e.do(t, "GET", path, "").ok(t, 200)
		for _, ev := range r.list(t, "events") {
			m := ev.(map[string]any)
			if m["event"] != "online" {
				t.Fatalf("event %v", m)
			}
			got = append(got, m["id"].(string))
		}
		before = r.body["next"].(string)
		if before == "" {
			break
		}
		if page > 5 {
			t.Fatal("paging does not end")
		}
	}
	slices.Reverse(ids)
	if !slices.Equal(got, ids) {
		t.Fatalf("paged %v, want %v", got, ids)
	}
	if l := e.do(t, "GET", "/events", "").ok(t, 200).list(t, "events"); len(l) != 7 {
		t.Fatalf("default count: %d", len(l))
	}
	e.do(t, "GET", "/events?before=abc", "").fails(t, 400, "bad_request", "not a stream id")
	e.do(t, "GET", "/events?count=0", "").fails(t, 400, "bad_request", "count")
}

func TestAlarms(t *testing.T) {
	e := newEnv(t, "")
	e.redis(t, "HSET", keys.Mapping, keys.PointRef("1001", "10001"), keys.PointRef("pm", "voltage"))
	e.redis(t, "HSET", keys.AlarmThreshold, keys.PointRef("pm", "voltage"), "250")
	r := e.do(t, "GET", "/alarms", "").ok(t, 200)
	if len(r.list(t, "active")) != 0 || len(r.list(t, "recent")) != 0 {
		t.Fatalf("no alarms: %s", r.raw)
	}
	e.fcall(t, scripts.FnSyncMeasurement, "1001", "10001", "260.5", "1732212345678")
	r = e.do(t, "GET", "/alarms", "").ok(t, 200)
	act := r.list(t, "active")
	if len(act) != 1 {
		t.Fatalf("active: %s", r.raw)
	}
	a := act[0].(map[string]any)
	if a["ref"] != "pm:voltage" || a["model"] != "pm" || a["point"] != "voltage" || a["kind"] != "high" ||
		a["value"] != 260.5 || a["acked"] != false || a["ts"] != float64(1732212345678) {
		t.Fatalf("alarm: %v", a)
	}
	if !strings.Contains(r.raw, `"value":260.5`) {
		t.Fatalf("value text changed: %s", r.raw)
	}
	if rec := r.list(t, "recent"); len(rec) != 1 || rec[0].(map[string]any)["type"] != "raise" || rec[0].(map[string]any)["id"] == nil {
		t.Fatalf("recent: %s", r.raw)
	}

	e.do(t, "POST", "/alarms/pm:voltage/ack", "").fails(t, 401, "unauthorized", "credentials")
	r = e.do(t, "POST", "/alarms/pm:voltage/ack", "", "auth", token).ok(t, 200)
	if r.body["user"] != "scada" || r.body["ref"] != "pm:voltage" || r.body["alarm_ts"] != float64(1732212345678) {
		t.Fatalf("ack: %s", r.raw)
	}
	a = e.do(t, "GET", "/alarms", "").ok(t, 200).list(t, "active")[0].(map[string]any)
	if a["acked"] != true || a["ack"].(map[string]any)["user"] != "scada" {
		t.Fatalf("acked alarm: %v", a)
	}
	// The ack is recorded in alarm:acks; a new raise of the same point is not acknowledged.
	if s, _ := e.redis(t, "HGET", keys.AlarmAcks, "pm:voltage").ToString(); !strings.Contains(s, `"user":"scada"`) {
		t.Fatalf("alarm:acks entry %q", s)
	}
	e.fcall(t, scripts.FnSyncMeasurement, "1001", "10001", "200", "1732212346000")
	e.fcall(t, scripts.FnSyncMeasurement, "1001", "10001", "270", "1732212347000")
	a = e.do(t, "GET", "/alarms", "").ok(t, 200).list(t, "active")[0].(map[string]any)
	if a["acked"] != false {
		t.Fatalf("new raise shows an old ack: %v", a)
	}
	e.do(t, "POST", "/alarms/pm:current/ack", "", "auth", token).fails(t, 404, "not_found", `no active alarm "pm:current"`)
	e.do(t, "POST", "/alarms/pm/ack", "", "auth", token).fails(t, 400, "bad_request", "invalid alarm reference")
	e.do(t, "POST", "/alarms/pm:a*/ack", "", "auth", token).fails(t, 400, "bad_request", "invalid alarm reference")
}

func TestDevices(t *testing.T) {
	e := newEnv(t, "")
	e.redis(t, "SADD", keys.Templates, "power_meter", "auto_meter", "other", "t")
	e.do(t, "POST", "/devices", `{"id":"DTU2001","template":"power_meter"}`).fails(t, 401, "unauthorized", "credentials")
	r := e.do(t, "POST", "/devices", `{"id":"DTU2001","template":"power_meter"}`, "auth", token).ok(t, 201)
	if r.raw != `{"id":"DTU2001","template":"power_meter"}` {
		t.Fatalf("add: %s", r.raw)
	}
	e.do(t, "POST", "/devices", `{"id":"DTU2001","template":"power_meter"}`, "auth", token).ok(t, 200)
	e.do(t, "POST", "/devices", `{"id":"DTU2001","template":"other"}`, "auth", token).fails(t, 409, "conflict", `registered with template "power_meter"`)
	e.do(t, "POST", "/devices", `{"id":"DTU1000","template":"auto_meter"}`, "auth", token).ok(t, 201)
	if tpl, _ := e.redis(t, "HGET", keys.DeviceRegistry, "DTU1000").ToString(); tpl != "auto_meter" {
		t.Fatalf("registry holds %q", tpl)
	}
	r = e.do(t, "GET", "/devices", "").ok(t, 200)
	if r.raw != `{"devices":[{"id":"DTU1000","template":"auto_meter"},{"id":"DTU2001","template":"power_meter"}],"refused":[],"templates":["auto_meter","other","power_meter","t"]}` {
		t.Fatalf("list: %s", r.raw)
	}
	e.do(t, "POST", "/devices", `{"id":"a b","template":"t"}`, "auth", token).fails(t, 400, "bad_request", "invalid device id")
	e.do(t, "POST", "/devices", `{"id":"x","template":""}`, "auth", token).fails(t, 400, "bad_request", "invalid template id")
	e.do(t, "POST", "/devices", `{"id":"x","template":"t","extra":1}`, "auth", token).fails(t, 400, "bad_request", "unknown field")
	e.do(t, "POST", "/devices", `[1]`, "auth", token).fails(t, 400, "bad_request", "body must be JSON")
	e.do(t, "DELETE", "/devices/DTU2001", "").fails(t, 401, "unauthorized", "credentials")
	if r := e.do(t, "DELETE", "/devices/DTU2001", "", "auth", token).ok(t, 200); r.body["deleted"] != true {
		t.Fatalf("delete: %s", r.raw)
	}
	e.do(t, "DELETE", "/devices/DTU2001", "", "auth", token).fails(t, 404, "not_found", "not registered")
}

// TestDeviceCannotTakeAChannel: a device id that names a channel comsrv
// serves (a configured Modbus or DTU channel) is refused.
func TestDeviceCannotTakeAChannel(t *testing.T) {
	e := newEnv(t, "")
	e.redis(t, "SADD", keys.Channels, "mb1", "1001")
	for _, id := range []string{"mb1", "1001"} {
		e.do(t, "POST", "/devices", `{"id":"`+id+`","template":"power_meter"}`, "auth", token).fails(t, 409, "conflict", "is a channel comsrv serves")
		if n, _ := e.redis(t, "HEXISTS", keys.DeviceRegistry, id).AsInt64(); n != 0 {
			t.Fatalf("%s was added to the registry", id)
		}
	}
	// A registered device is in the channel set too, and may be posted again.
	e.do(t, "POST", "/devices", `{"id":"D1","template":"power_meter"}`, "auth", token).ok(t, 201)
	e.redis(t, "SADD", keys.Channels, "D1")
	e.do(t, "POST", "/devices", `{"id":"D1","template":"power_meter"}`, "auth", token).ok(t, 200)
}

func TestHistoryUnavailable(t *testing.T) {
	e := newEnv(t, "")
	e.do(t, "GET", "/history?model=pm&point=voltage&from=1&to=2", "").fails(t, 503, "unavailable", "history needs netsrv's MySQL store, which is not configured")
	e.do(t, "GET", "/export?format=csv", "").fails(t, 503, "unavailable", "not configured")
}

func TestLoginFlow(t *testing.T) {
	e := newEnv(t, "")
	e.do(t, "GET", "/me", "").fails(t, 401, "unauthorized", "credentials required")
	r := e.do(t, "POST", "/login", `{"user":"op","password":"pw"}`).ok(t, 200)
	var cookie string
	for _, c := range r.resp.Cookies() {
		if c.Name == auth.CookieName {
			cookie = c.Name + "=" + c.Value
			if !c.HttpOnly || c.SameSite != http.SameSiteStrictMode {
				t.Fatalf("cookie %+v", c)
			}
		}
	}
	if cookie == "" {
		t.Fatal("no session cookie")
	}
	if r := e.do(t, "GET", "/me", "", "Cookie", cookie).ok(t, 200); r.body["user"] != "op" {
		t.Fatalf("me: %s", r.raw)
	}
	e.do(t, "POST", "/devices", `{"id":"D1","template":"t"}`, "Cookie", cookie).ok(t, 201)
	e.do(t, "POST", "/logout", "", "Cookie", cookie).ok(t, 200)
	e.do(t, "POST", "/devices", `{"id":"D2","template":"t"}`, "Cookie", cookie).fails(t, 401, "unauthorized", "invalid or expired")

	// Five attempts a minute per IP (one done above), then 429.
	for i := range 4 {
		e.do(t, "POST", "/login", `{"user":"op","password":"wrong"}`).fails(t, 401, "unauthorized", "wrong user or password")
		_ = i
	}
	r = e.do(t, "POST", "/login", `{"user":"op","password":"pw"}`).fails(t, 429, "too_many_requests", "too many login attempts")
	if r.resp.Header.Get("Retry-After") == "" {
		t.Fatal("no Retry-After")
	}
	m := scrapeMetrics(t, e)
	for _, want := range []string{`modsrv_logins_total{result="ok"} 1`, `modsrv_logins_total{result="refused"} 4`, `modsrv_logins_total{result="rate_limited"} 1`} {
		if !strings.Contains(m, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
}

func TestReadClosed(t *testing.T) {
	e := newEnv(t, "read_open = false")
	demoData(t, e)
	for _, p := range []string{"/models", "/models/pm/values", "/channels", "/channels/1001", "/channels/1001/points",
		"/channels/1001/frames", "/events", "/alarms", "/devices", "/history", "/export", "/metrics"} {
		e.do(t, "GET", p, "").fails(t, 401, "unauthorized", "credentials required")
		if r := e.do(t, "GET", p, "", "auth", token); r.code == 401 {
			t.Fatalf("%s with a token: %s", p, r.raw)
		}
	}
	e.do(t, "GET", "/health", "").ok(t, 200)
	e.do(t, "GET", "/openapi.json", "").ok(t, 200)
}

func TestErrorShape(t *testing.T) {
	e := newEnv(t, "")
	e.do(t, "GET", "/nothing/here", "").fails(t, 404, "not_found", "Cannot GET /nothing/here")
	e.do(t, "PUT", "/devices", `{}`, "auth", token).fails(t, 405, "method_not_allowed", "Method Not Allowed")
	// An overlong body, through a real listener (fasthttp refuses it before the handlers).
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = e.app.Listener(ln) }()
	t.Cleanup(func() { _ = e.app.ShutdownWithTimeout(patience) })
	// Headers only, announcing the body: the server answers without reading
	// it (a client writing the whole body would race the server's close).
	conn, err := net.DialTimeout("tcp", ln.Addr().String(), patience)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(patience))
	fmt.Fprintf(conn, "POST /devices HTTP/1.1\r\nHost: box\r\nAuthorization: Bearer %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n", token, BodyLimit+100)
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 413 || !strings.Contains(string(b), `"code":"payload_too_large"`) {
		t.Fatalf("overlong body: %d %s", resp.StatusCode, b)
	}
	if r := e.do(t, "HEAD", "/models", ""); r.code != 200 || r.raw != "" {
		t.Fatalf("HEAD /models: %d %q", r.code, r.raw)
	}
	m := scrapeMetrics(t, e)
	if !strings.Contains(m, `modsrv_http_requests_total{route="unmatched",method="GET",status="404"} 1`) {
		t.Fatalf("unmatched request not counted:\n%s", m)
	}
}

func scrapeMetrics(t *testing.T, e *env) string {
	t.Helper()
	r := e.do(t, "GET", "/metrics", "").ok(t, 200)
	if ct := r.resp.Header.Get("Content-Type"); ct != metrics.ContentType {
		t.Fatalf("metrics content type %q", ct)
	}
	return r.raw
}

func TestMetrics(t *testing.T) {
	e := newEnv(t, "")
	e.do(t, "GET", "/models/nope/values", "")
	e.do(t, "GET", "/models/nope/values", "")
	e.do(t, "GET", "/health", "")
	m := scrapeMetrics(t, e)
	for _, want := range []string{
		`modsrv_http_requests_total{route="/models/:id/values",method="GET",status="404"} 2`,
		`modsrv_http_requests_total{route="/health",method="GET",status="200"} 1`,
		"# TYPE modsrv_uptime_seconds gauge", "go_goroutines ", "modsrv_sessions 0",
	} {
		if !strings.Contains(m, want) {
			t.Errorf("metrics lack %q:\n%s", want, m)
		}
	}
}

// TestOpenAPI checks that the document describes exactly the routes the
// application serves (plus those of External), with its path parameters.
func TestOpenAPI(t *testing.T) {
	e := newEnv(t, "")
	r := e.do(t, "GET", "/openapi.json", "").ok(t, 200)
	if r.body["openapi"] != "3.0.3" || r.obj(t, "info")["title"] == nil {
		t.Fatalf("header: %.200s", r.raw)
	}
	paths := r.obj(t, "paths")
	documented := map[string]bool{}
	for p, ops := range paths {
		for m, op := range ops.(map[string]any) {
			documented[strings.ToUpper(m)+" "+p] = true
			o := op.(map[string]any)
			if o["summary"] == "" || o["responses"] == nil || o["operationId"] == nil {
				t.Errorf("%s %s: incomplete operation %v", m, p, o)
			}
			for _, seg := range strings.Split(p, "/") {
				if strings.HasPrefix(seg, "{") {
					name := strings.Trim(seg, "{}")
					found := false
					for _, prm := range o["parameters"].([]any) {
						pm := prm.(map[string]any)
						found = found || (pm["name"] == name && pm["in"] == "path")
					}
					if !found {
						t.Errorf("%s %s: path parameter %s not declared", m, p, name)
					}
				}
			}
		}
	}
	served := map[string]bool{}
	for _, rt := range e.app.GetRoutes(true) {
		if rt.Method == "HEAD" {
			continue
		}
		served[rt.Method+" "+openAPIPath(rt.Path)] = true
	}
	for k := range served {
		if !documented[k] {
			t.Errorf("served but not documented: %s", k)
		}
	}
	for _, x := range External {
		delete(documented, x.Method+" "+x.Path)
	}
	for k := range documented {
		if !served[k] {
			t.Errorf("documented but not served: %s", k)
		}
	}
	if len(served) < 20 {
		t.Fatalf("only %d routes served", len(served))
	}
	// Every $ref names a schema of the document.
	schemas := r.obj(t, "components", "schemas")
	for _, m := range refPattern.FindAllStringSubmatch(r.raw, -1) {
		if schemas[m[1]] == nil {
			t.Errorf("dangling $ref %s", m[1])
		}
	}
}

func TestNewNeedsDeps(t *testing.T) {
	if _, err := New(Deps{}); err == nil {
		t.Fatal("New accepted empty Deps")
	}
}

func TestOperationID(t *testing.T) {
	for in, want := range map[string]string{"GET /models/:id/values": "get_models_id_values", "GET /": "get_root", "GET /openapi.json": "get_openapi_json"} {
		m, p, _ := strings.Cut(in, " ")
		if got := operationID(m, p); got != want {
			t.Errorf("%s: %s", in, got)
		}
	}
}

var refPattern = regexp.MustCompile(`"\$ref":"#/components/schemas/([A-Za-z]+)"`)

// TestHostnames: with hostnames set, a request addressed by another name (a
// rebinding DNS name) is refused; IP addresses, localhost and the listed
// names pass. Without hostnames only IP addresses and localhost pass.
func TestHostnames(t *testing.T) {
	e := newEnv(t, `hostnames = ["edge42.plant.local"]`)
	e.do(t, "GET", "/health", "", "Host", "evil.example:8002").fails(t, 403, "forbidden", "host \"evil.example\" is not one of this box's names")
	for _, h := range []string{"edge42.plant.local:8002", "EDGE42.plant.local", "10.1.2.3:8002", "[fe80::1]:8002", "localhost"} {
		if r := e.do(t, "GET", "/health", "", "Host", h); r.code != 200 {
			t.Fatalf("Host %s: %d %s", h, r.code, r.raw)
		}
	}
	// Without hostnames only IP addresses and localhost pass.
	e = newEnv(t, "")
	e.do(t, "GET", "/health", "", "Host", "any.name").fails(t, 403, "forbidden", "host \"any.name\" is not one of this box's names")
	for _, h := range []string{"localhost:8002", "127.0.0.1:8002", "[::1]:8002"} {
		if r := e.do(t, "GET", "/health", "", "Host", h); r.code != 200 {
			t.Fatalf("without hostnames, Host %s: %d %s", h, r.code, r.raw)
		}
	}
}

// TestSlashInIDs: an id with '/' is refused at every entry point of the
// API, and a model hash whose id holds one is not listed.
func TestSlashInIDs(t *testing.T) {
	e := newEnv(t, "")
	e.redis(t, "HSET", keys.ModelValues("plant/a"), "p", "1")
	e.redis(t, "SADD", keys.Channels, "c/1")
	if l := e.do(t, "GET", "/models", "").ok(t, 200).list(t, "models"); len(l) != 0 {
		t.Fatalf("models: %v", l)
	}
	e.do(t, "GET", "/models/plant%2Fa/values", "").fails(t, 400, "bad_request", `invalid model id "plant/a"`)
	e.do(t, "POST", "/models/plant%2Fa/control/x", `{"value":1}`, "auth", token).fails(t, 400, "bad_request", "invalid")
	for _, p := range []string{"/channels/c%2F1", "/channels/c%2F1/points", "/channels/c%2F1/frames"} {
		e.do(t, "GET", p, "").fails(t, 400, "bad_request", `invalid channel id "c/1"`)
	}
	e.do(t, "POST", "/devices", `{"id":"a/b","template":"t"}`, "auth", token).fails(t, 400, "bad_request", "invalid device id")
	e.do(t, "POST", "/devices", `{"id":"ab","template":"t/1"}`, "auth", token).fails(t, 400, "bad_request", "invalid template id")
	e.do(t, "DELETE", "/devices/a%2Fb", "", "auth", token).fails(t, 400, "bad_request", "invalid device id")
	e.do(t, "POST", "/alarms/pm%3Aa%2Fb/ack", "", "auth", token).fails(t, 400, "bad_request", "invalid alarm reference")
	// Escapes still work for ids that are valid.
	e.redis(t, "HSET", keys.ModelValues("pm.1"), "p", "1")
	e.do(t, "GET", "/models/pm%2E1/values", "").ok(t, 200)
}

// TestUnknownChannel404: every /channels/{id} route answers 404 for an id
// that is not in the channel set, whatever keys the id has left.
func TestUnknownChannel404(t *testing.T) {
	e := newEnv(t, "")
	e.redis(t, "LPUSH", keys.ChannelFrames("gone"), `{"ts":1}`)
	e.redis(t, "HSET", keys.ChannelStatus("gone"), "online", "0")
	e.redis(t, "HSET", keys.ChannelValues("gone"), "1", "2")
	for _, id := range []string{"nope", "gone"} {
		for _, p := range []string{"/channels/" + id, "/channels/" + id + "/points", "/channels/" + id + "/frames"} {
			e.do(t, "GET", p, "").fails(t, 404, "not_found", `channel "`+id+`" is unknown`)
		}
	}
	e.redis(t, "SADD", keys.Channels, "gone")
	if l := e.do(t, "GET", "/channels/gone/frames", "").ok(t, 200).list(t, "frames"); len(l) != 1 {
		t.Fatalf("frames: %v", l)
	}
}

// TestDeviceTemplateChecked: with comsrv's template set published, an
// unknown template is refused naming the known ones; without it the device
// is accepted with a note.
func TestDeviceTemplateChecked(t *testing.T) {
	e := newEnv(t, "")
	r := e.do(t, "POST", "/devices", `{"id":"D1","template":"nosuch"}`, "auth", token).ok(t, 201)
	if n, _ := r.body["note"].(string); !strings.Contains(n, keys.Templates) {
		t.Fatalf("no note on an unchecked template: %s", r.raw)
	}
	e.redis(t, "SADD", keys.Templates, "power_meter", "auto_meter")
	e.do(t, "POST", "/devices", `{"id":"D2","template":"nosuch"}`, "auth", token).fails(t, 400, "bad_request", `unknown template "nosuch" (comsrv knows: auto_meter, power_meter)`)
	if n, _ := e.redis(t, "HEXISTS", keys.DeviceRegistry, "D2").AsInt64(); n != 0 {
		t.Fatal("D2 was added")
	}
	r = e.do(t, "POST", "/devices", `{"id":"D2","template":"power_meter"}`, "auth", token).ok(t, 201)
	if r.raw != `{"id":"D2","template":"power_meter"}` {
		t.Fatalf("add: %s", r.raw)
	}
}

// TestAlarmTypes: active alarms and recent events give numbers as JSON
// numbers and strings as strings, the same fields with the same types.
func TestAlarmTypes(t *testing.T) {
	e := newEnv(t, "")
	e.redis(t, "HSET", keys.Mapping, keys.PointRef("1001", "10001"), keys.PointRef("pm", "voltage"))
	e.redis(t, "HSET", keys.AlarmThreshold, keys.PointRef("pm", "voltage"), "250")
	e.fcall(t, scripts.FnSyncMeasurement, "1001", "10001", "260.5", "1732212345678")
	e.fcall(t, scripts.FnSyncMeasurement, "1001", "10001", "200", "1732212346000")
	e.fcall(t, scripts.FnSyncMeasurement, "1001", "10001", "270", "1732212347000")
	r := e.do(t, "GET", "/alarms", "").ok(t, 200)
	a := r.list(t, "active")[0].(map[string]any)
	rec := r.list(t, "recent")
	if len(rec) != 3 {
		t.Fatalf("recent: %s", r.raw)
	}
	clear := rec[1].(map[string]any)
	raise := rec[0].(map[string]any)
	for name, m := range map[string]map[string]any{"active": a, "clear": clear, "raise": raise} {
		for _, f := range []string{"value", "limit", "ts"} {
			if _, ok := m[f].(float64); !ok {
				t.Errorf("%s: %s is %T, want a number: %v", name, f, m[f], m)
			}
		}
		for _, f := range []string{"model", "point", "kind"} {
			if _, ok := m[f].(string); !ok {
				t.Errorf("%s: %s is %T, want a string: %v", name, f, m[f], m)
			}
		}
	}
	if _, ok := clear["raised_limit"].(float64); !ok || clear["type"] != "clear" || clear["id"] == nil {
		t.Errorf("clear event: %v", clear)
	}
	if !strings.Contains(r.raw, `"value":260.5`) || !strings.Contains(r.raw, `"ts":1732212346000`) {
		t.Errorf("number text: %s", r.raw)
	}
}
