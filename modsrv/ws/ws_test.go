package ws

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	fws "github.com/fasthttp/websocket"
	"github.com/gofiber/fiber/v2"
	"github.com/redis/rueidis"

	"github.com/voltedge/voltedge/internal/contract"
	"github.com/voltedge/voltedge/internal/contract/contracttest"
	"github.com/voltedge/voltedge/internal/keys"
	"github.com/voltedge/voltedge/internal/lualib"
	"github.com/voltedge/voltedge/internal/redistest"
	"github.com/voltedge/voltedge/internal/wait"
	"github.com/voltedge/voltedge/scripts"
)

// patience bounds every wait: generous for loaded machines; a passing test
// never waits this long.
const patience = 20 * time.Second

const testToken = "s3cret"

// env is a private Redis with the Lua library, a hub and a fiber app on a
// loopback port.
type env struct {
	srv  *redistest.Server
	c    rueidis.Client
	hub  *Hub
	addr string
}

// testAuthorize accepts "Authorization: Bearer s3cret" as user "tester".
func testAuthorize(c *fiber.Ctx) (string, bool) {
	if c.Get(fiber.HeaderAuthorization) == "Bearer "+testToken {
		return "tester", true
	}
	return "", false
}

func newEnv(t *testing.T, opt Options) *env {
	t.Helper()
	srv := redistest.Start(t)
	c := srv.Client(t)
	if _, err := lualib.Ensure(context.Background(), c); err != nil {
		t.Fatal(err)
	}
	e := startHub(t, c, opt)
	e.srv = srv
	return e
}

// startHub serves a hub over c on a fresh loopback port until the test ends.
func startHub(t *testing.T, c rueidis.Client, opt Options) *env {
	t.Helper()
	if opt.Authorize == nil {
		opt.Authorize = testAuthorize
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	if testing.Verbose() {
		log = slog.New(slog.NewTextHandler(&testWriter{t: t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	hub := New(c, opt, log)
	app := fiber.New(fiber.Config{DisableStartupMessage: true})
	hub.Mount(app)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = app.Listener(ln) }()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		hub.Run(ctx)
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(patience):
			t.Error("Run did not return after its context ended")
		}
		_ = app.ShutdownWithTimeout(5 * time.Second)
	})
	e := &env{c: c, hub: hub, addr: ln.Addr().String()}
	wait.For(t, patience, "the pattern subscription", func() error {
		n, err := c.Do(context.Background(), c.B().PubsubNumpat().Build()).AsInt64()
		if err != nil {
			return err
		}
		return wait.Check(n >= 1, "PUBSUB NUMPAT = %d", n)
	})
	wait.For(t, patience, "the catalog", func() error { return wait.Check(hub.known.isLoaded(), "not loaded") })
	return e
}

// testWriter sends log lines to t.Log.
type testWriter struct {
	t  *testing.T
	mu sync.Mutex
}

func (w *testWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// dial connects a websocket client with the given request headers.
func (e *env) dial(t *testing.T, path string, h http.Header) *fws.Conn {
	t.Helper()
	conn, resp, err := e.dialErr(path, h)
	if err != nil {
		status := 0
		if resp != nil {
			status = resp.StatusCode
		}
		t.Fatalf("dial %s: %v (status %d)", path, err, status)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return conn
}

func (e *env) dialErr(path string, h http.Header) (*fws.Conn, *http.Response, error) {
	d := fws.Dialer{HandshakeTimeout: patience}
	return d.Dial("ws://"+e.addr+path, h)
}

// msg is any server message, decoded loosely.
type msg map[string]any

func (m msg) str(k string) string {
	s, _ := m[k].(string)
	return s
}

// read reads one message, failing the test after patience.
func read(t *testing.T, c *fws.Conn) msg {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(patience))
	kind, data, err := c.ReadMessage()
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	if kind != fws.TextMessage {
		t.Fatalf("message of kind %d", kind)
	}
	var m msg
	if err := json.Unmarshal(data, &m); err != nil {
		t.Fatalf("message %.200q: %v", data, err)
	}
	return m
}

// readType reads messages until one of type typ, skipping channel status.
func readType(t *testing.T, c *fws.Conn, typ string) msg {
	t.Helper()
	for {
		m := read(t, c)
		if m.str("type") == typ {
			return m
		}
		if m.str("type") != TypeChannel {
			t.Fatalf("want a %q message, got %v", typ, m)
		}
	}
}

func write(t *testing.T, c *fws.Conn, v any) {
	t.Helper()
	var b []byte
	switch x := v.(type) {
	case string:
		b = []byte(x)
	default:
		var err error
		if b, err = json.Marshal(v); err != nil {
			t.Fatal(err)
		}
	}
	_ = c.SetWriteDeadline(time.Now().Add(patience))
	if err := c.WriteMessage(fws.TextMessage, b); err != nil {
		t.Fatalf("write: %v", err)
	}
}

// subscribe sends a subscribe message and waits for its confirmation.
func subscribe(t *testing.T, c *fws.Conn, sub map[string]any) msg {
	t.Helper()
	sub["type"] = TypeSubscribe
	write(t, c, sub)
	return readType(t, c, TypeSubscribed)
}

// makeKnown creates the value hashes of models and adds channels to the
// channels comsrv serves, then has the hub read its catalog: only known
// ids can be subscribed to.
func (e *env) makeKnown(t *testing.T, models, channels []string) {
	t.Helper()
	for _, m := range models {
		do(t, e.c, "HSET", keys.ModelValues(m), "p", "0")
	}
	for _, ch := range channels {
		do(t, e.c, "SADD", keys.Channels, ch)
	}
	e.hub.refreshCatalog(context.Background())
}

func do(t *testing.T, c rueidis.Client, args ...string) rueidis.RedisResult {
	t.Helper()
	return redistest.Do(t, c, args...)
}

func TestSubscribeRelaysOnlySubscribedModels(t *testing.T) {
	e := newEnv(t, Options{})
	do(t, e.c, "HSET", keys.Mapping, keys.PointRef("1001", "10001"), keys.PointRef("power_meter", "voltage"))
	e.makeKnown(t, []string{"power_meter", "probe"}, nil)
	conn := e.dial(t, "/ws", nil)
	got := subscribe(t, conn, map[string]any{"models": []string{"power_meter"}})
	if fmt.Sprint(got["models"]) != "[power_meter]" || got["alarms"] != false {
		t.Fatalf("subscribed = %v", got)
	}

	do(t, e.c, "PUBLISH", keys.ModelUpdates("other"), `{"model":"other","ts":1,"values":{"x":1}}`)
	do(t, e.c, "FCALL", scripts.FnSyncMeasurement, "0", "1001", "10001", "230.1", "1732212345678")
	m := read(t, conn)
	if m.str("type") != TypeUpdate || m.str("model") != "power_meter" {
		t.Fatalf("first message = %v, want the power_meter update (other is not subscribed)", m)
	}
	vals, _ := m["values"].(map[string]any)
	if fmt.Sprint(vals["voltage"]) != "230.1" || fmt.Sprint(m["ts"]) != "1.732212345678e+12" {
		t.Fatalf("update = %v", m)
	}

	// A quality change arrives typed "quality".
	do(t, e.c, "FCALL", scripts.FnSetQuality, "0", "1001", "stale", "10001")
	m = read(t, conn)
	if m.str("type") != TypeQuality {
		t.Fatalf("quality message = %v", m)
	}
	if q, _ := m["quality"].(map[string]any); q["voltage"] != "stale" {
		t.Fatalf("quality message = %v", m)
	}

	// After unsubscribing nothing more arrives; a probe model shows it.
	write(t, conn, map[string]any{"type": TypeUnsubscribe, "models": []string{"power_meter"}})
	if m := readType(t, conn, TypeSubscribed); fmt.Sprint(m["models"]) != "[]" {
		t.Fatalf("after unsubscribe: %v", m)
	}
	subscribe(t, conn, map[string]any{"models": []string{"probe"}})
	do(t, e.c, "FCALL", scripts.FnSyncMeasurement, "0", "1001", "10001", "231", "1732212345679")
	do(t, e.c, "PUBLISH", keys.ModelUpdates("probe"), `{"model":"probe","ts":2,"values":{}}`)
	if m := read(t, conn); m.str("model") != "probe" {
		t.Fatalf("after unsubscribe got %v, want only the probe", m)
	}
	if s := e.hub.Stats(); s.Updates < 4 || s.Clients != 1 {
		t.Fatalf("stats = %+v", s)
	}
}

// TestSlowClientDropped: a client that never reads is dropped once its
// queue is full, while another client receives every message in order.
func TestSlowClientDropped(t *testing.T) {
	e := newEnv(t, Options{})
	slowDialer := fws.Dialer{
		HandshakeTimeout: patience,
		NetDial: func(network, addr string) (net.Conn, error) {
			c, err := net.Dial(network, addr)
			if tc, ok := c.(*net.TCPConn); ok {
				_ = tc.SetReadBuffer(4096)
			}
			return c, err
		},
	}
	slow, _, err := slowDialer.Dial("ws://"+e.addr+"/ws", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer slow.Close()
	e.makeKnown(t, []string{"m"}, nil)
	subscribe(t, slow, map[string]any{"models": []string{"m"}})
	fast := e.dial(t, "/ws", nil)
	subscribe(t, fast, map[string]any{"models": []string{"m"}})

	pad := strings.Repeat("7", 32<<10)
	const batch, maxMessages = 64, 8000
	n := 0
	for e.hub.Stats().SlowDrops == 0 {
		if n >= maxMessages {
			t.Fatalf("slow client not dropped after %d messages: %+v", n, e.hub.Stats())
		}
		cmds := make(rueidis.Commands, batch)
		for i := range cmds {
			cmds[i] = e.c.B().Publish().Channel(keys.ModelUpdates("m")).
				Message(`{"model":"m","ts":` + strconv.Itoa(n+i) + `,"values":{"pad":"` + pad + `"}}`).Build()
		}
		for _, r := range e.c.DoMulti(context.Background(), cmds...) {
			if err := r.Error(); err != nil {
				t.Fatal(err)
			}
		}
		// The fast client reads everything published so far, in order.
		for i := 0; i < batch; i++ {
			m := read(t, fast)
			if ts := fmt.Sprint(m["ts"]); ts != strconv.Itoa(n+i) {
				t.Fatalf("fast client: message %d has ts %s", n+i, ts)
			}
		}
		n += batch
	}
	t.Logf("slow client dropped after %d messages of 32 KiB", n)
	wait.For(t, patience, "the slow client's removal", func() error { return wait.Equal(e.hub.Clients(), 1) })

	// The fast client is still served.
	do(t, e.c, "PUBLISH", keys.ModelUpdates("m"), `{"model":"m","ts":-1,"values":{}}`)
	if m := read(t, fast); fmt.Sprint(m["ts"]) != "-1" {
		t.Fatalf("fast client after the drop: %v", m)
	}
	// The slow client's connection ends (with 1008 when the close frame
	// fits in its socket, which a full socket may not allow).
	_ = slow.SetReadDeadline(time.Now().Add(patience))
	for {
		if _, _, err := slow.ReadMessage(); err != nil {
			var ce *fws.CloseError
			if errors.As(err, &ce) && ce.Code != CloseTooSlow {
				t.Fatalf("slow client closed with %v", ce)
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				t.Fatal("slow client's connection was not closed")
			}
			break
		}
	}
	if s := e.hub.Stats(); s.SlowDrops != 1 {
		t.Fatalf("SlowDrops = %d, want 1", s.SlowDrops)
	}
}

// TestSlowClientCloseCode: when the socket has room, the dropped client
// gets the close frame 1008 "too slow".
func TestSlowClientCloseCode(t *testing.T) {
	e := newEnv(t, Options{QueueSize: 1})
	e.makeKnown(t, []string{"m"}, nil)
	conn := e.dial(t, "/ws", nil)
	subscribe(t, conn, map[string]any{"models": []string{"m"}})
	// Two messages in one pipeline: the second finds the queue full unless
	// the writer took the first already; repeat until dropped.
	for i := 0; e.hub.Stats().SlowDrops == 0; i++ {
		if i > 1000 {
			t.Fatal("client with a one-message queue never dropped")
		}
		cmds := make(rueidis.Commands, 20)
		for j := range cmds {
			cmds[j] = e.c.B().Publish().Channel(keys.ModelUpdates("m")).Message(`{"model":"m","ts":1,"values":{}}`).Build()
		}
		e.c.DoMulti(context.Background(), cmds...)
	}
	_ = conn.SetReadDeadline(time.Now().Add(patience))
	for {
		_, _, err := conn.ReadMessage()
		if err == nil {
			continue
		}
		var ce *fws.CloseError
		if !errors.As(err, &ce) || ce.Code != CloseTooSlow || ce.Text != TextTooSlow {
			t.Fatalf("read after drop: %v, want close 1008 %q", err, TextTooSlow)
		}
		break
	}
}

func TestBadMessages(t *testing.T) {
	e := newEnv(t, Options{MaxSubscriptions: 3, MaxMessageBytes: 1024})
	e.makeKnown(t, []string{"a", "b", "c", "d"}, nil)
	conn := e.dial(t, "/ws", nil)
	cases := []struct{ in, want string }{
		{`{"type":`, "invalid JSON"},
		{`not json`, "invalid JSON"},
		{`[1,2]`, "invalid JSON"},
		{`{"type":"subscribe"} {"type":"x"}`, "one object per message"},
		{`{}`, `missing "type"`},
		{`{"type":"launch"}`, `unknown type "launch"`},
		{`{"type":"subscribe","models":["a:b"]}`, `invalid model id "a:b"`},
		{`{"type":"subscribe","channels":["x y"]}`, `invalid channel id "x y"`},
		{`{"type":"subscribe","models":["a","b","c","d"]}`, "at most 3 models"},
		{`{"type":"subscribe","models":"a"}`, "invalid JSON"},
		{`{"type":"subscribe","requestRef":"` + strings.Repeat("r", 200) + `"}`, "requestRef is longer"},
	}
	for _, c := range cases {
		write(t, conn, c.in)
		m := read(t, conn)
		if m.str("type") != TypeError || !strings.Contains(m.str("message"), c.want) {
			t.Errorf("%s → %v, want an error containing %q", c.in, m, c.want)
		}
	}
	// The limit also holds across messages.
	subscribe(t, conn, map[string]any{"models": []string{"a", "b"}})
	write(t, conn, map[string]any{"type": TypeSubscribe, "models": []string{"c", "d"}})
	if m := read(t, conn); !strings.Contains(m.str("message"), "subscription limit") {
		t.Fatalf("over the limit: %v", m)
	}
	// Binary frames are refused, the connection stays.
	if err := conn.WriteMessage(fws.BinaryMessage, []byte{1, 2, 3}); err != nil {
		t.Fatal(err)
	}
	if m := read(t, conn); m.str("message") != "text messages only" {
		t.Fatalf("binary: %v", m)
	}
	// Still served after all that.
	if m := subscribe(t, conn, map[string]any{"models": []string{"c"}}); fmt.Sprint(m["models"]) != "[a b c]" {
		t.Fatalf("subscribed = %v", m)
	}
	if s := e.hub.Stats(); s.BadMessages < uint64(len(cases)+2) {
		t.Fatalf("BadMessages = %d", s.BadMessages)
	}
	// A message over the size bound closes the connection with 1009.
	write(t, conn, `{"type":"subscribe","models":["`+strings.Repeat("x", 2000)+`"]}`)
	_ = conn.SetReadDeadline(time.Now().Add(patience))
	_, _, err := conn.ReadMessage()
	var ce *fws.CloseError
	if !errors.As(err, &ce) || ce.Code != fws.CloseMessageTooBig {
		t.Fatalf("oversized message: %v, want close 1009", err)
	}
	wait.For(t, patience, "the client's removal", func() error { return wait.Equal(e.hub.Clients(), 0) })
}

func TestOrigin(t *testing.T) {
	e := newEnv(t, Options{Origins: []string{"https://scada.example:8443/"}})
	for _, c := range []struct {
		origin string
		ok     bool
	}{
		{"", true},                       // not a browser
		{"http://" + e.addr, true},       // same origin
		{"HTTP://" + e.addr + "/", true}, // case and slash do not matter
		{"https://scada.example:8443", true},
		{"http://evil.example", false},
		{"http://" + e.addr + ".evil.example", false},
		{"null", false},
	} {
		h := http.Header{}
		if c.origin != "" {
			h.Set("Origin", c.origin)
		}
		conn, resp, err := e.dialErr("/ws", h)
		if c.ok {
			if err != nil {
				t.Errorf("origin %q refused: %v", c.origin, err)
				continue
			}
			conn.Close()
			continue
		}
		if err == nil {
			conn.Close()
			t.Errorf("origin %q accepted", c.origin)
			continue
		}
		if resp == nil || resp.StatusCode != http.StatusForbidden {
			t.Errorf("origin %q: %v %v, want 403", c.origin, err, resp)
			continue
		}
		body, _ := io.ReadAll(resp.Body)
		if !bytes.Contains(body, []byte(`"code":"forbidden"`)) {
			t.Errorf("origin %q: body %s", c.origin, body)
		}
	}
	if s := e.hub.Stats(); s.Refused != 3 {
		t.Fatalf("Refused = %d, want 3", s.Refused)
	}

	// "*" allows every origin.
	all := startHub(t, e.c, Options{Origins: []string{"*"}})
	conn := all.dial(t, "/ws", http.Header{"Origin": {"http://evil.example"}})
	subscribe(t, conn, map[string]any{"alarms": true})

	// A plain GET is not an upgrade.
	resp, err := http.Get("http://" + e.addr + "/ws")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("plain GET /ws: %d", resp.StatusCode)
	}
}

func TestRequireAuthAndMaxClients(t *testing.T) {
	e := newEnv(t, Options{RequireAuth: true, MaxClients: 1})
	if _, resp, err := e.dialErr("/ws", nil); err == nil || resp == nil || resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("without credentials: %v %v, want 401", err, resp)
	}
	e.dial(t, "/ws?token="+testToken, nil)
	wait.For(t, patience, "the client", func() error { return wait.Equal(e.hub.Clients(), 1) })
	h := http.Header{"Authorization": {"Bearer " + testToken}}
	if _, resp, err := e.dialErr("/ws", h); err == nil || resp == nil || resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("over MaxClients: %v %v, want 503", err, resp)
	}
}

func TestCommands(t *testing.T) {
	e := newEnv(t, Options{CommandWait: 3 * time.Second})
	do(t, e.c, "HSET", keys.MappingReverse,
		keys.PointRef("pm", "setpoint"), keys.PointRef("1001", "40001"),
		keys.PointRef("gone", "setpoint"), keys.PointRef("9", "40001"),
		keys.PointRef("mute", "setpoint"), keys.PointRef("7", "40001"))
	// The responder stands for comsrv: a process of its own, with its own
	// client. Channel 1001 confirms, 9 is offline, 7 never answers.
	rc := e.srv.Client(t)
	contracttest.Respond(t, rc, contracttest.Always(contract.Outcome{Status: contract.OK}), "1001")
	contracttest.Respond(t, rc, contracttest.Always(contract.Outcome{Status: contract.Offline, Message: "channel not connected"}), "9")
	contracttest.Respond(t, rc, contracttest.Never, "7")

	// Not authorised: refused before anything is queued.
	anon := e.dial(t, "/ws", nil)
	write(t, anon, map[string]any{"type": TypeCommand, "requestRef": "r0", "model": "pm", "control": "setpoint", "value": 50})
	m := read(t, anon)
	if m.str("type") != TypeAck || m["accepted"] != false || m.str("reason") != ReasonNotAuthorised || m.str("requestRef") != "r0" {
		t.Fatalf("anonymous command: %v", m)
	}
	if n, _ := e.c.Do(context.Background(), e.c.B().Get().Key(keys.CommandSeq).Build()).ToString(); n != "" {
		t.Fatalf("a refused command was queued (cmd:seq = %s)", n)
	}

	// Bearer token at upgrade: accepted, then the device's outcome.
	conn := e.dial(t, "/ws", http.Header{"Authorization": {"Bearer " + testToken}})
	write(t, conn, map[string]any{"type": TypeCommand, "requestRef": "r1", "model": "pm", "control": "setpoint", "value": 50})
	ack := read(t, conn)
	if ack.str("type") != TypeAck || ack["accepted"] != true || ack.str("requestRef") != "r1" || ack.str("id") == "" {
		t.Fatalf("ack = %v", ack)
	}
	resp := read(t, conn)
	result, _ := resp["result"].(map[string]any)
	if resp.str("type") != TypeResponse || resp.str("requestRef") != "r1" || resp.str("id") != ack.str("id") ||
		resp.str("status") != StatusOK || result["status"] != "ok" || result["channel"] != "1001" || result["value"] != "50" {
		t.Fatalf("response = %v", resp)
	}

	// Token in the query, value as a string; the device's channel is offline: failed.
	q := e.dial(t, "/ws?token="+testToken, nil)
	write(t, q, map[string]any{"type": TypeCommand, "requestRef": "r2", "model": "gone", "control": "setpoint", "value": "1.5"})
	if ack := read(t, q); ack["accepted"] != true {
		t.Fatalf("ack = %v", ack)
	}
	resp = read(t, q)
	result, _ = resp["result"].(map[string]any)
	if resp.str("status") != StatusFailed || result["status"] != string(contract.Offline) || resp.str("message") != "offline (channel not connected)" {
		t.Fatalf("response = %v", resp)
	}

	// No outcome within CommandWait: timeout.
	write(t, q, map[string]any{"type": TypeCommand, "requestRef": "r3", "model": "mute", "control": "setpoint", "value": 2})
	if ack := read(t, q); ack["accepted"] != true {
		t.Fatalf("ack = %v", ack)
	}
	if resp := read(t, q); resp.str("status") != StatusTimeout || resp.str("requestRef") != "r3" {
		t.Fatalf("response = %v", resp)
	}

	// Refusals with REST's error code and a reason: unknown model or
	// control (from the Lua library's error), not a number, invalid ids.
	for _, c := range []struct {
		cmd  string
		code string
		want string
	}{
		{`{"type":"command","requestRef":"r4","model":"nope","control":"setpoint","value":1}`, "not_found", `unknown model "nope"`},
		{`{"type":"command","requestRef":"r4b","model":"pm","control":"nothing","value":1}`, "not_found", `model "pm" has no control "nothing"`},
		{`{"type":"command","requestRef":"r5","model":"pm","control":"setpoint","value":"abc"}`, "bad_request", "not a decimal number"},
		{`{"type":"command","requestRef":"r6","model":"p m","control":"setpoint","value":1}`, "bad_request", "invalid model id"},
		{`{"type":"command","requestRef":"r7","model":"pm","control":"setpoint"}`, "bad_request", `missing "value"`},
		{`{"type":"command","requestRef":"r8","model":"pm","control":"setpoint","value":{"a":1}}`, "bad_request", "must be a number"},
	} {
		write(t, conn, c.cmd)
		m := read(t, conn)
		if m.str("type") != TypeAck || m["accepted"] != false || m.str("code") != c.code || !strings.Contains(m.str("reason"), c.want) {
			t.Errorf("%s → %v, want refusal %s containing %q", c.cmd, m, c.code, c.want)
		}
	}
	if s := e.hub.Stats(); s.Commands != 3 || s.CommandsRefused != 7 {
		t.Fatalf("stats = %+v", s)
	}
}

func TestCommandsInFlightBound(t *testing.T) {
	e := newEnv(t, Options{MaxInFlight: 2, CommandWait: patience})
	do(t, e.c, "HSET", keys.MappingReverse, keys.PointRef("mute", "setpoint"), keys.PointRef("7", "40001"))
	conn := e.dial(t, "/ws", http.Header{"Authorization": {"Bearer " + testToken}})
	for i := 0; i < 3; i++ {
		write(t, conn, map[string]any{"type": TypeCommand, "requestRef": "r" + strconv.Itoa(i), "model": "mute", "control": "setpoint", "value": i})
	}
	busy, acked := 0, 0
	for busy+acked < 3 {
		m := readType(t, conn, TypeAck)
		if m["accepted"] == true {
			acked++
		} else if m.str("reason") == ReasonBusy {
			busy++
		} else {
			t.Fatalf("ack = %v", m)
		}
	}
	if busy != 1 {
		t.Fatalf("%d refused as busy, want 1", busy)
	}
}

func TestAlarmsAndChannels(t *testing.T) {
	e := newEnv(t, Options{ChannelInterval: 50 * time.Millisecond})
	do(t, e.c, "HSET", keys.Mapping, keys.PointRef("1001", "10001"), keys.PointRef("power_meter", "voltage"))
	do(t, e.c, "HSET", keys.AlarmThreshold, keys.PointRef("power_meter", "voltage"), "250")
	// An event from before the client connected is not replayed.
	do(t, e.c, "XADD", keys.AlarmEvents, "*", "type", "raise", "model", "old", "point", "p", "ts", "1")
	wait.For(t, patience, "the hub to read the old event", func() error { return wait.Equal(e.hub.Stats().Alarms, 1) })

	conn := e.dial(t, "/ws", nil)
	subscribe(t, conn, map[string]any{"alarms": true})
	do(t, e.c, "FCALL", scripts.FnSyncMeasurement, "0", "1001", "10001", "260", "1732212345678")
	m := read(t, conn)
	if m.str("type") != TypeAlarm || m.str("event") != "raise" || m.str("model") != "power_meter" ||
		m.str("point") != "voltage" || m.str("kind") != "high" || m["value"] != 260.0 || m["limit"] != 250.0 ||
		fmt.Sprint(m["ts"]) != "1.732212345678e+12" || m.str("id") == "" {
		t.Fatalf("alarm = %v", m)
	}
	do(t, e.c, "FCALL", scripts.FnSyncMeasurement, "0", "1001", "10001", "240", "1732212345679")
	if m := read(t, conn); m.str("event") != "clear" {
		t.Fatalf("alarm = %v", m)
	}

	// Channels: the status hash, periodically, for subscribed channels only.
	do(t, e.c, "HSET", keys.ChannelStatus("1001"), "online", "1", "registration", "<img src=x>", "name", "Meter 1")
	do(t, e.c, "HSET", keys.ChannelStatus("1002"), "online", "0")
	e.makeKnown(t, nil, []string{"1001", "1002"})
	write(t, conn, map[string]any{"type": TypeUnsubscribe, "alarms": true})
	if m := readType(t, conn, TypeSubscribed); m["alarms"] != false {
		t.Fatalf("after unsubscribe: %v", m)
	}
	subscribe(t, conn, map[string]any{"channels": []string{"1001"}})
	for i := 0; i < 3; i++ {
		m := read(t, conn)
		st, _ := m["status"].(map[string]any)
		if m.str("type") != TypeChannel || m.str("channel") != "1001" || m.str("name") != "Meter 1" || st["online"] != true || st["registration"] != "<img src=x>" {
			t.Fatalf("channel message = %v", m)
		}
	}
}

func TestShutdownClosesClients(t *testing.T) {
	srv := redistest.Start(t)
	c := srv.Client(t)
	hub := New(c, Options{}, nil)
	app := fiber.New(fiber.Config{DisableStartupMessage: true})
	hub.Mount(app)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = app.Listener(ln) }()
	defer app.Shutdown()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); hub.Run(ctx) }()
	e := &env{c: c, hub: hub, addr: ln.Addr().String()}
	conn := e.dial(t, "/ws", nil)
	subscribe(t, conn, map[string]any{"models": []string{"m"}})
	cancel()
	_ = conn.SetReadDeadline(time.Now().Add(patience))
	_, _, err = conn.ReadMessage()
	var ce *fws.CloseError
	if !errors.As(err, &ce) || ce.Code != CloseShutdown {
		t.Fatalf("after shutdown: %v, want close 1001", err)
	}
	select {
	case <-done:
	case <-time.After(patience):
		t.Fatal("Run did not return")
	}
	wait.For(t, patience, "no clients", func() error { return wait.Equal(hub.Clients(), 0) })
}

func TestRelayPayload(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{`{"model":"m","ts":1,"values":{"v":2.50}}`, `{"type":"update","model":"m","ts":1,"values":{"v":2.50}}`},
		{`{"model":"m","ts":1,"quality":{"v":"stale"}}`, `{"type":"quality","model":"m","ts":1,"quality":{"v":"stale"}}`},
		{` {} `, `{"type":"update"}`},
		{`{"a":1`, ``},
		{`[1]`, ``},
		{``, ``},
		{`{"a":1}{"b":2}`, ``},
	} {
		if got := string(relayPayload([]byte(c.in))); got != c.want {
			t.Errorf("relayPayload(%s) = %s, want %s", c.in, got, c.want)
		}
	}
}

func FuzzParseRequest(f *testing.F) {
	for _, s := range []string{
		`{"type":"subscribe","models":["power_meter"],"channels":["1001"],"alarms":true}`,
		`{"type":"unsubscribe","models":["a"]}`,
		`{"type":"command","requestRef":"r1","model":"pm","control":"sp","value":50}`,
		`{"type":"command","requestRef":"r1","model":"pm","control":"sp","value":"5e3"}`,
		`{"type":`, `null`, `[]`, `{"value":true}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := parseRequest(data, 10)
		if err != nil {
			return
		}
		if len(r.Models) > 10 || len(r.Channels) > 10 || len(r.RequestRef) > maxRequestRef {
			t.Fatalf("bounds not enforced: %+v", r)
		}
		if r.Type == TypeCommand {
			v, err := commandValue(r.Value)
			if err != nil || v == "" || len(v) > maxValue || !keys.ValidID(r.Model) || !keys.ValidID(r.Control) {
				t.Fatalf("accepted command %+v (value %q, %v)", r, v, err)
			}
		}
	})
}

func FuzzRelayPayload(f *testing.F) {
	f.Add([]byte(`{"model":"m","ts":1,"values":{"v":1}}`))
	f.Add([]byte(`{"model":"m","ts":1,"quality":{"v":"stale"}}`))
	f.Add([]byte(`{}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		out := relayPayload(data)
		if out == nil {
			return
		}
		var m map[string]json.RawMessage
		if err := json.Unmarshal(out, &m); err != nil {
			t.Fatalf("relayPayload(%q) = %q: %v", data, out, err)
		}
		if !bytes.HasPrefix(out, []byte(`{"type":"`)) {
			t.Fatalf("relayPayload(%q) = %q", data, out)
		}
	})
}
