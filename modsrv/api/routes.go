package api

import (
	"net/http"

	"github.com/gofiber/fiber/v2"

	"github.com/voltedge/voltedge/internal/metrics"
)

// access is who may call a route.
type access int

const (
	accessOpen  access = iota // anyone (health, documentation, login)
	accessRead                // anyone when read_open, else a token or session
	accessWrite               // a token or session
)

// param documents a query parameter.
type param struct {
	name, typ, desc string
}

// route is one endpoint with its documentation.
type route struct {
	method  string
	path    string // fiber pattern: /models/:id/values
	access  access
	handler fiber.Handler
	summary string
	query   []param
	body    map[string]any // request body schema; nil: none
	ok      int            // success status
	okBody  map[string]any // success schema
	errs    []int          // error statuses besides those of access
	okType  string         // success media type; "" means application/json
}

// routes lists every endpoint the API serves, in the order of the README's table.
func (s *server) routes() []route {
	a := s.d.Auth
	return []route{
		{method: "GET", path: "/health", access: accessOpen, handler: s.health,
			summary: "Redis reachability, Lua library version, uptime and service heartbeats (503 when Redis is down).",
			ok:      200, okBody: ref("Health"), errs: []int{503}},
		{method: "GET", path: "/openapi.json", access: accessOpen, handler: s.openapi,
			summary: "This OpenAPI 3.0 document.", ok: 200, okBody: obj(nil)},
		{method: "GET", path: "/metrics", access: accessRead, handler: s.metrics,
			summary: "Prometheus metrics (text format 0.0.4).", ok: 200, okType: metrics.ContentType},
		{method: "POST", path: "/login", access: accessOpen, handler: s.login,
			summary: "Log in with a user and password; sets the HttpOnly session cookie voltedge_session. Rate-limited per remote IP.",
			body:    obj(map[string]any{"user": str(), "password": str()}, "user", "password"),
			ok:      200, okBody: obj(map[string]any{"user": str(), "expires_at": integer()}), errs: []int{400, 401, 429}},
		{method: "POST", path: "/logout", access: accessOpen, handler: a.Logout,
			summary: "End the session of the cookie and clear it.", ok: 200, okBody: obj(nil)},
		{method: "GET", path: "/me", access: accessOpen, handler: a.Me,
			summary: "Who the credentials of the request belong to.",
			ok:      200, okBody: obj(map[string]any{"user": str(), "read_open": boolean()}), errs: []int{401}},
		{method: "GET", path: "/models", access: accessRead, handler: s.models,
			summary: "Models with a value hash: point count and the latest sample time (at most 10000 keys are scanned).",
			ok:      200, okBody: obj(map[string]any{"models": arr(ref("ModelSummary")), "truncated": boolean()}, "models"), errs: []int{503}},
		{method: "GET", path: "/models/:id", access: accessRead, handler: s.model,
			summary: "A model's links: the channels it is mapped to, its points (channel point, type, unit, description) and its controls (404 when it has neither values nor a mapping).",
			ok:      200, okBody: obj(map[string]any{"model": str(), "channels": arr(str()), "points": mapOf(ref("ModelPoint")), "controls": arr(ref("Control"))},
				"model", "channels", "points", "controls"), errs: []int{400, 404, 503}},
		{method: "GET", path: "/models/:id/values", access: accessRead, handler: s.modelValues,
			summary: "A model's values as exact decimal strings, each with its sample time, quality, and the type and unit of its channel point when known.",
			ok:      200, okBody: obj(map[string]any{"model": str(), "values": mapOf(ref("Point"))}, "model", "values"), errs: []int{400, 404, 503}},
		{method: "POST", path: "/models/:id/control/:name", access: accessWrite, handler: s.control,
			summary: "Send a control through send_control and wait for comsrv's outcome: 200 ok, 400 invalid, 502 exception/timeout/offline/expired/failed, 504 no outcome in time (the command's deadline is the same timeout).",
			query:   []param{{"timeout", "string", "how long to wait, a Go duration from 100ms to 5m (default control_timeout)"}},
			body:    obj(map[string]any{"value": map[string]any{"oneOf": []any{num(), str(), boolean()}, "description": "a number, a decimal string, or a boolean (1/0)"}}, "value"),
			ok:      200, okBody: ref("ControlResult"), errs: []int{400, 404, 502, 503, 504}},
		{method: "GET", path: "/controls", access: accessRead, handler: s.controlList,
			summary: "Every control (or those of one model): the channel point it writes, type, unit, description, range, writable and last outcome; sorted by model and control, at most 10000.",
			query:   []param{{"model", "string", "only the controls of this model (404 when it has neither values nor a mapping)"}},
			ok:      200, okBody: obj(map[string]any{"controls": arr(ref("Control")), "truncated": boolean()}, "controls", "truncated"), errs: []int{400, 404, 503}},
		{method: "GET", path: "/channels", access: accessRead, handler: s.channels,
			summary: "Channels comsrv serves with their status fields (online as a boolean, counters and times as numbers).",
			query:   []param{{"offset", "integer", "first channel (sorted by id), default 0"}, {"limit", "integer", "channels to return, 1..10000, default 1000"}},
			ok:      200, okBody: obj(map[string]any{"channels": arr(obj(map[string]any{"id": str(), "online": boolean(),
				"name":     map[string]any{"type": "string", "description": "the channel's name from its configuration (\"\" if none)"},
				"template": map[string]any{"type": "string", "description": "the channel's template (\"\" if none)"},
				"models":   map[string]any{"type": "array", "items": str(), "description": "models linked to the channel by the mapping, sorted"}},
				"id", "online", "name", "template", "models")), "total": integer(), "offset": integer()}), errs: []int{400, 503}},
		{method: "GET", path: "/channels/:id", access: accessRead, handler: s.channel,
			summary: "One channel: status fields, counters (stats) and the number of points. Every /channels/{id} route answers 404 for an id not in comsrv:channels.",
			ok:      200, okBody: obj(map[string]any{"id": str(), "served": boolean(), "points": integer(), "status": obj(nil), "stats": mapOf(integer()),
				"name": str(), "template": str(), "models": arr(str())}, "id", "name", "template", "models"), errs: []int{400, 404, 503}},
		{method: "GET", path: "/channels/:id/points", access: accessRead, handler: s.channelPoints,
			summary: "A channel's raw point values with sample time and quality, the point's name, type and unit from its template, and the model point it is mapped to.",
			ok:      200, okBody: obj(map[string]any{"channel": str(), "points": mapOf(ref("Point"))}), errs: []int{400, 404, 503}},
		{method: "GET", path: "/channels/:id/frames", access: accessRead, handler: s.channelFrames,
			summary: "The last raw frames of a channel, newest first.",
			query:   []param{{"limit", "integer", "frames to return, 1..1000, default 20"}},
			ok:      200, okBody: obj(map[string]any{"channel": str(), "frames": arr(ref("Frame"))}), errs: []int{400, 404, 503}},
		{method: "GET", path: "/events", access: accessRead, handler: s.events,
			summary: "Connection events (online, offline, replaced, refused, connect_failed), newest first; page with next.",
			query:   []param{{"count", "integer", "events to return, 1..1000, default 50"}, {"before", "string", "return events older than this stream id (the previous answer's next)"}},
			ok:      200, okBody: obj(map[string]any{"events": arr(mapOf(str())), "next": str()}), errs: []int{400, 503}},
		{method: "GET", path: "/alarms", access: accessRead, handler: s.alarms,
			summary: "Active alarms (with their acknowledgement, level from the rules and shelving), their count by level, and the last 50 alarm events.",
			ok:      200, okBody: obj(map[string]any{"active": arr(ref("Alarm")), "recent": arr(ref("AlarmEvent")),
				"by_level": obj(map[string]any{"info": integer(), "warning": integer(), "critical": integer()}, "info", "warning", "critical")}), errs: []int{503}},
		{method: "POST", path: "/alarms/:ref/ack", access: accessWrite, handler: s.ackAlarm,
			summary: "Acknowledge the active alarm {model}:{point_name} in the caller's name.",
			ok:      200, okBody: obj(map[string]any{"ref": str(), "user": str(), "ts": integer(), "alarm_ts": integer()}), errs: []int{400, 404, 503}},
		{method: "POST", path: "/alarms/:ref/shelve", access: accessWrite, handler: s.shelveAlarm,
			summary: "Shelve the alarm {model}:{point_name} (alarm:shelved) in the caller's name: alarmsrv sends no notification about it until then (at most 7 days). The alarm need not be active; the answer says whether it is.",
			body: obj(map[string]any{"until": map[string]any{"oneOf": []any{integer(), str()},
				"description": "Unix ms, or a duration from now such as \"2h\" (at most 168h)"}}, "until"),
			ok: 200, okBody: obj(map[string]any{"ref": str(), "user": str(), "ts": integer(), "until": integer(), "active": boolean()}), errs: []int{400, 503}},
		{method: "DELETE", path: "/alarms/:ref/shelve", access: accessWrite, handler: s.unshelveAlarm,
			summary: "Take the alarm {model}:{point_name} off the shelf (404 when it is not shelved).",
			ok:      200, okBody: obj(map[string]any{"ref": str(), "shelved": boolean()}), errs: []int{400, 404, 503}},
		{method: "GET", path: "/rules", access: accessRead, handler: s.listRules,
			summary: "alarmsrv's rules (alarm:rules), sorted by id, each with its origin (file: alarmsrv.toml, changed there; api: created here); rules that do not decode or validate are listed in invalid with the reason.",
			ok:      200, okBody: obj(map[string]any{"rules": arr(ref("Rule")), "invalid": mapOf(str())}, "rules", "invalid"), errs: []int{503}},
		{method: "POST", path: "/rules", access: accessWrite, handler: s.createRule,
			summary: "Create a rule (origin api; 409 when the id exists). alarmsrv applies it at once (alarm:rules:changed). 400 names the field of each problem.",
			body:    ref("Rule"), ok: 201, okBody: ref("Rule"), errs: []int{400, 409, 413, 503}},
		{method: "POST", path: "/rules/test", access: accessWrite, handler: s.testUnsavedRule,
			summary: "Evaluate a sample event against a rule that is not saved: whether it matches and what it would send, with no side effect.",
			body:    obj(map[string]any{"rule": ref("Rule"), "event": ref("Event")}, "rule", "event"),
			ok:      200, okBody: ref("RuleTestResult"), errs: []int{400, 413}},
		{method: "GET", path: "/rules/:id", access: accessRead, handler: s.getRule,
			summary: "One rule.", ok: 200, okBody: ref("Rule"), errs: []int{400, 404, 503}},
		{method: "PUT", path: "/rules/:id", access: accessWrite, handler: s.updateRule,
			summary: "Change a rule (the whole rule; the id may be left out). 404 when there is none, 409 for a rule of alarmsrv's file (change it there). alarmsrv applies it at once.",
			body:    ref("Rule"), ok: 200, okBody: ref("Rule"), errs: []int{400, 404, 409, 413, 503}},
		{method: "DELETE", path: "/rules/:id", access: accessWrite, handler: s.deleteRule,
			summary: "Delete a rule and its run log (409 for a rule of alarmsrv's file).",
			ok:      200, okBody: obj(map[string]any{"id": str(), "deleted": boolean()}), errs: []int{400, 404, 409, 503}},
		{method: "POST", path: "/rules/:id/test", access: accessWrite, handler: s.testRule,
			summary: "Evaluate a sample event (the body) against the stored rule: whether it matches and what it would send, with no side effect.",
			body:    ref("Event"), ok: 200, okBody: ref("RuleTestResult"), errs: []int{400, 404, 413, 503}},
		{method: "GET", path: "/rules/:id/runs", access: accessRead, handler: s.ruleRuns,
			summary: "The rule's run log: its last evaluations that fired, newest first.",
			query:   []param{{"limit", "integer", "entries to return, 1..500, default 50"}},
			ok:      200, okBody: obj(map[string]any{"rule": str(), "runs": arr(ref("Run"))}, "rule", "runs"), errs: []int{400, 404, 503}},
		{method: "GET", path: "/webhooks/targets", access: accessRead, handler: s.listTargets,
			summary: "Webhook targets (webhook:targets), sorted by id, secrets and credential headers redacted, with their delivery counters and health.",
			ok:      200, okBody: obj(map[string]any{"targets": arr(ref("TargetState")), "truncated": boolean()}, "targets", "truncated"), errs: []int{503}},
		{method: "POST", path: "/webhooks/targets", access: accessWrite, handler: s.createTarget,
			summary: "Create a webhook target (201; 409 when the id exists). alarmsrv starts sending to it within its reload interval (10 s).",
			body:    ref("Target"), ok: 201, okBody: ref("Target"), errs: []int{400, 409, 413, 503}},
		{method: "PUT", path: "/webhooks/targets/:id", access: accessWrite, handler: s.putTarget,
			summary: "Create or replace a webhook target (201 or 200). A secret written as whsec_**** and a header value **** keep the stored ones, so that what GET answered can be sent back; enabled true clears disabled_reason.",
			body:    ref("Target"), ok: 200, okBody: ref("Target"), errs: []int{400, 413, 503}},
		{method: "DELETE", path: "/webhooks/targets/:id", access: accessWrite, handler: s.deleteTarget,
			summary: "Delete a webhook target; alarmsrv drops its queue (counted as dropped).",
			ok:      200, okBody: obj(map[string]any{"id": str(), "deleted": boolean()}), errs: []int{400, 404, 503}},
		{method: "GET", path: "/webhooks/dead", access: accessRead, handler: s.listDead,
			summary: "Dead letters (webhook:dead): deliveries whose last attempt failed, oldest first; page with next.",
			query:   []param{{"from", "string", "the entry id to start from (the previous answer's next)"}, {"count", "integer", "dead letters to return, 1..1000, default 50"}},
			ok:      200, okBody: obj(map[string]any{"dead": arr(ref("DeadLetter")), "next": str(), "total": integer()}, "dead", "next", "total"), errs: []int{400, 503}},
		{method: "POST", path: "/webhooks/dead/retry", access: accessWrite, handler: s.retryDeadRange,
			summary: "Queue again the dead letters that died between from and to whose target still exists, with a fresh retry schedule.",
			query: []param{{"from", "string", "Unix ms or RFC 3339 (default: the oldest)"}, {"to", "string", "Unix ms or RFC 3339 (default: now)"},
				{"target", "string", "only this target's dead letters"}},
			ok: 200, okBody: obj(map[string]any{"retried": integer()}, "retried"), errs: []int{400, 503}},
		{method: "POST", path: "/webhooks/dead/:id/retry", access: accessWrite, handler: s.retryDead,
			summary: "Queue one dead letter again for its target, with a fresh retry schedule (404 when there is none, 409 when its target was deleted).",
			ok:      200, okBody: obj(map[string]any{"entry": str(), "retried": boolean()}), errs: []int{400, 404, 409, 503}},
		{method: "POST", path: "/webhooks/test", access: accessWrite, handler: s.testWebhook,
			summary: "Send a signed sample event (or the given one) to a target once, now, bypassing its queue: the receiver's status, headers and the first 1 KiB of its answer (502 when it does not answer within the target's timeout, at most 15 s). Works for a disabled target too.",
			body:    obj(map[string]any{"target": str(), "event": ref("Event")}, "target"),
			ok:      200, okBody: ref("WebhookTestResult"), errs: []int{400, 404, 409, 502, 503}},
		{method: "GET", path: "/history", access: accessRead, handler: s.history,
			summary: "A model point's history from netsrv's MySQL store (this box's site), oldest first: raw samples, or with step buckets of min/avg/max/count of the numeric samples. 503 when [history] is not configured or MySQL cannot be reached.",
			query: []param{{"model", "string", "model id (required)"}, {"point", "string", "point name within the model (required)"},
				{"from", "integer", "start, Unix ms (inclusive; default to - 24 h)"}, {"to", "integer", "end, Unix ms (exclusive; default now); to - from at most 400 days"},
				{"step", "string", "bucket size, a Go duration of at least 1s (30s, 5m, 1h); empty: raw samples"},
				{"limit", "integer", "rows to return, 1..50000, default 10000 (truncated says when there were more)"}},
			ok: 200, okBody: obj(map[string]any{"model": str(), "point": str(), "from": integer(), "to": integer(), "site": str(),
				"step_ms": map[string]any{"type": "integer", "format": "int64", "description": "0: raw samples"},
				"rows":    arr(ref("HistoryRow")), "truncated": boolean()}, "model", "point", "from", "to", "step_ms", "rows", "truncated"),
			errs: []int{400, 503}},
		{method: "GET", path: "/history/events", access: accessRead, handler: s.historyEvents,
			summary: "Connection events stored by netsrv in MySQL, newest first; page older ones by passing the oldest ts (+1, skipping ids already seen) as to.",
			query: []param{{"channel", "string", "only this channel's events"}, {"from", "integer", "Unix ms (default to - 400 days)"},
				{"to", "integer", "Unix ms, exclusive (default now)"}, {"limit", "integer", "events to return, 1..10000, default 100"}},
			ok: 200, okBody: obj(map[string]any{"events": arr(ref("StoredConnEvent")), "more": boolean()}, "events", "more"), errs: []int{400, 503}},
		{method: "GET", path: "/history/alarms", access: accessRead, handler: s.historyAlarms,
			summary: "Alarms stored by netsrv in MySQL, raised in [from, to), newest first, with their clear and acknowledgement.",
			query: []param{{"from", "integer", "Unix ms (default to - 400 days)"}, {"to", "integer", "Unix ms, exclusive (default now)"},
				{"limit", "integer", "alarms to return, 1..10000, default 100"}},
			ok: 200, okBody: obj(map[string]any{"alarms": arr(ref("StoredAlarm")), "more": boolean()}, "alarms", "more"), errs: []int{400, 503}},
		{method: "GET", path: "/export", access: accessRead, handler: s.export,
			summary: "A model's raw history as a CSV or Excel attachment, streamed (memory does not grow with its size). Columns: time (UTC RFC 3339 with ms), unix_ms, model, point, value (CSV: the exact stored text; Excel: a number when numeric), channel, channel_point; ordered by point and time. At most export_max_rows rows (default 1000000): the last row of a cut export starts with \"# cut\"; a CSV export that fails midway ends with a row starting with \"# export failed\". 429 when two exports are running. HEAD answers whether an export can be made (its status and headers) without making one.",
			query: []param{{"format", "string", "csv (default) or xlsx"}, {"model", "string", "model id (required)"},
				{"point", "string", "point name within the model; empty: every point of the model"},
				{"from", "integer", "start, Unix ms (default to - 24 h)"}, {"to", "integer", "end, Unix ms, exclusive (default now); to - from at most 400 days"}},
			ok: 200, okType: "text/csv", errs: []int{400, 429, 503}},
		{method: "GET", path: "/devices", access: accessRead, handler: s.devices,
			summary: "The run-time device registry: DTU registration ids and their templates; the templates comsrv knows; the ids comsrv refused lately (among the last 1000 connection events, not registered and not channels, at most 100).",
			ok:      200, okBody: obj(map[string]any{"devices": arr(ref("Device")), "templates": arr(str()), "refused": arr(ref("RefusedDevice"))},
				"devices", "templates", "refused"), errs: []int{503}},
		{method: "POST", path: "/devices", access: accessWrite, handler: s.addDevice,
			summary: "Register a DTU id with a template (201; 200 if already registered with it; 409 with another template, or when the id is a channel comsrv serves).",
			body:    ref("Device"), ok: 201, okBody: ref("Device"), errs: []int{400, 409, 503}},
		{method: "DELETE", path: "/devices/:id", access: accessWrite, handler: s.deleteDevice,
			summary: "Remove a DTU id from the registry.",
			ok:      200, okBody: obj(map[string]any{"id": str(), "deleted": boolean()}), errs: []int{400, 404, 503}},
	}
}

// External lists the endpoints that modsrv serves beside the API (the
// WebSocket and the console); the OpenAPI document describes them too.
var External = []struct{ Method, Path, Summary string }{
	{"GET", "/ws", "WebSocket (JSON text frames): subscribe to models, channels and alarms; commands with ack and response."},
	{"GET", "/", "The web console (HTML)."},
}

func (s *server) metrics(c *fiber.Ctx) error {
	c.Set(fiber.HeaderContentType, metrics.ContentType)
	_, err := s.d.Metrics.WriteTo(c.Response().BodyWriter())
	return err
}

func (s *server) login(c *fiber.Ctx) error {
	err := s.d.Auth.Login(c)
	result := "ok"
	if err != nil {
		result = "refused"
		if fe, ok := err.(*fiber.Error); ok && fe.Code == http.StatusTooManyRequests {
			result = "rate_limited"
		}
	}
	s.logins.With(result).Inc()
	return err
}
