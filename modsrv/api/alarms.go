package api

import (
	"bytes"
	"encoding/json"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/redis/rueidis"

	"github.com/voltedge/voltedge/internal/contract"
	"github.com/voltedge/voltedge/internal/keys"
	"github.com/voltedge/voltedge/modsrv/auth"
)

// Ack is an alarm acknowledgement as kept in keys.AlarmAcks: who, when
// (Unix ms), and the raise time of the alarm it acknowledged (Unix ms).
type Ack struct {
	User    string `json:"user"`
	TS      int64  `json:"ts"`
	AlarmTS int64  `json:"alarm_ts"`
}

// decodeObject decodes a JSON object keeping numbers as their text.
func decodeObject(s string) (map[string]any, bool) {
	d := json.NewDecoder(strings.NewReader(s))
	d.UseNumber()
	var m map[string]any
	if err := d.Decode(&m); err != nil || m == nil || d.More() {
		return nil, false
	}
	return m, true
}

// alarmTS returns the "ts" of an active alarm's JSON, or 0.
func alarmTS(m map[string]any) int64 {
	if n, ok := m["ts"].(json.Number); ok {
		if v, err := n.Int64(); err == nil {
			return v
		}
	}
	return 0
}

func (s *server) alarms(c *fiber.Ctx) error {
	ctx, cancel := reqCtx(c)
	defer cancel()
	r := s.d.Redis
	res := r.DoMulti(ctx,
		r.B().Hgetall().Key(keys.AlarmActive).Build(),
		r.B().Xrevrange().Key(keys.AlarmEvents).End("+").Start("-").Count(RecentAlarms).Build(),
	)
	active, err := res[0].AsStrMap()
	if err != nil {
		return s.redisError("active alarms", err)
	}
	recentEntries, err := res[1].AsXRange()
	if err != nil {
		return s.redisError("alarm events", err)
	}
	refs := make([]string, 0, len(active))
	for ref := range active {
		refs = append(refs, ref)
	}
	slices.Sort(refs)
	var acks []string
	if len(refs) > 0 {
		if acks, err = r.Do(ctx, r.B().Hmget().Key(keys.AlarmAcks).Field(refs...).Build()).AsStrSlice(); err != nil {
			return s.redisError("alarm acks", err)
		}
	}
	out := make([]map[string]any, 0, len(refs))
	for i, ref := range refs {
		a, ok := decodeObject(active[ref])
		if !ok {
			a = map[string]any{"raw": active[ref]}
		}
		a["ref"] = ref
		if model, point, ok := keys.SplitRef(ref); ok {
			a["model"], a["point"] = model, point
		}
		a["acked"] = false
		if i < len(acks) && acks[i] != "" {
			var ack Ack
			if json.Unmarshal([]byte(acks[i]), &ack) == nil && ack.AlarmTS == alarmTS(a) {
				a["acked"] = true
				a["ack"] = ack
			}
		}
		out = append(out, a)
	}
	recent := make([]map[string]any, len(recentEntries))
	for i, e := range recentEntries {
		recent[i] = alarmEvent(e)
	}
	return c.JSON(fiber.Map{"active": out, "recent": recent})
}

// alarmEvent is an entry of alarm:events with the same types as an active
// alarm: value, limits and ts as JSON numbers, the rest as strings, plus the
// stream entry's id.
func alarmEvent(e rueidis.XRangeEntry) map[string]any {
	m := make(map[string]any, len(e.FieldValues)+1)
	for k, v := range e.FieldValues {
		m[k] = contract.AlarmFieldValue(k, v)
	}
	m["id"] = e.ID
	return m
}

func (s *server) ackAlarm(c *fiber.Ctx) error {
	ref, err := pathParam(c, "ref")
	if err != nil {
		return err
	}
	model, point, ok := keys.SplitRef(ref)
	if !ok || !keys.ValidID(model) || !keys.ValidID(point) {
		return Errorf(http.StatusBadRequest, "invalid alarm reference %q: want {model}:{point_name}", ref)
	}
	ctx, cancel := reqCtx(c)
	defer cancel()
	r := s.d.Redis
	raw, err := r.Do(ctx, r.B().Hget().Key(keys.AlarmActive).Field(ref).Build()).ToString()
	if err != nil {
		if rueidis.IsRedisNil(err) {
			return Errorf(http.StatusNotFound, "no active alarm %q", ref)
		}
		return s.redisError("active alarm", err)
	}
	var ats int64
	if m, ok := decodeObject(raw); ok {
		ats = alarmTS(m)
	}
	ack := Ack{User: auth.UserOf(c), TS: time.Now().UnixMilli(), AlarmTS: ats}
	var b bytes.Buffer
	if err := json.NewEncoder(&b).Encode(ack); err != nil {
		return err
	}
	// The hash holds the last acknowledgement; the event is the record
	// netsrv uploads and alarmsrv acts on.
	for _, res := range r.DoMulti(ctx,
		r.B().Hset().Key(keys.AlarmAcks).FieldValue().FieldValue(ref, strings.TrimSpace(b.String())).Build(),
		r.B().Xadd().Key(keys.AlarmEvents).Maxlen().Almost().Threshold(strconv.Itoa(contract.AlarmEventsMaxLen)).Id("*").FieldValue().
			FieldValue(contract.AlarmType, contract.AlarmAck).FieldValue(contract.AlarmModel, model).
			FieldValue(contract.AlarmPoint, point).FieldValue(contract.AlarmUser, ack.User).
			FieldValue(contract.AlarmRaisedTS, strconv.FormatInt(ats, 10)).
			FieldValue(contract.AlarmTS, strconv.FormatInt(ack.TS, 10)).Build()) {
		if err := res.Error(); err != nil {
			return s.redisError("record ack", err)
		}
	}
	s.d.Log.Info("alarm acknowledged", "user", ack.User, "ref", ref, "alarm_ts", ack.AlarmTS)
	return c.JSON(fiber.Map{"ref": ref, "user": ack.User, "ts": ack.TS, "alarm_ts": ack.AlarmTS})
}
