package dtu

import (
	"bytes"

	"github.com/voltedge/voltedge/internal/rtu"
)

// framerSize bounds the bytes buffered per link: two maximal RTU frames.
const framerSize = 512

// frameKind is what the framer found.
type frameKind uint8

const (
	needMore  frameKind = iota // nothing complete yet
	heartbeat                  // a heartbeat packet
	response                   // a candidate response frame for the pending request
)

// framer splits the byte stream of a transparent DTU link into heartbeats and
// Modbus RTU response frames. Heartbeats are recognised at frame boundaries
// wherever they appear (alone, or glued before or after a response). Bytes
// that are neither, and everything that arrives while no request is pending,
// are discarded and counted.
type framer struct {
	hb      []byte
	buf     []byte // buf[r:] is unconsumed
	r       int
	garbage uint64
}

func newFramer(hb []byte) *framer {
	return &framer{hb: hb, buf: make([]byte, 0, framerSize)}
}

// space returns the free tail of the buffer to read into, compacting first.
// If the buffer is full of unparseable bytes, the oldest are dropped.
func (f *framer) space() []byte {
	if f.r > 0 {
		n := copy(f.buf, f.buf[f.r:])
		f.buf = f.buf[:n]
		f.r = 0
	}
	if len(f.buf) == cap(f.buf) {
		drop := len(f.buf) / 2
		f.garbage += uint64(drop)
		n := copy(f.buf, f.buf[drop:])
		f.buf = f.buf[:n]
	}
	return f.buf[len(f.buf):cap(f.buf)]
}

// wrote records that n bytes were read into the slice space returned.
func (f *framer) wrote(n int) { f.buf = f.buf[:len(f.buf)+n] }

// push appends p (used for bytes that followed the registration, and by tests).
func (f *framer) push(p []byte) {
	for len(p) > 0 {
		sp := f.space()
		n := copy(sp, p)
		f.wrote(n)
		p = p[n:]
	}
}

// reset discards everything buffered (after a request timeout).
func (f *framer) reset() {
	f.garbage += uint64(len(f.buf) - f.r)
	f.buf = f.buf[:0]
	f.r = 0
}

// buffered is the number of unconsumed bytes.
func (f *framer) buffered() int { return len(f.buf) - f.r }

// next returns the next complete item. req is the pending request or nil. A
// returned frame is valid until the next call to space, push or reset.
func (f *framer) next(req *rtu.Request) (frameKind, []byte) {
	for {
		d := f.buf[f.r:]
		if len(d) == 0 {
			return needMore, nil
		}
		if len(f.hb) > 0 {
			if bytes.HasPrefix(d, f.hb) {
				f.r += len(f.hb)
				return heartbeat, nil
			}
			if len(d) < len(f.hb) && bytes.HasPrefix(f.hb, d) {
				return needMore, nil
			}
		}
		if req == nil {
			drop := f.garbageRun(d)
			f.r += drop
			f.garbage += uint64(drop)
			continue
		}
		n, ok := rtu.FrameLen(*req, d)
		if !ok {
			return needMore, nil
		}
		if n < 0 {
			f.r++
			f.garbage++
			continue
		}
		if len(d) < n {
			return needMore, nil
		}
		f.r += n
		return response, d[:n]
	}
}

// garbageRun is how many leading bytes of d cannot start a heartbeat.
func (f *framer) garbageRun(d []byte) int {
	if len(f.hb) == 0 {
		return len(d)
	}
	i := bytes.IndexByte(d[1:], f.hb[0])
	if i < 0 {
		return len(d)
	}
	return i + 1
}
