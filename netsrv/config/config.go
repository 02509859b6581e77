// Package config loads netsrv.toml: the common service settings, the site
// id, the MySQL store, the disk spool, the upload batches and the sampling
// rules.
//
// Loading is strict like every VoltEdge configuration: unknown keys, wrong
// types and invalid values are refused with file:line:column and key.
package config

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/go-sql-driver/mysql"

	"github.com/voltedge/voltedge/internal/conf"
	"github.com/voltedge/voltedge/netsrv/sample"
)

// Defaults of netsrv.toml.
const (
	DefaultListen          = ":8004"
	DefaultMaxOpenConns    = 4
	DefaultRetentionDays   = 30
	DefaultPartitionsAhead = 3
	DefaultSpoolDir        = "/var/lib/voltedge/netsrv/spool"
	DefaultSpoolMaxBytes   = 1 << 30
	DefaultSpoolSyncEvery  = 500 * time.Millisecond
	DefaultBatchEntries    = 500
	DefaultRetryEvery      = 5 * time.Second
	DefaultTrimEvery       = 10 * time.Second
)

// Streams netsrv can upload, the names of Upload.Streams.
const (
	StreamData     = "data"
	StreamEvents   = "events"
	StreamAlarms   = "alarms"
	StreamControls = "controls"
)

// AllStreams lists the stream names in upload order.
var AllStreams = []string{StreamData, StreamEvents, StreamAlarms, StreamControls}

// Config is netsrv.toml.
type Config struct {
	conf.ServiceConfig

	// Site names this box in every row it uploads ([A-Za-z0-9_.-], at most
	// 64 bytes); many boxes can upload to one database. Default: the host
	// name.
	Site string `toml:"site"`
	// MySQL is the store.
	MySQL MySQL `toml:"mysql"`
	// Spool is the disk buffer used while MySQL is unreachable.
	Spool Spool `toml:"spool"`
	// Upload tunes the reading of the streams.
	Upload Upload `toml:"upload"`
	// Sample are the sampling rules for model points; the first that
	// matches a point applies, and points no rule selects keep every sample.
	Sample []sample.Rule `toml:"sample"`

	// File is the path the configuration was read from.
	File string `toml:"-"`
}

// MySQL is the [mysql] table.
type MySQL struct {
	// DSN is the go-sql-driver data source, e.g.
	// "voltedge:secret@tcp(127.0.0.1:3306)/voltedge". Empty: netsrv keeps
	// everything in its spool (up to its cap) until one is configured.
	DSN string `toml:"dsn"`
	// MaxOpenConns bounds the connection pool (default 4).
	MaxOpenConns int `toml:"max_open_conns"`
	// RetentionDays is how long data and connection history are kept: day
	// partitions older than that are dropped (default 30).
	RetentionDays int `toml:"retention_days"`
	// PartitionsAhead is how many day partitions are created in advance (default 3).
	PartitionsAhead int `toml:"partitions_ahead"`
}

// Spool is the [spool] table.
type Spool struct {
	// Dir holds the segment files (default /var/lib/voltedge/netsrv/spool).
	Dir string `toml:"dir"`
	// MaxSize caps the spool, e.g. "1GiB" (the default), "500MB": at the
	// cap the oldest segment is dropped and reported.
	MaxSize string `toml:"max_size"`
	// SyncEvery is the longest time between two fsyncs (default 500ms).
	SyncEvery conf.Duration `toml:"sync_every"`

	// MaxBytes is MaxSize in bytes.
	MaxBytes int64 `toml:"-"`
	// SegmentBytes is the size of one segment file; 0 is the spool's
	// default (16 MiB). Not in the file: tests set it to reach the cap soon.
	SegmentBytes int64 `toml:"-"`
}

// Upload is the [upload] table.
type Upload struct {
	// Streams lists what is uploaded: data, events, alarms, controls (default all).
	Streams []string `toml:"streams"`
	// BatchEntries is how many stream entries one read takes (default 500;
	// a data entry holds the points of one response).
	BatchEntries int `toml:"batch_entries"`
	// Consumer names netsrv in the consumer groups (default the site id).
	Consumer string `toml:"consumer"`
	// RetryEvery is how often an unreachable MySQL is tried again (default 5s).
	RetryEvery conf.Duration `toml:"retry_every"`
	// TrimEvery is how often the data stream is trimmed to what every
	// consumer group has acknowledged (default 10s).
	TrimEvery conf.Duration `toml:"trim_every"`
}

// Load reads and validates netsrv.toml at path.
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	return Parse(path, data)
}

// Parse is Load for a document in memory; file is only used in errors.
func Parse(file string, data []byte) (*Config, error) {
	cfg := &Config{File: file}
	pos, err := conf.DecodeData(file, data, cfg)
	if err != nil {
		return nil, err
	}
	if err := cfg.check(pos); err != nil {
		return nil, err
	}
	return cfg, nil
}

func (c *Config) check(pos *conf.Positions) error {
	var errs conf.Errors
	errs.Add(c.ServiceConfig.Check(pos))
	if !pos.Defined("listen") {
		c.Listen = DefaultListen
	}
	if !pos.Defined("site") {
		c.Site = conf.HostSite()
	}
	if !conf.ValidSite(c.Site) {
		errs.Addf(pos, "site", "%q is not a site id (1..64 of A-Z a-z 0-9 _ . -)", c.Site)
	}

	m := &c.MySQL
	if m.DSN != "" {
		if cfg, err := mysql.ParseDSN(m.DSN); err != nil {
			errs.Addf(pos, "mysql.dsn", "not a DSN like \"user:password@tcp(127.0.0.1:3306)/voltedge\": %v", redactErr(err, m.DSN))
		} else if cfg.DBName == "" {
			errs.Addf(pos, "mysql.dsn", "names no database (…/voltedge)")
		}
	}
	conf.IntIn(pos, &errs, "mysql.max_open_conns", &m.MaxOpenConns, DefaultMaxOpenConns, 1, 64)
	conf.IntIn(pos, &errs, "mysql.retention_days", &m.RetentionDays, DefaultRetentionDays, 1, 3650)
	conf.IntIn(pos, &errs, "mysql.partitions_ahead", &m.PartitionsAhead, DefaultPartitionsAhead, 1, 60)

	s := &c.Spool
	if !pos.Defined("spool.dir") {
		s.Dir = DefaultSpoolDir
	}
	if s.Dir == "" {
		errs.Addf(pos, "spool.dir", "must not be empty")
	}
	s.MaxBytes = DefaultSpoolMaxBytes
	if pos.Defined("spool.max_size") {
		n, err := ParseSize(s.MaxSize)
		switch {
		case err != nil:
			errs.Addf(pos, "spool.max_size", "%v", err)
		case n < 64<<20:
			errs.Addf(pos, "spool.max_size", "%s is below the least spool size, 64MiB", s.MaxSize)
		default:
			s.MaxBytes = n
		}
	}
	if !pos.Defined("spool.sync_every") {
		s.SyncEvery.Duration = DefaultSpoolSyncEvery
	}
	if d := s.SyncEvery.Duration; d < 10*time.Millisecond || d > 500*time.Millisecond {
		errs.Addf(pos, "spool.sync_every", "%s is out of range (10ms..500ms)", d)
	}

	u := &c.Upload
	if !pos.Defined("upload.streams") {
		u.Streams = append([]string(nil), AllStreams...)
	}
	seen := map[string]bool{}
	for i, name := range u.Streams {
		known := false
		for _, s := range AllStreams {
			known = known || s == name
		}
		if !known || seen[name] {
			errs.Addf(pos, fmt.Sprintf("upload.streams[%d]", i), "%q is unknown or repeated (want some of %s)", name, strings.Join(AllStreams, ", "))
		}
		seen[name] = true
	}
	conf.IntIn(pos, &errs, "upload.batch_entries", &u.BatchEntries, DefaultBatchEntries, 1, 10000)
	if !pos.Defined("upload.consumer") {
		u.Consumer = c.Site
	}
	if !conf.ValidSite(u.Consumer) {
		errs.Addf(pos, "upload.consumer", "%q is not a consumer name (1..64 of A-Z a-z 0-9 _ . -)", u.Consumer)
	}
	conf.DurationIn(pos, &errs, "upload.retry_every", &u.RetryEvery, DefaultRetryEvery, 100*time.Millisecond, time.Hour)
	conf.DurationIn(pos, &errs, "upload.trim_every", &u.TrimEvery, DefaultTrimEvery, time.Second, time.Hour)

	if _, err := sample.New(c.Sample, 0); err != nil {
		errs.Addf(pos, "sample", "%v", err)
	}
	return errs.Err()
}

// ParseSize reads a size like "1GiB", "500MB", "64MiB" or a byte count.
func ParseSize(s string) (int64, error) {
	units := []struct {
		suffix string
		mult   int64
	}{{"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}, {"GB", 1e9}, {"MB", 1e6}, {"KB", 1e3}, {"B", 1}}
	t := strings.TrimSpace(s)
	mult := int64(1)
	for _, u := range units {
		if strings.HasSuffix(t, u.suffix) {
			t, mult = strings.TrimSpace(strings.TrimSuffix(t, u.suffix)), u.mult
			break
		}
	}
	n, err := strconv.ParseInt(t, 10, 64)
	if err != nil || n <= 0 || n > (1<<50)/mult {
		return 0, fmt.Errorf("%q is not a size like \"1GiB\" or \"500MB\"", s)
	}
	return n * mult, nil
}

// redactErr keeps a DSN's password out of an error message.
func redactErr(err error, dsn string) string {
	msg := err.Error()
	if at := strings.LastIndex(dsn, "@"); at > 0 {
		if colon := strings.Index(dsn[:at], ":"); colon >= 0 && colon+1 < at {
			msg = strings.ReplaceAll(msg, dsn[colon+1:at], "***")
		}
	}
	return msg
}

// Redacted returns the DSN with its password replaced by "***", for logs.
func (m MySQL) Redacted() string {
	cfg, err := mysql.ParseDSN(m.DSN)
	if err != nil {
		return "(invalid DSN)"
	}
	if cfg.Passwd != "" {
		cfg.Passwd = "***"
	}
	return cfg.FormatDSN()
}
