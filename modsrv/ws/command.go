package ws

import (
	"context"
	"errors"
	"strconv"
	"time"

	"github.com/voltedge/voltedge/comsrv/control"
	"github.com/voltedge/voltedge/scripts"
)

// Reasons of refused commands.
const (
	ReasonNotAuthorised = "not authorised"
	ReasonBusy          = "too many commands in flight"
)

// queueTimeout bounds the send_control call.
const queueTimeout = 5 * time.Second

// command queues r's control through send_control, acks it, and answers
// its outcome. The reader does not wait: the work runs in its own goroutine,
// at most Options.MaxInFlight per client.
func (h *Hub) command(c *client, r *request) {
	if c.user == "" || (h.opt.StillValid != nil && !h.opt.StillValid(c.creds[0], c.creds[1])) {
		h.refuse(c, r.RequestRef, ReasonNotAuthorised)
		return
	}
	if int(c.inFlight.Add(1)) > h.opt.MaxInFlight {
		c.inFlight.Add(-1)
		h.refuse(c, r.RequestRef, ReasonBusy)
		return
	}
	value, _ := commandValue(r.Value) // checked by parseRequest
	go func() {
		defer c.inFlight.Add(-1)
		h.runCommand(c, r.RequestRef, r.Model, r.Control, value)
	}()
}

func (h *Hub) refuse(c *client, ref, reason string) {
	h.commandsRefused.Add(1)
	c.send(ackMessage{Type: TypeAck, RequestRef: ref, Reason: reason})
}

func (h *Hub) runCommand(c *client, ref, model, ctl, value string) {
	qctx, cancel := context.WithTimeout(c.ctx, queueTimeout)
	ttl := strconv.FormatInt(h.opt.CommandTTL.Milliseconds(), 10)
	n, err := h.caller.Call(qctx, scripts.FnSendControl, model, ctl, value, ttl).AsInt64()
	cancel()
	if err != nil {
		if c.ctx.Err() != nil {
			return
		}
		h.log.Info("ws: command refused", "user", c.user, "model", model, "control", ctl, "value", value, "err", err)
		h.refuse(c, ref, clip(err.Error(), 200))
		return
	}
	id := strconv.FormatInt(n, 10)
	h.commands.Add(1)
	h.log.Info("ws: command queued", "id", id, "user", c.user, "model", model, "control", ctl, "value", value)
	c.send(ackMessage{Type: TypeAck, RequestRef: ref, Accepted: true, ID: id})

	wctx, cancel := context.WithTimeout(c.ctx, h.opt.CommandWait)
	res, err := control.WaitResult(wctx, h.client, id, control.DefaultPoll)
	cancel()
	resp := responseMessage{Type: TypeResponse, RequestRef: ref, ID: id}
	switch {
	case c.ctx.Err() != nil:
		return // the client left
	case errors.Is(err, context.DeadlineExceeded):
		resp.Status = StatusTimeout
		resp.Message = "no outcome within " + h.opt.CommandWait.String()
	case err != nil:
		resp.Status = StatusFailed
		resp.Message = clip(err.Error(), 200)
	case res["status"] == string(control.OK):
		resp.Status, resp.Result = StatusOK, res
	default:
		resp.Status, resp.Result = StatusFailed, res
		resp.Message = res["status"]
		if m := res["message"]; m != "" {
			resp.Message += ": " + m
		}
	}
	c.send(resp)
}
