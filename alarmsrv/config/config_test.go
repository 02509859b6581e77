package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/voltedge/voltedge/internal/alerting"
)

// TestShippedConfig loads config/alarmsrv.toml.
func TestShippedConfig(t *testing.T) {
	c, err := Load("../../config/alarmsrv.toml")
	if err != nil {
		t.Fatal(err)
	}
	if c.Listen != DefaultListen || c.MaxRuns != 50 || c.ShelveMax.Duration != DefaultShelveMax || c.ReloadEvery.Duration != 10*time.Second {
		t.Errorf("%+v", c)
	}
	if len(c.Rules) == 0 {
		t.Fatal("no rules")
	}
	for _, r := range c.Rules {
		if !r.Enabled || r.Origin != alerting.OriginFile {
			t.Errorf("rule %s: enabled %v origin %q", r.ID, r.Enabled, r.Origin)
		}
	}
}

func TestIncludeAndErrors(t *testing.T) {
	dir := t.TempDir()
	main := filepath.Join(dir, "alarmsrv.toml")
	write := func(name, text string) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Mkdir(filepath.Join(dir, "rules.d"), 0o755); err != nil {
		t.Fatal(err)
	}
	write("alarmsrv.toml", `site = "s1"
include = ["rules.d/*.toml"]
[[rule]]
id = "a"
events = ["alarm_raised"]
enabled = false
`)
	write("rules.d/b.toml", `[[rule]]
id = "b"
events = ["custom:*"]
targets = ["ops"]

[[target]]
id = "ops"
url = "http://x"
`)
	c, err := Load(main)
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Rules) != 2 || c.Rules[0].Enabled || !c.Rules[1].Enabled || len(c.Targets) != 1 || c.Targets[0]["url"] != "http://x" || c.Consumer != "s1" {
		t.Fatalf("%+v", c)
	}

	write("rules.d/c.toml", `[[rule]]
id = "a"
events = ["custom:*"]

[[rule]]
id = "d"
events = ["data"]
condition = { op = "~", value = 1.0 }
`)
	_, err = Load(main)
	if err == nil || !strings.Contains(err.Error(), "also defined") || !strings.Contains(err.Error(), "condition.op") ||
		!strings.Contains(err.Error(), "c.toml:") {
		t.Fatalf("error %v", err)
	}

	_, err = Parse("x.toml", []byte("[[rule]]\nid = \"a\"\nevents = [\"alarm_raised\"]\nlevle = \"info\"\n"))
	if err == nil || !strings.Contains(err.Error(), "x.toml:4:1") {
		t.Fatalf("unknown key: %v", err)
	}
}
