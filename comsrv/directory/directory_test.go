package directory

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"slices"
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
	"github.com/voltedge/voltedge/internal/wait"
)

const template = `
[[point]]
id = "1"
address = 0
`

// load writes a configuration with the given channel file into dir and loads it.
func load(t *testing.T, dir, channels string) *config.Config {
	t.Helper()
	configtest.WriteIn(t, dir, map[string]string{"comsrv.toml": "", "templates/meter.toml": template, "channels/c.toml": channels})
	return configtest.Load(t, dir)
}

// newDirectory makes a directory of the channels "two" written into dir,
// logging to log.
func newDirectory(t *testing.T, sk *sink.Sink, dir string, log io.Writer) *Directory {
	t.Helper()
	d, err := New(load(t, dir, two), sk, slog.New(slog.NewTextHandler(log, nil)))
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func start(t *testing.T) (rueidis.Client, *sink.Sink) {
	t.Helper()
	rc := redistest.Start(t).Client(t)
	if _, err := lualib.Ensure(context.Background(), rc); err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	sk := sink.New(rc, lualib.NewCaller(rc, log), sink.Options{}, log, nil)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); sk.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	return rc, sk
}

// channelSet waits until keys.Channels holds exactly want (sorted, comma-separated).
func channelSet(t *testing.T, rc rueidis.Client, want string) {
	t.Helper()
	setIs(t, rc, keys.Channels, want)
}

// setIs waits until the set key holds exactly want (sorted, comma-separated).
func setIs(t *testing.T, rc rueidis.Client, key, want string) {
	t.Helper()
	wait.For(t, 5*time.Second, key+" = "+want, func() error {
		m, err := rc.Do(context.Background(), rc.B().Smembers().Key(key).Build()).AsStrSlice()
		if err != nil {
			return err
		}
		slices.Sort(m)
		return wait.Equal(strings.Join(m, ","), want)
	})
}

const two = `
[[channel]]
id = "a"
registration = "REGA"
template = "meter"

[[channel]]
id = "m"
url = "tcp://127.0.0.1:1502"
template = "meter"
`

func TestReloadKeepsTheChannelSet(t *testing.T) {
	rc, sk := start(t)
	dir := t.TempDir()
	d := newDirectory(t, sk, dir, io.Discard)
	channelSet(t, rc, "a,m")
	a, _ := d.Find("REGA")
	if a == nil || a.ID != "a" {
		t.Fatalf("REGA found %v", a)
	}
	// a changes, m goes, b comes.
	next := load(t, dir, `
[[channel]]
id = "a"
registration = "REGA2"
template = "meter"

[[channel]]
id = "b"
registration = "REGB"
`)
	added, changed, removed, closing, err := d.Reload(next.ChannelList, next.TemplateByID)
	if err != nil {
		t.Fatal(err)
	}
	if added != 1 || changed != 1 || removed != 0 || !slices.Equal(closing, []string{"a"}) {
		t.Fatalf("reload: added %d changed %d removed %d closing %v", added, changed, removed, closing)
	}
	channelSet(t, rc, "a,b")
	if ch, _ := d.Find("REGA"); ch != nil {
		t.Fatal("old registration still found")
	}
}

func TestRegistryAndProvisioning(t *testing.T) {
	rc, sk := start(t)
	d := newDirectory(t, sk, t.TempDir(), io.Discard)
	ctx := context.Background()
	put := rc.B().Hset().Key(keys.DeviceRegistry).FieldValue().FieldValue("R1", "meter").FieldValue("REGA", "meter").FieldValue("R2", "nope").Build()
	if err := rc.Do(ctx, put).Error(); err != nil {
		t.Fatal(err)
	}
	closing, err := d.ReadRegistry(ctx, rc)
	if err != nil || len(closing) != 0 {
		t.Fatalf("first read: closing %v, err %v", closing, err)
	}
	if ch, p := d.Find("R1"); ch == nil || p == nil || ch.ID != "R1" {
		t.Fatalf("R1 from the registry: %v %v", ch, p)
	}
	if ch, _ := d.Find("R2"); ch != nil {
		t.Fatal("an unknown template was accepted")
	}
	if ch, _ := d.Find("REGA"); ch == nil || ch.ID != "a" {
		t.Fatal("the files must win over the registry")
	}
	channelSet(t, rc, "R1,a,m")

	if ch, _ := d.Provision("P1", "meter"); ch == nil || ch.ID != "P1" {
		t.Fatal("not provisioned")
	}
	if ch, _ := d.Provision("bad id", ""); ch != nil {
		t.Fatal("an invalid id was provisioned")
	}
	channelSet(t, rc, "P1,R1,a,m")

	if err := rc.Do(ctx, rc.B().Hdel().Key(keys.DeviceRegistry).Field("R1").Build()).Error(); err != nil {
		t.Fatal(err)
	}
	closing, err = d.ReadRegistry(ctx, rc)
	if err != nil || len(closing) != 1 || closing[0].Channel.ID != "R1" || closing[0].Reason != ReasonRemoved {
		t.Fatalf("removal: closing %v, err %v", closing, err)
	}
	channelSet(t, rc, "P1,a,m")
}

func TestRegistryReadError(t *testing.T) {
	rc, sk := start(t)
	d := newDirectory(t, sk, t.TempDir(), io.Discard)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := d.ReadRegistry(ctx, rc); !errors.Is(err, context.Canceled) {
		t.Fatalf("err %v, want context.Canceled", err)
	}
}

// TestRegistryNeverTakesAConfiguredChannel: registry entries and
// provisioned ids that name a configured channel (a Modbus channel's id, a
// DTU channel's id or registration) are ignored.
func TestRegistryNeverTakesAConfiguredChannel(t *testing.T) {
	rc, sk := start(t)
	var logs strings.Builder
	d := newDirectory(t, sk, t.TempDir(), &logs)
	ctx := context.Background()
	put := rc.B().Hset().Key(keys.DeviceRegistry).FieldValue().FieldValue("m", "meter").FieldValue("a", "meter").FieldValue("R1", "meter").Build()
	if err := rc.Do(ctx, put).Error(); err != nil {
		t.Fatal(err)
	}
	if _, err := d.ReadRegistry(ctx, rc); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"m", "a"} {
		if ch, _ := d.Find(id); ch != nil {
			t.Errorf("registry entry %q, the id of a configured channel, is served as channel %s", id, ch.ID)
		}
		if ch, _ := d.Provision(id, "meter"); ch != nil {
			t.Errorf("%q, the id of a configured channel, was provisioned", id)
		}
	}
	if ch, _ := d.Find("R1"); ch == nil {
		t.Fatal("R1 not served")
	}
	if !strings.Contains(logs.String(), "ids of configured channels") || !strings.Contains(logs.String(), "ids=\"[a m]\"") {
		t.Fatalf("the ignored entries were not logged:\n%s", logs.String())
	}
	channelSet(t, rc, "R1,a,m")
}

// TestReloadReachesRegistryDevices: a reload that changes a template closes
// the links of registry devices using it at the next registry read, so they
// reconnect with the new plan.
func TestReloadReachesRegistryDevices(t *testing.T) {
	rc, sk := start(t)
	dir := t.TempDir()
	d := newDirectory(t, sk, dir, io.Discard)
	ctx := context.Background()
	if err := rc.Do(ctx, rc.B().Hset().Key(keys.DeviceRegistry).FieldValue().FieldValue("R1", "meter").Build()).Error(); err != nil {
		t.Fatal(err)
	}
	if _, err := d.ReadRegistry(ctx, rc); err != nil {
		t.Fatal(err)
	}
	before, _ := d.Find("R1")
	next := load(t, dir, two) // the template files are read again: new template objects
	if _, _, _, _, err := d.Reload(next.ChannelList, next.TemplateByID); err != nil {
		t.Fatal(err)
	}
	closing, err := d.ReadRegistry(ctx, rc)
	if err != nil || len(closing) != 1 || closing[0].Channel != before || closing[0].Reason != ReasonReloaded {
		t.Fatalf("closing %v, err %v: the device must reconnect with the reloaded template", closing, err)
	}
	if after, _ := d.Find("R1"); after == nil || after.T != next.TemplateByID["meter"] {
		t.Fatal("the registry device does not use the reloaded template")
	}
}

// TestRegistryCloseReasons: a device removed from the registry closes with
// ReasonRemoved, one whose entry names another template with
// ReasonRegistryChanged.
func TestRegistryCloseReasons(t *testing.T) {
	rc, sk := start(t)
	dir := t.TempDir()
	configtest.WriteIn(t, dir, map[string]string{"templates/other.toml": template})
	d := newDirectory(t, sk, dir, io.Discard)
	ctx := context.Background()
	redistest.Do(t, rc, "HSET", keys.DeviceRegistry, "R1", "meter", "R2", "meter")
	if _, err := d.ReadRegistry(ctx, rc); err != nil {
		t.Fatal(err)
	}
	redistest.Do(t, rc, "HDEL", keys.DeviceRegistry, "R1")
	redistest.Do(t, rc, "HSET", keys.DeviceRegistry, "R2", "other")
	closing, err := d.ReadRegistry(ctx, rc)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, c := range closing {
		got[c.Channel.ID] = c.Reason
	}
	if len(got) != 2 || got["R1"] != ReasonRemoved || got["R2"] != ReasonRegistryChanged {
		t.Fatalf("closing %v", got)
	}
	if ReasonRemoved != "removed from the registry" {
		t.Fatalf("ReasonRemoved = %q", ReasonRemoved)
	}
}

// TestRegistryLogsIgnoredEntries: entries with an unknown template or an
// invalid id (one with '/') are not served and are logged by id, again
// whenever the ignored entries change.
func TestRegistryLogsIgnoredEntries(t *testing.T) {
	rc, sk := start(t)
	var logs strings.Builder
	d := newDirectory(t, sk, t.TempDir(), &logs)
	ctx := context.Background()
	redistest.Do(t, rc, "HSET", keys.DeviceRegistry, "R1", "meter", "R2", "nope", "R/3", "meter")
	if _, err := d.ReadRegistry(ctx, rc); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"R2", "R/3"} {
		if ch, _ := d.Find(id); ch != nil {
			t.Errorf("%s is served", id)
		}
	}
	if ch, _ := d.Provision("P/1", "meter"); ch != nil {
		t.Error("an id with '/' was provisioned")
	}
	out := logs.String()
	if !strings.Contains(out, "unknown template") || !strings.Contains(out, "R2=nope") || !strings.Contains(out, "invalid id") || !strings.Contains(out, "R/3") {
		t.Fatalf("ignored entries not logged by id:\n%s", out)
	}
	logs.Reset()
	redistest.Do(t, rc, "HDEL", keys.DeviceRegistry, "R2")
	redistest.Do(t, rc, "HSET", keys.DeviceRegistry, "R4", "gone")
	if _, err := d.ReadRegistry(ctx, rc); err != nil {
		t.Fatal(err)
	}
	if out := logs.String(); !strings.Contains(out, "R4=gone") {
		t.Fatalf("a new ignored entry (same count) was not logged:\n%s", out)
	}
	logs.Reset()
	if _, err := d.ReadRegistry(ctx, rc); err != nil {
		t.Fatal(err)
	}
	if out := logs.String(); strings.Contains(out, "ignored") {
		t.Fatalf("unchanged ignored entries logged again:\n%s", out)
	}
	channelSet(t, rc, "R1,a,m")
}

// templateSet waits until keys.Templates holds exactly want (sorted, comma-separated).
func templateSet(t *testing.T, rc rueidis.Client, want string) {
	t.Helper()
	setIs(t, rc, keys.Templates, want)
}

// TestTemplatesPublished: the template names are published at start,
// replaced on reload, and published again after a Redis restart.
func TestTemplatesPublished(t *testing.T) {
	rc, sk := start(t)
	dir := t.TempDir()
	redistest.Do(t, rc, "SADD", keys.Templates, "stale_name")
	d := newDirectory(t, sk, dir, io.Discard)
	templateSet(t, rc, "meter")
	configtest.WriteIn(t, dir, map[string]string{"templates/other.toml": template})
	next := load(t, dir, two)
	if _, _, _, _, err := d.Reload(next.ChannelList, next.TemplateByID); err != nil {
		t.Fatal(err)
	}
	templateSet(t, rc, "meter,other")
	redistest.Do(t, rc, "DEL", keys.Templates)
	d.Republish()
	templateSet(t, rc, "meter,other")
}
