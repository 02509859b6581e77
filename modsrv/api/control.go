package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/gofiber/fiber/v2"

	"github.com/voltedge/voltedge/internal/contract"
	"github.com/voltedge/voltedge/modsrv/auth"
	"github.com/voltedge/voltedge/modsrv/config"
)

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
	if err := contract.CheckValue(v); err != nil {
		return "", err
	}
	return v, nil
}

// ControlError maps an error of contract.Sender to the API error REST and
// the WebSocket both answer: 400 for an invalid id, value or ttl or another
// refusal of send_control, 404 for an unknown model or control, 503 when
// Redis cannot be reached, 500 for a malformed control mapping or anything else.
func ControlError(err error) *Error {
	status := http.StatusInternalServerError
	switch {
	case errors.Is(err, contract.ErrInvalidModel), errors.Is(err, contract.ErrInvalidControl),
		errors.Is(err, contract.ErrInvalidValue), errors.Is(err, contract.ErrInvalidTTL),
		errors.Is(err, contract.ErrRefused):
		status = http.StatusBadRequest
	case errors.Is(err, contract.ErrUnknownModel), errors.Is(err, contract.ErrUnknownControl):
		status = http.StatusNotFound
	case errors.Is(err, contract.ErrUnavailable):
		status = http.StatusServiceUnavailable
	}
	return Errorf(status, "%s", err.Error())
}

// OutcomeError is the API error for a control outcome that is not ok:
// 400 (bad_request) for invalid, 502 (bad_gateway) for exception,
// timeout, offline, expired, failed or anything else. It is nil for ok.
// The error's body carries "id", "status" and "result" (the outcome hash).
func OutcomeError(res contract.Result) *Error {
	if res.Status == contract.OK {
		return nil
	}
	status := http.StatusBadGateway
	if res.Status == contract.Invalid {
		status = http.StatusBadRequest
	}
	e := Errorf(status, "command %s: %s", res.ID, res.Outcome)
	e.Extra = map[string]any{"id": res.ID, "status": string(res.Status), "result": res.Fields}
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
	if err := s.checkRange(ctx, model, name, value); err != nil {
		cancel()
		s.controls.With("refused").Inc()
		return err
	}
	cmd, err := s.sender.Send(ctx, contract.Request{Model: model, Control: name, Value: value, TTL: timeout})
	cancel()
	if err != nil {
		s.controls.With("refused").Inc()
		return ControlError(err)
	}
	defer cmd.Close()
	id := cmd.ID
	wctx, wcancel := context.WithTimeout(c.UserContext(), timeout)
	defer wcancel()
	res, err := cmd.Wait(wctx)
	if err != nil {
		s.controls.With("wait_timeout").Inc()
		s.d.Log.Warn("control without outcome", "user", auth.UserOf(c), "id", id, "model", model, "control", name,
			"value", value, "timeout", timeout)
		e := Errorf(http.StatusGatewayTimeout, "no outcome for command %s within %s (is comsrv running and the channel connected?)", id, timeout)
		e.Extra = map[string]any{"id": id}
		return e
	}
	s.controls.With(string(res.Status)).Inc()
	s.d.Log.Info("control", "user", auth.UserOf(c), "id", id, "model", model, "control", name, "value", value,
		"status", string(res.Status), "message", res.Message)
	if e := OutcomeError(res); e != nil {
		return e
	}
	body := make(map[string]any, len(res.Fields)+1)
	for k, v := range res.Fields {
		body[k] = v
	}
	body["id"] = id
	return c.JSON(body)
}
