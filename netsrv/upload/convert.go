package upload

import (
	"strconv"
	"unicode/utf8"

	"github.com/voltedge/voltedge/internal/contract"
	"github.com/voltedge/voltedge/internal/history"
	"github.com/voltedge/voltedge/internal/keys"
	"github.com/voltedge/voltedge/netsrv/sample"
)

// Kind says which stream an entry came from, and so how it becomes rows.
type Kind int

// Kinds of streams netsrv uploads.
const (
	Data     Kind = iota // keys.DataSamples
	Events               // keys.ConnectionEvents
	Alarms               // keys.AlarmEvents
	Controls             // keys.CommandResults
)

// Stream returns the stream key of k.
func (k Kind) Stream() string {
	switch k {
	case Data:
		return keys.DataSamples
	case Events:
		return keys.ConnectionEvents
	case Alarms:
		return keys.AlarmEvents
	default:
		return keys.CommandResults
	}
}

// String names k as the configuration and metrics do.
func (k Kind) String() string {
	return [...]string{"data", "events", "alarms", "controls"}[k]
}

// Converter turns stream entries into rows. It keeps the sampling state of
// the data stream, so it is not safe for concurrent use: one per stream.
type Converter struct {
	kind    Kind
	sampler *sample.Sampler
	// Malformed counts entries (or data points) that could not be read.
	Malformed uint64
	// Sampled counts data points left out by the sampling rules.
	Sampled uint64
}

// NewConverter returns a Converter for stream kind k; sampler is used for
// the data stream and may be nil (every sample is kept).
func NewConverter(k Kind, sampler *sample.Sampler) *Converter {
	return &Converter{kind: k, sampler: sampler}
}

// Kind returns the kind of stream c converts.
func (c *Converter) Kind() Kind { return c.kind }

// Add appends the rows of entries to b.
func (c *Converter) Add(b *history.Batch, entries []contract.Entry) {
	for _, e := range entries {
		switch c.kind {
		case Data:
			c.data(b, e)
		case Events:
			c.event(b, e)
		case Alarms:
			c.alarm(b, e)
		case Controls:
			c.control(b, e)
		}
	}
}

func (c *Converter) data(b *history.Batch, e contract.Entry) {
	d, err := contract.ParseDataEntry(e.Fields)
	if err != nil {
		c.Malformed++ // the valid points of the entry are still stored
	}
	for _, p := range d.Points {
		if p.Model != "" && c.sampler != nil && !c.sampler.Keep(p.Model, p.Name, p.Value, d.TS) {
			c.Sampled++
			continue
		}
		if len(p.Value) > 64 {
			c.Malformed++
			continue
		}
		b.Samples = append(b.Samples, history.Sample{Channel: d.Channel, Point: p.Point, Model: p.Model,
			PointName: p.Name, Value: p.Value, TS: d.TS})
	}
}

// fits reports whether s is valid UTF-8 of at most max bytes, as the
// store's columns take it (the store cuts free text such as reasons itself).
func fits(s string, max int) bool { return len(s) <= max && utf8.ValidString(s) }

// ts reads a Unix ms field, falling back to the stream id's time.
func ts(fields map[string]string, field, id string) int64 {
	if v, err := strconv.ParseInt(fields[field], 10, 64); err == nil && v > 0 {
		return v
	}
	ms, _, _ := cutID(id)
	return ms
}

// cutID returns the millisecond part of a stream id.
func cutID(id string) (int64, string, bool) {
	for i := 0; i < len(id); i++ {
		if id[i] == '-' {
			ms, err := strconv.ParseInt(id[:i], 10, 64)
			return ms, id[i+1:], err == nil
		}
	}
	return 0, "", false
}

func (c *Converter) event(b *history.Batch, e contract.Entry) {
	f := e.Fields
	ev := history.ConnEvent{EventID: e.ID, Event: f[contract.EventType], Channel: f[contract.EventChannel],
		Listener: f[contract.EventListener], Registration: f[contract.EventRegistration], Remote: f[contract.EventRemote],
		Reason: f[contract.EventReason], TS: ts(f, contract.EventTS, e.ID)}
	if ev.Event == "" || !fits(ev.Event, 16) || !fits(e.ID, 32) || !fits(ev.Channel, 128) || !fits(ev.Listener, 128) ||
		!fits(ev.Registration, 128) || !fits(ev.Remote, 64) {
		c.Malformed++
		return
	}
	b.ConnEvents = append(b.ConnEvents, ev)
	if ev.Channel == "" || !keys.ValidID(ev.Channel) {
		return
	}
	switch ev.Event {
	case contract.EventOnline, contract.EventReplaced:
		b.Channels = append(b.Channels, history.ChannelState{Channel: ev.Channel, Registration: ev.Registration, State: "online", TS: ev.TS})
	case contract.EventOffline:
		b.Channels = append(b.Channels, history.ChannelState{Channel: ev.Channel, State: "offline", TS: ev.TS})
	}
}

func (c *Converter) alarm(b *history.Batch, e contract.Entry) {
	f := e.Fields
	a := history.Alarm{Model: f[contract.AlarmModel], Point: f[contract.AlarmPoint], Kind: f[contract.AlarmKind],
		Value: f[contract.AlarmValue], Limit: f[contract.AlarmLimit], User: f[contract.AlarmUser], TS: ts(f, contract.AlarmTS, e.ID)}
	switch f[contract.AlarmType] {
	case contract.AlarmRaise:
		a.Event, a.RaisedTS = history.AlarmRaise, a.TS
	case contract.AlarmClear:
		a.Event = history.AlarmClear
		a.RaisedTS, _ = strconv.ParseInt(f[contract.AlarmRaisedTS], 10, 64)
		if lim := f[contract.AlarmRaisedLimit]; lim != "" {
			a.Limit = lim
		}
	case contract.AlarmAck:
		a.Event = history.AlarmAck
		a.RaisedTS, _ = strconv.ParseInt(f[contract.AlarmRaisedTS], 10, 64)
	default:
		c.Malformed++
		return
	}
	if !keys.ValidID(a.Model) || !keys.ValidID(a.Point) || a.RaisedTS <= 0 || !fits(a.Kind, 16) || !fits(a.Value, 64) ||
		!fits(a.Limit, 64) || !fits(a.User, 64) {
		c.Malformed++ // a clear from before raised_ts existed cannot name its alarm
		return
	}
	b.Alarms = append(b.Alarms, a)
}

func (c *Converter) control(b *history.Batch, e contract.Entry) {
	f := e.Fields
	x := history.Control{CommandID: f[contract.ResultID], Model: f[contract.ResultModel], Control: f[contract.ResultControl],
		Channel: f[contract.ResultChannel], Point: f[contract.ResultPoint], Value: f[contract.ResultValue],
		Status: f[contract.ResultStatus], Code: f[contract.ResultCode], Message: f[contract.ResultMessage],
		TS: ts(f, contract.ResultTS, e.ID)}
	if x.CommandID == "" || !fits(x.CommandID, 32) || x.Status == "" || !fits(x.Status, 16) || !fits(x.Model, 128) ||
		!fits(x.Control, 128) || !fits(x.Channel, 128) || !fits(x.Point, 128) || !fits(x.Value, 64) || !fits(x.Code, 32) {
		c.Malformed++
		return
	}
	b.Controls = append(b.Controls, x)
}
