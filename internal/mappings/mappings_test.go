package mappings

import (
	"context"
	"maps"
	"slices"
	"strings"
	"testing"

	"github.com/redis/rueidis"

	"github.com/voltedge/voltedge/internal/keys"
	"github.com/voltedge/voltedge/internal/redistest"
)

const demoFile = "../../config/mappings/demo.toml"

func TestLoadDemo(t *testing.T) {
	s, err := Load(demoFile)
	if err != nil {
		t.Fatal(err)
	}
	checks := map[string]string{
		"1001:10001": "power_meter:voltage",
		"1001:10002": "power_meter:current",
		"1001:10003": "power_meter:power",
		"1002:10001": "power_meter_2:voltage",
		"1003:10005": "power_meter_3:energy",
	}
	for k, v := range checks {
		if s.Forward[k] != v {
			t.Errorf("Forward[%s] = %q, want %q", k, s.Forward[k], v)
		}
	}
	if s.Reverse["power_meter:setpoint"] != "1001:40001" || s.Reverse["power_meter:switch"] != "1001:30001" {
		t.Errorf("Reverse = %v", s.Reverse)
	}
	if s.Thresholds["power_meter:voltage"] != 250 || s.Thresholds["power_meter:current"] != 100 ||
		s.Low["power_meter:voltage"] != 200 || s.Hysteresis["power_meter:voltage"] != 2 {
		t.Errorf("limits %v %v %v", s.Thresholds, s.Low, s.Hysteresis)
	}
	if !maps.Equal(s.Units, map[string]string{"power_meter:switch": "on/off", "power_meter_3:energy": "MWh"}) {
		t.Errorf("units %v", s.Units)
	}
	if len(s.Descriptions) != 2 || s.Descriptions["power_meter_3:energy"] != "Feeder to hall 3, active energy imported" {
		t.Errorf("descriptions %v", s.Descriptions)
	}
}

// Units and descriptions of a [[map_range]] apply to each model of the
// range, also to a point name with {n}; the same text set twice is fine.
func TestRangeUnits(t *testing.T) {
	s, err := Parse("r.toml", []byte(`
[[map_range]]
first = 1
last = 3
channel = "{n}"
model = "meter{n}"
points = { "10001" = "voltage", "10002" = "aux{n}" }
units = { "voltage" = "V", "aux{n}" = "°C" }
descriptions = { "aux{n}" = "Auxiliary sensor" }

[[map]]
channel = "9"
model = "meter1"
points = { "10001" = "voltage" }
units = { "voltage" = "V" }
`))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{}
	for _, n := range []string{"1", "2", "3"} {
		want["meter"+n+":voltage"] = "V"
		want["meter"+n+":aux"+n] = "°C"
	}
	if !maps.Equal(s.Units, want) {
		t.Errorf("units %v, want %v", s.Units, want)
	}
	if len(s.Descriptions) != 3 || s.Descriptions["meter2:aux2"] != "Auxiliary sensor" {
		t.Errorf("descriptions %v", s.Descriptions)
	}
}

func TestRanges(t *testing.T) {
	s, err := Parse("r.toml", []byte(`
[[map_range]]
first = 1
last = 1500
channel = "{n}"
model = "meter{n:04}"
points = { "10001" = "voltage", "10002" = "current" }

[[control_range]]
first = 1
last = 3
model = "meter{n:04}"
control = "setpoint"
channel = "{n}"
point = "40001"

[[map]]
channel = "{n}"
model = "literal"
points = { "p" = "q" }
`))
	if err != nil {
		t.Fatal(err)
	}
	if len(s.Forward) != 3001 || s.Forward["7:10002"] != "meter0007:current" || s.Forward["1500:10001"] != "meter1500:voltage" || s.Forward["{n}:p"] != "literal:q" {
		t.Fatalf("forward: %d entries, 7:10002 → %q", len(s.Forward), s.Forward["7:10002"])
	}
	want := map[string]string{"meter0001:setpoint": "1:40001", "meter0002:setpoint": "2:40001", "meter0003:setpoint": "3:40001"}
	if !maps.Equal(s.Reverse, want) {
		t.Fatalf("reverse: %v", s.Reverse)
	}
}

func TestErrors(t *testing.T) {
	tests := []struct {
		name, doc, want string
	}{
		{"unknown key", "[[map]]\nchannel = \"1\"\nmodel = \"m\"\npoint = { a = \"b\" }\n",
			`e.toml:4:1: key "map[0].point": unknown key (did you mean "points"?)`},
		{"missing model", "[[map]]\nchannel = \"1\"\npoints = { a = \"b\" }\n",
			`e.toml:1:3: key "map[0].model": must be set`},
		{"no points", "[[map]]\nchannel = \"1\"\nmodel = \"m\"\n",
			`e.toml:1:3: key "map[0].points": must list at least one point`},
		{"bad channel", "[[map]]\nchannel = \"1:2\"\nmodel = \"m\"\npoints = { a = \"b\" }\n",
			`e.toml:2:11: key "map[0].channel": "1:2" is not a valid id`},
		{"bad point name", "[[map]]\nchannel = \"1\"\nmodel = \"m\"\npoints = { a = \"b\", c = \"d e\" }\n",
			`e.toml:4:25: key "map[0].points.c": "d e" is not a valid id`},
		{"bad point id", "[[map]]\nchannel = \"1\"\nmodel = \"m\"\n[map.points]\n\"x y\" = \"v\"\n",
			`e.toml:5:9: key "map[0].points.\"x y\"": "x y" is not a valid id`},
		{"duplicate", "[[map]]\nchannel = \"1\"\nmodel = \"m\"\npoints = { a = \"b\" }\n[[map]]\nchannel = \"1\"\nmodel = \"n\"\npoints = { a = \"c\" }\n",
			`e.toml:8:12: key "map[1].points.a": channel point "1:a" is already mapped at e.toml:1:3`},
		{"range without n", "[[map_range]]\nfirst = 1\nlast = 2\nchannel = \"c\"\nmodel = \"m{n}\"\npoints = { a = \"b\" }\n",
			`e.toml:4:11: key "map_range[0].channel": must contain {n} or {n:0W}`},
		{"range too big", "[[map_range]]\nfirst = 1\nlast = 200000\nchannel = \"{n}\"\nmodel = \"m\"\npoints = { a = \"b\" }\n",
			`e.toml:3:8: key "map_range[0].last": range of 200000 entries exceeds the limit of 100000`},
		{"range bad expansion", "[[map_range]]\nfirst = 1\nlast = 2\nchannel = \"{n}\"\nmodel = \"m:{n}\"\npoints = { a = \"b\" }\n",
			`e.toml:5:9: key "map_range[0].model": expands to "m:1" for n=1, which is not a valid id`},
		{"duplicate control", "[[control]]\nmodel = \"m\"\ncontrol = \"c\"\nchannel = \"1\"\npoint = \"2\"\n[[control]]\nmodel = \"m\"\ncontrol = \"c\"\nchannel = \"1\"\npoint = \"3\"\n",
			`e.toml:8:11: key "control[1].control": control "m:c" is already mapped at e.toml:1:3`},
		{"control missing point", "[[control]]\nmodel = \"m\"\ncontrol = \"c\"\nchannel = \"1\"\n",
			`e.toml:1:3: key "control[0].point": must be set`},
		{"threshold ref", "[thresholds]\n\"voltage\" = 3\n",
			`e.toml:2:1: key "thresholds.voltage": "voltage" is not a "model:point" reference`},
		{"threshold type", "[thresholds]\n\"m:v\" = \"high\"\n",
			`e.toml:2:9: key "thresholds.\"m:v\"": expected a number, found a string`},
		{"threshold nan", "[thresholds]\n\"m:v\" = nan\n",
			`e.toml:2:9: key "thresholds.\"m:v\"": must be a finite number`},
		{"low above high", "[thresholds]\n\"m:v\" = 3\n[low]\n\"m:v\" = 5\n",
			`e.toml:4:9: key "low.\"m:v\"": low limit 5 is above the high limit 3`},
		{"negative hysteresis", "[hysteresis]\n\"m:v\" = -1\n",
			`e.toml:2:9: key "hysteresis.\"m:v\"": must not be negative`},
		{"unit of another point", "[[map]]\nchannel = \"1\"\nmodel = \"m\"\npoints = { a = \"v\" }\nunits = { w = \"V\" }\n",
			`e.toml:5:11: key "map[0].units.w": "w" is not a model point name of this entry's points`},
		{"unit too long", "[[map]]\nchannel = \"1\"\nmodel = \"m\"\npoints = { a = \"v\" }\nunits = { v = \"" + strings.Repeat("x", 33) + "\" }\n",
			`e.toml:5:15: key "map[0].units.v": 33 bytes is too long (at most 32)`},
		{"description control", "[[map]]\nchannel = \"1\"\nmodel = \"m\"\npoints = { a = \"v\" }\ndescriptions = { v = \"a\\u0007b\" }\n",
			`e.toml:5:22: key "map[0].descriptions.v": "a\ab" contains a control character at byte 1`},
		{"description too long", "[[map]]\nchannel = \"1\"\nmodel = \"m\"\npoints = { a = \"v\" }\ndescriptions = { v = \"" + strings.Repeat("x", 257) + "\" }\n",
			`e.toml:5:22: key "map[0].descriptions.v": 257 bytes is too long (at most 256)`},
		{"unit conflict", "[[map]]\nchannel = \"1\"\nmodel = \"m\"\npoints = { a = \"v\" }\nunits = { v = \"V\" }\n[[map]]\nchannel = \"2\"\nmodel = \"m\"\npoints = { a = \"v\" }\nunits = { v = \"kV\" }\n",
			`e.toml:10:11: key "map[1].units.v": unit of "m:v" is already set to "V" at e.toml:1:3`},
		{"syntax", "[[map]\n",
			`e.toml:2:6: expected end of table array name delimiter`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse("e.toml", []byte(tc.doc))
			if err == nil {
				t.Fatalf("no error, want %s", tc.want)
			}
			for line := range strings.SplitSeq(err.Error(), "\n") {
				if strings.HasPrefix(line, tc.want) {
					return
				}
			}
			t.Fatalf("got:\n%v\nwant a line starting with:\n%s", err, tc.want)
		})
	}
}

func hgetall(t *testing.T, c rueidis.Client, key string) map[string]string {
	t.Helper()
	m, err := redistest.Do(t, c, "HGETALL", key).AsStrMap()
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func TestApply(t *testing.T) {
	srv := redistest.Start(t)
	c := srv.Client(t)
	ctx := context.Background()

	s, err := Load(demoFile)
	if err != nil {
		t.Fatal(err)
	}
	// A field someone else wrote, and one the demo also writes.
	redistest.Do(t, c, "HSET", keys.Mapping, "9999:1", "other:x", "1001:10001", "old:value")
	redistest.Do(t, c, "HSET", keys.AlarmThreshold, "other:x", "5")

	a, err := s.Apply(ctx, c, false)
	if err != nil {
		t.Fatal(err)
	}
	redistest.Do(t, c, "HSET", keys.MappingUnit, "other:x", "bar")
	if a.Forward != len(s.Forward) || a.Reverse != 2 || a.Thresholds != 2 || a.Low != 1 || a.Hysteresis != 1 || a.Units != 2 || a.Descriptions != 2 {
		t.Fatalf("applied %+v", a)
	}
	check := func(stale bool) {
		t.Helper()
		fwd := hgetall(t, c, keys.Mapping)
		if fwd["1001:10001"] != "power_meter:voltage" || fwd["1003:10002"] != "power_meter_3:current" {
			t.Fatalf("mapping %v", fwd)
		}
		if _, ok := fwd["9999:1"]; ok != stale {
			t.Fatalf("stale field present=%v, want %v", ok, stale)
		}
		want := len(s.Forward)
		if stale {
			want++
		}
		if len(fwd) != want {
			t.Fatalf("mapping has %d fields, want %d", len(fwd), want)
		}
		rev := hgetall(t, c, keys.MappingReverse)
		if !maps.Equal(rev, map[string]string{"power_meter:setpoint": "1001:40001", "power_meter:switch": "1001:30001"}) {
			t.Fatalf("reverse %v", rev)
		}
		th := hgetall(t, c, keys.AlarmThreshold)
		if th["power_meter:voltage"] != "250" || th["power_meter:current"] != "100" {
			t.Fatalf("thresholds %v", th)
		}
		if _, ok := th["other:x"]; ok != stale {
			t.Fatalf("stale threshold present=%v", ok)
		}
		if low := hgetall(t, c, keys.AlarmLow); !maps.Equal(low, map[string]string{"power_meter:voltage": "200"}) {
			t.Fatalf("low %v", low)
		}
		if h := hgetall(t, c, keys.AlarmHysteresis); !maps.Equal(h, map[string]string{"power_meter:voltage": "2"}) {
			t.Fatalf("hysteresis %v", h)
		}
		units := map[string]string{"power_meter:switch": "on/off", "power_meter_3:energy": "MWh"}
		if stale {
			units["other:x"] = "bar"
		}
		if u := hgetall(t, c, keys.MappingUnit); !maps.Equal(u, units) {
			t.Fatalf("units %v, want %v", u, units)
		}
		if d := hgetall(t, c, keys.MappingDescription); !maps.Equal(d, s.Descriptions) {
			t.Fatalf("descriptions %v", d)
		}
	}
	check(true)

	// Applying again changes nothing.
	if _, err := s.Apply(ctx, c, false); err != nil {
		t.Fatal(err)
	}
	check(true)

	// Replace removes what the set does not name.
	if _, err := s.Apply(ctx, c, true); err != nil {
		t.Fatal(err)
	}
	check(false)
	if _, err := s.Apply(ctx, c, true); err != nil {
		t.Fatal(err)
	}
	check(false)
}

func TestApplyLargeAndFractions(t *testing.T) {
	srv := redistest.Start(t)
	c := srv.Client(t)
	s, err := Parse("big.toml", []byte(`
[[map_range]]
first = 1
last = 1200
channel = "{n}"
model = "m{n}"
points = { "1" = "a", "2" = "b" }
[thresholds]
"m1:a" = 0.1
"m1:b" = 1e21
"m2:a" = -3.25
`))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Apply(context.Background(), c, true); err != nil {
		t.Fatal(err)
	}
	n, err := redistest.Do(t, c, "HLEN", keys.Mapping).AsInt64()
	if err != nil || n != 2400 {
		t.Fatalf("HLEN = %d %v", n, err)
	}
	th := hgetall(t, c, keys.AlarmThreshold)
	if !maps.Equal(th, map[string]string{"m1:a": "0.1", "m1:b": "1000000000000000000000", "m2:a": "-3.25"}) {
		t.Fatalf("thresholds %v", th)
	}
	// An empty set with replace clears the hashes.
	empty, err := Parse("empty.toml", nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := empty.Apply(context.Background(), c, true); err != nil {
		t.Fatal(err)
	}
	if n, _ := redistest.Do(t, c, "EXISTS", keys.Mapping, keys.AlarmThreshold).AsInt64(); n != 0 {
		t.Fatalf("%d hashes left", n)
	}
}

// TestReservedNames refuses every reserved name as a channel, point or model
// id, point name or control name.
func TestReservedNames(t *testing.T) {
	for _, r := range keys.Reserved() {
		for _, text := range []string{
			`[[map]]` + "\n" + `channel = "` + r + `"` + "\nmodel = \"m\"\npoints = { \"1\" = \"v\" }\n",
			`[[map]]` + "\n" + `channel = "1"` + "\nmodel = \"" + r + "\"\npoints = { \"1\" = \"v\" }\n",
			`[[map]]` + "\n" + `channel = "1"` + "\nmodel = \"m\"\npoints = { \"" + r + "\" = \"v\" }\n",
			`[[map]]` + "\n" + `channel = "1"` + "\nmodel = \"m\"\npoints = { \"1\" = \"" + r + "\" }\n",
			"[[map_range]]\nfirst = 1\nlast = 2\nchannel = \"{n}\"\nmodel = \"m{n}\"\npoints = { \"1\" = \"" + r + "\" }\n",
			"[[control]]\nmodel = \"m\"\ncontrol = \"" + r + "\"\nchannel = \"1\"\npoint = \"2\"\n",
			"[[control]]\nmodel = \"m\"\ncontrol = \"c\"\nchannel = \"" + r + "\"\npoint = \"2\"\n",
			"[thresholds]\n\"" + r + ":v\" = 1\n",
		} {
			if _, err := Parse("r.toml", []byte(text)); err == nil {
				t.Errorf("%q accepted:\n%s", r, text)
			}
		}
	}
}

func TestManyToOne(t *testing.T) {
	s, err := Parse("m.toml", []byte(`
[[map]]
channel = "1"
model = "pm"
points = { "1" = "v", "2" = "i", "3" = "v" }

[[map_range]]
first = 2
last = 3
channel = "{n}"
model = "pm"
points = { "1" = "v", "2" = "p{n}" }
`))
	if err != nil {
		t.Fatal(err)
	}
	got := s.ManyToOne()
	want := []Shared{{Model: "pm:v", Channels: []string{"1:1", "1:3", "2:1", "3:1"}}}
	if len(got) != len(want) || got[0].Model != want[0].Model || !slices.Equal(got[0].Channels, want[0].Channels) {
		t.Errorf("ManyToOne() = %v, want %v", got, want)
	}
}
