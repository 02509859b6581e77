package fleet

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/voltedge/voltedge/internal/rtu"
	"github.com/voltedge/voltedge/internal/wait"
)

// tlvMaster plays comsrv's side of a tlv link: it acks the registration,
// heartbeats and data frames, and sends Modbus requests inside TLVModbus frames.
type tlvMaster struct {
	t          *testing.T
	conn       net.Conn
	br         *bufio.Reader
	heartbeats int      // heartbeat frames received (and acked)
	data       [][]byte // data frame payloads received (and acked)
	bare       bool     // ack with the bare type byte instead of an empty frame
}

// startTLVDevice runs a tlv device, checks its 4-byte registration and acks it.
func startTLVDevice(t *testing.T, cfg DeviceConfig, st *Stats) *tlvMaster {
	t.Helper()
	cfg.Profile = ProfileTLV
	if cfg.TLVID == 0 && cfg.ID == nil {
		cfg.TLVID = 70001
	}
	m := &tlvMaster{t: t, conn: acceptDevice(t, cfg, st)}
	m.br = bufio.NewReader(m.conn)
	var id [4]byte
	m.conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadFull(m.br, id[:]); err != nil {
		t.Fatalf("registration: %v", err)
	}
	if got := binary.BigEndian.Uint32(id[:]); got != cfg.TLVID {
		t.Fatalf("registration id %d, want %d", got, cfg.TLVID)
	}
	m.send([]byte{TLVAck})
	return m
}

func (m *tlvMaster) send(b []byte) {
	m.t.Helper()
	if _, err := m.conn.Write(b); err != nil {
		m.t.Fatal(err)
	}
}

// frame reads one frame within the given time.
func (m *tlvMaster) frame(within time.Duration) (byte, []byte, error) {
	m.conn.SetReadDeadline(time.Now().Add(within))
	var hdr [2]byte
	if _, err := io.ReadFull(m.br, hdr[:]); err != nil {
		return 0, nil, err
	}
	p := make([]byte, hdr[1])
	if _, err := io.ReadFull(m.br, p); err != nil {
		return 0, nil, err
	}
	return hdr[0], p, nil
}

// next returns the next frame that is not a heartbeat or data frame; those
// are acked and recorded on the way.
func (m *tlvMaster) next(within time.Duration) (byte, []byte, error) {
	deadline := time.Now().Add(within)
	for {
		typ, p, err := m.frame(time.Until(deadline))
		if err != nil || !m.ack(typ, p) {
			return typ, p, err
		}
	}
}

// ack answers and records a heartbeat or data frame and reports whether it was one.
func (m *tlvMaster) ack(typ byte, p []byte) bool {
	switch typ {
	case TLVHeartbeat:
		m.heartbeats++
	case TLVData:
		m.data = append(m.data, p)
	default:
		return false
	}
	if m.bare {
		m.send([]byte{typ})
	} else {
		m.send([]byte{typ, 0})
	}
	return true
}

// response reads the answer to req within the given time.
func (m *tlvMaster) response(req rtu.Request, within time.Duration) ([]byte, error) {
	typ, p, err := m.next(within)
	if err != nil {
		return nil, err
	}
	if typ != TLVModbus {
		m.t.Fatalf("frame type 0x%02X, want 0x04", typ)
	}
	if n, ok := rtu.FrameLen(req, p); !ok || n != len(p) {
		m.t.Fatalf("Modbus frame of %d bytes, its length says %d (%v): % X", len(p), n, ok, p)
	}
	return rtu.ParseResponse(req, p)
}

func (m *tlvMaster) request(req rtu.Request) {
	m.t.Helper()
	adu, err := rtu.AppendRequest(nil, req)
	if err != nil {
		m.t.Fatal(err)
	}
	frame, err := AppendTLV(nil, TLVModbus, adu)
	if err != nil {
		m.t.Fatal(err)
	}
	m.send(frame)
}

func (m *tlvMaster) do(req rtu.Request) ([]byte, error) {
	m.t.Helper()
	m.request(req)
	return m.response(req, 3*time.Second)
}

func (m *tlvMaster) mustDo(req rtu.Request) []byte {
	m.t.Helper()
	p, err := m.do(req)
	if err != nil {
		m.t.Fatalf("%+v: %v", req, err)
	}
	return p
}

func TestTLVDevice(t *testing.T) {
	mp := testMap()
	mp.Fill(HoldingRegisters, 200, 299, func(a uint16) uint16 { return a })
	st := new(Stats)
	m := startTLVDevice(t, DeviceConfig{
		Map: mp, HeartbeatInterval: 30 * time.Millisecond, FirstHeartbeat: 5 * time.Millisecond,
		DataFrames: [][]byte{{1, 2, 3}, {}, {4}}, DataInterval: 20 * time.Millisecond,
	}, st)

	if p := m.mustDo(rtu.Request{Slave: 1, Function: rtu.ReadHoldingRegisters, Address: 100, Quantity: 3}); !bytes.Equal(p, regs(1100, 1101, 1102)) {
		t.Fatalf("FC3 % X", p)
	}
	// The longest read: 125 registers, a 255-byte RTU frame, a full tlv frame.
	p := m.mustDo(rtu.Request{Slave: 1, Function: rtu.ReadHoldingRegisters, Address: 150, Quantity: 125})
	if len(p) != 250 || binary.BigEndian.Uint16(p[248:]) != 274 {
		t.Fatalf("FC3 ×125: %d bytes", len(p))
	}
	if p := m.mustDo(rtu.Request{Slave: 1, Function: rtu.ReadCoils, Address: 0, Quantity: 10}); !bytes.Equal(p, []byte{0xB6, 0x01}) {
		t.Fatalf("FC1 % X", p)
	}

	// Writes change the register map.
	m.mustDo(rtu.Request{Slave: 1, Function: rtu.WriteSingleRegister, Address: 150, Data: regs(0xBEEF)})
	if v, _ := mp.Register(HoldingRegisters, 150); v != 0xBEEF {
		t.Fatalf("after FC6 register 150 = %#x", v)
	}
	m.mustDo(rtu.Request{Slave: 1, Function: rtu.WriteMultipleRegisters, Address: 160, Quantity: 3, Data: regs(1, 2, 3)})
	if p := m.mustDo(rtu.Request{Slave: 1, Function: 3, Address: 160, Quantity: 3}); !bytes.Equal(p, regs(1, 2, 3)) {
		t.Fatalf("after FC16 % X", p)
	}
	m.mustDo(rtu.Request{Slave: 1, Function: rtu.WriteSingleCoil, Address: 0, Data: []byte{0xFF, 0}})
	if on, _ := mp.Bit(Coils, 0); !on {
		t.Fatal("coil 0 not on after FC5")
	}
	m.mustDo(rtu.Request{Slave: 1, Function: rtu.WriteMultipleCoils, Address: 20, Quantity: 10, Data: []byte{0xCD, 0x01}})
	if on, _ := mp.Bit(Coils, 22); !on {
		t.Fatal("coil 22 not on after FC15")
	}

	// Exceptions.
	var ex *rtu.ExceptionError
	if _, err := m.do(rtu.Request{Slave: 1, Function: 3, Address: 5000, Quantity: 1}); !errors.As(err, &ex) || ex.Code != rtu.ExIllegalDataAddress {
		t.Fatalf("unmapped read: %v", err)
	}

	// Hostile frames are counted and skipped: an unknown type, a Modbus frame
	// with a truncated request, one with a bad CRC, one for another slave.
	other, _ := rtu.AppendRequest(nil, rtu.Request{Slave: 9, Function: 3, Address: 100, Quantity: 1})
	badCRC := bytes.Clone(other)
	badCRC[0] = 1
	var junk []byte
	junk = appendTLV(junk, 0x09, []byte{0xAA, 0xBB})
	junk = appendTLV(junk, TLVModbus, []byte{1, 3, 0})
	junk = appendTLV(junk, TLVModbus, badCRC)
	junk = appendTLV(junk, TLVModbus, other)
	m.send(junk)
	if p := m.mustDo(rtu.Request{Slave: 1, Function: 4, Address: 1, Quantity: 2}); !bytes.Equal(p, regs(7, 14)) {
		t.Fatalf("FC4 after junk % X", p)
	}
	if n := st.BadFrames.Load(); n != 3 {
		t.Fatalf("bad frames %d, want 3", n)
	}

	// Heartbeats and data frames flow and are acked.
	for m.heartbeats < 3 || len(m.data) < 4 {
		typ, p, err := m.frame(3 * time.Second)
		if err != nil {
			t.Fatalf("after %d heartbeats and %d data frames: %v", m.heartbeats, len(m.data), err)
		}
		if !m.ack(typ, p) {
			t.Fatalf("unexpected frame 0x%02X % X", typ, p)
		}
	}
	for i, want := range [][]byte{{1, 2, 3}, {}, {4}, {1, 2, 3}} {
		if !bytes.Equal(m.data[i], want) {
			t.Fatalf("data frame %d: % X, want % X", i, m.data[i], want)
		}
	}
	wait.For(t, patience, "the acks", func() error {
		return wait.Check(st.HeartbeatAcks.Load() >= 3 && st.DataAcks.Load() >= 4, "stats %+v", st.Snapshot())
	})
	if st.RegistrationAcks.Load() != 1 || st.DataSent.Load() < 4 || st.Heartbeats.Load() < 3 {
		t.Fatalf("stats %+v", st.Snapshot())
	}
}

// TestTLVBareAcks: a server that acks with the bare type byte, told or
// recognised, interleaved with requests.
func TestTLVBareAcks(t *testing.T) {
	for _, told := range []bool{false, true} {
		t.Run(fmt.Sprint("told=", told), func(t *testing.T) {
			st := new(Stats)
			m := startTLVDevice(t, DeviceConfig{
				Map: testMap(), TLVBareAcks: told, HeartbeatInterval: 15 * time.Millisecond, FirstHeartbeat: 5 * time.Millisecond,
				DataFrames: [][]byte{{9}}, DataInterval: 10 * time.Millisecond,
			}, st)
			m.bare = true
			read := rtu.Request{Slave: 1, Function: 3, Address: 100, Quantity: 1}
			for m.heartbeats < 4 || len(m.data) < 4 {
				if p := m.mustDo(read); !bytes.Equal(p, regs(1100)) {
					t.Fatalf("% X", p)
				}
			}
			// Every ack but possibly the last is counted at once.
			hb, data := int64(m.heartbeats), int64(len(m.data))
			wait.For(t, patience, "the acks", func() error {
				h, d := st.HeartbeatAcks.Load(), st.DataAcks.Load()
				return wait.Check(h >= hb-1 && d >= data-1, "acks counted %d/%d and %d/%d", h, hb, d, data)
			})
			if st.BadFrames.Load() != 0 || st.HeartbeatAcks.Load() > hb || st.DataAcks.Load() > data {
				t.Fatalf("stats %+v after %d heartbeats, %d data frames", st.Snapshot(), hb, data)
			}
		})
	}
}

func TestTLVAck(t *testing.T) {
	// serve accepts one device, reads its id and answers with reply (nothing when nil).
	serve := func(t *testing.T, reply []byte) string {
		ln := listen(t)
		go func() {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			defer c.Close()
			var id [4]byte
			io.ReadFull(c, id[:])
			if reply != nil {
				c.Write(reply)
			}
			io.Copy(io.Discard, c)
		}()
		return ln.Addr().String()
	}
	t.Run("timeout", func(t *testing.T) {
		st := new(Stats)
		err := RunDevice(context.Background(), DeviceConfig{Addr: serve(t, nil), Profile: ProfileTLV, TLVID: 1, Map: testMap(), AckTimeout: 100 * time.Millisecond}, st)
		if err == nil || !strings.Contains(err.Error(), "no registration ack") {
			t.Fatalf("err %v", err)
		}
		if st.RegistrationAcks.Load() != 0 || st.Connected.Load() != 0 {
			t.Fatalf("stats %+v", st.Snapshot())
		}
	})
	t.Run("refused", func(t *testing.T) {
		err := RunDevice(context.Background(), DeviceConfig{Addr: serve(t, []byte{0x00}), Profile: ProfileTLV, TLVID: 1, Map: testMap()}, nil)
		if err == nil || !strings.Contains(err.Error(), "refused") {
			t.Fatalf("err %v", err)
		}
	})
	t.Run("closed", func(t *testing.T) {
		ln := listen(t)
		go func() {
			if c, err := ln.Accept(); err == nil {
				c.Close()
			}
		}()
		if err := RunDevice(context.Background(), DeviceConfig{Addr: ln.Addr().String(), Profile: ProfileTLV, Map: testMap()}, nil); err == nil {
			t.Fatal("no error")
		}
	})
	t.Run("ack and request in one write", func(t *testing.T) {
		st := new(Stats)
		conn := acceptDevice(t, DeviceConfig{Profile: ProfileTLV, ID: []byte{0, 0, 0, 7}, Map: testMap(), NoHeartbeat: true}, st)
		m := &tlvMaster{t: t, conn: conn, br: bufio.NewReader(conn)}
		var id [4]byte
		conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := io.ReadFull(m.br, id[:]); err != nil || id != [4]byte{0, 0, 0, 7} {
			t.Fatalf("registration % X %v", id, err)
		}
		req := rtu.Request{Slave: 1, Function: 3, Address: 100, Quantity: 1}
		adu, _ := rtu.AppendRequest(nil, req)
		m.send(appendTLV([]byte{TLVAck}, TLVModbus, adu))
		if p, err := m.response(req, 3*time.Second); err != nil || !bytes.Equal(p, regs(1100)) {
			t.Fatalf("% X %v", p, err)
		}
		if st.RegistrationAcks.Load() != 1 {
			t.Fatalf("stats %+v", st.Snapshot())
		}
	})
}

func TestTLVFaults(t *testing.T) {
	read := rtu.Request{Slave: 1, Function: 3, Address: 100, Quantity: 4}
	t.Run("drop", func(t *testing.T) {
		st := new(Stats)
		m := startTLVDevice(t, DeviceConfig{Map: testMap(), DropEvery: 2, NoHeartbeat: true}, st)
		m.mustDo(read)
		m.request(read)
		if _, _, err := m.next(150 * time.Millisecond); !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("second request: %v, want a timeout", err)
		}
		m.mustDo(read)
		if st.Dropped.Load() != 1 {
			t.Fatalf("dropped %d", st.Dropped.Load())
		}
	})
	t.Run("corrupt", func(t *testing.T) {
		m := startTLVDevice(t, DeviceConfig{Map: testMap(), CorruptEvery: 2}, nil)
		m.mustDo(read)
		if _, err := m.do(read); !errors.Is(err, rtu.ErrCRC) {
			t.Fatalf("second response: %v, want ErrCRC", err)
		}
		m.mustDo(read)
	})
	t.Run("glue", func(t *testing.T) {
		m := startTLVDevice(t, DeviceConfig{Map: testMap(), GlueHeartbeat: true, NoHeartbeat: true}, nil)
		for range 4 {
			m.mustDo(read)
		}
		if m.heartbeats != 3 {
			t.Fatalf("after 4 responses %d heartbeat frames, want 3", m.heartbeats)
		}
	})
	t.Run("split and delay", func(t *testing.T) {
		st := new(Stats)
		m := startTLVDevice(t, DeviceConfig{Map: testMap(), SplitWrites: true, ResponseDelay: 20 * time.Millisecond, NoHeartbeat: true}, st)
		for range 5 {
			if p := m.mustDo(read); !bytes.Equal(p, regs(1100, 1101, 1102, 1103)) {
				t.Fatalf("% X", p)
			}
		}
		want := int64(4 + 5*(2+rtu.ResponseLen(read)))
		wait.For(t, patience, "the bytes out", func() error { return wait.Equal(st.BytesOut.Load(), want) })
	})
}

func TestFleetTLV(t *testing.T) {
	const n = 30
	ln := listen(t)
	var (
		mu    sync.Mutex
		ids   = map[uint32]int{}
		conns []net.Conn
	)
	t.Cleanup(func() {
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			c.Close()
		}
	})
	polled := make(chan error, n)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			go func() {
				polled <- func() error {
					c.SetDeadline(time.Now().Add(10 * time.Second))
					var id [4]byte
					if _, err := io.ReadFull(c, id[:]); err != nil {
						return err
					}
					mu.Lock()
					ids[binary.BigEndian.Uint32(id[:])]++
					mu.Unlock()
					req := rtu.Request{Slave: 1, Function: 3, Address: 2000, Quantity: 10}
					adu, _ := rtu.AppendRequest(nil, req)
					if _, err := c.Write(appendTLV([]byte{TLVAck}, TLVModbus, adu)); err != nil {
						return err
					}
					var hdr [2]byte
					if _, err := io.ReadFull(c, hdr[:]); err != nil {
						return err
					}
					p := make([]byte, hdr[1])
					if _, err := io.ReadFull(c, p); err != nil {
						return err
					}
					if hdr[0] != TLVModbus {
						return fmt.Errorf("frame type 0x%02X", hdr[0])
					}
					_, err := rtu.ParseResponse(req, p)
					return err
				}()
			}()
		}
	}()
	st := new(Stats)
	runFleet(t, FleetConfig{
		N: n, Prefix: "ignored", Start: 5000, Ramp: 5000, Stats: st,
		Device: DeviceConfig{Addr: ln.Addr().String(), Profile: ProfileTLV, HeartbeatInterval: time.Minute, FirstHeartbeat: time.Minute},
	})
	for range n {
		select {
		case err := <-polled:
			if err != nil {
				t.Fatal(err)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("only some devices answered: %+v", st.Snapshot())
		}
	}
	mu.Lock()
	defer mu.Unlock()
	for i := range uint32(n) {
		if ids[5000+i] != 1 {
			t.Errorf("id %d registered %d times", 5000+i, ids[5000+i])
		}
	}
	if st.RegistrationAcks.Load() != n {
		t.Fatalf("stats %+v", st.Snapshot())
	}
}

func TestTLVFrames(t *testing.T) {
	f, err := AppendTLV([]byte{0xEE}, TLVData, []byte{1, 2})
	if err != nil || !bytes.Equal(f, []byte{0xEE, 3, 2, 1, 2}) {
		t.Fatalf("% X %v", f, err)
	}
	if _, err := AppendTLV(nil, TLVData, make([]byte, 256)); err == nil {
		t.Fatal("256-byte payload accepted")
	}
	for _, in := range [][]byte{nil, {4}, {4, 2, 1}} {
		if _, _, _, ok := ParseTLV(in); ok {
			t.Errorf("% X parsed", in)
		}
	}
	typ, p, n, ok := ParseTLV([]byte{4, 2, 1, 2, 9})
	if !ok || typ != 4 || n != 4 || !bytes.Equal(p, []byte{1, 2}) || cap(p) != 2 {
		t.Fatalf("%d % X %d %v", typ, p, n, ok)
	}
}
