package fleet

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"sync"
	"time"
)

// Area is one of the four Modbus data areas.
type Area uint8

// The Modbus data areas.
const (
	Coils            Area = iota // read by FC 1, written by FC 5 and 15
	DiscreteInputs               // read by FC 2
	HoldingRegisters             // read by FC 3, written by FC 6 and 16
	InputRegisters               // read by FC 4
	numAreas
)

var areaNames = [numAreas]string{"coil", "discrete", "holding", "input"}

// String names the area as the map file does.
func (a Area) String() string {
	if a < numAreas {
		return areaNames[a]
	}
	return fmt.Sprintf("area(%d)", uint8(a))
}

// IsBit reports whether the area holds bits (coils, discrete inputs) rather than registers.
func (a Area) IsBit() bool { return a == Coils || a == DiscreteInputs }

// ParseArea reads an area name: "holding" (also the empty string), "input", "coil" or "discrete".
func ParseArea(s string) (Area, error) {
	switch strings.ToLower(s) {
	case "", "holding", "holding_register", "holding_registers":
		return HoldingRegisters, nil
	case "input", "input_register", "input_registers":
		return InputRegisters, nil
	case "coil", "coils":
		return Coils, nil
	case "discrete", "discrete_input", "discrete_inputs":
		return DiscreteInputs, nil
	}
	return 0, fmt.Errorf("unknown area %q (holding, input, coil, discrete)", s)
}

// ValueType is how a generator's value is stored in registers.
type ValueType uint8

// Value types. The 32-bit types take two registers, the 64-bit types four;
// Bool is for the bit areas.
const (
	Uint16 ValueType = iota
	Int16
	Uint32
	Int32
	Float32
	Uint64
	Int64
	Float64
	Bool
)

var typeNames = [...]string{"uint16", "int16", "uint32", "int32", "float32", "uint64", "int64", "float64", "bool"}

// String names the type as the map file does.
func (t ValueType) String() string {
	if int(t) < len(typeNames) {
		return typeNames[t]
	}
	return fmt.Sprintf("type(%d)", uint8(t))
}

// Words is the number of registers (or bits, for Bool) the type takes.
func (t ValueType) Words() int {
	switch t {
	case Uint32, Int32, Float32:
		return 2
	case Uint64, Int64, Float64:
		return 4
	}
	return 1
}

// ParseValueType reads a type name; the empty string is uint16.
func ParseValueType(s string) (ValueType, error) {
	if s == "" {
		return Uint16, nil
	}
	for i, n := range typeNames {
		if strings.EqualFold(s, n) {
			return ValueType(i), nil
		}
	}
	return 0, fmt.Errorf("unknown type %q (%s)", s, strings.Join(typeNames[:], ", "))
}

// WordOrder is the byte and word order of multi-register values.
// The 4-letter names apply to 64-bit values too (ABCD = ABCDEFGH, CDAB =
// GHEFCDAB, BADC = BADCFEHG, DCBA = HGFEDCBA).
type WordOrder uint8

// Word orders: ABCD is big-endian, most significant register first.
const (
	ABCD WordOrder = iota // big-endian
	CDAB                  // registers reversed, bytes big-endian in each
	BADC                  // registers in order, bytes swapped in each
	DCBA                  // little-endian
)

// ParseWordOrder reads a word order name; the empty string is ABCD.
func ParseWordOrder(s string) (WordOrder, error) {
	switch strings.ToUpper(s) {
	case "", "ABCD", "ABCDEFGH":
		return ABCD, nil
	case "CDAB", "GHEFCDAB":
		return CDAB, nil
	case "BADC", "BADCFEHG":
		return BADC, nil
	case "DCBA", "HGFEDCBA":
		return DCBA, nil
	}
	return 0, fmt.Errorf("unknown word order %q (ABCD, CDAB, BADC, DCBA)", s)
}

// GenKind selects how a generator's value changes over time.
type GenKind uint8

// Generator kinds.
const (
	Const  GenKind = iota // Value
	Ramp                  // Value + Rate × elapsed seconds, wrapping from Max to Min when Max > Min
	Sine                  // between Min and Max with Period, shifted by Phase
	Walk                  // random walk from Value, ±Step every Every, kept within Min..Max when Max > Min
	Square                // Max for the first half of Period, Min for the second
)

var genNames = [...]string{"const", "ramp", "sine", "walk", "square"}

// String names the kind as the map file does.
func (k GenKind) String() string {
	if int(k) < len(genNames) {
		return genNames[k]
	}
	return fmt.Sprintf("gen(%d)", uint8(k))
}

// ParseGenKind reads a generator name; the empty string is const.
func ParseGenKind(s string) (GenKind, error) {
	if s == "" {
		return Const, nil
	}
	for i, n := range genNames {
		if strings.EqualFold(s, n) {
			return GenKind(i), nil
		}
	}
	return 0, fmt.Errorf("unknown generator %q (%s)", s, strings.Join(genNames[:], ", "))
}

// Generator produces a value that changes over time, stored at an address in
// Type.Words() consecutive registers (or one bit, for Bool: true when the
// value is at least 0.5). Values are raw register values: a voltage×10 sine
// between 2150 and 2550 is Min 2150, Max 2550. Integer types are rounded and
// clamped to their range.
type Generator struct {
	Kind   GenKind
	Type   ValueType
	Order  WordOrder
	Value  float64       // Const value; start of Ramp and Walk
	Min    float64       // Sine, Square and Walk lower bound; Ramp wraps to it
	Max    float64       // Sine, Square and Walk upper bound; Ramp wraps at it
	Period time.Duration // Sine and Square; default 60s
	Phase  time.Duration // shifts Sine and Square
	Rate   float64       // Ramp: change per second
	Step   float64       // Walk: largest change per step
	Every  time.Duration // Walk: time between steps; default 1s
}

func (g *Generator) normalize() error {
	if g.Kind > Square {
		return fmt.Errorf("unknown generator kind %d", g.Kind)
	}
	if g.Type > Bool {
		return fmt.Errorf("unknown value type %d", g.Type)
	}
	if g.Order > DCBA {
		return fmt.Errorf("unknown word order %d", g.Order)
	}
	if g.Period < 0 || g.Every < 0 {
		return errors.New("negative period or step interval")
	}
	if g.Period == 0 {
		g.Period = time.Minute
	}
	if g.Every == 0 {
		g.Every = time.Second
	}
	if g.Kind == Square && g.Min == g.Max {
		g.Min, g.Max = 0, 1
	}
	if g.Max < g.Min {
		return fmt.Errorf("max %g below min %g", g.Max, g.Min)
	}
	for _, v := range [...]float64{g.Value, g.Min, g.Max, g.Rate, g.Step} {
		if math.IsNaN(v) || math.IsInf(v, 0) {
			return errors.New("generator parameters must be finite")
		}
	}
	return nil
}

// ErrNoAddress is returned for reads or writes of an address the map does not
// hold; the simulator answers exception 2 (illegal data address).
var ErrNoAddress = errors.New("address not in register map")

// cell is one register or bit.
type cell struct {
	val  uint16 // static value (bits: 0 or 1)
	gen  int32  // 1 + index into RegisterMap.gens; 0 = static
	word uint8  // which register of the generator's value
	set  bool   // the address exists
}

const pageBits = 8

type page [1 << pageBits]cell

type genState struct {
	g     Generator
	addr  uint16
	area  Area
	cur   float64 // Walk: current value
	steps int64   // Walk: steps taken
}

// RegisterMap is the memory of a simulated slave: holding and input
// registers, coils and discrete inputs, each address static or driven by a
// Generator. It is safe for concurrent use: the responding goroutines of many
// devices may share one map; writes (FC 5/6/15/16 or the Set methods) change
// it for all of them, and a written address stops following its generator.
type RegisterMap struct {
	mu     sync.Mutex
	pages  [numAreas]map[uint16]*page
	gens   []genState
	slaves []uint8
	start  time.Time
	now    func() time.Time
}

// NewRegisterMap returns an empty map whose generators start now.
func NewRegisterMap() *RegisterMap {
	m := &RegisterMap{start: time.Now(), now: time.Now}
	for i := range m.pages {
		m.pages[i] = make(map[uint16]*page)
	}
	return m
}

// Clone returns an independent copy with the same values, generators and start time.
func (m *RegisterMap) Clone() *RegisterMap {
	m.mu.Lock()
	defer m.mu.Unlock()
	c := &RegisterMap{start: m.start, now: m.now, gens: append([]genState(nil), m.gens...), slaves: append([]uint8(nil), m.slaves...)}
	for a := range m.pages {
		c.pages[a] = make(map[uint16]*page, len(m.pages[a]))
		for k, p := range m.pages[a] {
			cp := *p
			c.pages[a][k] = &cp
		}
	}
	return c
}

// Slaves lists the slave ids the map file declared (nil if it named none).
func (m *RegisterMap) Slaves() []uint8 {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]uint8(nil), m.slaves...)
}

// cellAt returns the cell of an address, creating its page when create is set.
func (m *RegisterMap) cellAt(a Area, addr uint16, create bool) *cell {
	p := m.pages[a][addr>>pageBits]
	if p == nil {
		if !create {
			return nil
		}
		p = new(page)
		m.pages[a][addr>>pageBits] = p
	}
	return &p[addr&(1<<pageBits-1)]
}

// SetRegister makes a register (or, in a bit area, a bit: v != 0) static with value v.
func (m *RegisterMap) SetRegister(a Area, addr uint16, v uint16) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.setStatic(a, addr, v, m.now())
}

// SetBit makes a coil or discrete input static with value v.
func (m *RegisterMap) SetBit(a Area, addr uint16, v bool) {
	var u uint16
	if v {
		u = 1
	}
	m.SetRegister(a, addr, u)
}

// Fill makes each address first..last static with value(addr) (bits: non-zero is on).
func (m *RegisterMap) Fill(a Area, first, last uint16, value func(addr uint16) uint16) {
	m.mu.Lock()
	defer m.mu.Unlock()
	now := m.now()
	for addr := int(first); addr <= int(last); addr++ {
		m.setStatic(a, uint16(addr), value(uint16(addr)), now)
	}
}

// SetGenerator drives the Type.Words() addresses starting at addr with g.
func (m *RegisterMap) SetGenerator(a Area, addr uint16, g Generator) error {
	if a >= numAreas {
		return fmt.Errorf("unknown area %d", a)
	}
	if err := g.normalize(); err != nil {
		return fmt.Errorf("generator at %s %d: %w", a, addr, err)
	}
	if a.IsBit() != (g.Type == Bool) {
		return fmt.Errorf("generator at %s %d: type %s does not fit the area", a, addr, g.Type)
	}
	n := g.Type.Words()
	if int(addr)+n > 0x10000 {
		return fmt.Errorf("generator at %s %d: %d registers pass 65535", a, addr, n)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.gens = append(m.gens, genState{g: g, addr: addr, area: a, cur: g.Value})
	id := int32(len(m.gens))
	for i := range n {
		*m.cellAt(a, addr+uint16(i), true) = cell{gen: id, word: uint8(i), set: true}
	}
	return nil
}

// setStatic sets one address, freezing the rest of a generator it belonged to.
func (m *RegisterMap) setStatic(a Area, addr uint16, v uint16, now time.Time) {
	c := m.cellAt(a, addr, true)
	if c.gen != 0 {
		m.freeze(c.gen, now)
	}
	if a.IsBit() && v != 0 {
		v = 1
	}
	*c = cell{val: v, set: true}
}

// freeze turns the addresses still driven by generator id into static values.
func (m *RegisterMap) freeze(id int32, now time.Time) {
	gs := &m.gens[id-1]
	var words [4]uint16
	n := m.eval(gs, now, &words)
	for i := range n {
		if c := m.cellAt(gs.area, gs.addr+uint16(i), false); c != nil && c.gen == id {
			*c = cell{val: words[c.word], set: true}
		}
	}
}

// Registers appends the big-endian values of qty registers (or, in a bit
// area, qty bits packed LSB first) starting at addr to dst. Every address
// must exist, else ErrNoAddress.
func (m *RegisterMap) Registers(a Area, addr, qty uint16, dst []byte) ([]byte, error) {
	if a >= numAreas {
		return dst, fmt.Errorf("unknown area %d", a)
	}
	if int(addr)+int(qty) > 0x10000 {
		return dst, ErrNoAddress
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	now := m.now()
	var (
		p       *page
		pageNo  = -1
		lastGen int32
		words   [4]uint16
		bits    byte
	)
	for i := range int(qty) {
		ad := addr + uint16(i)
		if int(ad>>pageBits) != pageNo {
			pageNo = int(ad >> pageBits)
			p = m.pages[a][uint16(pageNo)]
		}
		if p == nil {
			return dst, ErrNoAddress
		}
		c := &p[ad&(1<<pageBits-1)]
		if !c.set {
			return dst, ErrNoAddress
		}
		v := c.val
		if c.gen != 0 {
			if c.gen != lastGen {
				m.eval(&m.gens[c.gen-1], now, &words)
				lastGen = c.gen
			}
			v = words[c.word]
		}
		if a.IsBit() {
			if v != 0 {
				bits |= 1 << (i % 8)
			}
			if i%8 == 7 || i == int(qty)-1 {
				dst = append(dst, bits)
				bits = 0
			}
			continue
		}
		dst = append(dst, byte(v>>8), byte(v))
	}
	return dst, nil
}

// Register returns one register (or bit, as 0 or 1) and whether it exists.
func (m *RegisterMap) Register(a Area, addr uint16) (uint16, bool) {
	var buf [2]byte
	b, err := m.Registers(a, addr, 1, buf[:0])
	if err != nil {
		return 0, false
	}
	if a.IsBit() {
		return uint16(b[0] & 1), true
	}
	return uint16(b[0])<<8 | uint16(b[1]), true
}

// Bit returns one coil or discrete input and whether it exists.
func (m *RegisterMap) Bit(a Area, addr uint16) (v, ok bool) {
	u, ok := m.Register(a, addr)
	return u != 0, ok
}

// WriteRegisters stores big-endian register values at addr in the holding
// registers, as FC 6 and 16 do. Nothing is written unless every address exists.
func (m *RegisterMap) WriteRegisters(addr uint16, data []byte) error {
	if len(data)%2 != 0 {
		return fmt.Errorf("odd register data length %d", len(data))
	}
	return m.write(HoldingRegisters, addr, len(data)/2, func(i int) uint16 {
		return uint16(data[2*i])<<8 | uint16(data[2*i+1])
	})
}

// WriteCoils stores qty coils packed LSB first at addr, as FC 5 and 15 do.
// Nothing is written unless every address exists.
func (m *RegisterMap) WriteCoils(addr, qty uint16, packed []byte) error {
	if (int(qty)+7)/8 > len(packed) {
		return fmt.Errorf("%d coils need %d bytes, have %d", qty, (int(qty)+7)/8, len(packed))
	}
	return m.write(Coils, addr, int(qty), func(i int) uint16 {
		return uint16(packed[i/8]>>(i%8)) & 1
	})
}

func (m *RegisterMap) write(a Area, addr uint16, n int, value func(i int) uint16) error {
	if int(addr)+n > 0x10000 {
		return ErrNoAddress
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	for i := range n {
		if c := m.cellAt(a, addr+uint16(i), false); c == nil || !c.set {
			return ErrNoAddress
		}
	}
	now := m.now()
	for i := range n {
		m.setStatic(a, addr+uint16(i), value(i), now)
	}
	return nil
}

// eval computes a generator's registers at now into words and returns how many it has.
// The caller holds m.mu (Walk keeps state).
func (m *RegisterMap) eval(gs *genState, now time.Time, words *[4]uint16) int {
	g := &gs.g
	el := now.Sub(m.start)
	sec := el.Seconds()
	var v float64
	switch g.Kind {
	case Const:
		v = g.Value
	case Ramp:
		v = g.Value + g.Rate*sec
		if span := g.Max - g.Min; span > 0 {
			v = g.Min + math.Mod(math.Mod(v-g.Min, span)+span, span)
		}
	case Sine:
		x := float64((el+g.Phase)%g.Period) / float64(g.Period)
		v = (g.Min+g.Max)/2 + (g.Max-g.Min)/2*math.Sin(2*math.Pi*x)
	case Square:
		ph := (el + g.Phase) % g.Period
		if ph < 0 {
			ph += g.Period
		}
		v = g.Min
		if ph < g.Period/2 {
			v = g.Max
		}
	case Walk:
		steps := int64(el / g.Every)
		if d := steps - gs.steps; d > 0 {
			for range min(d, 1000) {
				gs.cur += (rand.Float64()*2 - 1) * g.Step
				if g.Max > g.Min {
					gs.cur = math.Min(math.Max(gs.cur, g.Min), g.Max)
				}
			}
			gs.steps = steps
		}
		v = gs.cur
	}
	return encode(g.Type, g.Order, v, words)
}

// encode stores v as type t in word order o.
func encode(t ValueType, o WordOrder, v float64, words *[4]uint16) int {
	var bits uint64
	switch t {
	case Bool:
		if v >= 0.5 {
			bits = 1
		}
	case Uint16:
		bits = uint64(clampRound(v, 0, math.MaxUint16))
	case Int16:
		bits = uint64(uint16(int16(clampRound(v, math.MinInt16, math.MaxInt16))))
	case Uint32:
		bits = uint64(clampRound(v, 0, math.MaxUint32))
	case Int32:
		bits = uint64(uint32(int32(clampRound(v, math.MinInt32, math.MaxInt32))))
	case Float32:
		bits = uint64(math.Float32bits(float32(v)))
	case Uint64:
		switch r := math.Round(v); {
		case r <= 0:
			bits = 0
		case r >= 1<<64:
			bits = math.MaxUint64
		default:
			bits = uint64(r)
		}
	case Int64:
		switch r := math.Round(v); {
		case r <= math.MinInt64:
			bits = 1 << 63
		case r >= 1<<63:
			bits = math.MaxInt64
		default:
			bits = uint64(int64(r))
		}
	case Float64:
		bits = math.Float64bits(v)
	}
	n := t.Words()
	for i := range n {
		words[i] = uint16(bits >> (16 * (n - 1 - i)))
	}
	if o == BADC || o == DCBA {
		for i := range n {
			words[i] = words[i]<<8 | words[i]>>8
		}
	}
	if o == CDAB || o == DCBA {
		for i, j := 0, n-1; i < j; i, j = i+1, j-1 {
			words[i], words[j] = words[j], words[i]
		}
	}
	return n
}

// clampRound rounds v and clamps it to lo..hi, which fit in int64.
func clampRound(v, lo, hi float64) int64 {
	return int64(math.Min(math.Max(math.Round(v), lo), hi))
}
