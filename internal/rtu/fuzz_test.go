package rtu

import (
	"bytes"
	"errors"
	"testing"
)

func FuzzFrameLenParseResponse(f *testing.F) {
	f.Add(uint8(1), uint8(3), uint16(0), uint16(10), []byte(nil), []byte{1, 3, 20, 0, 1})
	f.Add(uint8(1), uint8(3), uint16(0), uint16(2), []byte(nil), withCRC([]byte{1, 3, 4, 0, 1, 0, 2}))
	f.Add(uint8(1), uint8(3), uint16(0), uint16(2), []byte(nil), []byte{1, 0x83, 2, 0xC0, 0xF1})
	f.Add(uint8(1), uint8(1), uint16(0), uint16(9), []byte(nil), withCRC([]byte{1, 1, 2, 0xFF, 1}))
	f.Add(uint8(1), uint8(6), uint16(7), uint16(1), []byte{0, 9}, withCRC([]byte{1, 6, 0, 7, 0, 9}))
	f.Add(uint8(1), uint8(16), uint16(7), uint16(2), []byte{0, 9, 0, 1}, withCRC([]byte{1, 16, 0, 7, 0, 2}))
	f.Add(uint8(0), uint8(5), uint16(7), uint16(1), []byte{0xFF, 0}, []byte("www.usr.cn"))
	f.Fuzz(func(t *testing.T, slave, function uint8, addr, qty uint16, data, buf []byte) {
		r := Request{Slave: slave, Function: function, Address: addr, Quantity: qty, Data: data}
		valid := r.Validate() == nil
		rl := ResponseLen(r)
		if rl < 0 || (valid && rl > 5+255) {
			t.Fatalf("ResponseLen = %d", rl)
		}
		n, ok := FrameLen(r, buf)
		if !ok {
			if len(buf) >= 3 {
				t.Fatalf("FrameLen not ok with %d bytes", len(buf))
			}
			return
		}
		if n == -1 {
			return
		}
		if n < 5 || n > 5+255 {
			t.Fatalf("FrameLen = %d", n)
		}
		if n > len(buf) {
			return
		}
		payload, err := ParseResponse(r, buf[:n])
		if len(payload) > n {
			t.Fatalf("payload %d bytes from %d-byte frame", len(payload), n)
		}
		if err == nil && IsRead(r.Function) && len(payload) != rl-5 {
			t.Fatalf("payload %d bytes, ResponseLen %d", len(payload), rl)
		}
		if err == nil {
			// An accepted response is what a slave would have produced.
			again := AppendResponse(nil, r, payload)
			if !bytes.Equal(again, buf[:n]) {
				t.Fatalf("accepted % X, slave would send % X", buf[:n], again)
			}
		}
	})
}

func FuzzParseRequest(f *testing.F) {
	for _, tc := range knownRequests {
		fr, _ := AppendRequest(nil, tc.req)
		f.Add(fr)
	}
	f.Add([]byte{1, 3, 0, 0, 0, 10, 0xC5})
	f.Add(withCRC([]byte{1, 3, 0, 0, 0, 126}))
	f.Add([]byte("www.usr.cn"))
	f.Add([]byte{0xFF, 0x10, 0, 0, 0, 0xFF, 0xFE})
	f.Fuzz(func(t *testing.T, buf []byte) {
		r, n, err := ParseRequest(buf)
		if n < 0 || n > len(buf) || n > MaxFrameLen {
			t.Fatalf("n = %d for %d bytes", n, len(buf))
		}
		switch {
		case err == nil:
			if n == 0 {
				t.Fatal("accepted an empty frame")
			}
			out, aerr := AppendRequest(nil, r)
			if aerr != nil {
				t.Fatalf("accepted request %+v does not validate: %v", r, aerr)
			}
			if !bytes.Equal(out, buf[:n]) {
				t.Fatalf("round trip % X, want % X", out, buf[:n])
			}
		case errors.Is(err, ErrInvalid):
			if n == 0 || !CheckCRC(buf[:n]) {
				t.Fatalf("invalid request without a frame: n=%d", n)
			}
		default:
			if n != 0 {
				t.Fatalf("n = %d with error %v", n, err)
			}
		}
	})
}
