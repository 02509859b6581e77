package main

import (
	"context"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/voltedge/voltedge/internal/history"
)

type ingestOptions struct {
	batches, writers string
	rows             int
}

func numCPU() int { return runtime.NumCPU() }

// runIngest writes -ingest-rows rows into an empty database for every
// (batch size, writers) pair, the pairs interleaved in each repeat.
func runIngest(o options) error {
	batches, err := intList(o.ingest.batches)
	if err != nil {
		return err
	}
	writers, err := intList(o.ingest.writers)
	if err != nil {
		return err
	}
	type key struct{ batch, writers int }
	res := map[key]*span{}
	for r := 0; r < o.repeat; r++ {
		for _, b := range batches {
			for _, w := range writers {
				rate, err := ingestOnce(o, b, w)
				if err != nil {
					return err
				}
				k := key{b, w}
				if res[k] == nil {
					res[k] = &span{}
				}
				res[k].add(rate)
				fmt.Printf("ingest run %d: batch %d rows, %d writers: %.0f rows/s\n", r+1, b, w, rate)
			}
		}
	}
	for _, b := range batches {
		for _, w := range writers {
			fmt.Printf("INGEST batch=%d writers=%d rows=%d: %s rows/s\n", b, w, o.ingest.rows, res[key{b, w}])
		}
	}
	return nil
}

func ingestOnce(o options, batch, writers int) (float64, error) {
	db, err := createDB(o.server)
	if err != nil {
		return 0, err
	}
	defer db.drop()
	ctx := context.Background()
	st, err := openStore(ctx, db.dsn, o.site, max(writers, 4))
	if err != nil {
		return 0, err
	}
	defer st.Close()
	f := newFleet(1000, 21, time.Now().Add(-time.Hour).UnixMilli())
	total := int64(o.ingest.rows)
	var next atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, writers)
	start := time.Now()
	for w := 0; w < writers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			b := &history.Batch{Samples: make([]history.Sample, 0, batch)}
			for {
				from := next.Add(int64(batch)) - int64(batch)
				if from >= total {
					return
				}
				b.Samples = b.Samples[:0]
				f.fill(b, from, min(from+int64(batch), total))
				res, err := st.WriteCounted(ctx, b)
				if err == nil && res.Inserted != len(b.Samples) {
					err = fmt.Errorf("%d of %d rows inserted", res.Inserted, len(b.Samples))
				}
				if err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	el := time.Since(start)
	select {
	case err := <-errs:
		return 0, err
	default:
	}
	if n, err := db.count(); err != nil || n != total {
		return 0, fmt.Errorf("%d rows in the table (%v), want %d", n, err, total)
	}
	return float64(total) / el.Seconds(), nil
}
