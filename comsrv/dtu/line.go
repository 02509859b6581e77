package dtu

import (
	"bytes"
	"errors"
	"fmt"

	"github.com/voltedge/voltedge/comsrv/config"
	"github.com/voltedge/voltedge/internal/rtu"
)

// lineCodec is the profile of simple TCP devices that speak in text lines:
// the device's id on a line of its own registers it and, repeated, is its
// heartbeat; any other line is a message of the device. Lines end with "\n"
// (a "\r" before it is removed). The link forwards text lines to the device;
// it never polls Modbus.
type lineCodec struct {
	reg        *config.Registration
	max        int
	id         []byte
	discarding bool // inside an overlong line: skip to its end
}

func (c *lineCodec) register(d []byte) (string, int, []byte, error) {
	line, n, err := c.line(d)
	if err != nil {
		return "", 0, nil, err
	}
	if len(line) == 0 {
		return "", 0, nil, errors.New("empty registration line")
	}
	id := string(line)
	if c.reg.Regexp != nil && !c.reg.Regexp.MatchString(id) {
		return "", 0, nil, &patternError{id: id, re: c.reg.Regexp}
	}
	c.id = []byte(id)
	return id, n, nil, nil
}

// line returns the first complete line of d without its terminator.
func (c *lineCodec) line(d []byte) ([]byte, int, error) {
	i := bytes.IndexByte(d, '\n')
	if i < 0 {
		if len(d) > c.max+1 {
			return nil, 0, fmt.Errorf("no line end within %d bytes", c.max)
		}
		return nil, 0, errNeedMore
	}
	line := bytes.TrimSuffix(d[:i], []byte{'\r'})
	if len(line) > c.max {
		return nil, 0, fmt.Errorf("line of %d bytes is longer than %d", len(line), c.max)
	}
	return line, i + 1, nil
}

func (c *lineCodec) next(d []byte, _ *rtu.Request) (frameKind, int, []byte) {
	if c.discarding {
		i := bytes.IndexByte(d, '\n')
		if i < 0 {
			return garbage, len(d), nil
		}
		c.discarding = false
		return garbage, i + 1, nil
	}
	line, n, err := c.line(d)
	switch {
	case errors.Is(err, errNeedMore):
		return needMore, 0, nil
	case err != nil:
		// Overlong: drop what is here and the rest of the line.
		if i := bytes.IndexByte(d, '\n'); i >= 0 {
			return garbage, i + 1, nil
		}
		c.discarding = true
		return garbage, len(d), nil
	case len(line) == 0:
		return garbage, n, nil
	case bytes.Equal(line, c.id):
		return heartbeat, n, nil
	}
	return data, n, line
}

func (c *lineCodec) ack(frameKind) []byte        { return nil }
func (c *lineCodec) wrap(dst, adu []byte) []byte { return dst }
func (c *lineCodec) polls() bool                 { return false }
func (c *lineCodec) bufSize() int                { return max(framerSize, c.max+2) }
func (c *lineCodec) regSize() int                { return c.max + 2 }
