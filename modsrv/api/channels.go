package api

import (
	"encoding/json"
	"net/http"
	"regexp"
	"slices"
	"strconv"

	"github.com/gofiber/fiber/v2"
	"github.com/redis/rueidis"

	"github.com/voltedge/voltedge/internal/contract"
	"github.com/voltedge/voltedge/internal/keys"
)

// Bounds of the channel and event queries.
const (
	DefaultChannelLimit = 1000
	MaxChannelLimit     = 10000
	DefaultFrames       = 20
	MaxFrames           = 1000
	DefaultEvents       = 50
	MaxEvents           = 1000
	// RecentAlarms is how many alarm events GET /alarms returns.
	RecentAlarms = 50
)

func (s *server) channels(c *fiber.Ctx) error {
	offset, err := intQuery(c, "offset", 0, 0, 1<<31-1)
	if err != nil {
		return err
	}
	limit, err := intQuery(c, "limit", DefaultChannelLimit, 1, MaxChannelLimit)
	if err != nil {
		return err
	}
	ctx, cancel := reqCtx(c)
	defer cancel()
	r := s.d.Redis
	ids, err := r.Do(ctx, r.B().Smembers().Key(keys.Channels).Build()).AsStrSlice()
	if err != nil {
		return s.redisError("channels", err)
	}
	slices.Sort(ids)
	total := len(ids)
	ids = ids[min(offset, total):min(offset+limit, total)]
	out := make([]map[string]any, 0, len(ids))
	snap, err := s.snapshot(ctx)
	if err != nil {
		return err
	}
	if len(ids) > 0 {
		cmds := make(rueidis.Commands, len(ids))
		for i, id := range ids {
			cmds[i] = r.B().Hgetall().Key(keys.ChannelStatus(id)).Build()
		}
		for i, res := range r.DoMulti(ctx, cmds...) {
			st, err := res.AsStrMap()
			if err != nil {
				return s.redisError("channel status", err)
			}
			ch := make(map[string]any, len(st)+2)
			for k, v := range st {
				ch[k] = contract.ChannelValue(k, v)
			}
			ch["id"] = ids[i]
			ch["online"] = st[contract.ChannelOnline] == "1"
			ch[contract.ChannelName] = st[contract.ChannelName]
			ch[contract.ChannelTemplate] = st[contract.ChannelTemplate]
			ch["models"] = nonNil(snap.ChannelModels(ids[i]))
			out = append(out, ch)
		}
	}
	return c.JSON(fiber.Map{"channels": out, "total": total, "offset": offset})
}

// unknownChannel is the answer of every /channels/{id} route for an id
// that is not in the channel set (keys.Channels), whatever keys it has left.
func unknownChannel(id string) error {
	return Errorf(http.StatusNotFound, "channel %q is unknown (not in %s)", id, keys.Channels)
}

func (s *server) channel(c *fiber.Ctx) error {
	id, err := idParam(c, "id", "channel id")
	if err != nil {
		return err
	}
	ctx, cancel := reqCtx(c)
	defer cancel()
	r := s.d.Redis
	res := r.DoMulti(ctx,
		r.B().Sismember().Key(keys.Channels).Member(id).Build(),
		r.B().Hgetall().Key(keys.ChannelStatus(id)).Build(),
		r.B().Hlen().Key(keys.ChannelValues(id)).Build(),
	)
	member, err := res[0].AsBool()
	if err != nil {
		return s.redisError("channel", err)
	}
	st, err := res[1].AsStrMap()
	if err != nil {
		return s.redisError("channel status", err)
	}
	n, err := res[2].AsInt64()
	if err != nil {
		return s.redisError("channel points", err)
	}
	if !member {
		return unknownChannel(id)
	}
	snap, err := s.snapshot(ctx)
	if err != nil {
		return err
	}
	status := map[string]any{"online": st[contract.ChannelOnline] == "1"}
	stats := map[string]any{}
	for k, v := range st {
		if contract.IsChannelCounter(k) {
			stats[k] = contract.ChannelValue(k, v)
		} else {
			status[k] = contract.ChannelValue(k, v)
		}
	}
	return c.JSON(fiber.Map{"id": id, "served": member, "points": n, "status": status, "stats": stats,
		"name": st[contract.ChannelName], "template": st[contract.ChannelTemplate], "models": nonNil(snap.ChannelModels(id))})
}

func (s *server) channelPoints(c *fiber.Ctx) error {
	id, err := idParam(c, "id", "channel id")
	if err != nil {
		return err
	}
	ctx, cancel := reqCtx(c)
	defer cancel()
	r := s.d.Redis
	res := r.DoMulti(ctx,
		r.B().Hgetall().Key(keys.ChannelValues(id)).Build(),
		r.B().Hgetall().Key(keys.ChannelTimestamps(id)).Build(),
		r.B().Hgetall().Key(keys.ChannelQuality(id)).Build(),
		r.B().Sismember().Key(keys.Channels).Member(id).Build(),
	)
	var m [3]map[string]string
	for i := range m {
		if m[i], err = res[i].AsStrMap(); err != nil {
			return s.redisError("channel points", err)
		}
	}
	member, err := res[3].AsBool()
	if err != nil {
		return s.redisError("channel", err)
	}
	if !member {
		return unknownChannel(id)
	}
	snap, err := s.snapshot(ctx)
	if err != nil {
		return err
	}
	meta, err := s.links.Meta(ctx, id)
	if err != nil {
		return s.redisError("point metadata", err)
	}
	pts := points(m[0], m[1], m[2])
	for pid, p := range pts {
		md := meta[pid]
		p.Name, p.Type, p.Unit = md.Name, md.Type, md.Unit
		if mp, ok := snap.ChannelPoints[id][pid]; ok {
			p.Model, p.ModelPoint = mp.Model, mp.Name
		}
		pts[pid] = p
	}
	return c.JSON(fiber.Map{"channel": id, "points": pts})
}

func (s *server) channelFrames(c *fiber.Ctx) error {
	id, err := idParam(c, "id", "channel id")
	if err != nil {
		return err
	}
	limit, err := intQuery(c, "limit", DefaultFrames, 1, MaxFrames)
	if err != nil {
		return err
	}
	ctx, cancel := reqCtx(c)
	defer cancel()
	r := s.d.Redis
	res := r.DoMulti(ctx,
		r.B().Lrange().Key(keys.ChannelFrames(id)).Start(0).Stop(int64(limit-1)).Build(),
		r.B().Sismember().Key(keys.Channels).Member(id).Build(),
	)
	list, err := res[0].AsStrSlice()
	if err != nil {
		return s.redisError("frames", err)
	}
	member, err := res[1].AsBool()
	if err != nil {
		return s.redisError("channel", err)
	}
	if !member {
		return unknownChannel(id)
	}
	frames := make([]any, len(list))
	for i, f := range list {
		frames[i] = jsonOrRaw(f)
	}
	return c.JSON(fiber.Map{"channel": id, "frames": frames})
}

// jsonOrRaw returns a stored JSON object as it is (re-encoded, so escaped),
// or {"raw": text} when it is not one.
func jsonOrRaw(s string) any {
	if len(s) > 0 && s[0] == '{' && json.Valid([]byte(s)) {
		return json.RawMessage(s)
	}
	return map[string]string{"raw": s}
}

// streamID matches a Redis stream entry id.
var streamID = regexp.MustCompile(`^[0-9]{1,20}-[0-9]{1,20}$`)

// streamEntry flattens a stream entry: its id and fields.
func streamEntry(e rueidis.XRangeEntry) map[string]string {
	m := make(map[string]string, len(e.FieldValues)+1)
	for k, v := range e.FieldValues {
		m[k] = v
	}
	m["id"] = e.ID
	return m
}

func (s *server) events(c *fiber.Ctx) error {
	count, err := intQuery(c, "count", DefaultEvents, 1, MaxEvents)
	if err != nil {
		return err
	}
	end := "+"
	if b := c.Query("before"); b != "" {
		if !streamID.MatchString(b) {
			return Errorf(http.StatusBadRequest, "before %q is not a stream id (like 1795298189191-0)", b)
		}
		end = "(" + b
	}
	ctx, cancel := reqCtx(c)
	defer cancel()
	r := s.d.Redis
	entries, err := r.Do(ctx, r.B().Xrevrange().Key(keys.ConnectionEvents).End(end).Start("-").Count(int64(count)).Build()).AsXRange()
	if err != nil {
		return s.redisError("events", err)
	}
	out := make([]map[string]string, len(entries))
	for i, e := range entries {
		out[i] = streamEntry(e)
	}
	next := ""
	if len(entries) == count {
		next = entries[len(entries)-1].ID
	}
	return c.JSON(fiber.Map{"events": out, "next": next})
}

// nonNil returns s, or an empty slice for nil (JSON [] instead of null).
func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// intQuery reads an integer query parameter within [lo, hi].
func intQuery(c *fiber.Ctx, name string, def, lo, hi int) (int, error) {
	v := c.Query(name)
	if v == "" {
		return def, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < lo || n > hi {
		return 0, Errorf(http.StatusBadRequest, "%s %q must be an integer from %d to %d", name, v, lo, hi)
	}
	return n, nil
}
