// Package mappings loads the mapping file — which channel points feed which
// model points, which model controls drive which channel points, and the
// alarm limits — and writes it to the Redis hashes the Lua library reads.
//
// The file is TOML (see config/mappings/demo.toml for a commented example):
//
//	# forward: channel point → model point ("mapping")
//	[[map]]
//	channel = "1001"
//	model = "power_meter"
//	points = { "10001" = "voltage", "10002" = "current" }
//	# optional, by model point name of this entry ("mapping:unit",
//	# "mapping:description"): override the channel point's unit and description
//	units = { "voltage" = "V" }
//	descriptions = { "voltage" = "Line voltage" }
//
//	# many channels at once: {n} is each number from first to last,
//	# {n:0W} pads it with zeros to W digits (in every text field)
//	[[map_range]]
//	first = 1
//	last = 1000
//	channel = "{n}"
//	model = "meter{n}"
//	points = { "10001" = "voltage", "10002" = "current" }
//
//	# reverse: model control → channel point ("mapping:reverse")
//	[[control]]
//	model = "power_meter"
//	control = "setpoint"
//	channel = "1001"
//	point = "40001"
//
//	[[control_range]]   # first, last and the fields of [[control]] with {n}
//
//	[thresholds]        # high limits ("alarm:threshold"): value above → alarm
//	"power_meter:voltage" = 250
//	[low]               # low limits ("alarm:low"): value below → alarm
//	[hysteresis]        # ("alarm:hysteresis"), ≥ 0
//
// Channel, point and model ids, point names and control names must satisfy
// keys.ValidID. A channel point is mapped at most once and a model control
// at most once; a low limit must not be above the high limit of the same
// point. Units are at most 32 bytes, descriptions at most 256, neither with
// control characters; a model point's unit (or description) set twice must
// be the same.
package mappings

import (
	"context"
	"fmt"
	"maps"
	"math"
	"slices"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/redis/rueidis"

	"github.com/voltedge/voltedge/internal/conf"
	"github.com/voltedge/voltedge/internal/keys"
)

// MaxEntries bounds the entries of one mapping file (all hashes together).
const MaxEntries = 1000000

// chunkFields is the most fields one HSET carries.
const chunkFields = 1000

// Set is a loaded mapping file, as the hash fields it writes.
type Set struct {
	Forward    map[string]string  // "{channel}:{point}" → "{model}:{name}"
	Reverse    map[string]string  // "{model}:{control}" → "{channel}:{point}"
	Thresholds map[string]float64 // "{model}:{name}" → high limit
	Low        map[string]float64 // "{model}:{name}" → low limit
	Hysteresis map[string]float64 // "{model}:{name}" → hysteresis
	// Units and Descriptions override the unit and description of the
	// channel point a model point is mapped from.
	Units        map[string]string // "{model}:{name}" → unit
	Descriptions map[string]string // "{model}:{name}" → description
}

// Bounds of a unit and a description, in bytes.
const (
	MaxUnitLen        = 32
	MaxDescriptionLen = 256
)

type file struct {
	Map          []mapEntry         `toml:"map"`
	MapRange     []mapRange         `toml:"map_range"`
	Control      []controlEntry     `toml:"control"`
	ControlRange []controlRange     `toml:"control_range"`
	Thresholds   map[string]float64 `toml:"thresholds"`
	Low          map[string]float64 `toml:"low"`
	Hysteresis   map[string]float64 `toml:"hysteresis"`
}

type mapEntry struct {
	Channel      string            `toml:"channel"`
	Model        string            `toml:"model"`
	Points       map[string]string `toml:"points"`
	Units        map[string]string `toml:"units"`        // model point name → unit
	Descriptions map[string]string `toml:"descriptions"` // model point name → description
}

type mapRange struct {
	First        int               `toml:"first"`
	Last         int               `toml:"last"`
	Channel      string            `toml:"channel"`
	Model        string            `toml:"model"`
	Points       map[string]string `toml:"points"`
	Units        map[string]string `toml:"units"`
	Descriptions map[string]string `toml:"descriptions"`
}

// pointText is the optional per-point text of a map entry.
type pointText struct {
	units, descriptions map[string]string
}

type controlEntry struct {
	Model   string `toml:"model"`
	Control string `toml:"control"`
	Channel string `toml:"channel"`
	Point   string `toml:"point"`
}

type controlRange struct {
	First   int    `toml:"first"`
	Last    int    `toml:"last"`
	Model   string `toml:"model"`
	Control string `toml:"control"`
	Channel string `toml:"channel"`
	Point   string `toml:"point"`
}

// Load reads and validates the mapping file at path. Errors name file,
// line, column and key; up to conf.MaxErrors are reported together.
func Load(path string) (*Set, error) {
	var f file
	pos, err := conf.Decode(path, &f)
	if err != nil {
		return nil, err
	}
	return build(pos, &f)
}

// Parse is Load for text already in memory; name is used in errors.
func Parse(name string, data []byte) (*Set, error) {
	var f file
	pos, err := conf.DecodeData(name, data, &f)
	if err != nil {
		return nil, err
	}
	return build(pos, &f)
}

type builder struct {
	pos  *conf.Positions
	errs conf.Errors
	set  *Set
	fwd  map[string]string // forward key → where it was defined
	rev  map[string]string
	// text is where each unit and description was set: hash → ref → where.
	text map[string]map[string]string
	n    int
}

func build(pos *conf.Positions, f *file) (*Set, error) {
	b := &builder{
		pos: pos,
		set: &Set{
			Forward:      make(map[string]string),
			Reverse:      make(map[string]string),
			Thresholds:   make(map[string]float64),
			Low:          make(map[string]float64),
			Hysteresis:   make(map[string]float64),
			Units:        make(map[string]string),
			Descriptions: make(map[string]string),
		},
		fwd:  make(map[string]string),
		rev:  make(map[string]string),
		text: map[string]map[string]string{"units": {}, "descriptions": {}},
	}
	for i := range f.Map {
		m := &f.Map[i]
		b.mapRange(fmt.Sprintf("map[%d]", i), false, 0, 0, m.Channel, m.Model, m.Points, pointText{m.Units, m.Descriptions})
	}
	for i := range f.MapRange {
		m := &f.MapRange[i]
		k := fmt.Sprintf("map_range[%d]", i)
		if b.bounds(k, m.First, m.Last) {
			b.mapRange(k, true, m.First, m.Last, m.Channel, m.Model, m.Points, pointText{m.Units, m.Descriptions})
		}
	}
	for i := range f.Control {
		c := &f.Control[i]
		b.controlRange(fmt.Sprintf("control[%d]", i), false, 0, 0, c.Model, c.Control, c.Channel, c.Point)
	}
	for i := range f.ControlRange {
		c := &f.ControlRange[i]
		k := fmt.Sprintf("control_range[%d]", i)
		if b.bounds(k, c.First, c.Last) {
			b.controlRange(k, true, c.First, c.Last, c.Model, c.Control, c.Channel, c.Point)
		}
	}
	b.limits("thresholds", f.Thresholds, b.set.Thresholds)
	b.limits("low", f.Low, b.set.Low)
	b.limits("hysteresis", f.Hysteresis, b.set.Hysteresis)
	for _, ref := range slices.Sorted(maps.Keys(b.set.Low)) {
		if hi, ok := b.set.Thresholds[ref]; ok && b.set.Low[ref] > hi {
			b.errs.Addf(pos, conf.Child("low", ref), "low limit %v is above the high limit %v", b.set.Low[ref], hi)
		}
	}
	for _, ref := range slices.Sorted(maps.Keys(b.set.Hysteresis)) {
		if h := b.set.Hysteresis[ref]; h < 0 {
			b.errs.Addf(pos, conf.Child("hysteresis", ref), "must not be negative")
		}
	}
	if err := b.errs.Err(); err != nil {
		return nil, err
	}
	return b.set, nil
}

// bounds checks first and last of a range entry.
func (b *builder) bounds(k string, first, last int) bool {
	ok := true
	for _, f := range []string{"first", "last"} {
		if !b.pos.Defined(k + "." + f) {
			b.errs.Addf(b.pos, k+"."+f, "must be set")
			ok = false
		}
	}
	if !ok {
		return false
	}
	if err := conf.CheckRange(first, last); err != nil {
		b.errs.Addf(b.pos, k+".last", "%v", err)
		return false
	}
	return true
}

// field is one text field of an entry, possibly with {n} placeholders.
type field struct {
	key string // key path for errors
	p   conf.NumberPattern
}

// pattern parses a text field: literal outside ranges, with {n}
// placeholders in them (where varies demands one).
func (b *builder) pattern(key, s string, ranged, varies bool) (field, bool) {
	if !b.pos.Defined(key) {
		b.errs.Addf(b.pos, key, "must be set")
		return field{}, false
	}
	if !ranged {
		return field{key, conf.LiteralPattern(s)}, true
	}
	p, err := conf.ParseNumberPattern(s)
	if err != nil {
		b.errs.Addf(b.pos, key, "%v", err)
		return field{}, false
	}
	if varies && !p.HasN() {
		b.errs.Addf(b.pos, key, "must contain {n} or {n:0W} to differ between the entries of the range")
		return field{}, false
	}
	return field{key, p}, true
}

// id expands a field for n and checks the result is a valid id.
func (b *builder) id(f field, n int, ranged bool) (string, bool) {
	s := f.p.Expand(n)
	if keys.ValidID(s) {
		return s, true
	}
	if ranged {
		b.errs.Addf(b.pos, f.key, "expands to %q for n=%d, which is not a valid id (no ':', spaces, '*', '?', '[' or ']'; 1..128 bytes)", s, n)
	} else {
		b.errs.Addf(b.pos, f.key, "%q is not a valid id (no ':', spaces, '*', '?', '[' or ']'; 1..128 bytes)", s)
	}
	return "", false
}

func (b *builder) room(key string) bool {
	if b.n >= MaxEntries {
		b.errs.Addf(b.pos, key, "more than %d entries", MaxEntries)
		return false
	}
	b.n++
	return true
}

// mapRange adds the forward mappings of a [[map]] (first = last = 0) or of a
// [[map_range]].
func (b *builder) mapRange(k string, ranged bool, first, last int, channel, model string, points map[string]string, txt pointText) {
	many := last > first
	chF, ok1 := b.pattern(k+".channel", channel, ranged, many)
	modF, ok2 := b.pattern(k+".model", model, ranged, false)
	if !ok1 || !ok2 {
		return
	}
	if len(points) == 0 {
		b.errs.Addf(b.pos, k+".points", "must list at least one point")
		return
	}
	type pointF struct{ pt, name field }
	pts := make([]pointF, 0, len(points))
	names := make(map[string]field, len(points)) // model point name as written → its pattern
	for _, pt := range slices.Sorted(maps.Keys(points)) {
		key := conf.Child(k+".points", pt)
		pp, np := conf.LiteralPattern(pt), conf.LiteralPattern(points[pt])
		var err1, err2 error
		if ranged {
			pp, err1 = conf.ParseNumberPattern(pt)
			np, err2 = conf.ParseNumberPattern(points[pt])
		}
		if err1 != nil {
			b.errs.Add(b.pos.KeyErrorf(key, "%v", err1))
			return
		}
		if err2 != nil {
			b.errs.Addf(b.pos, key, "%v", err2)
			return
		}
		pts = append(pts, pointF{field{key, pp}, field{key, np}})
		names[points[pt]] = field{key, np}
	}
	type textF struct {
		table, key, text string
		name             field
		out              map[string]string
	}
	var texts []textF
	for _, t := range []struct {
		table string
		in    map[string]string
		max   int
		out   map[string]string
	}{{"units", txt.units, MaxUnitLen, b.set.Units}, {"descriptions", txt.descriptions, MaxDescriptionLen, b.set.Descriptions}} {
		for _, name := range slices.Sorted(maps.Keys(t.in)) {
			key := conf.Child(k+"."+t.table, name)
			nf, ok := names[name]
			if !ok {
				b.errs.Add(b.pos.KeyErrorf(key, "%q is not a model point name of this entry's points", name))
				continue
			}
			if err := CheckText(t.in[name], t.max); err != nil {
				b.errs.Addf(b.pos, key, "%v", err)
				continue
			}
			texts = append(texts, textF{t.table, key, t.in[name], nf, t.out})
		}
	}
	where := b.pos.Where(k)
	for n := first; n <= last; n++ {
		ch, ok1 := b.id(chF, n, ranged)
		mod, ok2 := b.id(modF, n, ranged)
		if !ok1 || !ok2 {
			return
		}
		for _, p := range pts {
			pt, ok1 := b.id(p.pt, n, ranged)
			name, ok2 := b.id(p.name, n, ranged)
			if !ok1 || !ok2 {
				return
			}
			src := keys.PointRef(ch, pt)
			if prev, dup := b.fwd[src]; dup {
				b.errs.Add(b.pos.KeyErrorf(p.pt.key, "channel point %q is already mapped at %s", src, prev))
				return
			}
			if !b.room(p.pt.key) {
				return
			}
			b.fwd[src] = where
			b.set.Forward[src] = keys.PointRef(mod, name)
		}
		for _, t := range texts {
			ref := keys.PointRef(mod, t.name.p.Expand(n))
			seen := b.text[t.table]
			if prev, dup := seen[ref]; dup {
				if t.out[ref] != t.text {
					b.errs.Add(b.pos.KeyErrorf(t.key, "%s of %q is already set to %q at %s", strings.TrimSuffix(t.table, "s"), ref, t.out[ref], prev))
					return
				}
				continue
			}
			if !b.room(t.key) {
				return
			}
			seen[ref] = where
			t.out[ref] = t.text
		}
	}
}

// CheckText reports why v is not acceptable as a unit or description of at
// most max bytes: too long, invalid UTF-8, or a control character.
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

// controlRange adds the reverse mappings of a [[control]] (first = last = 0)
// or of a [[control_range]].
func (b *builder) controlRange(k string, ranged bool, first, last int, model, control, channel, point string) {
	many := last > first
	modF, ok1 := b.pattern(k+".model", model, ranged, false)
	ctlF, ok2 := b.pattern(k+".control", control, ranged, false)
	chF, ok3 := b.pattern(k+".channel", channel, ranged, false)
	ptF, ok4 := b.pattern(k+".point", point, ranged, false)
	if !ok1 || !ok2 || !ok3 || !ok4 {
		return
	}
	if many && !modF.p.HasN() && !ctlF.p.HasN() {
		b.errs.Addf(b.pos, k+".model", "model or control must contain {n} or {n:0W} to differ between the entries of the range")
		return
	}
	where := b.pos.Where(k)
	for n := first; n <= last; n++ {
		mod, ok1 := b.id(modF, n, ranged)
		ctl, ok2 := b.id(ctlF, n, ranged)
		ch, ok3 := b.id(chF, n, ranged)
		pt, ok4 := b.id(ptF, n, ranged)
		if !ok1 || !ok2 || !ok3 || !ok4 {
			return
		}
		ref := keys.PointRef(mod, ctl)
		if prev, dup := b.rev[ref]; dup {
			b.errs.Addf(b.pos, k+".control", "control %q is already mapped at %s", ref, prev)
			return
		}
		if !b.room(k) {
			return
		}
		b.rev[ref] = where
		b.set.Reverse[ref] = keys.PointRef(ch, pt)
	}
}

// limits validates a table of "{model}:{name}" = number.
func (b *builder) limits(table string, in, out map[string]float64) {
	for _, ref := range slices.Sorted(maps.Keys(in)) {
		key := conf.Child(table, ref)
		model, name, ok := keys.SplitRef(ref)
		if !ok || !keys.ValidID(model) || !keys.ValidID(name) {
			b.errs.Add(b.pos.KeyErrorf(key, "%q is not a \"model:point\" reference", ref))
			continue
		}
		v := in[ref]
		if math.IsNaN(v) || math.IsInf(v, 0) {
			b.errs.Addf(b.pos, key, "must be a finite number")
			continue
		}
		if !b.room(key) {
			return
		}
		out[ref] = v
	}
}

// Shared is a model point that several channel points map to.
type Shared struct {
	Model    string   // "{model}:{point_name}"
	Channels []string // the "{channel}:{point}" references mapped to it, sorted
}

// ManyToOne lists the model points that more than one channel point maps
// to, sorted by model point. Such a point gets the newest sample of its
// channel points (see the Lua library's sync functions), which is rarely
// what a mapping means: edgectl warns about them.
func (s *Set) ManyToOne() []Shared {
	by := make(map[string][]string)
	for src, dst := range s.Forward {
		by[dst] = append(by[dst], src)
	}
	var out []Shared
	for _, dst := range slices.Sorted(maps.Keys(by)) {
		if srcs := by[dst]; len(srcs) > 1 {
			slices.Sort(srcs)
			out = append(out, Shared{Model: dst, Channels: srcs})
		}
	}
	return out
}

// Applied counts the fields written to each hash.
type Applied struct {
	Forward, Reverse, Thresholds, Low, Hysteresis, Units, Descriptions int
}

// Apply writes the set to the hashes keys.Mapping, keys.MappingReverse,
// keys.AlarmThreshold, keys.AlarmLow, keys.AlarmHysteresis,
// keys.MappingUnit and keys.MappingDescription with
// multi-field HSETs of at most 1000 fields, pipelined. Numbers are written
// as plain decimals ("250", "0.5"). Applying the same set again changes
// nothing.
//
// With replace, the seven hashes are deleted and rewritten inside one
// MULTI/EXEC on a dedicated connection, so that readers see either the old
// or the new mappings and fields not in the set are gone. Without it,
// fields of the hashes that the set does not name are left alone.
func (s *Set) Apply(ctx context.Context, c rueidis.Client, replace bool) (Applied, error) {
	a := Applied{
		Forward:      len(s.Forward),
		Reverse:      len(s.Reverse),
		Thresholds:   len(s.Thresholds),
		Low:          len(s.Low),
		Hysteresis:   len(s.Hysteresis),
		Units:        len(s.Units),
		Descriptions: len(s.Descriptions),
	}
	if !replace {
		cmds := s.commands(c.B(), nil)
		if len(cmds) == 0 {
			return a, nil
		}
		for i, r := range c.DoMulti(ctx, cmds...) {
			if err := r.Error(); err != nil {
				return Applied{}, fmt.Errorf("write mappings (command %d of %d): %w", i+1, len(cmds), err)
			}
		}
		return a, nil
	}
	err := c.Dedicated(func(d rueidis.DedicatedClient) error {
		cmds := rueidis.Commands{
			d.B().Multi().Build(),
			d.B().Del().Key(keys.Mapping, keys.MappingReverse, keys.AlarmThreshold, keys.AlarmLow, keys.AlarmHysteresis,
				keys.MappingUnit, keys.MappingDescription).Build(),
		}
		cmds = s.commands(d.B(), cmds)
		cmds = append(cmds, d.B().Exec().Build())
		res := d.DoMulti(ctx, cmds...)
		for i, r := range res {
			if err := r.Error(); err != nil {
				return fmt.Errorf("replace mappings (command %d of %d): %w", i+1, len(cmds), err)
			}
		}
		replies, err := res[len(res)-1].ToArray()
		if err != nil {
			return fmt.Errorf("replace mappings: EXEC: %w", err)
		}
		for i, r := range replies {
			if err := r.Error(); err != nil {
				return fmt.Errorf("replace mappings (command %d in the transaction): %w", i+1, err)
			}
		}
		return nil
	})
	if err != nil {
		return Applied{}, err
	}
	return a, nil
}

// commands appends the HSETs that write the set, in chunks.
func (s *Set) commands(b rueidis.Builder, cmds rueidis.Commands) rueidis.Commands {
	cmds = hsets(b, cmds, keys.Mapping, s.Forward, func(v string) string { return v })
	cmds = hsets(b, cmds, keys.MappingReverse, s.Reverse, func(v string) string { return v })
	cmds = hsets(b, cmds, keys.AlarmThreshold, s.Thresholds, formatNumber)
	cmds = hsets(b, cmds, keys.AlarmLow, s.Low, formatNumber)
	cmds = hsets(b, cmds, keys.AlarmHysteresis, s.Hysteresis, formatNumber)
	cmds = hsets(b, cmds, keys.MappingUnit, s.Units, func(v string) string { return v })
	cmds = hsets(b, cmds, keys.MappingDescription, s.Descriptions, func(v string) string { return v })
	return cmds
}

func hsets[V any](b rueidis.Builder, cmds rueidis.Commands, key string, m map[string]V, format func(V) string) rueidis.Commands {
	fields := slices.Sorted(maps.Keys(m))
	for len(fields) > 0 {
		n := min(len(fields), chunkFields)
		fv := b.Hset().Key(key).FieldValue()
		for _, f := range fields[:n] {
			fv = fv.FieldValue(f, format(m[f]))
		}
		cmds = append(cmds, fv.Build())
		fields = fields[n:]
	}
	return cmds
}

// formatNumber writes a limit as a plain decimal, as the Lua library
// expects.
func formatNumber(v float64) string { return strconv.FormatFloat(v, 'f', -1, 64) }
