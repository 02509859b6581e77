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

// Log buffers the entries not yet written for one channel. It is owned by
// one goroutine and not safe for concurrent use.
type Log struct {
	keep    int
	flush   time.Duration
	pending []string
	last    time.Time
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

// Add records one frame. kind names what it is (rtu, heartbeat, line, data, …).
func (l *Log) Add(now time.Time, dir, kind string, frame []byte) {
	if l == nil {
		return
	}
	cut := false
	if len(frame) > MaxFrame {
		frame, cut = frame[:MaxFrame], true
	}
	b := make([]byte, 0, 48+len(kind)+2*len(frame))
	b = append(b, `{"ts":`...)
	b = strconv.AppendInt(b, now.UnixMilli(), 10)
	b = append(b, `,"dir":"`...)
	b = append(b, dir...)
	b = append(b, `","kind":"`...)
	b = append(b, kind...)
	b = append(b, `","hex":"`...)
	b = hex.AppendEncode(b, frame)
	b = append(b, '"')
	if cut {
		b = append(b, `,"cut":true`...)
	}
	b = append(b, '}')
	if len(l.pending) >= l.keep {
		copy(l.pending, l.pending[1:])
		l.pending = l.pending[:len(l.pending)-1]
	}
	l.pending = append(l.pending, string(b))
}

// Due reports whether there are entries to write and the flush interval has passed.
func (l *Log) Due(now time.Time) bool {
	return l != nil && len(l.pending) > 0 && now.Sub(l.last) >= l.flush
}

// Take returns the pending entries, oldest first, and starts a new interval.
func (l *Log) Take(now time.Time) []string {
	if l == nil {
		return nil
	}
	out := l.pending
	l.pending = nil
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
