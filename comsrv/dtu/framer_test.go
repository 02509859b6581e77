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
