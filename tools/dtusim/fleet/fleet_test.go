package fleet

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"math"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/voltedge/voltedge/internal/rtu"
	"github.com/voltedge/voltedge/internal/wait"
)

// registry accepts connections and records each registration id.
type registry struct {
	mu    sync.Mutex
	ids   map[string]int
	conns []net.Conn
}

// serve accepts until ln closes; read returns one registration from a connection.
func (r *registry) serve(ln net.Listener, read func(*bufio.Reader) (string, error), after func(net.Conn, *bufio.Reader)) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		go func() {
			br := bufio.NewReaderSize(c, 64)
			c.SetReadDeadline(time.Now().Add(5 * time.Second))
			id, err := read(br)
			if err != nil {
				c.Close()
				return
			}
			c.SetReadDeadline(time.Time{})
			r.mu.Lock()
			r.ids[id]++
			r.conns = append(r.conns, c)
			r.mu.Unlock()
			if after != nil {
				after(c, br)
			}
		}()
	}
}

func (r *registry) count() (distinct, total int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, n := range r.ids {
		total += n
	}
	return len(r.ids), total
}

func (r *registry) close() {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, c := range r.conns {
		c.Close()
	}
}

func readLine(br *bufio.Reader) (string, error) {
	s, err := br.ReadString('\n')
	if err != nil {
		return "", err
	}
	return s[:len(s)-1], nil
}

func runFleet(t *testing.T, cfg FleetConfig) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- RunFleet(ctx, cfg) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("RunFleet: %v", err)
				}
			case <-time.After(10 * time.Second):
				t.Error("fleet did not stop")
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

func TestFleet200(t *testing.T) {
	const n = 200
	ln := listen(t)
	reg := &registry{ids: map[string]int{}}
	t.Cleanup(reg.close)
	// Every link is polled once to show its slave answers.
	polled := make(chan error, n)
	go reg.serve(ln, readLine, func(c net.Conn, br *bufio.Reader) {
		req := rtu.Request{Slave: 1, Function: 3, Address: 2000, Quantity: 100}
		frame, _ := rtu.AppendRequest(nil, req)
		if _, err := c.Write(frame); err != nil {
			polled <- err
			return
		}
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		resp := make([]byte, rtu.ResponseLen(req))
		if _, err := io.ReadFull(br, resp); err != nil {
			polled <- err
			return
		}
		_, err := rtu.ParseResponse(req, resp)
		polled <- err
	})
	st := new(Stats)
	stop := runFleet(t, FleetConfig{
		N: n, Prefix: "DTU", Start: 1001, Ramp: 5000, Stats: st,
		Device: DeviceConfig{Addr: ln.Addr().String(), Heartbeat: []byte(testHeartbeat), HeartbeatInterval: time.Minute, FirstHeartbeat: time.Minute},
	})
	for range n {
		select {
		case err := <-polled:
			if err != nil {
				t.Fatal(err)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("only some devices answered: %+v", st.Snapshot())
		}
	}
	distinct, total := reg.count()
	if distinct != n || total != n {
		t.Fatalf("%d distinct ids in %d registrations, want %d", distinct, total, n)
	}
	reg.mu.Lock()
	for i := range n {
		if id := fmt.Sprintf("DTU%d", 1001+i); reg.ids[id] != 1 {
			t.Errorf("id %s registered %d times", id, reg.ids[id])
		}
	}
	reg.mu.Unlock()
	wait.For(t, patience, "every device connected and answering", func() error {
		return wait.Check(st.Connected.Load() == n && st.Responses.Load() == n, "stats %+v", st.Snapshot())
	})
	stop()
	if c := st.Connected.Load(); c != 0 {
		t.Fatalf("%d still connected after stop", c)
	}
}

func TestFleetReconnects(t *testing.T) {
	ln := listen(t)
	reg := &registry{ids: map[string]int{}}
	t.Cleanup(reg.close)
	// The server drops every link right after registration.
	go reg.serve(ln, readLine, func(c net.Conn, _ *bufio.Reader) { c.Close() })
	st := new(Stats)
	runFleet(t, FleetConfig{
		N: 2, Prefix: "R", Width: 3, Terminator: []byte("\n"), Stats: st,
		BackoffMin: 5 * time.Millisecond, BackoffMax: 10 * time.Millisecond,
		Device: DeviceConfig{Addr: ln.Addr().String()},
	})
	wait.For(t, patience, "the devices to reconnect", func() error {
		reg.mu.Lock()
		defer reg.mu.Unlock()
		return wait.Check(reg.ids["R000"] >= 3 && reg.ids["R001"] >= 3, "registrations %v", reg.ids)
	})
	if st.Reconnects.Load() < 4 || st.Snapshot().LastError == "" {
		t.Fatalf("stats %+v", st.Snapshot())
	}
}

func TestFleetFixedIDs(t *testing.T) {
	ln := listen(t)
	reg := &registry{ids: map[string]int{}}
	t.Cleanup(reg.close)
	const width = 10
	go reg.serve(ln, func(br *bufio.Reader) (string, error) {
		b := make([]byte, width)
		_, err := io.ReadFull(br, b)
		return string(b), err
	}, nil)
	runFleet(t, FleetConfig{N: 20, Prefix: "SN", Start: 95, Width: 8, Fixed: true, Device: DeviceConfig{Addr: ln.Addr().String()}})
	wait.For(t, patience, "every fixed id", func() error { d, _ := reg.count(); return wait.Equal(d, 20) })
	reg.mu.Lock()
	defer reg.mu.Unlock()
	for _, id := range []string{"SN00000095", "SN00000114"} {
		if reg.ids[id] != 1 {
			t.Errorf("id %q missing: %v", id, reg.ids)
		}
	}
}

func TestFleetConfig(t *testing.T) {
	c := FleetConfig{Prefix: "DTU", Start: 1001}
	if got := string(c.Registration(0)); got != "DTU1001\n" {
		t.Fatalf("default registration %q", got)
	}
	c.Terminator = []byte("\r\n")
	if got := string(c.Registration(9)); got != "DTU1010\r\n" {
		t.Fatalf("registration %q", got)
	}
	c.Width, c.Fixed = 6, true
	if got := string(c.Registration(0)); got != "DTU001001" {
		t.Fatalf("fixed registration %q", got)
	}
	c.IDFunc = func(i int) []byte { return []byte{byte(i), 0xAA} }
	if got := c.Registration(3); len(got) != 2 || got[0] != 3 {
		t.Fatalf("IDFunc registration % X", got)
	}

	maxID := uint32(math.MaxUint32)
	c = FleetConfig{Prefix: "DTU", Start: 70000, Device: DeviceConfig{Profile: ProfileTLV}}
	if got := c.Registration(1); !bytes.Equal(got, []byte{0, 1, 0x11, 0x71}) || c.DeviceName(1) != "70001" {
		t.Fatalf("tlv registration % X, name %q", got, c.DeviceName(1))
	}

	for name, bad := range map[string]FleetConfig{
		"unknown profile":      {N: 1, Device: DeviceConfig{Addr: "x:1", Profile: "x"}},
		"tlv id past 32 bits":  {N: 2, Start: int(maxID), Device: DeviceConfig{Addr: "x:1", Profile: ProfileTLV}},
		"fixed line ids":       {N: 1, Fixed: true, Device: DeviceConfig{Addr: "x:1", Profile: ProfileLine}},
		"line terminator":      {N: 1, Terminator: []byte(";"), Device: DeviceConfig{Addr: "x:1", Profile: ProfileLine}},
		"line break in prefix": {N: 1, Prefix: "a\rb", Device: DeviceConfig{Addr: "x:1", Profile: ProfileLine}},
		"fixed lengths differ": {N: 20, Prefix: "D", Start: 1, Fixed: true, Device: DeviceConfig{Addr: "x:1"}},
		"negative N":           {N: -1, Device: DeviceConfig{Addr: "x:1"}},
		"no address":           {N: 1},
		"terminator in prefix": {N: 1, Prefix: "a\nb", Terminator: []byte("\n"), Device: DeviceConfig{Addr: "x:1"}},
	} {
		if err := RunFleet(context.Background(), bad); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}
