package main

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/voltedge/voltedge/internal/keys"
	"github.com/voltedge/voltedge/internal/lualib"
	"github.com/voltedge/voltedge/scripts"
)

// controlRequest is one control command to queue.
type controlRequest struct {
	Model   string
	Control string
	Value   string
	TTL     time.Duration
}

func runSend(ctx context.Context, a *app, args []string) error {
	fs := a.flags("send", "MODEL CONTROL VALUE [-ttl 30s]",
		"Queues a control command through the "+scripts.FnSendControl+" function: the control's\n"+
			"mapping ("+keys.MappingReverse+") names the channel and point. Prints the command id.")
	ttl := fs.Duration("ttl", 30*time.Second, "how long the command stays valid (millisecond resolution)")
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
	c, err := a.client()
	if err != nil {
		return err
	}
	defer c.Close()
	ctx, cancel := a.oneShot(ctx)
	defer cancel()
	id, err := sendControl(ctx, lualib.NewCaller(c, a.log), req)
	if err != nil {
		return err
	}
	// The command is queued; comsrv executes it on the channel's link.
	// Waiting for its outcome would follow here, using id.
	fmt.Fprintln(a.stdout, id)
	return nil
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
