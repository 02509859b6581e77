package contract

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/voltedge/voltedge/internal/keys"
)

// Fields of a data stream entry (keys.DataSamples), as sync_batch writes
// them: the channel, the sample time and one field per stored point,
// DataPointPrefix + point id → "<value>" or "<value> <model>:<point_name>".
const (
	DataChannel     = "channel"
	DataTS          = "ts"
	DataPointPrefix = "p:"
)

// DataSamplesMax is the cap of the data stream (DATA_SAMPLES_MAX in the Lua
// library): past it, entries are not appended and are counted in
// comsrv:stats DataSamplesShed.
const DataSamplesMax = 100000

// DataSamplesShed is the comsrv:stats field counting data stream entries
// not appended because the stream was at DataSamplesMax.
const DataSamplesShed = "data_samples_shed"

// DataPoint is one point of a data stream entry. Model and Name are empty
// for a point that no mapping entry forwards.
type DataPoint struct {
	Point, Value, Model, Name string
}

// DataEntry is one data stream entry: the points of one device response.
type DataEntry struct {
	Channel string
	TS      int64 // Unix ms
	Points  []DataPoint
}

// maxValue bounds a value's length, as the Lua library does.
const maxValue = 64

// ParseDataEntry reads the fields of a data stream entry. Points come
// sorted by point id. It refuses an entry without a valid channel or ts,
// and a point whose id, value or model reference is malformed.
func ParseDataEntry(fields map[string]string) (DataEntry, error) {
	var e DataEntry
	e.Channel = fields[DataChannel]
	if !keys.ValidID(e.Channel) {
		return e, fmt.Errorf("data entry: channel %q is not a valid id", e.Channel)
	}
	ts, err := strconv.ParseInt(fields[DataTS], 10, 64)
	if err != nil || ts < 0 {
		return e, fmt.Errorf("data entry of channel %s: ts %q is not Unix ms", e.Channel, fields[DataTS])
	}
	e.TS = ts
	e.Points = make([]DataPoint, 0, len(fields)-2)
	var errs []error
	for k, v := range fields {
		pt, ok := strings.CutPrefix(k, DataPointPrefix)
		if !ok {
			continue
		}
		p := DataPoint{Point: pt, Value: v}
		if val, ref, mapped := strings.Cut(v, " "); mapped {
			p.Value = val
			p.Model, p.Name, ok = keys.SplitRef(ref)
			if !ok || !keys.ValidID(p.Model) || !keys.ValidID(p.Name) {
				errs = append(errs, fmt.Errorf("point %s: model reference %q is not {model}:{point_name}", pt, ref))
				continue
			}
		}
		if !keys.ValidID(pt) || p.Value == "" || len(p.Value) > maxValue {
			errs = append(errs, fmt.Errorf("point %q: value %q", pt, p.Value))
			continue
		}
		e.Points = append(e.Points, p)
	}
	slices.SortFunc(e.Points, func(a, b DataPoint) int { return strings.Compare(a.Point, b.Point) })
	if err := errors.Join(errs...); err != nil {
		return e, fmt.Errorf("data entry of channel %s at %d: %w", e.Channel, e.TS, err)
	}
	return e, nil
}
