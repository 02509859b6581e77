package sink

import (
	"strconv"
	"time"

	"github.com/voltedge/voltedge/internal/contract"
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

// Event queues an entry of the connection event stream, capped at about
// Options.EventsMaxLen entries. It never blocks.
func (s *Sink) Event(e Event) bool {
	b := s.client.B().Xadd().Key(keys.ConnectionEvents).Maxlen().Almost().Threshold(strconv.Itoa(s.opt.EventsMaxLen)).Id("*").FieldValue().
		FieldValue(contract.EventType, e.Type).
		FieldValue(contract.EventTS, strconv.FormatInt(e.At.UnixMilli(), 10))
	for _, kv := range [...][2]string{
		{contract.EventChannel, e.Channel}, {contract.EventListener, e.Listener},
		{contract.EventRegistration, e.Registration}, {contract.EventRemote, e.Remote}, {contract.EventReason, e.Reason},
	} {
		if kv[1] != "" {
			b = b.FieldValue(kv[0], kv[1])
		}
	}
	return s.do(b.Build())
}

// Status queues an update of a channel's status hash with fields (name,
// value, name, value, …). It never blocks.
func (s *Sink) Status(channel string, fields []string) bool {
	if len(fields) < 2 {
		return true
	}
	b := s.client.B().Hset().Key(keys.ChannelStatus(channel)).FieldValue()
	for i := 0; i+1 < len(fields); i += 2 {
		b = b.FieldValue(fields[i], fields[i+1])
	}
	return s.do(b.Build())
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

// AddChannels queues adding ids to the channel set (keys.Channels).
func (s *Sink) AddChannels(ids ...string) bool {
	if len(ids) == 0 {
		return true
	}
	return s.do(s.client.B().Sadd().Key(keys.Channels).Member(ids...).Build())
}

// RemoveChannels queues removing ids from the channel set (keys.Channels).
func (s *Sink) RemoveChannels(ids ...string) bool {
	if len(ids) == 0 {
		return true
	}
	return s.do(s.client.B().Srem().Key(keys.Channels).Member(ids...).Build())
}
