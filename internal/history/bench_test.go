package history

import (
	"context"
	"strconv"
	"testing"
)

// BenchmarkWriteSamples writes batches of 2,000 new samples (2,000 points at
// one timestamp) through multi-row INSERT and through LOAD DATA LOCAL INFILE.
//
//	go test -run '^$' -bench WriteSamples -benchtime 200x ./internal/history
//
// On the 2-core x86 development box with MariaDB 10.11 on the same cores,
// both paths store about 40,000-57,000 rows/s and the spread between runs
// is larger than the gap between them: the server's InnoDB work dominates.
// LOAD DATA allocates a fifth of the client memory (0.56 MB instead of
// 2.7 MB per batch), which is what counts on a 1 GB box.
func BenchmarkWriteSamples(b *testing.B) {
	const batchRows = 2000
	for _, mode := range []struct {
		name    string
		disable bool
	}{{"insert", true}, {"load-data", false}} {
		b.Run(mode.name, func(b *testing.B) {
			s := openStore(b, "", Options{DisableLoadData: mode.disable})
			ctx := context.Background()
			points := make([]string, batchRows)
			names := make([]string, batchRows)
			for j := range points {
				points[j] = "P" + strconv.Itoa(j)
				names[j] = "point_" + strconv.Itoa(j)
			}
			batch := &Batch{Samples: make([]Sample, batchRows)}
			start := baseTS()
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				ts := start + int64(i)*1000
				for j := range batch.Samples {
					batch.Samples[j] = Sample{Channel: "10" + strconv.Itoa(j%8), Point: points[j], Model: "bess", PointName: names[j],
						Value: strconv.FormatFloat(float64(i*j%100000)/100, 'f', 2, 64), TS: ts}
				}
				res, err := s.WriteCounted(ctx, batch)
				if err != nil {
					b.Fatal(err)
				}
				if res.Inserted != batchRows || res.LoadData == mode.disable {
					b.Fatalf("result %+v", res)
				}
			}
			b.ReportMetric(float64(b.N*batchRows)/b.Elapsed().Seconds(), "rows/s")
		})
	}
}
