package api

import (
	"encoding/json"
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/voltedge/voltedge/internal/keys"
)

// linkData maps model pm to channel 1001 (points voltage, current; controls
// setpoint, enable, freq) and model other to channel 1002 (control "raw"),
// with point metadata for channel 1001 as comsrv writes it.
func linkData(t *testing.T, e *env) {
	t.Helper()
	demoData(t, e)
	e.redis(t, "SADD", keys.Channels, "1001", "1002", "1003")
	e.redis(t, "HSET", keys.ChannelStatus("1001"), "online", "1", "name", "Meter <A>", "template", "power_meter")
	e.redis(t, "HSET", keys.ChannelMeta("1001"),
		"10001", `{"name":"Voltage","type":"float32","unit":"V","description":"phase A","area":"input","writable":false}`,
		"10002", `{"name":"Current","type":"int16","unit":"A","area":"input","writable":false}`,
		"40001", `{"name":"Setpoint","type":"uint16","unit":"kW","area":"holding","writable":true,"min":0,"max":100}`,
		"40002", `{"name":"Enable","type":"bool","area":"coil","writable":true}`,
		"40003", `{"name":"Freq","type":"float32","area":"holding","writable":true}`,
		"40004", `not json`)
	e.redis(t, "HSET", keys.MappingReverse,
		keys.PointRef("pm", "setpoint"), keys.PointRef("1001", "40001"),
		keys.PointRef("pm", "enable"), keys.PointRef("1001", "40002"),
		keys.PointRef("pm", "freq"), keys.PointRef("1001", "40003"),
		keys.PointRef("other", "raw"), keys.PointRef("1002", "7"))
	e.redis(t, "HSET", keys.MappingUnit, keys.PointRef("pm", "current"), "mA")
	e.redis(t, "HSET", keys.MappingDescription, keys.PointRef("pm", "setpoint"), "active power limit")
	e.redis(t, "HSET", keys.ControlLast, keys.PointRef("pm", "setpoint"),
		`{"id":"1732212345678001","status":"ok","code":"","message":"","value":"50","ts":1732212345700}`)
}

func TestModelLinks(t *testing.T) {
	e := newEnv(t, "")
	linkData(t, e)
	r := e.do(t, "GET", "/models/pm", "").ok(t, 200)
	if r.body["model"] != "pm" || strings.Join(strs(r.list(t, "channels")), ",") != "1001" {
		t.Fatalf("model: %s", r.raw)
	}
	v := r.obj(t, "points", "voltage")
	if v["channel"] != "1001" || v["point"] != "10001" || v["type"] != "float32" || v["unit"] != "V" || v["description"] != "phase A" {
		t.Fatalf("voltage: %v", v)
	}
	if c := r.obj(t, "points", "current"); c["unit"] != "mA" || c["type"] != "int16" || c["description"] != "" {
		t.Fatalf("current (unit overridden): %v", c)
	}
	cs := r.list(t, "controls")
	if len(cs) != 3 {
		t.Fatalf("controls: %s", r.raw)
	}
	names := []string{}
	for _, c := range cs {
		names = append(names, c.(map[string]any)["control"].(string))
	}
	if strings.Join(names, ",") != "enable,freq,setpoint" {
		t.Fatalf("controls not sorted: %v", names)
	}
	// Model "other" has no values but a mapping; its channel has no metadata.
	r = e.do(t, "GET", "/models/other", "").ok(t, 200)
	c := r.list(t, "controls")[0].(map[string]any)
	if c["type"] != "" || c["min"] != nil || c["max"] != nil || c["writable"] != false || c["last"] != nil || c["channel"] != "1002" {
		t.Fatalf("control without metadata: %v", c)
	}
	if len(r.obj(t, "points")) != 0 {
		t.Fatalf("points of other: %s", r.raw)
	}
	e.do(t, "GET", "/models/nope", "").fails(t, 404, "not_found", `model "nope" has neither values nor a mapping`)
	e.do(t, "GET", "/models/a*b", "").fails(t, 400, "bad_request", "invalid model id")

	// A model with values and no mapping exists.
	e.redis(t, "HSET", keys.ModelValues("bare"), "x", "1")
	r = e.do(t, "GET", "/models/bare", "").ok(t, 200)
	if r.raw != `{"channels":[],"controls":[],"model":"bare","points":{}}` {
		t.Fatalf("bare: %s", r.raw)
	}
}

// strs converts a JSON array of strings.
func strs(l []any) []string {
	out := make([]string, len(l))
	for i, v := range l {
		out[i], _ = v.(string)
	}
	return out
}

func TestControls(t *testing.T) {
	e := newEnv(t, "")
	linkData(t, e)
	r := e.do(t, "GET", "/controls", "").ok(t, 200)
	if r.body["truncated"] != false {
		t.Fatalf("truncated: %s", r.raw)
	}
	var body struct {
		Controls []Control `json:"controls"`
	}
	if err := json.Unmarshal([]byte(r.raw), &body); err != nil {
		t.Fatal(err)
	}
	got := []string{}
	for _, c := range body.Controls {
		got = append(got, c.Model+":"+c.Control)
	}
	if strings.Join(got, " ") != "other:raw pm:enable pm:freq pm:setpoint" {
		t.Fatalf("order: %v", got)
	}
	en, fr, sp := body.Controls[1], body.Controls[2], body.Controls[3]
	if en.Type != "bool" || *en.Min != 0 || *en.Max != 1 || !en.Writable || en.Last != nil {
		t.Fatalf("enable: %+v", en)
	}
	if fr.Type != "float32" || fr.Min != nil || fr.Max != nil {
		t.Fatalf("freq: %+v", fr)
	}
	if sp.Type != "uint16" || *sp.Min != 0 || *sp.Max != 100 || sp.Unit != "kW" || sp.Description != "active power limit" ||
		sp.Channel != "1001" || sp.Point != "40001" {
		t.Fatalf("setpoint: %+v", sp)
	}
	if l := sp.Last; l == nil || l.ID != "1732212345678001" || l.Status != "ok" || l.Value != "50" || l.TS != 1732212345700 {
		t.Fatalf("last: %+v", sp.Last)
	}
	// The raw JSON has "last": null and no min/max where unknown.
	if !strings.Contains(r.raw, `"last":null`) || strings.Contains(strings.SplitN(r.raw, "}", 2)[0], `"min"`) {
		t.Fatalf("raw: %s", r.raw)
	}

	r = e.do(t, "GET", "/controls?model=other", "").ok(t, 200)
	if l := r.list(t, "controls"); len(l) != 1 || l[0].(map[string]any)["control"] != "raw" {
		t.Fatalf("filtered: %s", r.raw)
	}
	e.do(t, "GET", "/controls?model=nope", "").fails(t, 404, "not_found", `model "nope" has neither values nor a mapping`)
	e.redis(t, "HSET", keys.ModelValues("bare"), "x", "1")
	if l := e.do(t, "GET", "/controls?model=bare", "").ok(t, 200).list(t, "controls"); len(l) != 0 {
		t.Fatalf("model without controls: %v", l)
	}
	e.do(t, "GET", "/controls?model=a:b", "").fails(t, 400, "bad_request", "invalid model id")
	e.do(t, "GET", "/controls?model="+strings.Repeat("m", 200), "").fails(t, 400, "bad_request", "invalid model id")
}

func TestControlRange(t *testing.T) {
	e := newEnv(t, `control_timeout = "15s"`)
	linkData(t, e)
	tg := respond(t, e) // answers channel 1001
	r := e.do(t, "POST", "/models/pm/control/setpoint", `{"value":101}`, "auth", token).fails(t, 400, "bad_request", "out of range 0..100")
	if r.body["status"] != "invalid" {
		t.Fatalf("refusal: %s", r.raw)
	}
	e.do(t, "POST", "/models/pm/control/setpoint", `{"value":"-0.5"}`, "auth", token).fails(t, 400, "bad_request", "out of range 0..100")
	e.do(t, "POST", "/models/pm/control/enable", `{"value":2}`, "auth", token).fails(t, 400, "bad_request", "out of range 0..1")
	tg.mu.Lock()
	n := len(tg.got)
	tg.mu.Unlock()
	if n != 0 {
		t.Fatalf("%d refused commands were sent", n)
	}
	if q, _ := e.redis(t, "LLEN", keys.CommandQueue("1001")).AsInt64(); q != 0 {
		t.Fatalf("queue holds %d", q)
	}
	e.do(t, "POST", "/models/pm/control/setpoint", `{"value":100}`, "auth", token).ok(t, 200)
	e.do(t, "POST", "/models/pm/control/enable", `{"value":true}`, "auth", token).ok(t, 200)
	e.do(t, "POST", "/models/pm/control/freq", `{"value":1e30}`, "auth", token).ok(t, 200) // float32: no range known
}

func TestValuesAndPointsMeta(t *testing.T) {
	e := newEnv(t, "")
	linkData(t, e)
	r := e.do(t, "GET", "/models/pm/values", "").ok(t, 200)
	v := r.obj(t, "values", "voltage")
	if v["value"] != "230.10" || v["unit"] != "V" || v["type"] != "float32" || v["quality"] != "good" {
		t.Fatalf("voltage: %v", v)
	}
	if c := r.obj(t, "values", "current"); c["unit"] != "mA" || c["type"] != "int16" {
		t.Fatalf("current: %v", c)
	}

	r = e.do(t, "GET", "/channels/1001/points", "").ok(t, 200)
	p := r.obj(t, "points", "10001")
	if p["name"] != "Voltage" || p["type"] != "float32" || p["unit"] != "V" || p["model"] != "pm" || p["model_point"] != "voltage" || p["value"] != "230.10" {
		t.Fatalf("point 10001: %v", p)
	}
	if p := r.obj(t, "points", "10003"); p["model"] != nil || p["name"] != nil || p["value"] != "7" {
		t.Fatalf("unmapped point without metadata: %v", p)
	}
}

func TestChannelLinks(t *testing.T) {
	e := newEnv(t, "")
	linkData(t, e)
	r := e.do(t, "GET", "/channels", "").ok(t, 200)
	l := r.list(t, "channels")
	c0, c1, c2 := l[0].(map[string]any), l[1].(map[string]any), l[2].(map[string]any)
	if c0["name"] != "Meter <A>" || c0["template"] != "power_meter" || strings.Join(strs(c0["models"].([]any)), ",") != "pm" {
		t.Fatalf("channel 1001: %v", c0)
	}
	if c1["name"] != "" || c1["template"] != "" || strings.Join(strs(c1["models"].([]any)), ",") != "other" {
		t.Fatalf("channel 1002 (a control only): %v", c1)
	}
	if ms := c2["models"].([]any); len(ms) != 0 {
		t.Fatalf("channel 1003: %v", c2)
	}
	r = e.do(t, "GET", "/channels/1001", "").ok(t, 200)
	if r.body["name"] != "Meter <A>" || r.body["template"] != "power_meter" || strings.Join(strs(r.list(t, "models")), ",") != "pm" {
		t.Fatalf("channel: %s", r.raw)
	}
}

func TestDevicesRefused(t *testing.T) {
	e := newEnv(t, "")
	e.redis(t, "SADD", keys.Templates, "b", "a")
	e.redis(t, "SADD", keys.Channels, "1001")
	e.redis(t, "HSET", keys.DeviceRegistry, "DTU9", "a")
	ev := func(event, reg, remote, reason string, ts int) {
		e.redis(t, "XADD", keys.ConnectionEvents, "*", "event", event, "channel", "", "listener", "dtu",
			"registration", reg, "remote", remote, "reason", reason, "ts", strconv.Itoa(ts))
	}
	ev("refused", "DTU7", "10.0.0.7:1", "unknown registration", 100)
	ev("online", "DTU8", "10.0.0.8:1", "", 110)
	ev("refused", "DTU7", "10.0.0.7:2", "unknown registration", 120)
	ev("refused", "DTU9", "10.0.0.9:1", "unknown registration", 130) // registered since
	ev("refused", "1001", "10.0.0.1:1", "taken", 140)                // a channel
	ev("refused", "<x>", "10.0.0.5:1", "unknown registration", 150)
	r := e.do(t, "GET", "/devices", "").ok(t, 200)
	if strings.Join(strs(r.list(t, "templates")), ",") != "a,b" {
		t.Fatalf("templates: %s", r.raw)
	}
	want := `[{"registration":"\u003cx\u003e","remote":"10.0.0.5:1","reason":"unknown registration","ts":150,"count":1},` +
		`{"registration":"DTU7","remote":"10.0.0.7:2","reason":"unknown registration","ts":120,"count":2}]`
	if !strings.Contains(r.raw, `"refused":`+want) {
		t.Fatalf("refused: %s", r.raw)
	}
	// At most MaxRefused ids.
	for i := range MaxRefused + 20 {
		ev("refused", "X"+strconv.Itoa(i), "r", "unknown registration", 200+i)
	}
	if l := e.do(t, "GET", "/devices", "").ok(t, 200).list(t, "refused"); len(l) != MaxRefused {
		t.Fatalf("%d refused", len(l))
	}
}

// TestREADMEListsRoutes: the README's API table names every route with its method.
func TestREADMEListsRoutes(t *testing.T) {
	b, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	var rows []string
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, "| GET") || strings.HasPrefix(line, "| POST") || strings.HasPrefix(line, "| DELETE") {
			rows = append(rows, line)
		}
	}
	param := regexp.MustCompile(`\\\{[^}]+\\\}`)
	for _, r := range (&server{}).routes() {
		p := regexp.QuoteMeta(openAPIPath(r.path))
		// A parameter may be written as {a}:{b} in the README ({ref} of an alarm).
		re := regexp.MustCompile("`" + param.ReplaceAllString(p, `\{[^}]+\}(:\{[^}]+\})?`) + "`")
		found := false
		for _, row := range rows {
			cells := strings.SplitN(row, "|", 4)
			if len(cells) > 2 && strings.Contains(cells[1], r.method) && re.MatchString(cells[2]) {
				found = true
			}
		}
		if !found {
			t.Errorf("README's API table lacks %s %s", r.method, openAPIPath(r.path))
		}
	}
}
