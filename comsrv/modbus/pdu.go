package modbus

import (
	"github.com/voltedge/voltedge/internal/rtu"
)

// The library does the framing itself and shows neither the frames it sends
// nor those it receives. For the frame log, the protocol data units (function
// code and data, without unit id, MBAP header or CRC) are rebuilt from the
// request and the result; they are what went over the wire inside the frame.

// appendRequestPDU appends the PDU of request r.
func appendRequestPDU(dst []byte, r *rtu.Request) []byte {
	dst = append(dst, r.Function, byte(r.Address>>8), byte(r.Address))
	switch r.Function {
	case rtu.WriteSingleCoil, rtu.WriteSingleRegister:
		dst = append(dst, r.Data...)
	case rtu.WriteMultipleCoils, rtu.WriteMultipleRegisters:
		dst = append(dst, byte(r.Quantity>>8), byte(r.Quantity), byte(len(r.Data)))
		dst = append(dst, r.Data...)
	default:
		dst = append(dst, byte(r.Quantity>>8), byte(r.Quantity))
	}
	return dst
}

// appendResponsePDU appends the PDU of a normal response to r; payload is
// the data of a read (registers big-endian or packed bits).
func appendResponsePDU(dst []byte, r *rtu.Request, payload []byte) []byte {
	switch r.Function {
	case rtu.WriteSingleCoil, rtu.WriteSingleRegister:
		return appendRequestPDU(dst, r) // the echo
	case rtu.WriteMultipleCoils, rtu.WriteMultipleRegisters:
		return append(dst, r.Function, byte(r.Address>>8), byte(r.Address), byte(r.Quantity>>8), byte(r.Quantity))
	}
	if len(payload) > 255 {
		payload = payload[:255]
	}
	dst = append(dst, r.Function, byte(len(payload)))
	return append(dst, payload...)
}

// appendExceptionPDU appends the PDU of an exception response to r.
func appendExceptionPDU(dst []byte, r *rtu.Request, code uint8) []byte {
	return append(dst, r.Function|0x80, code)
}

// packBits packs bools LSB first into dst (reusing its storage), as Modbus
// carries coils and discrete inputs.
func packBits(dst []byte, bits []bool) []byte {
	return rtu.PackBits(dst[:0], bits)
}

// unpackBits expands n packed bits (LSB first) into dst, reusing its storage.
func unpackBits(dst []bool, packed []byte, n int) []bool {
	dst = dst[:0]
	for i := 0; i < n; i++ {
		dst = append(dst, rtu.Bit(packed, i))
	}
	return dst
}

// registers converts big-endian register bytes into dst, reusing its storage.
func registers(dst []uint16, data []byte) []uint16 {
	dst = dst[:0]
	for i := 0; i+1 < len(data); i += 2 {
		dst = append(dst, uint16(data[i])<<8|uint16(data[i+1]))
	}
	return dst
}
