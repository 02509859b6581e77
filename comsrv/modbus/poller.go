// Package modbus polls the devices that comsrv dials itself: Modbus TCP
// devices (tcp://), RTU devices behind a serial server or gateway
// (rtuovertcp://) and RS-485 lines on a local serial port (rtu://). These are
// the channels whose configuration has a url.
//
// Each channel is one Poller: one goroutine that owns one client of
// github.com/simonvetter/modbus, runs the channel's polling plan on schedule,
// executes its control commands ahead of due polls, and reconnects with
// exponential back-off when the connection fails (the library never
// reconnects by itself). A Set runs the pollers of a configuration and
// applies reloads.
package modbus

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	mb "github.com/simonvetter/modbus"

	"github.com/voltedge/voltedge/comsrv/config"
	"github.com/voltedge/voltedge/comsrv/control"
	"github.com/voltedge/voltedge/comsrv/framelog"
	"github.com/voltedge/voltedge/comsrv/health"
	"github.com/voltedge/voltedge/comsrv/poll"
	"github.com/voltedge/voltedge/comsrv/sink"
	"github.com/voltedge/voltedge/internal/contract"
	"github.com/voltedge/voltedge/internal/keys"
	"github.com/voltedge/voltedge/internal/rtu"
)

// Listener is the listener name of Modbus channels in connection events.
const Listener = "modbus"

// InboxSize is how many delivered control commands a poller holds at most.
const InboxSize = 16

// FrameKind is the kind of the frame log entries of Modbus channels: the
// library does its own framing, so the log holds protocol data units
// (function code and data, without unit id, MBAP header or CRC).
const FrameKind = "pdu"

// Disconnect reasons written to the status hash and the event stream.
const (
	ReasonShutdown = "shutdown"         // comsrv stops
	ReasonStopped  = "stopped"          // the channel was removed or changed by a reload
	ReasonClosed   = "closed by device" // the device closed the connection
)

// counters of one poller, owned by its goroutine.
type counters struct {
	pollsOK, timeouts, crcErrors, exceptions, mismatches uint64
	bytesIn, bytesOut, decodeErrors, dropped             uint64
	connects, connectFailures                            uint64
	controls, controlsFailed                             uint64
}

// Poller polls one Modbus channel. Create it with New, run it with Run.
type Poller struct {
	ch   *config.Channel
	plan *poll.Plan
	cfg  *config.Config
	sink *sink.Sink
	rep  control.Reporter
	reg  control.Registry
	log  *slog.Logger

	scheme   string
	overhead int // bytes an ADU adds to a PDU: MBAP header, or unit id and CRC
	timeout  time.Duration
	retries  int
	minWait  time.Duration
	maxWait  time.Duration
	statusIv time.Duration
	flushIv  time.Duration

	inbox    *control.Inbox
	stop     chan struct{}
	stopOnce sync.Once
	done     chan struct{}
	mu       sync.Mutex // guards closed against Deliver
	closed   bool
	online   atomic.Bool

	// Owned by the Run goroutine.
	client       *mb.ModbusClient
	health       *health.Slaves
	frames       *framelog.Log
	st           counters
	next         []time.Time // per task: next run
	pending      []int       // connect tasks still to run on this connection
	allPoints    []string
	allStale     bool // every point is marked stale in Redis
	failStreak   int  // requests in a row that got no valid answer
	connAnswered bool // the current connection got a valid answer
	connectedAt  time.Time
	lastReason   string // why the channel is offline
	nextStatus   time.Time
	lastFlush    time.Time
	framesDirty  bool
	timer        *time.Timer
	scratch      []byte
	payload      []byte
	pdu          []byte
	bools        []bool
	regs         []uint16
}

// New prepares a poller for a channel with a url, using the channel's
// compiled plan. Commands for the channel reach it through reg while it runs
// and their outcomes go to rep.
func New(ch *config.Channel, plan *poll.Plan, cfg *config.Config, sk *sink.Sink, rep control.Reporter, reg control.Registry, log *slog.Logger) *Poller {
	p := &Poller{
		ch: ch, plan: plan, cfg: cfg, sink: sk, rep: rep, reg: reg,
		log:  log.With("channel", ch.ID, "url", ch.URL),
		stop: make(chan struct{}),
		done: make(chan struct{}),
	}
	p.inbox = control.NewInbox(InboxSize, nil)
	p.scheme, _, _ = config.ParseURL(ch.URL)
	p.overhead = 3 // unit id + CRC
	if p.scheme == config.SchemeTCP {
		p.overhead = 7 // MBAP header (its unit id replaces the RTU one)
	}
	m := &cfg.Modbus
	p.timeout = firstPositive(ch.Timeout.Duration, m.RequestTimeout.Duration, config.DefaultRequestTimeout)
	p.retries = max(m.Retries, 0)
	p.minWait = firstPositive(m.ReconnectMin.Duration, config.DefaultReconnectMin)
	p.maxWait = max(firstPositive(m.ReconnectMax.Duration, config.DefaultReconnectMax), p.minWait)
	p.statusIv = firstPositive(cfg.DTU.StatusInterval.Duration, config.DefaultStatusInterval)
	p.flushIv = firstPositive(cfg.Frames.Flush.Duration, time.Second)
	p.frames = framelog.New(cfg.Frames.Keep, p.flushIv)
	p.next = make([]time.Time, len(plan.Tasks))
	p.pending = make([]int, 0, len(plan.Tasks))
	for _, s := range plan.Slaves {
		p.allPoints = append(p.allPoints, plan.SlavePoints[s]...)
	}
	p.scratch = make([]byte, 0, 16*plan.MaxPoints+16)
	return p
}

func firstPositive(d ...time.Duration) time.Duration {
	for _, v := range d {
		if v > 0 {
			return v
		}
	}
	return 0
}

// Channel is the channel the poller serves.
func (p *Poller) Channel() *config.Channel { return p.ch }

// Online reports whether the poller is connected.
func (p *Poller) Online() bool { return p.online.Load() }

// Deliver implements control.Target: it queues c for the poller's goroutine
// without blocking, and reports false when the inbox is full or the poller
// has stopped.
func (p *Poller) Deliver(c *contract.Command) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return false
	}
	return p.inbox.Deliver(c)
}

// Stop makes Run return; it does not wait (see Done).
func (p *Poller) Stop() { p.stopOnce.Do(func() { close(p.stop) }) }

// Done is closed when Run has returned.
func (p *Poller) Done() <-chan struct{} { return p.done }

// Run connects and polls until ctx is cancelled or Stop is called. A
// request in flight is finished first, so Run returns within about one
// request timeout (or the library's 5 s dial timeout while connecting).
func (p *Poller) Run(ctx context.Context) {
	defer close(p.done)
	p.timer = time.NewTimer(time.Hour)
	defer p.timer.Stop()
	p.reg.Attach(p.ch.ID, p)
	defer p.detach()

	// Values left in Redis by an earlier run are old until the devices answer.
	p.health = health.New(p.cfg.Modbus.BackoffAfter, p.cooldown())
	p.markAllStale()
	wait := p.minWait
	for {
		if p.stopReason(ctx) != "" {
			return
		}
		if err := p.connect(); err != nil {
			p.connectFailed(err, wait)
			if !p.idle(ctx, wait) {
				return
			}
			wait = min(wait*2, p.maxWait)
			continue
		}
		p.onOnline()
		reason := p.serve(ctx)
		answered := p.connAnswered
		p.onOffline(reason)
		if p.stopReason(ctx) != "" {
			return
		}
		// A connection that worked starts the back-off again; one that
		// failed at once (a device that accepts and closes) keeps doubling it.
		if answered {
			wait = p.minWait
		}
		if !p.idle(ctx, wait) {
			return
		}
		wait = min(wait*2, p.maxWait)
	}
}

func (p *Poller) cooldown() time.Duration {
	return firstPositive(p.cfg.Modbus.BackoffCooldown.Duration, config.DefaultBackoffCooldown)
}

// detach stops deliveries and answers what is still queued.
func (p *Poller) detach() {
	p.mu.Lock()
	p.closed = true
	p.mu.Unlock()
	p.reg.Detach(p.ch.ID, p)
	p.inbox.Drain(p.rep, contract.Outcome{Status: contract.Failed, Message: "channel " + p.ch.ID + " stopped"})
	p.flushFrames(time.Now())
}

// stopReason is the reason to end when the poller must stop, else "".
func (p *Poller) stopReason(ctx context.Context) string {
	select {
	case <-p.stop:
		return ReasonStopped
	default:
	}
	if ctx.Err() != nil {
		return ReasonShutdown
	}
	return ""
}

func (p *Poller) clientConf() *mb.ClientConfiguration {
	c := &mb.ClientConfiguration{
		URL:     p.ch.URL,
		Timeout: p.timeout,
		Logger:  slog.NewLogLogger(p.log.Handler(), slog.LevelDebug),
	}
	if p.scheme == config.SchemeRTU {
		c.Speed = uint(cmp.Or(p.ch.Baud, config.DefaultBaud))
		c.DataBits = uint(cmp.Or(p.ch.DataBits, config.DefaultDataBits))
		c.StopBits = uint(cmp.Or(p.ch.StopBits, config.DefaultStopBits))
		switch p.ch.Parity {
		case "even":
			c.Parity = mb.PARITY_EVEN
		case "odd":
			c.Parity = mb.PARITY_ODD
		default:
			c.Parity = mb.PARITY_NONE
		}
	}
	return c
}

func (p *Poller) connect() error {
	if p.client == nil {
		c, err := mb.NewClient(p.clientConf())
		if err != nil {
			return fmt.Errorf("client for %s: %w", p.ch.URL, err)
		}
		p.client = c
	}
	if err := p.client.Open(); err != nil {
		return fmt.Errorf("open %s: %w", p.ch.URL, err)
	}
	return nil
}

// connectFailed records a failed connection attempt: one log line and one
// status update per attempt (attempts are spaced by the back-off), and a
// connect_failed event when the reason differs from the last one.
func (p *Poller) connectFailed(err error, retryIn time.Duration) {
	now := time.Now()
	p.st.connectFailures++
	reason := "connect: " + err.Error()
	if reason != p.lastReason {
		p.event(sink.EventConnectFailed, reason, now)
	}
	p.lastReason = reason
	p.log.Warn("modbus connect failed", "err", err, "attempt", p.st.connectFailures, "retry_in", retryIn)
	p.writeStatus(now, false, reason)
}

func (p *Poller) onOnline() {
	now := time.Now()
	p.connectedAt = now
	p.st.connects++
	p.failStreak = 0
	p.connAnswered = false
	p.lastReason = ""
	p.online.Store(true)
	// A new connection gives every slave a fresh start; their values stay
	// stale until each answers.
	p.health = health.New(p.cfg.Modbus.BackoffAfter, p.cooldown())
	p.health.MarkAllStale(p.plan.Slaves)
	p.writeStatus(now, true, "")
	p.event(sink.EventOnline, "", now)
	p.log.Info("modbus online", "timeout", p.timeout)
}

func (p *Poller) onOffline(reason string) {
	now := time.Now()
	_ = p.client.Close()
	p.online.Store(false)
	p.lastReason = reason
	p.markAllStale()
	p.flushFrames(now)
	p.writeStatus(now, false, reason)
	p.event(sink.EventOffline, reason, now)
	p.log.Info("modbus offline", "reason", reason)
}

func (p *Poller) event(typ, reason string, now time.Time) {
	p.sink.Event(sink.Event{Type: typ, Channel: p.ch.ID, Listener: Listener, Remote: p.ch.URL, Reason: reason, At: now}, p.cfg.Events.MaxLen)
}

// idle waits d while offline, answering commands with Offline. It reports
// false when the poller must stop.
func (p *Poller) idle(ctx context.Context, d time.Duration) bool {
	until := time.Now().Add(d)
	for {
		c, stop := p.wait(ctx, until)
		if stop {
			return false
		}
		if c == nil {
			return true
		}
		p.report(c, contract.Outcome{Status: contract.Offline, Message: "channel " + p.ch.ID + " is not connected: " + p.lastReason})
	}
}

// wait blocks until at, a command, or a stop. It returns the command, or
// stop true.
func (p *Poller) wait(ctx context.Context, at time.Time) (*contract.Command, bool) {
	d := time.Until(at)
	if d <= 0 {
		return nil, false
	}
	p.timer.Reset(d)
	defer p.timer.Stop()
	select {
	case c := <-p.inbox.C:
		return c, false
	case <-p.timer.C:
		return nil, false
	case <-p.stop:
		return nil, true
	case <-ctx.Done():
		return nil, true
	}
}

// serve polls over an open connection until it fails or the poller stops,
// and returns why it ended.
func (p *Poller) serve(ctx context.Context) string {
	now := time.Now()
	tasks := p.plan.Tasks
	p.pending = p.pending[:0]
	for i := range tasks {
		p.next[i] = now.Add(poll.Phase(p.ch.ID, i, interval(&tasks[i])))
		if tasks[i].Trigger == poll.Connect {
			p.pending = append(p.pending, i)
		}
	}
	p.nextStatus = now.Add(p.statusIv)
	for {
		if r := p.stopReason(ctx); r != "" {
			return r
		}
		// Commands go ahead of due polls.
		select {
		case c := <-p.inbox.C:
			if r := p.command(c); r != "" {
				return r
			}
			continue
		default:
		}
		now = time.Now()
		p.housekeeping(now)
		if len(p.pending) > 0 {
			i := p.pending[0]
			p.pending = append(p.pending[:0], p.pending[1:]...)
			if r := p.poll(i); r != "" {
				return r
			}
			continue
		}
		due, wake := p.due(now)
		if due >= 0 {
			if r := p.poll(due); r != "" {
				return r
			}
			continue
		}
		wake = earlier(wake, p.nextStatus)
		if p.framesDirty {
			wake = earlier(wake, p.lastFlush.Add(p.flushIv))
		}
		c, stop := p.wait(ctx, wake)
		if stop {
			return p.stopReason(ctx)
		}
		if c != nil {
			if r := p.command(c); r != "" {
				return r
			}
		}
	}
}

// interval is a task's period; heartbeat-triggered tasks (which have no
// heartbeat here) run on their interval too.
func interval(t *poll.Task) time.Duration {
	if t.Interval > 0 {
		return t.Interval
	}
	return config.DefaultTaskInterval
}

// due picks the most overdue task whose slave is not cooling down and
// schedules its next run; -1 when none is due. wake is when the next one is.
// Tasks of a slave in cool-down skip their turn, so the other slaves keep
// their schedule.
func (p *Poller) due(now time.Time) (due int, wake time.Time) {
	due, wake = -1, now.Add(time.Hour)
	tasks := p.plan.Tasks
	for i := range tasks {
		t := &tasks[i]
		if t.Trigger == poll.Connect {
			continue
		}
		if now.Before(p.next[i]) {
			wake = earlier(wake, p.next[i])
			continue
		}
		if p.health.Skip(t.Req.Slave, now) {
			p.advance(i, now)
			wake = earlier(wake, p.next[i])
			continue
		}
		if due < 0 || p.next[i].Before(p.next[due]) {
			due = i
		}
	}
	if due >= 0 {
		p.advance(due, now)
	}
	return due, wake
}

// advance schedules task i's next run one interval on, or one interval from
// now when it fell behind (no burst of catch-up polls).
func (p *Poller) advance(i int, now time.Time) {
	iv := interval(&p.plan.Tasks[i])
	p.next[i] = p.next[i].Add(iv)
	if p.next[i].Before(now) {
		p.next[i] = now.Add(iv)
	}
}

func earlier(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}

// housekeeping refreshes the status hash and flushes the frame log when due.
func (p *Poller) housekeeping(now time.Time) {
	if !now.Before(p.nextStatus) {
		p.writeStatus(now, true, "")
		p.nextStatus = now.Add(p.statusIv)
	}
	if p.framesDirty && now.Sub(p.lastFlush) >= p.flushIv {
		p.flushFrames(now)
	}
}

func (p *Poller) flushFrames(now time.Time) {
	if !p.framesDirty {
		return
	}
	p.framesDirty = false
	p.lastFlush = now
	p.sink.Frames(p.ch.ID, p.frames.Take(now), p.frames.Keep())
}

// poll runs task i, with retries after a timeout or a bad answer. It returns
// a reason when the connection must be closed.
func (p *Poller) poll(i int) string {
	t := &p.plan.Tasks[i]
	slave := t.Req.Slave
	for attempt := 0; ; attempt++ {
		payload, res, code, err := p.read(&t.Req)
		now := time.Now()
		switch res {
		case resOK:
			p.st.pollsOK++
			p.answered(slave)
			p.put(t, payload, now)
			return ""
		case resException:
			p.st.exceptions++
			p.exception(slave, code, now)
			return ""
		case resTimeout:
			p.st.timeouts++
			p.timedOut(slave, now)
		case resCRC:
			p.st.crcErrors++
			p.failStreak++
		case resMismatch:
			p.st.mismatches++
			p.failStreak++
		case resInvalid:
			p.log.Error("modbus request refused by the client", "task", t.Name, "err", err)
			return ""
		case resIO:
			return lostReason(err)
		}
		if r := p.deadLink(); r != "" {
			return r
		}
		if attempt >= p.retries || p.health.Skip(slave, now) {
			return ""
		}
	}
}

// deadLink reports a reason to reconnect when a network connection has
// answered nothing valid for longer than a dead slave would explain: a TCP
// connection can die without a reset (a device power-cycled behind a
// router). A serial port is kept open: reopening it cannot help a silent bus.
func (p *Poller) deadLink() string {
	if p.scheme == config.SchemeRTU || p.failStreak <= p.cfg.Modbus.BackoffAfter {
		return ""
	}
	return "no answer to " + strconv.Itoa(p.failStreak) + " requests in a row"
}

func lostReason(err error) string {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return ReasonClosed
	}
	return "connection: " + err.Error()
}

// answered records a valid answer of slave: its values are good again.
func (p *Poller) answered(slave uint8) {
	p.failStreak = 0
	p.connAnswered = true
	if p.health.OK(slave) {
		p.quality(slave, false)
	}
}

// exception records an exception answer. "Gateway target device failed to
// respond" means the slave behind a gateway is silent: it counts as a
// timeout of that slave, although the connection is fine.
func (p *Poller) exception(slave, code uint8, now time.Time) {
	if code != rtu.ExGatewayTargetNoResponse {
		p.answered(slave)
		return
	}
	p.failStreak = 0
	p.connAnswered = true
	if p.health.Timeout(slave, now) {
		p.quality(slave, true)
	}
}

// timedOut records a request to slave that got no answer.
func (p *Poller) timedOut(slave uint8, now time.Time) {
	p.failStreak++
	if p.health.Timeout(slave, now) {
		p.log.Warn("modbus slave not answering; skipped during cool-down", "slave", slave, "cooldown", p.cooldown())
		p.quality(slave, true)
	}
}

// quality marks the points of slave stale or good.
func (p *Poller) quality(slave uint8, stale bool) {
	if !stale {
		p.allStale = false
	}
	if !p.sink.Quality(p.ch.ID, stale, p.plan.SlavePoints[slave]) {
		p.health.SetStale(slave, !stale) // not written: report the change again next time
	}
}

// markAllStale marks every point stale, unless they already are.
func (p *Poller) markAllStale() {
	if p.allStale {
		return
	}
	p.allStale = true
	p.sink.Quality(p.ch.ID, true, p.allPoints)
}

// put decodes a response and queues the sample.
func (p *Poller) put(t *poll.Task, payload []byte, now time.Time) {
	if len(t.Decoders) == 0 {
		return
	}
	smp := p.sink.NewSample()
	smp.Channel = p.ch.ID
	smp.Received = now
	var bad int
	smp.Pairs, p.scratch, bad = t.Decode(payload, p.scratch, smp.Pairs)
	p.st.decodeErrors += uint64(bad)
	if !p.sink.Put(smp) {
		p.st.dropped++
	}
}

// read runs a read request and returns its payload as the plan's decoders
// expect it: registers big-endian, two bytes each, or bits packed LSB first.
// The payload is valid until the next request.
func (p *Poller) read(r *rtu.Request) ([]byte, result, uint8, error) {
	p.logRequest(r)
	_ = p.client.SetUnitId(r.Slave)
	var (
		payload []byte
		bits    []bool
		err     error
	)
	switch r.Function {
	case rtu.ReadCoils:
		bits, err = p.client.ReadCoils(r.Address, r.Quantity)
	case rtu.ReadDiscreteInputs:
		bits, err = p.client.ReadDiscreteInputs(r.Address, r.Quantity)
	case rtu.ReadHoldingRegisters:
		payload, err = p.client.ReadRawBytes(r.Address, 2*r.Quantity, mb.HOLDING_REGISTER)
	case rtu.ReadInputRegisters:
		payload, err = p.client.ReadRawBytes(r.Address, 2*r.Quantity, mb.INPUT_REGISTER)
	default:
		return nil, resInvalid, 0, fmt.Errorf("function %d is not a read", r.Function)
	}
	if err == nil && bits != nil {
		p.payload = packBits(p.payload, bits)
		payload = p.payload
	}
	res, code := classify(err)
	p.logResult(r, res, code, payload)
	return payload, res, code, err
}

// write runs a write request (FC 5, 6, 15 or 16).
func (p *Poller) write(r *rtu.Request) (result, uint8, error) {
	if err := r.Validate(); err != nil || !rtu.IsWrite(r.Function) {
		if err == nil {
			err = fmt.Errorf("function %d is not a write", r.Function)
		}
		return resInvalid, 0, err
	}
	p.logRequest(r)
	_ = p.client.SetUnitId(r.Slave)
	var err error
	switch r.Function {
	case rtu.WriteSingleCoil:
		err = p.client.WriteCoil(r.Address, r.Data[0] == 0xFF)
	case rtu.WriteSingleRegister:
		err = p.client.WriteRegister(r.Address, uint16(r.Data[0])<<8|uint16(r.Data[1]))
	case rtu.WriteMultipleCoils:
		p.bools = unpackBits(p.bools, r.Data, int(r.Quantity))
		err = p.client.WriteCoils(r.Address, p.bools)
	case rtu.WriteMultipleRegisters:
		p.regs = registers(p.regs, r.Data)
		err = p.client.WriteRegisters(r.Address, p.regs)
	}
	res, code := classify(err)
	p.logResult(r, res, code, nil)
	return res, code, err
}

func (p *Poller) logRequest(r *rtu.Request) {
	p.pdu = appendRequestPDU(p.pdu[:0], r)
	p.st.bytesOut += uint64(len(p.pdu) + p.overhead)
	p.addFrame(framelog.TX)
}

func (p *Poller) logResult(r *rtu.Request, res result, code uint8, payload []byte) {
	switch res {
	case resOK:
		p.pdu = appendResponsePDU(p.pdu[:0], r, payload)
	case resException:
		p.pdu = appendExceptionPDU(p.pdu[:0], r, code)
	default:
		return
	}
	p.st.bytesIn += uint64(len(p.pdu) + p.overhead)
	p.addFrame(framelog.RX)
}

func (p *Poller) addFrame(dir string) {
	if p.frames == nil {
		return
	}
	p.frames.Add(time.Now(), dir, FrameKind, p.pdu)
	p.framesDirty = true
}

// command executes one control command and reports its outcome. It returns
// a reason when the connection was lost meanwhile.
func (p *Poller) command(c *contract.Command) string {
	if c.Expired(time.Now()) {
		p.report(c, contract.Outcome{Status: contract.Expired, Message: "deadline passed before the command could be sent"})
		return ""
	}
	w, err := p.plan.Write(c.Point, c.Value)
	if err != nil {
		p.report(c, contract.Outcome{Status: contract.Invalid, Message: err.Error()})
		return ""
	}
	req := w.Req
	if w.ReadFirst {
		payload, res, code, err := p.read(&req)
		if res != resOK {
			o, lost := p.outcome(req.Slave, res, code, err)
			p.report(c, o)
			return lost
		}
		p.answered(req.Slave)
		if req, err = w.Complete(payload); err != nil {
			p.report(c, contract.Outcome{Status: contract.Failed, Message: "read-modify-write: " + err.Error()})
			return ""
		}
		if c.Expired(time.Now()) { // the read took the rest of its time: never write late
			p.report(c, contract.Outcome{Status: contract.Expired, Message: "deadline passed before the write could be sent"})
			return ""
		}
	}
	res, code, err := p.write(&req)
	o, lost := p.outcome(req.Slave, res, code, err)
	p.report(c, o)
	if o.Status != contract.OK {
		p.log.Info("modbus control failed", "command", c.ID, "point", c.Point, "value", c.Value, "status", o.Status, "message", o.Message)
	}
	return lost
}

// outcome turns a request's result into a command outcome, updating the
// slave's health; lost is a reason when the connection failed.
func (p *Poller) outcome(slave uint8, res result, code uint8, err error) (o contract.Outcome, lost string) {
	now := time.Now()
	switch res {
	case resOK:
		p.answered(slave)
		return contract.Outcome{Status: contract.OK}, ""
	case resException:
		p.st.exceptions++
		p.exception(slave, code, now)
		return contract.Outcome{Status: contract.Exception, Code: code,
			Message: "exception " + strconv.Itoa(int(code)) + " (" + rtu.ExceptionText(code) + ")"}, ""
	case resTimeout:
		p.st.timeouts++
		p.timedOut(slave, now)
		return contract.Outcome{Status: contract.Timeout, Message: "no answer from slave " + strconv.Itoa(int(slave)) + " within " + p.timeout.String()}, p.deadLink()
	case resCRC:
		p.st.crcErrors++
		p.failStreak++
		return contract.Outcome{Status: contract.Failed, Message: err.Error()}, p.deadLink()
	case resMismatch:
		p.st.mismatches++
		p.failStreak++
		return contract.Outcome{Status: contract.Failed, Message: "bad answer: " + err.Error()}, p.deadLink()
	case resInvalid:
		return contract.Outcome{Status: contract.Invalid, Message: err.Error()}, ""
	}
	r := lostReason(err)
	return contract.Outcome{Status: contract.Failed, Message: r}, r
}

// writeStatus queues the channel's status hash.
func (p *Poller) writeStatus(now time.Time, online bool, reason string) {
	st := &p.st
	on := "0"
	if online {
		on = "1"
	}
	b := p.sink.B().Hset().Key(keys.ChannelStatus(p.ch.ID)).FieldValue().
		FieldValue("online", on).
		FieldValue("listener", Listener).
		FieldValue("profile", Listener).
		FieldValue("remote", p.ch.URL).
		FieldValue("template", p.ch.Template).
		FieldValue("connected_at", ms(p.connectedAt)).
		FieldValue("polls_ok", u(st.pollsOK)).
		FieldValue("timeouts", u(st.timeouts)).
		FieldValue("crc_errors", u(st.crcErrors)).
		FieldValue("exceptions", u(st.exceptions)).
		FieldValue("mismatches", u(st.mismatches)).
		FieldValue("bytes_in", u(st.bytesIn)).
		FieldValue("bytes_out", u(st.bytesOut)).
		FieldValue("decode_errors", u(st.decodeErrors)).
		FieldValue("dropped", u(st.dropped)).
		FieldValue("connects", u(st.connects)).
		FieldValue("connect_failures", u(st.connectFailures)).
		FieldValue("unreachable_slaves", slaveList(p.health.Unreachable(now))).
		FieldValue("controls_ok", u(st.controls)).
		FieldValue("controls_failed", u(st.controlsFailed)).
		FieldValue("updated_at", ms(now))
	if !online {
		b = b.FieldValue("disconnected_at", ms(now)).FieldValue("disconnect_reason", reason)
	}
	p.sink.Do(b.Build())
}

// report records a command's outcome and counts it.
func (p *Poller) report(c *contract.Command, o contract.Outcome) {
	if o.Status == contract.OK {
		p.st.controls++
	} else {
		p.st.controlsFailed++
	}
	p.rep.Report(c, o)
}

func slaveList(ids []uint8) string {
	if len(ids) == 0 {
		return ""
	}
	var sb strings.Builder
	for i, id := range ids {
		if i > 0 {
			sb.WriteByte(',')
		}
		sb.WriteString(strconv.Itoa(int(id)))
	}
	return sb.String()
}

func ms(t time.Time) string {
	if t.IsZero() {
		return "0"
	}
	return strconv.FormatInt(t.UnixMilli(), 10)
}

func u(v uint64) string { return strconv.FormatUint(v, 10) }
