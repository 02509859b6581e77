package contract

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math"
	"regexp"
	"strconv"
	"time"
)

// Command is one queued control command, as send_control wrote it.
type Command struct {
	ID       string
	Channel  string
	Point    string
	Value    string
	Model    string
	Control  string
	Queued   time.Time
	Deadline time.Time
	// Nonce is the sender's mark of the command ("" for none), recorded
	// with its outcome so that a waiter takes no other command's outcome.
	Nonce string
	// Sent is set once comsrv has marked the command as about to be written
	// to its device (control_sent); only the link executing it touches it.
	Sent bool
}

// wire is the JSON send_control pushes: ids and timestamps are numbers.
type wire struct {
	ID       json.Number `json:"id"`
	Channel  string      `json:"channel"`
	Point    string      `json:"point"`
	Value    json.Number `json:"value"`
	Model    string      `json:"model"`
	Control  string      `json:"control"`
	TS       int64       `json:"ts"`
	Deadline int64       `json:"deadline"`
	Nonce    string      `json:"nonce"`
}

// MaxCommand bounds the size of one queued command.
const MaxCommand = 4096

// MaxValue bounds the length of a control value (the Lua library's bound).
const MaxValue = 64

// Parse decodes one entry of a control queue.
func Parse(b []byte) (*Command, error) {
	if len(b) > MaxCommand {
		return nil, fmt.Errorf("control command of %d bytes is too long (at most %d)", len(b), MaxCommand)
	}
	var w wire
	if err := json.Unmarshal(b, &w); err != nil {
		return nil, fmt.Errorf("control command %.80q: %w", b, err)
	}
	if w.ID == "" || w.Channel == "" || w.Point == "" || w.Value == "" {
		return nil, fmt.Errorf("control command %.80q: id, channel, point and value are required", b)
	}
	if _, err := strconv.ParseUint(string(w.ID), 10, 64); err != nil {
		return nil, fmt.Errorf("control command %.80q: id is not a command number", b)
	}
	c := &Command{
		ID: string(w.ID), Channel: w.Channel, Point: w.Point, Value: string(w.Value),
		Model: w.Model, Control: w.Control, Nonce: w.Nonce,
		Queued: time.UnixMilli(w.TS),
	}
	if w.Deadline > 0 {
		c.Deadline = time.UnixMilli(w.Deadline)
	}
	return c, nil
}

// Expired reports whether the command's deadline has passed at now.
func (c *Command) Expired(now time.Time) bool {
	return !c.Deadline.IsZero() && now.After(c.Deadline)
}

// CommandID returns a command id in canonical form (decimal, no leading
// zeros, not 0) and whether s is one. send_control hands out the Unix time
// of the command in ms × 1000 plus a sequence within the millisecond
// (1732212345678000, 1732212345678001, ...), always above the last id, so
// ids grow and are not handed out again after a Redis restart; ids of older
// library versions (1, 2, ...) are commands too.
func CommandID(s string) (string, bool) {
	n, err := strconv.ParseUint(s, 10, 64)
	if err != nil || n == 0 {
		return "", false
	}
	return strconv.FormatUint(n, 10), true
}

// nonceBytes is the size of the random part of a nonce.
const nonceBytes = 8

// NewNonce returns a random nonce for send_control (16 hex digits).
func NewNonce() string {
	b := make([]byte, nonceBytes)
	_, _ = rand.Read(b) // crypto/rand.Read does not fail (Go 1.24)
	return hex.EncodeToString(b)
}

// numberPattern is the JSON number syntax the library accepts as a value.
var numberPattern = regexp.MustCompile(`^-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?$`)

// ValidValue reports whether the Lua library accepts s as a control value:
// a finite number in JSON number syntax of at most MaxValue bytes.
func ValidValue(s string) bool {
	if len(s) == 0 || len(s) > MaxValue || !numberPattern.MatchString(s) {
		return false
	}
	f, err := strconv.ParseFloat(s, 64)
	return err == nil || !math.IsInf(f, 0)
}
