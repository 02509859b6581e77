package control

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/redis/rueidis"

	"github.com/voltedge/voltedge/internal/contract"
	"github.com/voltedge/voltedge/internal/keys"
	"github.com/voltedge/voltedge/internal/logging"
	"github.com/voltedge/voltedge/internal/lualib"
	"github.com/voltedge/voltedge/internal/redisconn"
	"github.com/voltedge/voltedge/scripts"
)

// Defaults of Options.
const (
	DefaultStartupGrace  = 5 * time.Second
	DefaultSweepInterval = time.Second
	DefaultResultTTL     = time.Hour
	DefaultResultsMaxLen = 10000
	DefaultBatch         = 16
	// MaxBatch is the most commands one take_controls call returns.
	MaxBatch = 100
)

// Limits of the dispatcher's own queues.
const (
	// reportQueue is how many outcomes wait for Redis at most; beyond it
	// Report drops (and counts) them.
	reportQueue = 1024
	// maxWoken bounds the channels waiting to be drained; beyond it a wake
	// turns into a full sweep of cmd:pending.
	maxWoken = 1 << 16
	// maxMessage is the longest outcome message control_result accepts.
	maxMessage = 512
	// callTimeout bounds one Redis call of the dispatcher.
	callTimeout = 5 * time.Second
	// reportDrain bounds how long Run keeps writing queued outcomes after its context ends.
	reportDrain = 3 * time.Second
	// reportAttempts is how often an outcome is tried before it is given up.
	reportAttempts = 3
	// failLogInterval bounds how often a repeated failure is logged.
	failLogInterval = 10 * time.Second
)

// Messages of the outcomes the dispatcher reports itself.
const (
	MsgOffline = "channel not connected"
	MsgExpired = "deadline passed before the command could be sent"
	MsgBusy    = "link busy"
	// MsgRestarted is the message of an Unknown outcome: the command may
	// have reached its device when comsrv stopped without recording it.
	MsgRestarted = "comsrv restarted while it was in flight"
)

// Options tunes a Dispatcher. Zero values take the defaults.
type Options struct {
	// StartupGrace is how long after Run starts the commands of channels
	// without a target stay queued (their DTUs may still be reconnecting);
	// after it they are answered Offline. Default 5s; negative means none.
	StartupGrace time.Duration
	// SweepInterval is how often cmd:pending is read besides the pub/sub
	// wake-ups (lost messages, busy links, the end of the grace). Default 1s.
	SweepInterval time.Duration
	// ResultTTL is how long cmd:result:{id} is kept. Default 1h.
	ResultTTL time.Duration
	// ResultsMaxLen is the approximate cap of the cmd:results stream. Default 10000.
	ResultsMaxLen int
	// Batch is how many commands one take_controls call takes (1..100). Default 16.
	Batch int
}

func (o Options) withDefaults() Options {
	if o.StartupGrace == 0 {
		o.StartupGrace = DefaultStartupGrace
	}
	if o.StartupGrace < 0 {
		o.StartupGrace = 0
	}
	if o.SweepInterval <= 0 {
		o.SweepInterval = DefaultSweepInterval
	}
	if o.ResultTTL < time.Millisecond {
		o.ResultTTL = DefaultResultTTL
	}
	if o.ResultsMaxLen <= 0 {
		o.ResultsMaxLen = DefaultResultsMaxLen
	}
	if o.Batch <= 0 {
		o.Batch = DefaultBatch
	}
	o.Batch = min(o.Batch, MaxBatch)
	return o
}

// Stats counts what a Dispatcher did since it was made.
type Stats struct {
	Sweeps         uint64 // reads of cmd:pending
	Taken          uint64 // commands taken from the queues
	Delivered      uint64 // commands handed to a target
	Busy           uint64 // commands a target refused (reported Failed "link busy")
	Requeued       uint64 // commands put back after a refusal, to be taken again
	Reported       uint64 // outcomes written to Redis
	ReportErrors   uint64 // outcomes Redis did not take after retries (logged)
	ReportsDropped uint64 // outcomes dropped because the report queue was full (logged)
	Unreadable     uint64 // queue entries that are not commands (logged with their text)
	RedisErrors    uint64 // failed take_controls, SMEMBERS, requeue, control_sent and recover_controls calls (logged)
	Marked         uint64 // commands marked as being written (control_sent)
	// The commands a previous comsrv left in flight, by what became of
	// them at start: put back in their queues, answered Expired, answered
	// Unknown (they may have been written).
	RecoveredRequeued, RecoveredExpired, RecoveredUnknown uint64
}

// report is one outcome waiting for Redis.
type report struct {
	c *contract.Command
	o contract.Outcome
}

// Dispatcher takes queued control commands from Redis and hands each to the
// Target attached for its channel; it is the Registry links attach to and
// the Reporter that records outcomes in cmd:result:{id} and cmd:results.
//
// It wakes a channel on its "cmd:{channel}" pub/sub message and, as pub/sub
// loses messages while a subscriber reconnects, also reads cmd:pending every
// SweepInterval. One goroutine drains the woken channels, one writes the
// outcomes and one keeps the subscription, on a dedicated connection taken
// from the client's blocking pool.
type Dispatcher struct {
	client rueidis.Client
	caller *lualib.Caller
	opt    Options
	log    *slog.Logger
	batch  string // opt.Batch as take_controls' argument
	ttl    string // opt.ResultTTL in ms
	maxlen string

	mu      sync.RWMutex
	targets map[string]Target

	wakeMu    sync.Mutex
	woken     map[string]struct{}
	order     []string            // woken channels in wake order
	busy      map[string]struct{} // channels whose target refused a command: left alone until the next periodic sweep
	sweepWant bool                // a sweep is due before the next drain
	signal    chan struct{}

	reports  chan report
	running  atomic.Bool
	graceEnd atomic.Int64 // Unix ns; 0 until Run starts

	fails *logging.Limited
	stats struct {
		sweeps, taken, delivered, busy, requeued, reported, reportErrors, reportsDropped, unreadable, redisErrors atomic.Uint64
		marked, recRequeued, recExpired, recUnknown                                                               atomic.Uint64
	}
}

// NewDispatcher makes a dispatcher that uses client; log may be nil
// (slog.Default()). Links may Attach and Report before Run starts.
func NewDispatcher(client rueidis.Client, opt Options, log *slog.Logger) *Dispatcher {
	if log == nil {
		log = slog.Default()
	}
	opt = opt.withDefaults()
	return &Dispatcher{
		client:  client,
		caller:  lualib.NewCaller(client, log),
		opt:     opt,
		log:     log,
		batch:   strconv.Itoa(opt.Batch),
		ttl:     strconv.FormatInt(opt.ResultTTL.Milliseconds(), 10),
		maxlen:  strconv.Itoa(opt.ResultsMaxLen),
		targets: make(map[string]Target),
		woken:   make(map[string]struct{}),
		busy:    make(map[string]struct{}),
		signal:  make(chan struct{}, 1),
		reports: make(chan report, reportQueue),
		fails:   logging.NewLimited(log, failLogInterval),
	}
}

// Attach implements Registry. The channel is woken, so that commands queued
// while it had no target (or a busy one) are delivered at once.
func (d *Dispatcher) Attach(channel string, t Target) {
	d.mu.Lock()
	d.targets[channel] = t
	d.mu.Unlock()
	d.wakeMu.Lock()
	delete(d.busy, channel)
	d.wakeMu.Unlock()
	d.wake(channel)
}

// Detach implements Registry.
func (d *Dispatcher) Detach(channel string, t Target) {
	d.mu.Lock()
	if cur, ok := d.targets[channel]; ok && cur == t {
		delete(d.targets, channel)
	}
	d.mu.Unlock()
}

func (d *Dispatcher) target(channel string) Target {
	d.mu.RLock()
	t := d.targets[channel]
	d.mu.RUnlock()
	return t
}

// Report implements Reporter. It queues the outcome and returns at once;
// when the queue is full the outcome is dropped, logged and counted.
func (d *Dispatcher) Report(c *contract.Command, o contract.Outcome) {
	select {
	case d.reports <- report{c: c, o: o}:
	default:
		d.stats.reportsDropped.Add(1)
		d.fails.Warn("control: result queue full, outcome not recorded",
			"id", c.ID, "channel", c.Channel, "status", string(o.Status))
	}
}

// Stats returns the counters.
func (d *Dispatcher) Stats() Stats {
	s := &d.stats
	return Stats{
		Sweeps: s.sweeps.Load(), Taken: s.taken.Load(), Delivered: s.delivered.Load(), Busy: s.busy.Load(),
		Requeued: s.requeued.Load(), Reported: s.reported.Load(), ReportErrors: s.reportErrors.Load(),
		ReportsDropped: s.reportsDropped.Load(), Unreadable: s.unreadable.Load(), RedisErrors: s.redisErrors.Load(),
		Marked: s.marked.Load(), RecoveredRequeued: s.recRequeued.Load(),
		RecoveredExpired: s.recExpired.Load(), RecoveredUnknown: s.recUnknown.Load(),
	}
}

// Run dispatches commands until ctx ends, then writes the outcomes still
// queued (for at most a few seconds) and returns once every goroutine it
// started has ended. Outcomes reported after Run returned are not written:
// cancel ctx after the links have ended. Run must be called once.
func (d *Dispatcher) Run(ctx context.Context) {
	if !d.running.CompareAndSwap(false, true) {
		d.log.Error("control: dispatcher started twice; the second Run returns at once")
		return
	}
	d.graceEnd.Store(time.Now().Add(d.opt.StartupGrace).UnixNano())
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		d.writeReports(ctx)
	}()
	go func() {
		defer wg.Done()
		d.subscribe(ctx)
	}()
	d.dispatch(ctx)
	wg.Wait()
}

// dispatch answers what a previous comsrv left in flight, then drains
// woken channels and sweeps cmd:pending until ctx ends.
func (d *Dispatcher) dispatch(ctx context.Context) {
	if !d.recoverInflight(ctx) {
		return
	}
	tick := time.NewTicker(d.opt.SweepInterval)
	defer tick.Stop()
	d.requestSweep()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			d.wakeMu.Lock()
			clear(d.busy) // busy links get another try
			d.wakeMu.Unlock()
			d.requestSweep()
		case <-d.signal:
		}
		d.wakeMu.Lock()
		sweep := d.sweepWant
		d.sweepWant = false
		d.wakeMu.Unlock()
		if sweep {
			d.sweep(ctx)
		}
		for ctx.Err() == nil {
			ch, ok := d.nextWoken()
			if !ok {
				break
			}
			if more := d.drain(ctx, ch); more {
				d.wake(ch) // more queued: again, after the other woken channels
			}
		}
	}
}

// recoverInflight calls recover_controls until it succeeds (or ctx ends,
// then it returns false): the commands a previous comsrv took and did not
// answer are answered Unknown when it had marked them sent, Expired past
// their deadline, and are put back in their queues otherwise. It must run
// before this dispatcher takes a command.
func (d *Dispatcher) recoverInflight(ctx context.Context) bool {
	var b redisconn.Backoff
	for ctx.Err() == nil {
		cctx, cancel := context.WithTimeout(ctx, callTimeout)
		n, err := d.caller.Fcall(cctx, scripts.FnRecoverControls, []string{d.ttl, d.maxlen}).AsIntSlice()
		cancel()
		if err == nil && len(n) == 4 {
			s := &d.stats
			s.recRequeued.Add(uint64(n[0]))
			s.recExpired.Add(uint64(n[1]))
			s.recUnknown.Add(uint64(n[2]))
			if n[0]+n[1]+n[2]+n[3] > 0 {
				d.log.Warn("control: commands left in flight by the previous comsrv", "key", keys.CommandInflight,
					"requeued", n[0], "expired", n[1], "unknown", n[2], "dropped", n[3])
			}
			return true
		}
		if err == nil {
			err = fmt.Errorf("%s returned %d counts, want 4", scripts.FnRecoverControls, len(n))
		}
		if ctx.Err() != nil {
			break
		}
		d.stats.redisErrors.Add(1)
		d.fails.Warn("control: recovery of the commands in flight failed; no command is taken until it succeeds",
			"key", keys.CommandInflight, "err", err)
		redisconn.Sleep(ctx, b.Next())
	}
	return false
}

// MarkSent records in Redis (control_sent) that c is about to be written to
// its device, once per command: should comsrv stop before its outcome is
// recorded, the next comsrv answers it Unknown instead of sending it again.
// A link calls it right before the first request of a command; on an error
// the command must not be sent (report it Failed). It blocks for one Redis
// call at most (callTimeout).
func (d *Dispatcher) MarkSent(c *contract.Command) error {
	if c.Sent {
		return nil
	}
	id, ok := contract.CommandID(c.ID)
	if !ok {
		return fmt.Errorf("mark command %q as sent: not a command id", c.ID)
	}
	ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
	defer cancel()
	if err := d.caller.Fcall(ctx, scripts.FnControlSent, []string{id}).Error(); err != nil {
		d.stats.redisErrors.Add(1)
		return fmt.Errorf("mark command %s as sent (%s): %w", id, scripts.FnControlSent, err)
	}
	d.stats.marked.Add(1)
	c.Sent = true
	return nil
}

// wake marks channel for draining.
func (d *Dispatcher) wake(channel string) {
	d.wakeMu.Lock()
	if _, ok := d.woken[channel]; !ok {
		if len(d.woken) < maxWoken {
			d.woken[channel] = struct{}{}
			d.order = append(d.order, channel)
		} else {
			d.sweepWant = true
		}
	}
	d.wakeMu.Unlock()
	d.notify()
}

// requestSweep asks for a read of cmd:pending before the next drain.
func (d *Dispatcher) requestSweep() {
	d.wakeMu.Lock()
	d.sweepWant = true
	d.wakeMu.Unlock()
	d.notify()
}

func (d *Dispatcher) notify() {
	select {
	case d.signal <- struct{}{}:
	default:
	}
}

func (d *Dispatcher) nextWoken() (string, bool) {
	d.wakeMu.Lock()
	defer d.wakeMu.Unlock()
	if len(d.order) == 0 {
		return "", false
	}
	for len(d.order) > 0 {
		ch := d.order[0]
		d.order[0] = ""
		d.order = d.order[1:]
		if len(d.order) == 0 {
			d.order = nil // let the backing array go
		}
		delete(d.woken, ch)
		if _, busy := d.busy[ch]; !busy {
			return ch, true
		}
	}
	return "", false
}

// sweep wakes every channel in cmd:pending.
func (d *Dispatcher) sweep(ctx context.Context) {
	d.stats.sweeps.Add(1)
	cctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	members, err := d.client.Do(cctx, d.client.B().Smembers().Key(keys.CommandPending).Build()).AsStrSlice()
	if err != nil {
		if ctx.Err() == nil {
			d.stats.redisErrors.Add(1)
			d.fails.Warn("control: read of pending channels failed", "key", keys.CommandPending, "err", err)
		}
		return
	}
	for _, ch := range members {
		if keys.ValidID(ch) {
			d.wake(ch)
		}
	}
}

// onMessage wakes the channel of a "cmd:{channel}" message; anything else on the pattern is ignored.
func (d *Dispatcher) onMessage(name string) {
	if ch, ok := strings.CutPrefix(name, keys.Command("")); ok && keys.ValidID(ch) {
		d.wake(ch)
	}
}

// graceOver reports whether channels without a target are answered Offline.
func (d *Dispatcher) graceOver(now time.Time) bool {
	end := d.graceEnd.Load()
	return end != 0 && now.UnixNano() >= end
}

// drain takes one batch of channel's commands and hands them out. It
// reports whether more may be queued (a full batch, all handed out).
func (d *Dispatcher) drain(ctx context.Context, channel string) bool {
	if d.target(channel) == nil && !d.graceOver(time.Now()) {
		return false // its link may still connect: leave the commands queued
	}
	cctx, cancel := context.WithTimeout(ctx, callTimeout)
	raw, err := d.caller.Fcall(cctx, scripts.FnTakeControls, []string{channel, d.batch}).AsStrSlice()
	cancel()
	if err != nil {
		if ctx.Err() == nil {
			d.stats.redisErrors.Add(1)
			d.fails.Warn("control: take_controls failed", "channel", channel, "err", err)
		}
		return false
	}
	d.stats.taken.Add(uint64(len(raw)))
	now := time.Now()
	for i, entry := range raw {
		c, err := contract.Parse([]byte(entry))
		if err != nil {
			d.unreadable(channel, entry, err)
			continue
		}
		if c.Channel != channel {
			d.stats.unreadable.Add(1)
			d.log.Warn("control: command in another channel's queue", "queue", keys.CommandQueue(channel),
				"id", c.ID, "command_channel", c.Channel)
			msg := "found in " + keys.CommandQueue(channel) + " but names channel " + strconv.Quote(c.Channel)
			if !keys.ValidID(c.Channel) {
				cc := *c
				cc.Channel = channel
				c = &cc
			}
			d.Report(c, contract.Outcome{Status: contract.Invalid, Message: msg})
			continue
		}
		if c.Expired(now) {
			d.Report(c, contract.Outcome{Status: contract.Expired, Message: MsgExpired})
			continue
		}
		t := d.target(channel)
		if t == nil {
			d.Report(c, contract.Outcome{Status: contract.Offline, Message: MsgOffline})
			continue
		}
		if !t.Deliver(c) {
			d.stats.busy.Add(1)
			d.Report(c, contract.Outcome{Status: contract.Failed, Message: MsgBusy})
			d.requeue(ctx, channel, raw[i+1:])
			d.wakeMu.Lock()
			d.busy[channel] = struct{}{} // the next periodic sweep tries again
			d.wakeMu.Unlock()
			return false
		}
		d.stats.delivered.Add(1)
	}
	return len(raw) == d.opt.Batch
}

// requeue puts taken commands back at the old end of the queue, in their
// order, keeps the channel pending and takes them out of cmd:inflight: one
// transaction.
func (d *Dispatcher) requeue(ctx context.Context, channel string, entries []string) {
	if len(entries) == 0 {
		return
	}
	back := make([]string, len(entries))
	var ids []string
	for i, e := range entries {
		back[len(entries)-1-i] = e // RPUSH appends in order: the oldest must end up last
		if c, err := contract.Parse([]byte(e)); err == nil {
			ids = append(ids, c.ID)
		}
	}
	b := d.client.B()
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), callTimeout)
	defer cancel()
	cmds := rueidis.Commands{
		b.Multi().Build(),
		b.Rpush().Key(keys.CommandQueue(channel)).Element(back...).Build(),
		b.Sadd().Key(keys.CommandPending).Member(channel).Build(),
	}
	if len(ids) > 0 {
		cmds = append(cmds, b.Hdel().Key(keys.CommandInflight).Field(ids...).Build())
	}
	res := d.client.DoMulti(cctx, append(cmds, b.Exec().Build())...)
	for _, r := range res {
		if err := r.Error(); err != nil {
			d.stats.redisErrors.Add(1)
			d.log.Error("control: commands taken but not put back", "channel", channel, "count", len(entries), "err", err)
			for _, e := range entries {
				if c, perr := contract.Parse([]byte(e)); perr == nil {
					d.Report(c, contract.Outcome{Status: contract.Failed, Message: MsgBusy})
				}
			}
			return
		}
	}
	d.stats.requeued.Add(uint64(len(entries)))
}

// unreadable logs a queue entry that is not a command and, when its id can
// be made out, reports it Invalid.
func (d *Dispatcher) unreadable(channel, entry string, err error) {
	d.stats.unreadable.Add(1)
	id := salvageID(entry)
	d.log.Warn("control: unreadable queued command", "queue", keys.CommandQueue(channel),
		"id", id, "entry", truncate(entry, 256), "err", err)
	if id != "" {
		d.Report(&contract.Command{ID: id, Channel: channel}, contract.Outcome{Status: contract.Invalid, Message: err.Error()})
	}
}

// idPattern finds the id of a command whose JSON is otherwise unreadable.
var idPattern = regexp.MustCompile(`"id"\s*:\s*"?([0-9]{1,20})\b`)

// salvageID extracts a command id from an unreadable queue entry, or "".
func salvageID(entry string) string {
	if len(entry) > contract.MaxCommand {
		entry = entry[:contract.MaxCommand]
	}
	var w struct {
		ID json.Number `json:"id"`
	}
	if json.Unmarshal([]byte(entry), &w) == nil {
		if id, ok := contract.CommandID(string(w.ID)); ok {
			return id
		}
		return ""
	}
	if m := idPattern.FindStringSubmatch(entry); m != nil {
		if id, ok := contract.CommandID(m[1]); ok {
			return id
		}
	}
	return ""
}

// subscribe keeps a pattern subscription to the command channels until ctx
// ends, re-subscribing with back-off when it is lost. It has a connection of
// its own, closed when ctx ends. Each confirmation asks for a sweep:
// messages published while unsubscribed are lost, the queues are not.
func (d *Dispatcher) subscribe(ctx context.Context) {
	redisconn.Subscribe(ctx, d.client, func(b rueidis.Builder) rueidis.Completed {
		return b.Psubscribe().Pattern(keys.CommandPattern).Build()
	}, func(m rueidis.PubSubMessage) { d.onMessage(m.Channel) }, redisconn.SubscribeOptions{
		Name:         "control commands " + keys.CommandPattern,
		Log:          d.fails,
		Dedicated:    true,
		OnSubscribed: d.requestSweep,
	})
}

// writeReports writes queued outcomes until ctx ends, then those still
// queued, for at most reportDrain.
func (d *Dispatcher) writeReports(ctx context.Context) {
	args := make([]string, 12)
	for {
		select {
		case r := <-d.reports:
			d.write(ctx, r, args)
		case <-ctx.Done():
			dctx, cancel := context.WithTimeout(context.Background(), reportDrain)
			defer cancel()
			for dctx.Err() == nil {
				select {
				case r := <-d.reports:
					d.write(dctx, r, args)
				default:
					return
				}
			}
			if n := len(d.reports); n > 0 {
				d.log.Warn("control: outcomes not recorded at shutdown", "count", n)
			}
			return
		}
	}
}

// write records one outcome through control_result, retrying a failed call
// a few times while ctx lasts. A call in flight is not cut by ctx.
func (d *Dispatcher) write(ctx context.Context, r report, args []string) {
	c, o := r.c, r.o
	id, ok := contract.CommandID(c.ID)
	if !ok || !keys.ValidID(c.Channel) {
		d.stats.reportErrors.Add(1)
		d.log.Error("control: outcome of a command without a valid id or channel not recorded",
			"id", c.ID, "channel", c.Channel, "status", string(o.Status), "message", o.Message)
		return
	}
	args[0], args[1], args[2], args[3] = id, string(o.Status), strconv.Itoa(int(o.Code)), truncate(o.Message, maxMessage)
	args[4], args[5], args[6] = c.Channel, idOrEmpty(c.Point), numberOrEmpty(c.Value)
	args[7], args[8], args[9], args[10] = idOrEmpty(c.Model), idOrEmpty(c.Control), d.ttl, d.maxlen
	n := 11
	if validNonce(c.Nonce) {
		args[11], n = c.Nonce, 12
	}
	var err error
	for attempt := 1; ; attempt++ {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), callTimeout)
		err = d.caller.Fcall(cctx, scripts.FnControlResult, args[:n]).Error()
		cancel()
		if err == nil {
			d.stats.reported.Add(1)
			return
		}
		var re *rueidis.RedisError
		if attempt == reportAttempts || ctx.Err() != nil || (asRedisError(err, &re) && !re.IsLoading()) {
			break // the library refused it, or Redis stays unreachable
		}
		t := time.NewTimer(time.Duration(attempt) * 200 * time.Millisecond)
		select {
		case <-ctx.Done():
		case <-t.C:
		}
		t.Stop()
	}
	d.stats.reportErrors.Add(1)
	d.fails.Error("control: outcome not recorded", "id", id, "channel", c.Channel, "status", string(o.Status), "err", err)
}

func asRedisError(err error, re **rueidis.RedisError) bool {
	r, ok := rueidis.IsRedisErr(err)
	if ok {
		*re = r
	}
	return ok
}

// noncePattern is what control_result accepts as a nonce.
var noncePattern = regexp.MustCompile(`^[0-9A-Za-z_-]{1,32}$`)

// validNonce reports whether control_result accepts s as a nonce.
func validNonce(s string) bool { return noncePattern.MatchString(s) }

// idOrEmpty returns s when it is a valid id, else "" (control_result would refuse it).
func idOrEmpty(s string) string {
	if keys.ValidID(s) {
		return s
	}
	return ""
}

// numberOrEmpty returns s when the library accepts it as a value, else "".
func numberOrEmpty(s string) string {
	if !contract.ValidValue(s) {
		return ""
	}
	return s
}

// truncate cuts s to at most n bytes without splitting a UTF-8 sequence.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	cut := n
	for cut > 0 && cut > n-utf8.UTFMax && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut]
}
