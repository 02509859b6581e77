package scripts_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"math"
	"net"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/rueidis"

	"github.com/voltedge/voltedge/internal/keys"
	"github.com/voltedge/voltedge/internal/redistest"
	"github.com/voltedge/voltedge/internal/wait"
	"github.com/voltedge/voltedge/scripts"
)

// setup starts a private Redis with the library loaded.
func setup(t testing.TB) (*redistest.Server, rueidis.Client) {
	t.Helper()
	srv := redistest.Start(t)
	c := srv.Client(t)
	redistest.Do(t, c, "FUNCTION", "LOAD", scripts.Source())
	return srv, c
}

func fcall(c rueidis.Client, fn string, args ...string) rueidis.RedisResult {
	return c.Do(context.Background(), c.B().Fcall().Function(fn).Numkeys(0).Arg(args...).Build())
}

// mustOK runs a sync function and fails unless it answers OK.
func mustOK(t *testing.T, c rueidis.Client, fn string, args ...string) {
	t.Helper()
	s, err := fcall(c, fn, args...).ToString()
	if err != nil || s != "OK" {
		t.Fatalf("FCALL %s %v = %q, %v; want OK", fn, args, s, err)
	}
}

// mustErr runs a function and returns its error text, failing if it succeeded.
// rueidis drops the "ERR " prefix that redis-cli shows (see TestErrorReplyOnTheWire).
func mustErr(t *testing.T, c rueidis.Client, fn string, args ...string) string {
	t.Helper()
	err := fcall(c, fn, args...).Error()
	if err == nil {
		t.Fatalf("FCALL %s %v succeeded, want an error", fn, args)
	}
	return err.Error()
}

type batchResult struct {
	written, mapped, errors, events int64
	first                           string
}

func batch(t *testing.T, c rueidis.Client, args ...string) batchResult {
	t.Helper()
	arr, err := fcall(c, scripts.FnSyncBatch, args...).ToArray()
	if err != nil {
		t.Fatalf("FCALL sync_batch %v: %v", args, err)
	}
	if len(arr) != 5 {
		t.Fatalf("sync_batch returned %d elements, want 5", len(arr))
	}
	var r batchResult
	for i, p := range []*int64{&r.written, &r.mapped, &r.errors, &r.events} {
		if *p, err = arr[i].AsInt64(); err != nil {
			t.Fatalf("sync_batch element %d: %v", i, err)
		}
	}
	if r.first, err = arr[4].ToString(); err != nil {
		t.Fatalf("sync_batch element 4: %v", err)
	}
	return r
}

func hget(t testing.TB, c rueidis.Client, key, field string) string {
	t.Helper()
	s, err := c.Do(context.Background(), c.B().Hget().Key(key).Field(field).Build()).ToString()
	if err != nil && !rueidis.IsRedisNil(err) {
		t.Fatalf("HGET %s %s: %v", key, field, err)
	}
	return s
}

func hgetall(t testing.TB, c rueidis.Client, key string) map[string]string {
	t.Helper()
	m, err := c.Do(context.Background(), c.B().Hgetall().Key(key).Build()).AsStrMap()
	if err != nil {
		t.Fatalf("HGETALL %s: %v", key, err)
	}
	return m
}

func exists(t testing.TB, c rueidis.Client, key string) bool {
	t.Helper()
	n, err := c.Do(context.Background(), c.B().Exists().Key(key).Build()).AsInt64()
	if err != nil {
		t.Fatalf("EXISTS %s: %v", key, err)
	}
	return n == 1
}

// subscriber records the messages published on some channels.
type subscriber struct {
	msgs chan rueidis.PubSubMessage
	c    rueidis.Client
}

// subscribe listens on channels with a second client and returns once Redis
// counts the subscription.
func subscribe(t *testing.T, srv *redistest.Server, channels ...string) *subscriber {
	t.Helper()
	sc := srv.Client(t)
	s := &subscriber{msgs: make(chan rueidis.PubSubMessage, 100), c: sc}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	t.Cleanup(func() { cancel(); <-done })
	go func() {
		defer close(done)
		_ = sc.Receive(ctx, sc.B().Subscribe().Channel(channels...).Build(), func(m rueidis.PubSubMessage) {
			s.msgs <- m
		})
	}()
	wait.For(t, 5*time.Second, fmt.Sprintf("the subscription to %v", channels), func() error {
		counts, err := sc.Do(context.Background(), sc.B().PubsubNumsub().Channel(channels...).Build()).AsIntMap()
		if err != nil {
			return fmt.Errorf("PUBSUB NUMSUB: %w", err)
		}
		for _, ch := range channels {
			if counts[ch] == 0 {
				return fmt.Errorf("no subscriber on %s", ch)
			}
		}
		return nil
	})
	return s
}

// drain publishes a marker on channel and returns every message received
// before it, so that the count of messages is exact.
func (s *subscriber) drain(t *testing.T, channel string) []rueidis.PubSubMessage {
	t.Helper()
	const marker = "--end--"
	if err := s.c.Do(context.Background(), s.c.B().Publish().Channel(channel).Message(marker).Build()).Error(); err != nil {
		t.Fatalf("PUBLISH marker: %v", err)
	}
	var got []rueidis.PubSubMessage
	timeout := time.After(5 * time.Second)
	for {
		select {
		case m := <-s.msgs:
			if m.Channel == channel && m.Message == marker {
				return got
			}
			got = append(got, m)
		case <-timeout:
			t.Fatalf("marker not received; got %v", got)
		}
	}
}

type update struct {
	Model  string                     `json:"model"`
	TS     int64                      `json:"ts"`
	Values map[string]json.RawMessage `json:"values"`
}

func decodeUpdate(t *testing.T, payload string) update {
	t.Helper()
	var u update
	if err := json.Unmarshal([]byte(payload), &u); err != nil {
		t.Fatalf("update payload %q is not JSON: %v", payload, err)
	}
	return u
}

func TestSourceHeader(t *testing.T) {
	src := scripts.Source()
	if first, _, _ := strings.Cut(src, "\n"); first != "#!lua name="+scripts.LibraryName {
		t.Errorf("first line = %q", first)
	}
	v, ok := scripts.ParseVersion(src)
	if !ok || v < 1 || v != scripts.Version() {
		t.Errorf("ParseVersion = %d, %v; Version() = %d", v, ok, scripts.Version())
	}
	for _, fn := range []string{scripts.FnSyncMeasurement, scripts.FnSyncBatch, scripts.FnSendControl,
		scripts.FnTakeControls, scripts.FnControlResult, scripts.FnControlSent, scripts.FnRecoverControls,
		scripts.FnSetQuality, scripts.FnVersion} {
		if !strings.Contains(src, "function_name = '"+fn+"'") {
			t.Errorf("function %s is not registered in the source", fn)
		}
	}
	for _, k := range []string{keys.Mapping, keys.MappingReverse, keys.AlarmThreshold, keys.AlarmLow,
		keys.AlarmHysteresis, keys.AlarmActive, keys.AlarmEvents, keys.CommandSeq, keys.CommandPending,
		keys.CommandResults, keys.CommandInflight, keys.CommandSent, keys.ControlLast} {
		if !strings.Contains(src, "'"+k+"'") {
			t.Errorf("key %q is not spelled in the source", k)
		}
	}
	// Keys built from an id: the Lua expression that builds them.
	for _, k := range []string{"'" + keys.CommandResult("' .. id"), "'" + keys.ChannelQuality("' .. ch .. '") + "'",
		"'" + keys.ModelQuality("' .. model .. '") + "'", "'" + keys.CommandQueue("' .. ch .. '") + "'"} {
		if !strings.Contains(src, k) {
			t.Errorf("key expression %s is not in the source", k)
		}
	}
}

func TestParseVersion(t *testing.T) {
	tests := []struct {
		code string
		want int
		ok   bool
	}{
		{"#!lua name=x\nlocal VERSION = 7\n", 7, true},
		{"local VERSION = 12", 12, true},
		{"local VERSION = x", 0, false},
		{"", 0, false},
		{"local VERSION = 99999999999999999999999", 0, false},
	}
	for _, tt := range tests {
		got, ok := scripts.ParseVersion(tt.code)
		if got != tt.want || ok != tt.ok {
			t.Errorf("ParseVersion(%q) = %d, %v; want %d, %v", tt.code, got, ok, tt.want, tt.ok)
		}
	}
}

func TestVersionFunction(t *testing.T) {
	_, c := setup(t)
	v, err := c.Do(context.Background(), c.B().FcallRo().Function(scripts.FnVersion).Numkeys(0).Build()).AsInt64()
	if err != nil || v != int64(scripts.Version()) {
		t.Fatalf("FCALL_RO voltedge_version = %d, %v; want %d", v, err, scripts.Version())
	}
}

func TestSyncMeasurementMapped(t *testing.T) {
	srv, c := setup(t)
	redistest.Do(t, c, "HSET", keys.Mapping, keys.PointRef("1001", "10001"), keys.PointRef("power_meter", "voltage"))
	sub := subscribe(t, srv, keys.ModelUpdates("power_meter"))

	mustOK(t, c, scripts.FnSyncMeasurement, "1001", "10001", "220.5", "1732212345678")

	if got := hget(t, c, keys.ChannelValues("1001"), "10001"); got != "220.5" {
		t.Errorf("channel value = %q", got)
	}
	if got := hget(t, c, keys.ChannelTimestamps("1001"), "10001"); got != "1732212345678" {
		t.Errorf("channel ts = %q", got)
	}
	if got := hget(t, c, keys.ModelValues("power_meter"), "voltage"); got != "220.5" {
		t.Errorf("model value = %q", got)
	}
	if got := hget(t, c, keys.ModelTimestamps("power_meter"), "voltage"); got != "1732212345678" {
		t.Errorf("model ts = %q", got)
	}
	msgs := sub.drain(t, keys.ModelUpdates("power_meter"))
	if len(msgs) != 1 {
		t.Fatalf("got %d updates, want 1", len(msgs))
	}
	want := `{"model":"power_meter","ts":1732212345678,"values":{"voltage":220.5}}`
	if msgs[0].Message != want {
		t.Errorf("payload = %s, want %s", msgs[0].Message, want)
	}
}

func TestSyncMeasurementDefaultTimestamp(t *testing.T) {
	_, c := setup(t)
	before := time.Now().UnixMilli()
	mustOK(t, c, scripts.FnSyncMeasurement, "1001", "1", "5")
	after := time.Now().UnixMilli()
	ts, err := strconv.ParseInt(hget(t, c, keys.ChannelTimestamps("1001"), "1"), 10, 64)
	if err != nil || ts < before-1000 || ts > after+1000 {
		t.Errorf("default ts = %d, %v; want about %d..%d", ts, err, before, after)
	}
}

func TestSyncMeasurementUnmapped(t *testing.T) {
	_, c := setup(t)
	mustOK(t, c, scripts.FnSyncMeasurement, "1001", "10009", "-3", "1000")
	if got := hget(t, c, keys.ChannelValues("1001"), "10009"); got != "-3" {
		t.Errorf("channel value = %q", got)
	}
	if n, _ := c.Do(context.Background(), c.B().Dbsize().Build()).AsInt64(); n != 2 {
		t.Errorf("%d keys exist, want only the channel's two hashes", n)
	}
}

func TestSyncMeasurementValues(t *testing.T) {
	_, c := setup(t)
	good := []string{"220.5", "-3", "0", "-0", "1e-3", "1E+5", "-0.25", "12345678901234567890", "1.5e300"}
	for _, v := range good {
		mustOK(t, c, scripts.FnSyncMeasurement, "1", "1", v, "1")
		if got := hget(t, c, keys.ChannelValues("1"), "1"); got != v {
			t.Errorf("stored %q, want %q exactly", got, v)
		}
	}
	bad := []string{"", "abc", "nan", "inf", "-inf", "0x10", " 5", "5 ", "+5", ".5", "5.", "05", "-", "1e", "1e999",
		"1.2.3", "1,5", strings.Repeat("1", 65)}
	for _, v := range bad {
		msg := mustErr(t, c, scripts.FnSyncMeasurement, "2", "1", v, "1")
		if !strings.Contains(msg, "is not a number") || !strings.HasPrefix(msg, "sync_measurement channel=2 point=1: value ") {
			t.Errorf("value %q: error %q", v, msg)
		}
	}
	if exists(t, c, keys.ChannelValues("2")) {
		t.Error("a rejected value was written")
	}
	got := mustErr(t, c, scripts.FnSyncMeasurement, "1001", "10001", "abc")
	if want := `sync_measurement channel=1001 point=10001: value "abc" is not a number`; got != want {
		t.Errorf("error = %q, want %q", got, want)
	}
}

// TestErrorReplyOnTheWire checks the exact error line a redis-cli user sees.
func TestErrorReplyOnTheWire(t *testing.T) {
	srv, _ := setup(t)
	conn, err := net.DialTimeout("tcp", srv.Addr, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
	req := "*7\r\n$5\r\nFCALL\r\n$16\r\nsync_measurement\r\n$1\r\n0\r\n$4\r\n1001\r\n$5\r\n10001\r\n$3\r\nabc\r\n$1\r\n1\r\n"
	if _, err := conn.Write([]byte(req)); err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil {
		t.Fatal(err)
	}
	if want := "-ERR sync_measurement channel=1001 point=10001: value \"abc\" is not a number\r\n"; line != want {
		t.Errorf("reply %q, want %q", line, want)
	}
}

func TestSyncMeasurementBadArguments(t *testing.T) {
	_, c := setup(t)
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"1001", "10001"}, "sync_measurement: want <channel> <point> <value> [ts_ms], got 2 argument(s)"},
		{[]string{"1001", "10001", "1", "2", "3"}, "got 5 argument(s)"},
		{[]string{"", "10001", "1"}, `channel="" point=10001: channel id is empty`},
		{[]string{"10:01", "10001", "1"}, `channel="10:01" point=10001: channel id contains ':'`},
		{[]string{"1001", "a b", "1"}, `point="a b": point id contains ':', '/', a space`},
		{[]string{"1001", "p*", "1"}, `point id contains`},
		{[]string{"1001", strings.Repeat("x", 129), "1"}, `point id is longer than 128 bytes`},
		{[]string{"1001", "10001", "1", "x"}, `ts_ms "x" is not a Unix time in milliseconds`},
		{[]string{"1001", "10001", "1", "-5"}, `ts_ms "-5"`},
		{[]string{"1001", "10001", "1", "0123"}, `ts_ms "0123"`},
	}
	for _, tt := range tests {
		got := mustErr(t, c, scripts.FnSyncMeasurement, tt.args...)
		if !strings.Contains(got, tt.want) {
			t.Errorf("%q: error %q, want it to contain %q", tt.args, got, tt.want)
		}
	}
	if n, _ := c.Do(context.Background(), c.B().Dbsize().Build()).AsInt64(); n != 0 {
		t.Errorf("%d keys written by rejected calls", n)
	}
}

func TestSyncMeasurementMalformedMapping(t *testing.T) {
	_, c := setup(t)
	tests := []string{"power_meter", ":voltage", "power_meter:", "power meter:voltage", "pm:volt age", ""}
	for i, entry := range tests {
		point := strconv.Itoa(i + 1)
		ref := keys.PointRef("1001", point)
		redistest.Do(t, c, "HSET", keys.Mapping, ref, entry)
		got := mustErr(t, c, scripts.FnSyncMeasurement, "1001", point, "7", "42")
		want := "sync_measurement channel=1001 point=" + point + `: mapping "` + ref + `" holds ` + strconv.Quote(entry)
		if !strings.HasPrefix(got, want) {
			t.Errorf("mapping %q: error %q, want prefix %q", entry, got, want)
		}
		if v := hget(t, c, keys.ChannelValues("1001"), point); v != "7" {
			t.Errorf("mapping %q: raw value = %q, want it written", entry, v)
		}
		st := hgetall(t, c, keys.ChannelStatus("1001"))
		if st["sync_errors"] != strconv.Itoa(i+1) || st["last_sync_error"] != strings.TrimPrefix(got, "") ||
			st["last_sync_error_at"] != "42" {
			t.Errorf("mapping %q: status = %v", entry, st)
		}
	}
	if exists(t, c, keys.ModelValues("power_meter")) {
		t.Error("a malformed mapping wrote a model value")
	}
}

func TestSyncMeasurementMappingChange(t *testing.T) {
	_, c := setup(t)
	ref := keys.PointRef("1001", "10001")
	redistest.Do(t, c, "HSET", keys.Mapping, ref, "meter_a:voltage")
	mustOK(t, c, scripts.FnSyncMeasurement, "1001", "10001", "1", "1")
	redistest.Do(t, c, "HSET", keys.Mapping, ref, "meter_b:u1")
	mustOK(t, c, scripts.FnSyncMeasurement, "1001", "10001", "2", "2")
	if a, b := hget(t, c, keys.ModelValues("meter_a"), "voltage"), hget(t, c, keys.ModelValues("meter_b"), "u1"); a != "1" || b != "2" {
		t.Errorf("meter_a.voltage = %q (want 1), meter_b.u1 = %q (want 2)", a, b)
	}
}

func TestUpdatePayloadEscaping(t *testing.T) {
	srv, c := setup(t)
	model := `we"ird\model`
	redistest.Do(t, c, "HSET", keys.Mapping, "1:1", model+`:po"int`)
	sub := subscribe(t, srv, keys.ModelUpdates(model))
	mustOK(t, c, scripts.FnSyncMeasurement, "1", "1", "-1.5e-3", "9")
	msgs := sub.drain(t, keys.ModelUpdates(model))
	if len(msgs) != 1 {
		t.Fatalf("got %d updates", len(msgs))
	}
	u := decodeUpdate(t, msgs[0].Message)
	if u.Model != model || u.TS != 9 || string(u.Values[`po"int`]) != "-1.5e-3" {
		t.Errorf("update = %+v from %s", u, msgs[0].Message)
	}
}

func TestSyncBatch(t *testing.T) {
	srv, c := setup(t)
	redistest.Do(t, c, "HSET", keys.Mapping,
		"1001:1", "power_meter:voltage",
		"1001:2", "power_meter:current",
		"1002:1", "power_meter:power",
		"1002:2", "inverter:temp",
		"1002:3", "inverter:temp2",
	)
	sub := subscribe(t, srv, keys.ModelUpdates("power_meter"), keys.ModelUpdates("inverter"))

	r := batch(t, c,
		"1001", "1000", "3", "1", "220.5", "2", "3.1", "9", "0",
		"1002", "3000", "2", "1", "682", "2", "41.5",
		"1002", "2000", "1", "3", "40",
		"1003", "1000", "0",
	)
	if r != (batchResult{written: 6, mapped: 5}) {
		t.Errorf("result = %+v", r)
	}
	if got := hgetall(t, c, keys.ChannelValues("1001")); len(got) != 3 || got["1"] != "220.5" || got["9"] != "0" {
		t.Errorf("channel 1001 values = %v", got)
	}
	if got := hgetall(t, c, keys.ChannelTimestamps("1002")); got["1"] != "3000" || got["3"] != "2000" {
		t.Errorf("channel 1002 ts = %v", got)
	}
	if got := hgetall(t, c, keys.ModelValues("power_meter")); len(got) != 3 || got["power"] != "682" {
		t.Errorf("power_meter = %v", got)
	}
	if got := hgetall(t, c, keys.ModelTimestamps("power_meter")); got["voltage"] != "1000" || got["power"] != "3000" {
		t.Errorf("power_meter ts = %v", got)
	}

	byChannel := map[string][]rueidis.PubSubMessage{}
	for _, m := range sub.drain(t, keys.ModelUpdates("power_meter")) {
		byChannel[m.Channel] = append(byChannel[m.Channel], m)
	}
	pm, inv := byChannel[keys.ModelUpdates("power_meter")], byChannel[keys.ModelUpdates("inverter")]
	if len(pm) != 1 || len(inv) != 1 || len(byChannel) != 2 {
		t.Fatalf("got %d power_meter and %d inverter updates, want one per model", len(pm), len(inv))
	}
	u := decodeUpdate(t, pm[0].Message)
	if u.Model != "power_meter" || u.TS != 3000 || len(u.Values) != 3 || string(u.Values["current"]) != "3.1" {
		t.Errorf("power_meter update = %s", pm[0].Message)
	}
	u = decodeUpdate(t, inv[0].Message)
	if u.Model != "inverter" || u.TS != 3000 || string(u.Values["temp"]) != "41.5" || string(u.Values["temp2"]) != "40" {
		t.Errorf("inverter update = %s", inv[0].Message)
	}
}

func TestSyncBatchSamePointTwice(t *testing.T) {
	srv, c := setup(t)
	redistest.Do(t, c, "HSET", keys.Mapping, "1:1", "m:a")
	sub := subscribe(t, srv, keys.ModelUpdates("m"))
	r := batch(t, c, "1", "10", "2", "1", "1", "1", "2", "1", "20", "1", "1", "3")
	if r.written != 3 || r.mapped != 3 {
		t.Errorf("result = %+v", r)
	}
	msgs := sub.drain(t, keys.ModelUpdates("m"))
	if len(msgs) != 1 || msgs[0].Message != `{"model":"m","ts":20,"values":{"a":3}}` {
		t.Errorf("updates = %v", msgs)
	}
	if v, ts := hget(t, c, keys.ModelValues("m"), "a"), hget(t, c, keys.ModelTimestamps("m"), "a"); v != "3" || ts != "20" {
		t.Errorf("model value %q at %q", v, ts)
	}
}

func TestSyncBatchErrorsDoNotAbort(t *testing.T) {
	_, c := setup(t)
	redistest.Do(t, c, "HSET", keys.Mapping, "1001:1", "pm:voltage", "1001:2", "broken", "1001:3", "pm:current",
		"1002:1", "pm:power")
	r := batch(t, c,
		"1001", "500", "5", "1", "230", "2", "7", "3", "abc", "4", "nan", "a:b", "1",
		"1002", "600", "1", "1", "1000",
	)
	if r.written != 3 || r.mapped != 2 || r.errors != 4 || r.events != 0 {
		t.Errorf("result = %+v", r)
	}
	if want := `sync_batch channel=1001 point=3: value "abc" is not a number`; r.first != want {
		t.Errorf("first error = %q, want %q", r.first, want)
	}
	if got := hgetall(t, c, keys.ChannelValues("1001")); len(got) != 2 || got["1"] != "230" || got["2"] != "7" {
		t.Errorf("channel values = %v (malformed mapping keeps its raw value, bad values are not written)", got)
	}
	if got := hgetall(t, c, keys.ModelValues("pm")); len(got) != 2 || got["voltage"] != "230" || got["power"] != "1000" {
		t.Errorf("model values = %v", got)
	}
	st := hgetall(t, c, keys.ChannelStatus("1001"))
	if st["sync_errors"] != "4" || st["last_sync_error_at"] != "500" ||
		!strings.Contains(st["last_sync_error"], `mapping "1001:2" holds "broken"`) {
		t.Errorf("status = %v", st)
	}
	if exists(t, c, keys.ChannelStatus("1002")) {
		t.Error("a clean channel got a status entry")
	}
	r = batch(t, c, "1001", "700", "1", "1", "x")
	if st := hgetall(t, c, keys.ChannelStatus("1001")); st["sync_errors"] != "5" || st["last_sync_error_at"] != "700" ||
		st["last_sync_error"] != `sync_batch channel=1001 point=1: value "x" is not a number` || r.written != 0 {
		t.Errorf("status after a second call = %v, result %+v", st, r)
	}
}

func TestSyncBatchStructuralErrors(t *testing.T) {
	_, c := setup(t)
	tests := []struct {
		args []string
		want string
	}{
		{nil, "sync_batch: no groups"},
		{[]string{"1001"}, "sync_batch group 1 at argument 1: want <channel> <ts_ms> <n>, only 1 argument(s) left"},
		{[]string{"1001", "5", "x"}, `sync_batch group 1 channel=1001 argument 3: n "x" is not a point count`},
		{[]string{"1001", "5", "-1"}, `argument 3: n "-1"`},
		{[]string{"1001", "5", "1001"}, `argument 3: n "1001" is not a point count from 0 to 1000`},
		{[]string{"1001", "5", "2", "1", "1", "2"}, "sync_batch group 1 channel=1001 argument 3: n=2 needs 4 point/value arguments, only 3 left"},
		{[]string{"1001", "abc", "0"}, `sync_batch group 1 channel=1001 argument 2: ts_ms "abc" is not a Unix time`},
		{[]string{"10:01", "5", "0"}, `sync_batch group 1 argument 1: channel id "10:01" contains ':'`},
		{[]string{"1001", "5", "1", "1", "1", "1002", "5"}, "sync_batch group 2 at argument 6: want <channel> <ts_ms> <n>, only 2 argument(s) left"},
		{[]string{"1001", "5", "1", "1", "1", "", "5", "0"}, `sync_batch group 2 argument 6: channel id "" is empty`},
		{[]string{"1001", "5", "1", "1", "1", "1002", "5", "3", "1", "1"}, "group 2 channel=1002 argument 8: n=3 needs 6"},
	}
	for _, tt := range tests {
		got := mustErr(t, c, scripts.FnSyncBatch, tt.args...)
		if !strings.Contains(got, tt.want) {
			t.Errorf("%q: error %q, want it to contain %q", tt.args, got, tt.want)
		}
	}
	if n, _ := c.Do(context.Background(), c.B().Dbsize().Build()).AsInt64(); n != 0 {
		t.Errorf("%d keys written by rejected calls", n)
	}
}

type alarmEvent map[string]string

func alarmEvents(t *testing.T, c rueidis.Client) []alarmEvent {
	t.Helper()
	entries, err := c.Do(context.Background(), c.B().Xrange().Key(keys.AlarmEvents).Start("-").End("+").Build()).AsXRange()
	if err != nil {
		t.Fatalf("XRANGE: %v", err)
	}
	out := make([]alarmEvent, len(entries))
	for i, e := range entries {
		out[i] = e.FieldValues
	}
	return out
}

func TestAlarms(t *testing.T) {
	_, c := setup(t)
	ref := keys.PointRef("pm", "voltage")
	redistest.Do(t, c, "HSET", keys.Mapping, "1:1", ref)
	redistest.Do(t, c, "HSET", keys.AlarmThreshold, ref, "250")
	redistest.Do(t, c, "HSET", keys.AlarmLow, ref, "180")
	redistest.Do(t, c, "HSET", keys.AlarmHysteresis, ref, "5")

	steps := []struct {
		value  string
		events int64
		active string // kind of the active alarm after the step, "" for none
	}{
		{"220", 0, ""},
		{"250", 0, ""},     // not above
		{"260", 1, "high"}, // raise
		{"270", 0, "high"}, // no repeat
		{"247", 0, "high"}, // inside hysteresis
		{"245", 1, ""},     // clear: 245 <= 250-5
		{"251", 1, "high"},
		{"170", 2, "low"}, // clear high, raise low
		{"183", 0, "low"}, // inside hysteresis
		{"185", 1, ""},    // clear: 185 >= 180+5
		{"179.9", 1, "low"},
		{"300", 2, "high"}, // clear low, raise high
	}
	for i, s := range steps {
		ts := strconv.Itoa(1000 + i)
		r := batch(t, c, "1", ts, "1", "1", s.value)
		if r.events != s.events || r.errors != 0 {
			t.Fatalf("step %d value %s: result %+v, want %d events", i, s.value, r, s.events)
		}
		act := hget(t, c, keys.AlarmActive, ref)
		var a struct {
			Kind  string          `json:"kind"`
			Value json.RawMessage `json:"value"`
			Limit json.RawMessage `json:"limit"`
			TS    int64           `json:"ts"`
		}
		if act != "" {
			if err := json.Unmarshal([]byte(act), &a); err != nil {
				t.Fatalf("step %d: active %q: %v", i, act, err)
			}
		}
		if a.Kind != s.active {
			t.Fatalf("step %d value %s: active = %q, want kind %q", i, s.value, act, s.active)
		}
	}

	ev := alarmEvents(t, c)
	if len(ev) != 9 {
		t.Fatalf("%d events: %v", len(ev), ev)
	}
	want0 := alarmEvent{"type": "raise", "model": "pm", "point": "voltage", "kind": "high", "value": "260", "limit": "250", "ts": "1002"}
	want1 := alarmEvent{"type": "clear", "model": "pm", "point": "voltage", "kind": "high", "value": "245", "limit": "250", "raised_limit": "250", "ts": "1005"}
	want4 := alarmEvent{"type": "raise", "model": "pm", "point": "voltage", "kind": "low", "value": "170", "limit": "180", "ts": "1007"}
	for i, w := range map[int]alarmEvent{0: want0, 1: want1, 4: want4} {
		if len(ev[i]) != len(w) {
			t.Errorf("event %d = %v, want %v", i, ev[i], w)
		}
		for k, v := range w {
			if ev[i][k] != v {
				t.Errorf("event %d = %v, want %v", i, ev[i], w)
				break
			}
		}
	}
	if act := hget(t, c, keys.AlarmActive, ref); act != `{"kind":"high","value":300,"limit":250,"ts":1011}` {
		t.Errorf("active = %s", act)
	}
}

// raisedHigh maps channel point 1:1 to pm:{name}, sets its high limit and
// raises the alarm with value at ts 1.
func raisedHigh(t *testing.T, name, limit, value string) (rueidis.Client, string) {
	t.Helper()
	_, c := setup(t)
	ref := keys.PointRef("pm", name)
	redistest.Do(t, c, "HSET", keys.Mapping, "1:1", ref)
	redistest.Do(t, c, "HSET", keys.AlarmThreshold, ref, limit)
	if r := batch(t, c, "1", "1", "1", "1", value); r.events != 1 {
		t.Fatalf("raise: %+v", r)
	}
	return c, ref
}

func TestAlarmLimitDeletedClears(t *testing.T) {
	c, ref := raisedHigh(t, "t", "50", "60")
	redistest.Do(t, c, "HDEL", keys.AlarmThreshold, ref)
	if r := batch(t, c, "1", "2", "1", "1", "60"); r.events != 1 {
		t.Fatalf("clear after threshold deleted: %+v", r)
	}
	if exists(t, c, keys.AlarmActive) {
		t.Error("alarm still active")
	}
	redistest.Do(t, c, "HSET", keys.AlarmLow, ref, "10")
	mustOK(t, c, scripts.FnSyncMeasurement, "1", "1", "5", "3")
	redistest.Do(t, c, "HDEL", keys.AlarmLow, ref)
	mustOK(t, c, scripts.FnSyncMeasurement, "1", "1", "5", "4")
	ev := alarmEvents(t, c)
	if len(ev) != 4 || ev[3]["type"] != "clear" || ev[3]["kind"] != "low" || ev[3]["limit"] != "10" ||
		ev[3]["raised_limit"] != "10" || ev[3]["value"] != "5" {
		t.Errorf("events = %v", ev)
	}
}

// TestAlarmClearAfterLimitChange checks that a clear names the limit in
// force when it cleared, and the limit the alarm was raised with apart.
func TestAlarmClearAfterLimitChange(t *testing.T) {
	c, ref := raisedHigh(t, "temp", "20", "25")
	redistest.Do(t, c, "HSET", keys.AlarmThreshold, ref, "30")
	if r := batch(t, c, "1", "2", "1", "1", "25.1"); r.events != 1 {
		t.Fatalf("clear after the limit became 30: %+v", r)
	}
	redistest.Do(t, c, "HSET", keys.AlarmLow, ref, "10")
	mustOK(t, c, scripts.FnSyncMeasurement, "1", "1", "5", "3")
	redistest.Do(t, c, "HSET", keys.AlarmLow, ref, "4")
	mustOK(t, c, scripts.FnSyncMeasurement, "1", "1", "5", "4")

	ev := alarmEvents(t, c)
	want := []alarmEvent{
		{"type": "raise", "model": "pm", "point": "temp", "kind": "high", "value": "25", "limit": "20", "ts": "1"},
		{"type": "clear", "model": "pm", "point": "temp", "kind": "high", "value": "25.1", "limit": "30",
			"raised_limit": "20", "ts": "2"},
		{"type": "raise", "model": "pm", "point": "temp", "kind": "low", "value": "5", "limit": "10", "ts": "3"},
		{"type": "clear", "model": "pm", "point": "temp", "kind": "low", "value": "5", "limit": "4",
			"raised_limit": "10", "ts": "4"},
	}
	if len(ev) != len(want) {
		t.Fatalf("events = %v, want %v", ev, want)
	}
	for i, w := range want {
		if !maps.Equal(ev[i], w) {
			t.Errorf("event %d = %v, want %v", i, ev[i], w)
		}
	}
}

func TestAlarmBadLimits(t *testing.T) {
	_, c := setup(t)
	ref := keys.PointRef("pm", "v")
	redistest.Do(t, c, "HSET", keys.Mapping, "1:1", ref)
	redistest.Do(t, c, "HSET", keys.AlarmThreshold, ref, "high")
	redistest.Do(t, c, "HSET", keys.AlarmLow, ref, "10")
	r := batch(t, c, "1", "1", "1", "1", "5")
	if r.errors != 1 || r.events != 1 || r.mapped != 1 {
		t.Errorf("result = %+v (the good low limit still applies)", r)
	}
	if !strings.Contains(r.first, `alarm:threshold "pm:v" holds "high", which is not a number`) {
		t.Errorf("first error = %q", r.first)
	}
	got := mustErr(t, c, scripts.FnSyncMeasurement, "1", "1", "6", "2")
	if !strings.Contains(got, "sync_measurement channel=1 point=1: alarm:threshold") {
		t.Errorf("sync_measurement error = %q", got)
	}
	if v := hget(t, c, keys.ModelValues("pm"), "v"); v != "6" {
		t.Errorf("model value = %q, want it written despite the bad limit", v)
	}

	// An unreadable active entry is reported and removed; a bad hysteresis counts as 0.
	redistest.Do(t, c, "HSET", keys.AlarmActive, ref, "garbage")
	redistest.Do(t, c, "HSET", keys.AlarmThreshold, ref, "100")
	if r := batch(t, c, "1", "3", "1", "1", "50"); r.errors != 1 || r.events != 0 || !strings.Contains(r.first, "not an alarm") {
		t.Errorf("garbage active: %+v", r)
	}
	if exists(t, c, keys.AlarmActive) {
		t.Error("garbage active entry kept")
	}
	redistest.Do(t, c, "HSET", keys.AlarmHysteresis, ref, "-2")
	batch(t, c, "1", "4", "1", "1", "150")
	if r := batch(t, c, "1", "5", "1", "1", "100"); r.errors != 1 || r.events != 1 {
		t.Errorf("bad hysteresis: %+v", r)
	}
	if st := hgetall(t, c, keys.ChannelStatus("1")); st["sync_errors"] != "4" {
		t.Errorf("status = %v", st)
	}
}

// TestSyncBatchModelBuffers checks the update payload and the model hash
// while a model gets fewer, then more, then reordered points from call to call.
func TestSyncBatchModelBuffers(t *testing.T) {
	srv, c := setup(t)
	redistest.Do(t, c, "HSET", keys.Mapping, "1:1", "m:a", "1:2", "m:b", "1:3", "m:c")
	sub := subscribe(t, srv, keys.ModelUpdates("m"))
	calls := []struct {
		args []string
		want string
	}{
		{[]string{"1", "10", "3", "1", "1", "2", "2", "3", "3"}, `{"model":"m","ts":10,"values":{"a":1,"b":2,"c":3}}`},
		{[]string{"1", "11", "2", "1", "4", "2", "5"}, `{"model":"m","ts":11,"values":{"a":4,"b":5}}`},
		{[]string{"1", "12", "3", "1", "6", "2", "7", "3", "8"}, `{"model":"m","ts":12,"values":{"a":6,"b":7,"c":8}}`},
		{[]string{"1", "13", "2", "3", "9", "1", "10"}, `{"model":"m","ts":13,"values":{"c":9,"a":10}}`},
		{[]string{"1", "14", "1", "2", "11"}, `{"model":"m","ts":14,"values":{"b":11}}`},
		{[]string{"1", "15", "3", "1", "12", "2", "13", "3", "14"}, `{"model":"m","ts":15,"values":{"a":12,"b":13,"c":14}}`},
	}
	for i, call := range calls {
		if r := batch(t, c, call.args...); r.mapped != int64(len(call.args)-3)/2 || r.errors != 0 {
			t.Fatalf("call %d: result %+v", i, r)
		}
		msgs := sub.drain(t, keys.ModelUpdates("m"))
		if len(msgs) != 1 || msgs[0].Message != call.want {
			t.Errorf("call %d: updates %v, want %s", i, msgs, call.want)
		}
	}
	if got := hgetall(t, c, keys.ModelValues("m")); len(got) != 3 || got["a"] != "12" || got["c"] != "14" {
		t.Errorf("model values = %v", got)
	}
	if got := hgetall(t, c, keys.ModelTimestamps("m")); got["a"] != "15" || got["b"] != "15" {
		t.Errorf("model timestamps = %v", got)
	}
}

// TestSyncBatchLargeCall runs one scenario with a few points and with enough
// points for the mapping and the alarm hashes to be read whole: points of
// three models interleaved, a point given twice, a malformed and a missing
// mapping entry, alarms raised and cleared in model order, a mapping change.
func TestSyncBatchLargeCall(t *testing.T) {
	for _, n := range []int{6, 40} {
		t.Run("points="+strconv.Itoa(n), func(t *testing.T) { testLargeCall(t, n) })
	}
}

func testLargeCall(t *testing.T, n int) {
	srv, c := setup(t)
	model := func(i int) string { return "m" + strconv.Itoa(i%3) }
	mapping := []string{keys.PointRef("1", strconv.Itoa(n-1)), "broken"} // point n: unmapped
	for i := 1; i <= n-2; i++ {
		mapping = append(mapping, keys.PointRef("1", strconv.Itoa(i)), keys.PointRef(model(i), "p"+strconv.Itoa(i)))
	}
	redistest.Do(t, c, append([]string{"HSET", keys.Mapping}, mapping...)...)
	redistest.Do(t, c, "HSET", keys.AlarmThreshold, "m1:p1", "100", "m2:p2", "100", "m0:p3", "100", "m1:p4", "100")
	sub := subscribe(t, srv, keys.ModelUpdates("m0"), keys.ModelUpdates("m1"), keys.ModelUpdates("m2"))

	group := func(ts, value string) []string {
		args := []string{"1", ts, strconv.Itoa(n)}
		for i := 1; i <= n; i++ {
			args = append(args, strconv.Itoa(i), value)
		}
		return args
	}
	// Point 1 is given again, below its limit, by a later group: its newer value is
	// written, and both are checked (its alarm is raised and cleared).
	r := batch(t, c, append(group("1000", "200"), "1", "2000", "1", "1", "5")...)
	if r.written != int64(n+1) || r.mapped != int64(n-1) || r.errors != 1 || r.events != 5 {
		t.Errorf("result = %+v", r)
	}
	want := fmt.Sprintf(`sync_batch channel=1 point=%d: mapping "1:%d" holds "broken", want "{model}:{point_name}" with valid ids`, n-1, n-1)
	if r.first != want {
		t.Errorf("first error = %q, want %q", r.first, want)
	}
	ev := alarmEvents(t, c)
	var got []string
	for _, e := range ev {
		got = append(got, e["type"]+" "+e["model"]+":"+e["point"]+"="+e["value"])
	}
	if strings.Join(got, ",") != "raise m1:p1=200,clear m1:p1=5,raise m1:p4=200,raise m2:p2=200,raise m0:p3=200" {
		t.Errorf("events = %v", got)
	}
	msgs := sub.drain(t, keys.ModelUpdates("m1"))
	if len(msgs) != 3 {
		t.Fatalf("got %d updates, want one per model: %v", len(msgs), msgs)
	}
	for _, m := range msgs {
		u := decodeUpdate(t, m.Message)
		wantTS := int64(1000)
		if u.Model == "m1" {
			wantTS = 2000 // the largest ts of the model's points
		}
		if u.TS != wantTS || len(u.Values) == 0 {
			t.Errorf("update %s", m.Message)
		}
		if u.Model == "m1" && (string(u.Values["p1"]) != "5" || !strings.HasPrefix(m.Message, `{"model":"m1","ts":2000,"values":{"p1":5,"p4":200`)) {
			t.Errorf("m1 update %s", m.Message)
		}
	}
	if v, ts := hget(t, c, keys.ModelValues("m1"), "p1"), hget(t, c, keys.ModelTimestamps("m1"), "p1"); v != "5" || ts != "2000" {
		t.Errorf("m1.p1 = %q at %q", v, ts)
	}
	if exists(t, c, keys.ModelValues("m"+strconv.Itoa(n%3))) && hget(t, c, keys.ModelValues("m"+strconv.Itoa(n%3)), "p"+strconv.Itoa(n)) != "" {
		t.Error("the unmapped point was forwarded")
	}

	// A mapping change applies on the next call; active alarms clear in model order.
	redistest.Do(t, c, "HSET", keys.Mapping, "1:4", "m9:q")
	r = batch(t, c, group("3000", "50")...)
	if r.mapped != int64(n-2) || r.errors != 1 || r.events != 2 {
		t.Errorf("second result = %+v", r)
	}
	if v := hget(t, c, keys.ModelValues("m9"), "q"); v != "50" {
		t.Errorf("m9.q = %q after the mapping change", v)
	}
	if v := hget(t, c, keys.ModelValues("m1"), "p4"); v != "200" {
		t.Errorf("m1.p4 = %q, want it left alone after the mapping change", v)
	}
	ev = alarmEvents(t, c)
	got = got[:0]
	for _, e := range ev[5:] {
		got = append(got, e["type"]+" "+e["model"]+":"+e["point"]+"="+e["value"])
	}
	if strings.Join(got, ",") != "clear m2:p2=50,clear m0:p3=50" {
		t.Errorf("events = %v", got)
	}
	if act := hgetall(t, c, keys.AlarmActive); len(act) != 1 || act["m1:p4"] == "" {
		t.Errorf("active = %v, want only m1:p4 (no longer mapped)", act)
	}
}

func TestSendControl(t *testing.T) {
	srv, c := setup(t)
	redistest.Do(t, c, "HSET", keys.MappingReverse, keys.PointRef("power_meter", "switch"), keys.PointRef("1001", "30001"))
	sub := subscribe(t, srv, keys.Command("1001"))

	before := time.Now().UnixMilli()
	var ids []int64
	for i := 1; i <= 3; i++ {
		id, err := fcall(c, scripts.FnSendControl, "power_meter", "switch", strconv.Itoa(i-1)).AsInt64()
		if err != nil || (i > 1 && id <= ids[i-2]) {
			t.Fatalf("send_control #%d = %d, %v (ids so far %v)", i, id, err, ids)
		}
		ids = append(ids, id)
	}
	id, err := fcall(c, scripts.FnSendControl, "power_meter", "switch", "-2.5", "500", "n0nce_-A").AsInt64()
	if err != nil || id <= ids[2] {
		t.Fatalf("send_control with ttl and nonce = %d, %v", id, err)
	}

	if v := hget(t, c, keys.Command("1001"), "30001"); v != "-2.5" {
		t.Errorf("last control value = %q", v)
	}
	members, _ := c.Do(context.Background(), c.B().Smembers().Key(keys.CommandPending).Build()).AsStrSlice()
	if len(members) != 1 || members[0] != "1001" {
		t.Errorf("pending = %v", members)
	}
	queue, _ := c.Do(context.Background(), c.B().Lrange().Key(keys.CommandQueue("1001")).Start(0).Stop(-1).Build()).AsStrSlice()
	if len(queue) != 4 {
		t.Fatalf("queue = %v", queue)
	}
	var cmd struct {
		ID       int64           `json:"id"`
		Channel  string          `json:"channel"`
		Point    string          `json:"point"`
		Value    json.RawMessage `json:"value"`
		Model    string          `json:"model"`
		Control  string          `json:"control"`
		TS       int64           `json:"ts"`
		Deadline int64           `json:"deadline"`
		Nonce    string          `json:"nonce"`
	}
	if err := json.Unmarshal([]byte(queue[0]), &cmd); err != nil { // newest first (LPUSH)
		t.Fatalf("queue entry %q: %v", queue[0], err)
	}
	if cmd.ID != id || cmd.ID/1000 < cmd.TS || cmd.Nonce != "n0nce_-A" || cmd.Channel != "1001" || cmd.Point != "30001" || string(cmd.Value) != "-2.5" ||
		cmd.Model != "power_meter" || cmd.Control != "switch" || cmd.Deadline != cmd.TS+500 ||
		cmd.TS < before-1000 || cmd.TS > time.Now().UnixMilli()+1000 {
		t.Errorf("queued command = %+v from %s", cmd, queue[0])
	}
	cmd.Nonce = ""
	if err := json.Unmarshal([]byte(queue[3]), &cmd); err != nil || cmd.ID != ids[0] || cmd.Deadline != cmd.TS+30000 ||
		cmd.Nonce != "" || strings.Contains(queue[3], "nonce") {
		t.Errorf("oldest command = %+v, %v", cmd, err)
	}

	msgs := sub.drain(t, keys.Command("1001"))
	var payloads []string
	for _, m := range msgs {
		payloads = append(payloads, m.Message)
	}
	if strings.Join(payloads, " ") != "30001:0 30001:1 30001:2 30001:-2.5" {
		t.Errorf("published %q", payloads)
	}
}

func TestSendControlErrors(t *testing.T) {
	_, c := setup(t)
	redistest.Do(t, c, "HSET", keys.MappingReverse, "power_meter:bad", "1001", "power_meter:ok", "1001:30001")
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"power_meter", "switch", "1"}, `send_control model=power_meter control=switch: no mapping:reverse entry "power_meter:switch"`},
		{[]string{"power_meter", "bad", "1"}, `send_control model=power_meter control=bad: mapping:reverse entry "power_meter:bad" holds "1001", want "{channel}:{point}"`},
		{[]string{"power_meter", "ok", "on"}, `send_control model=power_meter control=ok: value "on" is not a number`},
		{[]string{"power_meter", "ok", "1", "0"}, `ttl_ms "0" is not a positive number of milliseconds`},
		{[]string{"power_meter", "ok", "1", "abc"}, `ttl_ms "abc"`},
		{[]string{"power_meter", "ok"}, "send_control: want <model> <control> <value> [ttl_ms [nonce]], got 2 argument(s)"},
		{[]string{"power:meter", "ok", "1"}, `send_control model="power:meter" control=ok: model id contains ':'`},
		{[]string{"power_meter", "", "1"}, `control name is empty`},
		{[]string{"power_meter", "ok", "1", "10", "a:b"}, `send_control model=power_meter control=ok: nonce "a:b" is not a nonce (1 to 32 letters, digits, "_" or "-") (argument 5)`},
		{[]string{"power_meter", "ok", "1", "10", "n", "x"}, `got 6 argument(s)`},
	}
	for _, tt := range tests {
		got := mustErr(t, c, scripts.FnSendControl, tt.args...)
		if !strings.HasPrefix(got, tt.want) && !strings.Contains(got, tt.want) {
			t.Errorf("%q: error %q, want %q", tt.args, got, tt.want)
		}
	}
	for _, k := range []string{keys.CommandSeq, keys.CommandPending, keys.Command("1001"), keys.CommandQueue("1001")} {
		if exists(t, c, k) {
			t.Errorf("%s written by a rejected command", k)
		}
	}
}

// BenchmarkSyncBatch measures sync_batch with 20 mapped points per group,
// each group its own channel and model with alarm limits set.
func BenchmarkSyncBatch(b *testing.B) {
	for _, groups := range []int{1, 8} {
		b.Run("groups="+strconv.Itoa(groups), func(b *testing.B) { benchSyncBatch(b, groups, false) })
		b.Run("groups="+strconv.Itoa(groups)+"/parallel", func(b *testing.B) { benchSyncBatch(b, groups, true) })
	}
}

func benchSyncBatch(b *testing.B, groups int, parallel bool) {
	const points = 20
	_, c := setup(b)
	var args []string
	for g := 0; g < groups; g++ {
		ch := strconv.Itoa(1001 + g)
		model := "model_" + ch
		args = append(args, ch, "1732212345678", strconv.Itoa(points))
		for p := 0; p < points; p++ {
			pt := strconv.Itoa(10001 + p)
			name := "p" + strconv.Itoa(p)
			redistest.Do(b, c, "HSET", keys.Mapping, keys.PointRef(ch, pt), keys.PointRef(model, name))
			redistest.Do(b, c, "HSET", keys.AlarmThreshold, keys.PointRef(model, name), "1000")
			args = append(args, pt, strconv.Itoa(200+p)+".5")
		}
	}
	ctx := context.Background()
	run := func() {
		if err := c.Do(ctx, c.B().Fcall().Function(scripts.FnSyncBatch).Numkeys(0).Arg(args...).Build()).Error(); err != nil {
			b.Fatal(err)
		}
	}
	run()
	b.ReportAllocs()
	b.ResetTimer()
	if parallel {
		b.SetParallelism(8)
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				run()
			}
		})
	} else {
		for i := 0; i < b.N; i++ {
			run()
		}
	}
	b.ReportMetric(float64(b.N*groups*points)/b.Elapsed().Seconds(), "points/s")
	b.ReportMetric(fcallUsecPerCall(b, c), "usec/fcall")
}

// fcallUsecPerCall returns Redis's own figure for the time spent in FCALL
// (INFO commandstats, usec_per_call): the library's cost without the network.
func fcallUsecPerCall(b *testing.B, c rueidis.Client) float64 {
	b.Helper()
	info, err := c.Do(context.Background(), c.B().Info().Section("commandstats").Build()).ToString()
	if err != nil {
		b.Fatalf("INFO commandstats: %v", err)
	}
	m := regexp.MustCompile(`cmdstat_fcall:.*usec_per_call=([0-9.]+)`).FindStringSubmatch(info)
	if m == nil {
		b.Fatalf("INFO commandstats has no cmdstat_fcall: %s", info)
	}
	v, err := strconv.ParseFloat(m[1], 64)
	if err != nil {
		b.Fatalf("usec_per_call %q: %v", m[1], err)
	}
	return v
}

var jsonNumber = regexp.MustCompile(`^-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?$`)

// FuzzValueSyntax checks the library's number check against Go's reading of
// the JSON number grammar: a value is stored (exactly) if and only if it is
// a finite JSON number of at most 64 bytes.
func FuzzValueSyntax(f *testing.F) {
	for _, s := range []string{"220.5", "-3", "0", "1e-3", "abc", "", "nan", "inf", "0x10", " 5", "+5", ".5", "05",
		"1e999", "-0", "1E+5", "1e-400", "1\x00", "\xff"} {
		f.Add(s)
	}
	_, c := setup(f)
	f.Fuzz(func(t *testing.T, v string) {
		err := fcall(c, scripts.FnSyncMeasurement, "1", "1", v, "1").Error()
		want := len(v) <= 64 && jsonNumber.MatchString(v)
		if want {
			x, _ := strconv.ParseFloat(v, 64)
			want = !math.IsInf(x, 0)
		}
		if want != (err == nil) {
			t.Fatalf("value %q: accepted=%v, want %v (%v)", v, err == nil, want, err)
		}
		if want {
			if got := hget(t, c, keys.ChannelValues("1"), "1"); got != v {
				t.Fatalf("stored %q, want %q", got, v)
			}
		}
	})
}

// FuzzSyncBatch feeds arbitrary argument lists to sync_batch: it must answer
// with its result array or with one of its own error messages, never with a
// Lua runtime error.
func FuzzSyncBatch(f *testing.F) {
	for _, s := range []string{"1001 5 2 1 220.5 2 x", "1001 5 1 1 1 1002 6 1 1 2", "1001", "1 2 3", "a:b 1 0",
		"1 1 1 1 1 1 1 1 1 1 1", "1 1 0 1 1 0", "1 10 2 1 1 1 2"} {
		f.Add(s)
	}
	_, c := setup(f)
	redistest.Do(f, c, "HSET", keys.Mapping, "1:1", "m:a", "1:2", "bad", "1001:1", "m:b", "1002:1", ":x")
	redistest.Do(f, c, "HSET", keys.AlarmThreshold, "m:a", "10", "m:b", "x")
	redistest.Do(f, c, "HSET", keys.AlarmLow, "m:a", "2")
	f.Fuzz(func(t *testing.T, in string) {
		args := strings.Split(in, " ")
		r := fcall(c, scripts.FnSyncBatch, args...)
		if err := r.Error(); err != nil {
			if !strings.HasPrefix(err.Error(), "sync_batch") {
				t.Fatalf("%q: %v", args, err)
			}
			return
		}
		arr, err := r.ToArray()
		if err != nil || len(arr) != 5 {
			t.Fatalf("%q: reply %v, %v", args, arr, err)
		}
	})
}

// queueControls maps power_meter:setpoint to channel 1001 point 40001 and
// queues n commands with values 1..n; their ids are 1..n.
func queueControls(t *testing.T, c rueidis.Client, n int, ttl string) []int64 {
	t.Helper()
	redistest.Do(t, c, "HSET", keys.MappingReverse, keys.PointRef("power_meter", "setpoint"), keys.PointRef("1001", "40001"))
	var ids []int64
	for i := 1; i <= n; i++ {
		args := []string{"power_meter", "setpoint", strconv.Itoa(i)}
		if ttl != "" {
			args = append(args, ttl)
		}
		id, err := fcall(c, scripts.FnSendControl, args...).AsInt64()
		if err != nil {
			t.Fatalf("send_control #%d: %v", i, err)
		}
		ids = append(ids, id)
	}
	return ids
}

// take calls take_controls and returns the ids of the commands taken, in order.
func take(t *testing.T, c rueidis.Client, channel, max string) []int64 {
	t.Helper()
	raw, err := fcall(c, scripts.FnTakeControls, channel, max).AsStrSlice()
	if err != nil {
		t.Fatalf("take_controls %s %s: %v", channel, max, err)
	}
	ids := []int64{}
	for _, r := range raw {
		var cmd struct {
			ID      int64  `json:"id"`
			Channel string `json:"channel"`
		}
		if err := json.Unmarshal([]byte(r), &cmd); err != nil || cmd.Channel != channel {
			t.Fatalf("taken entry %q: %+v, %v", r, cmd, err)
		}
		ids = append(ids, cmd.ID)
	}
	return ids
}

func isPending(t *testing.T, c rueidis.Client, channel string) bool {
	t.Helper()
	n, err := c.Do(context.Background(), c.B().Sismember().Key(keys.CommandPending).Member(channel).Build()).AsInt64()
	if err != nil {
		t.Fatalf("SISMEMBER: %v", err)
	}
	return n == 1
}

func TestTakeControls(t *testing.T) {
	_, c := setup(t)
	ids := queueControls(t, c, 5, "")

	if got := take(t, c, "1001", "2"); fmt.Sprint(got) != fmt.Sprint(ids[:2]) {
		t.Errorf("first take = %v, want the oldest two [1 2]", got)
	}
	if !isPending(t, c, "1001") {
		t.Error("channel left cmd:pending while commands are still queued")
	}
	if got := take(t, c, "1001", "100"); fmt.Sprint(got) != fmt.Sprint(ids[2:]) {
		t.Errorf("second take = %v, want %v", got, ids[2:])
	}
	if isPending(t, c, "1001") || exists(t, c, keys.CommandQueue("1001")) {
		t.Error("channel still pending (or queue left) after its queue was emptied")
	}
	if got := take(t, c, "1001", "1"); len(got) != 0 {
		t.Errorf("take from an empty queue = %v", got)
	}

	// A command queued after a take makes the channel pending again.
	ids = queueControls(t, c, 1, "")
	if !isPending(t, c, "1001") {
		t.Error("a new command did not make the channel pending")
	}
	if got := take(t, c, "1001", "1"); fmt.Sprint(got) != fmt.Sprint(ids) || isPending(t, c, "1001") {
		t.Errorf("take of exactly the queue's length = %v, pending %v", got, isPending(t, c, "1001"))
	}

	// A pending entry without a queue (left by hand) is cleaned up.
	redistest.Do(t, c, "SADD", keys.CommandPending, "2002")
	if got := take(t, c, "2002", "16"); len(got) != 0 || isPending(t, c, "2002") {
		t.Errorf("stale pending entry: took %v, pending %v", got, isPending(t, c, "2002"))
	}
}

func TestTakeControlsErrors(t *testing.T) {
	_, c := setup(t)
	queueControls(t, c, 1, "")
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"1001"}, "take_controls: want <channel> <max>, got 1 argument(s)"},
		{[]string{"1001", "1", "1"}, "take_controls: want <channel> <max>, got 3 argument(s)"},
		{[]string{"1001", "0"}, `take_controls channel=1001: max "0" is not a count from 1 to 100`},
		{[]string{"1001", "101"}, `take_controls channel=1001: max "101" is not a count from 1 to 100`},
		{[]string{"1001", "01"}, `max "01" is not a count`},
		{[]string{"1001", "-1"}, `max "-1" is not a count`},
		{[]string{"1001", "many"}, `max "many" is not a count`},
		{[]string{"10:01", "1"}, `take_controls channel="10:01": channel id contains ':'`},
		{[]string{"", "1"}, `take_controls channel="": channel id is empty`},
	}
	for _, tt := range tests {
		if got := mustErr(t, c, scripts.FnTakeControls, tt.args...); !strings.Contains(got, tt.want) {
			t.Errorf("%q: error %q, want %q", tt.args, got, tt.want)
		}
	}
	if n, _ := redistest.Do(t, c, "LLEN", keys.CommandQueue("1001")).AsInt64(); n != 1 || !isPending(t, c, "1001") {
		t.Errorf("a rejected call took commands: queue length %d", n)
	}
}

// resultArgs are valid control_result arguments, in order.
func resultArgs() []string {
	return []string{"42", "exception", "2", "illegal data address", "1001", "40001", "-2.5", "power_meter", "setpoint", "60000", "1000"}
}

func TestControlResult(t *testing.T) {
	_, c := setup(t)
	before := time.Now().UnixMilli()
	mustOK(t, c, scripts.FnControlResult, resultArgs()...)

	got := hgetall(t, c, keys.CommandResult("42"))
	ts, err := strconv.ParseInt(got["ts"], 10, 64)
	if err != nil || ts < before-1000 || ts > time.Now().UnixMilli()+1000 {
		t.Errorf("ts = %q, %v", got["ts"], err)
	}
	delete(got, "ts")
	want := map[string]string{"status": "exception", "code": "2", "message": "illegal data address", "channel": "1001",
		"point": "40001", "value": "-2.5", "model": "power_meter", "control": "setpoint"}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("cmd:result:42 = %v, want %v", got, want)
	}
	if ttl, _ := redistest.Do(t, c, "PTTL", keys.CommandResult("42")).AsInt64(); ttl <= 0 || ttl > 60000 {
		t.Errorf("PTTL = %d, want 1..60000", ttl)
	}
	entries, err := c.Do(context.Background(), c.B().Xrange().Key(keys.CommandResults).Start("-").End("+").Build()).AsXRange()
	if err != nil || len(entries) != 1 {
		t.Fatalf("cmd:results = %v, %v", entries, err)
	}
	e := entries[0].FieldValues
	if e["id"] != "42" || e["status"] != "exception" || e["code"] != "2" || e["message"] != "illegal data address" ||
		e["model"] != "power_meter" || e["control"] != "setpoint" || e["ts"] != strconv.FormatInt(ts, 10) || len(e) != 10 {
		t.Errorf("stream entry = %v", e)
	}

	// Unknown descriptive fields are written empty; a second result replaces the hash.
	mustOK(t, c, scripts.FnControlResult, "42", "invalid", "0", "", "1001", "", "", "", "", "1000", "1000")
	if got := hgetall(t, c, keys.CommandResult("42")); got["status"] != "invalid" || got["point"] != "" || got["code"] != "0" ||
		got["message"] != "" || len(got) != 9 {
		t.Errorf("replaced result = %v", got)
	}
	if ttl, _ := redistest.Do(t, c, "PTTL", keys.CommandResult("42")).AsInt64(); ttl <= 0 || ttl > 1000 {
		t.Errorf("PTTL after the second result = %d, want 1..1000", ttl)
	}

	// The stream is capped near maxlen.
	for i := 0; i < 300; i++ {
		mustOK(t, c, scripts.FnControlResult, strconv.Itoa(100+i), "ok", "0", "", "1001", "40001", "1", "", "", "60000", "10")
	}
	if n, _ := redistest.Do(t, c, "XLEN", keys.CommandResults).AsInt64(); n < 10 || n >= 300 {
		t.Errorf("XLEN cmd:results = %d after 302 results with maxlen ~10", n)
	}
	for _, st := range []string{"ok", "exception", "timeout", "offline", "expired", "invalid", "failed", "unknown"} {
		mustOK(t, c, scripts.FnControlResult, "7", st, "0", "", "1001", "", "", "", "", "1000", "1000")
	}
}

// lastOutcome is the JSON of a control:last field.
type lastOutcome struct {
	ID      string `json:"id"`
	Status  string `json:"status"`
	Code    int    `json:"code"`
	Message string `json:"message"`
	Value   string `json:"value"`
	TS      int64  `json:"ts"`
}

// TestControlLast: every outcome replaces the control's field in
// control:last, "{model}:{control}", or "{channel}:{point}" for a command
// without a model.
func TestControlLast(t *testing.T) {
	_, c := setup(t)
	before := time.Now().UnixMilli()
	last := func(field string) lastOutcome {
		t.Helper()
		s, err := redistest.Do(t, c, "HGET", keys.ControlLast, field).ToString()
		if err != nil {
			t.Fatalf("control:last %s: %v", field, err)
		}
		var o lastOutcome
		if err := json.Unmarshal([]byte(s), &o); err != nil {
			t.Fatalf("control:last %s = %q: %v", field, s, err)
		}
		if o.TS < before-1000 || o.TS > time.Now().UnixMilli()+1000 {
			t.Errorf("control:last %s ts = %d", field, o.TS)
		}
		o.TS = 0
		return o
	}
	mustOK(t, c, scripts.FnControlResult, resultArgs()...)
	want := lastOutcome{ID: "42", Status: "exception", Code: 2, Message: "illegal data address", Value: "-2.5"}
	if got := last("power_meter:setpoint"); got != want {
		t.Errorf("after 42: %+v, want %+v", got, want)
	}
	mustOK(t, c, scripts.FnControlResult, "43", "ok", "0", `quote " and \ and `+"\n", "1001", "40001", "12345678901234567", "power_meter", "setpoint", "60000", "1000")
	want = lastOutcome{ID: "43", Status: "ok", Message: `quote " and \ and ` + "\n", Value: "12345678901234567"}
	if got := last("power_meter:setpoint"); got != want {
		t.Errorf("after 43: %+v, want %+v", got, want)
	}
	// Sent to a channel point directly: keyed by channel and point.
	mustOK(t, c, scripts.FnControlResult, "44", "timeout", "0", "", "1001", "30001", "1", "", "", "60000", "1000")
	if got, want := last("1001:30001"), (lastOutcome{ID: "44", Status: "timeout", Value: "1"}); got != want {
		t.Errorf("channel point: %+v, want %+v", got, want)
	}
	// Neither known: nothing to key it by.
	mustOK(t, c, scripts.FnControlResult, "45", "invalid", "0", "", "1001", "", "", "", "", "60000", "1000")
	if n, _ := redistest.Do(t, c, "HLEN", keys.ControlLast).AsInt64(); n != 2 {
		t.Errorf("control:last has %d fields, want 2: %v", n, hgetall(t, c, keys.ControlLast))
	}
}

func TestControlResultErrors(t *testing.T) {
	_, c := setup(t)
	with := func(i int, v string) []string {
		a := resultArgs()
		a[i] = v
		return a
	}
	tests := []struct {
		args []string
		want string
	}{
		{resultArgs()[:10], "control_result: want <id> <status> <code> <message> <channel> <point> <value> <model> <control> <ttl_ms> <maxlen> [nonce], got 10 argument(s)"},
		{with(0, "x1"), `control_result id="x1": id is not a command number (1 to 20 digits)`},
		{with(0, ""), `control_result id="": id is not a command number`},
		{with(0, strings.Repeat("9", 21)), `id is not a command number`},
		{with(1, "done"), `control_result id=42: status "done" is not one of ok, exception, timeout, offline, expired, invalid, failed, unknown`},
		{with(2, "256"), `control_result id=42 status=exception: code "256" is not an exception code from 0 to 255`},
		{with(2, ""), `code "" is not an exception code`},
		{with(2, "02"), `code "02" is not an exception code`},
		{with(3, strings.Repeat("m", 513)), `control_result id=42 status=exception: message of 513 bytes "mmm`},
		{with(4, ""), `control_result id=42 status=exception: channel id "" is empty`},
		{with(5, "a b"), `control_result id=42 status=exception: point id "a b" contains ':', '/', a space`},
		{with(6, "on"), `control_result id=42 status=exception: value "on" is not a number`},
		{with(7, "power:meter"), `model id "power:meter" contains ':'`},
		{with(8, "set*"), `control name "set*" contains`},
		{with(9, "0"), `control_result id=42 status=exception: ttl_ms "0" is not a positive number of milliseconds`},
		{with(9, "1000000000"), `ttl_ms "1000000000" is not a positive number`},
		{with(10, "-1"), `control_result id=42 status=exception: maxlen "-1" is not a positive count`},
		{append(resultArgs(), "a b"), `control_result id=42 status=exception: nonce "a b" is not a nonce`},
		{append(resultArgs(), strings.Repeat("n", 33)), `nonce "nnn`},
		{append(resultArgs(), "n", "x"), `got 13 argument(s)`},
	}
	for _, tt := range tests {
		if got := mustErr(t, c, scripts.FnControlResult, tt.args...); !strings.Contains(got, tt.want) {
			t.Errorf("%q: error %q, want %q", tt.args, got, tt.want)
		}
	}
	if n, _ := c.Do(context.Background(), c.B().Dbsize().Build()).AsInt64(); n != 0 {
		t.Errorf("%d keys written by rejected calls", n)
	}
}

type qualityUpdate struct {
	Model   string            `json:"model"`
	TS      int64             `json:"ts"`
	Quality map[string]string `json:"quality"`
}

// qualityUpdates drains sub and decodes the messages by model.
func qualityUpdates(t *testing.T, sub *subscriber, marker string) map[string]qualityUpdate {
	t.Helper()
	out := map[string]qualityUpdate{}
	for _, m := range sub.drain(t, marker) {
		var u qualityUpdate
		if err := json.Unmarshal([]byte(m.Message), &u); err != nil || u.Model == "" || len(u.Quality) == 0 {
			t.Fatalf("quality update %q: %+v, %v", m.Message, u, err)
		}
		if _, dup := out[u.Model]; dup || m.Channel != keys.ModelUpdates(u.Model) {
			t.Fatalf("second update for %s, or on the wrong channel %s: %q", u.Model, m.Channel, m.Message)
		}
		out[u.Model] = u
	}
	return out
}

func setQuality(t *testing.T, c rueidis.Client, args ...string) int64 {
	t.Helper()
	n, err := fcall(c, scripts.FnSetQuality, args...).AsInt64()
	if err != nil {
		t.Fatalf("set_quality %v: %v", args, err)
	}
	return n
}

func TestSetQuality(t *testing.T) {
	srv, c := setup(t)
	redistest.Do(t, c, "HSET", keys.Mapping, "1001:1", "pm:voltage", "1001:2", "pm:current", "1001:3", `inv:te"mp`,
		"1001:4", "broken", "2002:1", "pm:power")
	sub := subscribe(t, srv, keys.ModelUpdates("pm"), keys.ModelUpdates(`inv`), keys.ModelUpdates(`inv:te"mp`))
	marker := keys.ModelUpdates("pm")

	before := time.Now().UnixMilli()
	if n := setQuality(t, c, "1001", "stale", "1", "2", "3", "4", "5", "1"); n != 3 {
		t.Errorf("stale: %d model points changed, want 3", n)
	}
	if got := hgetall(t, c, keys.ChannelQuality("1001")); len(got) != 5 || got["4"] != "stale" || got["5"] != "stale" {
		t.Errorf("channel quality = %v, want all five points stale (mapped or not)", got)
	}
	if got := hgetall(t, c, keys.ModelQuality("pm")); len(got) != 2 || got["voltage"] != "stale" || got["current"] != "stale" {
		t.Errorf("pm quality = %v", got)
	}
	if got := hgetall(t, c, keys.ModelQuality("inv")); len(got) != 1 || got[`te"mp`] != "stale" {
		t.Errorf("inv quality = %v", got)
	}
	ups := qualityUpdates(t, sub, marker)
	if len(ups) != 2 || ups["pm"].TS < before-1000 || ups["pm"].TS > time.Now().UnixMilli()+1000 ||
		fmt.Sprint(ups["pm"].Quality) != "map[current:stale voltage:stale]" || ups["inv"].Quality[`te"mp`] != "stale" {
		t.Errorf("updates = %+v", ups)
	}

	// Nothing changes: no model point counted, no update published.
	if n := setQuality(t, c, "1001", "stale", "1", "2"); n != 0 {
		t.Errorf("repeated stale: %d changed", n)
	}
	if ups := qualityUpdates(t, sub, marker); len(ups) != 0 {
		t.Errorf("repeated stale published %+v", ups)
	}

	// Good again: only the points that were stale are listed.
	if n := setQuality(t, c, "1001", "good", "1", "5", "9"); n != 1 {
		t.Errorf("good: %d changed, want 1", n)
	}
	if got := hgetall(t, c, keys.ChannelQuality("1001")); len(got) != 3 || got["1"] != "" || got["5"] != "" {
		t.Errorf("channel quality after good = %v", got)
	}
	if got := hgetall(t, c, keys.ModelQuality("pm")); len(got) != 1 || got["current"] != "stale" {
		t.Errorf("pm quality after good = %v", got)
	}
	ups = qualityUpdates(t, sub, marker)
	if len(ups) != 1 || fmt.Sprint(ups["pm"].Quality) != "map[voltage:good]" {
		t.Errorf("updates after good = %+v", ups)
	}

	// A value other than "stale" counts as a change in both directions.
	redistest.Do(t, c, "HSET", keys.ModelQuality("pm"), "power", "questionable")
	if n := setQuality(t, c, "2002", "stale", "1"); n != 1 || hget(t, c, keys.ModelQuality("pm"), "power") != "stale" {
		t.Errorf("stale over another value: %d changed", n)
	}
	if ups := qualityUpdates(t, sub, marker); len(ups) != 1 || ups["pm"].Quality["power"] != "stale" {
		t.Errorf("updates = %+v", ups)
	}
	redistest.Do(t, c, "HSET", keys.ModelQuality("pm"), "power", "questionable")
	if n := setQuality(t, c, "2002", "good", "1"); n != 1 || hget(t, c, keys.ModelQuality("pm"), "power") != "" {
		t.Errorf("good over another value: %d changed", n)
	}
	if ups := qualityUpdates(t, sub, marker); len(ups) != 1 || ups["pm"].Quality["power"] != "good" {
		t.Errorf("updates = %+v", ups)
	}
	if exists(t, c, keys.ChannelStatus("1001")) {
		t.Error("set_quality counted a sync error for a malformed mapping")
	}
}

// TestSetQualityManyPoints runs set_quality with more points than one lookup chunk.
func TestSetQualityManyPoints(t *testing.T) {
	srv, c := setup(t)
	const n = 4500
	points := make([]string, n)
	mapping := []string{"HSET", keys.Mapping}
	for i := range points {
		points[i] = strconv.Itoa(i + 1)
		mapping = append(mapping, keys.PointRef("7", points[i]), keys.PointRef("big", "p"+points[i]))
	}
	redistest.Do(t, c, mapping...)
	sub := subscribe(t, srv, keys.ModelUpdates("big"))
	if got := setQuality(t, c, append([]string{"7", "stale"}, points...)...); got != n {
		t.Errorf("stale: %d changed, want %d", got, n)
	}
	if l, _ := redistest.Do(t, c, "HLEN", keys.ChannelQuality("7")).AsInt64(); l != n {
		t.Errorf("channel quality has %d points", l)
	}
	ups := qualityUpdates(t, sub, keys.ModelUpdates("big"))
	if len(ups["big"].Quality) != n {
		t.Errorf("update lists %d points, want %d", len(ups["big"].Quality), n)
	}
	if got := setQuality(t, c, append([]string{"7", "good"}, points...)...); got != n {
		t.Errorf("good: %d changed, want %d", got, n)
	}
	if exists(t, c, keys.ChannelQuality("7")) || exists(t, c, keys.ModelQuality("big")) {
		t.Error("quality hashes left after every point became good")
	}
}

func TestSetQualityErrors(t *testing.T) {
	_, c := setup(t)
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"1001", "stale"}, "set_quality: want <channel> <stale|good> <point> [<point> ...], got 2 argument(s)"},
		{[]string{"10 01", "stale", "1"}, `set_quality argument 1: channel id "10 01" contains ':', '/', a space`},
		{[]string{"1001", "bad", "1"}, `set_quality channel=1001 argument 2: quality "bad" is neither "stale" nor "good"`},
		{[]string{"1001", "STALE", "1"}, `quality "STALE" is neither`},
		{[]string{"1001", "stale", "1", "2", "x:y"}, `set_quality channel=1001 argument 5: point id "x:y" contains ':'`},
		{[]string{"1001", "good", ""}, `set_quality channel=1001 argument 3: point id "" is empty`},
	}
	for _, tt := range tests {
		if got := mustErr(t, c, scripts.FnSetQuality, tt.args...); !strings.Contains(got, tt.want) {
			t.Errorf("%q: error %q, want %q", tt.args, got, tt.want)
		}
	}
	if n, _ := c.Do(context.Background(), c.B().Dbsize().Build()).AsInt64(); n != 0 {
		t.Errorf("%d keys written by rejected calls", n)
	}
}

// TestArgumentErrorsNamePosition checks that an argument error names the
// function, the argument's position, what it holds and what was expected.
func TestArgumentErrorsNamePosition(t *testing.T) {
	_, c := setup(t)
	redistest.Do(t, c, "HSET", keys.MappingReverse, "pm:sp", "1001:40001")
	tests := []struct {
		fn   string
		args []string
		want string
	}{
		{scripts.FnSyncMeasurement, []string{"", "1", "2"}, `sync_measurement channel="" point=1: channel id is empty (argument 1)`},
		{scripts.FnSyncMeasurement, []string{"1", "1", "2", "x"}, `sync_measurement channel=1 point=1: ts_ms "x" is not a Unix time in milliseconds (argument 4)`},
		{scripts.FnSyncBatch, []string{"1", "5", "1", "1", "1", "2", "x", "0"}, `sync_batch group 2 channel=2 argument 7: ts_ms "x" is not a Unix time in milliseconds`},
		{scripts.FnSendControl, []string{"pm", "sp", "1", "0"}, `send_control model=pm control=sp: ttl_ms "0" is not a positive number of milliseconds (argument 4)`},
		{scripts.FnTakeControls, []string{"1001", "0"}, `take_controls channel=1001: max "0" is not a count from 1 to 100 (argument 2)`},
		{scripts.FnControlResult, []string{"1", "ok", "0", "", "1001", "", "x", "", "", "1", "1"}, `control_result id=1 status=ok: value "x" is not a number (argument 7)`},
		{scripts.FnSetQuality, []string{"1001", "stale", "1", "a b"}, `set_quality channel=1001 argument 4: point id "a b" contains ':'`},
	}
	for _, tt := range tests {
		if got := mustErr(t, c, tt.fn, tt.args...); !strings.HasPrefix(got, tt.want) {
			t.Errorf("%s %q: error %q, want %q", tt.fn, tt.args, got, tt.want)
		}
	}
}

// TestControlFunctionsFromRedisCLI runs the new functions with redis-cli
// exactly as an operator types them, and checks what is printed.
func TestControlFunctionsFromRedisCLI(t *testing.T) {
	cli, err := exec.LookPath("redis-cli")
	if err != nil {
		t.Skipf("redis-cli not installed: %v", err)
	}
	srv, c := setup(t)
	ids := queueControls(t, c, 2, "")
	host, port, _ := net.SplitHostPort(srv.Addr)
	run := func(args ...string) string {
		t.Helper()
		out, err := exec.Command(cli, append([]string{"--no-raw", "-h", host, "-p", port}, args...)...).CombinedOutput()
		if err != nil {
			t.Fatalf("redis-cli %v: %v\n%s", args, err, out)
		}
		return string(out)
	}
	out := run("FCALL", "take_controls", "0", "1001", "16")
	if lines := strings.Split(strings.TrimSpace(out), "\n"); len(lines) != 2 ||
		!strings.HasPrefix(lines[0], fmt.Sprintf(`1) "{\"id\":%d,\"channel\":\"1001\"`, ids[0])) ||
		!strings.HasPrefix(lines[1], fmt.Sprintf(`2) "{\"id\":%d,`, ids[1])) {
		t.Errorf("take_controls printed:\n%s", out)
	}
	if out := run("FCALL", "take_controls", "0", "1001", "16"); out != "(empty array)\n" {
		t.Errorf("empty take_controls printed %q", out)
	}
	first := strconv.FormatInt(ids[0], 10)
	if out := run("FCALL", "control_sent", "0", first); out != "(integer) 1\n" {
		t.Errorf("control_sent printed %q", out)
	}
	if out := run("FCALL", "control_result", "0", first, "timeout", "0", "no answer", "1001", "40001", "1",
		"power_meter", "setpoint", "3600000", "10000"); out != "OK\n" {
		t.Errorf("control_result printed %q", out)
	}
	if out := run("HGET", keys.CommandResult(first), "status"); out != "\"timeout\"\n" {
		t.Errorf("HGET status printed %q", out)
	}
	if out := run("FCALL", "set_quality", "0", "1001", "stale", "40001"); out != "(integer) 0\n" {
		t.Errorf("set_quality printed %q", out)
	}
	if out := run("FCALL", "set_quality", "0", "1001", "unknown", "40001"); out != "(error) ERR set_quality channel=1001 argument 2: quality \"unknown\" is neither \"stale\" nor \"good\"\n" {
		t.Errorf("set_quality error printed %q", out)
	}
}

// FuzzControlFunctions feeds arbitrary arguments to take_controls,
// control_result and set_quality: each must answer with its own reply or
// one of its own error messages, never with a Lua runtime error.
func FuzzControlFunctions(f *testing.F) {
	for _, s := range []string{
		"0 1001 16", "0 1001 0", "0 a:b 1", "0 1001",
		"1 42 ok 0 msg 1001 40001 1 pm sp 1000 10", "1 42 exception 255  1001    1 1", "1 x y z", "1 1 ok 0 m 1 1 1e5 a b 9 9",
		"2 1001 stale 1 2 3", "2 1001 good 1", "2 1001 stale", "2 1001 good a:b", "2 7 stale 1 1 1",
		"3 1", "3 x", "3", "4 1000 10", "4 0 10", "4 1000",
	} {
		f.Add(s)
	}
	_, c := setup(f)
	redistest.Do(f, c, "HSET", keys.Mapping, "1001:1", "pm:a", "1001:2", "bad", "7:1", "pm:b")
	redistest.Do(f, c, "HSET", keys.MappingReverse, "pm:sp", "1001:40001")
	fns := []string{scripts.FnTakeControls, scripts.FnControlResult, scripts.FnSetQuality, scripts.FnControlSent, scripts.FnRecoverControls}
	f.Fuzz(func(t *testing.T, in string) {
		sel, rest, _ := strings.Cut(in, " ")
		i, err := strconv.Atoi(sel)
		if err != nil || i < 0 || i >= len(fns) {
			return
		}
		if err := fcall(c, scripts.FnSendControl, "pm", "sp", "1").Error(); err != nil {
			t.Fatal(err)
		}
		args := strings.Split(rest, " ")
		if err := fcall(c, fns[i], args...).Error(); err != nil && !strings.HasPrefix(err.Error(), fns[i]) {
			t.Fatalf("%s %q: %v", fns[i], args, err)
		}
	})
}

// TestControlsInFlight: take_controls keeps what it takes in cmd:inflight
// until control_result answers it; control_sent marks a command being
// written; recover_controls answers what a dead comsrv left: unknown when
// marked sent, expired past its deadline, else back to its queue in order.
func TestControlsInFlight(t *testing.T) {
	_, c := setup(t)
	ids := queueControls(t, c, 5, "")
	short := queueControls(t, c, 1, "1")[0]
	taken := take(t, c, "1001", "100")
	if len(taken) != 6 {
		t.Fatalf("took %v", taken)
	}
	str := func(id int64) string { return strconv.FormatInt(id, 10) }
	inflight := hgetall(t, c, keys.CommandInflight)
	if len(inflight) != 6 || !strings.HasPrefix(inflight[str(ids[0])], `{"id":`+str(ids[0])+`,`) {
		t.Fatalf("cmd:inflight = %v", inflight)
	}
	for _, id := range ids[:2] {
		if n, err := fcall(c, scripts.FnControlSent, str(id)).AsInt64(); err != nil || n != 1 {
			t.Fatalf("control_sent %d = %d, %v", id, n, err)
		}
	}
	if n, err := fcall(c, scripts.FnControlSent, "12345").AsInt64(); err != nil || n != 0 {
		t.Errorf("control_sent of a command not in flight = %d, %v; want 0", n, err)
	}
	if got := mustErr(t, c, scripts.FnControlSent, "x"); !strings.Contains(got, `control_sent: id "x" is not a command number`) {
		t.Errorf("control_sent x: %q", got)
	}
	// ids[0] is answered: no longer in flight.
	mustOK(t, c, scripts.FnControlResult, str(ids[0]), "ok", "0", "", "1001", "40001", "1", "power_meter", "setpoint", "60000", "1000")
	if hget(t, c, keys.CommandInflight, str(ids[0])) != "" || hget(t, c, keys.CommandSent, str(ids[0])) != "" {
		t.Error("an answered command is still in flight")
	}
	// One more command queued meanwhile: the recovered ones go before it.
	later := queueControls(t, c, 1, "")[0]
	time.Sleep(5 * time.Millisecond) // past the short one's deadline

	arr, err := fcall(c, scripts.FnRecoverControls, "60000", "1000").AsIntSlice()
	if err != nil || fmt.Sprint(arr) != "[3 1 1 0]" {
		t.Fatalf("recover_controls = %v, %v; want 3 requeued, 1 expired, 1 unknown", arr, err)
	}
	if r := hgetall(t, c, keys.CommandResult(str(ids[1]))); r["status"] != "unknown" || r["message"] != "comsrv restarted while it was in flight" ||
		r["value"] != "2" || r["point"] != "40001" || r["model"] != "power_meter" {
		t.Errorf("sent command: %v", r)
	}
	if r := hgetall(t, c, keys.CommandResult(str(short))); r["status"] != "expired" {
		t.Errorf("expired command: %v", r)
	}
	if exists(t, c, keys.CommandInflight) || exists(t, c, keys.CommandSent) || !isPending(t, c, "1001") {
		t.Error("recover_controls left commands in flight, or the channel not pending")
	}
	if got := take(t, c, "1001", "100"); fmt.Sprint(got) != fmt.Sprint(append(ids[2:5:5], later)) {
		t.Errorf("after recovery took %v, want %v then %d", got, ids[2:], later)
	}
	if n, _ := redistest.Do(t, c, "XLEN", keys.CommandResults).AsInt64(); n != 3 {
		t.Errorf("%d outcomes recorded, want 3", n)
	}
	// Nothing left: nothing done.
	mustOK(t, c, scripts.FnControlResult, str(ids[2]), "ok", "0", "", "1001", "40001", "1", "power_meter", "setpoint", "60000", "1000")
	if arr, err := fcall(c, scripts.FnRecoverControls, "60000", "1000").AsIntSlice(); err != nil || fmt.Sprint(arr) != "[3 0 0 0]" {
		t.Errorf("second recover_controls = %v, %v", arr, err)
	}
	if got := mustErr(t, c, scripts.FnRecoverControls, "0", "10"); !strings.Contains(got, `recover_controls: ttl_ms "0" is not a positive number`) {
		t.Errorf("recover_controls 0 10: %q", got)
	}
}

// TestCommandIDsAfterRestart: ids grow with time, so a Redis that lost
// cmd:seq does not hand out an id again.
func TestCommandIDsAfterRestart(t *testing.T) {
	srv, c := setup(t)
	first := queueControls(t, c, 3, "")
	srv.Restart(t)
	wait.For(t, 10*time.Second, "the library loaded after the restart", func() error {
		return c.Do(context.Background(), c.B().FunctionLoad().Replace().FunctionCode(scripts.Source()).Build()).Error()
	})
	second := queueControls(t, c, 3, "")
	if second[0] <= first[2] {
		t.Errorf("ids after the restart %v, before %v: not above", second, first)
	}
	// An old counter (ids 1, 2, ...) is left behind; a counter ahead of the
	// clock is continued.
	redistest.Do(t, c, "SET", keys.CommandSeq, "7")
	if id := queueControls(t, c, 1, "")[0]; id < time.Now().Add(-time.Minute).UnixMilli()*1000 {
		t.Errorf("id after an old counter = %d", id)
	}
	ahead := time.Now().Add(time.Hour).UnixMilli() * 1000
	redistest.Do(t, c, "SET", keys.CommandSeq, strconv.FormatInt(ahead, 10))
	if id := queueControls(t, c, 1, "")[0]; id != ahead+1 {
		t.Errorf("id after a counter ahead of the clock = %d, want %d", id, ahead+1)
	}
}
