package config

import (
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"
)

func TestModbusChannels(t *testing.T) {
	dir := tree(t, map[string]string{
		"comsrv.toml": "[modbus]\nrequest_timeout = \"700ms\"\n",
		"channels/a.toml": `[[channel]]
id = "1"
registration = "DTU1"
template = "meter"

[[channel]]
id = "tcp1"
url = "tcp://192.168.1.20:502"
template = "meter"
one_request_per_point = true

[[channel]]
id = "gw"
url = "rtuovertcp://[::1]:4001"
template = "meter"
timeout = "2s"

[[channel]]
id = "bus1"
url = "rtu:///dev/ttyUSB0"
template = "meter"

[[channel]]
id = "bus2"
url = "rtu:///dev/ttyUSB1"
template = "meter"
baud = 19200
data_bits = 7
parity = "even"
stop_bits = 2

[[channel]]
id = "lines"
registration = "LINE1"
template = ""
`,
	})
	cfg, err := Load(filepath.Join(dir, "comsrv.toml"))
	if err != nil {
		t.Fatal(err)
	}
	by := map[string]*Channel{}
	for _, c := range cfg.ChannelList {
		by[c.ID] = c
	}
	if len(by) != 6 {
		t.Fatalf("%d channels: %+v", len(by), cfg.ChannelList)
	}
	if c := by["tcp1"]; c.URL != "tcp://192.168.1.20:502" || c.Registration != "" || c.T == nil ||
		c.Timeout.Duration != 700*time.Millisecond || c.OnePerPoint == nil || !*c.OnePerPoint || c.Baud != 0 {
		t.Errorf("tcp1: %+v", c)
	}
	if c := by["gw"]; c.Timeout.Duration != 2*time.Second || c.OnePerPoint != nil {
		t.Errorf("gw: %+v", c)
	}
	if c := by["bus1"]; c.Baud != 9600 || c.DataBits != 8 || c.Parity != "none" || c.StopBits != 1 {
		t.Errorf("bus1 defaults: %+v", c)
	}
	if c := by["bus2"]; c.Baud != 19200 || c.DataBits != 7 || c.Parity != "even" || c.StopBits != 2 {
		t.Errorf("bus2: %+v", c)
	}
	if c := by["lines"]; c.T != nil || c.Template != "" || c.Registration != "LINE1" {
		t.Errorf("line DTU without template: %+v", c)
	}
	if c := by["1"]; c.Timeout.Duration != 700*time.Millisecond || c.T == nil {
		t.Errorf("dtu channel: %+v", c)
	}
	m := cfg.Modbus
	if m.BackoffAfter != 3 || m.BackoffCooldown.Duration != 30*time.Second ||
		m.ReconnectMin.Duration != time.Second || m.ReconnectMax.Duration != 60*time.Second {
		t.Errorf("modbus defaults: %+v", m)
	}
}

func TestModbusSettings(t *testing.T) {
	dir := tree(t, map[string]string{"comsrv.toml": "[modbus]\nbackoff_after = 5\nbackoff_cooldown = \"10s\"\nreconnect_min = \"200ms\"\nreconnect_max = \"5s\"\n"})
	cfg, err := Load(filepath.Join(dir, "comsrv.toml"))
	if err != nil {
		t.Fatal(err)
	}
	m := cfg.Modbus
	if m.BackoffAfter != 5 || m.BackoffCooldown.Duration != 10*time.Second ||
		m.ReconnectMin.Duration != 200*time.Millisecond || m.ReconnectMax.Duration != 5*time.Second {
		t.Errorf("modbus: %+v", m)
	}
	// A lone reconnect_min above the default maximum is reported on itself.
	dir = tree(t, map[string]string{"comsrv.toml": "[modbus]\nreconnect_min = \"2m\"\n"})
	_, err = Load(filepath.Join(dir, "comsrv.toml"))
	wantErr(t, err, `comsrv.toml:2:17: key "modbus.reconnect_min": reconnect_max (1m0s) is below reconnect_min (2m0s)`)
}

func TestModbusChannelErrors(t *testing.T) {
	ch := func(body string) map[string]string {
		return map[string]string{"channels/a.toml": "[[channel]]\nid = \"m\"\ntemplate = \"meter\"\n" + body}
	}
	tests := []struct {
		name  string
		files map[string]string
		want  string
	}{
		{"scheme", ch(`url = "udp://h:502"`),
			`channels/a.toml:4:7: key "channel[0].url": "udp://h:502": unknown scheme "udp" (want tcp, rtuovertcp or rtu)`},
		{"no scheme", ch(`url = "10.0.0.1:502"`),
			`channels/a.toml:4:7: key "channel[0].url": "10.0.0.1:502" is not a Modbus URL`},
		{"no port", ch(`url = "tcp://10.0.0.1"`),
			`channels/a.toml:4:7: key "channel[0].url": "tcp://10.0.0.1": want tcp://host:port`},
		{"bad port", ch(`url = "rtuovertcp://h:70000"`),
			`channels/a.toml:4:7: key "channel[0].url": "rtuovertcp://h:70000": port "70000" is not a number in 1..65535`},
		{"no host", ch(`url = "tcp://:502"`),
			`channels/a.toml:4:7: key "channel[0].url": "tcp://:502": the host is missing`},
		{"no device", ch(`url = "rtu://"`),
			`channels/a.toml:4:7: key "channel[0].url": "rtu://": the serial device is missing`},
		{"space", ch(`url = "rtu:///dev/tty USB0"`),
			`channels/a.toml:4:7: key "channel[0].url": "rtu:///dev/tty USB0": the address contains spaces`},
		{"registration with url", ch("url = \"tcp://h:502\"\nregistration = \"R\"\n"),
			`channels/a.toml:5:1: key "channel[0].registration": must not be set for a Modbus channel (url)`},
		{"template required", map[string]string{"channels/a.toml": "[[channel]]\nid = \"m\"\nurl = \"tcp://h:502\"\n"},
			`channels/a.toml:1:3: key "channel[0].template": must be set`},
		{"template unknown", map[string]string{"channels/a.toml": "[[channel]]\nid = \"m\"\nurl = \"tcp://h:502\"\ntemplate = \"x\"\n"},
			`channels/a.toml:4:12: key "channel[0].template": template "x" does not exist`},
		{"serial option on tcp", ch("url = \"tcp://h:502\"\nbaud = 9600\n"),
			`channels/a.toml:5:1: key "channel[0].baud": only used with an rtu:// url, not tcp://`},
		{"serial option on dtu", ch("registration = \"R\"\nparity = \"odd\"\n"),
			`channels/a.toml:5:1: key "channel[0].parity": only used by Modbus channels with an rtu:// url`},
		{"baud", ch("url = \"rtu:///dev/ttyS0\"\nbaud = 9601\n"),
			`channels/a.toml:5:8: key "channel[0].baud": unsupported baud rate 9601 (want one of 300, 600,`},
		{"data bits", ch("url = \"rtu:///dev/ttyS0\"\ndata_bits = 9\n"),
			`channels/a.toml:5:13: key "channel[0].data_bits": 9 is out of range (5..8)`},
		{"parity", ch("url = \"rtu:///dev/ttyS0\"\nparity = \"mark\"\n"),
			`channels/a.toml:5:10: key "channel[0].parity": unknown value "mark" (want none, even or odd)`},
		{"stop bits", ch("url = \"rtu:///dev/ttyS0\"\nstop_bits = 3\n"),
			`channels/a.toml:5:13: key "channel[0].stop_bits": 3 is not 1 or 2`},
		{"timeout", ch("url = \"tcp://h:502\"\ntimeout = \"0s\"\n"),
			`channels/a.toml:5:11: key "channel[0].timeout": must be greater than 0`},
		{"serial device shared", map[string]string{
			"channels/a.toml": "[[channel]]\nid = \"a\"\nurl = \"rtu:///dev/ttyS0\"\ntemplate = \"meter\"\n",
			"channels/b.toml": "[[channel]]\nid = \"b\"\nurl = \"rtu:///dev/ttyS0\"\ntemplate = \"meter\"\n"},
			`channels/b.toml:3:7: key "channel[0].url": serial device /dev/ttyS0 is already used at `},
		{"dtu still needs registration", map[string]string{"channels/a.toml": "[[channel]]\nid = \"1\"\n"},
			`channels/a.toml:1:3: key "channel[0].registration": must be set`},
		{"dtu unknown template", map[string]string{"channels/a.toml": "[[channel]]\nid = \"1\"\nregistration = \"R\"\ntemplate = \"nope\"\n"},
			`channels/a.toml:4:12: key "channel[0].template": template "nope" does not exist`},
		{"range unknown template", map[string]string{"channels/a.toml": "[[range]]\nfirst = 1\nlast = 2\nid = \"{n}\"\nregistration = \"R{n}\"\ntemplate = \"nope\"\n"},
			`channels/a.toml:6:12: key "range[0].template": template "nope" does not exist`},
		{"backoff_after", map[string]string{"comsrv.toml": "[modbus]\nbackoff_after = 0\n"},
			`comsrv.toml:2:17: key "modbus.backoff_after": 0 is out of range (1..100)`},
		{"backoff_cooldown", map[string]string{"comsrv.toml": "[modbus]\nbackoff_cooldown = \"0s\"\n"},
			`comsrv.toml:2:20: key "modbus.backoff_cooldown": must be greater than 0`},
		{"reconnect order", map[string]string{"comsrv.toml": "[modbus]\nreconnect_min = \"10s\"\nreconnect_max = \"5s\"\n"},
			`comsrv.toml:3:17: key "modbus.reconnect_max": reconnect_max (5s) is below reconnect_min (10s)`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := tree(t, tc.files)
			_, err := Load(filepath.Join(dir, "comsrv.toml"))
			wantErr(t, err, tc.want)
		})
	}
}

func TestRangeWithoutTemplate(t *testing.T) {
	dir := tree(t, map[string]string{"channels/a.toml": "[[range]]\nfirst = 1\nlast = 3\nid = \"{n}\"\nregistration = \"L{n}\"\n"})
	cfg, err := Load(filepath.Join(dir, "comsrv.toml"))
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.ChannelList) != 3 || cfg.ChannelList[0].T != nil || cfg.ChannelList[2].Registration != "L3" {
		t.Fatalf("%+v", cfg.ChannelList)
	}
}

func TestParseURL(t *testing.T) {
	for _, tc := range []struct{ url, scheme, addr string }{
		{"tcp://10.0.0.5:502", "tcp", "10.0.0.5:502"},
		{"rtuovertcp://gw.local:4001", "rtuovertcp", "gw.local:4001"},
		{"rtu:///dev/ttyUSB0", "rtu", "/dev/ttyUSB0"},
		{"tcp://[fe80::1]:502", "tcp", "[fe80::1]:502"},
	} {
		s, a, err := ParseURL(tc.url)
		if err != nil || s != tc.scheme || a != tc.addr {
			t.Errorf("ParseURL(%q) = %q, %q, %v", tc.url, s, a, err)
		}
	}
	if d, ok := SerialDevice("rtu:///dev/ttyS1"); !ok || d != "/dev/ttyS1" {
		t.Errorf("SerialDevice = %q, %v", d, ok)
	}
	if _, ok := SerialDevice("tcp://h:1"); ok {
		t.Error("tcp URL taken for a serial device")
	}
}

// TestModbusExampleLoads checks config/channels/modbus.toml.example against
// the example templates.
func TestModbusExampleLoads(t *testing.T) {
	example, err := os.ReadFile("../../config/channels/modbus.toml.example")
	if err != nil {
		t.Fatal(err)
	}
	tpl, err := filepath.Abs("../../config/templates/*.toml")
	if err != nil {
		t.Fatal(err)
	}
	dir := tree(t, map[string]string{
		"comsrv.toml":     "templates = [" + strconv.Quote(tpl) + "]\n",
		"channels/a.toml": string(example),
	})
	cfg, err := Load(filepath.Join(dir, "comsrv.toml"))
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.ChannelList) != 4 {
		t.Fatalf("%d channels", len(cfg.ChannelList))
	}
	for _, c := range cfg.ChannelList {
		if c.URL == "" || c.T == nil || c.Registration != "" {
			t.Errorf("channel %+v", c)
		}
	}
}
