package config

import (
	"fmt"
	"math"
	"path/filepath"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/voltedge/voltedge/internal/conf"
	"github.com/voltedge/voltedge/internal/keys"
)

// LoadTemplates loads and validates the template files cfg.Templates selects
// (relative to the directory of cfg.File), keyed by template name. Load calls
// it; a reload may call it again with a loaded Config.
func LoadTemplates(cfg *Config) (map[string]*Template, error) {
	var errs conf.Errors
	files := resolveGlobs(cfg.pos, "templates", cfg.Dir(), cfg.Templates, &errs)
	byName := make(map[string]*Template, len(files))
	where := make(map[string]string, len(files))
	for _, f := range files {
		t, pos := LoadTemplate(f, &errs)
		if t == nil {
			continue
		}
		if prev, dup := where[t.Name]; dup {
			errs.Addf(pos, "name", "template %q is already defined in %s", t.Name, prev)
			continue
		}
		where[t.Name] = f
		byName[t.Name] = t
	}
	if errs.Len() > 0 {
		return nil, errs.Err()
	}
	return byName, nil
}

// LoadTemplate reads one template file, applies its defaults and validates
// it, adding problems to errs. It returns nil if the file could not be
// decoded.
func LoadTemplate(file string, errs *conf.Errors) (*Template, *conf.Positions) {
	t := &Template{}
	pos, err := conf.Decode(file, t)
	if err != nil {
		errs.Add(err)
		return nil, pos
	}
	t.File = file
	if !pos.Defined("name") {
		t.Name = strings.TrimSuffix(filepath.Base(file), filepath.Ext(file))
		if !keys.ValidID(t.Name) {
			errs.Addf(pos, "name", "the file name gives the template name %q, which is not a valid id; set name", t.Name)
		}
	} else if !keys.ValidID(t.Name) {
		errs.Addf(pos, "name", "%q is not a valid template name (no ':', spaces, '*', '?', '[' or ']'; 1..128 bytes)", t.Name)
	}
	t.check(pos, errs)
	return t, pos
}

// Defaults and limits of a template's [plan].
const (
	DefaultPlanMaxGap       = 10
	DefaultPlanMaxRegisters = 125
	DefaultPlanMaxBits      = 2000
	// MaxPlanGap bounds plan.max_gap.
	MaxPlanGap = 2000
	// AutoTaskPrefix starts the names of planned requests; explicit task
	// names must not use it.
	AutoTaskPrefix = "auto:"
)

func (t *Template) check(pos *conf.Positions, errs *conf.Errors) {
	if len(t.Tasks) == 0 && len(t.Points) == 0 {
		errs.Addf(pos, "point", "a template needs at least one [[point]] (or a [[task]])")
	}
	before := errs.Len()
	t.Plan.check(pos, errs)
	planOK := errs.Len() == before
	before = errs.Len()
	names := make(map[string]int, len(t.Tasks))
	for i := range t.Tasks {
		t.Tasks[i].check(pos, errs, i, names)
	}
	tasksOK := errs.Len() == before
	ids := make(map[string]int, len(t.Points))
	for i := range t.Points {
		p := &t.Points[i]
		k := fmt.Sprintf("point[%d].", i)
		if !p.check(pos, errs, k) {
			continue
		}
		if j, dup := ids[p.ID]; dup {
			errs.Addf(pos, k+"id", "point id %q is already used by point[%d] (%s)", p.ID, j, pos.Where(fmt.Sprintf("point[%d].id", j)))
			continue
		}
		ids[p.ID] = i
		if n := p.Registers(); int(p.Address)+n > 65536 {
			errs.Addf(pos, k+"address", "point %s at address %d needs %d registers and runs past address 65535", p.ID, p.Address, n)
			continue
		}
		// A point no task covers is planned; it must fit one request.
		if tasksOK && planOK && p.IsRegisterArea() && p.Registers() > t.Plan.MaxRegisters && !t.covers(p) {
			errs.Addf(pos, "plan.max_registers", "%d is too small for point %s (%s, %d registers), which no [[task]] covers", t.Plan.MaxRegisters, p.ID, p.Type, p.Registers())
		}
	}
}

// check applies the defaults of [plan] and validates it.
func (pl *Plan) check(pos *conf.Positions, errs *conf.Errors) {
	dur(pos, errs, "plan.interval", &pl.Interval, DefaultTaskInterval, MinTaskInterval)
	num(pos, errs, "plan.max_gap", &pl.MaxGap, DefaultPlanMaxGap, 0, MaxPlanGap)
	num(pos, errs, "plan.max_registers", &pl.MaxRegisters, DefaultPlanMaxRegisters, 1, DefaultPlanMaxRegisters)
	num(pos, errs, "plan.max_bits", &pl.MaxBits, DefaultPlanMaxBits, 1, DefaultPlanMaxBits)
}

// covers reports whether an explicit task of the point's slave and area
// reads all of the point's registers (or its bit).
func (t *Template) covers(p *Point) bool {
	fn, n := p.Function(), p.Registers()
	for i := range t.Tasks {
		tk := &t.Tasks[i]
		if tk.Slave == p.Slave && tk.Function == fn &&
			int(p.Address) >= int(tk.Start) && int(p.Address)+n <= int(tk.Start)+int(tk.Count) {
			return true
		}
	}
	return false
}

func (tk *Task) check(pos *conf.Positions, errs *conf.Errors, i int, names map[string]int) {
	k := fmt.Sprintf("task[%d].", i)
	if !pos.Defined(k + "name") {
		tk.Name = fmt.Sprintf("task%d", i)
	} else if tk.Name == "" {
		errs.Addf(pos, k+"name", "must not be empty")
	} else if strings.HasPrefix(tk.Name, AutoTaskPrefix) {
		errs.Addf(pos, k+"name", "%q: names starting with %q are kept for planned requests", tk.Name, AutoTaskPrefix)
	}
	if j, dup := names[tk.Name]; dup {
		errs.Addf(pos, k+"name", "task name %q is already used by task[%d]", tk.Name, j)
	} else {
		names[tk.Name] = i
	}
	if !pos.Defined(k + "slave") {
		tk.Slave = 1
	} else if tk.Slave < 1 || tk.Slave > 247 {
		errs.Addf(pos, k+"slave", "%d is out of range (1..247)", tk.Slave)
	}
	limit := 0
	switch {
	case !pos.Defined(k + "function"):
		errs.Addf(pos, k+"function", "must be set: 1 (coils), 2 (discrete inputs), 3 (holding registers) or 4 (input registers)")
	case tk.Function == 1 || tk.Function == 2:
		limit = 2000
	case tk.Function == 3 || tk.Function == 4:
		limit = 125
	default:
		errs.Addf(pos, k+"function", "%d is not a read function (want 1, 2, 3 or 4)", tk.Function)
	}
	switch {
	case !pos.Defined(k + "count"):
		errs.Addf(pos, k+"count", "must be set")
	case limit > 0 && (tk.Count < 1 || int(tk.Count) > limit):
		errs.Addf(pos, k+"count", "%d is out of range for function %d (1..%d)", tk.Count, tk.Function, limit)
	case int(tk.Start)+int(tk.Count) > 65536:
		errs.Addf(pos, k+"count", "start %d + count %d runs past address 65535", tk.Start, tk.Count)
	}
	str(pos, errs, k+"trigger", &tk.Trigger, "timer", "timer", "heartbeat", "connect")
	dur(pos, errs, k+"interval", &tk.Interval, DefaultTaskInterval, MinTaskInterval)
}

// check applies a point's defaults and validates it; false means the point
// is too broken to check further.
func (p *Point) check(pos *conf.Positions, errs *conf.Errors, k string) bool {
	before := errs.Len()
	switch {
	case !pos.Defined(k + "id"):
		errs.Addf(pos, k+"id", "must be set")
	case !keys.ValidID(p.ID):
		errs.Addf(pos, k+"id", "%q is not a valid point id (no ':', spaces, '*', '?', '[' or ']'; 1..128 bytes)", p.ID)
	}
	if !pos.Defined(k + "name") {
		p.Name = p.ID
	}
	if !pos.Defined(k + "slave") {
		p.Slave = 1
	} else if p.Slave < 1 || p.Slave > 247 {
		errs.Addf(pos, k+"slave", "%d is out of range (1..247)", p.Slave)
	}
	str(pos, errs, k+"area", &p.Area, "holding", "holding", "input", "coil", "discrete")
	if !pos.Defined(k + "type") {
		p.Type = "uint16"
	}
	width, typeOK := typeWidth[p.Type]
	if !typeOK {
		errs.Addf(pos, k+"type", "unknown type %q (want %s)", p.Type, typeNames)
	} else if !p.IsRegisterArea() && Function(p.Area) != 0 && p.Type != "bool" {
		errs.Addf(pos, k+"type", "type %s in the %s area: only bool is allowed there", p.Type, p.Area)
	}
	if !pos.Defined(k + "order") {
		p.Order = "ABCD"
	}
	if typeOK {
		if width == 4 {
			if o, ok := order64[p.Order]; ok {
				p.Order = o
			} else {
				errs.Addf(pos, k+"order", "unknown order %q for %s (want ABCDEFGH, GHEFCDAB, BADCFEHG, HGFEDCBA or ABCD, CDAB, BADC, DCBA)", p.Order, p.Type)
			}
		} else if len(p.Order) != 4 || order64[p.Order] == "" {
			errs.Addf(pos, k+"order", "unknown order %q for %s (want ABCD, CDAB, BADC or DCBA)", p.Order, p.Type)
		}
	}
	if !pos.Defined(k + "bit") {
		p.Bit = -1
	}
	switch {
	case p.Bit < -1 || p.Bit > 15:
		errs.Addf(pos, k+"bit", "%d is out of range (0..15)", p.Bit)
	case p.Bit >= 0 && !p.IsRegisterArea():
		errs.Addf(pos, k+"bit", "bit is only used in the holding and input areas")
	case p.Bit >= 0 && p.Type != "bool":
		errs.Addf(pos, k+"bit", "bit is only used with type bool")
	case p.Bit < 0 && p.Type == "bool" && p.IsRegisterArea():
		errs.Addf(pos, k+"bit", "a bool point in the %s area needs bit (0..15)", p.Area)
	}
	if !pos.Defined(k + "scale") {
		p.Scale = 1
	} else if p.Scale == 0 {
		errs.Addf(pos, k+"scale", "must not be 0")
	} else if !finite(p.Scale) {
		errs.Addf(pos, k+"scale", "must be a finite number")
	}
	if !finite(p.Offset) {
		errs.Addf(pos, k+"offset", "must be a finite number")
	}
	if p.Decimals != nil && (*p.Decimals < 0 || *p.Decimals > 12) {
		errs.Addf(pos, k+"decimals", "%d is out of range (0..12)", *p.Decimals)
	}
	text(pos, errs, k+"unit", p.Unit, MaxUnitLen)
	text(pos, errs, k+"description", p.Description, MaxDescriptionLen)
	if typeOK && errs.Len() == before {
		p.checkLimits(pos, errs, k)
	}
	return errs.Len() == before
}

// Bounds of a point's unit and description, in bytes.
const (
	MaxUnitLen        = 32
	MaxDescriptionLen = 256
)

// text checks an optional free-text setting: valid UTF-8, no control
// characters, at most max bytes.
func text(pos *conf.Positions, errs *conf.Errors, key, v string, max int) {
	if err := CheckText(v, max); err != nil {
		errs.Addf(pos, key, "%v", err)
	}
}

// CheckText reports why v is not acceptable as a unit or description of at
// most max bytes: invalid UTF-8, a control character, or too long.
func CheckText(v string, max int) error {
	if len(v) > max {
		return fmt.Errorf("%d bytes is too long (at most %d)", len(v), max)
	}
	if !utf8.ValidString(v) {
		return fmt.Errorf("%q is not valid UTF-8", v)
	}
	if i := strings.IndexFunc(v, unicode.IsControl); i >= 0 {
		return fmt.Errorf("%q contains a control character at byte %d", v, i)
	}
	return nil
}

// checkLimits validates min and max: finite, min ≤ max, and within the
// values the point's type can hold after scale and offset.
func (p *Point) checkLimits(pos *conf.Positions, errs *conf.Errors, k string) {
	lo, hi := p.ValueRange()
	ok := true
	for _, l := range []struct {
		key string
		v   *float64
	}{{"min", p.Min}, {"max", p.Max}} {
		switch {
		case l.v == nil:
		case !finite(*l.v):
			errs.Addf(pos, k+l.key, "must be a finite number")
			ok = false
		case *l.v < lo || *l.v > hi:
			errs.Addf(pos, k+l.key, "%g is outside what type %s can hold here (%.10g..%.10g)", *l.v, p.Type, lo, hi)
			ok = false
		}
	}
	if ok && p.Min != nil && p.Max != nil && *p.Min > *p.Max {
		errs.Addf(pos, k+"min", "%g is greater than max %g", *p.Min, *p.Max)
	}
}

// ValueRange is the range of values (after scale and offset) the point's
// type can represent; bool is 0..1 and is not scaled.
func (p *Point) ValueRange() (lo, hi float64) {
	switch p.Type {
	case "bool":
		return 0, 1
	case "int16":
		lo, hi = math.MinInt16, math.MaxInt16
	case "uint16":
		lo, hi = 0, math.MaxUint16
	case "int32":
		lo, hi = math.MinInt32, math.MaxInt32
	case "uint32":
		lo, hi = 0, math.MaxUint32
	case "int64":
		lo, hi = math.MinInt64, math.MaxInt64
	case "uint64":
		lo, hi = 0, math.MaxUint64
	case "float32":
		lo, hi = -math.MaxFloat32, math.MaxFloat32
	default:
		return -math.MaxFloat64, math.MaxFloat64
	}
	scale := p.Scale
	if scale == 0 {
		scale = 1
	}
	lo, hi = lo*scale+p.Offset, hi*scale+p.Offset
	if lo > hi {
		lo, hi = hi, lo
	}
	return lo, hi
}
