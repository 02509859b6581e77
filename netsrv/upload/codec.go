package upload

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math/bits"
	"unsafe"

	"github.com/voltedge/voltedge/internal/history"
)

// codecVersion is the first byte of every spool record.
const codecVersion = 1

// maxRecordRows bounds the rows of one spool record, so that a record stays
// well under the spool's record size limit.
const maxRecordRows = 2000

// encodeBatch appends b to dst as one spool record: a version byte, then
// each kind of row as a count and the rows' fields (strings with a uvarint
// length, integers as varints).
func encodeBatch(dst []byte, b *history.Batch) []byte {
	dst = append(dst, codecVersion)
	dst = binary.AppendUvarint(dst, uint64(len(b.Samples)))
	for i := range b.Samples {
		x := &b.Samples[i]
		dst = appendStrings(dst, x.Channel, x.Point, x.Model, x.PointName, x.Value)
		dst = binary.AppendVarint(dst, x.TS)
	}
	dst = binary.AppendUvarint(dst, uint64(len(b.ConnEvents)))
	for i := range b.ConnEvents {
		x := &b.ConnEvents[i]
		dst = appendStrings(dst, x.EventID, x.Event, x.Channel, x.Listener, x.Registration, x.Remote, x.Reason)
		dst = binary.AppendVarint(dst, x.TS)
	}
	dst = binary.AppendUvarint(dst, uint64(len(b.Alarms)))
	for i := range b.Alarms {
		x := &b.Alarms[i]
		dst = appendStrings(dst, string(x.Event), x.Model, x.Point, x.Kind, x.Level, x.Value, x.Limit, x.User)
		dst = binary.AppendVarint(dst, x.RaisedTS)
		dst = binary.AppendVarint(dst, x.TS)
	}
	dst = binary.AppendUvarint(dst, uint64(len(b.Controls)))
	for i := range b.Controls {
		x := &b.Controls[i]
		dst = appendStrings(dst, x.CommandID, x.Model, x.Control, x.Channel, x.Point, x.Value, x.Status, x.Code, x.Message, x.User)
		dst = binary.AppendVarint(dst, x.TS)
	}
	dst = binary.AppendUvarint(dst, uint64(len(b.Channels)))
	for i := range b.Channels {
		x := &b.Channels[i]
		dst = appendStrings(dst, x.Channel, x.Registration, x.Template, x.Name, x.State)
		dst = binary.AppendVarint(dst, x.TS)
	}
	return dst
}

func appendStrings(dst []byte, ss ...string) []byte {
	for _, s := range ss {
		dst = binary.AppendUvarint(dst, uint64(len(s)))
		dst = append(dst, s...)
	}
	return dst
}

// errShort is a record that ends inside a field.
var errShort = errors.New("record ends early")

// decoder reads the fields encodeBatch wrote. s is the same memory as b
// seen as a string, so that the rows' strings share the record.
type decoder struct {
	b   []byte
	s   string
	err error
}

func newDecoder(b []byte) *decoder {
	return &decoder{b: b, s: unsafe.String(unsafe.SliceData(b), len(b))}
}

func (d *decoder) skip(n int) {
	d.b = d.b[n:]
	d.s = d.s[n:]
}

// uvarintLen is the length of v's shortest uvarint, the one encodeBatch
// writes: a record is decoded only in the form it was written.
func uvarintLen(v uint64) int { return max(1, (bits.Len64(v)+6)/7) }

func (d *decoder) uvarint() uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b)
	if n <= 0 || n != uvarintLen(v) {
		d.err = errShort // cut short, or not as encodeBatch writes it
		return 0
	}
	d.skip(n)
	return v
}

func (d *decoder) varint() int64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Varint(d.b)
	if n <= 0 || n != uvarintLen(uint64(v)<<1^uint64(v>>63)) {
		d.err = errShort // cut short, or not as encodeBatch writes it
		return 0
	}
	d.skip(n)
	return v
}

func (d *decoder) str() string {
	n := d.uvarint()
	if d.err != nil {
		return ""
	}
	if n > uint64(len(d.b)) {
		d.err = errShort
		return ""
	}
	s := d.s[:n]
	d.skip(int(n))
	return s
}

// count reads a row count, refusing one that the rest of the record cannot
// hold (each row takes at least min bytes).
func (d *decoder) count(min int) int {
	n := d.uvarint()
	if d.err == nil && n > uint64(len(d.b)/min) {
		d.err = fmt.Errorf("row count %d does not fit in %d bytes", n, len(d.b))
	}
	return int(n)
}

// recordSamples returns the number of samples a spool record says it
// holds (0 when it cannot tell), to size the array they are decoded into.
func recordSamples(rec []byte) int {
	if len(rec) == 0 || rec[0] != codecVersion {
		return 0
	}
	d := newDecoder(rec[1:])
	n := d.count(6)
	if d.err != nil {
		return 0
	}
	return n
}

// decodeBatch appends the rows of one spool record to b. The rows' strings
// point into rec, which must not be modified afterwards.
func decodeBatch(rec []byte, b *history.Batch) error {
	if len(rec) == 0 || rec[0] != codecVersion {
		return fmt.Errorf("upload: spool record of unknown version")
	}
	d := newDecoder(rec[1:])
	for n := d.count(6); n > 0 && d.err == nil; n-- {
		b.Samples = append(b.Samples, history.Sample{Channel: d.str(), Point: d.str(), Model: d.str(), PointName: d.str(), Value: d.str(), TS: d.varint()})
	}
	for n := d.count(8); n > 0 && d.err == nil; n-- {
		b.ConnEvents = append(b.ConnEvents, history.ConnEvent{EventID: d.str(), Event: d.str(), Channel: d.str(), Listener: d.str(),
			Registration: d.str(), Remote: d.str(), Reason: d.str(), TS: d.varint()})
	}
	for n := d.count(10); n > 0 && d.err == nil; n-- {
		b.Alarms = append(b.Alarms, history.Alarm{Event: history.AlarmEvent(d.str()), Model: d.str(), Point: d.str(), Kind: d.str(),
			Level: d.str(), Value: d.str(), Limit: d.str(), User: d.str(), RaisedTS: d.varint(), TS: d.varint()})
	}
	for n := d.count(11); n > 0 && d.err == nil; n-- {
		b.Controls = append(b.Controls, history.Control{CommandID: d.str(), Model: d.str(), Control: d.str(), Channel: d.str(),
			Point: d.str(), Value: d.str(), Status: d.str(), Code: d.str(), Message: d.str(), User: d.str(), TS: d.varint()})
	}
	for n := d.count(6); n > 0 && d.err == nil; n-- {
		b.Channels = append(b.Channels, history.ChannelState{Channel: d.str(), Registration: d.str(), Template: d.str(), Name: d.str(),
			State: d.str(), TS: d.varint()})
	}
	if d.err == nil && len(d.b) != 0 {
		d.err = fmt.Errorf("%d bytes after the last row", len(d.b))
	}
	if d.err != nil {
		return fmt.Errorf("upload: spool record: %w", d.err)
	}
	return nil
}

// encodeParts encodes b as spool records of at most maxBytes each (a single
// row is never cut, and rows stay in order), halving b until each part fits.
func encodeParts(b *history.Batch, maxBytes int) [][]byte {
	if b.Len() > maxRecordRows {
		l, r := halves(b)
		return append(encodeParts(l, maxBytes), encodeParts(r, maxBytes)...)
	}
	enc := encodeBatch(nil, b)
	if len(enc) <= maxBytes || b.Len() <= 1 {
		return [][]byte{enc}
	}
	l, r := halves(b)
	return append(encodeParts(l, maxBytes), encodeParts(r, maxBytes)...)
}

// halves cuts b into two batches of about half its rows each, in order.
func halves(b *history.Batch) (*history.Batch, *history.Batch) {
	n := b.Len() / 2
	l, r := &history.Batch{}, &history.Batch{}
	take := func(count int) (inL, inR int) { // how many of a kind go left
		if n >= count {
			n -= count
			return count, 0
		}
		k := n
		n = 0
		return k, count - k
	}
	k, _ := take(len(b.Samples))
	l.Samples, r.Samples = b.Samples[:k], b.Samples[k:]
	k, _ = take(len(b.ConnEvents))
	l.ConnEvents, r.ConnEvents = b.ConnEvents[:k], b.ConnEvents[k:]
	k, _ = take(len(b.Alarms))
	l.Alarms, r.Alarms = b.Alarms[:k], b.Alarms[k:]
	k, _ = take(len(b.Controls))
	l.Controls, r.Controls = b.Controls[:k], b.Controls[k:]
	k, _ = take(len(b.Channels))
	l.Channels, r.Channels = b.Channels[:k], b.Channels[k:]
	return l, r
}
