package contract

import (
	"context"
	"testing"
	"time"

	"github.com/redis/rueidis"

	"github.com/voltedge/voltedge/internal/keys"
	"github.com/voltedge/voltedge/internal/lualib"
	"github.com/voltedge/voltedge/internal/redistest"
)

// recordFor writes an outcome of command id as comsrv does for a command
// queued with nonce ("" for none).
func recordFor(c rueidis.Client, id, status, nonce string) rueidis.Completed {
	args := []string{id, status, "0", "", "1001", "40001", "1", "pm", "sp", "3600000", "1000"}
	if nonce != "" {
		args = append(args, nonce)
	}
	return c.B().Fcall().Function("control_result").Numkeys(0).Arg(args...).Build()
}

// senderEnv is a private Redis with control pm:sp mapped to 1001:40001, a
// running watcher and a Sender.
func senderEnv(t *testing.T) (*redistest.Server, rueidis.Client, *Sender) {
	t.Helper()
	srv, c := newRedis(t)
	redistest.Do(t, c, "HSET", keys.MappingReverse, "pm:sp", "1001:40001")
	return srv, c, NewSender(c, lualib.NewCaller(c, nil), runResults(t, c))
}

// noOutcome checks that p gets no outcome for a while.
func noOutcome(t *testing.T, p *Pending, what string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	if res, err := p.Wait(ctx); err == nil {
		t.Errorf("command %s got %s: %+v", p.ID, what, res)
	}
}

// TestIDsUniqueAcrossRestart: a command queued after Redis restarted
// (losing its data) gets an id of its own, and the outcome of a command
// that was in flight during the restart does not reach its waiter.
func TestIDsUniqueAcrossRestart(t *testing.T) {
	srv, c, s := senderEnv(t)
	ctx := ctxFor(t)
	req := Request{Model: "pm", Control: "sp", Value: "1", TTL: time.Minute}

	old, err := s.Send(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	defer old.Close()
	srv.Restart(t)
	eventually(t, "the library loaded again", func() bool {
		_, err := lualib.Ensure(ctx, c)
		return err == nil
	})
	redistest.Do(t, c, "HSET", keys.MappingReverse, "pm:sp", "1001:40001")
	cmd, err := s.Send(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	defer cmd.Close()
	if cmd.ID == old.ID {
		t.Fatalf("command id %s handed out again after the restart", cmd.ID)
	}
	// comsrv records the outcome of the command it had in flight.
	mustDo(t, c, recordFor(c, old.ID, "failed", old.nonce))
	noOutcome(t, cmd, "the outcome of the command queued before the restart")
	if res, err := old.Wait(ctx); err != nil || res.Status != Failed {
		t.Errorf("old command: %+v, %v", res, err)
	}
	mustDo(t, c, recordFor(c, cmd.ID, "ok", cmd.nonce))
	if res, err := cmd.Wait(ctx); err != nil || res.Status != OK || res.ID != cmd.ID {
		t.Errorf("new command: %+v, %v", res, err)
	}
}

// TestWaiterChecksItsCommand: an outcome recorded under a command's id for
// another command (another nonce) is not taken for its own, neither from
// the stream nor from the result hash.
func TestWaiterChecksItsCommand(t *testing.T) {
	_, c, s := senderEnv(t)
	ctx := ctxFor(t)

	cmd, err := s.Send(ctx, Request{Model: "pm", Control: "sp", Value: "1", TTL: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	defer cmd.Close()
	if cmd.nonce == "" {
		t.Fatal("Send queued the command without a nonce")
	}
	mustDo(t, c, recordFor(c, cmd.ID, "timeout", "someoneelse"))
	noOutcome(t, cmd, "another command's outcome from the stream")
	signal(cmd.w.check) // as after a watcher gap: read the hash
	noOutcome(t, cmd, "another command's outcome from the hash")
	mustDo(t, c, recordFor(c, cmd.ID, "ok", cmd.nonce))
	if res, err := cmd.Wait(ctx); err != nil || res.Status != OK {
		t.Errorf("own outcome: %+v, %v", res, err)
	}
}
