package main

import (
	"regexp"
	"strings"
	"testing"

	"github.com/voltedge/voltedge/internal/keys"
	"github.com/voltedge/voltedge/internal/redistest"
)

func TestMonitor(t *testing.T) {
	srv := redistest.Start(t)
	c := srv.Client(t)

	out := mustCLI(t, srv.URL(), "monitor", "-interval", "20ms", "-count", "1")
	re := regexp.MustCompile(`^2024-11-21 12:00:00 mem=[0-9.]+[KMG]?B? clients=\d+ ops/s=\d+ keys=0 \| comsrv: -\n$`)
	if !re.MatchString(out) {
		t.Errorf("monitor without stats: %q", out)
	}

	redistest.Do(t, c, "HSET", keys.ComsrvStats, "links", "12", "sync_p99_us", "850", "batches", "4000")
	out = mustCLI(t, srv.URL(), "monitor", "-interval", "20ms", "-count", "3")
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	if len(lines) != 3 {
		t.Fatalf("want 3 lines:\n%s", out)
	}
	for _, l := range lines {
		if !strings.Contains(l, " keys=1 | comsrv: batches=4000 links=12 sync_p99_us=850") {
			t.Errorf("line %q", l)
		}
	}
}

func TestParseInfo(t *testing.T) {
	m := parseInfo("# Memory\r\nused_memory:1024\r\nused_memory_human:1.00K\r\n\r\n# Clients\r\nconnected_clients:3\r\n")
	if m["used_memory_human"] != "1.00K" || m["connected_clients"] != "3" || len(m) != 3 {
		t.Errorf("%v", m)
	}
}
