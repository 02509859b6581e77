package webhook

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/rueidis"

	"github.com/voltedge/voltedge/internal/alerting"
	"github.com/voltedge/voltedge/internal/keys"
)

// readCount is how many entries one read of a queue returns at most.
const readCount = 64

// pollInterval is how often an idle worker looks for entries it was not
// told about (Engine.Enqueue tells it at once).
const pollInterval = time.Second

// retryState is a delivery's entry in keys.WebhookRetry, under its queue
// entry id.
type retryState struct {
	Attempt    int    `json:"attempt"` // attempts made
	NextAt     int64  `json:"next_at"` // Unix ms
	LastStatus int    `json:"last_status"`
	LastError  string `json:"last_error,omitempty"`
}

// item is a delivery in a worker's window.
type item struct {
	entry    string // queue entry id
	q        alerting.QueueEntry
	attempt  int       // attempts made
	nextAt   time.Time // not before
	inflight bool
}

// outcome is what an attempt came to.
type outcome struct {
	it      *item
	final   bool          // delivered, dead or gone: leaves the window
	disable string        // the target is to be disabled, for this reason
	pause   time.Duration // no attempt to the target before now + pause
}

// worker sends one target's queue.
type worker struct {
	e      *Engine
	id     string
	target atomic.Pointer[alerting.Target]
	log    *slog.Logger
	keys   []string // queue, retry, counters, dead letters

	cancel   context.CancelFunc
	started  chan struct{}
	done     chan struct{}
	slots    chan struct{} // one per item in the window
	wake     chan struct{} // something was queued
	incoming chan []*item  // from the reader
	results  chan outcome  // from attempts

	mu       sync.Mutex
	inWindow map[string]bool // entry ids in the window
}

func newWorker(e *Engine, t alerting.Target) *worker {
	w := &worker{e: e, id: t.ID, log: e.log.With("target", t.ID),
		keys:     []string{keys.WebhookQueue(t.ID), keys.WebhookRetry(t.ID), keys.WebhookStats(t.ID), keys.WebhookDead},
		started:  make(chan struct{}),
		done:     make(chan struct{}),
		slots:    make(chan struct{}, e.opt.Window),
		wake:     make(chan struct{}, 1),
		incoming: make(chan []*item),
		results:  make(chan outcome, alerting.MaxConcurrency),
		inWindow: map[string]bool{},
	}
	w.setTarget(t)
	return w
}

func (w *worker) setTarget(t alerting.Target) {
	t = t.WithDefaults()
	w.target.Store(&t)
}

// nudge tells the reader that something was queued.
func (w *worker) nudge() {
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

func (w *worker) finished() bool {
	select {
	case <-w.done:
		return true
	default:
		return false
	}
}

// stop ends the worker and waits for it.
func (w *worker) stop() {
	<-w.started
	w.cancel()
	<-w.done
}

func (w *worker) run(parent context.Context) {
	defer close(w.done)
	ctx, cancel := context.WithCancel(parent)
	w.cancel = cancel
	close(w.started)
	defer cancel()
	readerDone := make(chan struct{})
	go func() {
		defer close(readerDone)
		w.read(ctx)
	}()
	w.dispatch(ctx)
	cancel()
	<-readerDone
}

// read feeds the window: the entries read before (pending) first, then
// new ones; it waits while the window is full.
func (w *worker) read(ctx context.Context) {
	c := w.e.c
	queue := w.keys[0]
	created := false
	cursor := "0"
	held := 0 // window slots taken for the next read
	for ctx.Err() == nil {
		if !created {
			err := c.Do(ctx, c.B().XgroupCreate().Key(queue).Group(alerting.QueueGroup).Id("0").Mkstream().Build()).Error()
			if re, ok := rueidis.IsRedisErr(err); ok && re.IsBusyGroup() {
				err = nil
			}
			if err != nil {
				w.log.Warn("webhook: creating the consumer group failed", "err", err)
				sleep(ctx, time.Second)
				continue
			}
			created = true
		}
		// Read no more than the window has room for: what is read is
		// counted in flight.
		if held == 0 {
			select {
			case w.slots <- struct{}{}:
				held = 1
			case <-ctx.Done():
				return
			}
		}
		count := min(readCount, held+cap(w.slots)-len(w.slots))
		id := cursor
		if id == "" {
			id = ">"
		}
		res, err := c.Do(ctx, c.B().Xreadgroup().Group(alerting.QueueGroup, w.e.opt.Consumer).Count(int64(count)).
			Streams().Key(queue).Id(id).Build()).AsXRead()
		if rueidis.IsRedisNil(err) {
			// Nothing new: wait for Enqueue's nudge, or poll for entries
			// added by others (a dead letter sent again).
			select {
			case <-w.wake:
			case <-time.After(pollInterval):
			case <-ctx.Done():
			}
			continue
		}
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			if re, ok := rueidis.IsRedisErr(err); ok && strings.HasPrefix(re.Error(), "NOGROUP") {
				w.log.Warn("webhook: the consumer group is gone (Redis restarted without its data?); reading the queue from its start")
				created, cursor = false, "0"
				continue
			}
			// The read may have been done with its answer lost: what it
			// read is pending, so the pending entries are read again.
			w.log.Warn("webhook: reading the queue failed", "err", err)
			cursor = "0"
			sleep(ctx, time.Second)
			continue
		}
		entries := res[queue]
		if cursor != "" {
			if len(entries) == 0 {
				cursor = ""
				continue
			}
			cursor = entries[len(entries)-1].ID
		}
		if cursor != "" {
			entries = w.notInWindow(entries) // read again: keep those the window lacks
		}
		items, err := w.items(ctx, entries)
		if err != nil {
			w.log.Warn("webhook: reading retry states failed", "err", err)
			cursor = "0"
			sleep(ctx, time.Second)
			continue
		}
		for ; held < len(items); held++ {
			select {
			case w.slots <- struct{}{}: // there is room: only the dispatcher frees slots
			case <-ctx.Done():
				return
			}
		}
		if len(items) == 0 {
			continue
		}
		for ; held > len(items); held-- {
			<-w.slots
		}
		select {
		case w.incoming <- items:
			held = 0
		case <-ctx.Done():
			return
		}
	}
}

// notInWindow returns the entries that are not in the window.
func (w *worker) notInWindow(entries []rueidis.XRangeEntry) []rueidis.XRangeEntry {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := entries[:0:0]
	for _, e := range entries {
		if !w.inWindow[e.ID] {
			out = append(out, e)
		}
	}
	return out
}

// items makes window items of queue entries, with their retry states;
// entries deleted while pending are acknowledged and left out.
func (w *worker) items(ctx context.Context, entries []rueidis.XRangeEntry) ([]*item, error) {
	var ids, gone []string
	for _, e := range entries {
		if e.FieldValues == nil {
			gone = append(gone, e.ID)
			continue
		}
		ids = append(ids, e.ID)
	}
	c := w.e.c
	if len(gone) > 0 {
		if err := c.Do(ctx, c.B().Xack().Key(w.keys[0]).Group(alerting.QueueGroup).Id(gone...).Build()).Error(); err != nil {
			return nil, fmt.Errorf("xack: %w", err)
		}
	}
	if len(ids) == 0 {
		return nil, nil
	}
	states, err := c.Do(ctx, c.B().Hmget().Key(w.keys[1]).Field(ids...).Build()).ToArray()
	if err != nil {
		return nil, fmt.Errorf("hmget %s: %w", w.keys[1], err)
	}
	out := make([]*item, 0, len(ids))
	i := 0
	for _, e := range entries {
		if e.FieldValues == nil {
			continue
		}
		f := e.FieldValues
		ts, _ := strconv.ParseInt(f[alerting.FieldTS], 10, 64)
		it := &item{entry: e.ID, q: alerting.QueueEntry{ID: f[alerting.FieldID], Key: f[alerting.FieldKey], Body: []byte(f[alerting.FieldBody]), TS: ts}}
		it.nextAt = time.UnixMilli(ts).Add(w.target.Load().ScheduleDurations()[0])
		if s, err := states[i].ToString(); err == nil {
			var rs retryState
			if json.Unmarshal([]byte(s), &rs) == nil {
				it.attempt, it.nextAt = rs.Attempt, time.UnixMilli(rs.NextAt)
			}
		}
		i++
		out = append(out, it)
	}
	return out, nil
}

// dispatch starts the attempts: in queue order, at most Concurrency at
// once, one at a time per key, each when due; it returns when ctx ends or
// the target is disabled, once no attempt is under way.
func (w *worker) dispatch(ctx context.Context) {
	var (
		window     []*item
		index      = map[string]*item{}
		blocked    = map[string]bool{}
		running    int
		pauseUntil time.Time
		stopping   bool
		timer      = time.NewTimer(time.Hour)
	)
	defer timer.Stop()
	for {
		now := time.Now()
		wake := time.Time{}
		if !stopping && ctx.Err() == nil {
			t := w.target.Load()
			clear(blocked)
			for _, it := range window {
				if running >= t.Concurrency {
					break // an outcome comes before anything can start
				}
				if it.q.Key != "" {
					if blocked[it.q.Key] {
						continue
					}
					blocked[it.q.Key] = true
				}
				if it.inflight {
					continue
				}
				due := it.nextAt
				if due.Before(pauseUntil) {
					due = pauseUntil
				}
				if due.After(now) {
					if wake.IsZero() || due.Before(wake) {
						wake = due
					}
					continue
				}
				it.inflight = true
				running++
				go w.attempt(ctx, *t, it)
			}
		}
		if stopping && running == 0 {
			return
		}
		var tc <-chan time.Time
		if !wake.IsZero() {
			timer.Reset(time.Until(wake))
			tc = timer.C
		}
		var done <-chan struct{}
		if !stopping {
			done = ctx.Done()
		}
		select {
		case <-done:
			stopping = true
		case batch := <-w.incoming:
			for _, it := range batch {
				if index[it.entry] != nil {
					<-w.slots // read again after the group was created anew
					continue
				}
				index[it.entry] = it
				window = append(window, it)
				w.mu.Lock()
				w.inWindow[it.entry] = true
				w.mu.Unlock()
			}
		case o := <-w.results:
			running--
			o.it.inflight = false
			if o.final {
				delete(index, o.it.entry)
				w.mu.Lock()
				delete(w.inWindow, o.it.entry)
				w.mu.Unlock()
				window = removeItem(window, o.it)
				<-w.slots
			}
			if o.pause > 0 {
				pauseUntil = time.Now().Add(o.pause)
			}
			if o.disable != "" {
				stopping = true
			}
		case <-tc:
		}
		if tc != nil && !timer.Stop() {
			select {
			case <-timer.C:
			default:
			}
		}
	}
}

func removeItem(window []*item, it *item) []*item {
	for i, x := range window {
		if x == it {
			copy(window[i:], window[i+1:])
			window[len(window)-1] = nil
			return window[:len(window)-1]
		}
	}
	return window
}

// attempt makes one attempt and records its outcome.
func (w *worker) attempt(ctx context.Context, t alerting.Target, it *item) {
	o := outcome{it: it}
	defer func() { w.results <- o }()
	res := alerting.Send(ctx, w.e.opt.HTTP, t, alerting.Message{ID: it.q.ID, TS: time.Now(), Body: it.q.Body})
	now := time.Now()
	if ctx.Err() != nil && !res.OK() {
		return // stopping: the attempt is made again at the next start
	}
	it.attempt++
	group := alerting.QueueGroup
	nowMS := strconv.FormatInt(now.UnixMilli(), 10)
	status := strconv.Itoa(res.Status)
	if res.OK() {
		w.record(ctx, deliveredScript, w.keys[:3], []string{group, it.entry, nowMS, status})
		o.final = true
		return
	}
	errText := failure(res)
	schedule := t.ScheduleDurations()
	var fs string
	switch {
	case res.Status == http.StatusGone:
		o.disable = "the receiver answered 410 Gone"
		it.nextAt = now
		fs = w.retry(ctx, it, res, errText)
	case it.attempt >= len(schedule):
		fs = w.record(ctx, deadScript, w.keys, []string{group, it.entry, nowMS, status, errText,
			w.id, it.q.ID, it.q.Key, string(it.q.Body), strconv.FormatInt(it.q.TS, 10), strconv.Itoa(it.attempt)})
		o.final = true
		w.log.Warn("webhook: delivery dead after its last attempt", "delivery", it.q.ID, "attempts", it.attempt, "status", res.Status, "err", errText)
	default:
		wait := jitter(schedule[it.attempt], t.Jitter)
		if res.RetryAfter > 0 {
			wait = max(wait, res.RetryAfter)
			o.pause = res.RetryAfter
		}
		it.nextAt = now.Add(wait)
		fs = w.retry(ctx, it, res, errText)
		// The script answers nothing when the entry is no longer queued
		// (read again after a restart of Redis, and finished meanwhile).
		o.final = fs == "" && ctx.Err() == nil
	}
	if o.disable == "" && t.DisableAfter.Duration > 0 {
		if since, err := strconv.ParseInt(fs, 10, 64); err == nil && since > 0 && now.Sub(time.UnixMilli(since)) >= t.DisableAfter.Duration {
			o.disable = fmt.Sprintf("failing since %s (disable_after %s)", time.UnixMilli(since).UTC().Format(time.RFC3339), t.DisableAfter.Duration)
		}
	}
	if o.disable != "" {
		if err := w.e.disable(context.WithoutCancel(ctx), w.id, o.disable); err != nil {
			w.log.Error("webhook: disabling the target failed", "err", err)
		}
	}
}

// retry records a failed attempt to be made again at it.nextAt; it
// returns failing_since.
func (w *worker) retry(ctx context.Context, it *item, res alerting.Result, errText string) string {
	js, _ := json.Marshal(retryState{Attempt: it.attempt, NextAt: it.nextAt.UnixMilli(), LastStatus: res.Status, LastError: errText})
	return w.record(ctx, retryScript, w.keys[:3], []string{it.entry, string(js),
		strconv.FormatInt(time.Now().UnixMilli(), 10), strconv.Itoa(res.Status), errText})
}

// record runs an outcome script until Redis takes it: the outcome of a
// request that was made must not be lost to a short Redis outage. When
// the engine stops it tries for 5 s more; what is then still unrecorded is
// corrected at the next start (the attempt is made again).
func (w *worker) record(ctx context.Context, s *rueidis.Lua, keys, args []string) string {
	stopCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	defer cancel()
	stop := context.AfterFunc(ctx, func() { time.AfterFunc(5*time.Second, cancel) })
	defer stop()
	for wait := 50 * time.Millisecond; ; wait = min(2*wait, 2*time.Second) {
		r := s.Exec(stopCtx, w.e.c, keys, args)
		err := r.Error()
		if err == nil || rueidis.IsRedisNil(err) {
			v, _ := r.ToString()
			return v
		}
		if errors.Is(err, context.Canceled) || stopCtx.Err() != nil {
			w.log.Warn("webhook: an outcome was not recorded; the attempt will be made again", "err", err)
			return ""
		}
		w.log.Warn("webhook: recording an outcome failed, trying again", "err", err)
		if !sleep(stopCtx, wait) {
			return ""
		}
	}
}

// failure describes a failed attempt.
func failure(r alerting.Result) string {
	if r.Err != nil {
		return r.Err.Error()
	}
	s := r.Status
	text := http.StatusText(s)
	if text == "" {
		return "status " + strconv.Itoa(s)
	}
	return strconv.Itoa(s) + " " + text
}

// jitter spreads d by up to ± f of it.
func jitter(d time.Duration, f float64) time.Duration {
	if f <= 0 || d <= 0 {
		return d
	}
	return time.Duration(float64(d) * (1 + f*(2*rand.Float64()-1)))
}

// sleep waits d or until ctx ends; false: ctx ended.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
