package sink

import (
	"sync/atomic"
	"time"
)

// Histogram counts durations in 20 µs buckets up to 200 ms (one overflow
// bucket above). It is safe for concurrent use and allocation-free.
type Histogram struct {
	buckets [bucketCount + 1]atomic.Uint64
}

const (
	bucketWidth = 20 * time.Microsecond
	bucketCount = 10000
)

// NewHistogram returns an empty histogram.
func NewHistogram() *Histogram { return &Histogram{} }

// Observe records one duration.
func (h *Histogram) Observe(d time.Duration) {
	i := int(d / bucketWidth)
	if i < 0 {
		i = 0
	}
	if i > bucketCount {
		i = bucketCount
	}
	h.buckets[i].Add(1)
}

// TakeQuantiles returns the two quantiles of what was observed since the last
// call (upper bucket bounds) and the count, and resets the histogram.
func (h *Histogram) TakeQuantiles(q1, q2 float64) (d1, d2 time.Duration, n uint64) {
	var counts [bucketCount + 1]uint64
	for i := range h.buckets {
		counts[i] = h.buckets[i].Swap(0)
		n += counts[i]
	}
	if n == 0 {
		return 0, 0, 0
	}
	return quantile(&counts, n, q1), quantile(&counts, n, q2), n
}

func quantile(counts *[bucketCount + 1]uint64, n uint64, q float64) time.Duration {
	rank := uint64(q*float64(n) + 0.5)
	if rank < 1 {
		rank = 1
	}
	var seen uint64
	for i, c := range counts {
		seen += c
		if seen >= rank {
			return time.Duration(i+1) * bucketWidth
		}
	}
	return time.Duration(bucketCount+1) * bucketWidth
}
