package dtu

import (
	"bytes"
	"testing"

	"github.com/voltedge/voltedge/internal/rtu"
)

var hbUSR = []byte("www.usr.cn")

// readReq is a FC3 read of 2 registers from slave 1.
var readReq = rtu.Request{Slave: 1, Function: rtu.ReadHoldingRegisters, Address: 2000, Quantity: 2}

func respFrame(t testing.TB) []byte {
	t.Helper()
	return rtu.AppendResponse(nil, readReq, []byte{0x08, 0x9D, 0x00, 0x0A})
}

type item struct {
	kind  frameKind
	frame []byte
}

// drain feeds chunks one by one and collects everything the framer yields.
func drain(f *framer, req *rtu.Request, chunks ...[]byte) []item {
	var out []item
	for _, c := range chunks {
		f.push(c)
		for {
			k, fr := f.next(req)
			if k == needMore {
				break
			}
			out = append(out, item{k, append([]byte(nil), fr...)})
		}
	}
	return out
}

func TestFramerHeartbeatAndResponse(t *testing.T) {
	frame := respFrame(t)
	glued := append(append(append([]byte{}, hbUSR...), frame...), hbUSR...)
	cases := []struct {
		name   string
		chunks [][]byte
		want   []frameKind
	}{
		{"heartbeat alone", [][]byte{hbUSR}, []frameKind{heartbeat}},
		{"heartbeat split", [][]byte{hbUSR[:3], hbUSR[3:7], hbUSR[7:]}, []frameKind{heartbeat}},
		{"response split in three", [][]byte{frame[:1], frame[1:4], frame[4:]}, []frameKind{response}},
		{"heartbeat glued before and after", [][]byte{glued}, []frameKind{heartbeat, response, heartbeat}},
		{"glued, split inside the heartbeat", [][]byte{glued[:len(hbUSR)+len(frame)+4], glued[len(hbUSR)+len(frame)+4:]}, []frameKind{heartbeat, response, heartbeat}},
		{"two heartbeats in one read", [][]byte{append(append([]byte{}, hbUSR...), hbUSR...)}, []frameKind{heartbeat, heartbeat}},
		{"garbage before response", [][]byte{{0xFF, 0x00, 0x07}, frame}, []frameKind{response}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := newFramer(hbUSR)
			got := drain(f, &readReq, tc.chunks...)
			if len(got) != len(tc.want) {
				t.Fatalf("got %d items %v, want %v", len(got), got, tc.want)
			}
			for i, it := range got {
				if it.kind != tc.want[i] {
					t.Fatalf("item %d: kind %d, want %d", i, it.kind, tc.want[i])
				}
				if it.kind == response && !bytes.Equal(it.frame, frame) {
					t.Fatalf("frame % x, want % x", it.frame, frame)
				}
			}
		})
	}
}

func TestFramerDiscardsWhenNothingPending(t *testing.T) {
	f := newFramer(hbUSR)
	late := respFrame(t)
	got := drain(f, nil, late, hbUSR, []byte("xxwww"), []byte(".usr.cn"))
	if len(got) != 2 || got[0].kind != heartbeat || got[1].kind != heartbeat {
		t.Fatalf("got %v, want two heartbeats", got)
	}
	if f.garbage != uint64(len(late)+2) {
		t.Fatalf("garbage %d, want %d", f.garbage, len(late)+2)
	}
}

func TestFramerBounded(t *testing.T) {
	f := newFramer(nil)
	junk := bytes.Repeat([]byte{0x01}, 4096) // slave 1 but never a valid function
	req := rtu.Request{Slave: 1, Function: rtu.ReadHoldingRegisters, Address: 0, Quantity: 125}
	for i := 0; i < 8; i++ {
		f.push(junk)
		for {
			if k, _ := f.next(&req); k == needMore {
				break
			}
		}
		if f.buffered() > framerSize {
			t.Fatalf("buffered %d > %d", f.buffered(), framerSize)
		}
	}
}

func TestFramerPartialHeartbeatWaits(t *testing.T) {
	f := newFramer(hbUSR)
	if got := drain(f, nil, []byte("www.u")); len(got) != 0 {
		t.Fatalf("partial heartbeat yielded %v", got)
	}
	if f.buffered() != 5 {
		t.Fatalf("buffered %d, want 5", f.buffered())
	}
}

// FuzzFramer feeds arbitrary bytes in arbitrary pieces: the framer never
// panics, stays bounded, and yields only frames of the length FrameLen gives.
// A known stream embedded after the junk is still recognised.
func FuzzFramer(f *testing.F) {
	frame := respFrame(f)
	f.Add([]byte{}, uint8(3), true)
	f.Add(append(append([]byte("www.usr.cn"), frame...), "www.usr.cn"...), uint8(5), true)
	f.Add([]byte{0x01, 0x83, 0x02, 0xC0, 0xF1}, uint8(1), true)
	f.Add(bytes.Repeat([]byte{0x01, 0x03, 0xFA}, 100), uint8(7), false)
	f.Fuzz(func(t *testing.T, data []byte, step uint8, pending bool) {
		fr := newFramer(hbUSR)
		var req *rtu.Request
		if pending {
			req = &readReq
		}
		n := int(step%32) + 1
		for len(data) > 0 {
			c := min(n, len(data))
			fr.push(data[:c])
			data = data[c:]
			for {
				k, b := fr.next(req)
				if k == needMore {
					break
				}
				if k == response {
					if want, ok := rtu.FrameLen(*req, b); !ok || want != len(b) {
						t.Fatalf("frame of %d bytes, FrameLen says %d %v", len(b), want, ok)
					}
				}
			}
			if fr.buffered() > framerSize {
				t.Fatalf("buffered %d", fr.buffered())
			}
		}
	})
}

// splitCase is a response and the request it answers, for the heartbeat-inside tests.
type splitCase struct {
	name  string
	req   rtu.Request
	frame []byte
}

func splitCases(t testing.TB) []splitCase {
	t.Helper()
	read := readReq
	long := rtu.Request{Slave: 7, Function: rtu.ReadInputRegisters, Address: 0, Quantity: 20}
	coils := rtu.Request{Slave: 1, Function: rtu.ReadCoils, Address: 0, Quantity: 10}
	write := rtu.Request{Slave: 1, Function: rtu.WriteSingleRegister, Address: 2020, Quantity: 1, Data: []byte{0x00, 0x2A}}
	return []splitCase{
		{"fc3", read, respFrame(t)},
		{"fc4 20 registers", long, rtu.AppendResponse(nil, long, bytes.Repeat([]byte{0x77, 0x2e}, 20))},
		{"fc1", coils, rtu.AppendResponse(nil, coils, []byte{0x77, 0x01})},
		{"fc6 echo", write, rtu.AppendResponse(nil, write, nil)},
		{"exception", read, rtu.AppendException(nil, 1, rtu.ReadHoldingRegisters, rtu.ExIllegalDataAddress)},
	}
}

// TestFramerHeartbeatInsideResponse puts the heartbeat between two pieces of
// a response at every byte: the framer reports the heartbeat, then the whole
// response, and counts no garbage, however the bytes are cut into reads.
func TestFramerHeartbeatInsideResponse(t *testing.T) {
	hbHex := []byte{0xFE, 0x01} // a short binary heartbeat
	for _, hb := range [][]byte{hbUSR, hbHex} {
		for _, sc := range splitCases(t) {
			for k := 1; k < len(sc.frame); k++ {
				stream := append(append(append([]byte{}, sc.frame[:k]...), hb...), sc.frame[k:]...)
				feeds := map[string][][]byte{
					"three reads": {sc.frame[:k], hb, sc.frame[k:]},
					"one read":    {stream},
					"two reads":   {sc.frame[:k], stream[k:]},
				}
				bytewise := make([][]byte, len(stream))
				for i := range stream {
					bytewise[i] = stream[i : i+1]
				}
				feeds["byte by byte"] = bytewise
				for feed, chunks := range feeds {
					f := newFramer(hb)
					got := drain(f, &sc.req, chunks...)
					if len(got) != 2 || got[0].kind != heartbeat || got[1].kind != response || !bytes.Equal(got[1].frame, sc.frame) {
						t.Fatalf("hb % x, %s, heartbeat after byte %d, %s: got %v, want a heartbeat then % x", hb, sc.name, k, feed, got, sc.frame)
					}
					if f.garbage != 0 || f.buffered() != 0 {
						t.Fatalf("hb % x, %s, heartbeat after byte %d, %s: garbage %d, buffered %d", hb, sc.name, k, feed, f.garbage, f.buffered())
					}
				}
			}
		}
	}
}

// TestFramerHeartbeatBytesInData: a response whose data hold the heartbeat
// bytes, with a good CRC, is taken whole. A corrupt response is handed over
// as it came (the link counts the CRC error): at once when no heartbeat
// bytes are inside, else once the bytes that would complete it without them
// have arrived and do not mend it.
func TestFramerHeartbeatBytesInData(t *testing.T) {
	req := rtu.Request{Slave: 1, Function: rtu.ReadHoldingRegisters, Address: 0, Quantity: 6}
	frame := rtu.AppendResponse(nil, req, append([]byte("www.usr.cn"), 0, 0))
	for _, chunks := range [][][]byte{{frame}, {frame[:5], frame[5:]}, {frame[:12], frame[12:]}} {
		f := newFramer(hbUSR)
		got := drain(f, &req, chunks...)
		if len(got) != 1 || got[0].kind != response || !bytes.Equal(got[0].frame, frame) {
			t.Fatalf("got %v, want the response % x whole", got, frame)
		}
	}
	plain := rtu.AppendResponse(nil, req, make([]byte, 12))
	plain[len(plain)-1] ^= 0xFF
	f := newFramer(hbUSR)
	if got := drain(f, &req, plain); len(got) != 1 || got[0].kind != response || !bytes.Equal(got[0].frame, plain) {
		t.Fatalf("corrupt frame: got %v, want it whole", got)
	}
	bad := append([]byte{}, frame...)
	bad[len(bad)-1] ^= 0xFF
	f = newFramer(hbUSR)
	if got := drain(f, &req, bad); len(got) != 0 {
		t.Fatalf("corrupt frame with heartbeat bytes inside: got %v before the bytes that decide it", got)
	}
	got := drain(f, &req, make([]byte, len(hbUSR)))
	if len(got) == 0 || got[0].kind != response || !bytes.Equal(got[0].frame, bad) {
		t.Fatalf("corrupt frame with heartbeat bytes inside: got %v, want it whole", got)
	}
}

// TestFramerNoAllocs: splitting responses, heartbeats inside them included,
// allocates nothing.
func TestFramerNoAllocs(t *testing.T) {
	frame := respFrame(t)
	inside := append(append(append([]byte{}, frame[:4]...), hbUSR...), frame[4:]...)
	f := newFramer(hbUSR)
	allocs := testing.AllocsPerRun(200, func() {
		for _, p := range [][]byte{frame, inside, hbUSR} {
			f.push(p)
			for {
				if k, _ := f.next(&readReq); k == needMore {
					break
				}
			}
		}
	})
	if allocs != 0 {
		t.Fatalf("%v allocations per run", allocs)
	}
}

// BenchmarkFramer splits a response with a heartbeat glued after it, and one
// with a heartbeat inside it.
func BenchmarkFramer(b *testing.B) {
	frame := respFrame(b)
	glued := append(append([]byte{}, frame...), hbUSR...)
	inside := append(append(append([]byte{}, frame[:4]...), hbUSR...), frame[4:]...)
	for _, bc := range []struct {
		name string
		in   []byte
	}{{"glued", glued}, {"inside", inside}} {
		b.Run(bc.name, func(b *testing.B) {
			f := newFramer(hbUSR)
			b.ReportAllocs()
			b.SetBytes(int64(len(bc.in)))
			for range b.N {
				f.push(bc.in)
				for {
					if k, _ := f.next(&readReq); k == needMore {
						break
					}
				}
			}
		})
	}
}
