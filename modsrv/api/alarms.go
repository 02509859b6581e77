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

	"github.com/voltedge/voltedge/internal/alerting"
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
		r.B().Hgetall().Key(keys.AlarmShelved).Build(),
	)
	active, err := res[0].AsStrMap()
	if err != nil {
		return s.redisError("active alarms", err)
	}
	recentEntries, err := res[1].AsXRange()
	if err != nil {
		return s.redisError("alarm events", err)
	}
	shelf, err := res[2].AsStrMap()
	if err != nil {
		return s.redisError("shelved alarms", err)
	}
	rules, _, err := alerting.LoadRules(ctx, r)
	if err != nil {
		return s.redisError("rules", err)
	}
	now := time.Now().UnixMilli()
	byLevel := map[string]int{}
	for _, l := range alerting.Levels() {
		byLevel[l] = 0
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
		level := alerting.DefaultAlarmLevel
		if model, point, ok := keys.SplitRef(ref); ok {
			a["model"], a["point"] = model, point
			level = alerting.AlarmLevel(rules, model, point)
		}
		a["level"] = level
		byLevel[level]++
		if sh, ok := shelvedAt(shelf[ref], now); ok {
			a["shelved"] = sh
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
	return c.JSON(fiber.Map{"active": out, "recent": recent, "by_level": byLevel})
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

// Shelf is a shelved alarm as kept in keys.AlarmShelved: who shelved it,
// when, and until when it is not notified (Unix ms).
type Shelf struct {
	User  string `json:"user"`
	TS    int64  `json:"ts"`
	Until int64  `json:"until"`
}

// MaxShelve is the longest shelving modsrv accepts (alarmsrv's default
// shelve_max, past which it cuts until anyway).
const MaxShelve = 7 * 24 * time.Hour

// shelvedAt decodes a keys.AlarmShelved entry that has not expired at now.
func shelvedAt(js string, now int64) (Shelf, bool) {
	var sh Shelf
	if js == "" || json.Unmarshal([]byte(js), &sh) != nil || sh.Until <= now {
		return Shelf{}, false
	}
	if sh.TS > 0 && sh.Until > sh.TS+MaxShelve.Milliseconds() {
		sh.Until = sh.TS + MaxShelve.Milliseconds()
	}
	return sh, true
}

// alarmRef returns the path's {model}:{point_name}.
func alarmRef(c *fiber.Ctx) (string, error) {
	ref, err := pathParam(c, "ref")
	if err != nil {
		return "", err
	}
	model, point, ok := keys.SplitRef(ref)
	if !ok || !keys.ValidID(model) || !keys.ValidID(point) {
		return "", Errorf(http.StatusBadRequest, "invalid alarm reference %q: want {model}:{point_name}", clip(ref))
	}
	return ref, nil
}

// parseUntil reads the "until" of a shelve request: Unix ms, or a
// duration from now ("2h", "30m").
func parseUntil(raw json.RawMessage, now time.Time) (int64, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || string(raw) == "null" {
		return 0, Errorf(http.StatusBadRequest, `until: required (Unix ms, or a duration such as "2h")`)
	}
	var until int64
	if raw[0] == '"' {
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return 0, Errorf(http.StatusBadRequest, "until: %v", err)
		}
		d, err := time.ParseDuration(strings.TrimSpace(s))
		if err != nil {
			if n, nerr := strconv.ParseInt(strings.TrimSpace(s), 10, 64); nerr == nil {
				until = n
			} else {
				return 0, Errorf(http.StatusBadRequest, "until: %q is neither Unix ms nor a duration such as \"2h\"", clip(s))
			}
		} else {
			if d <= 0 {
				return 0, Errorf(http.StatusBadRequest, "until: duration %s is not positive", d)
			}
			until = now.Add(d).UnixMilli()
		}
	} else if err := json.Unmarshal(raw, &until); err != nil {
		return 0, Errorf(http.StatusBadRequest, "until: want Unix ms or a duration string: %v", err)
	}
	switch {
	case until <= now.UnixMilli():
		return 0, Errorf(http.StatusBadRequest, "until: %d is not in the future", until)
	case until > now.Add(MaxShelve).UnixMilli():
		return 0, Errorf(http.StatusBadRequest, "until: more than %s from now", MaxShelve)
	}
	return until, nil
}

func (s *server) shelveAlarm(c *fiber.Ctx) error {
	ref, err := alarmRef(c)
	if err != nil {
		return err
	}
	var req struct {
		Until json.RawMessage `json:"until"`
	}
	if err := decodeBody(c, &req, `{"until":…}`); err != nil {
		return err
	}
	now := time.Now()
	until, err := parseUntil(req.Until, now)
	if err != nil {
		return err
	}
	sh := Shelf{User: auth.UserOf(c), TS: now.UnixMilli(), Until: until}
	b, err := json.Marshal(sh)
	if err != nil {
		return err
	}
	ctx, cancel := reqCtx(c)
	defer cancel()
	r := s.d.Redis
	res := r.DoMulti(ctx,
		r.B().Hset().Key(keys.AlarmShelved).FieldValue().FieldValue(ref, string(b)).Build(),
		r.B().Hexists().Key(keys.AlarmActive).Field(ref).Build())
	if err := res[0].Error(); err != nil {
		return s.redisError("shelve", err)
	}
	active, _ := res[1].AsBool()
	s.d.Log.Info("alarm shelved", "user", sh.User, "ref", ref, "until", until)
	return c.JSON(fiber.Map{"ref": ref, "user": sh.User, "ts": sh.TS, "until": sh.Until, "active": active})
}

func (s *server) unshelveAlarm(c *fiber.Ctx) error {
	ref, err := alarmRef(c)
	if err != nil {
		return err
	}
	ctx, cancel := reqCtx(c)
	defer cancel()
	r := s.d.Redis
	n, err := r.Do(ctx, r.B().Hdel().Key(keys.AlarmShelved).Field(ref).Build()).AsInt64()
	if err != nil {
		return s.redisError("unshelve", err)
	}
	if n == 0 {
		return Errorf(http.StatusNotFound, "alarm %q is not shelved", ref)
	}
	s.d.Log.Info("alarm unshelved", "user", auth.UserOf(c), "ref", ref)
	return c.JSON(fiber.Map{"ref": ref, "shelved": false})
}
