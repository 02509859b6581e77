// Package contracttest stands in for comsrv in the tests of services and
// tools that send controls: Respond takes queued commands through the Lua
// function take_controls and records outcomes through control_result, on a
// real Redis, as comsrv's dispatcher would.
package contracttest

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/redis/rueidis"

	"github.com/voltedge/voltedge/internal/contract"
	"github.com/voltedge/voltedge/internal/lualib"
	"github.com/voltedge/voltedge/scripts"
)

// Outcome records of the responder.
const (
	resultTTL   = "3600000"
	resultsCap  = "10000"
	takeBatch   = "16"
	pollEvery   = 20 * time.Millisecond
	callTimeout = 5 * time.Second
)

// Decide returns the outcome of c, or false to take c without answering
// (a device that never confirms).
type Decide func(c *contract.Command) (contract.Outcome, bool)

// Respond answers the commands queued for channels with decide until the
// test ends. Commands of other channels stay queued.
func Respond(tb testing.TB, client rueidis.Client, decide Decide, channels ...string) {
	tb.Helper()
	caller := lualib.NewCaller(client, nil)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(pollEvery)
		defer t.Stop()
		for {
			for _, ch := range channels {
				respondOnce(ctx, tb, caller, decide, ch)
			}
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
	}()
	tb.Cleanup(func() { cancel(); <-done })
}

// respondOnce takes one batch of channel's commands and answers them.
func respondOnce(ctx context.Context, tb testing.TB, caller *lualib.Caller, decide Decide, channel string) {
	cctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	raw, err := caller.Call(cctx, scripts.FnTakeControls, channel, takeBatch).AsStrSlice()
	if err != nil {
		if ctx.Err() == nil {
			tb.Errorf("contracttest: take_controls %s: %v", channel, err)
		}
		return
	}
	for _, entry := range raw {
		c, err := contract.Parse([]byte(entry))
		if err != nil {
			tb.Errorf("contracttest: %v", err)
			continue
		}
		o, ok := decide(c)
		if !ok {
			continue
		}
		args := []string{c.ID, string(o.Status), strconv.Itoa(int(o.Code)), o.Message,
			c.Channel, c.Point, c.Value, c.Model, c.Control, resultTTL, resultsCap}
		if c.Nonce != "" {
			args = append(args, c.Nonce) // as comsrv records it
		}
		err = caller.Call(cctx, scripts.FnControlResult, args...).Error()
		if err != nil && ctx.Err() == nil {
			tb.Errorf("contracttest: control_result %s: %v", c.ID, err)
		}
	}
}

// Always answers every command with o.
func Always(o contract.Outcome) Decide {
	return func(*contract.Command) (contract.Outcome, bool) { return o, true }
}

// Never takes commands without answering them.
func Never(*contract.Command) (contract.Outcome, bool) { return contract.Outcome{}, false }
