package ws

import (
	"context"
	"errors"
	"net/http"
	"time"

	"github.com/voltedge/voltedge/internal/contract"
	"github.com/voltedge/voltedge/modsrv/api"
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
		h.refuse(c, r.RequestRef, api.StatusCode(http.StatusUnauthorized), ReasonNotAuthorised)
		return
	}
	if int(c.inFlight.Add(1)) > h.opt.MaxInFlight {
		c.inFlight.Add(-1)
		h.refuse(c, r.RequestRef, api.StatusCode(http.StatusTooManyRequests), ReasonBusy)
		return
	}
	value, _ := commandValue(r.Value) // checked by parseRequest
	go func() {
		defer c.inFlight.Add(-1)
		h.runCommand(c, r.RequestRef, contract.Request{Model: r.Model, Control: r.Control, Value: value, TTL: h.opt.CommandTTL})
	}()
}

// refuse answers a command that was not queued, with the error code REST
// would answer and a reason.
func (h *Hub) refuse(c *client, ref, code, reason string) {
	h.commandsRefused.Add(1)
	c.send(ackMessage{Type: TypeAck, RequestRef: ref, Code: code, Reason: reason})
}

func (h *Hub) runCommand(c *client, ref string, req contract.Request) {
	qctx, cancel := context.WithTimeout(c.ctx, queueTimeout)
	cmd, err := h.sender.Send(qctx, req)
	cancel()
	if err != nil {
		if c.ctx.Err() != nil {
			return
		}
		h.log.Info("ws: command refused", "user", c.user, "model", req.Model, "control", req.Control, "value", req.Value, "err", err)
		e := api.ControlError(err)
		h.refuse(c, ref, e.Code, clip(e.Message, 200))
		return
	}
	defer cmd.Close()
	h.commands.Add(1)
	h.log.Info("ws: command queued", "id", cmd.ID, "user", c.user, "model", req.Model, "control", req.Control, "value", req.Value)
	c.send(ackMessage{Type: TypeAck, RequestRef: ref, Accepted: true, ID: cmd.ID})

	wctx, cancel := context.WithTimeout(c.ctx, h.opt.CommandWait)
	res, err := cmd.Wait(wctx)
	cancel()
	resp := responseMessage{Type: TypeResponse, RequestRef: ref, ID: cmd.ID}
	switch {
	case c.ctx.Err() != nil:
		return // the client left
	case errors.Is(err, context.DeadlineExceeded):
		resp.Status = StatusTimeout
		resp.Message = "no outcome within " + h.opt.CommandWait.String()
	case err != nil:
		resp.Status = StatusFailed
		resp.Message = clip(err.Error(), 200)
	case res.Status == contract.OK:
		resp.Status, resp.Result = StatusOK, res.Fields
	default:
		resp.Status, resp.Result = StatusFailed, res.Fields
		resp.Message = res.Outcome.String()
	}
	c.send(resp)
}
