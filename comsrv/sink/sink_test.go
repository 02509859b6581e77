package sink

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/rueidis"

	"github.com/voltedge/voltedge/internal/keys"
	"github.com/voltedge/voltedge/internal/lualib"
	"github.com/voltedge/voltedge/internal/redistest"
	"github.com/voltedge/voltedge/internal/wait"
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
			lane.Quality(stale, []string{"1"})
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

// startSink runs a sink on a private Redis with the Lua library until the test ends.
func startSink(t *testing.T, opt Options) (*redistest.Server, rueidis.Client, *Sink, func()) {
	t.Helper()
	rs := redistest.Start(t)
	rc := rs.Client(t)
	if _, err := lualib.Ensure(context.Background(), rc); err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	sk := New(rc, lualib.NewCaller(rc, log), opt, log, nil)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	run := func() { go func() { defer close(done); sk.Run(ctx) }() }
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
		}
	})
	return rs, rc, sk, run
}

// TestMarksAreNeverDropped: a lane full of values sheds values (counted) but
// takes every quality mark, and marks of a channel that follow each other
// coalesce, so a flapping device cannot grow the queue.
func TestMarksAreNeverDropped(t *testing.T) {
	_, rc, sk, run := startSink(t, Options{Queue: 16})
	lane := sk.Lane("c1")
	shed := 0
	for i := 0; i < 100; i++ {
		smp := lane.NewSample(time.Now())
		smp.Pairs = append(smp.Pairs, "1", strconv.Itoa(i))
		if !lane.Values(smp) {
			shed++
		}
	}
	if shed == 0 || sk.Stats().Dropped != uint64(shed) {
		t.Fatalf("shed %d values, counted %d", shed, sk.Stats().Dropped)
	}
	for i := 0; i < 10000; i++ {
		lane.Quality(i%2 == 0, []string{"1", "2"})
	}
	lane.Quality(true, []string{"3"})
	lane.l.mu.Lock()
	queued := len(lane.l.items)
	lane.l.mu.Unlock()
	if queued != sk.laneValues+1 {
		t.Fatalf("%d items queued, want the %d values and one coalesced mark", queued, sk.laneValues)
	}
	run()
	wait.For(t, 5*time.Second, "the last marks in Redis", func() error {
		m, err := rc.Do(context.Background(), rc.B().Hgetall().Key(keys.ChannelQuality("c1")).Build()).AsStrMap()
		if err != nil {
			return err
		}
		// The last loop round (i = 9999) marked 1 and 2 good; 3 is stale.
		return wait.Equal(fmt.Sprint(m), "map[3:stale]")
	})
}

// TestStateOutlivesARedisOutage: statuses, events and channel-set changes
// queued while Redis is down are written when it is back, in order, and the
// latest status of a channel wins.
func TestStateOutlivesARedisOutage(t *testing.T) {
	rs, rc, sk, run := startSink(t, Options{})
	run()
	ctx := context.Background()
	_ = rc.Do(ctx, rc.B().Shutdown().Nosave().Build()).Error() // Redis is gone
	for i := 0; i < 50; i++ {
		ch := "c" + strconv.Itoa(i%5)
		sk.Status(ch, []string{"online", strconv.Itoa(i % 2), "seq", strconv.Itoa(i)})
		sk.Event(Event{Type: "offline", Channel: ch, Reason: strconv.Itoa(i), At: time.Now()})
	}
	sk.AddChannels("c0", "c1", "gone")
	sk.RemoveChannels("gone")
	time.Sleep(300 * time.Millisecond) // let the writer fail at least once
	rs.Restart(t)
	wait.For(t, 10*time.Second, "state written after the outage", func() error {
		for i := 45; i < 50; i++ {
			m, err := rc.Do(ctx, rc.B().Hgetall().Key(keys.ChannelStatus("c"+strconv.Itoa(i%5))).Build()).AsStrMap()
			if err != nil {
				return err
			}
			if m["seq"] != strconv.Itoa(i) {
				return fmt.Errorf("c%d status %v, want seq %d", i%5, m, i)
			}
		}
		es, err := rc.Do(ctx, rc.B().Xrange().Key(keys.ConnectionEvents).Start("-").End("+").Build()).AsXRange()
		if err != nil {
			return err
		}
		if len(es) != 50 {
			return fmt.Errorf("%d events, want 50", len(es))
		}
		for i, e := range es {
			if e.FieldValues["reason"] != strconv.Itoa(i) {
				return fmt.Errorf("event %d has reason %s: out of order", i, e.FieldValues["reason"])
			}
		}
		set, err := rc.Do(ctx, rc.B().Smembers().Key(keys.Channels).Build()).AsStrSlice()
		if err != nil {
			return err
		}
		slices.Sort(set)
		return wait.Equal(strings.Join(set, ","), "c0,c1")
	})
}

// TestMetaAndStatusClears: a metadata hash is replaced as a whole, deleted
// by empty fields, and written again after Redis restarted empty (Resync);
// a cleared status field goes.
func TestMetaAndStatusClears(t *testing.T) {
	rs, rc, sk, run := startSink(t, Options{FlushInterval: 50 * time.Millisecond})
	run()
	ctx := context.Background()
	hash := func(key string) func() (map[string]string, error) {
		return func() (map[string]string, error) {
			return rc.Do(ctx, rc.B().Hgetall().Key(key).Build()).AsStrMap()
		}
	}
	is := func(what string, get func() (map[string]string, error), want map[string]string) {
		t.Helper()
		wait.For(t, 10*time.Second, what, func() error {
			m, err := get()
			if err != nil {
				return err
			}
			return wait.Equal(fmt.Sprint(m), fmt.Sprint(want))
		})
	}
	sk.SetMeta("c1", []string{"1", `{"name":"a"}`, "2", `{"name":"b"}`})
	sk.SetMeta("c2", []string{"1", `{"name":"x"}`})
	is("c1 meta", hash(keys.ChannelMeta("c1")), map[string]string{"1": `{"name":"a"}`, "2": `{"name":"b"}`})
	sk.SetMeta("c1", []string{"3", `{"name":"c"}`})
	sk.SetMeta("c2", nil)
	is("c1 meta replaced", hash(keys.ChannelMeta("c1")), map[string]string{"3": `{"name":"c"}`})
	is("c2 meta deleted", hash(keys.ChannelMeta("c2")), map[string]string{})

	sk.Status("c1", []string{"online", "1", "name", "Pump"})
	is("status", hash(keys.ChannelStatus("c1")), map[string]string{"name": "Pump", "online": "1"})
	sk.ClearStatusFields("c1", "name")
	sk.Status("c1", []string{"online", "0"})
	is("name cleared", hash(keys.ChannelStatus("c1")), map[string]string{"online": "0"})

	// The sink reads Redis's run_id with its stats: wait for them before the restart.
	is("stats", func() (map[string]string, error) {
		n, err := rc.Do(ctx, rc.B().Exists().Key(keys.ComsrvStats).Build()).AsInt64()
		return map[string]string{"exists": strconv.FormatInt(n, 10)}, err
	}, map[string]string{"exists": "1"})
	rs.Restart(t)
	is("c1 meta after the restart", hash(keys.ChannelMeta("c1")), map[string]string{"3": `{"name":"c"}`})
	is("c2 meta stays deleted", hash(keys.ChannelMeta("c2")), map[string]string{})
}
