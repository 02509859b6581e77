package api

import (
	"bytes"
	"encoding/json"
	"net/http"
	"slices"
	"strconv"
	"strings"

	"github.com/gofiber/fiber/v2"
	"github.com/redis/rueidis"

	"github.com/voltedge/voltedge/internal/keys"
	"github.com/voltedge/voltedge/modsrv/auth"
)

// Device is one entry of the device registry: a DTU registration id and
// the template comsrv gives its channel.
type Device struct {
	ID       string `json:"id"`
	Template string `json:"template"`
}

// decodeBody decodes a JSON request body into v, refusing unknown fields.
func decodeBody(c *fiber.Ctx, v any, shape string) error {
	d := json.NewDecoder(bytes.NewReader(c.Body()))
	d.DisallowUnknownFields()
	if err := d.Decode(v); err != nil {
		return Errorf(http.StatusBadRequest, "body must be JSON %s: %v", shape, err)
	}
	if d.More() {
		return Errorf(http.StatusBadRequest, "body must be one JSON object %s", shape)
	}
	return nil
}

func (s *server) addDevice(c *fiber.Ctx) error {
	var d Device
	if err := decodeBody(c, &d, `{"id":…,"template":…}`); err != nil {
		return err
	}
	if !keys.ValidID(d.ID) {
		return Errorf(http.StatusBadRequest, "invalid device id %q: %s", d.ID, idRule)
	}
	if !keys.ValidID(d.Template) {
		return Errorf(http.StatusBadRequest, "invalid template id %q: %s", d.Template, idRule)
	}
	ctx, cancel := reqCtx(c)
	defer cancel()
	r := s.d.Redis
	// comsrv serves the id already, and not as a registry device: a
	// configured (or provisioned) channel, which a device must never take.
	// comsrv ignores such entries too; this answers the client at once.
	res := r.DoMulti(ctx,
		r.B().Sismember().Key(keys.Channels).Member(d.ID).Build(),
		r.B().Hexists().Key(keys.DeviceRegistry).Field(d.ID).Build(),
		r.B().Smembers().Key(keys.Templates).Build())
	served, err := res[0].AsBool()
	if err != nil {
		return s.redisError("add device", err)
	}
	registered, err := res[1].AsBool()
	if err != nil {
		return s.redisError("add device", err)
	}
	known, err := res[2].AsStrSlice()
	if err != nil {
		return s.redisError("add device", err)
	}
	note := ""
	switch {
	case len(known) == 0:
		note = "template not checked: " + keys.Templates + " is absent (comsrv has not started on this Redis)"
	case !slices.Contains(known, d.Template):
		slices.Sort(known)
		return Errorf(http.StatusBadRequest, "unknown template %q (comsrv knows: %s)", d.Template, strings.Join(known[:min(len(known), 50)], ", "))
	}
	if served && !registered {
		return Errorf(http.StatusConflict, "id %q is a channel comsrv serves (configured in its channel files, or provisioned); a device cannot take it", d.ID)
	}
	added, err := r.Do(ctx, r.B().Hsetnx().Key(keys.DeviceRegistry).Field(d.ID).Value(d.Template).Build()).AsBool()
	if err != nil {
		return s.redisError("add device", err)
	}
	if added {
		s.d.Log.Info("device registered", "user", auth.UserOf(c), "id", d.ID, "template", d.Template)
		if note != "" {
			return c.Status(http.StatusCreated).JSON(fiber.Map{"id": d.ID, "template": d.Template, "note": note})
		}
		return c.Status(http.StatusCreated).JSON(d)
	}
	cur, err := r.Do(ctx, r.B().Hget().Key(keys.DeviceRegistry).Field(d.ID).Build()).ToString()
	switch {
	case rueidis.IsRedisNil(err):
		return Errorf(http.StatusConflict, "device %q was removed meanwhile; try again", d.ID)
	case err != nil:
		return s.redisError("device", err)
	case cur != d.Template:
		return Errorf(http.StatusConflict, "device %q is registered with template %q; delete it first", d.ID, cur)
	}
	return c.JSON(d)
}

// Bounds of the refused devices of GET /devices.
const (
	// RefusedScan is how many of the newest connection events are looked at.
	RefusedScan = 1000
	// MaxRefused bounds the refused registration ids returned.
	MaxRefused = 100
)

// Refused is a registration id that comsrv refused (a "refused" connection
// event) and that is neither registered nor a channel: its newest event's
// remote address, reason and time, and how many of the events looked at
// refused it.
type Refused struct {
	Registration string `json:"registration"`
	Remote       string `json:"remote"`
	Reason       string `json:"reason"`
	TS           int64  `json:"ts"`
	Count        int    `json:"count"`
}

func (s *server) devices(c *fiber.Ctx) error {
	ctx, cancel := reqCtx(c)
	defer cancel()
	r := s.d.Redis
	res := r.DoMulti(ctx,
		r.B().Hgetall().Key(keys.DeviceRegistry).Build(),
		r.B().Smembers().Key(keys.Templates).Build(),
		r.B().Xrevrange().Key(keys.ConnectionEvents).End("+").Start("-").Count(RefusedScan).Build(),
		r.B().Smembers().Key(keys.Channels).Build(),
	)
	m, err := res[0].AsStrMap()
	if err != nil {
		return s.redisError("devices", err)
	}
	templates, err := res[1].AsStrSlice()
	if err != nil {
		return s.redisError("templates", err)
	}
	events, err := res[2].AsXRange()
	if err != nil {
		return s.redisError("events", err)
	}
	channels, err := res[3].AsStrSlice()
	if err != nil {
		return s.redisError("channels", err)
	}
	out := make([]Device, 0, len(m))
	for id, t := range m {
		out = append(out, Device{ID: id, Template: t})
	}
	slices.SortFunc(out, func(a, b Device) int { return strings.Compare(a.ID, b.ID) })
	slices.Sort(templates)
	served := make(map[string]bool, len(channels))
	for _, ch := range channels {
		served[ch] = true
	}
	return c.JSON(fiber.Map{"devices": out, "templates": nonNil(templates), "refused": refusedDevices(events, m, served)})
}

// refusedDevices gathers the registration ids of the refused events
// (newest first), leaving out registered and served ids; at most MaxRefused.
func refusedDevices(events []rueidis.XRangeEntry, registered map[string]string, served map[string]bool) []Refused {
	out := []Refused{}
	at := map[string]int{}
	for _, e := range events {
		f := e.FieldValues
		id := f["registration"]
		if f["event"] != "refused" || id == "" || served[id] {
			continue
		}
		if _, ok := registered[id]; ok {
			continue
		}
		if i, ok := at[id]; ok {
			out[i].Count++
			continue
		}
		if len(out) >= MaxRefused {
			continue
		}
		ts, _ := strconv.ParseInt(f["ts"], 10, 64)
		at[id] = len(out)
		out = append(out, Refused{Registration: id, Remote: f["remote"], Reason: f["reason"], TS: ts, Count: 1})
	}
	return out
}

func (s *server) deleteDevice(c *fiber.Ctx) error {
	id, err := idParam(c, "id", "device id")
	if err != nil {
		return err
	}
	ctx, cancel := reqCtx(c)
	defer cancel()
	r := s.d.Redis
	n, err := r.Do(ctx, r.B().Hdel().Key(keys.DeviceRegistry).Field(id).Build()).AsInt64()
	if err != nil {
		return s.redisError("delete device", err)
	}
	if n == 0 {
		return Errorf(http.StatusNotFound, "device %q is not registered", id)
	}
	s.d.Log.Info("device removed", "user", auth.UserOf(c), "id", id)
	return c.JSON(fiber.Map{"id": id, "deleted": true})
}
