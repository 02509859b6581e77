// Package scripts embeds the VoltEdge Redis Functions library (voltedge.lua).
//
// The library maps channel points to model points, publishes model updates,
// raises and clears alarms and queues control commands; its header comment
// documents every function. internal/lualib loads it into Redis.
package scripts

import (
	_ "embed"
	"regexp"
	"strconv"
)

//go:embed voltedge.lua
var source string

// LibraryName is the library's name in Redis (FUNCTION LIST, FUNCTION DELETE).
const LibraryName = "voltedge"

// Names of the library's functions, for FCALL and FCALL_RO.
const (
	// FnSyncMeasurement stores one sample: channel, point, value [, ts_ms].
	FnSyncMeasurement = "sync_measurement"
	// FnSyncBatch stores one or more groups of samples: channel, ts_ms, n, point/value pairs, ...
	FnSyncBatch = "sync_batch"
	// FnSendControl queues a control command: model, control, value [, ttl_ms [, nonce]].
	FnSendControl = "send_control"
	// FnTakeControls moves queued commands of a channel into cmd:inflight:
	// channel, max. It removes the channel from cmd:pending when its queue is empty.
	FnTakeControls = "take_controls"
	// FnControlResult records a command's outcome and ends its time in
	// cmd:inflight: id, status, code, message, channel, point, value, model,
	// control, ttl_ms, maxlen [, nonce].
	FnControlResult = "control_result"
	// FnControlSent marks a taken command as about to be written to its
	// device (cmd:sent): id. It returns 1, or 0 when the command is not in flight.
	FnControlSent = "control_sent"
	// FnRecoverControls answers the commands a stopped comsrv left in
	// cmd:inflight: ttl_ms, maxlen. It returns {requeued, expired, unknown, dropped}.
	FnRecoverControls = "recover_controls"
	// FnSetQuality marks channel points stale or good: channel, "stale"|"good", point, ...
	FnSetQuality = "set_quality"
	// FnVersion returns the library version (read-only, FCALL_RO).
	FnVersion = "voltedge_version"
)

// versionRE finds the version line of a library's code.
var versionRE = regexp.MustCompile(`local VERSION = (\d+)`)

// Source returns the library's code, ready for FUNCTION LOAD.
func Source() string { return source }

// Version returns the version of the embedded library (0 if its code has no
// version line, which a test rules out).
func Version() int {
	v, _ := ParseVersion(source)
	return v
}

// ParseVersion extracts the version from a library's code, as found in the
// line "local VERSION = <n>". ok is false when the line is missing or the
// number does not fit an int.
func ParseVersion(code string) (version int, ok bool) {
	m := versionRE.FindStringSubmatch(code)
	if m == nil {
		return 0, false
	}
	v, err := strconv.Atoi(m[1])
	if err != nil {
		return 0, false
	}
	return v, true
}
