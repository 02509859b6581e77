package sink

import (
	"strconv"
	"time"

	"github.com/voltedge/voltedge/internal/keys"
	"github.com/voltedge/voltedge/scripts"
)

// Event is one connection event for the comsrv:events stream.
type Event struct {
	Type         string // online, offline, replaced, refused, connect_failed
	Channel      string // empty for refusals of unknown devices
	Listener     string // DTU listener name, or "modbus" for Modbus channels
	Registration string
	Remote       string
	Reason       string
	At           time.Time
}

// Event types.
const (
	EventOnline        = "online"
	EventOffline       = "offline"
	EventReplaced      = "replaced"
	EventRefused       = "refused"
	EventConnectFailed = "connect_failed"
)

// Event queues an entry of the connection event stream, capped at about
// maxLen entries. It never blocks.
func (s *Sink) Event(e Event, maxLen int) bool {
	if maxLen <= 0 {
		maxLen = 10000
	}
	b := s.B().Xadd().Key(keys.ConnectionEvents).Maxlen().Almost().Threshold(strconv.Itoa(maxLen)).Id("*").FieldValue().
		FieldValue("event", e.Type).
		FieldValue("ts", strconv.FormatInt(e.At.UnixMilli(), 10))
	for _, kv := range [...][2]string{{"channel", e.Channel}, {"listener", e.Listener}, {"registration", e.Registration}, {"remote", e.Remote}, {"reason", e.Reason}} {
		if kv[1] != "" {
			b = b.FieldValue(kv[0], kv[1])
		}
	}
	return s.Do(b.Build())
}

// Frames queues entries (oldest first) for a channel's frame log, keeping
// the newest keep of them. It never blocks.
func (s *Sink) Frames(channel string, entries []string, keep int) bool {
	if len(entries) == 0 {
		return true
	}
	k := keys.ChannelFrames(channel)
	if !s.Do(s.B().Lpush().Key(k).Element(entries...).Build()) {
		return false
	}
	return s.Do(s.B().Ltrim().Key(k).Start(0).Stop(int64(keep - 1)).Build())
}

// Quality queues a change of the quality of a channel's points: stale true
// marks them stale, false marks them good again. The Lua function
// set_quality carries it to the mapped model points and publishes it.
func (s *Sink) Quality(channel string, stale bool, points []string) bool {
	if len(points) == 0 {
		return true
	}
	q := "good"
	if stale {
		q = "stale"
	}
	return s.Do(s.B().Fcall().Function(scripts.FnSetQuality).Numkeys(0).Arg(channel, q).Arg(points...).Build())
}
