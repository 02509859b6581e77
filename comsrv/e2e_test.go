package main

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/rueidis"

	"github.com/voltedge/voltedge/comsrv/config"
	"github.com/voltedge/voltedge/internal/contract"
	"github.com/voltedge/voltedge/internal/keys"
	"github.com/voltedge/voltedge/internal/mappings"
	"github.com/voltedge/voltedge/internal/redistest"
	"github.com/voltedge/voltedge/internal/svc"
	"github.com/voltedge/voltedge/internal/wait"
	"github.com/voltedge/voltedge/tools/dtusim/fleet"
)

// TestEndToEnd runs the demo configuration: three simulated DTUs connect to
// comsrv, values land in comsrv:*:m, the Lua library maps them into
// modsrv:power_meter and publishes update:power_meter, and a voltage above
// the threshold raises an alarm that clears when the voltage comes back.
func TestEndToEnd(t *testing.T) {
	rs := redistest.Start(t)
	rc := rs.Client(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	cfg, err := config.Load("../config/comsrv.toml")
	if err != nil {
		t.Fatal(err)
	}
	cfg.RedisURL = rs.URL()
	cfg.DTU.Listen = freeAddr(t)
	cfg.MetricsListen = freeAddr(t)
	for i := range cfg.Listeners {
		cfg.Listeners[i].Listen = freeAddr(t)
	}
	cfg.Control.StartupGrace.Duration = 0
	cfg.Redis.FlushInterval.Duration = 200 * time.Millisecond
	cfg.DTU.StatusInterval.Duration = 200 * time.Millisecond
	set, err := mappings.Load("../config/mappings/demo.toml")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := set.Apply(ctx, rc, true); err != nil {
		t.Fatal(err)
	}

	// Subscriber on the model's update channel.
	updates := make(chan string, 64)
	sub := rs.Client(t)
	go func() {
		_ = sub.Receive(ctx, sub.B().Subscribe().Channel(keys.ModelUpdates("power_meter")).Build(), func(m rueidis.PubSubMessage) {
			select {
			case updates <- m.Message:
			default:
			}
		})
	}()

	served := startComsrv(t, ctx, cfg)

	maps := map[string]*fleet.RegisterMap{}
	for _, id := range []string{"DTU1001", "DTU1002", "DTU1003"} {
		m := fleet.DefaultMap()
		m.SetRegister(fleet.HoldingRegisters, 2000, 2300) // 230.0 V
		maps[id] = m
		dc := fleet.DeviceConfig{
			Addr: cfg.DTU.Listen, ID: []byte(id + "\n"), Heartbeat: []byte("www.usr.cn"),
			HeartbeatInterval: 500 * time.Millisecond, Map: m,
		}
		go func() {
			for ctx.Err() == nil {
				_ = fleet.RunDevice(ctx, dc, &fleet.Stats{})
				time.Sleep(100 * time.Millisecond) // a reconnect delay, as a real DTU has
			}
		}()
	}

	hget := func(key, field string) string {
		v, _ := rc.Do(context.Background(), rc.B().Hget().Key(key).Field(field).Build()).ToString()
		return v
	}
	wait.For(t, patience, "channel value comsrv:1001:m 10001 = 230", func() error { return wait.Equal(hget(keys.ChannelValues("1001"), "10001"), "230") })
	wait.For(t, patience, "model value modsrv:power_meter voltage = 230", func() error { return wait.Equal(hget(keys.ModelValues("power_meter"), "voltage"), "230") })
	wait.For(t, patience, "model value modsrv:power_meter_3 voltage", func() error { return wait.Equal(hget(keys.ModelValues("power_meter_3"), "voltage"), "230") })
	wait.For(t, patience, "status online", func() error { return wait.Equal(hget(keys.ChannelStatus("1002"), "online"), "1") })

	// Each response publishes the points it carried; wait for one with the voltage.
	timeout := time.After(5 * time.Second)
	for got := false; !got; {
		select {
		case msg := <-updates:
			var u struct {
				Model   string             `json:"model"`
				TS      int64              `json:"ts"`
				Values  map[string]float64 `json:"values"`
				Quality map[string]string  `json:"quality"`
			}
			if err := json.Unmarshal([]byte(msg), &u); err != nil {
				t.Fatalf("update payload %q: %v", msg, err)
			}
			if len(u.Quality) > 0 && len(u.Values) == 0 {
				continue // a quality change: stale at connect, good after the first answer
			}
			if u.Model != "power_meter" || u.TS == 0 || len(u.Values) == 0 {
				t.Fatalf("update payload %q", msg)
			}
			if v, ok := u.Values["voltage"]; ok {
				if v != 230 {
					t.Fatalf("update payload %q: voltage %v, want 230", msg, v)
				}
				got = true
			}
		case <-timeout:
			t.Fatal("no message with the voltage on update:power_meter")
		}
	}

	// Over the threshold (250): one raise event.
	maps["DTU1001"].SetRegister(fleet.HoldingRegisters, 2000, 2612)
	wait.For(t, patience, "alarm raised", func() error {
		return wait.Check(hget(keys.AlarmActive, "power_meter:voltage") != "", "not in %s", keys.AlarmActive)
	})
	events := func() []map[string]string {
		r, err := rc.Do(ctx, rc.B().Xrange().Key(keys.AlarmEvents).Start("-").End("+").Build()).AsXRange()
		if err != nil {
			t.Fatal(err)
		}
		var out []map[string]string
		for _, e := range r {
			out = append(out, e.FieldValues)
		}
		return out
	}
	time.Sleep(1500 * time.Millisecond) // more samples above the limit: still one event
	ev := events()
	if len(ev) != 1 || ev[0]["type"] != "raise" || ev[0]["kind"] != "high" || ev[0]["value"] != "261.2" || ev[0]["point"] != "voltage" {
		t.Fatalf("alarm events after raise: %v", ev)
	}
	// Back to normal: cleared.
	maps["DTU1001"].SetRegister(fleet.HoldingRegisters, 2000, 2300)
	wait.For(t, patience, "alarm cleared", func() error { return wait.Equal(hget(keys.AlarmActive, "power_meter:voltage"), "") })
	ev = events()
	if len(ev) != 2 || ev[1]["type"] != "clear" {
		t.Fatalf("alarm events after clear: %v", ev)
	}

	// Controls: model control → queue → comsrv → register on the device → outcome.
	send := func(control, value string) map[string]string {
		t.Helper()
		id, err := rc.Do(ctx, rc.B().Fcall().Function("send_control").Numkeys(0).Arg("power_meter", control, value).Build()).ToString()
		if err != nil {
			id2, err2 := rc.Do(ctx, rc.B().Fcall().Function("send_control").Numkeys(0).Arg("power_meter", control, value).Build()).AsInt64()
			if err2 != nil {
				t.Fatalf("send_control: %v / %v", err, err2)
			}
			id = strconv.FormatInt(id2, 10)
		}
		var res map[string]string
		wait.For(t, patience, "outcome of command "+id, func() error {
			res, _ = rc.Do(ctx, rc.B().Hgetall().Key(keys.CommandResult(id)).Build()).AsStrMap()
			return wait.Check(res["status"] != "", "result %v", res)
		})
		return res
	}
	if res := send("setpoint", "50"); res["status"] != "ok" {
		t.Fatalf("setpoint outcome %v", res)
	}
	if v, _ := maps["DTU1001"].Register(fleet.HoldingRegisters, 2020); v != 500 {
		t.Fatalf("setpoint register %d, want 500 (50 / scale 0.1)", v)
	}
	maps["DTU1001"].SetRegister(fleet.HoldingRegisters, 2021, 0xF0F0)
	if res := send("switch", "1"); res["status"] != "ok" {
		t.Fatalf("switch outcome %v", res)
	}
	if v, _ := maps["DTU1001"].Register(fleet.HoldingRegisters, 2021); v != 0xF0F1 {
		t.Fatalf("switch register %#04x, want 0xf0f1 (bit 0 set, others kept)", v)
	}
	if res := send("setpoint", "1e9"); res["status"] != "invalid" {
		t.Fatalf("out-of-range outcome %v", res)
	}
	// The demo setpoint allows 0..500 (template min/max).
	if res := send("setpoint", "600"); res["status"] != "invalid" || !strings.Contains(res["message"], "outside the allowed 0..500") {
		t.Fatalf("outcome above max %v", res)
	}
	var last struct{ Status, Value string }
	if err := json.Unmarshal([]byte(hget(keys.ControlLast, "power_meter:setpoint")), &last); err != nil || last.Status != "invalid" || last.Value != "600" {
		t.Fatalf("control:last power_meter:setpoint = %+v, %v", last, err)
	}

	// Point metadata and the channel name, from the demo configuration.
	var meta struct{ Name, Unit, Area string }
	if err := json.Unmarshal([]byte(hget(keys.ChannelMeta("1001"), "10001")), &meta); err != nil ||
		meta.Name != "voltage" || meta.Unit != "V" || meta.Area != "holding" {
		t.Fatalf("comsrv:1001:meta 10001 = %+v, %v", meta, err)
	}
	if n := hget(keys.ChannelStatus("1001"), contract.ChannelName); n != "Main incomer" {
		t.Fatalf("status name %q", n)
	}

	// /metrics on comsrv's own port.
	resp, err := http.Get("http://" + cfg.MetricsListen + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{"comsrv_points_total ", "comsrv_dtu_online 3", "comsrv_redis_up 1", "comsrv_controls_reported_total "} {
		if !strings.Contains(string(body), want) {
			t.Fatalf("/metrics lacks %q:\n%s", want, body)
		}
	}

	// Redis restarts without its data: comsrv restores the run-time
	// configuration from its snapshot, including an edit made as with
	// redis-cli, republishes the channel set, and models update again.
	redistest.Do(t, rc, "HSET", keys.AlarmLow, "power_meter:voltage", "100")
	wait.For(t, patience, "the snapshot to hold the redis-cli edit", func() error {
		data, err := os.ReadFile(cfg.Snapshot.Path)
		return wait.Check(err == nil && strings.Contains(string(data), `"alarm:low":{"power_meter:voltage":"100"}`), "snapshot: %v", err)
	})
	dump := func() map[string]map[string]string {
		out := map[string]map[string]string{}
		for _, k := range append(keys.RuntimeConfig(), keys.Channels) {
			if k == keys.Channels {
				m, _ := rc.Do(ctx, rc.B().Smembers().Key(k).Build()).AsStrSlice()
				slices.Sort(m)
				out[k] = map[string]string{"members": strings.Join(m, ",")}
				continue
			}
			out[k], _ = rc.Do(ctx, rc.B().Hgetall().Key(k).Build()).AsStrMap()
		}
		return out
	}
	before := dump()
	rs.Restart(t)
	wait.For(t, 5*time.Second, "the configuration and the channel set back after the Redis restart", func() error {
		after := dump()
		return wait.Check(reflect.DeepEqual(after, before), "got %v\nwant %v", after, before)
	})
	wait.For(t, patience, "the restore marker", func() error {
		return wait.Check(hget(keys.ConfigRestore, contract.RestoreAt) != "", "no marker")
	})
	wait.For(t, patience, "model value modsrv:power_meter voltage after the restart", func() error {
		return wait.Equal(hget(keys.ModelValues("power_meter"), "voltage"), "230")
	})

	stopComsrv(t, cancel, served)
	if v := hget(keys.ChannelStatus("1001"), "online"); v != "0" {
		t.Fatalf("after shutdown channel 1001 online = %q, want 0", v)
	}
}

// patience bounds every wait for a state comsrv reaches on its own.
const patience = 10 * time.Second

func freeAddr(t *testing.T) string {

	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// startComsrv runs serve in the background; its result arrives on the channel.
// The configuration snapshot goes to the test's own directory.
func startComsrv(t *testing.T, ctx context.Context, cfg *config.Config) chan error {
	if cfg.Snapshot.Path == config.DefaultSnapshotPath {
		cfg.Snapshot.Path = filepath.Join(t.TempDir(), "config.snapshot")
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	if testing.Verbose() {
		log = slog.New(slog.NewTextHandler(os.Stderr, nil))
	}
	served := make(chan error, 1)
	go func() {
		client, err := svc.ConnectRedis(ctx, "comsrv", cfg.RedisURL, redisConnections, log)
		if err != nil {
			served <- err
			return
		}
		err = serve(ctx, cfg, log, client)
		client.Close()
		served <- err
	}()

	return served
}

// stopComsrv cancels comsrv and waits for serve to return cleanly.
func stopComsrv(t *testing.T, cancel context.CancelFunc, served chan error) {
	t.Helper()
	cancel()
	select {
	case err := <-served:
		if err != nil {
			t.Fatalf("serve: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("comsrv did not stop")
	}
}
