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
	"hash/fnv"
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/rueidis"

	"github.com/voltedge/voltedge/internal/keys"
	"github.com/voltedge/voltedge/internal/lualib"
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
	Queue         int           // queued samples of all lanes (and, separately, commands) at most, default 4096
	FlushInterval time.Duration // how often comsrv:stats is written, default 5s
	EventsMaxLen  int           // approximate cap of the comsrv:events stream, default 10000
}

// Sink is the bounded queue in front of Redis plus its writers.
type Sink struct {
	client rueidis.Client
	caller *lualib.Caller
	log    *slog.Logger
	opt    Options
	lanes  []*lane
	ready  chan *lane // lanes with work that no writer holds; each at most once
	cmds   chan rueidis.Completed
	pool   sync.Pool

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
	per := max(opt.Queue/lanes, minLaneQueue)
	s.lanes = make([]*lane, lanes)
	s.ready = make(chan *lane, lanes)
	for i := range s.lanes {
		s.lanes[i] = &lane{q: make(chan *Sample, per)}
	}
	s.pool.New = func() any { return &Sample{Pairs: make([]string, 0, 64)} }
	return s
}

// lanes is the number of lanes: many more than writers, so that channels
// sharing a lane rarely wait for each other.
const lanes = 64

// minLaneQueue is the smallest queue of one lane.
const minLaneQueue = 16

// lane is the ordered queue of the channels hashed to it.
type lane struct {
	q         chan *Sample
	scheduled atomic.Bool // in ready, or held by a writer
	next      *Sample     // a mark taken while collecting values, written after them; owned by the holding writer
}

// Lane is the ordered path of one channel's values and quality marks. Get
// it once per channel with Sink.Lane; it is safe for concurrent use.
type Lane struct {
	s       *Sink
	l       *lane
	channel string
}

// Lane returns the lane of channel: always the same one for the same id.
func (s *Sink) Lane(channel string) *Lane {
	h := fnv.New32a()
	_, _ = h.Write([]byte(channel))
	return &Lane{s: s, l: s.lanes[h.Sum32()%uint32(len(s.lanes))], channel: channel}
}

// NewSample returns an empty sample of the lane's channel from the pool.
func (l *Lane) NewSample(received time.Time) *Sample {
	smp := l.s.NewSample()
	smp.Channel, smp.Received = l.channel, received
	return smp
}

// Values queues a decoded response; it never blocks. It reports false, and
// recycles the sample, when the lane is full (the sample is dropped and
// counted). An empty sample is recycled at once.
func (l *Lane) Values(smp *Sample) bool {
	if len(smp.Pairs) == 0 {
		l.s.release(smp)
		return true
	}
	return l.put(smp)
}

// Quality queues a change of the quality of the channel's points, behind
// the values queued before it: stale true marks them stale, false marks
// them good again. The Lua function set_quality carries it to the mapped
// model points and publishes it. It reports false when the lane is full;
// the caller marks again later.
func (l *Lane) Quality(stale bool, points []string) bool {
	if len(points) == 0 {
		return true
	}
	smp := l.NewSample(time.Time{})
	smp.mark = QualityGood
	if stale {
		smp.mark = QualityStale
	}
	smp.Pairs = append(smp.Pairs, points...)
	return l.put(smp)
}

// Quality marks, as set_quality takes them.
const (
	QualityStale = "stale"
	QualityGood  = "good"
)

func (l *Lane) put(smp *Sample) bool {
	select {
	case l.l.q <- smp:
		l.s.schedule(l.l)
		return true
	default:
		l.s.dropped.Add(1)
		l.s.release(smp)
		return false
	}
}

// NewSample returns an empty sample from the pool.
func (s *Sink) NewSample() *Sample {
	smp := s.pool.Get().(*Sample)
	smp.Pairs = smp.Pairs[:0]
	return smp
}

// do queues a command (status updates, events, frames, messages); it never
// blocks and reports false when the queue is full. Commands run in the order
// they were queued.
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
	wg.Add(1)
	go func() {
		defer wg.Done()
		s.commandWriter(stop)
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

// schedule offers l to the writers unless it is offered or held already.
func (s *Sink) schedule(l *lane) {
	if l.scheduled.CompareAndSwap(false, true) {
		s.ready <- l // never blocks: each lane is in ready at most once
	}
}

// sampleWriter writes lanes offered to it: it holds one or more lanes,
// sends their values as one sync_batch call, then each held lane's quality
// mark, if collecting stopped at one, and releases the lanes.
func (s *Sink) sampleWriter(stop <-chan struct{}) {
	var (
		held  []*lane
		batch []*Sample
		args  []string
	)
	ctx := context.Background()
	var drainUntil time.Time
	for {
		var first *lane
		select {
		case first = <-s.ready:
		case <-stop:
			if drainUntil.IsZero() {
				drainUntil = time.Now().Add(drainTime)
			}
			select {
			case first = <-s.ready:
			default:
				return
			}
		}
		if !drainUntil.IsZero() && time.Now().After(drainUntil) {
			return
		}
		held = append(held[:0], first)
		batch, points := s.collect(first, batch[:0], 0)
	more:
		for points < s.opt.BatchPoints {
			select {
			case l := <-s.ready:
				held = append(held, l)
				batch, points = s.collect(l, batch, points)
			default:
				break more
			}
		}
		if len(batch) > 0 {
			args = s.writeSamples(ctx, batch, args)
			clear(batch)
		}
		for _, l := range held {
			if l.next != nil {
				s.writeMark(ctx, l.next)
				l.next = nil
			}
		}
		for _, l := range held {
			l.scheduled.Store(false)
			if len(l.q) > 0 {
				s.schedule(l)
			}
		}
		clear(held)
	}
}

// collect appends l's queued values to batch until the batch is full or a
// quality mark comes; the mark waits in l.next, to be written after them.
func (s *Sink) collect(l *lane, batch []*Sample, points int) ([]*Sample, int) {
	for points < s.opt.BatchPoints {
		select {
		case smp := <-l.q:
			if smp.mark != "" {
				l.next = smp
				return batch, points
			}
			batch = append(batch, smp)
			points += len(smp.Pairs) / 2
		default:
			return batch, points
		}
	}
	return batch, points
}

// writeMark runs set_quality for one quality mark.
func (s *Sink) writeMark(ctx context.Context, m *Sample) {
	args := make([]string, 0, 2+len(m.Pairs))
	args = append(append(args, m.Channel, m.mark), m.Pairs...)
	if err := s.caller.Fcall(ctx, scripts.FnSetQuality, args).Error(); err != nil {
		s.failures.Add(1)
		s.logFailure("set_quality failed", err, "channel", m.Channel, "quality", m.mark)
	}
	s.release(m)
}

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
}

// Stats returns the counters since start.
func (s *Sink) Stats() Stats {
	return Stats{
		Responses: s.responses.Load(), Points: s.points.Load(), Mapped: s.mapped.Load(),
		SyncErrors: s.syncErrors.Load(), Dropped: s.dropped.Load(), Calls: s.calls.Load(),
		Failures: s.failures.Load(), AlarmEvents: s.alarmEvents.Load(),
	}
}

func (s *Sink) flushStats(ctx context.Context) {
	st := s.Stats()
	p50, p99, n := s.lat.TakeQuantiles(0.5, 0.99)
	f := s.client.B().Hset().Key(keys.ComsrvStats).FieldValue().
		FieldValue("responses", u(st.Responses)).
		FieldValue("points", u(st.Points)).
		FieldValue("mapped", u(st.Mapped)).
		FieldValue("sync_errors", u(st.SyncErrors)).
		FieldValue("dropped", u(st.Dropped)).
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
