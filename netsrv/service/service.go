// Package service runs netsrv: one consumer-group reader per uploaded
// stream, the uploader with its spool, the store (opened again and again
// until MySQL answers), day partitions, the trimming of the data stream,
// the netsrv:events warnings and the /health and /metrics endpoints.
package service

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/redis/rueidis"

	"github.com/voltedge/voltedge/internal/contract"
	"github.com/voltedge/voltedge/internal/history"
	"github.com/voltedge/voltedge/internal/keys"
	"github.com/voltedge/voltedge/internal/metrics"
	"github.com/voltedge/voltedge/netsrv/config"
	"github.com/voltedge/voltedge/netsrv/sample"
	"github.com/voltedge/voltedge/netsrv/spool"
	"github.com/voltedge/voltedge/netsrv/trim"
	"github.com/voltedge/voltedge/netsrv/upload"
)

// Group is netsrv's consumer group on every stream it reads.
const Group = "netsrv"

// Bounds of what netsrv keeps.
const (
	// EventsMaxLen is the approximate cap of netsrv:events.
	EventsMaxLen = 10000
	// claimIdle is how long another consumer's unacknowledged entries wait
	// before netsrv takes them over.
	claimIdle = time.Minute
	// partitionEvery is how often day partitions are created and dropped.
	partitionEvery = time.Hour
)

// Deps are what Run needs besides the configuration.
type Deps struct {
	Redis   rueidis.Client
	Log     *slog.Logger
	Metrics *metrics.Registry
	// Ready, if set, is called with the HTTP listener's address.
	Ready func(net.Addr)
}

// Service is a running netsrv.
type Service struct {
	cfg   *config.Config
	d     Deps
	log   *slog.Logger
	sp    *spool.Spool
	up    *upload.Uploader
	store *history.Store
	mu    sync.Mutex // guards store
	convs map[upload.Kind]*upload.Converter
	cmu   sync.Mutex // guards the converters' counters for metrics
	trims atomicCounter
}

type atomicCounter struct {
	mu sync.Mutex
	n  int64
}

func (a *atomicCounter) add(n int64) { a.mu.Lock(); a.n += n; a.mu.Unlock() }
func (a *atomicCounter) get() int64  { a.mu.Lock(); defer a.mu.Unlock(); return a.n }

// kinds maps the configuration's stream names to kinds.
var kinds = map[string]upload.Kind{
	config.StreamData: upload.Data, config.StreamEvents: upload.Events,
	config.StreamAlarms: upload.Alarms, config.StreamControls: upload.Controls,
}

// Run serves until ctx ends.
func Run(ctx context.Context, cfg *config.Config, d Deps) error {
	s := &Service{cfg: cfg, d: d, log: d.Log, convs: map[upload.Kind]*upload.Converter{}}
	sp, rec, err := spool.Open(cfg.Spool.Dir, spool.Options{
		MaxBytes: cfg.Spool.MaxBytes, SegmentSize: cfg.Spool.SegmentBytes, MaxRecord: maxRecordOf(cfg), SyncEvery: cfg.Spool.SyncEvery.Duration, Logger: d.Log,
		OnDrop: func(di spool.DropInfo) {
			s.event(upload.EventSpoolDropped, fmt.Sprintf("spool at its cap (%d bytes): dropped %d records (%d bytes) from %s, the oldest from %s",
				cfg.Spool.MaxBytes, di.Records, di.Bytes, di.Segment, time.UnixMilli(di.OldestTS).UTC().Format(time.RFC3339)))
		},
	})
	if err != nil {
		return fmt.Errorf("netsrv: %w", err)
	}
	defer sp.Close()
	s.sp = sp
	if rec.LostBytes > 0 {
		s.event("spool_damaged", fmt.Sprintf("spool damaged (power cut?): %d bytes of %d segment(s) not readable, %d records kept",
			rec.LostBytes, len(rec.Damaged), rec.Records))
	}
	maxRecord := upload.DefaultMaxRecordBytes
	if seg := cfg.Spool.SegmentBytes; seg > 0 {
		maxRecord = int(seg / 2)
	}
	s.up, err = upload.New(upload.Options{Spool: sp, RetryEvery: cfg.Upload.RetryEvery.Duration, MaxRecordBytes: maxRecord, Event: s.event, Log: d.Log})
	if err != nil {
		return err
	}
	s.register(d.Metrics)

	var wg sync.WaitGroup
	run := func(f func()) { wg.Add(1); go func() { defer wg.Done(); f() }() }
	run(func() { s.up.Run(ctx) })
	if cfg.MySQL.DSN != "" {
		run(func() { s.openStore(ctx) })
	} else {
		d.Log.Warn("no [mysql] dsn: everything is kept in the spool, up to its cap")
	}
	for _, name := range cfg.Upload.Streams {
		k := kinds[name]
		var smp *sample.Sampler
		if k == upload.Data {
			if smp, err = sample.New(cfg.Sample, 0); err != nil {
				return err
			}
		}
		conv := upload.NewConverter(k, smp)
		s.convs[k] = conv
		g, err := contract.NewGroupReader(d.Redis, contract.GroupOptions{Stream: k.Stream(), Group: Group,
			Consumer: cfg.Upload.Consumer, Start: "0", Count: cfg.Upload.BatchEntries, ClaimIdle: claimIdle}, d.Log)
		if err != nil {
			return err
		}
		run(func() { g.Run(ctx, s.handler(g, conv)) })
	}
	run(func() { s.trimLoop(ctx) })
	run(func() { s.statusLoop(ctx) })
	herr := make(chan error, 1)
	run(func() { herr <- metrics.ServeHandler(ctx, cfg.Listen, s.mux(), d.Ready) })
	d.Log.Info("netsrv uploading", "site", cfg.Site, "mysql", redacted(cfg.MySQL), "spool", cfg.Spool.Dir,
		"spool_pending", rec.Pending, "streams", cfg.Upload.Streams)
	var ret error
	select {
	case <-ctx.Done():
	case ret = <-herr:
	}
	wg.Wait()
	s.mu.Lock()
	if s.store != nil {
		s.store.Close()
	}
	s.mu.Unlock()
	return ret
}

// maxRecordOf is the spool's largest record: the default, or half a segment
// when the configuration sets the segment size.
func maxRecordOf(cfg *config.Config) int {
	if seg := cfg.Spool.SegmentBytes; seg > 0 {
		return int(seg / 2)
	}
	return 0
}

func redacted(m config.MySQL) string {
	if m.DSN == "" {
		return "(none)"
	}
	return m.Redacted()
}

// handler converts entries, makes them durable and acknowledges them.
func (s *Service) handler(g *contract.GroupReader, conv *upload.Converter) contract.Handler {
	return func(ctx context.Context, entries []contract.Entry) error {
		var b history.Batch
		s.cmu.Lock()
		conv.Add(&b, entries)
		s.cmu.Unlock()
		s.log.Debug("entries read", "stream", conv.Kind().Stream(), "entries", len(entries), "rows", b.Len())
		if err := s.up.Submit(ctx, &b); err != nil {
			return err // not acknowledged: read again
		}
		ids := make([]string, len(entries))
		for i, e := range entries {
			ids[i] = e.ID
		}
		return g.Ack(ctx, ids...)
	}
}

// openStore opens the store, retrying until MySQL answers, then keeps the
// day partitions.
func (s *Service) openStore(ctx context.Context) {
	m := s.cfg.MySQL
	var st *history.Store
	for {
		var err error
		st, err = history.Open(ctx, m.DSN, history.Options{Site: s.cfg.Site, MaxOpenConns: m.MaxOpenConns,
			RetentionDays: m.RetentionDays, PartitionsAhead: m.PartitionsAhead, Logger: s.log})
		if err == nil {
			break
		}
		s.log.Warn("MySQL not ready; spooling and retrying", "mysql", m.Redacted(), "err", err, "retry_in", s.cfg.Upload.RetryEvery.Duration)
		select {
		case <-ctx.Done():
			return
		case <-time.After(s.cfg.Upload.RetryEvery.Duration):
		}
	}
	s.mu.Lock()
	s.store = st
	s.mu.Unlock()
	s.up.SetStore(st)
	s.log.Info("MySQL ready", "mysql", m.Redacted(), "site", s.cfg.Site)
	t := time.NewTicker(partitionEvery)
	defer t.Stop()
	for {
		now := time.Now()
		if err := st.EnsurePartitions(ctx, now); err != nil && ctx.Err() == nil {
			s.log.Warn("creating day partitions failed", "err", err)
		}
		if err := st.DropExpired(ctx, now); err != nil && ctx.Err() == nil {
			s.log.Warn("dropping expired partitions failed", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// trimLoop trims the data stream to what every group acknowledged.
func (s *Service) trimLoop(ctx context.Context) {
	t := time.NewTicker(s.cfg.Upload.TrimEvery.Duration)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		res, err := trim.Acked(ctx, s.d.Redis, keys.DataSamples)
		if err != nil {
			if ctx.Err() == nil {
				s.log.Warn("trimming the data stream failed", "err", err)
			}
			continue
		}
		s.trims.add(res.Trimmed)
	}
}

// statusLoop writes netsrv:status every few seconds, for edgectl status
// and redis-cli; it expires if netsrv stops writing it.
func (s *Service) statusLoop(ctx context.Context) {
	every := time.Duration(contract.NetsrvStatusIntervalMS) * time.Millisecond
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		wctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		h := s.health(wctx)
		f := []string{contract.NetsrvSite, h.Site, contract.NetsrvMySQL, h.MySQL,
			contract.NetsrvSpoolBytes, strconv.FormatInt(h.Spool.Bytes, 10),
			contract.NetsrvSpoolPending, strconv.FormatInt(h.Spool.Pending, 10),
			contract.NetsrvSpoolOldestAgeS, strconv.FormatInt(h.Spool.OldestAgeS, 10),
			contract.NetsrvSpoolDropped, strconv.FormatInt(h.Spool.DroppedRecords, 10),
			contract.NetsrvRowsDirect, strconv.FormatUint(h.Upload.Direct, 10),
			contract.NetsrvRowsSpooled, strconv.FormatUint(h.Upload.Spooled, 10),
			contract.NetsrvRowsDrained, strconv.FormatUint(h.Upload.Drained, 10),
			contract.NetsrvUpdatedAt, strconv.FormatInt(time.Now().UnixMilli(), 10)}
		for name, b := range h.Streams {
			f = append(f, contract.NetsrvBacklogPrefix+name, strconv.FormatInt(b.Pending, 10)+" "+strconv.FormatInt(b.Lag, 10))
		}
		r := s.d.Redis
		cmd := r.B().Hset().Key(keys.NetsrvStatus).FieldValue()
		for i := 0; i+1 < len(f); i += 2 {
			cmd = cmd.FieldValue(f[i], f[i+1])
		}
		for _, res := range r.DoMulti(wctx, cmd.Build(), r.B().Pexpire().Key(keys.NetsrvStatus).Milliseconds(int64(4*every/time.Millisecond)).Build()) {
			if err := res.Error(); err != nil && ctx.Err() == nil {
				s.log.Debug("writing netsrv:status failed", "err", err)
			}
		}
		cancel()
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// event reports an upload warning in netsrv:events (and the log).
func (s *Service) event(event, detail string) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	r := s.d.Redis
	err := r.Do(ctx, r.B().Xadd().Key(keys.NetsrvEvents).Maxlen().Almost().Threshold(strconv.Itoa(EventsMaxLen)).Id("*").
		FieldValue().FieldValue("event", event).FieldValue("site", s.cfg.Site).FieldValue("detail", detail).
		FieldValue("ts", strconv.FormatInt(time.Now().UnixMilli(), 10)).Build()).Error()
	if err != nil {
		s.log.Warn("could not record an upload event", "event", event, "err", err)
	}
}

// Backlog is one stream's backlog in Redis for netsrv's group.
type Backlog struct {
	Pending int64 `json:"pending"` // read, not yet acknowledged
	Lag     int64 `json:"lag"`     // not yet read (-1: unknown)
}

// backlog reads the group's pending count and lag of each uploaded stream.
func (s *Service) backlog(ctx context.Context) map[string]Backlog {
	out := map[string]Backlog{}
	r := s.d.Redis
	for _, name := range s.cfg.Upload.Streams {
		k := kinds[name]
		b := Backlog{Lag: -1}
		groups, err := r.Do(ctx, r.B().XinfoGroups().Key(k.Stream()).Build()).ToArray()
		if err == nil {
			for _, g := range groups {
				m, err := g.AsMap()
				if err != nil {
					continue
				}
				nm, p, l := m["name"], m["pending"], m["lag"]
				if n, _ := nm.ToString(); n != Group {
					continue
				}
				b.Pending, _ = p.AsInt64()
				if v, err := l.AsInt64(); err == nil {
					b.Lag = v
				}
			}
		}
		out[name] = b
	}
	return out
}

// Health is netsrv's /health answer.
type Health struct {
	Status  string             `json:"status"` // ok, or degraded while MySQL is down or not configured
	Site    string             `json:"site"`
	MySQL   string             `json:"mysql"` // up, down or not configured
	Spool   SpoolHealth        `json:"spool"`
	Streams map[string]Backlog `json:"streams"`
	Upload  upload.Stats       `json:"upload"`
}

// SpoolHealth is the spool part of Health.
type SpoolHealth struct {
	Segments       int   `json:"segments"`
	Bytes          int64 `json:"bytes"`
	Pending        int64 `json:"pending_records"`
	OldestAgeS     int64 `json:"oldest_age_s"`
	DroppedRecords int64 `json:"dropped_records"`
}

func (s *Service) health(ctx context.Context) Health {
	st := s.sp.Stats()
	us := s.up.Stats()
	h := Health{Status: "ok", Site: s.cfg.Site, MySQL: "up", Upload: us, Streams: s.backlog(ctx),
		Spool: SpoolHealth{Segments: st.Segments, Bytes: st.Bytes, Pending: st.Pending,
			OldestAgeS: int64(st.OldestAge.Seconds()), DroppedRecords: st.DroppedRecords}}
	switch {
	case s.cfg.MySQL.DSN == "":
		h.MySQL, h.Status = "not configured", "degraded"
	case us.Down:
		h.MySQL, h.Status = "down", "degraded"
	}
	return h
}

func (s *Service) mux() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/metrics", s.d.Metrics.Handler())
	mux.Handle("/health", metrics.HealthHandler(func(ctx context.Context) (any, bool) {
		h := s.health(ctx)
		return h, h.Status == "ok"
	}))
	return mux
}

// register adds netsrv's metrics.
func (s *Service) register(reg *metrics.Registry) {
	up := func(f func(upload.Stats) float64) func() float64 { return func() float64 { return f(s.up.Stats()) } }
	sp := func(f func(spool.Stats) float64) func() float64 { return func() float64 { return f(s.sp.Stats()) } }
	reg.CounterFunc("netsrv_rows_direct_total", "Rows written to MySQL as they were read.", up(func(x upload.Stats) float64 { return float64(x.Direct) }))
	reg.CounterFunc("netsrv_rows_spooled_total", "Rows written to the disk spool while MySQL was unreachable.", up(func(x upload.Stats) float64 { return float64(x.Spooled) }))
	reg.CounterFunc("netsrv_rows_drained_total", "Spooled rows uploaded to MySQL.", up(func(x upload.Stats) float64 { return float64(x.Drained) }))
	reg.CounterFunc("netsrv_rows_rejected_total", "Rows MySQL refused for their content, dropped.", up(func(x upload.Stats) float64 { return float64(x.Rejected) }))
	reg.CounterFunc("netsrv_write_failures_total", "Failed writes to MySQL.", up(func(x upload.Stats) float64 { return float64(x.Failures) }))
	reg.GaugeFunc("netsrv_mysql_up", "1 while MySQL takes writes, else 0.", up(func(x upload.Stats) float64 {
		if x.Down {
			return 0
		}
		return 1
	}))
	reg.GaugeFunc("netsrv_write_seconds", "Duration of the last write to MySQL.", up(func(x upload.Stats) float64 { return x.LastWrite.Seconds() }))
	reg.GaugeFunc("netsrv_spool_bytes", "Size of the spool's segment files.", sp(func(x spool.Stats) float64 { return float64(x.Bytes) }))
	reg.GaugeFunc("netsrv_spool_pending_records", "Spool records not yet uploaded.", sp(func(x spool.Stats) float64 { return float64(x.Pending) }))
	reg.GaugeFunc("netsrv_spool_oldest_age_seconds", "Age of the oldest spool record not yet uploaded.", sp(func(x spool.Stats) float64 { return x.OldestAge.Seconds() }))
	reg.CounterFunc("netsrv_spool_dropped_records_total", "Spool records dropped at the spool's cap (lost).", sp(func(x spool.Stats) float64 { return float64(x.DroppedRecords) }))
	reg.CounterFunc("netsrv_spool_dropped_bytes_total", "Spool bytes dropped at the spool's cap.", sp(func(x spool.Stats) float64 { return float64(x.DroppedBytes) }))
	conv := func(f func(*upload.Converter) uint64) func() float64 {
		return func() float64 {
			s.cmu.Lock()
			defer s.cmu.Unlock()
			var n uint64
			for _, c := range s.convs {
				n += f(c)
			}
			return float64(n)
		}
	}
	reg.CounterFunc("netsrv_entries_malformed_total", "Stream entries (or data points) that could not be read, skipped.", conv(func(c *upload.Converter) uint64 { return c.Malformed }))
	reg.CounterFunc("netsrv_samples_sampled_out_total", "Data points left out by the sampling rules.", conv(func(c *upload.Converter) uint64 { return c.Sampled }))
	reg.CounterFunc("netsrv_data_trimmed_total", "Data stream entries trimmed after every group acknowledged them.", func() float64 { return float64(s.trims.get()) })
}
