package fleet

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"os"
	"testing"
	"time"

	"github.com/voltedge/voltedge/internal/rtu"
	"github.com/voltedge/voltedge/internal/wait"
)

const testHeartbeat = "www.usr.cn"

// master is the comsrv end of one DTU link, for tests.
type master struct {
	t          *testing.T
	conn       net.Conn
	buf        []byte
	hb         []byte
	heartbeats int
}

func listen(t *testing.T) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln
}

// startDevice runs a device against a new listener and returns the accepted link.
func startDevice(t *testing.T, cfg DeviceConfig, st *Stats) *master {
	t.Helper()
	if cfg.ID == nil {
		cfg.ID = []byte("DTU1001\n")
	}
	m := &master{t: t, conn: acceptDevice(t, cfg, st), hb: cfg.Heartbeat}
	got := m.readN(len(cfg.ID))
	if !bytes.Equal(got, cfg.ID) {
		t.Fatalf("registration %q, want %q", got, cfg.ID)
	}
	return m
}

// acceptDevice runs a device against a new listener and returns the
// accepted connection; the device is stopped when the test ends.
func acceptDevice(t *testing.T, cfg DeviceConfig, st *Stats) net.Conn {
	t.Helper()
	ln := listen(t)
	cfg.Addr = ln.Addr().String()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- RunDevice(ctx, cfg, st) }()
	var conn net.Conn
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("RunDevice after cancel: %v", err)
			}
		case <-time.After(5 * time.Second):
			t.Error("device did not stop")
		}
		if conn != nil {
			conn.Close()
		}
	})
	if err := ln.(*net.TCPListener).SetDeadline(time.Now().Add(5 * time.Second)); err != nil {
		t.Fatal(err)
	}
	var err error
	if conn, err = ln.Accept(); err != nil {
		t.Fatal(err)
	}
	return conn
}

// readN reads exactly n bytes.
func (m *master) readN(n int) []byte {
	m.t.Helper()
	b := make([]byte, n)
	m.conn.SetReadDeadline(time.Now().Add(3 * time.Second))
	if _, err := io.ReadFull(m.conn, b); err != nil {
		m.t.Fatalf("read %d bytes: %v", n, err)
	}
	return b
}

func (m *master) send(b []byte) {
	m.t.Helper()
	if _, err := m.conn.Write(b); err != nil {
		m.t.Fatal(err)
	}
}

// patience bounds every wait for a state the devices reach on their own.
const patience = 3 * time.Second

// response reads the answer to req, skipping heartbeats, within the given time.

func (m *master) response(req rtu.Request, within time.Duration) ([]byte, error) {
	deadline := time.Now().Add(within)
	var tmp [512]byte
	for {
		for len(m.hb) > 0 && bytes.HasPrefix(m.buf, m.hb) {
			m.buf = m.buf[len(m.hb):]
			m.heartbeats++
		}
		partialHB := len(m.buf) > 0 && len(m.buf) < len(m.hb) && bytes.HasPrefix(m.hb, m.buf)
		if !partialHB {
			n, ok := rtu.FrameLen(req, m.buf)
			if ok && n < 0 {
				m.t.Fatalf("unexpected bytes % X", m.buf)
			}
			if ok && len(m.buf) >= n {
				payload, err := rtu.ParseResponse(req, m.buf[:n])
				payload = bytes.Clone(payload)
				m.buf = m.buf[n:]
				return payload, err
			}
		}
		m.conn.SetReadDeadline(deadline)
		k, err := m.conn.Read(tmp[:])
		m.buf = append(m.buf, tmp[:k]...)
		if err != nil {
			return nil, err
		}
	}
}

// do sends req and returns the payload of its response.
func (m *master) do(req rtu.Request) ([]byte, error) {
	m.t.Helper()
	frame, err := rtu.AppendRequest(nil, req)
	if err != nil {
		m.t.Fatal(err)
	}
	m.send(frame)
	return m.response(req, 3*time.Second)
}

func (m *master) mustDo(req rtu.Request) []byte {
	m.t.Helper()
	p, err := m.do(req)
	if err != nil {
		m.t.Fatalf("%+v: %v", req, err)
	}
	return p
}

func regs(vals ...uint16) []byte {
	b := make([]byte, 0, 2*len(vals))
	for _, v := range vals {
		b = binary.BigEndian.AppendUint16(b, v)
	}
	return b
}

// testMap has static values only, so reads are exact.
func testMap() *RegisterMap {
	m := NewRegisterMap()
	m.Fill(HoldingRegisters, 100, 199, func(a uint16) uint16 { return 1000 + a })
	m.Fill(InputRegisters, 0, 9, func(a uint16) uint16 { return 7 * a })
	m.Fill(Coils, 0, 31, func(a uint16) uint16 { return a % 3 })
	m.Fill(DiscreteInputs, 0, 31, func(a uint16) uint16 { return a % 2 })
	return m
}

func TestDeviceRegistrationAndHeartbeat(t *testing.T) {
	cfg := DeviceConfig{
		ID:                []byte("DTU1001\r\n"),
		Heartbeat:         []byte(testHeartbeat),
		HeartbeatInterval: 60 * time.Millisecond,
		FirstHeartbeat:    20 * time.Millisecond,
		Map:               testMap(),
	}
	st := new(Stats)
	m := startDevice(t, cfg, st)
	for range 3 {
		if got := m.readN(len(testHeartbeat)); string(got) != testHeartbeat {
			t.Fatalf("heartbeat %q", got)
		}
	}
	// Polling keeps working between heartbeats.
	if p := m.mustDo(rtu.Request{Slave: 1, Function: 3, Address: 100, Quantity: 2}); !bytes.Equal(p, regs(1100, 1101)) {
		t.Fatalf("read % X", p)
	}
	if st.Heartbeats.Load() < 3 || st.Connected.Load() != 1 || st.Connects.Load() != 1 {
		t.Fatalf("stats %+v", st.Snapshot())
	}
}

func TestDeviceReadsAndWrites(t *testing.T) {
	mp := testMap()
	st := new(Stats)
	m := startDevice(t, DeviceConfig{Map: mp, Slaves: []uint8{1, 2}}, st)

	if p := m.mustDo(rtu.Request{Slave: 1, Function: rtu.ReadHoldingRegisters, Address: 100, Quantity: 3}); !bytes.Equal(p, regs(1100, 1101, 1102)) {
		t.Fatalf("FC3 % X", p)
	}
	if p := m.mustDo(rtu.Request{Slave: 2, Function: rtu.ReadInputRegisters, Address: 1, Quantity: 2}); !bytes.Equal(p, regs(7, 14)) {
		t.Fatalf("FC4 % X", p)
	}
	// Coils: a%3 != 0 → 0,1,1,0,1,1,0,1 | 1,0 = 0xB6, 0x01
	if p := m.mustDo(rtu.Request{Slave: 1, Function: rtu.ReadCoils, Address: 0, Quantity: 10}); !bytes.Equal(p, []byte{0xB6, 0x01}) {
		t.Fatalf("FC1 % X", p)
	}
	if p := m.mustDo(rtu.Request{Slave: 1, Function: rtu.ReadDiscreteInputs, Address: 1, Quantity: 9}); !bytes.Equal(p, []byte{0x55, 0x01}) {
		t.Fatalf("FC2 % X", p)
	}

	// FC6 then read back, through the protocol and the map.
	m.mustDo(rtu.Request{Slave: 1, Function: rtu.WriteSingleRegister, Address: 150, Data: regs(0xBEEF)})
	if p := m.mustDo(rtu.Request{Slave: 1, Function: 3, Address: 149, Quantity: 3}); !bytes.Equal(p, regs(1149, 0xBEEF, 1151)) {
		t.Fatalf("after FC6 % X", p)
	}
	// FC16.
	m.mustDo(rtu.Request{Slave: 2, Function: rtu.WriteMultipleRegisters, Address: 160, Quantity: 3, Data: regs(1, 2, 3)})
	if p := m.mustDo(rtu.Request{Slave: 1, Function: 3, Address: 160, Quantity: 3}); !bytes.Equal(p, regs(1, 2, 3)) {
		t.Fatalf("after FC16 % X", p)
	}
	// FC5 on and off.
	m.mustDo(rtu.Request{Slave: 1, Function: rtu.WriteSingleCoil, Address: 0, Data: []byte{0xFF, 0}})
	m.mustDo(rtu.Request{Slave: 1, Function: rtu.WriteSingleCoil, Address: 1, Data: []byte{0, 0}})
	if on, _ := mp.Bit(Coils, 0); !on {
		t.Fatal("coil 0 not on after FC5")
	}
	if p := m.mustDo(rtu.Request{Slave: 1, Function: 1, Address: 0, Quantity: 3}); p[0] != 0b101 {
		t.Fatalf("after FC5 % X", p)
	}
	// FC15: coils 20..29 = 1,0,1,1,0,0,1,1,1,0
	m.mustDo(rtu.Request{Slave: 1, Function: rtu.WriteMultipleCoils, Address: 20, Quantity: 10, Data: []byte{0xCD, 0x01}})
	if p := m.mustDo(rtu.Request{Slave: 1, Function: 1, Address: 20, Quantity: 10}); !bytes.Equal(p, []byte{0xCD, 0x01}) {
		t.Fatalf("after FC15 % X", p)
	}

	// Unmapped addresses: exception 2, and a failed write changes nothing.
	_, err := m.do(rtu.Request{Slave: 1, Function: 3, Address: 190, Quantity: 20})
	var ex *rtu.ExceptionError
	if !errors.As(err, &ex) || ex.Code != rtu.ExIllegalDataAddress {
		t.Fatalf("read past the map: %v", err)
	}
	_, err = m.do(rtu.Request{Slave: 1, Function: 16, Address: 199, Quantity: 2, Data: regs(5, 5)})
	if !errors.As(err, &ex) || ex.Code != rtu.ExIllegalDataAddress {
		t.Fatalf("write past the map: %v", err)
	}
	if v, _ := mp.Register(HoldingRegisters, 199); v != 1199 {
		t.Fatalf("partial write: %d", v)
	}

	// Out-of-range quantity with a good CRC: exception 3.
	bad := rtu.Request{Slave: 1, Function: 3, Address: 100, Quantity: 126}
	m.send(withCRC([]byte{1, 3, 0, 100, 0, 126}))
	if _, err := m.response(bad, 3*time.Second); !errors.As(err, &ex) || ex.Code != rtu.ExIllegalDataValue {
		t.Fatalf("quantity 126: %v", err)
	}

	// A request for another slave is ignored; a broadcast write is applied unanswered.
	other, _ := rtu.AppendRequest(nil, rtu.Request{Slave: 9, Function: 3, Address: 100, Quantity: 1})
	bcast, _ := rtu.AppendRequest(nil, rtu.Request{Slave: 0, Function: 6, Address: 170, Data: regs(77)})
	m.send(append(other, bcast...))
	if p := m.mustDo(rtu.Request{Slave: 1, Function: 3, Address: 170, Quantity: 1}); !bytes.Equal(p, regs(77)) {
		t.Fatalf("after broadcast % X", p)
	}
	if n := st.Requests.Load(); n != 18 {
		t.Fatalf("requests = %d, want 18", n)
	}
}

func withCRC(b []byte) []byte {
	c := rtu.CRC16(b)
	return append(b, byte(c), byte(c>>8))
}

func TestDeviceSplitMergedGarbage(t *testing.T) {
	st := new(Stats)
	m := startDevice(t, DeviceConfig{Map: testMap()}, st)
	r1 := rtu.Request{Slave: 1, Function: 3, Address: 100, Quantity: 2}
	r2 := rtu.Request{Slave: 1, Function: 16, Address: 110, Quantity: 2, Data: regs(8, 9)}
	f1, _ := rtu.AppendRequest(nil, r1)
	f2, _ := rtu.AppendRequest(nil, r2)

	// One byte at a time.
	for _, b := range f2 {
		m.send([]byte{b})
		time.Sleep(time.Millisecond) // lets each byte arrive as a read of its own

	}
	if _, err := m.response(r2, 3*time.Second); err != nil {
		t.Fatal(err)
	}
	// Merged: two requests in one write, two responses.
	m.send(append(bytes.Clone(f1), f1...))
	for range 2 {
		if p, err := m.response(r1, 3*time.Second); err != nil || !bytes.Equal(p, regs(1100, 1101)) {
			t.Fatalf("merged: % X %v", p, err)
		}
	}
	// Garbage before, between and after requests.
	garbage := []byte{0xFF, 0xFE, 0x00, 0x03, 0x01, 0x07}
	var stream []byte
	stream = append(stream, garbage...)
	stream = append(stream, f1...)
	stream = append(stream, 0x01, 0x03, 0x00) // a partial header, then a full request
	stream = append(stream, f1...)
	m.send(stream)
	for range 2 {
		if p, err := m.response(r1, 3*time.Second); err != nil || !bytes.Equal(p, regs(1100, 1101)) {
			t.Fatalf("after garbage: % X %v", p, err)
		}
	}
	if st.GarbageBytes.Load() < int64(len(garbage)) {
		t.Fatalf("garbage bytes %d", st.GarbageBytes.Load())
	}
	// A corrupted request is skipped; the next one is answered.
	bad := bytes.Clone(f1)
	bad[len(bad)-1] ^= 1
	m.send(append(bad, f1...))
	if p, err := m.response(r1, 3*time.Second); err != nil || !bytes.Equal(p, regs(1100, 1101)) {
		t.Fatalf("after bad CRC: % X %v", p, err)
	}
}

func TestDeviceFaults(t *testing.T) {
	read := rtu.Request{Slave: 1, Function: 3, Address: 100, Quantity: 4}
	t.Run("drop", func(t *testing.T) {
		st := new(Stats)
		m := startDevice(t, DeviceConfig{Map: testMap(), DropEvery: 2}, st)
		m.mustDo(read)
		frame, _ := rtu.AppendRequest(nil, read)
		m.send(frame)
		if _, err := m.response(read, 150*time.Millisecond); !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("second request: %v, want a timeout", err)
		}
		m.mustDo(read)
		if st.Dropped.Load() != 1 {
			t.Fatalf("dropped %d", st.Dropped.Load())
		}
	})
	t.Run("corrupt", func(t *testing.T) {
		m := startDevice(t, DeviceConfig{Map: testMap(), CorruptEvery: 2}, nil)
		m.mustDo(read)
		if _, err := m.do(read); !errors.Is(err, rtu.ErrCRC) {
			t.Fatalf("second response: %v, want ErrCRC", err)
		}
		m.mustDo(read)
	})
	t.Run("glue", func(t *testing.T) {
		m := startDevice(t, DeviceConfig{Map: testMap(), GlueHeartbeat: true, Heartbeat: []byte(testHeartbeat)}, nil)
		for range 4 {
			m.mustDo(read)
		}
		// Heartbeats go before the 1st and 3rd responses and after the 2nd
		// and 4th; the last one is still unread.
		if m.heartbeats != 3 {
			t.Fatalf("after 4 responses %d heartbeats, want 3", m.heartbeats)
		}
	})
	t.Run("split and delay", func(t *testing.T) {
		st := new(Stats)
		m := startDevice(t, DeviceConfig{Map: testMap(), SplitWrites: true, ResponseDelay: 30 * time.Millisecond}, st)
		for range 5 {
			start := time.Now()
			if p := m.mustDo(read); !bytes.Equal(p, regs(1100, 1101, 1102, 1103)) {
				t.Fatalf("% X", p)
			}
			if time.Since(start) < 30*time.Millisecond {
				t.Fatal("response came before the delay")
			}
		}
		want := int64(len("DTU1001\n") + 5*rtu.ResponseLen(read))
		wait.For(t, patience, "the bytes out", func() error { return wait.Equal(st.BytesOut.Load(), want) })
	})
}

func TestDeviceServerCloses(t *testing.T) {
	ln := listen(t)
	go func() {
		c, err := ln.Accept()
		if err == nil {
			c.Close()
		}
	}()
	err := RunDevice(context.Background(), DeviceConfig{Addr: ln.Addr().String(), ID: []byte("X\n"), Map: testMap()}, nil)
	if err == nil {
		t.Fatal("RunDevice returned nil after the server closed")
	}
}

func TestDeviceConfigErrors(t *testing.T) {
	for _, cfg := range []DeviceConfig{
		{ID: []byte("a"), Map: testMap()},
		{Addr: "x:1", Map: testMap()},
		{Addr: "x:1", ID: []byte("a")},
		{Addr: "x:1", ID: []byte("a"), Map: testMap(), Slaves: []uint8{0}},
		{Addr: "x:1", ID: []byte("a"), Map: testMap(), DropEvery: -1},
		{Addr: "x:1", ID: []byte("a"), Map: testMap(), Profile: "modbus"},
		{Addr: "x:1", Profile: ProfileLine},
		{Addr: "x:1", ID: []byte("a\n"), Profile: ProfileLine, DataLines: []string{"a\nb"}},
		{Addr: "x:1", ID: []byte("a\n"), Profile: ProfileLine, MaxLineLength: -1},
		{Addr: "x:1", Profile: ProfileTLV},
		{Addr: "x:1", Profile: ProfileTLV, Map: testMap(), DataFrames: [][]byte{make([]byte, 256)}},
		{Addr: "x:1", Profile: ProfileTLV, Map: testMap(), AckTimeout: -1},
	} {
		if err := RunDevice(context.Background(), cfg, nil); err == nil {
			t.Errorf("%+v: no error", cfg)
		}
	}
}
