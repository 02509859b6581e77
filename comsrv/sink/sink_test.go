package sink

import (
	"bufio"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/voltedge/voltedge/internal/lualib"
	"github.com/voltedge/voltedge/internal/redistest"
)

func TestFailureLogIsRateLimited(t *testing.T) {
	var buf strings.Builder
	s := &Sink{log: slog.New(slog.NewTextHandler(&buf, nil))}
	for i := 0; i < 100; i++ {
		s.logFailure("sync_batch failed", errors.New("connection refused"))
	}
	if n := strings.Count(buf.String(), "sync_batch failed"); n != 1 {
		t.Fatalf("%d log lines for 100 failures, want 1:\n%s", n, buf.String())
	}
	if s.failsUnlogged.Load() != 99 {
		t.Fatalf("unlogged failures = %d, want 99", s.failsUnlogged.Load())
	}
}

// TestLaneKeepsOrder: a channel's values and quality marks reach Redis in
// the order they were queued, whatever the number of writers, so a "good"
// mark never lands before the value that earned it (watched with MONITOR).
func TestLaneKeepsOrder(t *testing.T) {
	rs := redistest.Start(t)
	rc := rs.Client(t)
	if _, err := lualib.Ensure(context.Background(), rc); err != nil {
		t.Fatal(err)
	}
	mon, err := net.Dial("tcp", rs.Addr)
	if err != nil {
		t.Fatal(err)
	}
	defer mon.Close()
	if _, err := mon.Write([]byte("MONITOR\r\n")); err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(mon)
	if !sc.Scan() || sc.Text() != "+OK" {
		t.Fatalf("MONITOR: %q %v", sc.Text(), sc.Err())
	}
	seen := make(chan string, 4096)
	go func() {
		for sc.Scan() {
			line := sc.Text()
			if i := strings.Index(line, `"FCALL"`); i >= 0 && strings.Contains(line, `"c1"`) {
				seen <- line[i:]
			}
		}
		close(seen)
	}()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	sk := New(rc, lualib.NewCaller(rc, log), Options{Writers: 4}, log, nil)
	lane := sk.Lane("c1")
	var want []string
	for i := 0; i < 50; i++ {
		smp := lane.NewSample(time.Now())
		smp.Pairs = append(smp.Pairs, "1", strconv.Itoa(i))
		if !lane.Values(smp) {
			t.Fatal("lane full")
		}
		want = append(want, "sync_batch "+strconv.Itoa(i))
		if i%5 == 4 {
			stale := i%10 == 4
			if !lane.Quality(stale, []string{"1"}) {
				t.Fatal("lane full")
			}
			want = append(want, map[bool]string{true: "set_quality stale", false: "set_quality good"}[stale])
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); sk.Run(ctx) }()
	var got []string
	deadline := time.After(10 * time.Second)
	for len(got) < len(want) {
		select {
		case line := <-seen:
			// A sync_batch call may carry several samples: one entry per value.
			f := strings.Fields(strings.ReplaceAll(line, `"`, ""))
			switch f[1] {
			case "sync_batch":
				for j := 3; j+4 < len(f) || j+4 == len(f); j += 5 {
					got = append(got, "sync_batch "+f[j+4])
				}
			case "set_quality":
				got = append(got, "set_quality "+f[4])
			}
		case <-deadline:
			t.Fatalf("saw %d of %d calls: %v", len(got), len(want), got)
		}
	}
	cancel()
	<-done
	if !slices.Equal(got, want) {
		t.Fatalf("order in Redis:\n%v\nqueued:\n%v", got, want)
	}
}
