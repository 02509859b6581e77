package web_test

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"
	"github.com/redis/rueidis"
	"golang.org/x/crypto/bcrypt"

	"github.com/voltedge/voltedge/internal/contract"
	"github.com/voltedge/voltedge/internal/contract/contracttest"
	"github.com/voltedge/voltedge/internal/keys"
	"github.com/voltedge/voltedge/internal/lualib"
	"github.com/voltedge/voltedge/internal/redistest"
	"github.com/voltedge/voltedge/internal/wait"
	"github.com/voltedge/voltedge/modsrv/api"
	"github.com/voltedge/voltedge/modsrv/auth"
	"github.com/voltedge/voltedge/modsrv/config"
	"github.com/voltedge/voltedge/modsrv/links"
	"github.com/voltedge/voltedge/modsrv/web"
	"github.com/voltedge/voltedge/modsrv/ws"
	"github.com/voltedge/voltedge/scripts"
)

// patience bounds every wait: generous for a loaded machine; a passing test
// never waits this long.
const patience = 30 * time.Second

// Strings a hostile device could send: they must show as text.
const (
	xssRegistration = `<img src=x onerror=alert(1)>`
	xssFrame        = `<img src=x onerror=alert(2)>`
	xssReason       = `<img src=x onerror=alert(3)>`
	xssPoint        = `<svg><script>alert(4)<` // a valid point name: no space, no ':', no '/'
)

// chromium returns the browser to use. The test is skipped when none is
// installed, unless VOLTEDGE_REQUIRE_BROWSER is set (CI sets it).
func chromium(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("VOLTEDGE_CHROMIUM"); p != "" {
		return p
	}
	if _, err := os.Stat("/usr/bin/chromium"); err == nil {
		return "/usr/bin/chromium"
	}
	for _, name := range []string{"chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv("VOLTEDGE_REQUIRE_BROWSER") != "" {
		t.Fatal("chromium not installed (apt-get install chromium)")
	}
	t.Skip("chromium not installed; set VOLTEDGE_REQUIRE_BROWSER=1 to make this a failure")
	return ""
}

// screenshotPath is where the console's screenshot goes:
// $VOLTEDGE_SCREENSHOT (relative to the repository root), else
// $VOLTEDGE_ARTIFACTS/console.png, else the test's temporary directory.
func screenshotPath(t *testing.T) string {
	if p := os.Getenv("VOLTEDGE_SCREENSHOT"); p != "" {
		if filepath.IsAbs(p) {
			return p
		}
		return filepath.Join(repoRoot(t), p)
	}
	if d := os.Getenv("VOLTEDGE_ARTIFACTS"); d != "" {
		return filepath.Join(d, "console.png")
	}
	return filepath.Join(t.TempDir(), "console.png")
}

func repoRoot(t *testing.T) string {
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("go.mod not found above the test directory")
		}
		dir = parent
	}
}

// server runs modsrv's API, WebSocket and console on a loopback port over a
// private Redis with the Lua library, and a responder standing for comsrv
// that confirms every control of channel 1001. It returns the base URL.
func server(t *testing.T, rc rueidis.Client, comsrv rueidis.Client, extra string) string {
	t.Helper()
	hash, err := bcrypt.GenerateFromPassword([]byte("pw"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Parse("test.toml", []byte(extra+"[[user]]\nname = \"op\"\nbcrypt = \""+string(hash)+"\"\n"))
	if err != nil {
		t.Fatal(err)
	}
	a, err := auth.New(auth.Options{ReadOpen: cfg.ReadOpen, LoginRate: cfg.LoginRate, SessionTTL: cfg.SessionTTL.Duration,
		MaxSessions: cfg.MaxSessions, Users: []auth.User{{Name: "op", Hash: cfg.Users[0].Bcrypt}}})
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	results := contract.NewResults(rc, log)
	index := links.New(rc, time.Second, log)
	app, err := api.New(api.Deps{Redis: rc, Auth: a, Log: log, Config: cfg, Results: results, Links: index})
	if err != nil {
		t.Fatal(err)
	}
	hub := ws.New(rc, ws.Options{Authorize: a.Check, RequireAuth: !cfg.ReadOpen, Results: results, Links: index}, log)
	hub.Mount(app)
	web.Mount(app)

	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(3)
	go func() { defer wg.Done(); hub.Run(ctx) }()
	go func() { defer wg.Done(); index.Run(ctx) }()
	go func() { defer wg.Done(); results.Run(ctx) }()
	contracttest.Respond(t, comsrv, contracttest.Always(contract.Outcome{Status: contract.OK}), "1001")

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = app.Listener(ln) }()
	t.Cleanup(func() {
		cancel()
		wg.Wait()
		_ = app.ShutdownWithTimeout(5 * time.Second)
	})
	return "http://" + ln.Addr().String()
}

// seed writes what comsrv and the Lua library would: channels with status,
// frames, connection events, mappings and an alarm limit. Some strings are
// hostile markup.
func seed(t *testing.T, rc rueidis.Client) {
	t.Helper()
	do := func(args ...string) { redistest.Do(t, rc, args...) }
	now := strconv.FormatInt(time.Now().UnixMilli(), 10)
	do("HSET", keys.Mapping,
		keys.PointRef("1001", "10001"), keys.PointRef("power_meter", "voltage"),
		keys.PointRef("1001", "10002"), keys.PointRef("power_meter", "current"),
		keys.PointRef("1001", "10003"), keys.PointRef("power_meter", xssPoint),
		keys.PointRef("1002", "1"), keys.PointRef("pump_station", "pressure"))
	do("HSET", keys.MappingReverse, keys.PointRef("power_meter", "setpoint"), keys.PointRef("1001", "40001"))
	do("HSET", keys.MappingReverse, keys.PointRef("pump_station", "run"), keys.PointRef("1002", "2001"))
	meta := func(channel string, points ...string) {
		args := []string{"HSET", keys.ChannelMeta(channel)}
		for i := 0; i+5 < len(points)+1; i += 6 {
			b, _ := json.Marshal(map[string]any{"name": points[i+1], "type": points[i+2], "unit": points[i+3],
				"description": points[i+4], "writable": points[i+5] == "w"})
			args = append(args, points[i], string(b))
		}
		do(args...)
	}
	meta("1001",
		"10001", "voltage", "float32", "V", "Phase A voltage", "r",
		"10002", "current", "float32", "A", "Phase A current", "r",
		"40001", "setpoint", "float32", "kW", "Active power limit", "w")
	meta("1002",
		"1", "pressure", "float32", "bar", "Outlet pressure", "r",
		"2001", "run", "bool", "", "Pump run command", "w")
	do("HSET", keys.AlarmThreshold, keys.PointRef("power_meter", "voltage"), "250")
	do("SADD", keys.Channels, "1001", "1002")
	do("HSET", keys.ChannelStatus("1001"), "name", "Main incomer", "template", "power_meter", "online", "1", "registration", "DTU1001", "remote", "10.0.0.7:40112",
		"profile", "transparent", "polls_ok", "1234", "timeouts", "3", "crc_errors", "1", "bytes_in", "98304",
		"last_heartbeat", now, "connected_at", now)
	do("HSET", keys.ChannelStatus("1002"), "name", "Pump station 2", "template", "pump", "online", "0", "registration", xssRegistration, "remote", "10.0.0.9:50000",
		"polls_ok", "77", "timeouts", "12", "disconnect_reason", xssReason)
	frame := func(dir, kind, hex string) string {
		b, _ := json.Marshal(map[string]any{"ts": time.Now().UnixMilli(), "dir": dir, "kind": kind, "hex": hex})
		return string(b)
	}
	do("LPUSH", keys.ChannelFrames("1001"),
		frame("tx", "rtu", "010300000002c40b"),
		frame("rx", "rtu", "01030408fd0034a1b2"),
		frame("rx", "rtu", hex.EncodeToString([]byte("www.usr.cn"))),
		frame("rx", "line", hex.EncodeToString([]byte(xssFrame))))
	do("XADD", keys.ConnectionEvents, "*", "event", "online", "channel", "1001", "registration", "DTU1001",
		"remote", "10.0.0.7:40112", "listener", "dtu", "ts", now)
	do("XADD", keys.ConnectionEvents, "*", "event", "offline", "channel", "1002", "registration", xssRegistration,
		"remote", "10.0.0.9:50000", "reason", xssReason, "ts", now)
	sync := func(point, value string) {
		do("FCALL", scripts.FnSyncMeasurement, "0", "1001", point, value)
	}
	sync("10001", "230.1")
	sync("10002", "5.25")
	sync("10003", "1")
	do("FCALL", scripts.FnSyncMeasurement, "0", "1002", "1", "3.5")
}

// TestConsoleInBrowser opens the console in headless Chromium against the
// real API, WebSocket and Redis with the Lua library, and checks that live
// values appear and change, that device strings stay text, that export
// shows the server's message, and that a logged-in user can acknowledge an
// alarm and send a control that reaches the (simulated) device.
func TestConsoleInBrowser(t *testing.T) {
	bin, rc, base := consoleServer(t, "")

	js, waitFor, dialogs, _, resize := openConsole(t, bin, base)
	cell := func(model, point string) string {
		return `(() => { const c = [...document.querySelectorAll('#models .model')].find(e => e.dataset.model === ` + jsString(model) +
			`); const r = c && [...c.querySelectorAll('tr')].find(r => r.dataset.point === ` + jsString(point) +
			`); return r ? r.querySelector('.val').textContent : ''; })()`
	}
	fcall := func(fn string, args ...string) {
		t.Helper()
		redistest.Do(t, rc, append([]string{"FCALL", fn, "0"}, args...)...)
	}

	waitFor("the WebSocket", `document.getElementById('live').textContent`, "live")
	waitFor("the voltage from REST", cell("power_meter", "voltage"), "230.1")

	// Live values: written through the Lua library while the page is open.
	waitFor("the subscription", `String(document.querySelectorAll('#models .model').length)`, "2")
	for _, v := range []string{"231.7", "229.4", "233.2", "236.8", "234.1"} {
		fcall(scripts.FnSyncMeasurement, "1001", "10001", v)
		waitFor("the live voltage "+v, cell("power_meter", "voltage"), v)
		fcall(scripts.FnSyncMeasurement, "1001", "10002", "5."+v[len(v)-1:])
	}
	fcall(scripts.FnSyncMeasurement, "1002", "1", "3.9")
	waitFor("the live pressure", cell("pump_station", "pressure"), "3.9")
	// A value from another day shows its date, not only the time of day.
	yesterday := time.Now().Add(-26 * time.Hour)
	redistest.Do(t, rc, "HSET", keys.Mapping, keys.PointRef("1002", "2"), keys.PointRef("pump_station", "flow"))
	fcall(scripts.FnSyncMeasurement, "1002", "2", "12.5", strconv.FormatInt(yesterday.UnixMilli(), 10))
	waitFor("the old value's date", `(() => { const c = [...document.querySelectorAll('#models .model')].find(e => e.dataset.model === 'pump_station');
		const r = c && [...c.querySelectorAll('tr')].find(r => r.dataset.point === 'flow'); return r ? r.cells[3].textContent.slice(0, 10) : ''; })()`,
		yesterday.Format("2006-01-02"))

	// The chart of a point's recent values.
	js(`(() => { const c = [...document.querySelectorAll('#models .model')].find(e => e.dataset.model === 'power_meter');
		[...c.querySelectorAll('tr')].find(r => r.dataset.point === 'voltage').click(); return ''; })()`)
	waitFor("the chart title", `document.getElementById('chart-title').textContent.replace(/ \(.*\)$/, '')`, "power_meter · voltage")
	// A stored range needs netsrv's store: the chart says so and stays live.
	js(`(() => { const s = document.getElementById('chart-range'); s.value = '3600000'; s.dispatchEvent(new Event('change')); return ''; })()`)
	waitFor("the chart's message", `String(document.getElementById('chart-msg').textContent.startsWith("History unavailable: history needs netsrv's MySQL store"))`, "true")
	waitFor("the live values still charted", `String(Number(document.getElementById('chart').dataset.points) > 0)`, "true")
	js(`(() => { const s = document.getElementById('chart-range'); s.value = 'live'; s.dispatchEvent(new Event('change')); return ''; })()`)
	waitFor("no chart message when live", `document.getElementById('chart-msg').textContent`, "")

	// An alarm raised while the page is open arrives over the WebSocket.
	fcall(scripts.FnSyncMeasurement, "1001", "10001", "262.5")
	waitFor("the live voltage 262.5", cell("power_meter", "voltage"), "262.5")
	waitFor("the active alarm", `(() => { const r = document.querySelector('#alarms tbody tr'); return r && r.cells.length > 3 ? r.cells[0].textContent + ' ' + r.cells[3].textContent : ''; })()`,
		"power_meter:voltage 262.5")
	waitFor("the alarm event", `String(document.getElementById('alarm-events').textContent.includes('raise power_meter:voltage high value 262.5 limit 250'))`, "true")

	// Channels, frames and connection history, with the hostile strings as text.
	waitFor("the channels", `String(document.querySelectorAll('#channels tbody tr').length)`, "2")
	waitFor("the channel counters", `(() => { const r = document.querySelector('#channels tbody tr'); return r ? [0, 3, 4, 5, 6, 7, 8, 9].map(i => r.cells[i].textContent).join('|') : ''; })()`,
		"1001|online|DTU1001|10.0.0.7:40112|1,234|3|1|98,304")
	waitFor("the frames", `String(document.querySelectorAll('#frames tbody tr').length)`, "4")
	// A line device's frame as its text, binary frames as spaced hex with their ASCII.
	waitFor("the line frame as text", `String([...document.querySelectorAll('#frames td.text')].some(td => td.textContent === `+jsString(xssFrame)+`))`, "true")
	waitFor("the ASCII column", `String([...document.querySelectorAll('#frames td.ascii')].some(td => td.textContent === 'www.usr.cn'))`, "true")
	waitFor("the events", `String(document.querySelectorAll('#events tbody tr').length)`, "2")
	// The connection history follows new events without a reload.
	redistest.Do(t, rc, "XADD", keys.ConnectionEvents, "*", "event", "online", "channel", "1002", "registration", "DTU1002",
		"ts", strconv.FormatInt(time.Now().UnixMilli(), 10))
	waitFor("the new event", `String(document.querySelectorAll('#events tbody tr').length)`, "3")
	text := js(`document.body.innerText`)
	for _, s := range []string{xssRegistration, xssFrame, xssReason, xssPoint, "01 03 04 08 fd 00 34 a1 b2", "offline"} {
		if !strings.Contains(text, s) {
			t.Errorf("the page does not show %q as text", s)
		}
	}
	if n := js(`String(document.querySelectorAll('img, svg, iframe, object, embed, script:not([src])').length)`); n != "0" {
		t.Errorf("device strings created %s elements", n)
	}

	// Export answers 503 until netsrv's store exists: the message is shown.
	js(`document.getElementById('export-csv').click(), ''`)
	waitFor("the export message", `String(document.getElementById('export-msg').textContent.includes("history needs netsrv's MySQL store"))`, "true")

	// Log in, acknowledge the alarm, send a control to the device.
	js(`(() => { document.getElementById('login-user').value = 'op'; document.getElementById('login-password').value = 'pw';
		document.getElementById('login').requestSubmit(); return ''; })()`)
	waitFor("the login", `document.getElementById('whoami-name').textContent`, "op")
	waitFor("the ack button", `String(!!document.querySelector('#alarms tbody button'))`, "true")
	js(`document.querySelector('#alarms tbody button').click(), ''`)
	waitFor("the acknowledgement", `(() => { const r = document.querySelector('#alarms tbody tr'); return String(!!r && r.cells.length > 6 && r.cells[6].textContent.startsWith('✓ op')); })()`, "true")
	sendControl(t, base, js, waitFor, rc)

	// At 1280 × 800 nothing is off-screen: every element's box ends inside
	// the viewport (tables scroll inside their own boxes).
	resize(1280, 800)
	waitFor("nothing off-screen at 1280 px", offScreen, "")
	resize(800, 1000) // a tablet in the cabinet
	waitFor("nothing off-screen at 800 px", offScreen, "")
	resize(1440, 1000)

	if d := dialogs(); len(d) > 0 {
		t.Fatalf("the page ran device markup as script: dialogs %q", d)
	}
}

// sendControl sends a control from the console's list as the logged-in
// user and checks that it reaches channel 1001 and that its outcome shows.
// Without GET /controls (a modsrv before the list) it says so and returns.
func sendControl(t *testing.T, base string, js func(string) string, waitFor func(what, expr, want string), rc rueidis.Client) {
	t.Helper()
	if !served(t, base+"/controls") {
		t.Log("GET /controls is not served: the control list is not checked")
		return
	}
	row := `[...document.querySelectorAll('#controls tbody tr')].find(r => r.dataset.model === 'power_meter' && r.dataset.control === 'setpoint')`
	waitFor("the control row with its form", `String(!!(`+row+` || {querySelector: () => null}).querySelector('form'))`, "true")
	waitFor("the control's unit in its range or type", `(() => { const r = `+row+`; return r ? r.cells[2].textContent : ''; })()`, "1001:40001")
	js(`(() => { const f = ` + row + `.querySelector('form'); f.querySelector('input').value = '42.5'; f.requestSubmit(); return ''; })()`)
	waitFor("the control outcome", `(() => { const r = `+row+`; return r ? r.querySelector('td.last span').textContent : ''; })()`, "ok")
	res, err := rc.Do(context.Background(), rc.B().Hget().Key(keys.Command("1001")).Field("40001").Build()).ToString()
	if err != nil || res != "42.5" {
		t.Errorf("the control did not reach channel 1001: %q %v", res, err)
	}
	// The outcome stays after the list is read again (control:last).
	js(`(() => { document.getElementById('lang-en').click(); return ''; })()`)
	waitFor("the outcome after a new render", `(() => { const r = `+row+`; return r ? r.querySelector('td.last').textContent.slice(0, 7) : ''; })()`, "ok = 42")
}

// served tells whether GET url answers anything but 404.
func served(t *testing.T, url string) bool {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode != http.StatusNotFound
}

// consoleServer finds Chromium and runs the console over a seeded private
// Redis, with extra lines in modsrv's configuration; it returns the browser
// binary, the Redis client and the console's base URL.
func consoleServer(t *testing.T, extra string) (bin string, rc rueidis.Client, base string) {
	t.Helper()
	bin = chromium(t)
	srv := redistest.Start(t)
	rc = srv.Client(t)
	if _, err := lualib.Ensure(context.Background(), rc); err != nil {
		t.Fatal(err)
	}
	seed(t, rc)
	return bin, rc, server(t, rc, srv.Client(t), extra)
}

// TestConsoleLoginReloads: with read_open = false the console says that
// credentials are needed (not "offline"), and a login shows the live values
// at once, without waiting for the periodic refresh of the models.
func TestConsoleLoginReloads(t *testing.T) {
	bin, _, base := consoleServer(t, "read_open = false\n")
	js, waitFor, _, _, _ := openConsole(t, bin, base)
	waitFor("the badge", `document.getElementById('live').textContent`, "log in to see live values")
	if n := js(`String(document.querySelectorAll('#models .model').length)`); n != "0" {
		t.Fatalf("%s models shown before the login", n)
	}
	js(`(() => { document.getElementById('login-user').value = 'op'; document.getElementById('login-password').value = 'pw';
		document.getElementById('login').requestSubmit(); return ''; })()`)
	waitFor("the login", `document.getElementById('whoami-name').textContent`, "op")
	waitFor("the models at once", `String(document.querySelectorAll('#models .model').length > 0)`, "true")
	waitFor("the WebSocket", `document.getElementById('live').textContent`, "live")
}

// openConsole opens base in headless Chromium until the test ends and
// returns: js, which evaluates an expression to a string; waitFor, which
// waits until an expression gives want; dialogs, the JavaScript dialogs the
// page opened (there must be none); screenshot, of the whole page as PNG;
// and resize, which sets the viewport.
func openConsole(t *testing.T, bin, base string) (js func(string) string, waitFor func(what, expr, want string), dialogs func() []string, screenshot func() ([]byte, error), resize func(w, h int64)) {
	t.Helper()
	return openConsoleIn(t, bin, base, "en-US")
}

// openConsoleIn is openConsole with the browser's language lang (a BCP 47
// tag: its --lang flag and Accept-Language).
func openConsoleIn(t *testing.T, bin, base, lang string) (js func(string) string, waitFor func(what, expr, want string), dialogs func() []string, screenshot func() ([]byte, error), resize func(w, h int64)) {
	t.Helper()
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(),
		chromedp.ExecPath(bin), chromedp.Headless, chromedp.NoSandbox, chromedp.DisableGPU,
		chromedp.Flag("disable-dev-shm-usage", true), chromedp.Flag("lang", lang),
		chromedp.Env("LANGUAGE="+strings.ReplaceAll(lang, "-", "_"), "LANG="+strings.ReplaceAll(lang, "-", "_")+".UTF-8"),
		chromedp.WindowSize(1440, 1000))
	t.Cleanup(cancelAlloc)
	ctx, cancel := chromedp.NewContext(allocCtx)
	t.Cleanup(cancel)

	var mu sync.Mutex
	var seen []string
	opened := chromedp.Events(ctx, page.JavascriptDialogOpening) // starts the browser; subscribed from here on
	go func() {
		for ev, err := range opened {
			if err != nil {
				return
			}
			mu.Lock()
			seen = append(seen, ev.Message)
			mu.Unlock()
			_, _ = chromedp.Call(ctx, page.HandleJavaScriptDialog, page.HandleJavaScriptDialogParams{Accept: true})
		}
	}()

	// The browser's language as pages see it (navigator.languages) and as
	// servers do (Accept-Language).
	ua, err := chromedp.Run(ctx, chromedp.Evaluate[string](`navigator.userAgent`))
	if err != nil {
		t.Fatalf("user agent: %v", err)
	}
	if _, err := chromedp.Call(ctx, emulation.SetUserAgentOverride, emulation.SetUserAgentOverrideParams{UserAgent: ua, AcceptLanguage: lang}); err != nil {
		t.Fatalf("language %s: %v", lang, err)
	}
	if err := chromedp.Do(ctx, chromedp.Navigate(base+"/")); err != nil {
		t.Fatalf("open the console: %v", err)
	}
	js = func(expr string) string {
		t.Helper()
		v, err := chromedp.Run(ctx, chromedp.Evaluate[string](expr))
		if err != nil {
			t.Fatalf("evaluate %s: %v", expr, err)
		}
		return v
	}
	waitFor = func(what, expr, want string) {
		t.Helper()
		wait.For(t, patience, what, func() error {
			// A page being reloaded cannot be evaluated: that is a "not yet".
			got, err := chromedp.Run(ctx, chromedp.Evaluate[string](expr))
			if err != nil {
				return fmt.Errorf("evaluate %s: %w", expr, err)
			}
			if got != want {
				return fmt.Errorf("%s is %q, want %q", expr, got, want)
			}
			return nil
		})
	}

	dialogs = func() []string {
		mu.Lock()
		defer mu.Unlock()
		return slices.Clone(seen)
	}
	screenshot = func() ([]byte, error) { return chromedp.Run(ctx, chromedp.FullScreenshot(100)) }
	resize = func(w, h int64) {
		if err := chromedp.Do(ctx, chromedp.EmulateViewport(w, h)); err != nil {
			t.Fatalf("viewport %dx%d: %v", w, h, err)
		}
	}
	return js, waitFor, dialogs, screenshot, resize
}

// offScreen lists (as text) the visible elements whose box ends right of
// the viewport, and the page's own horizontal overflow: "" when none. Below
// 1280 px a wide table may scroll inside its own box.
const offScreen = `(() => {
	const w = document.documentElement.clientWidth, out = [];
	if (document.documentElement.scrollWidth > w) out.push('page ' + document.documentElement.scrollWidth + '>' + w);
	for (const e of document.querySelectorAll('section h2, section form *, section table, .scroll, header *')) {
		// A table in a scroll box only needs the box on screen, and only below 1280 px.
		if (w < 1280 && e.tagName === 'TABLE' && e.parentElement.classList.contains('scroll')) continue;
		const r = e.getBoundingClientRect();
		if (r.width > 0 && r.right > w + 0.5) out.push((e.id || e.tagName.toLowerCase()) + ' ' + Math.round(r.right));
	}
	return out.slice(0, 8).join(', ');
})()`

// jsString quotes s as a JavaScript string literal.
func jsString(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}
