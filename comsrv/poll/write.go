package poll

import (
	"errors"

	"github.com/voltedge/voltedge/comsrv/config"
	"github.com/voltedge/voltedge/internal/rtu"
)

// Write is how one control value reaches a device.
type Write struct {
	// Req is the write request (FC 5, 6, 15 or 16 with its data) or, when
	// ReadFirst is set, the read of the register whose bit is to be changed.
	Req       rtu.Request
	ReadFirst bool
	// set by Plan.Write for read-modify-write
	bit int
	on  bool
}

// ErrNotImplemented is returned by the placeholder.
var errNotImplemented = errors.New("writes are not implemented yet")

// Write plans the control of point pointID to value (a decimal string).
func (p *Plan) Write(pointID, value string) (Write, error) {
	return Write{}, errNotImplemented
}

// Complete returns the write request of a read-modify-write, given the
// payload of the read (the register's two bytes).
func (w *Write) Complete(read []byte) (rtu.Request, error) {
	return rtu.Request{}, errNotImplemented
}

// CompileFor is Compile with the one-request-per-point switch given explicitly
// (a channel's override of the template's plan.one_request_per_point).
func CompileFor(t *config.Template, onePerPoint bool) (*Plan, error) {
	return Compile(t)
}
