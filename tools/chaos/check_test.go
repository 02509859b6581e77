package main

import (
	"bytes"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/voltedge/voltedge/internal/contract"
	"github.com/voltedge/voltedge/internal/keys"
	"github.com/voltedge/voltedge/internal/mappings"
	"github.com/voltedge/voltedge/internal/rig"
)

func TestParseFaults(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want []string
		err  bool
	}{
		{"", faultOrder, false},
		{"all", faultOrder, false},
		{"3,1", []string{faultRedis, faultComsrv}, false},
		{"comsrv, links", []string{faultLinks, faultComsrv}, false},
		{"2,links", []string{faultLinks}, false},
		{"4", nil, true},
		{"redis,power", nil, true},
	} {
		got, err := parseFaults(tc.in)
		if (err != nil) != tc.err || !slices.Equal(got, tc.want) {
			t.Errorf("parseFaults(%q) = %v, %v; want %v (error %v)", tc.in, got, err, tc.want, tc.err)
		}
	}
}

func TestParseFlags(t *testing.T) {
	o, err := parseFlags([]string{"-n", "100", "-faults", "links", "-timeout", "20s"})
	if err != nil || o.n != 100 || !slices.Equal(o.faults, []string{faultLinks}) || o.timeout != 20*time.Second || o.commands != 200 {
		t.Fatalf("parseFlags = %+v, %v", o, err)
	}
	for _, args := range [][]string{{"-n", "0"}, {"-timeout", "10ms"}, {"-commands", "0"}, {"extra"}, {"-faults", "x"}} {
		if _, err := parseFlags(args); err == nil {
			t.Errorf("parseFlags(%q) accepted", args)
		}
	}
}

func TestHashDiff(t *testing.T) {
	want := map[string]string{"a": "1", "b": "2", "c": "3"}
	got := map[string]string{"a": "1", "b": "9", "d": "4"}
	if m, c := hashDiff(want, got); m != 1 || c != 1 {
		t.Errorf("hashDiff = %d missing, %d changed; want 1, 1", m, c)
	}
	if m, c := hashDiff(want, nil); m != 3 || c != 0 {
		t.Errorf("hashDiff against nothing = %d, %d; want 3, 0", m, c)
	}
}

func ev(typ, ch string) map[string]string {
	return map[string]string{contract.EventType: typ, contract.EventChannel: ch}
}

func TestEventCount(t *testing.T) {
	events := []map[string]string{
		ev(contract.EventOffline, "1"), ev(contract.EventOffline, "2"), ev(contract.EventOffline, "2"),
		ev(contract.EventOnline, "3"), ev(contract.EventOffline, "other"),
	}
	missing, dup := eventCount(events, contract.EventOffline, []string{"1", "2", "3"})
	if !slices.Equal(missing, []string{"3"}) || !slices.Equal(dup, []string{"2"}) {
		t.Errorf("eventCount = missing %v, duplicated %v", missing, dup)
	}
	if got := withEvent(events, contract.EventOffline, []string{"1", "2", "3"}); !slices.Equal(got, []string{"1", "2"}) {
		t.Errorf("withEvent = %v", got)
	}
}

func TestTallyCommands(t *testing.T) {
	ids := []string{"1", "2", "3", "4", "5", "6", "7"}
	entries := map[string][]string{
		"1": {"ok"},
		"2": {"unknown"},
		"3": {"ok", "ok"},     // answered twice
		"4": {"failed"},       // no hash
		"6": {"timeout"},      // a status a crash does not explain
		"7": {"ok", "failed"}, // twice, and differently
	}
	hashes := map[string]string{"1": "ok", "2": "unknown", "3": "ok", "5": "expired", "6": "timeout", "7": "failed"}
	got := tallyCommands(append(ids, "8"), entries, hashes)
	check := func(name string, got, want []string) {
		t.Helper()
		if !slices.Equal(got, want) {
			t.Errorf("%s = %v; want %v", name, got, want)
		}
	}
	check("Unanswered", got.Unanswered, []string{"8"})
	check("Duplicated", got.Duplicated, []string{"3", "7"})
	check("Inconsistent", got.Inconsistent, []string{"4", "5", "7"})
	check("Unexpected", got.Unexpected, []string{"6"})
	if s := got.statusCounts(); s != "failed 2, ok 2, expired 1, timeout 1, unknown 1" {
		t.Errorf("statusCounts = %q", s)
	}
	if n := got.answered(8); n != 7 {
		t.Errorf("answered = %d; want 7", n)
	}
	if s := (commandTally{}).statusCounts(); s != "none" {
		t.Errorf("empty statusCounts = %q", s)
	}
}

func TestSome(t *testing.T) {
	if s := some([]string{"a", "b"}); s != "a, b" {
		t.Errorf("some = %q", s)
	}
	if s := some([]string{"1", "2", "3", "4", "5", "6", "7"}); s != "1, 2, 3, 4, 5 … (+2)" {
		t.Errorf("some = %q", s)
	}
}

func TestReport(t *testing.T) {
	clean := report{Name: "fault 2 links", What: "w", Bound: 30 * time.Second, Recovered: true, Recovery: 1500 * time.Millisecond,
		Rows: []row{{Check: "status offline", Held: 500 * time.Millisecond}, {Check: "events", Static: true}}}
	cmds := report{Name: "fault 3 comsrv", What: "w", Bound: 30 * time.Second, Unanswered: 5,
		Rows: []row{{Check: "commands answered", Wrong: 5, Never: true, Detail: "71, 72"}, {Check: "answered more than once", Wrong: 2, Static: true}}}
	broken := report{Name: "fault 1 redis", Err: errors.New("boom")}
	var b bytes.Buffer
	clean.write(&b)
	cmds.write(&b)
	out := b.String()
	for _, want := range []string{
		"| status offline | 0 | 0.5 s |  |", "| events | 0 | - |  |", "lost/wrong: 0\nrecovery: 1.5 s",
		"| commands answered | 5 | not within 30.0 s | 71, 72 |", "lost/wrong: 7\nrecovery: not within 30.0 s",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("report lacks %q:\n%s", want, out)
		}
	}
	if w := cmds.wrong(); w != 2 {
		t.Errorf("wrong = %d; want 2 (unanswered apart)", w)
	}
	if line, failed := summary([]report{clean}); failed || line != "chaos: 0 wrong states, 0 unanswered commands" {
		t.Errorf("summary = %q, %v", line, failed)
	}
	if line, failed := summary([]report{clean, cmds, broken}); !failed || line != "chaos: 3 wrong states, 5 unanswered commands" {
		t.Errorf("summary = %q, %v", line, failed)
	}
}

// The generated mapping file is one the mappings package accepts, with a
// control for every channel and the registry channel mapped.
func TestExtraMappings(t *testing.T) {
	points := [][2]string{{"10001", "voltage"}, {"40001", "setpoint"}}
	text := rig.MapRange(1, 20, points) + extraMappings(20, "DTU21", "meter21", points)
	set, err := mappings.Parse("gen.toml", []byte(text))
	if err != nil {
		t.Fatalf("parse:\n%s\n%v", text, err)
	}
	if got := set.Reverse[keys.PointRef("meter20", controlName)]; got != keys.PointRef("20", controlPoint) {
		t.Errorf("control of meter20 = %q", got)
	}
	if got := set.Forward[keys.PointRef("DTU21", "10001")]; got != keys.PointRef("meter21", "voltage") {
		t.Errorf("registry channel mapping = %q", got)
	}
	if len(set.Thresholds) != limitModels || len(set.Low) != limitModels || len(set.Hysteresis) != limitModels {
		t.Errorf("limits: %d %d %d; want %d each", len(set.Thresholds), len(set.Low), len(set.Hysteresis), limitModels)
	}
}
