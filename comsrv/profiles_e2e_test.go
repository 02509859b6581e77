package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/rueidis"

	"github.com/voltedge/voltedge/comsrv/config"
	"github.com/voltedge/voltedge/internal/contract"
	"github.com/voltedge/voltedge/internal/keys"
	"github.com/voltedge/voltedge/internal/redistest"
	"github.com/voltedge/voltedge/internal/wait"
	"github.com/voltedge/voltedge/tools/dtusim/fleet"
)

// copyConfig copies the demo configuration into a temporary directory so a
// test can change its files, and returns the path of its comsrv.toml.
func copyConfig(t *testing.T) string {
	t.Helper()
	dst := t.TempDir()
	err := filepath.WalkDir("../config", func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel("../config", p)
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		if err := os.MkdirAll(filepath.Join(dst, filepath.Dir(rel)), 0o755); err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(dst, rel), b, 0o644)
	})
	if err != nil {
		t.Fatal(err)
	}
	return filepath.Join(dst, "comsrv.toml")
}

// collector gathers the messages of pub/sub channels.
type collector struct {
	mu  sync.Mutex
	got map[string][]string
}

func collect(t *testing.T, ctx context.Context, rc rueidis.Client, channels ...string) *collector {
	c := &collector{got: map[string][]string{}}
	ready := make(chan struct{})
	var once sync.Once
	dc, release := rc.Dedicate()
	t.Cleanup(release)
	dc.SetPubSubHooks(rueidis.PubSubHooks{
		OnMessage: func(m rueidis.PubSubMessage) {
			c.mu.Lock()
			c.got[m.Channel] = append(c.got[m.Channel], m.Message)
			c.mu.Unlock()
		},
		OnSubscription: func(s rueidis.PubSubSubscription) {
			if s.Count == int64(len(channels)) {
				once.Do(func() { close(ready) })
			}
		},
	})
	if err := dc.Do(ctx, dc.B().Subscribe().Channel(channels...).Build()).Error(); err != nil {
		t.Fatal(err)
	}
	<-ready
	return c
}

func (c *collector) of(ch string) []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string(nil), c.got[ch]...)
}

// TestProfilesEndToEnd runs comsrv with the demo configuration and a tlv and
// a line device from dtusim: tlv values and data frames, a control through
// the tlv link, lines forwarded from the result channel to the line device and
// its own lines published, then a reload that adds a channel without
// dropping the running links, and one that is refused.
func TestProfilesEndToEnd(t *testing.T) {
	rs := redistest.Start(t)
	rc := rs.Client(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	path := copyConfig(t)
	cfg, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	cfg.RedisURL = rs.URL()
	cfg.DTU.Listen = freeAddr(t)
	cfg.MetricsListen = freeAddr(t)
	for i := range cfg.Listeners {
		cfg.Listeners[i].Listen = freeAddr(t)
	}
	cfg.DTU.StatusInterval.Duration = 200 * time.Millisecond
	cfg.Frames.Flush.Duration = 100 * time.Millisecond
	cfg.Control.StartupGrace.Duration = 0
	lineAddr, tlvAddr := cfg.Listeners[0].Listen, cfg.Listeners[1].Listen

	msgs := collect(t, ctx, rs.Client(t), keys.ChannelData("5001"), keys.ChannelData("DEV001"),
		keys.LineOutcomes(keys.DefaultLineResults), keys.ReloadResult)

	served := startComsrv(t, ctx, cfg)

	tlvMap := fleet.DefaultMap()
	lines := fleet.NewLineLog(16)
	var tlvStats, lineStats fleet.Stats
	run := func(dc fleet.DeviceConfig, st *fleet.Stats) {
		go func() {
			for ctx.Err() == nil {
				_ = fleet.RunDevice(ctx, dc, st)
				time.Sleep(100 * time.Millisecond) // a reconnect delay, as a real device has
			}
		}()
	}
	run(fleet.DeviceConfig{Addr: tlvAddr, Profile: fleet.ProfileTLV, TLVID: 5001, TLVBareAcks: true, Map: tlvMap,
		HeartbeatInterval: 300 * time.Millisecond, DataFrames: [][]byte{{0xAB, 0xCD}}, DataInterval: 300 * time.Millisecond}, &tlvStats)
	run(fleet.DeviceConfig{Addr: lineAddr, Profile: fleet.ProfileLine, ID: []byte("DEV001\n"), Lines: lines,
		DataLines: []string{"temp=21.5"}, DataInterval: 300 * time.Millisecond}, &lineStats)

	hget := func(key, field string) string {
		v, _ := rc.Do(ctx, rc.B().Hget().Key(key).Field(field).Build()).ToString()
		return v
	}
	// tlv: polled through 0x04 frames, heartbeats and data acknowledged, data published.
	wait.For(t, patience, "tlv channel values", func() error {
		return wait.Check(hget(keys.ChannelValues("5001"), "10001") != "", "point 10001 not written")
	})
	wait.For(t, patience, "tlv heartbeat and data acks", func() error {
		s := tlvStats.Snapshot()
		return wait.Check(s.HeartbeatAcks > 0 && s.DataAcks > 0 && s.RegistrationAcks > 0, "device stats %+v", s)
	})
	wait.For(t, patience, "tlv data frame published", func() error { return wait.Check(len(msgs.of(keys.ChannelData("5001"))) > 0, "nothing published") })
	if m := msgs.of(keys.ChannelData("5001"))[0]; !strings.Contains(m, `"hex":"abcd"`) {
		t.Fatalf("tlv data message %s", m)
	}

	// A control through the tlv link changes the device's register.
	if err := rc.Do(ctx, rc.B().Hset().Key(keys.MappingReverse).FieldValue().FieldValue("meter5001:setpoint", "5001:40001").Build()).Error(); err != nil {
		t.Fatal(err)
	}
	id, err := rc.Do(ctx, rc.B().Fcall().Function("send_control").Numkeys(0).Arg("meter5001", "setpoint", "12.5").Build()).ToAny()
	if err != nil {
		t.Fatal(err)
	}
	results := contract.NewResults(rc, nil)
	go results.Run(ctx)
	res, err := results.Wait(ctxTimeout(t, 10*time.Second), fmt.Sprint(id))
	if err != nil || res.Status != contract.OK {
		t.Fatalf("tlv control: %v %v", res, err)
	}
	if v, _ := tlvMap.Register(fleet.HoldingRegisters, 2020); v != 125 {
		t.Fatalf("tlv device register 2020 = %d, want 125", v)
	}

	// line: forwarded messages reach the device; its own lines are published.
	wait.For(t, patience, "line device online", func() error { return wait.Equal(hget(keys.ChannelStatus("DEV001"), "online"), "1") })
	if err := rc.Do(ctx, rc.B().Publish().Channel(keys.DefaultLineResults).Message("open,DEV001,valve=1").Build()).Error(); err != nil {
		t.Fatal(err)
	}
	wait.For(t, patience, "line forwarded to the device", func() error {
		l, ok := lines.Last()
		return wait.Check(ok && l == "open,DEV001,valve=1", "last line %q", l)
	})
	wait.For(t, patience, "forward outcome", func() error {
		o := msgs.of(keys.LineOutcomes(keys.DefaultLineResults))
		return wait.Check(len(o) > 0 && strings.Contains(o[0], `"status":"forwarded"`), "outcomes %v", o)
	})
	wait.For(t, patience, "device line published", func() error { return wait.Check(len(msgs.of(keys.ChannelData("DEV001"))) > 0, "nothing published") })

	// Reload: a new channel is added, the running links stay.
	connectedAt := hget(keys.ChannelStatus("5001"), "connected_at")
	chFile := filepath.Join(filepath.Dir(path), "channels", "demo.toml")
	orig, err := os.ReadFile(chFile)
	if err != nil {
		t.Fatal(err)
	}
	added := string(orig) + "\n[[channel]]\nid = \"1009\"\nregistration = \"DTU1009\"\ntemplate = \"power_meter\"\n"
	if err := os.WriteFile(chFile, []byte(added), 0o644); err != nil {
		t.Fatal(err)
	}
	reply := func(id string) contract.ReloadReply {
		t.Helper()
		if err := rc.Do(ctx, rc.B().Publish().Channel(keys.Reload).Message(id).Build()).Error(); err != nil {
			t.Fatal(err)
		}
		var r contract.ReloadReply
		wait.For(t, patience, "reload reply "+id, func() error {
			for _, m := range msgs.of(keys.ReloadResult) {
				if err := json.Unmarshal([]byte(m), &r); err == nil && r.ID == id {
					return nil
				}
			}
			return fmt.Errorf("replies %v", msgs.of(keys.ReloadResult))

		})
		return r
	}
	if r := reply("r1"); !r.OK || r.Added != 1 || r.Changed != 0 || r.Removed != 0 {
		t.Fatalf("reload reply %+v", r)
	}
	// A burst of requests does not wedge the subscriber: a request after it is answered.
	for i := 0; i < 40; i++ {
		if err := rc.Do(ctx, rc.B().Publish().Channel(keys.Reload).Message(fmt.Sprintf("burst%d", i)).Build()).Error(); err != nil {
			t.Fatal(err)
		}
	}
	if r := reply("after-burst"); !r.OK || r.Added != 0 {
		t.Fatalf("reload after a burst: %+v", r)
	}
	// A broken file is refused and the running configuration kept.
	if err := os.WriteFile(chFile, []byte(added+"\n[[channel]]\nid = \"bad id\"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if r := reply("r2"); r.OK || !strings.Contains(r.Message, "demo.toml") {
		t.Fatalf("broken reload reply %+v", r)
	}
	time.Sleep(500 * time.Millisecond) // gives a wrongly dropped link time to show
	if got := hget(
		keys.ChannelStatus("5001"), "connected_at"); got != connectedAt || hget(keys.ChannelStatus("5001"), "online") != "1" {
		t.Fatalf("tlv link was dropped by the reload (connected_at %s → %s)", connectedAt, got)
	}
	if isMember, _ := rc.Do(ctx, rc.B().Sismember().Key(keys.Channels).Member("1009").Build()).AsBool(); !isMember {
		t.Fatal("added channel not in comsrv:channels")
	}

	stopComsrv(t, cancel, served)
}

func ctxTimeout(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}
