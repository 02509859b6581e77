package fleet

import (
	"errors"
	"fmt"
	"io"
	"net"
	"time"

	"github.com/voltedge/voltedge/internal/rtu"
)

// Frame types of the tlv profile. After the 4-byte registration id and the
// server's single ack byte TLVAck, both sides exchange frames
// [type u8][len u8][payload, len bytes]. The server answers a heartbeat or a
// data frame with an empty frame of the same type ("02 00", "03 00") or with
// the bare type byte ("02", "03"); a device accepts both: a type byte not
// followed by 0x00 is a bare ack, and after the first bare ack (or with
// DeviceConfig.TLVBareAcks) every heartbeat and data type byte is one.
const (
	// TLVAck is the single byte the server answers a registration with (not a frame).
	TLVAck = 0x01
	// TLVHeartbeat: the device sends one with an empty payload every
	// heartbeat interval; the server acks it.
	TLVHeartbeat = 0x02
	// TLVData: the device's own data; the server acks it.
	TLVData = 0x03
	// TLVModbus carries one Modbus RTU frame (with CRC): a request from the
	// server, the slave's response from the device.
	TLVModbus = 0x04
)

const (
	tlvHeaderLen  = 2
	maxTLVPayload = 255
	// MaxTLVFrameLen is the longest tlv frame: header and 255 payload bytes.
	MaxTLVFrameLen = tlvHeaderLen + maxTLVPayload
)

// AppendTLV appends the frame [typ][len(payload)][payload] to dst. It fails
// when the payload is longer than 255 bytes.
func AppendTLV(dst []byte, typ byte, payload []byte) ([]byte, error) {
	if len(payload) > maxTLVPayload {
		return dst, fmt.Errorf("tlv frame type 0x%02X: payload of %d bytes, at most %d fit", typ, len(payload), maxTLVPayload)
	}
	return appendTLV(dst, typ, payload), nil
}

// appendTLV is AppendTLV for a payload known to fit.
func appendTLV(dst []byte, typ byte, payload []byte) []byte {
	dst = append(dst, typ, byte(len(payload)))
	return append(dst, payload...)
}

// ParseTLV reads one frame at the start of buf. ok is false while buf holds
// less than a whole frame; otherwise n is the frame's length and payload
// aliases buf. Every type and length byte is well-formed, so there is no
// error case: a reader only has to wait for more bytes.
func ParseTLV(buf []byte) (typ byte, payload []byte, n int, ok bool) {
	if len(buf) < tlvHeaderLen {
		return 0, nil, 0, false
	}
	n = tlvHeaderLen + int(buf[1])
	if len(buf) < n {
		return 0, nil, 0, false
	}
	return buf[0], buf[tlvHeaderLen:n:n], n, true
}

// awaitAck waits up to AckTimeout for the server's registration ack. It
// returns how many bytes that followed the ack are left at the start of rbuf.
func (d *device) awaitAck() (int, error) {
	wait := orDefault(d.cfg.AckTimeout, DefaultAckTimeout)
	if err := d.conn.SetReadDeadline(time.Now().Add(wait)); err != nil {
		return 0, fmt.Errorf("set read deadline: %w", err)
	}
	for {
		m, err := d.conn.Read(d.rbuf)
		if m > 0 {
			d.st.BytesIn.Add(int64(m))
			if d.rbuf[0] != TLVAck {
				return 0, fmt.Errorf("registration refused: got byte 0x%02X, want ack 0x%02X", d.rbuf[0], TLVAck)
			}
			d.st.RegistrationAcks.Add(1)
			return copy(d.rbuf, d.rbuf[1:m]), nil
		}
		if err != nil {
			var ne net.Error
			switch {
			case errors.As(err, &ne) && ne.Timeout():
				return 0, fmt.Errorf("no registration ack within %v", wait)
			case errors.Is(err, io.EOF):
				return 0, errors.New("connection closed by server before the registration ack")
			}
			return 0, fmt.Errorf("read registration ack: %w", err)
		}
	}
}

// processTLV handles the complete frames in rbuf[:n], keeps the rest at the
// start of rbuf and returns its length. A write error replaces readErr.
// A frame is at most MaxTLVFrameLen bytes, which rbuf always holds.
func (d *device) processTLV(n int, readErr error) (int, error) {
	buf := d.rbuf[:n]
	off := 0
	for off < len(buf) {
		if t := buf[off]; t == TLVHeartbeat || t == TLVData {
			if !d.bareAcks && off+1 == len(buf) {
				break // a bare ack or the start of an empty frame: wait for the next byte
			}
			if d.bareAcks || buf[off+1] != 0 {
				d.bareAcks = true
				off++
				d.countAck(t)
				continue
			}
		}
		typ, payload, m, ok := ParseTLV(buf[off:])
		if !ok {
			break
		}
		off += m
		if err := d.handleTLV(typ, payload); err != nil {
			return 0, err
		}
	}
	return copy(d.rbuf, buf[off:]), readErr
}

// countAck counts a heartbeat or data ack.
func (d *device) countAck(typ byte) {
	if typ == TLVHeartbeat {
		d.st.HeartbeatAcks.Add(1)
	} else {
		d.st.DataAcks.Add(1)
	}
}

// handleTLV acts on one frame from the server.
func (d *device) handleTLV(typ byte, payload []byte) error {
	switch typ {
	case TLVHeartbeat, TLVData: // only empty ones reach here
		d.countAck(typ)
	case TLVModbus:
		r, m, err := rtu.ParseRequest(payload)
		if err != nil && !errors.Is(err, rtu.ErrInvalid) {
			d.st.BadFrames.Add(1) // no whole, valid request inside
			return nil
		}
		if extra := len(payload) - m; extra > 0 {
			d.st.GarbageBytes.Add(int64(extra))
		}
		if r.Slave != 0 && d.slaves[r.Slave/64]&(1<<(r.Slave%64)) == 0 {
			return nil // another slave on the bus would answer
		}
		return d.handle(r, err)
	default:
		d.st.BadFrames.Add(1)
	}
	return nil
}
