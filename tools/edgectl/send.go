package main

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/redis/rueidis"

	"github.com/voltedge/voltedge/comsrv/control"
	"github.com/voltedge/voltedge/internal/keys"
	"github.com/voltedge/voltedge/internal/lualib"
	"github.com/voltedge/voltedge/scripts"
)

// waitMargin is added to the command's ttl for the default -wait: comsrv
// answers "expired" at the latest when it takes the command after its
// deadline, and the device's answer may take a few seconds more.
const waitMargin = 5 * time.Second

// resultPoll is how often the outcome hash is read while waiting.
const resultPoll = 100 * time.Millisecond

// controlRequest is one control command to queue.
type controlRequest struct {
	Model   string
	Control string
	Value   string
	TTL     time.Duration
}

func runSend(ctx context.Context, a *app, args []string) error {
	fs := a.flags("send", "MODEL CONTROL VALUE [-ttl 30s] [-wait D] [-no-wait]",
		"Queues a control command through the "+scripts.FnSendControl+" function: the control's\n"+
			"mapping ("+keys.MappingReverse+") names the channel and point. Prints the command id, then\n"+
			"waits for comsrv's outcome ("+keys.CommandResult("{id}")+") and prints it, e.g.\n"+
			"\"42 ok\" or \"42 exception 2 (illegal data address)\". Exits with status 1 unless the\n"+
			"outcome is ok, or when none arrives in time.")
	ttl := fs.Duration("ttl", 30*time.Second, "how long the command stays valid (millisecond resolution)")
	wait := fs.Duration("wait", 0, "how long to wait for the outcome (default: the ttl + "+waitMargin.String()+")")
	noWait := fs.Bool("no-wait", false, "print the command id and return without waiting")
	pos, err := a.parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 3 {
		return usageErr(fs, "want MODEL CONTROL VALUE, got %d arguments", len(pos))
	}
	req := controlRequest{Model: pos[0], Control: pos[1], Value: pos[2], TTL: *ttl}
	if !keys.ValidID(req.Model) {
		return usageErr(fs, "invalid model id %q", req.Model)
	}
	if !keys.ValidID(req.Control) {
		return usageErr(fs, "invalid control name %q", req.Control)
	}
	if req.TTL < time.Millisecond {
		return usageErr(fs, "-ttl must be at least 1ms")
	}
	if *wait < 0 {
		return usageErr(fs, "-wait must not be negative")
	}
	if *noWait && *wait > 0 {
		return usageErr(fs, "-wait and -no-wait exclude each other")
	}
	if *wait == 0 {
		*wait = req.TTL + waitMargin
	}
	c, err := a.client()
	if err != nil {
		return err
	}
	defer c.Close()
	sctx, cancel := a.oneShot(ctx)
	id, err := sendControl(sctx, lualib.NewCaller(c, a.log), req)
	cancel()
	if err != nil {
		return err
	}
	fmt.Fprintln(a.stdout, id)
	if *noWait {
		return nil
	}
	return waitOutcome(ctx, a, c, strconv.FormatInt(id, 10), *wait)
}

// sendControl queues req and returns the command id.
func sendControl(ctx context.Context, k *lualib.Caller, req controlRequest) (int64, error) {
	ttl := strconv.FormatInt(req.TTL.Milliseconds(), 10)
	id, err := k.Call(ctx, scripts.FnSendControl, req.Model, req.Control, req.Value, ttl).AsInt64()
	if err != nil {
		return 0, fmt.Errorf("send %s %s = %s: %w", req.Model, req.Control, req.Value, err)
	}
	return id, nil
}

// waitOutcome waits up to wait for the outcome of command id and prints it.
func waitOutcome(ctx context.Context, a *app, c rueidis.Client, id string, wait time.Duration) error {
	wctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	res, err := control.WaitResult(wctx, c, id, resultPoll)
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil {
			return fmt.Errorf("no outcome for command %s within %s (is comsrv running?)", id, wait)
		}
		return err
	}
	fmt.Fprintln(a.stdout, outcomeLine(id, res))
	if res["status"] != string(control.OK) {
		return errReported
	}
	return nil
}

// outcomeLine renders an outcome: "42 ok", "42 exception 2 (illegal data address)", "42 timeout".
func outcomeLine(id string, res map[string]string) string {
	var b strings.Builder
	b.WriteString(id)
	b.WriteByte(' ')
	b.WriteString(oneLine(res["status"]))
	if res["status"] == string(control.Exception) && res["code"] != "" {
		b.WriteByte(' ')
		b.WriteString(oneLine(res["code"]))
	}
	if m := res["message"]; m != "" {
		b.WriteString(" (")
		b.WriteString(oneLine(m))
		b.WriteByte(')')
	}
	return b.String()
}

// oneLine keeps text from Redis on one line: control bytes become spaces.
func oneLine(s string) string {
	return strings.Map(func(r rune) rune {
		if r < ' ' || r == 0x7f {
			return ' '
		}
		return r
	}, s)
}
