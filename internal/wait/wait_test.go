package wait

import (
	"fmt"
	"testing"
	"time"
)

// recorder is a testing.TB that records a Fatalf instead of ending the test.
type recorder struct {
	testing.TB
	failed string
}

func (r *recorder) Helper() {}

func (r *recorder) Fatalf(format string, args ...any) { r.failed = fmt.Sprintf(format, args...) }

func TestForReturnsOnceTheConditionHolds(t *testing.T) {
	n := 0
	r := &recorder{TB: t}
	For(r, time.Second, "three calls", func() error {
		n++
		return Check(n >= 3, "%d calls", n)
	})
	if r.failed != "" || n != 3 {
		t.Fatalf("failed %q after %d calls", r.failed, n)
	}
}

func TestForReportsTheLastError(t *testing.T) {
	n := 0
	r := &recorder{TB: t}
	start := time.Now()
	For(r, 30*time.Millisecond, "the impossible", func() error {
		n++
		return fmt.Errorf("attempt %d", n)
	})
	if time.Since(start) < 30*time.Millisecond {
		t.Fatalf("gave up after %v", time.Since(start))
	}
	want := fmt.Sprintf("timed out after 30ms waiting for the impossible: attempt %d", n)
	if r.failed != want {
		t.Fatalf("message %q, want %q", r.failed, want)
	}
}

func TestCheckAndEqual(t *testing.T) {
	if Check(true, "x") != nil || Equal(2, 2) != nil {
		t.Fatal("a holding condition returned an error")
	}
	if err := Check(false, "seen %d", 4); err == nil || err.Error() != "seen 4" {
		t.Fatalf("Check: %v", err)
	}
	if err := Equal("0", "1"); err == nil || err.Error() != `got "0", want "1"` {
		t.Fatalf("Equal: %v", err)
	}
	if err := Equal(3, 4); err == nil || err.Error() != "got 3, want 4" {
		t.Fatalf("Equal: %v", err)
	}
}
