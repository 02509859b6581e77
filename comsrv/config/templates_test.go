package config

import (
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// A template without [[task]] loads: its points are planned, with the
// default [plan].
func TestTemplateWithoutTasks(t *testing.T) {
	dir := tree(t, map[string]string{"templates/meter.toml": "[[point]]\nid = \"1\"\naddress = 7\n"})
	cfg, err := Load(filepath.Join(dir, "comsrv.toml"))
	if err != nil {
		t.Fatal(err)
	}
	tpl := cfg.TemplateByID["meter"]
	want := Plan{Interval: tpl.Plan.Interval, MaxGap: 10, MaxRegisters: 125, MaxBits: 2000}
	if len(tpl.Tasks) != 0 || tpl.Plan != want || tpl.Plan.Interval.Duration != time.Second {
		t.Fatalf("template %+v", tpl)
	}
}

func TestPlanExplicitValues(t *testing.T) {
	dir := tree(t, map[string]string{"templates/meter.toml": `[plan]
interval = "250ms"
max_gap = 0
max_registers = 4
max_bits = 1
one_request_per_point = true
write_multiple = true
[[point]]
id = "1"
type = "float64"
`})
	cfg, err := Load(filepath.Join(dir, "comsrv.toml"))
	if err != nil {
		t.Fatal(err)
	}
	pl := cfg.TemplateByID["meter"].Plan
	if pl.Interval.Duration != 250*time.Millisecond || pl.MaxGap != 0 || pl.MaxRegisters != 4 || pl.MaxBits != 1 ||
		!pl.OnePerPoint || !pl.WriteMultiple {
		t.Fatalf("plan %+v", pl)
	}
}

// Points that no task covers used to be refused; now they are planned.
func TestUncoveredPointsLoad(t *testing.T) {
	for name, points := range map[string]string{
		"outside":       "[[point]]\nid = \"10001\"\naddress = 2100\n",
		"partly inside": "[[point]]\nid = \"2\"\naddress = 9\ntype = \"float32\"\n",
		"other area":    "[[point]]\nid = \"2\"\narea = \"input\"\naddress = 1\n",
		"other slave":   "[[point]]\nid = \"2\"\nslave = 2\naddress = 1\n",
		"coil":          "[[point]]\nid = \"2\"\narea = \"coil\"\ntype = \"bool\"\naddress = 65535\n",
		"last register": "[[point]]\nid = \"2\"\ntype = \"uint64\"\naddress = 65532\n",
	} {
		t.Run(name, func(t *testing.T) {
			dir := tree(t, map[string]string{"templates/meter.toml": baseTemplate + points})
			if _, err := Load(filepath.Join(dir, "comsrv.toml")); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestPlanErrors(t *testing.T) {
	tpl := func(text string) map[string]string { return map[string]string{"templates/meter.toml": text} }
	const pt = "[[point]]\nid = \"1\"\n"
	tests := []struct {
		name  string
		files map[string]string
		want  string
	}{
		{"empty", tpl(""),
			`templates/meter.toml:1:1: key "point": a template needs at least one [[point]] (or a [[task]])`},
		{"gap negative", tpl("[plan]\nmax_gap = -1\n" + pt),
			`templates/meter.toml:2:11: key "plan.max_gap": -1 is out of range (0..2000)`},
		{"gap large", tpl("[plan]\nmax_gap = 2001\n" + pt),
			`templates/meter.toml:2:11: key "plan.max_gap": 2001 is out of range (0..2000)`},
		{"registers zero", tpl("[plan]\nmax_registers = 0\n" + pt),
			`templates/meter.toml:2:17: key "plan.max_registers": 0 is out of range (1..125)`},
		{"registers 126", tpl("[plan]\nmax_registers = 126\n" + pt),
			`templates/meter.toml:2:17: key "plan.max_registers": 126 is out of range (1..125)`},
		{"bits 2001", tpl("[plan]\nmax_bits = 2001\n" + pt),
			`templates/meter.toml:2:12: key "plan.max_bits": 2001 is out of range (1..2000)`},
		{"bits zero", tpl("[plan]\nmax_bits = 0\n" + pt),
			`templates/meter.toml:2:12: key "plan.max_bits": 0 is out of range (1..2000)`},
		{"interval", tpl("[plan]\ninterval = \"9ms\"\n" + pt),
			`templates/meter.toml:2:12: key "plan.interval": must be at least 10ms`},
		{"misspelt key", tpl("[plan]\nmax_registrs = 4\n" + pt),
			`templates/meter.toml:2:1: key "plan.max_registrs": unknown key (did you mean "max_registers"?)`},
		{"wrong type", tpl("[plan]\nwrite_multiple = 1\n" + pt),
			`templates/meter.toml:2:18: key "plan.write_multiple"`},
		{"point too wide for requests", tpl("[plan]\nmax_registers = 2\n[[point]]\nid = \"7\"\ntype = \"float64\"\n"),
			`templates/meter.toml:2:17: key "plan.max_registers": 2 is too small for point 7 (float64, 4 registers), which no [[task]] covers`},
		{"past the address space", tpl("[[point]]\nid = \"7\"\naddress = 65535\ntype = \"float32\"\n"),
			`templates/meter.toml:3:11: key "point[0].address": point 7 at address 65535 needs 2 registers and runs past address 65535`},
		{"reserved task name", tpl("[[task]]\nname = \"auto:s1:fc3:0+1\"\nfunction = 3\ncount = 1\n"),
			`templates/meter.toml:2:8: key "task[0].name": "auto:s1:fc3:0+1": names starting with "auto:" are kept for planned requests`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := tree(t, tc.files)
			_, err := Load(filepath.Join(dir, "comsrv.toml"))
			wantErr(t, err, tc.want)
		})
	}
}

// A wide point that an explicit task covers is not planned, so a small
// plan.max_registers does not concern it.
func TestWidePointCoveredByTask(t *testing.T) {
	dir := tree(t, map[string]string{"templates/meter.toml": "[plan]\nmax_registers = 1\n[[task]]\nfunction = 3\ncount = 4\n[[point]]\nid = \"7\"\ntype = \"float64\"\n"})
	if _, err := Load(filepath.Join(dir, "comsrv.toml")); err != nil {
		t.Fatal(err)
	}
}

// A point's unit, description and control limits load as written.
func TestPointMetadata(t *testing.T) {
	dir := tree(t, map[string]string{"templates/meter.toml": "[[point]]\nid = \"1\"\ntype = \"int16\"\nscale = 0.1\n" +
		"unit = \"°C\"\ndescription = \"Oil temperature, top\"\nmin = -20\nmax = 120.5\n[[point]]\nid = \"2\"\n"})
	cfg, err := Load(filepath.Join(dir, "comsrv.toml"))
	if err != nil {
		t.Fatal(err)
	}
	ps := cfg.TemplateByID["meter"].Points
	p := ps[0]
	if p.Unit != "°C" || p.Description != "Oil temperature, top" || p.Min == nil || *p.Min != -20 || p.Max == nil || *p.Max != 120.5 {
		t.Fatalf("point %+v", p)
	}
	if q := ps[1]; q.Unit != "" || q.Description != "" || q.Min != nil || q.Max != nil {
		t.Fatalf("point without metadata %+v", q)
	}
}

func TestPointMetadataErrors(t *testing.T) {
	point := func(extra string) map[string]string {
		return map[string]string{"templates/meter.toml": "[[point]]\nid = \"1\"\n" + extra}
	}
	for _, tc := range []struct{ name, extra, want string }{
		{"unit too long", "unit = \"" + strings.Repeat("k", 33) + "\"\n",
			`templates/meter.toml:3:8: key "point[0].unit": 33 bytes is too long (at most 32)`},
		{"unit control", "unit = \"k\\tW\"\n",
			`templates/meter.toml:3:8: key "point[0].unit": "k\tW" contains a control character at byte 1`},
		{"description too long", "description = \"" + strings.Repeat("d", 257) + "\"\n",
			`templates/meter.toml:3:15: key "point[0].description": 257 bytes is too long (at most 256)`},
		{"description newline", "description = \"a\\nb\"\n",
			`templates/meter.toml:3:15: key "point[0].description": "a\nb" contains a control character at byte 1`},
		{"min above max", "min = 10\nmax = 5\n",
			`templates/meter.toml:3:7: key "point[0].min": 10 is greater than max 5`},
		{"min below type", "type = \"uint16\"\nmin = -1\n",
			`templates/meter.toml:4:7: key "point[0].min": -1 is outside what type uint16 can hold here (0..65535)`},
		{"max above scaled type", "type = \"int16\"\nscale = 0.1\nmax = 4000\n",
			`templates/meter.toml:5:7: key "point[0].max": 4000 is outside what type int16 can hold here (-3276.8..3276.7)`},
		{"bool max", "area = \"coil\"\ntype = \"bool\"\nmax = 2\n",
			`templates/meter.toml:5:7: key "point[0].max": 2 is outside what type bool can hold here (0..1)`},
		{"min not a number", "min = \"low\"\n", `templates/meter.toml:3:7: key "point[0].min": expected a number`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := tree(t, point(tc.extra))
			_, err := Load(filepath.Join(dir, "comsrv.toml"))
			wantErr(t, err, tc.want)
		})
	}
}
