package dtu

import (
	"encoding/binary"
	"strconv"

	"github.com/voltedge/voltedge/comsrv/config"
	"github.com/voltedge/voltedge/internal/rtu"
)

// TLV frame types.
const (
	tlvHeartbeat = 0x02 // device → comsrv, answered with the byte 0x02
	tlvData      = 0x03 // device → comsrv, answered with the byte 0x03
	tlvRTU       = 0x04 // a Modbus RTU frame, in either direction
)

// tlvRegistered is the byte that answers a registration.
const tlvRegistered = 0x01

// tlvCodec is the profile of binary DTUs: the registration is a 4-byte
// big-endian id (rendered in decimal) answered with 0x01; then every frame is
// [type u8][len u8][payload]. Heartbeats (0x02) and data frames (0x03) are
// answered with their type byte; 0x04 frames carry Modbus RTU.
type tlvCodec struct {
	reg *config.Registration
}

func (c *tlvCodec) register(d []byte) (string, int, []byte, error) {
	if len(d) < 4 {
		return "", 0, nil, errNeedMore
	}
	id := strconv.FormatUint(uint64(binary.BigEndian.Uint32(d)), 10)
	if c.reg.Regexp != nil && !c.reg.Regexp.MatchString(id) {
		return "", 0, nil, &patternError{id: id, re: c.reg.Regexp}
	}
	return id, 4, []byte{tlvRegistered}, nil
}

func (c *tlvCodec) next(d []byte, req *rtu.Request) (frameKind, int, []byte) {
	switch d[0] {
	case tlvHeartbeat, tlvData, tlvRTU:
	default:
		return garbage, 1, nil // not a frame start: resynchronise byte by byte
	}
	if len(d) < 2 {
		return needMore, 0, nil
	}
	n := 2 + int(d[1])
	if len(d) < n {
		return needMore, 0, nil
	}
	payload := d[2:n]
	switch d[0] {
	case tlvHeartbeat:
		return heartbeat, n, nil
	case tlvData:
		return data, n, payload
	}
	if req == nil {
		return unexpected, n, payload
	}
	return response, n, payload
}

func (c *tlvCodec) ack(k frameKind) []byte {
	switch k {
	case heartbeat:
		return []byte{tlvHeartbeat}
	case data:
		return []byte{tlvData}
	}
	return nil
}

func (c *tlvCodec) wrap(dst, adu []byte) []byte {
	dst = append(dst, tlvRTU, byte(len(adu)))
	return append(dst, adu...)
}

func (c *tlvCodec) polls() bool  { return true }
func (c *tlvCodec) bufSize() int { return framerSize }
func (c *tlvCodec) regSize() int { return 4 }
