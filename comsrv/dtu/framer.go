package dtu

import (
	"github.com/voltedge/voltedge/comsrv/config"
	"github.com/voltedge/voltedge/internal/rtu"
)

// framerSize bounds the bytes buffered per link: two maximal RTU frames.
const framerSize = 512

// frameKind is what the framer found.
type frameKind uint8

const (
	needMore   frameKind = iota // nothing complete yet
	heartbeat                   // a heartbeat packet
	response                    // a candidate response frame for the pending request
	data                        // a message of the device itself (a line, a tlv data frame)
	garbage                     // bytes that are none of these; skipped and counted
	unexpected                  // a well-formed RTU frame while nothing is pending; skipped and counted
)

// framer buffers the byte stream of one DTU link and splits it, through the
// profile's codec, into heartbeats, responses and device messages. Bytes
// that are none of these, and everything that arrives while no request is
// pending, are discarded and counted.
type framer struct {
	c       codec
	buf     []byte // buf[r:] is unconsumed
	r       int
	garbage uint64
}

// newFramer returns a framer for the transparent profile with heartbeat hb.
func newFramer(hb []byte) *framer {
	return newCodecFramer(&transparentCodec{reg: &config.Registration{}, hb: hb})
}

// newCodecFramer returns a framer that splits with c.
func newCodecFramer(c codec) *framer {
	return &framer{c: c, buf: make([]byte, 0, c.bufSize())}
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

// push appends p (used by tests to feed bytes).
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

// next returns the next complete item: a heartbeat, a response candidate for
// req (the pending request, or nil) or a device message. Garbage is skipped
// and counted. A returned frame is valid until the next call to space, push
// or reset.
func (f *framer) next(req *rtu.Request) (frameKind, []byte) {
	for {
		d := f.buf[f.r:]
		if len(d) == 0 {
			return needMore, nil
		}
		kind, n, frame := f.c.next(d, req)
		switch kind {
		case needMore:
			return needMore, nil
		case garbage, unexpected:
			n = max(n, 1)
			f.r += n
			f.garbage += uint64(n)
			continue
		}
		f.r += n
		return kind, frame
	}
}
