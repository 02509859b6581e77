package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

const baseTemplate = `[[task]]
function = 3
start = 0
count = 10

[[point]]
id = "1"
address = 0
`

const baseChannels = `[[channel]]
id = "1"
registration = "DTU1"
template = "meter"
`

// tree writes a config directory: comsrv.toml, templates/meter.toml and
// channels/a.toml unless files overrides them ("" removes one).
func tree(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	all := map[string]string{
		"comsrv.toml":          "",
		"templates/meter.toml": baseTemplate,
		"channels/a.toml":      baseChannels,
	}
	for k, v := range files {
		all[k] = v
	}
	for name, text := range all {
		if text == "-" {
			continue
		}
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func TestExampleConfigLoads(t *testing.T) {
	cfg, err := Load("../../config/comsrv.toml")
	if err != nil {
		t.Fatal(err)
	}
	if cfg.DTU.Listen != ":22334" || cfg.DTU.Heartbeat.Timeout.Duration != 90*time.Second ||
		string(cfg.DTU.Heartbeat.Bytes) != "www.usr.cn" || string(cfg.DTU.Registration.TerminatorBytes) != "\n" {
		t.Fatalf("dtu: %+v", cfg.DTU)
	}
	var ids []string
	for _, ch := range cfg.ChannelList {
		ids = append(ids, ch.ID)
	}
	if strings.Join(ids, " ") != "1001 1002 1003 1004 5001 DEV001" {
		t.Fatalf("channels: %v", ids)
	}
	if l := cfg.AllListeners(); len(l) != 3 || l[1].Profile != ProfileLine || l[1].Heartbeat.Deadline() != time.Second ||
		l[2].Profile != ProfileTLV || l[2].Heartbeat.Deadline() != 180*time.Second || l[1].Line.ResultChannel != "result" {
		t.Fatalf("listeners: %+v", l)
	}
	if cfg.ChannelList[5].T != nil {
		t.Fatal("line channel DEV001 has a template")
	}
	tpl := cfg.TemplateByID["power_meter"]
	if tpl == nil || cfg.ChannelList[0].T != tpl {
		t.Fatal("power_meter template not resolved")
	}
	if len(tpl.Tasks) != 2 || tpl.Tasks[0].Name != "block1" || tpl.Tasks[0].Start != 2000 || tpl.Tasks[0].Count != 100 ||
		tpl.Tasks[1].Start != 2200 || tpl.Tasks[1].Count != 15 || tpl.Tasks[1].Interval.Duration != time.Second {
		t.Fatalf("tasks: %+v", tpl.Tasks)
	}
	if len(tpl.Points) < 18 {
		t.Fatalf("only %d points", len(tpl.Points))
	}
	byID := map[string]*Point{}
	for i := range tpl.Points {
		byID[tpl.Points[i].ID] = &tpl.Points[i]
	}
	v := byID["10001"]
	if v.Name != "voltage" || v.Type != "int16" || v.Address != 2000 || v.Scale != 0.1 || v.Bit != -1 || v.Slave != 1 || v.Area != "holding" || v.Order != "ABCD" {
		t.Fatalf("10001: %+v", v)
	}
	if p := byID["10005"]; p.Type != "uint32" || p.Address != 2010 || p.Scale != 1 || p.Registers() != 2 {
		t.Fatalf("10005: %+v", p)
	}
	if p := byID["30001"]; p.Type != "bool" || p.Bit != 0 || p.Address != 2021 {
		t.Fatalf("30001: %+v", p)
	}
	if p := byID["40001"]; p.Name != "setpoint" || p.Address != 2020 {
		t.Fatalf("40001: %+v", p)
	}
	if p := byID["10014"]; p.Order != "ABCDEFGH" || p.Registers() != 4 {
		t.Fatalf("10014: %+v", p)
	}
	reg := cfg.ChannelByRegistration()
	if reg["DTU1002"] == nil || reg["DTU1002"].ID != "1002" || reg["DTU1002"].Name != "Feeder 2" {
		t.Fatalf("by registration: %+v", reg)
	}
}

func TestDefaults(t *testing.T) {
	dir := tree(t, nil)
	cfg, err := Load(filepath.Join(dir, "comsrv.toml"))
	if err != nil {
		t.Fatal(err)
	}
	d := cfg.DTU
	r := d.Registration
	switch {
	case cfg.RedisURL != "redis://127.0.0.1:6379", cfg.LogLevel != "info":
		t.Errorf("top: %+v", cfg)
	case d.Listen != ":22334", d.MaxConnections != 12000, d.RegistrationTimeout.Duration != 10*time.Second,
		d.WriteTimeout.Duration != 5*time.Second, d.RefuseLogInterval.Duration != 10*time.Second, d.UnknownIDs != "refuse":
		t.Errorf("dtu: %+v", d)
	case r.Mode != "terminator", r.Terminator != "\n", string(r.TerminatorBytes) != "\n", r.MaxLength != 64,
		r.Encoding != "text", r.Pattern != DefaultPattern, r.Regexp == nil:
		t.Errorf("registration: %+v", r)
	case d.Heartbeat.Text != "www.usr.cn", string(d.Heartbeat.Bytes) != "www.usr.cn", d.Heartbeat.Timeout.Duration != 90*time.Second:
		t.Errorf("heartbeat: %+v", d.Heartbeat)
	case cfg.Modbus.RequestTimeout.Duration != time.Second, cfg.Modbus.Retries != 1, cfg.Modbus.FlushDelay.Duration != 50*time.Millisecond:
		t.Errorf("modbus: %+v", cfg.Modbus)
	case cfg.Redis.Writers != 4, cfg.Redis.BatchPoints != 512, cfg.Redis.FlushInterval.Duration != 5*time.Second:
		t.Errorf("redis: %+v", cfg.Redis)
	}
	tpl := cfg.TemplateByID["meter"]
	if tpl == nil || tpl.Name != "meter" || tpl.File != filepath.Join(dir, "templates", "meter.toml") {
		t.Fatalf("template: %+v", tpl)
	}
	tk := tpl.Tasks[0]
	if tk.Name != "task0" || tk.Slave != 1 || tk.Interval.Duration != time.Second || tk.Trigger != "timer" {
		t.Errorf("task: %+v", tk)
	}
	p := tpl.Points[0]
	if p.Name != "1" || p.Slave != 1 || p.Area != "holding" || p.Type != "uint16" || p.Order != "ABCD" || p.Bit != -1 || p.Scale != 1 || p.Decimals != nil {
		t.Errorf("point: %+v", p)
	}
	if ch := cfg.ChannelList[0]; ch.Name != "1" || ch.T != tpl {
		t.Errorf("channel: %+v", ch)
	}
}

func TestExplicitValues(t *testing.T) {
	dir := tree(t, map[string]string{
		"comsrv.toml": `[dtu]
unknown_ids = "provision"
provision_template = "m2"
[dtu.registration]
mode = "fixed"
length = 4
encoding = "decimal"
pattern = '^[0-9]+$'
[dtu.heartbeat]
hex = "fe 01"
timeout = "0s"
[modbus]
retries = 0
flush_delay = "0s"
`,
		"templates/meter.toml": `name = "m2"
[[task]]
function = 4
count = 4
[[task]]
name = "coils"
slave = 2
function = 1
start = 100
count = 16
trigger = "heartbeat"
[[point]]
id = "bitpoint"
slave = 2
area = "coil"
address = 115
type = "bool"
[[point]]
id = "f64"
area = "input"
address = 0
type = "float64"
order = "CDAB"
`,
		"channels/a.toml": `[[channel]]
id = "x"
registration = "42"
template = "m2"
`,
	})
	cfg, err := Load(filepath.Join(dir, "comsrv.toml"))
	if err != nil {
		t.Fatal(err)
	}
	if string(cfg.DTU.Heartbeat.Bytes) != "\xfe\x01" || cfg.DTU.Heartbeat.Timeout.Duration != 0 || cfg.DTU.Heartbeat.Text != "" {
		t.Errorf("heartbeat %+v", cfg.DTU.Heartbeat)
	}
	if cfg.Modbus.Retries != 0 || cfg.Modbus.FlushDelay.Duration != 0 {
		t.Errorf("modbus %+v", cfg.Modbus)
	}
	tpl := cfg.TemplateByID["m2"]
	if tpl == nil || tpl.Points[1].Order != "GHEFCDAB" || tpl.Points[1].Registers() != 4 || tpl.Points[0].Function() != 1 {
		t.Fatalf("template %+v", tpl)
	}
}

func TestRangeExpansion(t *testing.T) {
	dir := tree(t, map[string]string{
		"channels/a.toml": `[[range]]
first = 8
last = 12
id = "{n}"
registration = "DTU{n:04}"
template = "meter"
name = "Meter {n:03}"

[[channel]]
id = "7"
registration = "X7"
template = "meter"
`,
		"channels/b.toml": `[[range]]
first = 1
last = 1
id = "single"
registration = "ONE"
template = "meter"
`,
	})
	cfg, err := Load(filepath.Join(dir, "comsrv.toml"))
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, c := range cfg.ChannelList {
		got = append(got, c.ID+"/"+c.Registration+"/"+c.Name)
	}
	want := "7/X7/7 8/DTU0008/Meter 008 9/DTU0009/Meter 009 10/DTU0010/Meter 010 11/DTU0011/Meter 011 12/DTU0012/Meter 012 single/ONE/single"
	if strings.Join(got, " ") != want {
		t.Fatalf("got  %s\nwant %s", strings.Join(got, " "), want)
	}
}

func TestLargeRange(t *testing.T) {
	dir := tree(t, map[string]string{
		"channels/a.toml": "[[range]]\nfirst = 1\nlast = 100000\nid = \"{n}\"\nregistration = \"D{n:06}\"\ntemplate = \"meter\"\n",
	})
	cfg, err := Load(filepath.Join(dir, "comsrv.toml"))
	if err != nil {
		t.Fatal(err)
	}
	if n := len(cfg.ChannelList); n != 100000 || cfg.ChannelList[n-1].Registration != "D100000" {
		t.Fatalf("got %d channels", n)
	}
	dir = tree(t, map[string]string{
		"channels/a.toml": "[[range]]\nfirst = 1\nlast = 100001\nid = \"{n}\"\nregistration = \"D{n}\"\ntemplate = \"meter\"\n",
	})
	_, err = Load(filepath.Join(dir, "comsrv.toml"))
	wantErr(t, err, "channels/a.toml:3:8: key \"range[0].last\": range of 100001 entries exceeds the limit of 100000")
}

// wantErr checks that err contains want, with the temporary directory
// removed from file names.
func wantErr(t *testing.T, err error, want string) {
	t.Helper()
	if err == nil {
		t.Fatalf("no error, want %s", want)
	}
	for line := range strings.SplitSeq(err.Error(), "\n") {
		if i := strings.Index(line, "comsrv.toml:"); i >= 0 && strings.HasPrefix(want, "comsrv.toml:") {
			line = line[i:]
		}
		if i := strings.Index(line, "/templates/"); i >= 0 {
			line = line[i+1:]
		}
		if i := strings.Index(line, "/channels/"); i >= 0 {
			line = line[i+1:]
		}
		if strings.HasPrefix(line, want) {
			return
		}
	}
	t.Fatalf("got:\n%v\nwant a line starting with:\n%s", err, want)
}

func TestErrors(t *testing.T) {
	tpl := func(points string) map[string]string {
		return map[string]string{"templates/meter.toml": baseTemplate + points}
	}
	tests := []struct {
		name  string
		files map[string]string
		want  string
	}{
		{"unknown key", map[string]string{"comsrv.toml": "[dtu]\nlisten = \":1\"\nlistne = 3\n"},
			`comsrv.toml:3:1: key "dtu.listne": unknown key`},
		{"max connections", map[string]string{"comsrv.toml": "[dtu]\nmax_connections = 0\n"},
			`comsrv.toml:2:19: key "dtu.max_connections": 0 is out of range (1..100000)`},
		{"empty listen", map[string]string{"comsrv.toml": "[dtu]\nlisten = \"\"\n"},
			`comsrv.toml:2:10: key "dtu.listen": must not be empty`},
		{"zero timeout", map[string]string{"comsrv.toml": "[dtu]\nwrite_timeout = \"0s\"\n"},
			`comsrv.toml:2:17: key "dtu.write_timeout": must be greater than 0`},
		{"bad duration", map[string]string{"comsrv.toml": "[modbus]\nrequest_timeout = \"1 s\"\n"},
			`comsrv.toml:2:19: key "modbus.request_timeout": invalid duration "1 s"`},
		{"fixed without length", map[string]string{"comsrv.toml": "[dtu.registration]\nmode = \"fixed\"\n"},
			`comsrv.toml:1:6: key "dtu.registration.length": must be set in fixed mode`},
		{"mode", map[string]string{"comsrv.toml": "[dtu.registration]\nmode = \"line\"\n"},
			`comsrv.toml:2:8: key "dtu.registration.mode": unknown value "line" (want terminator or fixed)`},
		{"terminator twice", map[string]string{"comsrv.toml": "[dtu.registration]\nterminator = \"\\n\"\nterminator_hex = \"0a\"\n"},
			`comsrv.toml:3:1: key "dtu.registration.terminator_hex": set either terminator or terminator_hex, not both`},
		{"bad hex", map[string]string{"comsrv.toml": "[dtu.registration]\nterminator_hex = \"0x\"\n"},
			`comsrv.toml:2:18: key "dtu.registration.terminator_hex": bad hex "0x"`},
		{"decimal", map[string]string{"comsrv.toml": "[dtu.registration]\nencoding = \"decimal\"\n"},
			`comsrv.toml:2:12: key "dtu.registration.encoding": decimal needs fixed mode`},
		{"pattern", map[string]string{"comsrv.toml": "[dtu.registration]\npattern = \"([a\"\n"},
			`comsrv.toml:2:11: key "dtu.registration.pattern": bad regular expression`},
		{"heartbeat empty", map[string]string{"comsrv.toml": "[dtu.heartbeat]\ntext = \"\"\n"},
			`comsrv.toml:2:8: key "dtu.heartbeat.text": must not be empty`},
		{"provision without template", map[string]string{"comsrv.toml": "[dtu]\nunknown_ids = \"provision\"\n"},
			`comsrv.toml:1:2: key "dtu.provision_template": must name a template`},
		{"provision template missing", map[string]string{"comsrv.toml": "[dtu]\nunknown_ids = \"provision\"\nprovision_template = \"nope\"\n"},
			`comsrv.toml:3:22: key "dtu.provision_template": template "nope" does not exist`},
		{"retries", map[string]string{"comsrv.toml": "[modbus]\nretries = 6\n"},
			`comsrv.toml:2:11: key "modbus.retries": 6 is out of range (0..5)`},
		{"writers", map[string]string{"comsrv.toml": "[redis]\nwriters = 0\n"},
			`comsrv.toml:2:11: key "redis.writers": 0 is out of range (1..64)`},
		{"batch", map[string]string{"comsrv.toml": "[redis]\nbatch_points = 9000\n"},
			`comsrv.toml:2:16: key "redis.batch_points": 9000 is out of range (16..8192)`},
		{"log level", map[string]string{"comsrv.toml": "log_level = \"trace\"\n"},
			`comsrv.toml:1:13: key "log_level": unknown log level "trace"`},
		{"missing file", map[string]string{"comsrv.toml": "templates = [\"t.toml\"]\n"},
			`comsrv.toml:1:14: key "templates[0]": file `},

		{"empty template", map[string]string{"templates/meter.toml": "[plan]\nmax_gap = 3\n"},
			`templates/meter.toml:1:1: key "point": a template needs at least one [[point]] (or a [[task]])`},
		{"function", map[string]string{"templates/meter.toml": "[[task]]\nfunction = 5\ncount = 1\n"},
			`templates/meter.toml:2:12: key "task[0].function": 5 is not a read function`},
		{"no function", map[string]string{"templates/meter.toml": "[[task]]\ncount = 1\n"},
			`templates/meter.toml:1:3: key "task[0].function": must be set`},
		{"count", map[string]string{"templates/meter.toml": "[[task]]\nfunction = 3\ncount = 126\n"},
			`templates/meter.toml:3:9: key "task[0].count": 126 is out of range for function 3 (1..125)`},
		{"count bits", map[string]string{"templates/meter.toml": "[[task]]\nfunction = 1\ncount = 2001\n"},
			`templates/meter.toml:3:9: key "task[0].count": 2001 is out of range for function 1 (1..2000)`},
		{"past end", map[string]string{"templates/meter.toml": "[[task]]\nfunction = 3\nstart = 65500\ncount = 100\n"},
			`templates/meter.toml:4:9: key "task[0].count": start 65500 + count 100 runs past address 65535`},
		{"interval", map[string]string{"templates/meter.toml": "[[task]]\nfunction = 3\ncount = 1\ninterval = \"5ms\"\n"},
			`templates/meter.toml:4:12: key "task[0].interval": must be at least 10ms`},
		{"trigger", map[string]string{"templates/meter.toml": "[[task]]\nfunction = 3\ncount = 1\ntrigger = \"cron\"\n"},
			`templates/meter.toml:4:11: key "task[0].trigger": unknown value "cron" (want timer, heartbeat or connect)`},
		{"slave", map[string]string{"templates/meter.toml": "[[task]]\nfunction = 3\ncount = 1\nslave = 0\n"},
			`templates/meter.toml:4:9: key "task[0].slave": 0 is out of range (1..247)`},
		{"task names", map[string]string{"templates/meter.toml": "[[task]]\nfunction = 3\ncount = 1\n[[task]]\nname = \"task0\"\nfunction = 3\ncount = 1\n"},
			`templates/meter.toml:5:8: key "task[1].name": task name "task0" is already used by task[0]`},

		{"unknown type", tpl("[[point]]\nid = \"2\"\naddress = 1\ntype     = \"int17\"\n"),
			`templates/meter.toml:12:12: key "point[1].type": unknown type "int17" (want bool, int16, uint16, int32, uint32, float32, int64, uint64, float64)`},
		{"coil type", map[string]string{"templates/meter.toml": "[[task]]\nfunction = 1\ncount = 8\n[[point]]\nid = \"c\"\narea = \"coil\"\naddress = 1\ntype = \"int16\"\n"},
			`templates/meter.toml:8:8: key "point[0].type": type int16 in the coil area: only bool is allowed there`},
		{"order", tpl("[[point]]\nid = \"2\"\naddress = 1\ntype = \"int32\"\norder = \"ABCDEFGH\"\n"),
			`templates/meter.toml:13:9: key "point[1].order": unknown order "ABCDEFGH" for int32 (want ABCD, CDAB, BADC or DCBA)`},
		{"order 64", tpl("[[point]]\nid = \"2\"\naddress = 1\ntype = \"uint64\"\norder = \"ABDC\"\n"),
			`templates/meter.toml:13:9: key "point[1].order": unknown order "ABDC" for uint64`},
		{"bit on uint16", tpl("[[point]]\nid = \"2\"\naddress = 1\nbit = 3\n"),
			`templates/meter.toml:12:7: key "point[1].bit": bit is only used with type bool`},
		{"bit range", tpl("[[point]]\nid = \"2\"\naddress = 1\ntype = \"bool\"\nbit = 16\n"),
			`templates/meter.toml:13:7: key "point[1].bit": 16 is out of range (0..15)`},
		{"bool without bit", tpl("[[point]]\nid = \"2\"\naddress = 1\ntype = \"bool\"\n"),
			`templates/meter.toml:9:3: key "point[1].bit": a bool point in the holding area needs bit (0..15)`},
		{"scale zero", tpl("[[point]]\nid = \"2\"\naddress = 1\nscale = 0\n"),
			`templates/meter.toml:12:9: key "point[1].scale": must not be 0`},
		{"scale nan", tpl("[[point]]\nid = \"2\"\naddress = 1\nscale = nan\n"),
			`templates/meter.toml:12:9: key "point[1].scale": must be a finite number`},
		{"decimals", tpl("[[point]]\nid = \"2\"\naddress = 1\ndecimals = 13\n"),
			`templates/meter.toml:12:12: key "point[1].decimals": 13 is out of range (0..12)`},
		{"bad id", tpl("[[point]]\nid = \"a:b\"\naddress = 1\n"),
			`templates/meter.toml:10:6: key "point[1].id": "a:b" is not a valid point id`},
		{"duplicate id", tpl("[[point]]\nid = \"1\"\naddress = 1\n"),
			`templates/meter.toml:10:6: key "point[1].id": point id "1" is already used by point[0]`},
		{"duplicate template", map[string]string{"templates/other.toml": "name = \"meter\"\n" + baseTemplate},
			`templates/other.toml:1:8: key "name": template "meter" is already defined in`},

		{"channel id", map[string]string{"channels/a.toml": "[[channel]]\nid = \"a b\"\nregistration = \"R\"\ntemplate = \"meter\"\n"},
			`channels/a.toml:2:6: key "channel[0].id": "a b" is not a valid channel id`},
		{"registration pattern", map[string]string{"channels/a.toml": "[[channel]]\nid = \"1\"\nregistration = \"R#1\"\ntemplate = \"meter\"\n"},
			`channels/a.toml:3:16: key "channel[0].registration": registration "R#1" does not match dtu.registration.pattern "^[A-Za-z0-9_.-]{1,64}$"`},
		{"no registration", map[string]string{"channels/a.toml": "[[channel]]\nid = \"1\"\ntemplate = \"meter\"\n"},
			`channels/a.toml:1:3: key "channel[0].registration": must be set`},
		{"template missing", map[string]string{"channels/a.toml": "[[channel]]\nid = \"1\"\nregistration = \"R\"\ntemplate = \"nope\"\n"},
			`channels/a.toml:4:12: key "channel[0].template": template "nope" does not exist`},
		{"duplicate across files", map[string]string{"channels/b.toml": "\n[[channel]]\nid = \"1\"\nregistration = \"R2\"\ntemplate = \"meter\"\n"},
			`channels/b.toml:3:6: key "channel[0].id": channel id "1" is already defined at `},
		{"duplicate registration", map[string]string{"channels/b.toml": "[[channel]]\nid = \"2\"\nregistration = \"DTU1\"\ntemplate = \"meter\"\n"},
			`channels/b.toml:3:16: key "channel[0].registration": registration "DTU1" is already used at `},
		{"range overlaps", map[string]string{"channels/b.toml": "[[range]]\nfirst = 0\nlast = 5\nid = \"{n}\"\nregistration = \"R{n}\"\ntemplate = \"meter\"\n"},
			`channels/b.toml:4:6: key "range[0].id": channel id "1" is already defined at `},
		{"range without n", map[string]string{"channels/b.toml": "[[range]]\nfirst = 0\nlast = 5\nid = \"{n}\"\nregistration = \"R\"\ntemplate = \"meter\"\n"},
			`channels/b.toml:5:16: key "range[0].registration": must contain {n} or {n:0W}`},
		{"range bad placeholder", map[string]string{"channels/b.toml": "[[range]]\nfirst = 0\nlast = 5\nid = \"{n:5}\"\nregistration = \"R{n}\"\ntemplate = \"meter\"\n"},
			`channels/b.toml:4:6: key "range[0].id": bad placeholder "{n:5}"`},
		{"range backwards", map[string]string{"channels/b.toml": "[[range]]\nfirst = 9\nlast = 5\nid = \"{n}\"\nregistration = \"R{n}\"\ntemplate = \"meter\"\n"},
			`channels/b.toml:3:8: key "range[0].last": last (5) is below first (9)`},
		{"range missing", map[string]string{"channels/b.toml": "[[range]]\nfirst = 9\nid = \"{n}\"\nregistration = \"R{n}\"\ntemplate = \"meter\"\n"},
			`channels/b.toml:1:3: key "range[0].last": must be set`},
		{"range pattern", map[string]string{"comsrv.toml": "[dtu.registration]\npattern = '^R[0-9]$'\n",
			"channels/a.toml": "[[range]]\nfirst = 5\nlast = 12\nid = \"{n}\"\nregistration = \"R{n}\"\ntemplate = \"meter\"\n"},
			`channels/a.toml:5:16: key "range[0].registration": registration "R10" does not match dtu.registration.pattern "^R[0-9]$"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := tree(t, tc.files)
			_, err := Load(filepath.Join(dir, "comsrv.toml"))
			wantErr(t, err, tc.want)
		})
	}
}

func TestManyErrorsReportedTogether(t *testing.T) {
	dir := tree(t, map[string]string{
		"comsrv.toml": "[dtu]\nmax_connections = 0\n[modbus]\nretries = 9\n",
	})
	_, err := Load(filepath.Join(dir, "comsrv.toml"))
	if err == nil || strings.Count(err.Error(), "\n") != 1 {
		t.Fatalf("want two errors, got %v", err)
	}
}

func TestCompareIDs(t *testing.T) {
	ids := []string{"b", "10", "9", "a", "0009", "100"}
	want := []string{"9", "10", "100", "0009", "a", "b"}
	for i := range ids {
		for j := range ids {
			if (CompareIDs(ids[i], ids[j]) < 0) != (indexOf(want, ids[i]) < indexOf(want, ids[j])) {
				t.Errorf("CompareIDs(%q, %q) wrong", ids[i], ids[j])
			}
		}
	}
}

func indexOf(s []string, v string) int {
	for i, x := range s {
		if x == v {
			return i
		}
	}
	return -1
}
