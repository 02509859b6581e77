package history

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

// Row caps of the read methods.
const (
	DefaultHistoryLimit = 10_000
	MaxHistoryLimit     = 100_000
	DefaultEventLimit   = 1_000
	MaxEventLimit       = 10_000
	// MaxExportRows caps ExportRows (and is its default).
	MaxExportRows = 5_000_000
)

// Query selects the samples of one model point (History) or of a model's
// points (ExportRows) with From <= ts < To (Unix ms).
type Query struct {
	Model string
	Point string // point name within the model
	From  int64
	To    int64
	// Step > 0 downsamples into buckets of Step starting at multiples of
	// Step since the Unix epoch (at least 1 ms).
	Step time.Duration
	// Limit caps the rows returned (0 means the method's default).
	Limit int
}

// HistoryRow is one raw sample (TS, Value, Count 1 and Min = Avg = Max = the
// numeric value) or one bucket (TS = bucket start, Value "", the aggregates
// of the numeric samples in it).
type HistoryRow struct {
	TS    int64
	Value string
	Min   float64
	Avg   float64
	Max   float64
	Count int64
}

// Row is a HistoryRow with the point it belongs to. Channel and Point are
// empty for downsampled rows.
type Row struct {
	Model     string
	PointName string
	Channel   string
	Point     string
	HistoryRow
}

func limitOf(n, def, max int) int {
	if n <= 0 {
		return def
	}
	return min(n, max)
}

func (q *Query) check(needPoint bool) error {
	if q.Model == "" {
		return errors.New("history: query: model is empty")
	}
	if needPoint && q.Point == "" {
		return errors.New("history: query: point is empty")
	}
	if q.To <= q.From {
		return fmt.Errorf("history: query: empty time range [%d, %d)", q.From, q.To)
	}
	if q.Step < 0 || (q.Step > 0 && q.Step < time.Millisecond) {
		return fmt.Errorf("history: query: step %v is below 1 ms", q.Step)
	}
	return nil
}

// History returns the samples of q.Model/q.Point in [From, To) in time order,
// raw or, with Step, downsampled; at most Limit rows (default 10,000, at most
// 100,000).
func (s *Store) History(ctx context.Context, q Query) ([]HistoryRow, error) {
	if err := q.check(true); err != nil {
		return nil, err
	}
	limit := limitOf(q.Limit, DefaultHistoryLimit, MaxHistoryLimit)
	var out []HistoryRow
	err := s.query(ctx, q, limit, func(r *Row) error {
		out = append(out, r.HistoryRow)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("history: read history: %w", err)
	}
	return out, nil
}

// ExportRows calls fn for each sample of q.Model (only q.Point when set) in
// [From, To), ordered by point name and time, raw or downsampled with Step,
// at most Limit rows (default and cap MaxExportRows). An error from fn stops
// the export and is returned as is.
//
// Rows are streamed: the driver reads the result set from the socket as
// rows.Next is called and the server waits on TCP back-pressure, so memory
// stays at one row whatever the range (the MySQL protocol has no server-side
// cursor for text queries; this is its equivalent). The export holds one of
// the few pooled connections until it ends, and the server gives up on a
// client that reads nothing for net_write_timeout (60 s by default), so fn
// should not block for long (write to a buffered or local sink).
func (s *Store) ExportRows(ctx context.Context, q Query, fn func(Row) error) error {
	if err := q.check(false); err != nil {
		return err
	}
	limit := limitOf(q.Limit, MaxExportRows, MaxExportRows)
	var fnErr error
	err := s.query(ctx, q, limit, func(r *Row) error {
		if err := fn(*r); err != nil {
			fnErr = err
			return err
		}
		return nil
	})
	if fnErr != nil {
		return fnErr
	}
	if err != nil {
		return fmt.Errorf("history: export: %w", err)
	}
	return nil
}

// query streams the rows of q to fn.
func (s *Store) query(ctx context.Context, q Query, limit int, fn func(*Row) error) error {
	args := []any{s.site, q.Model}
	pointCond := ""
	if q.Point != "" {
		pointCond = " AND point_name = ?"
		args = append(args, q.Point)
	}
	args = append(args, q.From, q.To)
	var stmt string
	if q.Step > 0 {
		step := q.Step.Milliseconds()
		stmt = fmt.Sprintf(`SELECT model, point_name, '', '', ts DIV %d * %d AS bucket, '',
  MIN(value_num), AVG(value_num), MAX(value_num), COUNT(*)
FROM data
WHERE site = ? AND model = ?%s AND ts >= ? AND ts < ? AND value_num IS NOT NULL
GROUP BY model, point_name, bucket
ORDER BY model, point_name, bucket
LIMIT %d`, step, step, pointCond, limit)
	} else {
		stmt = fmt.Sprintf(`SELECT model, point_name, channel, point, ts, value, value_num, value_num, value_num, 1
FROM data
WHERE site = ? AND model = ?%s AND ts >= ? AND ts < ?
ORDER BY model, point_name, ts
LIMIT %d`, pointCond, limit)
	}
	rows, err := s.db.QueryContext(ctx, stmt, args...)
	if err != nil {
		return err
	}
	defer rows.Close()
	var r Row
	var mn, avg, mx sql.NullFloat64
	for rows.Next() {
		if err := rows.Scan(&r.Model, &r.PointName, &r.Channel, &r.Point, &r.TS, &r.Value, &mn, &avg, &mx, &r.Count); err != nil {
			return err
		}
		r.Min, r.Avg, r.Max = mn.Float64, avg.Float64, mx.Float64
		if err := fn(&r); err != nil {
			return err
		}
	}
	return rows.Err()
}

// ConnectionHistory returns the connection events of channel (all channels
// when empty) in [from, to), newest first, at most limit (default 1,000, at
// most 10,000).
func (s *Store) ConnectionHistory(ctx context.Context, channel string, from, to int64, limit int) ([]ConnEvent, error) {
	limit = limitOf(limit, DefaultEventLimit, MaxEventLimit)
	args := []any{s.site}
	cond := ""
	if channel != "" {
		cond = " AND channel = ?"
		args = append(args, channel)
	}
	args = append(args, from, to, limit)
	rows, err := s.db.QueryContext(ctx, `SELECT event_id, event, channel, listener, registration, remote, reason, ts
FROM connection_history
WHERE site = ?`+cond+` AND ts >= ? AND ts < ?
ORDER BY ts DESC, event_id DESC
LIMIT ?`, args...)
	if err != nil {
		return nil, fmt.Errorf("history: read connection history: %w", err)
	}
	defer rows.Close()
	var out []ConnEvent
	for rows.Next() {
		var e ConnEvent
		if err := rows.Scan(&e.EventID, &e.Event, &e.Channel, &e.Listener, &e.Registration, &e.Remote, &e.Reason, &e.TS); err != nil {
			return nil, fmt.Errorf("history: read connection history: %w", err)
		}
		out = append(out, e)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("history: read connection history: %w", err)
	}
	return out, nil
}

// AlarmRecord is one stored alarm; zero times mean not cleared or not
// acknowledged.
type AlarmRecord struct {
	Model          string
	Point          string
	Kind           string
	Level          string
	Value          string
	Limit          string
	RaisedTS       int64
	ClearedTS      int64
	AcknowledgedTS int64
	AcknowledgedBy string
}

// AlarmHistory returns the alarms raised in [from, to), newest first, at most
// limit (default 1,000, at most 10,000).
func (s *Store) AlarmHistory(ctx context.Context, from, to int64, limit int) ([]AlarmRecord, error) {
	limit = limitOf(limit, DefaultEventLimit, MaxEventLimit)
	rows, err := s.db.QueryContext(ctx, `SELECT model, point, kind, level, value, limit_value, raised_ts,
  COALESCE(cleared_ts, 0), COALESCE(acknowledged_ts, 0), COALESCE(acknowledged_by, '')
FROM alarms
WHERE site = ? AND raised_ts >= ? AND raised_ts < ?
ORDER BY raised_ts DESC, model, point
LIMIT ?`, s.site, from, to, limit)
	if err != nil {
		return nil, fmt.Errorf("history: read alarms: %w", err)
	}
	defer rows.Close()
	var out []AlarmRecord
	for rows.Next() {
		var a AlarmRecord
		if err := rows.Scan(&a.Model, &a.Point, &a.Kind, &a.Level, &a.Value, &a.Limit, &a.RaisedTS, &a.ClearedTS, &a.AcknowledgedTS, &a.AcknowledgedBy); err != nil {
			return nil, fmt.Errorf("history: read alarms: %w", err)
		}
		out = append(out, a)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("history: read alarms: %w", err)
	}
	return out, nil
}
