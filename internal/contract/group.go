package contract

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/redis/rueidis"
)

// Defaults of GroupOptions.
const (
	DefaultGroupCount = 100
	DefaultGroupBlock = 2 * time.Second
)

// Entry is one stream entry. Fields is nil for a pending entry that was
// deleted from the stream before it was acknowledged.
type Entry struct {
	ID     string
	Fields map[string]string
}

// Handler processes entries read by a GroupReader and acknowledges those it
// is done with through GroupReader.Ack. An error makes the reader back off
// and read the consumer's pending (unacknowledged) entries again.
type Handler func(ctx context.Context, entries []Entry) error

// GroupOptions selects the stream, group and consumer of a GroupReader.
type GroupOptions struct {
	// Stream is the stream key, e.g. keys.AlarmEvents.
	Stream string
	// Group is the consumer group, created when missing.
	Group string
	// Consumer names this reader within the group; keep it across restarts
	// so that its pending entries are read again.
	Consumer string
	// Start is where a group created for the first time starts: "$"
	// (default: entries added from now on) or "0" (the whole stream).
	Start string
	// Count is how many entries one read returns at most (default 100).
	Count int
	// Block is how long one read of new entries waits (default 2s).
	Block time.Duration
	// ClaimIdle, when positive, makes the reader take over (XAUTOCLAIM)
	// entries that another consumer of the group read and left
	// unacknowledged for at least this long — a consumer that died or was
	// renamed — checking at most once per ClaimIdle. Zero: never.
	ClaimIdle time.Duration
}

// GroupStats counts what a GroupReader did.
type GroupStats struct {
	Read      uint64 // entries handed to the handler
	Acked     uint64 // entries acknowledged
	Recreated uint64 // groups created again after NOGROUP (Redis restarted without persistence)
	Claimed   uint64 // entries taken over from other consumers (GroupOptions.ClaimIdle)
	Errors    uint64 // failed reads and handler errors
}

// GroupReader reads a stream as one consumer of a consumer group: it
// creates the group (and the stream) when missing, reads the consumer's
// pending entries first, then new ones, and acknowledges only what the
// handler acknowledges. When Redis answers NOGROUP (it restarted without
// persistence, or the group was deleted) the group is created again at the
// stream's start, since every entry then in the stream is new to it.
type GroupReader struct {
	client rueidis.Client
	opt    GroupOptions
	log    *slog.Logger

	read, acked, recreated, errs, claimed atomic.Uint64
}

// NewGroupReader returns a reader on client; log may be nil (slog.Default()).
func NewGroupReader(client rueidis.Client, opt GroupOptions, log *slog.Logger) (*GroupReader, error) {
	if opt.Stream == "" || opt.Group == "" || opt.Consumer == "" {
		return nil, errors.New("contract: a group reader needs a stream, a group and a consumer")
	}
	if opt.Start == "" {
		opt.Start = "$"
	}
	if opt.Count <= 0 {
		opt.Count = DefaultGroupCount
	}
	if opt.Block <= 0 {
		opt.Block = DefaultGroupBlock
	}
	if log == nil {
		log = slog.Default()
	}
	log = log.With("stream", opt.Stream, "group", opt.Group, "consumer", opt.Consumer)
	return &GroupReader{client: client, opt: opt, log: log}, nil
}

// Stats returns the counters.
func (g *GroupReader) Stats() GroupStats {
	return GroupStats{Read: g.read.Load(), Acked: g.acked.Load(), Recreated: g.recreated.Load(), Errors: g.errs.Load(), Claimed: g.claimed.Load()}
}

// Ack acknowledges entries by id.
func (g *GroupReader) Ack(ctx context.Context, ids ...string) error {
	if len(ids) == 0 {
		return nil
	}
	n, err := g.client.Do(ctx, g.client.B().Xack().Key(g.opt.Stream).Group(g.opt.Group).Id(ids...).Build()).AsInt64()
	if err != nil {
		return fmt.Errorf("xack %s %s: %w", g.opt.Stream, g.opt.Group, err)
	}
	g.acked.Add(uint64(n))
	return nil
}

// Run reads until ctx ends, handing entries to h; Redis errors and handler
// errors are logged and retried with back-off. Pending entries whose
// message was deleted from the stream are acknowledged without h.
func (g *GroupReader) Run(ctx context.Context, h Handler) {
	var b backoff
	created := false
	cursor := "0" // the pending entries are read after it; "" reads new ones
	var lastClaim time.Time
	for ctx.Err() == nil {
		if cursor == "" && created && g.opt.ClaimIdle > 0 && time.Since(lastClaim) >= g.opt.ClaimIdle {
			lastClaim = time.Now()
			n, err := g.claim(ctx)
			if err != nil && ctx.Err() == nil {
				g.errs.Add(1)
				g.log.Warn("group reader: taking over idle entries failed", "err", err)
			}
			if n > 0 {
				g.log.Info("group reader: took over entries another consumer left", "entries", n)
				cursor = "0" // they are now this consumer's pending entries
				continue
			}
		}
		if !created {
			if err := g.create(ctx, g.opt.Start); err != nil {
				g.errs.Add(1)
				b.Wait(ctx, g.log, "group reader: group not created", err)
				continue
			}
			created = true
		}
		entries, err := g.next(ctx, cursor)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			g.errs.Add(1)
			cursor = "0"
			if isNoGroup(err) {
				g.log.Warn("group reader: the group is gone (Redis restarted?), creating it again", "err", err)
				created = g.create(ctx, "0") == nil
				if created {
					g.recreated.Add(1)
					continue
				}
			}
			b.Wait(ctx, g.log, "group reader: read failed", err)
			continue
		}
		b.Reset()
		if cursor != "" {
			if len(entries) == 0 {
				cursor = "" // the pending entries are done: on to new ones
				continue
			}
			cursor = entries[len(entries)-1].ID
		}
		live := g.dropDeleted(ctx, entries)
		if len(live) == 0 {
			continue
		}
		g.read.Add(uint64(len(live)))
		if err := h(ctx, live); err != nil {
			if ctx.Err() != nil {
				return
			}
			g.errs.Add(1)
			cursor = "0"
			b.Wait(ctx, g.log, "group reader: handler failed, reading the pending entries again", err)
		}
	}
}

// create creates the group at start, with the stream if missing; a group
// that exists already is left as it is.
func (g *GroupReader) create(ctx context.Context, start string) error {
	cctx, cancel := context.WithTimeout(ctx, readTimeout)
	defer cancel()
	err := g.client.Do(cctx, g.client.B().XgroupCreate().Key(g.opt.Stream).Group(g.opt.Group).Id(start).Mkstream().Build()).Error()
	if re, ok := rueidis.IsRedisErr(err); ok && re.IsBusyGroup() {
		return nil
	}
	if err != nil {
		return fmt.Errorf("xgroup create %s %s %s: %w", g.opt.Stream, g.opt.Group, start, err)
	}
	return nil
}

// next reads the consumer's pending entries after cursor, or new entries
// (blocking) when cursor is "".
func (g *GroupReader) next(ctx context.Context, cursor string) ([]Entry, error) {
	b := g.client.B().Xreadgroup().Group(g.opt.Group, g.opt.Consumer).Count(int64(g.opt.Count))
	var cmd rueidis.Completed
	if cursor == "" {
		cmd = b.Block(g.opt.Block.Milliseconds()).Streams().Key(g.opt.Stream).Id(">").Build()
	} else {
		cmd = b.Streams().Key(g.opt.Stream).Id(cursor).Build()
	}
	res, err := g.client.Do(ctx, cmd).AsXRead()
	if rueidis.IsRedisNil(err) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("xreadgroup %s %s: %w", g.opt.Stream, g.opt.Group, err)
	}
	raw := res[g.opt.Stream]
	out := make([]Entry, len(raw))
	for i, e := range raw {
		out[i] = Entry{ID: e.ID, Fields: e.FieldValues}
	}
	return out, nil
}

// claim moves the entries of other consumers that have been idle for
// ClaimIdle to this consumer and returns how many it took.
func (g *GroupReader) claim(ctx context.Context) (int, error) {
	start, total := "0-0", 0
	for range 100 { // at most 100 × Count entries per check
		cctx, cancel := context.WithTimeout(ctx, readTimeout)
		res, err := g.client.Do(cctx, g.client.B().Xautoclaim().Key(g.opt.Stream).Group(g.opt.Group).
			Consumer(g.opt.Consumer).MinIdleTime(strconv.FormatInt(g.opt.ClaimIdle.Milliseconds(), 10)).
			Start(start).Count(int64(g.opt.Count)).Justid().Build()).ToArray()
		cancel()
		if err != nil {
			return total, fmt.Errorf("xautoclaim %s %s: %w", g.opt.Stream, g.opt.Group, err)
		}
		if len(res) < 2 {
			return total, fmt.Errorf("xautoclaim %s %s: answer of %d parts", g.opt.Stream, g.opt.Group, len(res))
		}
		ids, _ := res[1].ToArray()
		total += len(ids)
		g.claimed.Add(uint64(len(ids)))
		if start, err = res[0].ToString(); err != nil || start == "0-0" {
			return total, nil
		}
	}
	return total, nil
}

// dropDeleted acknowledges the entries whose message is gone and returns the others.
func (g *GroupReader) dropDeleted(ctx context.Context, entries []Entry) []Entry {
	live := entries[:0:0]
	var gone []string
	for _, e := range entries {
		if e.Fields == nil {
			gone = append(gone, e.ID)
			continue
		}
		live = append(live, e)
	}
	if len(gone) > 0 {
		g.log.Warn("group reader: pending entries deleted from the stream before they were handled", "ids", gone)
		if err := g.Ack(ctx, gone...); err != nil {
			g.log.Warn("group reader: acknowledging deleted entries failed", "err", err)
		}
	}
	return live
}

// isNoGroup recognises Redis's NOGROUP error (no such stream or group).
func isNoGroup(err error) bool {
	var re *rueidis.RedisError
	return errors.As(err, &re) && strings.HasPrefix(re.Error(), "NOGROUP")
}
