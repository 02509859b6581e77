// Package channel is the logic every comsrv channel shares, whatever carries
// its requests: a DTU link (comsrv/dtu) or a Modbus client (comsrv/modbus).
//
// A Core owns one channel's counters, slave health, quality marks, frame
// log, status hash, connection events and poll schedule. A transport keeps
// only what is its own (a socket, a codec and framing; or a library client
// and reconnects) and tells the Core what happened with verbs:
//
//	Up, Down, ConnectFailed      the link came up, went down, could not be opened
//	Response, Exception, Timeout a request got an answer, an exception, or nothing
//	CRCError, Mismatch           an answer that was corrupt or did not fit
//	Heartbeat                    the device sent a heartbeat
//	Tick                         time passed: refresh the status, flush frames
//
// and asks it what to send next (Due, Next). The Core decides what every
// outcome means for the channel — an exception 0x0B ("gateway target device
// failed to respond") is a timeout of that slave on every transport, a slave
// in cool-down is skipped and counted on every transport — so the
// transports cannot drift apart.
//
// A Core is used by its transport's goroutine only.
package channel

import (
	"log/slog"
	"strconv"
	"strings"
	"time"

	"github.com/voltedge/voltedge/comsrv/control"
	"github.com/voltedge/voltedge/comsrv/framelog"
	"github.com/voltedge/voltedge/comsrv/health"
	"github.com/voltedge/voltedge/comsrv/poll"
	"github.com/voltedge/voltedge/comsrv/sink"
	"github.com/voltedge/voltedge/internal/contract"
	"github.com/voltedge/voltedge/internal/rtu"
)

// Settings are the channel settings a Core reads. The configuration fills
// every one of them when it is loaded.
type Settings struct {
	BackoffAfter    int           // consecutive timeouts before a slave is skipped
	BackoffCooldown time.Duration // how long a slave is skipped
	StatusInterval  time.Duration // how often the status hash is refreshed
	FramesKeep      int           // frame log entries kept in Redis
	FramesFlush     time.Duration // how often the frame log is written
}

// Identity is what the status hash and the connection events say of a
// channel's current connection.
type Identity struct {
	Listener     string // DTU listener name, or "modbus"
	Profile      string // DTU profile, or "modbus"
	Registration string // DTU registration id ("" for Modbus channels)
	Remote       string // the device's address, or the Modbus URL
	Template     string
	// Name is the channel's configured name. The status field is left out
	// (and deleted) when it is "" or the channel id, which the configuration
	// gives a channel without a name.
	Name string
}

// Counters are one channel's counters, written to its status hash. They
// live as long as the channel (a DTU's counters carry over its reconnects),
// and are owned by the goroutine of the channel's current transport.
type Counters struct {
	PollsOK, Timeouts, CRCErrors, Exceptions, Mismatches uint64
	BytesIn, BytesOut, Garbage, Heartbeats               uint64
	DecodeErrors, Dropped, Skipped                       uint64
	Connects, ConnectFailures                            uint64
	ControlsOK, ControlsFailed                           uint64
	Messages, MessagesDropped, Forwarded                 uint64
	Replacements                                         uint64 // DTU links replaced by a new connection with the same id
}

// Core is one channel's shared logic. Create it with New.
type Core struct {
	id      string
	plan    *poll.Plan
	st      *Counters
	set     Settings
	sink    *sink.Sink
	lane    *sink.Lane
	rep     control.Reporter
	log     *slog.Logger
	health  *health.Slaves
	frames  *framelog.Log
	sched   schedule
	ident   Identity
	points  []string // every polled point of the channel
	scratch []byte   // decode buffer

	online      bool
	allStale    bool // every point is marked stale in Redis
	connectedAt time.Time
	lastHB      time.Time
	nextStatus  time.Time
	lastReason  string // why the channel is offline
	epoch       uint64 // the sink's epoch when this core last wrote its whole state
	// nameCleared: the status field name was deleted for a channel without
	// a name (since the last Up).
	nameCleared bool
}

// New makes the core of channel id polled with plan. st may carry counters
// over from an earlier connection (nil starts at zero); rep receives the
// outcomes of control commands.
func New(id string, plan *poll.Plan, st *Counters, set Settings, sk *sink.Sink, rep control.Reporter, log *slog.Logger) *Core {
	if st == nil {
		st = &Counters{}
	}
	c := &Core{
		id: id, plan: plan, st: st, set: set, sink: sk, rep: rep,
		log:     log,
		lane:    sk.Lane(id),
		health:  health.New(set.BackoffAfter, set.BackoffCooldown),
		frames:  framelog.New(set.FramesKeep, set.FramesFlush),
		scratch: make([]byte, 0, 16*plan.MaxPoints+16),
	}
	for _, s := range plan.Slaves {
		c.points = append(c.points, plan.SlavePoints[s]...)
	}
	c.sched.init(id, plan)
	c.epoch = sk.Epoch()
	return c
}

// ID is the channel id.
func (c *Core) ID() string { return c.id }

// Plan is the channel's polling plan.
func (c *Core) Plan() *poll.Plan { return c.plan }

// Counters are the channel's counters, for the transport's own counts
// (bytes, heartbeats, messages).
func (c *Core) Counters() *Counters { return c.st }

// Online reports whether the channel's link is up.
func (c *Core) Online() bool { return c.online }

// LastHeartbeat is when the device last sent a heartbeat (or came up).
func (c *Core) LastHeartbeat() time.Time { return c.lastHB }

// Start marks every point stale unless it already is: the values in Redis
// are whatever an earlier run left, old until the devices answer.
func (c *Core) Start() { c.markAllStale() }

// Up records that the link came up at now. Every slave gets a fresh start;
// its values stay stale until it answers. beats tells whether the device
// sends heartbeats: without them, heartbeat-triggered tasks run on their
// interval.
func (c *Core) Up(now time.Time, ident Identity, beats bool) {
	c.ident = ident
	c.nameCleared = false
	c.online = true
	c.connectedAt, c.lastHB = now, now
	c.lastReason = ""
	c.st.Connects++
	c.health = health.New(c.set.BackoffAfter, c.set.BackoffCooldown)
	c.health.MarkAllStale(c.plan.Slaves)
	c.markAllStale()
	c.sched.start(now, beats)
	c.writeStatus(now)
	c.nextStatus = now.Add(c.set.StatusInterval)
	c.event(contract.EventOnline, "", now)
}

// Down records that the link went down at now for reason: every point is
// stale, the frame log is flushed, the status hash says offline and an
// offline event is written.
func (c *Core) Down(now time.Time, reason string) {
	c.online = false
	c.lastReason = reason
	c.markAllStale()
	c.FlushFrames(now)
	c.writeStatus(now)
	c.event(contract.EventOffline, reason, now)
}

// ConnectFailed records a failed attempt to open the link: the status hash
// is refreshed, and a connect_failed event is written when the reason
// differs from the last one.
func (c *Core) ConnectFailed(now time.Time, ident Identity, reason string) {
	c.ident = ident
	c.st.ConnectFailures++
	if reason != c.lastReason {
		c.event(contract.EventConnectFailed, reason, now)
	}
	c.lastReason = reason
	c.writeStatus(now)
}

// OfflineReason is why the channel is offline ("" while online or before
// the first attempt).
func (c *Core) OfflineReason() string { return c.lastReason }

// Heartbeat records a heartbeat at now and queues the heartbeat-triggered tasks.
func (c *Core) Heartbeat(now time.Time) {
	c.lastHB = now
	c.st.Heartbeats++
	c.sched.heartbeat()
}

// Response records a valid answer to poll task i and queues its values.
func (c *Core) Response(now time.Time, i int, payload []byte) {
	t := &c.plan.Tasks[i]
	c.Answered(t.Req.Slave)
	c.st.PollsOK++
	if len(t.Decoders) == 0 {
		return
	}
	smp := c.lane.NewSample(now)
	var bad int
	smp.Pairs, c.scratch, bad = t.Decode(payload, c.scratch, smp.Pairs)
	c.st.DecodeErrors += uint64(bad)
	if !c.lane.Values(smp) {
		c.st.Dropped++
	}
}

// Answered records a valid answer of slave (to a poll or a control): its
// values are good again if they were stale.
func (c *Core) Answered(slave uint8) {
	if c.health.OK(slave) {
		c.quality(slave, false)
	}
}

// Exception records an exception answer of slave. "Gateway target device
// failed to respond" (0x0B) means the slave behind a gateway is silent: it
// counts as a timeout of that slave, although the link itself is fine.
func (c *Core) Exception(now time.Time, slave, code uint8) {
	c.st.Exceptions++
	if code == rtu.ExGatewayTargetNoResponse {
		c.slaveSilent(slave, now)
		return
	}
	c.Answered(slave)
}

// Timeout records a request to slave that got no answer in time.
func (c *Core) Timeout(now time.Time, slave uint8) {
	c.st.Timeouts++
	c.slaveSilent(slave, now)
}

// CRCError records an answer with a bad CRC.
func (c *Core) CRCError() { c.st.CRCErrors++ }

// Mismatch records an answer that does not fit its request.
func (c *Core) Mismatch() { c.st.Mismatches++ }

func (c *Core) slaveSilent(slave uint8, now time.Time) {
	if c.health.Timeout(slave, now) {
		c.log.Warn("slave not answering; skipped during cool-down", "channel", c.id, "slave", slave, "cooldown", c.set.BackoffCooldown)
		c.quality(slave, true)
	}
}

// Skip reports whether slave is cooling down at now (a retry to it is pointless).
func (c *Core) Skip(slave uint8, now time.Time) bool { return c.health.Skip(slave, now) }

// Due queues the timer tasks due at now and returns when the next one is.
func (c *Core) Due(now time.Time) time.Time { return c.sched.due(now) }

// Next takes the next queued poll task, passing over (and counting) tasks
// of slaves in cool-down; ok is false when none is queued.
func (c *Core) Next(now time.Time) (task int, ok bool) {
	for {
		i, ok := c.sched.pop()
		if !ok {
			return 0, false
		}
		if c.health.Skip(c.plan.Tasks[i].Req.Slave, now) {
			c.st.Skipped++
			continue
		}
		return i, true
	}
}

// Queued reports whether poll tasks wait to be sent.
func (c *Core) Queued() bool { return c.sched.queued() }

// Report records a command's outcome and counts it.
func (c *Core) Report(cmd *contract.Command, o contract.Outcome) {
	if o.Status == contract.OK {
		c.st.ControlsOK++
	} else {
		c.st.ControlsFailed++
	}
	if c.rep != nil {
		c.rep.Report(cmd, o)
	}
}

// Frame adds a frame to the frame log.
func (c *Core) Frame(now time.Time, dir, kind string, b []byte) { c.frames.Add(now, dir, kind, b) }

// Tick refreshes the status hash and flushes the frame log when they are
// due at now, and returns when the next of them is due.
func (c *Core) Tick(now time.Time) time.Time {
	if e := c.sink.Epoch(); e != c.epoch {
		c.epoch = e
		c.restate()
		c.nextStatus = now // the status hash was lost too
	}
	if !now.Before(c.nextStatus) {
		c.writeStatus(now)
		c.nextStatus = now.Add(c.set.StatusInterval)
	}
	if c.frames.Due(now) {
		c.FlushFrames(now)
	}
	wake := c.nextStatus
	if at, ok := c.frames.Next(); ok && at.Before(wake) {
		wake = at
	}
	return wake
}

// FlushFrames writes the frame log entries gathered since the last flush.
func (c *Core) FlushFrames(now time.Time) {
	if e := c.frames.Take(now); len(e) > 0 {
		c.sink.Frames(c.id, e, c.frames.Keep())
	}
}

// quality marks the points of slave stale or good (the sink never drops a mark).
func (c *Core) quality(slave uint8, stale bool) {
	if !stale {
		c.allStale = false
	}
	c.lane.Quality(stale, c.plan.SlavePoints[slave])
}

// restate writes again the quality marks Redis lost when it restarted
// without persistence: absent marks would read as good.
func (c *Core) restate() {
	if c.allStale {
		c.lane.Quality(true, c.points)
		return
	}
	for _, s := range c.plan.Slaves {
		if c.health.Stale(s) {
			c.lane.Quality(true, c.plan.SlavePoints[s])
		}
	}
}

// markAllStale marks every point stale, unless they already are.
func (c *Core) markAllStale() {
	if c.allStale {
		return
	}
	c.lane.Quality(true, c.points)
	c.allStale = true
}

func (c *Core) event(typ, reason string, now time.Time) {
	c.sink.Event(sink.Event{Type: typ, Channel: c.id, Listener: c.ident.Listener, Registration: c.ident.Registration, Remote: c.ident.Remote, Reason: reason, At: now})
}

// writeStatus queues the channel's status hash: the same fields for every
// transport.
func (c *Core) writeStatus(now time.Time) {
	st := c.st
	on := "0"
	if c.online {
		on = "1"
	}
	f := []string{
		contract.ChannelOnline, on,
		contract.ChannelListener, c.ident.Listener,
		contract.ChannelProfile, c.ident.Profile,
		contract.ChannelRegistration, c.ident.Registration,
		contract.ChannelRemote, c.ident.Remote,
		contract.ChannelTemplate, c.ident.Template,
		contract.ChannelConnectedAt, ms(c.connectedAt),
		contract.ChannelLastHeartbeat, ms(c.lastHB),
		contract.ChannelPollsOK, u(st.PollsOK),
		contract.ChannelTimeouts, u(st.Timeouts),
		contract.ChannelCRCErrors, u(st.CRCErrors),
		contract.ChannelExceptions, u(st.Exceptions),
		contract.ChannelMismatches, u(st.Mismatches),
		contract.ChannelBytesIn, u(st.BytesIn),
		contract.ChannelBytesOut, u(st.BytesOut),
		contract.ChannelGarbageBytes, u(st.Garbage),
		contract.ChannelHeartbeats, u(st.Heartbeats),
		contract.ChannelDecodeErrors, u(st.DecodeErrors),
		contract.ChannelDropped, u(st.Dropped),
		contract.ChannelConnects, u(st.Connects),
		contract.ChannelReplacements, u(st.Replacements),
		contract.ChannelConnectFailures, u(st.ConnectFailures),
		contract.ChannelSkippedPolls, u(st.Skipped),
		contract.ChannelUnreachableSlaves, slaveList(c.health.Unreachable(now)),
		contract.ChannelControlsOK, u(st.ControlsOK),
		contract.ChannelControlsFailed, u(st.ControlsFailed),
		contract.ChannelMessages, u(st.Messages),
		contract.ChannelMessagesDropped, u(st.MessagesDropped),
		contract.ChannelForwarded, u(st.Forwarded),
		contract.ChannelUpdatedAt, ms(now),
	}
	if c.ident.Name != "" && c.ident.Name != c.id {
		f = append(f, contract.ChannelName, c.ident.Name)
	} else if !c.nameCleared {
		c.sink.ClearStatusFields(c.id, contract.ChannelName) // a name removed by a reload
		c.nameCleared = true
	}
	if !c.online {
		f = append(f, contract.ChannelDisconnectedAt, ms(now), contract.ChannelDisconnectReason, c.lastReason)
	}
	c.sink.Status(c.id, f)
}

func slaveList(ids []uint8) string {
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
