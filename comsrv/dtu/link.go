package dtu

import (
	"context"
	"errors"
	"io"
	"net"
	"sync/atomic"
	"time"

	"github.com/voltedge/voltedge/comsrv/channel"
	"github.com/voltedge/voltedge/comsrv/config"
	"github.com/voltedge/voltedge/comsrv/control"
	"github.com/voltedge/voltedge/comsrv/framelog"
	"github.com/voltedge/voltedge/comsrv/poll"
	"github.com/voltedge/voltedge/internal/contract"
	"github.com/voltedge/voltedge/internal/rtu"
)

// Sizes of a link's inboxes.
const (
	inboxSize  = 16 // control commands delivered and not yet executed
	outboxSize = 16 // lines waiting to be forwarded to a line device
)

// phase is what a link's one request slot is doing.
type phase uint8

const (
	idle     phase = iota // nothing in flight: the next control or poll may go
	ready                 // a request waits in the slot to be sent now (a retry, the write of a read-modify-write)
	awaiting              // a request was sent; its answer is due by flight.until
	quiet                 // a request failed; bytes are discarded until flight.until, then the slot is resent or emptied
)

// flight is a link's one request slot: what is in flight, since when and
// which attempt. A link has one request in flight at most, so that answers
// cannot be mistaken for one another.
type flight struct {
	phase   phase
	ctl     *ctlState // the control being executed; nil for a poll
	task    int       // the poll task, when ctl is nil
	attempt int       // 0 for the first send of this request
	resend  bool      // in quiet: send the slot again when the quiet period ends
	since   time.Time // when the request was sent, or the quiet period began
	until   time.Time // the answer's deadline (awaiting) or the quiet period's end (quiet)
}

// busy reports whether the slot holds something (a request or a quiet period).
func (f *flight) busy() bool { return f.phase != idle }

// ctlState is the control command a link is executing.
type ctlState struct {
	cmd *contract.Command
	w   poll.Write
	req rtu.Request // the request to send: the write, or first the read of a read-modify-write
}

// link is one registered DTU connection, run by a single goroutine. It
// owns the socket, the codec and the framing; what the channel's answers
// mean is its channel.Core's business.
type link struct {
	srv      *Server
	lst      *listener
	conn     net.Conn
	ch       *config.Channel
	regID    string
	regFrame []byte
	remote   string
	f        *framer
	core     *channel.Core
	inbox    *control.Inbox
	outbox   chan string
	msgs     budget

	done      chan struct{}
	replaced  atomic.Bool
	closedFor atomic.Pointer[string] // why the server closed the link (a directory.Reason*), nil if it did not
	lastRx    atomic.Int64           // Unix ns of the last bytes received, for a replacing connection

	fl      flight
	scratch []byte
	wbuf    []byte
}

func newLink(s *Server, l *listener, c net.Conn, ch *config.Channel, id, remote string, f *framer) *link {
	lk := &link{
		srv: s, lst: l, conn: c, ch: ch, regID: id, remote: remote, f: f,
		done:   make(chan struct{}),
		outbox: make(chan string, outboxSize),
		msgs:   budget{rate: messagesPerSec, tokens: messagesPerSec},
	}
	lk.lastRx.Store(time.Now().UnixNano())
	// Waking the goroutine out of its read: a deadline in the past.
	lk.inbox = control.NewInbox(inboxSize, func() { _ = c.SetReadDeadline(time.Unix(1, 0)) })
	return lk
}

// messagesPerSec bounds the device messages (lines, data frames) a link
// publishes per second; the rest are counted and dropped.
const messagesPerSec = 50

// identity is what the status hash and events say of the link.
func (l *link) identity() channel.Identity {
	return channel.Identity{Listener: l.lst.cfg.Name, Profile: l.lst.cfg.Profile, Registration: l.regID, Remote: l.remote, Template: l.ch.Template, Name: l.ch.Name}
}

// run polls until the connection ends and returns why it ended.
func (l *link) run(ctx context.Context) string {
	lc := l.lst.cfg
	now := time.Now()
	l.scratch = make([]byte, 0, 16*l.core.Plan().MaxPoints+16)
	l.core.Up(now, l.identity(), true)
	l.core.Frame(now, framelog.RX, "registration", l.regFrame)
	l.srv.log.Info("dtu online", "channel", l.ch.ID, "listener", lc.Name, "registration", quoteID(l.regID), "remote", l.remote)

	hbTimeout := lc.Heartbeat.Deadline()
	// Bytes that followed the registration in its read.
	l.process(now)
	for {
		if ctx.Err() != nil {
			return "shutdown"
		}
		now = time.Now()
		if hbTimeout > 0 && now.Sub(l.core.LastHeartbeat()) >= hbTimeout {
			return "heartbeat timeout"
		}
		l.expire(now)
		wake := l.core.Due(now)
		if err := l.forwardLines(now); err != nil {
			return "write: " + err.Error()
		}
		if err := l.sendNext(now); err != nil {
			return "write: " + err.Error()
		}
		if l.fl.phase == awaiting || l.fl.phase == quiet {
			wake = earlier(wake, l.fl.until)
		}
		if hbTimeout > 0 {
			wake = earlier(wake, l.core.LastHeartbeat().Add(hbTimeout))
		}
		wake = earlier(wake, l.core.Tick(now))

		if err := l.conn.SetReadDeadline(wake); err != nil {
			return "set deadline: " + err.Error()
		}
		// A command or line delivered after the checks above has set a
		// deadline in the past before or after ours; if before, ours
		// replaced it, so look again instead of sleeping on it.
		if l.actionable() {
			continue
		}
		n, err := l.conn.Read(l.f.space())
		if n > 0 {
			l.f.wrote(n)
			l.core.Counters().BytesIn += uint64(n)
			now = time.Now()
			l.lastRx.Store(now.UnixNano())
			// Read only after the deadline (a busy machine): the answer is
			// late and must not be taken; the timeout comes first.
			l.expire(now)
			l.process(now)
		}
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			switch {
			case l.replaced.Load():
				return "replaced"
			case l.closedFor.Load() != nil:
				return *l.closedFor.Load()
			case ctx.Err() != nil:
				return "shutdown"
			case errors.Is(err, io.EOF):
				return "closed by device"
			default:
				return "read: " + err.Error()
			}
		}
	}
}

// actionable reports whether something waits that the link can do now.
func (l *link) actionable() bool {
	return len(l.outbox) > 0 || (l.fl.phase == idle && len(l.inbox.C) > 0)
}

func earlier(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}

// expire moves the slot on when its time is up: an answer that did not come
// is a timeout; a quiet period that ended lets the slot be sent again or emptied.
func (l *link) expire(now time.Time) {
	if now.Before(l.fl.until) {
		return
	}
	switch l.fl.phase {
	case awaiting:
		l.timedOut(now)
	case quiet:
		if l.fl.resend {
			l.fl.phase, l.fl.resend = ready, false
		} else {
			l.fl = flight{}
		}
	}
}

// sendNext sends what comes next when the slot allows: the request waiting
// in the slot, else a control before any queued poll. Polls of slaves in
// cool-down are passed over by the core.
func (l *link) sendNext(now time.Time) error {
	for {
		switch l.fl.phase {
		case ready:
			if err := l.sendSlot(now); err != nil {
				return err
			}
			continue // the slot may have ended (an expired control): take the next
		case idle:
			select {
			case cmd := <-l.inbox.C:
				l.startControl(cmd, now)
				continue
			default:
			}
			i, ok := l.core.Next(now)
			if !ok {
				return nil
			}
			l.fl = flight{phase: ready, task: i}
		default:
			return nil
		}
	}
}

// sendSlot sends the request in the slot and starts its answer's deadline.
func (l *link) sendSlot(now time.Time) error {
	var adu []byte
	if c := l.fl.ctl; c != nil {
		if c.cmd.Expired(now) {
			// Also before a retry or the write of a read-modify-write: a
			// late command is never executed.
			l.endControl(contract.Outcome{Status: contract.Expired, Message: control.MsgExpired})
			return nil
		}
		var err error
		if adu, err = rtu.AppendRequest(l.scratch[:0], c.req); err != nil {
			l.endControl(contract.Outcome{Status: contract.Invalid, Message: err.Error()})
			return nil
		}
		if err := control.MarkSent(l.srv.ctl, c.cmd); err != nil {
			l.endControl(contract.Outcome{Status: contract.Failed, Message: err.Error()})
			return nil
		}
		// Marking took a Redis round trip: the deadline is checked again,
		// and the answer's timeout starts from the write.
		if now = time.Now(); c.cmd.Expired(now) {
			l.endControl(contract.Outcome{Status: contract.Expired, Message: control.MsgExpired})
			return nil
		}
	} else {
		adu = l.core.Plan().Tasks[l.fl.task].ADU
	}
	if err := l.write(now, adu); err != nil {
		return err
	}
	l.fl.phase, l.fl.since, l.fl.until = awaiting, now, now.Add(l.srv.cfg.Modbus.RequestTimeout.Duration)
	return nil
}

// write sends a request ADU, wrapped as the profile wants.
func (l *link) write(now time.Time, adu []byte) error {
	// Whatever is still buffered cannot be the answer to this request (the
	// slot is not awaiting yet, so it is taken as heartbeats or garbage).
	if l.f.buffered() > 0 {
		l.process(now)
	}
	l.wbuf = l.f.c.wrap(l.wbuf[:0], adu)
	if err := l.conn.SetWriteDeadline(now.Add(l.lst.cfg.WriteTimeout.Duration)); err != nil {
		return err
	}
	n, err := l.conn.Write(l.wbuf)
	l.core.Counters().BytesOut += uint64(n)
	if err != nil {
		return err
	}
	l.core.Frame(now, framelog.TX, "rtu", adu)
	return nil
}

// startControl puts cmd in the slot, or answers it at once when it cannot
// be sent (expired, invalid, or a link that does not carry Modbus).
func (l *link) startControl(cmd *contract.Command, now time.Time) {
	if cmd.Expired(now) {
		l.core.Report(cmd, contract.Outcome{Status: contract.Expired, Message: control.MsgExpired})
		return
	}
	if !l.f.c.polls() {
		l.core.Report(cmd, contract.Outcome{Status: contract.Invalid, Message: "channel " + l.ch.ID + " (" + l.lst.cfg.Profile + " profile) does not carry Modbus"})
		return
	}
	w, err := l.core.Plan().Write(cmd.Point, cmd.Value)
	if err != nil {
		l.core.Report(cmd, contract.Outcome{Status: contract.Invalid, Message: err.Error()})
		return
	}
	l.fl = flight{phase: ready, ctl: &ctlState{cmd: cmd, w: w, req: w.Req}}
}

// endControl reports the control in the slot and empties the slot.
func (l *link) endControl(o contract.Outcome) {
	l.core.Report(l.fl.ctl.cmd, o)
	l.fl = flight{}
}

// request is the request awaiting its answer, or nil.
func (l *link) request() *rtu.Request {
	switch {
	case l.fl.phase != awaiting:
		return nil
	case l.fl.ctl != nil:
		return &l.fl.ctl.req
	default:
		return &l.core.Plan().Tasks[l.fl.task].Req
	}
}

// timedOut ends the request in flight for want of an answer; what is buffered is discarded.
func (l *link) timedOut(now time.Time) {
	l.core.Timeout(now, l.request().Slave)
	l.f.reset()
	l.failed(now, true, "no answer within "+l.srv.cfg.Modbus.RequestTimeout.Duration.String())
}

// failed ends the request in flight after a timeout or a corrupt answer:
// bytes arriving during the flush delay are discarded, and the request is
// sent again after it while retries are left (never to a slave the core
// has put in cool-down).
func (l *link) failed(now time.Time, timeout bool, why string) {
	slave := l.request().Slave
	l.fl.attempt++
	retry := l.fl.attempt <= l.srv.cfg.Modbus.Retries
	quietUntil := now.Add(l.srv.cfg.Modbus.FlushDelay.Duration)
	switch {
	case l.fl.ctl != nil && !retry:
		st := contract.Failed
		if timeout {
			st = contract.Timeout
		}
		l.endControl(contract.Outcome{Status: st, Message: why})
	case l.fl.ctl == nil && (!retry || l.core.Skip(slave, now)):
		l.fl = flight{}
	default:
		l.fl.phase, l.fl.resend, l.fl.since, l.fl.until = quiet, true, now, quietUntil
		return
	}
	l.fl = flight{phase: quiet, since: now, until: quietUntil}
}

// process handles every complete item in the buffer.
func (l *link) process(now time.Time) {
	defer l.countGarbage()
	for {
		kind, frame := l.f.next(l.request())
		switch kind {
		case needMore:
			return
		case heartbeat:
			l.core.Heartbeat(now)
			if a := l.f.c.ack(heartbeat); a != nil {
				l.send(now, a)
			}
		case data:
			l.onMessage(frame, now)
		case response:
			l.core.Frame(now, framelog.RX, "rtu", frame)
			l.onResponse(frame, now)
		}
	}
}

// countGarbage moves the framer's garbage count to the channel's counters.
func (l *link) countGarbage() {
	l.core.Counters().Garbage += l.f.garbage
	l.f.garbage = 0
}

// send writes a short answer (an acknowledgement); errors surface on the next read.
func (l *link) send(now time.Time, b []byte) {
	if err := l.conn.SetWriteDeadline(now.Add(l.lst.cfg.WriteTimeout.Duration)); err != nil {
		return
	}
	n, _ := l.conn.Write(b)
	l.core.Counters().BytesOut += uint64(n)
}

func (l *link) onResponse(frame []byte, now time.Time) {
	req := l.request()
	payload, err := rtu.ParseResponse(*req, frame)
	var exc *rtu.ExceptionError
	switch {
	case err == nil && l.fl.ctl != nil:
		l.core.Answered(req.Slave)
		l.controlAnswered(payload)
	case err == nil:
		l.core.Response(now, l.fl.task, payload)
		l.fl = flight{}
	case errors.As(err, &exc):
		l.core.Exception(now, req.Slave, exc.Code)
		if l.fl.ctl != nil {
			l.endControl(contract.Outcome{Status: contract.Exception, Code: exc.Code, Message: exc.Error()})
			return
		}
		l.fl = flight{}
	case errors.Is(err, rtu.ErrCRC):
		l.core.CRCError()
		l.failed(now, false, "bad CRC in the answer")
	default:
		l.core.Mismatch()
		l.failed(now, false, "answer does not match the request: "+err.Error())
	}
}

// controlAnswered moves a control on after a valid answer: the write of a
// read-modify-write, or the end.
func (l *link) controlAnswered(payload []byte) {
	c := l.fl.ctl
	if c.w.ReadFirst && rtu.IsRead(c.req.Function) {
		req, err := c.w.Complete(payload)
		if err != nil {
			l.endControl(contract.Outcome{Status: contract.Failed, Message: err.Error()})
			return
		}
		c.req = req
		l.fl = flight{phase: ready, ctl: c}
		return
	}
	l.endControl(contract.Outcome{Status: contract.OK})
}

// onMessage publishes a device's own message (a line, a data frame) within the link's budget.
func (l *link) onMessage(frame []byte, now time.Time) {
	kind := "data"
	if l.lst.cfg.Profile == config.ProfileLine {
		kind = "line"
	}
	l.core.Frame(now, framelog.RX, kind, frame)
	if a := l.f.c.ack(data); a != nil {
		l.send(now, a)
	}
	st := l.core.Counters()
	if !l.msgs.take(now) {
		st.MessagesDropped++
		return
	}
	st.Messages++
	l.srv.sink.DeviceMessage(l.ch.ID, messageJSON(l.ch.ID, kind, frame, now))
}

// forwardLines writes the lines waiting for a line device.
func (l *link) forwardLines(now time.Time) error {
	st := l.core.Counters()
	for {
		select {
		case msg := <-l.outbox:
			if err := l.conn.SetWriteDeadline(now.Add(l.lst.cfg.WriteTimeout.Duration)); err != nil {
				return err
			}
			l.wbuf = append(append(l.wbuf[:0], msg...), '\n')
			n, err := l.conn.Write(l.wbuf)
			st.BytesOut += uint64(n)
			if err != nil {
				l.srv.lineOutcome(l.lst, l.regID, lineFailed, err.Error())
				return err
			}
			st.Forwarded++
			l.core.Frame(now, framelog.TX, "line", l.wbuf[:len(l.wbuf)-1])
			l.srv.lineOutcome(l.lst, l.regID, lineForwarded, "")
		default:
			return nil
		}
	}
}

// dropLines answers the lines still waiting for a link that ended.
func (l *link) dropLines(reason string) {
	for {
		select {
		case <-l.outbox:
			l.srv.lineOutcome(l.lst, l.regID, lineFailed, "link closed: "+reason)
		default:
			return
		}
	}
}
