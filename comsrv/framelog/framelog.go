// Package framelog keeps a channel's last raw frames for the frame log
// (comsrv:{channel}:frames): each frame in or out becomes one JSON entry,
// {"ts":<unix ms>,"dir":"rx"|"tx","kind":"…","hex":"…"}, and new entries are
// written in batches at most once per flush interval.
package framelog

import (
	"encoding/hex"
	"strconv"
	"time"
)

// MaxFrame bounds the bytes of one frame kept in the log; longer frames are
// cut and marked with "cut":true.
const MaxFrame = 512

// Log buffers the frames not yet written for one channel, in a ring of
// reused buffers: recording a frame is a copy, and the JSON is built only
// when the entries are taken. It is owned by one goroutine and not safe for
// concurrent use.
type Log struct {
	keep  int
	flush time.Duration
	ring  []entry
	head  int // oldest entry
	n     int // entries pending
	last  time.Time
}

type entry struct {
	ts        int64
	dir, kind string
	b         []byte
	cut       bool
}

// New returns a log that keeps keep entries and is flushed every flush; keep 0 disables it (nil).
func New(keep int, flush time.Duration) *Log {
	if keep <= 0 {
		return nil
	}
	return &Log{keep: keep, flush: flush}
}

// Directions.
const (
	RX = "rx" // from the device
	TX = "tx" // to the device
)

// Add records one frame. kind names what it is (rtu, line, data, …).
func (l *Log) Add(now time.Time, dir, kind string, frame []byte) {
	if l == nil {
		return
	}
	var e *entry
	if l.n < l.keep {
		if len(l.ring) < l.keep {
			l.ring = append(l.ring, entry{})
		}
		e = &l.ring[(l.head+l.n)%l.keep]
		l.n++
	} else { // full: the oldest pending frame gives way
		e = &l.ring[l.head]
		l.head = (l.head + 1) % l.keep
	}
	e.cut = len(frame) > MaxFrame
	if e.cut {
		frame = frame[:MaxFrame]
	}
	e.ts, e.dir, e.kind = now.UnixMilli(), dir, kind
	e.b = append(e.b[:0], frame...)
}

// Due reports whether there are entries to write and the flush interval has passed.
func (l *Log) Due(now time.Time) bool {
	return l != nil && l.n > 0 && now.Sub(l.last) >= l.flush
}

// Next reports when the pending entries are due to be written; ok is false
// when nothing is pending.
func (l *Log) Next() (at time.Time, ok bool) {
	if l == nil || l.n == 0 {
		return time.Time{}, false
	}
	return l.last.Add(l.flush), true
}

// Take returns the pending entries as JSON, oldest first, and starts a new interval.
func (l *Log) Take(now time.Time) []string {
	if l == nil || l.n == 0 {
		if l != nil {
			l.last = now
		}
		return nil
	}
	out := make([]string, 0, l.n)
	var b []byte
	for i := 0; i < l.n; i++ {
		e := &l.ring[(l.head+i)%l.keep]
		b = append(b[:0], `{"ts":`...)
		b = strconv.AppendInt(b, e.ts, 10)
		b = append(b, `,"dir":"`...)
		b = append(b, e.dir...)
		b = append(b, `","kind":"`...)
		b = append(b, e.kind...)
		b = append(b, `","hex":"`...)
		b = hex.AppendEncode(b, e.b)
		b = append(b, '"')
		if e.cut {
			b = append(b, `,"cut":true`...)
		}
		b = append(b, '}')
		out = append(out, string(b))
	}
	l.head, l.n = 0, 0
	l.last = now
	return out
}

// Keep is the number of entries the Redis list keeps.
func (l *Log) Keep() int {
	if l == nil {
		return 0
	}
	return l.keep
}
