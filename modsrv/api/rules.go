package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"reflect"
	"slices"
	"strings"

	"github.com/gofiber/fiber/v2"

	"github.com/voltedge/voltedge/internal/alerting"
	"github.com/voltedge/voltedge/modsrv/auth"
)

// Limits of the rule endpoints.
const (
	// RuleBodyLimit bounds the body of a rule or a rule test.
	RuleBodyLimit = 16 << 10
	// MaxRuns bounds the run log entries one request returns.
	MaxRuns = 500
)

// jsonFields returns the JSON names of a struct type's fields.
func jsonFields(t reflect.Type) map[string]bool {
	out := map[string]bool{}
	for i := 0; i < t.NumField(); i++ {
		name, _, _ := strings.Cut(t.Field(i).Tag.Get("json"), ",")
		if name != "" && name != "-" {
			out[name] = true
		}
	}
	return out
}

var (
	ruleFields      = jsonFields(reflect.TypeOf(alerting.Rule{}))
	conditionFields = jsonFields(reflect.TypeOf(alerting.Condition{}))
	eventFields     = jsonFields(reflect.TypeOf(alerting.Event{}))
)

// checkFields refuses a JSON object with a field not in known, naming it
// (prefix is the object's place: "condition.").
func checkFields(raw json.RawMessage, known map[string]bool, prefix string) error {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(raw, &m); err != nil {
		return Errorf(http.StatusBadRequest, "%sbody must be a JSON object: %v", prefix, err)
	}
	names := make([]string, 0, len(m))
	for k := range m {
		names = append(names, k)
	}
	slices.Sort(names)
	for _, k := range names {
		if !known[k] {
			return Errorf(http.StatusBadRequest, "%s%s: unknown field", prefix, clip(k))
		}
	}
	return nil
}

// limitBody refuses a body above n bytes.
func limitBody(c *fiber.Ctx, n int) ([]byte, error) {
	b := bytes.TrimSpace(c.Body())
	if len(b) > n {
		return nil, Errorf(http.StatusRequestEntityTooLarge, "body of %d bytes: at most %d", len(b), n)
	}
	if len(b) == 0 {
		return nil, Errorf(http.StatusBadRequest, "body must be a JSON object")
	}
	return b, nil
}

// parseRule decodes and validates a rule; unknown fields and every
// problem of alerting's Validate are 400 naming the field.
func parseRule(raw []byte) (alerting.Rule, error) {
	var r alerting.Rule
	if err := checkFields(raw, ruleFields, ""); err != nil {
		return r, err
	}
	var cond struct {
		Condition json.RawMessage `json:"condition"`
	}
	if json.Unmarshal(raw, &cond) == nil && len(cond.Condition) > 0 && string(cond.Condition) != "null" {
		if err := checkFields(cond.Condition, conditionFields, "condition."); err != nil {
			return r, err
		}
	}
	d := json.NewDecoder(bytes.NewReader(raw))
	if err := d.Decode(&r); err != nil {
		return r, Errorf(http.StatusBadRequest, "rule: %v", jsonError(err))
	}
	if d.More() {
		return r, Errorf(http.StatusBadRequest, "body must be one JSON object")
	}
	if err := r.Validate(); err != nil {
		return r, Errorf(http.StatusBadRequest, "%s", strings.ReplaceAll(err.Error(), "\n", "; "))
	}
	return r, nil
}

// jsonError names the field of a JSON type error.
func jsonError(err error) string {
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) && te.Field != "" {
		return fmt.Sprintf("%s: want %s, got %s", te.Field, te.Type, te.Value)
	}
	return err.Error()
}

// parseEvent decodes a sample event for a rule test.
func parseEvent(raw []byte) (alerting.Event, error) {
	var e alerting.Event
	if err := checkFields(raw, eventFields, "event."); err != nil {
		return e, err
	}
	if err := json.Unmarshal(raw, &e); err != nil {
		return e, Errorf(http.StatusBadRequest, "event: %v", jsonError(err))
	}
	if e.Type == "" {
		return e, Errorf(http.StatusBadRequest, "event.type: required (e.g. alarm_raised, data, custom:door)")
	}
	if e.Level != "" && alerting.LevelRank(e.Level) == 0 {
		return e, Errorf(http.StatusBadRequest, "event.level: %q is not a level (info, warning, critical)", clip(e.Level))
	}
	return e, nil
}

// ruleError maps an error of alerting's rule store to the API's.
func (s *server) ruleError(what string, err error) error {
	if errors.Is(err, alerting.ErrFileRule) {
		return Errorf(http.StatusConflict, "%s", err.Error())
	}
	return s.redisError(what, err)
}

func (s *server) ruleParam(c *fiber.Ctx) (string, error) {
	id, err := pathParam(c, "id")
	if err != nil {
		return "", err
	}
	if !alerting.ValidRuleID(id) {
		return "", Errorf(http.StatusBadRequest, "invalid rule id %q: 1..64 of A-Z a-z 0-9 _ . -", clip(id))
	}
	return id, nil
}

func (s *server) listRules(c *fiber.Ctx) error {
	ctx, cancel := reqCtx(c)
	defer cancel()
	rules, bad, err := alerting.LoadRules(ctx, s.d.Redis)
	if err != nil {
		return s.redisError("rules", err)
	}
	invalid := make(map[string]string, len(bad))
	for id, e := range bad {
		invalid[id] = e.Error()
	}
	return c.JSON(fiber.Map{"rules": rules, "invalid": invalid})
}

func (s *server) getRule(c *fiber.Ctx) error {
	id, err := s.ruleParam(c)
	if err != nil {
		return err
	}
	ctx, cancel := reqCtx(c)
	defer cancel()
	r, ok, err := alerting.GetRule(ctx, s.d.Redis, id)
	switch {
	case !ok && err == nil:
		return Errorf(http.StatusNotFound, "no rule %q", id)
	case err != nil && ok:
		return Errorf(http.StatusInternalServerError, "rule %s as stored does not decode: %v", id, err)
	case err != nil:
		return s.redisError("rule", err)
	}
	return c.JSON(r)
}

func (s *server) createRule(c *fiber.Ctx) error {
	raw, err := limitBody(c, RuleBodyLimit)
	if err != nil {
		return err
	}
	r, err := parseRule(raw)
	if err != nil {
		return err
	}
	ctx, cancel := reqCtx(c)
	defer cancel()
	if _, ok, err := alerting.GetRule(ctx, s.d.Redis, r.ID); ok {
		return Errorf(http.StatusConflict, "rule %q exists: change it with PUT /rules/%s", r.ID, r.ID)
	} else if err != nil {
		return s.redisError("rule", err)
	}
	if err := alerting.PutRule(ctx, s.d.Redis, r); err != nil {
		return s.ruleError("create rule", err)
	}
	r.Origin = alerting.OriginAPI
	s.d.Log.Info("rule created", "user", auth.UserOf(c), "rule", r.ID)
	return c.Status(http.StatusCreated).JSON(r)
}

func (s *server) updateRule(c *fiber.Ctx) error {
	id, err := s.ruleParam(c)
	if err != nil {
		return err
	}
	raw, err := limitBody(c, RuleBodyLimit)
	if err != nil {
		return err
	}
	// The id may be left out of the body; the path names the rule.
	var probe struct {
		ID *string `json:"id"`
	}
	if json.Unmarshal(raw, &probe) == nil && probe.ID == nil {
		var m map[string]json.RawMessage
		if json.Unmarshal(raw, &m) == nil {
			m["id"], _ = json.Marshal(id)
			raw, _ = json.Marshal(m)
		}
	}
	r, err := parseRule(raw)
	if err != nil {
		return err
	}
	if r.ID != id {
		return Errorf(http.StatusBadRequest, "id: %q differs from the path's %q (a rule is not renamed)", r.ID, id)
	}
	ctx, cancel := reqCtx(c)
	defer cancel()
	old, ok, err := alerting.GetRule(ctx, s.d.Redis, id)
	switch {
	case !ok && err == nil:
		return Errorf(http.StatusNotFound, "no rule %q (create it with POST /rules)", id)
	case err != nil && !ok:
		return s.redisError("rule", err)
	case err == nil && old.Origin == alerting.OriginFile:
		return Errorf(http.StatusConflict, "%s", alerting.ErrFileRule.Error())
	}
	if err := alerting.PutRule(ctx, s.d.Redis, r); err != nil {
		return s.ruleError("change rule", err)
	}
	r.Origin = alerting.OriginAPI
	s.d.Log.Info("rule changed", "user", auth.UserOf(c), "rule", r.ID, "enabled", r.Enabled)
	return c.JSON(r)
}

func (s *server) deleteRule(c *fiber.Ctx) error {
	id, err := s.ruleParam(c)
	if err != nil {
		return err
	}
	ctx, cancel := reqCtx(c)
	defer cancel()
	ok, err := alerting.DeleteRule(ctx, s.d.Redis, id)
	if err != nil {
		return s.ruleError("delete rule", err)
	}
	if !ok {
		return Errorf(http.StatusNotFound, "no rule %q", id)
	}
	s.d.Log.Info("rule deleted", "user", auth.UserOf(c), "rule", id)
	return c.JSON(fiber.Map{"id": id, "deleted": true})
}

// testRule: POST /rules/{id}/test with a sample event as the body.
func (s *server) testRule(c *fiber.Ctx) error {
	id, err := s.ruleParam(c)
	if err != nil {
		return err
	}
	raw, err := limitBody(c, RuleBodyLimit)
	if err != nil {
		return err
	}
	ev, err := parseEvent(raw)
	if err != nil {
		return err
	}
	ctx, cancel := reqCtx(c)
	defer cancel()
	r, ok, err := alerting.GetRule(ctx, s.d.Redis, id)
	switch {
	case !ok && err == nil:
		return Errorf(http.StatusNotFound, "no rule %q", id)
	case err != nil:
		return s.redisError("rule", err)
	}
	return c.JSON(alerting.TestRule(r, ev))
}

// testUnsavedRule: POST /rules/test with {"rule":…,"event":…}.
func (s *server) testUnsavedRule(c *fiber.Ctx) error {
	raw, err := limitBody(c, RuleBodyLimit)
	if err != nil {
		return err
	}
	var body map[string]json.RawMessage
	if err := json.Unmarshal(raw, &body); err != nil {
		return Errorf(http.StatusBadRequest, `body must be JSON {"rule":…,"event":…}: %v`, err)
	}
	for k := range body {
		if k != "rule" && k != "event" {
			return Errorf(http.StatusBadRequest, "%s: unknown field (want rule and event)", clip(k))
		}
	}
	if len(body["rule"]) == 0 {
		return Errorf(http.StatusBadRequest, "rule: required")
	}
	if len(body["event"]) == 0 {
		return Errorf(http.StatusBadRequest, "event: required")
	}
	r, err := parseRule(body["rule"])
	if err != nil {
		return err
	}
	ev, err := parseEvent(body["event"])
	if err != nil {
		return err
	}
	return c.JSON(alerting.TestRule(r, ev))
}

func (s *server) ruleRuns(c *fiber.Ctx) error {
	id, err := s.ruleParam(c)
	if err != nil {
		return err
	}
	n, err := intQuery(c, "limit", 50, 1, MaxRuns)
	if err != nil {
		return err
	}
	ctx, cancel := reqCtx(c)
	defer cancel()
	if _, ok, err := alerting.GetRule(ctx, s.d.Redis, id); !ok && err == nil {
		return Errorf(http.StatusNotFound, "no rule %q", id)
	} else if err != nil && !ok {
		return s.redisError("rule", err)
	}
	runs, err := alerting.ReadRuns(ctx, s.d.Redis, id, n)
	if err != nil {
		return s.redisError("run log", err)
	}
	return c.JSON(fiber.Map{"rule": id, "runs": runs})
}
