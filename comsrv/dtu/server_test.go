package dtu

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/redis/rueidis"

	"github.com/voltedge/voltedge/comsrv/config"
	"github.com/voltedge/voltedge/comsrv/config/configtest"
	"github.com/voltedge/voltedge/comsrv/sink"
	"github.com/voltedge/voltedge/internal/keys"
	"github.com/voltedge/voltedge/internal/lualib"
	"github.com/voltedge/voltedge/internal/redistest"
	"github.com/voltedge/voltedge/internal/rtu"
	"github.com/voltedge/voltedge/internal/wait"
)

const testTemplate = `
[[task]]
name = "block"
slave = 1
function = 3
start = 0
count = 4
interval = "100ms"

[[point]]
id = "1"
name = "voltage"
address = 0
type = "int16"
scale = 0.1

[[point]]
id = "2"
name = "status"
address = 1

[[point]]
id = "3"
name = "power"
address = 2
type = "float32"
`

const testChannels = `
[[range]]
first = 1
last = 5
id = "c{n}"
registration = "DTU{n}"
template = "meter"
`

// bed is a comsrv DTU server on loopback ports with its own Redis.
type bed struct {
	addr   string   // [dtu]
	addrs  []string // every listener, [dtu] first
	dir    string
	cfg    *config.Config
	rc     rueidis.Client
	srv    *Server
	cancel context.CancelFunc
	done   chan struct{}
}

func newBed(t *testing.T, dtuExtra string) *bed {
	t.Helper()
	return newBedWith(t, bedOptions{dtu: dtuExtra})
}

// bedOptions adds to the bed's configuration.
type bedOptions struct {
	dtu       string            // lines in [dtu]
	tail      string            // tables after the others, e.g. [[listener]]
	files     map[string]string // more files: templates/x.toml, channels/y.toml
	controls  Controls
	withRedis bool      // give the server a client (line result subscriptions)
	log       io.Writer // where the server logs, besides stderr with -v
	queue     int       // the sink's queue (0: its default)
}

func newBedWith(t testing.TB, o bedOptions) *bed {
	t.Helper()
	dtuExtra := o.dtu
	rs := redistest.Start(t)
	dir := t.TempDir()
	write := func(name, text string) { configtest.WriteIn(t, dir, map[string]string{name: text}) }
	write("comsrv.toml", `redis_url = "`+rs.URL()+`"
[dtu]
listen = "127.0.0.1:0"
registration_timeout = "300ms"
status_interval = "100ms"
`+dtuExtra+`
[modbus]
request_timeout = "200ms"
flush_delay = "50ms"
retries = 0
[redis]
flush_interval = "100ms"
[frames]
flush = "50ms"
`+o.tail)
	write("templates/meter.toml", testTemplate)
	write("channels/test.toml", testChannels)
	for name, text := range o.files {
		write(name, text)
	}
	cfg := configtest.Load(t, dir)
	rc := rs.Client(t)
	ctx, cancel := context.WithCancel(context.Background())
	if _, err := lualib.Ensure(ctx, rc); err != nil {
		t.Fatal(err)
	}
	logTo := io.Discard
	if testing.Verbose() {
		logTo = os.Stderr
	}
	if o.log != nil {
		logTo = io.MultiWriter(logTo, o.log)
	}
	log := slog.New(slog.NewTextHandler(logTo, nil))
	sk := sink.New(rc, lualib.NewCaller(rc, log), sink.Options{FlushInterval: 100 * time.Millisecond, Queue: o.queue}, log, nil)
	var opts []Option
	if o.controls != nil {
		opts = append(opts, WithControls(o.controls))
	}
	if o.withRedis {
		opts = append(opts, WithRedis(rc))
	}
	srv, err := New(cfg, sk, log, opts...)
	if err != nil {
		t.Fatal(err)
	}
	b := &bed{rc: rc, srv: srv, cfg: cfg, dir: dir, cancel: cancel, done: make(chan struct{})}
	var lns []net.Listener
	for range cfg.AllListeners() {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		lns = append(lns, ln)
		b.addrs = append(b.addrs, ln.Addr().String())
	}
	b.addr = b.addrs[0]
	sinkCtx, stopSink := context.WithCancel(context.Background())
	sinkDone := make(chan struct{})
	go func() { defer close(sinkDone); sk.Run(sinkCtx) }()
	go func() {
		defer close(b.done)
		if err := srv.Serve(ctx, lns...); err != nil {
			t.Errorf("serve: %v", err)
		}
		stopSink()
		<-sinkDone
	}()
	t.Cleanup(b.stop)
	return b
}

func (b *bed) stop() {
	b.cancel()
	select {
	case <-b.done:
	case <-time.After(10 * time.Second):
		panic("server did not stop")
	}
}

// device is a scripted DTU on a raw socket.
type device struct {
	t *testing.T
	c net.Conn
}

func dial(t *testing.T, addr, reg string) *device {
	t.Helper()
	return dialFrom(t, "", addr, reg)
}

// request reads one request frame (8 bytes for reads) within d.
func (d *device) request(within time.Duration) (rtu.Request, error) {
	_ = d.c.SetReadDeadline(time.Now().Add(within))
	buf := make([]byte, 8)
	if _, err := io.ReadFull(d.c, buf); err != nil {
		return rtu.Request{}, err
	}
	r, _, err := rtu.ParseRequest(buf)
	return r, err
}

func (d *device) mustRequest() rtu.Request {
	d.t.Helper()
	r, err := d.request(2 * time.Second)
	if err != nil {
		d.t.Fatalf("no request: %v", err)
	}
	return r
}

func (d *device) send(b []byte) {
	d.t.Helper()
	if _, err := d.c.Write(b); err != nil {
		d.t.Fatalf("device write: %v", err)
	}
}

// regs is the answer to the test template's block: 2205 (220.5 V), 7, float32 1.5.
var regs = []byte{0x08, 0x9D, 0x00, 0x07, 0x3F, 0xC0, 0x00, 0x00}

// closed reports whether the server closed the connection within d.
func (d *device) closed(within time.Duration) bool {
	_ = d.c.SetReadDeadline(time.Now().Add(within))
	buf := make([]byte, 256)
	for {
		_, err := d.c.Read(buf)
		if err == nil {
			continue
		}
		var ne net.Error
		return !(errors.As(err, &ne) && ne.Timeout())
	}
}

// patience bounds every wait for a state the server reaches on its own.
const patience = 5 * time.Second

func (b *bed) hash(t *testing.T, key string) map[string]string {

	t.Helper()
	m, err := b.rc.Do(context.Background(), b.rc.B().Hgetall().Key(key).Build()).AsStrMap()
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func TestPollWritesValues(t *testing.T) {
	b := newBed(t, "")
	// A heartbeat glued to the registration in one write is kept and counted.
	d := dial(t, b.addr, "DTU1\nwww.usr.cn")
	r := d.mustRequest()
	if r.Slave != 1 || r.Function != rtu.ReadHoldingRegisters || r.Address != 0 || r.Quantity != 4 {
		t.Fatalf("unexpected request %+v", r)
	}
	// Heartbeat glued before and after the response, response split in two writes.
	resp := rtu.AppendResponse(nil, r, regs)
	d.send(append([]byte("www.usr.cn"), resp[:5]...))
	time.Sleep(10 * time.Millisecond) // lets the first half arrive as a read of its own
	d.send(append(resp[5:], "www.usr.cn"...))
	wait.For(t, patience, "values in comsrv:c1:m", func() error { return wait.Check(b.hash(t, keys.ChannelValues("c1"))["1"] != "", "point 1 not written") })
	got := b.hash(t, keys.ChannelValues("c1"))
	want := map[string]string{"1": "220.5", "2": "7", "3": "1.5"}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("point %s = %q, want %q (all: %v)", k, got[k], v, got)
		}
	}
	if ts := b.hash(t, keys.ChannelTimestamps("c1")); ts["1"] == "" {
		t.Errorf("no timestamp for point 1")
	}
	wait.For(t, patience, "status with heartbeats", func() error {
		st := b.hash(t, keys.ChannelStatus("c1"))
		return wait.Check(st["online"] == "1" && st["heartbeats"] == "3" && st["polls_ok"] == "1" && st["registration"] == "DTU1", "status %v", st)
	})
}

func TestSilentClientBlocksNobody(t *testing.T) {
	b := newBed(t, "")
	silent := dial(t, b.addr, "") // never registers
	half := dial(t, b.addr, "DTU")
	start := time.Now()
	d := dial(t, b.addr, "DTU2\n")
	d.mustRequest()
	if e := time.Since(start); e > time.Second {
		t.Fatalf("first request after %v with a silent client connected", e)
	}
	if !silent.closed(2*time.Second) || !half.closed(2*time.Second) {
		t.Fatal("clients that never completed a registration were not closed")
	}
}

func TestRefusals(t *testing.T) {
	b := newBed(t, "")
	for _, reg := range []string{"NOPE\n", "bad id!\n", strings.Repeat("A", 300), "\x00\xff\xfe\n"} {
		d := dial(t, b.addr, reg)
		if !d.closed(2 * time.Second) {
			t.Errorf("registration %q was not refused", reg)
		}
	}
}

func TestReplaceClosesOldLink(t *testing.T) {
	b := newBed(t, "")
	old := dial(t, b.addr, "DTU3\n")
	old.mustRequest()
	nw := dial(t, b.addr, "DTU3\n")
	if !old.closed(2 * time.Second) {
		t.Fatal("old link of a replaced registration still open")
	}
	r := nw.mustRequest()
	nw.send(rtu.AppendResponse(nil, r, regs))
	wait.For(t, patience, "values through the new link", func() error { return wait.Equal(b.hash(t, keys.ChannelValues("c3"))["1"], "220.5") })
	if n := b.srv.Online(); n != 1 {
		t.Fatalf("online links = %d, want 1", n)
	}
	wait.For(t, patience, "status online with connects=2", func() error {
		st := b.hash(t, keys.ChannelStatus("c3"))
		return wait.Check(st["online"] == "1" && st["connects"] == "2", "status %v", st)
	})
}

func TestHeartbeatTimeout(t *testing.T) {
	b := newBed(t, "[dtu.heartbeat]\ntimeout = \"300ms\"\n")
	d := dial(t, b.addr, "DTU4\n")
	if !d.closed(3 * time.Second) {
		t.Fatal("link without heartbeats not closed")
	}
	wait.For(t, patience, "offline status", func() error {
		st := b.hash(t, keys.ChannelStatus("c4"))
		return wait.Check(st["online"] == "0" && st["disconnect_reason"] == "heartbeat timeout", "status %v", st)
	})
}

func TestLateReplyIsNeverTakenForTheNextAnswer(t *testing.T) {
	b := newBed(t, "")
	d := dial(t, b.addr, "DTU5\n")
	r := d.mustRequest()
	// No answer: the request times out (200 ms). Then a late reply with a
	// different value arrives during the flush delay and must be discarded.
	time.Sleep(220 * time.Millisecond) // lets the 200 ms request timeout elapse

	late := rtu.AppendResponse(nil, r, []byte{0x27, 0x0F, 0, 0, 0, 0, 0, 0}) // 999.9
	d.send(late)
	r2 := d.mustRequest()
	d.send(rtu.AppendResponse(nil, r2, regs))
	wait.For(t, patience, "value from the second answer", func() error { return wait.Check(b.hash(t, keys.ChannelValues("c5"))["1"] != "", "point 1 not written") })
	if v := b.hash(t, keys.ChannelValues("c5"))["1"]; v != "220.5" {
		t.Fatalf("voltage %q: the late reply was taken as the answer", v)
	}
	wait.For(t, patience, "timeout counted", func() error { return wait.Equal(b.hash(t, keys.ChannelStatus("c5"))["timeouts"], "1") })
}

func TestGarbageAndBadCRC(t *testing.T) {
	b := newBed(t, "")
	d := dial(t, b.addr, "DTU1\n")
	d.send([]byte{0xde, 0xad, 0xbe, 0xef, 0x00, 0x01})
	r := d.mustRequest()
	bad := rtu.AppendResponse(nil, r, regs)
	bad[len(bad)-1] ^= 0xFF
	d.send(bad)
	// After a CRC error (no retries configured) the next poll must work.
	for i := 0; i < 10; i++ {
		r = d.mustRequest()
		d.send(rtu.AppendResponse(nil, r, regs))
		if b.hash(t, keys.ChannelValues("c1"))["1"] == "220.5" {
			break
		}
	}
	wait.For(t, patience, "crc error counted and values written", func() error {
		st := b.hash(t, keys.ChannelStatus("c1"))
		v := b.hash(t, keys.ChannelValues("c1"))["1"]
		return wait.Check(st["crc_errors"] == "1" && v == "220.5", "crc_errors %q, point 1 %q", st["crc_errors"], v)

	})
	// An exception answer is counted and does not break the link.
	r = d.mustRequest()
	d.send(rtu.AppendException(nil, r.Slave, r.Function, rtu.ExIllegalDataAddress))
	wait.For(t, patience, "exception counted", func() error { return wait.Equal(b.hash(t, keys.ChannelStatus("c1"))["exceptions"], "1") })
	d.mustRequest()
}

func TestConnectionLimit(t *testing.T) {
	b := newBed(t, "max_connections = 3\n")
	var devs []*device
	for i := 1; i <= 3; i++ {
		devs = append(devs, dial(t, b.addr, "DTU"+string(rune('0'+i))+"\n"))
	}
	for _, d := range devs {
		d.mustRequest()
	}
	for i := 0; i < 5; i++ {
		extra := dial(t, b.addr, "DTU4\n")
		if !extra.closed(2 * time.Second) {
			t.Fatal("connection beyond max_connections was not closed")
		}
	}
	// The admitted links keep being polled.
	for _, d := range devs {
		r := d.mustRequest()
		d.send(rtu.AppendResponse(nil, r, regs))
	}
}

func TestNoGoroutineLeak(t *testing.T) {
	before := runtime.NumGoroutine()
	func() {
		b := newBed(t, "")
		for i := 1; i <= 5; i++ {
			d := dial(t, b.addr, "DTU"+string(rune('0'+i))+"\n")
			d.mustRequest()
		}
		dial(t, b.addr, "")          // silent
		dial(t, b.addr, "garbage\n") // refused
		b.stop()
	}()
	wait.For(t, patience, "the goroutines to end", func() error {
		n := runtime.NumGoroutine()
		if n <= before+8 { // rueidis keeps a few until cleanup
			return nil
		}
		buf := make([]byte, 1<<16)
		return fmt.Errorf("%d goroutines before, %d after:\n%s", before, n, buf[:runtime.Stack(buf, true)])
	})
}
