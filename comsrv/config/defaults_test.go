package config

import (
	"path/filepath"
	"reflect"
	"testing"
	"time"
)

// TestStatusIntervalPerChannel: every channel carries its status interval,
// from [modbus] for url channels and from [dtu] for DTU channels.
func TestStatusIntervalPerChannel(t *testing.T) {
	chans := `[[channel]]
id = "1"
registration = "DTU1"
template = "meter"

[[channel]]
id = "tcp1"
url = "tcp://192.168.1.20:502"
template = "meter"

[[range]]
first = 10
last = 11
id = "{n}"
registration = "DTU{n}"
template = "meter"
`
	for _, tc := range []struct {
		toml     string
		dtu, mod time.Duration
	}{
		{"", DefaultStatusInterval, DefaultStatusInterval},
		{"[dtu]\nstatus_interval = \"2s\"\n[modbus]\nstatus_interval = \"3s\"\n", 2 * time.Second, 3 * time.Second},
		{"[dtu]\nstatus_interval = \"2s\"\n", 2 * time.Second, DefaultStatusInterval},
	} {
		dir := tree(t, map[string]string{"comsrv.toml": tc.toml, "channels/a.toml": chans})
		cfg, err := Load(filepath.Join(dir, "comsrv.toml"))
		if err != nil {
			t.Fatal(err)
		}
		if cfg.Modbus.StatusInterval.Duration != tc.mod {
			t.Errorf("%q: modbus.status_interval %v, want %v", tc.toml, cfg.Modbus.StatusInterval.Duration, tc.mod)
		}
		for _, ch := range cfg.ChannelList {
			want := tc.dtu
			if ch.URL != "" {
				want = tc.mod
			}
			if ch.StatusInterval.Duration != want {
				t.Errorf("%q: channel %s status interval %v, want %v", tc.toml, ch.ID, ch.StatusInterval.Duration, want)
			}
		}
	}
	dir := tree(t, map[string]string{"comsrv.toml": "[modbus]\nstatus_interval = \"0s\"\n"})
	_, err := Load(filepath.Join(dir, "comsrv.toml"))
	wantErr(t, err, `comsrv.toml:2:19: key "modbus.status_interval": must be greater than 0`)
}

// TestDefaultsMatchLoad: Defaults gives the settings that Load gives for an
// empty comsrv.toml, every one of them filled.
func TestDefaultsMatchLoad(t *testing.T) {
	dir := tree(t, map[string]string{"comsrv.toml": ""})
	loaded, err := Load(filepath.Join(dir, "comsrv.toml"))
	if err != nil {
		t.Fatal(err)
	}
	def := Defaults()
	loaded.File, loaded.TemplateByID, loaded.ChannelList, loaded.pos = "", nil, nil, nil
	if def.DTU.Registration.Regexp.String() != loaded.DTU.Registration.Regexp.String() {
		t.Fatalf("pattern %v, want %v", def.DTU.Registration.Regexp, loaded.DTU.Registration.Regexp)
	}
	def2 := *def // compiled expressions are compared by their text above
	def2.TemplateByID, def2.DTU.Registration.Regexp, loaded.DTU.Registration.Regexp = nil, nil, nil
	def = &def2
	if !reflect.DeepEqual(def, loaded) {
		t.Fatalf("Defaults():\n%+v\nLoad of an empty file:\n%+v", def, loaded)
	}
	m := def.Modbus
	if m.RequestTimeout.Duration != DefaultRequestTimeout || m.Retries != DefaultRetries || m.FlushDelay.Duration != DefaultFlushDelay ||
		m.ReconnectMin.Duration != DefaultReconnectMin || m.ReconnectMax.Duration != DefaultReconnectMax ||
		m.BackoffCooldown.Duration != DefaultBackoffCooldown || m.StatusInterval.Duration != DefaultStatusInterval ||
		def.Frames.Flush.Duration != DefaultFramesFlush || def.DTU.StatusInterval.Duration != DefaultStatusInterval ||
		def.Redis.FlushInterval.Duration != DefaultFlushInterval || def.Redis.Writers != DefaultWriters {
		t.Fatalf("defaults: %+v", def)
	}
	ch := Defaults().NewDTUChannel("DTU9", nil)
	if ch.ID != "DTU9" || ch.Registration != "DTU9" || ch.Name != "DTU9" || ch.Timeout.Duration != DefaultRequestTimeout ||
		ch.StatusInterval.Duration != DefaultStatusInterval {
		t.Fatalf("NewDTUChannel: %+v", ch)
	}
}
