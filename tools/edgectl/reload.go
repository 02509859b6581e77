package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"github.com/redis/rueidis"

	"github.com/voltedge/voltedge/internal/contract"
	"github.com/voltedge/voltedge/internal/keys"
)

// reloadReplies bounds the replies (of any request) buffered while waiting.
const reloadReplies = 16

func runReload(ctx context.Context, a *app, args []string) error {
	fs := a.flags("reload", "[-wait 10s]",
		"Asks comsrv to reload its channel and template files: publishes a request id on\n"+
			keys.Reload+" and waits for comsrv's answer on "+keys.ReloadResult+". Prints\n"+
			"\"reloaded: 2 added, 1 changed, 0 removed\", or \"reload refused: <why>\" and exits with status 1.")
	wait := fs.Duration("wait", 10*time.Second, "how long to wait for comsrv's answer")
	pos, err := a.parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return usageErr(fs, "unexpected argument %q", pos[0])
	}
	if *wait <= 0 {
		return usageErr(fs, "-wait must be positive")
	}
	c, err := a.client()
	if err != nil {
		return err
	}
	defer c.Close()
	id, err := newRequestID()
	if err != nil {
		return err
	}
	reply, err := requestReload(ctx, a, c, id, *wait)
	if err != nil {
		return err
	}
	if !reply.OK {
		fmt.Fprintf(a.stdout, "reload refused: %s\n", oneLine(reply.Message))
		return errReported
	}
	line := fmt.Sprintf("reloaded: %d added, %d changed, %d removed", reply.Added, reply.Changed, reply.Removed)
	if reply.Message != "" {
		line += " (" + oneLine(reply.Message) + ")"
	}
	fmt.Fprintln(a.stdout, line)
	return nil
}

// newRequestID returns 8 random bytes in hex.
func newRequestID() (string, error) {
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("request id: %w", err)
	}
	return hex.EncodeToString(b[:]), nil
}

// requestReload subscribes to the answers, publishes the request and
// returns the answer to id, waiting at most wait.
func requestReload(ctx context.Context, a *app, c rueidis.Client, id string, wait time.Duration) (contract.ReloadReply, error) {
	ctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	replies := make(chan string, reloadReplies)
	subscribed := make(chan struct{})
	done := make(chan error, 1)
	sctx, stop := context.WithCancel(ctx)
	defer func() {
		stop()
		<-done
	}()
	hooked := rueidis.WithOnSubscriptionHook(sctx, func(s rueidis.PubSubSubscription) {
		if s.Kind == "subscribe" && s.Channel == keys.ReloadResult {
			select {
			case <-subscribed:
			default:
				close(subscribed)
			}
		}
	})
	go func() {
		done <- c.Receive(hooked, c.B().Subscribe().Channel(keys.ReloadResult).Build(), func(m rueidis.PubSubMessage) {
			select {
			case replies <- m.Message:
			default: // a flood of other requests' answers: ours may still come
			}
		})
	}()

	noAnswer := fmt.Errorf("no comsrv answered on %s within %s", keys.Reload, wait)
	select {
	case <-subscribed:
	case err := <-done:
		done <- err // for the deferred wait
		return contract.ReloadReply{}, fmt.Errorf("subscribe to %s: %w", keys.ReloadResult, err)
	case <-ctx.Done():
		return contract.ReloadReply{}, ctxErr(ctx, noAnswer)
	}
	n, err := c.Do(ctx, c.B().Publish().Channel(keys.Reload).Message(id).Build()).AsInt64()
	if err != nil {
		return contract.ReloadReply{}, fmt.Errorf("publish the reload request on %s: %w", keys.Reload, err)
	}
	if n == 0 {
		return contract.ReloadReply{}, fmt.Errorf("no comsrv is listening on %s", keys.Reload)
	}
	for {
		select {
		case msg := <-replies:
			r, err := contract.ParseReloadReply([]byte(msg))
			if err != nil {
				a.log.Warn("unreadable message on "+keys.ReloadResult, "err", err)
				continue
			}
			if r.ID == id {
				return r, nil
			}
		case err := <-done:
			done <- err
			return contract.ReloadReply{}, fmt.Errorf("subscription to %s ended: %w", keys.ReloadResult, err)
		case <-ctx.Done():
			return contract.ReloadReply{}, ctxErr(ctx, noAnswer)
		}
	}
}

// ctxErr returns timeout when ctx ran out of time, else ctx's error (an interrupt).
func ctxErr(ctx context.Context, timeout error) error {
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return timeout
	}
	return ctx.Err()
}
