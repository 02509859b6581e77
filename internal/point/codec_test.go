package point

import (
	"encoding/hex"
	"errors"
	"math"
	"math/rand/v2"
	"strconv"
	"strings"
	"testing"
)

func mustCodec(t testing.TB, typ, order string, bit int, scale, offset float64, decimals *int) Codec {
	t.Helper()
	c, err := NewCodec(typ, order, bit, scale, offset, decimals)
	if err != nil {
		t.Fatalf("NewCodec(%q, %q, %d, %v, %v): %v", typ, order, bit, scale, offset, err)
	}
	return c
}

func intp(i int) *int { return &i }

func unhex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(strings.ReplaceAll(s, " ", ""))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// wire arranges big-endian value bytes as the order name says: the letter
// at each wire position names the value byte found there.
func wire(canon []byte, order string) []byte {
	switch len(canon) {
	case 2:
		order = map[string]string{"ABCD": "AB", "CDAB": "AB", "BADC": "BA", "DCBA": "BA"}[order]
	case 8:
		if len(order) == 4 {
			order = map[string]string{"ABCD": "ABCDEFGH", "CDAB": "GHEFCDAB", "BADC": "BADCFEHG", "DCBA": "HGFEDCBA"}[order]
		}
	}
	out := make([]byte, len(canon))
	for i := range out {
		out[i] = canon[order[i]-'A']
	}
	return out
}

func TestParseType(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want Type
		regs int
	}{
		{"bool", Bool, 1}, {"int16", Int16, 1}, {"uint16", Uint16, 1}, {"", Uint16, 1},
		{"int32", Int32, 2}, {"UINT32", Uint32, 2}, {"float32", Float32, 2},
		{"int64", Int64, 4}, {"uint64", Uint64, 4}, {"Float64", Float64, 4},
	} {
		got, err := ParseType(tc.in)
		if err != nil || got != tc.want || got.Registers() != tc.regs {
			t.Errorf("ParseType(%q) = %v (%d regs), %v; want %v", tc.in, got, got.Registers(), err, tc.want)
		}
		if tc.in != "" && !strings.EqualFold(got.String(), tc.in) {
			t.Errorf("%v.String() = %q", got, got.String())
		}
	}
	for _, bad := range []string{"float", "int8", "uint16 ", "x"} {
		if _, err := ParseType(bad); err == nil {
			t.Errorf("ParseType(%q) accepted", bad)
		}
	}
	if Type(0).String() != "invalid" || Type(200).String() != "invalid" || Type(0).Registers() != 0 {
		t.Error("invalid type")
	}
}

func TestParseOrder(t *testing.T) {
	for _, tc := range []struct {
		in   string
		typ  Type
		want Order
		ok   bool
	}{
		{"ABCD", Int16, ABCD, true}, {"", Float32, ABCD, true}, {"cdab", Float32, CDAB, true},
		{"BADC", Uint16, BADC, true}, {"DCBA", Bool, DCBA, true},
		{"ABCDEFGH", Float64, ABCD, true}, {"GHEFCDAB", Int64, CDAB, true},
		{"BADCFEHG", Uint64, BADC, true}, {"HGFEDCBA", Float64, DCBA, true}, {"CDAB", Float64, CDAB, true},
		{"ABCDEFGH", Float32, 0, false}, {"HGFEDCBA", Int16, 0, false}, {"ABDC", Int32, 0, false},
		{"EFGHABCD", Float64, 0, false},
	} {
		got, err := ParseOrder(tc.in, tc.typ)
		if (err == nil) != tc.ok || (tc.ok && got != tc.want) {
			t.Errorf("ParseOrder(%q, %v) = %v, %v", tc.in, tc.typ, got, err)
		}
	}
}

func TestNewCodecErrors(t *testing.T) {
	for _, tc := range []struct {
		name          string
		typ, order    string
		bit           int
		scale, offset float64
		dec           *int
	}{
		{"bad type", "word", "", -1, 1, 0, nil},
		{"bad order", "int32", "XYZW", -1, 1, 0, nil},
		{"bit on int", "uint16", "", 3, 1, 0, nil},
		{"bit too big", "bool", "", 16, 1, 0, nil},
		{"bit negative", "bool", "", -2, 1, 0, nil},
		{"nan scale", "int16", "", -1, math.NaN(), 0, nil},
		{"inf offset", "int16", "", -1, 1, math.Inf(1), nil},
		{"decimals", "int16", "", -1, 1, 0, intp(16)},
		{"negative decimals", "int16", "", -1, 1, 0, intp(-1)},
	} {
		if _, err := NewCodec(tc.typ, tc.order, tc.bit, tc.scale, tc.offset, tc.dec); err == nil {
			t.Errorf("%s: accepted", tc.name)
		}
	}
	c := mustCodec(t, "int16", "", -1, 0, 0, nil)
	if c.Scale != 1 || c.Decimals != -1 {
		t.Errorf("defaults: %+v", c)
	}
}

var orders = []string{"ABCD", "CDAB", "BADC", "DCBA"}

func TestKnownVectors(t *testing.T) {
	// Wire bytes written out for float32 and float64 123.456.
	f32 := map[string]string{"ABCD": "42F6E979", "CDAB": "E97942F6", "BADC": "F64279E9", "DCBA": "79E9F642"}
	f64 := map[string]string{
		"ABCDEFGH": "405EDD2F1A9FBE77", "GHEFCDAB": "BE771A9FDD2F405E",
		"BADCFEHG": "5E402FDD9F1A77BE", "HGFEDCBA": "77BE9F1A2FDD5E40",
	}
	for o, h := range f32 {
		c := mustCodec(t, "float32", o, -1, 1, 0, nil)
		checkDecode(t, c, unhex(t, h), "123.456")
		checkEncode(t, c, 123.456, unhex(t, h))
	}
	for o, h := range f64 {
		for _, name := range []string{o, orders[mustOrder(t, o)]} {
			c := mustCodec(t, "float64", name, -1, 1, 0, nil)
			checkDecode(t, c, unhex(t, h), "123.456")
			checkEncode(t, c, 123.456, unhex(t, h))
		}
	}
}

func mustOrder(t *testing.T, s string) Order {
	o, err := ParseOrder(s, Float64)
	if err != nil {
		t.Fatal(err)
	}
	return o
}

func checkDecode(t *testing.T, c Codec, regs []byte, want string) {
	t.Helper()
	got, err := c.AppendRegisters([]byte("x="), regs)
	if err != nil || string(got) != "x="+want {
		t.Errorf("%s %s decode % X = %q, %v; want %q", c.Type, c.Order, regs, got, err, want)
	}
}

func checkEncode(t *testing.T, c Codec, v float64, want []byte) {
	t.Helper()
	got, err := c.EncodeRegisters([]byte{0xAA}, v)
	if err != nil || string(got) != string(append([]byte{0xAA}, want...)) {
		t.Errorf("%s %s encode %v = % X, %v; want AA % X", c.Type, c.Order, v, got, err, want)
	}
}

// TestAllTypesAllOrders decodes and encodes a value of every type in every order.
func TestAllTypesAllOrders(t *testing.T) {
	for _, tc := range []struct {
		typ   string
		canon string // big-endian value bytes
		text  string
	}{
		{"int16", "FFFE", "-2"},
		{"int16", "8000", "-32768"},
		{"int16", "7FFF", "32767"},
		{"uint16", "1234", "4660"},
		{"uint16", "FFFF", "65535"},
		{"int32", "F8A432EB", "-123456789"},
		{"int32", "12345678", "305419896"},
		{"uint32", "DEADBEEF", "3735928559"},
		{"float32", "42F6E979", "123.456"},
		{"float32", "C2F6E979", "-123.456"},
		{"float32", "3DCCCCCD", "0.1"},
		{"int64", "EEDDEF0B82167EEB", "-1234567890123456789"},
		{"int64", "8000000000000000", "-9223372036854775808"},
		{"int64", "7FFFFFFFFFFFFFFF", "9223372036854775807"},
		{"uint64", "FEDCBA9876543210", "18364758544493064720"},
		{"uint64", "FFFFFFFFFFFFFFFF", "18446744073709551615"},
		{"float64", "405EDD2F1A9FBE77", "123.456"},
		{"float64", "BFB999999999999A", "-0.1"},
	} {
		canon := unhex(t, tc.canon)
		for _, o := range orders {
			c := mustCodec(t, tc.typ, o, -1, 1, 0, nil)
			w := wire(canon, o)
			checkDecode(t, c, w, tc.text)
			v, _ := strconv.ParseFloat(tc.text, 64)
			if tc.typ != "int64" && tc.typ != "uint64" { // not exact in float64
				checkEncode(t, c, v, w)
			}
		}
	}
}

func TestScaleOffsetFormatting(t *testing.T) {
	for _, tc := range []struct {
		typ           string
		scale, offset float64
		dec           *int
		canon         string
		want          string
	}{
		{"uint16", 0.1, 0, nil, "089D", "220.5"}, // 2205
		{"uint16", 0.1, 0, nil, "0898", "220"},   // 2200 → "220.0" trimmed
		{"int16", 0.1, 0, nil, "F769", "-219.9"}, // -2199
		{"int16", 0.01, 0, nil, "FFFF", "-0.01"},
		{"int16", 0.25, 0, nil, "0003", "0.75"},
		{"int16", 0.1, 0, nil, "0000", "0"},
		{"int16", -0.1, 0, nil, "0000", "0"}, // negative zero
		{"int16", 0.1, -0.5, nil, "0005", "0"},
		{"int16", 0.1, 0.5, nil, "FFFB", "0"}, // -0.5+0.5
		{"uint16", 1, -40, nil, "0014", "-20"},
		{"uint16", 1, 0.5, nil, "0014", "20.5"},
		{"uint16", 10, 0, nil, "0014", "200"},
		{"uint16", 0.001, 0, nil, "FFFF", "65.535"},
		{"uint16", 0.1, 0, intp(0), "089D", "220"}, // 220.5 rounds to even → 220
		{"uint16", 0.1, 0, intp(0), "089E", "221"},
		{"uint16", 0.01, 0, intp(1), "089D", "22.1"},
		{"uint16", 0.01, 0, intp(3), "089D", "22.05"},
		{"uint32", 0.1, 0, nil, "FFFFFFFF", "429496729.5"},
		{"int32", 0.001, 0, nil, "F8A432EB", "-123456.789"},
		{"uint64", 0.5, 0, nil, "0000000000000003", "1.5"},
		{"int64", 0.5, 0, nil, "FFFFFFFFFFFFFFFD", "-1.5"},
		{"uint16", 1.0 / 3, 0, nil, "0003", "1"},
		{"uint16", 1.0 / 3, 0, nil, "0001", "0.333333333333333"},
		{"float32", 1, 0, nil, "80000000", "0"}, // float32 -0
		{"float32", 0.1, 0, nil, "42F6E979", "12.3456"},
		{"float32", 2, 1, nil, "3DCCCCCD", "1.2"},
		{"float32", 1, 0, intp(1), "42F6E979", "123.5"},
		{"float32", 1, 0, intp(0), "4B000001", "8388609"},
		{"float64", 0.1, 0, nil, "40A13A0000000000", "220.5"}, // 2205.0 * 0.1
		{"float64", 1, 0, nil, "8000000000000000", "0"},
		{"float64", 1, 0, intp(2), "405EDD2F1A9FBE77", "123.46"},
		{"float64", 1, 0, nil, "4415AF1D78B58C40", "100000000000000000000"},
	} {
		c := mustCodec(t, tc.typ, "", -1, tc.scale, tc.offset, tc.dec)
		checkDecode(t, c, unhex(t, tc.canon), tc.want)
	}
}

func TestNotFinite(t *testing.T) {
	for _, tc := range []struct{ typ, canon string }{
		{"float32", "7FC00000"}, {"float32", "7F800000"}, {"float32", "FF800000"},
		{"float64", "7FF8000000000001"}, {"float64", "7FF0000000000000"}, {"float64", "FFF0000000000000"},
	} {
		c := mustCodec(t, tc.typ, "", -1, 1, 0, nil)
		got, err := c.AppendRegisters([]byte("k"), unhex(t, tc.canon))
		if !errors.Is(err, ErrNotFinite) || string(got) != "k" {
			t.Errorf("%s %s: %q, %v", tc.typ, tc.canon, got, err)
		}
	}
	// Finite raw value overflowing when scaled.
	c := mustCodec(t, "float64", "", -1, 1e300, 0, nil)
	if _, err := c.AppendRegisters(nil, unhex(t, "7FEFFFFFFFFFFFFF")); !errors.Is(err, ErrNotFinite) {
		t.Errorf("overflow: %v", err)
	}
}

func TestLength(t *testing.T) {
	c := mustCodec(t, "float32", "", -1, 1, 0, nil)
	for _, n := range []int{0, 2, 3, 6, 8} {
		if _, err := c.AppendRegisters(nil, make([]byte, n)); !errors.Is(err, ErrLength) {
			t.Errorf("%d bytes: %v", n, err)
		}
	}
	if _, err := (Codec{}).AppendRegisters(nil, []byte{0, 0}); err == nil {
		t.Error("zero codec decoded")
	}
	if _, err := (Codec{}).EncodeRegisters(nil, 1); err == nil {
		t.Error("zero codec encoded")
	}
}

func TestBoolRegister(t *testing.T) {
	for _, tc := range []struct {
		order string
		bit   int
		regs  string
		want  string
	}{
		{"ABCD", -1, "0000", "0"}, {"ABCD", -1, "0100", "1"}, {"ABCD", -1, "0001", "1"},
		{"ABCD", 0, "0001", "1"}, {"ABCD", 0, "0100", "0"}, {"ABCD", 8, "0100", "1"},
		{"ABCD", 15, "8000", "1"}, {"ABCD", 15, "7FFF", "0"},
		{"BADC", 0, "0100", "1"}, {"BADC", 8, "0001", "1"}, {"DCBA", 15, "0080", "1"},
	} {
		c := mustCodec(t, "bool", tc.order, tc.bit, 10, 5, nil) // scale and offset ignored
		checkDecode(t, c, unhex(t, tc.regs), tc.want)
	}
}

func TestBoolEncode(t *testing.T) {
	c := mustCodec(t, "bool", "", -1, 1, 0, nil)
	checkEncode(t, c, 1, []byte{0, 1})
	checkEncode(t, c, 0, []byte{0, 0})
	checkEncode(t, mustCodec(t, "bool", "BADC", -1, 1, 0, nil), 1, []byte{1, 0})
	if _, err := c.EncodeRegisters(nil, 2); !errors.Is(err, ErrRange) {
		t.Errorf("bool 2: %v", err)
	}
	b := mustCodec(t, "bool", "", 3, 1, 0, nil)
	if _, err := b.EncodeRegisters(nil, 1); !errors.Is(err, ErrReadModifyWrite) {
		t.Errorf("bit encode: %v", err)
	}
	for _, tc := range []struct {
		order string
		bit   int
		reg   uint16
		on    bool
		want  uint16
	}{
		{"ABCD", 3, 0x0000, true, 0x0008},
		{"ABCD", 3, 0xFFFF, false, 0xFFF7},
		{"ABCD", 15, 0x0001, true, 0x8001},
		{"ABCD", 0, 0x0001, true, 0x0001},
		{"BADC", 0, 0x0000, true, 0x0100},
		{"BADC", 8, 0x1200, true, 0x1201},
		{"DCBA", 15, 0xFFFF, false, 0xFF7F},
		{"ABCD", -1, 0x1234, true, 0x0001},
		{"BADC", -1, 0x1234, true, 0x0100},
		{"ABCD", -1, 0x1234, false, 0x0000},
	} {
		c := mustCodec(t, "bool", tc.order, tc.bit, 1, 0, nil)
		if got := c.SetBit(tc.reg, tc.on); got != tc.want {
			t.Errorf("%s bit %d SetBit(%04X, %v) = %04X, want %04X", tc.order, tc.bit, tc.reg, tc.on, got, tc.want)
		}
		// The result reads back as the state set.
		got, _ := c.AppendRegisters(nil, []byte{byte(c.SetBit(tc.reg, tc.on) >> 8), byte(c.SetBit(tc.reg, tc.on))})
		if want := map[bool]string{true: "1", false: "0"}[tc.on]; string(got) != want {
			t.Errorf("%s bit %d reads back %q", tc.order, tc.bit, got)
		}
	}
}

func TestEncodeCoil(t *testing.T) {
	var c Codec
	for v, want := range map[float64]bool{0: false, 1: true} {
		if got, err := c.EncodeCoil(v); err != nil || got != want {
			t.Errorf("EncodeCoil(%v) = %v, %v", v, got, err)
		}
	}
	for _, v := range []float64{-1, 0.5, 2, math.NaN()} {
		if _, err := c.EncodeCoil(v); err == nil {
			t.Errorf("EncodeCoil(%v) accepted", v)
		}
	}
}

func TestAppendBits(t *testing.T) {
	var c Codec
	data := []byte{0b1010_0101, 0b0000_0001}
	want := "1010010110000000"
	for i := 0; i < 16; i++ {
		if got := string(c.AppendBits(nil, data, i)); got != want[i:i+1] {
			t.Errorf("bit %d = %q, want %q", i, got, want[i:i+1])
		}
	}
	for _, i := range []int{-1, 16, 1000} {
		if got := c.AppendBits([]byte("k"), data, i); string(got) != "k" {
			t.Errorf("bit %d out of range appended %q", i, got)
		}
	}
}

func TestEncodeScaled(t *testing.T) {
	for _, tc := range []struct {
		typ           string
		order         string
		scale, offset float64
		value         float64
		want          string
	}{
		{"uint16", "", 0.1, 0, 220.5, "089D"},
		{"uint16", "", 0.1, 0, 220.54, "089D"}, // rounds to nearest
		{"uint16", "", 0.1, 0, 220.56, "089E"},
		{"int16", "BADC", 0.1, 0, -215.1, "99F7"}, // -2151 = F799
		{"uint16", "", 1, -40, -20, "0014"},
		{"int32", "CDAB", 0.001, 0, -123456.789, "32EBF8A4"},
		{"float32", "", 0.1, 0, 12.3456, "42F6E979"},
		{"float64", "", 2, 0, 246.912, "405EDD2F1A9FBE77"},
		{"uint64", "", 1, 0, 1 << 63, "8000000000000000"},
		{"int64", "", 1, 0, -(1 << 63), "8000000000000000"},
	} {
		c := mustCodec(t, tc.typ, tc.order, -1, tc.scale, tc.offset, nil)
		checkEncode(t, c, tc.value, unhex(t, tc.want))
	}
}

func TestEncodeRange(t *testing.T) {
	for _, tc := range []struct {
		typ          string
		scale, off   float64
		value        float64
		wantInMesage string
	}{
		{"int16", 1, 0, 32768, "32768 outside -32768..32767 for int16"},
		{"int16", 1, 0, -32769, "-32769 outside -32768..32767"},
		{"uint16", 1, 0, -1, "-1 outside 0..65535"},
		{"uint16", 1, 0, 65535.5, "outside 0..65535"},
		{"uint16", 0.1, 0, 6553.6, "6553.6 outside 0..6553.5 for uint16 with scale 0.1 offset 0"},
		{"int16", -0.1, 0, 4000, "outside -3276.7..3276.8"},
		{"uint32", 1, 0, 1 << 32, "outside 0..4294967295"},
		{"int32", 1, 0, -(1 << 31) - 1, "outside -2147483648..2147483647"},
		{"int64", 1, 0, 1 << 63, "outside -9223372036854775808..9223372036854775807"},
		{"uint64", 1, 0, 1 << 64, "outside 0..18446744073709551615"},
		{"uint64", 1, 0, -0.6, "outside 0..18446744073709551615"},
		{"float32", 1, 0, 1e39, "outside -3.402823e+38..3.402823e+38"},
		{"float64", 1e-300, 0, 1e300, "outside"},
	} {
		c := mustCodec(t, tc.typ, "", -1, tc.scale, tc.off, nil)
		_, err := c.EncodeRegisters(nil, tc.value)
		if !errors.Is(err, ErrRange) || !strings.Contains(err.Error(), tc.wantInMesage) {
			t.Errorf("%s %v: %v; want %q", tc.typ, tc.value, err, tc.wantInMesage)
		}
	}
	c := mustCodec(t, "uint16", "", -1, 1, 0, nil)
	if _, err := c.EncodeRegisters(nil, math.Inf(1)); !errors.Is(err, ErrNotFinite) {
		t.Errorf("inf: %v", err)
	}
	if got, err := c.EncodeRegisters(nil, -0.4); err != nil || string(got) != "\x00\x00" {
		t.Errorf("-0.4 → % X, %v", got, err)
	}
}

// TestRoundTrip encodes random in-range values and decodes them back.
func TestRoundTrip(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	scales := []float64{1, 0.1, 0.01, 0.25, 10, -0.5, 0.001}
	offsets := []float64{0, -40, 0.5, 1000}
	types := []string{"int16", "uint16", "int32", "uint32", "float32", "int64", "uint64", "float64"}
	for i := 0; i < 20000; i++ {
		typ := types[r.IntN(len(types))]
		c := mustCodec(t, typ, orders[r.IntN(4)], -1, scales[r.IntN(len(scales))], offsets[r.IntN(len(offsets))], nil)
		var want float64
		switch c.Type {
		case Float32:
			want = float64(float32(r.NormFloat64()*1e4))*c.Scale + c.Offset
		case Float64:
			want = r.NormFloat64()*1e6*c.Scale + c.Offset
		default:
			lo, hi := intBounds(c.Type)
			if c.Type == Int64 || c.Type == Uint64 {
				lo, hi = max(lo, -1<<52), min(hi, 1<<52) // exact in float64
			}
			raw := math.Floor(lo + r.Float64()*(hi-lo))
			want = raw*c.Scale + c.Offset
		}
		regs, err := c.EncodeRegisters(nil, want)
		if err != nil {
			t.Fatalf("%+v encode %v: %v", c, want, err)
		}
		text, err := c.AppendRegisters(nil, regs)
		if err != nil {
			t.Fatalf("%+v decode % X: %v", c, regs, err)
		}
		got, err := strconv.ParseFloat(string(text), 64)
		if err != nil {
			t.Fatalf("%+v: %q not a number", c, text)
		}
		tol := 1e-12 * max(1, math.Abs(want))
		if c.Type == Float32 {
			tol = 1e-6 * max(1, math.Abs(want))
		} else if c.Type == Float64 {
			tol = 1e-13 * max(1, math.Abs(want))
		}
		if math.Abs(got-want) > tol {
			t.Fatalf("%s %s scale %v offset %v: %v → % X → %q", c.Type, c.Order, c.Scale, c.Offset, want, regs, text)
		}
	}
}

func TestDecimalsOf(t *testing.T) {
	for x, want := range map[float64]int{
		0: 0, 1: 0, 10: 0, 1e20: 0, 0.1: 1, 0.01: 2, 0.25: 2, 0.001: 3, 123.5: 1, -0.05: 2,
		1e-20: MaxDecimals, 1.0 / 3: MaxDecimals,
	} {
		if got := decimalsOf(x); got != want {
			t.Errorf("decimalsOf(%v) = %d, want %d", x, got, want)
		}
	}
}

func TestZeroScaleLiteral(t *testing.T) {
	// A Codec written as a literal, without NewCodec.
	c := Codec{Type: Uint16, Bit: -1, Decimals: -1}
	checkDecode(t, c, []byte{0x08, 0x9D}, "2205")
	c.Scale = 0.1
	checkDecode(t, c, []byte{0x08, 0x9D}, "220.5")
}
