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
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	mb "github.com/simonvetter/modbus"

	"github.com/voltedge/voltedge/comsrv/channel"
	"github.com/voltedge/voltedge/comsrv/config"
	"github.com/voltedge/voltedge/comsrv/control"
	"github.com/voltedge/voltedge/comsrv/framelog"
	"github.com/voltedge/voltedge/comsrv/poll"
	"github.com/voltedge/voltedge/comsrv/sink"
	"github.com/voltedge/voltedge/internal/contract"
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

// Poller polls one Modbus channel. Create it with New, run it with Run.
type Poller struct {
	ch   *config.Channel
	plan *poll.Plan
	cfg  *config.Config
	core *channel.Core
	rep  control.Reporter
	reg  control.Registry
	log  *slog.Logger

	scheme   string
	overhead int // bytes an ADU adds to a PDU: MBAP header, or unit id and CRC
	timeout  time.Duration
	retries  int
	minWait  time.Duration
	maxWait  time.Duration

	inbox    *control.Inbox
	stop     chan struct{}
	stopOnce sync.Once
	done     chan struct{}
	mu       sync.Mutex // guards closed against Deliver
	closed   bool
	online   atomic.Bool

	// Owned by the Run goroutine.
	client       *mb.ModbusClient
	failStreak   int  // requests in a row that got no valid answer
	connAnswered bool // the current connection got a valid answer
	timer        *time.Timer
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
		ch: ch, plan: plan, cfg: cfg, rep: rep, reg: reg,
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
	// The configuration filled every default when it was loaded.
	p.timeout = ch.Timeout.Duration
	p.retries = m.Retries
	p.minWait, p.maxWait = m.ReconnectMin.Duration, m.ReconnectMax.Duration
	p.core = channel.New(ch.ID, plan, nil, channel.Settings{
		BackoffAfter:    m.BackoffAfter,
		BackoffCooldown: m.BackoffCooldown.Duration,
		StatusInterval:  ch.StatusInterval.Duration,
		FramesKeep:      cfg.Frames.Keep,
		FramesFlush:     cfg.Frames.Flush.Duration,
	}, sk, rep, p.log)
	return p
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
	p.core.Start()
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

// detach stops deliveries and answers what is still queued.
func (p *Poller) detach() {
	p.mu.Lock()
	p.closed = true
	p.mu.Unlock()
	p.reg.Detach(p.ch.ID, p)
	p.inbox.Drain(p.rep, contract.Outcome{Status: contract.Failed, Message: "channel " + p.ch.ID + " stopped"})
	p.core.FlushFrames(time.Now())
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
		c.Speed = uint(p.ch.Baud)
		c.DataBits = uint(p.ch.DataBits)
		c.StopBits = uint(p.ch.StopBits)
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

// identity is what the status hash and events say of the channel.
func (p *Poller) identity() channel.Identity {
	return channel.Identity{Listener: Listener, Profile: Listener, Remote: p.ch.URL, Template: p.ch.Template, Name: p.ch.Name}
}

// connectFailed records a failed connection attempt: one log line and one
// status update per attempt (attempts are spaced by the back-off), and a
// connect_failed event when the reason differs from the last one.
func (p *Poller) connectFailed(err error, retryIn time.Duration) {
	p.core.ConnectFailed(time.Now(), p.identity(), "connect: "+err.Error())
	p.log.Warn("modbus connect failed", "err", err, "attempt", p.core.Counters().ConnectFailures, "retry_in", retryIn)
}

func (p *Poller) onOnline() {
	p.failStreak = 0
	p.connAnswered = false
	p.online.Store(true)
	p.core.Up(time.Now(), p.identity(), false)
	p.log.Info("modbus online", "timeout", p.timeout)
}

func (p *Poller) onOffline(reason string) {
	_ = p.client.Close()
	p.online.Store(false)
	p.core.Down(time.Now(), reason)
	p.log.Info("modbus offline", "reason", reason)
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
		p.core.Report(c, contract.Outcome{Status: contract.Offline, Message: "channel " + p.ch.ID + " is not connected: " + p.core.OfflineReason()})
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
// and returns why it ended. Commands go ahead of queued polls.
func (p *Poller) serve(ctx context.Context) string {
	for {
		if r := p.stopReason(ctx); r != "" {
			return r
		}
		select {
		case c := <-p.inbox.C:
			if r := p.command(c); r != "" {
				return r
			}
			continue
		default:
		}
		now := time.Now()
		wake := earlier(p.core.Due(now), p.core.Tick(now))
		if i, ok := p.core.Next(now); ok {
			if r := p.poll(i); r != "" {
				return r
			}
			continue
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

func earlier(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}

// poll runs task i, with retries after a timeout or a bad answer. It returns
// a reason when the connection must be closed.
func (p *Poller) poll(i int) string {
	slave := p.plan.Tasks[i].Req.Slave
	for attempt := 0; ; attempt++ {
		payload, res, code, err := p.read(&p.plan.Tasks[i].Req)
		now := time.Now()
		switch res {
		case resOK:
			p.linkAnswered()
			p.core.Response(now, i, payload)
			return ""
		case resException:
			p.linkAnswered()
			p.core.Exception(now, slave, code)
			return ""
		case resTimeout:
			p.failStreak++
			p.core.Timeout(now, slave)
		case resCRC:
			p.failStreak++
			p.core.CRCError()
		case resMismatch:
			p.failStreak++
			p.core.Mismatch()
		case resInvalid:
			p.log.Error("modbus request refused by the client", "task", p.plan.Tasks[i].Name, "err", err)
			return ""
		case resIO:
			return lostReason(err)
		}
		if r := p.deadLink(); r != "" {
			return r
		}
		if attempt >= p.retries || p.core.Skip(slave, now) {
			return ""
		}
	}
}

// linkAnswered records that the connection carried a valid answer (a
// response or an exception, even one from a gateway about a silent slave).
func (p *Poller) linkAnswered() {
	p.failStreak = 0
	p.connAnswered = true
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
	p.core.Counters().BytesOut += uint64(len(p.pdu) + p.overhead)
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
	p.core.Counters().BytesIn += uint64(len(p.pdu) + p.overhead)
	p.addFrame(framelog.RX)
}

func (p *Poller) addFrame(dir string) {
	p.core.Frame(time.Now(), dir, FrameKind, p.pdu)
}

// command executes one control command and reports its outcome. It returns
// a reason when the connection was lost meanwhile.
func (p *Poller) command(c *contract.Command) string {
	if c.Expired(time.Now()) {
		p.core.Report(c, contract.Outcome{Status: contract.Expired, Message: control.MsgExpired})
		return ""
	}
	w, err := p.plan.Write(c.Point, c.Value)
	if err != nil {
		p.core.Report(c, contract.Outcome{Status: contract.Invalid, Message: err.Error()})
		return ""
	}
	if err := control.MarkSent(p.rep, c); err != nil {
		p.core.Report(c, contract.Outcome{Status: contract.Failed, Message: err.Error()})
		return ""
	}
	if c.Expired(time.Now()) { // marking took a Redis round trip
		p.core.Report(c, contract.Outcome{Status: contract.Expired, Message: control.MsgExpired})
		return ""
	}
	req := w.Req
	if w.ReadFirst {
		payload, res, code, err := p.read(&req)
		if res != resOK {
			o, lost := p.outcome(req.Slave, res, code, err)
			p.core.Report(c, o)
			return lost
		}
		p.linkAnswered()
		p.core.Answered(req.Slave)
		if req, err = w.Complete(payload); err != nil {
			p.core.Report(c, contract.Outcome{Status: contract.Failed, Message: "read-modify-write: " + err.Error()})
			return ""
		}
		if c.Expired(time.Now()) { // the read took the rest of its time: never write late
			p.core.Report(c, contract.Outcome{Status: contract.Expired, Message: "deadline passed before the write could be sent"})
			return ""
		}
	}
	res, code, err := p.write(&req)
	o, lost := p.outcome(req.Slave, res, code, err)
	p.core.Report(c, o)
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
		p.linkAnswered()
		p.core.Answered(slave)
		return contract.Outcome{Status: contract.OK}, ""
	case resException:
		p.linkAnswered()
		p.core.Exception(now, slave, code)
		return contract.Outcome{Status: contract.Exception, Code: code,
			Message: "exception " + strconv.Itoa(int(code)) + " (" + rtu.ExceptionText(code) + ")"}, ""
	case resTimeout:
		p.failStreak++
		p.core.Timeout(now, slave)
		return contract.Outcome{Status: contract.Timeout, Message: "no answer from slave " + strconv.Itoa(int(slave)) + " within " + p.timeout.String()}, p.deadLink()
	case resCRC:
		p.failStreak++
		p.core.CRCError()
		return contract.Outcome{Status: contract.Failed, Message: err.Error()}, p.deadLink()
	case resMismatch:
		p.failStreak++
		p.core.Mismatch()
		return contract.Outcome{Status: contract.Failed, Message: "bad answer: " + err.Error()}, p.deadLink()
	case resInvalid:
		return contract.Outcome{Status: contract.Invalid, Message: err.Error()}, ""
	}
	r := lostReason(err)
	return contract.Outcome{Status: contract.Failed, Message: r}, r
}
