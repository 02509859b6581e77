package main

import (
	"encoding/json"
	"strconv"
	"strings"
	"testing"

	"github.com/voltedge/voltedge/internal/contract"
	"github.com/voltedge/voltedge/internal/contract/contracttest"
	"github.com/voltedge/voltedge/internal/keys"
	"github.com/voltedge/voltedge/internal/redistest"
)

func TestSend(t *testing.T) {
	srv := redistest.Start(t)
	c := srv.Client(t)
	redistest.Do(t, c, "HSET", keys.MappingReverse, keys.PointRef("power_meter", "setpoint"), keys.PointRef("1001", "40001"))

	// The library is not loaded: the caller loads it on "function not found".
	first := mustCLI(t, srv.URL(), "send", "power_meter", "setpoint", "-12.5", "-ttl", "5s", "-no-wait")
	if id, ok := contract.CommandID(strings.TrimSuffix(first, "\n")); !ok || id+"\n" != first {
		t.Errorf("first send printed %q", first)
	}
	if out := mustCLI(t, srv.URL(), "send", "-ttl=2s", "-no-wait", "power_meter", "setpoint", "3"); out <= first || !strings.HasSuffix(out, "\n") {
		t.Errorf("second send printed %q after %q", out, first)
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
	if strconv.FormatInt(cmd.ID, 10)+"\n" != first || cmd.Channel != "1001" || cmd.Point != "40001" || cmd.Value != -12.5 || cmd.Deadline-cmd.TS != 5000 {
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

// TestSendWaitsForOutcome answers commands as comsrv would and checks
// what edgectl prints for each outcome.
func TestSendWaitsForOutcome(t *testing.T) {
	srv := redistest.Start(t)
	c := srv.Client(t)
	redistest.Do(t, c, "HSET", keys.MappingReverse,
		keys.PointRef("power_meter", "setpoint"), keys.PointRef("1001", "40001"),
		keys.PointRef("far_meter", "setpoint"), keys.PointRef("9", "40001"))
	outcomes := map[string]contract.Outcome{ // by value; a value not listed gets no answer
		"1": {Status: contract.OK},
		"2": {Status: contract.Exception, Code: 2, Message: "illegal data address"},
		"3": {Status: contract.Timeout},
		"4": {Status: contract.Failed, Message: "link closed\nwhile writing"},
	}
	contracttest.Respond(t, c, func(cmd *contract.Command) (contract.Outcome, bool) {
		o, ok := outcomes[cmd.Value]
		return o, ok
	}, "1001")
	contracttest.Respond(t, c, contracttest.Always(contract.Outcome{Status: contract.Offline, Message: "channel not connected"}), "9")

	for _, tc := range []struct {
		args []string
		out  string // after "<id> "
		code int
		err  string
	}{
		{[]string{"power_meter", "setpoint", "1"}, "ok", 0, ""},
		{[]string{"power_meter", "setpoint", "2", "-ttl", "10s"}, "exception 2 (illegal data address)", 1, ""},
		{[]string{"power_meter", "setpoint", "3"}, "timeout", 1, ""},
		{[]string{"power_meter", "setpoint", "4"}, "failed (link closed while writing)", 1, ""},
		{[]string{"far_meter", "setpoint", "1"}, "offline (channel not connected)", 1, ""},
		{[]string{"power_meter", "setpoint", "5", "-wait", "300ms"}, "", 1, "edgectl send: no outcome for command {id} within 300ms (is comsrv running?)\n"},
	} {
		out, errOut, code := cli(t, srv.URL(), append([]string{"send"}, tc.args...)...)
		id, rest, _ := strings.Cut(out, "\n")
		want := ""
		if tc.out != "" {
			want = id + " " + tc.out + "\n"
		}
		if code != tc.code || rest != want || errOut != strings.ReplaceAll(tc.err, "{id}", id) {
			t.Errorf("send %v: exit %d, stdout %q, stderr %q; want exit %d, %q after the id, stderr %q",
				tc.args, code, out, errOut, tc.code, want, tc.err)
		}
	}
}
