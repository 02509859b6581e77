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
	// lines, the frame. It may reorder the bytes of d: the transparent
	// codec moves a heartbeat found inside a response in front of it.
	next(d []byte, req *rtu.Request) (kind frameKind, n int, frame []byte)
	// ack is what the link sends back for an item of kind k (nil for none).
	ack(k frameKind) []byte
	// wrap appends to dst the bytes that carry a request ADU to the device.
	wrap(dst, adu []byte) []byte
	// polls reports whether the devices behind the link speak Modbus RTU.
	polls() bool
	// bufSize is the receive buffer a link needs.
	bufSize() int
	// regSize is the buffer that holds the longest registration the codec
	// accepts, or enough bytes to refuse it (at most maxRegistration).
	regSize() int
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
	complete := ok && n > 0 && len(d) >= n
	if len(c.hb) > 0 && (!complete || bytes.IndexByte(d[1:n], c.hb[0]) >= 0) {
		// The bytes of a heartbeat may sit inside the response being
		// assembled: a DTU that sends serial data in pieces can beat
		// between two of them.
		if k := c.inside(d, n, complete, req); k != response {
			return k, len(c.hb), nil
		}
	}
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

// inside looks for the heartbeat inside the response to req that d starts
// with; n and complete are what rtu.FrameLen said of d. It returns
// heartbeat after moving a heartbeat found inside in front of the response
// (which the response then follows whole), needMore to wait for the bytes
// that decide it, or response to go on as if there were no heartbeat.
//
// A response with a good CRC is never changed, even if its data hold the
// heartbeat bytes. Otherwise a heartbeat that starts within the length of a
// response to req is removed when the response without it has a good CRC.
// Until the bytes that decide it have arrived, the framer waits: a corrupt
// response with the heartbeat bytes inside is handed over (and counted as a
// CRC error) once the bytes that would complete it without them are there,
// or dropped at the request's timeout. inside moves bytes within d and
// allocates nothing. It finds one heartbeat per response.
func (c *transparentCodec) inside(d []byte, n int, complete bool, req *rtu.Request) frameKind {
	if complete && rtu.CheckCRC(d[:n]) {
		return response
	}
	limit := max(rtu.ResponseLen(*req), exceptionLen)
	i, whole := c.find(d, limit)
	switch {
	case i < 0:
		return response
	case !whole:
		return needMore // the heartbeat (or the response) goes on in the next read
	}
	h := len(c.hb)
	// Try the stream without the heartbeat: d[:i] moves up behind it.
	copy(d[h:i+h], d[:i])
	copy(d, c.hb)
	s := d[h:]
	m, ok := rtu.FrameLen(*req, s)
	if ok && m > 0 && len(s) >= m && rtu.CheckCRC(s[:m]) {
		return heartbeat
	}
	c.undo(d, i)
	if !ok || (m > 0 && len(s) < m) {
		return needMore // without the heartbeat the response is not complete yet
	}
	return response
}

// undo reverses the move of inside: the heartbeat goes back behind d[:i].
func (c *transparentCodec) undo(d []byte, i int) {
	h := len(c.hb)
	copy(d[:i], d[h:h+i])
	copy(d[i:i+h], c.hb)
}

// exceptionLen is the length of an exception response.
const exceptionLen = 5

// find returns the first index i in [1, limit) where the heartbeat starts in
// d, whole (whole true) or cut off by the end of d; -1 if none.
func (c *transparentCodec) find(d []byte, limit int) (i int, whole bool) {
	end := min(len(d), limit)
	if end <= 1 {
		return -1, false
	}
	h := len(c.hb)
	if j := bytes.Index(d[1:min(len(d), end-1+h)], c.hb); j >= 0 {
		return j + 1, true
	}
	for i := max(1, len(d)-h+1); i < end; i++ {
		j := bytes.IndexByte(d[i:end], c.hb[0])
		if j < 0 {
			break
		}
		i += j
		if bytes.HasPrefix(c.hb, d[i:]) {
			return i, false
		}
	}
	return -1, false
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

func (c *transparentCodec) regSize() int {
	if c.reg.Mode == "fixed" {
		return min(c.reg.Length, maxRegistration)
	}
	// parseRegistration refuses more than max_length, the terminator and a "\r" without a terminator.
	limit := c.reg.MaxLength
	if limit <= 0 {
		limit = 64
	}
	return min(limit+max(len(c.reg.TerminatorBytes), 1)+2, maxRegistration)
}
