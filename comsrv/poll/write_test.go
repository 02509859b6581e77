package poll

import (
	"encoding/hex"
	"errors"
	"strconv"
	"strings"
	"testing"

	"github.com/voltedge/voltedge/internal/point"
	"github.com/voltedge/voltedge/internal/rtu"
)

// writeTemplate has a point of every type and order, scaled ones, bits,
// coils and the read-only areas, all planned.
const writeTemplate = `name = "w"
[[point]]
id = "u16"
address = 0
[[point]]
id = "i16"
address = 1
type = "int16"
[[point]]
id = "u16s"
address = 2
scale = 0.1
[[point]]
id = "i16o"
address = 3
type = "int16"
scale = 0.1
offset = -40
[[point]]
id = "u16dcba"
address = 4
order = "DCBA"
[[point]]
id = "i32"
address = 10
type = "int32"
[[point]]
id = "i32cdab"
address = 12
type = "int32"
order = "CDAB"
[[point]]
id = "u32badc"
address = 14
type = "uint32"
order = "BADC"
[[point]]
id = "f32dcba"
address = 16
type = "float32"
order = "DCBA"
[[point]]
id = "f32"
address = 18
type = "float32"
[[point]]
id = "f32s"
address = 20
type = "float32"
scale = 0.01
[[point]]
id = "i64"
address = 30
type = "int64"
[[point]]
id = "u64"
address = 34
type = "uint64"
order = "GHEFCDAB"
[[point]]
id = "f64"
address = 38
type = "float64"
order = "BADCFEHG"
[[point]]
id = "i64d"
address = 42
type = "int64"
order = "DCBA"
[[point]]
id = "u64s"
address = 46
type = "uint64"
scale = 0.5
[[point]]
id = "bit3"
address = 50
type = "bool"
bit = 3
[[point]]
id = "bit9badc"
address = 51
type = "bool"
bit = 9
order = "BADC"
[[point]]
id = "s7"
slave = 7
address = 60
type = "int32"
scale = 0.001
[[point]]
id = "coil"
area = "coil"
address = 5
type = "bool"
[[point]]
id = "in"
area = "input"
address = 0
[[point]]
id = "disc"
area = "discrete"
address = 0
type = "bool"
`

func writePlan(t testing.TB, multiple bool) *Plan {
	t.Helper()
	text := writeTemplate
	if multiple {
		text += "[plan]\nwrite_multiple = true\n"
	}
	return compileText(t, text, false)
}

// checkRequest checks that r is a request the RTU master accepts.
func checkRequest(t testing.TB, r rtu.Request) {
	t.Helper()
	if err := r.Validate(); err != nil {
		t.Fatalf("%+v: %v", r, err)
	}
	if _, err := rtu.AppendRequest(nil, r); err != nil {
		t.Fatalf("%+v: %v", r, err)
	}
}

func TestWriteRequests(t *testing.T) {
	p := writePlan(t, false)
	tests := []struct {
		point, value string
		slave, fn    uint8
		addr         uint16
		data         string // hex
	}{
		{"u16", "1234", 1, 6, 0, "04d2"},
		{"u16", "0", 1, 6, 0, "0000"},
		{"u16", "65535", 1, 6, 0, "ffff"},
		{"u16", "1.2e3", 1, 6, 0, "04b0"},
		{"u16", "-0", 1, 6, 0, "0000"},
		{"i16", "-2", 1, 6, 1, "fffe"},
		{"i16", "-32768", 1, 6, 1, "8000"},
		{"u16s", "220.5", 1, 6, 2, "089d"},
		{"u16s", "6553.5", 1, 6, 2, "ffff"},
		{"i16o", "-10", 1, 6, 3, "012c"},
		{"i16o", "-40", 1, 6, 3, "0000"},
		{"u16dcba", "258", 1, 6, 4, "0201"},
		{"i32", "-1", 1, 16, 10, "ffffffff"},
		{"i32", "305419896", 1, 16, 10, "12345678"},
		{"i32cdab", "305419896", 1, 16, 12, "56781234"},
		{"u32badc", "305419896", 1, 16, 14, "34127856"},
		{"f32dcba", "1.5", 1, 16, 16, "0000c03f"},
		{"f32", "220.5", 1, 16, 18, "435c8000"},
		{"f32", "-0.5", 1, 16, 18, "bf000000"},
		{"f32s", "1", 1, 16, 20, "42c80000"},
		{"i64", "-2", 1, 16, 30, "fffffffffffffffe"},
		{"i64", "9223372036854775807", 1, 16, 30, "7fffffffffffffff"},
		{"i64", "-9223372036854775808", 1, 16, 30, "8000000000000000"},
		{"i64", "1e3", 1, 16, 30, "00000000000003e8"},
		{"u64", "72623859790382856", 1, 16, 34, "0708050603040102"},
		{"u64", "18446744073709551615", 1, 16, 34, "ffffffffffffffff"},
		{"f64", "1", 1, 16, 38, "f03f000000000000"},
		{"i64d", "72623859790382856", 1, 16, 42, "0807060504030201"},
		{"u64s", "10.5", 1, 16, 46, "0000000000000015"},
		{"s7", "-1.5", 7, 16, 60, "fffffa24"},
		{"coil", "1", 1, 5, 5, "ff00"},
		{"coil", "0", 1, 5, 5, "0000"},
		{"coil", "1.0", 1, 5, 5, "ff00"},
	}
	for _, tc := range tests {
		w, err := p.Write(tc.point, tc.value)
		if err != nil {
			t.Errorf("Write(%s, %s): %v", tc.point, tc.value, err)
			continue
		}
		r := w.Req
		checkRequest(t, r)
		if w.ReadFirst || r.Slave != tc.slave || r.Function != tc.fn || r.Address != tc.addr || hex.EncodeToString(r.Data) != tc.data {
			t.Errorf("Write(%s, %s) = slave %d fc %d address %d data %x (read first %v), want slave %d fc %d address %d data %s",
				tc.point, tc.value, r.Slave, r.Function, r.Address, r.Data, w.ReadFirst, tc.slave, tc.fn, tc.addr, tc.data)
		}
		if want := uint16(len(tc.data) / 4); tc.fn == 16 && r.Quantity != want {
			t.Errorf("Write(%s, %s): quantity %d, want %d", tc.point, tc.value, r.Quantity, want)
		}
	}
}

func TestWriteMultiple(t *testing.T) {
	p := writePlan(t, true)
	for _, tc := range []struct {
		point, value string
		fn           uint8
		qty          uint16
		data         string
	}{
		{"u16", "1234", 16, 1, "04d2"},
		{"i32", "-1", 16, 2, "ffffffff"},
		{"coil", "1", 15, 1, "01"},
		{"coil", "0", 15, 1, "00"},
	} {
		w, err := p.Write(tc.point, tc.value)
		if err != nil {
			t.Fatalf("Write(%s, %s): %v", tc.point, tc.value, err)
		}
		checkRequest(t, w.Req)
		if w.Req.Function != tc.fn || w.Req.Quantity != tc.qty || hex.EncodeToString(w.Req.Data) != tc.data {
			t.Errorf("Write(%s, %s) = %+v", tc.point, tc.value, w.Req)
		}
	}
	w, err := p.Write("bit3", "1")
	if err != nil || !w.ReadFirst {
		t.Fatalf("bit: %+v %v", w, err)
	}
	r, err := w.Complete([]byte{0x12, 0x30})
	if err != nil {
		t.Fatal(err)
	}
	checkRequest(t, r)
	if r.Function != 16 || r.Quantity != 1 || r.Address != 50 || hex.EncodeToString(r.Data) != "1238" {
		t.Fatalf("bit write %+v", r)
	}
}

func TestWriteBitReadModifyWrite(t *testing.T) {
	p := writePlan(t, false)
	tests := []struct {
		point, value string
		read, want   string
	}{
		{"bit3", "1", "1230", "1238"},
		{"bit3", "1", "ffff", "ffff"},
		{"bit3", "0", "1238", "1230"},
		{"bit3", "0", "0000", "0000"},
		{"bit9badc", "1", "0000", "0002"}, // bytes swapped: bit 9 is bit 1 of the second byte
		{"bit9badc", "0", "ffff", "fffd"},
	}
	for _, tc := range tests {
		w, err := p.Write(tc.point, tc.value)
		if err != nil {
			t.Fatalf("Write(%s, %s): %v", tc.point, tc.value, err)
		}
		checkRequest(t, w.Req)
		if !w.ReadFirst || w.Req.Function != rtu.ReadHoldingRegisters || w.Req.Quantity != 1 || len(w.Req.Data) != 0 {
			t.Fatalf("Write(%s, %s) = %+v", tc.point, tc.value, w)
		}
		read, _ := hex.DecodeString(tc.read)
		r, err := w.Complete(read)
		if err != nil {
			t.Fatal(err)
		}
		checkRequest(t, r)
		if r.Function != rtu.WriteSingleRegister || r.Address != w.Req.Address || hex.EncodeToString(r.Data) != tc.want {
			t.Errorf("%s = %s on %s: %+v, want data %s", tc.point, tc.value, tc.read, r, tc.want)
		}
	}
	w, _ := p.Write("bit3", "1")
	if _, err := w.Complete([]byte{1, 2, 3}); err == nil || err.Error() != "read of register 50 returned 3 bytes, want 2" {
		t.Fatalf("short read: %v", err)
	}
	w, _ = p.Write("u16", "1")
	if _, err := w.Complete([]byte{1, 2}); err == nil {
		t.Fatal("Complete of a plain write succeeded")
	}
	if _, err := p.Write("bit3", "2"); !errors.Is(err, point.ErrRange) {
		t.Fatalf("bit = 2: %v", err)
	}
}

func TestWriteRefusals(t *testing.T) {
	p := writePlan(t, false)
	tests := []struct {
		point, value string
		want         string // the whole message, or its start when it ends in "…"
		isRange      bool
	}{
		{"in", "1", "point in is read-only (input area)", false},
		{"disc", "1", "point disc is read-only (discrete area)", false},
		{"nope", "1", `unknown point "nope": template w has no such point`, false},
		{"u16", "65536", "point u16: control value 65536 outside 0..65535 for uint16: value out of range", true},
		{"u16", "-1", "point u16: control value -1 outside 0..65535 for uint16: value out of range", true},
		{"i16", "32768", "point i16: control value 32768 outside -32768..32767 for int16: value out of range", true},
		{"u16s", "6553.6", "point u16s: control value 6553.6 outside 0..6553.5 for uint16 with scale 0.1 offset 0: value out of range", true},
		{"i16o", "-3316.9", "point i16o: control value -3316.9 outside -3316.8..3236.7 for int16 with scale 0.1 offset -40: value out of range", true},
		{"i32", "2147483648", "point i32: control value 2147483648 outside -2147483648..2147483647 for int32…", true},
		{"i64", "9223372036854775808", "point i64: control value …", true},
		{"i64", "-9223372036854775809", "point i64: control value -9223372036854775809 outside -9223372036854775808..9223372036854775807 for int64: value out of range", true},
		{"u64", "18446744073709551616", "point u64: control value …", true},
		{"u64", "-1", "point u64: control value -1 outside 0..18446744073709551615 for uint64: value out of range", true},
		{"u64s", "-1", "point u64s: control value -1 outside …", true},
		{"f32", "1e39", "point f32: control value 1e39 outside …", true},
		{"f64", "1e309", "point f64: control value 1e309 is beyond the range of a 64-bit float: value out of range", true},
		{"coil", "2", "point coil: control value 2 for a bool point: value out of range (want 0 or 1)", true},
		{"coil", "0.5", "point coil: control value 0.5 for a bool point…", true},
		{"u16", strings.Repeat("1", 65), "point u16: control value of 65 characters is too long (at most 64)", false},
	}
	for _, bad := range []string{"", "abc", "1.", ".5", "+1", "0x10", "NaN", "Infinity", "-Infinity", " 1", "1 ", "01", "1e", "1e+", "--1", "1_000", "true", "1,5", "٣"} {
		tests = append(tests, struct {
			point, value string
			want         string
			isRange      bool
		}{"u16", bad, "point u16: control value " + strconv.Quote(bad) + " is not a decimal number", false})
	}
	for _, tc := range tests {
		w, err := p.Write(tc.point, tc.value)
		if err == nil {
			t.Errorf("Write(%s, %q) = %+v, want an error", tc.point, tc.value, w.Req)
			continue
		}
		msg := err.Error()
		if prefix, ok := strings.CutSuffix(tc.want, "…"); ok {
			if !strings.HasPrefix(msg, prefix) {
				t.Errorf("Write(%s, %q): %q, want it to start with %q", tc.point, tc.value, msg, prefix)
			}
		} else if msg != tc.want {
			t.Errorf("Write(%s, %q): %q, want %q", tc.point, tc.value, msg, tc.want)
		}
		if errors.Is(err, point.ErrRange) != tc.isRange {
			t.Errorf("Write(%s, %q): errors.Is(ErrRange) = %v", tc.point, tc.value, !tc.isRange)
		}
	}
}

// image is a device's memory: holding registers and coils of one slave.
type image struct {
	regs  [128]uint16
	coils [64]bool
}

// apply executes a write request as a slave does, after a trip through the
// wire format.
func (m *image) apply(t *testing.T, r rtu.Request) {
	t.Helper()
	adu, err := rtu.AppendRequest(nil, r)
	if err != nil {
		t.Fatal(err)
	}
	r, n, err := rtu.ParseRequest(adu)
	if err != nil || n != len(adu) {
		t.Fatalf("slave cannot parse % x: %v", adu, err)
	}
	a := int(r.Address)
	switch r.Function {
	case rtu.WriteSingleCoil:
		m.coils[a] = r.Data[0] == 0xff
	case rtu.WriteMultipleCoils:
		for i := 0; i < int(r.Quantity); i++ {
			m.coils[a+i] = rtu.Bit(r.Data, i)
		}
	case rtu.WriteSingleRegister, rtu.WriteMultipleRegisters:
		for i := 0; 2*i+1 < len(r.Data); i++ {
			m.regs[a+i] = uint16(r.Data[2*i])<<8 | uint16(r.Data[2*i+1])
		}
	default:
		t.Fatalf("not a write: %+v", r)
	}
}

// read answers a read request from the image.
func (m *image) read(r rtu.Request) []byte {
	a, n := int(r.Address), int(r.Quantity)
	if r.Function == rtu.ReadCoils {
		return rtu.PackBits(nil, m.coils[a:a+n])
	}
	var out []byte
	for _, v := range m.regs[a : a+n] {
		out = append(out, byte(v>>8), byte(v))
	}
	return out
}

// readPoint polls the image with the plan's task for the point and decodes it.
func (m *image) readPoint(t *testing.T, p *Plan, id string) string {
	t.Helper()
	for i := range p.Tasks {
		task := &p.Tasks[i]
		out, _, bad := task.Decode(m.read(task.Req), nil, nil)
		if bad != 0 {
			t.Fatalf("task %s: %d decode errors", task.Name, bad)
		}
		for j := 0; j+1 < len(out); j += 2 {
			if out[j] == id {
				return out[j+1]
			}
		}
	}
	t.Fatalf("no task decodes %s", id)
	return ""
}

// The request Write builds, executed by a slave, makes the plan's decoder
// read the value back.
func TestWriteRoundTrip(t *testing.T) {
	tests := []struct{ point, value, want string }{
		{"u16", "0", ""}, {"u16", "65535", ""}, {"u16", "1.2e3", "1200"},
		{"i16", "-32768", ""}, {"i16", "32767", ""}, {"i16", "-1", ""},
		{"u16s", "220.5", ""}, {"u16s", "6553.5", ""}, {"u16s", "0.1", ""}, {"u16s", "220.50", "220.5"},
		{"i16o", "-10", ""}, {"i16o", "-3316.8", ""}, {"i16o", "3236.7", ""}, {"i16o", "25.3", ""},
		{"u16dcba", "258", ""},
		{"i32", "-2147483648", ""}, {"i32", "2147483647", ""},
		{"i32cdab", "-123456789", ""}, {"u32badc", "4294967295", ""}, {"u32badc", "305419896", ""},
		{"f32dcba", "1.5", ""}, {"f32", "220.5", ""}, {"f32", "-0.000125", ""}, {"f32", "3.4e38", "340000000000000000000000000000000000000"},
		{"f32s", "123.45", ""}, {"f32s", "-0.01", ""},
		{"i64", "-9223372036854775808", ""}, {"i64", "9223372036854775807", ""}, {"i64", "9007199254740993", ""},
		{"u64", "18446744073709551615", ""}, {"u64", "72623859790382856", ""},
		{"f64", "3.141592653589793", ""}, {"f64", "-1e-300", "-0." + strings.Repeat("0", 299) + "1"},
		{"i64d", "-42", ""}, {"u64s", "10.5", ""}, {"u64s", "0", ""},
		{"bit3", "1", ""}, {"bit3", "0", ""}, {"bit9badc", "1", ""}, {"bit9badc", "0", ""},
		{"coil", "1", ""}, {"coil", "0", ""},
	}
	for _, multiple := range []bool{false, true} {
		p := writePlan(t, multiple)
		var m image
		for i := range m.regs {
			m.regs[i] = uint16(0x5a5a + i) // bits next to the written ones must survive
		}
		for _, tc := range tests {
			w, err := p.Write(tc.point, tc.value)
			if err != nil {
				t.Fatalf("Write(%s, %s): %v", tc.point, tc.value, err)
			}
			r := w.Req
			if w.ReadFirst {
				if r, err = w.Complete(m.read(w.Req)); err != nil {
					t.Fatal(err)
				}
			}
			m.apply(t, r)
			want := tc.want
			if want == "" {
				want = tc.value
			}
			if got := m.readPoint(t, p, tc.point); got != want {
				t.Errorf("write_multiple %v: %s = %s reads back %s, want %s", multiple, tc.point, tc.value, got, want)
			}
		}
		// The other bits of the bit registers were kept.
		if m.regs[50]&^(1<<3) != uint16(0x5a5a+50)&^(1<<3) || m.regs[51]&^0x0002 != uint16(0x5a5a+51)&^0x0002 {
			t.Errorf("bit writes changed other bits: %04x %04x", m.regs[50], m.regs[51])
		}
	}
}

func TestWriteDemoTemplate(t *testing.T) {
	p := demoPlan(t)
	w, err := p.Write("40001", "50")
	if err != nil {
		t.Fatal(err)
	}
	if w.ReadFirst || w.Req.Function != rtu.WriteSingleRegister || w.Req.Address != 2020 || hex.EncodeToString(w.Req.Data) != "01f4" {
		t.Fatalf("setpoint: %+v", w)
	}
	if w, err = p.Write("30001", "1"); err != nil || !w.ReadFirst || w.Req.Address != 2021 {
		t.Fatalf("switch: %+v %v", w, err)
	}
}

func BenchmarkPlanWrite(b *testing.B) {
	p := writePlan(b, false)
	for _, bc := range []struct{ name, point, value string }{
		{"uint16_scaled", "u16s", "220.5"},
		{"float32", "f32", "-12.75"},
		{"int64", "i64", "9007199254740993"},
		{"coil", "coil", "1"},
		{"bit", "bit3", "1"},
	} {
		b.Run(bc.name, func(b *testing.B) {
			read := []byte{0x12, 0x30}
			b.ReportAllocs()
			for b.Loop() {
				w, err := p.Write(bc.point, bc.value)
				if err != nil {
					b.Fatal(err)
				}
				if w.ReadFirst {
					if _, err := w.Complete(read); err != nil {
						b.Fatal(err)
					}
				}
			}
		})
	}
}

// The demo setpoint has min = 0 and max = 500: values outside are refused
// before they are encoded, the bounds themselves are accepted.
func TestWriteMinMax(t *testing.T) {
	p := demoPlan(t)
	for _, v := range []string{"0", "500", "499.9"} {
		if _, err := p.Write("40001", v); err != nil {
			t.Fatalf("%s: %v", v, err)
		}
	}
	for _, v := range []string{"500.1", "-1", "6000"} {
		_, err := p.Write("40001", v)
		want := "point 40001: control value " + v + " outside the allowed 0..500: value out of range"
		if err == nil || err.Error() != want || !errors.Is(err, point.ErrRange) {
			t.Fatalf("%s: got %v, want %s", v, err, want)
		}
	}
}
