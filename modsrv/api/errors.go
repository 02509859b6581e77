package api

import (
	"errors"
	"fmt"
	"net/http"

	"github.com/gofiber/fiber/v2"
	"github.com/redis/rueidis"
)

// Error is an API error: an HTTP status, a code of StatusCode, a message,
// and optional fields added at the top level of the body next to "error"
// (for a control: "id", "status", "result").
type Error struct {
	Status  int
	Code    string
	Message string
	Extra   map[string]any
}

// Error implements error.
func (e *Error) Error() string { return e.Code + ": " + e.Message }

// Errorf makes an Error of status with the code StatusCode(status).
func Errorf(status int, format string, args ...any) *Error {
	return &Error{Status: status, Code: StatusCode(status), Message: fmt.Sprintf(format, args...)}
}

// StatusCode is the error code of an HTTP status: bad_request 400,
// unauthorized 401, forbidden 403, not_found 404, method_not_allowed 405,
// conflict 409, payload_too_large 413, too_many_requests 429, internal 500,
// bad_gateway 502 (a device or comsrv answered with a failure),
// unavailable 503, timeout 504. Other 4xx are bad_request, other 5xx internal.
func StatusCode(status int) string {
	switch status {
	case http.StatusBadRequest:
		return "bad_request"
	case http.StatusUnauthorized:
		return "unauthorized"
	case http.StatusForbidden:
		return "forbidden"
	case http.StatusNotFound:
		return "not_found"
	case http.StatusMethodNotAllowed:
		return "method_not_allowed"
	case http.StatusConflict:
		return "conflict"
	case http.StatusRequestEntityTooLarge:
		return "payload_too_large"
	case http.StatusTooManyRequests:
		return "too_many_requests"
	case http.StatusBadGateway:
		return "bad_gateway"
	case http.StatusServiceUnavailable:
		return "unavailable"
	case http.StatusGatewayTimeout, http.StatusRequestTimeout:
		return "timeout"
	}
	if status >= 400 && status < 500 {
		return "bad_request"
	}
	return "internal"
}

// errorBody is the JSON of every error answer.
type errorBody struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

// errorHandler renders any error in the API's shape. Errors that are not
// *Error or *fiber.Error are logged and answered 500 without details.
func (s *server) errorHandler(c *fiber.Ctx, err error) error {
	var e *Error
	var fe *fiber.Error
	switch {
	case errors.As(err, &e):
	case errors.As(err, &fe):
		e = &Error{Status: fe.Code, Code: StatusCode(fe.Code), Message: fe.Message}
	default:
		s.d.Log.Error("request failed", "method", c.Method(), "path", c.Path(), "err", err)
		e = Errorf(http.StatusInternalServerError, "internal error")
	}
	body := make(map[string]any, 1+len(e.Extra))
	for k, v := range e.Extra {
		body[k] = v
	}
	body["error"] = errorBody{Code: e.Code, Message: e.Message}
	return c.Status(e.Status).JSON(body)
}

// redisError turns a failed Redis call into an API error: an error reply
// is a fault (500, logged); anything else means Redis could not be reached
// in time (503).
func (s *server) redisError(what string, err error) error {
	var re *rueidis.RedisError
	if errors.As(err, &re) {
		return fmt.Errorf("%s: %w", what, err)
	}
	s.d.Log.Warn("redis unavailable", "what", what, "err", err)
	return Errorf(http.StatusServiceUnavailable, "redis unavailable (%s)", what)
}
