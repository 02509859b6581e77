package sink

import (
	"time"

	"github.com/voltedge/voltedge/internal/keys"
)

// Event is one connection event for the comsrv:events stream.
type Event struct {
	Type         string // contract.EventOnline, EventOffline, …
	Channel      string // empty for refusals of unknown devices
	Listener     string // DTU listener name, or "modbus" for Modbus channels
	Registration string
	Remote       string
	Reason       string
	At           time.Time
}

// Frames queues entries (oldest first) for a channel's frame log, keeping
// the newest keep of them. It never blocks.
func (s *Sink) Frames(channel string, entries []string, keep int) bool {
	if len(entries) == 0 {
		return true
	}
	k := keys.ChannelFrames(channel)
	if !s.do(s.client.B().Lpush().Key(k).Element(entries...).Build()) {
		return false
	}
	return s.do(s.client.B().Ltrim().Key(k).Start(0).Stop(int64(keep - 1)).Build())
}

// DeviceMessage publishes a device's own message (a line, a data frame),
// rendered as JSON, on the channel's data channel. It never blocks.
func (s *Sink) DeviceMessage(channel, msg string) bool {
	return s.do(s.client.B().Publish().Channel(keys.ChannelData(channel)).Message(msg).Build())
}

// Publish queues a message on a pub/sub channel (outcomes of forwarded
// lines). It never blocks.
func (s *Sink) Publish(channel, msg string) bool {
	return s.do(s.client.B().Publish().Channel(channel).Message(msg).Build())
}
