package web_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/redis/rueidis"

	"github.com/voltedge/voltedge/internal/keys"
	"github.com/voltedge/voltedge/internal/lualib"
	"github.com/voltedge/voltedge/internal/redistest"
	"github.com/voltedge/voltedge/internal/wait"
	"github.com/voltedge/voltedge/scripts"
)

// login logs the console in as op.
func login(js func(string) string, waitFor func(what, expr, want string)) {
	js(`(() => { document.getElementById('login-user').value = 'op'; document.getElementById('login-password').value = 'pw';
		document.getElementById('login').requestSubmit(); return ''; })()`)
	waitFor("the login", `document.getElementById('whoami-name').textContent`, "op")
}

// channelState is an expression giving the state cell of channel id's row.
func channelState(id string) string {
	return `(() => { const r = [...document.querySelectorAll('#channels tbody tr')].find(r => r.dataset.channel === ` + jsString(id) +
		`); return r ? r.cells[3].textContent : ''; })()`
}

// TestConsoleChinese: a browser whose language is Chinese gets the Chinese
// console, with no English string or key left; the switch in the header
// goes back to English, and the choice is remembered.
func TestConsoleChinese(t *testing.T) {
	bin, _, base := consoleServer(t, "")
	js, waitFor, _, screenshot, resize := openConsoleIn(t, bin, base, "zh-CN")
	waitFor("the language", `document.documentElement.lang`, "zh-CN")
	waitFor("the channels", `String(document.querySelectorAll('#channels tbody tr').length)`, "2")
	waitFor("the WebSocket", `document.getElementById('live').textContent`, "实时")
	waitFor("the model cards", `String(document.querySelectorAll('#models .model').length)`, "2")
	for expr, want := range map[string]string{
		`document.querySelector('#sec-channels h2 span').textContent`:            "通道",
		`document.querySelector('#channels thead th:nth-child(5)').textContent`:  "注册包",
		`document.querySelector('#channels thead th:nth-child(11)').textContent`: "最后心跳",
		`document.querySelector('#login button').textContent`:                    "登录",
		`document.getElementById('login-user').placeholder`:                      "用户名",
		`document.querySelector('#sec-alarms h2').textContent`:                   "告警",
		`document.querySelector('#sec-devices h2 span').textContent`:             "设备",
		`document.querySelector('#sec-control h2 span').textContent`:             "遥控",
		`document.title`: "VoltEdge 控制台",
	} {
		waitFor(want, expr, want)
	}
	waitFor("online in Chinese", channelState("1001"), "在线")
	waitFor("offline in Chinese", channelState("1002"), "离线")

	// No English string of the page and no key shows.
	leaks := `(() => {
		const en = window.VOLTEDGE_I18N.en, zh = window.VOLTEDGE_I18N['zh-CN'], body = document.body.innerText, out = [];
		for (const k of Object.keys(en)) {
			if (body.includes(k) && k.includes('.')) out.push('key ' + k);
			const s = en[k];
			if (s !== zh[k] && s.length >= 4 && !s.includes('{') && body.includes(s)) out.push(k + ': ' + s);
		}
		return out.join(', ');
	})()`
	waitFor("no English left", leaks, "")
	login(js, waitFor)
	waitFor("the control forms in Chinese", `(() => { const b = document.querySelector('#controls tbody form button'); return b ? b.textContent : ''; })()`, "下发")
	waitFor("no English left after the login", leaks, "")
	resize(1280, 800)
	waitFor("nothing off-screen at 1280 px", offScreen, "")
	resize(800, 1000)
	waitFor("nothing off-screen at 800 px", offScreen, "")
	if p := os.Getenv("VOLTEDGE_SCREENSHOT_ZH"); p != "" {
		if png, err := screenshot(); err == nil {
			_ = os.WriteFile(p, png, 0o644)
		}
	}
	resize(1280, 800)

	// The switch goes back to English, and stays after a reload.
	js(`document.getElementById('lang-en').click(), ''`)
	waitFor("English", `document.querySelector('#sec-channels h2 span').textContent`, "Channels")
	waitFor("online in English", channelState("1001"), "online")
	waitFor("the badge in English", `document.getElementById('live').textContent`, "live")
	waitFor("the choice kept", `localStorage.getItem('voltedge.lang')`, "en")
	js(`window.beforeReload = true, location.reload(), ''`)
	waitFor("the reload", `String(window.beforeReload === undefined && document.readyState === 'complete' && !!document.getElementById('lang-zh'))`, "true")
	waitFor("English after a reload", `document.documentElement.lang + ' ' + document.querySelector('#sec-channels h2 span').textContent`, "en Channels")
	js(`document.getElementById('lang-zh').click(), ''`)
	waitFor("Chinese again", `document.querySelector('#sec-channels h2 span').textContent`, "通道")
}

// build compiles the package pkg of the repository into dir.
func build(t *testing.T, dir, pkg string) string {
	t.Helper()
	out := filepath.Join(dir, filepath.Base(pkg))
	cmd := exec.Command("go", "build", "-o", out, "./"+pkg)
	cmd.Dir = repoRoot(t)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build %s: %v\n%s", pkg, err, b)
	}
	return out
}

// start runs a process until the test ends; its standard error goes to log.
func start(t *testing.T, log string, bin string, args ...string) {
	t.Helper()
	f, err := os.Create(log)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); f.Close(); close(done) }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
		if t.Failed() {
			b, _ := os.ReadFile(log)
			t.Logf("%s:\n%s", filepath.Base(log), b)
		}
	})
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// TestConsoleAddsDevice runs a real comsrv with a DTU listener over a
// private Redis: a device registered from the console's form comes online
// when dtusim connects with its id, and an id comsrv refused is added with
// one click in the refused list and comes online too.
func TestConsoleAddsDevice(t *testing.T) {
	bin := chromium(t)
	dir := t.TempDir()
	comsrv := build(t, dir, "comsrv")
	dtusim := build(t, dir, "tools/dtusim")

	srv := redistest.Start(t)
	rc := srv.Client(t)
	if _, err := lualib.Ensure(context.Background(), rc); err != nil {
		t.Fatal(err)
	}
	port := freePort(t)
	if err := os.MkdirAll(filepath.Join(dir, "channels"), 0o755); err != nil {
		t.Fatal(err)
	}
	conf := fmt.Sprintf(`redis_url = %q
log_level = "warn"
metrics_listen = ""
templates = [%q]
channels = [%q]

[dtu]
listen = "127.0.0.1:%d"
max_unregistered_per_ip = 0

[snapshot]
path = %q

[redis]
flush_interval = "1s"
`, srv.URL(), filepath.Join(repoRoot(t), "config", "templates", "*.toml"), filepath.Join(dir, "channels", "*.toml"),
		port, filepath.Join(dir, "config.snapshot"))
	files := map[string]string{
		filepath.Join(dir, "comsrv.toml"):            conf,
		filepath.Join(dir, "channels", "fixed.toml"): "[[channel]]\nid = \"1001\"\nregistration = \"DTU1001\"\ntemplate = \"power_meter\"\nname = \"Main incomer\"\n",
	}
	for p, s := range files {
		if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	start(t, filepath.Join(dir, "comsrv.log"), comsrv, "-config", filepath.Join(dir, "comsrv.toml"))
	wait.For(t, patience, "comsrv's templates", func() error {
		n, err := rc.Do(context.Background(), rc.B().Scard().Key(keys.Templates).Build()).AsInt64()
		if err != nil || n == 0 {
			return fmt.Errorf("%s: %d %v", keys.Templates, n, err)
		}
		return nil
	})

	base := server(t, rc, srv.Client(t), "")
	js, waitFor, dialogs, _, _ := openConsole(t, bin, base)
	waitFor("the configured channel", `String(document.querySelectorAll('#channels tbody tr').length)`, "1")
	login(js, waitFor)
	waitFor("the templates", `String([...document.getElementById('device-template').options].some(o => o.value === 'power_meter'))`, "true")

	// The API's refusal is shown: a configured channel's id cannot be a device.
	js(`(() => { document.getElementById('device-id').value = '1001'; document.getElementById('device-template').value = 'power_meter';
		document.getElementById('device-add').requestSubmit(); return ''; })()`)
	waitFor("the API's message", `String(!document.getElementById('msg').hidden && document.getElementById('msg').textContent.includes('is a channel comsrv serves'))`, "true")

	// Register DTU77 from the form, then connect it.
	js(`(() => { document.getElementById('device-id').value = 'DTU77'; document.getElementById('device-template').value = 'power_meter';
		document.getElementById('device-add').requestSubmit(); return ''; })()`)
	waitFor("the registered device", `(() => { const r = document.querySelector('#devices tbody tr[data-device="DTU77"]'); return r ? r.cells[1].textContent : ''; })()`, "power_meter")
	dtu := func(n int) {
		start(t, filepath.Join(dir, "dtusim"+strconv.Itoa(n)+".log"), dtusim, "-addr", "127.0.0.1:"+strconv.Itoa(port), "-n", "1",
			"-prefix", "DTU", "-start", strconv.Itoa(n), "-heartbeat-interval", "30s", "-stats", "0s", "-log-level", "warn",
			"-backoff-min", "200ms", "-backoff-max", "1s")
	}
	dtu(77)
	waitFor("DTU77 online in the channel table", channelState("DTU77"), "online")
	waitFor("DTU77 online in the registry", `(() => { const r = document.querySelector('#devices tbody tr[data-device="DTU77"]'); return r ? r.cells[2].textContent : ''; })()`, "online")

	// A device comsrv does not know is refused; one click adds it.
	dtu(78)
	refused := `document.querySelector('#refused tbody tr[data-registration="DTU78"]')`
	waitFor("the refused id", `String(!!`+refused+`)`, "true")
	waitFor("its reason", `String(`+refused+`.cells[1].textContent !== '')`, "true")
	js(`(() => { const f = ` + refused + `.querySelector('form'); f.querySelector('select').value = 'power_meter'; f.requestSubmit(); return ''; })()`)
	waitFor("DTU78 in the registry", `String(!!document.querySelector('#devices tbody tr[data-device="DTU78"]'))`, "true")
	waitFor("DTU78 online", channelState("DTU78"), "online")
	waitFor("DTU78 no longer refused", `String(!!`+refused+`)`, "false")

	// Removing asks first (the test's dialog handler accepts), then the
	// registry no longer lists it and comsrv closes its link.
	js(`document.querySelector('#devices tbody tr[data-device="DTU77"] button.remove').click(), ''`)
	waitFor("DTU77 removed", `String(!!document.querySelector('#devices tbody tr[data-device="DTU77"]'))`, "false")
	if d := dialogs(); len(d) != 1 || !strings.Contains(d[0], "DTU77") {
		t.Errorf("dialogs %q, want one confirmation naming DTU77", d)
	}
	waitFor("DTU77's link closed", channelState("DTU77"), "")
}

// seedShowcase writes what a small plant looks like in Redis: three
// channels with names, models with units, two controls with outcomes, a
// registered device and a refused one.
func seedShowcase(t *testing.T, rc rueidis.Client) {
	t.Helper()
	do := func(args ...string) { redistest.Do(t, rc, args...) }
	now := time.Now().UnixMilli()
	ms := func(ago time.Duration) string { return strconv.FormatInt(now-ago.Milliseconds(), 10) }
	meta := func(channel string, points ...map[string]any) {
		args := []string{"HSET", keys.ChannelMeta(channel)}
		for _, p := range points {
			b, _ := json.Marshal(p)
			args = append(args, p["id"].(string), string(b))
		}
		do(args...)
	}
	pt := func(id, name, typ, unit, desc string, writable bool, minmax ...float64) map[string]any {
		m := map[string]any{"id": id, "name": name, "type": typ, "unit": unit, "description": desc, "writable": writable}
		if len(minmax) == 2 {
			m["min"], m["max"] = minmax[0], minmax[1]
		}
		return m
	}
	meta("1001",
		pt("30001", "voltage", "float32", "V", "Phase A voltage", false),
		pt("30003", "current", "float32", "A", "Phase A current", false),
		pt("30005", "power", "float32", "kW", "Active power", false),
		pt("30007", "energy", "uint32", "kWh", "Imported energy", false),
		pt("40001", "power_limit", "uint16", "kW", "Active power limit", true, 0, 500))
	meta("1002",
		pt("1", "pressure", "float32", "bar", "Outlet pressure", false),
		pt("2", "flow", "float32", "m³/h", "Flow", false),
		pt("3", "power", "float32", "kW", "Pump power", false),
		pt("2001", "run", "bool", "", "Pump run command", true))
	meta("1003",
		pt("30001", "voltage", "float32", "V", "Phase A voltage", false),
		pt("30005", "power", "float32", "kW", "Active power", false))
	do("HSET", keys.Mapping,
		"1001:30001", "main_incomer:voltage", "1001:30003", "main_incomer:current",
		"1001:30005", "main_incomer:power", "1001:30007", "main_incomer:energy",
		"1002:1", "pump_station_2:pressure", "1002:2", "pump_station_2:flow", "1002:3", "pump_station_2:power",
		"1003:30001", "feeder_3:voltage", "1003:30005", "feeder_3:power")
	do("HSET", keys.MappingReverse, "main_incomer:power_limit", "1001:40001", "pump_station_2:run", "1002:2001")
	do("HSET", keys.AlarmThreshold, "pump_station_2:pressure", "4")
	last := func(id, status, value string, ago time.Duration) string {
		b, _ := json.Marshal(map[string]any{"id": id, "status": status, "code": "", "message": "", "value": value, "ts": now - ago.Milliseconds()})
		return string(b)
	}
	do("HSET", keys.ControlLast, "main_incomer:power_limit", last("41", "ok", "320", 12*time.Minute),
		"pump_station_2:run", last("42", "ok", "1", 3*time.Minute))
	do("SADD", keys.Channels, "1001", "1002", "1003", "DTU2001")
	do("SADD", keys.Templates, "power_meter", "pump")
	do("HSET", keys.DeviceRegistry, "DTU2001", "power_meter")
	status := func(id, name, template, reg, remote string, online bool, extra ...string) {
		o := "0"
		if online {
			o = "1"
		}
		do(append([]string{"HSET", keys.ChannelStatus(id), "name", name, "template", template, "online", o, "registration", reg,
			"remote", remote}, extra...)...)
	}
	status("1001", "Main incomer", "power_meter", "DTU1001", "10.0.0.7:40112", true, "polls_ok", "18342", "timeouts", "3",
		"crc_errors", "1", "bytes_in", "1523904", "last_heartbeat", ms(20*time.Second), "connected_at", ms(3*time.Hour))
	status("1002", "Pump station 2", "pump", "DTU1002", "10.0.0.9:50211", true, "polls_ok", "9120", "timeouts", "12",
		"crc_errors", "0", "bytes_in", "684211", "last_heartbeat", ms(8*time.Second), "connected_at", ms(2*time.Hour))
	status("1003", "Feeder 3", "power_meter", "DTU1003", "10.0.0.12:41877", false, "polls_ok", "5521", "timeouts", "40",
		"disconnect_reason", "heartbeat timeout")
	status("DTU2001", "DTU2001", "power_meter", "DTU2001", "10.0.0.31:40990", true, "polls_ok", "220", "last_heartbeat", ms(5*time.Second))
	frame := func(dir, hex string, ago time.Duration) string {
		b, _ := json.Marshal(map[string]any{"ts": now - ago.Milliseconds(), "dir": dir, "kind": "rtu", "hex": hex})
		return string(b)
	}
	do("LPUSH", keys.ChannelFrames("1001"),
		frame("tx", "010375300008df2c", 3*time.Second), frame("rx", "010310436628f6404ccccd42f0000000004e20c1a7", 3*time.Second),
		frame("tx", "010375300008df2c", 2*time.Second), frame("rx", "010310436633334051999a42f1333300004e21b2f0", 2*time.Second))
	ev := func(event, channel, reg, remote, reason string, ago time.Duration) {
		do("XADD", keys.ConnectionEvents, "*", "event", event, "channel", channel, "registration", reg, "remote", remote,
			"listener", "dtu", "reason", reason, "ts", ms(ago))
	}
	ev("online", "1001", "DTU1001", "10.0.0.7:40112", "", 3*time.Hour)
	ev("online", "1002", "DTU1002", "10.0.0.9:50211", "", 2*time.Hour)
	ev("offline", "1003", "DTU1003", "10.0.0.12:41877", "heartbeat timeout", 40*time.Minute)
	ev("refused", "", "DTU9999", "10.0.0.23:51234", "unknown registration id", 6*time.Minute)
	ev("refused", "", "DTU9999", "10.0.0.23:51240", "unknown registration id", 90*time.Second)
	ev("online", "DTU2001", "DTU2001", "10.0.0.31:40990", "", 30*time.Second)
	sync := func(channel, point, value string) {
		do("FCALL", scripts.FnSyncMeasurement, "0", channel, point, value)
	}
	for _, v := range [][3]string{
		{"1001", "30001", "231.4"}, {"1001", "30003", "48.2"}, {"1001", "30005", "32.6"}, {"1001", "30007", "184220"},
		{"1002", "1", "4.2"}, {"1002", "2", "36.5"}, {"1002", "3", "11.8"},
		{"1003", "30001", "0"}, {"1003", "30005", "0"},
	} {
		sync(v[0], v[1], v[2])
	}
}

// TestConsoleScreenshot keeps a picture of the whole console in a 1280 × 800
// window with a
// plant's names, units, controls and devices (docs/console.png with
// VOLTEDGE_SCREENSHOT=docs/console.png), after checking that nothing is
// off-screen.
func TestConsoleScreenshot(t *testing.T) {
	bin := chromium(t)
	srv := redistest.Start(t)
	rc := srv.Client(t)
	if _, err := lualib.Ensure(context.Background(), rc); err != nil {
		t.Fatal(err)
	}
	seedShowcase(t, rc)
	base := server(t, rc, srv.Client(t), "")
	js, waitFor, _, screenshot, resize := openConsole(t, bin, base)
	resize(1280, 800)
	login(js, waitFor)
	waitFor("the WebSocket", `document.getElementById('live').textContent`, "live")
	waitFor("the channels", `String(document.querySelectorAll('#channels tbody tr').length)`, "4")
	waitFor("the units", `String(document.querySelectorAll('#models td.unit').length > 6 && [...document.querySelectorAll('#models td.unit')].some(td => td.textContent === 'kWh'))`, "true")
	waitFor("a description as the tooltip", `(() => { const c = [...document.querySelectorAll('#models .model')].find(c => c.dataset.model === 'main_incomer');
		const r = c && c.querySelector('tr[data-point="energy"]'); return r ? r.title + ' | ' + r.querySelector('.type').textContent + ' | ' + r.querySelector('.unit').textContent : ''; })()`,
		"Imported energy | uint32 | kWh")
	waitFor("the names", `String(document.querySelector('#channels tbody').textContent.includes('Pump station 2'))`, "true")
	waitFor("the model links", `String(document.querySelectorAll('#models .model .links button').length)`, "3")
	waitFor("the controls", `String(document.querySelectorAll('#controls tbody form').length)`, "2")
	waitFor("the devices", `String(!!document.querySelector('#devices tbody tr[data-device="DTU2001"]'))`, "true")
	waitFor("the refused id", `(() => { const r = document.querySelector('#refused tbody tr[data-registration="DTU9999"]'); return r ? r.cells[3].textContent : ''; })()`, "2")
	waitFor("nothing off-screen at 1280 px", offScreen, "")

	// A model's channel link selects the channel; a channel's model link
	// highlights the card.
	js(`[...document.querySelectorAll('#models .model')].find(c => c.dataset.model === 'pump_station_2').querySelector('.links button').click(), ''`)
	waitFor("the selected channel", `document.querySelector('#channels tbody tr.sel').dataset.channel`, "1002")
	waitFor("its points with names", `String([...document.querySelectorAll('#points tbody tr')].some(r => r.cells[1].textContent === 'pressure' && r.cells[3].textContent === 'bar'))`, "true")
	js(`[...document.querySelectorAll('#channels tbody tr')].find(r => r.dataset.channel === '1001').cells[2].querySelector('button').click(), ''`)
	waitFor("the highlighted card", `String(!!document.querySelector('#models .model.flash[data-model="main_incomer"]'))`, "true")
	waitFor("the highlight to fade", `String(document.querySelectorAll('.flash, td.val.changed').length)`, "0")
	js(`window.scrollTo(0, 0), document.getElementById('msg').hidden = true, ''`)
	js(`[...document.querySelectorAll('#models .model')].find(c => c.dataset.model === 'main_incomer').querySelector('tr[data-point="power"]').click(), ''`)
	for _, v := range []string{"31.9", "33.4", "34.1", "32.8", "33.2", "33.9", "32.7"} {
		time.Sleep(250 * time.Millisecond) // a curve over time, not a spike
		redistest.Do(t, rc, "FCALL", scripts.FnSyncMeasurement, "0", "1001", "30005", v)
		waitFor("the live power "+v, `[...document.querySelectorAll('#models .model')].find(c => c.dataset.model === 'main_incomer').querySelector('tr[data-point="power"] .val').textContent`, v)
	}
	js(`[...document.querySelectorAll('#channels tbody tr')].find(r => r.dataset.channel === '1001').click(), ''`)
	waitFor("the frames of 1001", `String(document.querySelectorAll('#frames tbody td.hex').length)`, "4")
	waitFor("the chart's unit", `document.getElementById('chart-title').textContent`, "main_incomer · power (kW)")
	waitFor("nothing off-screen at 1280 px", offScreen, "")
	resize(800, 1000)
	waitFor("nothing off-screen at 800 px", offScreen, "")
	resize(1280, 800)
	js(`window.scrollTo(0, 0), ''`)
	waitFor("the highlight to fade", `String(document.querySelectorAll('.flash, td.val.changed').length)`, "0")
	time.Sleep(300 * time.Millisecond) // the smooth scroll ends

	png, err := screenshot()
	if err != nil {
		t.Fatalf("screenshot: %v", err)
	}
	out := screenshotPath(t)
	if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(out, png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("console screenshot: %s (%d bytes)", out, len(png))
}
