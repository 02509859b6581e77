package fleet

import (
	"encoding/binary"
	"errors"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// frozen sets the map's clock to start+at.
func frozen(m *RegisterMap, at time.Duration) {
	m.now = func() time.Time { return m.start.Add(at) }
}

func readRegs(t *testing.T, m *RegisterMap, a Area, addr, qty uint16) []uint16 {
	t.Helper()
	b, err := m.Registers(a, addr, qty, nil)
	if err != nil {
		t.Fatalf("read %s %d+%d: %v", a, addr, qty, err)
	}
	out := make([]uint16, qty)
	for i := range out {
		out[i] = binary.BigEndian.Uint16(b[2*i:])
	}
	return out
}

func TestDefaultMap(t *testing.T) {
	m := DefaultMap()
	if s := m.Slaves(); len(s) != 1 || s[0] != 1 {
		t.Fatalf("slaves %v", s)
	}
	// Fill: address mod 100 where no point is defined.
	for _, a := range []uint16{2009, 2050, 2099, 2210, 2214} {
		if v, ok := m.Register(HoldingRegisters, a); !ok || v != a%100 {
			t.Errorf("holding %d = %d, %v", a, v, ok)
		}
	}
	for _, a := range []uint16{1999, 2100, 2199, 2215} {
		if _, ok := m.Register(HoldingRegisters, a); ok {
			t.Errorf("holding %d exists", a)
		}
	}
	if _, err := m.Registers(HoldingRegisters, 2000, 100, nil); err != nil {
		t.Fatalf("read 2000+100: %v", err)
	}
	if _, err := m.Registers(HoldingRegisters, 2000, 101, nil); !errors.Is(err, ErrNoAddress) {
		t.Fatalf("read 2000+101: %v", err)
	}

	// Voltage ×10 crosses 2500 up and down over a minute; current stays within 0..1000.
	var above, below bool
	for s := range 60 {
		frozen(m, time.Duration(s)*time.Second)
		v := readRegs(t, m, HoldingRegisters, 2000, 12)
		volt, cur := int16(v[0]), int16(v[1])
		if volt < 2150 || volt > 2550 || cur < 0 || cur > 1000 {
			t.Fatalf("t=%ds voltage %d current %d", s, volt, cur)
		}
		above = above || volt > 2500
		below = below || volt < 2500
		p := math.Float32frombits(uint32(v[2])<<16 | uint32(v[3]))
		if p < 0 || p > 250 {
			t.Fatalf("t=%ds power %g", s, p)
		}
		if v[4] < 4980 || v[4] > 5020 {
			t.Fatalf("t=%ds frequency %d", s, v[4])
		}
		if e := uint32(v[10])<<16 | uint32(v[11]); e != 1000000+uint32(25*s) {
			t.Fatalf("t=%ds energy %d", s, e)
		}
	}
	if !above || !below {
		t.Fatal("voltage does not cross 2500 both ways")
	}
	if st := readRegs(t, m, HoldingRegisters, 2200, 4); st[0] != 1 || st[1] != 5 || st[2] != 412 || st[3] != 230 {
		t.Fatalf("status %v", st)
	}
	frozen(m, 0)
	if on, _ := m.Bit(DiscreteInputs, 0); !on {
		t.Fatal("discrete 0 off at t=0")
	}
	frozen(m, 15*time.Second)
	if on, _ := m.Bit(DiscreteInputs, 0); on {
		t.Fatal("discrete 0 on at t=15s")
	}
}

func TestGeneratorEncoding(t *testing.T) {
	m := NewRegisterMap()
	frozen(m, 10*time.Second)
	set := func(addr uint16, g Generator) {
		t.Helper()
		if err := m.SetGenerator(HoldingRegisters, addr, g); err != nil {
			t.Fatal(err)
		}
	}
	set(0, Generator{Type: Int16, Value: -2})
	set(1, Generator{Type: Uint16, Value: 70000}) // clamped
	set(2, Generator{Type: Int32, Value: -2, Order: CDAB})
	set(4, Generator{Type: Float32, Value: 1.5}) // 0x3FC00000
	set(6, Generator{Type: Float32, Value: 1.5, Order: DCBA})
	set(8, Generator{Type: Uint32, Value: 0x01020304, Order: BADC})
	set(10, Generator{Type: Float64, Value: 1.5}) // 0x3FF8000000000000
	set(14, Generator{Type: Int64, Value: -1, Order: CDAB})
	set(18, Generator{Kind: Ramp, Type: Uint16, Value: 5, Rate: 2})
	set(19, Generator{Kind: Ramp, Type: Uint16, Value: 0, Rate: 3, Min: 0, Max: 25}) // 30 wraps to 5
	set(20, Generator{Kind: Sine, Type: Int16, Min: -100, Max: 100, Period: 40 * time.Second})
	set(21, Generator{Kind: Square, Type: Uint16, Min: 3, Max: 9, Period: 15 * time.Second})
	want := []uint16{
		0xFFFE, 0xFFFF, 0xFFFE, 0xFFFF, 0x3FC0, 0x0000, 0x0000, 0xC03F, 0x0201, 0x0403,
		0x3FF8, 0, 0, 0, 0xFFFF, 0xFFFF, 0xFFFF, 0xFFFF, 25, 5, 100, 3,
	}
	got := readRegs(t, m, HoldingRegisters, 0, uint16(len(want)))
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("register %d = %#04x, want %#04x", i, got[i], want[i])
		}
	}

	// Walk stays within bounds and moves.
	if err := m.SetGenerator(InputRegisters, 0, Generator{Kind: Walk, Type: Uint16, Value: 50, Min: 40, Max: 60, Step: 5, Every: time.Second}); err != nil {
		t.Fatal(err)
	}
	seen := map[uint16]bool{}
	for s := range 200 {
		frozen(m, time.Duration(s)*time.Second)
		v, _ := m.Register(InputRegisters, 0)
		if v < 40 || v > 60 {
			t.Fatalf("walk %d out of bounds", v)
		}
		seen[v] = true
	}
	if len(seen) < 3 {
		t.Fatalf("walk took only %d values", len(seen))
	}

	for _, bad := range []struct {
		a Area
		g Generator
	}{
		{HoldingRegisters, Generator{Type: Bool}},
		{Coils, Generator{Type: Uint16}},
		{HoldingRegisters, Generator{Kind: Sine, Min: 5, Max: 1}},
		{HoldingRegisters, Generator{Value: math.NaN()}},
		{HoldingRegisters, Generator{Kind: 9}},
	} {
		if err := m.SetGenerator(bad.a, 100, bad.g); err == nil {
			t.Errorf("%+v accepted", bad)
		}
	}
	if err := m.SetGenerator(HoldingRegisters, 65534, Generator{Type: Float32}); err != nil {
		t.Errorf("float32 at 65534: %v", err)
	}
	if err := m.SetGenerator(HoldingRegisters, 65535, Generator{Type: Float32}); err == nil {
		t.Error("float32 at 65535 accepted")
	}
}

func TestWriteFreezesGenerator(t *testing.T) {
	m := NewRegisterMap()
	frozen(m, 0)
	if err := m.SetGenerator(HoldingRegisters, 10, Generator{Kind: Ramp, Type: Uint32, Value: 0x10000, Rate: 1}); err != nil {
		t.Fatal(err)
	}
	if err := m.WriteRegisters(11, []byte{0x12, 0x34}); err != nil {
		t.Fatal(err)
	}
	frozen(m, time.Hour)
	if v := readRegs(t, m, HoldingRegisters, 10, 2); v[0] != 1 || v[1] != 0x1234 {
		t.Fatalf("after write %#x", v)
	}
	if err := m.WriteRegisters(12, []byte{0, 1}); !errors.Is(err, ErrNoAddress) {
		t.Fatalf("write outside: %v", err)
	}
	if err := m.WriteRegisters(10, []byte{0}); err == nil {
		t.Fatal("odd write accepted")
	}
	if err := m.WriteCoils(0, 1, []byte{1}); !errors.Is(err, ErrNoAddress) {
		t.Fatalf("coil outside: %v", err)
	}

	// Clones are independent.
	c := m.Clone()
	if err := c.WriteRegisters(10, []byte{0, 9}); err != nil {
		t.Fatal(err)
	}
	if v, _ := m.Register(HoldingRegisters, 10); v != 1 {
		t.Fatalf("clone write leaked: %d", v)
	}
}

func TestParseMapErrors(t *testing.T) {
	cases := map[string]string{
		"unknown key":   "[[point]]\naddress = 1\ncolour = 2\n",
		"bad area":      "[[fill]]\narea = \"eeprom\"\nfirst = 1\nlast = 2\n",
		"bad range":     "[[fill]]\nfirst = 5\nlast = 2\n",
		"big address":   "[[point]]\naddress = 70000\n",
		"no address":    "[[point]]\nvalue = 1\n",
		"bad type":      "[[point]]\naddress = 1\ntype = \"int128\"\n",
		"bad order":     "[[point]]\naddress = 1\ntype = \"float32\"\norder = \"XYZW\"\n",
		"bad gen":       "[[point]]\naddress = 1\ngen = \"noise\"\n",
		"bad duration":  "[[point]]\naddress = 1\ngen = \"sine\"\nperiod = \"soon\"\n",
		"bad slave":     "slaves = [0]\n",
		"syntax":        "[[point]\n",
		"bool register": "[[point]]\naddress = 1\ntype = \"bool\"\n",
	}
	for name, text := range cases {
		if _, err := ParseMap([]byte(text)); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func TestLoadMap(t *testing.T) {
	path := filepath.Join(t.TempDir(), "map.toml")
	text := `slaves = [3, 4]
[[fill]]
area = "coil"
first = 0
last = 7
value = 1
[[point]]
area = "input"
address = 10
type = "int32"
order = "CDAB"
value = -5
`
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	m, err := LoadMap(path)
	if err != nil {
		t.Fatal(err)
	}
	if s := m.Slaves(); len(s) != 2 || s[0] != 3 || s[1] != 4 {
		t.Fatalf("slaves %v", s)
	}
	if v := readRegs(t, m, InputRegisters, 10, 2); v[0] != 0xFFFB || v[1] != 0xFFFF {
		t.Fatalf("int32 CDAB %#x", v)
	}
	if b, err := m.Registers(Coils, 0, 8, nil); err != nil || b[0] != 0xFF {
		t.Fatalf("coils % X %v", b, err)
	}
	if _, err := LoadMap(filepath.Join(t.TempDir(), "missing.toml")); err == nil || !strings.Contains(err.Error(), "read register map") {
		t.Fatalf("missing file: %v", err)
	}
}

func BenchmarkRegisters100(b *testing.B) {
	m := DefaultMap()
	buf := make([]byte, 0, 256)
	b.ReportAllocs()
	for b.Loop() {
		var err error
		if buf, err = m.Registers(HoldingRegisters, 2000, 100, buf[:0]); err != nil {
			b.Fatal(err)
		}
	}
}
