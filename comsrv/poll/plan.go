// Package poll turns a device template into a polling plan: prebuilt Modbus
// RTU requests per task, the points each response carries, and when each task
// runs. The plan is computed once per template and shared, read-only, by every
// link that uses the template. It also turns control values into write
// requests (Plan.Write).
package poll

import (
	"errors"
	"hash/fnv"
	"strconv"
	"time"

	"github.com/voltedge/voltedge/internal/point"
	"github.com/voltedge/voltedge/internal/rtu"
)

// Trigger says what makes a task run.
type Trigger uint8

// Triggers.
const (
	Timer     Trigger = iota // every Interval
	Heartbeat                // whenever the DTU sends a heartbeat
	Connect                  // once, right after registration
)

// Decoder extracts one point from a task's response payload.
type Decoder struct {
	Point  string      // point id
	Offset int         // byte offset of the first register, or bit index for bit areas
	Bits   bool        // payload is packed bits (FC 1/2)
	Codec  point.Codec // how to turn the data into a decimal string
}

// Task is one prebuilt request and what its response yields.
type Task struct {
	Name     string
	Trigger  Trigger
	Interval time.Duration
	Req      rtu.Request
	ADU      []byte // the request frame with CRC, ready to write
	Decoders []Decoder
}

// Plan is the compiled form of a template. It is read-only once compiled and
// safe for concurrent use.
type Plan struct {
	Template string
	// Tasks are the template's explicit tasks in order, then the planned
	// requests, sorted by slave, function and address.
	Tasks []Task
	// MaxPoints is the largest number of points any one task yields.
	MaxPoints int
	// Slaves are the distinct slave ids the tasks poll, ascending.
	Slaves []uint8
	// SlavePoints lists, per slave, the ids of the points its responses
	// carry, sorted as config.CompareIDs orders them: the values to mark
	// stale when the slave stops answering.
	SlavePoints map[uint8][]string

	// targets are every point of the template, for writes; index maps a
	// point id to its position in targets.
	targets       []target
	index         map[string]int32
	writeMultiple bool
}

// target is where a point lives and how it is encoded.
type target struct {
	id    string
	slave uint8
	fn    uint8 // read function of the point's area (1..4)
	addr  uint16
	codec point.Codec
	// min and max bound control values (the template's min/max; ±Inf when unset).
	min, max float64
}

// width is the number of registers (or bits, in the bit areas) the point occupies.
func (t *target) width() int {
	if isBitFunction(t.fn) {
		return 1
	}
	return t.codec.Type.Registers()
}

// Decode appends "point, value" pairs for every point in payload to out, using
// scratch as the text buffer. It returns the extended slices and the number of
// points that could not be decoded (not finite, short payload).
//
// All values of one response share one string allocation.
func (t *Task) Decode(payload []byte, scratch []byte, out []string) ([]string, []byte, int) {
	scratch = scratch[:0]
	var bad int
	var endsBuf [64]int32
	ends := endsBuf[:0]
	for i := range t.Decoders {
		d := &t.Decoders[i]
		before := len(scratch)
		var err error
		if d.Bits {
			if d.Offset/8 >= len(payload) {
				err = errShort
			} else {
				scratch = d.Codec.AppendBits(scratch, payload, d.Offset)
			}
		} else {
			n := 2 * d.Codec.Type.Registers()
			if d.Offset+n > len(payload) {
				err = errShort
			} else {
				scratch, err = d.Codec.AppendRegisters(scratch, payload[d.Offset:d.Offset+n])
			}
		}
		if err != nil {
			scratch = scratch[:before]
			bad++
			ends = append(ends, -1)
			continue
		}
		ends = append(ends, int32(len(scratch)))
	}
	text := string(scratch)
	start := 0
	for i, e := range ends {
		if e < 0 {
			continue
		}
		out = append(out, t.Decoders[i].Point, text[start:e])
		start = int(e)
	}
	return out, scratch, bad
}

var errShort = errors.New("payload too short")

// Phase returns a stable offset in [0, interval) for a channel's task, so that
// thousands of links polling at the same interval spread over it instead of
// firing in the same millisecond.
func Phase(channel string, task int, interval time.Duration) time.Duration {
	if interval <= 0 {
		return 0
	}
	h := fnv.New64a()
	_, _ = h.Write([]byte(channel))
	_, _ = h.Write([]byte(strconv.Itoa(task)))
	return time.Duration(h.Sum64() % uint64(interval))
}
