package point

import "testing"

func benchDecode(b *testing.B, c Codec, regs []byte) {
	b.Helper()
	buf := make([]byte, 0, 64)
	b.ReportAllocs()
	for b.Loop() {
		var err error
		buf, err = c.AppendRegisters(buf[:0], regs)
		if err != nil {
			b.Fatal(err)
		}
	}
	if testing.AllocsPerRun(100, func() { buf, _ = c.AppendRegisters(buf[:0], regs) }) != 0 {
		b.Fatal("AppendRegisters allocates")
	}
}

func BenchmarkAppendUint16(b *testing.B) {
	benchDecode(b, mustCodec(b, "uint16", "", -1, 1, 0, nil), []byte{0x08, 0x9D})
}

func BenchmarkAppendUint16Scaled(b *testing.B) {
	benchDecode(b, mustCodec(b, "uint16", "", -1, 0.1, 0, nil), []byte{0x08, 0x9D})
}

func BenchmarkAppendInt32CDABScaled(b *testing.B) {
	benchDecode(b, mustCodec(b, "int32", "CDAB", -1, 0.001, -40, nil), []byte{0x32, 0xEB, 0xF8, 0xA4})
}

func BenchmarkAppendFloat32(b *testing.B) {
	benchDecode(b, mustCodec(b, "float32", "", -1, 1, 0, nil), []byte{0x42, 0xF6, 0xE9, 0x79})
}

func BenchmarkAppendFloat32Scaled(b *testing.B) {
	benchDecode(b, mustCodec(b, "float32", "DCBA", -1, 0.1, 0, nil), []byte{0x79, 0xE9, 0xF6, 0x42})
}

func BenchmarkAppendFloat64Decimals(b *testing.B) {
	d := 2
	benchDecode(b, mustCodec(b, "float64", "", -1, 1, 0, &d), []byte{0x40, 0x5E, 0xDD, 0x2F, 0x1A, 0x9F, 0xBE, 0x77})
}

func BenchmarkAppendUint64(b *testing.B) {
	benchDecode(b, mustCodec(b, "uint64", "GHEFCDAB", -1, 1, 0, nil), []byte{0xFE, 0xDC, 0xBA, 0x98, 0x76, 0x54, 0x32, 0x10})
}

func BenchmarkAppendBoolBit(b *testing.B) {
	benchDecode(b, mustCodec(b, "bool", "", 9, 1, 0, nil), []byte{0x02, 0x00})
}

func BenchmarkAppendScaledLiteral(b *testing.B) {
	// A Codec built without NewCodec works out its decimals on every call.
	benchDecode(b, Codec{Type: Uint16, Bit: -1, Scale: 0.1, Decimals: -1}, []byte{0x08, 0x9D})
}

func BenchmarkEncodeInt32(b *testing.B) {
	c := mustCodec(b, "int32", "CDAB", -1, 0.1, 0, nil)
	buf := make([]byte, 0, 8)
	b.ReportAllocs()
	for b.Loop() {
		buf, _ = c.EncodeRegisters(buf[:0], 1234.5)
	}
}
