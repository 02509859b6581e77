package spool

import (
	"context"
	"runtime"
	"testing"
	"time"
)

// TestMemoryBounded writes 200 MiB of 300-byte records, reopens the spool
// and reads it through, checking that the heap in use stays small: neither
// recovery nor reading loads a segment whole.
func TestMemoryBounded(t *testing.T) {
	if testing.Short() {
		t.Skip("writes 200 MiB; skipped with -short")
	}
	const (
		total   = 200 << 20
		recSize = 300
		limit   = 8 << 20
	)
	n := total / (recHeaderSize + recSize)
	opt := Options{SyncEvery: 50 * time.Millisecond, Logger: quietLogger()}
	dir := t.TempDir()
	var ms runtime.MemStats
	peak := uint64(0)
	sample := func(where string) {
		runtime.ReadMemStats(&ms)
		peak = max(peak, ms.HeapInuse)
		if ms.HeapInuse > limit {
			t.Fatalf("%s: HeapInuse %d bytes over %d", where, ms.HeapInuse, limit)
		}
	}

	s, _ := mustOpen(t, dir, opt)
	data := make([]byte, recSize)
	batch := make([]Record, 100)
	for i := 0; i < n; i += len(batch) {
		for j := range batch {
			batch[j] = Record{TS: int64(i + j), Data: data}
		}
		if _, err := s.Append(batch); err != nil {
			t.Fatal(err)
		}
		if i%100000 == 0 {
			sample("append")
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	runtime.GC()

	s, rc := mustOpen(t, dir, opt)
	defer s.Close()
	sample("after open")
	if rc.Pending < int64(n) {
		t.Fatalf("recovered %d pending records, want %d", rc.Pending, n)
	}
	read := 0
	for {
		recs, p, err := s.Next(context.Background(), 500)
		if err != nil {
			t.Fatal(err)
		}
		if len(recs) == 0 {
			break
		}
		for _, r := range recs {
			if r.TS != int64(read) || len(r.Data) != recSize {
				t.Fatalf("record %d: ts %d, %d bytes", read, r.TS, len(r.Data))
			}
			read++
		}
		if err := s.Commit(p); err != nil {
			t.Fatal(err)
		}
		if read%100000 < 500 {
			sample("read")
		}
	}
	if int64(read) != rc.Pending {
		t.Fatalf("read %d of %d", read, rc.Pending)
	}
	t.Logf("%d records, %d MiB; peak sampled HeapInuse %.1f MiB", read, total>>20, float64(peak)/(1<<20))
}
