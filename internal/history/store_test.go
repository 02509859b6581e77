package history

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"

	"github.com/voltedge/voltedge/internal/history/historytest"
)

func quietLogger() *slog.Logger {
	return slog.New(slog.DiscardHandler)
}

// openStore opens a Store on dsn (a new test database when empty).
func openStore(t testing.TB, dsn string, opts Options) *Store {
	t.Helper()
	if dsn == "" {
		dsn = historytest.DSN(t)
	}
	if opts.Site == "" {
		opts.Site = "site-a"
	}
	if opts.Logger == nil {
		opts.Logger = quietLogger()
	}
	s, err := Open(context.Background(), dsn, opts)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func count(t testing.TB, s *Store, query string, args ...any) int {
	t.Helper()
	var n int
	if err := s.db.QueryRow(query, args...).Scan(&n); err != nil {
		t.Fatalf("%s: %v", query, err)
	}
	return n
}

const day = 24 * time.Hour

// baseTS is a fixed sample time inside today's partition.
func baseTS() int64 { return dayStart(time.Now()) + 3_600_000 }

func testBatch(ts int64) *Batch {
	return &Batch{
		Samples: []Sample{
			{Channel: "1001", Point: "T1", Model: "pcs1", PointName: "p_active", Value: "12.50", TS: ts},
			{Channel: "1001", Point: "T1", Model: "pcs1", PointName: "p_active", Value: "13.25", TS: ts + 1000},
			{Channel: "1001", Point: "S1", Model: "pcs1", PointName: "state", Value: "on", TS: ts},
		},
		ConnEvents: []ConnEvent{
			{EventID: "1764115200000-0", Event: "online", Channel: "1001", Listener: "tcp-502", Registration: "REG01", Remote: "10.0.0.7:40122", TS: ts},
			{EventID: "1764115260000-0", Event: "offline", Channel: "1001", Listener: "tcp-502", Registration: "REG01", Remote: "10.0.0.7:40122", Reason: "read: connection reset", TS: ts + 60_000},
		},
		Alarms: []Alarm{
			{Event: AlarmRaise, Model: "pcs1", Point: "temp", Kind: "high", Level: "major", Value: "81.5", Limit: "80", RaisedTS: ts},
			{Event: AlarmClear, Model: "pcs1", Point: "temp", RaisedTS: ts, TS: ts + 5000},
			{Event: AlarmAck, Model: "pcs1", Point: "temp", RaisedTS: ts, TS: ts + 7000, User: "alice"},
		},
		Controls: []Control{
			{CommandID: "1764115200000001", Model: "pcs1", Control: "start", Channel: "1001", Point: "C1", Value: "1", Status: "ok", Code: "0", Message: "written", User: "bob", TS: ts},
		},
		Channels: []ChannelState{
			{Channel: "1001", Registration: "REG01", Template: "pcs-v2", Name: "PCS 1", State: "online", TS: ts},
		},
	}
}

func TestMigrationsIdempotentAndVersioned(t *testing.T) {
	dsn := historytest.DSN(t)
	s := openStore(t, dsn, Options{})
	s2 := openStore(t, dsn, Options{}) // second start: nothing to apply
	if n := count(t, s2, "SELECT COUNT(*) FROM schema_migrations"); n != len(migrations) {
		t.Fatalf("schema_migrations has %d rows, want %d", n, len(migrations))
	}
	ctx := context.Background()
	// A migration that fails if it runs twice.
	extra := append(slices.Clone(migrations),
		migration{100, "test table", []string{"CREATE TABLE mig_test (id INT PRIMARY KEY)"}},
		migration{101, "test row", []string{"INSERT INTO mig_test VALUES (1)"}},
	)
	for i := 0; i < 2; i++ {
		if err := s.migrate(ctx, extra); err != nil {
			t.Fatalf("migrate run %d: %v", i+1, err)
		}
	}
	if n := count(t, s, "SELECT COUNT(*) FROM mig_test"); n != 1 {
		t.Fatalf("mig_test has %d rows, want 1 (migration applied more than once)", n)
	}
	var versions []int
	rows, err := s.db.Query("SELECT version FROM schema_migrations ORDER BY applied_at, version")
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var v int
		rows.Scan(&v)
		versions = append(versions, v)
	}
	rows.Close()
	if want := []int{1, 100, 101}; !slices.Equal(versions, want) {
		t.Fatalf("versions %v, want %v", versions, want)
	}
	bad := []migration{{2, "b", nil}, {1, "a", nil}}
	if err := s.migrate(ctx, bad); err == nil {
		t.Fatal("migrate accepted versions out of order")
	}
}

func TestConcurrentOpen(t *testing.T) {
	dsn := historytest.DSN(t)
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for i := 0; i < 4; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s, err := Open(context.Background(), dsn, Options{Site: fmt.Sprintf("s%d", i), Logger: quietLogger()})
			if err != nil {
				errs <- err
				return
			}
			s.Close()
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("concurrent Open: %v", err)
	}
	s := openStore(t, dsn, Options{})
	if n := count(t, s, "SELECT COUNT(*) FROM schema_migrations"); n != len(migrations) {
		t.Fatalf("schema_migrations has %d rows, want %d", n, len(migrations))
	}
}

func TestWriteAndReadBack(t *testing.T) {
	s := openStore(t, "", Options{})
	ctx := context.Background()
	ts := baseTS()
	res, err := s.WriteCounted(ctx, testBatch(ts))
	if err != nil {
		t.Fatalf("Write: %v", err)
	}
	if res.Inserted != 5 || res.Duplicates != 0 || res.Upserted != 5 {
		t.Fatalf("result %+v, want 5 inserted, 0 duplicates, 5 upserted", res)
	}

	hist, err := s.History(ctx, Query{Model: "pcs1", Point: "p_active", From: ts, To: ts + 2000})
	if err != nil {
		t.Fatal(err)
	}
	want := []HistoryRow{{TS: ts, Value: "12.50", Min: 12.5, Avg: 12.5, Max: 12.5, Count: 1}, {TS: ts + 1000, Value: "13.25", Min: 13.25, Avg: 13.25, Max: 13.25, Count: 1}}
	if !slices.Equal(hist, want) {
		t.Fatalf("History = %+v, want %+v", hist, want)
	}
	var num sql.NullFloat64
	if err := s.db.QueryRow("SELECT value_num FROM data WHERE point = 'S1'").Scan(&num); err != nil || num.Valid {
		t.Fatalf("value_num of a non-numeric value = %v, %v; want NULL", num, err)
	}

	events, err := s.ConnectionHistory(ctx, "1001", ts, ts+day.Milliseconds(), 10)
	if err != nil {
		t.Fatal(err)
	}
	b := testBatch(ts)
	if len(events) != 2 || events[0] != b.ConnEvents[1] || events[1] != b.ConnEvents[0] {
		t.Fatalf("ConnectionHistory = %+v", events)
	}
	if events, _ := s.ConnectionHistory(ctx, "", ts, ts+day.Milliseconds(), 1); len(events) != 1 {
		t.Fatalf("ConnectionHistory with limit 1 returned %d", len(events))
	}

	alarms, err := s.AlarmHistory(ctx, ts, ts+1, 10)
	if err != nil {
		t.Fatal(err)
	}
	wantAlarm := AlarmRecord{Model: "pcs1", Point: "temp", Kind: "high", Level: "major", Value: "81.5", Limit: "80",
		RaisedTS: ts, ClearedTS: ts + 5000, AcknowledgedTS: ts + 7000, AcknowledgedBy: "alice"}
	if len(alarms) != 1 || alarms[0] != wantAlarm {
		t.Fatalf("AlarmHistory = %+v, want %+v", alarms, wantAlarm)
	}

	var c Control
	var user sql.NullString
	err = s.db.QueryRow("SELECT command_id, model, control, channel, point, value, status, code, message, user, ts FROM controls WHERE site = ?", s.site).
		Scan(&c.CommandID, &c.Model, &c.Control, &c.Channel, &c.Point, &c.Value, &c.Status, &c.Code, &c.Message, &user, &c.TS)
	if err != nil {
		t.Fatal(err)
	}
	c.User = user.String
	if c != b.Controls[0] {
		t.Fatalf("control %+v, want %+v", c, b.Controls[0])
	}

	var ch ChannelState
	var first, last int64
	err = s.db.QueryRow("SELECT channel, registration, template, name, state, first_seen, last_seen FROM channels WHERE site = ?", s.site).
		Scan(&ch.Channel, &ch.Registration, &ch.Template, &ch.Name, &ch.State, &first, &last)
	if err != nil {
		t.Fatal(err)
	}
	ch.TS = last
	if ch != b.Channels[0] || first != ts {
		t.Fatalf("channel %+v first_seen %d, want %+v", ch, first, b.Channels[0])
	}

	// Later state: offline, empty metadata keeps the stored one; an older
	// event does not overwrite it; a later control outcome replaces status.
	later := &Batch{
		Channels: []ChannelState{
			{Channel: "1001", State: "offline", TS: ts + 10_000},
			{Channel: "1001", State: "online", Name: "stale", TS: ts + 5_000},
		},
		Controls: []Control{{CommandID: "1764115200000001", Status: "failed", Code: "E2", Message: "timeout", TS: ts + 3000}},
	}
	if err := s.Write(ctx, later); err != nil {
		t.Fatal(err)
	}
	err = s.db.QueryRow("SELECT registration, name, state, first_seen, last_seen FROM channels WHERE site = ?", s.site).
		Scan(&ch.Registration, &ch.Name, &ch.State, &first, &last)
	if err != nil {
		t.Fatal(err)
	}
	if ch.Registration != "REG01" || ch.Name != "PCS 1" || ch.State != "offline" || first != ts || last != ts+10_000 {
		t.Fatalf("channel after updates: %+v first %d last %d", ch, first, last)
	}
	err = s.db.QueryRow("SELECT status, code, message, user, ts FROM controls WHERE site = ?", s.site).Scan(&c.Status, &c.Code, &c.Message, &user, &c.TS)
	if err != nil {
		t.Fatal(err)
	}
	if c.Status != "failed" || c.Code != "E2" || c.Message != "timeout" || user.String != "bob" || c.TS != ts+3000 {
		t.Fatalf("control after update: %+v user %v", c, user)
	}
}

func TestAlarmEventsAnyOrder(t *testing.T) {
	s := openStore(t, "", Options{})
	ctx := context.Background()
	ts := baseTS()
	// Clear and acks arrive before the raise; the first ack is kept.
	for _, b := range []*Batch{
		{Alarms: []Alarm{{Event: AlarmClear, Model: "m", Point: "p", RaisedTS: ts, TS: ts + 10}}},
		{Alarms: []Alarm{{Event: AlarmAck, Model: "m", Point: "p", RaisedTS: ts, TS: ts + 20, User: "first"}}},
		{Alarms: []Alarm{{Event: AlarmAck, Model: "m", Point: "p", RaisedTS: ts, TS: ts + 30, User: "second"}}},
		{Alarms: []Alarm{{Event: AlarmRaise, Model: "m", Point: "p", Kind: "low", Level: "minor", Value: "1", Limit: "2", RaisedTS: ts}}},
		{Alarms: []Alarm{{Event: AlarmClear, Model: "m", Point: "p", RaisedTS: ts, TS: ts + 40}}},
	} {
		if err := s.Write(ctx, b); err != nil {
			t.Fatal(err)
		}
	}
	got, err := s.AlarmHistory(ctx, ts, ts+1, 0)
	if err != nil {
		t.Fatal(err)
	}
	want := AlarmRecord{Model: "m", Point: "p", Kind: "low", Level: "minor", Value: "1", Limit: "2", RaisedTS: ts, ClearedTS: ts + 10, AcknowledgedTS: ts + 20, AcknowledgedBy: "first"}
	if len(got) != 1 || got[0] != want {
		t.Fatalf("AlarmHistory = %+v, want %+v", got, want)
	}
}

func tableCounts(t testing.TB, s *Store) [5]int {
	var out [5]int
	for i, table := range []string{"data", "connection_history", "alarms", "controls", "channels"} {
		out[i] = count(t, s, "SELECT COUNT(*) FROM "+table)
	}
	return out
}

func TestRedeliveryCreatesNoDuplicates(t *testing.T) {
	for _, mode := range []struct {
		name    string
		disable bool
	}{{"load-data", false}, {"insert", true}} {
		t.Run(mode.name, func(t *testing.T) {
			s := openStore(t, "", Options{DisableLoadData: mode.disable})
			ctx := context.Background()
			ts := baseTS()
			if err := s.Write(ctx, testBatch(ts)); err != nil {
				t.Fatal(err)
			}
			before := tableCounts(t, s)
			res, err := s.WriteCounted(ctx, testBatch(ts))
			if err != nil {
				t.Fatal(err)
			}
			if after := tableCounts(t, s); after != before {
				t.Fatalf("row counts after re-delivery %v, before %v", after, before)
			}
			if before != [5]int{3, 2, 1, 1, 1} {
				t.Fatalf("row counts %v", before)
			}
			if res.Inserted != 0 || res.Duplicates != 5 || res.LoadData == mode.disable {
				t.Fatalf("re-delivery result %+v", res)
			}
			st := s.Stats()
			if st.Batches != 2 || st.Inserted != 5 || st.Duplicates != 5 || st.Failed != 0 {
				t.Fatalf("stats %+v", st)
			}
			// A batch mixing new and re-delivered samples stores only the new.
			mixed := testBatch(ts)
			mixed.Samples = append(mixed.Samples, Sample{Channel: "1001", Point: "T1", Model: "pcs1", PointName: "p_active", Value: "14", TS: ts + 2000})
			res, err = s.WriteCounted(ctx, &Batch{Samples: mixed.Samples})
			if err != nil {
				t.Fatal(err)
			}
			if res.Inserted != 1 || res.Duplicates != 3 {
				t.Fatalf("mixed result %+v", res)
			}
		})
	}
}

func TestSitesAreSeparate(t *testing.T) {
	dsn := historytest.DSN(t)
	a := openStore(t, dsn, Options{Site: "site-a"})
	b := openStore(t, dsn, Options{Site: "site.b_2"})
	ctx := context.Background()
	ts := baseTS()
	if err := a.Write(ctx, testBatch(ts)); err != nil {
		t.Fatal(err)
	}
	res, err := b.WriteCounted(ctx, testBatch(ts))
	if err != nil {
		t.Fatal(err)
	}
	if res.Inserted != 5 || res.Duplicates != 0 {
		t.Fatalf("second site result %+v", res)
	}
	if got := tableCounts(t, a); got != [5]int{6, 4, 2, 2, 2} {
		t.Fatalf("row counts %v, want each row once per site", got)
	}
	for _, s := range []*Store{a, b} {
		hist, err := s.History(ctx, Query{Model: "pcs1", Point: "p_active", From: ts, To: ts + 2000})
		if err != nil || len(hist) != 2 {
			t.Fatalf("%s: History = %v, %v", s.Site(), hist, err)
		}
		alarms, err := s.AlarmHistory(ctx, ts, ts+1, 0)
		if err != nil || len(alarms) != 1 {
			t.Fatalf("%s: AlarmHistory = %v, %v", s.Site(), alarms, err)
		}
	}
}

func partitionNames(t testing.TB, s *Store, table string) []string {
	t.Helper()
	rows, err := s.db.Query(`SELECT PARTITION_NAME FROM information_schema.PARTITIONS
WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = ? ORDER BY PARTITION_ORDINAL_POSITION`, table)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var n string
		rows.Scan(&n)
		out = append(out, n)
	}
	return out
}

func TestPartitions(t *testing.T) {
	s := openStore(t, "", Options{RetentionDays: 5, PartitionsAhead: 3})
	ctx := context.Background()
	today := time.UnixMilli(dayStart(time.Now())).UTC()
	name := func(days int) string { return "p" + today.AddDate(0, 0, days).Format("20060102") }
	names := func(days ...int) []string {
		var out []string
		for _, d := range days {
			out = append(out, name(d))
		}
		return append(out, "pmax")
	}
	for _, table := range partitionedTables {
		if got, want := partitionNames(t, s, table), names(0, 1, 2, 3); !slices.Equal(got, want) {
			t.Fatalf("%s partitions after Open: %v, want %v", table, got, want)
		}
	}

	// Ten days later (fake clock): the days within the retention (from +5;
	// p+5 also takes the gap day +4) up to +13 exist, idempotently.
	now := today.Add(10*day + 5*time.Hour)
	for i := 0; i < 2; i++ {
		if err := s.EnsurePartitions(ctx, now); err != nil {
			t.Fatal(err)
		}
	}
	if got, want := partitionNames(t, s, "data"), names(0, 1, 2, 3, 5, 6, 7, 8, 9, 10, 11, 12, 13); !slices.Equal(got, want) {
		t.Fatalf("partitions after EnsurePartitions: %v, want %v", got, want)
	}

	// One sample per day from today to +11, and one far ahead in pmax.
	var b Batch
	for i := 0; i <= 11; i++ {
		ts := today.AddDate(0, 0, i).UnixMilli() + 1000
		b.Samples = append(b.Samples, Sample{Channel: "c", Point: "p", Model: "m", PointName: "x", Value: fmt.Sprint(i), TS: ts})
		b.ConnEvents = append(b.ConnEvents, ConnEvent{EventID: fmt.Sprintf("%d-0", ts), Event: "online", TS: ts})
	}
	b.Samples = append(b.Samples, Sample{Channel: "c", Point: "p", Model: "m", PointName: "x", Value: "99", TS: today.AddDate(0, 0, 30).UnixMilli()})
	if err := s.Write(ctx, &b); err != nil {
		t.Fatal(err)
	}

	// With 5 days of retention at day +10, partitions ending by +5 go.
	for i := 0; i < 2; i++ {
		if err := s.DropExpired(ctx, now); err != nil {
			t.Fatal(err)
		}
	}
	for _, table := range partitionedTables {
		if got, want := partitionNames(t, s, table), names(5, 6, 7, 8, 9, 10, 11, 12, 13); !slices.Equal(got, want) {
			t.Fatalf("%s partitions after DropExpired: %v, want %v", table, got, want)
		}
	}
	if n := count(t, s, "SELECT COUNT(*) FROM data"); n != 9 { // days 4..11 and pmax
		t.Fatalf("data has %d rows after DropExpired, want 9", n)
	}
	if n := count(t, s, "SELECT COUNT(*) FROM connection_history"); n != 8 {
		t.Fatalf("connection_history has %d rows after DropExpired, want 8", n)
	}
	// Splitting pmax moves the row stored there to its day.
	if err := s.EnsurePartitions(ctx, today.AddDate(0, 0, 30)); err != nil {
		t.Fatal(err)
	}
	if n := count(t, s, "SELECT COUNT(*) FROM data PARTITION ("+name(30)+")"); n != 1 {
		t.Fatalf("row from pmax not in its day partition (%d rows)", n)
	}
}

func TestValidationAndErrors(t *testing.T) {
	ctx := context.Background()
	for _, site := range []string{"", "bad site", string(make([]byte, 65))} {
		if _, err := Open(ctx, "root@tcp(127.0.0.1:3306)/x", Options{Site: site}); err == nil {
			t.Errorf("Open accepted site %q", site)
		}
	}
	s := openStore(t, "", Options{})
	b := testBatch(baseTS())
	b.Samples[1].Value = strings.Repeat("1", 64) + "5" // the Lua library's values are at most 64 bytes
	err := s.Write(ctx, b)
	var ve *ValidationError
	if !errors.As(err, &ve) || ve.Kind != "sample" || ve.Index != 1 || IsUnavailable(err) {
		t.Fatalf("Write with a 65-character value: %v", err)
	}
	if n := count(t, s, "SELECT COUNT(*) FROM data"); n != 0 {
		t.Fatalf("a rejected batch stored %d rows", n)
	}
	if s.Stats().Failed != 1 {
		t.Fatalf("stats %+v", s.Stats())
	}
	long := testBatch(baseTS())
	long.ConnEvents[1].Reason = string(make([]rune, 600))
	if err := s.Write(ctx, long); err != nil {
		t.Fatalf("a long reason is cut, not refused: %v", err)
	}
}

func TestIsUnavailable(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	// Nothing listens on port 1.
	_, err := Open(ctx, "root:secret@tcp(127.0.0.1:1)/x?timeout=1s", Options{Site: "a", Logger: quietLogger()})
	if err == nil || !IsUnavailable(err) {
		t.Fatalf("Open on a closed port: %v (unavailable %v)", err, IsUnavailable(err))
	}
	for _, c := range []struct {
		err  error
		want bool
	}{
		{fmt.Errorf("history: insert data: %w", &mysql.MySQLError{Number: 2006}), true},
		{&mysql.MySQLError{Number: 2013}, true},
		{mysql.ErrInvalidConn, true},
		{fmt.Errorf("x: %w", context.DeadlineExceeded), true},
		{&mysql.MySQLError{Number: 1406, Message: "Data too long"}, false},
		{&mysql.MySQLError{Number: 1146}, false},
		{context.Canceled, false},
		{errors.New("other"), false},
		{nil, false},
	} {
		if got := IsUnavailable(c.err); got != c.want {
			t.Errorf("IsUnavailable(%v) = %v, want %v", c.err, got, c.want)
		}
	}
}

func TestRedactDSN(t *testing.T) {
	got := RedactDSN("netsrv:s3cr3t@tcp(db:3306)/history?timeout=5s")
	if got != "netsrv:xxxxx@tcp(db:3306)/history?timeout=5s" {
		t.Fatalf("RedactDSN = %q", got)
	}
	if got := RedactDSN("not a dsn :::"); got != "<invalid DSN>" {
		t.Fatalf("RedactDSN(invalid) = %q", got)
	}
}

func TestReadOnly(t *testing.T) {
	dsn := historytest.DSN(t)
	ctx := context.Background()
	// No tables yet: a read-only store creates none and says so.
	if _, err := Open(ctx, dsn, Options{Site: "site-a", ReadOnly: true, Logger: quietLogger()}); !errors.Is(err, ErrNoSchema) {
		t.Fatalf("read-only Open of an empty database: %v, want ErrNoSchema", err)
	}
	w := openStore(t, dsn, Options{Site: "site-a"})
	ts := baseTS()
	if err := w.Write(ctx, testBatch(ts)); err != nil {
		t.Fatal(err)
	}
	before := partitionNames(t, w, "data")

	// A user with SELECT only can open and read.
	cfg, err := mysql.ParseDSN(dsn)
	if err != nil {
		t.Fatal(err)
	}
	user := "ro_" + cfg.DBName[len(cfg.DBName)-8:]
	for _, stmt := range []string{
		"CREATE USER '" + user + "'@'%' IDENTIFIED BY 'ro-secret'",
		"GRANT SELECT ON `" + cfg.DBName + "`.* TO '" + user + "'@'%'",
	} {
		if _, err := w.db.ExecContext(ctx, stmt); err != nil {
			t.Skipf("cannot create a SELECT-only user (%v); checking the read-only store as the test user", err)
		}
	}
	t.Cleanup(func() { w.db.ExecContext(context.Background(), "DROP USER IF EXISTS '"+user+"'@'%'") })
	cfg.User, cfg.Passwd = user, "ro-secret"
	r := openStore(t, cfg.FormatDSN(), Options{Site: "site-a", ReadOnly: true})
	hist, err := r.History(ctx, Query{Model: "pcs1", Point: "p_active", From: ts, To: ts + 2000})
	if err != nil || len(hist) != 2 {
		t.Fatalf("History = %v, %v", hist, err)
	}
	if err := r.Write(ctx, testBatch(ts)); !errors.Is(err, ErrReadOnly) {
		t.Fatalf("Write on a read-only store: %v", err)
	}
	if err := r.EnsurePartitions(ctx, time.Now().Add(30*24*time.Hour)); !errors.Is(err, ErrReadOnly) {
		t.Fatalf("EnsurePartitions on a read-only store: %v", err)
	}
	if err := r.DropExpired(ctx, time.Now()); !errors.Is(err, ErrReadOnly) {
		t.Fatalf("DropExpired on a read-only store: %v", err)
	}
	if after := partitionNames(t, w, "data"); !slices.Equal(before, after) {
		t.Fatalf("partitions changed: %v -> %v", before, after)
	}
}
