package control

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/voltedge/voltedge/internal/contract"
	"github.com/voltedge/voltedge/internal/keys"
	"github.com/voltedge/voltedge/internal/redistest"
	"github.com/voltedge/voltedge/internal/wait"
)

// holder is a Target that keeps what it is given, as a link's inbox does,
// and reports nothing by itself.
type holder struct{ c chan *contract.Command }

func (h *holder) Deliver(c *contract.Command) bool {
	select {
	case h.c <- c:
		return true
	default:
		return false
	}
}

// outcomes reads cmd:results: command id → the statuses recorded for it, in order.
func (e *env) outcomes(t *testing.T) (map[string][]string, map[string]string) {
	t.Helper()
	entries, err := e.c.Do(context.Background(), e.c.B().Xrange().Key(keys.CommandResults).Start("-").End("+").Build()).AsXRange()
	if err != nil {
		t.Fatalf("XRANGE %s: %v", keys.CommandResults, err)
	}
	statuses, messages := map[string][]string{}, map[string]string{}
	for _, en := range entries {
		id := en.FieldValues["id"]
		statuses[id] = append(statuses[id], en.FieldValues["status"])
		messages[id] = en.FieldValues["message"]
	}
	return statuses, messages
}

// TestRestartAnswersEveryCommand: comsrv dies with commands taken but not
// finished. The next comsrv answers each exactly once: "unknown" for the
// one that may have been written, "expired" for one past its deadline that
// was never sent, and executes the others, never sent, after all.
func TestRestartAnswersEveryCommand(t *testing.T) {
	e := newEnv(t)
	var ids []string
	for i := range 10 {
		ttl := ""
		if i >= 8 {
			ttl = "400" // these two expire while comsrv is down
		}
		ids = append(ids, e.send(t, "pm", strconv.Itoa(i), ttl))
	}

	// The first comsrv: takes all ten, writes three (ok), starts writing the
	// fourth, then dies.
	d1 := e.dispatcher(Options{SweepInterval: time.Hour, Batch: 16})
	link := &holder{c: make(chan *contract.Command, 16)}
	d1.Attach("1001", link)
	ctx1, kill := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); d1.Run(ctx1) }()
	var got []*contract.Command
	wait.For(t, patience, "ten delivered commands", func() error {
		for {
			select {
			case c := <-link.c:
				got = append(got, c)
			default:
				return wait.Equal(len(got), 10)
			}
		}
	})
	for i, c := range got[:4] {
		if err := d1.MarkSent(c); err != nil {
			t.Fatalf("MarkSent %s: %v", c.ID, err)
		}
		if i < 3 {
			d1.Report(c, contract.Outcome{Status: contract.OK})
		}
	}
	wait.For(t, patience, "three outcomes", func() error { return wait.Equal(d1.Stats().Reported, uint64(3)) })
	kill() // what is left lives only in the dead comsrv's memory
	<-done
	time.Sleep(500 * time.Millisecond) // past the deadline of the last two

	// The next comsrv.
	d2 := e.dispatcher(Options{SweepInterval: 50 * time.Millisecond})
	rec := newRecorder(d2)
	d2.Attach("1001", rec)
	e.run(t, d2)
	wait.For(t, 5*time.Second, "an outcome for each command", func() error {
		st, _ := e.outcomes(t)
		return wait.Equal(len(st), 10)
	})
	time.Sleep(200 * time.Millisecond) // a second outcome would show now
	statuses, messages := e.outcomes(t)
	want := map[string]string{ids[0]: "ok", ids[1]: "ok", ids[2]: "ok", ids[3]: "unknown", ids[8]: "expired", ids[9]: "expired"}
	for _, id := range ids[4:8] {
		want[id] = "ok"
	}
	for _, id := range ids {
		if s := statuses[id]; len(s) != 1 || s[0] != want[id] {
			t.Errorf("command %s: outcomes %v, want exactly one %s", id, s, want[id])
		}
	}
	if m := messages[ids[3]]; m != MsgRestarted {
		t.Errorf("unknown outcome message %q, want %q", m, MsgRestarted)
	}
	if got := rec.ids(); len(got) != 4 || got[0] != ids[4] || got[3] != ids[7] {
		t.Errorf("the next comsrv executed %v, want %v in order", got, ids[4:8])
	}
	for _, k := range []string{keys.CommandInflight, keys.CommandSent} {
		if n, _ := redistest.Do(t, e.c, "HLEN", k).AsInt64(); n != 0 {
			t.Errorf("%s holds %d entries after every command was answered", k, n)
		}
	}
}

// TestNonceRecorded: the outcome carries the nonce the command was queued with.
func TestNonceRecorded(t *testing.T) {
	e := newEnv(t)
	id, err := e.c.Do(context.Background(), e.c.B().Fcall().Function("send_control").Numkeys(0).
		Arg("pm", "setpoint", "1", "60000", "abc123").Build()).AsInt64()
	if err != nil {
		t.Fatal(err)
	}
	d := e.dispatcher(Options{SweepInterval: 50 * time.Millisecond})
	d.Attach("1001", newRecorder(d))
	e.run(t, d)
	if m := e.result(t, strconv.FormatInt(id, 10)); m["status"] != "ok" || m[contract.ResultNonce] != "abc123" {
		t.Errorf("result = %v", m)
	}
}
