package dtu

import (
	"bytes"
	"context"
	"encoding/hex"
	"fmt"
	"net"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/voltedge/voltedge/internal/keys"
	"github.com/voltedge/voltedge/internal/rtu"
	"github.com/voltedge/voltedge/internal/wait"
)

// logBuffer is a log destination the tests read while the server writes.
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// dialFrom connects to addr from the local address ip (any 127.x address
// is this machine; "" lets the system choose) and sends reg.
func dialFrom(t *testing.T, ip, addr, reg string) *device {
	t.Helper()
	var d net.Dialer
	if ip != "" {
		d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(ip)}
	}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if reg != "" {
		if _, err := c.Write([]byte(reg)); err != nil {
			t.Fatal(err)
		}
	}
	return &device{t: t, c: c}
}

// events returns the entries of comsrv:events.
func (b *bed) events(t *testing.T) []map[string]string {
	t.Helper()
	es, err := b.rc.Do(context.Background(), b.rc.B().Xrange().Key(keys.ConnectionEvents).Start("-").End("+").Build()).AsXRange()
	if err != nil {
		t.Fatal(err)
	}
	out := make([]map[string]string, len(es))
	for i, e := range es {
		out[i] = e.FieldValues
	}
	return out
}

// waitEvent waits for an event of type typ whose reason contains reason.
func (b *bed) waitEvent(t *testing.T, typ, reason string) map[string]string {
	t.Helper()
	var found map[string]string
	wait.For(t, patience, fmt.Sprintf("a %s event %q", typ, reason), func() error {
		for _, e := range b.events(t) {
			if e["event"] == typ && strings.Contains(e["reason"], reason) {
				found = e
				return nil
			}
		}
		return fmt.Errorf("events: %v", b.events(t))
	})
	return found
}

// serve answers every request of d with regs until d's connection ends.
func (d *device) serve() {
	go func() {
		for {
			r, err := d.request(10 * time.Second)
			if err != nil {
				return
			}
			if _, err := d.c.Write(rtu.AppendResponse(nil, r, regs)); err != nil {
				return
			}
		}
	}()
}

func TestAllowlistRefusesOtherSources(t *testing.T) {
	b := newBedWith(t, bedOptions{
		dtu: `allow = ["10.0.0.0/8"]`,
		tail: `[[listener]]
name = "local"
listen = "127.0.0.1:0"
allow = ["127.0.0.2/32"]
`,
		files: map[string]string{"channels/guarded.toml": `[[channel]]
id = "g1"
registration = "G1"
template = "meter"
allow = ["127.0.0.3/32"]
`},
	})
	// [dtu] allows 10/8 only: a loopback client is closed before its registration is read.
	d := dial(t, b.addr, "DTU1\n")
	if !d.closed(2 * time.Second) {
		t.Fatal("a source outside the allowlist was served")
	}
	if e := b.waitEvent(t, "refused", "source not allowed"); e["registration"] != "" || e["listener"] != "dtu" {
		t.Fatalf("refusal event %v: the registration was read", e)
	}
	// The listener allows 127.0.0.2 only.
	if d := dialFrom(t, "127.0.0.3", b.addrs[1], "DTU2\n"); !d.closed(2 * time.Second) {
		t.Fatal("127.0.0.3 was served by a listener that allows 127.0.0.2 only")
	}
	ok := dialFrom(t, "127.0.0.2", b.addrs[1], "DTU2\n")
	ok.mustRequest()
	// Channel g1 allows 127.0.0.3 only, through a listener that allows 127.0.0.2.
	if d := dialFrom(t, "127.0.0.2", b.addrs[1], "G1\n"); !d.closed(2 * time.Second) {
		t.Fatal("channel g1 was served from a source its allowlist does not list")
	}
	if e := b.waitEvent(t, "refused", "source not allowed for the channel"); e["registration"] != "G1" {
		t.Fatalf("refusal event %v", e)
	}
	if n := b.srv.Online(); n != 1 {
		t.Fatalf("online links = %d, want 1", n)
	}
}

func TestReplaceNeverKeepsTheLink(t *testing.T) {
	b := newBed(t, `replace = "never"`)
	old := dial(t, b.addr, "DTU3\n")
	old.serve()
	wait.For(t, patience, "c3 online", func() error { return wait.Equal(b.hash(t, keys.ChannelStatus("c3"))["online"], "1") })
	for i := 0; i < 3; i++ {
		nw := dial(t, b.addr, "DTU3\n")
		if !nw.closed(2 * time.Second) {
			t.Fatal("a second connection with the id of a link that is up was served (replace = never)")
		}
	}
	b.waitEvent(t, "refused", "registration in use")
	polls := b.hash(t, keys.ChannelStatus("c3"))["polls_ok"]
	wait.For(t, patience, "the old link still polled", func() error {
		return wait.Check(b.hash(t, keys.ChannelStatus("c3"))["polls_ok"] > polls, "polls_ok %s", polls)
	})
	st := b.hash(t, keys.ChannelStatus("c3"))
	if st["online"] != "1" || st["connects"] != "1" || st["replacements"] != "0" {
		t.Fatalf("status %v", st)
	}
}

func TestReplaceIfSilent(t *testing.T) {
	b := newBed(t, "replace = \"if-silent\"\nreplace_after = \"1s\"\n[dtu.heartbeat]\ntimeout = \"0s\"")
	old := dial(t, b.addr, "DTU3\nwww.usr.cn")
	old.mustRequest() // and never answers: the link receives nothing from now on
	if nw := dial(t, b.addr, "DTU3\n"); !nw.closed(2 * time.Second) {
		t.Fatal("a link that received bytes less than replace_after ago was replaced")
	}
	var nw *device
	wait.For(t, patience, "a replacement after replace_after of silence", func() error {
		d := dial(t, b.addr, "DTU3\n")
		if _, err := d.request(time.Second); err != nil {
			return err
		}
		nw = d
		return nil
	})
	if !old.closed(2 * time.Second) {
		t.Fatal("the silent link was not closed")
	}
	nw.serve()
	wait.For(t, patience, "replacements = 1", func() error {
		st := b.hash(t, keys.ChannelStatus("c3"))
		return wait.Check(st["online"] == "1" && st["replacements"] == "1", "status %v", st)
	})
}

func TestReplacementsAreCounted(t *testing.T) {
	b := newBed(t, "")
	for i := 0; i < 3; i++ {
		d := dial(t, b.addr, "DTU2\n")
		d.mustRequest()
	}
	wait.For(t, patience, "replacements = 2", func() error {
		st := b.hash(t, keys.ChannelStatus("c2"))
		return wait.Check(st["replacements"] == "2" && st["connects"] == "3", "status %v", st)
	})
	n := 0
	for _, e := range b.events(t) {
		if e["event"] == "replaced" && e["channel"] == "c2" {
			n++
		}
	}
	if n != 2 {
		t.Fatalf("%d replaced events, want 2", n)
	}
}

const (
	channelSecret  = "Ch4nnelSecret"
	listenerSecret = "L1stenerSecret"
)

func TestRegistrationSecret(t *testing.T) {
	logs := &logBuffer{}
	b := newBedWith(t, bedOptions{
		log: logs,
		tail: `[[listener]]
name = "sealed"
listen = "127.0.0.1:0"
secret = "` + listenerSecret + `"
secret_position = "prefix"
`,
		files: map[string]string{"channels/secret.toml": `[[channel]]
id = "s1"
registration = "SEC1"
template = "meter"
secret = "` + channelSecret + `"
`},
	})
	for _, reg := range []string{"SEC1\n", "SEC1" + channelSecret[:len(channelSecret)-1] + "x\n", channelSecret + "SEC1\n", "SEC1x" + channelSecret + "\n"} {
		if d := dial(t, b.addr, reg); !d.closed(2 * time.Second) {
			t.Fatalf("registration %q was served: the channel has a secret", reg)
		}
	}
	d := dial(t, b.addr, "SEC1"+channelSecret+"\nwww.usr.cn")
	d.serve()
	wait.For(t, patience, "s1 online with values", func() error {
		st := b.hash(t, keys.ChannelStatus("s1"))
		return wait.Check(st["online"] == "1" && st["registration"] == "SEC1" && b.hash(t, keys.ChannelValues("s1"))["1"] == "220.5", "status %v", st)
	})
	// The listener's secret goes before the id, then the channel's after it.
	for _, reg := range []string{"DTU2\n", "x" + listenerSecret[1:] + "DTU2\n", listenerSecret + "SEC1\n"} {
		if d := dial(t, b.addrs[1], reg); !d.closed(2 * time.Second) {
			t.Fatalf("registration %q was served by a listener with a secret", reg)
		}
	}
	dial(t, b.addrs[1], listenerSecret+"DTU2\n").serve()
	dial(t, b.addrs[1], listenerSecret+"SEC1"+channelSecret+"\n").mustRequest() // replaces s1's link
	wait.For(t, patience, "c2 online", func() error {
		st := b.hash(t, keys.ChannelStatus("c2"))
		return wait.Check(st["online"] == "1" && st["registration"] == "DTU2", "status %v", st)
	})
	b.waitEvent(t, "refused", "unknown registration id")
	b.waitEvent(t, "replaced", "replaced")
	for _, secret := range []string{channelSecret, listenerSecret} {
		if strings.Contains(logs.String(), secret) {
			t.Errorf("the log shows the secret %q", secret)
		}
		if where := b.redisHolds(t, secret); where != "" {
			t.Errorf("Redis shows the secret %q in %s", secret, where)
		}
	}
}

// redisHolds returns the key of the first Redis value that contains s, as
// text or as hex (frames are logged in hex), or "".
func (b *bed) redisHolds(t *testing.T, s string) string {
	t.Helper()
	ctx := context.Background()
	ks, err := b.rc.Do(ctx, b.rc.B().Keys().Pattern("*").Build()).AsStrSlice()
	if err != nil {
		t.Fatal(err)
	}
	hx := hex.EncodeToString([]byte(s))
	for _, k := range ks {
		typ, _ := b.rc.Do(ctx, b.rc.B().Type().Key(k).Build()).ToString()
		var text string
		switch typ {
		case "string":
			text, _ = b.rc.Do(ctx, b.rc.B().Get().Key(k).Build()).ToString()
		case "hash":
			m, _ := b.rc.Do(ctx, b.rc.B().Hgetall().Key(k).Build()).AsStrMap()
			text = fmt.Sprint(m)
		case "list":
			l, _ := b.rc.Do(ctx, b.rc.B().Lrange().Key(k).Start(0).Stop(-1).Build()).AsStrSlice()
			text = strings.Join(l, " ")
		case "set":
			l, _ := b.rc.Do(ctx, b.rc.B().Smembers().Key(k).Build()).AsStrSlice()
			text = strings.Join(l, " ")
		case "stream":
			es, _ := b.rc.Do(ctx, b.rc.B().Xrange().Key(k).Start("-").End("+").Build()).AsXRange()
			text = fmt.Sprint(es)
		}
		if strings.Contains(text, s) || strings.Contains(strings.ToLower(text), hx) {
			return k
		}
	}
	return ""
}

// capListener is a listener whose unregistered sockets wait long.
const capListener = `[[listener]]
name = "capped"
listen = "127.0.0.1:0"
registration_timeout = "20s"
`

func TestSilentSocketsCannotLockOutDTUs(t *testing.T) {
	b := newBedWith(t, bedOptions{tail: capListener + "max_connections = 5\nmax_unregistered = 4\nmax_unregistered_per_ip = 0\n"})
	addr := b.addrs[1]
	var links []*device
	for _, reg := range []string{"DTU1\n", "DTU2\n"} {
		d := dial(t, addr, reg)
		d.serve()
		links = append(links, d)
	}
	wait.For(t, patience, "two links", func() error { return wait.Check(b.srv.Online() == 2, "online %d", b.srv.Online()) })
	var silent []*device
	for i := 0; i < 12; i++ {
		silent = append(silent, dial(t, addr, ""))
	}
	// Silent sockets beyond the cap evict the oldest: 4 stay open.
	wait.For(t, patience, "the silent sockets to be capped", func() error {
		return wait.Check(b.srv.Connections() <= 2+4, "%d sockets", b.srv.Connections())
	})
	if !silent[0].closed(2 * time.Second) {
		t.Fatal("the oldest silent socket was not closed")
	}
	// A DTU that registers now is served, and the links stay up.
	d := dial(t, addr, "DTU3\n")
	d.mustRequest()
	for _, id := range []string{"c1", "c2", "c3"} {
		wait.For(t, patience, id+" online", func() error { return wait.Equal(b.hash(t, keys.ChannelStatus(id))["online"], "1") })
	}
	// Registered links are capped by max_connections.
	dial(t, addr, "DTU4\n").serve()
	dial(t, addr, "DTU5\n").serve()
	wait.For(t, patience, "five links", func() error { return wait.Check(b.srv.Online() == 5, "online %d", b.srv.Online()) })
	if d := dial(t, addr, "DTU1x\n"); !d.closed(2 * time.Second) {
		t.Fatal("unknown id served")
	}
}

func TestUnregisteredPerIPCap(t *testing.T) {
	b := newBedWith(t, bedOptions{tail: capListener + "max_unregistered_per_ip = 3\n"})
	addr := b.addrs[1]
	var silent []*device
	for i := 0; i < 3; i++ {
		silent = append(silent, dialFrom(t, "127.0.0.1", addr, ""))
	}
	wait.For(t, patience, "three sockets", func() error { return wait.Check(b.srv.Connections() == 3, "%d sockets", b.srv.Connections()) })
	if d := dialFrom(t, "127.0.0.1", addr, "DTU1\n"); !d.closed(2 * time.Second) {
		t.Fatal("a fourth unregistered socket from one address was accepted")
	}
	b.waitEvent(t, "refused", "too many unregistered connections from one address")
	// Another address is served, and the silent ones stay (they are within their cap).
	dialFrom(t, "127.0.0.2", addr, "DTU1\n").mustRequest()
	for _, s := range silent {
		if s.closed(50 * time.Millisecond) {
			t.Fatal("a silent socket within the per-address cap was closed")
		}
	}
}

// BenchmarkUnregisteredSocket measures what a silent, unregistered socket
// costs comsrv (heap and goroutine stack, beyond a bare socket pair), with
// 1,000 of them: go test -run '^$' -bench UnregisteredSocket -benchtime 1x ./comsrv/dtu/
func BenchmarkUnregisteredSocket(b *testing.B) {
	t := b
	const n = 1000
	bed := newBedWith(t, bedOptions{tail: capListener + "max_unregistered = 2000\nmax_unregistered_per_ip = 0\n"})
	bare := func() uint64 {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		base := inUse()
		var held []net.Conn
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				held = append(held, c)
			}
		}()
		var cs []net.Conn
		for i := 0; i < n; i++ {
			c, err := net.Dial("tcp", ln.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			cs = append(cs, c)
		}
		time.Sleep(200 * time.Millisecond) // lets the accept loop take the last ones (measurement only)
		used := inUse() - base
		for _, c := range cs {
			c.Close()
		}
		ln.Close()
		for _, c := range held {
			c.Close()
		}
		return used
	}()
	base := inUse()
	var cs []net.Conn
	for i := 0; i < n; i++ {
		c, err := net.Dial("tcp", bed.addrs[1])
		if err != nil {
			t.Fatal(err)
		}
		cs = append(cs, c)
	}
	wait.For(t, patience, "the sockets to be open", func() error { return wait.Check(bed.srv.Connections() == n, "%d sockets", bed.srv.Connections()) })
	used := inUse() - base
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	t.Logf("stack in use %d, heap in use %d", ms.StackInuse, ms.HeapInuse)
	per := (int64(used) - int64(bare)) / n
	t.Logf("unregistered socket: %d bytes in comsrv (heap + stack, beyond the %d bytes of a bare socket pair)", per, int64(bare)/n)
	for _, c := range cs {
		c.Close()
	}
	b.ReportMetric(float64(per), "bytes/socket")
}

// inUse is the heap and stack memory in use after a collection.
func inUse() uint64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapInuse + m.StackInuse
}

func TestRunTimeDeviceCannotTakeAConfiguredChannel(t *testing.T) {
	b := newBedWith(t, bedOptions{
		withRedis: true,
		tail: `[[listener]]
name = "prov"
listen = "127.0.0.1:0"
unknown_ids = "provision"
provision_template = "meter"
`,
		files: map[string]string{"channels/modbus.toml": `[[channel]]
id = "mb1"
url = "tcp://127.0.0.1:1"
template = "meter"
`},
	})
	ctx := context.Background()
	put := b.rc.B().Hset().Key(keys.DeviceRegistry).FieldValue().FieldValue("mb1", "meter").FieldValue("c2", "meter").FieldValue("R9", "meter").Build()
	if err := b.rc.Do(ctx, put).Error(); err != nil {
		t.Fatal(err)
	}
	wait.For(t, patience, "registry device R9 served", func() error {
		d := dial(t, b.addr, "R9\n")
		_, err := d.request(time.Second)
		return err
	})
	for _, addr := range b.addrs {
		for _, id := range []string{"mb1", "c2"} {
			if d := dial(t, addr, id+"\n"); !d.closed(2 * time.Second) {
				t.Fatalf("a DTU registering as %q, the id of a configured channel, was served", id)
			}
		}
	}
	if st := b.hash(t, keys.ChannelStatus("mb1")); st["online"] == "1" {
		t.Fatalf("mb1 status %v", st)
	}
}
