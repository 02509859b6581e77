package contract

import (
	"strconv"
	"strings"
)

// Status is the result class of a command.
type Status string

// Outcomes of a command.
const (
	OK        Status = "ok"        // the device confirmed the write
	Exception Status = "exception" // the device answered with a Modbus exception (Outcome.Code)
	Timeout   Status = "timeout"   // no valid answer within the request timeout and retries
	Offline   Status = "offline"   // the channel's link is not connected
	Expired   Status = "expired"   // the deadline passed before the command could be sent; never executed
	Invalid   Status = "invalid"   // unknown point, a point that cannot be written, or a value out of range
	Failed    Status = "failed"    // the link failed while the command was in flight, or comsrv stopped
	Unknown   Status = "unknown"   // comsrv restarted while the command was being written: it may have been executed
)

// Outcome is what became of one command.
type Outcome struct {
	Status  Status
	Code    uint8 // Modbus exception code when Status is Exception
	Message string
}

// String renders the outcome on one line: "ok", "exception 2 (illegal data
// address)", "offline (channel not connected)". Control bytes become spaces.
func (o Outcome) String() string {
	var b strings.Builder
	b.WriteString(string(o.Status))
	if o.Status == Exception && o.Code != 0 {
		b.WriteByte(' ')
		b.WriteString(strconv.Itoa(int(o.Code)))
	}
	if o.Message != "" {
		b.WriteString(" (")
		b.WriteString(o.Message)
		b.WriteByte(')')
	}
	return strings.Map(func(r rune) rune {
		if r < ' ' || r == 0x7f {
			return ' '
		}
		return r
	}, b.String())
}

// Fields of cmd:result:{id} and of the cmd:results stream entries (the
// stream adds ResultID), as control_result writes them.
const (
	ResultID      = "id"
	ResultStatus  = "status"
	ResultCode    = "code"
	ResultMessage = "message"
	ResultChannel = "channel"
	ResultPoint   = "point"
	ResultValue   = "value"
	ResultModel   = "model"
	ResultControl = "control"
	ResultTS      = "ts"
	// ResultNonce is the nonce the command was queued with (absent when it had none).
	ResultNonce = "nonce"
)

// Result is the recorded outcome of one command.
type Result struct {
	ID string
	Outcome
	// Fields are the recorded fields (status, code, message, channel,
	// point, value, model, control, ts and nonce when the command had one),
	// without the id.
	Fields map[string]string
}

// resultOf makes the Result of command id from its recorded fields; a
// "id" field is removed. ok is false when fields hold no status.
func resultOf(id string, fields map[string]string) (Result, bool) {
	if fields[ResultStatus] == "" {
		return Result{}, false
	}
	delete(fields, ResultID)
	code, _ := strconv.ParseUint(fields[ResultCode], 10, 8)
	return Result{
		ID:      id,
		Outcome: Outcome{Status: Status(fields[ResultStatus]), Code: uint8(code), Message: fields[ResultMessage]},
		Fields:  fields,
	}, true
}
