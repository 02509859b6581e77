// Package control executes the control commands that the Lua function
// send_control queues: it takes them from cmd:{channel}:queue, hands each to
// the link that serves its channel and records the outcome in
// cmd:result:{id} and the cmd:results stream. The command and outcome types
// are the Redis contract's (internal/contract).
package control

import (
	"sync"

	"github.com/voltedge/voltedge/internal/contract"
)

// Target is a link that executes commands for one channel.
type Target interface {
	// Deliver hands c to the link without blocking. It reports false when
	// the link cannot take it (its inbox is full or it is closing); the
	// caller then reports the outcome itself.
	Deliver(c *contract.Command) bool
}

// Reporter records the outcome of a command.
type Reporter interface {
	Report(c *contract.Command, o contract.Outcome)
}

// SentMarker is implemented by a Reporter that must learn when a command is
// about to be written to its device (the Dispatcher: control_sent).
type SentMarker interface {
	MarkSent(c *contract.Command) error
}

// MarkSent tells r, when it is a SentMarker, that c is about to be written
// to its device. A link calls it right before it sends the first request of
// a command; on an error it must not send it (and reports it Failed).
func MarkSent(r Reporter, c *contract.Command) error {
	if m, ok := r.(SentMarker); ok {
		return m.MarkSent(c)
	}
	return nil
}

// Inbox is a link's bounded queue of delivered commands. Deliver never
// blocks; wake is called after a command is queued so that a link waiting in
// a read can notice it (for a net.Conn: SetReadDeadline in the past).
type Inbox struct {
	C    chan *contract.Command
	wake func()

	mu     sync.Mutex
	closed bool
}

// NewInbox makes an inbox of size commands that calls wake (if not nil) after each delivery.
func NewInbox(size int, wake func()) *Inbox {
	return &Inbox{C: make(chan *contract.Command, size), wake: wake}
}

// Deliver implements Target. It refuses commands once the inbox is closed.
func (in *Inbox) Deliver(c *contract.Command) bool {
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
func (in *Inbox) Drain(r Reporter, o contract.Outcome) {
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
