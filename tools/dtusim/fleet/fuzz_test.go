package fleet

import (
	"bytes"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/voltedge/voltedge/internal/rtu"
)

// captureConn is a socket whose writes are kept and whose reads end at once;
// it lets the fuzz targets and benchmarks drive a device without a network.
type captureConn struct {
	out     bytes.Buffer
	discard bool
}

func (c *captureConn) Read([]byte) (int, error) { return 0, io.EOF }
func (c *captureConn) Write(b []byte) (int, error) {
	if !c.discard {
		c.out.Write(b)
	}
	return len(b), nil
}
func (c *captureConn) Close() error                     { return nil }
func (c *captureConn) LocalAddr() net.Addr              { return &net.TCPAddr{} }
func (c *captureConn) RemoteAddr() net.Addr             { return &net.TCPAddr{} }
func (c *captureConn) SetDeadline(time.Time) error      { return nil }
func (c *captureConn) SetReadDeadline(time.Time) error  { return nil }
func (c *captureConn) SetWriteDeadline(time.Time) error { return nil }

// maxFuzzInput bounds what a fuzz target reads: a few frames or lines show
// every path, and long inputs make the engine's minimization quadratic.
const maxFuzzInput = 2048

// feed hands data to d as reads of chunk bytes at most and checks that the
// bytes kept for later always leave room in the read buffer.
func feed(t *testing.T, d *device, data []byte, chunk int) {
	data = data[:min(len(data), maxFuzzInput)]
	n := 0
	for len(data) > 0 {
		k := min(chunk, len(data), len(d.rbuf)-n)
		if k <= 0 {
			t.Fatalf("read buffer full with %d bytes kept", n)
		}
		copy(d.rbuf[n:], data[:k])
		data = data[k:]
		var err error
		if n, err = d.process(n+k, nil); err != nil {
			t.Fatal(err)
		}
		if n < 0 || (d.profile == tlvProfile && n >= MaxTLVFrameLen) || (d.profile == lineProfile && n != 0) {
			t.Fatalf("%d bytes kept", n)
		}
	}
}

func tlvSeeds(f *testing.F) {
	read, _ := rtu.AppendRequest(nil, rtu.Request{Slave: 1, Function: 3, Address: 100, Quantity: 2})
	write, _ := rtu.AppendRequest(nil, rtu.Request{Slave: 1, Function: 16, Address: 110, Quantity: 2, Data: regs(1, 2)})
	coils, _ := rtu.AppendRequest(nil, rtu.Request{Slave: 1, Function: 15, Address: 0, Quantity: 9, Data: []byte{0xFF, 1}})
	var all []byte
	all = appendTLV(all, TLVHeartbeat, nil)
	all = appendTLV(all, TLVModbus, read)
	all = appendTLV(all, TLVData, nil)
	all = appendTLV(all, TLVModbus, write)
	all = appendTLV(all, 0x7F, []byte{1, 2, 3})
	all = appendTLV(all, TLVModbus, coils)
	f.Add(all, uint8(3))
	f.Add(appendTLV(nil, TLVModbus, append(read, 0xEE, 0xEE)), uint8(0))
	f.Add([]byte{TLVModbus, 0xFF, 1, 3}, uint8(200))
	f.Add([]byte{TLVModbus, 8, 1, 3, 0, 100, 0, 126}, uint8(7))
	f.Add(append([]byte{TLVHeartbeat, TLVData, TLVHeartbeat, 0}, appendTLV([]byte{TLVData}, TLVModbus, read)...), uint8(1))
}

// FuzzTLVDevice feeds hostile server bytes to a tlv device: it never panics,
// never stalls on a full buffer, and everything it sends is a well-formed
// TLVModbus frame holding an RTU frame with a good CRC.
func FuzzTLVDevice(f *testing.F) {
	tlvSeeds(f)
	// One map for all inputs: writes change its values, never which code runs.
	mp := testMap()
	f.Fuzz(func(t *testing.T, data []byte, chunk uint8) {
		conn := new(captureConn)
		cfg := DeviceConfig{Profile: ProfileTLV, Map: mp, Slaves: []uint8{1, 2}}
		st := new(Stats)
		d := newDevice(&cfg, st, conn)
		feed(t, d, data, int(chunk)%300+1)
		out := conn.out.Bytes()
		frames := 0
		for len(out) > 0 {
			typ, p, n, ok := ParseTLV(out)
			if !ok {
				t.Fatalf("incomplete frame sent: % X", out)
			}
			if typ != TLVModbus || len(p) < 5 || !rtu.CheckCRC(p) {
				t.Fatalf("bad frame sent: type 0x%02X % X", typ, p)
			}
			out = out[n:]
			frames++
		}
		if int64(frames) != st.Responses.Load() {
			t.Fatalf("%d frames sent, %d responses counted", frames, st.Responses.Load())
		}
	})
}

// FuzzLineDevice feeds hostile server bytes to a line device: every line it
// records is within the bound and holds no newline, and it answers each one.
func FuzzLineDevice(f *testing.F) {
	f.Add([]byte("set,DEV1,1\nreset,DEV1,\r\n"), uint8(5), uint8(16))
	f.Add([]byte(strings.Repeat("x", 600)+"\n\n\r\n"), uint8(255), uint8(0))
	f.Add([]byte("\x00\xff\n"), uint8(1), uint8(1))
	f.Fuzz(func(t *testing.T, data []byte, chunk, maxLen uint8) {
		conn := new(captureConn)
		limit := int(maxLen) + 1
		log := NewLineLog(4)
		cfg := DeviceConfig{
			Profile: ProfileLine, ID: []byte("D\n"), MaxLineLength: limit, Lines: log,
			OnLine: func(l string) {
				if len(l) > limit || strings.ContainsRune(l, '\n') {
					t.Fatalf("line of %d bytes (max %d): %q", len(l), limit, l)
				}
			},
			LineReply: func(l string) string { return "r" },
		}
		st := new(Stats)
		d := newDevice(&cfg, st, conn)
		feed(t, d, data, int(chunk)%600+1)
		want := int64(bytes.Count(data[:min(len(data), maxFuzzInput)], []byte{'\n'}))
		if st.LinesIn.Load() != want || log.Total() != want || int64(conn.out.Len()) != 2*want {
			t.Fatalf("%d newlines: %d lines, %d logged, %d bytes answered", want, st.LinesIn.Load(), log.Total(), conn.out.Len())
		}
		if len(d.line) > limit || cap(d.line) > shrinkLineCap+4*limit {
			t.Fatalf("line buffer %d/%d bytes", len(d.line), cap(d.line))
		}
	})
}

// BenchmarkTLVRead measures one 10-register read through a tlv device, from
// the frame in the read buffer to the response written.
func BenchmarkTLVRead(b *testing.B) {
	adu, _ := rtu.AppendRequest(nil, rtu.Request{Slave: 1, Function: 3, Address: 100, Quantity: 10})
	frame := appendTLV(nil, TLVModbus, adu)
	cfg := DeviceConfig{Profile: ProfileTLV, Map: testMap()}
	st := new(Stats)
	d := newDevice(&cfg, st, &captureConn{discard: true})
	b.ReportAllocs()
	for b.Loop() {
		copy(d.rbuf, frame)
		if _, err := d.process(len(frame), nil); err != nil {
			b.Fatal(err)
		}
	}
	if st.Responses.Load() == 0 {
		b.Fatal("no responses")
	}
}
