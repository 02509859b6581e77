package dtu

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"testing"
	"time"

	"github.com/redis/rueidis"

	"github.com/voltedge/voltedge/internal/contract"
	"github.com/voltedge/voltedge/internal/keys"
	"github.com/voltedge/voltedge/internal/wait"
)

// TestMassDisconnectNeverLosesState: 2,000 DTUs dropped at once, with a
// sink queue far smaller than the writes that follows. Samples may be shed
// under overload; link state may not: every status hash says offline and
// every link gets exactly one offline event.
func TestMassDisconnectNeverLosesState(t *testing.T) {
	if testing.Short() {
		t.Skip("2,000 sockets")
	}
	const n = 2000
	b := newBedWith(t, bedOptions{
		queue: 64,
		// Every test DTU comes from 127.0.0.1: no per-address cap.
		dtu: "max_unregistered = 2000\nmax_unregistered_per_ip = 0\n",
		files: map[string]string{
			"templates/quiet.toml": "[[task]]\nname = \"t\"\nslave = 1\nfunction = 3\nstart = 0\ncount = 1\ninterval = \"1h\"\n\n[[point]]\nid = \"1\"\naddress = 0\n",
			"channels/test.toml":   "[[range]]\nfirst = 1\nlast = " + strconv.Itoa(n) + "\nid = \"m{n}\"\nregistration = \"M{n}\"\ntemplate = \"quiet\"\n",
		},
	})
	ctx := context.Background()
	conns := make([]net.Conn, 0, n)
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	for i := 1; i <= n; i++ {
		c, err := net.Dial("tcp", b.addr)
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
		if _, err := fmt.Fprintf(c, "M%d\n", i); err != nil {
			t.Fatal(err)
		}
	}
	online := func(want string) func() error {
		return func() error {
			cmds := make(rueidis.Commands, 0, n)
			for i := 1; i <= n; i++ {
				cmds = append(cmds, b.rc.B().Hget().Key(keys.ChannelStatus("m"+strconv.Itoa(i))).Field(contract.ChannelOnline).Build())
			}
			wrong := 0
			for _, r := range b.rc.DoMulti(ctx, cmds...) {
				if v, _ := r.ToString(); v != want {
					wrong++
				}
			}
			return wait.Check(wrong == 0, "%d of %d status hashes do not say online=%s", wrong, n, want)
		}
	}
	wait.For(t, 30*time.Second, "every link online", online("1"))
	for _, c := range conns {
		c.Close()
	}
	wait.For(t, 15*time.Second, "every link offline", online("0"))
	wait.For(t, 5*time.Second, "one offline event per link", func() error {
		es, err := b.rc.Do(ctx, b.rc.B().Xrange().Key(keys.ConnectionEvents).Start("-").End("+").Build()).AsXRange()
		if err != nil {
			return err
		}
		per := map[string]int{}
		for _, e := range es {
			if e.FieldValues[contract.EventType] == contract.EventOffline {
				per[e.FieldValues[contract.EventChannel]]++
			}
		}
		for i := 1; i <= n; i++ {
			if c := per["m"+strconv.Itoa(i)]; c != 1 {
				return fmt.Errorf("m%d has %d offline events (%d channels with events)", i, c, len(per))
			}
		}
		return nil
	})
}
