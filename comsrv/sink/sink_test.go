package sink

import (
	"errors"
	"log/slog"
	"strings"
	"testing"
)

func TestFailureLogIsRateLimited(t *testing.T) {
	var buf strings.Builder
	s := &Sink{log: slog.New(slog.NewTextHandler(&buf, nil))}
	for i := 0; i < 100; i++ {
		s.logFailure("sync_batch failed", errors.New("connection refused"))
	}
	if n := strings.Count(buf.String(), "sync_batch failed"); n != 1 {
		t.Fatalf("%d log lines for 100 failures, want 1:\n%s", n, buf.String())
	}
	if s.failsUnlogged.Load() != 99 {
		t.Fatalf("unlogged failures = %d, want 99", s.failsUnlogged.Load())
	}
}
