package api

import (
	"context"
	"encoding/json"
	"math"
	"net/http"
	"slices"
	"strconv"
	"strings"

	"github.com/gofiber/fiber/v2"

	"github.com/voltedge/voltedge/internal/keys"
	"github.com/voltedge/voltedge/modsrv/links"
)

// MaxControls bounds the controls GET /controls returns; beyond it the
// answer says "truncated": true.
const MaxControls = 10000

// ModelPoint is one point of GET /models/{id}: the channel point it is
// mapped from and that point's metadata.
type ModelPoint struct {
	Channel     string `json:"channel"`
	Point       string `json:"point"`
	Type        string `json:"type"`
	Unit        string `json:"unit"`
	Description string `json:"description"`
}

// LastOutcome is the last outcome of a control (keys.ControlLast).
type LastOutcome struct {
	ID      string `json:"id"`
	Status  string `json:"status"`
	Code    string `json:"code"`
	Message string `json:"message"`
	Value   string `json:"value"`
	TS      int64  `json:"ts"`
}

// Control is one control of a model: the channel point it writes, that
// point's metadata, its range and its last outcome (nil if none).
type Control struct {
	Model       string       `json:"model"`
	Control     string       `json:"control"`
	Channel     string       `json:"channel"`
	Point       string       `json:"point"`
	Type        string       `json:"type"`
	Unit        string       `json:"unit"`
	Description string       `json:"description"`
	Min         *float64     `json:"min,omitempty"`
	Max         *float64     `json:"max,omitempty"`
	Writable    bool         `json:"writable"`
	Last        *LastOutcome `json:"last"`
}

// typeRange is the range of a point type; ok is false when it has none
// that a float64 holds exactly (float32/64, int64, uint64, unknown).
func typeRange(t string) (lo, hi float64, ok bool) {
	switch t {
	case "bool":
		return 0, 1, true
	case "uint16":
		return 0, math.MaxUint16, true
	case "int16":
		return math.MinInt16, math.MaxInt16, true
	case "int32":
		return math.MinInt32, math.MaxInt32, true
	case "uint32":
		return 0, math.MaxUint32, true
	}
	return 0, 0, false
}

// controlRange returns the range of a channel point: its metadata's min
// and max where given, else the range of its type.
func controlRange(m links.Meta) (lo, hi *float64) {
	tlo, thi, ok := typeRange(m.Type)
	lo, hi = m.Min, m.Max
	if lo == nil && ok {
		lo = &tlo
	}
	if hi == nil && ok {
		hi = &thi
	}
	return lo, hi
}

// parseLast reads a keys.ControlLast entry; nil when it is not a JSON object.
func parseLast(s string) *LastOutcome {
	var m map[string]any
	if s == "" || json.Unmarshal([]byte(s), &m) != nil || m == nil {
		return nil
	}
	text := func(k string) string {
		switch v := m[k].(type) {
		case string:
			return v
		case float64:
			return strconv.FormatFloat(v, 'f', -1, 64)
		case bool:
			if v {
				return "1"
			}
			return "0"
		}
		return ""
	}
	l := &LastOutcome{ID: text("id"), Status: text("status"), Code: text("code"), Message: text("message"), Value: text("value")}
	l.TS, _ = strconv.ParseInt(text("ts"), 10, 64)
	return l
}

// snapshot returns the link index, or the API error for a Redis failure.
func (s *server) snapshot(ctx context.Context) (*links.Snapshot, error) {
	snap, err := s.links.Snapshot(ctx)
	if snap == nil {
		return nil, s.redisError("mappings", err)
	}
	return snap, nil
}

// metas reads the point metadata of channels (one HGETALL each, cached briefly).
func (s *server) metas(ctx context.Context, channels []string) (map[string]map[string]links.Meta, error) {
	out := make(map[string]map[string]links.Meta, len(channels))
	for _, ch := range channels {
		if _, ok := out[ch]; ok {
			continue
		}
		m, err := s.links.Meta(ctx, ch)
		if err != nil {
			return nil, s.redisError("point metadata", err)
		}
		out[ch] = m
	}
	return out, nil
}

// controlsOf builds the controls of models (sorted by model, control),
// at most limit; truncated says some were left out.
func (s *server) controlsOf(ctx context.Context, snap *links.Snapshot, models []string, limit int) (out []Control, truncated bool, err error) {
	type pair struct{ model, control string }
	var pairs []pair
	for _, m := range models {
		for c := range snap.Controls[m] {
			pairs = append(pairs, pair{m, c})
		}
	}
	slices.SortFunc(pairs, func(a, b pair) int {
		if c := strings.Compare(a.model, b.model); c != 0 {
			return c
		}
		return strings.Compare(a.control, b.control)
	})
	if len(pairs) > limit {
		pairs, truncated = pairs[:limit], true
	}
	out = make([]Control, 0, len(pairs))
	if len(pairs) == 0 {
		return out, truncated, nil
	}
	fields := make([]string, len(pairs))
	channels := make([]string, 0, len(pairs))
	for i, p := range pairs {
		fields[i] = keys.PointRef(p.model, p.control)
		channels = append(channels, snap.Controls[p.model][p.control].Channel)
	}
	r := s.d.Redis
	last, err := r.Do(ctx, r.B().Hmget().Key(keys.ControlLast).Field(fields...).Build()).ToArray()
	if err != nil {
		return nil, false, s.redisError("last control outcomes", err)
	}
	metas, err := s.metas(ctx, channels)
	if err != nil {
		return nil, false, err
	}
	for i, p := range pairs {
		ref := snap.Controls[p.model][p.control]
		m := metas[ref.Channel][ref.Point]
		lo, hi := controlRange(m)
		c := Control{Model: p.model, Control: p.control, Channel: ref.Channel, Point: ref.Point, Type: m.Type,
			Unit: snap.Unit(p.model, p.control, m), Description: snap.Description(p.model, p.control, m),
			Min: lo, Max: hi, Writable: m.Writable}
		if i < len(last) {
			if v, err := last[i].ToString(); err == nil {
				c.Last = parseLast(v)
			}
		}
		out = append(out, c)
	}
	return out, truncated, nil
}

func (s *server) model(c *fiber.Ctx) error {
	id, err := idParam(c, "id", "model id")
	if err != nil {
		return err
	}
	ctx, cancel := reqCtx(c)
	defer cancel()
	snap, err := s.snapshot(ctx)
	if err != nil {
		return err
	}
	if err := s.modelExists(ctx, snap, id); err != nil {
		return err
	}
	channels := snap.ModelChannels(id)
	metas, err := s.metas(ctx, channels)
	if err != nil {
		return err
	}
	points := make(map[string]ModelPoint, len(snap.Points[id]))
	for name, ref := range snap.Points[id] {
		m := metas[ref.Channel][ref.Point]
		points[name] = ModelPoint{Channel: ref.Channel, Point: ref.Point, Type: m.Type,
			Unit: snap.Unit(id, name, m), Description: snap.Description(id, name, m)}
	}
	controls, _, err := s.controlsOf(ctx, snap, []string{id}, MaxControls)
	if err != nil {
		return err
	}
	if channels == nil {
		channels = []string{}
	}
	return c.JSON(fiber.Map{"model": id, "channels": channels, "points": points, "controls": controls})
}

// modelExists answers 404 for a model with neither a mapping nor values.
func (s *server) modelExists(ctx context.Context, snap *links.Snapshot, id string) error {
	if snap.Known(id) {
		return nil
	}
	r := s.d.Redis
	n, err := r.Do(ctx, r.B().Exists().Key(keys.ModelValues(id)).Build()).AsInt64()
	if err != nil {
		return s.redisError("model", err)
	}
	if n == 0 {
		return Errorf(http.StatusNotFound, "model %q has neither values nor a mapping", id)
	}
	return nil
}

func (s *server) controlList(c *fiber.Ctx) error {
	var models []string
	if m := c.Query("model"); m != "" {
		if !keys.ValidID(m) {
			return Errorf(http.StatusBadRequest, "invalid model id %q: %s", clip(m), idRule)
		}
		models = []string{strings.Clone(m)}
	}
	ctx, cancel := reqCtx(c)
	defer cancel()
	snap, err := s.snapshot(ctx)
	if err != nil {
		return err
	}
	if models == nil {
		for m := range snap.Controls {
			models = append(models, m)
		}
	} else if err := s.modelExists(ctx, snap, models[0]); err != nil {
		return err
	}
	out, truncated, err := s.controlsOf(ctx, snap, models, MaxControls)
	if err != nil {
		return err
	}
	return c.JSON(fiber.Map{"controls": out, "truncated": truncated})
}

// checkRange refuses a numeric control value outside the range of the
// channel point that the control writes, when that range is known.
func (s *server) checkRange(ctx context.Context, model, control, value string) error {
	snap, err := s.snapshot(ctx)
	if err != nil {
		return err
	}
	ref, ok := snap.Controls[model][control]
	if !ok {
		return nil // send_control answers for an unknown control
	}
	metas, err := s.links.Meta(ctx, ref.Channel)
	if err != nil {
		return s.redisError("point metadata", err)
	}
	v, err := strconv.ParseFloat(value, 64)
	if err != nil {
		return nil
	}
	lo, hi := controlRange(metas[ref.Point])
	if (lo != nil && v < *lo) || (hi != nil && v > *hi) {
		e := Errorf(http.StatusBadRequest, "value %s of control %s:%s is out of range %s..%s", value, model, control, bound(lo), bound(hi))
		e.Extra = map[string]any{"status": "invalid"}
		return e
	}
	return nil
}

// bound formats an end of a range ("" when open).
func bound(f *float64) string {
	if f == nil {
		return ""
	}
	return strconv.FormatFloat(*f, 'f', -1, 64)
}
