package api

import (
	"encoding/json"
	"errors"
	"net/http"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/redis/rueidis"

	"github.com/voltedge/voltedge/internal/alerting"
	"github.com/voltedge/voltedge/internal/keys"
	"github.com/voltedge/voltedge/modsrv/auth"
)

// Limits of the webhook endpoints.
const (
	// TargetBodyLimit bounds the body of a target.
	TargetBodyLimit = 32 << 10
	// MaxWebhookTest bounds the wait for the receiver in POST /webhooks/test.
	MaxWebhookTest = 15 * time.Second
	// maxTargets bounds the targets GET /webhooks/targets reads.
	maxTargets = 1000
)

var reflectTarget = reflect.TypeOf(alerting.Target{})

// TargetCounters are a target's delivery counters (alerting.TargetStats
// with in_flight spelt out): matched = delivered + failed + in_flight +
// queued + dead + dropped.
type TargetCounters struct {
	Matched    int64  `json:"matched"`
	Delivered  int64  `json:"delivered"`
	Failed     int64  `json:"failed"`
	InFlight   int64  `json:"in_flight"`
	Queued     int64  `json:"queued"`
	Dead       int64  `json:"dead"`
	Dropped    int64  `json:"dropped"`
	Attempts   int64  `json:"attempts"`
	LastStatus int64  `json:"last_status"`
	LastError  string `json:"last_error,omitempty"`
	// LastSuccess is Unix ms, 0 when none.
	LastSuccess int64 `json:"last_success"`
}

// TargetHealth says whether a target is sent to.
type TargetHealth struct {
	Enabled        bool   `json:"enabled"`
	DisabledReason string `json:"disabled_reason,omitempty"`
	// FailingSince is Unix ms of the first failure since the last
	// success, 0 when the target is not failing.
	FailingSince int64 `json:"failing_since"`
}

// TargetState is one entry of GET /webhooks/targets.
type TargetState struct {
	ID string `json:"id"`
	// Target is the stored target with its secrets and credential headers
	// redacted; absent when it does not decode (Invalid says why).
	Target   *alerting.Target `json:"target,omitempty"`
	Invalid  string           `json:"invalid,omitempty"`
	Counters TargetCounters   `json:"counters"`
	Health   TargetHealth     `json:"health"`
}

func counters(st alerting.TargetStats) TargetCounters {
	return TargetCounters{Matched: st.Matched, Delivered: st.Delivered, Failed: st.Failed, InFlight: st.InFlight,
		Queued: st.Queued, Dead: st.Dead, Dropped: st.Dropped, Attempts: st.Attempts, LastStatus: st.LastStatus,
		LastError: st.LastError, LastSuccess: st.LastSuccess}
}

func (s *server) targetParam(c *fiber.Ctx) (string, error) {
	id, err := pathParam(c, "id")
	if err != nil {
		return "", err
	}
	if !keys.ValidID(id) {
		return "", Errorf(http.StatusBadRequest, "invalid target id %q: %s", clip(id), idRule)
	}
	return id, nil
}

func (s *server) listTargets(c *fiber.Ctx) error {
	ctx, cancel := reqCtx(c)
	defer cancel()
	r := s.d.Redis
	raw, err := r.Do(ctx, r.B().Hgetall().Key(keys.WebhookTargets).Build()).AsStrMap()
	if err != nil {
		return s.redisError("webhook targets", err)
	}
	ids := make([]string, 0, len(raw))
	for id := range raw {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	truncated := len(ids) > maxTargets
	if truncated {
		ids = ids[:maxTargets]
	}
	out := make([]TargetState, 0, len(ids))
	for _, id := range ids {
		ts := TargetState{ID: id}
		t, err := alerting.ParseTarget(id, []byte(raw[id]))
		if err != nil {
			ts.Invalid = err.Error()
		} else {
			red := t.Redacted()
			ts.Target = &red
			ts.Health.Enabled = t.Enabled
			ts.Health.DisabledReason = t.DisabledReason
		}
		st, err := alerting.ReadStats(ctx, r, id)
		if err != nil {
			return s.redisError("webhook counters", err)
		}
		ts.Counters = counters(st)
		ts.Health.FailingSince = st.FailingSince
		out = append(out, ts)
	}
	return c.JSON(fiber.Map{"targets": out, "truncated": truncated})
}

// parseTarget decodes and validates a target body for id; a secret given
// as alerting.RedactedSecret keeps the stored secret at that place, and a
// header value "****" the stored header's, so that a client can send back
// what GET answered.
func parseTarget(raw []byte, id string, old *alerting.Target) (alerting.Target, error) {
	var t alerting.Target
	if err := checkFields(raw, jsonFields(reflectTarget), ""); err != nil {
		return t, err
	}
	if err := json.Unmarshal(raw, &t); err != nil {
		return t, Errorf(http.StatusBadRequest, "target: %v", jsonError(err))
	}
	if t.ID == "" {
		t.ID = id
	}
	if t.ID != id {
		return t, Errorf(http.StatusBadRequest, "id: %q differs from the path's %q", clip(t.ID), id)
	}
	for i, sec := range t.Secrets {
		if sec != alerting.RedactedSecret {
			continue
		}
		if old == nil || i >= len(old.Secrets) {
			return t, Errorf(http.StatusBadRequest, "secrets[%d]: %s stands for a stored secret, and there is none", i, alerting.RedactedSecret)
		}
		t.Secrets[i] = old.Secrets[i]
	}
	for k, v := range t.Headers {
		if v == "****" && old != nil {
			if ov, ok := old.Headers[k]; ok {
				t.Headers[k] = ov
			}
		}
	}
	if err := t.Validate(); err != nil {
		return t, Errorf(http.StatusBadRequest, "target %s: %s", id, strings.ReplaceAll(err.Error(), "\n", "; "))
	}
	return t, nil
}

// getTarget reads a stored target; ok is false when there is none.
func (s *server) getTarget(c *fiber.Ctx, id string) (*alerting.Target, bool, error) {
	ctx, cancel := reqCtx(c)
	defer cancel()
	r := s.d.Redis
	js, err := r.Do(ctx, r.B().Hget().Key(keys.WebhookTargets).Field(id).Build()).AsBytes()
	if rueidis.IsRedisNil(err) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, s.redisError("webhook target", err)
	}
	t, err := alerting.ParseTarget(id, js)
	if err != nil {
		return nil, true, nil // stored but invalid: it may be replaced whole
	}
	return &t, true, nil
}

func (s *server) storeTarget(c *fiber.Ctx, t alerting.Target) error {
	b, err := json.Marshal(t)
	if err != nil {
		return err
	}
	ctx, cancel := reqCtx(c)
	defer cancel()
	r := s.d.Redis
	if err := r.Do(ctx, r.B().Hset().Key(keys.WebhookTargets).FieldValue().FieldValue(t.ID, string(b)).Build()).Error(); err != nil {
		return s.redisError("store webhook target", err)
	}
	return nil
}

func (s *server) createTarget(c *fiber.Ctx) error {
	raw, err := limitBody(c, TargetBodyLimit)
	if err != nil {
		return err
	}
	var probe struct {
		ID      string `json:"id"`
		Enabled *bool  `json:"enabled"`
	}
	_ = json.Unmarshal(raw, &probe)
	if !keys.ValidID(probe.ID) {
		return Errorf(http.StatusBadRequest, "id: %q is not a target id: %s", clip(probe.ID), idRule)
	}
	t, err := parseTarget(raw, probe.ID, nil)
	if err != nil {
		return err
	}
	if probe.Enabled == nil {
		t.Enabled = true // a new target is meant to be used unless it says otherwise
	}
	if _, ok, err := s.getTarget(c, t.ID); err != nil {
		return err
	} else if ok {
		return Errorf(http.StatusConflict, "target %q exists: change it with PUT /webhooks/targets/%s", t.ID, t.ID)
	}
	if err := s.storeTarget(c, t); err != nil {
		return err
	}
	s.d.Log.Info("webhook target created", "user", auth.UserOf(c), "target", t)
	return c.Status(http.StatusCreated).JSON(t.Redacted())
}

func (s *server) putTarget(c *fiber.Ctx) error {
	id, err := s.targetParam(c)
	if err != nil {
		return err
	}
	raw, err := limitBody(c, TargetBodyLimit)
	if err != nil {
		return err
	}
	old, ok, err := s.getTarget(c, id)
	if err != nil {
		return err
	}
	t, err := parseTarget(raw, id, old)
	if err != nil {
		return err
	}
	if t.Enabled {
		t.DisabledReason = "" // enabling clears alarmsrv's reason
	}
	if err := s.storeTarget(c, t); err != nil {
		return err
	}
	s.d.Log.Info("webhook target stored", "user", auth.UserOf(c), "target", t)
	status := http.StatusOK
	if !ok {
		status = http.StatusCreated
	}
	return c.Status(status).JSON(t.Redacted())
}

func (s *server) deleteTarget(c *fiber.Ctx) error {
	id, err := s.targetParam(c)
	if err != nil {
		return err
	}
	ctx, cancel := reqCtx(c)
	defer cancel()
	r := s.d.Redis
	n, err := r.Do(ctx, r.B().Hdel().Key(keys.WebhookTargets).Field(id).Build()).AsInt64()
	if err != nil {
		return s.redisError("delete webhook target", err)
	}
	if n == 0 {
		return Errorf(http.StatusNotFound, "no webhook target %q", id)
	}
	s.d.Log.Info("webhook target deleted", "user", auth.UserOf(c), "target", id)
	return c.JSON(fiber.Map{"id": id, "deleted": true})
}

func (s *server) listDead(c *fiber.Ctx) error {
	from := c.Query("from")
	if from != "" && !streamID.MatchString(from) {
		return Errorf(http.StatusBadRequest, "from %q must be a dead letter's entry id (the previous answer's next)", clip(from))
	}
	count, err := intQuery(c, "count", 50, 1, 1000)
	if err != nil {
		return err
	}
	ctx, cancel := reqCtx(c)
	defer cancel()
	r := s.d.Redis
	total, err := r.Do(ctx, r.B().Xlen().Key(keys.WebhookDead).Build()).AsInt64()
	if err != nil {
		return s.redisError("dead letters", err)
	}
	list, next, err := alerting.ListDead(ctx, r, from, count)
	if err != nil {
		return s.redisError("dead letters", err)
	}
	return c.JSON(fiber.Map{"dead": list, "next": next, "total": total})
}

// deadError maps an error of alerting's dead letters to the API's.
func (s *server) deadError(err error) error {
	switch {
	case errors.Is(err, alerting.ErrNotFound):
		return Errorf(http.StatusNotFound, "%s", err.Error())
	case errors.Is(err, alerting.ErrUnknownTarget):
		return Errorf(http.StatusConflict, "%s: the target was deleted", err.Error())
	}
	return s.redisError("retry dead letter", err)
}

func (s *server) retryDead(c *fiber.Ctx) error {
	id, err := pathParam(c, "id")
	if err != nil {
		return err
	}
	if !streamID.MatchString(id) {
		return Errorf(http.StatusBadRequest, "invalid dead letter id %q: want a stream entry id such as 1732212345678-0", clip(id))
	}
	ctx, cancel := reqCtx(c)
	defer cancel()
	if err := alerting.RetryDead(ctx, s.d.Redis, id); err != nil {
		return s.deadError(err)
	}
	s.d.Log.Info("dead letter sent again", "user", auth.UserOf(c), "entry", id)
	return c.JSON(fiber.Map{"entry": id, "retried": true})
}

// timeQuery reads a time as Unix ms or RFC 3339; zero when absent.
func timeQuery(c *fiber.Ctx, name string) (time.Time, error) {
	v := c.Query(name)
	if v == "" {
		return time.Time{}, nil
	}
	if n, err := strconv.ParseInt(v, 10, 64); err == nil && n >= 0 {
		return time.UnixMilli(n), nil
	}
	if t, err := time.Parse(time.RFC3339, v); err == nil {
		return t, nil
	}
	return time.Time{}, Errorf(http.StatusBadRequest, "%s %q must be Unix ms or an RFC 3339 time", name, clip(v))
}

func (s *server) retryDeadRange(c *fiber.Ctx) error {
	from, err := timeQuery(c, "from")
	if err != nil {
		return err
	}
	to, err := timeQuery(c, "to")
	if err != nil {
		return err
	}
	if from.IsZero() {
		from = time.UnixMilli(0)
	}
	if !to.IsZero() && to.Before(from) {
		return Errorf(http.StatusBadRequest, "to is before from")
	}
	target := c.Query("target")
	if target != "" && !keys.ValidID(target) {
		return Errorf(http.StatusBadRequest, "invalid target id %q: %s", clip(target), idRule)
	}
	// Many dead letters may be sent again: the bound is longer than a
	// read's.
	ctx, cancel := reqCtxFor(c, time.Minute)
	defer cancel()
	n, err := alerting.RetryDeadRange(ctx, s.d.Redis, target, from, to)
	if err != nil {
		return s.redisError("retry dead letters", err)
	}
	s.d.Log.Info("dead letters sent again", "user", auth.UserOf(c), "count", n, "target", target,
		"from", from.UnixMilli(), "to", to.UnixMilli())
	return c.JSON(fiber.Map{"retried": n})
}

// webhookTestRequest is the body of POST /webhooks/test.
type webhookTestRequest struct {
	Target string          `json:"target"`
	Event  json.RawMessage `json:"event,omitempty"`
}

// WebhookTestResult is the receiver's answer to a test request.
type WebhookTestResult struct {
	Target     string              `json:"target"`
	ID         string              `json:"id"`
	Status     int                 `json:"status"`
	OK         bool                `json:"ok"`
	Headers    map[string][]string `json:"headers"`
	Body       string              `json:"body"`
	DurationMS int64               `json:"duration_ms"`
	Signed     bool                `json:"signed"`
}

func (s *server) testWebhook(c *fiber.Ctx) error {
	var req webhookTestRequest
	if err := decodeBody(c, &req, `{"target":…,"event":{…}}`); err != nil {
		return err
	}
	if !keys.ValidID(req.Target) {
		return Errorf(http.StatusBadRequest, "target: %q is not a target id", clip(req.Target))
	}
	now := time.Now()
	ev := alerting.SampleEvent(now)
	if len(req.Event) > 0 && string(req.Event) != "null" {
		e, err := parseEvent(req.Event)
		if err != nil {
			return err
		}
		if e.ID == "" {
			e.ID = ev.ID
		}
		if e.TS == 0 {
			e.TS = ev.TS
		}
		ev = e
	}
	t, ok, err := s.getTarget(c, req.Target)
	switch {
	case err != nil:
		return err
	case !ok:
		return Errorf(http.StatusNotFound, "no webhook target %q", req.Target)
	case t == nil:
		return Errorf(http.StatusConflict, "webhook target %q as stored is not valid", req.Target)
	}
	body, err := t.Render(ev)
	if err != nil {
		return Errorf(http.StatusBadRequest, "template: %v", err)
	}
	tt := t.WithDefaults()
	if tt.Timeout.Duration > MaxWebhookTest {
		tt.Timeout.Duration = MaxWebhookTest
	}
	msg := alerting.Message{ID: "test_" + strconv.FormatInt(now.UnixNano(), 36), TS: now, Body: body}
	res := alerting.Send(c.UserContext(), s.http, tt, msg)
	s.d.Log.Info("webhook test", "user", auth.UserOf(c), "target", t.ID, "status", res.Status, "err", res.Err)
	if res.Err != nil {
		e := Errorf(http.StatusBadGateway, "target %s did not answer: %v", t.ID, res.Err)
		e.Extra = map[string]any{"target": t.ID, "id": msg.ID, "duration_ms": res.Duration.Milliseconds()}
		return e
	}
	hdr := make(map[string][]string, len(res.Header))
	for k, v := range res.Header {
		if strings.EqualFold(k, "Set-Cookie") {
			continue
		}
		hdr[k] = v
	}
	return c.JSON(WebhookTestResult{Target: t.ID, ID: msg.ID, Status: res.Status, OK: res.OK(), Headers: hdr,
		Body: strings.ToValidUTF8(string(res.BodyPrefix), "\uFFFD"), DurationMS: res.Duration.Milliseconds(),
		Signed: len(t.Secrets) > 0})
}
