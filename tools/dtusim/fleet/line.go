package fleet

import (
	"bytes"
	"sync"
)

// shrinkLineCap is the largest line buffer a device keeps between lines.
const shrinkLineCap = 512

// DefaultLineLogKeep is how many lines a LineLog keeps when NewLineLog is given 0.
const DefaultLineLogKeep = 64

// LineLog records the lines line-profile devices receive: it keeps the last
// few and counts all. It is safe for concurrent use.
type LineLog struct {
	mu    sync.Mutex
	ring  []string
	next  int // where the next line goes once the ring is full
	total int64
}

// NewLineLog returns a log that keeps the last keep lines (DefaultLineLogKeep when keep ≤ 0).
func NewLineLog(keep int) *LineLog {
	if keep <= 0 {
		keep = DefaultLineLogKeep
	}
	return &LineLog{ring: make([]string, 0, keep)}
}

// Add records one line.
func (l *LineLog) Add(line string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.total++
	if len(l.ring) < cap(l.ring) {
		l.ring = append(l.ring, line)
		return
	}
	l.ring[l.next] = line
	l.next = (l.next + 1) % len(l.ring)
}

// Lines returns the kept lines, oldest first.
func (l *LineLog) Lines() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make([]string, 0, len(l.ring))
	out = append(out, l.ring[l.next:]...)
	return append(out, l.ring[:l.next]...)
}

// Last returns the latest line and whether there was one.
func (l *LineLog) Last() (string, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.ring) == 0 {
		return "", false
	}
	i := len(l.ring) - 1
	if len(l.ring) == cap(l.ring) {
		i = (l.next + len(l.ring) - 1) % len(l.ring)
	}
	return l.ring[i], true
}

// Total is the number of lines ever added.
func (l *LineLog) Total() int64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.total
}

// processLines consumes rbuf[:n] as lines from the server: every complete
// line is recorded, handed to OnLine and answered by LineReply. A line keeps
// at most maxLine bytes; the rest of a longer one is dropped. It always
// consumes everything and returns 0; a write error replaces readErr.
func (d *device) processLines(n int, readErr error) (int, error) {
	buf := d.rbuf[:n]
	for len(buf) > 0 {
		i := bytes.IndexByte(buf, '\n')
		chunk := buf
		if i >= 0 {
			chunk = buf[:i]
		}
		if room := d.maxLine - len(d.line); len(chunk) > room {
			chunk = chunk[:room]
			d.lineCut = true
		}
		d.line = append(d.line, chunk...)
		if i < 0 {
			break
		}
		buf = buf[i+1:]
		if err := d.gotLine(); err != nil {
			return 0, err
		}
	}
	return 0, readErr
}

// gotLine delivers the line in d.line and resets it.
func (d *device) gotLine() error {
	b := bytes.TrimSuffix(d.line, []byte{'\r'})
	line := string(b)
	d.line = d.line[:0]
	if cap(d.line) > shrinkLineCap {
		d.line = nil // a long line does not keep its buffer
	}
	d.st.LinesIn.Add(1)
	if d.lineCut {
		d.st.LinesTruncated.Add(1)
		d.lineCut = false
	}
	if d.cfg.Lines != nil {
		d.cfg.Lines.Add(line)
	}
	if d.cfg.OnLine != nil {
		d.cfg.OnLine(line)
	}
	if d.cfg.LineReply == nil {
		return nil
	}
	reply := d.cfg.LineReply(line)
	if reply == "" {
		return nil
	}
	w := append(append(d.wbuf[:0], reply...), '\n')
	d.wbuf = w
	return d.send(w)
}
