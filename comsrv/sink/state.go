package sink

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/redis/rueidis"

	"github.com/voltedge/voltedge/internal/contract"
	"github.com/voltedge/voltedge/internal/keys"
	"github.com/voltedge/voltedge/internal/redisconn"
)

// MaxPendingEvents caps the connection events waiting for Redis. Events are
// state and are not shed under load; only while Redis is unreachable for
// long can this many pile up (10,000 links flapping five times each), and
// then the oldest beyond it are dropped and counted (events_dropped in
// comsrv:stats).
const MaxPendingEvents = 50000

// state is what the sink writes that may never be dropped because a queue
// is full: each channel's latest status hash, the connection events in
// order, and the changes of the channel set. Statuses and set changes
// coalesce (the latest wins), so their memory is bounded by the number of
// channels; a write Redis refused is tried again.
type state struct {
	mu     sync.Mutex
	wake   chan struct{}
	status map[string][]string // channel → fields of its latest status, not yet written
	order  []string            // channels of status, in the order they first waited
	// clear are status fields to delete: channel → field names.
	clear  map[string][]string
	events []Event
	set    map[string]bool // channel id → true to add to keys.Channels, false to remove
	// templates replaces keys.Templates when templatesSet.
	templates    []string
	templatesSet bool
	// meta are the point metadata hashes (keys.ChannelMeta) to replace:
	// channel → fields (id, JSON, …); empty means delete the hash.
	meta map[string][]string
	// metaAll is every channel's current metadata, written again after a
	// Redis restart (Resync). Channels share the slices of one template.
	metaAll map[string][]string

	eventsDropped uint64
}

func (st *state) init() {
	st.wake = make(chan struct{}, 1)
	st.status = map[string][]string{}
	st.set = map[string]bool{}
	st.meta = map[string][]string{}
	st.metaAll = map[string][]string{}
	st.clear = map[string][]string{}
}

func (st *state) signal() {
	select {
	case st.wake <- struct{}{}:
	default:
	}
}

// Event queues an entry of the connection event stream, capped at about
// Options.EventsMaxLen entries. It never blocks and is never shed because a
// queue is full (see MaxPendingEvents).
func (s *Sink) Event(e Event) {
	st := &s.state
	st.mu.Lock()
	if len(st.events) >= MaxPendingEvents {
		st.events = st.events[1:]
		st.eventsDropped++
	}
	st.events = append(st.events, e)
	st.mu.Unlock()
	st.signal()
}

// eventCmd is the XADD of e.
func (s *Sink) eventCmd(e Event) rueidis.Completed {
	b := s.client.B().Xadd().Key(keys.ConnectionEvents).Maxlen().Almost().Threshold(strconv.Itoa(s.opt.EventsMaxLen)).Id("*").FieldValue().
		FieldValue(contract.EventType, e.Type).
		FieldValue(contract.EventTS, strconv.FormatInt(e.At.UnixMilli(), 10))
	for _, kv := range [...][2]string{
		{contract.EventChannel, e.Channel}, {contract.EventListener, e.Listener},
		{contract.EventRegistration, e.Registration}, {contract.EventRemote, e.Remote}, {contract.EventReason, e.Reason},
	} {
		if kv[1] != "" {
			b = b.FieldValue(kv[0], kv[1])
		}
	}
	return b.Build()
}

// Status queues the channel's status hash with fields (name, value, name,
// value, …), replacing a status of the channel not yet written. It never
// blocks and is never dropped.
func (s *Sink) Status(channel string, fields []string) {
	if len(fields) < 2 {
		return
	}
	st := &s.state
	st.mu.Lock()
	if _, waiting := st.status[channel]; !waiting {
		st.order = append(st.order, channel)
	}
	st.status[channel] = fields
	st.mu.Unlock()
	st.signal()
}

// ClearStatusFields queues deleting fields of the channel's status hash,
// for optional fields a status no longer has (an earlier status, maybe of
// an earlier process, may have written them). It is written before the
// statuses pending at the same time.
func (s *Sink) ClearStatusFields(channel string, fields ...string) {
	if len(fields) == 0 {
		return
	}
	st := &s.state
	st.mu.Lock()
	st.clear[channel] = append(st.clear[channel], fields...)
	st.mu.Unlock()
	st.signal()
}

// AddChannels queues adding ids to the channel set (keys.Channels).
func (s *Sink) AddChannels(ids ...string) { s.setChannels(true, ids) }

// RemoveChannels queues removing ids from the channel set (keys.Channels).
func (s *Sink) RemoveChannels(ids ...string) { s.setChannels(false, ids) }

func (s *Sink) setChannels(add bool, ids []string) {
	if len(ids) == 0 {
		return
	}
	st := &s.state
	st.mu.Lock()
	for _, id := range ids {
		st.set[id] = add
	}
	st.mu.Unlock()
	st.signal()
}

// SetMeta queues replacing the channel's point metadata hash
// (keys.ChannelMeta) with fields (point id, JSON, …), or deleting it when
// fields is empty; the latest call per channel wins. The hash is replaced
// in one transaction, so readers never see half of it. The sink keeps
// fields (without copying: callers must not change them) and writes them
// again after a Redis restart.
func (s *Sink) SetMeta(channel string, fields []string) {
	st := &s.state
	st.mu.Lock()
	if len(fields) == 0 {
		fields = nil
		delete(st.metaAll, channel)
	} else {
		st.metaAll[channel] = fields
	}
	st.meta[channel] = fields
	st.mu.Unlock()
	st.signal()
}

// requeueMeta queues every channel's current metadata again.
func (st *state) requeueMeta() {
	st.mu.Lock()
	for ch, f := range st.metaAll {
		st.meta[ch] = f
	}
	st.mu.Unlock()
	st.signal()
}

// clearStatus deletes the status fields of clears (channel → fields).
func (s *Sink) clearStatus(ctx context.Context, clears map[string][]string) error {
	cmds := make(rueidis.Commands, 0, len(clears))
	for ch, f := range clears {
		cmds = append(cmds, s.client.B().Hdel().Key(keys.ChannelStatus(ch)).Field(f...).Build())
	}
	for i := 0; i < len(cmds); i += stateBatch {
		for _, r := range s.client.DoMulti(ctx, cmds[i:min(i+stateBatch, len(cmds))]...) {
			if err := r.Error(); err != nil {
				return fmt.Errorf("clear status fields: %w", err)
			}
		}
	}
	return nil
}

// metaBatch bounds the channels of one pipelined metadata write.
const metaBatch = 128

// writeMeta replaces the metadata hashes of meta, each in a MULTI; it
// returns the channels not known to be written.
func (s *Sink) writeMeta(ctx context.Context, meta map[string][]string) (left []string, err error) {
	chans := make([]string, 0, len(meta))
	for ch := range meta {
		chans = append(chans, ch)
	}
	b := s.client.B()
	for i := 0; i < len(chans); i += metaBatch {
		part := chans[i:min(i+metaBatch, len(chans))]
		cmds := make(rueidis.Commands, 0, 4*len(part))
		for _, ch := range part {
			key := keys.ChannelMeta(ch)
			f := meta[ch]
			if len(f) == 0 {
				cmds = append(cmds, b.Del().Key(key).Build())
				continue
			}
			h := b.Hset().Key(key).FieldValue()
			for j := 0; j+1 < len(f); j += 2 {
				h = h.FieldValue(f[j], f[j+1])
			}
			cmds = append(cmds, b.Multi().Build(), b.Del().Key(key).Build(), h.Build(), b.Exec().Build())
		}
		for _, r := range s.client.DoMulti(ctx, cmds...) {
			if e := r.Error(); e != nil {
				return chans[i:], fmt.Errorf("write point metadata: %w", e)
			}
		}
	}
	return nil, nil
}

// SetTemplates queues replacing the template set (keys.Templates) with
// names; the latest call wins.
func (s *Sink) SetTemplates(names []string) {
	st := &s.state
	st.mu.Lock()
	st.templates, st.templatesSet = slices.Clone(names), true
	st.mu.Unlock()
	st.signal()
}

// writeTemplates replaces keys.Templates with names in one transaction.
func (s *Sink) writeTemplates(ctx context.Context, names []string) error {
	b := s.client.B()
	cmds := rueidis.Commands{b.Multi().Build(), b.Del().Key(keys.Templates).Build()}
	if len(names) > 0 {
		cmds = append(cmds, b.Sadd().Key(keys.Templates).Member(names...).Build())
	}
	for _, r := range s.client.DoMulti(ctx, append(cmds, b.Exec().Build())...) {
		if err := r.Error(); err != nil {
			return fmt.Errorf("write %s: %w", keys.Templates, err)
		}
	}
	return nil
}

func (s *Sink) eventsDropped() uint64 {
	s.state.mu.Lock()
	defer s.state.mu.Unlock()
	return s.state.eventsDropped
}

// stateBatch bounds the commands of one pipelined state write.
const stateBatch = 512

// stateWriter writes the state as it changes until stop, then what is left
// (for at most drainTime). A write Redis refused is tried again after a
// pause that doubles up to 2 s.
func (s *Sink) stateWriter(stop <-chan struct{}) {
	retry := redisconn.Backoff{Min: 50 * time.Millisecond, Max: 2 * time.Second}
	for {
		select {
		case <-s.state.wake:
		case <-stop:
			deadline := time.Now().Add(drainTime)
			for time.Now().Before(deadline) && s.flushState() {
				time.Sleep(50 * time.Millisecond)
			}
			return
		}
		if !s.flushState() {
			retry.Reset()
			continue
		}
		pause(stop, retry.Next())
		s.state.signal()
	}
}

// flushState writes what is pending; it reports whether something was
// refused and is pending again.
func (s *Sink) flushState() (failed bool) {
	st := &s.state
	st.mu.Lock()
	order, status, events, set := st.order, st.status, st.events, st.set
	st.order, st.status, st.events, st.set = nil, map[string][]string{}, nil, map[string]bool{}
	templates, templatesSet := st.templates, st.templatesSet
	st.templates, st.templatesSet = nil, false
	var meta map[string][]string // taken only when not empty: st.meta stays the sink's
	if len(st.meta) > 0 {
		meta, st.meta = st.meta, map[string][]string{}
	}
	var clears map[string][]string
	if len(st.clear) > 0 {
		clears, st.clear = st.clear, map[string][]string{}
	}
	st.mu.Unlock()

	if len(clears) > 0 {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		err := s.clearStatus(ctx, clears)
		cancel()
		if err != nil {
			s.failures.Add(1)
			s.logFailure("state write failed; retrying", err)
			st.mu.Lock()
			for ch, f := range clears {
				st.clear[ch] = append(st.clear[ch], f...)
			}
			st.mu.Unlock()
			failed = true
		}
	}

	if len(meta) > 0 {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		left, err := s.writeMeta(ctx, meta)
		cancel()
		if err != nil {
			s.failures.Add(1)
			s.logFailure("state write failed; retrying", err)
			st.mu.Lock()
			for _, ch := range left {
				if _, newer := st.meta[ch]; !newer {
					st.meta[ch] = meta[ch]
				}
			}
			st.mu.Unlock()
			failed = true
		}
	}

	if templatesSet {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		err := s.writeTemplates(ctx, templates)
		cancel()
		if err != nil {
			s.failures.Add(1)
			s.logFailure("state write failed; retrying", err)
			st.mu.Lock()
			if !st.templatesSet {
				st.templates, st.templatesSet = templates, true
			}
			st.mu.Unlock()
			failed = true
		}
	}

	cmds := make([]rueidis.Completed, 0, len(order)+len(events)+2)
	for _, ch := range order {
		f := status[ch]
		b := s.client.B().Hset().Key(keys.ChannelStatus(ch)).FieldValue()
		for i := 0; i+1 < len(f); i += 2 {
			b = b.FieldValue(f[i], f[i+1])
		}
		cmds = append(cmds, b.Build())
	}
	nStatus := len(cmds)
	for _, e := range events {
		cmds = append(cmds, s.eventCmd(e))
	}
	var add, rem []string
	for id, a := range set {
		if a {
			add = append(add, id)
		} else {
			rem = append(rem, id)
		}
	}
	if len(add) > 0 {
		cmds = append(cmds, s.client.B().Sadd().Key(keys.Channels).Member(add...).Build())
	}
	if len(rem) > 0 {
		cmds = append(cmds, s.client.B().Srem().Key(keys.Channels).Member(rem...).Build())
	}
	if len(cmds) == 0 {
		return failed
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	done := 0 // commands known written, from the start
	for done < len(cmds) {
		n := min(len(cmds)-done, stateBatch)
		var err error
		for _, r := range s.client.DoMulti(ctx, cmds[done:done+n]...) {
			if err = r.Error(); err != nil {
				break
			}
		}
		if err != nil {
			s.failures.Add(1)
			s.logFailure("state write failed; retrying", err)
			break
		}
		done += n
	}
	if done == len(cmds) {
		return failed
	}
	// Put back what may not have been written, behind nothing newer.
	st.mu.Lock()
	defer st.mu.Unlock()
	var order2 []string
	for i, ch := range order {
		if i < done {
			continue
		}
		if _, newer := st.status[ch]; !newer {
			st.status[ch] = status[ch]
			order2 = append(order2, ch)
		}
	}
	st.order = append(order2, st.order...)
	if first := max(done-nStatus, 0); first < len(events) {
		st.events = append(events[first:len(events):len(events)], st.events...)
		if over := len(st.events) - MaxPendingEvents; over > 0 {
			st.events = st.events[over:]
			st.eventsDropped += uint64(over)
		}
	}
	for id, a := range set {
		if _, newer := st.set[id]; !newer {
			st.set[id] = a
		}
	}
	return true
}
