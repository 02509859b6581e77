package dtu

import (
	"bytes"
	"regexp"
	"testing"

	"github.com/voltedge/voltedge/comsrv/config"
	"github.com/voltedge/voltedge/internal/rtu"
)

var testPattern = regexp.MustCompile(config.DefaultPattern)

type got struct {
	kind  frameKind
	frame string
}

// collect feeds chunks into a framer and returns every item it yields.
func collect(f *framer, req *rtu.Request, chunks ...[]byte) []got {
	var out []got
	for _, c := range chunks {
		f.push(c)
		for {
			k, fr := f.next(req)
			if k == needMore {
				break
			}
			out = append(out, got{k, string(fr)})
		}
	}
	return out
}

func TestTLVRegistration(t *testing.T) {
	c := &tlvCodec{reg: &config.Registration{Regexp: testPattern}}
	if _, _, _, err := c.register([]byte{0, 0, 3}); err != errNeedMore {
		t.Fatalf("3 bytes: %v", err)
	}
	id, n, reply, err := c.register([]byte{0, 0, 0x03, 0xE9, 0x02, 0x00})
	if err != nil || id != "1001" || n != 4 || !bytes.Equal(reply, []byte{0x01}) {
		t.Fatalf("got %q %d % x %v", id, n, reply, err)
	}
	id, _, _, _ = c.register([]byte{0xFF, 0xFF, 0xFF, 0xFF})
	if id != "4294967295" {
		t.Fatalf("max id %q", id)
	}
}

func TestTLVFrames(t *testing.T) {
	c := &tlvCodec{reg: &config.Registration{}}
	f := newCodecFramer(c)
	req := rtu.Request{Slave: 1, Function: 3, Address: 0, Quantity: 1}
	resp := rtu.AppendResponse(nil, req, []byte{0x12, 0x34})
	stream := []byte{0x02, 0x00, 0x03, 0x03, 'a', 'b', 'c', 0x99, 0x04, byte(len(resp))}
	stream = append(stream, resp...)
	// Fed byte by byte, the result is the same as in one piece.
	for _, split := range []bool{false, true} {
		var chunks [][]byte
		if split {
			for i := range stream {
				chunks = append(chunks, stream[i:i+1])
			}
		} else {
			chunks = [][]byte{stream}
		}
		f := newCodecFramer(&tlvCodec{reg: &config.Registration{}})
		items := collect(f, &req, chunks...)
		want := []got{{heartbeat, ""}, {data, "abc"}, {response, string(resp)}}
		if len(items) != len(want) {
			t.Fatalf("split=%v: items %v", split, items)
		}
		for i := range want {
			if items[i] != want[i] {
				t.Fatalf("split=%v item %d: %v, want %v", split, i, items[i], want[i])
			}
		}
		if f.garbage != 1 {
			t.Fatalf("garbage %d, want 1 (the 0x99)", f.garbage)
		}
	}
	// An RTU frame while nothing is pending is skipped and counted.
	items := collect(f, nil, append([]byte{0x04, byte(len(resp))}, resp...))
	if len(items) != 0 || f.garbage != uint64(2+len(resp)) {
		t.Fatalf("unexpected frame: %v, garbage %d", items, f.garbage)
	}
	if !bytes.Equal(c.ack(heartbeat), []byte{0x02}) || !bytes.Equal(c.ack(data), []byte{0x03}) || c.ack(response) != nil {
		t.Fatal("acks")
	}
	if w := c.wrap(nil, []byte{1, 2, 3}); !bytes.Equal(w, []byte{0x04, 3, 1, 2, 3}) {
		t.Fatalf("wrap % x", w)
	}
}

func TestLineFrames(t *testing.T) {
	c := &lineCodec{reg: &config.Registration{Regexp: testPattern}, max: 16}
	f := newCodecFramer(c)
	f.push([]byte("DEV001\r\nDEV001\n"))
	id, n, reply, err := c.register(f.buf[f.r:])
	if err != nil || id != "DEV001" || n != 8 || reply != nil {
		t.Fatalf("register: %q %d %v", id, n, err)
	}
	f.r += n
	items := collect(f, nil, []byte("temp=21.5\n\n"), []byte("0123456789abcdefXYZ"), []byte("tail\nDEV"), []byte("001\n"))
	want := []got{{heartbeat, ""}, {data, "temp=21.5"}, {heartbeat, ""}}
	if len(items) != len(want) {
		t.Fatalf("items %v", items)
	}
	for i := range want {
		if items[i] != want[i] {
			t.Fatalf("item %d: %v, want %v", i, items[i], want[i])
		}
	}
	// The overlong line and the empty line were dropped.
	if f.garbage != uint64(len("0123456789abcdefXYZtail\n")+1) {
		t.Fatalf("garbage %d", f.garbage)
	}
}

func TestLineRegistrationRefusals(t *testing.T) {
	c := &lineCodec{reg: &config.Registration{Regexp: testPattern}, max: 16}
	for _, in := range []string{"\n", "bad id\n", "01234567890123456789\n", "<script>\n"} {
		if _, _, _, err := c.register([]byte(in)); err == nil || err == errNeedMore {
			t.Errorf("%q: %v", in, err)
		}
	}
	if _, _, _, err := c.register([]byte("DEV")); err != errNeedMore {
		t.Errorf("partial: %v", err)
	}
}

// FuzzProfiles feeds hostile bytes to every codec, registration first: nothing
// may panic, the buffer stays bounded and every item lies within the input.
func FuzzProfiles(f *testing.F) {
	f.Add(uint8(0), []byte("DEV1\nDEV1\nhello\n"), uint8(3))
	f.Add(uint8(1), []byte{0, 0, 0, 1, 2, 0, 3, 1, 'x', 4, 7, 1, 3, 2, 0, 1, 0x79, 0x84}, uint8(2))
	f.Add(uint8(2), []byte("DTU1\nwww.usr.cn\x01\x03\x02\x00\x01\x79\x84"), uint8(5))
	f.Fuzz(func(t *testing.T, profile uint8, in []byte, cut uint8) {
		reg := &config.Registration{Regexp: testPattern, TerminatorBytes: []byte("\n"), MaxLength: 64}
		var c codec
		switch profile % 3 {
		case 0:
			c = &lineCodec{reg: reg, max: 32}
		case 1:
			c = &tlvCodec{reg: reg}
		default:
			c = &transparentCodec{reg: reg, hb: []byte("www.usr.cn")}
		}
		fr := newCodecFramer(c)
		req := &rtu.Request{Slave: 1, Function: 3, Address: 0, Quantity: 1}
		registered := false
		for len(in) > 0 {
			n := int(cut)%7 + 1
			n = min(n, len(in))
			fr.push(in[:n])
			in = in[n:]
			if !registered {
				_, used, _, err := c.register(fr.buf[fr.r:])
				if err == errNeedMore {
					continue
				}
				if err != nil {
					return
				}
				if used <= 0 || used > fr.buffered() {
					t.Fatalf("register used %d of %d", used, fr.buffered())
				}
				fr.r += used
				registered = true
			}
			for {
				k, frame := fr.next(req)
				if k == needMore {
					break
				}
				if len(frame) > c.bufSize() {
					t.Fatalf("frame of %d bytes", len(frame))
				}
			}
			if fr.buffered() > c.bufSize() {
				t.Fatalf("buffered %d", fr.buffered())
			}
		}
	})
}
