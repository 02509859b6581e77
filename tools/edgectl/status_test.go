package main

import (
	"context"
	"encoding/json"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/rueidis"

	"github.com/voltedge/voltedge/internal/keys"
	"github.com/voltedge/voltedge/internal/redistest"
)

func ms(t time.Time) string { return strconv.FormatInt(t.UnixMilli(), 10) }

func seedStatus(t *testing.T, c rueidis.Client) {
	t.Helper()
	redistest.Do(t, c, "SADD", keys.Channels, "10", "2", "ch1", "9")
	redistest.Do(t, c, "HSET", keys.ChannelStatus("2"), "online", "1", "registration", "DTU002",
		"remote", "10.0.0.2:4001", "connected_at", ms(testNow.Add(-2*time.Hour-5*time.Minute)),
		"last_heartbeat", ms(testNow.Add(-3*time.Second)), "polls_ok", "1200", "timeouts", "3",
		"crc_errors", "1", "exceptions", "0", "bytes_in", "1536", "bytes_out", "900", "sync_errors", "0")
	redistest.Do(t, c, "HSET", keys.ChannelStatus("10"), "online", "0", "registration", "DTU010",
		"remote", "10.0.0.10:4001", "connected_at", ms(testNow.Add(-50*time.Hour)),
		"last_heartbeat", ms(testNow.Add(-49*time.Hour)), "polls_ok", "5", "timeouts", "40",
		"bytes_in", "3145728", "bytes_out", "12", "sync_errors", "2")
	redistest.Do(t, c, "HSET", keys.ChannelStatus("9"), "online", "1", "registration", "DTU009")
	// ch1 has no status hash: comsrv never saw it.
}

func TestStatusTable(t *testing.T) {
	srv := redistest.Start(t)
	seedStatus(t, srv.Client(t))

	out := mustCLI(t, srv.URL(), "status", "-all")
	want := `CHANNEL  STATE    REGISTRATION  REMOTE          CONNECTED                        LAST HEARTBEAT                   POLLS  TIMEOUTS  CRC  EXC  IN    OUT  SYNC ERR
2        online   DTU002        10.0.0.2:4001   09:55:00 (2h05m ago)             11:59:57 (3s ago)                1200   3         1    0    1.5K  900  0
9        online   DTU009        -               -                                -                                -      -         -    -    -     -    -
10       offline  DTU010        10.0.0.10:4001  2024-11-19 10:00:00 (2d02h ago)  2024-11-19 11:00:00 (2d01h ago)  5      40        -    -    3.0M  12   2
ch1      never    -             -               -                                -                                -      -         -    -    -     -    -
4 channels, 2 online, 2 offline
upload: no netsrv:status (netsrv not running)
`
	if out != want {
		t.Errorf("status -all:\n%s\nwant:\n%s", out, want)
	}

	// Default with few channels: all of them.
	if out := mustCLI(t, srv.URL(), "status"); out != want {
		t.Errorf("status:\n%s\nwant:\n%s", out, want)
	}

	// With more than listAllUpTo channels: only those that are not online.
	c := srv.Client(t)
	for i := 0; i < listAllUpTo; i++ {
		id := "x" + strconv.Itoa(i)
		redistest.Do(t, c, "SADD", keys.Channels, id)
		redistest.Do(t, c, "HSET", keys.ChannelStatus(id), "online", "1", "registration", "X"+id)
	}
	out = mustCLI(t, srv.URL(), "status")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 5 || !strings.HasPrefix(lines[1], "10 ") || !strings.HasPrefix(lines[2], "ch1 ") ||
		lines[3] != "54 channels, 52 online, 2 offline" {
		t.Errorf("status:\n%s", out)
	}
	for i := 0; i < listAllUpTo; i++ {
		id := "x" + strconv.Itoa(i)
		redistest.Do(t, c, "SREM", keys.Channels, id)
		redistest.Do(t, c, "DEL", keys.ChannelStatus(id))
	}

	// Online first.
	out = mustCLI(t, srv.URL(), "status", "-all", "-sort", "online")
	var order []string
	for _, l := range strings.Split(out, "\n")[1:5] {
		order = append(order, strings.Fields(l)[0])
	}
	if strings.Join(order, " ") != "2 9 10 ch1" {
		t.Errorf("-sort online: %v", order)
	}

	// Named channels are always listed.
	out = mustCLI(t, srv.URL(), "status", "9")
	if !strings.Contains(out, "\n9  ") || !strings.Contains(out, "1 channels, 1 online, 0 offline\n") {
		t.Errorf("status 9:\n%s", out)
	}
}

// TestStatusUpload: with netsrv running, status shows its upload state.
func TestStatusUpload(t *testing.T) {
	srv := redistest.Start(t)
	c := srv.Client(t)
	redistest.Do(t, c, "HSET", keys.NetsrvStatus, "site", "plant1", "mysql", "down", "spool_pending", "1200",
		"spool_bytes", "3145728", "spool_oldest_age_s", "600", "spool_dropped", "0", "backlog_data", "0 12",
		"backlog_events", "1 -1", "updated_at", ms(testNow.Add(-2*time.Second)))
	out := mustCLI(t, srv.URL(), "status")
	want := "upload (netsrv, site plant1): MySQL down; spool 1200 records, 3.0M, oldest 600s, 0 dropped; " +
		"Redis backlog: data 12 unread/0 pending, events ?" + " unread/1 pending; updated 11:59:58 (2s ago)\n"
	if !strings.HasSuffix(out, want) {
		t.Errorf("status:\n%s\nwant the last line:\n%s", out, want)
	}
	out = mustCLI(t, srv.URL(), "status", "-json")
	if !strings.Contains(out, `"spool_pending": "1200"`) {
		t.Errorf("status -json lacks the upload state:\n%s", out)
	}
}

func TestStatusJSON(t *testing.T) {
	srv := redistest.Start(t)
	seedStatus(t, srv.Client(t))
	out := mustCLI(t, srv.URL(), "status", "-json", "-all")
	var got struct {
		Summary  statusSummary   `json:"summary"`
		Channels []channelStatus `json:"channels"`
	}
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if got.Summary != (statusSummary{Channels: 4, Online: 2, Offline: 2}) || len(got.Channels) != 4 {
		t.Fatalf("%+v", got)
	}
	if c := got.Channels[0]; c.Channel != "2" || !c.Online || !c.Known || c.Fields["polls_ok"] != "1200" {
		t.Errorf("first channel %+v", c)
	}
	if c := got.Channels[3]; c.Channel != "ch1" || c.Online || c.Known {
		t.Errorf("last channel %+v", c)
	}
	// Nothing offline: an empty list, not null.
	srv2 := redistest.Start(t)
	out = mustCLI(t, srv2.URL(), "status", "-json")
	if !strings.Contains(out, `"channels": []`) {
		t.Errorf("empty json: %s", out)
	}
}

// TestStatusMany checks that thousands of channels are read in pipelined chunks.
func TestStatusMany(t *testing.T) {
	srv := redistest.Start(t)
	c := srv.Client(t)
	const n = 10000
	ctx := context.Background()
	cmds := make(rueidis.Commands, 0, 2*n)
	for i := 0; i < n; i++ {
		id := strconv.Itoa(i)
		cmds = append(cmds, c.B().Sadd().Key(keys.Channels).Member(id).Build())
		online := "0"
		if i%3 != 0 {
			online = "1"
		}
		cmds = append(cmds, c.B().Hset().Key(keys.ChannelStatus(id)).FieldValue().FieldValue("online", online).
			FieldValue("polls_ok", id).Build())
	}
	for _, r := range c.DoMulti(ctx, cmds...) {
		if err := r.Error(); err != nil {
			t.Fatal(err)
		}
	}
	start := time.Now()
	out := mustCLI(t, srv.URL(), "status", "-all")
	took := time.Since(start)
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != n+3 || lines[n+1] != "10000 channels, 6666 online, 3334 offline" {
		t.Fatalf("%d lines, last %q", len(lines), lines[len(lines)-1])
	}
	if !strings.HasPrefix(lines[1], "0 ") || !strings.HasPrefix(lines[n], "9999 ") {
		t.Errorf("order: %q ... %q", lines[1], lines[n])
	}
	if took > 5*time.Second {
		t.Errorf("status of %d channels took %v", n, took)
	}
	t.Logf("status of %d channels: %v", n, took)
}

func TestHelpers(t *testing.T) {
	for _, tc := range []struct{ a, b string }{
		{"2", "10"}, {"ch2", "ch10"}, {"a", "b"}, {"1", "1a"}, {"01", "1"}, {"ch1x", "ch2"}, {"9", "ch1"},
	} {
		if naturalCompare(tc.a, tc.b) >= 0 || naturalCompare(tc.b, tc.a) <= 0 {
			t.Errorf("naturalCompare(%q, %q)", tc.a, tc.b)
		}
	}
	if naturalCompare("abc", "abc") != 0 {
		t.Error("equal strings")
	}
	for in, want := range map[string]string{"": "-", "x": "x", "0": "0", "1023": "1023", "1024": "1.0K",
		"1572864": "1.5M", "5368709120": "5.0G", "1125899906842624": "1024.0T"} {
		if got := humanBytes(in); got != want {
			t.Errorf("humanBytes(%q) = %q, want %q", in, got, want)
		}
	}
	for d, want := range map[time.Duration]string{0: "0s", 59 * time.Second: "59s", 61 * time.Second: "1m01s",
		2*time.Hour + 5*time.Minute: "2h05m", 50 * time.Hour: "2d02h"} {
		if got := shortDuration(d); got != want {
			t.Errorf("shortDuration(%v) = %q, want %q", d, got, want)
		}
	}
	a := &app{loc: time.UTC}
	if got := a.when(ms(testNow.Add(90*time.Second)), testNow); got != "12:01:30 (in 1m30s)" {
		t.Errorf("future: %q", got)
	}
	if got := a.when("garbage", testNow); got != "garbage" {
		t.Errorf("garbage: %q", got)
	}
}
