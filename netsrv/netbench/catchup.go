package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/voltedge/voltedge/internal/history"
	"github.com/voltedge/voltedge/netsrv/spool"
	"github.com/voltedge/voltedge/netsrv/upload"
)

type catchupOptions struct {
	outage                           time.Duration
	dtus, points, writers, drainRows int
	timeout                          time.Duration
}

// runCatchup spools an outage's rows, then lets netsrv's uploader drain
// them into MySQL while new rows keep arriving through Submit, as netsrv's
// stream readers call it, at the fleet's rate.
func runCatchup(o options) error {
	var ratio, drain, arrival span
	for r := 0; r < o.repeat; r++ {
		res, err := catchupOnce(o)
		if err != nil {
			return err
		}
		what := "drained"
		if res.partial {
			what = "NOT drained: timeout;"
		}
		fmt.Printf("catchup run %d: %d spooled rows (%d MB spool) %s %d rows in %.1fs = %.0f rows/s while %d rows arrived (%.0f rows/s written); drain/arrival %.2f; %d failed writes; fill took %.1fs\n",
			r+1, res.spooled, res.spoolBytes>>20, what, res.drained, res.took.Seconds(), res.drainRate, res.arrived, res.arrivalRate, res.drainRate/res.target, res.failures, res.fill.Seconds())
		ratio.add(res.drainRate / res.target)
		drain.add(res.drainRate)
		arrival.add(res.arrivalRate)
	}
	fmt.Printf("CATCHUP outage=%s dtus=%d points=%d: drain %s rows/s, arrival %s rows/s, drain/arrival %s (target >= 5)\n",
		o.catchup.outage, o.catchup.dtus, o.catchup.points, drain, arrival, ratio)
	return nil
}

type catchupResult struct {
	spooled, arrived       int64
	drained                int64
	failures               uint64 // failed writes (a deadlock or timeout is retried after RetryEvery)
	partial                bool   // stopped at -catchup-timeout with rows left in the spool
	spoolBytes             int64
	took, fill             time.Duration
	drainRate, arrivalRate float64
	target                 float64
}

// fillSpool appends rows [0, n) of f to the spool in dir through an
// Uploader without a store (as netsrv does while MySQL is down), one
// second of rows per Submit, and stops early once the spool holds upTo
// bytes (0: no limit).
func fillSpool(dir string, f *fleet, n, maxBytes, upTo int64) (spool.Stats, error) {
	sp, _, err := spool.Open(dir, spool.Options{SyncEvery: 10 * time.Millisecond, MaxBytes: maxBytes, Logger: quiet()})
	if err != nil {
		return spool.Stats{}, err
	}
	defer sp.Close()
	up, err := upload.New(upload.Options{Spool: sp, Log: quiet()})
	if err != nil {
		return spool.Stats{}, err
	}
	ctx := context.Background()
	per := int64(f.perSecond())
	b := &history.Batch{}
	for from := int64(0); from < n; from += per {
		b.Samples = b.Samples[:0]
		f.fill(b, from, min(from+per, n))
		if err := up.Submit(ctx, b); err != nil {
			return spool.Stats{}, err
		}
		if upTo > 0 && sp.Stats().Bytes >= upTo {
			break
		}
	}
	st := sp.Stats()
	if st.DroppedRecords > 0 {
		return st, fmt.Errorf("the spool dropped %d records at its cap", st.DroppedRecords)
	}
	return st, nil
}

func catchupOnce(o options) (catchupResult, error) {
	var res catchupResult
	db, err := createDB(o.server)
	if err != nil {
		return res, err
	}
	defer db.drop()
	dir := filepath.Join(o.work, "catchup-spool")
	os.RemoveAll(dir)
	defer os.RemoveAll(dir)

	secs := int64(o.catchup.outage / time.Second)
	now := time.Now().UnixMilli()
	f := newFleet(o.catchup.dtus, o.catchup.points, now-secs*1000)
	res.spooled = secs * int64(f.perSecond())
	t0 := time.Now()
	st, err := fillSpool(dir, f, res.spooled, spool.DefaultMaxBytes, 0)
	if err != nil {
		return res, err
	}
	res.fill, res.spoolBytes = time.Since(t0), st.Bytes

	// Drain as netsrv does: the spool opened with its defaults, the store
	// with the default pool.
	sp, _, err := spool.Open(dir, spool.Options{Logger: quiet()})
	if err != nil {
		return res, err
	}
	defer sp.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	store, err := openStore(ctx, db.dsn, o.site, 0)
	if err != nil {
		return res, err
	}
	defer store.Close()
	// Warnings (a failed write, MySQL taken as unreachable) go to stderr.
	warn := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	up, err := upload.New(upload.Options{Spool: sp, Log: warn, DrainRows: o.catchup.drainRows, DrainWriters: o.catchup.writers})
	if err != nil {
		return res, err
	}
	live := newFleet(o.catchup.dtus, o.catchup.points, now+1000)
	res.target = float64(live.perSecond())
	start := time.Now()
	up.SetStore(store)
	done := make(chan struct{})
	go func() { up.Run(ctx); close(done) }()

	// New rows: a tenth of a second of the fleet every 100 ms.
	arrivalErr := make(chan error, 1)
	arrived := make(chan int64, 1)
	go func() {
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		var sent int64
		b := &history.Batch{}
		for {
			select {
			case <-ctx.Done():
				arrived <- sent
				return
			case <-tick.C:
			}
			due := int64(time.Since(start).Seconds() * res.target)
			if due <= sent {
				continue
			}
			b.Samples = b.Samples[:0]
			live.fill(b, sent, due)
			if err := up.Submit(ctx, b); err != nil {
				if ctx.Err() == nil {
					arrivalErr <- err
				}
				arrived <- sent
				return
			}
			sent = due
		}
	}()
	deadline := time.After(o.catchup.timeout)
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case err := <-arrivalErr:
			return res, fmt.Errorf("arrival: %w", err)
		case <-deadline:
			res.partial = true
		case <-tick.C:
		}
		if res.partial || up.Stats().Drained >= uint64(res.spooled) && sp.Stats().Pending == 0 {
			break
		}
	}
	res.took = time.Since(start)
	cancel()
	<-done
	res.arrived = <-arrived
	us := up.Stats()
	res.drained = int64(us.Drained)
	res.failures = us.Failures
	res.drainRate = float64(us.Drained) / res.took.Seconds()
	res.arrivalRate = float64(us.Direct) / res.took.Seconds()
	if us.Spooled > 0 || us.Rejected > 0 {
		return res, fmt.Errorf("uploader: %+v", us)
	}
	if res.partial {
		return res, nil // the writes cut by the deadline were rolled back
	}
	n, err := db.count()
	if err != nil || n != res.spooled+int64(us.Direct) {
		return res, fmt.Errorf("%d rows in the table (%v), want %d spooled + %d arrived", n, err, res.spooled, us.Direct)
	}
	return res, nil
}
