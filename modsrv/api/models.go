package api

import (
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/redis/rueidis"

	"github.com/voltedge/voltedge/internal/contract"
	"github.com/voltedge/voltedge/internal/keys"
	"github.com/voltedge/voltedge/internal/redisconn"
	"github.com/voltedge/voltedge/modsrv/links"
	"github.com/voltedge/voltedge/scripts"
)

// Bounds of GET /models.
const (
	// MaxScanKeys bounds the keys GET /models looks at; beyond it the
	// answer says "truncated": true.
	MaxScanKeys = 10000
	scanCount   = 1000
)

// Quality values of a point.
const (
	QualityGood  = "good"
	QualityStale = "stale"
)

// Point is one value with its sample time (Unix ms, 0 if unknown) and
// quality, and what is known of its channel point: type and unit (model
// points), name and the model point it is mapped to (channel points).
type Point struct {
	Value      string `json:"value"`
	TS         int64  `json:"ts"`
	Quality    string `json:"quality"`
	Name       string `json:"name,omitempty"`
	Type       string `json:"type,omitempty"`
	Unit       string `json:"unit,omitempty"`
	Model      string `json:"model,omitempty"`
	ModelPoint string `json:"model_point,omitempty"`
}

// service is one entry of the health answer's services.
type service struct {
	UpdatedAt int64   `json:"updated_at"`
	AgeS      float64 `json:"age_s"`
}

func (s *server) health(c *fiber.Ctx) error {
	ctx, cancel := reqCtx(c)
	defer cancel()
	r := s.d.Redis
	res := r.DoMulti(ctx,
		r.B().Ping().Build(),
		r.B().FcallRo().Function(scripts.FnVersion).Numkeys(0).Build(),
		r.B().Hget().Key(keys.ComsrvStats).Field("updated_at").Build(),
		r.B().Info().Section("server").Build(),
		r.B().Hgetall().Key(keys.ConfigRestore).Build(),
	)
	body := fiber.Map{"uptime_s": int64(time.Since(s.d.Started).Seconds())}
	if err := res[0].Error(); err != nil {
		body["redis"] = "down"
		body["lua_version"] = 0
		body["services"] = fiber.Map{}
		body["error"] = errorBody{Code: StatusCode(http.StatusServiceUnavailable), Message: "redis: " + err.Error()}
		return c.Status(http.StatusServiceUnavailable).JSON(body)
	}
	body["redis"] = "ok"
	v, err := res[1].AsInt64()
	if err != nil {
		v = 0 // library missing: the services load it at their start
	}
	body["lua_version"] = v
	services := fiber.Map{}
	if ms, err := res[2].AsInt64(); err == nil {
		age := float64(time.Now().UnixMilli()-ms) / 1000
		services["comsrv"] = service{UpdatedAt: ms, AgeS: float64(int64(age*10)) / 10}
	}
	body["services"] = services
	info, _ := res[3].ToString()
	marker, _ := res[4].AsStrMap()
	state, problem := s.configState(info, marker, len(services) > 0)
	body["config"] = state
	if problem != "" {
		body["error"] = errorBody{Code: StatusCode(http.StatusServiceUnavailable), Message: problem}
		return c.Status(http.StatusServiceUnavailable).JSON(body)
	}
	return c.JSON(body)
}

// States of the run-time configuration in the health answer ("config").
const (
	// ConfigRestored: comsrv confirmed the configuration of this Redis run.
	ConfigRestored = "restored"
	// ConfigRestoring: Redis restarted and comsrv has not restored the configuration yet (503).
	ConfigRestoring = "restoring"
	// ConfigRestoreFailed: comsrv could not restore it from its snapshot (503).
	ConfigRestoreFailed = "restore_failed"
	// ConfigUnknown: no comsrv has used this Redis and modsrv saw no restart.
	ConfigUnknown = "unknown"
)

// configState judges comsrv's configuration marker (keys.ConfigRestore)
// against the Redis run described by info (INFO server). problem, when not
// empty, makes the answer degraded. A missing marker is degraded when
// something shows the configuration should be there: a marker of another
// run (Redis restarted with its data), comsrv's heartbeat (comsrv runs on
// this Redis), or a run this modsrv saw confirmed before (Redis restarted
// empty).
func (s *server) configState(info string, marker map[string]string, comsrvSeen bool) (state, problem string) {
	run, ok := redisconn.ParseRunID(info)
	if !ok {
		return ConfigUnknown, ""
	}
	confirmed := s.confirmedRun.Load()
	switch m := marker[contract.RestoreRunID]; {
	case m == run && marker[contract.RestoreProblem] != "":
		return ConfigRestoreFailed, "run-time configuration not restored: " + marker[contract.RestoreProblem]
	case m == run:
		if confirmed == nil || *confirmed != run {
			s.confirmedRun.Store(&run)
		}
		return ConfigRestored, ""
	case m != "" || comsrvSeen || (confirmed != nil && *confirmed != run):
		return ConfigRestoring, "run-time configuration not restored since Redis restarted (comsrv restores it from its snapshot)"
	}
	return ConfigUnknown, ""
}

// modelSummary is one entry of GET /models.
type modelSummary struct {
	ID        string `json:"id"`
	Points    int64  `json:"points"`
	UpdatedAt int64  `json:"updated_at"`
}

func (s *server) models(c *fiber.Ctx) error {
	ctx, cancel := reqCtx(c)
	defer cancel()
	r := s.d.Redis
	prefix := keys.ModelValues("")
	var ids []string
	var cursor uint64
	scanned, truncated := 0, false
	for {
		e, err := r.Do(ctx, r.B().Scan().Cursor(cursor).Match(keys.ModelValues("*")).Count(scanCount).Type("hash").Build()).AsScanEntry()
		if err != nil {
			return s.redisError("scan models", err)
		}
		for _, k := range e.Elements {
			// Model ids contain no separator: this skips the :t and :q hashes.
			if id, ok := strings.CutPrefix(k, prefix); ok && keys.ValidID(id) {
				ids = append(ids, id)
			}
		}
		scanned += len(e.Elements)
		cursor = e.Cursor
		if cursor == 0 {
			break
		}
		if scanned >= MaxScanKeys {
			truncated = true
			break
		}
	}
	slices.Sort(ids)
	ids = slices.Compact(ids) // SCAN may return a key twice
	out := make([]modelSummary, len(ids))
	if len(ids) > 0 {
		cmds := make(rueidis.Commands, 0, 2*len(ids))
		for _, id := range ids {
			cmds = append(cmds, r.B().Hlen().Key(keys.ModelValues(id)).Build(), r.B().Hvals().Key(keys.ModelTimestamps(id)).Build())
		}
		res := r.DoMulti(ctx, cmds...)
		for i, id := range ids {
			n, err := res[2*i].AsInt64()
			if err != nil {
				return s.redisError("model sizes", err)
			}
			ts, err := res[2*i+1].AsStrSlice()
			if err != nil {
				return s.redisError("model times", err)
			}
			var latest int64
			for _, t := range ts {
				if v, err := strconv.ParseInt(t, 10, 64); err == nil && v > latest {
					latest = v
				}
			}
			out[i] = modelSummary{ID: id, Points: n, UpdatedAt: latest}
		}
	}
	body := fiber.Map{"models": out}
	if truncated {
		body["truncated"] = true
	}
	return c.JSON(body)
}

// idRule describes keys.ValidID in error messages.
const idRule = "1..128 bytes without ':', '/', spaces, control bytes or * ? [ ]"

// pathParam returns the path parameter name, unescaped (the application
// routes on the escaped path, so that %2F cannot add a path segment).
func pathParam(c *fiber.Ctx, name string) (string, error) {
	raw := c.Params(name)
	v, err := url.PathUnescape(raw)
	if err != nil {
		return "", Errorf(http.StatusBadRequest, "path parameter %s %q is not a valid escape: %v", name, raw, err)
	}
	return strings.Clone(v), nil
}

// idParam returns the path parameter name, unescaped and checked as an id.
func idParam(c *fiber.Ctx, name, what string) (string, error) {
	v, err := pathParam(c, name)
	if err != nil {
		return "", err
	}
	if !keys.ValidID(v) {
		return "", Errorf(http.StatusBadRequest, "invalid %s %q: %s", what, v, idRule)
	}
	return v, nil
}

// points joins value, time and quality hashes.
func points(values, times, quality map[string]string) map[string]Point {
	out := make(map[string]Point, len(values))
	for name, v := range values {
		p := Point{Value: v, Quality: QualityGood}
		if t, err := strconv.ParseInt(times[name], 10, 64); err == nil {
			p.TS = t
		}
		if q, ok := quality[name]; ok && q != "" {
			p.Quality = q
		}
		out[name] = p
	}
	return out
}

func (s *server) modelValues(c *fiber.Ctx) error {
	id, err := idParam(c, "id", "model id")
	if err != nil {
		return err
	}
	ctx, cancel := reqCtx(c)
	defer cancel()
	r := s.d.Redis
	res := r.DoMulti(ctx,
		r.B().Hgetall().Key(keys.ModelValues(id)).Build(),
		r.B().Hgetall().Key(keys.ModelTimestamps(id)).Build(),
		r.B().Hgetall().Key(keys.ModelQuality(id)).Build(),
	)
	var m [3]map[string]string
	for i := range res {
		if m[i], err = res[i].AsStrMap(); err != nil {
			return s.redisError("model values", err)
		}
	}
	if len(m[0]) == 0 {
		return Errorf(http.StatusNotFound, "model %q has no values", id)
	}
	values := points(m[0], m[1], m[2])
	snap, err := s.snapshot(ctx)
	if err != nil {
		return err
	}
	metas, err := s.metas(ctx, snap.ModelChannels(id))
	if err != nil {
		return err
	}
	for name, p := range values {
		ref, ok := snap.Points[id][name]
		meta := metas[ref.Channel][ref.Point]
		if !ok {
			meta = links.Meta{}
		}
		p.Type, p.Unit = meta.Type, snap.Unit(id, name, meta)
		values[name] = p
	}
	return c.JSON(fiber.Map{"model": id, "values": values})
}
