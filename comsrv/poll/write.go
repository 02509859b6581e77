package poll

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"

	"github.com/voltedge/voltedge/internal/point"
	"github.com/voltedge/voltedge/internal/rtu"
)

// MaxValueLen bounds the length of a control value's text.
const MaxValueLen = 64

// Write is how one control value reaches a device.
type Write struct {
	// Req is the write request (FC 5, 6, 15 or 16 with its data) or, when
	// ReadFirst is set, the read (FC 3) of the register whose bit is to be
	// changed; Complete then gives the write.
	Req       rtu.Request
	ReadFirst bool

	// read-modify-write state, set by Plan.Write
	codec    point.Codec
	on       bool
	multiple bool
}

// Write plans the control of point pointID to value, a decimal number in
// JSON syntax ("50", "-1.5", "2e3").
//
//   - A coil takes 0 or 1: FC 5, or FC 15 with plan.write_multiple.
//   - A holding register point is encoded by its codec (the inverse of
//     scale and offset, in its byte order; values its type cannot hold are
//     refused): FC 6 for one register, FC 16 for two to four, and always FC
//     16 with plan.write_multiple.
//   - A bool bit of a holding register takes 0 or 1 and needs the register
//     first: Req reads it (ReadFirst), and Complete builds the write.
//   - Points in the input and discrete areas are read-only.
//   - A value outside the point's min..max (template) is refused.
//
// Errors name the point and say what is wrong in words an operator can act
// on. Write does not allocate beyond the request's data.
func (p *Plan) Write(pointID, value string) (Write, error) {
	i, ok := p.index[pointID]
	if !ok {
		return Write{}, fmt.Errorf("unknown point %.128q: template %s has no such point", pointID, p.Template)
	}
	tg := &p.targets[i]
	switch tg.fn {
	case rtu.ReadInputRegisters:
		return Write{}, fmt.Errorf("point %s is read-only (input area)", tg.id)
	case rtu.ReadDiscreteInputs:
		return Write{}, fmt.Errorf("point %s is read-only (discrete area)", tg.id)
	}
	if err := checkValue(value); err != nil {
		return Write{}, fmt.Errorf("point %s: %w", tg.id, err)
	}
	if !math.IsInf(tg.min, -1) || !math.IsInf(tg.max, 1) {
		if x, err := strconv.ParseFloat(value, 64); err == nil && (x < tg.min || x > tg.max) {
			return Write{}, fmt.Errorf("point %s: control value %s outside the allowed %g..%g: %w", tg.id, value, tg.min, tg.max, point.ErrRange)
		}
	}
	w := Write{multiple: p.writeMultiple}
	c := tg.codec
	if data, ok, err := encodeExact(c, value); err != nil {
		return Write{}, fmt.Errorf("point %s: %w", tg.id, err)
	} else if ok {
		w.Req = registersRequest(tg.slave, tg.addr, data, p.writeMultiple)
		return w, nil
	}
	x, err := strconv.ParseFloat(value, 64)
	if err != nil {
		return Write{}, fmt.Errorf("point %s: control value %s is beyond the range of a 64-bit float: %w", tg.id, value, point.ErrRange)
	}
	if tg.fn == rtu.ReadCoils || (c.Type == point.Bool && c.Bit >= 0) {
		on, err := c.EncodeCoil(x)
		if err != nil {
			return Write{}, fmt.Errorf("point %s: %w", tg.id, err)
		}
		if tg.fn == rtu.ReadCoils {
			w.Req = coilRequest(tg.slave, tg.addr, on, p.writeMultiple)
			return w, nil
		}
		w.Req = rtu.Request{Slave: tg.slave, Function: rtu.ReadHoldingRegisters, Address: tg.addr, Quantity: 1}
		w.ReadFirst, w.codec, w.on = true, c, on
		return w, nil
	}
	data, err := c.EncodeRegisters(make([]byte, 0, 2*c.Type.Registers()), x)
	if err != nil {
		return Write{}, fmt.Errorf("point %s: %w", tg.id, asSent(err, value, x))
	}
	w.Req = registersRequest(tg.slave, tg.addr, data, p.writeMultiple)
	return w, nil
}

// Complete returns the write request of a read-modify-write, given the
// payload of the read (the register's two bytes, as Req's response carries
// them): the register with the point's bit set or cleared.
func (w *Write) Complete(read []byte) (rtu.Request, error) {
	if !w.ReadFirst {
		return rtu.Request{}, errors.New("this write needs no read first: send Req as it is")
	}
	if len(read) != 2 {
		return rtu.Request{}, fmt.Errorf("read of register %d returned %d bytes, want 2", w.Req.Address, len(read))
	}
	reg := w.codec.SetBit(uint16(read[0])<<8|uint16(read[1]), w.on)
	return registersRequest(w.Req.Slave, w.Req.Address, []byte{byte(reg >> 8), byte(reg)}, w.multiple), nil
}

// asSent rewrites the codec's rendering of control value x in err's message
// ("2.147483648e+09") as the operator sent it ("2147483648"), keeping what
// err wraps.
func asSent(err error, value string, x float64) error {
	var buf [32]byte
	shown := "control value " + string(strconv.AppendFloat(buf[:0], x, 'g', -1, 64)) + " "
	msg := err.Error()
	if !strings.HasPrefix(msg, shown) || shown[len("control value "):] == value+" " {
		return err
	}
	return &sentError{msg: "control value " + value + " " + msg[len(shown):], err: err}
}

// sentError is an error with a reworded message.
type sentError struct {
	msg string
	err error
}

func (e *sentError) Error() string { return e.msg }
func (e *sentError) Unwrap() error { return e.err }

// coilRequest writes one coil.
func coilRequest(slave uint8, addr uint16, on, multiple bool) rtu.Request {
	if multiple {
		b := byte(0)
		if on {
			b = 1
		}
		return rtu.Request{Slave: slave, Function: rtu.WriteMultipleCoils, Address: addr, Quantity: 1, Data: []byte{b}}
	}
	v := uint16(rtu.CoilOff)
	if on {
		v = rtu.CoilOn
	}
	return rtu.Request{Slave: slave, Function: rtu.WriteSingleCoil, Address: addr, Quantity: 1, Data: []byte{byte(v >> 8), byte(v)}}
}

// registersRequest writes data (2 bytes per register) from addr on.
func registersRequest(slave uint8, addr uint16, data []byte, multiple bool) rtu.Request {
	n := uint16(len(data) / 2)
	if n == 1 && !multiple {
		return rtu.Request{Slave: slave, Function: rtu.WriteSingleRegister, Address: addr, Quantity: 1, Data: data}
	}
	return rtu.Request{Slave: slave, Function: rtu.WriteMultipleRegisters, Address: addr, Quantity: n, Data: data}
}

// encodeExact encodes integer values of unscaled 64-bit integer points
// exactly, where float64 would round them (beyond 2^53), and refuses int64
// values below its range, which float64 could round into it. ok is false
// when the codec is to encode value.
func encodeExact(c point.Codec, value string) (data []byte, ok bool, err error) {
	if (c.Type != point.Int64 && c.Type != point.Uint64) || (c.Scale != 1 && c.Scale != 0) || c.Offset != 0 || !isInteger(value) {
		return nil, false, nil
	}
	var v uint64
	if c.Type == point.Int64 {
		i, err := strconv.ParseInt(value, 10, 64)
		if err != nil {
			return nil, false, fmt.Errorf("control value %s outside %d..%d for int64: %w", value, int64(math.MinInt64), int64(math.MaxInt64), point.ErrRange)
		}
		v = uint64(i)
	} else {
		u, err := strconv.ParseUint(value, 10, 64)
		if err != nil {
			return nil, false, nil // negative ("-0" included) or beyond 2^64-1: the codec decides
		}
		v = u
	}
	return storeOrdered(make([]byte, 0, 8), v, c.Order), true, nil
}

// storeOrdered appends a 64-bit raw value as four registers in byte order o,
// as point.Codec does for 64-bit types.
func storeOrdered(dst []byte, v uint64, o point.Order) []byte {
	wordSwap, byteSwap := o == point.CDAB || o == point.DCBA, o == point.BADC || o == point.DCBA
	var b [8]byte
	for i := 0; i < 8; i++ {
		w, k := i>>1, i&1
		if wordSwap {
			w = 3 - w
		}
		if byteSwap {
			k ^= 1
		}
		b[2*w+k] = byte(v >> (8 * uint(7-i)))
	}
	return append(dst, b[:]...)
}

// checkValue checks that a control value is a number in JSON syntax.
func checkValue(s string) error {
	if len(s) > MaxValueLen {
		return fmt.Errorf("control value of %d characters is too long (at most %d)", len(s), MaxValueLen)
	}
	if !isNumber(s) {
		return fmt.Errorf("control value %q is not a decimal number", s)
	}
	return nil
}

// isNumber reports whether s is a number in JSON syntax.
func isNumber(s string) bool {
	i := 0
	if i < len(s) && s[i] == '-' {
		i++
	}
	switch {
	case i >= len(s):
		return false
	case s[i] == '0':
		i++
	case s[i] >= '1' && s[i] <= '9':
		i = digits(s, i)
	default:
		return false
	}
	if i < len(s) && s[i] == '.' {
		j := digits(s, i+1)
		if j == i+1 {
			return false
		}
		i = j
	}
	if i < len(s) && (s[i] == 'e' || s[i] == 'E') {
		i++
		if i < len(s) && (s[i] == '+' || s[i] == '-') {
			i++
		}
		j := digits(s, i)
		if j == i {
			return false
		}
		i = j
	}
	return i == len(s)
}

// isInteger reports whether the JSON number s has no fraction or exponent.
func isInteger(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] == '.' || s[i] == 'e' || s[i] == 'E' {
			return false
		}
	}
	return true
}

// digits returns the index after the run of digits starting at i.
func digits(s string, i int) int {
	for i < len(s) && s[i] >= '0' && s[i] <= '9' {
		i++
	}
	return i
}
