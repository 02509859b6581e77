package contract

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/redis/rueidis"

	"github.com/voltedge/voltedge/internal/keys"
	"github.com/voltedge/voltedge/internal/lualib"
	"github.com/voltedge/voltedge/scripts"
)

// MaxTTL is the longest command lifetime send_control accepts (9 digits of ms).
const MaxTTL = 999999999 * time.Millisecond

// Kinds of send errors, matched with errors.Is on the error of Sender.Queue
// or Sender.Send.
var (
	ErrInvalidModel   = errors.New("invalid model id")
	ErrInvalidControl = errors.New("invalid control name")
	ErrInvalidValue   = errors.New("invalid value")
	ErrInvalidTTL     = errors.New("invalid ttl")
	ErrUnknownModel   = errors.New("unknown model")
	ErrUnknownControl = errors.New("unknown control")
	ErrBadMapping     = errors.New("malformed control mapping")
	ErrRefused        = errors.New("refused by " + scripts.FnSendControl)
	ErrUnavailable    = errors.New("redis unavailable")
)

// SendError is why a control was not queued: Kind is one of the Err values
// above, Message says what was wrong, Err is the Redis error behind it (if any).
type SendError struct {
	Kind    error
	Message string
	Err     error
}

// Error implements error.
func (e *SendError) Error() string { return e.Message }

// Is matches the error's Kind.
func (e *SendError) Is(target error) bool { return target == e.Kind }

// Unwrap returns the Redis error behind the refusal.
func (e *SendError) Unwrap() error { return e.Err }

func sendErr(kind error, cause error, format string, args ...any) *SendError {
	return &SendError{Kind: kind, Message: fmt.Sprintf(format, args...), Err: cause}
}

// Request is one control to queue: value is a decimal number as text, TTL
// the command's lifetime (comsrv answers "expired" instead of executing it later).
type Request struct {
	Model   string
	Control string
	Value   string
	TTL     time.Duration
}

// Check validates the request as send_control would.
func (r Request) Check() error {
	switch {
	case !keys.ValidID(r.Model):
		return sendErr(ErrInvalidModel, nil, "invalid model id %.70q", r.Model)
	case !keys.ValidID(r.Control):
		return sendErr(ErrInvalidControl, nil, "invalid control name %.70q", r.Control)
	case !ValidValue(r.Value):
		return CheckValue(r.Value)
	case r.TTL < time.Millisecond || r.TTL > MaxTTL:
		return sendErr(ErrInvalidTTL, nil, "ttl %s is not from 1ms to %s", r.TTL, MaxTTL)
	}
	return nil
}

// CheckValue returns nil when send_control accepts s as a value (see
// ValidValue), else an ErrInvalidValue *SendError saying so.
func CheckValue(s string) error {
	if ValidValue(s) {
		return nil
	}
	return sendErr(ErrInvalidValue, nil, "value %.70q is not a decimal number (like 50, -3.5 or 1e3)", s)
}

// Sender queues controls through send_control and, with a Results
// watcher, waits for their outcomes. It is safe for concurrent use.
type Sender struct {
	client  rueidis.Client
	caller  *lualib.Caller
	results *Results
}

// NewSender returns a Sender on client. results may be nil when only Queue is used.
func NewSender(client rueidis.Client, caller *lualib.Caller, results *Results) *Sender {
	return &Sender{client: client, caller: caller, results: results}
}

// Queue checks req, queues it and returns the command id. Its errors are
// *SendError.
func (s *Sender) Queue(ctx context.Context, req Request) (string, error) {
	return s.queue(ctx, req, "")
}

// queue queues req with nonce ("" for none).
func (s *Sender) queue(ctx context.Context, req Request, nonce string) (string, error) {
	if err := req.Check(); err != nil {
		return "", err
	}
	args := []string{req.Model, req.Control, req.Value, strconv.FormatInt(req.TTL.Milliseconds(), 10)}
	if nonce != "" {
		args = append(args, nonce)
	}
	n, err := s.caller.Call(ctx, scripts.FnSendControl, args...).AsInt64()
	if err != nil {
		return "", s.classify(ctx, req, err)
	}
	return strconv.FormatInt(n, 10), nil
}

// Send queues req like Queue and returns the command, whose outcome Wait
// returns; Close it when done. The waiter is registered before the command
// is queued, so an outcome recorded at once is not missed. The command
// carries a random nonce that comsrv records with its outcome: Wait takes
// no outcome recorded under the same id for another command.
func (s *Sender) Send(ctx context.Context, req Request) (*Pending, error) {
	if s.results == nil {
		return nil, errors.New("contract: Sender.Send needs a Results watcher")
	}
	w := s.results.prepare(NewNonce())
	id, err := s.queue(ctx, req, w.nonce)
	if err != nil {
		s.results.remove(w)
		return nil, err
	}
	s.results.bind(w, id)
	return &Pending{ID: id, nonce: w.nonce, w: w, r: s.results}, nil
}

// classify turns send_control's error into a *SendError.
func (s *Sender) classify(ctx context.Context, req Request, err error) error {
	re, ok := rueidis.IsRedisErr(err)
	if !ok {
		return sendErr(ErrUnavailable, err, "redis unavailable (%s): %v", scripts.FnSendControl, err)
	}
	msg := strings.TrimPrefix(re.Error(), "ERR ")
	switch {
	case strings.Contains(msg, ": no "+keys.MappingReverse+" entry"):
		if !s.modelKnown(ctx, req.Model) {
			return sendErr(ErrUnknownModel, err, "unknown model %q", req.Model)
		}
		return sendErr(ErrUnknownControl, err, "model %q has no control %q", req.Model, req.Control)
	case strings.Contains(msg, ": "+keys.MappingReverse+" entry"):
		return sendErr(ErrBadMapping, err, "%s", msg)
	case strings.Contains(msg, ": value "):
		return sendErr(ErrInvalidValue, err, "%s", msg)
	case strings.Contains(msg, ": model id "):
		return sendErr(ErrInvalidModel, err, "%s", msg)
	case strings.Contains(msg, ": control name "):
		return sendErr(ErrInvalidControl, err, "%s", msg)
	case strings.Contains(msg, ": ttl_ms "):
		return sendErr(ErrInvalidTTL, err, "%s", msg)
	}
	return sendErr(ErrRefused, err, "%s", msg)
}

// modelScanLimit bounds the HSCAN calls modelKnown makes.
const modelScanLimit = 100

// modelKnown reports whether model has values or any control. When Redis
// cannot tell, the model counts as known.
func (s *Sender) modelKnown(ctx context.Context, model string) bool {
	c := s.client
	n, err := c.Do(ctx, c.B().Exists().Key(keys.ModelValues(model)).Build()).AsInt64()
	if err != nil || n > 0 {
		return true
	}
	pattern := strings.ReplaceAll(model, `\`, `\\`) + keys.Separator + "*"
	cursor := uint64(0)
	for range modelScanLimit {
		e, err := c.Do(ctx, c.B().Hscan().Key(keys.MappingReverse).Cursor(cursor).Match(pattern).Count(1000).Build()).AsScanEntry()
		if err != nil || len(e.Elements) > 0 {
			return true
		}
		if cursor = e.Cursor; cursor == 0 {
			return false
		}
	}
	return true
}

// Pending is a queued command whose outcome can be awaited.
type Pending struct {
	// ID is the command id.
	ID    string
	nonce string // the nonce queued with the command
	w     *waiter
	r     *Results
}

// Wait returns the command's outcome, or ctx's error (wrapped) when ctx
// ends first. It may be called again after a timeout.
func (p *Pending) Wait(ctx context.Context) (Result, error) {
	for {
		select {
		case res := <-p.w.res:
			return res, nil
		case <-p.w.check:
			if res, ok := p.r.readHash(ctx, p.ID); ok && p.w.accepts(res) {
				return res, nil
			}
		case <-ctx.Done():
			return Result{}, fmt.Errorf("wait for the outcome of command %s: %w", p.ID, ctx.Err())
		}
	}
}

// Close stops watching for the command's outcome.
func (p *Pending) Close() { p.r.remove(p.w) }
