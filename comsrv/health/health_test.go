package health

import (
	"testing"
	"time"
)

func TestBackoffAfterConsecutiveTimeouts(t *testing.T) {
	h := New(3, 30*time.Second)
	t0 := time.Unix(1000, 0)
	for i := 0; i < 2; i++ {
		if h.Timeout(2, t0) {
			t.Fatalf("stale after %d timeouts", i+1)
		}
	}
	if h.Skip(2, t0) {
		t.Fatal("skipped before the third timeout")
	}
	if !h.Timeout(2, t0) {
		t.Fatal("third timeout did not mark the slave stale")
	}
	if !h.Skip(2, t0.Add(29*time.Second)) || h.Skip(2, t0.Add(31*time.Second)) {
		t.Fatal("cool-down is not 30s")
	}
	if h.Skip(1, t0) {
		t.Fatal("another slave is skipped")
	}
	if got := h.Unreachable(t0); len(got) != 1 || got[0] != 2 {
		t.Fatalf("unreachable %v", got)
	}
	// After the cool-down one more timeout sends it straight back, without a second stale mark.
	t1 := t0.Add(31 * time.Second)
	if h.Timeout(2, t1) || !h.Skip(2, t1) {
		t.Fatal("a timeout after the cool-down must restart it")
	}
	if !h.OK(2) || h.Skip(2, t1) || h.OK(2) {
		t.Fatal("an answer must recover the slave once")
	}
}

func TestAnswerResetsCount(t *testing.T) {
	h := New(2, time.Second)
	now := time.Unix(0, 0)
	h.Timeout(1, now)
	h.OK(1)
	if h.Timeout(1, now) {
		t.Fatal("count was not reset by the answer")
	}
}

func TestMarkAllStaleReportsRecoveryWithoutBackoff(t *testing.T) {
	h := New(3, time.Minute)
	now := time.Unix(0, 0)
	h.MarkAllStale([]uint8{1, 2})
	if h.Timeout(1, now) || h.Skip(1, now) {
		t.Fatal("a stale mark alone must not start a cool-down")
	}
	if !h.OK(2) {
		t.Fatal("first answer after MarkAllStale must report a recovery")
	}
}
