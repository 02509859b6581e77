package main

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/voltedge/voltedge/internal/keys"
	"github.com/voltedge/voltedge/internal/redistest"
)

func TestSend(t *testing.T) {
	srv := redistest.Start(t)
	c := srv.Client(t)
	redistest.Do(t, c, "HSET", keys.MappingReverse, keys.PointRef("power_meter", "setpoint"), keys.PointRef("1001", "40001"))

	// The library is not loaded: the caller loads it on "function not found".
	if out := mustCLI(t, srv.URL(), "send", "power_meter", "setpoint", "-12.5", "-ttl", "5s"); out != "1\n" {
		t.Errorf("first send printed %q", out)
	}
	if out := mustCLI(t, srv.URL(), "send", "-ttl=2s", "power_meter", "setpoint", "3"); out != "2\n" {
		t.Errorf("second send printed %q", out)
	}
	queue, err := redistest.Do(t, c, "LRANGE", keys.CommandQueue("1001"), "0", "-1").AsStrSlice()
	if err != nil || len(queue) != 2 {
		t.Fatalf("queue %q, %v", queue, err)
	}
	var cmd struct {
		ID       int64   `json:"id"`
		Channel  string  `json:"channel"`
		Point    string  `json:"point"`
		Value    float64 `json:"value"`
		TS       int64   `json:"ts"`
		Deadline int64   `json:"deadline"`
	}
	if err := json.Unmarshal([]byte(queue[1]), &cmd); err != nil {
		t.Fatalf("%v: %s", err, queue[1])
	}
	if cmd.ID != 1 || cmd.Channel != "1001" || cmd.Point != "40001" || cmd.Value != -12.5 || cmd.Deadline-cmd.TS != 5000 {
		t.Errorf("queued %+v", cmd)
	}

	for _, tc := range []struct {
		args []string
		msg  string
	}{
		{[]string{"send", "power_meter", "nothing", "1"}, "send power_meter nothing = 1: "},
		{[]string{"send", "power_meter", "setpoint", "abc"}, "send power_meter setpoint = abc: "},
	} {
		out, errOut, code := cli(t, srv.URL(), tc.args...)
		if code != 1 || out != "" || !strings.HasPrefix(errOut, "edgectl send: "+tc.msg) {
			t.Errorf("%v: exit %d, stdout %q, stderr %q", tc.args, code, out, errOut)
		}
	}
}
