package scripts_test

import (
	"context"
	"strconv"
	"strings"
	"testing"

	"github.com/redis/rueidis"

	"github.com/voltedge/voltedge/internal/contract"
	"github.com/voltedge/voltedge/internal/keys"
	"github.com/voltedge/voltedge/internal/redistest"
)

// TestDataStreamOnePerGroup: sync_batch appends one data:samples entry per
// group, with mapped points naming their model point, once the stream
// exists; before that, nothing.
func TestDataStreamOnePerGroup(t *testing.T) {
	_, c := setup(t)
	redistest.Do(t, c, "HSET", keys.Mapping, "1001:10001", "meter:voltage")
	batch(t, c, "1001", "1000", "1", "10001", "1")
	if exists(t, c, keys.DataSamples) {
		t.Fatal("data:samples created without a reader")
	}
	redistest.Do(t, c, "XGROUP", "CREATE", keys.DataSamples, "netsrv", "$", "MKSTREAM")
	r := batch(t, c, "1001", "2000", "2", "10001", "230.5", "ts", "7", "1002", "2001", "1", "10001", "-1e-3", "1003", "2002", "1", "bad id", "1")
	if r.written != 3 || r.errors != 1 {
		t.Fatalf("%+v", r)
	}
	raw, err := c.Do(context.Background(), c.B().Xrange().Key(keys.DataSamples).Start("-").End("+").Build()).AsXRange()
	if err != nil {
		t.Fatal(err)
	}
	if len(raw) != 2 {
		t.Fatalf("%d entries, want 2 (the group of only bad points adds none): %v", len(raw), raw)
	}
	e, err := contract.ParseDataEntry(raw[0].FieldValues)
	if err != nil {
		t.Fatal(err)
	}
	want := []contract.DataPoint{{Point: "10001", Value: "230.5", Model: "meter", Name: "voltage"}, {Point: "ts", Value: "7"}}
	if e.Channel != "1001" || e.TS != 2000 || len(e.Points) != 2 || e.Points[0] != want[0] || e.Points[1] != want[1] {
		t.Fatalf("entry %+v, want channel 1001 ts 2000 points %+v", e, want)
	}
	e, err = contract.ParseDataEntry(raw[1].FieldValues)
	if err != nil || e.Channel != "1002" || e.TS != 2001 || len(e.Points) != 1 || e.Points[0].Value != "-1e-3" || e.Points[0].Model != "" {
		t.Fatalf("second entry %+v %v", e, err)
	}
}

// TestDataStreamCap: at DataSamplesMax entries, sync_batch appends nothing
// more and counts what it shed; the samples are still stored.
func TestDataStreamCap(t *testing.T) {
	_, c := setup(t)
	redistest.Do(t, c, "XGROUP", "CREATE", keys.DataSamples, "netsrv", "$", "MKSTREAM")
	// Fill the stream to one below the cap with pipelined XADDs.
	for i := 0; i < contract.DataSamplesMax-1; i += 1000 {
		n := min(1000, contract.DataSamplesMax-1-i)
		pipe := make([]rueidis.Completed, 0, n)
		for j := 0; j < n; j++ {
			pipe = append(pipe, c.B().Xadd().Key(keys.DataSamples).Id("*").FieldValue().FieldValue("x", strconv.Itoa(i+j)).Build())
		}
		for _, res := range c.DoMulti(context.Background(), pipe...) {
			if res.Error() != nil {
				t.Fatal(res.Error())
			}
		}
	}
	r := batch(t, c, "1001", "1000", "1", "1", "1", "1002", "1000", "1", "1", "1", "1003", "1000", "1", "1", "1")
	if r.written != 3 || r.errors != 0 {
		t.Fatalf("%+v", r)
	}
	if n, _ := redistest.Do(t, c, "XLEN", keys.DataSamples).AsInt64(); n != contract.DataSamplesMax {
		t.Fatalf("XLEN %d, want the cap %d", n, contract.DataSamplesMax)
	}
	if s := hget(t, c, keys.ComsrvStats, contract.DataSamplesShed); s != "2" {
		t.Fatalf("%s = %q, want 2", contract.DataSamplesShed, s)
	}
	if v := hget(t, c, keys.ChannelValues("1003"), "1"); v != "1" {
		t.Fatal("a shed entry's sample was not stored")
	}
}

// TestDataStreamWrongType: a data:samples key that is not a stream is a
// sync error naming it; the samples are stored and forwarded.
func TestDataStreamWrongType(t *testing.T) {
	_, c := setup(t)
	redistest.Do(t, c, "SET", keys.DataSamples, "x")
	r := batch(t, c, "1001", "1000", "1", "1", "5")
	if r.written != 1 || r.errors != 1 || !strings.Contains(r.first, "XLEN data:samples") {
		t.Fatalf("%+v", r)
	}
}
