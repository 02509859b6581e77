package fleet

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"slices"
	"time"

	"github.com/voltedge/voltedge/internal/rtu"
)

// Buffer sizes of one device. The read buffer holds at least one maximal
// request frame (rtu.MaxFrameLen); the write buffer one maximal response plus
// a heartbeat.
const (
	readBufSize      = 512
	defaultDialWait  = 5 * time.Second
	defaultWriteWait = 10 * time.Second
	defaultSplitWait = 2 * time.Millisecond
)

// DeviceConfig describes one simulated DTU and the RS-485 slaves behind it.
type DeviceConfig struct {
	// Addr is the comsrv DTU server, host:port.
	Addr string
	// ID is the registration packet, sent alone as the first write, terminator included.
	ID []byte
	// Heartbeat is sent every HeartbeatInterval; empty or a zero interval disables it.
	Heartbeat         []byte
	HeartbeatInterval time.Duration
	// FirstHeartbeat delays the first heartbeat after registration;
	// 0 picks a random delay within HeartbeatInterval so a fleet's heartbeats spread out.
	FirstHeartbeat time.Duration
	// Slaves are the slave ids that answer (default 1). All share Map.
	Slaves []uint8
	// Map is the slaves' memory; it may be shared by many devices. Required.
	Map *RegisterMap
	// ResponseDelay is how long a slave takes to answer.
	ResponseDelay time.Duration
	// DropEvery leaves every Nth request unanswered (0: never), to test timeouts.
	DropEvery int
	// CorruptEvery sends every Nth response with a bad CRC (0: never).
	CorruptEvery int
	// GlueHeartbeat sends a heartbeat in the same write as every response,
	// alternately before and after it.
	GlueHeartbeat bool
	// SplitWrites writes every response in 2 or 3 pieces with SplitPause (default 2ms) between them.
	SplitWrites bool
	SplitPause  time.Duration
	// DialTimeout (default 5s) and WriteTimeout (default 10s) bound the connect and each write.
	DialTimeout  time.Duration
	WriteTimeout time.Duration
}

func (c *DeviceConfig) check() error {
	if c.Addr == "" {
		return errors.New("device: no server address")
	}
	if c.Map == nil {
		return errors.New("device: no register map")
	}
	if len(c.ID) == 0 {
		return errors.New("device: empty registration packet")
	}
	if c.HeartbeatInterval < 0 || c.ResponseDelay < 0 || c.DropEvery < 0 || c.CorruptEvery < 0 {
		return errors.New("device: negative interval, delay or count")
	}
	for _, s := range c.Slaves {
		if s < 1 || s > 247 {
			return fmt.Errorf("device: slave id %d out of range 1..247", s)
		}
	}
	return nil
}

// device is the state of one connection.
type device struct {
	cfg      *DeviceConfig
	st       *Stats
	conn     net.Conn
	slaves   [256 / 64]uint64 // bit set of answering slave ids
	requests int
	answers  int
	rbuf     []byte
	wbuf     []byte
	payload  []byte
	hbOn     bool
	nextHB   time.Time
}

// RunDevice connects to cfg.Addr, sends the registration packet, then
// answers Modbus RTU requests arriving on the socket and sends heartbeats,
// all on the calling goroutine, until ctx is done (it then returns nil) or
// the connection fails (it returns why). Reconnecting is the caller's job.
// st may be nil.
func RunDevice(ctx context.Context, cfg DeviceConfig, st *Stats) error {
	if err := cfg.check(); err != nil {
		return err
	}
	if st == nil {
		st = new(Stats)
	}
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

	d := &device{
		cfg:     &cfg,
		st:      st,
		conn:    conn,
		rbuf:    make([]byte, readBufSize),
		wbuf:    make([]byte, 0, rtu.MaxFrameLen+len(cfg.Heartbeat)),
		payload: make([]byte, 0, 256),
	}
	slaves := cfg.Slaves
	if len(slaves) == 0 {
		slaves = []uint8{1}
	}
	for _, s := range slaves {
		d.slaves[s/64] |= 1 << (s % 64)
	}
	if err := d.write(cfg.ID); err != nil {
		return d.ended(ctx, fmt.Errorf("send registration: %w", err))
	}
	st.Connects.Add(1)
	st.Connected.Add(1)
	defer st.Connected.Add(-1)

	if d.hbOn = len(cfg.Heartbeat) > 0 && cfg.HeartbeatInterval > 0; d.hbOn {
		first := cfg.FirstHeartbeat
		if first <= 0 {
			first = rand.N(cfg.HeartbeatInterval)
		}
		d.nextHB = time.Now().Add(first)
	}
	return d.ended(ctx, d.serve())
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

// serve reads requests and sends heartbeats until the connection fails.
func (d *device) serve() error {
	n := 0
	for {
		if d.hbOn {
			if err := d.conn.SetReadDeadline(d.nextHB); err != nil {
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
			if !(errors.As(err, &ne) && ne.Timeout() && d.hbOn) {
				if errors.Is(err, io.EOF) {
					return errors.New("connection closed by server")
				}
				return fmt.Errorf("read: %w", err)
			}
		}
		if d.hbOn && !time.Now().Before(d.nextHB) {
			if err := d.write(d.cfg.Heartbeat); err != nil {
				return fmt.Errorf("send heartbeat: %w", err)
			}
			d.st.Heartbeats.Add(1)
			d.nextHB = d.nextHB.Add(d.cfg.HeartbeatInterval)
			if now := time.Now(); d.nextHB.Before(now) {
				d.nextHB = now.Add(d.cfg.HeartbeatInterval)
			}
		}
	}
}

// process handles the complete requests in rbuf[:n], keeps the rest at the
// start of rbuf and returns its length. A write error replaces readErr.
func (d *device) process(n int, readErr error) (int, error) {
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
	glue := d.cfg.GlueHeartbeat && len(d.cfg.Heartbeat) > 0
	before := glue && d.answers%2 == 1
	w := d.wbuf[:0]
	if before {
		w = append(w, d.cfg.Heartbeat...)
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
	if glue && !before {
		w = append(w, d.cfg.Heartbeat...)
	}
	if glue {
		d.st.Heartbeats.Add(1)
	}
	d.wbuf = w
	d.st.Responses.Add(1)
	if !d.cfg.SplitWrites || len(w)-start < 2 {
		return d.write(w)
	}
	return d.writeSplit(w)
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
