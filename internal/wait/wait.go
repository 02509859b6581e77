// Package wait lets tests wait for a condition instead of sleeping: a
// condition is polled until it holds, and a test that times out says what
// it waited for and what it saw last.
package wait

import (
	"fmt"
	"testing"
	"time"
)

// Poll intervals: the first retry comes quickly, later ones further apart
// so that a long wait does not spin.
const (
	firstPoll = time.Millisecond
	maxPoll   = 50 * time.Millisecond
)

// For calls cond until it returns nil, and fails tb if that has not
// happened within the given time. cond returns an error that says what is
// not yet true; the failure message names what was awaited and includes
// the last such error. cond runs on the caller's goroutine, so it may
// itself call tb.Fatal.
func For(tb testing.TB, within time.Duration, what string, cond func() error) {
	tb.Helper()
	deadline := time.Now().Add(within)
	poll := firstPoll
	for {
		err := cond()
		if err == nil {
			return
		}
		if !time.Now().Before(deadline) {
			tb.Fatalf("timed out after %v waiting for %s: %v", within, what, err)
			return
		}
		time.Sleep(min(poll, time.Until(deadline)))
		poll = min(2*poll, maxPoll)
	}
}

// Check is a condition's verdict: nil when ok, otherwise an error with the
// formatted message (what was seen instead).
func Check(ok bool, format string, args ...any) error {
	if ok {
		return nil
	}
	return fmt.Errorf(format, args...)
}

// Equal is nil when got equals want, otherwise an error "got …, want …"
// (strings quoted).
func Equal[T comparable](got, want T) error {
	if got == want {
		return nil
	}
	if g, ok := any(got).(string); ok {
		return fmt.Errorf("got %q, want %q", g, any(want))
	}
	return fmt.Errorf("got %v, want %v", got, want)
}
