package control

import (
	"context"
	"log/slog"
	"sync"
	"time"
)

// rateLog logs a repeated failure at most once per interval per message,
// with the number of occurrences not logged since: while Redis is down every
// call fails, and one line per interval is enough.
type rateLog struct {
	log      *slog.Logger
	interval time.Duration

	mu    sync.Mutex
	last  map[string]time.Time // keyed by message, a fixed set of constants
	quiet map[string]int
}

func newRateLog(log *slog.Logger, interval time.Duration) *rateLog {
	return &rateLog{log: log, interval: interval, last: map[string]time.Time{}, quiet: map[string]int{}}
}

func (r *rateLog) warn(msg string, args ...any)  { r.emit(slog.LevelWarn, msg, args) }
func (r *rateLog) error(msg string, args ...any) { r.emit(slog.LevelError, msg, args) }

func (r *rateLog) emit(level slog.Level, msg string, args []any) {
	now := time.Now()
	r.mu.Lock()
	if last, ok := r.last[msg]; ok && now.Sub(last) < r.interval {
		r.quiet[msg]++
		r.mu.Unlock()
		return
	}
	r.last[msg] = now
	n := r.quiet[msg]
	delete(r.quiet, msg)
	r.mu.Unlock()
	if n > 0 {
		args = append(args, "similar_since_last_log", n)
	}
	r.log.Log(context.Background(), level, msg, args...)
}
