package dtu

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/rueidis"

	"github.com/voltedge/voltedge/comsrv/config"
	"github.com/voltedge/voltedge/comsrv/control"
	"github.com/voltedge/voltedge/internal/contract"
	"github.com/voltedge/voltedge/internal/keys"
	"github.com/voltedge/voltedge/internal/rtu"
	"github.com/voltedge/voltedge/internal/wait"
)

const profileListeners = `
[[listener]]
name = "tlv"
profile = "tlv"
listen = "127.0.0.1:0"
[listener.heartbeat]
timeout = "300ms"
max_missed = 3

[[listener]]
name = "line"
profile = "line"
listen = "127.0.0.1:0"
status_interval = "100ms"
`

const profileChannels = `
[[channel]]
id = "t1"
registration = "1001"
template = "meter"

[[channel]]
id = "l1"
registration = "DEV001"
`

// recorder plays the control dispatcher: it keeps the attached targets and the outcomes.
type recorder struct {
	mu       sync.Mutex
	targets  map[string]control.Target
	outcomes map[string]contract.Outcome
}

func newRecorder() *recorder {
	return &recorder{targets: map[string]control.Target{}, outcomes: map[string]contract.Outcome{}}
}

func (r *recorder) Attach(ch string, t control.Target) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.targets[ch] = t
}

func (r *recorder) Detach(ch string, t control.Target) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.targets[ch] == t {
		delete(r.targets, ch)
	}
}

func (r *recorder) Report(c *contract.Command, o contract.Outcome) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.outcomes[c.ID] = o
}

func (r *recorder) deliver(t *testing.T, c *contract.Command) {
	t.Helper()
	var tg control.Target
	wait.For(t, patience, "link attached for "+c.Channel, func() error {
		r.mu.Lock()
		defer r.mu.Unlock()
		tg = r.targets[c.Channel]
		return wait.Check(tg != nil, "no link attached")
	})
	if !tg.Deliver(c) {
		t.Fatal("deliver refused")
	}
}

func (r *recorder) outcome(t *testing.T, id string) contract.Outcome {
	t.Helper()
	var o contract.Outcome
	wait.For(t, patience, "outcome of command "+id, func() error {
		r.mu.Lock()
		defer r.mu.Unlock()
		var ok bool
		o, ok = r.outcomes[id]
		return wait.Check(ok, "no outcome yet")
	})
	return o
}

func profileBed(t *testing.T, rec *recorder) *bed {
	return newBedWith(t, bedOptions{
		tail:      profileListeners,
		files:     map[string]string{"channels/profiles.toml": profileChannels},
		controls:  rec,
		withRedis: true,
	})
}

// subscribe collects the messages of a pub/sub channel.
func subscribe(t *testing.T, rc rueidis.Client, channel string) func() []string {
	t.Helper()
	var mu sync.Mutex
	var got []string
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan struct{})
	dc, release := rc.Dedicate()
	wait := dc.SetPubSubHooks(rueidis.PubSubHooks{
		OnMessage: func(m rueidis.PubSubMessage) {
			mu.Lock()
			got = append(got, m.Message)
			mu.Unlock()
		},
		OnSubscription: func(rueidis.PubSubSubscription) { close(ready) },
	})
	if err := dc.Do(ctx, dc.B().Subscribe().Channel(channel).Build()).Error(); err != nil {
		t.Fatal(err)
	}
	<-ready
	t.Cleanup(func() {
		cancel()
		release()
		<-wait
	})
	return func() []string {
		mu.Lock()
		defer mu.Unlock()
		return append([]string(nil), got...)
	}
}

func readN(t *testing.T, d *device, n int) []byte {
	t.Helper()
	_ = d.c.SetReadDeadline(time.Now().Add(3 * time.Second))
	b := make([]byte, n)
	if _, err := io.ReadFull(d.c, b); err != nil {
		t.Fatalf("read %d bytes: %v", n, err)
	}
	return b
}

func TestTLVProfile(t *testing.T) {
	b := profileBed(t, newRecorder())
	data := subscribe(t, b.rc, keys.ChannelData("t1"))
	d := dial(t, b.addrs[1], "")
	reg := binary.BigEndian.AppendUint32(nil, 1001)
	d.send(reg)
	if got := readN(t, d, 1); got[0] != 0x01 {
		t.Fatalf("registration answered % x", got)
	}
	d.send([]byte{0x02, 0x00})
	if got := readN(t, d, 1); got[0] != 0x02 {
		t.Fatalf("heartbeat answered % x", got)
	}
	// The poll arrives wrapped in a 0x04 frame; the answer goes back the same way.
	hdr := readN(t, d, 2)
	if hdr[0] != 0x04 || hdr[1] != 8 {
		t.Fatalf("request header % x", hdr)
	}
	r, _, err := rtu.ParseRequest(readN(t, d, 8))
	if err != nil {
		t.Fatal(err)
	}
	resp := rtu.AppendResponse(nil, r, regs)
	d.send(append([]byte{0x04, byte(len(resp))}, resp...))
	wait.For(t, patience, "values of the tlv channel", func() error { return wait.Equal(b.hash(t, keys.ChannelValues("t1"))["1"], "220.5") })

	d.send([]byte{0x03, 0x03, 0xAA, 0xBB, 0xCC})
	// The next bytes may be another poll; look for the 0x03 acknowledgement among them.
	wait.For(t, patience, "data frame published", func() error { return wait.Check(len(data()) > 0, "nothing published") })
	var m map[string]any
	if err := json.Unmarshal([]byte(data()[0]), &m); err != nil || m["hex"] != "aabbcc" || m["kind"] != "data" {
		t.Fatalf("data message %q: %v", data()[0], err)
	}
	wait.For(t, patience, "frame log", func() error {
		l, _ := b.rc.Do(context.Background(), b.rc.B().Lrange().Key(keys.ChannelFrames("t1")).Start(0).Stop(-1).Build()).AsStrSlice()
		s := strings.Join(l, "\n")
		return wait.Check(strings.Contains(s, `"kind":"data","hex":"aabbcc"`) && strings.Contains(s, `"dir":"tx","kind":"rtu"`) && strings.Contains(s, `"kind":"registration","hex":"000003e9"`),
			"frames:\n%s", s)
	})
	st := b.hash(t, keys.ChannelStatus("t1"))
	if st["profile"] != "tlv" || st["listener"] != "tlv" || st["online"] != "1" {
		t.Fatalf("status %v", st)
	}
	// Silence for timeout × max_missed (3 × 300 ms) closes the link.
	start := time.Now()
	if !d.closed(3 * time.Second) {
		t.Fatal("silent tlv device was not closed")
	}
	if el := time.Since(start); el < 500*time.Millisecond {
		t.Fatalf("closed after %v, before timeout × max_missed", el)
	}
	wait.For(t, patience, "offline event", func() error {
		ev, _ := b.rc.Do(context.Background(), b.rc.B().Xrange().Key(keys.ConnectionEvents).Start("-").End("+").Build()).ToArray()
		for _, e := range ev {
			x, _ := e.AsXRangeEntry()
			if x.FieldValues["event"] == "offline" && x.FieldValues["channel"] == "t1" && x.FieldValues["reason"] == "heartbeat timeout" && x.FieldValues["listener"] == "tlv" {
				return nil
			}
		}
		return fmt.Errorf("events %v", ev)
	})
}

func TestLineProfile(t *testing.T) {
	b := profileBed(t, newRecorder())
	outcomes := subscribe(t, b.rc, keys.LineOutcomes(keys.DefaultLineResults))
	data := subscribe(t, b.rc, keys.ChannelData("l1"))
	d := dial(t, b.addrs[2], "DEV001\n")
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { // heartbeat every 200 ms
		defer wg.Done()
		tk := time.NewTicker(200 * time.Millisecond)
		defer tk.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tk.C:
				_, _ = d.c.Write([]byte("DEV001\n"))
			}
		}
	}()
	defer func() { close(stop); wg.Wait() }()
	wait.For(t, patience, "line device online", func() error { return wait.Equal(b.hash(t, keys.ChannelStatus("l1"))["online"], "1") })

	publish := func(msg string) {
		if err := b.rc.Do(context.Background(), b.rc.B().Publish().Channel(keys.DefaultLineResults).Message(msg).Build()).Error(); err != nil {
			t.Fatal(err)
		}
	}
	publish("open,DEV001,valve=1")
	_ = d.c.SetReadDeadline(time.Now().Add(3 * time.Second))
	line := make([]byte, 0, 64)
	one := make([]byte, 1)
	for !bytes.HasSuffix(line, []byte("\n")) {
		if _, err := d.c.Read(one); err != nil {
			t.Fatalf("forwarded line: %v (got %q)", err, line)
		}
		line = append(line, one[0])
	}
	if string(line) != "open,DEV001,valve=1\n" {
		t.Fatalf("forwarded %q", line)
	}
	publish("open,NOPE,1")
	publish("open,DEV001,a\nsecond")
	publish("garbage")
	wait.For(t, patience, "four outcomes", func() error {
		return wait.Check(len(outcomes()) >= 4, "outcomes %v", outcomes())
	})
	var statuses []string
	for _, o := range outcomes() {
		var m map[string]any
		if err := json.Unmarshal([]byte(o), &m); err != nil {
			t.Fatal(err)
		}
		statuses = append(statuses, m["status"].(string))
	}
	// The forward's outcome comes from the link, the others from the
	// subscriber: their order is not fixed.
	slices.Sort(statuses)
	if strings.Join(statuses, ",") != "forwarded,invalid,invalid,unknown" {
		t.Fatalf("outcomes %v", outcomes())
	}
	d.send([]byte("temp=<b>21</b>\n"))
	wait.For(t, patience, "device line published", func() error { return wait.Check(len(data()) > 0, "nothing published") })
	var m map[string]any
	if err := json.Unmarshal([]byte(data()[0]), &m); err != nil || m["text"] != "temp=<b>21</b>" || m["kind"] != "line" {
		t.Fatalf("line message %q", data()[0])
	}
	// The heartbeat keeps it online well beyond the 1 s timeout.
	time.Sleep(1500 * time.Millisecond) // lets more than the timeout pass

	if st := b.hash(t, keys.ChannelStatus("l1")); st["online"] != "1" || st["forwarded"] == "0" {
		t.Fatalf("status %v", st)
	}
}

func TestLineTimeout(t *testing.T) {
	b := profileBed(t, newRecorder())
	d := dial(t, b.addrs[2], "DEV001\n")
	start := time.Now()
	if !d.closed(5 * time.Second) {
		t.Fatal("silent line device was not closed")
	}
	if el := time.Since(start); el < 800*time.Millisecond {
		t.Fatalf("closed after %v, before the 1 s heartbeat timeout", el)
	}
}

func command(id, ch, point, value string, ttl time.Duration) *contract.Command {
	now := time.Now()
	return &contract.Command{ID: id, Channel: ch, Point: point, Value: value, Queued: now, Deadline: now.Add(ttl)}
}

// answerUntil answers read requests with regs until a write request arrives, and returns it.
func answerUntil(t *testing.T, d *device, reply func(r rtu.Request) []byte) rtu.Request {
	t.Helper()
	for i := 0; i < 50; i++ {
		_ = d.c.SetReadDeadline(time.Now().Add(3 * time.Second))
		buf := make([]byte, 0, 64)
		tmp := make([]byte, 64)
		for {
			r, n, err := rtu.ParseRequest(buf)
			if err == nil && n > 0 {
				if rtu.IsWrite(r.Function) {
					if b := reply(r); b != nil {
						d.send(b)
					}
					return r
				}
				d.send(rtu.AppendResponse(nil, r, regs))
				break
			}
			k, err := d.c.Read(tmp)
			if err != nil {
				t.Fatalf("waiting for a write: %v", err)
			}
			buf = append(buf, tmp[:k]...)
		}
	}
	t.Fatal("no write request")
	return rtu.Request{}
}

func TestControls(t *testing.T) {
	rec := newRecorder()
	b := profileBed(t, rec)
	d := dial(t, b.addr, "DTU1\n")
	d.mustRequest() // first poll, unanswered: a timeout

	rec.deliver(t, command("1", "c1", "2", "513", 10*time.Second))
	w := answerUntil(t, d, func(r rtu.Request) []byte { return rtu.AppendResponse(nil, r, nil) })
	if w.Function != rtu.WriteSingleRegister || w.Address != 1 || !bytes.Equal(w.Data, []byte{0x02, 0x01}) {
		t.Fatalf("write %+v", w)
	}
	if o := rec.outcome(t, "1"); o.Status != contract.OK {
		t.Fatalf("outcome %+v", o)
	}

	rec.deliver(t, command("2", "c1", "1", "12.3", 10*time.Second))
	answerUntil(t, d, func(r rtu.Request) []byte {
		return rtu.AppendException(nil, r.Slave, r.Function, rtu.ExIllegalDataAddress)
	})
	if o := rec.outcome(t, "2"); o.Status != contract.Exception || o.Code != rtu.ExIllegalDataAddress {
		t.Fatalf("outcome %+v", o)
	}

	rec.deliver(t, command("3", "c1", "1", "99999", 10*time.Second))
	if o := rec.outcome(t, "3"); o.Status != contract.Invalid {
		t.Fatalf("out of range: %+v", o)
	}
	rec.deliver(t, command("4", "c1", "nope", "1", 10*time.Second))
	if o := rec.outcome(t, "4"); o.Status != contract.Invalid || !strings.Contains(o.Message, "nope") {
		t.Fatalf("unknown point: %+v", o)
	}
	rec.deliver(t, command("5", "c1", "2", "1", -time.Second))
	if o := rec.outcome(t, "5"); o.Status != contract.Expired {
		t.Fatalf("expired: %+v", o)
	}

	// No answer to the write: timeout (retries = 0).
	rec.deliver(t, command("6", "c1", "2", "7", 10*time.Second))
	answerUntil(t, d, func(rtu.Request) []byte { return nil })
	if o := rec.outcome(t, "6"); o.Status != contract.Timeout {
		t.Fatalf("unanswered write: %+v", o)
	}

	// The link goes while command 7 is in flight and command 8 waits behind
	// it: 7 is answered failed, 8 offline, and the link no longer takes commands.
	rec.deliver(t, command("7", "c1", "2", "8", 10*time.Second))
	answerUntil(t, d, func(rtu.Request) []byte {
		rec.deliver(t, command("8", "c1", "2", "9", 10*time.Second))
		d.c.Close()
		return nil
	})
	if o := rec.outcome(t, "7"); o.Status != contract.Failed || !strings.Contains(o.Message, "in flight") {
		t.Fatalf("in-flight command: %+v", o)
	}
	if o := rec.outcome(t, "8"); o.Status != contract.Offline {
		t.Fatalf("queued command: %+v", o)
	}
	wait.For(t, patience, "offline", func() error { return wait.Equal(b.hash(t, keys.ChannelStatus("c1"))["online"], "0") })
	rec.mu.Lock()
	_, attached := rec.targets["c1"]
	rec.mu.Unlock()
	if attached {
		t.Fatal("link still attached after it ended")
	}
}

func TestReloadKeepsUntouchedLinks(t *testing.T) {
	b := newBed(t, "")
	d1 := dial(t, b.addr, "DTU1\n")
	d2 := dial(t, b.addr, "DTU2\n")
	d1.mustRequest()
	d2.mustRequest()
	// DTU1's channel gets another template; DTU2's stays; DTU5's goes; a new one comes.
	cfg, err := config.Load(b.cfg.File)
	if err != nil {
		t.Fatal(err)
	}
	var list []*config.Channel
	for _, ch := range cfg.ChannelList {
		switch ch.ID {
		case "c1":
			c := *ch
			c.Name = "renamed"
			list = append(list, &c)
		case "c5":
		default:
			list = append(list, ch)
		}
	}
	list = append(list, &config.Channel{ID: "c9", Registration: "DTU9", Template: "meter", Name: "c9", T: cfg.TemplateByID["meter"]})
	added, changed, removed, err := b.srv.Reload(list, cfg.TemplateByID)
	if err != nil || added != 1 || changed != 1 || removed != 1 {
		t.Fatalf("reload: +%d ~%d -%d %v", added, changed, removed, err)
	}
	if !d1.closed(2 * time.Second) {
		t.Fatal("the changed channel's link was not closed")
	}
	wait.For(t, patience, "reload reason", func() error {
		return wait.Equal(b.hash(t, keys.ChannelStatus("c1"))["disconnect_reason"], "channel changed by reload")
	})
	for i := 0; i < 3; i++ {
		r := d2.mustRequest()
		d2.send(rtu.AppendResponse(nil, r, regs))
	}
	d9 := dial(t, b.addr, "DTU9\n")
	d9.mustRequest()
	if !dial(t, b.addr, "DTU5\n").closed(2 * time.Second) {
		t.Fatal("removed channel still accepted")
	}
}

const twoSlaveTemplate = `
[[task]]
name = "s1"
slave = 1
function = 3
start = 0
count = 4
interval = "100ms"

[[task]]
name = "s2"
slave = 2
function = 3
start = 0
count = 1
interval = "100ms"

[[point]]
id = "1"
address = 0
type = "int16"
scale = 0.1

[[point]]
id = "20"
slave = 2
address = 0
`

// TestDeadSlaveDoesNotSlowItsNeighbour: slave 2 never answers; after
// backoff_after timeouts it is skipped for the cool-down and its point is
// marked stale, while slave 1 on the same link keeps its 100 ms period.
func TestDeadSlaveDoesNotSlowItsNeighbour(t *testing.T) {
	b := newBedWith(t, bedOptions{
		files: map[string]string{
			"templates/two.toml": twoSlaveTemplate,
			"channels/two.toml":  "[[channel]]\nid = \"two\"\nregistration = \"TWO\"\ntemplate = \"two\"\n",
		},
	})
	d := dial(t, b.addr, "TWO\n")
	answer := func(window time.Duration) (s1, s2 int) {
		end := time.Now().Add(window)
		for time.Now().Before(end) {
			r, err := d.request(time.Until(end) + 10*time.Millisecond)
			if err != nil {
				break
			}
			if r.Slave == 1 {
				s1++
				d.send(rtu.AppendResponse(nil, r, regs))
			} else {
				s2++
			}
		}
		return s1, s2
	}
	// Let slave 2 run out of chances (3 timeouts of 200 ms).
	wait.For(t, patience, "slave 2 in back-off", func() error {
		answer(300 * time.Millisecond)
		return wait.Equal(b.hash(t, keys.ChannelStatus("two"))["unreachable_slaves"], "2")
	})
	s1, s2 := answer(2 * time.Second)
	t.Logf("in 2 s after the back-off: %d polls of slave 1 (period %v), %d of slave 2", s1, 2*time.Second/time.Duration(max(s1, 1)), s2)
	if s2 != 0 {
		t.Fatalf("slave 2 polled %d times during its cool-down", s2)
	}
	if s1 < 5 { // nominal 20; the period is recorded in BENCHMARKS.md, this only catches a stalled slave
		t.Fatalf("slave 1 polled %d times in 2 s, want about 20 (100 ms period)", s1)
	}
	q := b.hash(t, keys.ChannelQuality("two"))
	if q["20"] != "stale" || q["1"] != "" {
		t.Fatalf("quality %v: want point 20 stale and point 1 good", q)
	}
}

// TestDeviceRegistry: a DTU id added to the run-time registry is served
// without a restart, and its link is closed when it is removed.
func TestDeviceRegistry(t *testing.T) {
	b := profileBed(t, newRecorder())
	ctx := context.Background()
	if !dial(t, b.addr, "REG77\n").closed(2 * time.Second) {
		t.Fatal("unregistered id was accepted")
	}
	hset := b.rc.B().Hset().Key(keys.DeviceRegistry).FieldValue().FieldValue("REG77", "meter").FieldValue("BAD", "no_such_template").Build()
	if err := b.rc.Do(ctx, hset).Error(); err != nil {
		t.Fatal(err)
	}
	var d *device
	wait.For(t, patience, "registered device accepted", func() error {
		d = dial(t, b.addr, "REG77\n")
		_, err := d.request(500 * time.Millisecond)
		return wait.Equal(err, nil)
	})
	r := d.mustRequest()
	d.send(rtu.AppendResponse(nil, r, regs))
	wait.For(t, patience, "values of the registered device", func() error { return wait.Equal(b.hash(t, keys.ChannelValues("REG77"))["1"], "220.5") })
	if !dial(t, b.addr, "BAD\n").closed(2 * time.Second) {
		t.Fatal("registry entry with an unknown template was accepted")
	}
	if err := b.rc.Do(ctx, b.rc.B().Hdel().Key(keys.DeviceRegistry).Field("REG77").Build()).Error(); err != nil {
		t.Fatal(err)
	}
	if !d.closed(5 * time.Second) {
		t.Fatal("link of a removed device still open")
	}
	wait.For(t, patience, "close reason of a removed device", func() error {
		return wait.Equal(b.hash(t, keys.ChannelStatus("REG77"))["disconnect_reason"], "removed from the registry")
	})
}
