package main

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/redis/rueidis"

	"github.com/voltedge/voltedge/internal/contract"
	"github.com/voltedge/voltedge/internal/keys"
	"github.com/voltedge/voltedge/internal/mappings"
	"github.com/voltedge/voltedge/internal/rig"
)

// template is the demo template every simulated DTU is polled with; its
// point controlPoint is the holding register the controls write.
const (
	template     = "power_meter"
	controlName  = "setpoint"
	controlPoint = "40001"
	// limitModels is how many models get alarm limits.
	limitModels = 10
	// stopGrace is how long a process may take to stop on SIGINT.
	stopGrace = 10 * time.Second
	// every is the interval of the checks.
	every = 500 * time.Millisecond
	// freshness is how recent the last sample of an updating channel or
	// model is: the template polls every second.
	freshness = 3 * time.Second
)

// env is the running rig and what the faults check against.
type env struct {
	o      options
	log    *slog.Logger
	dir    string
	rmDir  bool
	cfg    rig.Config
	redis  *rig.Redis
	comsrv *rig.Proc
	sim    *rig.Proc
	client rueidis.Client
	set    *mappings.Set

	// channels are "1".."n" and the registry channel.
	channels []string
	// registry is the registration id (and channel id) of the registry device.
	registry string
	// model maps each channel to its model.
	model map[string]string
	// points are the template's (id, name) pairs; probe is the one whose
	// sample time tells that values are updating.
	points [][2]string
	probe  [2]string
}

// setup starts the rig and waits until every link is online with values
// updating. The returned env, when not nil, must be closed.
func setup(ctx context.Context, o options, log *slog.Logger) (*env, error) {
	e := &env{o: o, log: log, dir: o.workdir}
	if e.dir != "" {
		if err := os.MkdirAll(e.dir, 0o755); err != nil {
			return nil, fmt.Errorf("work dir: %w", err)
		}
	} else {
		d, err := os.MkdirTemp("", "voltedge-chaos-")
		if err != nil {
			return nil, fmt.Errorf("work dir: %w", err)
		}
		e.dir, e.rmDir = d, true
	}
	redisPort, err := rig.FreePort()
	if err != nil {
		return e, err
	}
	dtuPort, err := rig.FreePort()
	if err != nil {
		return e, err
	}
	tmplDir, err := filepath.Abs(o.templates)
	if err != nil {
		return e, fmt.Errorf("templates: %w", err)
	}
	if e.points, err = rig.TemplatePoints(tmplDir, template); err != nil {
		return e, err
	}
	if len(e.points) == 0 {
		return e, fmt.Errorf("template %s has no points", template)
	}
	e.probe = e.points[0]
	e.registry = "DTU" + strconv.Itoa(o.n+1)
	e.model = make(map[string]string, o.n+1)
	for i := 1; i <= o.n; i++ {
		ch := strconv.Itoa(i)
		e.channels = append(e.channels, ch)
		e.model[ch] = "meter" + ch
	}
	e.channels = append(e.channels, e.registry)
	e.model[e.registry] = "meter" + strconv.Itoa(o.n+1)

	e.redis = rig.NewRedis(e.dir, redisPort)
	if err := e.redis.Start(); err != nil {
		return e, err
	}
	if err := e.redis.WaitReady(ctx, 10*time.Second); err != nil {
		return e, err
	}
	if e.client, err = e.redis.Client("chaos"); err != nil {
		return e, err
	}
	e.cfg = rig.Config{Dir: e.dir, Templates: tmplDir, Template: template, N: o.n, DTUPort: dtuPort,
		RedisURL: e.redis.URL(), LogLevel: "info", Frames: -1,
		// The event window of the links fault must not be trimmed away.
		ExtraComsrv:   fmt.Sprintf("\n[events]\nmax_len = %d\n", max(10000, 8*(o.n+1))),
		ExtraMappings: extraMappings(o.n, e.registry, e.model[e.registry], e.points),
	}
	if err := rig.WriteConfig(e.cfg); err != nil {
		return e, err
	}
	if e.set, err = mappings.Load(e.cfg.Mappings()); err != nil {
		return e, err
	}
	if err := e.applyConfig(ctx); err != nil {
		return e, err
	}
	e.comsrv = rig.Comsrv(o.bin, e.cfg)
	if err := e.comsrv.Start(); err != nil {
		return e, err
	}
	time.Sleep(500 * time.Millisecond)
	e.sim = rig.Dtusim(o.bin, e.dir, dtuPort, o.n+1, o.ramp, "-delay", o.delay.String())
	if err := e.sim.Start(); err != nil {
		return e, err
	}
	log.Info("rig started", "dir", e.dir, "redis", e.redis.URL(), "links", o.n+1)
	return e, nil
}

// extraMappings are the mapping entries beyond the map of channels 1..n:
// the registry channel's map, a setpoint control for every channel 1..n and
// alarm limits on the first models.
func extraMappings(n int, registry, registryModel string, points [][2]string) string {
	var b strings.Builder
	b.WriteString(rig.Map(registry, registryModel, points))
	fmt.Fprintf(&b, "\n[[control_range]]\nfirst = 1\nlast = %d\nmodel = \"meter{n}\"\ncontrol = %q\nchannel = \"{n}\"\npoint = %q\n",
		n, controlName, controlPoint)
	name := points[0][1]
	for _, table := range []struct {
		name  string
		limit string
	}{{"thresholds", "250"}, {"low", "180"}, {"hysteresis", "2"}} {
		fmt.Fprintf(&b, "\n[%s]\n", table.name)
		for i := 1; i <= min(n, limitModels); i++ {
			fmt.Fprintf(&b, "%q = %s\n", keys.PointRef("meter"+strconv.Itoa(i), name), table.limit)
		}
	}
	return b.String()
}

// applyConfig loads the run-time configuration into Redis: the mappings
// and limits, and the registry device.
func (e *env) applyConfig(ctx context.Context) error {
	if _, err := e.set.Apply(ctx, e.client, false); err != nil {
		return fmt.Errorf("load mappings: %w", err)
	}
	c := e.client
	if err := c.Do(ctx, c.B().Hset().Key(keys.DeviceRegistry).FieldValue().FieldValue(e.registry, template).Build()).Error(); err != nil {
		return fmt.Errorf("registry device: %w", err)
	}
	return nil
}

// close stops the processes and removes a temporary work directory.
func (e *env) close() {
	for _, p := range []*rig.Proc{e.sim, e.comsrv} {
		if p != nil {
			p.Stop(stopGrace)
		}
	}
	if e.client != nil {
		e.client.Close()
	}
	if e.redis != nil {
		e.redis.Stop(stopGrace)
	}
	if e.rmDir {
		os.RemoveAll(e.dir)
	}
}

// hget reads field of keyOf(channel) for every channel: channel → value,
// "" when absent.
func (e *env) hget(ctx context.Context, keyOf func(ch string) string, field string) (map[string]string, error) {
	c := e.client
	cmds := make(rueidis.Commands, len(e.channels))
	for i, ch := range e.channels {
		cmds[i] = c.B().Hget().Key(keyOf(ch)).Field(field).Build()
	}
	out := make(map[string]string, len(e.channels))
	for i, r := range c.DoMulti(ctx, cmds...) {
		v, err := r.ToString()
		if err != nil && !rueidis.IsRedisNil(err) {
			return nil, fmt.Errorf("HGET %s %s: %w", keyOf(e.channels[i]), field, err)
		}
		out[e.channels[i]] = v
	}
	return out, nil
}

// hgetall reads keyOf(channel) for every channel.
func (e *env) hgetall(ctx context.Context, keyOf func(ch string) string) (map[string]map[string]string, error) {
	c := e.client
	cmds := make(rueidis.Commands, len(e.channels))
	for i, ch := range e.channels {
		cmds[i] = c.B().Hgetall().Key(keyOf(ch)).Build()
	}
	out := make(map[string]map[string]string, len(e.channels))
	for i, r := range c.DoMulti(ctx, cmds...) {
		m, err := r.AsStrMap()
		if err != nil {
			return nil, fmt.Errorf("HGETALL %s: %w", keyOf(e.channels[i]), err)
		}
		out[e.channels[i]] = m
	}
	return out, nil
}

// check is one condition a fault waits for: eval returns the channels (or
// keys) for which it does not hold, and a detail.
type check struct {
	name string
	eval func(ctx context.Context) (wrong []string, detail string, err error)
}

// watch evaluates checks every interval from start until all hold at
// once or bound has passed, and returns a row per check as it stood at the
// last evaluation (with when it last began to hold), the recovery time and
// whether every check held.
func (e *env) watch(ctx context.Context, start time.Time, bound time.Duration, checks []check) ([]row, time.Duration, bool) {
	rows := make([]row, len(checks))
	heldSince := make([]time.Duration, len(checks))
	for i := range heldSince {
		heldSince[i] = -1
	}
	for {
		all := true
		for i, c := range checks {
			wrong, detail, err := c.eval(ctx)
			n := len(wrong)
			if err != nil {
				// What cannot be read counts as wrong: every channel.
				n, detail = max(n, len(e.channels)), "cannot read: "+err.Error()
			} else if detail == "" {
				detail = some(wrong)
			}
			rows[i] = row{Check: c.name, Wrong: n, Detail: detail}
			switch {
			case n > 0:
				heldSince[i] = -1
				all = false
			case heldSince[i] < 0:
				heldSince[i] = time.Since(start)
			}
		}
		for i := range rows {
			rows[i].Held, rows[i].Never = heldSince[i], heldSince[i] < 0
		}
		if all {
			return rows, time.Since(start), true
		}
		if time.Since(start) >= bound || ctx.Err() != nil {
			return rows, time.Since(start), false
		}
		select {
		case <-ctx.Done():
		case <-time.After(every):
		}
	}
}

// notOnline lists the channels whose status hash does not say online.
func (e *env) notOnline(ctx context.Context) ([]string, string, error) {
	return e.statusNot(ctx, "1")
}

// notOffline lists the channels whose status hash does not say offline.
func (e *env) notOffline(ctx context.Context) ([]string, string, error) {
	return e.statusNot(ctx, "0")
}

func (e *env) statusNot(ctx context.Context, want string) ([]string, string, error) {
	st, err := e.hget(ctx, keys.ChannelStatus, contract.ChannelOnline)
	if err != nil {
		return nil, "", err
	}
	var wrong []string
	for _, ch := range e.channels {
		if st[ch] != want {
			wrong = append(wrong, ch)
		}
	}
	return wrong, "", nil
}

// notUpdated returns a check of the channels whose probe point (in the
// channel hash, or with model in the model hash) has no sample since, or
// none within the last freshness: values must still be updating, not
// only have updated once.
func (e *env) notUpdated(since time.Time, model bool) func(ctx context.Context) ([]string, string, error) {
	return func(ctx context.Context) ([]string, string, error) {
		after := since
		if fresh := time.Now().Add(-freshness); fresh.After(after) {
			after = fresh
		}
		keyOf, field := keys.ChannelTimestamps, e.probe[0]
		if model {
			keyOf, field = func(ch string) string { return keys.ModelTimestamps(e.model[ch]) }, e.probe[1]
		}
		ts, err := e.hget(ctx, keyOf, field)
		if err != nil {
			return nil, "", err
		}
		var wrong []string
		for _, ch := range e.channels {
			if t, _ := strconv.ParseInt(ts[ch], 10, 64); t < after.UnixMilli() {
				wrong = append(wrong, ch)
			}
		}
		return wrong, "", nil
	}
}

// notStale lists the channels of which some point is not marked stale.
func (e *env) notStale(ctx context.Context) ([]string, string, error) {
	q, err := e.hgetall(ctx, keys.ChannelQuality)
	if err != nil {
		return nil, "", err
	}
	var wrong []string
	for _, ch := range e.channels {
		for _, p := range e.points {
			if q[ch][p[0]] != "stale" {
				wrong = append(wrong, ch)
				break
			}
		}
	}
	return wrong, "", nil
}

// notGood lists the channels with points still marked stale.
func (e *env) notGood(ctx context.Context) ([]string, string, error) {
	c := e.client
	cmds := make(rueidis.Commands, len(e.channels))
	for i, ch := range e.channels {
		cmds[i] = c.B().Hlen().Key(keys.ChannelQuality(ch)).Build()
	}
	var wrong []string
	for i, r := range c.DoMulti(ctx, cmds...) {
		n, err := r.AsInt64()
		if err != nil {
			return nil, "", fmt.Errorf("HLEN %s: %w", keys.ChannelQuality(e.channels[i]), err)
		}
		if n > 0 {
			wrong = append(wrong, e.channels[i])
		}
	}
	return wrong, "", nil
}

// healthy are the checks of a rig at work since: every link online, with
// channel and model values updating.
func (e *env) healthy(since time.Time) []check {
	return []check{
		{"channels online", e.notOnline},
		{"channel values updating", e.notUpdated(since, false)},
		{"model values updating", e.notUpdated(since, true)},
	}
}

// baseline loads the run-time configuration and waits until the rig is
// healthy, so that a fault starts from a working system. It returns the
// report of a fault that cannot run, or nil.
func (e *env) baseline(ctx context.Context, name, what string) *report {
	bound := e.o.timeout + time.Duration(e.o.n/e.o.ramp)*time.Second + 30*time.Second
	start := time.Now()
	if err := e.applyConfig(ctx); err != nil {
		return &report{Name: name, What: what, Bound: bound, Err: fmt.Errorf("before the fault: %w", err)}
	}
	rows, took, ok := e.watch(ctx, start, bound, e.healthy(start))
	if ok {
		e.log.Info("healthy before the fault", "fault", name, "after", took.Round(time.Millisecond))
		return nil
	}
	for i := range rows {
		rows[i].Check = "before the fault: " + rows[i].Check
	}
	return &report{Name: name, What: what, Rows: rows, Bound: bound,
		Err: fmt.Errorf("the rig was not healthy within %s, the fault was not run", seconds(bound))}
}

// configKeys are the run-time configuration: hashes loaded by hand (or by
// modsrv), and the set comsrv keeps.
var configKeys = []string{keys.Mapping, keys.MappingReverse, keys.AlarmThreshold, keys.AlarmLow, keys.AlarmHysteresis, keys.DeviceRegistry, keys.Channels}

// snapshotConfig reads the configuration keys (the set as member → "").
func (e *env) snapshotConfig(ctx context.Context) (map[string]map[string]string, error) {
	c := e.client
	out := make(map[string]map[string]string, len(configKeys))
	for _, k := range configKeys {
		if k == keys.Channels {
			members, err := c.Do(ctx, c.B().Smembers().Key(k).Build()).AsStrSlice()
			if err != nil {
				return nil, fmt.Errorf("SMEMBERS %s: %w", k, err)
			}
			m := make(map[string]string, len(members))
			for _, v := range members {
				m[v] = ""
			}
			out[k] = m
			continue
		}
		m, err := c.Do(ctx, c.B().Hgetall().Key(k).Build()).AsStrMap()
		if err != nil {
			return nil, fmt.Errorf("HGETALL %s: %w", k, err)
		}
		out[k] = m
	}
	return out, nil
}

// configLost returns a check of the configuration keys that differ from
// want: what was there before the fault must be there again.
func (e *env) configLost(want map[string]map[string]string) func(ctx context.Context) ([]string, string, error) {
	return func(ctx context.Context) ([]string, string, error) {
		got, err := e.snapshotConfig(ctx)
		if err != nil {
			return nil, "", err
		}
		var wrong, details []string
		for _, k := range configKeys {
			missing, changed := hashDiff(want[k], got[k])
			if missing+changed == 0 {
				continue
			}
			wrong = append(wrong, k)
			d := fmt.Sprintf("%s: %d of %d missing", k, missing, len(want[k]))
			if changed > 0 {
				d += fmt.Sprintf(", %d changed", changed)
			}
			details = append(details, d)
		}
		return wrong, strings.Join(details, "; "), nil
	}
}

// readStream reads the entries of stream key after id (exclusive), at
// most limit entries.
func (e *env) readStream(ctx context.Context, key, after string, limit int) ([]map[string]string, error) {
	c := e.client
	const page = 1000
	var out []map[string]string
	start := "(" + after
	for len(out) < limit {
		es, err := c.Do(ctx, c.B().Xrange().Key(key).Start(start).End("+").Count(page).Build()).AsXRange()
		if err != nil {
			return nil, fmt.Errorf("XRANGE %s: %w", key, err)
		}
		for _, x := range es {
			out = append(out, maps.Clone(x.FieldValues))
		}
		if len(es) < page {
			break
		}
		start = "(" + es[len(es)-1].ID
	}
	return out, nil
}

// notReconnected returns a check of the channels whose status hash does not
// say online with a link that came up since.
func (e *env) notReconnected(since time.Time) func(ctx context.Context) ([]string, string, error) {
	return func(ctx context.Context) ([]string, string, error) {
		on, err := e.hget(ctx, keys.ChannelStatus, contract.ChannelOnline)
		if err != nil {
			return nil, "", err
		}
		at, err := e.hget(ctx, keys.ChannelStatus, contract.ChannelConnectedAt)
		if err != nil {
			return nil, "", err
		}
		var wrong []string
		for _, ch := range e.channels {
			if t, _ := strconv.ParseInt(at[ch], 10, 64); on[ch] != "1" || t < since.UnixMilli() {
				wrong = append(wrong, ch)
			}
		}
		return wrong, "", nil
	}
}
