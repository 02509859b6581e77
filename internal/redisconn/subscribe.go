package redisconn

import (
	"context"
	"errors"
	"sync/atomic"
	"time"

	"github.com/redis/rueidis"
)

// Backoff is a retry delay that starts at Min, doubles after each failure
// up to Max, and goes back to Min on Reset. The zero value waits 100 ms to
// 5 s. Every retry loop of the services uses it (Subscribe, connecting to
// Redis, accepting connections). A Backoff is not safe for concurrent use.
type Backoff struct {
	Min, Max time.Duration
	cur      time.Duration
}

// Default bounds of a zero Backoff.
const (
	DefaultBackoffMin = 100 * time.Millisecond
	DefaultBackoffMax = 5 * time.Second
)

// Next returns the delay to wait before this retry: Min the first time
// after a reset, then twice the previous delay, at most Max.
func (b *Backoff) Next() time.Duration {
	lo, hi := b.Min, b.Max
	if lo <= 0 {
		lo = DefaultBackoffMin
	}
	if hi < lo {
		hi = max(lo, DefaultBackoffMax)
	}
	if b.cur == 0 {
		b.cur = lo
	} else {
		b.cur = min(2*b.cur, hi)
	}
	return b.cur
}

// Reset makes the next delay Min again.
func (b *Backoff) Reset() { b.cur = 0 }

// Sleep waits for d or until ctx ends, and reports whether ctx is still live.
// (Since Go 1.23 an unexpired time.After timer is collected without a Stop.)
func Sleep(ctx context.Context, d time.Duration) bool {
	select {
	case <-ctx.Done():
		return false
	case <-time.After(d):
		return true
	}
}

// Warner is where Subscribe reports a lost subscription: a *slog.Logger, or
// a rate-limited logger.
type Warner interface {
	Warn(msg string, args ...any)
}

// SubscribeOptions tunes Subscribe.
type SubscribeOptions struct {
	// Name says in log lines which subscription was lost.
	Name string
	// Log receives a warning each time the subscription is lost (required).
	Log Warner
	// Backoff bounds the delay before subscribing again; zero is 100 ms to 5 s.
	Backoff Backoff
	// Dedicated subscribes on a connection of its own, closed when ctx ends
	// (so the server forgets the subscription at once). Otherwise the
	// subscription shares the client's pipelined connection and takes
	// nothing from the pool of blocking connections; it stays on that
	// connection until the client is closed.
	Dedicated bool
	// OnSubscribed, if set, is called on each confirmation from the server
	// (once per channel or pattern of the command), also after a
	// re-subscription: the moment to catch up on what was published while
	// unsubscribed. It runs on the connection's reader and must not block.
	OnSubscribed func()
}

// Subscribe keeps the subscription that cmd builds (SUBSCRIBE, PSUBSCRIBE
// or SSUBSCRIBE) until ctx ends, calling handle for each message. When the
// subscription is lost (Redis restarts, the connection breaks), it is made
// again after a back-off delay.
//
// The back-off is reset by a subscription that the server confirmed: a
// subscription that was up and then lost starts a new series of retries at
// the shortest delay, while attempts that never get a confirmation (Redis
// is down) wait longer and longer.
//
// handle runs on Subscribe's goroutine, but the connection's reader waits
// for it once a few messages are buffered: a slow handler holds up every
// reply on that connection. Hand slow work off to another goroutine.
func Subscribe(ctx context.Context, client rueidis.Client, cmd func(rueidis.Builder) rueidis.Completed,
	handle func(rueidis.PubSubMessage), opt SubscribeOptions) {
	bo := opt.Backoff
	for ctx.Err() == nil {
		confirmed, err := subscribeOnce(ctx, client, cmd, handle, opt)
		if ctx.Err() != nil {
			return
		}
		if confirmed {
			bo.Reset()
		}
		d := bo.Next()
		opt.Log.Warn("redis subscription lost, subscribing again", "subscription", opt.Name, "err", err, "retry_in", d.String())
		if !Sleep(ctx, d) {
			return
		}
	}
}

// errEnded is the error of a subscription that ended without one.
var errEnded = errors.New("subscription ended")

// subscribeOnce subscribes and handles messages until the subscription or
// ctx ends. It reports whether the server confirmed the subscription.
func subscribeOnce(ctx context.Context, client rueidis.Client, cmd func(rueidis.Builder) rueidis.Completed,
	handle func(rueidis.PubSubMessage), opt SubscribeOptions) (bool, error) {
	var confirmed atomic.Bool
	hctx := rueidis.WithOnSubscriptionHook(ctx, func(s rueidis.PubSubSubscription) {
		switch s.Kind {
		case "subscribe", "psubscribe", "ssubscribe":
			confirmed.Store(true)
			if opt.OnSubscribed != nil {
				opt.OnSubscribed()
			}
		}
	})
	var err error
	if opt.Dedicated {
		dc, release := client.Dedicate()
		err = dc.Receive(hctx, cmd(dc.B()), handle)
		dc.Close() // the server drops the subscription with the connection
		release()
	} else {
		err = client.Receive(hctx, cmd(client.B()), handle)
	}
	if err == nil {
		err = errEnded
	}
	return confirmed.Load(), err
}
