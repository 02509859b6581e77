package upload

import (
	"context"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"

	"github.com/voltedge/voltedge/internal/history"
	"github.com/voltedge/voltedge/netsrv/spool"
)

// flakyStore fails the first write of the batches whose first sample has a
// TS in failOnce, as an unreachable server would, and records the rest.
type flakyStore struct {
	mu       sync.Mutex
	failOnce map[int64]bool
	written  map[int64]int // first TS of a batch → times written
	delay    time.Duration
}

func (f *flakyStore) Write(ctx context.Context, b *history.Batch) error {
	time.Sleep(f.delay)
	f.mu.Lock()
	defer f.mu.Unlock()
	ts := b.Samples[0].TS
	if f.failOnce[ts] {
		delete(f.failOnce, ts)
		return &mysql.MySQLError{Number: 2013, Message: "lost connection"}
	}
	f.written[ts]++
	return nil
}

// TestRunCommitsInOrder drains with several writers while one batch fails
// once: the spool's cursor never passes that batch until it is written, and
// every batch ends up written.
func TestRunCommitsInOrder(t *testing.T) {
	dir := t.TempDir()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	sp, _, err := spool.Open(dir, spool.Options{Logger: log, SyncEvery: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	const batches = 12
	for i := range batches {
		b := &history.Batch{}
		for j := range 100 {
			b.Samples = append(b.Samples, history.Sample{Channel: "1", Point: "p", Value: "1", TS: int64(i*1000 + j)})
		}
		if _, err := sp.AppendDurable(context.Background(), []spool.Record{{Data: encodeBatch(nil, b)}}); err != nil {
			t.Fatal(err)
		}
	}
	st := &flakyStore{failOnce: map[int64]bool{3000: true}, written: map[int64]int{}, delay: 5 * time.Millisecond}
	u, err := New(Options{Spool: sp, Log: log, DrainRows: 100, DrainWriters: 4, RetryEvery: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	u.SetStore(st)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { u.Run(ctx); close(done) }()

	// While batch 3 waits for its retry, batches 0-2 are committed and
	// nothing after them.
	time.Sleep(100 * time.Millisecond)
	if p := sp.Stats().Pending; p != batches-3 {
		t.Errorf("%d records pending while batch 3 waits for its retry, want %d", p, batches-3)
	}
	deadline := time.Now().Add(5 * time.Second)
	for sp.Stats().Pending > 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	<-done
	if p := sp.Stats().Pending; p != 0 {
		t.Fatalf("%d records still pending", p)
	}
	for i := range batches {
		if n := st.written[int64(i*1000)]; n != 1 {
			t.Errorf("batch %d written %d times, want once", i, n)
		}
	}
	if s := u.Stats(); s.Drained != batches*100 || s.Rejected != 0 {
		t.Errorf("stats %+v", s)
	}
	sp.Close()
}
