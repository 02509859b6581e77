package fleet

import (
	"cmp"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"slices"
	"strings"
	"time"

	"github.com/voltedge/voltedge/internal/rtu"
)

// Buffer sizes and waits of one device. The read buffer holds at least one
// maximal request frame (rtu.MaxFrameLen) and one maximal tlv frame
// (MaxTLVFrameLen); the write buffer one maximal response, its tlv header
// and a heartbeat.
const (
	readBufSize      = 512
	defaultDialWait  = 5 * time.Second
	defaultWriteWait = 10 * time.Second
	defaultSplitWait = 2 * time.Millisecond
)

// Profiles: the protocols a simulated DTU speaks on its socket.
const (
	// ProfileTransparent: a registration packet, heartbeat packets, and raw
	// Modbus RTU frames relayed to and from the slaves behind the DTU.
	ProfileTransparent = "transparent"
	// ProfileLine: the id as an ASCII line, resent as heartbeat; the server
	// sends lines ("command,device_id,data\n"), the device its own data lines.
	ProfileLine = "line"
	// ProfileTLV: a 4-byte big-endian id acknowledged by the byte 0x01, then
	// [type u8][len u8][payload] frames (see TLVHeartbeat and the others).
	ProfileTLV = "tlv"
)

// Defaults of the line and tlv profiles.
const (
	DefaultLineHeartbeat = 500 * time.Millisecond // heartbeat interval of a line device
	DefaultTLVHeartbeat  = 30 * time.Second       // heartbeat interval of a tlv device
	DefaultMaxLineLength = 4096                   // longest line a line device keeps, newline excluded
	DefaultAckTimeout    = 10 * time.Second       // how long a tlv device waits for the registration ack
	DefaultDataInterval  = time.Second            // interval of data lines and data frames
)

// DeviceConfig describes one simulated DTU and the RS-485 slaves behind it.
type DeviceConfig struct {
	// Addr is the comsrv DTU server, host:port.
	Addr string
	// Profile is the DTU protocol: ProfileTransparent (also ""), ProfileLine or ProfileTLV.
	Profile string
	// ID is the registration packet, sent alone as the first write, terminator
	// included. A line device sends it again as its heartbeat, so it should be
	// one line ("DEV001\n"). A tlv device may leave it empty: it then sends
	// TLVID as 4 bytes big-endian.
	ID []byte
	// TLVID is the registration id of a tlv device whose ID is empty.
	TLVID uint32
	// Heartbeat is what a transparent device sends every HeartbeatInterval;
	// empty or a zero interval disables it. Line and tlv devices ignore it:
	// they send their id line or a heartbeat frame.
	Heartbeat         []byte
	HeartbeatInterval time.Duration
	// FirstHeartbeat delays the first heartbeat after registration;
	// 0 picks a random delay within HeartbeatInterval so a fleet's heartbeats spread out.
	FirstHeartbeat time.Duration
	// NoHeartbeat disables the periodic heartbeats in every profile
	// (GlueHeartbeat still applies). Without it a line device with a zero
	// HeartbeatInterval uses DefaultLineHeartbeat and a tlv device DefaultTLVHeartbeat.
	NoHeartbeat bool
	// Slaves are the slave ids that answer (default 1). All share Map.
	Slaves []uint8
	// Map is the slaves' memory; it may be shared by many devices. Required
	// by the transparent and tlv profiles; line devices have no slaves.
	Map *RegisterMap
	// ResponseDelay is how long a slave takes to answer.
	ResponseDelay time.Duration
	// DropEvery leaves every Nth request unanswered (0: never), to test timeouts.
	DropEvery int
	// CorruptEvery sends every Nth response with a bad CRC (0: never).
	CorruptEvery int
	// GlueHeartbeat sends a heartbeat (a transparent device's Heartbeat, a tlv
	// device's heartbeat frame) in the same write as every response,
	// alternately before and after it.
	GlueHeartbeat bool
	// SplitWrites writes every response, data line and data frame in 2 or 3
	// pieces with SplitPause (default 2ms) between them.
	SplitWrites bool
	SplitPause  time.Duration
	// DialTimeout (default 5s) and WriteTimeout (default 10s) bound the connect and each write.
	DialTimeout  time.Duration
	WriteTimeout time.Duration

	// AckTimeout is how long a tlv device waits for the registration ack
	// (default DefaultAckTimeout); without it RunDevice fails.
	AckTimeout time.Duration
	// TLVBareAcks makes a tlv device read every heartbeat and data type byte
	// from the server as a bare one-byte ack from the start. Without it the
	// device tells bare acks from empty frames ("02 00") itself: a type byte
	// not followed by 0x00 is a bare ack, so the first one is counted only
	// when the next byte arrives; from then on all are taken as bare.
	TLVBareAcks bool
	// DataLines (line profile) are sent one per DataInterval, cycling, each
	// followed by "\n". They must not contain "\n".
	DataLines []string
	// DataFrames (tlv profile) are the payloads of the data frames (type
	// TLVData, at most 255 bytes each) sent one per DataInterval, cycling.
	DataFrames [][]byte
	// DataInterval is the time between data lines or frames, the first one
	// included (default DefaultDataInterval).
	DataInterval time.Duration
	// MaxLineLength bounds a line a line device receives (default
	// DefaultMaxLineLength bytes, newline excluded). Longer lines are cut to
	// it and counted in Stats.LinesTruncated; the rest up to the newline is dropped.
	MaxLineLength int
	// Lines, when set, records the lines a line device receives (a trailing
	// "\r" removed). Several devices may share one.
	Lines *LineLog
	// OnLine, when set, is called on the device's goroutine with every line
	// the device receives, after Lines recorded it. It must not block for long.
	OnLine func(line string)
	// LineReply, when set, returns the answer to a received line; a non-empty
	// answer is sent followed by "\n". By default a line device answers nothing.
	LineReply func(line string) string
}

// profile is the parsed Profile.
type profile uint8

const (
	transparent profile = iota
	lineProfile
	tlvProfile
)

func parseProfile(s string) (profile, error) {
	switch s {
	case "", ProfileTransparent:
		return transparent, nil
	case ProfileLine:
		return lineProfile, nil
	case ProfileTLV:
		return tlvProfile, nil
	}
	return 0, fmt.Errorf("device: unknown profile %q (transparent, line, tlv)", s)
}

func (c *DeviceConfig) check() error {
	if c.Addr == "" {
		return errors.New("device: no server address")
	}
	p, err := parseProfile(c.Profile)
	if err != nil {
		return err
	}
	if c.Map == nil && p != lineProfile {
		return errors.New("device: no register map")
	}
	if len(c.ID) == 0 && p != tlvProfile {
		return errors.New("device: empty registration packet")
	}
	if c.HeartbeatInterval < 0 || c.ResponseDelay < 0 || c.DropEvery < 0 || c.CorruptEvery < 0 ||
		c.AckTimeout < 0 || c.DataInterval < 0 || c.MaxLineLength < 0 || c.FirstHeartbeat < 0 {
		return errors.New("device: negative interval, delay, length or count")
	}
	for _, s := range c.Slaves {
		if s < 1 || s > 247 {
			return fmt.Errorf("device: slave id %d out of range 1..247", s)
		}
	}
	for i, l := range c.DataLines {
		if strings.ContainsRune(l, '\n') {
			return fmt.Errorf("device: data line %d contains a newline", i)
		}
	}
	for i, f := range c.DataFrames {
		if len(f) > maxTLVPayload {
			return fmt.Errorf("device: data frame %d has %d bytes, at most %d fit", i, len(f), maxTLVPayload)
		}
	}
	return nil
}

// device is the state of one connection.
type device struct {
	cfg      *DeviceConfig
	st       *Stats
	conn     net.Conn
	profile  profile
	slaves   [256 / 64]uint64 // bit set of answering slave ids
	requests int
	answers  int
	rbuf     []byte
	wbuf     []byte
	payload  []byte
	hb       []byte // the heartbeat packet
	tlvHB    [2]byte
	hbOn     bool
	nextHB   time.Time
	hbEvery  time.Duration
	dataOn   bool
	nextData time.Time
	dataIdx  int
	bareAcks bool   // tlv: the server acks with bare type bytes
	line     []byte // line profile: the line being received, at most maxLine bytes
	lineCut  bool   // the line being received was longer than maxLine
	maxLine  int
}

// RunDevice connects to cfg.Addr, sends the registration packet (a tlv
// device then waits for its ack), then answers what the server sends and
// sends heartbeats and data, all on the calling goroutine, until ctx is done
// (it then returns nil) or the connection fails (it returns why).
// Reconnecting is the caller's job. st may be nil.
func RunDevice(ctx context.Context, cfg DeviceConfig, st *Stats) error {
	if err := cfg.check(); err != nil {
		return err
	}
	if st == nil {
		st = new(Stats)
	}
	d := newDevice(&cfg, st, nil)
	dialer := net.Dialer{Timeout: orDefault(cfg.DialTimeout, defaultDialWait)}
	conn, err := dialer.DialContext(ctx, "tcp", cfg.Addr)
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		st.DialErrors.Add(1)
		return fmt.Errorf("connect: %w", err)
	}
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	d.conn = conn

	id := cfg.ID
	if len(id) == 0 { // tlv
		id = binary.BigEndian.AppendUint32(make([]byte, 0, 4), cfg.TLVID)
	}
	if err := d.write(id); err != nil {
		return d.ended(ctx, fmt.Errorf("send registration: %w", err))
	}
	st.Connects.Add(1)
	st.Connected.Add(1)
	defer st.Connected.Add(-1)

	n := 0
	if d.profile == tlvProfile {
		if n, err = d.awaitAck(); err != nil {
			return d.ended(ctx, err)
		}
	}
	d.startTimers(time.Now())
	return d.ended(ctx, d.serve(n))
}

// newDevice prepares the state of one connection over conn (set later when nil).
// cfg has been checked.
func newDevice(cfg *DeviceConfig, st *Stats, conn net.Conn) *device {
	p, _ := parseProfile(cfg.Profile)
	d := &device{
		cfg:     cfg,
		st:      st,
		conn:    conn,
		profile: p,
		rbuf:    make([]byte, readBufSize),
	}
	switch p {
	case transparent:
		d.hb = cfg.Heartbeat
		d.hbEvery = cfg.HeartbeatInterval
	case lineProfile:
		d.hb = cfg.ID
		d.hbEvery = cmp.Or(cfg.HeartbeatInterval, DefaultLineHeartbeat)
		d.maxLine = cmp.Or(cfg.MaxLineLength, DefaultMaxLineLength)
	case tlvProfile:
		d.tlvHB = [2]byte{TLVHeartbeat, 0}
		d.hb = d.tlvHB[:]
		d.bareAcks = cfg.TLVBareAcks
		d.hbEvery = cmp.Or(cfg.HeartbeatInterval, DefaultTLVHeartbeat)
	}
	if p != lineProfile {
		d.wbuf = make([]byte, 0, rtu.MaxFrameLen+2*tlvHeaderLen+len(d.hb))
		d.payload = make([]byte, 0, 256)
		slaves := cfg.Slaves
		if len(slaves) == 0 {
			slaves = []uint8{1}
		}
		for _, s := range slaves {
			d.slaves[s/64] |= 1 << (s % 64)
		}
	}
	return d
}

// startTimers schedules the first heartbeat and data packet after registration at now.
func (d *device) startTimers(now time.Time) {
	cfg := d.cfg
	if d.hbOn = !cfg.NoHeartbeat && len(d.hb) > 0 && d.hbEvery > 0; d.hbOn {
		first := cfg.FirstHeartbeat
		if first <= 0 {
			first = rand.N(d.hbEvery)
		}
		d.nextHB = now.Add(first)
	}
	switch d.profile {
	case lineProfile:
		d.dataOn = len(cfg.DataLines) > 0
	case tlvProfile:
		d.dataOn = len(cfg.DataFrames) > 0
	}
	if d.dataOn {
		d.nextData = now.Add(cmp.Or(cfg.DataInterval, DefaultDataInterval))
	}
}

// ended turns an error into nil when it was caused by ctx ending.
func (d *device) ended(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return nil
	}
	return err
}

func orDefault(v, def time.Duration) time.Duration {
	if v > 0 {
		return v
	}
	return def
}

// serve handles the n bytes already in rbuf, then reads what the server
// sends and sends heartbeats and data until the connection fails.
func (d *device) serve(n int) error {
	timers := d.hbOn || d.dataOn
	if !timers {
		if err := d.conn.SetReadDeadline(time.Time{}); err != nil {
			return fmt.Errorf("set read deadline: %w", err)
		}
	}
	if n > 0 {
		var err error
		if n, err = d.process(n, nil); err != nil {
			return err
		}
	}
	for {
		if timers {
			if err := d.conn.SetReadDeadline(d.nextEvent()); err != nil {
				return fmt.Errorf("set read deadline: %w", err)
			}
		}
		m, err := d.conn.Read(d.rbuf[n:])
		if m > 0 {
			d.st.BytesIn.Add(int64(m))
			n, err = d.process(n+m, err)
		}
		if err != nil {
			var ne net.Error
			if !(errors.As(err, &ne) && ne.Timeout() && timers) {
				if errors.Is(err, io.EOF) {
					return errors.New("connection closed by server")
				}
				return fmt.Errorf("read: %w", err)
			}
		}
		if timers {
			if err := d.tick(time.Now()); err != nil {
				return err
			}
		}
	}
}

// nextEvent is when the next heartbeat or data packet is due.
func (d *device) nextEvent() time.Time {
	switch {
	case !d.dataOn:
		return d.nextHB
	case !d.hbOn || d.nextData.Before(d.nextHB):
		return d.nextData
	}
	return d.nextHB
}

// tick sends the heartbeat and data packets due at now.
func (d *device) tick(now time.Time) error {
	if d.hbOn && !now.Before(d.nextHB) {
		if err := d.write(d.hb); err != nil {
			return fmt.Errorf("send heartbeat: %w", err)
		}
		d.st.Heartbeats.Add(1)
		d.nextHB = advance(d.nextHB, d.hbEvery)
	}
	if d.dataOn && !now.Before(d.nextData) {
		if err := d.sendData(); err != nil {
			return fmt.Errorf("send data: %w", err)
		}
		d.nextData = advance(d.nextData, cmp.Or(d.cfg.DataInterval, DefaultDataInterval))
	}
	return nil
}

// advance returns the next time after next on an every grid, restarting
// from now when the device fell behind.
func advance(next time.Time, every time.Duration) time.Time {
	next = next.Add(every)
	if now := time.Now(); next.Before(now) {
		next = now.Add(every)
	}
	return next
}

// sendData sends the next data line or data frame.
func (d *device) sendData() error {
	w := d.wbuf[:0]
	if d.profile == lineProfile {
		l := d.cfg.DataLines[d.dataIdx%len(d.cfg.DataLines)]
		w = append(append(w, l...), '\n')
	} else {
		w = appendTLV(w, TLVData, d.cfg.DataFrames[d.dataIdx%len(d.cfg.DataFrames)])
	}
	d.wbuf = w
	d.dataIdx++
	d.st.DataSent.Add(1)
	return d.send(w)
}

// send writes w whole or, with SplitWrites, in pieces.
func (d *device) send(w []byte) error {
	if !d.cfg.SplitWrites || len(w) < 2 {
		return d.write(w)
	}
	return d.writeSplit(w)
}

// process handles the bytes in rbuf[:n] as the profile reads them, keeps
// an incomplete rest at the start of rbuf and returns its length. A write
// error replaces readErr.
func (d *device) process(n int, readErr error) (int, error) {
	switch d.profile {
	case lineProfile:
		return d.processLines(n, readErr)
	case tlvProfile:
		return d.processTLV(n, readErr)
	}
	return d.processRTU(n, readErr)
}

// processRTU handles the complete requests in rbuf[:n], keeps the rest at
// the start of rbuf and returns its length. A write error replaces readErr.
func (d *device) processRTU(n int, readErr error) (int, error) {
	buf := d.rbuf[:n]
	off := 0
	for off < len(buf) {
		r, m, err := rtu.ParseRequest(buf[off:])
		if err == rtu.ErrTruncated {
			break
		}
		if err != nil && !errors.Is(err, rtu.ErrInvalid) {
			off++ // not a request: resynchronize
			d.st.GarbageBytes.Add(1)
			continue
		}
		off += m
		if r.Slave != 0 && d.slaves[r.Slave/64]&(1<<(r.Slave%64)) == 0 {
			continue // another slave on the bus would answer
		}
		if werr := d.handle(r, err); werr != nil {
			return 0, werr
		}
	}
	if off == 0 && len(buf) == len(d.rbuf) {
		off = 1 // cannot happen with valid framing; never stall on a full buffer
		d.st.GarbageBytes.Add(1)
	}
	rest := copy(d.rbuf, buf[off:])
	return rest, readErr
}

// handle answers one request; parseErr is a request with out-of-range fields.
func (d *device) handle(r rtu.Request, parseErr error) error {
	d.st.Requests.Add(1)
	d.requests++
	if d.cfg.DropEvery > 0 && d.requests%d.cfg.DropEvery == 0 {
		d.st.Dropped.Add(1)
		return nil
	}
	if d.cfg.ResponseDelay > 0 {
		time.Sleep(d.cfg.ResponseDelay)
	}
	code := uint8(0)
	if parseErr != nil {
		code = rtu.ExIllegalDataValue
	} else {
		code = d.apply(r)
	}
	if r.Slave == 0 {
		return nil // broadcast: applied, never answered
	}
	d.answers++
	glue := d.cfg.GlueHeartbeat && len(d.hb) > 0
	before := glue && d.answers%2 == 1
	w := d.wbuf[:0]
	if before {
		w = append(w, d.hb...)
	}
	if d.profile == tlvProfile {
		w = append(w, TLVModbus, 0)
	}
	start := len(w)
	if code != 0 {
		w = rtu.AppendException(w, r.Slave, r.Function, code)
		d.st.Exceptions.Add(1)
	} else {
		w = rtu.AppendResponse(w, r, d.payload)
	}
	if d.cfg.CorruptEvery > 0 && d.answers%d.cfg.CorruptEvery == 0 {
		w[len(w)-1] ^= 0xA5
		d.st.Corrupted.Add(1)
	}
	if d.profile == tlvProfile {
		// Requests within Modbus limits have answers of at most 255 bytes.
		w[start-1] = byte(min(len(w)-start, maxTLVPayload))
		w = w[:start+int(w[start-1])]
	}
	if glue && !before {
		w = append(w, d.hb...)
	}
	if glue {
		d.st.Heartbeats.Add(1)
	}
	d.wbuf = w
	d.st.Responses.Add(1)
	return d.send(w)
}

// apply executes r against the map, leaving read data in d.payload, and
// returns the exception code to answer with (0 for none).
func (d *device) apply(r rtu.Request) uint8 {
	var err error
	m := d.cfg.Map
	d.payload = d.payload[:0]
	switch r.Function {
	case rtu.ReadCoils:
		d.payload, err = m.Registers(Coils, r.Address, r.Quantity, d.payload)
	case rtu.ReadDiscreteInputs:
		d.payload, err = m.Registers(DiscreteInputs, r.Address, r.Quantity, d.payload)
	case rtu.ReadHoldingRegisters:
		d.payload, err = m.Registers(HoldingRegisters, r.Address, r.Quantity, d.payload)
	case rtu.ReadInputRegisters:
		d.payload, err = m.Registers(InputRegisters, r.Address, r.Quantity, d.payload)
	case rtu.WriteSingleCoil:
		err = m.WriteCoils(r.Address, 1, r.Data[:1])
	case rtu.WriteSingleRegister, rtu.WriteMultipleRegisters:
		err = m.WriteRegisters(r.Address, r.Data)
	case rtu.WriteMultipleCoils:
		err = m.WriteCoils(r.Address, r.Quantity, r.Data)
	default:
		return rtu.ExIllegalFunction
	}
	switch {
	case err == nil:
		return 0
	case errors.Is(err, ErrNoAddress):
		return rtu.ExIllegalDataAddress
	default:
		return rtu.ExSlaveDeviceFailure
	}
}

// write sends b in one write.
func (d *device) write(b []byte) error {
	if err := d.conn.SetWriteDeadline(time.Now().Add(orDefault(d.cfg.WriteTimeout, defaultWriteWait))); err != nil {
		return fmt.Errorf("set write deadline: %w", err)
	}
	n, err := d.conn.Write(b)
	d.st.BytesOut.Add(int64(n))
	if err != nil {
		return fmt.Errorf("write: %w", err)
	}
	return nil
}

// writeSplit sends b in 2 or 3 pieces with a pause between them.
func (d *device) writeSplit(b []byte) error {
	cuts := []int{1 + rand.IntN(len(b)-1)}
	if len(b) >= 3 && rand.IntN(2) == 0 {
		cuts = append(cuts, 1+rand.IntN(len(b)-1))
		slices.Sort(cuts)
		cuts = slices.Compact(cuts)
	}
	prev := 0
	for _, c := range append(cuts, len(b)) {
		if prev > 0 {
			time.Sleep(orDefault(d.cfg.SplitPause, defaultSplitWait))
		}
		if err := d.write(b[prev:c]); err != nil {
			return err
		}
		prev = c
	}
	return nil
}
