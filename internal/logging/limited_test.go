package logging

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
	"time"
)

func TestLimitedLogsOncePerIntervalPerKey(t *testing.T) {
	var buf bytes.Buffer
	l := NewLimited(slog.New(slog.NewTextHandler(&buf, nil)), 50*time.Millisecond)
	for i := 0; i < 5; i++ {
		l.LogKey(slog.LevelWarn, "a", "refused", "reason", "a")
		l.Warn("redis down")
	}
	if got := strings.Count(buf.String(), "\n"); got != 2 {
		t.Fatalf("%d lines, want 2:\n%s", got, buf.String())
	}
	time.Sleep(60 * time.Millisecond) // lets the 50 ms interval pass

	l.LogKey(slog.LevelWarn, "a", "refused", "reason", "a")
	if !strings.Contains(buf.String(), "similar_since_last_log=4") {
		t.Fatalf("suppressed count missing:\n%s", buf.String())
	}
}
