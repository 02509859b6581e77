// Package point turns Modbus register and bit data into the plain decimal
// strings VoltEdge stores in Redis, and control values back into registers.
//
// A Codec describes one point: its data type, the byte order of its
// registers, an optional bit, and the linear scaling value = raw*scale+offset.
// Decoding appends to a caller's buffer and does not allocate.
package point

import (
	"errors"
	"fmt"
	"strings"
)

// Type is the data type of a point.
type Type uint8

// Data types. The zero Type is invalid.
const (
	Bool Type = iota + 1
	Int16
	Uint16
	Int32
	Uint32
	Float32
	Int64
	Uint64
	Float64
)

// typeNames is indexed by Type.
var typeNames = [...]string{"invalid", "bool", "int16", "uint16", "int32", "uint32", "float32", "int64", "uint64", "float64"}

// Errors returned by the codec; match them with errors.Is.
var (
	// ErrNotFinite reports a NaN or infinite value, which is never stored.
	ErrNotFinite = errors.New("value is not finite")
	// ErrLength reports register data of the wrong length for the type.
	ErrLength = errors.New("wrong register data length")
	// ErrRange reports a control value outside what the type can hold.
	ErrRange = errors.New("value out of range")
	// ErrReadModifyWrite reports that a bit point cannot be written without
	// reading its register first; use SetBit.
	ErrReadModifyWrite = errors.New("bit point needs read-modify-write")
)

// ParseType parses a type name as written in templates (case-insensitive).
// The empty string means the default, uint16.
func ParseType(s string) (Type, error) {
	if s == "" {
		return Uint16, nil
	}
	for t := Bool; t <= Float64; t++ {
		if strings.EqualFold(s, typeNames[t]) {
			return t, nil
		}
	}
	return 0, fmt.Errorf("unknown point type %q (want bool, int16, uint16, int32, uint32, float32, int64, uint64 or float64)", s)
}

// String returns the type's name as written in templates.
func (t Type) String() string {
	if int(t) < len(typeNames) {
		return typeNames[t]
	}
	return typeNames[0]
}

// Registers is the number of 16-bit registers a value of the type occupies:
// 1 for bool and 16-bit types, 2 for 32-bit and 4 for 64-bit types (0 if invalid).
func (t Type) Registers() int {
	switch t {
	case Bool, Int16, Uint16:
		return 1
	case Int32, Uint32, Float32:
		return 2
	case Int64, Uint64, Float64:
		return 4
	}
	return 0
}

// valid reports whether t is one of the defined types.
func (t Type) valid() bool { return t >= Bool && t <= Float64 }

// integer reports whether t is an integer type.
func (t Type) integer() bool {
	switch t {
	case Int16, Uint16, Int32, Uint32, Int64, Uint64:
		return true
	}
	return false
}

// signed reports whether t is a signed integer type.
func (t Type) signed() bool { return t == Int16 || t == Int32 || t == Int64 }

// Order is the byte order of a point's registers, named after the big-endian
// value ABCD (or ABCDEFGH for 64-bit types).
type Order uint8

// Byte orders. For 16-bit types (and bool) BADC and DCBA mean the two bytes
// of the register are swapped; ABCD and CDAB mean they are not.
const (
	ABCD Order = iota // big-endian (ABCDEFGH)
	CDAB              // registers in reverse order, bytes big-endian within each (GHEFCDAB)
	BADC              // bytes swapped within each register, registers in big-endian order (BADCFEHG)
	DCBA              // fully little-endian (HGFEDCBA)
)

var orderNames = [...]string{"ABCD", "CDAB", "BADC", "DCBA"}
var orderNames64 = [...]string{"ABCDEFGH", "GHEFCDAB", "BADCFEHG", "HGFEDCBA"}

// ParseOrder parses a byte order name for type t (case-insensitive).
// ABCD, CDAB, BADC and DCBA are accepted for every type; the 64-bit names
// ABCDEFGH, GHEFCDAB, BADCFEHG and HGFEDCBA only for 64-bit types.
// The empty string means the default, ABCD.
func ParseOrder(s string, t Type) (Order, error) {
	if s == "" {
		return ABCD, nil
	}
	for i, n := range orderNames {
		if strings.EqualFold(s, n) {
			return Order(i), nil
		}
	}
	for i, n := range orderNames64 {
		if strings.EqualFold(s, n) {
			if t.Registers() != 4 {
				return 0, fmt.Errorf("byte order %q is only for 64-bit types, not %s", s, t)
			}
			return Order(i), nil
		}
	}
	return 0, fmt.Errorf("unknown byte order %q (want ABCD, CDAB, BADC or DCBA)", s)
}

// String returns the order's four-letter name.
func (o Order) String() string {
	if int(o) < len(orderNames) {
		return orderNames[o]
	}
	return "invalid"
}

// wordSwap reports whether the order reverses the register order.
func (o Order) wordSwap() bool { return o == CDAB || o == DCBA }

// byteSwap reports whether the order swaps the bytes within each register.
func (o Order) byteSwap() bool { return o == BADC || o == DCBA }
