package sink

import (
	"testing"
	"time"
)

func TestHistogramQuantiles(t *testing.T) {
	h := NewHistogram()
	for i := 1; i <= 100; i++ {
		h.Observe(time.Duration(i) * 100 * time.Microsecond) // 0.1 ms .. 10 ms
	}
	p50, p99, n := h.TakeQuantiles(0.5, 0.99)
	if n != 100 {
		t.Fatalf("n = %d", n)
	}
	if p50 < 5*time.Millisecond || p50 > 5*time.Millisecond+bucketWidth {
		t.Errorf("p50 = %v", p50)
	}
	if p99 < 9900*time.Microsecond || p99 > 9900*time.Microsecond+bucketWidth {
		t.Errorf("p99 = %v", p99)
	}
	if _, _, n := h.TakeQuantiles(0.5, 0.99); n != 0 {
		t.Errorf("not reset: n = %d", n)
	}
	h.Observe(time.Hour)
	h.Observe(-time.Second)
	if _, p99, _ := h.TakeQuantiles(0.5, 0.99); p99 != time.Duration(bucketCount+1)*bucketWidth {
		t.Errorf("overflow bucket: p99 = %v", p99)
	}
}
