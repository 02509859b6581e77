package channel_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/rueidis"

	"github.com/voltedge/voltedge/comsrv/config"
	"github.com/voltedge/voltedge/comsrv/config/configtest"
	"github.com/voltedge/voltedge/comsrv/control"
	"github.com/voltedge/voltedge/comsrv/dtu"
	"github.com/voltedge/voltedge/comsrv/modbus"
	"github.com/voltedge/voltedge/comsrv/sink"
	"github.com/voltedge/voltedge/internal/contract"
	"github.com/voltedge/voltedge/internal/keys"
	"github.com/voltedge/voltedge/internal/lualib"
	"github.com/voltedge/voltedge/internal/redistest"
	"github.com/voltedge/voltedge/internal/rtu"
	"github.com/voltedge/voltedge/internal/wait"
)

// The same scenarios run through a DTU link (the device dials comsrv,
// registers, then answers RTU) and a Modbus channel (comsrv dials the device
// over rtuovertcp://), with the same RTU device behind both, and expect the
// same counters, quality marks and events.

// Behaviours of the test device's slave 1 (slave 2 always answers).
const (
	answer    = "answer"    // a valid response
	exception = "exception" // exception 02, illegal data address
	gateway   = "gateway"   // exception 0B, gateway target device failed to respond
	silent    = "silent"    // no answer at all
	badCRC    = "badcrc"    // a response with a broken CRC
)

const testComsrv = `
[dtu]
listen = "127.0.0.1:0"
registration_timeout = "1s"
status_interval = "100ms"

[modbus]
request_timeout = "150ms"
flush_delay = "20ms"
retries = 0
backoff_after = 2
backoff_cooldown = "600ms"
reconnect_min = "50ms"
reconnect_max = "200ms"
status_interval = "100ms"

[frames]
flush = "50ms"
`

// Slave 1 has points 1 and 2, slave 2 has point 9, each polled every 50 ms.
const testTemplate = `
[[task]]
name = "one"
slave = 1
function = 3
start = 0
count = 2
interval = "50ms"

[[task]]
name = "two"
slave = 2
function = 3
start = 0
count = 1
interval = "50ms"

[[point]]
id = "1"
address = 0

[[point]]
id = "2"
address = 1

[[point]]
id = "9"
slave = 2
address = 0
`

// device answers RTU requests as its slave 1 behaviour says.
type device struct {
	mu    sync.Mutex
	mode  string
	conns map[net.Conn]bool
}

func (d *device) set(mode string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.mode = mode
}

// answer is the device's reply to req, or nil for none.
func (d *device) answer(req rtu.Request) []byte {
	d.mu.Lock()
	mode := d.mode
	d.mu.Unlock()
	if req.Slave != 1 {
		mode = answer
	}
	switch mode {
	case silent:
		return nil
	case exception:
		return rtu.AppendException(nil, req.Slave, req.Function, rtu.ExIllegalDataAddress)
	case gateway:
		return rtu.AppendException(nil, req.Slave, req.Function, rtu.ExGatewayTargetNoResponse)
	}
	payload := make([]byte, 2*int(req.Quantity))
	for i := range payload {
		payload[i] = byte(i + int(req.Slave))
	}
	out := rtu.AppendResponse(nil, req, payload)
	if mode == badCRC {
		out[len(out)-1] ^= 0xFF
	}
	return out
}

// serve answers requests on c until it closes.
func (d *device) serve(c net.Conn) {
	d.mu.Lock()
	d.conns[c] = true
	d.mu.Unlock()
	defer func() {
		d.mu.Lock()
		delete(d.conns, c)
		d.mu.Unlock()
		c.Close()
	}()
	buf := make([]byte, 0, 512)
	tmp := make([]byte, 256)
	for {
		n, err := c.Read(tmp)
		if err != nil {
			return
		}
		buf = append(buf, tmp[:n]...)
		for len(buf) > 0 {
			req, used, err := rtu.ParseRequest(buf)
			if errors.Is(err, rtu.ErrTruncated) {
				break
			}
			if used == 0 {
				buf = buf[1:]
				continue
			}
			buf = buf[used:]
			if err != nil {
				continue
			}
			if out := d.answer(req); out != nil {
				if _, err := c.Write(out); err != nil {
					return
				}
			}
		}
		buf = append(make([]byte, 0, 512), buf...)
	}
}

// drop closes every connection of the device (every link drops).
func (d *device) drop() {
	d.mu.Lock()
	defer d.mu.Unlock()
	for c := range d.conns {
		c.Close()
	}
}

func (d *device) connected() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return len(d.conns) > 0
}

// bed is comsrv's side of one transport, with its Redis, and the device.
type bed struct {
	rs  *redistest.Server
	rc  rueidis.Client
	dev *device
	ch  string
}

// transport starts comsrv's side of one kind of channel, serving channel
// "c1" through dev, until the test ends.
type transport struct {
	name  string
	start func(t *testing.T, dir string, cfg func() *config.Config, sk *sink.Sink, dev *device, log *slog.Logger)
	// channels is the channel file for the device, given the address the device listens on (Modbus).
	channels func(addr string) string
}

var transports = []transport{
	{
		name: "dtu",
		channels: func(string) string {
			return "[[channel]]\nid = \"c1\"\nregistration = \"DTU1\"\ntemplate = \"meter\"\n"
		},
		start: func(t *testing.T, _ string, cfg func() *config.Config, sk *sink.Sink, dev *device, log *slog.Logger) {
			srv, err := dtu.New(cfg(), sk, log)
			if err != nil {
				t.Fatal(err)
			}
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan struct{})
			go func() { defer close(done); _ = srv.Serve(ctx, ln) }()
			// The DTU dials in, registers and serves; after a drop it dials again.
			go func() {
				for ctx.Err() == nil {
					c, err := net.Dial("tcp", ln.Addr().String())
					if err == nil {
						if _, err = c.Write([]byte("DTU1\n")); err == nil {
							dev.serve(c)
						}
						c.Close()
					}
					select {
					case <-ctx.Done():
					case <-time.After(50 * time.Millisecond):
					}
				}
			}()
			t.Cleanup(func() { cancel(); dev.drop(); <-done })
		},
	},
	{
		name: "modbus",
		channels: func(addr string) string {
			return "[[channel]]\nid = \"c1\"\nurl = \"rtuovertcp://" + addr + "\"\ntemplate = \"meter\"\n"
		},
		start: func(t *testing.T, _ string, cfg func() *config.Config, sk *sink.Sink, _ *device, log *slog.Logger) {
			c := cfg()
			set := modbus.NewSet(c, sk, nopControls{}, nopControls{}, log)
			ctx, cancel := context.WithCancel(context.Background())
			if _, _, _, err := set.Sync(ctx, c.ChannelList); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { cancel(); set.Stop() })
		},
	},
}

// newBed starts a private Redis with the Lua library, a sink, the device
// (listening for Modbus channels) and comsrv's side of tr.
func newBed(t *testing.T, tr transport, comsrv string) *bed {
	t.Helper()
	rs := redistest.Start(t)
	rc := rs.Client(t)
	if _, err := lualib.Ensure(context.Background(), rc); err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	if testing.Verbose() {
		log = slog.New(slog.NewTextHandler(os.Stderr, nil))
	}
	dev := &device{mode: answer, conns: map[net.Conn]bool{}}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go dev.serve(c)
		}
	}()
	dir := configtest.Write(t, map[string]string{
		"comsrv.toml":          "redis_url = \"" + rs.URL() + "\"\n" + comsrv,
		"templates/meter.toml": testTemplate,
		"channels/c.toml":      tr.channels(ln.Addr().String()),
	})
	cfg := func() *config.Config { return configtest.Load(t, dir) }
	sk := sink.New(rc, lualib.NewCaller(rc, log), sink.Options{FlushInterval: 100 * time.Millisecond}, log, nil)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); sk.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	tr.start(t, dir, cfg, sk, dev, log)
	return &bed{rs: rs, rc: rc, dev: dev, ch: "c1"}
}

// status is the channel's status hash.
func (b *bed) status(t *testing.T) map[string]string {
	t.Helper()
	m, err := b.rc.Do(context.Background(), b.rc.B().Hgetall().Key(keys.ChannelStatus(b.ch)).Build()).AsStrMap()
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// stale lists the channel's points marked stale, sorted.
func (b *bed) stale(t *testing.T) string {
	t.Helper()
	m, err := b.rc.Do(context.Background(), b.rc.B().Hgetall().Key(keys.ChannelQuality(b.ch)).Build()).AsStrMap()
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for id, q := range m {
		if q == "stale" {
			ids = append(ids, id)
		}
	}
	slices.SortFunc(ids, config.CompareIDs)
	return strings.Join(ids, ",")
}

// events lists the channel's connection events, oldest first.
func (b *bed) events(t *testing.T) string {
	t.Helper()
	es, err := b.rc.Do(context.Background(), b.rc.B().Xrange().Key(keys.ConnectionEvents).Start("-").End("+").Build()).AsXRange()
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range es {
		if e.FieldValues["channel"] == b.ch {
			out = append(out, e.FieldValues["event"])
		}
	}
	return strings.Join(out, ",")
}

func num(m map[string]string, field string) int {
	n, _ := strconv.Atoi(m[field])
	return n
}

// step sets slave 1's behaviour (or drops the link) and waits for what the channel must then show.
type step struct {
	mode   string // slave 1 behaviour from now on; "drop" closes the link
	expect func(m map[string]string, stale, events string) error
}

var scenarios = []struct {
	name  string
	steps []step
}{
	{"answer", []step{{answer, func(m map[string]string, stale, events string) error {
		if num(m, "polls_ok") < 4 || stale != "" || m["online"] != "1" || events != "online" {
			return fmt.Errorf("want polls, no stale points, online once; status %v, stale %q, events %q", m, stale, events)
		}
		return nil
	}}}},
	{"exception is an answer", []step{{exception, func(m map[string]string, stale, _ string) error {
		if num(m, "exceptions") < 3 || stale != "" || m["unreachable_slaves"] != "" || num(m, "timeouts") != 0 {
			return fmt.Errorf("want exceptions without stale values; status %v, stale %q", m, stale)
		}
		return nil
	}}}},
	{"exception 0B is a silent slave", []step{{answer, fresh}, {gateway, backedOff("exceptions")}}},
	{"timeout", []step{{answer, fresh}, {silent, backedOff("timeouts")}}},
	{"crc error", []step{{answer, fresh}, {badCRC, func(m map[string]string, stale, _ string) error {
		if num(m, "crc_errors") < 3 || m["unreachable_slaves"] != "" || stale != "" {
			return fmt.Errorf("want CRC errors, no back-off, values not marked stale; status %v, stale %q", m, stale)
		}
		return nil
	}}}},
	{"recovery", []step{{silent, backedOff("timeouts")}, {answer, fresh}}},
	{"link loss", []step{
		{answer, fresh},
		{"drop", func(m map[string]string, stale, events string) error {
			if !strings.HasPrefix(events, "online,offline") {
				return fmt.Errorf("want an offline event; status %v, events %q", m, events)
			}
			return nil
		}},
		{answer, func(m map[string]string, stale, events string) error {
			if m["online"] != "1" || num(m, "connects") < 2 || stale != "" || !strings.HasPrefix(events, "online,offline,online") {
				return fmt.Errorf("want the channel online again with good values; status %v, stale %q, events %q", m, stale, events)
			}
			return nil
		}},
	}},
}

// fresh: both slaves answered since the last step, nothing is stale.
func fresh(m map[string]string, stale, _ string) error {
	if m["online"] != "1" || stale != "" || m["unreachable_slaves"] != "" {
		return fmt.Errorf("want online, nothing stale, nothing unreachable; status %v, stale %q", m, stale)
	}
	return nil
}

// backedOff: slave 1 (points 1 and 2) is in cool-down and stale, its polls
// are skipped and counted in field; slave 2 is unaffected.
func backedOff(field string) func(m map[string]string, stale, _ string) error {
	return func(m map[string]string, stale, _ string) error {
		if num(m, field) < 2 || m["unreachable_slaves"] != "1" || stale != "1,2" || num(m, "skipped_polls") < 1 || m["online"] != "1" {
			return fmt.Errorf("want slave 1 backed off (%s ≥ 2, skipped polls, points 1,2 stale) and the link online; status %v, stale %q", field, m, stale)
		}
		return nil
	}
}

func TestTransportsShareChannelLogic(t *testing.T) {
	for _, tr := range transports {
		for _, sc := range scenarios {
			t.Run(tr.name+"/"+sc.name, func(t *testing.T) {
				t.Parallel()
				b := newBed(t, tr, testComsrv)
				for i, st := range sc.steps {
					if st.mode == "drop" {
						wait.For(t, 5*time.Second, "device connected", func() error {
							if !b.dev.connected() {
								return errors.New("no connection")
							}
							return nil
						})
						b.dev.drop()
						// Hold the device off long enough for the offline state to be seen.
						b.dev.set(silent)
					} else {
						b.dev.set(st.mode)
					}
					wait.For(t, 8*time.Second, fmt.Sprintf("step %d (%s)", i+1, st.mode), func() error {
						return st.expect(b.status(t), b.stale(t), b.events(t))
					})
				}
			})
		}
	}
}

// TestRedisRestartRewritesState: Redis restarts without persistence while
// slave 1 is in back-off; every transport writes its status and the stale
// marks again (absent marks would read as good).
func TestRedisRestartRewritesState(t *testing.T) {
	for _, tr := range transports {
		t.Run(tr.name, func(t *testing.T) {
			t.Parallel()
			b := newBed(t, tr, testComsrv)
			b.dev.set(silent)
			wait.For(t, 8*time.Second, "slave 1 backed off", func() error {
				return backedOff("timeouts")(b.status(t), b.stale(t), "")
			})
			b.rs.Restart(t) // the sink's caller loads the Lua library again by itself
			wait.For(t, 8*time.Second, "state written again after the restart", func() error {
				m, stale := b.status(t), b.stale(t)
				if m["online"] != "1" || stale != "1,2" {
					return fmt.Errorf("status %v, stale %q", m, stale)
				}
				return nil
			})
		})
	}
}

// Every channel kind refreshes its status hash on its own interval: a
// Modbus channel does not take the DTU listener's.
func TestStatusIntervalPerChannelKind(t *testing.T) {
	cfg := strings.Replace(testComsrv, "[dtu]\nlisten = \"127.0.0.1:0\"\nregistration_timeout = \"1s\"\nstatus_interval = \"100ms\"",
		"[dtu]\nlisten = \"127.0.0.1:0\"\nstatus_interval = \"1h\"", 1)
	b := newBed(t, transports[1], cfg)
	var first string
	wait.For(t, 5*time.Second, "first status", func() error {
		if first = b.status(t)["updated_at"]; first == "" {
			return errors.New("no status yet")
		}
		return nil
	})
	wait.For(t, 3*time.Second, "status refreshed on [modbus] status_interval", func() error {
		if u := b.status(t)["updated_at"]; u == first {
			return fmt.Errorf("updated_at still %s", u)
		}
		return nil
	})
}

// nopControls is a control registry and reporter for channels that get no commands here.
type nopControls struct{}

func (nopControls) Attach(string, control.Target)              {}
func (nopControls) Detach(string, control.Target)              {}
func (nopControls) Report(*contract.Command, contract.Outcome) {}
