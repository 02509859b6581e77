package contract

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/redis/rueidis"

	"github.com/voltedge/voltedge/internal/keys"
	"github.com/voltedge/voltedge/internal/redistest"
)

// collector is a Handler that records entries and acknowledges them unless told not to.
type collector struct {
	g     *GroupReader
	noAck bool

	mu  sync.Mutex
	ids []string
}

func (c *collector) handle(ctx context.Context, entries []Entry) error {
	c.mu.Lock()
	for _, e := range entries {
		c.ids = append(c.ids, e.Fields["n"])
	}
	c.mu.Unlock()
	if c.noAck {
		return nil
	}
	ids := make([]string, len(entries))
	for i, e := range entries {
		ids[i] = e.ID
	}
	return c.g.Ack(ctx, ids...)
}

func (c *collector) got() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string(nil), c.ids...)
}

// startReader runs a reader of alarm:events as consumer "a1" until stop is called.
func startReader(t *testing.T, client rueidis.Client, start string, noAck bool) (*collector, func()) {
	t.Helper()
	g, err := NewGroupReader(client, GroupOptions{Stream: keys.AlarmEvents, Group: "alarmsrv", Consumer: "a1", Start: start,
		Block: 200 * time.Millisecond}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	col := &collector{g: g, noAck: noAck}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); g.Run(ctx, col.handle) }()
	stop := func() {
		cancel()
		select {
		case <-done:
		case <-time.After(patience):
			t.Fatal("Run did not return after its context ended")
		}
	}
	t.Cleanup(stop)
	return col, stop
}

func xadd(t *testing.T, c rueidis.Client, n string) {
	t.Helper()
	redistest.Do(t, c, "XADD", keys.AlarmEvents, "*", AlarmType, AlarmRaise, "n", n)
}

func equal(a []string, b ...string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// TestGroupReaderPending: a consumer killed with unacknowledged entries gets
// them again, first, when it starts again; then the new ones.
func TestGroupReaderPending(t *testing.T) {
	_, c := newRedis(t)
	xadd(t, c, "old") // before the group: not read with Start "$"
	first, stop := startReader(t, c, "$", true)
	eventually(t, "the group", func() bool {
		n, _ := redistest.Do(t, c, "XINFO", "GROUPS", keys.AlarmEvents).ToArray()
		return len(n) == 1
	})
	xadd(t, c, "1")
	xadd(t, c, "2")
	eventually(t, "two entries", func() bool { return len(first.got()) == 2 })
	stop() // killed before acknowledging
	xadd(t, c, "3")

	second, _ := startReader(t, c, "$", false)
	eventually(t, "pending then new entries", func() bool { return len(second.got()) == 3 })
	if got := second.got(); !equal(got, "1", "2", "3") {
		t.Fatalf("read %v, want the pending 1 and 2, then 3", got)
	}
	eventually(t, "no pending entries", func() bool {
		p, _ := redistest.Do(t, c, "XPENDING", keys.AlarmEvents, "alarmsrv").ToArray()
		n, _ := p[0].AsInt64()
		return n == 0
	})
}

// TestGroupReaderRestart: Redis restarts without persistence; the reader
// creates the group again and reads what is written afterwards.
func TestGroupReaderRestart(t *testing.T) {
	srv, c := newRedis(t)
	col, _ := startReader(t, c, "0", false)
	xadd(t, c, "before")
	eventually(t, "the first entry", func() bool { return len(col.got()) == 1 })
	srv.Restart(t)
	eventually(t, "Redis back", func() bool {
		return c.Do(context.Background(), c.B().Ping().Build()).Error() == nil
	})
	xadd(t, c, "after")
	eventually(t, "the entry written after the restart", func() bool { return len(col.got()) == 2 })
	if got := col.got(); !equal(got, "before", "after") {
		t.Fatalf("read %v", got)
	}
}

func TestGroupReaderHandlerError(t *testing.T) {
	_, c := newRedis(t)
	g, err := NewGroupReader(c, GroupOptions{Stream: keys.ConnectionEvents, Group: "netsrv", Consumer: "n1", Start: "0"}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	redistest.Do(t, c, "XADD", keys.ConnectionEvents, "*", EventType, "online", EventChannel, "1001")
	var mu sync.Mutex
	calls := 0
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		g.Run(ctx, func(ctx context.Context, entries []Entry) error {
			mu.Lock()
			defer mu.Unlock()
			calls++
			if calls == 1 {
				return errors.New("upload failed")
			}
			if entries[0].Fields[EventChannel] != "1001" {
				t.Errorf("entries %+v", entries)
			}
			return g.Ack(ctx, entries[0].ID)
		})
	}()
	eventually(t, "the retry", func() bool { return g.Stats().Acked == 1 })
	cancel()
	<-done
	if s := g.Stats(); s.Errors != 1 || s.Read != 2 {
		t.Fatalf("stats %+v", s)
	}
	if _, err := NewGroupReader(c, GroupOptions{Stream: "s"}, nil); err == nil {
		t.Error("a reader without group and consumer was made")
	}
}

// TestGroupReaderClaimsIdleEntries: entries that a consumer of the group
// read and never acknowledged (it died, or was renamed) are taken over by
// another consumer once they have been idle for ClaimIdle.
func TestGroupReaderClaimsIdleEntries(t *testing.T) {
	_, c := newRedis(t)
	xadd(t, c, "old")                          // before the group: not read with Start "$"
	dead, stop := startReader(t, c, "$", true) // consumer a1 never acknowledges
	eventually(t, "the group", func() bool {
		n, _ := redistest.Do(t, c, "XINFO", "GROUPS", keys.AlarmEvents).ToArray()
		return len(n) == 1
	})
	xadd(t, c, "1")
	xadd(t, c, "2")
	eventually(t, "a1 read both", func() bool { return len(dead.got()) == 2 })
	stop()

	g, err := NewGroupReader(c, GroupOptions{Stream: keys.AlarmEvents, Group: "alarmsrv", Consumer: "b1",
		Block: 100 * time.Millisecond, ClaimIdle: 300 * time.Millisecond}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	col := &collector{g: g}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go g.Run(ctx, col.handle)
	xadd(t, c, "3")
	eventually(t, "b1 took over 1 and 2", func() bool { return len(col.got()) == 3 })
	if got := col.got(); !equal(got, "3", "1", "2") {
		t.Fatalf("b1 read %v, want 3, then 1 and 2 taken over", got)
	}
	if s := g.Stats(); s.Claimed != 2 {
		t.Fatalf("claimed %d, want 2", s.Claimed)
	}
	eventually(t, "no pending entries", func() bool {
		p, _ := redistest.Do(t, c, "XPENDING", keys.AlarmEvents, "alarmsrv").ToArray()
		n, _ := p[0].AsInt64()
		return n == 0
	})
}
