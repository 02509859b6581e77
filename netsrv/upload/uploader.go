// Package upload moves what netsrv reads from the Redis streams into MySQL,
// through the disk spool while MySQL cannot be reached.
//
// Submit is called with the rows of one read of a stream. It returns once
// they are durable — committed in MySQL, or fsynced in the spool — and only
// then may the caller acknowledge the entries in Redis. While MySQL is
// down, Submit goes straight to the spool; Run uploads the spool, oldest
// first, whenever MySQL answers, while new data goes to MySQL directly. Rows
// are idempotent (unique keys per site), so a batch written twice — a crash
// between commit and acknowledgement, a spool record replayed after a
// restart — adds nothing.
package upload

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/voltedge/voltedge/internal/history"
	"github.com/voltedge/voltedge/netsrv/spool"
)

// Store is where rows go: *history.Store.
type Store interface {
	Write(ctx context.Context, b *history.Batch) error
}

// Event kinds reported through Options.Event (and netsrv:events).
const (
	EventDBUnreachable = "db_unreachable"
	EventDBBack        = "db_back"
	EventSpoolDropped  = "spool_dropped"
	EventRejected      = "batch_rejected"
)

// DefaultMaxRecordBytes bounds a spool record unless Options say otherwise:
// half the spool's default largest record, since one row may be larger
// than the rows counted on.
const DefaultMaxRecordBytes = 512 << 10

// Options configure an Uploader.
type Options struct {
	// Spool holds rows while MySQL is unreachable (required).
	Spool *spool.Spool
	// RetryEvery is how often Run tries an unreachable MySQL again (default 5s).
	RetryEvery time.Duration
	// WriteTimeout bounds one write to MySQL (default 30s).
	WriteTimeout time.Duration
	// DrainRows is about how many rows Run uploads per transaction (default
	// 42000: two seconds of 1,000 DTUs of 21 points). The store sends a
	// batch's samples in primary-key order, so the more seconds a batch
	// spans, the fewer index pages MySQL visits per row.
	DrainRows int
	// MaxRecordBytes bounds one spool record (default DefaultMaxRecordBytes);
	// it must not exceed the spool's MaxRecord.
	MaxRecordBytes int
	// DrainWriters is how many of those transactions Run writes at the same
	// time (default 2). Each takes a connection of the store's pool.
	DrainWriters int
	// MaxAttempts is how often a spooled batch that MySQL refuses for a
	// reason other than being unreachable is tried before it is dropped and
	// reported (default 3).
	MaxAttempts int
	// Event, if set, reports what a person should know: EventDBUnreachable,
	// EventDBBack, EventSpoolDropped, EventRejected, with a detail text.
	Event func(event, detail string)
	// Log receives the same, and errors (default slog.Default()).
	Log *slog.Logger
}

// Stats counts what an Uploader did; rows are rows of every table.
type Stats struct {
	Direct    uint64        `json:"rows_direct"`   // rows written to MySQL by Submit
	Spooled   uint64        `json:"rows_spooled"`  // rows written to the spool
	Drained   uint64        `json:"rows_drained"`  // spooled rows uploaded by Run
	Rejected  uint64        `json:"rows_rejected"` // rows MySQL refused for their content, dropped
	Failures  uint64        `json:"write_failures"`
	Down      bool          `json:"mysql_down"` // MySQL is taken to be unreachable
	LastWrite time.Duration `json:"-"`
	// LastWriteMS is LastWrite in milliseconds, for /health.
	LastWriteMS float64 `json:"last_write_ms"`
}

// Uploader sends rows to a Store, or to the spool while the Store is down.
type Uploader struct {
	opt Options
	log *slog.Logger

	mu    sync.Mutex
	store Store // nil until SetStore
	down  bool  // last write found the store unreachable, or no store yet
	since time.Time

	wake chan struct{}

	direct, spooled, drained, rejected, failures atomic.Uint64
	lastWrite                                    atomic.Int64
}

// New returns an Uploader without a store: everything is spooled until
// SetStore.
func New(opt Options) (*Uploader, error) {
	if opt.Spool == nil {
		return nil, errors.New("upload: a spool is required")
	}
	if opt.RetryEvery <= 0 {
		opt.RetryEvery = 5 * time.Second
	}
	if opt.WriteTimeout <= 0 {
		opt.WriteTimeout = 30 * time.Second
	}
	if opt.DrainRows <= 0 {
		opt.DrainRows = 42000
	}
	if opt.DrainWriters <= 0 {
		opt.DrainWriters = 2
	}
	if opt.MaxRecordBytes <= 0 {
		opt.MaxRecordBytes = DefaultMaxRecordBytes
	}
	if opt.MaxAttempts <= 0 {
		opt.MaxAttempts = 3
	}
	if opt.Log == nil {
		opt.Log = slog.Default()
	}
	return &Uploader{opt: opt, log: opt.Log, down: true, since: time.Now(), wake: make(chan struct{}, 1)}, nil
}

// SetStore installs the store once it could be opened; rows go to it from
// then on, and Run uploads what was spooled before.
func (u *Uploader) SetStore(s Store) {
	u.mu.Lock()
	u.store, u.down = s, false
	u.mu.Unlock()
	u.poke()
}

func (u *Uploader) poke() {
	select {
	case u.wake <- struct{}{}:
	default:
	}
}

// Stats returns the counters.
func (u *Uploader) Stats() Stats {
	u.mu.Lock()
	down := u.down
	u.mu.Unlock()
	return Stats{Direct: u.direct.Load(), Spooled: u.spooled.Load(), Drained: u.drained.Load(),
		Rejected: u.rejected.Load(), Failures: u.failures.Load(), Down: down,
		LastWrite: time.Duration(u.lastWrite.Load()), LastWriteMS: float64(u.lastWrite.Load()) / 1e6}
}

// current returns the store when it is taken to be reachable.
func (u *Uploader) current() Store {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.down {
		return nil
	}
	return u.store
}

// write writes b to s with the write timeout.
func (u *Uploader) write(ctx context.Context, s Store, b *history.Batch) error {
	ctx, cancel := context.WithTimeout(ctx, u.opt.WriteTimeout)
	defer cancel()
	start := time.Now()
	err := s.Write(ctx, b)
	u.lastWrite.Store(int64(time.Since(start)))
	if err != nil {
		u.failures.Add(1)
	}
	return err
}

// markDown records that the store is unreachable, reporting it once.
func (u *Uploader) markDown(err error) {
	u.mu.Lock()
	was := u.down
	u.down = true
	if !was {
		u.since = time.Now()
	}
	u.mu.Unlock()
	if !was {
		u.report(EventDBUnreachable, fmt.Sprintf("MySQL unreachable, spooling to disk: %v", err), slog.LevelWarn)
	}
}

// markUp records that the store answered again, reporting it once.
func (u *Uploader) markUp() {
	u.mu.Lock()
	was, since := u.down, u.since
	u.down = false
	u.mu.Unlock()
	if was {
		st := u.opt.Spool.Stats()
		u.report(EventDBBack, fmt.Sprintf("MySQL reachable again after %s; uploading %d spooled records", time.Since(since).Round(time.Second), st.Pending), slog.LevelInfo)
	}
}

func (u *Uploader) report(event, detail string, level slog.Level) {
	u.log.Log(context.Background(), level, detail, "event", event)
	if u.opt.Event != nil {
		u.opt.Event(event, detail)
	}
}

// Submit makes b durable: in MySQL when it is reachable, else in the spool
// (fsynced). It returns an error only when neither worked or ctx ended; the
// caller then must not acknowledge the entries b came from.
func (u *Uploader) Submit(ctx context.Context, b *history.Batch) error {
	n := uint64(b.Len())
	if n == 0 {
		return nil
	}
	if s := u.current(); s != nil {
		err := u.write(ctx, s, b)
		if err == nil {
			u.direct.Add(n)
			u.log.Debug("upload: rows written", "rows", n, "took", time.Duration(u.lastWrite.Load()))
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		var ve *history.ValidationError
		if errors.As(err, &ve) {
			// The content, not the database: spooling would not help.
			u.rejected.Add(n)
			u.report(EventRejected, fmt.Sprintf("%d rows refused and dropped: %v", n, err), slog.LevelError)
			return nil
		}
		u.markDown(err)
	}
	parts := encodeParts(b, u.opt.MaxRecordBytes)
	recs := make([]spool.Record, len(parts))
	now := time.Now().UnixMilli()
	for i, p := range parts {
		recs[i] = spool.Record{TS: now, Data: p}
	}
	if _, err := u.opt.Spool.AppendDurable(ctx, recs); err != nil {
		return fmt.Errorf("upload: spool %d rows: %w", n, err)
	}
	u.spooled.Add(n)
	u.poke()
	return nil
}

// Run uploads the spool into the store, oldest first, until ctx ends: at
// once when there is something to upload and the store answers, every
// RetryEvery while it does not. Up to DrainWriters batches are written at
// the same time, each in its own transaction; the spool's cursor moves past
// a batch only once MySQL committed it and every batch before it.
func (u *Uploader) Run(ctx context.Context) {
	var queue []*pending // read from the spool and not yet committed there, in spool order
	tick := time.NewTicker(u.opt.RetryEvery)
	defer tick.Stop()
	for ctx.Err() == nil {
		u.mu.Lock()
		s := u.store
		u.mu.Unlock()
		if s != nil {
			for len(queue) < u.opt.DrainWriters {
				b, pos, ok, err := u.read(ctx)
				if err != nil {
					u.log.Error("upload: reading the spool failed", "err", err)
				}
				if !ok {
					break
				}
				queue = append(queue, &pending{b: b, pos: pos})
			}
		}
		if len(queue) == 0 || s == nil {
			select { // nothing to do: wait for Submit or the next retry
			case <-ctx.Done():
				return
			case <-u.wake:
			case <-tick.C:
			}
			continue
		}
		u.writeAll(ctx, s, queue)
		if ctx.Err() != nil {
			return
		}
		var down error
		ok, retry := false, false
		for _, p := range queue {
			switch {
			case p.done:
			case p.err == nil:
				p.done, ok = true, true
				u.drained.Add(uint64(p.b.Len()))
			case history.IsUnavailable(p.err):
				down, retry = p.err, true
			default:
				p.attempts++
				if p.attempts >= u.opt.MaxAttempts {
					u.rejected.Add(uint64(p.b.Len()))
					u.report(EventRejected, fmt.Sprintf("%d spooled rows refused %d times and dropped: %v", p.b.Len(), p.attempts, p.err), slog.LevelError)
					p.done = true
					continue
				}
				u.log.Warn("upload: MySQL refused a spooled batch; trying again", "attempt", p.attempts, "err", p.err)
				retry = true
			}
		}
		if down != nil {
			u.markDown(down)
		} else if ok {
			u.markUp()
		}
		// Commit the batches done with no undone batch before them.
		k := 0
		for k < len(queue) && queue[k].done {
			k++
		}
		if k > 0 {
			if err := u.opt.Spool.Commit(queue[k-1].pos); err != nil {
				u.log.Error("upload: committing the spool failed; the batches will be read again after a restart", "err", err)
			}
			n := copy(queue, queue[k:])
			clear(queue[n:])
			queue = queue[:n]
		}
		if !retry {
			continue
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// pending is a batch read from the spool and not yet committed there.
type pending struct {
	b        history.Batch
	pos      spool.Pos // just after the batch's last record
	done     bool      // written, or dropped after MaxAttempts refusals
	err      error     // of the last write
	attempts int
}

// writeAll writes the batches of queue not yet done, at the same time, and
// sets their err.
func (u *Uploader) writeAll(ctx context.Context, s Store, queue []*pending) {
	var wg sync.WaitGroup
	for _, p := range queue {
		if p.done {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			p.err = u.write(ctx, s, &p.b)
		}()
	}
	wg.Wait()
}

// read takes records from the spool until about DrainRows rows. The rows
// share the records' memory, and the samples get one array of their exact
// size.
func (u *Uploader) read(ctx context.Context) (history.Batch, spool.Pos, bool, error) {
	var b history.Batch
	var pos spool.Pos
	var recs []spool.Record
	rows, samples := 0, 0
	var err error
	for rows < u.opt.DrainRows {
		// Records hold up to maxRecordRows rows: ask for about what is
		// missing, so that a batch stays near DrainRows.
		var more []spool.Record
		var p spool.Pos
		more, p, err = u.opt.Spool.Next(ctx, min(8, max(1, (u.opt.DrainRows-rows)/maxRecordRows)))
		if err != nil || len(more) == 0 {
			break
		}
		for _, r := range more {
			n := recordSamples(r.Data)
			samples += n
			rows += max(1, n)
		}
		recs = append(recs, more...)
		pos = p
	}
	b.Samples = make([]history.Sample, 0, samples)
	for _, r := range recs {
		if err := decodeBatch(r.Data, &b); err != nil {
			u.rejected.Add(1)
			u.log.Error("upload: unreadable spool record skipped", "err", err)
		}
	}
	return b, pos, len(recs) > 0, err
}
