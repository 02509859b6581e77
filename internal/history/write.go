package history

import (
	"bytes"
	"cmp"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"unicode/utf8"

	"github.com/go-sql-driver/mysql"
)

// Sample is one point value.
type Sample struct {
	Channel   string // comsrv channel id
	Point     string // point id within the channel
	Model     string // model the point is mapped to ("" when unmapped)
	PointName string // point name within the model
	Value     string // the value exactly as received, at most 64 characters
	TS        int64  // sample time, Unix ms
}

// ConnEvent is one link event from the comsrv:events stream.
type ConnEvent struct {
	EventID      string // Redis stream id
	Event        string // online, offline, replaced, refused
	Channel      string
	Listener     string
	Registration string
	Remote       string
	Reason       string // free text, cut to 512 characters
	TS           int64  // Unix ms
}

// AlarmEvent says what an Alarm entry records.
type AlarmEvent string

// Alarm events.
const (
	AlarmRaise AlarmEvent = "raise"
	AlarmClear AlarmEvent = "clear"
	AlarmAck   AlarmEvent = "ack"
)

// Alarm is a raise, clear or acknowledgement of the alarm of (Model, Point)
// raised at RaisedTS. Events may arrive in any order and more than once: a
// raise sets kind, level, value and limit; the first clear and the first
// acknowledgement are kept.
type Alarm struct {
	Event    AlarmEvent
	Model    string
	Point    string // point name within the model
	Kind     string // high, low, …
	Level    string
	Value    string
	Limit    string
	RaisedTS int64  // Unix ms; identifies the alarm
	TS       int64  // time of the clear or acknowledgement, Unix ms
	User     string // who acknowledged ("" when unknown)
}

// Control is the outcome of one control command. A later outcome of the same
// command (greater or equal TS) replaces an earlier one.
type Control struct {
	CommandID string
	Model     string
	Control   string
	Channel   string
	Point     string
	Value     string
	Status    string
	Code      string
	Message   string // cut to 512 characters
	User      string // "" when unknown
	TS        int64  // Unix ms
}

// ChannelState is the state of a channel (device) at TS. The newest state
// wins; empty Registration, Template and Name leave the stored ones.
type ChannelState struct {
	Channel      string
	Registration string
	Template     string
	Name         string
	State        string // online or offline
	TS           int64  // Unix ms
}

// Batch is what Write stores in one transaction.
type Batch struct {
	Samples    []Sample
	ConnEvents []ConnEvent
	Alarms     []Alarm
	Controls   []Control
	Channels   []ChannelState
}

// Len is the number of entries in the batch.
func (b *Batch) Len() int {
	return len(b.Samples) + len(b.ConnEvents) + len(b.Alarms) + len(b.Controls) + len(b.Channels)
}

// WriteResult counts what one Write did.
type WriteResult struct {
	Inserted   int  // new data and connection_history rows
	Duplicates int  // samples and connection events already stored (skipped)
	Upserted   int  // alarm, control and channel entries applied
	LoadData   bool // samples and connection events went through LOAD DATA
}

// Stats are cumulative counters of a Store, for metrics.
type Stats struct {
	Batches    uint64
	Failed     uint64
	Inserted   uint64
	Duplicates uint64
	Upserted   uint64
	LoadData   bool // the last probe found LOAD DATA LOCAL INFILE usable
}

type counters struct {
	batches, failed, inserted, duplicates, upserted atomic.Uint64
}

// Stats returns the cumulative counters.
func (s *Store) Stats() Stats {
	return Stats{
		Batches:    s.stats.batches.Load(),
		Failed:     s.stats.failed.Load(),
		Inserted:   s.stats.inserted.Load(),
		Duplicates: s.stats.duplicates.Load(),
		Upserted:   s.stats.upserted.Load(),
		LoadData:   s.load.Load() == loadWorks,
	}
}

// ValidationError reports a batch entry that cannot be stored. Write checks
// the whole batch before touching the database.
type ValidationError struct {
	Kind  string // sample, connection event, alarm, control, channel
	Index int
	Msg   string
}

func (e *ValidationError) Error() string {
	return fmt.Sprintf("history: %s %d: %s", e.Kind, e.Index, e.Msg)
}

// Limits on batch sizes per statement.
const (
	maxPlaceholders = 65535
	maxInsertRows   = 4000    // rows per multi-row INSERT
	maxInsertBytes  = 1 << 20 // about this much text per INSERT (max_allowed_packet is larger)
	maxLoadRows     = 50000   // rows per LOAD DATA statement
)

// Write stores b in one transaction. See WriteCounted.
func (s *Store) Write(ctx context.Context, b *Batch) error {
	_, err := s.WriteCounted(ctx, b)
	return err
}

// WriteCounted stores b in one transaction and reports how many rows were new
// and how many were duplicates of rows already stored. Nothing is stored when
// it fails; IsUnavailable tells whether the failure is the server's
// (retry later) or the batch's.
func (s *Store) WriteCounted(ctx context.Context, b *Batch) (WriteResult, error) {
	if s.opts.ReadOnly {
		return WriteResult{}, ErrReadOnly
	}
	res, err := s.write(ctx, b)
	s.stats.batches.Add(1)
	if err != nil {
		s.stats.failed.Add(1)
		return WriteResult{}, err
	}
	s.stats.inserted.Add(uint64(res.Inserted))
	s.stats.duplicates.Add(uint64(res.Duplicates))
	s.stats.upserted.Add(uint64(res.Upserted))
	return res, nil
}

func (s *Store) write(ctx context.Context, b *Batch) (res WriteResult, err error) {
	if b == nil || b.Len() == 0 {
		return res, nil
	}
	if err := validate(b); err != nil {
		return res, err
	}
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return res, fmt.Errorf("history: begin: %w", err)
	}
	defer func() {
		if err != nil {
			tx.Rollback()
		}
	}()
	if n := len(b.Samples); n > 0 {
		order := samplesByKey(b.Samples)
		ins, dup, viaLoad, err := s.bulk(ctx, tx, sampleTable, n, func(i int, r *rowWriter) { sampleRow(s.site, &b.Samples[order[i]], r) })
		if err != nil {
			return res, err
		}
		res.Inserted += ins
		res.Duplicates += dup
		res.LoadData = viaLoad
	}
	if n := len(b.ConnEvents); n > 0 {
		ins, dup, viaLoad, err := s.bulk(ctx, tx, connTable, n, func(i int, r *rowWriter) { connRow(s.site, &b.ConnEvents[i], r) })
		if err != nil {
			return res, err
		}
		res.Inserted += ins
		res.Duplicates += dup
		res.LoadData = res.LoadData || viaLoad
	}
	if err := s.writeAlarms(ctx, tx, b.Alarms); err != nil {
		return res, err
	}
	if err := s.writeControls(ctx, tx, b.Controls); err != nil {
		return res, err
	}
	if err := s.writeChannels(ctx, tx, b.Channels); err != nil {
		return res, err
	}
	res.Upserted = len(b.Alarms) + len(b.Controls) + len(b.Channels)
	if err := tx.Commit(); err != nil {
		return res, fmt.Errorf("history: commit: %w", err)
	}
	return res, nil
}

// samplesByKey returns the order in which to send samples: the order of
// the data table's primary key (channel, point, ts; site is the store's),
// not the order they arrived in (ts, then channel). A batch that holds
// several seconds of a fleet then adds the rows of one series to its
// index pages together instead of visiting every series' last page once
// per second of data, which is what limits the rate once the table no
// longer fits in the server's buffer pool. Binary comparison, as the
// table's utf8mb4_bin collation sorts.
func samplesByKey(x []Sample) []int32 {
	order := make([]int32, len(x))
	for i := range order {
		order[i] = int32(i)
	}
	slices.SortFunc(order, func(a, b int32) int {
		p, q := &x[a], &x[b]
		if c := strings.Compare(p.Channel, q.Channel); c != 0 {
			return c
		}
		if c := strings.Compare(p.Point, q.Point); c != 0 {
			return c
		}
		return cmp.Compare(p.TS, q.TS)
	})
	return order
}

// ---- validation ----

func checkKey(kind string, i int, field, v string, max int) error {
	if v == "" {
		return &ValidationError{kind, i, field + " is empty"}
	}
	return checkLen(kind, i, field, v, max)
}

func checkLen(kind string, i int, field, v string, max int) error {
	if !utf8.ValidString(v) {
		return &ValidationError{kind, i, field + " is not valid UTF-8"}
	}
	if len(v) <= max {
		return nil // no more characters than bytes
	}
	if n := utf8.RuneCountInString(v); n > max {
		return &ValidationError{kind, i, fmt.Sprintf("%s has %d characters, more than %d", field, n, max)}
	}
	return nil
}

// cut shortens free text to max characters (and replaces invalid UTF-8).
func cut(v string, max int) string {
	if !utf8.ValidString(v) {
		v = strings.ToValidUTF8(v, "\uFFFD")
	}
	if utf8.RuneCountInString(v) <= max {
		return v
	}
	return string([]rune(v)[:max])
}

func validate(b *Batch) error {
	for i := range b.Samples {
		x := &b.Samples[i]
		for _, err := range []error{
			checkKey("sample", i, "channel", x.Channel, 128),
			checkKey("sample", i, "point", x.Point, 128),
			checkLen("sample", i, "model", x.Model, 128),
			checkLen("sample", i, "point name", x.PointName, 128),
			checkKey("sample", i, "value", x.Value, 64),
		} {
			if err != nil {
				return err
			}
		}
	}
	for i := range b.ConnEvents {
		x := &b.ConnEvents[i]
		for _, err := range []error{
			checkKey("connection event", i, "event id", x.EventID, 32),
			checkKey("connection event", i, "event", x.Event, 16),
			checkLen("connection event", i, "channel", x.Channel, 128),
			checkLen("connection event", i, "listener", x.Listener, 128),
			checkLen("connection event", i, "registration", x.Registration, 128),
			checkLen("connection event", i, "remote", x.Remote, 64),
		} {
			if err != nil {
				return err
			}
		}
	}
	for i := range b.Alarms {
		x := &b.Alarms[i]
		switch x.Event {
		case AlarmRaise, AlarmClear, AlarmAck:
		default:
			return &ValidationError{"alarm", i, fmt.Sprintf("event %q is not raise, clear or ack", x.Event)}
		}
		for _, err := range []error{
			checkKey("alarm", i, "model", x.Model, 128),
			checkKey("alarm", i, "point", x.Point, 128),
			checkLen("alarm", i, "kind", x.Kind, 16),
			checkLen("alarm", i, "level", x.Level, 16),
			checkLen("alarm", i, "value", x.Value, 64),
			checkLen("alarm", i, "limit", x.Limit, 64),
			checkLen("alarm", i, "user", x.User, 64),
		} {
			if err != nil {
				return err
			}
		}
	}
	for i := range b.Controls {
		x := &b.Controls[i]
		for _, err := range []error{
			checkKey("control", i, "command id", x.CommandID, 32),
			checkLen("control", i, "model", x.Model, 128),
			checkLen("control", i, "control", x.Control, 128),
			checkLen("control", i, "channel", x.Channel, 128),
			checkLen("control", i, "point", x.Point, 128),
			checkLen("control", i, "value", x.Value, 64),
			checkKey("control", i, "status", x.Status, 16),
			checkLen("control", i, "code", x.Code, 32),
			checkLen("control", i, "user", x.User, 64),
		} {
			if err != nil {
				return err
			}
		}
	}
	for i := range b.Channels {
		x := &b.Channels[i]
		if x.State != "online" && x.State != "offline" {
			return &ValidationError{"channel", i, fmt.Sprintf("state %q is not online or offline", x.State)}
		}
		for _, err := range []error{
			checkKey("channel", i, "channel", x.Channel, 128),
			checkLen("channel", i, "registration", x.Registration, 128),
			checkLen("channel", i, "template", x.Template, 128),
			checkLen("channel", i, "name", x.Name, 128),
		} {
			if err != nil {
				return err
			}
		}
	}
	return nil
}

// ---- bulk rows: LOAD DATA or multi-row INSERT ----

// bulkTable describes a table written by bulk.
type bulkTable struct {
	name  string
	what  string // for error messages
	cols  []string
	dupOn string // the no-op assignment of ON DUPLICATE KEY UPDATE
}

var sampleTable = bulkTable{
	name:  "data",
	what:  "data",
	cols:  []string{"site", "channel", "point", "model", "point_name", "value", "value_num", "ts"},
	dupOn: "ts = ts",
}

var connTable = bulkTable{
	name:  "connection_history",
	what:  "connection history",
	cols:  []string{"site", "event_id", "event", "channel", "listener", "registration", "remote", "reason", "ts"},
	dupOn: "ts = ts",
}

// numeric returns the value as a DOUBLE, or nil when it is not a finite number.
func numeric(v string) any {
	if f, ok := numericFloat(v); ok {
		return f
	}
	return nil
}

// numericFloat returns the value as a finite float64, and false when it is
// not a finite number.
func numericFloat(v string) (float64, bool) {
	f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
	if err != nil && !errors.Is(err, strconv.ErrRange) {
		return 0, false
	}
	if f != f || f > 1.7976931348623157e308 || f < -1.7976931348623157e308 {
		return 0, false
	}
	return f, true
}

func sampleRow(site string, x *Sample, r *rowWriter) {
	if r.buf == nil {
		r.add(site, x.Channel, x.Point, x.Model, x.PointName, x.Value, numeric(x.Value), x.TS)
		return
	}
	// LOAD DATA: the fields go straight into the buffer, without boxing
	// each one in an interface (an allocation per string).
	r.str(site)
	r.str(x.Channel)
	r.str(x.Point)
	r.str(x.Model)
	r.str(x.PointName)
	r.str(x.Value)
	if f, ok := numericFloat(x.Value); ok {
		r.float(f)
	} else {
		r.null()
	}
	r.int(x.TS)
	r.end()
}

func connRow(site string, x *ConnEvent, r *rowWriter) {
	r.add(site, x.EventID, x.Event, x.Channel, x.Listener, x.Registration, x.Remote, cut(x.Reason, 512), x.TS)
}

// rowWriter collects one row either as INSERT arguments or as a line of
// LOAD DATA text.
type rowWriter struct {
	args []any         // INSERT mode
	buf  *bytes.Buffer // LOAD DATA mode
	n    int           // LOAD DATA mode: fields of the current line written by str, int, float and null
	num  [32]byte      // scratch for numbers
}

// str, int, float and null write one field of a LOAD DATA line; end ends
// the line. They do what add does for one row, without its allocations.
func (r *rowWriter) str(v string) {
	r.sep()
	writeString(r.buf, v)
}

func (r *rowWriter) int(v int64) {
	r.sep()
	r.buf.Write(strconv.AppendInt(r.num[:0], v, 10))
}

func (r *rowWriter) float(v float64) {
	r.sep()
	r.buf.Write(strconv.AppendFloat(r.num[:0], v, 'g', -1, 64))
}

func (r *rowWriter) null() {
	r.sep()
	r.buf.WriteString(`\N`)
}

func (r *rowWriter) end() {
	r.buf.WriteByte('\n')
	r.n = 0
}

func (r *rowWriter) sep() {
	if r.n > 0 {
		r.buf.WriteByte('\t')
	}
	r.n++
}

func (r *rowWriter) add(vals ...any) {
	if r.buf == nil {
		r.args = append(r.args, vals...)
		return
	}
	for i, v := range vals {
		if i > 0 {
			r.buf.WriteByte('\t')
		}
		writeField(r.buf, v)
	}
	r.buf.WriteByte('\n')
}

// writeField writes v for LOAD DATA with FIELDS TERMINATED BY '\t' ESCAPED BY
// '\\' LINES TERMINATED BY '\n': NULL is \N, and backslash, tab, newline,
// carriage return and NUL are escaped.
func writeField(buf *bytes.Buffer, v any) {
	switch v := v.(type) {
	case nil:
		buf.WriteString(`\N`)
	case string:
		writeString(buf, v)
	case int64:
		buf.WriteString(strconv.FormatInt(v, 10))
	case float64:
		buf.WriteString(strconv.FormatFloat(v, 'g', -1, 64))
	default:
		panic(fmt.Sprintf("history: unexpected field type %T", v))
	}
}

// writeString writes v escaped as writeField describes; runs of bytes that
// need no escape are copied at once.
func writeString(buf *bytes.Buffer, v string) {
	from := 0
	for i := 0; i < len(v); i++ {
		var esc string
		switch v[i] {
		case '\\':
			esc = `\\`
		case '\t':
			esc = `\t`
		case '\n':
			esc = `\n`
		case '\r':
			esc = `\r`
		case 0:
			esc = `\0`
		default:
			continue
		}
		buf.WriteString(v[from:i])
		buf.WriteString(esc)
		from = i + 1
	}
	buf.WriteString(v[from:])
}

// bulk writes n rows to t, through LOAD DATA when the server allows it and
// through INSERT otherwise, and returns the rows inserted and skipped as
// duplicates.
func (s *Store) bulk(ctx context.Context, tx *sql.Tx, t bulkTable, n int, row func(i int, r *rowWriter)) (inserted, dups int, viaLoad bool, err error) {
	if s.load.Load() != loadRefused {
		inserted, err = s.loadRows(ctx, tx, t, n, row)
		switch {
		case err == nil:
			if s.load.CompareAndSwap(loadUnknown, loadWorks) {
				s.log.Info("history writes use LOAD DATA LOCAL INFILE")
			}
			return inserted, n - inserted, true, nil
		case loadRefusedErr(err):
			// A refused statement does not end the transaction.
			s.load.Store(loadRefused)
			s.log.Warn("history: server refuses LOAD DATA LOCAL INFILE; using INSERT", "err", err)
		default:
			return 0, 0, false, fmt.Errorf("history: load %s: %w", t.what, err)
		}
	}
	inserted, err = s.insertRows(ctx, tx, t, n, row)
	if err != nil {
		return 0, 0, false, fmt.Errorf("history: insert %s: %w", t.what, err)
	}
	return inserted, n - inserted, false, nil
}

// loadRefusedErr reports whether err means LOAD DATA LOCAL is not allowed
// (rather than a problem with this batch).
func loadRefusedErr(err error) bool {
	var me *mysql.MySQLError
	if errors.As(err, &me) {
		switch me.Number {
		case 1148, // ER_NOT_ALLOWED_COMMAND: local_infile off (MariaDB, MySQL 5.7)
			3948, // ER_CLIENT_LOCAL_FILES_DISABLED (MySQL 8)
			3950, // ER_LOAD_INFILE_CAPABILITY_DISABLED (MySQL 8)
			1227, // ER_SPECIFIC_ACCESS_DENIED_ERROR
			1045, // access denied (FILE privilege schemes)
			2068: // CR_LOAD_DATA_LOCAL_INFILE_REJECTED
			return true
		}
	}
	return false
}

func (s *Store) insertRows(ctx context.Context, tx *sql.Tx, t bulkTable, n int, row func(i int, r *rowWriter)) (int, error) {
	head := "INSERT INTO " + t.name + " (" + strings.Join(t.cols, ", ") + ") VALUES "
	// ON DUPLICATE KEY UPDATE with an unchanged row counts 0, a new row 1.
	a, err := execChunks(ctx, tx, head, len(t.cols), " ON DUPLICATE KEY UPDATE "+t.dupOn, n, row)
	return int(a), err
}

func (s *Store) loadRows(ctx context.Context, tx *sql.Tx, t bulkTable, n int, row func(i int, r *rowWriter)) (int, error) {
	inserted := 0
	for start := 0; start < n; start += maxLoadRows {
		end := min(start+maxLoadRows, n)
		rr := &rowsReader{row: row, i: start, end: end, w: rowWriter{buf: &bytes.Buffer{}}}
		a, err := s.loadFrom(ctx, tx, t, func() io.Reader { return rr }, end-start)
		if err != nil {
			return 0, err
		}
		inserted += a
	}
	return inserted, nil
}

// rowsReader is the LOAD DATA text of rows [i, end), written as the driver
// reads it (16 KB at a time) rather than all at once: a batch of 40,000
// samples would otherwise take 3 MB of text.
type rowsReader struct {
	row    func(i int, r *rowWriter)
	i, end int
	w      rowWriter
}

func (rr *rowsReader) Read(p []byte) (int, error) {
	for rr.w.buf.Len() < len(p) && rr.i < rr.end {
		rr.row(rr.i, &rr.w)
		rr.i++
	}
	if rr.w.buf.Len() == 0 {
		return 0, io.EOF
	}
	return rr.w.buf.Read(p)
}

// loadOnce runs one LOAD DATA LOCAL INFILE … IGNORE from data.
func (s *Store) loadOnce(ctx context.Context, tx *sql.Tx, t bulkTable, data []byte, rows int) (int, error) {
	return s.loadFrom(ctx, tx, t, func() io.Reader { return bytes.NewReader(data) }, rows)
}

// loadFrom runs one LOAD DATA LOCAL INFILE … IGNORE of rows rows read from
// open's reader, under a reader-handler name used by this call only.
func (s *Store) loadFrom(ctx context.Context, tx *sql.Tx, t bulkTable, open func() io.Reader, rows int) (int, error) {
	name := s.handlerPrefix + "-" + strconv.FormatUint(s.handlerSeq.Add(1), 10)
	mysql.RegisterReaderHandler(name, open)
	defer mysql.DeregisterReaderHandler(name)
	stmt := "LOAD DATA LOCAL INFILE 'Reader::" + name + "' IGNORE INTO TABLE " + t.name +
		` CHARACTER SET utf8mb4 FIELDS TERMINATED BY '\t' ESCAPED BY '\\' LINES TERMINATED BY '\n' (` +
		strings.Join(t.cols, ", ") + ")"
	res, err := s.loadData(ctx, tx, stmt)
	if err != nil {
		return 0, err
	}
	a, err := res.RowsAffected()
	if err != nil {
		return 0, err
	}
	// IGNORE (implied by LOCAL) turns bad values into warnings and stores
	// something else; only skipped duplicates are acceptable.
	var warnings int
	if err := tx.QueryRowContext(ctx, "SELECT @@warning_count").Scan(&warnings); err != nil {
		return 0, err
	}
	if warnings > 0 {
		if err := checkWarnings(ctx, tx); err != nil {
			return 0, err
		}
	}
	if int(a) > rows {
		return 0, fmt.Errorf("%d rows affected by loading %d", a, rows)
	}
	return int(a), nil
}

// checkWarnings fails on any warning other than a skipped duplicate key.
func checkWarnings(ctx context.Context, tx *sql.Tx) error {
	rows, err := tx.QueryContext(ctx, "SHOW WARNINGS")
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		var level, msg string
		var code int
		if err := rows.Scan(&level, &code, &msg); err != nil {
			return err
		}
		if code != 1062 { // ER_DUP_ENTRY
			return &mysql.MySQLError{Number: uint16(code), Message: msg}
		}
	}
	return rows.Err()
}

// ---- alarms, controls, channels: upserts ----

// execChunks runs head + n value tuples + tail as multi-row INSERTs of at
// most maxInsertRows rows, 65,535 placeholders and about maxInsertBytes of
// text, and sums the affected rows.
func execChunks(ctx context.Context, tx *sql.Tx, head string, cols int, tail string, n int, row func(i int, r *rowWriter)) (int64, error) {
	per := min(maxInsertRows, maxPlaceholders/cols)
	tuple := "(" + strings.TrimSuffix(strings.Repeat("?,", cols), ",") + ")"
	r := &rowWriter{}
	var sb strings.Builder
	var affected int64
	for start := 0; start < n; {
		r.args = r.args[:0]
		sb.Reset()
		sb.WriteString(head)
		size := 0
		i := start
		for ; i < n && i-start < per && size < maxInsertBytes; i++ {
			if i > start {
				sb.WriteByte(',')
			}
			sb.WriteString(tuple)
			from := len(r.args)
			row(i, r)
			for _, a := range r.args[from:] {
				if v, ok := a.(string); ok {
					size += 2*len(v) + 3 // worst case: every byte escaped, quotes and comma
				} else {
					size += 24
				}
			}
		}
		start = i
		sb.WriteString(tail)
		res, err := tx.ExecContext(ctx, sb.String(), r.args...)
		if err != nil {
			return 0, err
		}
		a, err := res.RowsAffected()
		if err != nil {
			return 0, err
		}
		affected += a
	}
	return affected, nil
}

// upsert writes n rows with execChunks; what names them in errors.
func upsert(ctx context.Context, tx *sql.Tx, what, head string, cols int, tail string, n int, row func(i int, r *rowWriter)) error {
	if _, err := execChunks(ctx, tx, head, cols, tail, n, row); err != nil {
		return fmt.Errorf("history: write %s: %w", what, err)
	}
	return nil
}

func nullIfEmpty(v string) any {
	if v == "" {
		return nil
	}
	return v
}

func (s *Store) writeAlarms(ctx context.Context, tx *sql.Tx, alarms []Alarm) error {
	byEvent := map[AlarmEvent][]*Alarm{}
	for i := range alarms {
		byEvent[alarms[i].Event] = append(byEvent[alarms[i].Event], &alarms[i])
	}
	const head = "INSERT INTO alarms (site, model, point, kind, level, value, limit_value, raised_ts, cleared_ts, acknowledged_ts, acknowledged_by) VALUES "
	tails := map[AlarmEvent]string{
		AlarmRaise: " ON DUPLICATE KEY UPDATE kind = VALUES(kind), level = VALUES(level), value = VALUES(value), limit_value = VALUES(limit_value)",
		AlarmClear: " ON DUPLICATE KEY UPDATE cleared_ts = COALESCE(cleared_ts, VALUES(cleared_ts))",
		// acknowledged_by first: it must see the acknowledged_ts before this statement.
		AlarmAck: " ON DUPLICATE KEY UPDATE acknowledged_by = IF(acknowledged_ts IS NULL, VALUES(acknowledged_by), acknowledged_by), acknowledged_ts = COALESCE(acknowledged_ts, VALUES(acknowledged_ts))",
	}
	for _, ev := range []AlarmEvent{AlarmRaise, AlarmClear, AlarmAck} {
		list := byEvent[ev]
		err := upsert(ctx, tx, "alarms", head, 11, tails[ev], len(list), func(i int, r *rowWriter) {
			a := list[i]
			var cleared, acked, by any
			switch ev {
			case AlarmClear:
				cleared = a.TS
			case AlarmAck:
				acked, by = a.TS, nullIfEmpty(a.User)
			}
			r.add(s.site, a.Model, a.Point, a.Kind, a.Level, a.Value, a.Limit, a.RaisedTS, cleared, acked, by)
		})
		if err != nil {
			return err
		}
	}
	return nil
}

func (s *Store) writeControls(ctx context.Context, tx *sql.Tx, controls []Control) error {
	const head = "INSERT INTO controls (site, command_id, model, control, channel, point, value, status, code, message, user, ts) VALUES "
	// ts last: the other assignments compare against the stored ts.
	const tail = ` ON DUPLICATE KEY UPDATE
  status = IF(VALUES(ts) >= ts, VALUES(status), status),
  code = IF(VALUES(ts) >= ts, VALUES(code), code),
  message = IF(VALUES(ts) >= ts, VALUES(message), message),
  user = IF(VALUES(ts) >= ts, COALESCE(VALUES(user), user), user),
  ts = GREATEST(ts, VALUES(ts))`
	return upsert(ctx, tx, "controls", head, 12, tail, len(controls), func(i int, r *rowWriter) {
		c := &controls[i]
		r.add(s.site, c.CommandID, c.Model, c.Control, c.Channel, c.Point, c.Value, c.Status, c.Code, cut(c.Message, 512), nullIfEmpty(c.User), c.TS)
	})
}

func (s *Store) writeChannels(ctx context.Context, tx *sql.Tx, channels []ChannelState) error {
	const head = "INSERT INTO channels (site, channel, registration, template, name, first_seen, last_seen, state) VALUES "
	// last_seen last: the other assignments compare against the stored one.
	const tail = ` ON DUPLICATE KEY UPDATE
  state = IF(VALUES(last_seen) >= last_seen, VALUES(state), state),
  registration = IF(VALUES(last_seen) >= last_seen AND VALUES(registration) <> '', VALUES(registration), registration),
  template = IF(VALUES(last_seen) >= last_seen AND VALUES(template) <> '', VALUES(template), template),
  name = IF(VALUES(last_seen) >= last_seen AND VALUES(name) <> '', VALUES(name), name),
  first_seen = LEAST(first_seen, VALUES(first_seen)),
  last_seen = GREATEST(last_seen, VALUES(last_seen))`
	return upsert(ctx, tx, "channels", head, 8, tail, len(channels), func(i int, r *rowWriter) {
		c := &channels[i]
		r.add(s.site, c.Channel, c.Registration, c.Template, c.Name, c.TS, c.TS, c.State)
	})
}
