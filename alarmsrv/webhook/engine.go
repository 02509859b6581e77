// Package webhook delivers alarmsrv's webhook calls: each target has a
// durable queue in Redis (keys.WebhookQueue), read by one worker through a
// consumer group, sent with the Standard Webhooks signature, retried on a
// schedule kept in Redis (keys.WebhookRetry) and, after the last attempt,
// moved to the dead-letter stream (keys.WebhookDead). See README.md.
package webhook

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/redis/rueidis"

	"github.com/voltedge/voltedge/internal/alerting"
	"github.com/voltedge/voltedge/internal/keys"
)

// Defaults of Options.
const (
	DefaultWindow   = 256
	DefaultReload   = 10 * time.Second
	DefaultConsumer = "alarmsrv"
)

// Operator event kinds (OperatorEvent.Kind).
const (
	// EventTargetDisabled: alarmsrv disabled a target (410 Gone, or
	// failing for longer than its DisableAfter).
	EventTargetDisabled = "webhook_disabled"
	// EventTargetDropped: a deleted target's queue was dropped.
	EventTargetDropped = "webhook_dropped"
)

// OperatorEvent is something an operator should hear about.
type OperatorEvent struct {
	Kind   string
	Target string
	Reason string
	// Count is how many deliveries it concerns (dropped), if any.
	Count int64
}

// Options tune an Engine; the zero value works.
type Options struct {
	// HTTP is the client for requests (nil: alerting.NewHTTPClient()).
	HTTP *http.Client
	// Consumer names the engine in each queue's consumer group; keep it
	// across restarts so that the deliveries read before are read again.
	Consumer string
	// Window is how many deliveries of one target are held in memory at
	// once (waiting, in flight, waiting for a retry), 256 by default. It
	// bounds memory and how far unrelated deliveries overtake one that
	// is being retried.
	Window int
	// Reload is how often keys.WebhookTargets is read again (10 s); Reload
	// also does it at once.
	Reload time.Duration
	// OnEvent, when set, is called for each operator event.
	OnEvent func(OperatorEvent)
	// Log is the logger (nil: slog.Default()).
	Log *slog.Logger
}

// Engine sends the deliveries of every enabled target.
type Engine struct {
	c      rueidis.Client
	opt    Options
	log    *slog.Logger
	reload chan struct{}

	mu      sync.Mutex
	workers map[string]*worker
	known   map[string]bool // targets seen in keys.WebhookTargets or with a queue
	missing map[string]int  // known targets absent from the last readings
}

// New returns an engine on c; Run starts it.
func New(c rueidis.Client, opt Options) *Engine {
	if opt.HTTP == nil {
		opt.HTTP = alerting.NewHTTPClient()
	}
	if opt.Consumer == "" {
		opt.Consumer = DefaultConsumer
	}
	if opt.Window <= 0 {
		opt.Window = DefaultWindow
	}
	if opt.Reload <= 0 {
		opt.Reload = DefaultReload
	}
	if opt.Log == nil {
		opt.Log = slog.Default()
	}
	return &Engine{c: c, opt: opt, log: opt.Log.With("part", "webhook"), reload: make(chan struct{}, 1),
		workers: map[string]*worker{}, known: map[string]bool{}, missing: map[string]int{}}
}

// Enqueue queues d for its target. When it returns nil the delivery is in
// Redis and will be sent even if alarmsrv stops now; an unknown target
// gives alerting.ErrUnknownTarget.
func (e *Engine) Enqueue(ctx context.Context, d Delivery) error {
	if d.TS == 0 {
		d.TS = time.Now().UnixMilli()
	}
	if _, err := alerting.Enqueue(ctx, e.c, d.Target, alerting.QueueEntry{ID: d.ID, Key: d.Key, Body: d.Body, TS: d.TS}); err != nil {
		return err
	}
	e.mu.Lock()
	w := e.workers[d.Target]
	e.mu.Unlock()
	if w != nil {
		w.nudge()
	}
	return nil
}

// EnqueueBatch queues deliveries in one step (one Redis call): all of
// them, or none when a target is unknown (alerting.ErrUnknownTarget).
func (e *Engine) EnqueueBatch(ctx context.Context, ds []Delivery) error {
	now := time.Now().UnixMilli()
	entries := make([]alerting.TargetEntry, len(ds))
	for i, d := range ds {
		if d.TS == 0 {
			d.TS = now
		}
		entries[i] = alerting.TargetEntry{Target: d.Target, QueueEntry: alerting.QueueEntry{ID: d.ID, Key: d.Key, Body: d.Body, TS: d.TS}}
	}
	if _, err := alerting.EnqueueMany(ctx, e.c, entries); err != nil {
		return err
	}
	e.mu.Lock()
	var ws []*worker
	for _, d := range ds {
		if w := e.workers[d.Target]; w != nil && !slices.Contains(ws, w) {
			ws = append(ws, w)
		}
	}
	e.mu.Unlock()
	for _, w := range ws {
		w.nudge()
	}
	return nil
}

// Reload makes Run read keys.WebhookTargets again now.
func (e *Engine) Reload() {
	select {
	case e.reload <- struct{}{}:
	default:
	}
}

// Stats returns the counters of every target that has any.
func (e *Engine) Stats(ctx context.Context) ([]alerting.TargetStats, error) {
	e.mu.Lock()
	ids := make([]string, 0, len(e.known))
	for id := range e.known {
		ids = append(ids, id)
	}
	e.mu.Unlock()
	out := make([]alerting.TargetStats, 0, len(ids))
	for _, id := range ids {
		s, err := alerting.ReadStats(ctx, e.c, id)
		if err != nil {
			return out, err
		}
		out = append(out, s)
	}
	return out, nil
}

// Run starts a worker for each enabled target and follows
// keys.WebhookTargets until ctx ends; then it stops the workers (an
// attempt under way is abandoned and made again at the next start) and
// returns.
func (e *Engine) Run(ctx context.Context) error {
	defer e.stopAll()
	if err := e.scanQueues(ctx); err != nil && ctx.Err() == nil {
		e.log.Warn("webhook: listing queues failed", "err", err)
	}
	t := time.NewTicker(e.opt.Reload)
	defer t.Stop()
	for {
		if err := e.reconcile(ctx); err != nil && ctx.Err() == nil {
			e.log.Warn("webhook: reading the targets failed", "err", err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		case <-e.reload:
		}
	}
}

// scanQueues notes the targets that have a queue, so that the queue of a
// target deleted while alarmsrv was down is dropped.
func (e *Engine) scanQueues(ctx context.Context) error {
	prefix := keys.WebhookQueue("")
	var cursor uint64
	for {
		r, err := e.c.Do(ctx, e.c.B().Scan().Cursor(cursor).Match(prefix+"*").Count(1000).Type("stream").Build()).AsScanEntry()
		if err != nil {
			return fmt.Errorf("scan %s*: %w", prefix, err)
		}
		e.mu.Lock()
		for _, k := range r.Elements {
			e.known[strings.TrimPrefix(k, prefix)] = true
		}
		e.mu.Unlock()
		if cursor = r.Cursor; cursor == 0 {
			return nil
		}
	}
}

// reconcile reads the targets and starts, updates and stops workers.
func (e *Engine) reconcile(ctx context.Context) error {
	raw, err := e.c.Do(ctx, e.c.B().Hgetall().Key(keys.WebhookTargets).Build()).AsStrMap()
	if err != nil {
		return fmt.Errorf("hgetall %s: %w", keys.WebhookTargets, err)
	}
	var stopping []*worker
	defer func() { // outside the lock: Enqueue does not wait for a worker to stop
		for _, w := range stopping {
			w.stop()
		}
	}()
	e.mu.Lock()
	defer e.mu.Unlock()
	for id, w := range e.workers {
		if w.finished() {
			delete(e.workers, id)
		}
	}
	for id, js := range raw {
		e.known[id] = true
		t, err := alerting.ParseTarget(id, []byte(js))
		if err != nil {
			e.log.Warn("webhook: invalid target; its queue waits", "target", id, "err", err)
		}
		w := e.workers[id]
		switch {
		case err != nil || !t.Enabled:
			if w != nil {
				stopping = append(stopping, w)
				delete(e.workers, id)
			}
		case w != nil:
			w.setTarget(t)
		default:
			w = newWorker(e, t)
			e.workers[id] = w
			go w.run(ctx)
		}
	}
	for id := range e.known {
		if _, ok := raw[id]; ok {
			delete(e.missing, id)
			continue
		}
		// Dropped when missing from two readings in a row: a writer that
		// replaces the hash (DEL, then HSET) must not cost a queue.
		if e.missing[id]++; e.missing[id] < 2 {
			continue
		}
		delete(e.missing, id)
		if w := e.workers[id]; w != nil {
			w.stop() // before the drop, which must not meet an attempt under way
			delete(e.workers, id)
		}
		n, err := dropScript.Exec(ctx, e.c,
			[]string{keys.WebhookQueue(id), keys.WebhookRetry(id), keys.WebhookStats(id), keys.WebhookTargets},
			[]string{id}).AsInt64()
		if err != nil {
			return fmt.Errorf("drop the queue of %s: %w", id, err)
		}
		delete(e.known, id)
		if n > 0 {
			e.log.Warn("webhook: target deleted, its queue dropped", "target", id, "deliveries", n)
			e.event(OperatorEvent{Kind: EventTargetDropped, Target: id, Reason: "target deleted", Count: n})
		}
	}
	return nil
}

func (e *Engine) stopAll() {
	e.mu.Lock()
	defer e.mu.Unlock()
	for id, w := range e.workers {
		w.stop()
		delete(e.workers, id)
	}
}

func (e *Engine) event(ev OperatorEvent) {
	if e.opt.OnEvent != nil {
		e.opt.OnEvent(ev)
	}
}

// disable marks the target disabled in keys.WebhookTargets, keeping the
// rest of its document as it is, and reports it.
func (e *Engine) disable(ctx context.Context, id, reason string) error {
	js, err := e.c.Do(ctx, e.c.B().Hget().Key(keys.WebhookTargets).Field(id).Build()).AsBytes()
	if rueidis.IsRedisNil(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("read target %s: %w", id, err)
	}
	var doc map[string]json.RawMessage
	if err := json.Unmarshal(js, &doc); err != nil {
		return fmt.Errorf("target %s: %w", id, err)
	}
	if string(doc["enabled"]) == "false" {
		return nil // disabled already (another attempt got 410 too)
	}
	doc["enabled"] = json.RawMessage("false")
	r, _ := json.Marshal(reason)
	doc["disabled_reason"] = r
	out, err := json.Marshal(doc)
	if err != nil {
		return fmt.Errorf("target %s: %w", id, err)
	}
	if err := e.c.Do(ctx, e.c.B().Hset().Key(keys.WebhookTargets).FieldValue().FieldValue(id, string(out)).Build()).Error(); err != nil {
		return fmt.Errorf("disable target %s: %w", id, err)
	}
	// Enabled again, the target has its whole DisableAfter to recover.
	if err := e.c.Do(ctx, e.c.B().Hdel().Key(keys.WebhookStats(id)).Field(alerting.StatFailingSince).Build()).Error(); err != nil {
		e.log.Warn("webhook: resetting failing_since failed", "target", id, "err", err)
	}
	e.log.Warn("webhook: target disabled", "target", id, "reason", reason)
	e.event(OperatorEvent{Kind: EventTargetDisabled, Target: id, Reason: reason})
	e.Reload()
	return nil
}
