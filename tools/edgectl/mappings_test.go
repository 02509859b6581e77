package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/voltedge/voltedge/internal/keys"
	"github.com/voltedge/voltedge/internal/redistest"
)

const testMappings = `
[[map]]
channel = "1001"
model = "power_meter"
points = { "10001" = "voltage", "10002" = "current" }

[[control]]
model = "power_meter"
control = "setpoint"
channel = "1001"
point = "40001"

[thresholds]
"power_meter:voltage" = 250

[low]
"power_meter:voltage" = 180.5
`

func writeFile(t *testing.T, name, text string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestMappingsLoad(t *testing.T) {
	srv := redistest.Start(t)
	c := srv.Client(t)
	file := writeFile(t, "mappings.toml", testMappings)
	redistest.Do(t, c, "HSET", keys.Mapping, "9:9", "old:point")

	out := mustCLI(t, srv.URL(), "mappings", "load", file)
	want := file + ": merged into the hashes in Redis (fields written):\n" +
		"  mapping                   2\n" +
		"  mapping:reverse           1\n" +
		"  alarm:threshold           1\n" +
		"  alarm:low                 1\n" +
		"  alarm:hysteresis          0\n" +
		"  mapping:unit              0\n" +
		"  mapping:description       0\n"
	if out != want {
		t.Errorf("load:\n%s\nwant:\n%s", out, want)
	}
	m, _ := redistest.Do(t, c, "HGETALL", keys.Mapping).AsStrMap()
	if len(m) != 3 || m["1001:10001"] != "power_meter:voltage" || m["9:9"] != "old:point" {
		t.Errorf("mapping after merge: %v", m)
	}
	if v, _ := redistest.Do(t, c, "HGET", keys.AlarmLow, "power_meter:voltage").ToString(); v != "180.5" {
		t.Errorf("low limit %q", v)
	}

	out = mustCLI(t, srv.URL(), "mappings", "load", "-replace", file)
	if !strings.HasPrefix(out, file+": replaced the hashes") {
		t.Errorf("replace: %s", out)
	}
	m, _ = redistest.Do(t, c, "HGETALL", keys.Mapping).AsStrMap()
	if len(m) != 2 || m["9:9"] != "" {
		t.Errorf("mapping after replace: %v", m)
	}
	// The loaded control mapping is what send uses.
	if out := mustCLI(t, srv.URL(), "send", "power_meter", "setpoint", "1", "-no-wait"); len(out) < 2 || strings.Trim(out, "0123456789") != "\n" {
		t.Errorf("send after load: %q", out)
	}
}

func TestMappingsLoadErrors(t *testing.T) {
	srv := redistest.Start(t)
	bad := writeFile(t, "bad.toml", "[[map]]\nchannel = \"a:b\"\nmodel = \"m\"\npoints = { \"1\" = \"v\" }\n")
	for _, tc := range []struct {
		args []string
		code int
		msg  string
	}{
		{[]string{"mappings", "load", bad}, 1, "edgectl mappings load: "},
		{[]string{"mappings", "load", filepath.Join(t.TempDir(), "none.toml")}, 1, "no such file"},
		{[]string{"mappings", "load"}, 2, "want one FILE.toml, got 0 arguments"},
		{[]string{"mappings", "apply"}, 2, `unknown command "apply"`},
	} {
		_, errOut, code := cli(t, srv.URL(), tc.args...)
		if code != tc.code || !strings.Contains(errOut, tc.msg) {
			t.Errorf("%v: exit %d, stderr %q", tc.args, code, errOut)
		}
	}
	if n, _ := redistest.Do(t, srv.Client(t), "EXISTS", keys.Mapping).AsInt64(); n != 0 {
		t.Error("an invalid file wrote mappings")
	}
}

func TestMappingsLoadWarnsManyToOne(t *testing.T) {
	srv := redistest.Start(t)
	file := writeFile(t, "shared.toml", testMappings+`
[[map]]
channel = "1002"
model = "power_meter"
points = { "10001" = "voltage", "10009" = "energy" }
`)
	out, errOut, code := cli(t, srv.URL(), "mappings", "load", file)
	if code != 0 || !strings.Contains(out, "mapping                   4") {
		t.Fatalf("exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	want := "edgectl mappings load: warning: model point power_meter:voltage is mapped from 2 channel points " +
		"(1001:10001, 1002:10001): it takes the newest sample of them\n"
	if errOut != want {
		t.Errorf("stderr = %q, want %q", errOut, want)
	}
	if _, errOut, _ := cli(t, srv.URL(), "mappings", "load", writeFile(t, "plain.toml", testMappings)); errOut != "" {
		t.Errorf("stderr without shared model points = %q", errOut)
	}
}
