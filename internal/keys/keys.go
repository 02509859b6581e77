// Package keys owns every Redis key and pub/sub channel name used by VoltEdge.
//
// No other Go package spells a key; the Lua library in scripts/ necessarily
// names the same keys, and a test in this package checks that it agrees.
// The README's key table lists the same names (see Table); a test keeps the two identical.
package keys

import (
	"slices"
	"strings"
)

// Separator joins the parts of a key and of the "channel:point" and
// "model:point" references stored in the mapping hashes. Channel ids, point
// ids, model ids and point names must not contain it.
const Separator = ":"

// Fixed keys.
const (
	// Mapping is the forward mapping hash: "{channel}:{point}" → "{model}:{point_name}".
	Mapping = "mapping"
	// MappingReverse is the control mapping hash: "{model}:{control}" → "{channel}:{point}".
	MappingReverse = "mapping:reverse"
	// MappingUnit is the unit hash: "{model}:{point_name}" → unit text ("V",
	// "kWh"). It overrides the unit of the channel point the model point is
	// mapped from (ChannelMeta).
	MappingUnit = "mapping:unit"
	// MappingDescription is the description hash: "{model}:{point_name}" →
	// text. It overrides the channel point's description (ChannelMeta).
	MappingDescription = "mapping:description"
	// ControlLast is the hash of the last outcome of each control:
	// "{model}:{control}" (or "{channel}:{point}" for a control sent to a
	// channel point directly) → JSON {id, status, code, message, value, ts}.
	ControlLast = "control:last"
	// AlarmThreshold is the high-limit hash: "{model}:{point_name}" → number. A value above it raises an alarm.
	AlarmThreshold = "alarm:threshold"
	// AlarmLow is the optional low-limit hash: "{model}:{point_name}" → number. A value below it raises an alarm.
	AlarmLow = "alarm:low"
	// AlarmHysteresis is the optional hysteresis hash: "{model}:{point_name}" → number (default 0).
	AlarmHysteresis = "alarm:hysteresis"
	// AlarmActive holds the active alarms: "{model}:{point_name}" → JSON {kind, value, limit, ts}.
	AlarmActive = "alarm:active"
	// AlarmEvents is the stream of alarm raise and clear events, read by alarmsrv.
	AlarmEvents = "alarm:events"
	// AlarmAcks records acknowledged alarms: "{model}:{point_name}" → JSON {user, ts, alarm_ts}.
	AlarmAcks = "alarm:acks"
	// DeviceRegistry is the run-time device registry: DTU registration id → template id.
	DeviceRegistry = "comsrv:devices"
	// Channels is the set of channel ids comsrv serves.
	Channels = "comsrv:channels"
	// Templates is the set of template ids comsrv knows, replaced at its
	// start, on reload and after a Redis restart: the templates a device of
	// the registry (DeviceRegistry) may name. Absent until comsrv started.
	Templates = "comsrv:templates"
	// ConfigRestore is comsrv's marker that the run-time configuration
	// (RuntimeConfig) of this Redis run is in place: the Redis run id it
	// checked, when, and what it restored from its snapshot (field names in
	// internal/contract). It is missing, or names another run, after Redis
	// restarted until comsrv has restored the configuration.
	ConfigRestore = "comsrv:restore"
	// ComsrvStats is comsrv's process-wide counters and latency figures.
	ComsrvStats = "comsrv:stats"
	// CommandSeq is the last control command id handed out (ids are time-ordered, see send_control).
	CommandSeq = "cmd:seq"
	// CommandPending is the set of channel ids that have queued control commands.
	CommandPending = "cmd:pending"
	// CommandInflight is the hash of the control commands comsrv has taken
	// and not answered yet: command id → the command as queued.
	CommandInflight = "cmd:inflight"
	// CommandSent is the hash of the taken commands comsrv has started to
	// write to their devices: command id → Unix ms.
	CommandSent = "cmd:sent"
	// CommandResults is the stream of control outcomes, one entry per command.
	CommandResults = "cmd:results"
	// CommandPattern is the pub/sub pattern comsrv listens on for new controls (matches Command).
	CommandPattern = "cmd:*"
	// DataSamples is the data stream: one entry per synced response group
	// (see contract.DataEntry), appended by the Lua library while the stream
	// exists, i.e. once a reader created its consumer group; netsrv trims it
	// to what every group acknowledged. Capped at contract.DataSamplesMax.
	DataSamples = "data:samples"
	// NetsrvEvents is netsrv's stream of upload warnings (spool dropped at
	// its cap, database unreachable and back), for alarmsrv and people.
	NetsrvEvents = "netsrv:events"
	// AlarmRules holds alarmsrv's rules: rule id → JSON (internal/alerting.Rule).
	// alarmsrv writes the rules of its configuration file at start; modsrv
	// creates, changes and deletes rules at run time.
	AlarmRules = "alarm:rules"
	// AlarmRulesChanged is the pub/sub channel on which a rule change is
	// announced (message: the rule id); alarmsrv also re-reads AlarmRules
	// periodically, since pub/sub may lose a message.
	AlarmRulesChanged = "alarm:rules:changed"
	// AlarmShelved holds shelved alarms: "{model}:{point_name}" → JSON {user, ts, until}.
	AlarmShelved = "alarm:shelved"
	// CustomEvents is the stream any service or redis-cli may append custom
	// events to (field type required; alarmsrv rules match them).
	CustomEvents = "events:custom"
	// WebhookTargets holds the webhook targets: target id → JSON (internal/alerting.Target).
	WebhookTargets = "webhook:targets"
	// WebhookDead is the dead-letter stream: deliveries whose last attempt failed.
	WebhookDead = "webhook:dead"
	// NetsrvStatus is netsrv's upload state, written every few seconds
	// (field names in internal/contract): MySQL up or down, the spool and
	// the backlog in Redis. edgectl status shows it.
	NetsrvStatus = "netsrv:status"
	// ConnectionEvents is the stream of link events: online, offline, replaced, refused.
	ConnectionEvents = "comsrv:events"
	// Reload is the pub/sub channel on which edgectl asks comsrv to reload its channel and template files.
	Reload = "comsrv:reload"
	// ReloadResult is the pub/sub channel on which comsrv answers a reload request.
	ReloadResult = "comsrv:reload:result"
	// DefaultLineResults is the default pub/sub channel whose "command,device_id,data"
	// messages comsrv forwards to line-profile devices.
	DefaultLineResults = "result"
)

// RuntimeConfig lists the run-time configuration: the hashes that people
// and tools write (edgectl, redis-cli, modsrv) and that no service can
// rebuild from its own files. comsrv keeps them in a snapshot on disk and
// restores the missing ones after Redis restarted empty. Each call returns
// a new slice.
func RuntimeConfig() []string {
	return []string{Mapping, MappingReverse, MappingUnit, MappingDescription, AlarmThreshold, AlarmLow, AlarmHysteresis, DeviceRegistry, AlarmRules, WebhookTargets, AlarmShelved}
}

// RestoreStaging is the temporary key a restored hash is built in before it
// is renamed to key (only if key is still missing).
func RestoreStaging(key string) string { return ConfigRestore + ":staging:" + key }

// AlarmRuleRuns is the list of a rule's last evaluations that fired,
// newest first: JSON {event, ts, actions}.
func AlarmRuleRuns(rule string) string { return "alarm:rule:" + rule + ":runs" }

// WebhookQueue is a target's delivery queue (a stream, oldest first).
func WebhookQueue(target string) string { return "webhook:queue:" + target }

// WebhookRetry is a target's retry state: queue entry id → JSON {attempt, next_at, last_status, last_error}.
func WebhookRetry(target string) string { return "webhook:retry:" + target }

// WebhookStats is a target's counters (internal/alerting.TargetStats): matched, delivered, dead, dropped, attempts, failing_since, last_success, last_status, last_error.
func WebhookStats(target string) string { return "webhook:stats:" + target }

// ChannelMeta is the hash of a channel's point metadata, written by comsrv
// from the channel's template while it serves the channel: point id → JSON
// {name, type, unit, description, area, writable, min, max}; unit,
// description, min and max are left out when the template has none.
func ChannelMeta(channel string) string { return "comsrv:" + channel + ":meta" }

// ChannelValues is the hash of a channel's latest values: point id → decimal string.
func ChannelValues(channel string) string { return "comsrv:" + channel + ":m" }

// ChannelTimestamps is the hash of a channel's sample times: point id → Unix milliseconds.
func ChannelTimestamps(channel string) string { return "comsrv:" + channel + ":t" }

// ChannelStatus is the hash of a channel's link state and counters.
func ChannelStatus(channel string) string { return "comsrv:" + channel + ":status" }

// ModelValues is the hash of a model's latest values: point name → decimal string.
func ModelValues(model string) string { return "modsrv:" + model }

// ModelTimestamps is the hash of a model's sample times: point name → Unix milliseconds.
func ModelTimestamps(model string) string { return "modsrv:" + model + ":t" }

// ModelUpdates is the pub/sub channel on which a model's changes are published.
func ModelUpdates(model string) string { return "update:" + model }

// Command is both the hash of the last control value per point of a channel
// and the pub/sub channel that announces new controls for it.
func Command(channel string) string { return "cmd:" + channel }

// CommandQueue is the durable list of queued control commands of a channel (LPUSH by Lua, RPOP by comsrv).
func CommandQueue(channel string) string { return "cmd:" + channel + ":queue" }

// CommandResult is the hash holding the outcome of one control command (kept for control.result_ttl).
func CommandResult(id string) string { return "cmd:result:" + id }

// ChannelQuality is the hash of a channel's points whose values are not good:
// point id → "stale". A point that is absent is good.
func ChannelQuality(channel string) string { return "comsrv:" + channel + ":q" }

// ModelQuality is the hash of a model's points whose values are not good:
// point name → "stale". A point that is absent is good.
func ModelQuality(model string) string { return "modsrv:" + model + ":q" }

// ChannelFrames is the capped list of a channel's last raw frames, newest first (JSON entries).
func ChannelFrames(channel string) string { return "comsrv:" + channel + ":frames" }

// ChannelData is the pub/sub channel on which a DTU's own messages are
// published: lines of line-profile devices, data frames of tlv devices.
func ChannelData(channel string) string { return "comsrv:" + channel + ":data" }

// LineOutcomes is the pub/sub channel on which comsrv reports what became of
// each message of a line-profile result channel (forwarded, unknown, offline, invalid).
func LineOutcomes(resultChannel string) string { return resultChannel + ":outcome" }

// PointRef joins a channel and point id, or a model and point name, as stored in the mapping hashes.
func PointRef(owner, point string) string { return owner + Separator + point }

// SplitRef splits a "{owner}:{point}" reference at its first separator.
func SplitRef(ref string) (owner, point string, ok bool) {
	owner, point, ok = strings.Cut(ref, Separator)
	if !ok || owner == "" || point == "" {
		return "", "", false
	}
	return owner, point, true
}

// ValidID reports whether s can be used as a channel id, point id, model id or
// point name: non-empty, at most 128 bytes, no separator, no '/', no spaces
// or control bytes, no glob character, and not a reserved name (see
// Reserved). A '/' would make the id unreachable in a REST path, where
// modsrv takes one path segment per id.
func ValidID(s string) bool {
	if s == "" || len(s) > 128 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c <= ' ' || c == ':' || c == '/' || c == 0x7f || c == '*' || c == '?' || c == '[' || c == ']' {
			return false
		}
	}
	return !reserved[s]
}

// Reserved returns the names that are not ids, sorted: for every fixed key of
// Table that starts with the prefix of a key family built from an id
// ("comsrv:", "cmd:", "modsrv:", "update:", ...), the part of the key after
// that prefix up to the next separator ("pending" for cmd:pending, "reload"
// for comsrv:reload:result). A channel named "pending" would otherwise make
// Command("pending") the set cmd:pending. The Lua library keeps a copy of
// the list (a test compares them).
func Reserved() []string { return slices.Clone(reservedList) }

var reservedList, reserved = reservedNames()

// reservedNames derives the reserved names from Table (see Reserved).
func reservedNames() ([]string, map[string]bool) {
	var prefixes, fixed []string
	for _, e := range Table() {
		if p, _, ok := strings.Cut(e.Pattern, "{"); ok {
			prefixes = append(prefixes, p)
		} else {
			fixed = append(fixed, e.Pattern)
		}
	}
	set := make(map[string]bool)
	for _, k := range fixed {
		for _, p := range prefixes {
			if rest, ok := strings.CutPrefix(k, p); ok && p != "" {
				if name, _, _ := strings.Cut(rest, Separator); name != "" {
					set[name] = true
				}
			}
		}
	}
	list := make([]string, 0, len(set))
	for name := range set {
		list = append(list, name)
	}
	slices.Sort(list)
	return list, set
}

// Entry describes one key or channel for the README's key table.
type Entry struct {
	Pattern string // e.g. "comsrv:{channel}:m"
	Type    string // hash, set, stream, list, string, pub/sub
	Writer  string
	Meaning string
}

// Table lists every key and channel, in the order the README shows them.
func Table() []Entry {
	return []Entry{
		{ChannelValues("{channel}"), "hash", "Lua (from comsrv)", "point id → latest value as a plain decimal string"},
		{ChannelTimestamps("{channel}"), "hash", "Lua (from comsrv)", "point id → sample time, Unix ms"},
		{ChannelStatus("{channel}"), "hash", "comsrv, Lua", "online, registration id, remote address, connected_at, last_heartbeat, counters"},
		{ChannelQuality("{channel}"), "hash", "Lua (from comsrv)", "point id → \"stale\" while its slave or link is unreachable; absent = good"},
		{ChannelMeta("{channel}"), "hash", "comsrv", "point id → JSON {name, type, unit, description, area, writable, min, max} from the channel's template"},
		{ChannelFrames("{channel}"), "list", "comsrv", "last raw frames, newest first: JSON {ts, dir, kind, hex}"},
		{ChannelData("{channel}"), "pub/sub", "comsrv", "a device's own lines (line profile) and data frames (tlv)"},
		{ConnectionEvents, "stream", "comsrv", "link events: event, channel, listener, registration, remote, reason, ts"},
		{DataSamples, "stream", "Lua (from comsrv)", "one entry per synced response: channel, ts, p:{point} → \"{value}[ {model}:{point_name}]\"; appended while the stream exists, at most 100000 entries"},
		{NetsrvEvents, "stream", "netsrv", "upload warnings: event (db_unreachable, db_back, spool_dropped, spool_damaged, batch_rejected), site, detail, ts"},
		{AlarmRules, "hash", "alarmsrv, modsrv", "rule id → JSON rule (match, conditions, level, actions, re-notify, limits)"},
		{AlarmRulesChanged, "pub/sub", "modsrv → alarmsrv", "a rule changed (message: rule id)"},
		{AlarmRuleRuns("{rule}"), "list", "alarmsrv", "the rule's last evaluations that fired, newest first: JSON {event, ts, actions}"},
		{AlarmShelved, "hash", "modsrv", "\"{model}:{point_name}\" → JSON {user, ts, until} of a shelved alarm"},
		{CustomEvents, "stream", "any service, redis-cli", "custom events: type and any fields, matched by alarmsrv rules"},
		{WebhookTargets, "hash", "alarmsrv, modsrv", "target id → JSON target (url, method, headers, secrets, timeout, concurrency, enabled)"},
		{WebhookQueue("{target}"), "stream", "alarmsrv", "deliveries waiting for the target, oldest first"},
		{WebhookRetry("{target}"), "hash", "alarmsrv", "queue entry id → JSON {attempt, next_at, last_status, last_error}"},
		{WebhookStats("{target}"), "hash", "alarmsrv", "counters: matched, delivered, dead, dropped, attempts, failing_since, last_success, last_status, last_error (with the queue: matched = delivered + failed + inflight + queued + dead + dropped)"},
		{WebhookDead, "stream", "alarmsrv", "dead letters: target, id, key, body, ts, attempts, last_status, last_error, dead_at"},
		{NetsrvStatus, "hash", "netsrv", "upload state every 5 s: site, mysql, spool_bytes, spool_pending, spool_oldest_age_s, spool_dropped, backlog_{stream}, updated_at"},
		{Channels, "set", "comsrv", "channel ids comsrv serves"},
		{Templates, "set", "comsrv", "template ids comsrv knows, replaced at its start and on reload; modsrv's POST /devices checks against it"},
		{ComsrvStats, "hash", "comsrv", "process-wide counters and sync latency (p50/p99, µs)"},
		{ConfigRestore, "hash", "comsrv", "run-time configuration in place for this Redis run: run_id, restored_at, restored, kept, snapshot_at, problem"},
		{RestoreStaging("{key}"), "hash", "comsrv", "a configuration hash being restored, renamed to {key} if that is still missing"},
		{DeviceRegistry, "hash", "modsrv → comsrv", "DTU registration id → template id, devices added at run time"},
		{Mapping, "hash", "edgectl, redis-cli", "\"{channel}:{point}\" → \"{model}:{point_name}\""},
		{MappingReverse, "hash", "edgectl, redis-cli", "\"{model}:{control}\" → \"{channel}:{point}\""},
		{MappingUnit, "hash", "edgectl, redis-cli", "\"{model}:{point_name}\" → unit, overriding the channel point's"},
		{MappingDescription, "hash", "edgectl, redis-cli", "\"{model}:{point_name}\" → description, overriding the channel point's"},
		{ModelValues("{model}"), "hash", "Lua", "point name → latest value"},
		{ModelTimestamps("{model}"), "hash", "Lua", "point name → sample time, Unix ms"},
		{ModelQuality("{model}"), "hash", "Lua (from comsrv)", "point name → \"stale\" while unreachable; absent = good"},
		{ModelUpdates("{model}"), "pub/sub", "Lua", "JSON {model, ts, values} once per model per batch; {model, ts, quality} on quality changes"},
		{AlarmThreshold, "hash", "edgectl, redis-cli", "\"{model}:{point_name}\" → high limit (alarm when value > limit)"},
		{AlarmLow, "hash", "edgectl, redis-cli", "\"{model}:{point_name}\" → low limit (alarm when value < limit)"},
		{AlarmHysteresis, "hash", "edgectl, redis-cli", "\"{model}:{point_name}\" → hysteresis for clearing (default 0)"},
		{AlarmActive, "hash", "Lua", "\"{model}:{point_name}\" → JSON of the active alarm"},
		{AlarmEvents, "stream", "Lua", "raise and clear events (type, model, point, kind, value, limit, ts; a clear also raised_limit and raised_ts)"},
		{AlarmAcks, "hash", "modsrv", "\"{model}:{point_name}\" → JSON {user, ts, alarm_ts} of the last acknowledgement"},
		{Command("{channel}"), "hash + pub/sub", "Lua", "point → last control value; publishes \"point:value\""},
		{CommandQueue("{channel}"), "list", "Lua → comsrv", "durable control queue, JSON {id, channel, point, value, model, control, ts, deadline[, nonce]}"},
		{CommandPending, "set", "Lua → comsrv", "channel ids with queued commands"},
		{CommandSeq, "string", "Lua", "last control command id handed out (Unix ms × 1000 + sequence)"},
		{CommandInflight, "hash", "Lua (from comsrv)", "command id → command JSON, taken by comsrv and not answered yet"},
		{CommandSent, "hash", "Lua (from comsrv)", "command id → Unix ms when comsrv started writing it to the device"},
		{CommandResult("{id}"), "hash", "Lua (from comsrv)", "outcome of command {id}: status, code, message, channel, point, value, model, control, ts[, nonce] (expires)"},
		{CommandResults, "stream", "Lua (from comsrv)", "every control outcome: id, status, code, message, channel, point, value, model, control, ts[, nonce]"},
		{ControlLast, "hash", "Lua (from comsrv)", "\"{model}:{control}\" (or \"{channel}:{point}\") → JSON {id, status, code, message, value, ts} of its last outcome"},
		{DefaultLineResults, "pub/sub", "other systems → comsrv", "\"command,device_id,data\" forwarded as a line to line-profile device device_id (configurable)"},
		{LineOutcomes(DefaultLineResults), "pub/sub", "comsrv", "JSON {device, status, message, ts} for each forwarded message"},
		{Reload, "pub/sub", "edgectl → comsrv", "reload request (message: request id)"},
		{ReloadResult, "pub/sub", "comsrv → edgectl", "JSON {id, ok, message, added, changed, removed}"},
	}
}
