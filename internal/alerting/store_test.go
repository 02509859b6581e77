package alerting

import (
	"context"
	"encoding/json"
	"errors"
	"testing"

	"github.com/voltedge/voltedge/internal/keys"
	"github.com/voltedge/voltedge/internal/redistest"
)

// TestRuleStore: PutRule, GetRule, LoadRules, DeleteRule and ReadRuns on a
// real Redis; file rules are refused, invalid ones left out of LoadRules.
func TestRuleStore(t *testing.T) {
	srv := redistest.Start(t)
	c := srv.Client(t)
	ctx := context.Background()
	file, _ := json.Marshal(Rule{ID: "f", Enabled: true, Events: []string{AlarmRaised}, Origin: OriginFile})
	redistest.Do(t, c, "HSET", keys.AlarmRules, "f", string(file), "broken", "{", "other", `{"id":"x","events":["alarm_raised"]}`)

	if err := PutRule(ctx, c, Rule{ID: "a", Enabled: true, Events: []string{"custom:*"}, Targets: []string{"ops"}}); err != nil {
		t.Fatal(err)
	}
	if err := PutRule(ctx, c, Rule{ID: "b", Events: nil}); err == nil {
		t.Fatal("an invalid rule was stored")
	}
	if err := PutRule(ctx, c, Rule{ID: "f", Enabled: true, Events: []string{AlarmCleared}}); !errors.Is(err, ErrFileRule) {
		t.Fatalf("changing a file rule: %v", err)
	}
	r, ok, err := GetRule(ctx, c, "a")
	if err != nil || !ok || r.Origin != OriginAPI || !r.Enabled {
		t.Fatalf("%+v %v %v", r, ok, err)
	}
	rules, bad, err := LoadRules(ctx, c)
	if err != nil || len(rules) != 2 || rules[0].ID != "a" || rules[1].ID != "f" || len(bad) != 2 || bad["broken"] == nil || bad["other"] == nil {
		t.Fatalf("%+v %v %v", rules, bad, err)
	}
	run, _ := json.Marshal(Run{Event: Event{ID: "e"}, TS: 1, Kind: RunNotify})
	redistest.Do(t, c, "LPUSH", keys.AlarmRuleRuns("a"), string(run), string(run))
	if runs, err := ReadRuns(ctx, c, "a", 1); err != nil || len(runs) != 1 || runs[0].Event.ID != "e" {
		t.Fatalf("%+v %v", runs, err)
	}
	if _, err := DeleteRule(ctx, c, "f"); !errors.Is(err, ErrFileRule) {
		t.Fatalf("deleting a file rule: %v", err)
	}
	if ok, err := DeleteRule(ctx, c, "a"); !ok || err != nil {
		t.Fatalf("%v %v", ok, err)
	}
	if ok, err := DeleteRule(ctx, c, "a"); ok || err != nil {
		t.Fatalf("second delete: %v %v", ok, err)
	}
	if n, _ := c.Do(ctx, c.B().Exists().Key(keys.AlarmRuleRuns("a")).Build()).AsInt64(); n != 0 {
		t.Fatal("run log kept")
	}
}
