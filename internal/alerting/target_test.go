package alerting

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/BurntSushi/toml"
)

func TestTargetValidate(t *testing.T) {
	sec, _ := GenerateSecret()
	good := Target{ID: "ops", URL: "https://hooks.example.com/x", Secrets: []string{sec}, Enabled: true}
	if err := good.Validate(); err != nil {
		t.Fatal(err)
	}
	bad := []Target{
		{ID: "a:b", URL: "https://x"},
		{ID: "a", URL: "ftp://x/"},
		{ID: "a", URL: "https://"},
		{ID: "a", URL: "https://x", Method: "TRACE"},
		{ID: "a", URL: "https://x", Secrets: []string{"nope"}},
		{ID: "a", URL: "https://x", Secrets: []string{"whsec_AAAA"}},
		{ID: "a", URL: "https://x", Secrets: []string{sec, sec, sec}},
		{ID: "a", URL: "https://x", Concurrency: 1000},
		{ID: "a", URL: "https://x", Template: "{{.Nope"},
		{ID: "a", URL: "https://x", Headers: map[string]string{"X-A": "b\r\nc"}},
	}
	for _, b := range bad {
		if b.Validate() == nil {
			t.Errorf("%+v validates", b)
		}
	}
}

func TestTargetDefaultsAndCodecs(t *testing.T) {
	d := Target{ID: "a", URL: "http://x"}.WithDefaults()
	if d.Method != "POST" || d.Timeout.Duration != 15*time.Second || d.Concurrency != 4 || d.Jitter != 0.1 || d.DisableAfter.Duration != 5*24*time.Hour {
		t.Fatalf("defaults %+v", d)
	}
	var total time.Duration
	for _, s := range d.ScheduleDurations() {
		total += s
	}
	if n := len(d.ScheduleDurations()); n < 8 || total < 24*time.Hour {
		t.Fatalf("default schedule: %d attempts over %v", n, total)
	}
	js := `{"id":"a","url":"http://x","timeout":"3s","schedule":["0s","1s","1m"],"enabled":true}`
	tg, err := ParseTarget("a", []byte(js))
	if err != nil {
		t.Fatal(err)
	}
	if tg.Timeout.Duration != 3*time.Second || len(tg.ScheduleDurations()) != 3 || tg.ScheduleDurations()[2] != time.Minute {
		t.Fatalf("parsed %+v", tg)
	}
	if _, err := ParseTarget("b", []byte(js)); err == nil {
		t.Error("a target stored under another id parses")
	}
	var tt struct{ Target Target }
	if _, err := toml.Decode("[target]\nid = \"a\"\nurl = \"http://x\"\ntimeout = \"2s\"\nschedule = [\"0s\", \"5s\"]\n", &tt); err != nil {
		t.Fatal(err)
	}
	if tt.Target.Timeout.Duration != 2*time.Second || len(tt.Target.Schedule) != 2 {
		t.Fatalf("TOML %+v", tt.Target)
	}
}

func TestTargetRedacted(t *testing.T) {
	sec, _ := GenerateSecret()
	tg := Target{ID: "a", URL: "http://x", Secrets: []string{sec}, Headers: map[string]string{"Authorization": "Bearer s3cret", "X-Site": "n"}}
	r := tg.Redacted()
	js, _ := json.Marshal(r)
	if strings.Contains(string(js), sec) || strings.Contains(string(js), "s3cret") || !strings.Contains(string(js), "X-Site") {
		t.Fatalf("redacted %s", js)
	}
	if tg.Secrets[0] != sec || tg.Headers["Authorization"] != "Bearer s3cret" {
		t.Fatal("Redacted changed the original")
	}
}

func TestRender(t *testing.T) {
	ev := Event{ID: "alarm:events/1-0", Type: AlarmRaised, Model: "m", Point: "p", Value: "3"}
	b, err := Target{ID: "a"}.Render(ev)
	if err != nil || !strings.Contains(string(b), `"type":"alarm_raised"`) {
		t.Fatalf("%s %v", b, err)
	}
	b, err = Target{ID: "a", Template: `{"text":{{json (printf "%s %s=%s" .Type .Point .Value)}}}`}.Render(ev)
	if err != nil || string(b) != `{"text":"alarm_raised p=3"}` {
		t.Fatalf("%s %v", b, err)
	}
}
