package alerting

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/redis/rueidis"

	"github.com/voltedge/voltedge/internal/conf"
	"github.com/voltedge/voltedge/internal/keys"
)

// Levels, lowest first.
const (
	LevelInfo     = "info"
	LevelWarning  = "warning"
	LevelCritical = "critical"
)

// DefaultAlarmLevel is the level of an alarm no rule gives a level.
const DefaultAlarmLevel = LevelWarning

// LevelRank orders levels: info 1, warning 2, critical 3, anything else 0.
func LevelRank(level string) int {
	switch level {
	case LevelInfo:
		return 1
	case LevelWarning:
		return 2
	case LevelCritical:
		return 3
	}
	return 0
}

// Levels lists the levels, lowest first. Each call returns a new slice.
func Levels() []string { return []string{LevelInfo, LevelWarning, LevelCritical} }

// Rule origins.
const (
	OriginFile = "file" // from alarmsrv.toml or a file it includes
	OriginAPI  = "api"  // created or changed through modsrv
)

// Condition operators of data rules.
const (
	OpGT      = ">"
	OpLT      = "<"
	OpGE      = ">="
	OpLE      = "<="
	OpEQ      = "=="
	OpNE      = "!="
	OpChanged = "changed"
)

// Bounds of a rule.
const (
	MaxDelay         = 24 * time.Hour
	MinRenotify      = time.Second
	MaxRenotify      = 7 * 24 * time.Hour
	MaxNotifications = 1000
	MaxTargets       = 16
	MaxEvents        = 32
	MaxPattern       = 128
)

// Condition is the condition of a data rule over a model point (or a
// channel point that no mapping forwards).
type Condition struct {
	// Op is >, <, >=, <=, ==, != (the sample's value against Value) or
	// changed (the value differs from the last one the rule confirmed).
	Op string `json:"op" toml:"op"`
	// Value is the number the value is compared with (not used by changed).
	Value float64 `json:"value" toml:"value"`
	// OnDelay is how long the condition must hold before the rule fires
	// (debounce): a shorter spike does not fire. Zero: at once.
	OnDelay conf.Duration `json:"on_delay" toml:"on_delay"`
	// OffDelay is how long the condition must be false before an active
	// rule clears. Zero: at once. Not used by changed.
	OffDelay conf.Duration `json:"off_delay" toml:"off_delay"`
}

// Rule is one alarmsrv rule, as kept in keys.AlarmRules (JSON), written in
// alarmsrv.toml ([[rule]]) and sent to and from modsrv's rule endpoints
// (the same JSON).
type Rule struct {
	// ID names the rule: 1..64 of A-Z a-z 0-9 _ . - (it is part of the run
	// log's key).
	ID string `json:"id" toml:"id"`
	// Name is a free text for people.
	Name string `json:"name,omitempty" toml:"name"`
	// Enabled: a disabled rule matches nothing. Default true, in TOML and
	// JSON alike.
	Enabled bool `json:"enabled" toml:"enabled"`
	// Events are the event types the rule matches (device_online,
	// device_offline, alarm_raised, alarm_cleared, alarm_acked, data,
	// control_result, upload_warning, custom:<type>, …); '*' and '?' match
	// any text and any one character ("custom:*", "device_*").
	Events []string `json:"events" toml:"events"`
	// Channel, Model and Point are patterns ('*', '?') the event's channel,
	// model and point must match; empty matches anything, including an
	// event without one.
	Channel string `json:"channel,omitempty" toml:"channel"`
	Model   string `json:"model,omitempty" toml:"model"`
	Point   string `json:"point,omitempty" toml:"point"`
	// MinLevel, if set, makes the rule match only events of at least that
	// level (info, warning, critical).
	MinLevel string `json:"min_level,omitempty" toml:"min_level"`
	// Level is the level of the rule's notifications (info, warning,
	// critical); empty keeps the event's. A rule matching alarm_raised
	// also gives its level to the alarms it matches (see AlarmLevel).
	Level string `json:"level,omitempty" toml:"level"`
	// Condition makes the rule a data rule (Events must be ["data"]).
	Condition *Condition `json:"condition,omitempty" toml:"condition"`
	// Targets are the webhook target ids notified (keys.WebhookTargets).
	// None: the rule only writes its run log.
	Targets []string `json:"targets" toml:"targets"`
	// RenotifyEvery, if positive, notifies again at this interval while
	// the rule's state is active (a data rule's condition, a raised alarm,
	// a device offline). At least 1s.
	RenotifyEvery conf.Duration `json:"renotify_every" toml:"renotify_every"`
	// MaxNotifications, if positive, caps the notifications of one
	// activation (the first one and the re-notifications; a clear is
	// always sent).
	MaxNotifications int `json:"max_notifications" toml:"max_notifications"`
	// Origin is "file" (alarmsrv.toml) or "api" (modsrv); alarmsrv replaces
	// the file rules at start and keeps the others.
	Origin string `json:"origin,omitempty" toml:"-"`
}

// UnmarshalJSON decodes a rule, Enabled being true unless given.
func (r *Rule) UnmarshalJSON(b []byte) error {
	type plain Rule
	p := plain{Enabled: true}
	if err := json.Unmarshal(b, &p); err != nil {
		return err
	}
	*r = Rule(p)
	return nil
}

// ruleID is the form of a rule id and of a target id.
var ruleID = regexp.MustCompile(`^[A-Za-z0-9_.-]{1,64}$`)

// ValidRuleID reports whether s can be a rule or target id.
func ValidRuleID(s string) bool { return ruleID.MatchString(s) }

// IsData reports whether r is a data rule.
func (r *Rule) IsData() bool { return r.Condition != nil }

// Validate checks the rule; each problem names its field (several are
// joined).
func (r *Rule) Validate() error {
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: %s", field, fmt.Sprintf(format, args...)))
	}
	if !ValidRuleID(r.ID) {
		bad("id", "%q is not a rule id (1..64 of A-Z a-z 0-9 _ . -)", r.ID)
	}
	if len(r.Name) > 200 {
		bad("name", "longer than 200 bytes")
	}
	if len(r.Events) == 0 {
		bad("events", "no event type (want e.g. [\"alarm_raised\"], [\"data\"], [\"custom:*\"])")
	}
	if len(r.Events) > MaxEvents {
		bad("events", "more than %d entries", MaxEvents)
	}
	for i, ev := range r.Events {
		if err := checkEventPattern(ev); err != nil {
			bad(fmt.Sprintf("events[%d]", i), "%v", err)
		}
	}
	for _, p := range []struct{ field, v string }{{"channel", r.Channel}, {"model", r.Model}, {"point", r.Point}} {
		if len(p.v) > MaxPattern || strings.ContainsAny(p.v, " \t\r\n") {
			bad(p.field, "%q is not a pattern (at most %d bytes, no spaces)", p.v, MaxPattern)
		}
	}
	if r.MinLevel != "" && LevelRank(r.MinLevel) == 0 {
		bad("min_level", "%q is not a level (info, warning, critical)", r.MinLevel)
	}
	if r.Level != "" && LevelRank(r.Level) == 0 {
		bad("level", "%q is not a level (info, warning, critical)", r.Level)
	}
	if c := r.Condition; c != nil {
		if len(r.Events) != 1 || r.Events[0] != Data {
			bad("events", "a rule with a condition is a data rule: events must be [\"data\"]")
		}
		switch c.Op {
		case OpGT, OpLT, OpGE, OpLE, OpEQ, OpNE, OpChanged:
		default:
			bad("condition.op", "%q is not an operator (>, <, >=, <=, ==, !=, changed)", c.Op)
		}
		if math.IsNaN(c.Value) || math.IsInf(c.Value, 0) {
			bad("condition.value", "not a finite number")
		}
		if c.OnDelay.Duration > MaxDelay {
			bad("condition.on_delay", "%s is above %s", c.OnDelay.Duration, MaxDelay)
		}
		if c.OffDelay.Duration > MaxDelay {
			bad("condition.off_delay", "%s is above %s", c.OffDelay.Duration, MaxDelay)
		}
	} else {
		for i, ev := range r.Events {
			if ev == Data {
				bad(fmt.Sprintf("events[%d]", i), "data needs a condition (op and value)")
			}
		}
	}
	if len(r.Targets) > MaxTargets {
		bad("targets", "more than %d targets", MaxTargets)
	}
	for i, t := range r.Targets {
		if !ValidRuleID(t) {
			bad(fmt.Sprintf("targets[%d]", i), "%q is not a target id", t)
		}
	}
	if d := r.RenotifyEvery.Duration; d != 0 && (d < MinRenotify || d > MaxRenotify) {
		bad("renotify_every", "%s is out of range (0 or %s..%s)", d, MinRenotify, MaxRenotify)
	}
	if r.MaxNotifications < 0 || r.MaxNotifications > MaxNotifications {
		bad("max_notifications", "%d is out of range (0..%d)", r.MaxNotifications, MaxNotifications)
	}
	if r.Origin != "" && r.Origin != OriginFile && r.Origin != OriginAPI {
		bad("origin", "%q is not file or api", r.Origin)
	}
	if len(errs) == 0 {
		return nil
	}
	if ValidRuleID(r.ID) {
		return fmt.Errorf("rule %s: %w", r.ID, errors.Join(errs...))
	}
	return fmt.Errorf("rule: %w", errors.Join(errs...))
}

// knownTypes are the event types alarmsrv produces (besides custom ones).
var knownTypes = []string{DeviceOnline, DeviceOffline, DeviceReplaced, DeviceRefused, ConnectFailed,
	AlarmRaised, AlarmCleared, AlarmAcked, Data, ControlResult, UploadWarning}

// checkEventPattern accepts a known type, "custom:<type>" or a pattern
// with '*' or '?'.
func checkEventPattern(p string) error {
	if p == "" || len(p) > MaxPattern || strings.ContainsAny(p, " \t\r\n") {
		return fmt.Errorf("%q is not an event type or pattern", p)
	}
	if strings.ContainsAny(p, "*?") {
		return nil
	}
	if rest, ok := strings.CutPrefix(p, CustomPrefix); ok && rest != "" {
		return nil
	}
	for _, t := range knownTypes {
		if p == t {
			return nil
		}
	}
	return fmt.Errorf("%q is not an event type (%s, custom:<type>, or a pattern with * or ?)", p, strings.Join(knownTypes, ", "))
}

// Glob reports whether s matches pattern, where '*' matches any text and
// '?' any one byte; an empty pattern matches anything.
func Glob(pattern, s string) bool {
	if pattern == "" || pattern == "*" {
		return true
	}
	// Iterative matching with one backtrack point for the last '*'.
	p, i, star, mark := 0, 0, -1, 0
	for i < len(s) {
		switch {
		case p < len(pattern) && (pattern[p] == '?' || pattern[p] == s[i]):
			p++
			i++
		case p < len(pattern) && pattern[p] == '*':
			star, mark = p, i
			p++
		case star >= 0:
			p = star + 1
			mark++
			i = mark
		default:
			return false
		}
	}
	for p < len(pattern) && pattern[p] == '*' {
		p++
	}
	return p == len(pattern)
}

// MatchesType reports whether the rule's Events select type t.
func (r *Rule) MatchesType(t string) bool {
	for _, p := range r.Events {
		if Glob(p, t) {
			return true
		}
	}
	return false
}

// Match reports whether an enabled rule selects e: type, channel, model,
// point and level. A data rule's condition is not part of the match.
func (r *Rule) Match(e Event) bool {
	return r.Enabled && r.MatchesType(e.Type) && r.matchWhere(e) &&
		(r.MinLevel == "" || LevelRank(e.Level) >= LevelRank(r.MinLevel))
}

// matchWhere checks the channel, model and point patterns.
func (r *Rule) matchWhere(e Event) bool {
	return patternMatch(r.Channel, e.Channel) && patternMatch(r.Model, e.Model) && patternMatch(r.Point, e.Point)
}

// patternMatch: an empty pattern matches anything; another pattern needs a
// value.
func patternMatch(pattern, v string) bool {
	if pattern == "" {
		return true
	}
	return v != "" && Glob(pattern, v)
}

// Holds reports whether a comparison condition holds for value v (a
// decimal text). changed, and a value that is not a number, never hold.
func (c *Condition) Holds(v string) bool {
	x, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
	if err != nil || math.IsNaN(x) {
		return false
	}
	switch c.Op {
	case OpGT:
		return x > c.Value
	case OpLT:
		return x < c.Value
	case OpGE:
		return x >= c.Value
	case OpLE:
		return x <= c.Value
	case OpEQ:
		return x == c.Value
	case OpNE:
		return x != c.Value
	}
	return false
}

// AlarmLevel is the level of the alarm on model:point: the highest Level
// of the enabled rules that match alarm_raised on that model and point
// (their channel pattern and min_level are not considered), or
// DefaultAlarmLevel. alarmsrv gives it to alarm_raised, alarm_cleared and
// alarm_acked events and counts active alarms by it; modsrv can do the same.
func AlarmLevel(rules []Rule, model, point string) string {
	level := ""
	for i := range rules {
		r := &rules[i]
		if !r.Enabled || r.Level == "" || !r.MatchesType(AlarmRaised) ||
			!patternMatch(r.Model, model) || !patternMatch(r.Point, point) {
			continue
		}
		if LevelRank(r.Level) > LevelRank(level) {
			level = r.Level
		}
	}
	if level == "" {
		return DefaultAlarmLevel
	}
	return level
}

// TestResult is what TestRule says about a rule and a sample event.
type TestResult struct {
	// Matched: the rule selects the event (type, channel, model, point, level).
	Matched bool `json:"matched"`
	// Fires: the rule would notify for this event alone, from a fresh state.
	Fires bool `json:"fires"`
	// Reason explains the answer in a sentence.
	Reason string `json:"reason"`
	// Level is the notification's level.
	Level string `json:"level,omitempty"`
	// Targets are the targets that would be notified.
	Targets []string `json:"targets"`
	// Event is the event as it would be delivered.
	Event *Event `json:"event,omitempty"`
}

// TestRule evaluates the sample event e against r without any state or
// side effect, for modsrv's "test a rule" endpoint. A data rule's on-delay
// is reported, not waited for; changed is reported as firing on a change.
func TestRule(r Rule, e Event) TestResult {
	res := TestResult{Targets: []string{}}
	if err := r.Validate(); err != nil {
		res.Reason = "the rule is not valid: " + err.Error()
		return res
	}
	switch {
	case !r.Enabled:
		res.Reason = "the rule is disabled"
		return res
	case !r.MatchesType(e.Type):
		res.Reason = fmt.Sprintf("event type %q is not in events %v", e.Type, r.Events)
		return res
	case !patternMatch(r.Channel, e.Channel):
		res.Reason = fmt.Sprintf("channel %q does not match %q", e.Channel, r.Channel)
		return res
	case !patternMatch(r.Model, e.Model):
		res.Reason = fmt.Sprintf("model %q does not match %q", e.Model, r.Model)
		return res
	case !patternMatch(r.Point, e.Point):
		res.Reason = fmt.Sprintf("point %q does not match %q", e.Point, r.Point)
		return res
	case r.MinLevel != "" && LevelRank(e.Level) < LevelRank(r.MinLevel):
		res.Reason = fmt.Sprintf("level %q is below min_level %q", e.Level, r.MinLevel)
		return res
	}
	res.Matched = true
	res.Reason = "matched"
	if c := r.Condition; c != nil {
		switch {
		case c.Op == OpChanged:
			res.Reason = "matched; changed fires when the value differs from the last confirmed one"
		case !c.Holds(e.Value):
			res.Reason = fmt.Sprintf("matched, but the condition %s %g does not hold for value %q", c.Op, c.Value, e.Value)
			return res
		default:
			res.Reason = fmt.Sprintf("matched, and %s %s %g holds", e.Value, c.Op, c.Value)
		}
		if c.OnDelay.Duration > 0 {
			res.Reason += fmt.Sprintf("; fires once it has held for %s", c.OnDelay.Duration)
		}
	}
	res.Fires = true
	out := e
	out.Rule = r.ID
	if r.Level != "" {
		out.Level = r.Level
	}
	res.Level = out.Level
	res.Targets = append(res.Targets, r.Targets...)
	res.Event = &out
	return res
}

// Run is one entry of a rule's run log (keys.AlarmRuleRuns): an
// evaluation that fired.
type Run struct {
	Event Event `json:"event"`
	// TS is when it fired, Unix ms.
	TS int64 `json:"ts"`
	// Kind is notify (an event the rule matched), raise (a data rule's
	// condition became active), renotify (still active) or clear (a data
	// rule's condition ended).
	Kind string `json:"kind"`
	// Actions are the deliveries queued.
	Actions []Action `json:"actions"`
	// Suppressed says why nothing was sent ("shelved", "max_notifications"), if so.
	Suppressed string `json:"suppressed,omitempty"`
}

// Action is one delivery queued for a run.
type Action struct {
	Target   string `json:"target"`
	Delivery string `json:"delivery"`
}

// Kinds of Run.
const (
	RunNotify   = "notify"
	RunRaise    = "raise"
	RunRenotify = "renotify"
	RunClear    = "clear"
)

// ErrFileRule is returned when the API tries to change or delete a rule
// of alarmsrv's configuration files: the file is where it is changed.
var ErrFileRule = errors.New("the rule comes from alarmsrv's configuration file; change it there")

// LoadRules reads every rule of keys.AlarmRules, sorted by id. Rules that
// do not decode or validate (or whose id differs from their field) are
// left out and returned in bad, by field.
func LoadRules(ctx context.Context, c rueidis.Client) (rules []Rule, bad map[string]error, err error) {
	raw, err := c.Do(ctx, c.B().Hgetall().Key(keys.AlarmRules).Build()).AsStrMap()
	if err != nil {
		return nil, nil, fmt.Errorf("hgetall %s: %w", keys.AlarmRules, err)
	}
	bad = map[string]error{}
	rules = make([]Rule, 0, len(raw))
	for id, js := range raw {
		var r Rule
		err := json.Unmarshal([]byte(js), &r)
		if err == nil && r.ID != id {
			err = fmt.Errorf("id %q under the field %q", r.ID, id)
		}
		if err == nil {
			err = r.Validate()
		}
		if err != nil {
			bad[id] = err
			continue
		}
		rules = append(rules, r)
	}
	slices.SortFunc(rules, func(a, b Rule) int { return strings.Compare(a.ID, b.ID) })
	return rules, bad, nil
}

// GetRule reads one rule; ok is false when there is none.
func GetRule(ctx context.Context, c rueidis.Client, id string) (r Rule, ok bool, err error) {
	js, err := c.Do(ctx, c.B().Hget().Key(keys.AlarmRules).Field(id).Build()).ToString()
	if rueidis.IsRedisNil(err) {
		return Rule{}, false, nil
	}
	if err != nil {
		return Rule{}, false, fmt.Errorf("hget %s %s: %w", keys.AlarmRules, id, err)
	}
	if err := json.Unmarshal([]byte(js), &r); err != nil {
		return Rule{}, true, fmt.Errorf("rule %s: %w", id, err)
	}
	return r, true, nil
}

// PutRule creates or replaces an API rule (origin set to "api") and
// announces it on keys.AlarmRulesChanged. It refuses an invalid rule and
// a rule of alarmsrv's files (ErrFileRule).
func PutRule(ctx context.Context, c rueidis.Client, r Rule) error {
	r.Origin = OriginAPI
	if err := r.Validate(); err != nil {
		return err
	}
	if old, ok, err := GetRule(ctx, c, r.ID); err == nil && ok && old.Origin == OriginFile {
		return ErrFileRule
	}
	b, err := json.Marshal(r)
	if err != nil {
		return fmt.Errorf("rule %s: %w", r.ID, err)
	}
	for _, res := range c.DoMulti(ctx,
		c.B().Hset().Key(keys.AlarmRules).FieldValue().FieldValue(r.ID, string(b)).Build(),
		c.B().Publish().Channel(keys.AlarmRulesChanged).Message(r.ID).Build()) {
		if err := res.Error(); err != nil {
			return fmt.Errorf("put rule %s: %w", r.ID, err)
		}
	}
	return nil
}

// DeleteRule deletes an API rule and its run log and announces it; it
// reports whether there was one, and refuses a file rule (ErrFileRule).
func DeleteRule(ctx context.Context, c rueidis.Client, id string) (bool, error) {
	old, ok, err := GetRule(ctx, c, id)
	switch {
	case err != nil && !ok:
		return false, err
	case !ok:
		return false, nil
	case err == nil && old.Origin == OriginFile:
		return false, ErrFileRule
	}
	for _, res := range c.DoMulti(ctx,
		c.B().Hdel().Key(keys.AlarmRules).Field(id).Build(),
		c.B().Del().Key(keys.AlarmRuleRuns(id)).Build(),
		c.B().Publish().Channel(keys.AlarmRulesChanged).Message(id).Build()) {
		if err := res.Error(); err != nil {
			return false, fmt.Errorf("delete rule %s: %w", id, err)
		}
	}
	return true, nil
}

// ReadRuns returns up to n entries of a rule's run log, newest first
// (n ≤ 0: all).
func ReadRuns(ctx context.Context, c rueidis.Client, id string, n int) ([]Run, error) {
	raw, err := c.Do(ctx, c.B().Lrange().Key(keys.AlarmRuleRuns(id)).Start(0).Stop(int64(n-1)).Build()).AsStrSlice()
	if err != nil {
		return nil, fmt.Errorf("run log of %s: %w", id, err)
	}
	out := make([]Run, 0, len(raw))
	for _, s := range raw {
		var r Run
		if err := json.Unmarshal([]byte(s), &r); err != nil {
			return nil, fmt.Errorf("run log of %s: %w", id, err)
		}
		out = append(out, r)
	}
	return out, nil
}
