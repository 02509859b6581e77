package main

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/voltedge/voltedge/internal/contract"
	"github.com/voltedge/voltedge/internal/keys"
	"github.com/voltedge/voltedge/internal/lualib"
	"github.com/voltedge/voltedge/scripts"
)

// waitMargin is added to the command's ttl for the default -wait: comsrv
// answers "expired" at the latest when it takes the command after its
// deadline, and the device's answer may take a few seconds more.
const waitMargin = 5 * time.Second

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
	req := contract.Request{Model: pos[0], Control: pos[1], Value: pos[2], TTL: *ttl}
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
	var results *contract.Results // none for -no-wait
	if !*noWait {
		results = contract.NewResults(c, a.log)
		rctx, stop := context.WithCancel(ctx)
		done := make(chan struct{})
		go func() { defer close(done); results.Run(rctx) }()
		defer func() { stop(); <-done }()
	}
	sender := contract.NewSender(c, lualib.NewCaller(c, a.log), results)
	sctx, cancel := a.oneShot(ctx)
	defer cancel()
	if *noWait {
		id, err := sender.Queue(sctx, req)
		if err != nil {
			return sendErr(req, err)
		}
		fmt.Fprintln(a.stdout, id)
		return nil
	}
	cmd, err := sender.Send(sctx, req)
	if err != nil {
		return sendErr(req, err)
	}
	defer cmd.Close()
	fmt.Fprintln(a.stdout, cmd.ID)
	return waitOutcome(ctx, a, cmd, *wait)
}

// sendErr names the refused request.
func sendErr(req contract.Request, err error) error {
	return fmt.Errorf("send %s %s = %s: %w", req.Model, req.Control, req.Value, err)
}

// waitOutcome waits up to wait for the outcome of cmd and prints it.
func waitOutcome(ctx context.Context, a *app, cmd *contract.Pending, wait time.Duration) error {
	wctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	res, err := cmd.Wait(wctx)
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil {
			return fmt.Errorf("no outcome for command %s within %s (is comsrv running?)", cmd.ID, wait)
		}
		return err
	}
	fmt.Fprintln(a.stdout, res.ID+" "+res.Outcome.String())
	if res.Status != contract.OK {
		return errReported
	}
	return nil
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
