package contract

import (
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/rueidis"

	"github.com/voltedge/voltedge/internal/keys"
)

// Bounds of the results watcher.
const (
	// resultsBlock is how long one XREAD of cmd:results blocks.
	resultsBlock = 2 * time.Second
	// resultsBatch is how many entries one XREAD returns at most.
	resultsBatch = 100
	// maxSeen bounds the outcomes a waiter keeps while its command is
	// being queued; beyond it the waiter reads its result hash once.
	maxSeen = 64
	// readTimeout bounds a non-blocking Redis call of the watcher.
	readTimeout = 5 * time.Second
)

// Results watches the cmd:results stream with one blocking XREAD loop and
// hands each outcome to the waiters registered for its command id, however
// many there are. A waiter reads cmd:result:{id} once instead when the
// watcher may have missed its entry: before the loop has its first stream
// position, after a Redis error (Redis restarted, connection lost), and when
// entries were trimmed from the stream before the loop read them.
//
// One Results serves a process; Run must be running for waiters to learn
// their outcomes. It is safe for concurrent use.
type Results struct {
	client rueidis.Client
	log    *slog.Logger

	mu      sync.Mutex
	waiters map[string][]*waiter
	early   map[*waiter]struct{} // prepared: their command is being queued
	running atomic.Bool
	gaps    atomic.Uint64
}

// waiter waits for the outcome of one command.
type waiter struct {
	id    string
	nonce string        // the command's nonce; "" accepts any outcome of id
	res   chan Result   // the outcome, once
	check chan struct{} // read the result hash: the stream may have missed it
	seen  []Result      // while prepared: outcomes nobody waited for
	lost  bool          // while prepared: seen overflowed or the watcher had a gap
}

// NewResults returns a watcher on client; log may be nil (slog.Default()).
func NewResults(client rueidis.Client, log *slog.Logger) *Results {
	if log == nil {
		log = slog.Default()
	}
	return &Results{client: client, log: log, waiters: make(map[string][]*waiter), early: make(map[*waiter]struct{})}
}

// Gaps counts the times the watcher could not be sure to have seen every
// entry (its start included) and told its waiters to read their hashes.
func (r *Results) Gaps() uint64 { return r.gaps.Load() }

// Wait waits for the outcome of command id, which may already be recorded.
func (r *Results) Wait(ctx context.Context, id string) (Result, error) {
	cid, ok := CommandID(id)
	if !ok {
		return Result{}, fmt.Errorf("wait for command %q: not a command id", id)
	}
	w := r.prepare("")
	w.lost = true // queued before: the hash may hold it already
	r.bind(w, cid)
	p := &Pending{ID: cid, w: w, r: r}
	defer p.Close()
	return p.Wait(ctx)
}

// prepare registers a waiter before its command is queued with nonce (""
// for none): outcomes that arrive meanwhile are kept for it.
func (r *Results) prepare(nonce string) *waiter {
	w := &waiter{nonce: nonce, res: make(chan Result, 1), check: make(chan struct{}, 1)}
	r.mu.Lock()
	r.early[w] = struct{}{}
	r.mu.Unlock()
	return w
}

// bind makes w the waiter of command id, handing it an outcome that
// arrived while the command was being queued.
func (r *Results) bind(w *waiter, id string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.early, w)
	w.id = id
	for _, res := range w.seen {
		if res.ID == id && w.accepts(res) {
			select {
			case w.res <- res:
			default:
			}
		}
	}
	w.seen = nil
	r.waiters[id] = append(r.waiters[id], w)
	if w.lost {
		signal(w.check)
	}
}

// remove unregisters w.
func (r *Results) remove(w *waiter) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.early, w)
	ws := r.waiters[w.id]
	for i, x := range ws {
		if x == w {
			ws = append(ws[:i], ws[i+1:]...)
			break
		}
	}
	if len(ws) == 0 {
		delete(r.waiters, w.id)
	} else {
		r.waiters[w.id] = ws
	}
}

// accepts reports whether res is the outcome of w's command: an outcome
// recorded with another nonce belongs to another command that had the same
// id (an id handed out again, e.g. after Redis lost cmd:seq and the clock
// went back). Outcomes without a nonce (recorded by hand, or by an older
// comsrv) are accepted.
func (w *waiter) accepts(res Result) bool {
	n := res.Fields[ResultNonce]
	return w.nonce == "" || n == "" || n == w.nonce
}

func signal(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}

// waiting reports whether anyone waits.
func (r *Results) waiting() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.waiters) > 0 || len(r.early) > 0
}

// gap tells every waiter that the stream may have missed its outcome.
func (r *Results) gap() {
	r.gaps.Add(1)
	r.mu.Lock()
	defer r.mu.Unlock()
	for w := range r.early {
		w.lost = true
	}
	for _, ws := range r.waiters {
		for _, w := range ws {
			signal(w.check)
		}
	}
}

// dispatch hands the outcomes of entries to their waiters.
func (r *Results) dispatch(entries []rueidis.XRangeEntry) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, e := range entries {
		id, ok := CommandID(e.FieldValues[ResultID])
		if !ok {
			continue
		}
		res, ok := resultOf(id, e.FieldValues)
		if !ok {
			continue
		}
		if ws := r.waiters[id]; len(ws) > 0 {
			for _, w := range ws {
				if !w.accepts(res) {
					continue
				}
				select {
				case w.res <- res:
				default:
				}
			}
			continue
		}
		for w := range r.early {
			if len(w.seen) < maxSeen {
				w.seen = append(w.seen, res)
			} else {
				w.lost = true
			}
		}
	}
}

// readHash reads the outcome of command id from cmd:result:{id}.
func (r *Results) readHash(ctx context.Context, id string) (Result, bool) {
	cctx, cancel := context.WithTimeout(ctx, readTimeout)
	defer cancel()
	m, err := r.client.Do(cctx, r.client.B().Hgetall().Key(keys.CommandResult(id)).Build()).AsStrMap()
	if err != nil {
		r.log.Debug("read of a command result failed", "key", keys.CommandResult(id), "err", err)
		return Result{}, false
	}
	return resultOf(id, m)
}

// Run reads cmd:results until ctx ends. It must not be called twice at once.
func (r *Results) Run(ctx context.Context) {
	if !r.running.CompareAndSwap(false, true) {
		r.log.Error("contract: results watcher started twice; the second Run returns at once")
		return
	}
	defer r.running.Store(false)
	var b backoff
	pos := ""
	broken := false
	for ctx.Err() == nil {
		if pos == "" {
			end, err := StreamEnd(ctx, r.client, keys.CommandResults)
			if err != nil {
				b.Wait(ctx, r.log, "results watcher: read of the stream end failed", err)
				continue
			}
			pos = end
			r.gap() // outcomes recorded before pos are in their hashes
		}
		entries, err := r.read(ctx, pos, !broken)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			broken = true
			b.Wait(ctx, r.log, "results watcher: read of "+keys.CommandResults+" failed", err)
			continue
		}
		b.Reset()
		if broken {
			broken = false
			r.gap() // Redis may have restarted or trimmed meanwhile
		}
		if len(entries) == 0 {
			continue
		}
		trimmed := r.waiting() && r.trimmed(ctx, pos, entries[0].ID)
		r.dispatch(entries)
		pos = entries[len(entries)-1].ID
		if trimmed {
			r.gap()
		}
	}
}

// read returns the entries after pos, blocking when block is set.
func (r *Results) read(ctx context.Context, pos string, block bool) ([]rueidis.XRangeEntry, error) {
	b := r.client.B().Xread().Count(resultsBatch)
	var cmd rueidis.Completed
	if block {
		cmd = b.Block(resultsBlock.Milliseconds()).Streams().Key(keys.CommandResults).Id(pos).Build()
	} else {
		cmd = b.Streams().Key(keys.CommandResults).Id(pos).Build()
	}
	res, err := r.client.Do(ctx, cmd).AsXRead()
	if rueidis.IsRedisNil(err) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("xread %s: %w", keys.CommandResults, err)
	}
	return res[keys.CommandResults], nil
}

// trimmed reports whether entries after prev may have been deleted from
// the stream before the read that returned first: XDEL records the largest
// deleted id, and trimming leaves first as the stream's oldest entry. It
// errs on the side of yes: the first entries of a new stream count as a trim.
func (r *Results) trimmed(ctx context.Context, prev, first string) bool {
	cctx, cancel := context.WithTimeout(ctx, readTimeout)
	defer cancel()
	info, err := r.client.Do(cctx, r.client.B().XinfoStream().Key(keys.CommandResults).Build()).AsMap()
	if err != nil {
		return true
	}
	id := func(field string) string {
		v, ok := info[field]
		if !ok {
			return ""
		}
		s, _ := v.ToString()
		return s
	}
	deleted, oldest := id("max-deleted-entry-id"), id("recorded-first-entry-id")
	if deleted == "" || oldest == "" {
		return true
	}
	return CompareIDs(deleted, prev) > 0 || CompareIDs(oldest, first) >= 0
}

// StreamEnd returns the id of the last entry of stream key, "0-0" when it is
// empty or missing: reading after it starts at the end without missing an
// entry added between two blocking reads ("$" would).
func StreamEnd(ctx context.Context, c rueidis.Client, key string) (string, error) {
	cctx, cancel := context.WithTimeout(ctx, readTimeout)
	defer cancel()
	entries, err := c.Do(cctx, c.B().Xrevrange().Key(key).End("+").Start("-").Count(1).Build()).AsXRange()
	if err != nil {
		return "", fmt.Errorf("last entry of %s: %w", key, err)
	}
	if len(entries) == 0 {
		return "0-0", nil
	}
	return entries[0].ID, nil
}

// CompareIDs orders two stream entry ids ("ms-seq"): -1, 0 or 1. An id that
// cannot be read counts as 0-0.
func CompareIDs(a, b string) int {
	am, as := splitID(a)
	bm, bs := splitID(b)
	if c := cmp.Compare(am, bm); c != 0 {
		return c
	}
	return cmp.Compare(as, bs)
}

func splitID(id string) (ms, seq uint64) {
	m, s, _ := strings.Cut(id, "-")
	ms, _ = strconv.ParseUint(m, 10, 64)
	seq, _ = strconv.ParseUint(s, 10, 64)
	return ms, seq
}
