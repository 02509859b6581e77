package point

import (
	"bytes"
	"math"
	"strconv"
	"testing"
)

func FuzzAppendRegisters(f *testing.F) {
	f.Add(uint8(6), uint8(0), int8(-1), 1.0, 0.0, int8(-1), []byte{0x42, 0xF6, 0xE9, 0x79}, 3)
	f.Add(uint8(3), uint8(2), int8(-1), 0.1, 0.0, int8(-1), []byte{0x08, 0x9D}, 0)
	f.Add(uint8(2), uint8(1), int8(-1), -0.01, 40.0, int8(2), []byte{0xFF, 0xFF}, 0)
	f.Add(uint8(1), uint8(3), int8(7), 1.0, 0.0, int8(-1), []byte{0x80, 0x00}, 9)
	f.Add(uint8(9), uint8(3), int8(-1), 1e300, -1e300, int8(-1), []byte{0x7F, 0xEF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF}, 0)
	f.Add(uint8(7), uint8(1), int8(-1), 1.0/3, 0.0, int8(15), []byte{0x80, 0, 0, 0, 0, 0, 0, 0}, 0)
	f.Add(uint8(8), uint8(0), int8(-1), 1e-300, 0.0, int8(-1), []byte{0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF}, 0)
	f.Fuzz(func(t *testing.T, typ, order uint8, bit int8, scale, offset float64, dec int8, regs []byte, index int) {
		var decimals *int
		if dec >= 0 {
			d := int(dec)
			decimals = &d
		}
		c, err := NewCodec(Type(typ%10).String(), Order(order%4).String(), int(bit), scale, offset, decimals)
		if err != nil {
			return
		}
		if n := 2 * c.Type.Registers(); len(regs) > n {
			regs = regs[:n] // mostly exercise the full-length path
		}
		prefix := []byte("p")
		out, err := c.AppendRegisters(prefix, regs)
		if !bytes.HasPrefix(out, prefix) {
			t.Fatalf("prefix lost: %q", out)
		}
		text := string(out[1:])
		if err != nil {
			if text != "" {
				t.Fatalf("error %v but wrote %q", err, text)
			}
		} else {
			checkNumber(t, c, text)
			if c.Type == Bool && text != "0" && text != "1" {
				t.Fatalf("bool wrote %q", text)
			}
			// Integers up to 32 bits, unscaled, encode back to the same registers.
			if c.Type.integer() && c.Type.Registers() <= 2 && c.identity() {
				v, _ := strconv.ParseFloat(text, 64)
				back, err := c.EncodeRegisters(nil, v)
				if err != nil || !bytes.Equal(back, regs) {
					t.Fatalf("%s %s: % X → %q → % X, %v", c.Type, c.Order, regs, text, back, err)
				}
			}
			v, _ := strconv.ParseFloat(text, 64)
			_, _ = c.EncodeRegisters(nil, v)
		}
		bits := c.AppendBits(nil, regs, index)
		if s := string(bits); s != "" && s != "0" && s != "1" {
			t.Fatalf("bits wrote %q", s)
		}
		_ = c.SetBit(uint16(index), index&1 == 1)
		_, _ = c.EncodeCoil(scale)
		_, _ = c.EncodeRegisters(nil, scale*offset)
	})
}

func checkNumber(t *testing.T, c Codec, text string) {
	t.Helper()
	if text == "" || text == "-0" {
		t.Fatalf("%s: wrote %q", c.Type, text)
	}
	for i := 0; i < len(text); i++ {
		ch := text[i]
		if !(ch >= '0' && ch <= '9' || ch == '.' || ch == '-' && i == 0) {
			t.Fatalf("%s: %q is not a plain decimal", c.Type, text)
		}
	}
	if text[len(text)-1] == '.' || (bytes.IndexByte([]byte(text), '.') >= 0 && text[len(text)-1] == '0') {
		t.Fatalf("%s: %q has trailing zeros", c.Type, text)
	}
	v, err := strconv.ParseFloat(text, 64)
	if err != nil || math.IsNaN(v) || math.IsInf(v, 0) {
		t.Fatalf("%s: %q does not parse: %v", c.Type, text, err)
	}
}
