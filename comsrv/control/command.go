// Package control executes the control commands that the Lua function
// send_control queues: it takes them from cmd:{channel}:queue, hands each to
// the link that serves its channel and records the outcome in
// cmd:result:{id} and the cmd:results stream.
package control

import (
	"encoding/json"
	"fmt"
	"strconv"
	"sync"
	"time"
)

// Command is one queued control command, as send_control wrote it.
type Command struct {
	ID       string
	Channel  string
	Point    string
	Value    string
	Model    string
	Control  string
	Queued   time.Time
	Deadline time.Time
}

// wire is the JSON send_control pushes: ids and timestamps are numbers.
type wire struct {
	ID       json.Number `json:"id"`
	Channel  string      `json:"channel"`
	Point    string      `json:"point"`
	Value    json.Number `json:"value"`
	Model    string      `json:"model"`
	Control  string      `json:"control"`
	TS       int64       `json:"ts"`
	Deadline int64       `json:"deadline"`
}

// maxCommand bounds the size of one queued command.
const maxCommand = 4096

// Parse decodes one entry of a control queue.
func Parse(b []byte) (*Command, error) {
	if len(b) > maxCommand {
		return nil, fmt.Errorf("control command of %d bytes is too long (at most %d)", len(b), maxCommand)
	}
	var w wire
	if err := json.Unmarshal(b, &w); err != nil {
		return nil, fmt.Errorf("control command %.80q: %w", b, err)
	}
	if w.ID == "" || w.Channel == "" || w.Point == "" || w.Value == "" {
		return nil, fmt.Errorf("control command %.80q: id, channel, point and value are required", b)
	}
	if _, err := strconv.ParseUint(string(w.ID), 10, 64); err != nil {
		return nil, fmt.Errorf("control command %.80q: id is not a command number", b)
	}
	c := &Command{
		ID: string(w.ID), Channel: w.Channel, Point: w.Point, Value: string(w.Value),
		Model: w.Model, Control: w.Control,
		Queued: time.UnixMilli(w.TS),
	}
	if w.Deadline > 0 {
		c.Deadline = time.UnixMilli(w.Deadline)
	}
	return c, nil
}

// Expired reports whether the command's deadline has passed at now.
func (c *Command) Expired(now time.Time) bool {
	return !c.Deadline.IsZero() && now.After(c.Deadline)
}

// Status is the result class of a command.
type Status string

// Outcomes of a command.
const (
	OK        Status = "ok"        // the device confirmed the write
	Exception Status = "exception" // the device answered with a Modbus exception (Outcome.Code)
	Timeout   Status = "timeout"   // no valid answer within the request timeout and retries
	Offline   Status = "offline"   // the channel's link is not connected
	Expired   Status = "expired"   // the deadline passed before the command could be sent; never executed
	Invalid   Status = "invalid"   // unknown point, a point that cannot be written, or a value out of range
	Failed    Status = "failed"    // the link failed while the command was in flight, or comsrv stopped
)

// Outcome is what became of one command.
type Outcome struct {
	Status  Status
	Code    uint8 // Modbus exception code when Status is Exception
	Message string
}

// Target is a link that executes commands for one channel.
type Target interface {
	// Deliver hands c to the link without blocking. It reports false when
	// the link cannot take it (its inbox is full or it is closing); the
	// caller then reports the outcome itself.
	Deliver(c *Command) bool
}

// Reporter records the outcome of a command.
type Reporter interface {
	Report(c *Command, o Outcome)
}

// Inbox is a link's bounded queue of delivered commands. Deliver never
// blocks; wake is called after a command is queued so that a link waiting in
// a read can notice it (for a net.Conn: SetReadDeadline in the past).
type Inbox struct {
	C    chan *Command
	wake func()

	mu     sync.Mutex
	closed bool
}

// NewInbox makes an inbox of size commands that calls wake (if not nil) after each delivery.
func NewInbox(size int, wake func()) *Inbox {
	return &Inbox{C: make(chan *Command, size), wake: wake}
}

// Deliver implements Target. It refuses commands once the inbox is closed.
func (in *Inbox) Deliver(c *Command) bool {
	in.mu.Lock()
	if in.closed {
		in.mu.Unlock()
		return false
	}
	select {
	case in.C <- c:
	default:
		in.mu.Unlock()
		return false
	}
	in.mu.Unlock()
	if in.wake != nil {
		in.wake()
	}
	return true
}

// Close makes Deliver refuse further commands, so that after Close and
// Drain no command can be left in the inbox unanswered.
func (in *Inbox) Close() {
	in.mu.Lock()
	in.closed = true
	in.mu.Unlock()
}

// Drain reports every command still queued with o (used when a link ends).
func (in *Inbox) Drain(r Reporter, o Outcome) {
	for {
		select {
		case c := <-in.C:
			r.Report(c, o)
		default:
			return
		}
	}
}

// Registry is where links announce themselves: the dispatcher hands a
// channel's commands to the target attached for it.
type Registry interface {
	// Attach makes t the target of channel's commands, replacing any other.
	Attach(channel string, t Target)
	// Detach removes t if it is still the channel's target.
	Detach(channel string, t Target)
}
