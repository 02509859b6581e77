package modbus

import (
	"context"
	"io"
	"log"
	"log/slog"
	"net"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/redis/rueidis"
	mb "github.com/simonvetter/modbus"

	"github.com/voltedge/voltedge/comsrv/config"
	"github.com/voltedge/voltedge/comsrv/config/configtest"
	"github.com/voltedge/voltedge/comsrv/control"
	"github.com/voltedge/voltedge/comsrv/sink"
	"github.com/voltedge/voltedge/internal/contract"
	"github.com/voltedge/voltedge/internal/lualib"
	"github.com/voltedge/voltedge/internal/redistest"
	"github.com/voltedge/voltedge/internal/wait"
)

// env is a private Redis with the Lua library loaded and a running sink.
type env struct {
	rc   rueidis.Client
	sink *sink.Sink
	rep  *recorder
	reg  *registry
	log  *slog.Logger
}

func newEnv(t *testing.T) *env {
	t.Helper()
	rs := redistest.Start(t)
	rc := rs.Client(t)
	ctx, cancel := context.WithCancel(context.Background())
	if _, err := lualib.Ensure(ctx, rc); err != nil {
		t.Fatal(err)
	}
	lg := slog.New(slog.NewTextHandler(io.Discard, nil))
	if testing.Verbose() {
		lg = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	sk := sink.New(rc, lualib.NewCaller(rc, lg), sink.Options{FlushInterval: 200 * time.Millisecond}, lg, nil)
	done := make(chan struct{})
	go func() {
		defer close(done)
		sk.Run(ctx)
	}()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	return &env{rc: rc, sink: sk, rep: &recorder{got: map[string]contract.Outcome{}}, reg: &registry{m: map[string]control.Target{}}, log: lg}
}

// hget reads one hash field ("" when absent).
func (e *env) hget(t *testing.T, key, field string) string {
	t.Helper()
	v, err := e.rc.Do(context.Background(), e.rc.B().Hget().Key(key).Field(field).Build()).ToString()
	if err != nil && !rueidis.IsRedisNil(err) {
		t.Fatalf("HGET %s %s: %v", key, field, err)
	}
	return v
}

// hgetall reads a whole hash.
func (e *env) hgetall(t *testing.T, key string) map[string]string {
	t.Helper()
	m, err := e.rc.Do(context.Background(), e.rc.B().Hgetall().Key(key).Build()).AsStrMap()
	if err != nil {
		t.Fatalf("HGETALL %s: %v", key, err)
	}
	return m
}

// recorder is a control.Reporter that keeps every outcome.
type recorder struct {
	mu  sync.Mutex
	got map[string]contract.Outcome
}

func (r *recorder) Report(c *contract.Command, o contract.Outcome) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.got[c.ID] = o
}

func (r *recorder) wait(t *testing.T, id string) contract.Outcome {
	t.Helper()
	var o contract.Outcome
	wait.For(t, 10*time.Second, "outcome of command "+id, func() error {
		r.mu.Lock()
		defer r.mu.Unlock()
		var ok bool
		o, ok = r.got[id]
		return wait.Check(ok, "no outcome yet")

	})
	return o
}

// registry is a minimal control.Registry: channel → attached target.
type registry struct {
	mu sync.Mutex
	m  map[string]control.Target
}

func (r *registry) Attach(ch string, t control.Target) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.m[ch] = t
}

func (r *registry) Detach(ch string, t control.Target) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.m[ch] == t {
		delete(r.m, ch)
	}
}

func (r *registry) target(ch string) control.Target {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.m[ch]
}

// device is the register map behind a simonvetter Modbus TCP server: per
// unit id, 64 holding and input registers and 64 coils and discrete inputs.
type device struct {
	mu       sync.Mutex
	holding  map[uint8]*[64]uint16
	input    map[uint8]*[64]uint16
	coils    map[uint8]*[64]bool
	requests map[uint8]int // requests seen per unit id
	// silent unit ids answer only after silentFor (later than the client waits).
	silent    map[uint8]bool
	silentFor time.Duration
	// locked holding registers refuse writes with "illegal data address".
	locked map[uint16]bool
}

func newDevice(units ...uint8) *device {
	d := &device{
		holding: map[uint8]*[64]uint16{}, input: map[uint8]*[64]uint16{}, coils: map[uint8]*[64]bool{},
		requests: map[uint8]int{}, silent: map[uint8]bool{}, locked: map[uint16]bool{},
	}
	for _, u := range units {
		d.holding[u], d.input[u], d.coils[u] = new([64]uint16), new([64]uint16), new([64]bool)
	}
	return d
}

func (d *device) enter(unit uint8) (bool, error) {
	d.mu.Lock()
	d.requests[unit]++
	silent, delay := d.silent[unit], d.silentFor
	_, known := d.holding[unit]
	d.mu.Unlock()
	if silent {
		time.Sleep(delay) // a silent slave: the request must time out
		return false, mb.ErrGWTargetFailedToRespond
	}
	if !known {
		return false, mb.ErrGWPathUnavailable
	}
	return true, nil
}

func span(addr, qty uint16) bool { return int(addr)+int(qty) <= 64 }

func (d *device) HandleCoils(req *mb.CoilsRequest) ([]bool, error) {
	if ok, err := d.enter(req.UnitId); !ok {
		return nil, err
	}
	if !span(req.Addr, req.Quantity) {
		return nil, mb.ErrIllegalDataAddress
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	c := d.coils[req.UnitId]
	if req.IsWrite {
		copy(c[req.Addr:], req.Args)
		return nil, nil
	}
	return append([]bool(nil), c[req.Addr:req.Addr+req.Quantity]...), nil
}

func (d *device) HandleDiscreteInputs(req *mb.DiscreteInputsRequest) ([]bool, error) {
	if ok, err := d.enter(req.UnitId); !ok {
		return nil, err
	}
	if !span(req.Addr, req.Quantity) {
		return nil, mb.ErrIllegalDataAddress
	}
	return make([]bool, req.Quantity), nil
}

func (d *device) HandleHoldingRegisters(req *mb.HoldingRegistersRequest) ([]uint16, error) {
	if ok, err := d.enter(req.UnitId); !ok {
		return nil, err
	}
	if !span(req.Addr, req.Quantity) {
		return nil, mb.ErrIllegalDataAddress
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	h := d.holding[req.UnitId]
	if req.IsWrite {
		for a := req.Addr; a < req.Addr+req.Quantity; a++ {
			if d.locked[a] {
				return nil, mb.ErrIllegalDataAddress
			}
		}
		copy(h[req.Addr:], req.Args)
		return nil, nil
	}
	return append([]uint16(nil), h[req.Addr:req.Addr+req.Quantity]...), nil
}

func (d *device) HandleInputRegisters(req *mb.InputRegistersRequest) ([]uint16, error) {
	if ok, err := d.enter(req.UnitId); !ok {
		return nil, err
	}
	if !span(req.Addr, req.Quantity) {
		return nil, mb.ErrIllegalDataAddress
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]uint16(nil), d.input[req.UnitId][req.Addr:req.Addr+req.Quantity]...), nil
}

func (d *device) setHolding(unit uint8, addr uint16, v uint16) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.holding[unit][addr] = v
}

func (d *device) getHolding(unit uint8, addr uint16) uint16 {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.holding[unit][addr]
}

func (d *device) count(unit uint8) int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.requests[unit]
}

// startServer runs a Modbus TCP server for d on addr until the test ends.
func startServer(t *testing.T, addr string, d *device) *mb.ModbusServer {
	t.Helper()
	srv, err := mb.NewServer(&mb.ServerConfiguration{
		URL: "tcp://" + addr, Timeout: time.Minute, MaxClients: 4,
		Logger: log.New(io.Discard, "", 0),
	}, d)
	if err != nil {
		t.Fatal(err)
	}
	// The port may still be held briefly after a stop.
	wait.For(t, time.Second, "modbus server on "+addr, srv.Start)

	t.Cleanup(func() { _ = srv.Stop() })
	return srv
}

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// loadConfig writes comsrv.toml, templates/meter.toml and channels/c.toml
// into a temporary directory and loads them as comsrv does.
func loadConfig(t *testing.T, comsrv, template, channels string) *config.Config {
	t.Helper()
	return configtest.Load(t, configtest.Write(t, map[string]string{
		"comsrv.toml": comsrv, "templates/meter.toml": template, "channels/c.toml": channels,
	}))
}
