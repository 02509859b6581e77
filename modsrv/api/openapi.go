package api

import (
	"net/http"
	"regexp"
	"strconv"
	"strings"

	"github.com/gofiber/fiber/v2"

	"github.com/voltedge/voltedge/modsrv/auth"
)

// Schema helpers for the OpenAPI document.

func str() map[string]any     { return map[string]any{"type": "string"} }
func integer() map[string]any { return map[string]any{"type": "integer", "format": "int64"} }
func num() map[string]any     { return map[string]any{"type": "number"} }
func boolean() map[string]any { return map[string]any{"type": "boolean"} }
func arr(items map[string]any) map[string]any {
	return map[string]any{"type": "array", "items": items}
}
func mapOf(v map[string]any) map[string]any {
	return map[string]any{"type": "object", "additionalProperties": v}
}
func ref(name string) map[string]any {
	return map[string]any{"$ref": "#/components/schemas/" + name}
}

// obj is an object schema with properties and required names.
func obj(props map[string]any, required ...string) map[string]any {
	o := map[string]any{"type": "object"}
	if props != nil {
		o["properties"] = props
	}
	if len(required) > 0 {
		o["required"] = required
	}
	return o
}

// levels are the alarm and notification levels.
var levels = []string{"info", "warning", "critical"}

// schemas are the document's named schemas.
func schemas() map[string]any {
	return map[string]any{
		"Error": obj(map[string]any{
			"error": obj(map[string]any{
				"code": map[string]any{"type": "string", "enum": []string{"bad_request", "unauthorized", "forbidden", "not_found",
					"method_not_allowed", "conflict", "payload_too_large", "too_many_requests", "internal", "bad_gateway", "unavailable", "timeout"}},
				"message": str(),
			}, "code", "message"),
			"id":     map[string]any{"type": "string", "description": "command id (controls)"},
			"status": map[string]any{"type": "string", "description": "command outcome (controls)"},
			"result": map[string]any{"type": "object", "additionalProperties": str(), "description": "the outcome hash cmd:result:{id} (controls)"},
		}, "error"),
		"Health": obj(map[string]any{
			"redis":       map[string]any{"type": "string", "enum": []string{"ok", "down"}},
			"lua_version": integer(),
			"uptime_s":    integer(),
			"services":    mapOf(obj(map[string]any{"updated_at": integer(), "age_s": num()})),
			"config": map[string]any{"type": "string", "enum": []string{ConfigRestored, ConfigRestoring, ConfigRestoreFailed, ConfigUnknown},
				"description": "run-time configuration (mappings, limits, device registry) of this Redis run: restoring and restore_failed answer 503"},
		}, "redis", "lua_version", "uptime_s", "services"),
		"ModelSummary": obj(map[string]any{"id": str(), "points": integer(), "updated_at": integer()}, "id", "points", "updated_at"),
		"Point": obj(map[string]any{
			"value":       map[string]any{"type": "string", "description": "the exact decimal text as stored"},
			"ts":          map[string]any{"type": "integer", "format": "int64", "description": "sample time, Unix ms (0 if unknown)"},
			"quality":     map[string]any{"type": "string", "enum": []string{"good", "stale"}},
			"type":        map[string]any{"type": "string", "description": "the channel point's type (bool, uint16, int16, int32, uint32, float32, int64, uint64, float64) when known"},
			"unit":        map[string]any{"type": "string", "description": "unit when known (a model point: mapping:unit, else its channel point's)"},
			"name":        map[string]any{"type": "string", "description": "channel points: the point's name from the template"},
			"model":       map[string]any{"type": "string", "description": "channel points: the model the point is mapped to"},
			"model_point": map[string]any{"type": "string", "description": "channel points: the model point's name"},
		}, "value", "ts", "quality"),
		"ModelPoint": obj(map[string]any{
			"channel": str(), "point": str(),
			"type":        map[string]any{"type": "string", "description": "\"\" when the channel has no metadata"},
			"unit":        str(),
			"description": str(),
		}, "channel", "point", "type", "unit", "description"),
		"Control": obj(map[string]any{
			"model": str(), "control": str(), "channel": str(), "point": str(),
			"type":        map[string]any{"type": "string", "description": "the channel point's type; \"\" when the channel has no metadata"},
			"unit":        str(),
			"description": str(),
			"min":         map[string]any{"type": "number", "description": "from the point's metadata, else the range of its type (absent for float32/64, int64, uint64)"},
			"max":         map[string]any{"type": "number", "description": "as min"},
			"writable":    boolean(),
			"last": map[string]any{"type": "object", "nullable": true, "description": "the last outcome (control:last), null if none",
				"properties": map[string]any{"id": str(), "status": str(), "code": str(), "message": str(), "value": str(), "ts": integer()},
				"required":   []string{"id", "status", "code", "message", "value", "ts"}},
		}, "model", "control", "channel", "point", "type", "unit", "description", "writable", "last"),
		"RefusedDevice": obj(map[string]any{
			"registration": str(), "remote": str(), "reason": str(),
			"ts":    map[string]any{"type": "integer", "format": "int64", "description": "the newest refusal, as the event's ts"},
			"count": map[string]any{"type": "integer", "format": "int64", "description": "refusals among the events looked at"},
		}, "registration", "remote", "reason", "ts", "count"),
		"ControlResult": map[string]any{
			"type":                 "object",
			"description":          "the command id and every field of cmd:result:{id}: status, code, message, channel, point, value, model, control, ts",
			"properties":           map[string]any{"id": str(), "status": str()},
			"additionalProperties": str(),
			"required":             []string{"id", "status"},
		},
		"Frame": obj(map[string]any{
			"ts": integer(), "dir": map[string]any{"type": "string", "enum": []string{"rx", "tx"}},
			"kind": str(), "hex": str(), "cut": boolean(), "raw": str(),
		}),
		"Alarm": map[string]any{
			"type": "object",
			"properties": map[string]any{
				"ref": str(), "model": str(), "point": str(), "kind": str(), "value": num(), "limit": num(), "ts": integer(),
				"acked": boolean(), "ack": obj(map[string]any{"user": str(), "ts": integer(), "alarm_ts": integer()}),
				"level": map[string]any{"type": "string", "enum": levels,
					"description": "the highest level of the enabled rules matching alarm_raised on this point (alerting.AlarmLevel), else warning"},
				"shelved": map[string]any{"type": "object", "description": "present while the alarm is shelved (alarm:shelved)",
					"properties": map[string]any{"user": str(), "ts": integer(), "until": integer()}},
			},
			"required": []string{"ref", "acked", "level"},
		},
		"AlarmEvent": obj(map[string]any{
			"id": str(), "type": map[string]any{"type": "string", "enum": []string{"raise", "clear"}},
			"model": str(), "point": str(), "kind": map[string]any{"type": "string", "enum": []string{"high", "low"}},
			"value": num(), "limit": num(), "raised_limit": num(), "raised_ts": integer(), "ts": integer(),
		}, "id", "type"),
		"Event": obj(map[string]any{
			"id": str(), "type": map[string]any{"type": "string", "description": "device_online, device_offline, alarm_raised, alarm_cleared, alarm_acked, data, control_result, upload_warning, custom:<type>, …"},
			"ts": integer(), "site": str(), "channel": str(), "model": str(), "point": str(), "value": str(),
			"level": map[string]any{"type": "string", "enum": levels}, "rule": str(), "fields": mapOf(str()),
		}, "type"),
		"Rule": obj(map[string]any{
			"id":      map[string]any{"type": "string", "description": "1..64 of A-Z a-z 0-9 _ . -"},
			"name":    str(),
			"enabled": map[string]any{"type": "boolean", "description": "default true"},
			"events":  map[string]any{"type": "array", "items": str(), "description": "event types or patterns with * and ?"},
			"channel": str(), "model": str(), "point": str(),
			"min_level": map[string]any{"type": "string", "enum": levels},
			"level":     map[string]any{"type": "string", "enum": levels},
			"condition": obj(map[string]any{
				"op":        map[string]any{"type": "string", "enum": []string{">", "<", ">=", "<=", "==", "!=", "changed"}},
				"value":     num(),
				"on_delay":  map[string]any{"type": "string", "description": "Go duration, e.g. 30s"},
				"off_delay": map[string]any{"type": "string", "description": "Go duration"},
			}, "op"),
			"targets":           arr(str()),
			"renotify_every":    map[string]any{"type": "string", "description": "Go duration, 0 or 1s..168h"},
			"max_notifications": integer(),
			"origin":            map[string]any{"type": "string", "enum": []string{"file", "api"}, "readOnly": true},
		}, "id", "events"),
		"RuleTestResult": obj(map[string]any{
			"matched": boolean(), "fires": boolean(), "reason": str(),
			"level": str(), "targets": arr(str()), "event": ref("Event"),
		}, "matched", "fires", "reason", "targets"),
		"Run": obj(map[string]any{
			"event": ref("Event"), "ts": integer(),
			"kind":       map[string]any{"type": "string", "enum": []string{"notify", "raise", "renotify", "clear"}},
			"actions":    arr(obj(map[string]any{"target": str(), "delivery": str()})),
			"suppressed": map[string]any{"type": "string", "description": "shelved or max_notifications when nothing was sent"},
		}, "event", "ts", "kind", "actions"),
		"Target": obj(map[string]any{
			"id": str(), "url": str(),
			"method":          map[string]any{"type": "string", "enum": []string{"POST", "PUT", "PATCH", "GET", "DELETE"}},
			"headers":         mapOf(str()),
			"secrets":         map[string]any{"type": "array", "items": str(), "description": "whsec_…; answered as whsec_****"},
			"timeout":         str(),
			"concurrency":     integer(),
			"schedule":        arr(str()),
			"jitter":          num(),
			"disable_after":   str(),
			"enabled":         boolean(),
			"disabled_reason": str(),
			"template":        str(),
			"content_type":    str(),
		}, "id", "url"),
		"TargetState": obj(map[string]any{
			"id":      str(),
			"target":  ref("Target"),
			"invalid": map[string]any{"type": "string", "description": "why the stored target does not decode (then target is absent)"},
			"counters": obj(map[string]any{"matched": integer(), "delivered": integer(), "failed": integer(), "in_flight": integer(),
				"queued": integer(), "dead": integer(), "dropped": integer(), "attempts": integer(), "last_status": integer(),
				"last_error": str(), "last_success": integer()}),
			"health": obj(map[string]any{"enabled": boolean(), "disabled_reason": str(),
				"failing_since": map[string]any{"type": "integer", "format": "int64", "description": "Unix ms of the first failure since the last success; 0: not failing"}}),
		}, "id", "counters", "health"),
		"DeadLetter": obj(map[string]any{
			"entry":  map[string]any{"type": "string", "description": "the stream entry id, for retry"},
			"target": str(), "id": str(), "key": str(), "body": str(), "ts": integer(), "attempts": integer(),
			"last_status": integer(), "last_error": str(), "dead_at": integer(),
		}, "entry", "target", "id", "body"),
		"WebhookTestResult": obj(map[string]any{
			"target": str(), "id": str(), "status": integer(), "ok": boolean(), "headers": mapOf(arr(str())),
			"body":        map[string]any{"type": "string", "description": "the first 1 KiB of the answer"},
			"duration_ms": integer(), "signed": boolean(),
		}, "target", "id", "status", "ok", "headers", "body"),
		"HistoryRow": obj(map[string]any{
			"ts":    map[string]any{"type": "integer", "format": "int64", "description": "sample time, or the bucket's start (a multiple of step since the epoch), Unix ms"},
			"value": map[string]any{"type": "string", "description": "raw samples: the exact stored text"},
			"min":   map[string]any{"type": "number", "description": "buckets: of the numeric samples"},
			"avg":   num(), "max": num(),
			"count": map[string]any{"type": "integer", "format": "int64", "description": "samples in the bucket (1 for a raw sample)"},
		}, "ts", "count"),
		"StoredConnEvent": obj(map[string]any{
			"id":      map[string]any{"type": "string", "description": "the comsrv:events stream id"},
			"event":   map[string]any{"type": "string", "description": "online, offline, replaced, refused, …"},
			"channel": str(), "listener": str(), "registration": str(), "remote": str(), "reason": str(), "ts": integer(),
		}, "id", "event", "channel", "listener", "registration", "remote", "reason", "ts"),
		"StoredAlarm": obj(map[string]any{
			"model": str(), "point": str(), "kind": str(), "level": str(),
			"value": map[string]any{"type": "string", "description": "the value that raised it, as text"},
			"limit": str(), "raised_ts": integer(),
			"cleared_ts":      map[string]any{"type": "integer", "format": "int64", "description": "0: not cleared"},
			"acknowledged_ts": map[string]any{"type": "integer", "format": "int64", "description": "0: not acknowledged"},
			"acknowledged_by": str(),
		}, "model", "point", "kind", "level", "value", "limit", "raised_ts", "cleared_ts", "acknowledged_ts", "acknowledged_by"),
		"Device": obj(map[string]any{"id": str(), "template": str(),
			"note": map[string]any{"type": "string", "description": "answers only: set when the template could not be checked (comsrv:templates absent)"}}, "id", "template"),
	}
}

// fiberParam matches a fiber path parameter.
var fiberParam = regexp.MustCompile(`:([A-Za-z0-9_]+)`)

// openAPIPath turns a fiber pattern into an OpenAPI path: /models/:id → /models/{id}.
func openAPIPath(p string) string { return fiberParam.ReplaceAllString(p, "{$1}") }

func errorResponse(status int) map[string]any {
	return map[string]any{
		"description": strings.ReplaceAll(StatusCode(status), "_", " "),
		"content":     map[string]any{"application/json": map[string]any{"schema": ref("Error")}},
	}
}

// openAPI builds the OpenAPI 3.0 document of rs and External.
func openAPI(rs []route) map[string]any {
	paths := map[string]any{}
	op := func(method, path string) map[string]any {
		p, _ := paths[path].(map[string]any)
		if p == nil {
			p = map[string]any{}
			paths[path] = p
		}
		o := map[string]any{}
		p[strings.ToLower(method)] = o
		return o
	}
	for _, r := range rs {
		path := openAPIPath(r.path)
		o := op(r.method, path)
		o["summary"] = r.summary
		o["operationId"] = operationID(r.method, r.path)
		var params []any
		for _, m := range fiberParam.FindAllStringSubmatch(r.path, -1) {
			params = append(params, map[string]any{"name": m[1], "in": "path", "required": true, "schema": str()})
		}
		for _, q := range r.query {
			params = append(params, map[string]any{"name": q.name, "in": "query", "required": false,
				"description": q.desc, "schema": map[string]any{"type": q.typ}})
		}
		if len(params) > 0 {
			o["parameters"] = params
		}
		if r.body != nil {
			o["requestBody"] = map[string]any{"required": true,
				"content": map[string]any{"application/json": map[string]any{"schema": r.body}}}
		}
		resp := map[string]any{}
		okType := r.okType
		if okType == "" {
			okType = "application/json"
		}
		okResp := map[string]any{"description": "success"}
		schema := r.okBody
		if schema == nil {
			schema = str()
		}
		okResp["content"] = map[string]any{okType: map[string]any{"schema": schema}}
		resp[strconv.Itoa(r.ok)] = okResp
		errs := append([]int(nil), r.errs...)
		switch r.access {
		case accessRead:
			errs = append(errs, http.StatusUnauthorized)
			o["security"] = []any{map[string]any{}, map[string]any{"bearerAuth": []any{}}, map[string]any{"cookieAuth": []any{}}}
			o["description"] = "Needs a token or session unless read_open is true."
		case accessWrite:
			errs = append(errs, http.StatusUnauthorized)
			o["security"] = []any{map[string]any{"bearerAuth": []any{}}, map[string]any{"cookieAuth": []any{}}}
		}
		for _, st := range errs {
			resp[strconv.Itoa(st)] = errorResponse(st)
		}
		resp["default"] = errorResponse(http.StatusInternalServerError)
		o["responses"] = resp
	}
	for _, e := range External {
		o := op(e.Method, e.Path)
		o["summary"] = e.Summary
		o["operationId"] = operationID(e.Method, e.Path)
		if e.Path == "/ws" {
			o["responses"] = map[string]any{"101": map[string]any{"description": "switching protocols"}, "403": errorResponse(http.StatusForbidden)}
		} else {
			o["responses"] = map[string]any{"200": map[string]any{"description": "the console",
				"content": map[string]any{"text/html": map[string]any{"schema": str()}}}}
		}
	}
	return map[string]any{
		"openapi": "3.0.3",
		"info": map[string]any{
			"title":   "VoltEdge modsrv API",
			"version": "1",
			"description": "Models, controls, channels, events, alarms, alarmsrv's rules and webhooks, and devices of a VoltEdge box. " +
				"Every error is {\"error\":{\"code\",\"message\"}}. Reads are open when read_open is true; " +
				"every write needs a bearer token or the session cookie from POST /login.",
		},
		"paths": paths,
		"components": map[string]any{
			"schemas": schemas(),
			"securitySchemes": map[string]any{
				"bearerAuth": map[string]any{"type": "http", "scheme": "bearer"},
				"cookieAuth": map[string]any{"type": "apiKey", "in": "cookie", "name": auth.CookieName},
			},
		},
	}
}

// operationID names an operation: GET /models/:id/values → get_models_id_values.
func operationID(method, path string) string {
	var b strings.Builder
	b.WriteString(strings.ToLower(method))
	for _, part := range strings.Split(path, "/") {
		part = strings.Trim(part, ":{}")
		part = strings.NewReplacer(".", "_", "-", "_").Replace(part)
		if part != "" {
			b.WriteByte('_')
			b.WriteString(part)
		}
	}
	if path == "/" {
		b.WriteString("_root")
	}
	return b.String()
}

func (s *server) openapi(c *fiber.Ctx) error {
	c.Set(fiber.HeaderContentType, fiber.MIMEApplicationJSON)
	return c.Send(s.doc)
}
