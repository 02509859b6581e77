package poll

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/voltedge/voltedge/comsrv/config"
	"github.com/voltedge/voltedge/internal/conf"
	"github.com/voltedge/voltedge/internal/rtu"
)

// loadTemplate validates a template written as TOML, as comsrv loads it.
func loadTemplate(t testing.TB, text string) *config.Template {
	t.Helper()
	file := filepath.Join(t.TempDir(), "t.toml")
	if err := os.WriteFile(file, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	var errs conf.Errors
	tpl, _ := config.LoadTemplate(file, &errs)
	if err := errs.Err(); err != nil {
		t.Fatal(err)
	}
	return tpl
}

// compileText loads a template and compiles it; the plan's invariants are checked.
func compileText(t testing.TB, text string, onePerPoint bool) *Plan {
	t.Helper()
	tpl := loadTemplate(t, text)
	p, err := CompileFor(tpl, onePerPoint)
	if err != nil {
		t.Fatal(err)
	}
	checkPlan(t, tpl, p)
	return p
}

// checkPlan checks what every plan must satisfy: valid prebuilt frames,
// unique task names, decoders inside their responses, every point decoded,
// and the slave summary.
func checkPlan(t testing.TB, tpl *config.Template, p *Plan) {
	t.Helper()
	names := map[string]bool{}
	decoded := map[string]bool{}
	slavePoints := map[uint8][]string{}
	var slaves []uint8
	maxPoints := 0
	for _, task := range p.Tasks {
		if names[task.Name] {
			t.Errorf("task name %s used twice", task.Name)
		}
		names[task.Name] = true
		adu, err := rtu.AppendRequest(nil, task.Req)
		if err != nil || string(adu) != string(task.ADU) {
			t.Errorf("task %s: ADU % x, want % x (%v)", task.Name, task.ADU, adu, err)
		}
		if !slices.Contains(slaves, task.Req.Slave) {
			slaves = append(slaves, task.Req.Slave)
		}
		maxPoints = max(maxPoints, len(task.Decoders))
		for _, d := range task.Decoders {
			end := d.Offset + 1
			if !d.Bits {
				end = d.Offset/2 + d.Codec.Type.Registers()
			}
			if d.Offset < 0 || end > int(task.Req.Quantity) || d.Bits != isBitFunction(task.Req.Function) {
				t.Errorf("task %s (%+v): decoder %+v outside the response", task.Name, task.Req, d)
			}
			if !decoded[d.Point] {
				slavePoints[task.Req.Slave] = append(slavePoints[task.Req.Slave], d.Point)
			}
			decoded[d.Point] = true
		}
	}
	for _, pt := range tpl.Points {
		if !decoded[pt.ID] {
			t.Errorf("point %s is decoded by no task", pt.ID)
		}
	}
	slices.Sort(slaves)
	if !slices.Equal(slaves, p.Slaves) {
		t.Errorf("Slaves %v, want %v", p.Slaves, slaves)
	}
	for s, ids := range slavePoints {
		slices.SortFunc(ids, config.CompareIDs)
		if !slices.Equal(ids, p.SlavePoints[s]) {
			t.Errorf("SlavePoints[%d] = %v, want %v", s, p.SlavePoints[s], ids)
		}
	}
	if len(slavePoints) != len(p.SlavePoints) || maxPoints != p.MaxPoints {
		t.Errorf("SlavePoints %v, MaxPoints %d (want %d)", p.SlavePoints, p.MaxPoints, maxPoints)
	}
}

// requests lists the tasks as "name: decoded point ids".
func requests(p *Plan) []string {
	var out []string
	for _, task := range p.Tasks {
		ids := make([]string, len(task.Decoders))
		for i, d := range task.Decoders {
			ids[i] = d.Point
		}
		out = append(out, task.Name+": "+strings.Join(ids, ","))
	}
	return out
}

// points writes [[point]] tables: each spec is "id area address type" (area
// and type may be "-" for the defaults; slave prefixes as "s2/").
func points(specs ...string) string {
	var b strings.Builder
	for _, s := range specs {
		f := strings.Fields(s)
		slave := "1"
		if i := strings.IndexByte(f[0], '/'); i > 0 {
			slave, f[0] = f[0][1:i], f[0][i+1:]
		}
		fmt.Fprintf(&b, "[[point]]\nid = %q\nslave = %s\naddress = %s\n", f[0], slave, f[2])
		if f[1] != "-" {
			fmt.Fprintf(&b, "area = %q\n", f[1])
		}
		if f[3] != "-" {
			fmt.Fprintf(&b, "type = %q\n", f[3])
			if f[3] == "bool" && (f[1] == "-" || f[1] == "holding" || f[1] == "input") {
				b.WriteString("bit = 0\n")
			}
		}
	}
	return b.String()
}

func wantRequests(t *testing.T, p *Plan, want ...string) {
	t.Helper()
	if got := requests(p); !slices.Equal(got, want) {
		t.Fatalf("requests:\n  %s\nwant:\n  %s", strings.Join(got, "\n  "), strings.Join(want, "\n  "))
	}
}

func TestPlanGaps(t *testing.T) {
	pts := points("a - 0 -", "b - 5 -", "c - 16 -", "d - 27 float32", "e - 40 -")
	// Default max_gap 10: 0..5 (gap 4) together, 16 (gap 10 after 5) joins,
	// 27 (gap 10 after 16) joins, 40 (gap 11 after 28) does not.
	wantRequests(t, compileText(t, pts, false),
		"auto:s1:fc3:0+29: a,b,c,d",
		"auto:s1:fc3:40+1: e")
	wantRequests(t, compileText(t, "[plan]\nmax_gap = 11\n"+pts, false),
		"auto:s1:fc3:0+41: a,b,c,d,e")
	wantRequests(t, compileText(t, "[plan]\nmax_gap = 4\n"+pts, false),
		"auto:s1:fc3:0+6: a,b",
		"auto:s1:fc3:16+1: c",
		"auto:s1:fc3:27+2: d",
		"auto:s1:fc3:40+1: e")
	// max_gap 0 joins neighbours only; points in one register share it.
	wantRequests(t, compileText(t, "[plan]\nmax_gap = 0\n"+points("a - 0 -", "b - 1 -", "c - 3 -", "x - 3 bool", "y - 3 bool"), false),
		"auto:s1:fc3:0+2: a,b",
		"auto:s1:fc3:3+1: c,x,y")
}

func TestPlanPointsOutOfOrder(t *testing.T) {
	p := compileText(t, points("c - 9 float32", "a - 2 -", "b - 0 int64"), false)
	wantRequests(t, p, "auto:s1:fc3:0+11: b,a,c")
	if d := p.Tasks[0].Decoders; d[0].Offset != 0 || d[1].Offset != 4 || d[2].Offset != 18 {
		t.Fatalf("decoders %+v", d)
	}
}

func TestPlanRegisterLimit(t *testing.T) {
	gap := "[plan]\nmax_gap = 200\n"
	wantRequests(t, compileText(t, gap+points("a - 0 -", "b - 124 -"), false),
		"auto:s1:fc3:0+125: a,b")
	wantRequests(t, compileText(t, gap+points("a - 0 -", "b - 125 -"), false),
		"auto:s1:fc3:0+1: a",
		"auto:s1:fc3:125+1: b")
	// A point that would end past the limit starts the next request whole.
	wantRequests(t, compileText(t, gap+points("a - 0 -", "b - 123 float32"), false),
		"auto:s1:fc3:0+125: a,b")
	wantRequests(t, compileText(t, gap+points("a - 0 -", "b - 124 float32"), false),
		"auto:s1:fc3:0+1: a",
		"auto:s1:fc3:124+2: b")
	wantRequests(t, compileText(t, gap+"max_registers = 10\n"+points("a - 0 float64", "b - 4 float64", "c - 8 float64", "d - 12 uint32", "e - 14 -"), false),
		"auto:s1:fc3:0+8: a,b",
		"auto:s1:fc3:8+7: c,d,e")
}

func TestPlanWidePointsNeverSplit(t *testing.T) {
	var specs []string
	for i := 0; i < 100; i++ {
		specs = append(specs, fmt.Sprintf("p%d - %d float64", i, 4*i))
	}
	p := compileText(t, points(specs...), false)
	// 125 registers hold 31 float64 values; the 32nd starts the next request.
	wantN := []int{124, 124, 124, 28}
	if len(p.Tasks) != len(wantN) {
		t.Fatalf("requests %v", requests(p))
	}
	for i, task := range p.Tasks {
		if int(task.Req.Quantity) != wantN[i] || int(task.Req.Address) != 124*i {
			t.Errorf("request %d: %+v", i, task.Req)
		}
	}
}

func TestPlanBitLimit(t *testing.T) {
	gap := "[plan]\nmax_gap = 2000\n"
	wantRequests(t, compileText(t, gap+points("a coil 0 bool", "b coil 1999 bool"), false),
		"auto:s1:fc1:0+2000: a,b")
	wantRequests(t, compileText(t, gap+points("a coil 0 bool", "b coil 2000 bool"), false),
		"auto:s1:fc1:0+1: a",
		"auto:s1:fc1:2000+1: b")
	wantRequests(t, compileText(t, gap+"max_bits = 8\n"+points("a discrete 0 bool", "b discrete 7 bool", "c discrete 8 bool"), false),
		"auto:s1:fc2:0+8: a,b",
		"auto:s1:fc2:8+1: c")
	// The gap counts bits, too.
	wantRequests(t, compileText(t, points("a coil 0 bool", "b coil 11 bool", "c coil 23 bool"), false),
		"auto:s1:fc1:0+12: a,b",
		"auto:s1:fc1:23+1: c")
}

func TestPlanSplitsSlavesAndFunctions(t *testing.T) {
	p := compileText(t, points(
		"s2/h2 holding 10 -", "s2/i2 input 10 -", "s2/c2 coil 10 bool", "s2/d2 discrete 10 bool",
		"h1 holding 10 -", "i1 input 10 -", "c1 coil 10 bool", "d1 discrete 10 bool",
		"s3/h3 holding 11 -",
	), false)
	wantRequests(t, p,
		"auto:s1:fc1:10+1: c1",
		"auto:s1:fc2:10+1: d1",
		"auto:s1:fc3:10+1: h1",
		"auto:s1:fc4:10+1: i1",
		"auto:s2:fc1:10+1: c2",
		"auto:s2:fc2:10+1: d2",
		"auto:s2:fc3:10+1: h2",
		"auto:s2:fc4:10+1: i2",
		"auto:s3:fc3:11+1: h3")
	for _, task := range p.Tasks {
		if task.Trigger != Timer || task.Interval != time.Second {
			t.Errorf("task %s: trigger %v interval %v", task.Name, task.Trigger, task.Interval)
		}
	}
	if !slices.Equal(p.Slaves, []uint8{1, 2, 3}) || !slices.Equal(p.SlavePoints[2], []string{"c2", "d2", "h2", "i2"}) ||
		!slices.Equal(p.SlavePoints[3], []string{"h3"}) {
		t.Fatalf("slaves %v, points %v", p.Slaves, p.SlavePoints)
	}
}

func TestPlanExplicitAndAuto(t *testing.T) {
	text := `[plan]
interval = "250ms"
[[task]]
name = "block"
function = 3
start = 0
count = 10
interval = "2s"
[[task]]
name = "state"
function = 1
count = 8
trigger = "heartbeat"
` + points("a - 0 -", "b - 5 -", "c - 9 float32", "d - 9 -", "e - 100 -", "f coil 7 bool", "g coil 8 bool", "h input 0 -")
	p := compileText(t, text, false)
	wantRequests(t, p,
		"block: a,b,d",
		"state: f",
		"auto:s1:fc1:8+1: g",
		"auto:s1:fc3:9+2: c",
		"auto:s1:fc3:100+1: e",
		"auto:s1:fc4:0+1: h")
	if p.Tasks[0].Interval != 2*time.Second || p.Tasks[1].Trigger != Heartbeat || p.Tasks[2].Interval != 250*time.Millisecond {
		t.Fatalf("tasks %+v", p.Tasks)
	}
	if !slices.Equal(p.SlavePoints[1], []string{"a", "b", "c", "d", "e", "f", "g", "h"}) || p.MaxPoints != 3 {
		t.Fatalf("slave points %v, max %d", p.SlavePoints, p.MaxPoints)
	}
}

func TestOnePerPoint(t *testing.T) {
	text := `[[task]]
name = "block"
function = 3
count = 10
interval = "2s"
trigger = "connect"
[[task]]
name = "keepalive"
function = 3
start = 500
count = 1
` + points("a - 0 -", "b - 4 float32", "x - 6 bool", "y - 6 bool", "e - 100 -", "f - 101 uint64", "g coil 3 bool")
	want := []string{
		"block:a: a",
		"block:b: b",
		"block:x: x",
		"block:y: y",
		"keepalive: ",
		"auto:s1:fc1:3+1:g: g",
		"auto:s1:fc3:100+1:e: e",
		"auto:s1:fc3:101+4:f: f",
	}
	p := compileText(t, text, true)
	wantRequests(t, p, want...)
	for _, task := range p.Tasks[:4] {
		if task.Trigger != Connect || task.Interval != 2*time.Second {
			t.Errorf("task %s: trigger %v interval %v", task.Name, task.Trigger, task.Interval)
		}
		if d := task.Decoders[0]; d.Offset != 0 || int(task.Req.Quantity) != d.Codec.Type.Registers() {
			t.Errorf("task %s: %+v decodes %+v", task.Name, task.Req, d)
		}
	}
	if r := p.Tasks[1].Req; r.Address != 4 || r.Quantity != 2 {
		t.Errorf("block:b reads %+v", r)
	}
	// The template's switch gives the same plan; CompileFor overrides it.
	tpl := loadTemplate(t, "[plan]\none_request_per_point = true\n"+text)
	byTemplate, err := Compile(tpl)
	if err != nil {
		t.Fatal(err)
	}
	wantRequests(t, byTemplate, want...)
	ranges, err := CompileFor(tpl, false)
	if err != nil {
		t.Fatal(err)
	}
	wantRequests(t, ranges,
		"block: a,b,x,y",
		"keepalive: ",
		"auto:s1:fc1:3+1: g",
		"auto:s1:fc3:100+5: e,f")
}

func TestOnePerPointDemoTemplate(t *testing.T) {
	cfg, err := config.Load("../../config/comsrv.toml")
	if err != nil {
		t.Fatal(err)
	}
	tpl := cfg.TemplateByID["power_meter"]
	p, err := CompileFor(tpl, true)
	if err != nil {
		t.Fatal(err)
	}
	checkPlan(t, tpl, p)
	if len(p.Tasks) != len(tpl.Points) || p.MaxPoints != 1 {
		t.Fatalf("%d tasks for %d points, max points %d", len(p.Tasks), len(tpl.Points), p.MaxPoints)
	}
	if p.Tasks[0].Name != "block1:10001" || p.Tasks[0].Req.Address != 2000 || p.Tasks[0].Req.Quantity != 1 {
		t.Fatalf("first task %+v", p.Tasks[0])
	}
}

func TestDemoTemplatesCompile(t *testing.T) {
	cfg, err := config.Load("../../config/comsrv.toml")
	if err != nil {
		t.Fatal(err)
	}
	for name, tpl := range cfg.TemplateByID {
		for _, one := range []bool{false, true} {
			p, err := CompileFor(tpl, one)
			if err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			checkPlan(t, tpl, p)
		}
	}
	p, err := Compile(cfg.TemplateByID["auto_meter"])
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, task := range p.Tasks {
		got = append(got, task.Name)
	}
	want := []string{"auto:s1:fc1:0+4", "auto:s1:fc2:0+4", "auto:s1:fc3:2000+34", "auto:s1:fc3:2200+3", "auto:s1:fc4:3000+2"}
	if !slices.Equal(got, want) {
		t.Fatalf("auto_meter requests %v, want %v", got, want)
	}
}

// Templates built in code (not loaded) get the same defaults as loaded ones.
func TestCompileUnloadedTemplate(t *testing.T) {
	tpl := &config.Template{Name: "x", Points: []config.Point{{ID: "1", Address: 3, Bit: -1}, {ID: "2", Address: 5, Bit: -1}}}
	p, err := Compile(tpl)
	if err != nil {
		t.Fatal(err)
	}
	wantRequests(t, p, "auto:s1:fc3:3+1: 1", "auto:s1:fc3:5+1: 2") // max_gap 0
	if p.Tasks[0].Interval != config.DefaultTaskInterval {
		t.Fatalf("interval %v", p.Tasks[0].Interval)
	}
	tpl.Points[1].ID = "1"
	if _, err := Compile(tpl); err == nil || !strings.Contains(err.Error(), "point id 1 is used twice") {
		t.Fatalf("duplicate ids: %v", err)
	}
	tpl.Points = []config.Point{{ID: "1", Address: 65535, Type: "float32", Bit: -1}}
	if _, err := Compile(tpl); err == nil || !strings.Contains(err.Error(), "auto:s1:fc3:65535+2") {
		t.Fatalf("past the address space: %v", err)
	}
}
