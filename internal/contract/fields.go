package contract

import (
	"encoding/json"
	"slices"
	"strconv"
)

// Fields of a channel's status hash (keys.ChannelStatus), written by comsrv
// (and, for the sync errors, by the Lua library).
const (
	ChannelOnline            = "online" // "1" while connected, "0" after the link ended
	ChannelListener          = "listener"
	ChannelProfile           = "profile"
	ChannelRegistration      = "registration"
	ChannelRemote            = "remote"
	ChannelTemplate          = "template"
	ChannelName              = "name"         // the channel's name from its configuration; absent when it has none
	ChannelConnectedAt       = "connected_at" // Unix ms, like the other *_at fields and last_heartbeat
	ChannelLastHeartbeat     = "last_heartbeat"
	ChannelUpdatedAt         = "updated_at"
	ChannelDisconnectedAt    = "disconnected_at"
	ChannelDisconnectReason  = "disconnect_reason"
	ChannelPollsOK           = "polls_ok"
	ChannelTimeouts          = "timeouts"
	ChannelCRCErrors         = "crc_errors"
	ChannelExceptions        = "exceptions"
	ChannelMismatches        = "mismatches"
	ChannelBytesIn           = "bytes_in"
	ChannelBytesOut          = "bytes_out"
	ChannelGarbageBytes      = "garbage_bytes"
	ChannelHeartbeats        = "heartbeats"
	ChannelConnects          = "connects"
	ChannelReplacements      = "replacements" // DTU links replaced by a new connection with the same id
	ChannelDecodeErrors      = "decode_errors"
	ChannelDropped           = "dropped"
	ChannelSkippedPolls      = "skipped_polls"
	ChannelUnreachableSlaves = "unreachable_slaves" // comma-separated slave ids
	ChannelControlsOK        = "controls_ok"
	ChannelControlsFailed    = "controls_failed"
	ChannelMessages          = "messages"
	ChannelMessagesDropped   = "messages_dropped"
	ChannelForwarded         = "forwarded"
	ChannelConnectFailures   = "connect_failures"
	ChannelSyncErrors        = "sync_errors"
	ChannelLastSyncError     = "last_sync_error"
	ChannelLastSyncErrorAt   = "last_sync_error_at"
)

// ChannelCounters are the status fields that count things.
var ChannelCounters = []string{
	ChannelPollsOK, ChannelTimeouts, ChannelCRCErrors, ChannelExceptions, ChannelMismatches,
	ChannelBytesIn, ChannelBytesOut, ChannelGarbageBytes, ChannelHeartbeats, ChannelConnects, ChannelReplacements,
	ChannelDecodeErrors, ChannelDropped, ChannelSkippedPolls, ChannelControlsOK, ChannelControlsFailed,
	ChannelMessages, ChannelMessagesDropped, ChannelForwarded, ChannelConnectFailures, ChannelSyncErrors,
}

// IsChannelCounter reports whether field is one of ChannelCounters.
func IsChannelCounter(field string) bool { return slices.Contains(ChannelCounters, field) }

// ChannelValue is the JSON value of one status field, the same over REST
// and the WebSocket: online a boolean, counters and times integers (when
// they are), the rest strings.
func ChannelValue(field, v string) any {
	if field == ChannelOnline {
		return v == "1"
	}
	if IsChannelCounter(field) || slices.Contains(ChannelTimes, field) {
		if n, err := strconv.ParseInt(v, 10, 64); err == nil {
			return n
		}
	}
	return v
}

// ChannelTyped is a status hash with every field typed by ChannelValue.
func ChannelTyped(status map[string]string) map[string]any {
	m := make(map[string]any, len(status))
	for k, v := range status {
		m[k] = ChannelValue(k, v)
	}
	return m
}

// AlarmFieldValue is the JSON value of one field of an alarm event, the
// same over REST and the WebSocket: value, limits and ts as JSON numbers
// (when they are numbers), the rest strings.
func AlarmFieldValue(field, v string) any {
	switch field {
	case AlarmValue, AlarmLimit, AlarmRaisedLimit, AlarmRaisedTS, AlarmTS:
		if _, err := strconv.ParseFloat(v, 64); err == nil {
			return json.Number(v)
		}
	}
	return v
}

// ChannelTimes are the status fields that hold Unix milliseconds.
var ChannelTimes = []string{
	ChannelConnectedAt, ChannelLastHeartbeat, ChannelUpdatedAt, ChannelDisconnectedAt, ChannelLastSyncErrorAt,
}

// Fields of the comsrv:events stream (keys.ConnectionEvents). Empty fields
// are left out of an entry.
const (
	EventType         = "event" // online, offline, replaced, refused or connect_failed
	EventChannel      = "channel"
	EventListener     = "listener"
	EventRegistration = "registration"
	EventRemote       = "remote"
	EventReason       = "reason"
	EventTS           = "ts" // Unix ms
)

// Values of the EventType field of comsrv:events.
const (
	EventOnline        = "online"         // a link came up
	EventOffline       = "offline"        // a link ended (EventReason says why)
	EventReplaced      = "replaced"       // a DTU reconnected and its new link replaced the old one
	EventRefused       = "refused"        // a connection was refused (unknown id, bad registration, limit)
	EventConnectFailed = "connect_failed" // comsrv could not open a Modbus channel's connection
)

// Fields of the alarm:events stream (keys.AlarmEvents), written by the Lua library.
const (
	AlarmType  = "type" // AlarmRaise, AlarmClear or AlarmAck
	AlarmModel = "model"
	AlarmPoint = "point" // the model's point name
	AlarmKind  = "kind"  // AlarmHigh or AlarmLow
	AlarmValue = "value"
	AlarmLimit = "limit"
	AlarmTS    = "ts" // Unix ms
	// AlarmRaisedLimit is the limit a clear event's alarm was raised with
	// (AlarmLimit is the one in force when it cleared).
	AlarmRaisedLimit = "raised_limit"
	// AlarmRaisedTS is the ts of a clear event's raise: with model and point
	// it names the alarm (absent for an alarm raised before VERSION 10).
	AlarmRaisedTS = "raised_ts"
	// AlarmUser is who acknowledged, in an AlarmAck event.
	AlarmUser = "user"
)

// AlarmEventsMaxLen is the approximate cap of alarm:events (MAXLEN ~), the
// Lua library's ALARM_EVENTS_MAXLEN.
const AlarmEventsMaxLen = 10000

// Values of the alarm:events type and kind fields.
const (
	AlarmRaise = "raise"
	AlarmClear = "clear"
	// AlarmAck is an acknowledgement, written by modsrv: model, point, user,
	// raised_ts (the acknowledged alarm's raise) and ts.
	AlarmAck  = "ack"
	AlarmHigh = "high"
	AlarmLow  = "low"
)
