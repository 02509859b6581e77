package ws

import (
	"context"
	"strings"
	"time"

	"github.com/redis/rueidis"

	"github.com/voltedge/voltedge/internal/contract"
	"github.com/voltedge/voltedge/internal/keys"
	"github.com/voltedge/voltedge/internal/redisconn"
)

// Redis loops: bounds of what is read.
const (
	callTimeout    = 5 * time.Second
	maxPayload     = 1 << 20 // an update:* payload longer than this is not relayed
	alarmBlock     = 2 * time.Second
	alarmBatch     = 100
	statusPipeline = 100 // HGETALLs per round trip of the channel status loop
)

// updatePrefix is what keys.ModelUpdates puts before the model id.
var updatePrefix = keys.ModelUpdates("")

// relayUpdates keeps one pattern subscription to every model's update
// channel until ctx ends, re-subscribing with back-off when it is lost.
// The subscription shares the client's pipelined connection (RESP3 push
// messages): it takes nothing from the pool of blocking connections.
func (h *Hub) relayUpdates(ctx context.Context) {
	redisconn.Subscribe(ctx, h.client, func(b rueidis.Builder) rueidis.Completed {
		return b.Psubscribe().Pattern(keys.ModelUpdates("*")).Build()
	}, func(m rueidis.PubSubMessage) { h.onUpdate(m.Channel, m.Message) },
		redisconn.SubscribeOptions{Name: "ws updates", Log: h.log})
}

// retry runs once until ctx ends, waiting with back-off after each return.
// once reports whether it got going, which resets the back-off as a
// confirmed subscription does in redisconn.Subscribe.
func (h *Hub) retry(ctx context.Context, what string, once func() (bool, error)) {
	var bo redisconn.Backoff
	for ctx.Err() == nil {
		started, err := once()
		if ctx.Err() != nil {
			return
		}
		if started {
			bo.Reset()
		}
		d := bo.Next()
		h.log.Warn("ws: redis "+what+" interrupted, retrying", "err", err, "retry_in", d.String())
		if !redisconn.Sleep(ctx, d) {
			return
		}
	}
}

// onUpdate relays one update:{model} message to the model's subscribers.
// It runs on the subscription's reader and never blocks.
func (h *Hub) onUpdate(channel, payload string) {
	h.updates.Add(1)
	model, ok := strings.CutPrefix(channel, updatePrefix)
	if !ok || len(payload) > maxPayload {
		return
	}
	h.known.learnModel(model)
	h.mu.RLock()
	defer h.mu.RUnlock()
	subs := h.models[model]
	if len(subs) == 0 {
		return
	}
	msg := relayPayload([]byte(payload))
	if msg == nil {
		return
	}
	h.publish(subs, msg)
}

// relayAlarms reads the alarm event stream from its end and sends each new
// event to the clients that asked for alarms.
func (h *Hub) relayAlarms(ctx context.Context) {
	last := ""
	h.retry(ctx, "alarm stream", func() (bool, error) {
		if last == "" {
			id, err := h.streamEnd(ctx)
			if err != nil {
				return false, err
			}
			last = id
		}
		for ctx.Err() == nil {
			cmd := h.client.B().Xread().Count(alarmBatch).Block(alarmBlock.Milliseconds()).
				Streams().Key(keys.AlarmEvents).Id(last).Build()
			res, err := h.client.Do(ctx, cmd).AsXRead()
			if rueidis.IsRedisNil(err) {
				continue
			}
			if err != nil {
				return false, err
			}
			for _, e := range res[keys.AlarmEvents] {
				last = e.ID
				h.alarmsRead.Add(1)
				h.sendAlarm(e)
			}
		}
		return true, ctx.Err()
	})
}

// streamEnd returns the id of the alarm stream's last entry, "0-0" when it
// is empty: reading after it starts at the end without missing an entry
// added between two blocking reads ("$" would).
func (h *Hub) streamEnd(ctx context.Context) (string, error) {
	cctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	entries, err := h.client.Do(cctx, h.client.B().Xrevrange().Key(keys.AlarmEvents).End("+").Start("-").Count(1).Build()).AsXRange()
	if err != nil {
		return "", err
	}
	if len(entries) == 0 {
		return "0-0", nil
	}
	return entries[0].ID, nil
}

func (h *Hub) sendAlarm(e rueidis.XRangeEntry) {
	h.mu.RLock()
	defer h.mu.RUnlock()
	if len(h.alarms) == 0 {
		return
	}
	b, err := alarmMessage{Type: TypeAlarm, ID: e.ID, Fields: e.FieldValues}.MarshalJSON()
	if err != nil {
		h.log.Error("ws: marshal alarm", "id", e.ID, "err", err)
		return
	}
	h.publish(h.alarms, b)
}

// relayChannels sends the status hash of every subscribed channel each
// Options.ChannelInterval.
func (h *Hub) relayChannels(ctx context.Context) {
	t := time.NewTicker(h.opt.ChannelInterval)
	defer t.Stop()
	var ids []string
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		ids = ids[:0]
		h.mu.RLock()
		for id := range h.channels {
			ids = append(ids, id)
		}
		h.mu.RUnlock()
		for start := 0; start < len(ids) && ctx.Err() == nil; start += statusPipeline {
			h.sendStatus(ctx, ids[start:min(start+statusPipeline, len(ids))])
		}
	}
}

// sendStatus reads the status hashes of ids in one round trip and sends them.
func (h *Hub) sendStatus(ctx context.Context, ids []string) {
	cmds := make(rueidis.Commands, len(ids))
	for i, id := range ids {
		cmds[i] = h.client.B().Hgetall().Key(keys.ChannelStatus(id)).Build()
	}
	cctx, cancel := context.WithTimeout(ctx, callTimeout)
	res := h.client.DoMulti(cctx, cmds...)
	cancel()
	for i, r := range res {
		status, err := r.AsStrMap()
		if err != nil {
			if ctx.Err() == nil {
				h.log.Debug("ws: channel status", "channel", ids[i], "err", err)
			}
			continue
		}
		msg := channelMessage{Type: TypeChannel, Channel: ids[i], Name: status[contract.ChannelName], Status: contract.ChannelTyped(status)}
		b, err := marshal(msg)
		if err != nil {
			continue
		}
		h.mu.RLock()
		h.publish(h.channels[ids[i]], b)
		h.mu.RUnlock()
	}
}
