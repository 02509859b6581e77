package scripts_test

import (
	"context"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/voltedge/voltedge/internal/keys"
	"github.com/voltedge/voltedge/internal/redistest"
	"github.com/voltedge/voltedge/scripts"
)

// eventList renders alarm:events as "type kind value@ts" entries.
func eventList(t *testing.T, ev []alarmEvent) string {
	t.Helper()
	var out []string
	for _, e := range ev {
		out = append(out, e["type"]+" "+e["kind"]+" "+e["value"]+"@"+e["ts"])
	}
	return strings.Join(out, ",")
}

// TestSyncBatchManyToOne maps two channel points to one model point: the
// newest sample wins whatever the order of the groups, every sample is
// checked against the limits in time order, and a sample older than the
// stored time (in a later call) changes nothing of the model.
func TestSyncBatchManyToOne(t *testing.T) {
	srv, c := setup(t)
	redistest.Do(t, c, "HSET", keys.Mapping, "1:1", "m:v", "2:1", "m:v", "2:2", "m:w")
	redistest.Do(t, c, "HSET", keys.AlarmThreshold, "m:v", "100")
	sub := subscribe(t, srv, keys.ModelUpdates("m"))

	// The newer sample (channel 2, ts 2000) comes first, the older one above the limit second.
	r := batch(t, c, "2", "2000", "2", "1", "50", "2", "7", "1", "1000", "1", "1", "150")
	if r.written != 3 || r.mapped != 3 || r.errors != 0 || r.events != 2 {
		t.Errorf("result = %+v, want 3 written, 3 mapped, 2 events (raise and clear)", r)
	}
	if v, ts := hget(t, c, keys.ModelValues("m"), "v"), hget(t, c, keys.ModelTimestamps("m"), "v"); v != "50" || ts != "2000" {
		t.Errorf("m:v = %q at %q, want the newest sample 50 at 2000", v, ts)
	}
	if got := eventList(t, alarmEvents(t, c)); got != "raise high 150@1000,clear high 50@2000" {
		t.Errorf("events = %s", got)
	}
	if exists(t, c, keys.AlarmActive) {
		t.Errorf("alarm active after the newer in-limit sample: %v", hgetall(t, c, keys.AlarmActive))
	}
	msgs := sub.drain(t, keys.ModelUpdates("m"))
	if len(msgs) != 1 || msgs[0].Message != `{"model":"m","ts":2000,"values":{"v":50,"w":7}}` {
		t.Errorf("updates = %v", msgs)
	}

	// A later call with an older sample: not written, not published, not checked.
	r = batch(t, c, "1", "1500", "1", "1", "500")
	if r.written != 1 || r.mapped != 1 || r.errors != 0 || r.events != 0 {
		t.Errorf("late sample: result = %+v", r)
	}
	if v, ts := hget(t, c, keys.ModelValues("m"), "v"), hget(t, c, keys.ModelTimestamps("m"), "v"); v != "50" || ts != "2000" {
		t.Errorf("m:v = %q at %q after a late sample, want 50 at 2000", v, ts)
	}
	if v := hget(t, c, keys.ChannelValues("1"), "1"); v != "500" {
		t.Errorf("channel value = %q, want the late sample kept in the channel hash", v)
	}
	if msgs := sub.drain(t, keys.ModelUpdates("m")); len(msgs) != 0 {
		t.Errorf("late sample published %v", msgs)
	}
	// The same time as stored wins (a repeated sample), as does a newer one.
	mustOK(t, c, scripts.FnSyncMeasurement, "1", "1", "60", "2000")
	if v := hget(t, c, keys.ModelValues("m"), "v"); v != "60" {
		t.Errorf("m:v = %q after a sample at the stored time", v)
	}
	mustOK(t, c, scripts.FnSyncMeasurement, "2", "1", "200", "1999")
	mustOK(t, c, scripts.FnSyncMeasurement, "2", "1", "200", "3000")
	if got := eventList(t, alarmEvents(t, c)); got != "raise high 150@1000,clear high 50@2000,raise high 200@3000" {
		t.Errorf("events = %s", got)
	}

	// Within one call: an above-limit sample in the middle raises and the newest clears.
	r = batch(t, c, "1", "4000", "1", "1", "20", "2", "4001", "1", "1", "300", "1", "4002", "1", "1", "30")
	if r.events != 3 { // clear 20@4000, raise 300@4001, clear 30@4002
		t.Errorf("result = %+v", r)
	}
	if got := eventList(t, alarmEvents(t, c)[3:]); got != "clear high 20@4000,raise high 300@4001,clear high 30@4002" {
		t.Errorf("events = %s", got)
	}
	if v, ts := hget(t, c, keys.ModelValues("m"), "v"), hget(t, c, keys.ModelTimestamps("m"), "v"); v != "30" || ts != "4002" {
		t.Errorf("m:v = %q at %q", v, ts)
	}
}

// TestSyncBatchLargeModel sends more points of one model in one call than
// one command can carry: all are written and published once.
func TestSyncBatchLargeModel(t *testing.T) {
	srv, c := setup(t)
	const groups, per = 5, 1000
	mapping := []string{"HSET", keys.Mapping}
	var args []string
	for g := 1; g <= groups; g++ {
		ch := strconv.Itoa(g)
		args = append(args, ch, "1000", strconv.Itoa(per))
		for p := 1; p <= per; p++ {
			pt := strconv.Itoa(p)
			mapping = append(mapping, keys.PointRef(ch, pt), keys.PointRef("big", "p"+ch+"_"+pt))
			args = append(args, pt, strconv.Itoa(p))
		}
	}
	redistest.Do(t, c, mapping...)
	redistest.Do(t, c, "HSET", keys.AlarmThreshold, "big:p5_1000", "999")
	sub := subscribe(t, srv, keys.ModelUpdates("big"))
	arr, err := fcall(c, scripts.FnSyncBatch, args...).ToArray()
	if err != nil || len(arr) != 5 {
		t.Fatalf("FCALL sync_batch with %d points: %v, %v", groups*per, arr, err)
	}
	var r batchResult
	r.written, _ = arr[0].AsInt64()
	r.mapped, _ = arr[1].AsInt64()
	r.errors, _ = arr[2].AsInt64()
	r.events, _ = arr[3].AsInt64()
	if r.written != groups*per || r.mapped != groups*per || r.errors != 0 || r.events != 1 {
		t.Errorf("result = %+v", r)
	}
	for _, k := range []string{keys.ModelValues("big"), keys.ModelTimestamps("big")} {
		if n, _ := redistest.Do(t, c, "HLEN", k).AsInt64(); n != groups*per {
			t.Errorf("HLEN %s = %d, want %d", k, n, groups*per)
		}
	}
	msgs := sub.drain(t, keys.ModelUpdates("big"))
	if len(msgs) != 1 || len(decodeUpdate(t, msgs[0].Message).Values) != groups*per {
		t.Errorf("got %d updates, want one with every point", len(msgs))
	}
}

// TestSyncBatchWrongTypedKeys checks that a key of the wrong type costs the
// points written to it only, counted as errors that name the key.
func TestSyncBatchWrongTypedKeys(t *testing.T) {
	_, c := setup(t)
	redistest.Do(t, c, "HSET", keys.Mapping, "1:1", "bad:x", "1:2", "good:y", "2:1", "bad:z", "2:2", "badt:q",
		"3:1", "good:z")
	redistest.Do(t, c, "SET", keys.ModelValues("bad"), "1")
	redistest.Do(t, c, "SET", keys.ModelTimestamps("badt"), "1")
	redistest.Do(t, c, "SET", keys.ChannelValues("3"), "1")
	r := batch(t, c, "1", "10", "2", "1", "1", "2", "2", "2", "10", "2", "1", "3", "2", "4", "3", "10", "1", "1", "5")
	if r.written != 4 || r.mapped != 1 || r.errors != 4 {
		t.Errorf("result = %+v, want 4 written (channels 1, 2), 1 mapped (good:y), 4 errors", r)
	}
	if !strings.Contains(r.first, "HSET "+keys.ChannelValues("3")) || !strings.Contains(r.first, "WRONGTYPE") {
		t.Errorf("first error = %q, want it to name %s", r.first, keys.ChannelValues("3"))
	}
	if got := hgetall(t, c, keys.ModelValues("good")); len(got) != 1 || got["y"] != "2" {
		t.Errorf("good = %v", got)
	}
	if got := hgetall(t, c, keys.ChannelValues("2")); len(got) != 2 {
		t.Errorf("channel 2 = %v", got)
	}
	if exists(t, c, keys.ModelValues("badt")) {
		t.Error("badt written although its time hash is not a hash")
	}
	st := map[string]map[string]string{}
	for _, ch := range []string{"1", "2", "3"} {
		st[ch] = hgetall(t, c, keys.ChannelStatus(ch))
	}
	if st["1"]["sync_errors"] != "1" || !strings.Contains(st["1"]["last_sync_error"], keys.ModelValues("bad")) ||
		st["2"]["sync_errors"] != "2" || !strings.Contains(st["2"]["last_sync_error"], keys.ModelTimestamps("badt")) ||
		st["3"]["sync_errors"] != "1" {
		t.Errorf("status = %v", st)
	}
	got := mustErr(t, c, scripts.FnSyncMeasurement, "1", "1", "5", "20")
	if !strings.Contains(got, "sync_measurement channel=1 point=1") || !strings.Contains(got, keys.ModelValues("bad")) {
		t.Errorf("sync_measurement error = %q", got)
	}
	got = mustErr(t, c, scripts.FnSyncMeasurement, "3", "1", "5", "20")
	if !strings.Contains(got, keys.ChannelValues("3")) {
		t.Errorf("sync_measurement error = %q", got)
	}
}

// TestReservedListMatchesKeys keeps the Lua library's reserved names equal to keys.Reserved.
func TestReservedListMatchesKeys(t *testing.T) {
	m := regexp.MustCompile(`(?m)^local RESERVED = \{([^}]*)\}`).FindStringSubmatch(scripts.Source())
	if m == nil {
		t.Fatal("no line `local RESERVED = { ... }` in voltedge.lua")
	}
	var lua []string
	for _, q := range regexp.MustCompile(`'([^']*)'`).FindAllStringSubmatch(m[1], -1) {
		lua = append(lua, q[1])
	}
	if want := keys.Reserved(); !slices.Equal(lua, want) {
		t.Errorf("voltedge.lua reserves %q, internal/keys %q", lua, want)
	}
}

// TestReservedIDsRefused tries every reserved name as a channel, model,
// point and control id through every function and mapping entry.
func TestReservedIDsRefused(t *testing.T) {
	_, c := setup(t)
	if len(keys.Reserved()) == 0 {
		t.Fatal("keys.Reserved is empty")
	}
	for _, r := range keys.Reserved() {
		redistest.Do(t, c, "HSET", keys.Mapping, "1:"+r, "m:"+r, "1:1", "m:x", "1:2", r+":x", "1:3", "m:"+r)
		redistest.Do(t, c, "HSET", keys.MappingReverse, "m:sw", r+":1", "m:sw2", "1:"+r, r+":sw", "1:1", "m:"+r, "1:1")
		calls := []struct {
			fn   string
			args []string
			want string
		}{
			{scripts.FnSyncMeasurement, []string{r, "1", "1"}, "reserved"},
			{scripts.FnSyncMeasurement, []string{"1", r, "1"}, "reserved"},
			{scripts.FnSyncMeasurement, []string{"1", "2", "1"}, "reserved"}, // mapping names model r
			{scripts.FnSyncMeasurement, []string{"1", "3", "1"}, "reserved"}, // mapping names point r
			{scripts.FnSyncBatch, []string{r, "1", "0"}, "reserved"},
			{scripts.FnSendControl, []string{r, "sw", "1"}, "reserved"},
			{scripts.FnSendControl, []string{"m", r, "1"}, "reserved"},
			{scripts.FnSendControl, []string{"m", "sw", "1"}, "with valid ids"},  // target channel r
			{scripts.FnSendControl, []string{"m", "sw2", "1"}, "with valid ids"}, // target point r
			{scripts.FnTakeControls, []string{r, "1"}, "reserved"},
			{scripts.FnSetQuality, []string{r, "stale", "1"}, "reserved"},
			{scripts.FnSetQuality, []string{"1", "stale", r}, "reserved"},
		}
		for _, cl := range calls {
			if e := mustErr(t, c, cl.fn, cl.args...); !strings.Contains(e, cl.want) {
				t.Errorf("%s %q: error %q, want it to contain %q", cl.fn, cl.args, e, cl.want)
			}
		}
		b := batch(t, c, "1", "1", "3", r, "1", "2", "1", "3", "1")
		if b.written != 2 || b.mapped != 0 || b.errors != 3 || !strings.Contains(b.first, "reserved") {
			t.Errorf("%s: sync_batch = %+v, want the point refused and both mappings malformed", r, b)
		}
		for _, k := range []string{keys.Command(r), keys.CommandQueue(r), keys.ChannelValues(r), keys.ModelValues(r),
			keys.ChannelQuality(r)} {
			if exists(t, c, k) {
				t.Errorf("%s: key %s written", r, k)
			}
		}
		if ty, _ := redistest.Do(t, c, "TYPE", keys.CommandPending).ToString(); ty != "none" {
			t.Errorf("%s: %s is a %s", r, keys.CommandPending, ty)
		}
		if v := hget(t, c, keys.ChannelValues("1"), r); v != "" {
			t.Errorf("%s: stored as a point id", r)
		}
	}
	if n, _ := c.Do(context.Background(), c.B().Exists().Key(keys.CommandSeq, keys.CommandResults).Build()).AsInt64(); n != 0 {
		t.Errorf("%d of cmd:seq, cmd:results written by refused calls", n)
	}
}

// TestSlashIDsRefused: an id with '/' is refused as a channel, model, point
// and control id, directly and in mapping entries (keys.ValidID refuses it).
func TestSlashIDsRefused(t *testing.T) {
	_, c := setup(t)
	if keys.ValidID("a/b") {
		t.Fatal("keys.ValidID accepts a/b")
	}
	redistest.Do(t, c, "HSET", keys.Mapping, "1:2", "plant/a:x", "1:3", "m:p/q")
	redistest.Do(t, c, "HSET", keys.MappingReverse, "m:sw", "c/1:1", "m:sw2", "1:1")
	calls := []struct {
		fn   string
		args []string
	}{
		{scripts.FnSyncMeasurement, []string{"c/1", "1", "1"}},
		{scripts.FnSyncMeasurement, []string{"1", "p/1", "1"}},
		{scripts.FnSyncMeasurement, []string{"1", "2", "1"}}, // mapping names model plant/a
		{scripts.FnSyncMeasurement, []string{"1", "3", "1"}}, // mapping names point p/q
		{scripts.FnSyncBatch, []string{"c/1", "1", "0"}},
		{scripts.FnSendControl, []string{"plant/a", "sw2", "1"}},
		{scripts.FnSendControl, []string{"m", "s/w", "1"}},
		{scripts.FnSendControl, []string{"m", "sw", "1"}}, // target channel c/1
		{scripts.FnTakeControls, []string{"c/1", "1"}},
		{scripts.FnSetQuality, []string{"c/1", "stale", "1"}},
		{scripts.FnSetQuality, []string{"1", "stale", "p/1"}},
	}
	for _, cl := range calls {
		if e := mustErr(t, c, cl.fn, cl.args...); !strings.Contains(e, "/") {
			t.Errorf("%s %q: error %q, want it to mention '/'", cl.fn, cl.args, e)
		}
	}
	for _, k := range []string{keys.ChannelValues("c/1"), keys.ModelValues("plant/a"), keys.Command("c/1"), keys.ChannelQuality("c/1")} {
		if exists(t, c, k) {
			t.Errorf("key %s written", k)
		}
	}
}
