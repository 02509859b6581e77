package config

import (
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

// dtuAllKeys sets every key of [dtu] to a value other than its default.
const dtuAllKeys = `
[dtu]
name = "main"
listen = "127.0.0.1:0"
max_connections = 77
registration_timeout = "3s"
write_timeout = "4s"
refuse_log_interval = "6s"
status_interval = "7s"
unknown_ids = "provision"
provision_template = "meter"
[dtu.registration]
mode = "fixed"
length = 4
encoding = "hex"
pattern = '^[0-9A-F]{8}$'
[dtu.heartbeat]
hex = "fe01"
timeout = "33s"
max_missed = 2
`

func TestListenerInheritsDTU(t *testing.T) {
	dir := tree(t, map[string]string{
		"comsrv.toml": dtuAllKeys + `
[[listener]]
name = "plain"
listen = "127.0.0.1:0"

[[listener]]
name = "own"
listen = "127.0.0.1:0"
status_interval = "1s"
[listener.registration]
terminator = "\r\n"
[listener.heartbeat]
text = "hb"
max_missed = 5

[[listener]]
name = "text"
profile = "line"
listen = "127.0.0.1:0"
[listener.line]
max_line_length = 100
`,
		"channels/a.toml": "[[channel]]\nid = \"1\"\nregistration = \"0000ABCD\"\ntemplate = \"meter\"\n",
	})
	cfg, err := Load(filepath.Join(dir, "comsrv.toml"))
	if err != nil {
		t.Fatal(err)
	}
	d, plain, own, text := &cfg.DTU, &cfg.Listeners[0], &cfg.Listeners[1], &cfg.Listeners[2]

	// A listener that sets nothing else takes every [dtu] key but name and listen.
	vd, vp := reflect.ValueOf(d).Elem(), reflect.ValueOf(plain).Elem()
	for _, k := range tomlLeaves(vd.Type(), "") {
		if k == "name" || k == "listen" {
			continue
		}
		if a, b := fieldAt(vd, k).Interface(), fieldAt(vp, k).Interface(); !reflect.DeepEqual(a, b) {
			t.Errorf("listener plain: %s = %v, want [dtu]'s %v", k, b, a)
		}
	}
	if plain.Name != "plain" || string(plain.Heartbeat.Bytes) != "\xfe\x01" || plain.Registration.Regexp == nil ||
		plain.Registration.Regexp.String() != d.Registration.Pattern {
		t.Errorf("listener plain: %+v", plain)
	}

	// One that sets some keys overrides only those; setting the terminator
	// (or the heartbeat text) takes none of [dtu]'s framing (or bytes).
	if own.StatusInterval.Duration != time.Second || own.MaxConnections != 77 || own.WriteTimeout.Duration != 4*time.Second ||
		own.UnknownIDs != "provision" || own.ProvisionTemplate != "meter" {
		t.Errorf("listener own: %+v", own)
	}
	if own.Registration.Mode != "terminator" || string(own.Registration.TerminatorBytes) != "\r\n" ||
		own.Registration.Encoding != "text" || own.Registration.Pattern != `^[0-9A-F]{8}$` {
		t.Errorf("listener own registration: %+v", own.Registration)
	}
	if string(own.Heartbeat.Bytes) != "hb" || own.Heartbeat.Hex != "" || own.Heartbeat.Timeout.Duration != 33*time.Second ||
		own.Heartbeat.MaxMissed != 5 {
		t.Errorf("listener own heartbeat: %+v", own.Heartbeat)
	}

	// Another profile takes the common keys, not the transparent framing,
	// heartbeat bytes or the heartbeat period (its defaults differ).
	if text.MaxConnections != 77 || text.RegistrationTimeout.Duration != 3*time.Second || text.Registration.Pattern != `^[0-9A-F]{8}$` {
		t.Errorf("listener text: %+v", text)
	}
	if text.Registration.Mode != "terminator" || text.Heartbeat.Deadline() != DefaultLineHeartbeatTimeout ||
		text.Line.MaxLineLength != 100 || text.Line.ResultChannel != "result" {
		t.Errorf("listener text: registration %+v heartbeat %+v line %+v", text.Registration, text.Heartbeat, text.Line)
	}
}

func TestListenerInheritedErrors(t *testing.T) {
	// A bad [dtu] value is reported once, at [dtu]'s line.
	dir := tree(t, map[string]string{"comsrv.toml": "[dtu]\nmax_connections = 0\n[[listener]]\nlisten = \":1\"\n"})
	_, err := Load(filepath.Join(dir, "comsrv.toml"))
	if err == nil || strings.Count(err.Error(), "max_connections") != 1 || !strings.Contains(err.Error(), "comsrv.toml:2:") {
		t.Fatalf("error %v", err)
	}
	// An inherited template that does not exist is reported once, at [dtu].
	dir = tree(t, map[string]string{"comsrv.toml": "[dtu]\nunknown_ids = \"provision\"\nprovision_template = \"nope\"\n[[listener]]\nlisten = \":1\"\n"})
	_, err = Load(filepath.Join(dir, "comsrv.toml"))
	if err == nil || strings.Count(err.Error(), `template "nope" does not exist`) != 1 {
		t.Fatalf("error %v", err)
	}
}
