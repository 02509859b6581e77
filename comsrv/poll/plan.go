// Package poll turns a device template into a polling plan: prebuilt Modbus
// RTU requests per task, the points each response carries, and when each task
// runs. The plan is computed once per template and shared, read-only, by every
// link that uses the template.
package poll

import (
	"errors"
	"fmt"
	"hash/fnv"
	"strconv"
	"time"

	"github.com/voltedge/voltedge/comsrv/config"
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

// Plan is the compiled form of a template.
type Plan struct {
	Template string
	Tasks    []Task
	// MaxPoints is the largest number of points any one task yields.
	MaxPoints int
}

// Compile builds the plan for a validated template.
func Compile(t *config.Template) (*Plan, error) {
	p := &Plan{Template: t.Name, Tasks: make([]Task, 0, len(t.Tasks))}
	for i := range t.Tasks {
		ct := &t.Tasks[i]
		task := Task{Name: ct.Name, Interval: ct.Interval.Duration}
		switch ct.Trigger {
		case "", "timer":
			task.Trigger = Timer
		case "heartbeat":
			task.Trigger = Heartbeat
		case "connect":
			task.Trigger = Connect
		default:
			return nil, fmt.Errorf("template %s task %s: unknown trigger %q", t.Name, ct.Name, ct.Trigger)
		}
		task.Req = rtu.Request{Slave: ct.Slave, Function: ct.Function, Address: ct.Start, Quantity: ct.Count}
		adu, err := rtu.AppendRequest(nil, task.Req)
		if err != nil {
			return nil, fmt.Errorf("template %s task %s: %w", t.Name, ct.Name, err)
		}
		task.ADU = adu
		for j := range t.Points {
			d, ok, err := decoderFor(&t.Points[j], ct)
			if err != nil {
				return nil, fmt.Errorf("template %s point %s: %w", t.Name, t.Points[j].ID, err)
			}
			if ok {
				task.Decoders = append(task.Decoders, d)
			}
		}
		if len(task.Decoders) > p.MaxPoints {
			p.MaxPoints = len(task.Decoders)
		}
		p.Tasks = append(p.Tasks, task)
	}
	return p, nil
}

func areaFunction(area string) uint8 {
	switch area {
	case "input":
		return rtu.ReadInputRegisters
	case "coil":
		return rtu.ReadCoils
	case "discrete":
		return rtu.ReadDiscreteInputs
	default:
		return rtu.ReadHoldingRegisters
	}
}

// decoderFor reports whether task ct's response covers point pt, and how to decode it.
func decoderFor(pt *config.Point, ct *config.Task) (Decoder, bool, error) {
	slave := pt.Slave
	if slave == 0 {
		slave = 1
	}
	if slave != ct.Slave || areaFunction(pt.Area) != ct.Function {
		return Decoder{}, false, nil
	}
	codec, err := point.NewCodec(pt.Type, pt.Order, pt.Bit, pt.Scale, pt.Offset, pt.Decimals)
	if err != nil {
		return Decoder{}, false, err
	}
	start, end := int(ct.Start), int(ct.Start)+int(ct.Count)
	addr := int(pt.Address)
	if ct.Function == rtu.ReadCoils || ct.Function == rtu.ReadDiscreteInputs {
		if addr < start || addr >= end {
			return Decoder{}, false, nil
		}
		return Decoder{Point: pt.ID, Offset: addr - start, Bits: true, Codec: codec}, true, nil
	}
	if addr < start || addr+codec.Type.Registers() > end {
		return Decoder{}, false, nil
	}
	return Decoder{Point: pt.ID, Offset: 2 * (addr - start), Codec: codec}, true, nil
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
