package rules

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/voltedge/voltedge/internal/alerting"
	"github.com/voltedge/voltedge/internal/conf"
)

// clock is a settable clock.
type clock struct{ t time.Time }

func (c *clock) now() time.Time         { return c.t }
func (c *clock) add(d time.Duration)    { c.t = c.t.Add(d) }
func dur(d time.Duration) conf.Duration { return conf.Duration{Duration: d} }
func newEngine(c *clock, rules ...alerting.Rule) *Engine {
	e := New(Options{Now: c.now, MaxStates: 100})
	for i := range rules {
		rules[i].Enabled = true
	}
	e.SetRules(rules)
	return e
}

// collect returns the fires of an Apply or Tick.
func apply(t *testing.T, e *Engine, evs ...alerting.Event) []Fire {
	t.Helper()
	var got []Fire
	if err := e.Apply(evs, func(f []Fire) error { got = append(got, f...); return nil }); err != nil {
		t.Fatal(err)
	}
	return got
}

func tick(t *testing.T, e *Engine) []Fire {
	t.Helper()
	var got []Fire
	if err := e.Tick(func(f []Fire) error { got = append(got, f...); return nil }); err != nil {
		t.Fatal(err)
	}
	return got
}

func sample(model, point, value string, n int) alerting.Event {
	return alerting.Event{ID: fmt.Sprintf("data:samples/%d-0/%s", n, point), Type: alerting.Data, Channel: "1001", Model: model, Point: point, Value: value, Level: alerting.LevelInfo}
}

func kinds(fs []Fire) string {
	s := ""
	for _, f := range fs {
		s += f.Rule.ID + ":" + f.Kind
		if f.Suppressed != "" {
			s += "(" + f.Suppressed + ")"
		}
		s += " "
	}
	return s
}

func TestMatchEventTypes(t *testing.T) {
	c := &clock{time.Unix(1000, 0)}
	e := newEngine(c,
		alerting.Rule{ID: "online", Events: []string{alerting.DeviceOnline}, Channel: "DTU*"},
		alerting.Rule{ID: "devices", Events: []string{"device_*"}},
		alerting.Rule{ID: "raised", Events: []string{alerting.AlarmRaised}, Model: "meter?", Point: "voltage", Level: alerting.LevelCritical},
		alerting.Rule{ID: "cleared", Events: []string{alerting.AlarmCleared}},
		alerting.Rule{ID: "control", Events: []string{alerting.ControlResult}, MinLevel: alerting.LevelWarning},
		alerting.Rule{ID: "door", Events: []string{"custom:door*"}},
		alerting.Rule{ID: "custom", Events: []string{"custom:*"}, Channel: "DTU1"},
	)
	cases := []struct {
		ev   alerting.Event
		want string
	}{
		{alerting.Event{ID: "a", Type: alerting.DeviceOnline, Channel: "DTU1"}, "devices:notify online:notify "},
		{alerting.Event{ID: "b", Type: alerting.DeviceOnline, Channel: "1001"}, "devices:notify "},
		{alerting.Event{ID: "c", Type: alerting.DeviceOffline, Channel: "DTU1"}, "devices:notify "},
		{alerting.Event{ID: "d", Type: alerting.AlarmRaised, Model: "meter1", Point: "voltage", Level: "warning"}, "raised:notify "},
		{alerting.Event{ID: "e", Type: alerting.AlarmRaised, Model: "meter12", Point: "voltage"}, ""},
		{alerting.Event{ID: "f", Type: alerting.AlarmCleared, Model: "meter1", Point: "voltage"}, "cleared:notify "},
		{alerting.Event{ID: "g", Type: alerting.ControlResult, Level: alerting.LevelInfo}, ""},
		{alerting.Event{ID: "h", Type: alerting.ControlResult, Level: alerting.LevelWarning}, "control:notify "},
		{alerting.Event{ID: "i", Type: "custom:door_open", Channel: "DTU1"}, "custom:notify door:notify "},
		{alerting.Event{ID: "j", Type: "custom:smoke"}, ""},
		{alerting.Event{ID: "k", Type: alerting.Data, Model: "meter1", Point: "voltage", Value: "1"}, ""},
	}
	for _, tc := range cases {
		fs := apply(t, e, tc.ev)
		if got := kinds(fs); got != tc.want {
			t.Errorf("%s %s: fired %q, want %q", tc.ev.Type, tc.ev.ID, got, tc.want)
		}
		for _, f := range fs {
			if f.Event.Rule != f.Rule.ID || f.Event.ID != tc.ev.ID {
				t.Errorf("fire %+v", f)
			}
			if f.Rule.ID == "raised" && f.Event.Level != alerting.LevelCritical {
				t.Errorf("raised: level %q", f.Event.Level)
			}
		}
	}
}

func TestDataOperators(t *testing.T) {
	cases := []struct {
		op     string
		fire   []string
		nofire []string
	}{
		{">", []string{"251"}, []string{"250", "249", "x"}},
		{"<", []string{"249"}, []string{"250", "251"}},
		{">=", []string{"250", "250.5"}, []string{"249.9"}},
		{"<=", []string{"250", "1"}, []string{"250.01"}},
		{"==", []string{"250", "250.0"}, []string{"251"}},
		{"!=", []string{"251", "0"}, []string{"250"}},
	}
	for _, tc := range cases {
		for _, v := range append(append([]string{}, tc.fire...), tc.nofire...) {
			c := &clock{time.Unix(1000, 0)}
			e := newEngine(c, alerting.Rule{ID: "r", Events: []string{alerting.Data}, Model: "m", Point: "v",
				Condition: &alerting.Condition{Op: tc.op, Value: 250}})
			fs := apply(t, e, sample("m", "v", v, 1))
			want := 0
			for _, f := range tc.fire {
				if f == v {
					want = 1
				}
			}
			if len(fs) != want {
				t.Errorf("%s 250 with %s: %d fires, want %d", tc.op, v, len(fs), want)
			}
			if want == 1 && (fs[0].Kind != alerting.RunRaise || fs[0].Event.Fields["state"] != "raise" || fs[0].Event.Level != alerting.DefaultAlarmLevel) {
				t.Errorf("%+v", fs[0])
			}
		}
	}
}

func TestOnDelayOffDelay(t *testing.T) {
	c := &clock{time.Unix(1000, 0)}
	e := newEngine(c, alerting.Rule{ID: "hv", Events: []string{alerting.Data}, Model: "m", Point: "v", Level: alerting.LevelCritical,
		Condition: &alerting.Condition{Op: ">", Value: 250, OnDelay: dur(5 * time.Second), OffDelay: dur(10 * time.Second)}})
	// A spike of 3 s does not fire.
	if fs := apply(t, e, sample("m", "v", "260", 1)); len(fs) != 0 {
		t.Fatalf("fired at once: %s", kinds(fs))
	}
	c.add(3 * time.Second)
	if fs := apply(t, e, sample("m", "v", "240", 2)); len(fs) != 0 {
		t.Fatalf("spike fired: %s", kinds(fs))
	}
	c.add(10 * time.Second)
	if fs := tick(t, e); len(fs) != 0 {
		t.Fatalf("spike fired on tick: %s", kinds(fs))
	}
	if st := e.Stats(); st.States != 0 {
		t.Fatalf("state kept after the spike: %+v", st)
	}
	// Held for 5 s: fires from the ticker, without a new sample.
	apply(t, e, sample("m", "v", "260", 3))
	c.add(4 * time.Second)
	if fs := tick(t, e); len(fs) != 0 {
		t.Fatalf("fired before the on-delay: %s", kinds(fs))
	}
	c.add(time.Second)
	fs := tick(t, e)
	if kinds(fs) != "hv:raise " || fs[0].Event.ID != "data:samples/3-0/v#raise" || fs[0].Event.Level != alerting.LevelCritical {
		t.Fatalf("on-delay: %s %+v", kinds(fs), fs)
	}
	// Back below for 4 s, then above again: no clear (off-delay 10 s).
	apply(t, e, sample("m", "v", "240", 4))
	c.add(4 * time.Second)
	if fs := apply(t, e, sample("m", "v", "255", 5)); len(fs) != 0 {
		t.Fatalf("%s", kinds(fs))
	}
	apply(t, e, sample("m", "v", "240", 6))
	c.add(9 * time.Second)
	if fs := tick(t, e); len(fs) != 0 {
		t.Fatalf("cleared before the off-delay: %s", kinds(fs))
	}
	c.add(time.Second)
	fs = apply(t, e, sample("m", "v", "241", 7))
	if kinds(fs) != "hv:clear " || fs[0].Event.Fields["state"] != "clear" || fs[0].Event.Value != "241" {
		t.Fatalf("off-delay: %s %+v", kinds(fs), fs)
	}
	if st := e.Stats(); st.States != 0 {
		t.Fatalf("state kept after the clear: %+v", st)
	}
}

func TestChanged(t *testing.T) {
	c := &clock{time.Unix(1000, 0)}
	e := newEngine(c,
		alerting.Rule{ID: "now", Events: []string{alerting.Data}, Model: "m", Point: "mode", Condition: &alerting.Condition{Op: "changed"}},
		alerting.Rule{ID: "slow", Events: []string{alerting.Data}, Model: "m", Point: "mode", Condition: &alerting.Condition{Op: "changed", OnDelay: dur(5 * time.Second)}})
	if fs := apply(t, e, sample("m", "mode", "1", 1)); len(fs) != 0 {
		t.Fatalf("baseline fired: %s", kinds(fs))
	}
	if fs := apply(t, e, sample("m", "mode", "1.0", 2)); len(fs) != 0 {
		t.Fatalf("same number fired: %s", kinds(fs))
	}
	fs := apply(t, e, sample("m", "mode", "2", 3))
	if kinds(fs) != "now:notify " || fs[0].Event.Fields["previous"] != "1" {
		t.Fatalf("%s %+v", kinds(fs), fs)
	}
	c.add(2 * time.Second)
	fs = apply(t, e, sample("m", "mode", "1", 4)) // back within the on-delay: slow does not fire
	if kinds(fs) != "now:notify " {
		t.Fatalf("%s", kinds(fs))
	}
	c.add(10 * time.Second)
	if fs := tick(t, e); len(fs) != 0 {
		t.Fatalf("%s", kinds(fs))
	}
	apply(t, e, sample("m", "mode", "3", 5))
	c.add(5 * time.Second)
	fs = tick(t, e)
	if kinds(fs) != "slow:notify " || fs[0].Event.Value != "3" || fs[0].Event.Fields["previous"] != "1" {
		t.Fatalf("%s %+v", kinds(fs), fs)
	}
}

func TestRenotifyAndMax(t *testing.T) {
	c := &clock{time.Unix(1000, 0)}
	e := newEngine(c,
		alerting.Rule{ID: "alarm", Events: []string{alerting.AlarmRaised}, RenotifyEvery: dur(time.Minute), MaxNotifications: 3},
		alerting.Rule{ID: "hv", Events: []string{alerting.Data}, Model: "m", Point: "v", Condition: &alerting.Condition{Op: ">", Value: 1}, RenotifyEvery: dur(time.Minute), MaxNotifications: 2},
		alerting.Rule{ID: "offline", Events: []string{alerting.DeviceOffline}, RenotifyEvery: dur(time.Minute)})
	raise := alerting.Event{ID: "alarm:events/1-0", Type: alerting.AlarmRaised, Model: "m", Point: "v"}
	got := kinds(apply(t, e, raise, sample("m", "v", "5", 1), alerting.Event{ID: "comsrv:events/1-0", Type: alerting.DeviceOffline, Channel: "DTU1"}))
	if got != "alarm:notify hv:raise offline:notify " {
		t.Fatalf("%s", got)
	}
	var all string
	for range 4 {
		c.add(time.Minute)
		all += "| " + kinds(tick(t, e))
	}
	want := "| alarm:renotify hv:renotify offline:renotify | alarm:renotify offline:renotify | offline:renotify | offline:renotify "
	if all != want {
		t.Fatalf("re-notifications\n got %s\nwant %s", all, want)
	}
	// The clear ends the activation; a new raise starts counting again.
	apply(t, e, alerting.Event{ID: "alarm:events/2-0", Type: alerting.AlarmCleared, Model: "m", Point: "v"},
		alerting.Event{ID: "comsrv:events/2-0", Type: alerting.DeviceOnline, Channel: "DTU1"})
	c.add(time.Minute)
	if fs := tick(t, e); len(fs) != 0 {
		t.Fatalf("renotified after the clear: %s", kinds(fs))
	}
	apply(t, e, raise)
	c.add(time.Minute)
	if fs := tick(t, e); kinds(fs) != "alarm:renotify " || fs[0].Event.ID != "alarm:events/1-0#renotify-1" {
		t.Fatalf("%s %+v", kinds(fs), fs)
	}
}

func TestFailedDeliveryUndone(t *testing.T) {
	c := &clock{time.Unix(1000, 0)}
	e := newEngine(c,
		alerting.Rule{ID: "hv", Events: []string{alerting.Data}, Model: "m", Point: "v", Condition: &alerting.Condition{Op: ">", Value: 1}},
		alerting.Rule{ID: "alarm", Events: []string{alerting.AlarmRaised}, MaxNotifications: 1})
	evs := []alerting.Event{sample("m", "v", "5", 1), {ID: "a/1", Type: alerting.AlarmRaised, Model: "m", Point: "v"}}
	fail := errors.New("queue down")
	if err := e.Apply(evs, func([]Fire) error { return fail }); !errors.Is(err, fail) {
		t.Fatalf("err %v", err)
	}
	if got := kinds(apply(t, e, evs...)); got != "hv:raise alarm:notify " {
		t.Fatalf("after a failed delivery: %q", got)
	}
	if got := kinds(apply(t, e, evs...)); got != "alarm:notify(max_notifications) " {
		t.Fatalf("after a delivered one: %q", got)
	}
}

func TestShelvedAndCap(t *testing.T) {
	c := &clock{time.Unix(1000, 0)}
	shelvedUntil := c.t.Add(time.Minute)
	e := New(Options{Now: c.now, MaxStates: 10, Shelved: func(ev alerting.Event, now time.Time) bool {
		return ev.Model == "m" && now.Before(shelvedUntil)
	}})
	e.SetRules([]alerting.Rule{{ID: "hv", Enabled: true, Events: []string{alerting.Data}, Condition: &alerting.Condition{Op: ">", Value: 1}, RenotifyEvery: dur(time.Minute)}})
	if got := kinds(apply(t, e, sample("m", "v", "5", 1))); got != "hv:raise(shelved) " {
		t.Fatalf("%q", got)
	}
	c.add(time.Minute)
	if got := kinds(tick(t, e)); got != "hv:renotify " {
		t.Fatalf("after the shelving: %q", got)
	}
	for i := range 20 {
		apply(t, e, sample("n", fmt.Sprint("p", i), "5", 2))
	}
	if st := e.Stats(); st.States != 10 || st.Dropped != 11 {
		t.Fatalf("%+v", st)
	}
}

func TestSetRulesKeepsUnchanged(t *testing.T) {
	c := &clock{time.Unix(1000, 0)}
	r := alerting.Rule{ID: "hv", Enabled: true, Events: []string{alerting.Data}, Condition: &alerting.Condition{Op: ">", Value: 1}}
	e := newEngine(c, r)
	apply(t, e, sample("m", "v", "5", 1))
	if e.SetRules([]alerting.Rule{r}) || e.Stats().States != 1 {
		t.Fatal("an unchanged rule lost its state")
	}
	r.Condition = &alerting.Condition{Op: ">", Value: 2}
	if !e.SetRules([]alerting.Rule{r}) || e.Stats().States != 0 {
		t.Fatal("a changed rule kept its state")
	}
}

// TestSeed: alarms active before a restart are followed without a second
// first notification; re-notification resumes a full interval later.
func TestSeed(t *testing.T) {
	c := &clock{time.Unix(1000, 0)}
	e := newEngine(c, alerting.Rule{ID: "alarm", Events: []string{alerting.AlarmRaised}, Model: "m", RenotifyEvery: dur(time.Minute), MaxNotifications: 2})
	e.Seed([]alerting.Event{{ID: "alarm:active/m:v/1", Type: alerting.AlarmRaised, Model: "m", Point: "v"}, {ID: "x", Type: alerting.AlarmRaised, Model: "other", Point: "v"}})
	if st := e.Stats(); st.Active != 1 {
		t.Fatalf("%+v", st)
	}
	c.add(59 * time.Second)
	if fs := tick(t, e); len(fs) != 0 {
		t.Fatalf("%s", kinds(fs))
	}
	c.add(time.Second)
	if got := kinds(tick(t, e)); got != "alarm:renotify " {
		t.Fatalf("%q", got)
	}
	c.add(time.Minute)
	if fs := tick(t, e); len(fs) != 0 {
		t.Fatalf("past max_notifications: %s", kinds(fs))
	}
}
