// Package rules is alarmsrv's rule engine: it matches events against the
// rules, keeps each rule's state (a data rule's condition per model point
// with its on- and off-delay, an alarm raised or a device offline for
// re-notification and the notification cap), and says what fires. The
// caller delivers the fires; the state changes of an evaluation are kept
// only when the delivery succeeded, so that entries read again after a
// failure fire again.
//
// State is in memory and bounded: at most Options.MaxStates per rule.
// Only what needs remembering is kept: a data rule's point while its
// condition holds, is active or waits for a delay (changed: its last
// confirmed value), an activation while re-notification or a cap applies.
package rules

import (
	"encoding/json"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/voltedge/voltedge/internal/alerting"
)

// DefaultMaxStates is the default of Options.MaxStates.
const DefaultMaxStates = 10000

// Reasons of Fire.Suppressed.
const (
	SuppressedShelved = "shelved"
	SuppressedMax     = "max_notifications"
)

// Options tune an Engine.
type Options struct {
	// MaxStates caps the states of one rule (default DefaultMaxStates).
	MaxStates int
	// Now is the clock (default time.Now).
	Now func() time.Time
	// Shelved, if set, reports whether notifications about e are
	// suppressed now (a shelved alarm); such fires are kept in the run log
	// as suppressed and not counted against max_notifications.
	Shelved func(e alerting.Event, now time.Time) bool
}

// Fire is one notification a rule decided on.
type Fire struct {
	// Rule is the rule that fired.
	Rule alerting.Rule
	// Event is what is delivered: the event with Rule and Level set; a
	// fire not caused by an entry (a delay that ran out, a
	// re-notification) has an ID made from its cause's.
	Event alerting.Event
	// Kind is alerting.RunNotify, RunRaise, RunRenotify or RunClear.
	Kind string
	// TS is when it fired.
	TS time.Time
	// Suppressed says why nothing is to be delivered (SuppressedShelved,
	// SuppressedMax), or is empty.
	Suppressed string
}

// Stats are the engine's counters and sizes.
type Stats struct {
	Rules   int    // rules loaded (enabled or not)
	States  int    // states kept, all rules
	Active  int    // active states (data conditions, raised alarms, offline devices followed)
	Dropped uint64 // states not kept because a rule was at MaxStates
}

// Engine evaluates events against rules. It is safe for concurrent use;
// evaluations are serialized.
type Engine struct {
	opt Options

	mu    sync.Mutex
	rules []*ruleState // sorted by id
	tx    *tx

	dropped atomic.Uint64
}

// ruleState is a rule and its states by key.
type ruleState struct {
	rule alerting.Rule
	sig  string // the rule's JSON, to keep the states of an unchanged rule
	keys map[string]*keyState
}

// keyState is what a rule remembers about one model point, alarm or channel.
type keyState struct {
	active       bool
	cond         bool      // data: the condition held at the last sample
	since        time.Time // data: when cond last changed (on- or off-delay start)
	confirmed    string    // changed: the value last confirmed
	count        int       // notifications of this activation
	lastNotified time.Time
	event        alerting.Event // the last event about the key
}

// tx records the states an evaluation changed, to undo them.
type tx struct {
	undo []undoRec
	seen map[undoKey]bool
}

type undoKey struct {
	rs  *ruleState
	key string
}

type undoRec struct {
	undoKey
	prev *keyState // nil: the key did not exist
}

// New returns an engine without rules.
func New(opt Options) *Engine {
	if opt.MaxStates <= 0 {
		opt.MaxStates = DefaultMaxStates
	}
	if opt.Now == nil {
		opt.Now = time.Now
	}
	return &Engine{opt: opt}
}

// SetRules replaces the rules. A rule whose definition is unchanged keeps
// its states; a changed or new rule starts without. It reports whether
// anything changed.
func (e *Engine) SetRules(rules []alerting.Rule) bool {
	old := map[string]*ruleState{}
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, rs := range e.rules {
		old[rs.rule.ID] = rs
	}
	next := make([]*ruleState, 0, len(rules))
	changed := len(rules) != len(e.rules)
	for _, r := range rules {
		b, _ := json.Marshal(r)
		if rs, ok := old[r.ID]; ok && rs.sig == string(b) {
			next = append(next, rs)
			continue
		}
		changed = true
		next = append(next, &ruleState{rule: r, sig: string(b), keys: map[string]*keyState{}})
	}
	slices.SortFunc(next, func(a, b *ruleState) int { return strings.Compare(a.rule.ID, b.rule.ID) })
	e.rules = next
	return changed
}

// Rules returns the rules in use, sorted by id.
func (e *Engine) Rules() []alerting.Rule {
	e.mu.Lock()
	defer e.mu.Unlock()
	out := make([]alerting.Rule, len(e.rules))
	for i, rs := range e.rules {
		out[i] = rs.rule
	}
	return out
}

// Stats returns the counters.
func (e *Engine) Stats() Stats {
	e.mu.Lock()
	defer e.mu.Unlock()
	s := Stats{Rules: len(e.rules), Dropped: e.dropped.Load()}
	for _, rs := range e.rules {
		s.States += len(rs.keys)
		for _, st := range rs.keys {
			if st.active {
				s.Active++
			}
		}
	}
	return s
}

// Seed marks as active, without notifying, the activations that exist
// already (alarms raised before alarmsrv started: alarm_raised events),
// for the rules that re-notify or cap their notifications; their next
// re-notification is due a full interval from now.
func (e *Engine) Seed(events []alerting.Event) {
	e.mu.Lock()
	defer e.mu.Unlock()
	now := e.opt.Now()
	for _, rs := range e.rules {
		r := &rs.rule
		if r.IsData() || !stateful(r) {
			continue
		}
		for _, ev := range events {
			key := activateKey(ev)
			if key == "" || !r.Match(ev) || rs.keys[key] != nil {
				continue
			}
			if st := e.touch(rs, key, true); st != nil {
				st.active, st.count, st.lastNotified, st.event = true, 1, now, e.outEvent(r, ev)
			}
		}
	}
}

// Apply evaluates events in order and hands what fired to deliver (not
// called when nothing fired). When deliver fails, every state change of
// the evaluation is undone and its error returned: the same events can be
// evaluated again and fire again.
func (e *Engine) Apply(events []alerting.Event, deliver func([]Fire) error) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.begin()
	now := e.opt.Now()
	var fires []Fire
	for _, ev := range events {
		fires = e.evaluate(fires, ev, now)
	}
	return e.finish(fires, deliver)
}

// Tick fires what is due without a new event: on-delays and off-delays
// that ran out, re-notifications. deliver is as for Apply.
func (e *Engine) Tick(deliver func([]Fire) error) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.begin()
	now := e.opt.Now()
	var fires []Fire
	for _, rs := range e.rules {
		if !rs.rule.Enabled {
			continue
		}
		keys := make([]string, 0, len(rs.keys))
		for k := range rs.keys {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for _, k := range keys {
			fires = e.due(fires, rs, k, now)
		}
	}
	return e.finish(fires, deliver)
}

func (e *Engine) begin() { e.tx = &tx{seen: map[undoKey]bool{}} }

// finish delivers and keeps or undoes the evaluation's changes.
func (e *Engine) finish(fires []Fire, deliver func([]Fire) error) error {
	t := e.tx
	e.tx = nil
	if len(fires) == 0 {
		return nil
	}
	err := deliver(fires)
	if err == nil {
		return nil
	}
	for i := len(t.undo) - 1; i >= 0; i-- {
		u := t.undo[i]
		if u.prev == nil {
			delete(u.rs.keys, u.key)
		} else {
			u.rs.keys[u.key] = u.prev
		}
	}
	return err
}

// touch returns the state of key, recording it for undo; create makes a
// missing one (nil at the rule's cap).
func (e *Engine) touch(rs *ruleState, key string, create bool) *keyState {
	st := rs.keys[key]
	if st == nil && !create {
		return nil
	}
	if st == nil && len(rs.keys) >= e.opt.MaxStates {
		e.dropped.Add(1)
		return nil
	}
	if e.tx != nil {
		uk := undoKey{rs, key}
		if !e.tx.seen[uk] {
			// The first change in this evaluation: keep the state as it
			// was and work on a copy.
			e.tx.seen[uk] = true
			e.tx.undo = append(e.tx.undo, undoRec{uk, st})
			if st != nil {
				c := *st
				st = &c
				rs.keys[key] = st
			}
		}
	}
	if st == nil {
		st = &keyState{}
		rs.keys[key] = st
	}
	return st
}

// drop deletes key's state (recorded for undo).
func (e *Engine) drop(rs *ruleState, key string) {
	if rs.keys[key] == nil {
		return
	}
	e.touch(rs, key, false)
	delete(rs.keys, key)
}

// stateful reports whether a non-data rule follows activations.
func stateful(r *alerting.Rule) bool {
	return r.RenotifyEvery.Duration > 0 || r.MaxNotifications > 0
}

// activateKey is the key an event activates: the alarm of alarm_raised,
// the channel of device_offline.
func activateKey(ev alerting.Event) string {
	switch ev.Type {
	case alerting.AlarmRaised:
		if ev.Model != "" && ev.Point != "" {
			return "alarm/" + ev.Model + ":" + ev.Point
		}
	case alerting.DeviceOffline:
		if ev.Channel != "" {
			return "device/" + ev.Channel
		}
	}
	return ""
}

// clearKey is the key an event ends: alarm_cleared, device_online.
func clearKey(ev alerting.Event) string {
	switch ev.Type {
	case alerting.AlarmCleared:
		if ev.Model != "" && ev.Point != "" {
			return "alarm/" + ev.Model + ":" + ev.Point
		}
	case alerting.DeviceOnline:
		if ev.Channel != "" {
			return "device/" + ev.Channel
		}
	}
	return ""
}

// dataKey is the key of a data event's point.
func dataKey(ev alerting.Event) string {
	if ev.Model != "" {
		return "m/" + ev.Model + ":" + ev.Point
	}
	return "c/" + ev.Channel + ":" + ev.Point
}

// outEvent is ev as r delivers it.
func (e *Engine) outEvent(r *alerting.Rule, ev alerting.Event) alerting.Event {
	ev.Rule = r.ID
	if r.Level != "" {
		ev.Level = r.Level
	}
	return ev
}

// fire appends a fire of r about ev, applying shelving and, for a
// notification that counts (st not nil), max_notifications.
func (e *Engine) fire(fires []Fire, r *alerting.Rule, ev alerting.Event, kind string, now time.Time, st *keyState) []Fire {
	f := Fire{Rule: *r, Event: ev, Kind: kind, TS: now}
	switch {
	case e.opt.Shelved != nil && e.opt.Shelved(ev, now):
		f.Suppressed = SuppressedShelved
	case st != nil && r.MaxNotifications > 0 && st.count >= r.MaxNotifications:
		f.Suppressed = SuppressedMax
	case st != nil:
		st.count++
	}
	if st != nil {
		st.lastNotified = now
	}
	return append(fires, f)
}

// evaluate applies one event to every rule.
func (e *Engine) evaluate(fires []Fire, ev alerting.Event, now time.Time) []Fire {
	for _, rs := range e.rules {
		r := &rs.rule
		if !r.Enabled {
			continue
		}
		if r.IsData() {
			if r.Match(ev) {
				fires = e.evalData(fires, rs, ev, now)
			}
			continue
		}
		if k := clearKey(ev); k != "" {
			e.drop(rs, k)
		}
		if !r.Match(ev) {
			continue
		}
		out := e.outEvent(r, ev)
		var st *keyState
		if k := activateKey(ev); k != "" && stateful(r) {
			if st = e.touch(rs, k, true); st != nil && !st.active {
				st.active, st.count = true, 0
			}
			if st != nil {
				st.event = out
			}
		}
		fires = e.fire(fires, r, out, alerting.RunNotify, now, st)
	}
	return fires
}

// evalData applies a data sample to a data rule.
func (e *Engine) evalData(fires []Fire, rs *ruleState, ev alerting.Event, now time.Time) []Fire {
	r := &rs.rule
	c := r.Condition
	key := dataKey(ev)
	out := e.dataEvent(r, ev)
	if c.Op == alerting.OpChanged {
		st := e.touch(rs, key, true)
		if st == nil {
			return fires
		}
		st.event = out
		if st.confirmed == "" {
			st.confirmed = ev.Value // the first sample is the baseline
			return fires
		}
		if sameValue(ev.Value, st.confirmed) {
			st.cond = false
			return fires
		}
		if !st.cond {
			st.cond, st.since = true, now
		}
		return e.changedDue(fires, rs, st, now, false)
	}
	holds := c.Holds(ev.Value)
	st := rs.keys[key]
	if st == nil && !holds {
		return fires
	}
	if st = e.touch(rs, key, true); st == nil {
		return fires
	}
	st.event = out
	if holds != st.cond {
		st.cond, st.since = holds, now
	}
	if !st.active && !holds {
		e.drop(rs, key)
		return fires
	}
	return e.dataDue(fires, rs, key, st, now, false)
}

// dataEvent is a data sample as r delivers it: the rule's level or
// warning, and the condition in the fields.
func (e *Engine) dataEvent(r *alerting.Rule, ev alerting.Event) alerting.Event {
	out := e.outEvent(r, ev)
	if r.Level == "" {
		out.Level = alerting.DefaultAlarmLevel
	}
	f := make(map[string]string, len(ev.Fields)+1)
	for k, v := range ev.Fields {
		f[k] = v
	}
	f["condition"] = r.Condition.Op
	if r.Condition.Op != alerting.OpChanged {
		f["condition"] += " " + strconv.FormatFloat(r.Condition.Value, 'g', -1, 64)
	}
	out.Fields = f
	return out
}

// dataDue fires a comparison rule's state if a delay ran out or a
// re-notification is due; ticked says the event is not a new sample.
func (e *Engine) dataDue(fires []Fire, rs *ruleState, key string, st *keyState, now time.Time, ticked bool) []Fire {
	r := &rs.rule
	c := r.Condition
	switch {
	case !st.active && st.cond && now.Sub(st.since) >= c.OnDelay.Duration:
		st.active, st.count = true, 0
		ev := st.event
		if ticked {
			ev.ID += "#raise"
		}
		ev.Fields = withState(ev.Fields, alerting.RunRaise)
		fires = e.fire(fires, r, ev, alerting.RunRaise, now, st)
	case st.active && !st.cond && now.Sub(st.since) >= c.OffDelay.Duration:
		ev := st.event
		if ticked {
			ev.ID += "#clear"
		}
		ev.Fields = withState(ev.Fields, alerting.RunClear)
		fires = e.fire(fires, r, ev, alerting.RunClear, now, nil)
		e.drop(rs, key)
	case st.active && ticked:
		fires = e.renotify(fires, r, st, now)
	}
	return fires
}

// changedDue fires a changed rule whose new value held for its on-delay.
func (e *Engine) changedDue(fires []Fire, rs *ruleState, st *keyState, now time.Time, ticked bool) []Fire {
	r := &rs.rule
	if !st.cond || now.Sub(st.since) < r.Condition.OnDelay.Duration {
		return fires
	}
	ev := st.event
	if ticked {
		ev.ID += "#changed"
	}
	ev.Fields = withState(ev.Fields, alerting.RunNotify)
	ev.Fields["previous"] = st.confirmed
	st.confirmed, st.cond = st.event.Value, false
	return e.fire(fires, r, ev, alerting.RunNotify, now, nil)
}

// renotify fires again an active state whose interval passed.
func (e *Engine) renotify(fires []Fire, r *alerting.Rule, st *keyState, now time.Time) []Fire {
	every := r.RenotifyEvery.Duration
	if every <= 0 || now.Sub(st.lastNotified) < every || (r.MaxNotifications > 0 && st.count >= r.MaxNotifications) {
		return fires
	}
	ev := st.event
	ev.ID += "#renotify-" + strconv.Itoa(st.count)
	if r.IsData() {
		ev.Fields = withState(ev.Fields, alerting.RunRenotify)
	}
	return e.fire(fires, r, ev, alerting.RunRenotify, now, st)
}

// due is what Tick does for one state.
func (e *Engine) due(fires []Fire, rs *ruleState, key string, now time.Time) []Fire {
	cur := rs.keys[key]
	r := &rs.rule
	switch {
	case r.IsData() && r.Condition.Op == alerting.OpChanged:
		if !cur.cond || now.Sub(cur.since) < r.Condition.OnDelay.Duration {
			return fires
		}
		return e.changedDue(fires, rs, e.touch(rs, key, false), now, true)
	case r.IsData():
		c := r.Condition
		pending := (!cur.active && cur.cond && now.Sub(cur.since) >= c.OnDelay.Duration) ||
			(cur.active && !cur.cond && now.Sub(cur.since) >= c.OffDelay.Duration) ||
			(cur.active && renotifyDue(r, cur, now))
		if !pending {
			return fires
		}
		return e.dataDue(fires, rs, key, e.touch(rs, key, false), now, true)
	default:
		if !cur.active || !renotifyDue(r, cur, now) {
			return fires
		}
		return e.renotify(fires, r, e.touch(rs, key, false), now)
	}
}

// renotifyDue reports whether an active state is due for a re-notification.
func renotifyDue(r *alerting.Rule, st *keyState, now time.Time) bool {
	every := r.RenotifyEvery.Duration
	return every > 0 && now.Sub(st.lastNotified) >= every && (r.MaxNotifications == 0 || st.count < r.MaxNotifications)
}

// withState copies fields and sets "state".
func withState(fields map[string]string, state string) map[string]string {
	f := make(map[string]string, len(fields)+1)
	for k, v := range fields {
		f[k] = v
	}
	f["state"] = state
	return f
}

// sameValue compares two values as numbers when both are, else as text.
func sameValue(a, b string) bool {
	x, err1 := strconv.ParseFloat(strings.TrimSpace(a), 64)
	y, err2 := strconv.ParseFloat(strings.TrimSpace(b), 64)
	if err1 == nil && err2 == nil && !math.IsNaN(x) && !math.IsNaN(y) {
		return x == y
	}
	return a == b
}

// String describes a fire for logs.
func (f Fire) String() string {
	return fmt.Sprintf("rule %s %s %s", f.Rule.ID, f.Kind, f.Event.ID)
}
