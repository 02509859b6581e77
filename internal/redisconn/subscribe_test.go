package redisconn_test

import (
	"context"
	"io"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/rueidis"

	"github.com/voltedge/voltedge/internal/redisconn"
	"github.com/voltedge/voltedge/internal/redistest"
	"github.com/voltedge/voltedge/internal/wait"
)

func TestBackoff(t *testing.T) {
	b := redisconn.Backoff{Min: 10 * time.Millisecond, Max: 35 * time.Millisecond}
	var got []time.Duration
	for range 4 {
		got = append(got, b.Next())
	}
	want := []time.Duration{10 * time.Millisecond, 20 * time.Millisecond, 35 * time.Millisecond, 35 * time.Millisecond}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("delays %v, want %v", got, want)
		}
	}
	b.Reset()
	if d := b.Next(); d != 10*time.Millisecond {
		t.Fatalf("after Reset: %v", d)
	}
	var zero redisconn.Backoff
	if d := zero.Next(); d != redisconn.DefaultBackoffMin {
		t.Fatalf("zero Backoff starts at %v", d)
	}
}

// TestSubscribeSurvivesRestart: a subscription comes back after Redis
// restarts, on the shared connection and on a dedicated one.
func TestSubscribeSurvivesRestart(t *testing.T) {
	for _, dedicated := range []bool{false, true} {
		name := "shared"
		if dedicated {
			name = "dedicated"
		}
		t.Run(name, func(t *testing.T) { testSubscribeSurvivesRestart(t, dedicated) })
	}
}

func testSubscribeSurvivesRestart(t *testing.T, dedicated bool) {
	srv := redistest.Start(t)
	client := srv.Client(t)
	ctx, cancel := context.WithCancel(context.Background())
	msgs := make(chan string, 16)
	var confirmations atomic.Int32
	done := make(chan struct{})
	go func() {
		defer close(done)
		redisconn.Subscribe(ctx, client, func(b rueidis.Builder) rueidis.Completed {
			return b.Subscribe().Channel("news").Build()
		}, func(m rueidis.PubSubMessage) {
			msgs <- m.Message
		}, redisconn.SubscribeOptions{
			Name:         "news",
			Log:          slog.New(slog.NewTextHandler(io.Discard, nil)),
			Backoff:      redisconn.Backoff{Min: 10 * time.Millisecond, Max: 200 * time.Millisecond},
			Dedicated:    dedicated,
			OnSubscribed: func() { confirmations.Add(1) },
		})
	}()

	publish := func(msg string) {
		t.Helper()
		// A publication reaches only the subscribers of the moment: wait for
		// the subscription, then publish until the message arrives.
		pub := srv.Client(t)
		wait.For(t, 10*time.Second, "message "+msg, func() error {
			n, err := pub.Do(ctx, pub.B().Publish().Channel("news").Message(msg).Build()).AsInt64()
			if err != nil {
				return err
			}
			if n == 0 {
				return wait.Check(false, "no subscriber")
			}
			select {
			case got := <-msgs:
				return wait.Equal(got, msg)
			case <-time.After(time.Second):
				return wait.Check(false, "published to %d subscribers, nothing received", n)
			}
		})
	}
	publish("before")
	first := confirmations.Load()
	if first == 0 {
		t.Fatal("no confirmation for a working subscription")
	}

	srv.Restart(t)
	publish("after")
	if n := confirmations.Load(); n <= first {
		t.Fatalf("%d confirmations after the restart, %d before", n, first)
	}

	cancel()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Subscribe did not return after its context ended")
	}
	if dedicated {
		// The dedicated connection is closed: the server forgets the subscriber.
		wait.For(t, 5*time.Second, "the subscriber to leave", func() error {
			n, err := client.Do(context.Background(), client.B().PubsubNumsub().Channel("news").Build()).AsIntMap()
			if err != nil {
				return err
			}
			return wait.Equal(n["news"], int64(0))
		})
	}
}
