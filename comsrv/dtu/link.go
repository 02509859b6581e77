package dtu

import (
	"context"
	"errors"
	"io"
	"net"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/voltedge/voltedge/comsrv/config"
	"github.com/voltedge/voltedge/comsrv/control"
	"github.com/voltedge/voltedge/comsrv/framelog"
	"github.com/voltedge/voltedge/comsrv/health"
	"github.com/voltedge/voltedge/comsrv/poll"
	"github.com/voltedge/voltedge/internal/contract"
	"github.com/voltedge/voltedge/internal/keys"
	"github.com/voltedge/voltedge/internal/rtu"
)

// counters of one channel; owned by the channel's active link goroutine and
// handed over (with happens-before through link.done) when a link is replaced.
type counters struct {
	pollsOK, timeouts, crcErrors, exceptions, mismatches uint64
	bytesIn, bytesOut, heartbeats, dropped, decodeErrors uint64
	connects, skipped, controls, controlsFailed          uint64
	messages, messagesDropped, forwarded                 uint64
}

// Sizes of a link's inboxes.
const (
	inboxSize  = 16 // control commands delivered and not yet executed
	outboxSize = 16 // lines waiting to be forwarded to a line device
)

// reasonReloaded is the disconnect reason of a link whose channel a reload changed or removed.
const reasonReloaded = "channel changed by reload"

// pendingControl in link.pending means a control request is in flight.
const pendingControl = -2

// ctlState is the control command a link is executing.
type ctlState struct {
	cmd    *contract.Command
	w      poll.Write
	req    rtu.Request
	resend bool // send req again (a retry, or the write after a read)
}

// link is one registered DTU connection, run by a single goroutine.
type link struct {
	srv      *Server
	lst      *listener
	conn     net.Conn
	ch       *config.Channel
	plan     *poll.Plan
	regID    string
	regFrame []byte
	remote   string
	f        *framer
	st       *counters
	inbox    *control.Inbox
	outbox   chan string
	health   *health.Slaves
	flog     *framelog.Log
	msgs     budget

	done     chan struct{}
	replaced atomic.Bool
	reloaded atomic.Bool

	connectedAt time.Time
	lastHB      time.Time
	next        []time.Time // per task: next run of timer tasks
	queue       []int       // tasks waiting to be sent, in order
	queued      []bool
	pending     int // task in flight, pendingControl, or -1
	ctl         *ctlState
	deadline    time.Time
	attempts    int
	quietUntil  time.Time
	scratch     []byte
	wbuf        []byte
}

func newLink(s *Server, l *listener, c net.Conn, ch *config.Channel, plan *poll.Plan, id, remote string, f *framer) *link {
	lk := &link{
		srv: s, lst: l, conn: c, ch: ch, plan: plan, regID: id, remote: remote, f: f,
		done:   make(chan struct{}),
		outbox: make(chan string, outboxSize),
		health: health.New(s.cfg.Modbus.BackoffAfter, s.cfg.Modbus.BackoffCooldown.Duration),
		flog:   framelog.New(s.cfg.Frames.Keep, s.cfg.Frames.Flush.Duration),
		msgs:   budget{rate: messagesPerSec, tokens: messagesPerSec},
	}
	// Waking the goroutine out of its read: a deadline in the past.
	lk.inbox = control.NewInbox(inboxSize, func() { _ = c.SetReadDeadline(time.Unix(1, 0)) })
	return lk
}

// messagesPerSec bounds the device messages (lines, data frames) a link
// publishes per second; the rest are counted and dropped.
const messagesPerSec = 50

// run polls until the connection ends and returns why it ended.
func (l *link) run(ctx context.Context) string {
	lc := l.lst.cfg
	now := time.Now()
	l.connectedAt, l.lastHB = now, now
	l.st.connects++
	l.pending = -1
	n := len(l.plan.Tasks)
	l.next = make([]time.Time, n)
	l.queued = make([]bool, n)
	l.queue = make([]int, 0, n)
	l.scratch = make([]byte, 0, 16*l.plan.MaxPoints+16)
	// Until a slave answers, its values are whatever an earlier link left:
	// stale. Its first answer marks them good.
	l.health.MarkAllStale(l.plan.Slaves)
	l.markAllStale()
	for i := range l.plan.Tasks {
		t := &l.plan.Tasks[i]
		switch t.Trigger {
		case poll.Timer:
			l.next[i] = now.Add(poll.Phase(l.ch.ID, i, t.Interval))
		case poll.Connect:
			l.enqueue(i)
		}
	}
	l.writeStatus(now, true, "")
	l.flog.Add(now, framelog.RX, "registration", l.regFrame)
	l.srv.log.Info("dtu online", "channel", l.ch.ID, "listener", lc.Name, "registration", quoteID(l.regID), "remote", l.remote)
	l.srv.sink.Event(sinkEvent(l, "online", "", now), l.srv.cfg.Events.MaxLen)

	hbTimeout := lc.Heartbeat.Deadline()
	statusEvery := lc.StatusInterval.Duration
	if statusEvery <= 0 {
		statusEvery = 5 * time.Second
	}
	nextStatus := now.Add(statusEvery)
	// Bytes that followed the registration in its read.
	l.process(now)
	defer l.flushFrames()

	for {
		if ctx.Err() != nil {
			return "shutdown"
		}
		now = time.Now()
		if hbTimeout > 0 && now.Sub(l.lastHB) >= hbTimeout {
			return "heartbeat timeout"
		}
		if l.pending != -1 && !now.Before(l.deadline) {
			l.timedOut(now)
		}
		wake := now.Add(time.Hour)
		for i := range l.plan.Tasks {
			t := &l.plan.Tasks[i]
			if t.Trigger != poll.Timer {
				continue
			}
			if !now.Before(l.next[i]) {
				l.enqueue(i)
				l.next[i] = l.next[i].Add(t.Interval)
				if l.next[i].Before(now) {
					l.next[i] = now.Add(t.Interval)
				}
			}
			wake = earlier(wake, l.next[i])
		}
		if err := l.forwardLines(now); err != nil {
			return "write: " + err.Error()
		}
		if l.pending == -1 {
			if now.Before(l.quietUntil) {
				wake = earlier(wake, l.quietUntil)
			} else if err := l.sendNext(now); err != nil {
				return "write: " + err.Error()
			}
		}
		if l.pending != -1 {
			wake = earlier(wake, l.deadline)
		}
		if hbTimeout > 0 {
			wake = earlier(wake, l.lastHB.Add(hbTimeout))
		}
		if !now.Before(nextStatus) {
			l.writeStatus(now, true, "")
			nextStatus = now.Add(statusEvery)
		}
		wake = earlier(wake, nextStatus)
		if l.flog.Due(now) {
			l.flushFrames()
		}

		if err := l.conn.SetReadDeadline(wake); err != nil {
			return "set deadline: " + err.Error()
		}
		// A command or line delivered after the checks above has set a
		// deadline in the past before or after ours; if before, ours
		// replaced it, so look again instead of sleeping on it.
		if l.actionable(now) {
			continue
		}
		n, err := l.conn.Read(l.f.space())
		if n > 0 {
			l.f.wrote(n)
			l.st.bytesIn += uint64(n)
			now = time.Now()
			if l.pending != -1 && !now.Before(l.deadline) {
				// Read only after the deadline (a busy machine): the answer
				// is late and must not be taken; the timeout comes first.
				l.timedOut(now)
			}
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
			case l.reloaded.Load():
				return reasonReloaded
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
func (l *link) actionable(now time.Time) bool {
	if len(l.outbox) > 0 {
		return true
	}
	return l.pending == -1 && !now.Before(l.quietUntil) && (len(l.inbox.C) > 0 || (l.ctl != nil && l.ctl.resend))
}

func earlier(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}

// enqueue adds task i to the send queue unless it is already queued or in flight.
func (l *link) enqueue(i int) {
	if l.queued[i] || l.pending == i {
		return
	}
	l.queued[i] = true
	l.queue = append(l.queue, i)
}

// requeueFront puts task i back at the head of the queue for a retry.
func (l *link) requeueFront(i int) {
	if l.queued[i] {
		return
	}
	l.queued[i] = true
	l.queue = append(l.queue, 0)
	copy(l.queue[1:], l.queue)
	l.queue[0] = i
}

// sendNext sends what comes next: a control before any queued poll, and
// no poll of a slave that is cooling down.
func (l *link) sendNext(now time.Time) error {
	if l.ctl != nil && l.ctl.resend {
		return l.sendControl(now)
	}
	for l.ctl == nil {
		select {
		case cmd := <-l.inbox.C:
			if l.startControl(cmd, now) {
				return l.sendControl(now)
			}
			continue
		default:
		}
		break
	}
	for len(l.queue) > 0 {
		i := l.queue[0]
		copy(l.queue, l.queue[1:])
		l.queue = l.queue[:len(l.queue)-1]
		l.queued[i] = false
		if l.health.Skip(l.plan.Tasks[i].Req.Slave, now) {
			l.st.skipped++
			continue
		}
		l.pending = i
		return l.write(now, l.plan.Tasks[i].ADU)
	}
	return nil
}

// write sends a request ADU, wrapped as the profile wants, and starts its timeout.
func (l *link) write(now time.Time, adu []byte) error {
	// Whatever is still buffered cannot be the answer to this request.
	if l.f.buffered() > 0 {
		p := l.pending
		l.pending = -1
		l.process(now)
		l.pending = p
	}
	l.wbuf = l.f.c.wrap(l.wbuf[:0], adu)
	if err := l.conn.SetWriteDeadline(now.Add(l.lst.cfg.WriteTimeout.Duration)); err != nil {
		return err
	}
	n, err := l.conn.Write(l.wbuf)
	l.st.bytesOut += uint64(n)
	if err != nil {
		return err
	}
	l.flog.Add(now, framelog.TX, "rtu", adu)
	l.deadline = now.Add(l.srv.cfg.Modbus.RequestTimeout.Duration)
	return nil
}

// startControl prepares cmd; it reports false when the command ended
// before anything was sent (expired or invalid).
func (l *link) startControl(cmd *contract.Command, now time.Time) bool {
	if cmd.Expired(now) {
		l.report(cmd, contract.Outcome{Status: contract.Expired, Message: "deadline passed before the command could be sent"})
		return false
	}
	if !l.f.c.polls() {
		l.report(cmd, contract.Outcome{Status: contract.Invalid, Message: "channel " + l.ch.ID + " (" + l.lst.cfg.Profile + " profile) does not carry Modbus"})
		return false
	}
	w, err := l.plan.Write(cmd.Point, cmd.Value)
	if err != nil {
		l.report(cmd, contract.Outcome{Status: contract.Invalid, Message: err.Error()})
		return false
	}
	l.ctl = &ctlState{cmd: cmd, w: w, req: w.Req}
	l.attempts = 0
	return true
}

// sendControl sends the current control request.
func (l *link) sendControl(now time.Time) error {
	c := l.ctl
	if c.cmd.Expired(now) {
		// Also before a retry or the write of a read-modify-write: a late
		// command is never executed.
		l.endControl(contract.Outcome{Status: contract.Expired, Message: "deadline passed before the command could be sent"})
		return nil
	}
	c.resend = false
	adu, err := rtu.AppendRequest(l.scratch[:0], c.req)
	if err != nil {
		l.endControl(contract.Outcome{Status: contract.Invalid, Message: err.Error()})
		return nil
	}
	l.pending = pendingControl
	return l.write(now, adu)
}

func (l *link) endControl(o contract.Outcome) {
	l.report(l.ctl.cmd, o)
	l.ctl = nil
	l.attempts = 0
	if l.pending == pendingControl {
		l.pending = -1
	}
}

func (l *link) report(cmd *contract.Command, o contract.Outcome) {
	if o.Status == contract.OK {
		l.st.controls++
	} else {
		l.st.controlsFailed++
	}
	if l.srv.ctl != nil {
		l.srv.ctl.Report(cmd, o)
	}
}

// pendingReq is the request in flight, or nil.
func (l *link) pendingReq() *rtu.Request {
	switch {
	case l.pending >= 0:
		return &l.plan.Tasks[l.pending].Req
	case l.pending == pendingControl:
		return &l.ctl.req
	}
	return nil
}

// timedOut ends the pending request for want of an answer; what is buffered is discarded.
func (l *link) timedOut(now time.Time) {
	l.st.timeouts++
	l.f.reset()
	l.failed(now, true, "no answer within "+l.srv.cfg.Modbus.RequestTimeout.Duration.String())
}

// failed ends the pending request after a timeout or a corrupt answer: bytes
// arriving during the flush delay are discarded, and the request is retried
// while retries are left. A timeout counts against the slave's health.
func (l *link) failed(now time.Time, timeout bool, why string) {
	req := l.pendingReq()
	slave := req.Slave
	if timeout && l.health.Timeout(slave, now) {
		if !l.srv.sink.Quality(l.ch.ID, true, l.plan.SlavePoints[slave]) {
			l.health.SetStale(slave, false) // not written: mark again on the next timeout
		}
		l.srv.log.Warn("slave unreachable, backing off", "channel", l.ch.ID, "slave", slave, "cooldown", l.srv.cfg.Modbus.BackoffCooldown.Duration)
	}
	l.quietUntil = now.Add(l.srv.cfg.Modbus.FlushDelay.Duration)
	l.attempts++
	retry := l.attempts <= l.srv.cfg.Modbus.Retries
	if l.pending == pendingControl {
		l.pending = -1
		if retry {
			l.ctl.resend = true
			return
		}
		st := contract.Failed
		if timeout {
			st = contract.Timeout
		}
		l.endControl(contract.Outcome{Status: st, Message: why})
		return
	}
	i := l.pending
	l.pending = -1
	if retry && !l.health.Skip(slave, now) {
		l.requeueFront(i)
		return
	}
	l.attempts = 0
}

// process handles every complete item in the buffer.
func (l *link) process(now time.Time) {
	for {
		kind, frame := l.f.next(l.pendingReq())
		switch kind {
		case needMore:
			return
		case heartbeat:
			l.lastHB = now
			l.st.heartbeats++
			if a := l.f.c.ack(heartbeat); a != nil {
				l.send(now, a)
			}
			for i := range l.plan.Tasks {
				if l.plan.Tasks[i].Trigger == poll.Heartbeat {
					l.enqueue(i)
				}
			}
		case data:
			l.onMessage(frame, now)
		case response:
			l.flog.Add(now, framelog.RX, "rtu", frame)
			l.onResponse(frame, now)
		}
	}
}

// send writes a short answer (an acknowledgement); errors surface on the next read.
func (l *link) send(now time.Time, b []byte) {
	if err := l.conn.SetWriteDeadline(now.Add(l.lst.cfg.WriteTimeout.Duration)); err != nil {
		return
	}
	n, _ := l.conn.Write(b)
	l.st.bytesOut += uint64(n)
}

func (l *link) onResponse(frame []byte, now time.Time) {
	req := l.pendingReq()
	payload, err := rtu.ParseResponse(*req, frame)
	var exc *rtu.ExceptionError
	switch {
	case err == nil:
		l.answered(req.Slave)
		if l.pending == pendingControl {
			l.controlAnswered(payload, now)
			return
		}
		task := &l.plan.Tasks[l.pending]
		l.pending, l.attempts = -1, 0
		l.st.pollsOK++
		if len(task.Decoders) == 0 {
			return
		}
		smp := l.srv.sink.NewSample()
		smp.Channel = l.ch.ID
		smp.Received = now
		var bad int
		smp.Pairs, l.scratch, bad = task.Decode(payload, l.scratch, smp.Pairs)
		l.st.decodeErrors += uint64(bad)
		if !l.srv.sink.Put(smp) {
			l.st.dropped++
		}
	case errors.As(err, &exc):
		l.answered(req.Slave)
		l.st.exceptions++
		if l.pending == pendingControl {
			l.endControl(contract.Outcome{Status: contract.Exception, Code: exc.Code, Message: exc.Error()})
			return
		}
		l.pending, l.attempts = -1, 0
	case errors.Is(err, rtu.ErrCRC):
		l.st.crcErrors++
		l.failed(now, false, "bad CRC in the answer")
	default:
		l.st.mismatches++
		l.failed(now, false, "answer does not match the request: "+err.Error())
	}
}

// answered records that a slave answered; its values are good again if they were stale.
func (l *link) answered(slave uint8) {
	if l.health.OK(slave) && !l.srv.sink.Quality(l.ch.ID, false, l.plan.SlavePoints[slave]) {
		l.health.SetStale(slave, true) // not written: clear again on the next answer
	}
}

// controlAnswered moves a control on after a valid answer: the write of a
// read-modify-write, or the end.
func (l *link) controlAnswered(payload []byte, now time.Time) {
	c := l.ctl
	l.pending, l.attempts = -1, 0
	if c.w.ReadFirst && rtu.IsRead(c.req.Function) {
		req, err := c.w.Complete(payload)
		if err != nil {
			l.endControl(contract.Outcome{Status: contract.Failed, Message: err.Error()})
			return
		}
		c.req = req
		c.resend = true
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
	l.flog.Add(now, framelog.RX, kind, frame)
	if a := l.f.c.ack(data); a != nil {
		l.send(now, a)
	}
	if !l.msgs.take(now) {
		l.st.messagesDropped++
		return
	}
	l.st.messages++
	l.srv.sink.Do(l.srv.sink.B().Publish().Channel(keys.ChannelData(l.ch.ID)).Message(messageJSON(l.ch.ID, kind, frame, now)).Build())
}

// forwardLines writes the lines waiting for a line device.
func (l *link) forwardLines(now time.Time) error {
	for {
		select {
		case msg := <-l.outbox:
			if err := l.conn.SetWriteDeadline(now.Add(l.lst.cfg.WriteTimeout.Duration)); err != nil {
				return err
			}
			l.wbuf = append(append(l.wbuf[:0], msg...), '\n')
			n, err := l.conn.Write(l.wbuf)
			l.st.bytesOut += uint64(n)
			if err != nil {
				l.srv.lineOutcome(l.lst, l.regID, lineFailed, err.Error())
				return err
			}
			l.st.forwarded++
			l.flog.Add(now, framelog.TX, "line", l.wbuf[:len(l.wbuf)-1])
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

// flushFrames writes the frame log entries gathered since the last flush.
func (l *link) flushFrames() {
	if e := l.flog.Take(time.Now()); len(e) > 0 {
		l.srv.sink.Frames(l.ch.ID, e, l.flog.Keep())
	}
}

// markAllStale marks every polled point of the channel stale (the link is gone).
func (l *link) markAllStale() {
	for _, s := range l.plan.Slaves {
		l.srv.sink.Quality(l.ch.ID, true, l.plan.SlavePoints[s])
	}
}

// writeStatus queues the channel's status hash.
func (l *link) writeStatus(now time.Time, online bool, reason string) {
	st := l.st
	b := l.srv.sink.B().Hset().Key(keys.ChannelStatus(l.ch.ID)).FieldValue()
	on := "1"
	if !online {
		on = "0"
	}
	var unreachable []string
	for _, s := range l.health.Unreachable(now) {
		unreachable = append(unreachable, strconv.Itoa(int(s)))
	}
	b = b.FieldValue("online", on).
		FieldValue("listener", l.lst.cfg.Name).
		FieldValue("profile", l.lst.cfg.Profile).
		FieldValue("registration", l.regID).
		FieldValue("remote", l.remote).
		FieldValue("template", l.ch.Template).
		FieldValue("connected_at", ms(l.connectedAt)).
		FieldValue("last_heartbeat", ms(l.lastHB)).
		FieldValue("polls_ok", u(st.pollsOK)).
		FieldValue("timeouts", u(st.timeouts)).
		FieldValue("crc_errors", u(st.crcErrors)).
		FieldValue("exceptions", u(st.exceptions)).
		FieldValue("mismatches", u(st.mismatches)).
		FieldValue("bytes_in", u(st.bytesIn)).
		FieldValue("bytes_out", u(st.bytesOut)).
		FieldValue("garbage_bytes", u(l.f.garbage)).
		FieldValue("heartbeats", u(st.heartbeats)).
		FieldValue("decode_errors", u(st.decodeErrors)).
		FieldValue("dropped", u(st.dropped)).
		FieldValue("connects", u(st.connects)).
		FieldValue("skipped_polls", u(st.skipped)).
		FieldValue("unreachable_slaves", strings.Join(unreachable, ",")).
		FieldValue("controls_ok", u(st.controls)).
		FieldValue("controls_failed", u(st.controlsFailed)).
		FieldValue("messages", u(st.messages)).
		FieldValue("messages_dropped", u(st.messagesDropped)).
		FieldValue("forwarded", u(st.forwarded)).
		FieldValue("updated_at", ms(now))
	if !online {
		b = b.FieldValue("disconnected_at", ms(now)).FieldValue("disconnect_reason", reason)
	}
	l.srv.sink.Do(b.Build())
}

func ms(t time.Time) string { return strconv.FormatInt(t.UnixMilli(), 10) }
func u(v uint64) string     { return strconv.FormatUint(v, 10) }
