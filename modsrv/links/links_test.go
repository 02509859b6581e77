package links

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/voltedge/voltedge/internal/keys"
	"github.com/voltedge/voltedge/internal/redistest"
	"github.com/voltedge/voltedge/internal/wait"
)

func TestIndex(t *testing.T) {
	srv := redistest.Start(t)
	c := srv.Client(t)
	redistest.Do(t, c, "HSET", keys.Mapping,
		"1001:10001", "pm:voltage", "1002:1", "pm:current", "1001:10002", "other:v", "bad", "pm:x", "1001:9", "nocolon")
	redistest.Do(t, c, "HSET", keys.MappingReverse, "pm:setpoint", "1003:40001", "pm:bad", "x")
	redistest.Do(t, c, "HSET", keys.MappingUnit, "pm:voltage", "kV")
	x := New(c, time.Hour, nil)
	s, err := x.Snapshot(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(s.Points["pm"]) != 2 || s.Points["pm"]["current"] != (Ref{"1002", "1"}) || len(s.Controls["pm"]) != 1 {
		t.Fatalf("points %v controls %v", s.Points, s.Controls)
	}
	if got := s.ModelChannels("pm"); len(got) != 3 || got[0] != "1001" || got[2] != "1003" {
		t.Fatalf("channels of pm: %v", got)
	}
	if got := s.ChannelModels("1001"); len(got) != 2 || got[0] != "other" || got[1] != "pm" {
		t.Fatalf("models of 1001: %v", got)
	}
	if got := s.ChannelModels("1003"); len(got) != 1 || got[0] != "pm" {
		t.Fatalf("models of 1003 (a control): %v", got)
	}
	if s.Unit("pm", "voltage", Meta{Unit: "V"}) != "kV" || s.Unit("pm", "current", Meta{Unit: "A"}) != "A" {
		t.Fatal("unit override")
	}
	if !s.Known("pm") || s.Known("nope") {
		t.Fatal("Known")
	}
	// The snapshot is kept for the interval; Refresh reads again.
	redistest.Do(t, c, "HSET", keys.Mapping, "1004:1", "new:p")
	if s2, _ := x.Snapshot(context.Background()); s2 != s {
		t.Fatal("read again within the interval")
	}
	if s2, _ := x.Refresh(context.Background()); !s2.Known("new") {
		t.Fatal("Refresh did not see the new mapping")
	}
}

func TestTruncated(t *testing.T) {
	srv := redistest.Start(t)
	c := srv.Client(t)
	args := []string{"HSET", keys.Mapping}
	for i := range 250 {
		args = append(args, "1001:"+strconv.Itoa(i), "pm:p"+strconv.Itoa(i))
	}
	redistest.Do(t, c, args...)
	x := New(c, time.Hour, nil)
	x.max = 100
	s, err := x.Refresh(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(s.Points["pm"]) != 100 || s.Truncated[keys.Mapping] != 150 {
		t.Fatalf("%d points, %d truncated", len(s.Points["pm"]), s.Truncated[keys.Mapping])
	}
}

func TestMeta(t *testing.T) {
	srv := redistest.Start(t)
	c := srv.Client(t)
	redistest.Do(t, c, "HSET", keys.ChannelMeta("1001"),
		"1", `{"name":"A","type":"uint16","unit":"V","writable":true,"min":"-5","max":10.5}`, "2", `[1]`, "3", `{"name":"C","type":"bool"}`)
	x := New(c, 0, nil)
	m, err := x.Meta(context.Background(), "1001")
	if err != nil {
		t.Fatal(err)
	}
	a := m["1"]
	if a.Name != "A" || a.Type != "uint16" || !a.Writable || a.Min == nil || *a.Min != -5 || *a.Max != 10.5 {
		t.Fatalf("meta 1: %+v", a)
	}
	if _, ok := m["2"]; ok || m["3"].Min != nil || len(m) != 2 {
		t.Fatalf("meta: %+v", m)
	}
	if m, _ := x.Meta(context.Background(), "none"); len(m) != 0 {
		t.Fatalf("no metadata: %v", m)
	}
}

func TestReloadRefreshes(t *testing.T) {
	srv := redistest.Start(t)
	c := srv.Client(t)
	x := New(c, time.Hour, nil)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); x.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	wait.For(t, 20*time.Second, "the first reading", func() error {
		n, err := c.Do(context.Background(), c.B().PubsubNumsub().Channel(keys.ReloadResult).Build()).AsIntMap()
		if err != nil {
			return err
		}
		return wait.Check(n[keys.ReloadResult] == 1, "subscribers %v", n)
	})
	redistest.Do(t, c, "HSET", keys.Mapping, "1001:1", "pm:p")
	wait.For(t, 20*time.Second, "the reading after a reload", func() error {
		redistest.Do(t, c, "PUBLISH", keys.ReloadResult, `{"ok":true}`)
		x.snap.Lock()
		s := x.cur
		x.snap.Unlock()
		return wait.Check(s != nil && s.Known("pm"), "not read again")
	})
}
