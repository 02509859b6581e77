// Package links indexes how models are linked to channels: the point
// mapping (keys.Mapping), the control mapping (keys.MappingReverse) and the
// unit and description overrides (keys.MappingUnit, keys.MappingDescription).
// The index is read from Redis periodically (Run) and, when it is older than
// its interval, on demand (Snapshot); each hash is read with HSCAN and
// bounded by MaxEntries. The metadata of a channel's points
// (keys.ChannelMeta) is read on demand and kept briefly (Meta).
package links

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/rueidis"

	"github.com/voltedge/voltedge/internal/keys"
)

// Bounds and defaults of the index.
const (
	// MaxEntries bounds the entries read from each mapping hash; beyond it
	// the snapshot counts the entries left out (Truncated).
	MaxEntries = 100000
	// DefaultInterval is how often the mapping hashes are read again.
	DefaultInterval = 30 * time.Second
	// MetaTTL is how long a channel's point metadata is kept.
	MetaTTL = 2 * time.Second
	// maxMetaCache bounds the channels whose metadata is kept.
	maxMetaCache = 1000
	// maxMetaPoints bounds the points read from one channel's metadata.
	maxMetaPoints = 100000
	// scanCount is the COUNT of one HSCAN.
	scanCount = 1000
	// readTimeout bounds one reading of the index.
	readTimeout = 10 * time.Second
)

// Ref names a channel point.
type Ref struct {
	Channel string `json:"channel"`
	Point   string `json:"point"`
}

// ModelRef names a model point (or control).
type ModelRef struct {
	Model string
	Name  string
}

// Snapshot is the index read at one time. It is never modified after it
// was made: share it freely.
type Snapshot struct {
	// Points maps a model to its points: point name → channel point.
	Points map[string]map[string]Ref
	// Controls maps a model to its controls: control name → channel point.
	Controls map[string]map[string]Ref
	// ChannelPoints maps a channel to its mapped points: point id → model point.
	ChannelPoints map[string]map[string]ModelRef
	// Units and Descriptions map "{model}:{point_name}" to the override.
	Units, Descriptions map[string]string
	// Truncated counts, per hash name, the entries left out beyond MaxEntries.
	Truncated map[string]int
	// ReadAt is when the snapshot was read.
	ReadAt time.Time
	// controlModels maps a channel to the models with a control on it.
	controlModels map[string]map[string]struct{}
}

// ModelChannels returns the channels model's points and controls are mapped to, sorted.
func (s *Snapshot) ModelChannels(model string) []string {
	var out []string
	for _, r := range s.Points[model] {
		out = append(out, r.Channel)
	}
	for _, r := range s.Controls[model] {
		out = append(out, r.Channel)
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// ChannelModels returns the models mapped from or controlling channel, sorted.
func (s *Snapshot) ChannelModels(channel string) []string {
	var out []string
	for _, m := range s.ChannelPoints[channel] {
		out = append(out, m.Model)
	}
	for model := range s.controlModels[channel] {
		out = append(out, model)
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// Known reports whether model has a point or control mapping.
func (s *Snapshot) Known(model string) bool {
	return len(s.Points[model]) > 0 || len(s.Controls[model]) > 0
}

// Meta is the metadata of one channel point (from keys.ChannelMeta).
type Meta struct {
	Name        string   `json:"name"`
	Type        string   `json:"type"`
	Unit        string   `json:"unit,omitempty"`
	Description string   `json:"description,omitempty"`
	Area        string   `json:"area,omitempty"`
	Writable    bool     `json:"writable"`
	Min         *float64 `json:"min,omitempty"`
	Max         *float64 `json:"max,omitempty"`
}

// UnmarshalJSON accepts min and max as numbers or decimal strings.
func (m *Meta) UnmarshalJSON(b []byte) error {
	var raw struct {
		Name        string          `json:"name"`
		Type        string          `json:"type"`
		Unit        string          `json:"unit"`
		Description string          `json:"description"`
		Area        string          `json:"area"`
		Writable    bool            `json:"writable"`
		Min         json.RawMessage `json:"min"`
		Max         json.RawMessage `json:"max"`
	}
	if err := json.Unmarshal(b, &raw); err != nil {
		return err
	}
	*m = Meta{Name: raw.Name, Type: raw.Type, Unit: raw.Unit, Description: raw.Description, Area: raw.Area, Writable: raw.Writable,
		Min: number(raw.Min), Max: number(raw.Max)}
	return nil
}

// number reads a JSON number or a string holding one; nil otherwise.
func number(raw json.RawMessage) *float64 {
	s := strings.Trim(strings.TrimSpace(string(raw)), `"`)
	if s == "" || s == "null" {
		return nil
	}
	v, err := strconv.ParseFloat(s, 64)
	if err != nil {
		return nil
	}
	return &v
}

// Index is the link index. It is safe for concurrent use.
type Index struct {
	rc       rueidis.Client
	log      *slog.Logger
	interval time.Duration
	max      int // entries read per hash: MaxEntries

	mu   sync.Mutex // serialises readings
	snap sync.Mutex // guards cur
	cur  *Snapshot

	metaMu sync.Mutex
	meta   map[string]metaEntry
}

type metaEntry struct {
	points map[string]Meta
	at     time.Time
}

// New makes an index over rc that is read again every interval (0 means
// DefaultInterval); log may be nil.
func New(rc rueidis.Client, interval time.Duration, log *slog.Logger) *Index {
	if interval <= 0 {
		interval = DefaultInterval
	}
	if log == nil {
		log = slog.Default()
	}
	return &Index{rc: rc, log: log, interval: interval, max: MaxEntries, meta: make(map[string]metaEntry)}
}

// Run reads the index every interval, and soon after comsrv answers a
// reload (keys.ReloadResult), until ctx ends.
func (x *Index) Run(ctx context.Context) {
	reload := make(chan struct{}, 1)
	go func() {
		for ctx.Err() == nil {
			err := x.rc.Receive(ctx, x.rc.B().Subscribe().Channel(keys.ReloadResult).Build(), func(rueidis.PubSubMessage) {
				select {
				case reload <- struct{}{}:
				default:
				}
			})
			if ctx.Err() != nil {
				return
			}
			x.log.Debug("links: reload subscription", "err", err)
			select {
			case <-ctx.Done():
				return
			case <-time.After(time.Second):
			}
		}
	}()
	t := time.NewTicker(x.interval)
	defer t.Stop()
	for {
		if _, err := x.Refresh(ctx); err != nil && ctx.Err() == nil {
			x.log.Warn("links: reading the mappings", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-reload:
			select { // comsrv writes the mappings' companions around its answer
			case <-ctx.Done():
				return
			case <-time.After(500 * time.Millisecond):
			}
		}
	}
}

// Snapshot returns the current index, reading it first when it was never
// read or is older than the interval. Concurrent callers share one reading.
func (x *Index) Snapshot(ctx context.Context) (*Snapshot, error) {
	if s := x.fresh(); s != nil {
		return s, nil
	}
	x.mu.Lock()
	defer x.mu.Unlock()
	if s := x.fresh(); s != nil {
		return s, nil // read by another caller meanwhile
	}
	return x.readLocked(ctx)
}

// fresh returns the current snapshot if it is younger than the interval.
func (x *Index) fresh() *Snapshot {
	x.snap.Lock()
	defer x.snap.Unlock()
	if x.cur != nil && time.Since(x.cur.ReadAt) < x.interval {
		return x.cur
	}
	return nil
}

// Refresh reads the index now. On an error the previous snapshot is kept
// (and returned beside the error, nil if there was none).
func (x *Index) Refresh(ctx context.Context) (*Snapshot, error) {
	x.mu.Lock()
	defer x.mu.Unlock()
	return x.readLocked(ctx)
}

// readLocked is Refresh with x.mu held.
func (x *Index) readLocked(ctx context.Context) (*Snapshot, error) {
	rctx, cancel := context.WithTimeout(ctx, readTimeout)
	defer cancel()
	s, err := x.read(rctx)
	x.snap.Lock()
	defer x.snap.Unlock()
	if err != nil {
		return x.cur, err
	}
	for hash, n := range s.Truncated {
		x.log.Warn("links: mapping hash over the bound; entries left out", "hash", hash, "kept", x.max, "left_out", n)
	}
	x.cur = s
	return s, nil
}

// read reads the four mapping hashes.
func (x *Index) read(ctx context.Context) (*Snapshot, error) {
	s := &Snapshot{
		Points: map[string]map[string]Ref{}, Controls: map[string]map[string]Ref{},
		ChannelPoints: map[string]map[string]ModelRef{}, Truncated: map[string]int{}, ReadAt: time.Now(),
		controlModels: map[string]map[string]struct{}{},
	}
	var err error
	err = x.scan(ctx, keys.Mapping, s, func(k, v string) {
		ch, pt, ok1 := keys.SplitRef(k)
		model, name, ok2 := keys.SplitRef(v)
		if !ok1 || !ok2 {
			return
		}
		put(s.Points, model, name, Ref{Channel: ch, Point: pt})
		put(s.ChannelPoints, ch, pt, ModelRef{Model: model, Name: name})
	})
	if err != nil {
		return nil, err
	}
	err = x.scan(ctx, keys.MappingReverse, s, func(k, v string) {
		model, control, ok1 := keys.SplitRef(k)
		ch, pt, ok2 := keys.SplitRef(v)
		if ok1 && ok2 {
			put(s.Controls, model, control, Ref{Channel: ch, Point: pt})
			put(s.controlModels, ch, model, struct{}{})
		}
	})
	if err != nil {
		return nil, err
	}
	s.Units = map[string]string{}
	if err = x.scan(ctx, keys.MappingUnit, s, func(k, v string) { s.Units[k] = v }); err != nil {
		return nil, err
	}
	s.Descriptions = map[string]string{}
	if err = x.scan(ctx, keys.MappingDescription, s, func(k, v string) { s.Descriptions[k] = v }); err != nil {
		return nil, err
	}
	return s, nil
}

// put sets m[outer][inner] = v.
func put[V any](m map[string]map[string]V, outer, inner string, v V) {
	in := m[outer]
	if in == nil {
		in = map[string]V{}
		m[outer] = in
	}
	in[inner] = v
}

// scan reads hash with HSCAN, at most MaxEntries entries; the entries
// beyond are counted in s.Truncated.
func (x *Index) scan(ctx context.Context, hash string, s *Snapshot, each func(k, v string)) error {
	var cursor uint64
	n := 0
	for {
		e, err := x.rc.Do(ctx, x.rc.B().Hscan().Key(hash).Cursor(cursor).Count(scanCount).Build()).AsScanEntry()
		if err != nil {
			return fmt.Errorf("links: hscan %s: %w", hash, err)
		}
		for i := 0; i+1 < len(e.Elements); i += 2 {
			if n >= x.max {
				s.Truncated[hash]++
				continue
			}
			n++
			each(e.Elements[i], e.Elements[i+1])
		}
		cursor = e.Cursor
		if cursor == 0 {
			return nil
		}
	}
}

// Meta returns the metadata of channel's points (point id → Meta), read
// with one HGETALL of keys.ChannelMeta and kept for MetaTTL. Entries that
// are not JSON objects are skipped.
func (x *Index) Meta(ctx context.Context, channel string) (map[string]Meta, error) {
	x.metaMu.Lock()
	if e, ok := x.meta[channel]; ok && time.Since(e.at) < MetaTTL {
		x.metaMu.Unlock()
		return e.points, nil
	}
	x.metaMu.Unlock()
	raw, err := x.rc.Do(ctx, x.rc.B().Hgetall().Key(keys.ChannelMeta(channel)).Build()).AsStrMap()
	if err != nil {
		return nil, fmt.Errorf("links: point metadata of %s: %w", channel, err)
	}
	points := make(map[string]Meta, min(len(raw), maxMetaPoints))
	for id, j := range raw {
		if len(points) >= maxMetaPoints {
			break
		}
		var m Meta
		if json.Unmarshal([]byte(j), &m) == nil {
			points[id] = m
		}
	}
	x.metaMu.Lock()
	if len(x.meta) >= maxMetaCache {
		clear(x.meta)
	}
	x.meta[strings.Clone(channel)] = metaEntry{points: points, at: time.Now()}
	x.metaMu.Unlock()
	return points, nil
}

// Unit returns the unit of model point name linked to channel point meta m:
// the override of keys.MappingUnit, else the channel point's.
func (s *Snapshot) Unit(model, name string, m Meta) string {
	if u, ok := s.Units[keys.PointRef(model, name)]; ok {
		return u
	}
	return m.Unit
}

// Description is Unit for the description (keys.MappingDescription).
func (s *Snapshot) Description(model, name string, m Meta) string {
	if d, ok := s.Descriptions[keys.PointRef(model, name)]; ok {
		return d
	}
	return m.Description
}
