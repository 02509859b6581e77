package fleet

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/BurntSushi/toml"
)

// DefaultMapTOML is the built-in register map, matching the demo device
// template: slave 1, holding registers 2000..2099 and 2200..2214 (each
// address holds its address mod 100 unless a point below drives it), coils
// and discrete inputs 0..31 and input registers 3000..3019 for tests of the
// other function codes. It doubles as an example of the -map file format.
const DefaultMapTOML = `# DTU simulator register map.
# slaves: the slave ids that answer (the -slaves flag overrides it).
slaves = [1]

# [[fill]]: static addresses first..last; value = address % mod when mod > 0, else value.
# area: holding (default), input, coil, discrete. Bits are on when the value is non-zero.
[[fill]]
area = "holding"
first = 2000
last = 2099
mod = 100

[[fill]]
area = "holding"
first = 2200
last = 2214
mod = 100

[[fill]]
area = "input"
first = 3000
last = 3019
mod = 100

[[fill]]
area = "coil"
first = 0
last = 31
value = 0

[[fill]]
area = "discrete"
first = 0
last = 31
mod = 2

# [[point]]: a value at an address, overriding fills.
# type: uint16 (default), int16, uint32, int32, float32, uint64, int64, float64, bool (bit areas).
# order: ABCD (default), CDAB, BADC, DCBA for 32/64-bit types.
# gen: const (value), ramp (value + rate/s, wraps at max to min when max > min),
#      sine (min..max over period, shifted by phase), walk (from value, ±step every "every", within min..max),
#      square (max for the first half of period, min for the second).
# Values are raw: voltage×10 between 215.0 and 255.0 V is min 2150, max 2550.

[[point]] # voltage ×10: crosses 2500 (250.0 V) up and down every minute
address = 2000
type = "int16"
gen = "sine"
min = 2150
max = 2550
period = "60s"

[[point]] # current ×10
address = 2001
type = "int16"
gen = "sine"
min = 0
max = 1000
period = "45s"

[[point]] # active power, kW
address = 2002
type = "float32"
order = "ABCD"
gen = "sine"
min = 0.0
max = 250.0
period = "60s"
phase = "5s"

[[point]] # frequency ×100
address = 2004
type = "uint16"
gen = "walk"
value = 5000
min = 4980
max = 5020
step = 2
every = "1s"

[[point]] # energy, Wh
address = 2010
type = "uint32"
gen = "ramp"
value = 1000000
rate = 25

[[point]] # power factor ×1000
address = 2005
type = "int16"
gen = "walk"
value = 960
min = 920
max = 990
step = 3
every = "2s"

[[point]] # phase voltages ×10, around 230 V
address = 2006
gen = "sine"
min = 2250
max = 2350
period = "90s"

[[point]]
address = 2007
gen = "sine"
min = 2250
max = 2350
period = "90s"
phase = "30s"

[[point]]
address = 2008
gen = "sine"
min = 2250
max = 2350
period = "90s"
phase = "60s"

[[point]] # reactive power, kvar
address = 2012
type = "float32"
gen = "sine"
min = 5.0
max = 60.0
period = "75s"

[[point]] # apparent power, kVA
address = 2014
type = "float32"
gen = "sine"
min = 10.0
max = 260.0
period = "60s"
phase = "5s"

[[point]] # reactive energy ×100, kvarh
address = 2016
type = "uint32"
gen = "ramp"
value = 4200000
rate = 3

[[point]] # cabinet temperature ×10, °C
address = 2018
type = "int16"
gen = "walk"
value = 350
min = 280
max = 450
step = 2
every = "3s"

[[point]] # setpoint ×10 (writable)
address = 2020
value = 500

[[point]] # switch: bit 0 (writable)
address = 2021
value = 1

[[point]] # run hours
address = 2030
type = "uint64"
gen = "ramp"
value = 12000
rate = 0.001

[[point]] # run state: 1 = running
address = 2200
value = 1

[[point]] # status bits: bit 0 ready, bit 2 remote
address = 2201
value = 0x0005

[[point]] # internal temperature ×10, °C
address = 2202
type = "int16"
value = 412

[[point]] # firmware version
address = 2203
value = 230

[[point]] # maximum demand, kW
address = 2204
type = "float32"
value = 180.5

[[point]] # discrete input 0 toggles every 10 s
area = "discrete"
address = 0
type = "bool"
gen = "square"
period = "20s"
`

// DefaultMap returns a new map built from DefaultMapTOML.
func DefaultMap() *RegisterMap {
	m, err := ParseMap([]byte(DefaultMapTOML))
	if err != nil {
		panic("fleet: built-in register map: " + err.Error())
	}
	return m
}

// LoadMap reads a register map file (see DefaultMapTOML for the format).
func LoadMap(path string) (*RegisterMap, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read register map: %w", err)
	}
	m, err := ParseMap(data)
	if err != nil {
		return nil, fmt.Errorf("register map %s: %w", path, err)
	}
	return m, nil
}

// duration is a TOML string such as "1.5s".
type duration struct{ time.Duration }

func (d *duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	if err != nil {
		return err
	}
	d.Duration = v
	return nil
}

type mapFile struct {
	Slaves []int       `toml:"slaves"`
	Fill   []fillSpec  `toml:"fill"`
	Point  []pointSpec `toml:"point"`
}

type fillSpec struct {
	Area  string `toml:"area"`
	First int    `toml:"first"`
	Last  int    `toml:"last"`
	Value int    `toml:"value"`
	Mod   int    `toml:"mod"`
}

type pointSpec struct {
	Area    string   `toml:"area"`
	Address *int     `toml:"address"`
	Type    string   `toml:"type"`
	Order   string   `toml:"order"`
	Gen     string   `toml:"gen"`
	Value   float64  `toml:"value"`
	Min     float64  `toml:"min"`
	Max     float64  `toml:"max"`
	Rate    float64  `toml:"rate"`
	Step    float64  `toml:"step"`
	Period  duration `toml:"period"`
	Phase   duration `toml:"phase"`
	Every   duration `toml:"every"`
}

// ParseMap builds a register map from the TOML text of a map file.
// Unknown keys are errors.
func ParseMap(data []byte) (*RegisterMap, error) {
	var f mapFile
	md, err := toml.NewDecoder(bytes.NewReader(data)).Decode(&f)
	if err != nil {
		return nil, fmt.Errorf("parse: %w", err)
	}
	if und := md.Undecoded(); len(und) > 0 {
		keys := make([]string, len(und))
		for i, k := range und {
			keys[i] = k.String()
		}
		return nil, fmt.Errorf("unknown keys: %s", strings.Join(keys, ", "))
	}
	m := NewRegisterMap()
	for _, s := range f.Slaves {
		if s < 1 || s > 247 {
			return nil, fmt.Errorf("slave %d out of range 1..247", s)
		}
		m.slaves = append(m.slaves, uint8(s))
	}
	for i, fs := range f.Fill {
		a, err := ParseArea(fs.Area)
		if err != nil {
			return nil, fmt.Errorf("fill %d: %w", i+1, err)
		}
		if fs.First < 0 || fs.Last > 0xFFFF || fs.First > fs.Last {
			return nil, fmt.Errorf("fill %d: bad range %d..%d", i+1, fs.First, fs.Last)
		}
		if fs.Mod < 0 || fs.Value < -0x8000 || fs.Value > 0xFFFF {
			return nil, fmt.Errorf("fill %d: value %d or mod %d out of range", i+1, fs.Value, fs.Mod)
		}
		mod, val := fs.Mod, uint16(fs.Value)
		m.Fill(a, uint16(fs.First), uint16(fs.Last), func(addr uint16) uint16 {
			if mod > 0 {
				return uint16(int(addr) % mod)
			}
			return val
		})
	}
	for i, ps := range f.Point {
		if err := addPoint(m, ps); err != nil {
			return nil, fmt.Errorf("point %d: %w", i+1, err)
		}
	}
	return m, nil
}

func addPoint(m *RegisterMap, ps pointSpec) error {
	if ps.Address == nil {
		return errors.New("address missing")
	}
	if *ps.Address < 0 || *ps.Address > 0xFFFF {
		return fmt.Errorf("address %d out of range", *ps.Address)
	}
	a, err := ParseArea(ps.Area)
	if err != nil {
		return err
	}
	g := Generator{Value: ps.Value, Min: ps.Min, Max: ps.Max, Rate: ps.Rate, Step: ps.Step,
		Period: ps.Period.Duration, Phase: ps.Phase.Duration, Every: ps.Every.Duration}
	if g.Kind, err = ParseGenKind(ps.Gen); err != nil {
		return err
	}
	if g.Order, err = ParseWordOrder(ps.Order); err != nil {
		return err
	}
	if ps.Type == "" && a.IsBit() {
		g.Type = Bool
	} else if g.Type, err = ParseValueType(ps.Type); err != nil {
		return err
	}
	return m.SetGenerator(a, uint16(*ps.Address), g)
}
