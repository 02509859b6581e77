// Package notify joins alarmsrv's rules to its webhook engine: it writes
// the targets of the configuration file to Redis, renders each delivery's
// body for its target (the event's JSON, or the target's template), leaves
// out deliveries to targets that do not exist (counted, never retried
// forever), reports the engine's operator events as custom events, and
// exposes the per-target counters in /metrics.
package notify

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/rueidis"

	"github.com/voltedge/voltedge/alarmsrv/webhook"
	"github.com/voltedge/voltedge/internal/alerting"
	"github.com/voltedge/voltedge/internal/keys"
	"github.com/voltedge/voltedge/internal/metrics"
)

// customEventsMaxLen caps events:custom when alarmsrv appends to it.
const customEventsMaxLen = 10000

// targetCacheTTL is how long the targets read for rendering are kept.
const targetCacheTTL = 5 * time.Second

// SeedTargets writes the targets of the configuration file (raw TOML
// tables, each with an id; enabled unless they say enabled = false) to
// keys.WebhookTargets, replacing the stored ones of the same id; targets
// created at run time and not in the file are kept. Errors name the target.
func SeedTargets(ctx context.Context, c rueidis.Client, raw []map[string]any) (int, error) {
	if len(raw) == 0 {
		return 0, nil
	}
	cmd := c.B().Hset().Key(keys.WebhookTargets).FieldValue()
	var errs []error
	seen := map[string]bool{}
	for i, m := range raw {
		if _, set := m["enabled"]; !set {
			m["enabled"] = true // a target in the file is meant to be used
		}
		doc, err := json.Marshal(m)
		if err != nil {
			errs = append(errs, fmt.Errorf("target %d: %w", i+1, err))
			continue
		}
		id, _ := m["id"].(string)
		if !keys.ValidID(id) || seen[id] {
			errs = append(errs, fmt.Errorf("target %d: id %q is missing, invalid or repeated", i+1, id))
			continue
		}
		seen[id] = true
		dec := json.NewDecoder(bytes.NewReader(doc))
		dec.DisallowUnknownFields() // a misspelt key in the file is an error, not a default
		var probe alerting.Target
		if err := dec.Decode(&probe); err != nil {
			errs = append(errs, fmt.Errorf("target %s: %w", id, err))
			continue
		}
		t, err := alerting.ParseTarget(id, doc)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		out, err := json.Marshal(t.WithDefaults()) // stored as used: modsrv shows the timeout and schedule in force
		if err != nil {
			errs = append(errs, fmt.Errorf("target %s: %w", id, err))
			continue
		}
		cmd = cmd.FieldValue(id, string(out))
	}
	if err := errors.Join(errs...); err != nil {
		return 0, err
	}
	if err := c.Do(ctx, cmd.Build()).Error(); err != nil {
		return 0, fmt.Errorf("write %s: %w", keys.WebhookTargets, err)
	}
	return len(seen), nil
}

// Enqueuer is what the engine offers: webhook.Engine.
type Enqueuer interface {
	Enqueue(ctx context.Context, d webhook.Delivery) error
}

// Notifier sits between alarmsrv's rules and the webhook engine.
type Notifier struct {
	c   rueidis.Client
	eng Enqueuer
	log *slog.Logger

	mu      sync.Mutex
	targets map[string]alerting.Target
	readAt  time.Time

	unknown, renderErrors atomic.Uint64
}

// New returns a Notifier that queues through eng.
func New(c rueidis.Client, eng Enqueuer, log *slog.Logger) *Notifier {
	return &Notifier{c: c, eng: eng, log: log}
}

// target returns the stored target id, reading keys.WebhookTargets at most
// every targetCacheTTL (and at once for an id not seen yet).
func (n *Notifier) target(ctx context.Context, id string) (alerting.Target, bool, error) {
	n.mu.Lock()
	t, ok := n.targets[id]
	fresh := time.Since(n.readAt) < targetCacheTTL
	n.mu.Unlock()
	if ok && fresh {
		return t, true, nil
	}
	all, err := n.c.Do(ctx, n.c.B().Hgetall().Key(keys.WebhookTargets).Build()).AsStrMap()
	if err != nil {
		return alerting.Target{}, false, fmt.Errorf("read %s: %w", keys.WebhookTargets, err)
	}
	m := make(map[string]alerting.Target, len(all))
	for tid, raw := range all {
		if tt, err := alerting.ParseTarget(tid, []byte(raw)); err == nil {
			m[tid] = tt
		}
	}
	n.mu.Lock()
	n.targets, n.readAt = m, time.Now()
	n.mu.Unlock()
	t, ok = m[id]
	return t, ok, nil
}

// Enqueue queues d for its target with the body rendered for it. A
// delivery to a target that does not exist (a rule naming a deleted
// target) is logged, counted and left out: retrying it would hold back its
// source stream forever. Any other error is returned, so that the source
// entry stays unacknowledged and is read again.
func (n *Notifier) Enqueue(ctx context.Context, d webhook.Delivery) error {
	t, ok, err := n.target(ctx, d.Target)
	if err != nil {
		return err
	}
	if !ok {
		n.unknown.Add(1)
		n.log.Warn("a rule names a webhook target that does not exist; delivery left out", "target", d.Target, "delivery", d.ID)
		return nil
	}
	if t.Template != "" {
		var ev alerting.Event
		if err := json.Unmarshal(d.Body, &ev); err == nil {
			body, err := t.Render(ev)
			if err != nil {
				n.renderErrors.Add(1)
				n.log.Warn("webhook template failed; the event's JSON is sent instead", "target", d.Target, "err", err)
			} else {
				d.Body = body
			}
		}
	}
	err = n.eng.Enqueue(ctx, d)
	if errors.Is(err, alerting.ErrUnknownTarget) {
		n.unknown.Add(1)
		n.log.Warn("webhook target deleted meanwhile; delivery left out", "target", d.Target, "delivery", d.ID)
		return nil
	}
	return err
}

// OperatorEvent appends an engine event (a target disabled, a queue
// dropped) to keys.CustomEvents as type webhook_disabled or
// webhook_dropped, so that rules can tell someone through another target.
func (n *Notifier) OperatorEvent(ev webhook.OperatorEvent) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	err := n.c.Do(ctx, n.c.B().Xadd().Key(keys.CustomEvents).Maxlen().Almost().Threshold(strconv.Itoa(customEventsMaxLen)).Id("*").
		FieldValue().FieldValue("type", ev.Kind).FieldValue("level", "warning").FieldValue("target", ev.Target).
		FieldValue("reason", ev.Reason).FieldValue("count", strconv.FormatInt(ev.Count, 10)).
		FieldValue("ts", strconv.FormatInt(time.Now().UnixMilli(), 10)).Build()).Error()
	n.log.Warn("webhook target", "event", ev.Kind, "target", ev.Target, "reason", ev.Reason, "count", ev.Count)
	if err != nil {
		n.log.Warn("could not record the webhook event", "err", err)
	}
}

// Register adds the notifier's counters and the engine's per-target
// counters (read from Redis at scrape time) to reg.
func (n *Notifier) Register(reg *metrics.Registry, stats func(context.Context) ([]alerting.TargetStats, error)) {
	reg.CounterFunc("alarmsrv_deliveries_unknown_target_total", "Deliveries left out because their target does not exist.",
		func() float64 { return float64(n.unknown.Load()) })
	reg.CounterFunc("alarmsrv_template_errors_total", "Webhook bodies sent as JSON because the target's template failed.",
		func() float64 { return float64(n.renderErrors.Load()) })
	reg.Collect(func(w io.Writer) error {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		st, err := stats(ctx)
		if err != nil {
			return nil // Redis down: the scrape still has the rest
		}
		return alerting.WriteMetrics(w, st)
	})
}
