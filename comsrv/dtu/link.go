package dtu

import (
	"context"
	"errors"
	"io"
	"net"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/voltedge/voltedge/comsrv/config"
	"github.com/voltedge/voltedge/comsrv/poll"
	"github.com/voltedge/voltedge/internal/keys"
	"github.com/voltedge/voltedge/internal/rtu"
)

// counters of one channel; owned by the channel's active link goroutine and
// handed over (with happens-before through link.done) when a link is replaced.
type counters struct {
	pollsOK, timeouts, crcErrors, exceptions, mismatches uint64
	bytesIn, bytesOut, heartbeats, dropped, decodeErrors uint64
	connects                                             uint64
}

// link is one registered DTU connection, run by a single goroutine.
type link struct {
	srv    *Server
	conn   net.Conn
	ch     *config.Channel
	plan   *poll.Plan
	regID  string
	remote string
	f      *framer
	st     *counters

	done     chan struct{}
	replaced atomic.Bool

	connectedAt time.Time
	lastHB      time.Time
	next        []time.Time // per task: next run of timer tasks
	queue       []int       // tasks waiting to be sent, in order
	queued      []bool
	pending     int // task in flight, or -1
	deadline    time.Time
	attempts    int
	quietUntil  time.Time
	scratch     []byte
}

// run polls until the connection ends and returns why it ended.
func (l *link) run(ctx context.Context) string {
	cfg := l.srv.cfg
	now := time.Now()
	l.connectedAt, l.lastHB = now, now
	l.st.connects++
	l.pending = -1
	n := len(l.plan.Tasks)
	l.next = make([]time.Time, n)
	l.queued = make([]bool, n)
	l.queue = make([]int, 0, n)
	l.scratch = make([]byte, 0, 16*l.plan.MaxPoints+16)
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
	l.srv.log.Info("dtu online", "channel", l.ch.ID, "registration", quoteID(l.regID), "remote", l.remote)

	hbTimeout := cfg.DTU.Heartbeat.Timeout.Duration
	statusEvery := cfg.DTU.StatusInterval.Duration
	if statusEvery <= 0 {
		statusEvery = 5 * time.Second
	}
	nextStatus := now.Add(statusEvery)
	// Bytes that followed the registration in its read.
	l.process(now)

	for {
		if ctx.Err() != nil {
			return "shutdown"
		}
		now = time.Now()
		if hbTimeout > 0 && now.Sub(l.lastHB) >= hbTimeout {
			return "heartbeat timeout"
		}
		if l.pending >= 0 && !now.Before(l.deadline) {
			l.st.timeouts++
			l.f.reset()
			l.failed(now)
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
		if l.pending < 0 && len(l.queue) > 0 {
			if now.Before(l.quietUntil) {
				wake = earlier(wake, l.quietUntil)
			} else if err := l.send(now); err != nil {
				return "write: " + err.Error()
			}
		}
		if l.pending >= 0 {
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

		if err := l.conn.SetReadDeadline(wake); err != nil {
			return "set deadline: " + err.Error()
		}
		n, err := l.conn.Read(l.f.space())
		if n > 0 {
			l.f.wrote(n)
			l.st.bytesIn += uint64(n)
			l.process(time.Now())
		}
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			switch {
			case l.replaced.Load():
				return "replaced"
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

// send writes the request at the head of the queue.
func (l *link) send(now time.Time) error {
	i := l.queue[0]
	copy(l.queue, l.queue[1:])
	l.queue = l.queue[:len(l.queue)-1]
	l.queued[i] = false
	// Whatever is still buffered cannot be the answer to this request.
	if l.f.buffered() > 0 {
		l.process(now)
	}
	adu := l.plan.Tasks[i].ADU
	if err := l.conn.SetWriteDeadline(now.Add(l.srv.cfg.DTU.WriteTimeout.Duration)); err != nil {
		return err
	}
	n, err := l.conn.Write(adu)
	l.st.bytesOut += uint64(n)
	if err != nil {
		return err
	}
	l.pending = i
	l.deadline = now.Add(l.srv.cfg.Modbus.RequestTimeout.Duration)
	return nil
}

// failed ends the pending request after a timeout or a corrupt answer: bytes
// arriving during the flush delay are discarded, and the request is retried
// while retries are left.
func (l *link) failed(now time.Time) {
	i := l.pending
	l.pending = -1
	l.quietUntil = now.Add(l.srv.cfg.Modbus.FlushDelay.Duration)
	l.attempts++
	if l.attempts <= l.srv.cfg.Modbus.Retries {
		l.requeueFront(i)
		return
	}
	l.attempts = 0
}

// process handles every complete heartbeat and response in the buffer.
func (l *link) process(now time.Time) {
	for {
		var req *rtu.Request
		if l.pending >= 0 {
			req = &l.plan.Tasks[l.pending].Req
		}
		kind, frame := l.f.next(req)
		switch kind {
		case needMore:
			return
		case heartbeat:
			l.lastHB = now
			l.st.heartbeats++
			for i := range l.plan.Tasks {
				if l.plan.Tasks[i].Trigger == poll.Heartbeat {
					l.enqueue(i)
				}
			}
		case response:
			l.onResponse(frame, now)
		}
	}
}

func (l *link) onResponse(frame []byte, now time.Time) {
	task := &l.plan.Tasks[l.pending]
	payload, err := rtu.ParseResponse(task.Req, frame)
	var exc *rtu.ExceptionError
	switch {
	case err == nil:
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
		l.pending, l.attempts = -1, 0
		l.st.exceptions++
	case errors.Is(err, rtu.ErrCRC):
		l.st.crcErrors++
		l.failed(now)
	default:
		l.st.mismatches++
		l.failed(now)
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
	b = b.FieldValue("online", on).
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
		FieldValue("updated_at", ms(now))
	if !online {
		b = b.FieldValue("disconnected_at", ms(now)).FieldValue("disconnect_reason", reason)
	}
	l.srv.sink.Do(b.Build())
}

func ms(t time.Time) string { return strconv.FormatInt(t.UnixMilli(), 10) }
func u(v uint64) string     { return strconv.FormatUint(v, 10) }
