package webhook

import (
	"testing"
	"time"
)

func TestJitter(t *testing.T) {
	lo, hi := 100*time.Hour, time.Duration(0)
	for range 1000 {
		d := jitter(10*time.Hour, 0.1)
		lo, hi = min(lo, d), max(hi, d)
		if d < 9*time.Hour || d > 11*time.Hour {
			t.Fatalf("jitter(10h, 0.1) = %v", d)
		}
	}
	if hi-lo < time.Hour {
		t.Errorf("1000 waits spread over %v only", hi-lo)
	}
	if d := jitter(5*time.Second, -1); d != 5*time.Second {
		t.Errorf("no jitter: %v", d)
	}
	if d := jitter(0, 0.1); d != 0 {
		t.Errorf("jitter(0) = %v", d)
	}
}
