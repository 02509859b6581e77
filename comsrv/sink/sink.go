// Package sink writes what comsrv reads into Redis. It is comsrv's only
// writer of channel data, and it speaks in domain verbs: values and quality
// marks of a channel (Lane), status hashes, connection events, frame logs,
// device messages and the channel set.
//
// Values and quality marks of one channel travel one ordered path: every
// channel is bound to one of many lanes, and a lane is written by one writer
// at a time, in the order its items were queued (values through the Lua
// library's sync_batch function, several responses per call; marks through
// set_quality). So a "good" mark never lands before the value that earned
// it, nor a late value after a "stale" mark of a newer one. The writers are
// not bound to lanes: an idle writer takes whichever lane has work, and
// batches several lanes into one call, so no sample waits for a busy writer
// while another is idle.
//
// Nothing here blocks a device link: queues are bounded, and when Redis
// cannot keep up the excess is dropped and counted.
package sink

import (
	"context"
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/rueidis"

	"github.com/voltedge/voltedge/internal/keys"
	"github.com/voltedge/voltedge/internal/lualib"
	"github.com/voltedge/voltedge/internal/redisconn"
	"github.com/voltedge/voltedge/scripts"
)

// Sample is one decoded poll response of one channel.
type Sample struct {
	Channel  string
	Received time.Time // when the response's last byte arrived
	Pairs    []string  // point id, value, point id, value, …
	// mark, when not empty, makes the item a quality mark ("stale" or
	// "good") of the point ids in Pairs instead of values.
	mark string
}

// Options tunes the sink.
type Options struct {
	Writers       int           // concurrent writers (FCALLs in flight), default 4
	BatchPoints   int           // points per FCALL at most, default 512
	Queue         int           // queued samples of all lanes (and, separately, frames and messages) at most, default 4096
	FlushInterval time.Duration // how often comsrv:stats is written, default 5s
	EventsMaxLen  int           // approximate cap of the comsrv:events stream, default 10000
}

// Sink is comsrv's writer of channel data: bounded queues in front of Redis
// plus their writers.
type Sink struct {
	client rueidis.Client
	caller *lualib.Caller
	log    *slog.Logger
	opt    Options
	lanes  []*lane
	ready  chan *lane // lanes with work that no writer holds; each at most once
	cmds   chan rueidis.Completed
	state  state // status hashes, connection events and the channel set: never dropped

	laneValues int // value samples one lane holds at most

	epoch atomic.Uint64 // bumped when Redis restarted (its run_id changed)
	runID string        // Redis's run_id at the last stats flush; owned by Run
	pool  sync.Pool

	responses, points, mapped, syncErrors, dropped, calls, failures, alarmEvents atomic.Uint64
	lat                                                                          *Histogram
	lastFailLog                                                                  atomic.Int64 // Unix ns of the last failure logged
	failsUnlogged                                                                atomic.Uint64
	gauges                                                                       func() map[string]int64
}

// New creates a sink. gauges, if not nil, is called at every stats flush and
// its values are written next to the sink's counters (e.g. connections).
func New(c rueidis.Client, caller *lualib.Caller, opt Options, log *slog.Logger, gauges func() map[string]int64) *Sink {
	if opt.Writers <= 0 {
		opt.Writers = 4
	}
	if opt.BatchPoints <= 0 {
		opt.BatchPoints = 512
	}
	if opt.Queue <= 0 {
		opt.Queue = 4096
	}
	if opt.FlushInterval <= 0 {
		opt.FlushInterval = 5 * time.Second
	}
	if opt.EventsMaxLen <= 0 {
		opt.EventsMaxLen = 10000
	}
	s := &Sink{client: c, caller: caller, log: log, opt: opt, cmds: make(chan rueidis.Completed, opt.Queue), lat: NewHistogram(), gauges: gauges}
	s.laneValues = max(opt.Queue/lanes, minLaneQueue)
	s.lanes = make([]*lane, lanes)
	s.ready = make(chan *lane, lanes)
	for i := range s.lanes {
		s.lanes[i] = &lane{lastMark: map[string]*Sample{}}
	}
	s.state.init()
	s.pool.New = func() any { return &Sample{Pairs: make([]string, 0, 64)} }
	return s
}

// NewSample returns an empty sample from the pool.
func (s *Sink) NewSample() *Sample {
	smp := s.pool.Get().(*Sample)
	smp.Pairs = smp.Pairs[:0]
	return smp
}

// do queues a command that may be shed (frames, device messages, published
// outcomes); it never blocks and reports false, counting a drop, when the
// queue is full. Commands run in the order they were queued.
func (s *Sink) do(cmd rueidis.Completed) bool {
	select {
	case s.cmds <- cmd:
		return true
	default:
		s.dropped.Add(1)
		return false
	}
}

func (s *Sink) release(smp *Sample) {
	clear(smp.Pairs)
	smp.Pairs = smp.Pairs[:0]
	smp.mark = ""
	s.pool.Put(smp)
}

// Run writes until ctx is cancelled, then drains what is queued (for at most
// a few seconds) and returns.
func (s *Sink) Run(ctx context.Context) {
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for range s.opt.Writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.sampleWriter(stop)
		}()
	}
	wg.Add(2)
	go func() {
		defer wg.Done()
		s.commandWriter(stop)
	}()
	go func() {
		defer wg.Done()
		s.stateWriter(stop)
	}()
	t := time.NewTicker(s.opt.FlushInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			close(stop)
			wg.Wait()
			s.flushStats(context.Background())
			return
		case <-t.C:
			s.flushStats(ctx)
		}
	}
}

const drainTime = 3 * time.Second

func (s *Sink) writeSamples(ctx context.Context, batch []*Sample, args []string) []string {
	args = args[:0]
	for _, smp := range batch {
		args = append(args, smp.Channel, strconv.FormatInt(smp.Received.UnixMilli(), 10), strconv.Itoa(len(smp.Pairs)/2))
		args = append(args, smp.Pairs...)
	}
	res := s.caller.Fcall(ctx, scripts.FnSyncBatch, args)
	now := time.Now()
	s.calls.Add(1)
	if err := res.Error(); err != nil {
		s.failures.Add(1)
		s.logFailure("sync_batch failed", err, "responses", len(batch))
	} else {
		s.account(res, len(batch))
		for _, smp := range batch {
			s.lat.Observe(now.Sub(smp.Received))
		}
	}
	for _, smp := range batch {
		s.release(smp)
	}
	clear(args)
	return args
}

// commandWriter runs queued commands in order, pipelining what has accumulated.
func (s *Sink) commandWriter(stop <-chan struct{}) {
	ctx := context.Background()
	var batch []rueidis.Completed
	for {
		var first rueidis.Completed
		select {
		case first = <-s.cmds:
		case <-stop:
			select {
			case first = <-s.cmds:
			default:
				return
			}
		}
		batch = append(batch[:0], first)
	collect:
		for len(batch) < 256 {
			select {
			case c := <-s.cmds:
				batch = append(batch, c)
			default:
				break collect
			}
		}
		for _, r := range s.client.DoMulti(ctx, batch...) {
			if err := r.Error(); err != nil {
				s.failures.Add(1)
				s.logFailure("status update failed", err)
				break
			}
		}
		clear(batch)
	}
}

// failLogInterval bounds how often Redis failures are logged: while Redis is
// down every batch fails, and one line per interval (with a count) is enough.
const failLogInterval = 10 * time.Second

func (s *Sink) logFailure(msg string, err error, attrs ...any) {
	now := time.Now().UnixNano()
	last := s.lastFailLog.Load()
	if now-last < int64(failLogInterval) || !s.lastFailLog.CompareAndSwap(last, now) {
		s.failsUnlogged.Add(1)
		return
	}
	attrs = append(attrs, "err", err, "failures_not_logged", s.failsUnlogged.Swap(0))
	s.log.Warn(msg, attrs...)
}

// account adds sync_batch's reply {written, mapped, errors, alarm_events, first_error} to the counters.
func (s *Sink) account(res rueidis.RedisResult, responses int) {
	s.responses.Add(uint64(responses))
	arr, err := res.ToArray()
	if err != nil || len(arr) < 5 {
		return
	}
	if v, err := arr[0].AsInt64(); err == nil {
		s.points.Add(uint64(v))
	}
	if v, err := arr[1].AsInt64(); err == nil {
		s.mapped.Add(uint64(v))
	}
	if v, err := arr[2].AsInt64(); err == nil && v > 0 {
		s.syncErrors.Add(uint64(v))
		if msg, err := arr[4].ToString(); err == nil {
			s.log.Debug("sync_batch reported errors", "count", v, "first", msg)
		}
	}
	if v, err := arr[3].AsInt64(); err == nil {
		s.alarmEvents.Add(uint64(v))
	}
}

// Stats is a snapshot of the sink's counters.
type Stats struct {
	Responses, Points, Mapped, SyncErrors, Dropped, Calls, Failures, AlarmEvents uint64
	// EventsDropped counts connection events dropped past MaxPendingEvents
	// while Redis was unreachable.
	EventsDropped uint64
}

// Stats returns the counters since start.
func (s *Sink) Stats() Stats {
	return Stats{
		Responses: s.responses.Load(), Points: s.points.Load(), Mapped: s.mapped.Load(),
		SyncErrors: s.syncErrors.Load(), Dropped: s.dropped.Load(), Calls: s.calls.Load(),
		Failures: s.failures.Load(), AlarmEvents: s.alarmEvents.Load(), EventsDropped: s.eventsDropped(),
	}
}

// Epoch changes when Redis restarted: channel cores then write again what
// Redis lost (status hashes, quality marks). See Resync.
func (s *Sink) Epoch() uint64 { return s.epoch.Load() }

// Resync makes every channel core write its state again, as after a Redis
// restart, and queues every channel's point metadata (SetMeta) again; Run
// calls it itself when Redis's run_id changes.
func (s *Sink) Resync() {
	s.epoch.Add(1)
	s.state.requeueMeta()
}

// checkRestart compares Redis's run_id with the last one seen and calls
// Resync when it changed.
func (s *Sink) checkRestart(ctx context.Context) {
	id, err := redisconn.RunID(ctx, s.client)
	if err != nil {
		return
	}
	if s.runID != "" && id != s.runID {
		s.log.Warn("redis restarted; channels write their state again", "run_id", id)
		s.Resync()
	}
	s.runID = id
}

func (s *Sink) flushStats(ctx context.Context) {
	s.checkRestart(ctx)
	st := s.Stats()
	p50, p99, n := s.lat.TakeQuantiles(0.5, 0.99)
	f := s.client.B().Hset().Key(keys.ComsrvStats).FieldValue().
		FieldValue("responses", u(st.Responses)).
		FieldValue("points", u(st.Points)).
		FieldValue("mapped", u(st.Mapped)).
		FieldValue("sync_errors", u(st.SyncErrors)).
		FieldValue("dropped", u(st.Dropped)).
		FieldValue("events_dropped", u(st.EventsDropped)).
		FieldValue("calls", u(st.Calls)).
		FieldValue("failures", u(st.Failures)).
		FieldValue("alarm_events", u(st.AlarmEvents)).
		FieldValue("latency_p50_us", strconv.FormatInt(p50.Microseconds(), 10)).
		FieldValue("latency_p99_us", strconv.FormatInt(p99.Microseconds(), 10)).
		FieldValue("latency_samples", u(n)).
		FieldValue("updated_at", strconv.FormatInt(time.Now().UnixMilli(), 10))
	if s.gauges != nil {
		for k, v := range s.gauges() {
			f = f.FieldValue(k, strconv.FormatInt(v, 10))
		}
	}
	if err := s.client.Do(ctx, f.Build()).Error(); err != nil {
		s.log.Warn("write stats", "key", keys.ComsrvStats, "err", err)
	}
}

func u(v uint64) string { return strconv.FormatUint(v, 10) }
