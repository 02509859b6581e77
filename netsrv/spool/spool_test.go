package spool

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// smallOpts gives segments of 8 KiB so tests cross segment boundaries quickly.
func smallOpts() Options {
	return Options{
		SegmentSize: 8 << 10,
		MaxBytes:    1 << 20,
		SyncEvery:   2 * time.Millisecond,
		MaxRecord:   2 << 10,
		Logger:      quietLogger(),
	}
}

func mustOpen(t testing.TB, dir string, opt Options) (*Spool, Recovery) {
	t.Helper()
	s, rec, err := Open(dir, opt)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	return s, rec
}

// rec returns record i: ts = 1000+i, data of 100..300 bytes that encode i.
func rec(i int) Record {
	n := 100 + (i*37)%200
	d := bytes.Repeat([]byte{byte(i)}, n)
	copy(d, fmt.Sprintf("rec-%08d|", i))
	return Record{TS: int64(1000 + i), Data: d}
}

func checkRec(t testing.TB, got Record, i int) {
	t.Helper()
	want := rec(i)
	if got.TS != want.TS || !bytes.Equal(got.Data, want.Data) {
		t.Fatalf("record %d: got ts=%d data=%.20q, want ts=%d data=%.20q", i, got.TS, got.Data, want.TS, want.Data)
	}
}

func appendRange(t testing.TB, s *Spool, from, to, batch int) Pos {
	t.Helper()
	var p Pos
	for i := from; i < to; i += batch {
		var recs []Record
		for j := i; j < min(i+batch, to); j++ {
			recs = append(recs, rec(j))
		}
		var err error
		if p, err = s.Append(recs); err != nil {
			t.Fatalf("Append %d: %v", i, err)
		}
	}
	return p
}

func waitDurable(t testing.TB, s *Spool, p Pos) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := s.WaitDurable(ctx, p); err != nil {
		t.Fatalf("WaitDurable: %v", err)
	}
}

// readAll reads everything readable in batches of max, committing after each
// batch if commit is set; it returns the records.
func readAll(t testing.TB, s *Spool, max int, commit bool) []Record {
	t.Helper()
	var out []Record
	for {
		recs, p, err := s.Next(context.Background(), max)
		if err != nil {
			t.Fatalf("Next: %v", err)
		}
		if len(recs) > max {
			t.Fatalf("Next returned %d records, max %d", len(recs), max)
		}
		if len(recs) == 0 {
			return out
		}
		out = append(out, recs...)
		if commit {
			if err := s.Commit(p); err != nil {
				t.Fatalf("Commit: %v", err)
			}
		}
	}
}

func TestAppendReadCommitOrder(t *testing.T) {
	dir := t.TempDir()
	s, _ := mustOpen(t, dir, smallOpts())
	defer s.Close()
	const n = 1000
	p := appendRange(t, s, 0, n, 7)
	waitDurable(t, s, p)
	st := s.Stats()
	if st.Pending != n || st.Appended != n || st.Segments < 10 {
		t.Fatalf("stats before reading: %+v", st)
	}
	if st.OldestTS != 1000 {
		t.Fatalf("OldestTS = %d, want 1000", st.OldestTS)
	}
	var got []Record
	for {
		recs, p, err := s.Next(context.Background(), 37)
		if err != nil {
			t.Fatal(err)
		}
		if len(recs) == 0 {
			break
		}
		got = append(got, recs...)
		if err := s.Commit(p); err != nil {
			t.Fatal(err)
		}
		// The oldest pending record is the next one, in whichever segment.
		if st := s.Stats(); st.Pending != int64(n-len(got)) || (st.Pending > 0 && st.OldestTS != int64(1000+len(got))) {
			t.Fatalf("after reading %d: pending %d, oldest ts %d", len(got), st.Pending, st.OldestTS)
		}
	}
	if len(got) != n {
		t.Fatalf("read %d records, want %d", len(got), n)
	}
	for i, r := range got {
		checkRec(t, r, i)
	}
	st = s.Stats()
	if st.Pending != 0 || st.Segments != 1 || st.OldestTS != 0 {
		t.Fatalf("stats after reading: %+v", st)
	}
	segs, _ := listSegments(dir)
	if len(segs) != 1 {
		t.Fatalf("%d segment files left, want 1", len(segs))
	}
	// Appending after catching up continues in order.
	p = appendRange(t, s, n, n+10, 3)
	waitDurable(t, s, p)
	got = readAll(t, s, 100, true)
	if len(got) != 10 {
		t.Fatalf("read %d records after catch-up, want 10", len(got))
	}
	for i, r := range got {
		checkRec(t, r, n+i)
	}
}

func TestPendingAndOldestDuringCommit(t *testing.T) {
	opt := smallOpts()
	now := time.UnixMilli(1000 + 5000)
	opt.Now = func() time.Time { return now }
	s, _ := mustOpen(t, t.TempDir(), opt)
	defer s.Close()
	waitDurable(t, s, appendRange(t, s, 0, 100, 10))
	recs, p, err := s.Next(context.Background(), 30)
	if err != nil || len(recs) != 30 {
		t.Fatalf("Next: %d records, %v", len(recs), err)
	}
	if err := s.Commit(p); err != nil {
		t.Fatal(err)
	}
	st := s.Stats()
	if st.Pending != 70 || st.OldestTS != 1030 || st.OldestAge != 4970*time.Millisecond {
		t.Fatalf("stats: pending=%d oldest=%d age=%v", st.Pending, st.OldestTS, st.OldestAge)
	}
	// Committing an older position is a no-op.
	if err := s.Commit(Pos{Seg: p.Seg, Off: segHeaderSize}); err != nil {
		t.Fatal(err)
	}
	if got := s.Stats().Pending; got != 70 {
		t.Fatalf("pending after stale commit = %d", got)
	}
}

func TestRestartResumesAtCursor(t *testing.T) {
	dir := t.TempDir()
	s, _ := mustOpen(t, dir, smallOpts())
	waitDurable(t, s, appendRange(t, s, 0, 500, 10))
	var committed int
	for committed < 200 {
		recs, p, err := s.Next(context.Background(), 20)
		if err != nil {
			t.Fatal(err)
		}
		committed += len(recs)
		if err := s.Commit(p); err != nil {
			t.Fatal(err)
		}
	}
	// Read 50 more but do not commit them: they come again after the restart.
	if recs, _, err := s.Next(context.Background(), 50); err != nil || len(recs) != 50 {
		t.Fatalf("Next: %d, %v", len(recs), err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.Next(context.Background(), 1); !errors.Is(err, ErrClosed) {
		t.Fatalf("Next after Close: %v", err)
	}

	s, rc := mustOpen(t, dir, smallOpts())
	defer s.Close()
	if rc.Pending != 300 || len(rc.Damaged) != 0 {
		t.Fatalf("recovery: %+v", rc)
	}
	got := readAll(t, s, 64, true)
	if len(got) != 300 {
		t.Fatalf("read %d after restart, want 300", len(got))
	}
	for i, r := range got {
		checkRec(t, r, 200+i)
	}
	// A restart with everything committed reads nothing.
	s.Close()
	s, rc = mustOpen(t, dir, smallOpts())
	defer s.Close()
	if rc.Pending != 0 {
		t.Fatalf("pending after full commit and restart: %d", rc.Pending)
	}
	if got := readAll(t, s, 10, false); len(got) != 0 {
		t.Fatalf("read %d records after full commit", len(got))
	}
}

func TestWaitDurable(t *testing.T) {
	opt := smallOpts()
	opt.SyncEvery = time.Hour // no background sync during the test
	s, _ := mustOpen(t, t.TempDir(), opt)
	defer s.Close()
	p, err := s.Append([]Record{rec(0), rec(1)})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if err := s.WaitDurable(ctx, p); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("WaitDurable before sync: %v", err)
	}
	if recs, _, _ := s.Next(context.Background(), 10); len(recs) != 0 {
		t.Fatalf("Next returned %d records that are not durable", len(recs))
	}
	done := make(chan error, 1)
	go func() { done <- s.WaitDurable(context.Background(), p) }()
	if err := s.Sync(); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatalf("WaitDurable after sync: %v", err)
	}
	if st := s.Stats(); st.Durable != p || st.Syncs != 1 {
		t.Fatalf("stats: %+v", st)
	}
	if recs, _, _ := s.Next(context.Background(), 10); len(recs) != 2 {
		t.Fatalf("Next returned %d durable records, want 2", len(recs))
	}
}

func TestAppendDurableGroupSync(t *testing.T) {
	opt := smallOpts()
	opt.SyncEvery = 20 * time.Millisecond
	s, _ := mustOpen(t, t.TempDir(), opt)
	defer s.Close()
	start := time.Now()
	p, err := s.AppendDurable(context.Background(), []Record{rec(0)})
	if err != nil {
		t.Fatal(err)
	}
	if s.Stats().Durable.Less(p) {
		t.Fatal("AppendDurable returned before the record was durable")
	}
	if time.Since(start) > 5*time.Second {
		t.Fatal("AppendDurable took too long")
	}
	// Records appended across a rotation are durable after one wait.
	p = appendRange(t, s, 1, 200, 50)
	waitDurable(t, s, p)
	s.Close()
	if _, err := s.Append([]Record{rec(0)}); !errors.Is(err, ErrClosed) {
		t.Fatalf("Append after Close: %v", err)
	}
	if err := s.WaitDurable(context.Background(), Pos{Seg: p.Seg + 1}); !errors.Is(err, ErrClosed) {
		t.Fatalf("WaitDurable after Close: %v", err)
	}
}

func TestRecordTooLarge(t *testing.T) {
	s, _ := mustOpen(t, t.TempDir(), smallOpts())
	defer s.Close()
	_, err := s.Append([]Record{rec(0), {Data: make([]byte, 2<<10+1)}})
	if !errors.Is(err, ErrTooLarge) {
		t.Fatalf("err = %v, want ErrTooLarge", err)
	}
	if st := s.Stats(); st.Appended != 0 {
		t.Fatalf("a refused batch appended %d records", st.Appended)
	}
	if _, err := s.Append([]Record{{Data: make([]byte, 2<<10)}, {}}); err != nil {
		t.Fatalf("records at the limit and empty: %v", err)
	}
}

func TestOptionsValidation(t *testing.T) {
	for _, o := range []Options{
		{SegmentSize: 1 << 10, MaxRecord: 4 << 10},
		{SegmentSize: 1 << 20, MaxBytes: 1 << 20},
		{MaxRecord: -1},
	} {
		o.Logger = quietLogger()
		if _, _, err := Open(t.TempDir(), o); err == nil {
			t.Errorf("Open(%+v) succeeded", o)
		}
	}
}

func TestOpenFailsOnIOError(t *testing.T) {
	file := filepath.Join(t.TempDir(), "plain-file")
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, dir := range []string{file, filepath.Join(file, "spool")} {
		if _, _, err := Open(dir, smallOpts()); err == nil {
			t.Errorf("Open(%s) succeeded on a path that is not a directory", dir)
		}
	}
	if os.Getuid() == 0 {
		return // root ignores directory permissions
	}
	ro := t.TempDir()
	if err := os.Chmod(ro, 0o500); err != nil {
		t.Fatal(err)
	}
	defer os.Chmod(ro, 0o700)
	if _, _, err := Open(ro, smallOpts()); err == nil {
		t.Fatal("Open in a read-only directory succeeded")
	}
}

func TestConcurrentReaderWriter(t *testing.T) {
	opt := smallOpts()
	opt.SyncEvery = time.Millisecond
	s, _ := mustOpen(t, t.TempDir(), opt)
	defer s.Close()
	const n = 5000
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; i < n; i += 25 {
			var recs []Record
			for j := i; j < i+25; j++ {
				recs = append(recs, rec(j))
			}
			if i%500 == 0 {
				if _, err := s.AppendDurable(ctx, recs); err != nil {
					t.Errorf("AppendDurable: %v", err)
					return
				}
			} else if _, err := s.Append(recs); err != nil {
				t.Errorf("Append: %v", err)
				return
			}
			_ = s.Stats()
		}
	}()
	got := 0
	for got < n && ctx.Err() == nil {
		recs, p, err := s.Next(ctx, 40)
		if err != nil {
			t.Fatalf("Next: %v", err)
		}
		for _, r := range recs {
			checkRec(t, r, got)
			got++
		}
		if err := s.Commit(p); err != nil {
			t.Fatalf("Commit: %v", err)
		}
		if len(recs) == 0 {
			time.Sleep(time.Millisecond)
		}
	}
	wg.Wait()
	if got != n {
		t.Fatalf("read %d of %d", got, n)
	}
	if st := s.Stats(); st.Pending != 0 || st.Segments != 1 {
		t.Fatalf("stats: %+v", st)
	}
}
