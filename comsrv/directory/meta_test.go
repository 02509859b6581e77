package directory

import (
	"context"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/redis/rueidis"

	"github.com/voltedge/voltedge/comsrv/config/configtest"
	"github.com/voltedge/voltedge/comsrv/sink"
	"github.com/voltedge/voltedge/internal/keys"
	"github.com/voltedge/voltedge/internal/lualib"
	"github.com/voltedge/voltedge/internal/redistest"
	"github.com/voltedge/voltedge/internal/wait"
)

const metaTemplate = `
[[point]]
id = "1"
name = "voltage"
type = "int16"
scale = 0.1
unit = "V"
description = "Line voltage"

[[point]]
id = "2"
name = "limit"
min = 0
max = 500

[[point]]
id = "3"
area = "discrete"
type = "bool"
`

const (
	metaVoltage = `{"name":"voltage","type":"int16","unit":"V","description":"Line voltage","area":"holding","writable":true}`
	metaLimit   = `{"name":"limit","type":"uint16","area":"holding","writable":true,"min":0,"max":500}`
	metaBit     = `{"name":"3","type":"bool","area":"discrete","writable":false}`
)

// metaIs waits until the channel's metadata hash holds exactly want (nil:
// the hash is absent).
func metaIs(t *testing.T, rc rueidis.Client, channel string, want map[string]string) {
	t.Helper()
	key := keys.ChannelMeta(channel)
	wait.For(t, 10*time.Second, key, func() error {
		m, err := rc.Do(context.Background(), rc.B().Hgetall().Key(key).Build()).AsStrMap()
		if err != nil {
			return err
		}
		if len(m) != len(want) {
			return wait.Equal(len(m), len(want))
		}
		for k, v := range want {
			if err := wait.Equal(m[k], v); err != nil {
				return err
			}
		}
		return nil
	})
}

// TestPointMetadata: the metadata hash of a configured channel and of a
// registry device is written when they are first served, replaced when a
// reload changes their template, deleted when they are removed, and written
// again after Redis restarted without it.
func TestPointMetadata(t *testing.T) {
	rs := redistest.Start(t)
	rc := rs.Client(t)
	ctx := context.Background()
	if _, err := lualib.Ensure(ctx, rc); err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	sk := sink.New(rc, lualib.NewCaller(rc, log), sink.Options{FlushInterval: 50 * time.Millisecond}, log, nil)
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); sk.Run(runCtx) }()
	t.Cleanup(func() { cancel(); <-done })

	dir := t.TempDir()
	configtest.WriteIn(t, dir, map[string]string{"comsrv.toml": "", "templates/meter.toml": metaTemplate, "channels/c.toml": two})
	d, err := New(configtest.Load(t, dir), sk, log)
	if err != nil {
		t.Fatal(err)
	}
	first := map[string]string{"1": metaVoltage, "2": metaLimit, "3": metaBit}
	metaIs(t, rc, "a", first)
	metaIs(t, rc, "m", first) // a Modbus TCP channel too

	redistest.Do(t, rc, "HSET", keys.DeviceRegistry, "R1", "meter")
	if _, err := d.ReadRegistry(ctx, rc); err != nil {
		t.Fatal(err)
	}
	metaIs(t, rc, "R1", first)

	// The template changes and m goes: a's hash is replaced as a whole (no
	// point 3 left), m's deleted; the registry device follows at its next read.
	configtest.WriteIn(t, dir, map[string]string{
		"templates/meter.toml": "[[point]]\nid = \"1\"\nname = \"voltage\"\nunit = \"kV\"\n",
		"channels/c.toml":      "[[channel]]\nid = \"a\"\nregistration = \"REGA\"\ntemplate = \"meter\"\n",
	})
	next := configtest.Load(t, dir)
	if _, _, _, _, err := d.Reload(next.ChannelList, next.TemplateByID); err != nil {
		t.Fatal(err)
	}
	second := map[string]string{"1": `{"name":"voltage","type":"uint16","unit":"kV","area":"holding","writable":true}`}
	metaIs(t, rc, "a", second)
	metaIs(t, rc, "m", nil)
	if _, err := d.ReadRegistry(ctx, rc); err != nil {
		t.Fatal(err)
	}
	metaIs(t, rc, "R1", second)

	// Provisioned channels have one too.
	if ch, _ := d.Provision("P1", "meter"); ch == nil {
		t.Fatal("not provisioned")
	}
	metaIs(t, rc, "P1", second)

	// Redis restarts empty: the hashes come back. The sink notices a
	// restart by Redis's run_id, which it reads before it writes its stats.
	wait.For(t, 5*time.Second, keys.ComsrvStats, func() error {
		n, err := rc.Do(ctx, rc.B().Exists().Key(keys.ComsrvStats).Build()).AsInt64()
		if err != nil {
			return err
		}
		return wait.Equal(n, int64(1))
	})
	rs.Restart(t)
	metaIs(t, rc, "a", second)
	metaIs(t, rc, "R1", second)
	metaIs(t, rc, "P1", second)

	redistest.Do(t, rc, "HDEL", keys.DeviceRegistry, "R1")
	if _, err := d.ReadRegistry(ctx, rc); err != nil {
		t.Fatal(err)
	}
	metaIs(t, rc, "R1", nil)
}
