package rtu

// crcTable is the precomputed table of the Modbus CRC (reflected polynomial 0xA001).
var crcTable = makeCRCTable()

func makeCRCTable() (t [256]uint16) {
	for i := range t {
		c := uint16(i)
		for range 8 {
			if c&1 != 0 {
				c = c>>1 ^ 0xA001
			} else {
				c >>= 1
			}
		}
		t[i] = c
	}
	return t
}

// CRC16 is the Modbus CRC of b (initial value 0xFFFF, polynomial 0xA001
// reflected). On the wire it follows the frame low byte first.
func CRC16(b []byte) uint16 {
	crc := uint16(0xFFFF)
	for _, c := range b {
		crc = crc>>8 ^ crcTable[byte(crc)^c]
	}
	return crc
}

// CheckCRC reports whether frame (at least 2 bytes) ends with the CRC of the bytes before it.
func CheckCRC(frame []byte) bool {
	if len(frame) < crcLen {
		return false
	}
	n := len(frame) - crcLen
	crc := CRC16(frame[:n])
	return frame[n] == byte(crc) && frame[n+1] == byte(crc>>8)
}

// appendCRC appends the CRC of body (the tail of dst) to dst, low byte first.
func appendCRC(dst, body []byte) []byte {
	crc := CRC16(body)
	return append(dst, byte(crc), byte(crc>>8))
}
