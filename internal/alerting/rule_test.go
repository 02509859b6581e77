package alerting

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/voltedge/voltedge/internal/conf"
)

func TestGlob(t *testing.T) {
	cases := []struct {
		p, s string
		want bool
	}{
		{"", "x", true}, {"*", "", true}, {"custom:*", "custom:door", true}, {"custom:*", "data", false},
		{"device_*", "device_offline", true}, {"meter?", "meter1", true}, {"meter?", "meter12", false},
		{"*_temp", "pcs1_temp", true}, {"a*b*c", "axxbyyc", true}, {"a*b*c", "axxbyy", false}, {"DTU10*", "DTU1001", true},
	}
	for _, c := range cases {
		if got := Glob(c.p, c.s); got != c.want {
			t.Errorf("Glob(%q, %q) = %v", c.p, c.s, got)
		}
	}
}

func TestRuleValidate(t *testing.T) {
	ok := Rule{ID: "hv", Enabled: true, Events: []string{Data}, Model: "meter*", Point: "voltage",
		Condition: &Condition{Op: OpGT, Value: 250, OnDelay: conf.Duration{Duration: 5 * time.Second}}, Targets: []string{"ops"}}
	if err := ok.Validate(); err != nil {
		t.Fatal(err)
	}
	bad := []struct {
		field string
		r     Rule
	}{
		{"id", Rule{ID: "a b", Events: []string{AlarmRaised}}},
		{"events", Rule{ID: "x"}},
		{"events[0]", Rule{ID: "x", Events: []string{"device_gone"}}},
		{"level", Rule{ID: "x", Events: []string{AlarmRaised}, Level: "major"}},
		{"min_level", Rule{ID: "x", Events: []string{AlarmRaised}, MinLevel: "loud"}},
		{"condition.op", Rule{ID: "x", Events: []string{Data}, Condition: &Condition{Op: "~"}}},
		{"events", Rule{ID: "x", Events: []string{AlarmRaised}, Condition: &Condition{Op: OpGT}}},
		{"events[0]", Rule{ID: "x", Events: []string{Data}}},
		{"targets[0]", Rule{ID: "x", Events: []string{AlarmRaised}, Targets: []string{"a/b"}}},
		{"renotify_every", Rule{ID: "x", Events: []string{AlarmRaised}, RenotifyEvery: conf.Duration{Duration: time.Millisecond}}},
		{"max_notifications", Rule{ID: "x", Events: []string{AlarmRaised}, MaxNotifications: -1}},
	}
	for _, c := range bad {
		err := c.r.Validate()
		if err == nil || !strings.Contains(err.Error(), c.field+":") {
			t.Errorf("%+v: error %v does not name %s", c.r, err, c.field)
		}
	}
}

func TestRuleJSON(t *testing.T) {
	var r Rule
	if err := json.Unmarshal([]byte(`{"id":"a","events":["custom:*"],"renotify_every":"1m","targets":["t"]}`), &r); err != nil {
		t.Fatal(err)
	}
	if !r.Enabled || r.RenotifyEvery.Duration != time.Minute {
		t.Fatalf("%+v", r)
	}
	b, _ := json.Marshal(r)
	var back Rule
	if err := json.Unmarshal(b, &back); err != nil || back.RenotifyEvery != r.RenotifyEvery || back.ID != "a" {
		t.Fatalf("%s → %+v %v", b, back, err)
	}
	if err := json.Unmarshal([]byte(`{"id":"a","events":["custom:*"],"enabled":false}`), &r); err != nil || r.Enabled {
		t.Fatalf("enabled false not kept: %+v", r)
	}
}

func TestRuleMatchAndLevel(t *testing.T) {
	rules := []Rule{
		{ID: "crit", Enabled: true, Events: []string{AlarmRaised}, Model: "pcs*", Point: "temp", Level: LevelCritical},
		{ID: "info", Enabled: true, Events: []string{"alarm_*"}, Level: LevelInfo},
		{ID: "off", Enabled: false, Events: []string{AlarmRaised}, Level: LevelCritical},
	}
	if got := AlarmLevel(rules, "pcs1", "temp"); got != LevelCritical {
		t.Errorf("pcs1:temp level %s", got)
	}
	if got := AlarmLevel(rules, "meter", "v"); got != LevelInfo {
		t.Errorf("meter:v level %s", got)
	}
	if got := AlarmLevel(nil, "meter", "v"); got != DefaultAlarmLevel {
		t.Errorf("no rules: level %s", got)
	}
	r := Rule{ID: "x", Enabled: true, Events: []string{"device_offline"}, Channel: "DTU*", MinLevel: LevelWarning}
	if !r.Match(Event{Type: DeviceOffline, Channel: "DTU1", Level: LevelWarning}) {
		t.Error("offline DTU1 not matched")
	}
	if r.Match(Event{Type: DeviceOffline, Channel: "DTU1", Level: LevelInfo}) {
		t.Error("info matched min_level warning")
	}
	if r.Match(Event{Type: DeviceOffline, Level: LevelWarning}) {
		t.Error("an event without channel matched a channel pattern")
	}
}

func TestTestRule(t *testing.T) {
	r := Rule{ID: "hv", Enabled: true, Events: []string{Data}, Model: "meter", Point: "voltage", Level: LevelCritical,
		Condition: &Condition{Op: OpGE, Value: 250}, Targets: []string{"ops"}}
	res := TestRule(r, Event{Type: Data, Model: "meter", Point: "voltage", Value: "251"})
	if !res.Matched || !res.Fires || res.Level != LevelCritical || res.Event.Rule != "hv" || len(res.Targets) != 1 {
		t.Fatalf("%+v", res)
	}
	res = TestRule(r, Event{Type: Data, Model: "meter", Point: "voltage", Value: "249"})
	if !res.Matched || res.Fires {
		t.Fatalf("%+v", res)
	}
	res = TestRule(r, Event{Type: Data, Model: "other", Point: "voltage", Value: "300"})
	if res.Matched || !strings.Contains(res.Reason, "model") {
		t.Fatalf("%+v", res)
	}
}
