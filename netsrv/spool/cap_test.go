package spool

import (
	"context"
	"os"
	"testing"
)

func capOpts(drops *[]DropInfo) Options {
	opt := smallOpts()
	opt.MaxBytes = 4 * opt.SegmentSize // 32 KiB
	opt.OnDrop = func(d DropInfo) { *drops = append(*drops, d) }
	return opt
}

func TestCapDropsOldestUnread(t *testing.T) {
	var drops []DropInfo
	opt := capOpts(&drops)
	dir := t.TempDir()
	s, _ := mustOpen(t, dir, opt)
	defer s.Close()
	const n = 1000 // about 236 KiB, seven times the cap
	for i := 0; i < n; i++ {
		appendRange(t, s, i, i+1, 1)
		if st := s.Stats(); st.Bytes > opt.MaxBytes {
			t.Fatalf("after record %d: %d bytes over the cap %d", i, st.Bytes, opt.MaxBytes)
		}
	}
	waitDurable(t, s, s.Stats().Durable)
	if err := s.Sync(); err != nil {
		t.Fatal(err)
	}
	st := s.Stats()
	if len(drops) == 0 || st.DroppedSegments != int64(len(drops)) {
		t.Fatalf("%d drop callbacks, stats %+v", len(drops), st)
	}
	var droppedRecs, droppedBytes int64
	for i, d := range drops {
		droppedRecs += d.Records
		droppedBytes += d.Bytes
		if i > 0 && d.OldestTS <= drops[i-1].OldestTS {
			t.Fatalf("drop %d is not the oldest segment: %+v after %+v", i, d, drops[i-1])
		}
		if _, err := os.Stat(d.Segment); !os.IsNotExist(err) {
			t.Fatalf("dropped segment %s still exists", d.Segment)
		}
	}
	if st.DroppedRecords != droppedRecs || st.DroppedBytes != droppedBytes {
		t.Fatalf("counters %d records %d bytes, callbacks %d records %d bytes",
			st.DroppedRecords, st.DroppedBytes, droppedRecs, droppedBytes)
	}
	if drops[0].OldestTS != 1000 {
		t.Fatalf("first drop starts at ts %d, want 1000", drops[0].OldestTS)
	}
	// What is left is exactly the newest records, nothing in between lost.
	got := readAll(t, s, 50, true)
	if int64(len(got))+droppedRecs != n || st.Pending != int64(len(got)) {
		t.Fatalf("read %d + dropped %d != appended %d (pending %d)", len(got), droppedRecs, n, st.Pending)
	}
	first := n - len(got)
	if st.OldestTS != int64(1000+first) {
		t.Fatalf("OldestTS %d after drops, want %d", st.OldestTS, 1000+first)
	}
	for i, r := range got {
		checkRec(t, r, first+i)
	}
	// Everything within MaxBytes-SegmentSize of the newest record survives.
	var keptBytes int64
	for _, r := range got {
		keptBytes += recHeaderSize + int64(len(r.Data))
	}
	maxSegs := opt.MaxBytes/opt.SegmentSize + 1
	if keptBytes < opt.MaxBytes-opt.SegmentSize-maxSegs*segHeaderSize {
		t.Fatalf("only %d bytes of records kept under a cap of %d", keptBytes, opt.MaxBytes)
	}
}

func TestCapCountsOnlyUncommittedAsLost(t *testing.T) {
	var drops []DropInfo
	opt := capOpts(&drops)
	s, _ := mustOpen(t, t.TempDir(), opt)
	defer s.Close()
	// Fill the first segment and commit part of it.
	waitDurable(t, s, appendRange(t, s, 0, 40, 1))
	recs, p, err := s.Next(context.Background(), 10)
	if err != nil || len(recs) != 10 {
		t.Fatalf("Next: %d %v", len(recs), err)
	}
	if err := s.Commit(p); err != nil {
		t.Fatal(err)
	}
	firstSeg := p.Seg
	i := 40
	for len(drops) == 0 {
		appendRange(t, s, i, i+1, 1)
		i++
	}
	var inFirst int64
	for _, d := range drops {
		if d.Segment == s.segPath(firstSeg) {
			inFirst = d.Records
		}
	}
	// The first segment held records 0..k; ten of them were committed.
	if drops[0].Segment != s.segPath(firstSeg) || inFirst <= 0 {
		t.Fatalf("drops: %+v", drops)
	}
	if st := s.Stats(); st.DroppedRecords != inFirst || st.Pending != int64(i)-10-inFirst {
		t.Fatalf("stats %+v, lost in first %d, appended %d", st, inFirst, i)
	}
	// The reader, positioned in the dropped segment, continues at the oldest
	// remaining record.
	waitDurable(t, s, s.Stats().Durable)
	if err := s.Sync(); err != nil {
		t.Fatal(err)
	}
	got := readAll(t, s, 100, true)
	if int64(len(got)) != int64(i)-10-inFirst {
		t.Fatalf("read %d", len(got))
	}
	for j, r := range got {
		checkRec(t, r, 10+int(inFirst)+j)
	}
}
