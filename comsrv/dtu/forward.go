package dtu

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"strings"
	"time"

	"github.com/redis/rueidis"

	"github.com/voltedge/voltedge/comsrv/config"
	"github.com/voltedge/voltedge/internal/keys"
	"github.com/voltedge/voltedge/internal/redisconn"
)

// Outcomes of a message on a line listener's result channel, published on keys.LineOutcomes.
const (
	lineForwarded = "forwarded" // written to the device
	lineUnknown   = "unknown"   // no channel has that device id
	lineOffline   = "offline"   // the device is not connected
	lineBusy      = "busy"      // the device's outbox is full
	lineInvalid   = "invalid"   // not "command,device_id,data", too long, or a line break inside
	lineFailed    = "failed"    // the write to the device failed
)

// startLineResults subscribes to the result channel of every line listener
// and forwards each message to its device. It runs until ctx is cancelled.
func (s *Server) startLineResults(ctx context.Context) {
	for _, l := range s.listeners {
		if l.cfg.Profile != config.ProfileLine {
			continue
		}
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			s.subscribeLines(ctx, l)
		}()
	}
}

func (s *Server) subscribeLines(ctx context.Context, l *listener) {
	ch := l.cfg.Line.ResultChannel
	redisconn.Subscribe(ctx, s.client, func(b rueidis.Builder) rueidis.Completed {
		return b.Subscribe().Channel(ch).Build()
	}, func(m rueidis.PubSubMessage) { s.forwardLine(l, m.Message) }, redisconn.SubscribeOptions{
		Name:    "line results " + ch + " of listener " + l.cfg.Name,
		Log:     s.log,
		Backoff: redisconn.Backoff{Max: 10 * time.Second},
	})
}

// forwardLine hands one "command,device_id,data" message to its device's link.
func (s *Server) forwardLine(l *listener, msg string) {
	parts := strings.SplitN(msg, ",", 3)
	if len(parts) < 2 || strings.TrimSpace(parts[1]) == "" {
		s.lineOutcome(l, "", lineInvalid, "want \"command,device_id,data\"")
		return
	}
	dev := strings.TrimSpace(parts[1])
	switch {
	case len(msg) > l.cfg.Line.MaxLineLength:
		s.lineOutcome(l, dev, lineInvalid, "message longer than line.max_line_length")
		return
	case strings.ContainsAny(msg, "\r\n"):
		s.lineOutcome(l, dev, lineInvalid, "message contains a line break")
		return
	}
	lk, known := s.linkFor(dev)
	switch {
	case !known:
		s.lineOutcome(l, dev, lineUnknown, "no channel has this device id")
		return
	case lk == nil || lk.lst != l:
		s.lineOutcome(l, dev, lineOffline, "device is not connected to listener "+l.cfg.Name)
		return
	}
	select {
	case lk.outbox <- msg:
		_ = lk.conn.SetReadDeadline(time.Unix(1, 0)) // wake the link
	default:
		s.lineOutcome(l, dev, lineBusy, "device has too many messages waiting")
	}
}

// lineOutcome publishes what became of a forwarded message.
func (s *Server) lineOutcome(l *listener, dev, status, message string) {
	if status != lineForwarded {
		l.logRefusal("line message "+status, message, "", dev)
	}
	b, _ := json.Marshal(struct {
		Device  string `json:"device"`
		Status  string `json:"status"`
		Message string `json:"message,omitempty"`
		TS      int64  `json:"ts"`
	}{dev, status, message, time.Now().UnixMilli()})
	s.sink.Publish(keys.LineOutcomes(l.cfg.Line.ResultChannel), string(b))
}

// messageJSON renders a device's own message for keys.ChannelData: lines as
// text (JSON-escaped), data frames as hex.
func messageJSON(channel, kind string, frame []byte, now time.Time) string {
	m := struct {
		Channel string `json:"channel"`
		Kind    string `json:"kind"`
		TS      int64  `json:"ts"`
		Text    string `json:"text,omitempty"`
		Hex     string `json:"hex,omitempty"`
	}{Channel: channel, Kind: kind, TS: now.UnixMilli()}
	if kind == "line" {
		m.Text = string(frame)
	} else {
		m.Hex = hex.EncodeToString(frame)
	}
	b, _ := json.Marshal(m)
	return string(b)
}
