// Package rtu frames Modbus RTU requests and responses.
//
// It serves both ends of a transparent DTU link: comsrv acts as master over a
// socket the DTU opened (AppendRequest, FrameLen, ParseResponse), and the
// DTU simulator acts as slave (ParseRequest, AppendResponse, AppendException).
// Nothing here does I/O or allocates on the success path; every parser is
// bounded by the bytes it is given and never panics on hostile input.
package rtu

import (
	"errors"
	"fmt"
)

// Function codes supported by this package.
const (
	ReadCoils              = 1
	ReadDiscreteInputs     = 2
	ReadHoldingRegisters   = 3
	ReadInputRegisters     = 4
	WriteSingleCoil        = 5
	WriteSingleRegister    = 6
	WriteMultipleCoils     = 15
	WriteMultipleRegisters = 16
)

// Exception codes a slave may answer with.
const (
	ExIllegalFunction         = 0x01
	ExIllegalDataAddress      = 0x02
	ExIllegalDataValue        = 0x03
	ExSlaveDeviceFailure      = 0x04
	ExAcknowledge             = 0x05
	ExSlaveDeviceBusy         = 0x06
	ExMemoryParityError       = 0x08
	ExGatewayPathUnavailable  = 0x0A
	ExGatewayTargetNoResponse = 0x0B
)

const (
	exceptionFlag              = 0x80
	maxSlave                   = 247
	maxReadBits                = 2000
	maxReadRegisters           = 125
	maxWriteBits               = 1968
	maxWriteRegisters          = 123
	crcLen                     = 2
	exceptionFrameLen          = 5
	writeResponseLen           = 8
	fixedRequestLen            = 8 // FC 1..6
	multiWriteRequestHeaderLen = 7 // slave, function, address, quantity, byte count
)

// Coil values carried by WriteSingleCoil.
const (
	CoilOn  = 0xFF00
	CoilOff = 0x0000
)

// MaxFrameLen is the longest RTU frame this package produces or accepts:
// a multiple-write request with 255 data bytes.
const MaxFrameLen = multiWriteRequestHeaderLen + 255 + crcLen

// Errors returned by the parsers. Wrapped errors carry details; test them with errors.Is.
var (
	// ErrCRC means the frame's CRC does not match its contents.
	ErrCRC = errors.New("rtu: CRC mismatch")
	// ErrMismatch means a well-formed frame does not answer the request
	// (other slave or function, wrong byte count, wrong write echo).
	ErrMismatch = errors.New("rtu: response does not match request")
	// ErrTruncated means more bytes are needed to complete the frame.
	ErrTruncated = errors.New("rtu: truncated frame")
	// ErrInvalid means a request's fields are out of range.
	ErrInvalid = errors.New("rtu: invalid request")
	// ErrMalformed means the bytes cannot start a request frame; a slave drops a byte and resyncs.
	ErrMalformed = errors.New("rtu: malformed frame")
)

// ExceptionError is a Modbus exception response.
type ExceptionError struct {
	Function uint8 // the request's function code (without the 0x80 flag)
	Code     uint8 // the exception code
}

// Error names the exception code.
func (e *ExceptionError) Error() string {
	return fmt.Sprintf("rtu: exception %d (%s) for function %d", e.Code, ExceptionText(e.Code), e.Function)
}

// ExceptionText names a Modbus exception code.
func ExceptionText(code uint8) string {
	switch code {
	case ExIllegalFunction:
		return "illegal function"
	case ExIllegalDataAddress:
		return "illegal data address"
	case ExIllegalDataValue:
		return "illegal data value"
	case ExSlaveDeviceFailure:
		return "slave device failure"
	case ExAcknowledge:
		return "acknowledge"
	case ExSlaveDeviceBusy:
		return "slave device busy"
	case ExMemoryParityError:
		return "memory parity error"
	case ExGatewayPathUnavailable:
		return "gateway path unavailable"
	case ExGatewayTargetNoResponse:
		return "gateway target device failed to respond"
	}
	return "unknown exception"
}

// Request is one Modbus request.
//
// Data holds, for WriteSingleCoil, the 2-byte value (0xFF00 on, 0x0000 off);
// for WriteSingleRegister, the 2-byte register; for WriteMultipleCoils, the
// packed bits (LSB first, ceil(Quantity/8) bytes); for WriteMultipleRegisters,
// the registers big-endian (2×Quantity bytes). It is empty for reads.
// Quantity is ignored for the single writes (0 or 1 are accepted).
type Request struct {
	Slave    uint8
	Function uint8
	Address  uint16
	Quantity uint16
	Data     []byte
}

// IsWrite reports whether f is one of the write function codes.
func IsWrite(f uint8) bool {
	return f == WriteSingleCoil || f == WriteSingleRegister || f == WriteMultipleCoils || f == WriteMultipleRegisters
}

// IsRead reports whether f is one of the read function codes.
func IsRead(f uint8) bool {
	return f >= ReadCoils && f <= ReadInputRegisters
}

// readByteCount is the data byte count of a read response, or -1 for other functions.
func readByteCount(f uint8, qty uint16) int {
	switch f {
	case ReadCoils, ReadDiscreteInputs:
		return (int(qty) + 7) / 8
	case ReadHoldingRegisters, ReadInputRegisters:
		return 2 * int(qty)
	}
	return -1
}

// Validate checks the request's slave, function, quantity and data length.
// Slave 0 (broadcast) is allowed only for writes; Address+Quantity must not
// pass the end of the 16-bit address space. Errors wrap ErrInvalid.
func (r Request) Validate() error {
	if r.Slave > maxSlave {
		return fmt.Errorf("%w: slave %d out of range 0..%d", ErrInvalid, r.Slave, maxSlave)
	}
	if r.Slave == 0 && !IsWrite(r.Function) {
		return fmt.Errorf("%w: broadcast (slave 0) with function %d", ErrInvalid, r.Function)
	}
	var maxQty, dataLen int
	switch r.Function {
	case ReadCoils, ReadDiscreteInputs:
		maxQty = maxReadBits
	case ReadHoldingRegisters, ReadInputRegisters:
		maxQty = maxReadRegisters
	case WriteSingleCoil, WriteSingleRegister:
		if r.Quantity > 1 {
			return fmt.Errorf("%w: quantity %d for function %d", ErrInvalid, r.Quantity, r.Function)
		}
		if len(r.Data) != 2 {
			return fmt.Errorf("%w: function %d needs 2 data bytes, have %d", ErrInvalid, r.Function, len(r.Data))
		}
		if r.Function == WriteSingleCoil {
			if v := uint16(r.Data[0])<<8 | uint16(r.Data[1]); v != CoilOn && v != CoilOff {
				return fmt.Errorf("%w: coil value %#04x is neither 0xFF00 nor 0x0000", ErrInvalid, v)
			}
		}
		return nil
	case WriteMultipleCoils:
		maxQty, dataLen = maxWriteBits, (int(r.Quantity)+7)/8
	case WriteMultipleRegisters:
		maxQty, dataLen = maxWriteRegisters, 2*int(r.Quantity)
	default:
		return fmt.Errorf("%w: unsupported function %d", ErrInvalid, r.Function)
	}
	if r.Quantity < 1 || int(r.Quantity) > maxQty {
		return fmt.Errorf("%w: quantity %d out of range 1..%d for function %d", ErrInvalid, r.Quantity, maxQty, r.Function)
	}
	if int(r.Address)+int(r.Quantity) > 0x10000 {
		return fmt.Errorf("%w: address %d + quantity %d passes 65535", ErrInvalid, r.Address, r.Quantity)
	}
	if len(r.Data) != dataLen {
		return fmt.Errorf("%w: function %d quantity %d needs %d data bytes, have %d", ErrInvalid, r.Function, r.Quantity, dataLen, len(r.Data))
	}
	return nil
}

// AppendRequest appends the request's full ADU (with CRC) to dst. It does
// not allocate when dst has room for it (at most MaxFrameLen bytes).
func AppendRequest(dst []byte, r Request) ([]byte, error) {
	if err := r.Validate(); err != nil {
		return dst, err
	}
	start := len(dst)
	dst = append(dst, r.Slave, r.Function, byte(r.Address>>8), byte(r.Address))
	switch r.Function {
	case WriteSingleCoil, WriteSingleRegister:
		dst = append(dst, r.Data...)
	case WriteMultipleCoils, WriteMultipleRegisters:
		dst = append(dst, byte(r.Quantity>>8), byte(r.Quantity), byte(len(r.Data)))
		dst = append(dst, r.Data...)
	default:
		dst = append(dst, byte(r.Quantity>>8), byte(r.Quantity))
	}
	return appendCRC(dst, dst[start:]), nil
}

// ResponseLen is the length of the normal (non-exception) response ADU to a
// valid request r, or 0 when r gets no response (broadcast) or has an
// unsupported function.
func ResponseLen(r Request) int {
	if r.Slave == 0 {
		return 0
	}
	if n := readByteCount(r.Function, r.Quantity); n >= 0 {
		return exceptionFrameLen + n
	}
	if IsWrite(r.Function) {
		return writeResponseLen
	}
	return 0
}

// FrameLen reports the total length of the response frame that starts at
// buf[0], given the request r it answers.
//
// ok is false while more bytes are needed to know: two bytes for writes and
// exceptions, three for reads (whose length is taken from the byte count, so
// that a response with a wrong count is consumed whole and reported by
// ParseResponse as ErrMismatch). n is -1 (with ok true) when the bytes cannot
// start a response to r (other slave or function, or r expects no response);
// the caller drops a byte and tries again.
func FrameLen(r Request, buf []byte) (n int, ok bool) {
	if len(buf) < 2 {
		return 0, false
	}
	if r.Slave == 0 || buf[0] != r.Slave || r.Function&exceptionFlag != 0 {
		return -1, true
	}
	switch buf[1] {
	case r.Function | exceptionFlag:
		return exceptionFrameLen, true
	case r.Function:
	default:
		return -1, true
	}
	if IsRead(r.Function) {
		if len(buf) < 3 {
			return 0, false
		}
		return exceptionFrameLen + int(buf[2]), true
	}
	if IsWrite(r.Function) {
		return writeResponseLen, true
	}
	return -1, true
}

// ParseResponse checks a complete response frame to r and returns its data.
//
// It returns ErrTruncated for a frame too short to hold anything, ErrCRC for
// a bad CRC, an error wrapping ErrMismatch when the frame does not answer r,
// and *ExceptionError for an exception response. For reads, payload is the
// data bytes (registers big-endian, or packed bits), a sub-slice of frame.
// For writes, payload is nil once the echo has been checked.
func ParseResponse(r Request, frame []byte) (payload []byte, err error) {
	if len(frame) < exceptionFrameLen {
		return nil, ErrTruncated
	}
	if !CheckCRC(frame) {
		return nil, ErrCRC
	}
	if frame[0] != r.Slave {
		return nil, fmt.Errorf("%w: slave %d, want %d", ErrMismatch, frame[0], r.Slave)
	}
	if r.Function&exceptionFlag == 0 && frame[1] == r.Function|exceptionFlag {
		if len(frame) != exceptionFrameLen {
			return nil, fmt.Errorf("%w: exception frame of %d bytes", ErrMismatch, len(frame))
		}
		return nil, &ExceptionError{Function: r.Function, Code: frame[2]}
	}
	if frame[1] != r.Function {
		return nil, fmt.Errorf("%w: function %d, want %d", ErrMismatch, frame[1], r.Function)
	}
	if want := readByteCount(r.Function, r.Quantity); want >= 0 {
		bc := int(frame[2])
		if bc != want || len(frame) != exceptionFrameLen+bc {
			return nil, fmt.Errorf("%w: byte count %d in %d-byte frame, want %d", ErrMismatch, bc, len(frame), want)
		}
		return frame[3 : 3+bc], nil
	}
	if !IsWrite(r.Function) {
		return nil, fmt.Errorf("%w: unsupported function %d", ErrMismatch, r.Function)
	}
	if len(frame) != writeResponseLen {
		return nil, fmt.Errorf("%w: write response of %d bytes", ErrMismatch, len(frame))
	}
	addr := uint16(frame[2])<<8 | uint16(frame[3])
	if addr != r.Address {
		return nil, fmt.Errorf("%w: echoed address %d, want %d", ErrMismatch, addr, r.Address)
	}
	switch r.Function {
	case WriteSingleCoil, WriteSingleRegister:
		if len(r.Data) != 2 || frame[4] != r.Data[0] || frame[5] != r.Data[1] {
			return nil, fmt.Errorf("%w: echoed value %02x%02x differs", ErrMismatch, frame[4], frame[5])
		}
	default:
		if qty := uint16(frame[4])<<8 | uint16(frame[5]); qty != r.Quantity {
			return nil, fmt.Errorf("%w: echoed quantity %d, want %d", ErrMismatch, qty, r.Quantity)
		}
	}
	return nil, nil
}

// ParseRequest parses one request frame at the start of buf, as a slave does.
//
// err is ErrTruncated when buf holds the start of a possible request and more
// bytes are needed. An error wrapping ErrMalformed or ErrCRC means buf[0]
// does not start a request: the caller drops one byte and tries again. An
// error wrapping ErrInvalid comes with r (slave and function set) and n, the
// length of a frame with a good CRC whose fields are out of range: a slave
// skips n bytes and answers exception 3 (illegal data value) unless r is a
// broadcast. On success r.Data aliases buf and n is the frame's length.
func ParseRequest(buf []byte) (r Request, n int, err error) {
	if len(buf) < 1 {
		return r, 0, ErrTruncated
	}
	if buf[0] > maxSlave {
		return r, 0, fmt.Errorf("%w: slave %d", ErrMalformed, buf[0])
	}
	if len(buf) < 2 {
		return r, 0, ErrTruncated
	}
	r.Slave, r.Function = buf[0], buf[1]
	switch {
	case IsRead(r.Function):
		if r.Slave == 0 {
			return Request{}, 0, fmt.Errorf("%w: broadcast read", ErrMalformed)
		}
		n = fixedRequestLen
	case r.Function == WriteSingleCoil || r.Function == WriteSingleRegister:
		n = fixedRequestLen
	case r.Function == WriteMultipleCoils || r.Function == WriteMultipleRegisters:
		if len(buf) < multiWriteRequestHeaderLen {
			return Request{}, 0, ErrTruncated
		}
		qty := uint16(buf[4])<<8 | uint16(buf[5])
		bc := int(buf[6])
		want := (int(qty) + 7) / 8
		if r.Function == WriteMultipleRegisters {
			want = 2 * int(qty)
		}
		if qty == 0 || bc != want {
			return Request{}, 0, fmt.Errorf("%w: byte count %d for quantity %d", ErrMalformed, bc, qty)
		}
		n = multiWriteRequestHeaderLen + bc + crcLen
	default:
		return Request{}, 0, fmt.Errorf("%w: function %d", ErrMalformed, r.Function)
	}
	if len(buf) < n {
		return Request{}, 0, ErrTruncated
	}
	frame := buf[:n]
	if !CheckCRC(frame) {
		return Request{}, 0, ErrCRC
	}
	r.Address = uint16(frame[2])<<8 | uint16(frame[3])
	switch r.Function {
	case WriteSingleCoil, WriteSingleRegister:
		r.Quantity = 1
		r.Data = frame[4:6:6]
	case WriteMultipleCoils, WriteMultipleRegisters:
		r.Quantity = uint16(frame[4])<<8 | uint16(frame[5])
		r.Data = frame[multiWriteRequestHeaderLen : n-crcLen : n-crcLen]
	default:
		r.Quantity = uint16(frame[4])<<8 | uint16(frame[5])
	}
	if err := r.Validate(); err != nil {
		return r, n, err
	}
	return r, n, nil
}

// AppendResponse appends a normal response to r to dst, as a slave does. For
// reads, payload is the data (registers big-endian or packed bits; at most
// 255 bytes are used); for writes payload is ignored and the request's
// address and quantity (or value) are echoed.
func AppendResponse(dst []byte, r Request, payload []byte) []byte {
	start := len(dst)
	dst = append(dst, r.Slave, r.Function)
	switch r.Function {
	case WriteSingleCoil, WriteSingleRegister:
		dst = append(dst, byte(r.Address>>8), byte(r.Address))
		if len(r.Data) >= 2 {
			dst = append(dst, r.Data[0], r.Data[1])
		} else {
			dst = append(dst, 0, 0)
		}
	case WriteMultipleCoils, WriteMultipleRegisters:
		dst = append(dst, byte(r.Address>>8), byte(r.Address), byte(r.Quantity>>8), byte(r.Quantity))
	default:
		if len(payload) > 255 {
			payload = payload[:255]
		}
		dst = append(dst, byte(len(payload)))
		dst = append(dst, payload...)
	}
	return appendCRC(dst, dst[start:])
}

// AppendException appends an exception response to dst.
func AppendException(dst []byte, slave, function, code uint8) []byte {
	start := len(dst)
	dst = append(dst, slave, function|exceptionFlag, code)
	return appendCRC(dst, dst[start:])
}

// PackBits appends bits packed LSB first, eight to a byte, as Modbus carries
// coils and discrete inputs.
func PackBits(dst []byte, bits []bool) []byte {
	var b byte
	for i, v := range bits {
		if v {
			b |= 1 << (i % 8)
		}
		if i%8 == 7 {
			dst = append(dst, b)
			b = 0
		}
	}
	if len(bits)%8 != 0 {
		dst = append(dst, b)
	}
	return dst
}

// Bit reports bit i of packed Modbus bits; bits beyond packed are false.
func Bit(packed []byte, i int) bool {
	if i < 0 || i/8 >= len(packed) {
		return false
	}
	return packed[i/8]&(1<<(i%8)) != 0
}
