package dtu

import (
	"bytes"

	"github.com/voltedge/voltedge/comsrv/config"
	"github.com/voltedge/voltedge/internal/rtu"
)

// codec is one DTU profile's framing: how a device registers, what its
// heartbeats and own messages look like, and how Modbus RTU frames travel
// on the link. A new vendor's handshake is one more codec.
//
// A codec holds the state of one connection and is used by its link's
// goroutine only. Every method works on bytes received from the device,
// which are hostile: they must be bounded and must never panic.
type codec interface {
	// register parses the registration at the start of d. It returns the
	// rendered id, the bytes used and the reply to send (nil for none);
	// errNeedMore asks for more bytes, any other error refuses the device.
	register(d []byte) (id string, n int, reply []byte, err error)
	// next finds the next item at the start of d (never empty). req is the
	// request in flight or nil. It returns the item's kind, its length in
	// bytes (the bytes to skip for garbage) and, for responses, data and
	// lines, the frame.
	next(d []byte, req *rtu.Request) (kind frameKind, n int, frame []byte)
	// ack is what the link sends back for an item of kind k (nil for none).
	ack(k frameKind) []byte
	// wrap appends to dst the bytes that carry a request ADU to the device.
	wrap(dst, adu []byte) []byte
	// polls reports whether the devices behind the link speak Modbus RTU.
	polls() bool
	// bufSize is the receive buffer a link needs.
	bufSize() int
}

// newCodec returns a fresh codec for a connection to listener l.
func newCodec(l *config.DTU) codec {
	switch l.Profile {
	case config.ProfileLine:
		return &lineCodec{reg: &l.Registration, max: l.Line.MaxLineLength}
	case config.ProfileTLV:
		return &tlvCodec{reg: &l.Registration}
	default:
		return &transparentCodec{reg: &l.Registration, hb: l.Heartbeat.Bytes}
	}
}

// transparentCodec is the profile of DTUs that pass Modbus RTU through
// unchanged: a registration packet, then heartbeat packets between RTU frames.
type transparentCodec struct {
	reg *config.Registration
	hb  []byte
}

func (c *transparentCodec) register(d []byte) (string, int, []byte, error) {
	id, n, err := parseRegistration(d, c.reg)
	return id, n, nil, err
}

func (c *transparentCodec) next(d []byte, req *rtu.Request) (frameKind, int, []byte) {
	if len(c.hb) > 0 {
		if bytes.HasPrefix(d, c.hb) {
			return heartbeat, len(c.hb), nil
		}
		if len(d) < len(c.hb) && bytes.HasPrefix(c.hb, d) {
			return needMore, 0, nil
		}
	}
	if req == nil {
		return garbage, c.garbageRun(d), nil
	}
	n, ok := rtu.FrameLen(*req, d)
	switch {
	case !ok:
		return needMore, 0, nil
	case n < 0:
		return garbage, 1, nil
	case len(d) < n:
		return needMore, 0, nil
	}
	return response, n, d[:n]
}

// garbageRun is how many leading bytes of d cannot start a heartbeat.
func (c *transparentCodec) garbageRun(d []byte) int {
	if len(c.hb) == 0 {
		return len(d)
	}
	i := bytes.IndexByte(d[1:], c.hb[0])
	if i < 0 {
		return len(d)
	}
	return i + 1
}

func (c *transparentCodec) ack(frameKind) []byte        { return nil }
func (c *transparentCodec) wrap(dst, adu []byte) []byte { return append(dst, adu...) }
func (c *transparentCodec) polls() bool                 { return true }
func (c *transparentCodec) bufSize() int                { return framerSize }
