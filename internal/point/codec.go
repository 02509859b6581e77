package point

import (
	"fmt"
	"math"
	"math/bits"
	"strconv"
)

// MaxDecimals is the largest number of digits after the decimal point a
// Codec writes (and accepts as Decimals).
const MaxDecimals = 15

// significant digits kept when a scaled value has no exact decimal form.
const (
	sigFloat32 = 7
	sigFloat64 = 15
)

// Codec decodes one point from Modbus data into a decimal string and encodes
// control values back. Build it with NewCodec; a Codec is a small value,
// safe to copy and to use from many goroutines.
type Codec struct {
	Type  Type
	Order Order
	// Bit is -1 for none, or 0..15: the bit of the register a Bool reads.
	// A Bool without a bit is 1 when its register is non-zero.
	Bit int
	// Scale and Offset map the raw value to value = raw*Scale + Offset.
	// A zero Scale means 1. Both are ignored for Bool.
	Scale, Offset float64
	// Decimals is the number of digits after the decimal point of scaled
	// values, or -1 for automatic (see AppendRegisters).
	Decimals int

	// autoDec is 1 + the decimals needed to write Scale and Offset exactly,
	// precomputed by NewCodec; 0 means not computed.
	autoDec uint8
}

// NewCodec builds the codec of a point from its template fields: type and
// order names (empty means uint16 and ABCD), bit (-1 for none; 0..15 only
// for bool), scale (0 means 1), offset and decimals (nil means automatic).
func NewCodec(typ, order string, bit int, scale, offset float64, decimals *int) (Codec, error) {
	t, err := ParseType(typ)
	if err != nil {
		return Codec{}, err
	}
	o, err := ParseOrder(order, t)
	if err != nil {
		return Codec{}, err
	}
	if bit < -1 || bit > 15 {
		return Codec{}, fmt.Errorf("bit %d out of range 0..15", bit)
	}
	if bit >= 0 && t != Bool {
		return Codec{}, fmt.Errorf("bit %d given for type %s: bits are only for type bool", bit, t)
	}
	if !finite(scale) {
		return Codec{}, fmt.Errorf("scale %v is not a finite number", scale)
	}
	if !finite(offset) {
		return Codec{}, fmt.Errorf("offset %v is not a finite number", offset)
	}
	if scale == 0 {
		scale = 1
	}
	d := -1
	if decimals != nil {
		d = *decimals
		if d < 0 || d > MaxDecimals {
			return Codec{}, fmt.Errorf("decimals %d out of range 0..%d", d, MaxDecimals)
		}
	}
	c := Codec{Type: t, Order: o, Bit: bit, Scale: scale, Offset: offset, Decimals: d}
	c.autoDec = uint8(autoDecimals(scale, offset) + 1)
	return c, nil
}

// scale returns the effective scale.
func (c Codec) scale() float64 {
	if c.Scale == 0 {
		return 1
	}
	return c.Scale
}

// identity reports whether the codec leaves raw values unchanged.
func (c Codec) identity() bool { return c.scale() == 1 && c.Offset == 0 }

// autoDecimals returns the automatic number of decimals for integer types.
func (c Codec) autoDecimals() int {
	if c.autoDec > 0 {
		return int(c.autoDec) - 1
	}
	return autoDecimals(c.scale(), c.Offset)
}

// AppendRegisters decodes regs, the register bytes of the point exactly as
// they arrive in a function 3 or 4 response (2 bytes per register, exactly
// Type.Registers()*2 bytes), and appends value*Scale+Offset to dst as a plain
// decimal string without exponent. It does not allocate when dst has room.
//
// Bool gives "0" or "1" (Scale and Offset are ignored). Integers with scale
// 1 and offset 0 are written exactly. Otherwise the value is computed in
// float64 and written with Decimals digits if set; when automatic, integer
// types get as many decimals as Scale and Offset need to be written exactly
// (scale 0.1 → 1, 0.25 → 2), float32 keeps its shortest form when unscaled and
// 7 significant digits when scaled, and float64 its shortest form when
// unscaled and 15 significant digits when scaled. Trailing zeros after the
// decimal point are removed, and negative zero is written "0". NaN and
// infinities give ErrNotFinite and append nothing.
func (c Codec) AppendRegisters(dst []byte, regs []byte) ([]byte, error) {
	n := c.Type.Registers()
	if n == 0 {
		return dst, fmt.Errorf("invalid point type %d", c.Type)
	}
	if len(regs) != 2*n {
		return dst, fmt.Errorf("%w: %s needs %d bytes, got %d", ErrLength, c.Type, 2*n, len(regs))
	}
	v := c.load(regs)
	var i int64
	var u uint64
	switch c.Type {
	case Bool:
		on := v != 0
		if c.Bit >= 0 {
			on = c.Bit <= 15 && v>>uint(c.Bit)&1 == 1
		}
		return appendBool(dst, on), nil
	case Int16:
		i = int64(int16(v))
	case Int32:
		i = int64(int32(v))
	case Int64:
		i = int64(v)
	case Uint16, Uint32, Uint64:
		u = v
	case Float32:
		f := float64(math.Float32frombits(uint32(v)))
		if !finite(f) {
			return dst, ErrNotFinite
		}
		if c.Decimals < 0 && c.identity() {
			return fixNegZero(strconv.AppendFloat(dst, f, 'f', -1, 32), len(dst)), nil
		}
		return c.appendScaled(dst, f*c.scale()+c.Offset, sigFloat32)
	case Float64:
		f := math.Float64frombits(v)
		if !finite(f) {
			return dst, ErrNotFinite
		}
		if c.Decimals < 0 && c.identity() {
			return fixNegZero(strconv.AppendFloat(dst, f, 'f', -1, 64), len(dst)), nil
		}
		return c.appendScaled(dst, f*c.scale()+c.Offset, sigFloat64)
	}
	if c.identity() {
		if c.Type.signed() {
			return strconv.AppendInt(dst, i, 10), nil
		}
		return strconv.AppendUint(dst, u, 10), nil
	}
	var x float64
	if c.Type.signed() {
		x = float64(i)
	} else {
		x = float64(u)
	}
	return c.appendScaled(dst, x*c.scale()+c.Offset, 0)
}

// appendScaled writes a scaled value. sig is the number of significant digits
// to keep for float types, or 0 for integer types (decimals from the scale).
func (c Codec) appendScaled(dst []byte, x float64, sig int) ([]byte, error) {
	if !finite(x) {
		return dst, ErrNotFinite
	}
	d := c.Decimals
	if d < 0 || d > MaxDecimals {
		if sig == 0 {
			d = c.autoDecimals()
			if math.Abs(x) >= pow10[sigFloat64-d] {
				d = min(d, sigDecimals(x, sigFloat64))
			}
		} else {
			d = sigDecimals(x, sig)
		}
	}
	return appendFixed(dst, x, d), nil
}

// AppendBits appends "0" or "1", the bit at index of a function 1 or 2
// response's packed data (least significant bit first). An index outside
// bits appends nothing; callers check indexes against the response length.
func (c Codec) AppendBits(dst []byte, bits []byte, index int) []byte {
	if index < 0 || index>>3 >= len(bits) {
		return dst
	}
	return appendBool(dst, bits[index>>3]>>(uint(index)&7)&1 == 1)
}

// EncodeRegisters appends the register bytes (big-endian per register, as
// sent in a function 6 or 16 request) that make the point read value:
// raw = (value-Offset)/Scale, rounded to the nearest integer for integer
// types, in the codec's byte order. A value the type cannot hold gives an
// error wrapping ErrRange. Bool takes 0 or 1 and ignores Scale and Offset;
// a Bool with a Bit gives ErrReadModifyWrite (see SetBit).
func (c Codec) EncodeRegisters(dst []byte, value float64) ([]byte, error) {
	if !finite(value) {
		return dst, fmt.Errorf("control value %v: %w", value, ErrNotFinite)
	}
	if !c.Type.valid() {
		return dst, fmt.Errorf("invalid point type %d", c.Type)
	}
	var v uint64
	switch c.Type {
	case Bool:
		if c.Bit >= 0 {
			return dst, fmt.Errorf("bit %d: %w", c.Bit, ErrReadModifyWrite)
		}
		on, err := c.EncodeCoil(value)
		if err != nil {
			return dst, err
		}
		if on {
			v = 1
		}
	case Float32:
		raw := (value - c.Offset) / c.scale()
		if !finite(raw) || math.Abs(raw) > math.MaxFloat32 {
			return dst, c.rangeError(value)
		}
		v = uint64(math.Float32bits(float32(raw)))
	case Float64:
		raw := (value - c.Offset) / c.scale()
		if !finite(raw) {
			return dst, c.rangeError(value)
		}
		v = math.Float64bits(raw)
	default:
		raw := math.Round((value - c.Offset) / c.scale())
		lo, hi := intBounds(c.Type)
		// hi is the first value beyond the range: 2^15, 2^16, ... 2^64.
		if !(raw >= lo && raw < hi) {
			return dst, c.rangeError(value)
		}
		if c.Type.signed() {
			v = uint64(int64(raw))
		} else {
			v = uint64(raw)
		}
	}
	return c.store(dst, v), nil
}

// SetBit returns reg, a register as read from the device (its two bytes
// taken big-endian), with the codec's Bit set or cleared, honouring the byte
// order. Without a Bit it returns the whole register as 1 or 0.
func (c Codec) SetBit(reg uint16, on bool) uint16 {
	swap := c.Order.byteSwap()
	if swap {
		reg = bits.ReverseBytes16(reg)
	}
	switch {
	case c.Bit < 0 || c.Bit > 15:
		reg = 0
		if on {
			reg = 1
		}
	case on:
		reg |= 1 << uint(c.Bit)
	default:
		reg &^= 1 << uint(c.Bit)
	}
	if swap {
		reg = bits.ReverseBytes16(reg)
	}
	return reg
}

// EncodeCoil converts a control value for a coil (or a bool register) to
// its state: 0 is off, 1 is on, anything else is an error.
func (c Codec) EncodeCoil(value float64) (bool, error) {
	switch value {
	case 0:
		return false, nil
	case 1:
		return true, nil
	}
	return false, fmt.Errorf("control value %v for a bool point: %w (want 0 or 1)", value, ErrRange)
}

// rangeError names the value and the range of values the codec can write.
func (c Codec) rangeError(value float64) error {
	var lo, hi float64
	switch c.Type {
	case Float32:
		lo, hi = -math.MaxFloat32, math.MaxFloat32
	case Float64:
		lo, hi = -math.MaxFloat64, math.MaxFloat64
	default:
		lo, hi = intBounds(c.Type)
		hi-- // inexact for 64-bit types; appendLimit writes their exact limits
	}
	lo, hi = lo*c.scale()+c.Offset, hi*c.scale()+c.Offset
	if lo > hi {
		lo, hi = hi, lo
	}
	var buf [96]byte
	b := strconv.AppendFloat(buf[:0], value, 'g', -1, 64)
	b = append(b, " outside "...)
	b = c.appendLimit(b, lo)
	b = append(b, ".."...)
	b = c.appendLimit(b, hi)
	return fmt.Errorf("control value %s for %s: %w", b, c.describe(), ErrRange)
}

func (c Codec) appendLimit(dst []byte, x float64) []byte {
	if c.Type.integer() && c.identity() {
		lo, hi := intBounds(c.Type)
		switch {
		case x == lo && c.Type.signed():
			return strconv.AppendInt(dst, int64(x), 10)
		case x >= hi-1 && c.Type == Int64:
			return strconv.AppendInt(dst, math.MaxInt64, 10)
		case x >= hi-1 && c.Type == Uint64:
			return strconv.AppendUint(dst, math.MaxUint64, 10)
		}
	}
	if c.Type.integer() {
		return appendFixed(dst, x, min(c.autoDecimals(), sigDecimals(x, sigFloat64)))
	}
	return strconv.AppendFloat(dst, x, 'g', 7, 64)
}

func (c Codec) describe() string {
	if c.identity() {
		return c.Type.String()
	}
	return fmt.Sprintf("%s with scale %g offset %g", c.Type, c.scale(), c.Offset)
}

// intBounds gives the smallest value of an integer type and the first value
// above its largest, both exact in float64.
func intBounds(t Type) (lo, hi float64) {
	switch t {
	case Int16:
		return math.MinInt16, 1 << 15
	case Uint16:
		return 0, 1 << 16
	case Int32:
		return math.MinInt32, 1 << 31
	case Uint32:
		return 0, 1 << 32
	case Int64:
		return math.MinInt64, 1 << 63
	case Uint64:
		return 0, 1 << 64
	}
	return 0, 0
}

// load reads the raw value from register bytes in the codec's order.
func (c Codec) load(regs []byte) uint64 {
	n := len(regs)
	last := n/2 - 1
	ws, bs := c.Order.wordSwap(), c.Order.byteSwap()
	var v uint64
	for i := 0; i < n; i++ {
		w, b := i>>1, i&1
		if ws {
			w = last - w
		}
		if bs {
			b ^= 1
		}
		v = v<<8 | uint64(regs[2*w+b])
	}
	return v
}

// store appends the raw value as register bytes in the codec's order.
func (c Codec) store(dst []byte, v uint64) []byte {
	n := 2 * c.Type.Registers()
	start := len(dst)
	for i := 0; i < n; i++ {
		dst = append(dst, 0)
	}
	last := n/2 - 1
	ws, bs := c.Order.wordSwap(), c.Order.byteSwap()
	for i := 0; i < n; i++ {
		w, b := i>>1, i&1
		if ws {
			w = last - w
		}
		if bs {
			b ^= 1
		}
		dst[start+2*w+b] = byte(v >> (8 * uint(n-1-i)))
	}
	return dst
}

func appendBool(dst []byte, on bool) []byte {
	if on {
		return append(dst, '1')
	}
	return append(dst, '0')
}

// appendFixed writes x with d decimals, trailing zeros removed, "-0" as "0".
func appendFixed(dst []byte, x float64, d int) []byte {
	start := len(dst)
	dst = strconv.AppendFloat(dst, x, 'f', d, 64)
	if d > 0 {
		end := len(dst)
		for end > start && dst[end-1] == '0' {
			end--
		}
		if end > start && dst[end-1] == '.' {
			end--
		}
		dst = dst[:end]
	}
	return fixNegZero(dst, start)
}

// fixNegZero turns a "-0" written at dst[start:] into "0".
func fixNegZero(dst []byte, start int) []byte {
	if len(dst)-start == 2 && dst[start] == '-' && dst[start+1] == '0' {
		dst[start] = '0'
		dst = dst[:start+1]
	}
	return dst
}

// sigDecimals is the number of decimals that keep sig significant digits of x.
func sigDecimals(x float64, sig int) int {
	a := math.Abs(x)
	if a == 0 {
		return 0
	}
	d := sig - 1 - int(math.Floor(math.Log10(a)))
	return max(0, min(d, MaxDecimals))
}

// autoDecimals is the number of decimals needed to write scale and offset
// exactly in their shortest decimal form, at most MaxDecimals.
func autoDecimals(scale, offset float64) int {
	return max(decimalsOf(scale), decimalsOf(offset))
}

// decimalsOf counts the digits after the point in x's shortest decimal form.
func decimalsOf(x float64) int {
	if x == 0 || !finite(x) {
		return 0
	}
	var buf [32]byte
	b := strconv.AppendFloat(buf[:0], x, 'e', -1, 64) // d.ddde±XX
	e := 0
	frac := 0
	for i := 0; i < len(b); i++ {
		if b[i] == '.' {
			j := i + 1
			for j < len(b) && b[j] != 'e' {
				j++
			}
			frac = j - i - 1
			i = j - 1
			continue
		}
		if b[i] == 'e' {
			neg := i+1 < len(b) && b[i+1] == '-'
			for _, ch := range b[i+2:] {
				e = 10*e + int(ch-'0')
			}
			if neg {
				e = -e
			}
			break
		}
	}
	return max(0, min(frac-e, MaxDecimals))
}

// pow10[i] is 10^i.
var pow10 = [...]float64{1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15}

func finite(x float64) bool { return !math.IsNaN(x) && !math.IsInf(x, 0) }
