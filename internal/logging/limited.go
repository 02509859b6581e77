package logging

import (
	"context"
	"log/slog"
	"sync"
	"time"
)

// Limited logs a repeated event at most once per interval per key, adding
// the number of occurrences not logged since ("similar_since_last_log"):
// while Redis is down every call fails, and a flood of bad connections
// repeats the same refusal; one line per interval is enough. Keys must come
// from a fixed set (messages, reasons), never from device input.
type Limited struct {
	log      *slog.Logger
	interval time.Duration

	mu    sync.Mutex
	last  map[string]time.Time
	quiet map[string]int
}

// NewLimited returns a Limited logger writing to log; interval ≤ 0 means 10s.
func NewLimited(log *slog.Logger, interval time.Duration) *Limited {
	if interval <= 0 {
		interval = 10 * time.Second
	}
	return &Limited{log: log, interval: interval, last: map[string]time.Time{}, quiet: map[string]int{}}
}

// Warn logs msg at warning level, keyed by msg.
func (l *Limited) Warn(msg string, args ...any) { l.LogKey(slog.LevelWarn, msg, msg, args...) }

// Error logs msg at error level, keyed by msg.
func (l *Limited) Error(msg string, args ...any) { l.LogKey(slog.LevelError, msg, msg, args...) }

// LogKey logs msg unless the same key was logged within the interval.
func (l *Limited) LogKey(level slog.Level, key, msg string, args ...any) {
	now := time.Now()
	l.mu.Lock()
	if last, ok := l.last[key]; ok && now.Sub(last) < l.interval {
		l.quiet[key]++
		l.mu.Unlock()
		return
	}
	l.last[key] = now
	n := l.quiet[key]
	delete(l.quiet, key)
	l.mu.Unlock()
	if n > 0 {
		args = append(args, "similar_since_last_log", n)
	}
	l.log.Log(context.Background(), level, msg, args...)
}
