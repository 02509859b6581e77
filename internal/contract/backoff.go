package contract

import (
	"context"
	"log/slog"
	"time"
)

// Back-off of the Redis loops after an error.
const (
	minBackoff = 100 * time.Millisecond
	maxBackoff = 5 * time.Second
)

// backoff is the doubling wait of a loop after errors; the zero value starts at minBackoff.
type backoff struct{ d time.Duration }

// Wait logs err with msg and waits the current back-off (or until ctx
// ends), then doubles it up to maxBackoff.
func (b *backoff) Wait(ctx context.Context, log *slog.Logger, msg string, err error) {
	if b.d == 0 {
		b.d = minBackoff
	}
	log.Warn(msg, "err", err, "retry_in", b.d.String())
	t := time.NewTimer(b.d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
	b.d = min(2*b.d, maxBackoff)
}

// Reset starts the next back-off at minBackoff again.
func (b *backoff) Reset() { b.d = 0 }
