package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/redis/rueidis"

	"github.com/voltedge/voltedge/comsrv/control"
	"github.com/voltedge/voltedge/internal/keys"
	"github.com/voltedge/voltedge/internal/lualib"
	"github.com/voltedge/voltedge/modsrv/auth"
	"github.com/voltedge/voltedge/modsrv/config"
	"github.com/voltedge/voltedge/scripts"
)

// resultPoll is how often a control's outcome hash is read while waiting.
const resultPoll = 50 * time.Millisecond

// decimal is the value syntax send_control accepts (JSON number syntax).
var decimal = regexp.MustCompile(`^-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?$`)

// ParseControlValue reads the "value" of a control request: a JSON number
// (kept as its exact text), a string holding a decimal number, or a
// boolean (1 or 0).
func ParseControlValue(raw json.RawMessage) (string, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 {
		return "", errors.New(`"value" is required`)
	}
	var v string
	switch raw[0] {
	case '"':
		if err := json.Unmarshal(raw, &v); err != nil {
			return "", fmt.Errorf("value: %w", err)
		}
	case 't', 'f':
		var b bool
		if err := json.Unmarshal(raw, &b); err != nil {
			return "", fmt.Errorf("value: %w", err)
		}
		if b {
			return "1", nil
		}
		return "0", nil
	default:
		v = string(raw)
	}
	if len(v) > 64 || !decimal.MatchString(v) {
		return "", fmt.Errorf("value %.70q is not a decimal number (like 50, -3.5 or 1e3)", v)
	}
	return v, nil
}

// SendControl queues a control through the Lua function send_control and
// returns the command id. ttl is the command's lifetime: comsrv answers
// "expired" instead of executing it later. Errors are *Error: 400 for an
// invalid id or value, 404 when the model has no such control, 503 when
// Redis cannot be reached.
func SendControl(ctx context.Context, r rueidis.Client, k *lualib.Caller, model, name, value string, ttl time.Duration) (string, error) {
	if !keys.ValidID(model) {
		return "", Errorf(http.StatusBadRequest, "invalid model id %q", model)
	}
	if !keys.ValidID(name) {
		return "", Errorf(http.StatusBadRequest, "invalid control name %q", name)
	}
	ref := keys.PointRef(model, name)
	ok, err := r.Do(ctx, r.B().Hexists().Key(keys.MappingReverse).Field(ref).Build()).AsBool()
	if err != nil {
		return "", Errorf(http.StatusServiceUnavailable, "redis unavailable (control mapping): %v", err)
	}
	if !ok {
		return "", Errorf(http.StatusNotFound, "model %q has no control %q", model, name)
	}
	ms := max(ttl.Milliseconds(), 1)
	id, err := k.Call(ctx, scripts.FnSendControl, model, name, value, strconv.FormatInt(ms, 10)).AsInt64()
	if err != nil {
		var re *rueidis.RedisError
		if errors.As(err, &re) {
			return "", Errorf(http.StatusBadRequest, "%s", strings.TrimPrefix(re.Error(), "ERR "))
		}
		return "", Errorf(http.StatusServiceUnavailable, "redis unavailable (send_control): %v", err)
	}
	return strconv.FormatInt(id, 10), nil
}

// OutcomeError is the API error for a control outcome that is not ok:
// 400 (bad_request) for invalid, 502 (bad_gateway) for exception,
// timeout, offline, expired, failed or anything else. It is nil for ok.
// The error's body carries "id", "status" and "result" (the outcome hash).
func OutcomeError(id string, result map[string]string) *Error {
	st := result["status"]
	if st == string(control.OK) {
		return nil
	}
	status := http.StatusBadGateway
	if st == string(control.Invalid) {
		status = http.StatusBadRequest
	}
	msg := "command " + id + ": " + st
	if st == string(control.Exception) && result["code"] != "" {
		msg += " " + result["code"]
	}
	if m := result["message"]; m != "" {
		msg += " (" + m + ")"
	}
	e := Errorf(status, "%s", msg)
	e.Extra = map[string]any{"id": id, "status": st, "result": result}
	return e
}

// controlRequest is the body of POST /models/{id}/control/{name}.
type controlRequest struct {
	Value json.RawMessage `json:"value"`
}

func (s *server) control(c *fiber.Ctx) error {
	model, err := idParam(c, "id", "model id")
	if err != nil {
		return err
	}
	name, err := idParam(c, "name", "control name")
	if err != nil {
		return err
	}
	var req controlRequest
	if err := decodeBody(c, &req, `{"value":…}`); err != nil {
		return err
	}
	value, err := ParseControlValue(req.Value)
	if err != nil {
		return Errorf(http.StatusBadRequest, "%v", err)
	}
	timeout := s.d.Config.ControlTimeout.Duration
	if t := c.Query("timeout"); t != "" {
		d, err := time.ParseDuration(t)
		if err != nil || d < config.MinControlTimeout || d > config.MaxControlTimeout {
			return Errorf(http.StatusBadRequest, "timeout %q must be a duration from %s to %s", t, config.MinControlTimeout, config.MaxControlTimeout)
		}
		timeout = d
	}
	ctx, cancel := reqCtx(c)
	id, err := SendControl(ctx, s.d.Redis, s.d.Caller, model, name, value, timeout)
	cancel()
	if err != nil {
		s.controls.With("refused").Inc()
		return err
	}
	wctx, wcancel := context.WithTimeout(c.UserContext(), timeout)
	defer wcancel()
	res, err := control.WaitResult(wctx, s.d.Redis, id, resultPoll)
	if err != nil {
		s.controls.With("wait_timeout").Inc()
		s.d.Log.Warn("control without outcome", "user", auth.UserOf(c), "id", id, "model", model, "control", name,
			"value", value, "timeout", timeout)
		e := Errorf(http.StatusGatewayTimeout, "no outcome for command %s within %s (is comsrv running and the channel connected?)", id, timeout)
		e.Extra = map[string]any{"id": id}
		return e
	}
	s.controls.With(res["status"]).Inc()
	s.d.Log.Info("control", "user", auth.UserOf(c), "id", id, "model", model, "control", name, "value", value,
		"status", res["status"], "message", res["message"])
	if e := OutcomeError(id, res); e != nil {
		return e
	}
	body := make(map[string]any, len(res)+1)
	for k, v := range res {
		body[k] = v
	}
	body["id"] = id
	return c.JSON(body)
}
