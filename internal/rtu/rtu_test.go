package rtu

import (
	"bytes"
	"encoding/hex"
	"errors"
	"strings"
	"testing"
)

func unhex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(strings.ReplaceAll(s, " ", ""))
	if err != nil {
		t.Fatalf("bad hex %q: %v", s, err)
	}
	return b
}

// bitwiseCRC is the textbook shift-and-xor Modbus CRC, to check the table.
func bitwiseCRC(b []byte) uint16 {
	crc := uint16(0xFFFF)
	for _, c := range b {
		crc ^= uint16(c)
		for range 8 {
			if crc&1 != 0 {
				crc = crc>>1 ^ 0xA001
			} else {
				crc >>= 1
			}
		}
	}
	return crc
}

// withCRC appends the CRC computed bit by bit.
func withCRC(b []byte) []byte {
	c := bitwiseCRC(b)
	return append(b, byte(c), byte(c>>8))
}

func TestCRC16(t *testing.T) {
	if got := CRC16([]byte("123456789")); got != 0x4B37 {
		t.Fatalf("CRC16(123456789) = %#04x, want 0x4b37", got)
	}
	if got := CRC16(nil); got != 0xFFFF {
		t.Fatalf("CRC16(nil) = %#04x", got)
	}
	buf := make([]byte, 300)
	for i := range buf {
		buf[i] = byte(i*7 + 3)
	}
	for n := range len(buf) {
		if CRC16(buf[:n]) != bitwiseCRC(buf[:n]) {
			t.Fatalf("table and bitwise CRC differ at length %d", n)
		}
	}
	if CheckCRC([]byte{1}) || !CheckCRC(unhex(t, "01 03 00 00 00 0A C5 CD")) {
		t.Fatal("CheckCRC")
	}
}

// Known request frames (reference examples of the Modbus RTU documentation).
var knownRequests = []struct {
	name  string
	req   Request
	frame string
}{
	{"FC1", Request{Slave: 0x11, Function: ReadCoils, Address: 0x13, Quantity: 0x25}, "11 01 00 13 00 25 0E 84"},
	{"FC2", Request{Slave: 0x11, Function: ReadDiscreteInputs, Address: 0xC4, Quantity: 0x16}, "11 02 00 C4 00 16 BA A9"},
	{"FC3", Request{Slave: 1, Function: ReadHoldingRegisters, Address: 0, Quantity: 10}, "01 03 00 00 00 0A C5 CD"},
	{"FC3b", Request{Slave: 0x11, Function: ReadHoldingRegisters, Address: 0x6B, Quantity: 3}, "11 03 00 6B 00 03 76 87"},
	{"FC4", Request{Slave: 0x11, Function: ReadInputRegisters, Address: 8, Quantity: 1}, "11 04 00 08 00 01 B2 98"},
	{"FC5", Request{Slave: 0x11, Function: WriteSingleCoil, Address: 0xAC, Quantity: 1, Data: []byte{0xFF, 0}}, "11 05 00 AC FF 00 4E 8B"},
	{"FC6", Request{Slave: 0x11, Function: WriteSingleRegister, Address: 1, Quantity: 1, Data: []byte{0, 3}}, "11 06 00 01 00 03 9A 9B"},
	{"FC15", Request{Slave: 0x11, Function: WriteMultipleCoils, Address: 0x13, Quantity: 10, Data: []byte{0xCD, 0x01}}, "11 0F 00 13 00 0A 02 CD 01 BF 0B"},
	{"FC16", Request{Slave: 0x11, Function: WriteMultipleRegisters, Address: 1, Quantity: 2, Data: []byte{0, 0x0A, 1, 2}}, "11 10 00 01 00 02 04 00 0A 01 02 C6 F0"},
}

func TestAppendAndParseRequestKnownFrames(t *testing.T) {
	for _, tc := range knownRequests {
		t.Run(tc.name, func(t *testing.T) {
			want := unhex(t, tc.frame)
			got, err := AppendRequest(nil, tc.req)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, want) {
				t.Fatalf("AppendRequest = % X, want % X", got, want)
			}
			// Parsing gives the same request back, also with trailing bytes.
			r, n, err := ParseRequest(append(want, 0x01, 0x03))
			if err != nil || n != len(want) {
				t.Fatalf("ParseRequest: n=%d err=%v", n, err)
			}
			if r.Slave != tc.req.Slave || r.Function != tc.req.Function || r.Address != tc.req.Address ||
				r.Quantity != tc.req.Quantity || !bytes.Equal(r.Data, tc.req.Data) {
				t.Fatalf("ParseRequest = %+v, want %+v", r, tc.req)
			}
			// Every strict prefix is truncated.
			for i := range len(want) {
				if _, _, err := ParseRequest(want[:i]); err != ErrTruncated {
					t.Fatalf("prefix %d: err = %v, want ErrTruncated", i, err)
				}
			}
			// A flipped CRC is detected.
			bad := bytes.Clone(want)
			bad[len(bad)-1] ^= 0x55
			if _, _, err := ParseRequest(bad); !errors.Is(err, ErrCRC) {
				t.Fatalf("bad CRC: err = %v", err)
			}
		})
	}
}

func TestAppendRequestNoAlloc(t *testing.T) {
	buf := make([]byte, 0, MaxFrameLen)
	for _, tc := range knownRequests {
		allocs := testing.AllocsPerRun(100, func() {
			if _, err := AppendRequest(buf[:0], tc.req); err != nil {
				t.Fatal(err)
			}
		})
		if allocs != 0 {
			t.Fatalf("%s: %v allocs", tc.name, allocs)
		}
	}
}

func TestValidate(t *testing.T) {
	regs := func(n int) []byte { return make([]byte, 2*n) }
	cases := []struct {
		name string
		req  Request
		ok   bool
	}{
		{"read ok", Request{Slave: 1, Function: 3, Quantity: 125}, true},
		{"read 126", Request{Slave: 1, Function: 3, Quantity: 126}, false},
		{"read 0", Request{Slave: 1, Function: 4, Quantity: 0}, false},
		{"slave 247", Request{Slave: 247, Function: 3, Quantity: 1}, true},
		{"slave 248", Request{Slave: 248, Function: 3, Quantity: 1}, false},
		{"broadcast read", Request{Slave: 0, Function: 3, Quantity: 1}, false},
		{"broadcast write", Request{Slave: 0, Function: 6, Data: []byte{0, 1}}, true},
		{"bits 2000", Request{Slave: 1, Function: 1, Quantity: 2000}, true},
		{"bits 2001", Request{Slave: 1, Function: 2, Quantity: 2001}, false},
		{"read with data", Request{Slave: 1, Function: 3, Quantity: 1, Data: []byte{1}}, false},
		{"address overflow", Request{Slave: 1, Function: 3, Address: 65535, Quantity: 2}, false},
		{"address end", Request{Slave: 1, Function: 3, Address: 65535, Quantity: 1}, true},
		{"coil bad value", Request{Slave: 1, Function: 5, Data: []byte{0x12, 0x34}}, false},
		{"coil off", Request{Slave: 1, Function: 5, Data: []byte{0, 0}}, true},
		{"single short", Request{Slave: 1, Function: 6, Data: []byte{0}}, false},
		{"single qty 2", Request{Slave: 1, Function: 6, Quantity: 2, Data: []byte{0, 0}}, false},
		{"fc15 1968", Request{Slave: 1, Function: 15, Quantity: 1968, Data: make([]byte, 246)}, true},
		{"fc15 1969", Request{Slave: 1, Function: 15, Quantity: 1969, Data: make([]byte, 247)}, false},
		{"fc15 len", Request{Slave: 1, Function: 15, Quantity: 9, Data: make([]byte, 1)}, false},
		{"fc16 123", Request{Slave: 1, Function: 16, Quantity: 123, Data: regs(123)}, true},
		{"fc16 124", Request{Slave: 1, Function: 16, Quantity: 124, Data: regs(124)}, false},
		{"fc16 len", Request{Slave: 1, Function: 16, Quantity: 2, Data: regs(1)}, false},
		{"fc 7", Request{Slave: 1, Function: 7}, false},
	}
	for _, tc := range cases {
		err := tc.req.Validate()
		if (err == nil) != tc.ok {
			t.Errorf("%s: Validate = %v, want ok=%v", tc.name, err, tc.ok)
		}
		if err != nil && !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: error %v does not wrap ErrInvalid", tc.name, err)
		}
		if _, aerr := AppendRequest(nil, tc.req); (aerr == nil) != tc.ok {
			t.Errorf("%s: AppendRequest err = %v", tc.name, aerr)
		}
	}
}

func TestResponseLen(t *testing.T) {
	cases := []struct {
		req  Request
		want int
	}{
		{Request{Slave: 1, Function: 3, Quantity: 10}, 25},
		{Request{Slave: 1, Function: 4, Quantity: 125}, 255},
		{Request{Slave: 1, Function: 1, Quantity: 1}, 6},
		{Request{Slave: 1, Function: 2, Quantity: 8}, 6},
		{Request{Slave: 1, Function: 1, Quantity: 9}, 7},
		{Request{Slave: 1, Function: 5}, 8},
		{Request{Slave: 1, Function: 6}, 8},
		{Request{Slave: 1, Function: 15, Quantity: 20}, 8},
		{Request{Slave: 1, Function: 16, Quantity: 20}, 8},
		{Request{Slave: 0, Function: 16, Quantity: 20}, 0},
		{Request{Slave: 1, Function: 9}, 0},
	}
	for _, tc := range cases {
		if got := ResponseLen(tc.req); got != tc.want {
			t.Errorf("ResponseLen(%+v) = %d, want %d", tc.req, got, tc.want)
		}
	}
}

func TestResponsesEveryFunction(t *testing.T) {
	cases := []struct {
		name    string
		req     Request
		payload []byte
		frame   string
	}{
		{"FC1", Request{Slave: 0x11, Function: 1, Address: 0x13, Quantity: 0x25}, unhex(t, "CD 6B B2 0E 1B"), "11 01 05 CD 6B B2 0E 1B 45 E6"},
		{"FC2", Request{Slave: 0x11, Function: 2, Address: 0xC4, Quantity: 0x16}, unhex(t, "AC DB 35"), "11 02 03 AC DB 35 20 18"},
		{"FC3", Request{Slave: 0x11, Function: 3, Address: 0x6B, Quantity: 3}, unhex(t, "AE 41 56 52 43 40"), "11 03 06 AE 41 56 52 43 40 49 AD"},
		{"FC4", Request{Slave: 0x11, Function: 4, Address: 8, Quantity: 1}, unhex(t, "00 0A"), "11 04 02 00 0A F8 F4"},
		{"FC5", Request{Slave: 0x11, Function: 5, Address: 0xAC, Quantity: 1, Data: []byte{0xFF, 0}}, nil, "11 05 00 AC FF 00 4E 8B"},
		{"FC6", Request{Slave: 0x11, Function: 6, Address: 1, Quantity: 1, Data: []byte{0, 3}}, nil, "11 06 00 01 00 03 9A 9B"},
		{"FC15", Request{Slave: 0x11, Function: 15, Address: 0x13, Quantity: 10, Data: []byte{0xCD, 1}}, nil, "11 0F 00 13 00 0A 26 99"},
		{"FC16", Request{Slave: 0x11, Function: 16, Address: 1, Quantity: 2, Data: []byte{0, 0x0A, 1, 2}}, nil, "11 10 00 01 00 02 12 98"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			want := unhex(t, tc.frame)
			got := AppendResponse(nil, tc.req, tc.payload)
			if !bytes.Equal(got, want) {
				t.Fatalf("AppendResponse = % X, want % X", got, want)
			}
			if !CheckCRC(want) || !bytes.Equal(withCRC(bytes.Clone(want[:len(want)-2])), want) {
				t.Fatalf("reference frame has a bad CRC")
			}
			if n := ResponseLen(tc.req); n != len(want) {
				t.Fatalf("ResponseLen = %d, want %d", n, len(want))
			}
			// FrameLen needs a few bytes, then knows the length.
			for i := range len(want) + 1 {
				n, ok := FrameLen(tc.req, want[:i])
				if i < 2 || (i < 3 && IsRead(tc.req.Function)) {
					if ok {
						t.Fatalf("FrameLen with %d bytes: ok", i)
					}
					continue
				}
				if !ok || n != len(want) {
					t.Fatalf("FrameLen with %d bytes = %d, %v", i, n, ok)
				}
			}
			payload, err := ParseResponse(tc.req, want)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(payload, tc.payload) {
				t.Fatalf("payload = % X, want % X", payload, tc.payload)
			}
			if len(payload) > 0 && &payload[0] != &want[3] {
				t.Fatal("payload is not a sub-slice of the frame")
			}
			bad := bytes.Clone(want)
			bad[2] ^= 1
			if _, err := ParseResponse(tc.req, bad); !errors.Is(err, ErrCRC) {
				t.Fatalf("corrupted: err = %v", err)
			}
			if _, err := ParseResponse(tc.req, want[:4]); !errors.Is(err, ErrTruncated) {
				t.Fatalf("short: err = %v", err)
			}
		})
	}
}

func TestExceptions(t *testing.T) {
	req := Request{Slave: 1, Function: 3, Address: 0, Quantity: 10}
	frame := unhex(t, "01 83 02 C0 F1")
	if got := AppendException(nil, 1, 3, ExIllegalDataAddress); !bytes.Equal(got, frame) {
		t.Fatalf("AppendException = % X", got)
	}
	if n, ok := FrameLen(req, frame[:2]); !ok || n != 5 {
		t.Fatalf("FrameLen = %d, %v", n, ok)
	}
	_, err := ParseResponse(req, frame)
	var ex *ExceptionError
	if !errors.As(err, &ex) || ex.Code != 2 || ex.Function != 3 {
		t.Fatalf("err = %v", err)
	}
	if !strings.Contains(err.Error(), "illegal data address") {
		t.Fatalf("message %q", err)
	}
	names := map[uint8]string{
		1: "illegal function", 2: "illegal data address", 3: "illegal data value", 4: "slave device failure",
		5: "acknowledge", 6: "busy", 8: "memory parity", 0x0A: "gateway path unavailable",
		0x0B: "gateway target", 0x42: "unknown",
	}
	for code, name := range names {
		e := &ExceptionError{Function: 16, Code: code}
		if !strings.Contains(e.Error(), name) {
			t.Errorf("code %d: %q lacks %q", code, e.Error(), name)
		}
		f := AppendException(nil, 9, 16, code)
		_, err := ParseResponse(Request{Slave: 9, Function: 16, Quantity: 1, Data: []byte{0, 0}}, f)
		if !errors.As(err, &ex) || ex.Code != code {
			t.Errorf("code %d: err = %v", code, err)
		}
	}
}

func TestMismatches(t *testing.T) {
	req := Request{Slave: 1, Function: 3, Address: 0, Quantity: 2}
	cases := []struct {
		name  string
		frame []byte
	}{
		{"other slave", withCRC([]byte{2, 3, 4, 0, 1, 0, 2})},
		{"other function", withCRC([]byte{1, 4, 4, 0, 1, 0, 2})},
		{"short count", withCRC([]byte{1, 3, 2, 0, 1})},
		{"long count", withCRC([]byte{1, 3, 6, 0, 1, 0, 2, 0, 3})},
		{"count vs length", withCRC([]byte{1, 3, 4, 0, 1, 0, 2, 9})},
		{"long exception", withCRC([]byte{1, 0x83, 2, 0})},
	}
	for _, tc := range cases {
		if _, err := ParseResponse(req, tc.frame); !errors.Is(err, ErrMismatch) {
			t.Errorf("%s: err = %v", tc.name, err)
		}
	}
	// FrameLen consumes a read whose count is wrong, so ParseResponse can report it.
	if n, ok := FrameLen(req, cases[2].frame); !ok || n != len(cases[2].frame) {
		t.Errorf("FrameLen wrong count = %d, %v", n, ok)
	}
	if n, ok := FrameLen(req, []byte{2, 3}); !ok || n != -1 {
		t.Errorf("FrameLen other slave = %d, %v", n, ok)
	}
	if n, ok := FrameLen(req, []byte{1, 6}); !ok || n != -1 {
		t.Errorf("FrameLen other function = %d, %v", n, ok)
	}
	if n, ok := FrameLen(Request{Slave: 0, Function: 6}, []byte{0, 6}); !ok || n != -1 {
		t.Errorf("FrameLen broadcast = %d, %v", n, ok)
	}

	wr := Request{Slave: 1, Function: 6, Address: 10, Data: []byte{0x12, 0x34}}
	for name, f := range map[string][]byte{
		"address": withCRC([]byte{1, 6, 0, 11, 0x12, 0x34}),
		"value":   withCRC([]byte{1, 6, 0, 10, 0x12, 0x35}),
		"length":  withCRC([]byte{1, 6, 0, 10, 0x12, 0x34, 0}),
	} {
		if _, err := ParseResponse(wr, f); !errors.Is(err, ErrMismatch) {
			t.Errorf("write %s: err = %v", name, err)
		}
	}
	mr := Request{Slave: 1, Function: 16, Address: 10, Quantity: 2, Data: make([]byte, 4)}
	if _, err := ParseResponse(mr, withCRC([]byte{1, 16, 0, 10, 0, 3})); !errors.Is(err, ErrMismatch) {
		t.Errorf("write quantity: err = %v", err)
	}
	if _, err := ParseResponse(mr, withCRC([]byte{1, 16, 0, 10, 0, 2})); err != nil {
		t.Errorf("write ok: err = %v", err)
	}
}

func TestParseRequestErrors(t *testing.T) {
	cases := []struct {
		name  string
		buf   []byte
		want  error
		wantN int
	}{
		{"empty", nil, ErrTruncated, 0},
		{"slave 248", []byte{248}, ErrMalformed, 0},
		{"one byte", []byte{1}, ErrTruncated, 0},
		{"unknown function", []byte{1, 7}, ErrMalformed, 0},
		{"exception flag", []byte{1, 0x83}, ErrMalformed, 0},
		{"broadcast read", []byte{0, 3}, ErrMalformed, 0},
		{"fc16 header", []byte{1, 16, 0, 0, 0, 2}, ErrTruncated, 0},
		{"fc16 bad count", []byte{1, 16, 0, 0, 0, 2, 5}, ErrMalformed, 0},
		{"fc15 zero qty", []byte{1, 15, 0, 0, 0, 0, 0}, ErrMalformed, 0},
		{"fc16 body", []byte{1, 16, 0, 0, 0, 2, 4, 0, 0}, ErrTruncated, 0},
		{"crc", []byte{1, 3, 0, 0, 0, 10, 0xC5, 0xCE}, ErrCRC, 0},
		{"qty 126", withCRC([]byte{1, 3, 0, 0, 0, 126}), ErrInvalid, 8},
		{"qty 0", withCRC([]byte{1, 3, 0, 0, 0, 0}), ErrInvalid, 8},
		{"coil value", withCRC([]byte{1, 5, 0, 0, 0x12, 0x34}), ErrInvalid, 8},
		{"fc16 124", withCRC(append([]byte{1, 16, 0, 0, 0, 124, 248}, make([]byte, 248)...)), ErrInvalid, 257},
		{"overflow", withCRC([]byte{1, 3, 0xFF, 0xFF, 0, 2}), ErrInvalid, 8},
	}
	for _, tc := range cases {
		r, n, err := ParseRequest(tc.buf)
		if !errors.Is(err, tc.want) || n != tc.wantN {
			t.Errorf("%s: n=%d err=%v, want n=%d %v", tc.name, n, err, tc.wantN, tc.want)
		}
		if errors.Is(err, ErrInvalid) && (r.Slave != tc.buf[0] || r.Function != tc.buf[1]) {
			t.Errorf("%s: invalid request lacks slave/function: %+v", tc.name, r)
		}
	}
}

// TestParseRequestResync drops a byte after each error and finds the requests in a stream.
func TestParseRequestResync(t *testing.T) {
	var stream []byte
	stream = append(stream, 0xFF, 0x01, 0x03, 0x00) // garbage, including a partial header
	for _, tc := range knownRequests {
		stream = append(stream, unhex(t, tc.frame)...)
		stream = append(stream, 0xFE)
	}
	var found int
	for len(stream) > 0 {
		r, n, err := ParseRequest(stream)
		switch {
		case err == nil:
			if tc := knownRequests[found]; r.Function != tc.req.Function || r.Address != tc.req.Address {
				t.Fatalf("request %d = %+v, want %+v", found, r, tc.req)
			}
			found++
			stream = stream[n:]
		case err == ErrTruncated:
			stream = nil
		default:
			stream = stream[1:]
		}
	}
	if found != len(knownRequests) {
		t.Fatalf("found %d requests, want %d", found, len(knownRequests))
	}
}

func TestBits(t *testing.T) {
	bits := []bool{true, false, true, true, false, false, true, true, true, false, true}
	packed := PackBits(nil, bits)
	if !bytes.Equal(packed, []byte{0xCD, 0x05}) {
		t.Fatalf("PackBits = % X", packed)
	}
	for i, b := range bits {
		if Bit(packed, i) != b {
			t.Fatalf("Bit %d", i)
		}
	}
	if Bit(packed, 16) || Bit(packed, -1) {
		t.Fatal("Bit out of range")
	}
	if got := PackBits(nil, bits[:8]); len(got) != 1 {
		t.Fatalf("8 bits packed into %d bytes", len(got))
	}
}

func BenchmarkAppendRequestParseResponse(b *testing.B) {
	req := Request{Slave: 1, Function: ReadHoldingRegisters, Address: 2000, Quantity: 100}
	resp := AppendResponse(nil, req, make([]byte, 200))
	buf := make([]byte, 0, MaxFrameLen)
	b.ReportAllocs()
	b.SetBytes(int64(len(resp)))
	for b.Loop() {
		var err error
		buf, err = AppendRequest(buf[:0], req)
		if err != nil {
			b.Fatal(err)
		}
		n, ok := FrameLen(req, resp)
		if !ok || n != len(resp) {
			b.Fatal("FrameLen")
		}
		if _, err := ParseResponse(req, resp[:n]); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkAppendRequestParseResponseWrite(b *testing.B) {
	req := Request{Slave: 1, Function: WriteMultipleRegisters, Address: 2000, Quantity: 2, Data: []byte{1, 2, 3, 4}}
	resp := AppendResponse(nil, req, nil)
	buf := make([]byte, 0, MaxFrameLen)
	b.ReportAllocs()
	for b.Loop() {
		var err error
		buf, err = AppendRequest(buf[:0], req)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := ParseResponse(req, resp); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkParseRequest(b *testing.B) {
	frame, _ := AppendRequest(nil, Request{Slave: 1, Function: 3, Address: 2000, Quantity: 100})
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := ParseRequest(frame); err != nil {
			b.Fatal(err)
		}
	}
}
