package sink

import (
	"context"
	"hash/fnv"
	"sync"
	"time"

	"github.com/voltedge/voltedge/internal/redisconn"
	"github.com/voltedge/voltedge/scripts"
)

// lanes is the number of lanes: many more than writers, so that channels
// sharing a lane rarely wait for each other.
const lanes = 64

// minLaneQueue is the fewest value samples one lane holds.
const minLaneQueue = 16

// Quality marks, as set_quality takes them.
const (
	QualityStale = "stale"
	QualityGood  = "good"
)

// lane is the ordered queue of the channels hashed to it. Value samples are
// capped (the excess is dropped and counted); quality marks are never
// refused: a mark joins the channel's last queued mark when no value of the
// channel was queued after it, so a lane holds at most one mark per queued
// value plus one per channel.
type lane struct {
	mu        sync.Mutex
	items     []*Sample // queued, oldest first
	values    int       // value samples among items
	lastMark  map[string]*Sample
	scheduled bool    // in ready, or held by a writer
	next      *Sample // a mark taken while collecting values, written after them; owned by the holding writer
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
// recycles the sample, when the lane holds its most values (the sample is
// dropped and counted). An empty sample is recycled at once.
func (l *Lane) Values(smp *Sample) bool {
	if len(smp.Pairs) == 0 {
		l.s.release(smp)
		return true
	}
	ln := l.l
	ln.mu.Lock()
	if ln.values >= l.s.laneValues {
		ln.mu.Unlock()
		l.s.dropped.Add(1)
		l.s.release(smp)
		return false
	}
	ln.items = append(ln.items, smp)
	ln.values++
	delete(ln.lastMark, l.channel) // a later mark must follow this value
	l.s.scheduleLocked(ln)
	ln.mu.Unlock()
	return true
}

// Quality queues a change of the quality of the channel's points, behind
// the values queued before it: stale true marks them stale, false marks
// them good again. The Lua function set_quality carries it to the mapped
// model points and publishes it. A mark is state, not a sample: it is never
// dropped, and it is written again until Redis takes it.
func (l *Lane) Quality(stale bool, points []string) {
	if len(points) == 0 {
		return
	}
	q := QualityGood
	if stale {
		q = QualityStale
	}
	ln := l.l
	ln.mu.Lock()
	defer ln.mu.Unlock()
	if m := ln.lastMark[l.channel]; m != nil {
		m.Pairs = mergeMarks(m.Pairs, points, q)
		return
	}
	m := l.NewSample(time.Time{})
	m.mark = "marks"
	for _, p := range points {
		m.Pairs = append(m.Pairs, p, q)
	}
	ln.items = append(ln.items, m)
	ln.lastMark[l.channel] = m
	l.s.scheduleLocked(ln)
}

// mergeMarks sets the quality of points to q in pairs (point, quality, …).
func mergeMarks(pairs, points []string, q string) []string {
	at := make(map[string]int, len(pairs)/2)
	for i := 0; i+1 < len(pairs); i += 2 {
		at[pairs[i]] = i + 1
	}
	for _, p := range points {
		if i, ok := at[p]; ok {
			pairs[i] = q
			continue
		}
		at[p] = len(pairs) + 1
		pairs = append(pairs, p, q)
	}
	return pairs
}

// scheduleLocked offers ln to the writers unless it is offered or held
// already; ln.mu is held.
func (s *Sink) scheduleLocked(ln *lane) {
	if !ln.scheduled {
		ln.scheduled = true
		s.ready <- ln // never blocks: each lane is in ready at most once
	}
}

// release gives a held lane back: offered again when it has work.
func (s *Sink) releaseLane(ln *lane) {
	ln.mu.Lock()
	ln.scheduled = false
	if len(ln.items) > 0 {
		s.scheduleLocked(ln)
	}
	ln.mu.Unlock()
}

// collect moves ln's queued values to batch until the batch is full or a
// quality mark comes; the mark waits in ln.next, to be written after them.
func (s *Sink) collect(ln *lane, batch []*Sample, points int) ([]*Sample, int) {
	ln.mu.Lock()
	defer ln.mu.Unlock()
	n := 0
	for n < len(ln.items) && points < s.opt.BatchPoints {
		smp := ln.items[n]
		n++
		if smp.mark != "" {
			ln.next = smp
			if ln.lastMark[smp.Channel] == smp {
				delete(ln.lastMark, smp.Channel)
			}
			break
		}
		batch = append(batch, smp)
		ln.values--
		points += len(smp.Pairs) / 2
	}
	rest := copy(ln.items, ln.items[n:])
	clear(ln.items[rest:])
	ln.items = ln.items[:rest]
	return batch, points
}

// unshift puts a mark that Redis did not take back at the head of ln.
func (ln *lane) unshift(m *Sample) {
	ln.mu.Lock()
	ln.items = append(ln.items, nil)
	copy(ln.items[1:], ln.items)
	ln.items[0] = m
	ln.mu.Unlock()
}

// sampleWriter writes lanes offered to it: it holds one or more lanes,
// sends their values as one sync_batch call, then each held lane's quality
// mark, if collecting stopped at one, and releases the lanes. A mark Redis
// did not take goes back to the head of its lane and is tried again after a
// pause; values are not held back for a failed call (they are counted).
func (s *Sink) sampleWriter(stop <-chan struct{}) {
	var (
		held  []*lane
		batch []*Sample
		args  []string
		retry = redisconn.Backoff{Min: 50 * time.Millisecond, Max: 2 * time.Second}
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
		failed := false
		for _, l := range held {
			if l.next == nil {
				continue
			}
			if err := s.writeMarks(ctx, l.next); err != nil {
				l.unshift(l.next)
				failed = true
			} else {
				s.release(l.next)
			}
			l.next = nil
		}
		for _, l := range held {
			s.releaseLane(l)
		}
		clear(held)
		if !failed {
			retry.Reset()
			continue
		}
		pause(stop, retry.Next())
	}
}

// pause waits d, or until stop is closed.
func pause(stop <-chan struct{}, d time.Duration) {
	select {
	case <-time.After(d):
	case <-stop:
	}
}

// writeMarks runs set_quality for a mark: once for the points it marks
// stale and once for those it marks good.
func (s *Sink) writeMarks(ctx context.Context, m *Sample) error {
	var stale, good []string
	for i := 0; i+1 < len(m.Pairs); i += 2 {
		if m.Pairs[i+1] == QualityStale {
			stale = append(stale, m.Pairs[i])
		} else {
			good = append(good, m.Pairs[i])
		}
	}
	for _, g := range [...]struct {
		q      string
		points []string
	}{{QualityStale, stale}, {QualityGood, good}} {
		if len(g.points) == 0 {
			continue
		}
		args := append([]string{m.Channel, g.q}, g.points...)
		if err := s.caller.Fcall(ctx, scripts.FnSetQuality, args).Error(); err != nil {
			s.failures.Add(1)
			s.logFailure("set_quality failed; retrying", err, "channel", m.Channel, "quality", g.q)
			return err
		}
	}
	return nil
}
