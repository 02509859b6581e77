package snapshot

import (
	"encoding/binary"
	"hash/maphash"
)

// digest identifies the content of the configuration hashes cheaply, so
// that an unchanged configuration is not written again: the XOR of a
// 128-bit hash of every (key, field, value), which does not depend on the
// order HGETALL returns them in, plus their number.
type digest struct {
	a, b uint64
	n    int
}

// digester computes digests; its seeds are its own, so digests compare
// only within one digester.
type digester struct {
	ha, hb maphash.Hash
}

func newDigester() *digester {
	d := &digester{}
	d.ha.SetSeed(maphash.MakeSeed())
	d.hb.SetSeed(maphash.MakeSeed())
	return d
}

// of returns the digest of key → field → value.
func (d *digester) of(content map[string]map[string]string) digest {
	var g digest
	for k, h := range content {
		for f, v := range h {
			g.a ^= d.entry(&d.ha, k, f, v)
			g.b ^= d.entry(&d.hb, k, f, v)
			g.n++
		}
	}
	return g
}

func (d *digester) entry(h *maphash.Hash, parts ...string) uint64 {
	h.Reset()
	var l [8]byte
	for _, p := range parts {
		binary.LittleEndian.PutUint64(l[:], uint64(len(p)))
		_, _ = h.Write(l[:])
		_, _ = h.WriteString(p)
	}
	return h.Sum64()
}
