package spool

import (
	"context"
	"fmt"
	"testing"
)

const benchRecSize = 300

// BenchmarkAppend appends 300-byte records in batches, with the default
// group commit (fsync every 500 ms) running; one op is one record.
func BenchmarkAppend(b *testing.B) {
	for _, batch := range []int{1, 100} {
		b.Run(fmt.Sprintf("batch=%d", batch), func(b *testing.B) {
			opt := Options{MaxBytes: 256 << 20, Logger: quietLogger()}
			s, _ := mustOpen(b, b.TempDir(), opt)
			defer s.Close()
			recs := make([]Record, batch)
			for i := range recs {
				recs[i] = Record{TS: 1, Data: make([]byte, benchRecSize)}
			}
			b.SetBytes(benchRecSize)
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i += batch {
				if _, err := s.Append(recs[:min(batch, b.N-i)]); err != nil {
					b.Fatal(err)
				}
			}
			if err := s.Sync(); err != nil {
				b.Fatal(err)
			}
		})
	}
}

// BenchmarkReadCommit reads 300-byte records back with Next and commits after
// every batch (an atomic cursor write: fsync, rename, directory fsync); one op
// is one record.
func BenchmarkReadCommit(b *testing.B) {
	for _, batch := range []int{100, 1000} {
		b.Run(fmt.Sprintf("batch=%d", batch), func(b *testing.B) {
			opt := Options{MaxBytes: 4 << 30, Logger: quietLogger()}
			s, _ := mustOpen(b, b.TempDir(), opt)
			defer s.Close()
			recs := make([]Record, 1000)
			for i := range recs {
				recs[i] = Record{TS: 1, Data: make([]byte, benchRecSize)}
			}
			for i := 0; i < b.N; i += len(recs) {
				if _, err := s.Append(recs[:min(len(recs), b.N-i)]); err != nil {
					b.Fatal(err)
				}
			}
			if err := s.Sync(); err != nil {
				b.Fatal(err)
			}
			ctx := context.Background()
			b.SetBytes(benchRecSize)
			b.ReportAllocs()
			b.ResetTimer()
			for n := 0; n < b.N; {
				got, p, err := s.Next(ctx, batch)
				if err != nil {
					b.Fatal(err)
				}
				if len(got) == 0 {
					b.Fatalf("ran dry after %d of %d records", n, b.N)
				}
				n += len(got)
				if err := s.Commit(p); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
