package main

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/redis/rueidis"

	"github.com/voltedge/voltedge/internal/contract"
	"github.com/voltedge/voltedge/internal/keys"
	"github.com/voltedge/voltedge/internal/redistest"
	"github.com/voltedge/voltedge/internal/wait"
)

// fakeComsrv plays comsrv's side of a reload: it subscribes to keys.Reload
// and publishes on keys.ReloadResult whatever answer(id) returns, in order.
func fakeComsrv(t *testing.T, srv *redistest.Server, answer func(id string) []string) {
	t.Helper()
	c := srv.Client(t)
	requests := make(chan string, 16)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{}, 2)
	t.Cleanup(func() { cancel(); <-done; <-done })
	go func() {
		defer func() { done <- struct{}{} }()
		_ = c.Receive(ctx, c.B().Subscribe().Channel(keys.Reload).Build(), func(m rueidis.PubSubMessage) {
			requests <- m.Message
		})
	}()
	go func() { // the Receive handler must not call Redis itself
		defer func() { done <- struct{}{} }()
		for {
			select {
			case <-ctx.Done():
				return
			case id := <-requests:
				for _, msg := range answer(id) {
					_ = c.Do(ctx, c.B().Publish().Channel(keys.ReloadResult).Message(msg).Build()).Error()
				}
			}
		}
	}()
	wait.For(t, 10*time.Second, "the fake comsrv's subscription", func() error {
		n, err := c.Do(ctx, c.B().PubsubNumsub().Channel(keys.Reload).Build()).AsIntMap()
		if err != nil {
			return err
		}
		return wait.Check(n[keys.Reload] > 0, "PUBSUB NUMSUB %v", n)
	})
}

func replyJSON(t *testing.T, r contract.ReloadReply) string {
	t.Helper()
	b, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestReload(t *testing.T) {
	srv := redistest.Start(t)
	var ids []string
	fakeComsrv(t, srv, func(id string) []string {
		ids = append(ids, id)
		if len(ids) == 1 {
			return []string{
				"not json",
				replyJSON(t, contract.ReloadReply{ID: "someone-else", OK: false, Message: "not yours"}),
				replyJSON(t, contract.ReloadReply{ID: id, OK: true, Added: 2, Changed: 1}),
			}
		}
		return []string{replyJSON(t, contract.ReloadReply{ID: id, Message: `template "power_meter": point 3: unknown type "int17"`})}
	})

	if out := mustCLI(t, srv.URL(), "reload"); out != "reloaded: 2 added, 1 changed, 0 removed\n" {
		t.Errorf("reload printed %q", out)
	}
	out, errOut, code := cli(t, srv.URL(), "reload")
	if code != 1 || out != "reload refused: template \"power_meter\": point 3: unknown type \"int17\"\n" || errOut != "" {
		t.Errorf("refused reload: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	if len(ids) != 2 || len(ids[0]) != 16 || ids[0] == ids[1] {
		t.Errorf("request ids %q, want two different 16-digit hex ids", ids)
	}
}

func TestReloadNobodyAnswers(t *testing.T) {
	srv := redistest.Start(t)
	out, errOut, code := cli(t, srv.URL(), "reload")
	if code != 1 || out != "" || errOut != "edgectl reload: no comsrv is listening on "+keys.Reload+"\n" {
		t.Errorf("no listener: exit %d, stdout %q, stderr %q", code, out, errOut)
	}

	fakeComsrv(t, srv, func(string) []string { return nil }) // listens, never answers
	out, errOut, code = cli(t, srv.URL(), "reload", "-wait", "300ms")
	if code != 1 || out != "" || errOut != "edgectl reload: no comsrv answered on "+keys.Reload+" within 300ms\n" {
		t.Errorf("silent listener: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
}
