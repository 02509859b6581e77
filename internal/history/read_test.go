package history

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"strconv"
	"testing"
	"time"
)

func TestHistoryRawAndDownsampled(t *testing.T) {
	s := openStore(t, "", Options{})
	ctx := context.Background()
	start := baseTS() // a whole hour: multiple of any step below
	var b Batch
	// 0..59 once a second on p; another point and a non-numeric value too.
	for i := 0; i < 60; i++ {
		b.Samples = append(b.Samples, Sample{Channel: "1", Point: "A", Model: "m", PointName: "p", Value: strconv.Itoa(i), TS: start + int64(i)*1000})
		b.Samples = append(b.Samples, Sample{Channel: "1", Point: "B", Model: "m", PointName: "q", Value: "1000", TS: start + int64(i)*1000})
	}
	b.Samples = append(b.Samples, Sample{Channel: "2", Point: "A", Model: "m", PointName: "p", Value: "fault", TS: start + 500})
	if err := s.Write(ctx, &b); err != nil {
		t.Fatal(err)
	}

	raw, err := s.History(ctx, Query{Model: "m", Point: "p", From: start, To: start + 3000})
	if err != nil {
		t.Fatal(err)
	}
	want := []HistoryRow{
		{TS: start, Value: "0", Count: 1},
		{TS: start + 500, Value: "fault", Count: 1},
		{TS: start + 1000, Value: "1", Min: 1, Avg: 1, Max: 1, Count: 1},
		{TS: start + 2000, Value: "2", Min: 2, Avg: 2, Max: 2, Count: 1},
	}
	if !slices.Equal(raw, want) {
		t.Fatalf("raw = %+v\nwant %+v", raw, want)
	}
	if raw, _ := s.History(ctx, Query{Model: "m", Point: "p", From: start, To: start + 60_000, Limit: 5}); len(raw) != 5 {
		t.Fatalf("Limit 5 returned %d rows", len(raw))
	}

	down, err := s.History(ctx, Query{Model: "m", Point: "p", From: start, To: start + 60_000, Step: 20 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	want = []HistoryRow{
		{TS: start, Min: 0, Avg: 9.5, Max: 19, Count: 20},
		{TS: start + 20_000, Min: 20, Avg: 29.5, Max: 39, Count: 20},
		{TS: start + 40_000, Min: 40, Avg: 49.5, Max: 59, Count: 20},
	}
	if !slices.Equal(down, want) {
		t.Fatalf("downsampled = %+v\nwant %+v", down, want)
	}
	// Half-open range: To excludes the sample at To.
	down, err = s.History(ctx, Query{Model: "m", Point: "p", From: start + 10_000, To: start + 30_000, Step: time.Minute})
	if err != nil || len(down) != 1 || down[0].Count != 20 || down[0].Min != 10 || down[0].Max != 29 || down[0].TS != start {
		t.Fatalf("bucket of [10 s, 30 s) = %+v, %v", down, err)
	}

	for _, q := range []Query{
		{Point: "p", From: start, To: start + 1},
		{Model: "m", From: start, To: start + 1},
		{Model: "m", Point: "p", From: start, To: start},
		{Model: "m", Point: "p", From: start, To: start + 1, Step: time.Microsecond},
	} {
		if _, err := s.History(ctx, q); err == nil {
			t.Errorf("History(%+v) accepted", q)
		}
	}
}

func TestExportRowsStreamsWithBoundedMemory(t *testing.T) {
	if testing.Short() {
		t.Skip("writes 100,000 rows")
	}
	s := openStore(t, "", Options{})
	ctx := context.Background()
	const n = 100_000
	start := baseTS()
	b := &Batch{Samples: make([]Sample, 0, 10_000)}
	for i := 0; i < n; i++ {
		b.Samples = append(b.Samples, Sample{Channel: "1", Point: "P" + strconv.Itoa(i%10), Model: "bess", PointName: "point_" + strconv.Itoa(i%10),
			Value: strconv.FormatFloat(float64(i)/10, 'f', 1, 64), TS: start + int64(i/10)*100})
		if len(b.Samples) == cap(b.Samples) {
			if err := s.Write(ctx, b); err != nil {
				t.Fatal(err)
			}
			b.Samples = b.Samples[:0]
		}
	}
	b = nil

	heap := func() uint64 {
		runtime.GC()
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		return m.HeapAlloc
	}
	base := heap()
	var peak uint64
	rows := 0
	lastKey := ""
	var lastTS int64
	err := s.ExportRows(ctx, Query{Model: "bess", From: start, To: start + n*100}, func(r Row) error {
		key := r.PointName
		if key < lastKey || (key == lastKey && r.TS <= lastTS) {
			return fmt.Errorf("row %d out of order: %s %d after %s %d", rows, key, r.TS, lastKey, lastTS)
		}
		lastKey, lastTS = key, r.TS
		rows++
		if rows%10_000 == 0 {
			peak = max(peak, heap())
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if rows != n {
		t.Fatalf("exported %d rows, want %d", rows, n)
	}
	growth := int64(peak) - int64(base)
	t.Logf("heap growth while exporting %d rows: %d KiB", n, growth/1024)
	// Holding the rows would take well over 10 MB.
	if growth > 2<<20 {
		t.Fatalf("heap grew by %d KiB while exporting; rows are being collected", growth/1024)
	}

	// Limit caps, and an error from fn stops the export and is returned.
	rows = 0
	if err := s.ExportRows(ctx, Query{Model: "bess", Point: "point_3", From: start, To: start + n*100, Limit: 7}, func(Row) error { rows++; return nil }); err != nil || rows != 7 {
		t.Fatalf("export with Limit 7: %d rows, %v", rows, err)
	}
	stop := errors.New("client went away")
	rows = 0
	err = s.ExportRows(ctx, Query{Model: "bess", From: start, To: start + n*100}, func(Row) error {
		rows++
		if rows == 3 {
			return stop
		}
		return nil
	})
	if err != stop || rows != 3 {
		t.Fatalf("export stopped by fn: %d rows, %v", rows, err)
	}
	// Downsampled export: one bucket per point.
	rows = 0
	err = s.ExportRows(ctx, Query{Model: "bess", From: start, To: start + n*100, Step: 24 * time.Hour}, func(r Row) error {
		rows++
		if r.Count != n/10 {
			return fmt.Errorf("bucket %+v", r)
		}
		return nil
	})
	if err != nil || rows != 10 {
		t.Fatalf("downsampled export: %d rows, %v", rows, err)
	}
	// The pool is still usable after an interrupted export.
	if _, err := s.History(ctx, Query{Model: "bess", Point: "point_1", From: start, To: start + 1000}); err != nil {
		t.Fatal(err)
	}
}
