package snapshot

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/rueidis"

	"github.com/voltedge/voltedge/internal/contract"
	"github.com/voltedge/voltedge/internal/keys"
	"github.com/voltedge/voltedge/internal/redisconn"
	"github.com/voltedge/voltedge/internal/redistest"
	"github.com/voltedge/voltedge/internal/wait"
)

// patience bounds waits for the keeper's own pace; restoreWithin is the promise.
const (
	patience      = 10 * time.Second
	restoreWithin = 5 * time.Second
	interval      = 100 * time.Millisecond
)

// logBuffer is a logger whose output the test can read.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

// config is what a field engineer loads with redis-cli.
var config = [][]string{
	{"HSET", keys.Mapping, "1001:10001", "pm:voltage", "1001:10002", "pm:current"},
	{"HSET", keys.MappingReverse, "pm:setpoint", "1001:40001"},
	{"HSET", keys.AlarmThreshold, "pm:voltage", "250"},
	{"HSET", keys.AlarmLow, "pm:voltage", "180"},
	{"HSET", keys.AlarmHysteresis, "pm:voltage", "2"},
	{"HSET", keys.MappingUnit, "pm:voltage", "V"},
	{"HSET", keys.MappingDescription, "pm:voltage", "Line voltage"},
	{"HSET", keys.DeviceRegistry, "DTU2001", "power_meter"},
	{"HSET", keys.AlarmRules, "hv", `{"id":"hv","events":["alarm_raised"],"targets":["ops"],"origin":"api"}`},
	{"HSET", keys.WebhookTargets, "ops", `{"id":"ops","url":"http://10.0.0.9/hook","enabled":true}`},
	{"HSET", keys.AlarmShelved, "pm:voltage", `{"user":"op","ts":1,"until":2}`},
}

// keeper runs a Keeper on rc until the test ends; republished counts the
// channel set republications (it adds "1001" to the set).
func keeper(t *testing.T, rc rueidis.Client, path string, log io.Writer, republished *atomic.Int32) {
	t.Helper()
	if log == nil {
		log = io.Discard
	}
	k := New(rc, Options{Path: path, Interval: interval, Republish: func() {
		republished.Add(1)
		_ = rc.Do(context.Background(), rc.B().Sadd().Key(keys.Channels).Member("1001").Build()).Error()
	}}, slog.New(slog.NewTextHandler(log, nil)))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); k.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
}

func dump(t *testing.T, rc rueidis.Client) map[string]map[string]string {
	t.Helper()
	out := map[string]map[string]string{}
	for _, k := range keys.RuntimeConfig() {
		h, err := rc.Do(context.Background(), rc.B().Hgetall().Key(k).Build()).AsStrMap()
		if err != nil {
			t.Fatalf("HGETALL %s: %v", k, err)
		}
		out[k] = h
	}
	return out
}

func marker(t *testing.T, rc rueidis.Client) map[string]string {
	t.Helper()
	m, _ := rc.Do(context.Background(), rc.B().Hgetall().Key(keys.ConfigRestore).Build()).AsStrMap()
	return m
}

// confirmed waits until the marker names the current Redis run.
func confirmed(t *testing.T, rc rueidis.Client, within time.Duration) map[string]string {
	t.Helper()
	var m map[string]string
	wait.For(t, within, "the marker for this Redis run", func() error {
		run, err := redisconn.RunID(context.Background(), rc)
		if err != nil {
			return err
		}
		m = marker(t, rc)
		return wait.Equal(m[contract.RestoreRunID], run)
	})
	return m
}

// snapshotHolds waits until the file holds field → value of key.
func snapshotHolds(t *testing.T, path, key, field, value string) {
	t.Helper()
	wait.For(t, patience, "the snapshot to hold "+key+" "+field, func() error {
		s, err := Read(path)
		if err != nil {
			return err
		}
		return wait.Equal(s.Keys[key][field], value)
	})
}

// TestRestoreAfterRedisRestart: configuration loaded with plain commands
// (and changed afterwards, as with redis-cli) is back within 5 s after
// Redis restarted empty, with the channel set and the marker.
func TestRestoreAfterRedisRestart(t *testing.T) {
	rs := redistest.Start(t)
	rc := rs.Client(t)
	path := filepath.Join(t.TempDir(), "state", "config.snapshot")
	var republished atomic.Int32
	keeper(t, rc, path, nil, &republished)
	confirmed(t, rc, patience)
	for _, c := range config {
		redistest.Do(t, rc, c...)
	}
	snapshotHolds(t, path, keys.DeviceRegistry, "DTU2001", "power_meter")
	// An edit after the first snapshot is kept too.
	redistest.Do(t, rc, "HSET", keys.AlarmThreshold, "pm:voltage", "260")
	snapshotHolds(t, path, keys.AlarmThreshold, "pm:voltage", "260")
	want := dump(t, rc)
	before := republished.Load()
	info, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}

	rs.Restart(t)
	start := time.Now()
	m := confirmed(t, rc, restoreWithin)
	if got := dump(t, rc); !reflect.DeepEqual(got, want) {
		t.Fatalf("after the restart\n got %v\nwant %v", got, want)
	}
	t.Logf("restored in %v", time.Since(start))
	if m[contract.RestoreKeys] != strings.Join(keys.RuntimeConfig(), ",") || m[contract.RestoreKept] != "" || m[contract.RestoreProblem] != "" || m[contract.RestoreSnapshotAt] == "0" {
		t.Fatalf("marker %v", m)
	}
	if republished.Load() == before {
		t.Fatal("channel set not republished")
	}
	if ok, _ := rc.Do(context.Background(), rc.B().Sismember().Key(keys.Channels).Member("1001").Build()).AsBool(); !ok {
		t.Fatal("channel 1001 not in the channel set")
	}
	if n, _ := rc.Do(context.Background(), rc.B().Exists().Key(keys.RestoreStaging(keys.Mapping)).Build()).AsInt64(); n != 0 {
		t.Fatal("staging key left behind")
	}
	// Nothing changed: the file is not rewritten.
	time.Sleep(5 * interval)
	if info2, err := os.Stat(path); err != nil || !info2.ModTime().Equal(info.ModTime()) {
		t.Fatalf("snapshot rewritten although nothing changed (%v)", err)
	}
}

// TestRestoreKeepsExistingKeys: a key loaded into the new Redis before the
// restore is not overwritten; the others are restored.
func TestRestoreKeepsExistingKeys(t *testing.T) {
	rs := redistest.Start(t)
	rc := rs.Client(t)
	path := filepath.Join(t.TempDir(), "config.snapshot")
	var republished atomic.Int32
	// A first comsrv takes the snapshot, then stops.
	k := New(rc, Options{Path: path, Interval: interval}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	ctx := context.Background()
	for _, c := range config {
		redistest.Do(t, rc, c...)
	}
	for range 2 { // the first round writes the marker, the second the snapshot
		if err := k.Tick(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := Read(path); err != nil {
		t.Fatal(err)
	}

	rs.Restart(t)
	wait.For(t, patience, "new mappings loaded into the new Redis", func() error {
		return rc.Do(ctx, rc.B().Hset().Key(keys.Mapping).FieldValue().FieldValue("2001:1", "other:voltage").Build()).Error()
	})
	keeper(t, rc, path, nil, &republished)
	m := confirmed(t, rc, restoreWithin)
	got := dump(t, rc)
	if !reflect.DeepEqual(got[keys.Mapping], map[string]string{"2001:1": "other:voltage"}) {
		t.Fatalf("mapping overwritten: %v", got[keys.Mapping])
	}
	if got[keys.AlarmLow]["pm:voltage"] != "180" || got[keys.DeviceRegistry]["DTU2001"] != "power_meter" {
		t.Fatalf("not restored: %v", got)
	}
	if m[contract.RestoreKept] != keys.Mapping || strings.Contains(m[contract.RestoreKeys], keys.Mapping+",") {
		t.Fatalf("marker %v", m)
	}
}

// TestCorruptSnapshot: a damaged file is reported (log, marker problem,
// kept aside) and ignored; comsrv's keeper goes on, takes a new snapshot
// and clears the problem once the configuration is loaded again.
func TestCorruptSnapshot(t *testing.T) {
	rs := redistest.Start(t)
	rc := rs.Client(t)
	path := filepath.Join(t.TempDir(), "config.snapshot")
	k := New(rc, Options{Path: path}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	for _, c := range config {
		redistest.Do(t, rc, c...)
	}
	for range 2 {
		if err := k.Tick(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, damage := range []struct {
		name string
		data []byte
	}{
		{"flipped byte", func() []byte { d := bytes.Clone(data); d[len(d)-10] ^= 0x20; return d }()},
		{"cut short", data[:len(data)/2]},
		{"garbage", []byte("\x00\x01not a snapshot")},
	} {
		if _, err := Read(writeFile(t, damage.data)); err == nil || !strings.Contains(err.Error(), ErrCorrupt.Error()) {
			t.Fatalf("%s: Read error %v, want corrupt", damage.name, err)
		}
	}
	if err := os.WriteFile(path, []byte(strings.Replace(string(data), "250", "999", 1)), 0o600); err != nil {
		t.Fatal(err)
	}

	rs.Restart(t)
	var log logBuffer
	var republished atomic.Int32
	keeper(t, rc, path, &log, &republished)
	m := confirmed(t, rc, restoreWithin)
	if !strings.Contains(m[contract.RestoreProblem], "checksum mismatch") || m[contract.RestoreKeys] != "" {
		t.Fatalf("marker %v", m)
	}
	if !strings.Contains(log.String(), "configuration snapshot unusable") {
		t.Fatalf("not reported in the log:\n%s", log.String())
	}
	if _, err := os.Stat(path + ".corrupt"); err != nil {
		t.Fatalf("corrupt file not kept aside: %v", err)
	}
	if republished.Load() == 0 {
		t.Fatal("channel set not republished")
	}
	// The engineer loads the configuration again: a new snapshot, problem cleared.
	for _, c := range config {
		redistest.Do(t, rc, c...)
	}
	snapshotHolds(t, path, keys.AlarmThreshold, "pm:voltage", "250")
	wait.For(t, patience, "the problem to be cleared", func() error {
		return wait.Equal(marker(t, rc)[contract.RestoreProblem], "")
	})
}

func writeFile(t *testing.T, data []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "s")
	if err := os.WriteFile(p, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestTooLarge: content over MaxBytes is refused by Write, not half written.
func TestTooLarge(t *testing.T) {
	path := filepath.Join(t.TempDir(), "config.snapshot")
	big := map[string]string{"k": strings.Repeat("x", MaxBytes)}
	if err := Write(path, &Snapshot{Keys: map[string]map[string]string{keys.Mapping: big}}); err == nil || !strings.Contains(err.Error(), ErrTooLarge.Error()) {
		t.Fatalf("Write error %v", err)
	}
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Fatalf("file exists after a refused write: %v", err)
	}
	if ents, _ := os.ReadDir(filepath.Dir(path)); len(ents) != 0 {
		t.Fatalf("temporary files left: %v", ents)
	}
}

// TestQuietWhileNothingChanges: with keyspace notifications the keeper does
// not read the configuration while nothing changes (one INFO per interval),
// and an edit made with redis-cli still reaches the file at once.
func TestQuietWhileNothingChanges(t *testing.T) {
	rs := redistest.Start(t)
	rc := rs.Client(t)
	for _, c := range config {
		redistest.Do(t, rc, c...)
	}
	path := filepath.Join(t.TempDir(), "config.snapshot")
	var republished atomic.Int32
	keeper(t, rc, path, nil, &republished)
	wait.For(t, patience, "the first snapshot", func() error { _, err := Read(path); return err })
	hgetalls := func() int64 {
		info, err := rc.Do(context.Background(), rc.B().Info().Section("commandstats").Build()).ToString()
		if err != nil {
			t.Fatal(err)
		}
		_, rest, ok := strings.Cut(info, "cmdstat_hgetall:calls=")
		if !ok {
			return 0
		}
		n, _ := strconv.ParseInt(rest[:strings.IndexByte(rest, ',')], 10, 64)
		return n
	}
	before := hgetalls()
	time.Sleep(10 * interval) // ten rounds with nothing changed (a quiet period is what is measured)
	if n := hgetalls() - before; n != 0 {
		t.Fatalf("%d HGETALL in ten quiet rounds, want none", n)
	}
	redistest.Do(t, rc, "HSET", keys.Mapping, "2001:9", "pm:frequency")
	wait.For(t, patience, "the edit in the snapshot", func() error {
		s, err := Read(path)
		if err != nil {
			return err
		}
		return wait.Equal(s.Keys[keys.Mapping]["2001:9"], "pm:frequency")
	})
}
