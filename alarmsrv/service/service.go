// Package service runs alarmsrv: one consumer-group reader per event
// stream, the normalization of entries into alerting.Event, the rule
// engine (alarmsrv/rules), the queuing of the deliveries through an
// Enqueuer (the webhook engine), the rules kept in Redis and reloaded on
// change, shelving, and the /health and /metrics endpoints.
//
// Delivery is at least once: the entries of a batch are acknowledged only
// after every delivery they caused was queued (Enqueue returned nil) and
// the run logs were written; otherwise the engine's state changes are
// undone and the entries are read again.
package service

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/rueidis"

	"github.com/voltedge/voltedge/alarmsrv/config"
	"github.com/voltedge/voltedge/alarmsrv/rules"
	"github.com/voltedge/voltedge/alarmsrv/webhook"
	"github.com/voltedge/voltedge/internal/alerting"
	"github.com/voltedge/voltedge/internal/contract"
	"github.com/voltedge/voltedge/internal/keys"
	"github.com/voltedge/voltedge/internal/metrics"
	"github.com/voltedge/voltedge/internal/redisconn"
)

// Group is alarmsrv's consumer group on every stream it reads.
const Group = "alarmsrv"

// claimIdle is how long another consumer's unacknowledged entries wait
// before alarmsrv takes them over.
const claimIdle = time.Minute

// Streams are the streams alarmsrv reads, one reader each.
var Streams = []string{keys.AlarmEvents, keys.ConnectionEvents, keys.DataSamples, keys.CommandResults, keys.NetsrvEvents, keys.CustomEvents}

// Enqueuer queues a delivery; it is durable once Enqueue returns nil (the
// webhook engine).
type Enqueuer interface {
	Enqueue(ctx context.Context, d webhook.Delivery) error
}

// Deps are what Run needs besides the configuration.
type Deps struct {
	Redis    rueidis.Client
	Log      *slog.Logger
	Metrics  *metrics.Registry
	Enqueuer Enqueuer
	// Ready, if set, is called with the HTTP listener's address.
	Ready func(net.Addr)
}

// Service is a running alarmsrv.
type Service struct {
	cfg    *config.Config
	d      Deps
	log    *slog.Logger
	engine *rules.Engine
	rules  atomic.Pointer[[]alerting.Rule]

	shelfMu sync.Mutex
	shelf   map[string]int64 // "{model}:{point}" → until, Unix ms (cut to ts + shelve_max)

	badMu sync.Mutex
	bad   map[string]string // rule id → the error last logged

	gaugeMu  sync.Mutex
	byLevel  map[string]int
	shelved  int
	readers  map[string]*contract.GroupReader
	reloadCh chan struct{}

	read, invalid, notified, suppressed, enqueueErrs *metrics.CounterVec
	matches                                          *metrics.CounterVec
	reloads, rulesInvalid                            *metrics.Counter
}

// Run serves until ctx ends.
func Run(ctx context.Context, cfg *config.Config, d Deps) error {
	if d.Enqueuer == nil {
		return errors.New("alarmsrv: no enqueuer")
	}
	if d.Log == nil {
		d.Log = slog.Default()
	}
	if d.Metrics == nil {
		d.Metrics = metrics.NewRegistry()
	}
	s := &Service{cfg: cfg, d: d, log: d.Log, shelf: map[string]int64{}, bad: map[string]string{},
		byLevel: map[string]int{}, readers: map[string]*contract.GroupReader{}, reloadCh: make(chan struct{}, 1)}
	s.engine = rules.New(rules.Options{MaxStates: cfg.MaxStatesPerRule, Shelved: s.isShelved})
	empty := []alerting.Rule{}
	s.rules.Store(&empty)
	s.register(d.Metrics)

	// The file's rules go to Redis first, then everything is read back.
	for {
		err := s.publishFileRules(ctx)
		if err == nil {
			break
		}
		s.log.Warn("writing the file's rules to Redis failed, retrying", "err", err)
		if !redisconn.Sleep(ctx, time.Second) {
			return nil
		}
	}
	if err := s.reload(ctx); err != nil {
		s.log.Warn("reading the rules failed; retrying every reload_every", "err", err)
	}

	var wg sync.WaitGroup
	run := func(f func()) { wg.Add(1); go func() { defer wg.Done(); f() }() }
	for _, stream := range Streams {
		g, err := contract.NewGroupReader(d.Redis, contract.GroupOptions{Stream: stream, Group: Group,
			Consumer: cfg.Consumer, Start: "$", ClaimIdle: claimIdle}, d.Log)
		if err != nil {
			return err
		}
		s.readers[stream] = g
		run(func() { g.Run(ctx, s.handler(g, stream)) })
	}
	run(func() {
		redisconn.Subscribe(ctx, d.Redis, func(b rueidis.Builder) rueidis.Completed {
			return b.Subscribe().Channel(keys.AlarmRulesChanged).Build()
		}, func(rueidis.PubSubMessage) { s.askReload() },
			redisconn.SubscribeOptions{Name: keys.AlarmRulesChanged, Log: d.Log, Dedicated: true, OnSubscribed: s.askReload})
	})
	run(func() { s.reloadLoop(ctx) })
	run(func() { s.tickLoop(ctx) })
	herr := make(chan error, 1)
	run(func() { herr <- metrics.ServeHandler(ctx, cfg.Listen, s.mux(), d.Ready) })
	s.log.Info("alarmsrv evaluating", "site", cfg.Site, "consumer", cfg.Consumer, "rules", len(*s.rules.Load()), "streams", Streams)
	var ret error
	select {
	case <-ctx.Done():
	case ret = <-herr:
	}
	wg.Wait()
	return ret
}

// askReload asks the reload loop to read the rules now.
func (s *Service) askReload() {
	select {
	case s.reloadCh <- struct{}{}:
	default:
	}
}

// reloadLoop reads the rules on announcements and every ReloadEvery.
func (s *Service) reloadLoop(ctx context.Context) {
	t := time.NewTicker(s.cfg.ReloadEvery.Duration)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-s.reloadCh:
		}
		if err := s.reload(ctx); err != nil && ctx.Err() == nil {
			s.log.Warn("reading the rules failed", "err", err)
		}
	}
}

// tickLoop fires delays and re-notifications that are due.
func (s *Service) tickLoop(ctx context.Context) {
	t := time.NewTicker(s.cfg.TickEvery.Duration)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if err := s.refreshShelf(ctx); err != nil {
			continue // tried again at the next tick
		}
		if err := s.engine.Tick(func(f []rules.Fire) error { return s.deliver(ctx, f) }); err != nil && ctx.Err() == nil {
			s.log.Warn("due notifications not queued, trying again at the next tick", "err", err)
		}
	}
}

// publishFileRules writes the file's rules to keys.AlarmRules (origin
// file), removes the file rules the file no longer has and announces the
// change. Rules created through the API are kept, unless the file now has
// a rule of the same id, which replaces it.
func (s *Service) publishFileRules(ctx context.Context) error {
	c := s.d.Redis
	cur, err := c.Do(ctx, c.B().Hgetall().Key(keys.AlarmRules).Build()).AsStrMap()
	if err != nil {
		return fmt.Errorf("hgetall %s: %w", keys.AlarmRules, err)
	}
	mine := map[string]bool{}
	for _, r := range s.cfg.Rules {
		mine[r.ID] = true
	}
	var stale []string
	for id, js := range cur {
		var r alerting.Rule
		if json.Unmarshal([]byte(js), &r) == nil && r.Origin == alerting.OriginFile && !mine[id] {
			stale = append(stale, id)
		} else if r.Origin != alerting.OriginFile && mine[id] {
			s.log.Warn("a rule of the configuration file replaces the API rule of the same id", "rule", id)
		}
	}
	cmds := rueidis.Commands{}
	if len(stale) > 0 {
		slices.Sort(stale)
		cmds = append(cmds, c.B().Hdel().Key(keys.AlarmRules).Field(stale...).Build())
	}
	if len(s.cfg.Rules) > 0 {
		h := c.B().Hset().Key(keys.AlarmRules).FieldValue()
		for _, r := range s.cfg.Rules {
			b, err := json.Marshal(r)
			if err != nil {
				return fmt.Errorf("rule %s: %w", r.ID, err)
			}
			h = h.FieldValue(r.ID, string(b))
		}
		cmds = append(cmds, h.Build())
	}
	cmds = append(cmds, c.B().Publish().Channel(keys.AlarmRulesChanged).Message("*").Build())
	for _, res := range c.DoMulti(ctx, cmds...) {
		if err := res.Error(); err != nil {
			return fmt.Errorf("write the file's rules: %w", err)
		}
	}
	if len(stale) > 0 {
		s.log.Info("file rules no longer in the configuration removed", "rules", stale)
	}
	return nil
}

// reload reads keys.AlarmRules into the engine. File rules missing from
// the hash (Redis restarted empty) are written again first. Invalid
// rules are logged once and left out.
func (s *Service) reload(ctx context.Context) error {
	c := s.d.Redis
	cur, err := c.Do(ctx, c.B().Hgetall().Key(keys.AlarmRules).Build()).AsStrMap()
	if err != nil {
		return fmt.Errorf("hgetall %s: %w", keys.AlarmRules, err)
	}
	missing := false
	for _, r := range s.cfg.Rules {
		if _, ok := cur[r.ID]; !ok {
			missing = true
		}
	}
	if missing {
		s.log.Info("file rules missing from Redis (restarted empty?), writing them again")
		if err := s.publishFileRules(ctx); err != nil {
			return err
		}
		if cur, err = c.Do(ctx, c.B().Hgetall().Key(keys.AlarmRules).Build()).AsStrMap(); err != nil {
			return fmt.Errorf("hgetall %s: %w", keys.AlarmRules, err)
		}
	}
	list, badErrs, err := alerting.LoadRules(ctx, c)
	if err != nil {
		return err
	}
	bad := make(map[string]string, len(badErrs))
	for id, err := range badErrs {
		bad[id] = err.Error()
	}
	s.badMu.Lock()
	for id, msg := range bad {
		if s.bad[id] != msg {
			s.rulesInvalid.Inc()
			s.log.Warn("rule in Redis left out", "rule", id, "err", msg)
		}
	}
	s.bad = bad
	s.badMu.Unlock()
	s.rules.Store(&list)
	if s.engine.SetRules(list) {
		s.reloads.Inc()
		s.log.Info("rules loaded", "rules", len(list), "invalid", len(bad))
		s.seed(ctx) // new and changed rules follow the alarms active now
	}
	return nil
}

// seed tells the engine which alarms are active already (keys.AlarmActive),
// so that re-notification goes on across a restart or a rule change
// without a second first notification. An alarm whose raise is still
// unread is notified all the same when it is read.
func (s *Service) seed(ctx context.Context) {
	c := s.d.Redis
	active, err := c.Do(ctx, c.B().Hgetall().Key(keys.AlarmActive).Build()).AsStrMap()
	if err != nil {
		s.log.Warn("reading the active alarms failed", "err", err)
		return
	}
	rs := *s.rules.Load()
	var evs []alerting.Event
	for ref, js := range active {
		model, point, ok := keys.SplitRef(ref)
		if !ok {
			continue
		}
		var a struct {
			Value json.Number `json:"value"`
			TS    int64       `json:"ts"`
		}
		_ = json.Unmarshal([]byte(js), &a)
		evs = append(evs, alerting.Event{ID: keys.AlarmActive + "/" + ref + "/" + strconv.FormatInt(a.TS, 10), Type: alerting.AlarmRaised,
			TS: a.TS, Site: s.cfg.Site, Model: model, Point: point, Value: a.Value.String(), Level: alerting.AlarmLevel(rs, model, point)})
	}
	s.engine.Seed(evs)
}

// handler normalizes, evaluates, queues and acknowledges a batch.
func (s *Service) handler(g *contract.GroupReader, stream string) contract.Handler {
	return func(ctx context.Context, entries []contract.Entry) error {
		s.read.With(stream).Add(uint64(len(entries)))
		rs := *s.rules.Load()
		events := make([]alerting.Event, 0, len(entries))
		for _, en := range entries {
			evs, err := s.normalize(stream, en, rs)
			if err != nil {
				s.invalid.With(stream).Inc()
				s.log.Warn("entry not understood, skipped", "stream", stream, "id", en.ID, "err", err)
			}
			events = append(events, evs...)
		}
		if stream == keys.AlarmEvents || stream == keys.DataSamples {
			if err := s.refreshShelf(ctx); err != nil {
				return err
			}
		}
		if err := s.engine.Apply(events, func(f []rules.Fire) error { return s.deliver(ctx, f) }); err != nil {
			return err // not acknowledged: read again
		}
		ids := make([]string, len(entries))
		for i, en := range entries {
			ids[i] = en.ID
		}
		return g.Ack(ctx, ids...)
	}
}

// deliver queues the deliveries of fires and writes the run logs; it
// fails on the first delivery not queued.
func (s *Service) deliver(ctx context.Context, fires []rules.Fire) error {
	runs := make([]rules.RunEntry, 0, len(fires))
	for _, f := range fires {
		run := alerting.Run{Event: f.Event, TS: f.TS.UnixMilli(), Kind: f.Kind, Actions: []alerting.Action{}, Suppressed: f.Suppressed}
		if f.Suppressed == "" && len(f.Rule.Targets) > 0 {
			body, err := json.Marshal(f.Event)
			if err != nil {
				return fmt.Errorf("event %s: %w", f.Event.ID, err)
			}
			for _, target := range f.Rule.Targets {
				d := webhook.Delivery{ID: DeliveryID(f.Event.ID, f.Rule.ID, target), Target: target, Key: OrderKey(f.Event),
					Body: body, TS: time.Now().UnixMilli()}
				if err := s.d.Enqueuer.Enqueue(ctx, d); err != nil {
					s.enqueueErrs.With(target).Inc()
					return fmt.Errorf("queue delivery %s of rule %s to %s: %w", d.ID, f.Rule.ID, target, err)
				}
				run.Actions = append(run.Actions, alerting.Action{Target: target, Delivery: d.ID})
			}
		}
		runs = append(runs, rules.RunEntry{Rule: f.Rule.ID, Run: run})
	}
	if err := rules.AppendRuns(ctx, s.d.Redis, runs, s.cfg.MaxRuns); err != nil {
		return err
	}
	for _, f := range fires {
		s.matches.With(f.Rule.ID).Inc()
		if f.Suppressed != "" {
			s.suppressed.With(f.Suppressed).Inc()
		} else {
			s.notified.With(f.Rule.ID).Add(uint64(len(f.Rule.Targets)))
		}
		s.log.Debug("rule fired", "rule", f.Rule.ID, "kind", f.Kind, "event", f.Event.ID, "suppressed", f.Suppressed)
	}
	return nil
}

// DeliveryID is a delivery's id: the same for an event, rule and target
// on every attempt and after a restart (hex of SHA-256, 32 digits).
func DeliveryID(eventID, rule, target string) string {
	h := sha256.Sum256([]byte(eventID + "\x00" + rule + "\x00" + target))
	return hex.EncodeToString(h[:16])
}

// OrderKey is a delivery's order key: "{model}:{point}" for alarm and data
// events, the channel for device events, none for the others.
func OrderKey(e alerting.Event) string {
	switch {
	case strings.HasPrefix(e.Type, "alarm_") || e.Type == alerting.Data:
		if e.Model != "" {
			return keys.PointRef(e.Model, e.Point)
		}
		if e.Channel != "" {
			return keys.PointRef(e.Channel, e.Point)
		}
	case strings.HasPrefix(e.Type, "device_") || e.Type == alerting.ConnectFailed:
		return e.Channel
	}
	return ""
}

// shelfEntry is the JSON of keys.AlarmShelved.
type shelfEntry struct {
	User  string `json:"user"`
	TS    int64  `json:"ts"`
	Until int64  `json:"until"`
}

// refreshShelf reads keys.AlarmShelved.
func (s *Service) refreshShelf(ctx context.Context) error {
	c := s.d.Redis
	m, err := c.Do(ctx, c.B().Hgetall().Key(keys.AlarmShelved).Build()).AsStrMap()
	if err != nil {
		return fmt.Errorf("hgetall %s: %w", keys.AlarmShelved, err)
	}
	shelf := make(map[string]int64, len(m))
	maxMS := s.cfg.ShelveMax.Milliseconds()
	for ref, js := range m {
		var e shelfEntry
		if err := json.Unmarshal([]byte(js), &e); err != nil || e.Until <= 0 {
			continue
		}
		until := e.Until
		if e.TS > 0 && until > e.TS+maxMS {
			until = e.TS + maxMS
		}
		shelf[ref] = until
	}
	s.shelfMu.Lock()
	s.shelf = shelf
	s.shelfMu.Unlock()
	return nil
}

// isShelved reports whether e is about a shelved model point at now.
func (s *Service) isShelved(e alerting.Event, now time.Time) bool {
	if e.Model == "" || e.Point == "" {
		return false
	}
	s.shelfMu.Lock()
	until, ok := s.shelf[keys.PointRef(e.Model, e.Point)]
	s.shelfMu.Unlock()
	return ok && now.UnixMilli() < until
}

// normalize turns an entry into events (a data entry gives one per point).
func (s *Service) normalize(stream string, en contract.Entry, rs []alerting.Rule) ([]alerting.Event, error) {
	f := en.Fields
	ev := alerting.Event{ID: stream + "/" + en.ID, Site: s.cfg.Site, TS: entryTS(f["ts"], en.ID), Fields: f}
	switch stream {
	case keys.AlarmEvents:
		switch f[contract.AlarmType] {
		case contract.AlarmRaise:
			ev.Type = alerting.AlarmRaised
		case contract.AlarmClear:
			ev.Type = alerting.AlarmCleared
		case contract.AlarmAck:
			ev.Type = alerting.AlarmAcked
		default:
			return nil, fmt.Errorf("alarm event type %q", f[contract.AlarmType])
		}
		ev.Model, ev.Point, ev.Value = f[contract.AlarmModel], f[contract.AlarmPoint], f[contract.AlarmValue]
		ev.Level = alerting.AlarmLevel(rs, ev.Model, ev.Point)
	case keys.ConnectionEvents:
		types := map[string]struct{ t, level string }{
			contract.EventOnline:        {alerting.DeviceOnline, alerting.LevelInfo},
			contract.EventOffline:       {alerting.DeviceOffline, alerting.LevelWarning},
			contract.EventReplaced:      {alerting.DeviceReplaced, alerting.LevelInfo},
			contract.EventRefused:       {alerting.DeviceRefused, alerting.LevelWarning},
			contract.EventConnectFailed: {alerting.ConnectFailed, alerting.LevelWarning},
		}
		x, ok := types[f[contract.EventType]]
		if !ok {
			return nil, fmt.Errorf("connection event %q", f[contract.EventType])
		}
		ev.Type, ev.Level, ev.Channel = x.t, x.level, f[contract.EventChannel]
	case keys.DataSamples:
		de, err := contract.ParseDataEntry(f)
		out := make([]alerting.Event, 0, len(de.Points))
		for _, p := range de.Points {
			d := alerting.Event{ID: ev.ID + "/" + p.Point, Type: alerting.Data, TS: de.TS, Site: s.cfg.Site, Channel: de.Channel,
				Model: p.Model, Point: p.Name, Value: p.Value, Level: alerting.LevelInfo, Fields: map[string]string{"channel_point": p.Point}}
			if p.Model == "" {
				d.Point = p.Point
			}
			out = append(out, d)
		}
		return out, err
	case keys.CommandResults:
		ev.Type = alerting.ControlResult
		ev.Channel, ev.Model, ev.Value = f[contract.ResultChannel], f[contract.ResultModel], f[contract.ResultValue]
		ev.Point = f[contract.ResultPoint]
		if ev.Model != "" && f[contract.ResultControl] != "" {
			ev.Point = f[contract.ResultControl]
		}
		ev.Level = alerting.LevelWarning
		if f[contract.ResultStatus] == string(contract.OK) {
			ev.Level = alerting.LevelInfo
		}
	case keys.NetsrvEvents:
		ev.Type, ev.Level = alerting.UploadWarning, alerting.LevelWarning
		if f["event"] == "db_back" {
			ev.Level = alerting.LevelInfo
		}
		if site := f["site"]; site != "" {
			ev.Site = site
		}
	case keys.CustomEvents:
		t := f["type"]
		if t == "" || len(t) > 64 || strings.ContainsAny(t, " \t\r\n") {
			return nil, fmt.Errorf("custom event type %q (field type, 1..64 bytes, no spaces)", t)
		}
		ev.Type = alerting.CustomPrefix + t
		ev.Channel, ev.Model, ev.Point, ev.Value = f["channel"], f["model"], f["point"], f["value"]
		ev.Level = alerting.LevelInfo
		if l := f["level"]; alerting.LevelRank(l) > 0 {
			ev.Level = l
		}
		if site := f["site"]; site != "" {
			ev.Site = site
		}
	default:
		return nil, fmt.Errorf("stream %s is not read by alarmsrv", stream)
	}
	return []alerting.Event{ev}, nil
}

// entryTS is the ts field, or the entry id's time.
func entryTS(ts, id string) int64 {
	if n, err := strconv.ParseInt(ts, 10, 64); err == nil && n > 0 {
		return n
	}
	ms, _, _ := strings.Cut(id, "-")
	n, _ := strconv.ParseInt(ms, 10, 64)
	return n
}

// refreshGauges counts the active alarms by level and the shelved ones,
// for a scrape.
func (s *Service) refreshGauges(ctx context.Context) {
	c := s.d.Redis
	active, err := c.Do(ctx, c.B().Hgetall().Key(keys.AlarmActive).Build()).AsStrMap()
	if err != nil {
		return
	}
	rs := *s.rules.Load()
	by := map[string]int{}
	for ref := range active {
		if model, point, ok := keys.SplitRef(ref); ok {
			by[alerting.AlarmLevel(rs, model, point)]++
		}
	}
	_ = s.refreshShelf(ctx)
	now := time.Now().UnixMilli()
	s.shelfMu.Lock()
	n := 0
	for _, until := range s.shelf {
		if now < until {
			n++
		}
	}
	s.shelfMu.Unlock()
	s.gaugeMu.Lock()
	s.byLevel, s.shelved = by, n
	s.gaugeMu.Unlock()
}

// register adds alarmsrv's metrics.
func (s *Service) register(reg *metrics.Registry) {
	s.read = reg.CounterVec("alarmsrv_entries_read_total", "Stream entries read, by stream.", []string{"stream"}, len(Streams))
	s.invalid = reg.CounterVec("alarmsrv_entries_invalid_total", "Stream entries not understood (skipped), by stream.", []string{"stream"}, len(Streams))
	s.matches = reg.CounterVec("alarmsrv_rule_fires_total", "Evaluations that fired, by rule (suppressed ones included).", []string{"rule"}, 200)
	s.notified = reg.CounterVec("alarmsrv_notifications_total", "Deliveries queued, by rule.", []string{"rule"}, 200)
	s.suppressed = reg.CounterVec("alarmsrv_suppressed_total", "Fires not delivered, by reason (shelved, max_notifications).", []string{"reason"}, 4)
	s.enqueueErrs = reg.CounterVec("alarmsrv_enqueue_errors_total", "Deliveries the webhook queue refused (retried), by target.", []string{"target"}, 100)
	s.reloads = reg.Counter("alarmsrv_rule_reloads_total", "Rule sets loaded that differed from the previous one.")
	s.rulesInvalid = reg.Counter("alarmsrv_rules_invalid_total", "Invalid rules found in Redis (left out).")
	reg.GaugeFunc("alarmsrv_rules", "Rules loaded.", func() float64 { return float64(len(*s.rules.Load())) })
	reg.GaugeFunc("alarmsrv_rule_states", "States the rules keep in memory.", func() float64 { return float64(s.engine.Stats().States) })
	reg.CounterFunc("alarmsrv_rule_states_dropped_total", "States not kept because a rule was at max_states_per_rule.", func() float64 { return float64(s.engine.Stats().Dropped) })
	for _, level := range alerting.Levels() {
		reg.GaugeFunc("alarmsrv_alarms_active_"+level, "Active alarms (alarm:active) of level "+level+".", func() float64 {
			s.gaugeMu.Lock()
			defer s.gaugeMu.Unlock()
			return float64(s.byLevel[level])
		})
	}
	reg.GaugeFunc("alarmsrv_alarms_shelved", "Alarms shelved now (alarm:shelved, not expired).", func() float64 {
		s.gaugeMu.Lock()
		defer s.gaugeMu.Unlock()
		return float64(s.shelved)
	})
}

// Health is the /health answer.
type Health struct {
	Status  string                 `json:"status"` // ok, or degraded while Redis does not answer
	Redis   bool                   `json:"redis"`
	Site    string                 `json:"site"`
	Rules   int                    `json:"rules"`
	States  int                    `json:"states"`
	Streams map[string]StreamStats `json:"streams"`
}

// StreamStats are one reader's counters.
type StreamStats struct {
	Read      uint64 `json:"read"`
	Acked     uint64 `json:"acked"`
	Recreated uint64 `json:"recreated"`
	Errors    uint64 `json:"errors"`
}

func (s *Service) health(ctx context.Context) Health {
	h := Health{Status: "ok", Site: s.cfg.Site, Rules: len(*s.rules.Load()), States: s.engine.Stats().States, Streams: map[string]StreamStats{}}
	h.Redis = s.d.Redis.Do(ctx, s.d.Redis.B().Ping().Build()).Error() == nil
	if !h.Redis {
		h.Status = "degraded"
	}
	for name, g := range s.readers {
		st := g.Stats()
		h.Streams[name] = StreamStats{Read: st.Read, Acked: st.Acked, Recreated: st.Recreated, Errors: st.Errors}
	}
	return h
}

func (s *Service) mux() http.Handler {
	mux := http.NewServeMux()
	reg := s.d.Metrics.Handler()
	mux.Handle("/metrics", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), time.Second)
		s.refreshGauges(ctx)
		cancel()
		reg.ServeHTTP(w, r)
	}))
	mux.Handle("/health", metrics.HealthHandler(func(ctx context.Context) (any, bool) {
		h := s.health(ctx)
		return h, h.Status == "ok"
	}))
	return mux
}
