package upload

import (
	"reflect"
	"strconv"
	"strings"
	"testing"

	"github.com/voltedge/voltedge/internal/contract"
	"github.com/voltedge/voltedge/internal/history"
	"github.com/voltedge/voltedge/netsrv/sample"
)

func fullBatch() *history.Batch {
	return &history.Batch{
		Samples:    []history.Sample{{Channel: "1001", Point: "1", Model: "m", PointName: "v", Value: "230.5", TS: 1700000000000}, {Channel: "1001", Point: "2", Value: "-1e-3", TS: -5}},
		ConnEvents: []history.ConnEvent{{EventID: "1-0", Event: "offline", Channel: "1001", Listener: "l", Registration: "DTU\t1", Remote: "10.0.0.1:1", Reason: "heartbeat timeout\n", TS: 1}},
		Alarms:     []history.Alarm{{Event: history.AlarmAck, Model: "m", Point: "v", Kind: "high", Level: "warning", Value: "1", Limit: "2", RaisedTS: 5, TS: 6, User: "op"}},
		Controls:   []history.Control{{CommandID: "17", Model: "m", Control: "c", Channel: "1001", Point: "4", Value: "1", Status: "ok", Code: "0", Message: "é", User: "u", TS: 9}},
		Channels:   []history.ChannelState{{Channel: "1001", Registration: "DTU1", Template: "t", Name: "1号进线", State: "online", TS: 3}},
	}
}

func TestCodecRoundTrip(t *testing.T) {
	b := fullBatch()
	var got history.Batch
	if err := decodeBatch(encodeBatch(nil, b), &got); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(*b, got) {
		t.Fatalf("decoded %+v, want %+v", got, *b)
	}
	for cut := 0; cut < len(encodeBatch(nil, b)); cut++ {
		var part history.Batch
		if err := decodeBatch(encodeBatch(nil, b)[:cut], &part); err == nil {
			t.Fatalf("a record cut at %d decoded", cut)
		}
	}
}

func TestEncodePartsKeepsOrderAndBound(t *testing.T) {
	b := &history.Batch{}
	for i := range 5000 {
		b.Samples = append(b.Samples, history.Sample{Channel: strings.Repeat("c", 100), Point: strconv.Itoa(i), Value: "1", TS: int64(i)})
	}
	b.ConnEvents = fullBatch().ConnEvents
	b.Channels = fullBatch().Channels
	parts := encodeParts(b, 64<<10)
	var all history.Batch
	for _, p := range parts {
		if len(p) > 64<<10 {
			t.Fatalf("a part of %d bytes", len(p))
		}
		if err := decodeBatch(p, &all); err != nil {
			t.Fatal(err)
		}
	}
	if len(parts) < 8 || !reflect.DeepEqual(all.Samples, b.Samples) || !reflect.DeepEqual(all.ConnEvents, b.ConnEvents) ||
		!reflect.DeepEqual(all.Channels, b.Channels) {
		t.Fatalf("%d parts; rows lost or reordered", len(parts))
	}
}

// FuzzDecode: no record read back from the disk crashes netsrv or makes it
// allocate beyond what the record holds.
func FuzzDecode(f *testing.F) {
	f.Add(encodeBatch(nil, fullBatch()))
	f.Add([]byte{codecVersion, 0xff, 0xff, 0xff, 0xff, 0x0f})
	f.Fuzz(func(t *testing.T, rec []byte) {
		var b history.Batch
		if err := decodeBatch(rec, &b); err != nil {
			return
		}
		if len(encodeBatch(nil, &b)) != len(rec) {
			t.Fatalf("decoded a record of %d bytes into rows of another size", len(rec))
		}
	})
}

func TestConvert(t *testing.T) {
	smp, err := sample.New([]sample.Rule{{Points: "m:v", Mode: sample.Change}}, 0)
	if err != nil {
		t.Fatal(err)
	}
	data := NewConverter(Data, smp)
	var b history.Batch
	data.Add(&b, []contract.Entry{
		{ID: "1-0", Fields: map[string]string{"channel": "1001", "ts": "100", "p:1": "5 m:v", "p:2": "7"}},
		{ID: "2-0", Fields: map[string]string{"channel": "1001", "ts": "200", "p:1": "5 m:v", "p:2": "8"}},
		{ID: "3-0", Fields: map[string]string{"channel": "bad id", "ts": "300", "p:1": "1"}},
	})
	if len(b.Samples) != 3 || data.Sampled != 1 || data.Malformed != 1 {
		t.Fatalf("samples %+v, sampled %d, malformed %d", b.Samples, data.Sampled, data.Malformed)
	}
	if s := b.Samples[0]; s.Model != "m" || s.PointName != "v" || s.TS != 100 {
		t.Fatalf("first sample %+v", s)
	}

	var e history.Batch
	ev := NewConverter(Events, nil)
	ev.Add(&e, []contract.Entry{
		{ID: "10-0", Fields: map[string]string{"event": "online", "channel": "1001", "registration": "DTU1", "remote": "1.2.3.4:5", "ts": "10"}},
		{ID: "11-0", Fields: map[string]string{"event": "refused", "registration": "X", "reason": "unknown registration id"}},
		{ID: "12-0", Fields: map[string]string{"event": "offline", "channel": "1001", "ts": "12", "remote": strings.Repeat("x", 65)}},
	})
	if len(e.ConnEvents) != 2 || len(e.Channels) != 1 || ev.Malformed != 1 || e.ConnEvents[1].TS != 11 {
		t.Fatalf("%+v, malformed %d", e, ev.Malformed)
	}

	var a history.Batch
	al := NewConverter(Alarms, nil)
	al.Add(&a, []contract.Entry{
		{ID: "20-0", Fields: map[string]string{"type": "raise", "model": "m", "point": "v", "kind": "high", "value": "9", "limit": "8", "ts": "20"}},
		{ID: "21-0", Fields: map[string]string{"type": "clear", "model": "m", "point": "v", "kind": "high", "value": "7", "limit": "8", "raised_limit": "8", "raised_ts": "20", "ts": "21"}},
		{ID: "22-0", Fields: map[string]string{"type": "ack", "model": "m", "point": "v", "user": "op", "raised_ts": "20", "ts": "22"}},
		{ID: "23-0", Fields: map[string]string{"type": "clear", "model": "m", "point": "v", "ts": "23"}}, // no raised_ts
	})
	if len(a.Alarms) != 3 || al.Malformed != 1 || a.Alarms[1].RaisedTS != 20 || a.Alarms[2].User != "op" {
		t.Fatalf("%+v, malformed %d", a.Alarms, al.Malformed)
	}

	var c history.Batch
	ct := NewConverter(Controls, nil)
	ct.Add(&c, []contract.Entry{
		{ID: "30-0", Fields: map[string]string{"id": "1700000000000001", "status": "ok", "model": "m", "control": "c", "channel": "1001", "point": "4", "value": "1", "ts": "30"}},
		{ID: "31-0", Fields: map[string]string{"status": "ok"}},
	})
	if len(c.Controls) != 1 || ct.Malformed != 1 || c.Controls[0].CommandID != "1700000000000001" {
		t.Fatalf("%+v, malformed %d", c.Controls, ct.Malformed)
	}
}
