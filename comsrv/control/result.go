package control

import (
	"context"
	"fmt"
	"time"

	"github.com/redis/rueidis"

	"github.com/voltedge/voltedge/internal/keys"
)

// DefaultPoll is WaitResult's polling interval when none is given.
const DefaultPoll = 100 * time.Millisecond

// WaitResult waits for the outcome of command id: it reads
// cmd:result:{id} every poll until the hash has a status, and returns its
// fields (status, code, message, channel, point, value, model, control, ts).
// Redis errors while waiting are retried; when ctx ends first, the error
// wraps ctx's error (and names the last Redis error, if any).
func WaitResult(ctx context.Context, client rueidis.Client, id string, poll time.Duration) (map[string]string, error) {
	if _, ok := normalID(id); !ok {
		return nil, fmt.Errorf("wait for command %q: not a command id", id)
	}
	if poll <= 0 {
		poll = DefaultPoll
	}
	key := keys.CommandResult(id)
	var last error
	t := time.NewTicker(poll)
	defer t.Stop()
	for {
		m, err := client.Do(ctx, client.B().Hgetall().Key(key).Build()).AsStrMap()
		switch {
		case err == nil && m["status"] != "":
			return m, nil
		case err != nil && ctx.Err() == nil:
			last = err
		}
		select {
		case <-ctx.Done():
			if last != nil {
				return nil, fmt.Errorf("wait for the result of command %s (last redis error: %v): %w", id, last, ctx.Err())
			}
			return nil, fmt.Errorf("wait for the result of command %s: %w", id, ctx.Err())
		case <-t.C:
		}
	}
}
