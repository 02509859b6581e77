package history

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"reflect"
	"strconv"
	"strings"
	"testing"

	"github.com/go-sql-driver/mysql"
)

// awkward holds text that LOAD DATA must escape.
var awkward = []string{
	"tab\there", "new\nline", `back\slash`, `\N`, "NULL", "cr\rlf\r\n", "nul\x00byte", `trailing\`, "ünïcødé ⚡", "",
}

func awkwardBatch(ts int64) *Batch {
	b := &Batch{}
	for i, text := range awkward {
		b.Samples = append(b.Samples, Sample{
			Channel: "ch" + text, Point: "P1", Model: "m\t" + text, PointName: text + "name",
			Value: []string{"1.5", "-0.000001", "1e3", "on", "12345678901234567890.123456789"}[i%5], TS: ts + int64(i),
		})
		b.ConnEvents = append(b.ConnEvents, ConnEvent{
			EventID: "1764115200000-" + string(rune('0'+i)), Event: "offline", Channel: "1001",
			Listener: "l" + text, Registration: text, Remote: "10.0.0.1:1", Reason: "reason: " + text, TS: ts + int64(i),
		})
	}
	return b
}

func dump(t *testing.T, s *Store, query string) [][]any {
	t.Helper()
	rows, err := s.db.Query(query)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	cols, _ := rows.Columns()
	var out [][]any
	for rows.Next() {
		vals := make([]any, len(cols))
		ptrs := make([]any, len(cols))
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		if err := rows.Scan(ptrs...); err != nil {
			t.Fatal(err)
		}
		for i, v := range vals {
			if b, ok := v.([]byte); ok {
				vals[i] = string(b)
			}
		}
		out = append(out, vals)
	}
	return out
}

func TestLoadDataAndInsertStoreTheSameRows(t *testing.T) {
	ctx := context.Background()
	load := openStore(t, "", Options{})
	insert := openStore(t, "", Options{DisableLoadData: true})
	ts := baseTS()
	for _, s := range []*Store{load, insert} {
		res, err := s.WriteCounted(ctx, awkwardBatch(ts))
		if err != nil {
			t.Fatal(err)
		}
		if want := s == load; res.LoadData != want {
			t.Fatalf("LoadData = %v, want %v", res.LoadData, want)
		}
		if res.Inserted != 2*len(awkward) {
			t.Fatalf("result %+v", res)
		}
	}
	for _, q := range []string{
		"SELECT site, channel, point, model, point_name, value, value_num, ts FROM data ORDER BY ts",
		"SELECT site, event_id, event, channel, listener, registration, remote, reason, ts FROM connection_history ORDER BY ts",
	} {
		a, b := dump(t, load, q), dump(t, insert, q)
		if !reflect.DeepEqual(a, b) {
			t.Fatalf("%s\nLOAD DATA: %q\nINSERT:    %q", q, a, b)
		}
	}
	// The text arrived exactly as sent.
	events, err := load.ConnectionHistory(ctx, "1001", ts, ts+100, 0)
	if err != nil {
		t.Fatal(err)
	}
	want := awkwardBatch(ts).ConnEvents
	for i, e := range events {
		if w := want[len(want)-1-i]; e != w {
			t.Errorf("event %d: %+v, want %+v", i, e, w)
		}
	}
	var null int
	if err := load.db.QueryRow("SELECT COUNT(*) FROM data WHERE model IS NULL OR point_name IS NULL OR value_num IS NULL").Scan(&null); err != nil || null != 2 {
		t.Fatalf("rows with NULLs: %d, %v; want 2 (value \"on\" has no number)", null, err)
	}
}

func TestLoadDataRefusedFallsBackToInsert(t *testing.T) {
	s := openStore(t, "", Options{})
	calls := 0
	s.loadData = func(ctx context.Context, tx *sql.Tx, stmt string) (sql.Result, error) {
		calls++
		return nil, &mysql.MySQLError{Number: 1148, Message: "The used command is not allowed with this MariaDB version"}
	}
	ctx := context.Background()
	ts := baseTS()
	for i := 0; i < 2; i++ {
		res, err := s.WriteCounted(ctx, testBatch(ts+int64(i)*10_000))
		if err != nil {
			t.Fatalf("Write %d: %v", i, err)
		}
		if res.LoadData || res.Inserted != 5 {
			t.Fatalf("Write %d: %+v", i, res)
		}
	}
	if calls != 1 {
		t.Fatalf("LOAD DATA tried %d times, want once", calls)
	}
	if n := count(t, s, "SELECT COUNT(*) FROM data"); n != 6 {
		t.Fatalf("data has %d rows, want 6", n)
	}
	if s.Stats().LoadData {
		t.Fatal("Stats says LOAD DATA works")
	}

	// Any other LOAD DATA error fails the batch and keeps LOAD DATA on.
	s2 := openStore(t, "", Options{})
	boom := &mysql.MySQLError{Number: 1366, Message: "Incorrect value"}
	s2.loadData = func(context.Context, *sql.Tx, string) (sql.Result, error) { return nil, boom }
	if err := s2.Write(ctx, testBatch(ts)); !errors.Is(err, boom) {
		t.Fatalf("Write = %v, want the LOAD DATA error", err)
	}
	if n := count(t, s2, "SELECT COUNT(*) FROM data"); n != 0 {
		t.Fatalf("a failed batch stored %d rows", n)
	}
}

func TestLoadDataWarningsFail(t *testing.T) {
	s := openStore(t, "", Options{})
	ctx := context.Background()
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback()
	// A short line: the server stores defaults and warns (1261).
	_, err = s.loadOnce(ctx, tx, sampleTable, []byte("site-a\tc\tp\n"), 1)
	var me *mysql.MySQLError
	if !errors.As(err, &me) || me.Number == 1062 {
		t.Fatalf("loading a short line: %v, want a warning turned into an error", err)
	}
}

func TestWriteFieldEscapes(t *testing.T) {
	var buf bytes.Buffer
	r := &rowWriter{buf: &buf}
	r.add("a\tb\nc\\d\re\x00f", nil, int64(-12), 1.5, "")
	if got, want := buf.String(), "a\\tb\\nc\\\\d\\re\\0f\t\\N\t-12\t1.5\t\n"; got != want {
		t.Fatalf("got %q, want %q", got, want)
	}
}

func TestInsertChunks(t *testing.T) {
	s := openStore(t, "", Options{DisableLoadData: true})
	ctx := context.Background()
	ts := baseTS()
	b := &Batch{}
	// 9,000 samples: three INSERTs by row count; 3,000 events with long
	// reasons: several INSERTs by size.
	for i := 0; i < 9000; i++ {
		b.Samples = append(b.Samples, Sample{Channel: "c", Point: "p" + strconv.Itoa(i%300), Model: "m", PointName: "n" + strconv.Itoa(i%300), Value: strconv.Itoa(i), TS: ts + int64(i/300)})
	}
	reason := strings.Repeat(`x\"'`, 128)
	for i := 0; i < 3000; i++ {
		b.ConnEvents = append(b.ConnEvents, ConnEvent{EventID: "1-" + strconv.Itoa(i), Event: "refused", Reason: reason, TS: ts + int64(i)})
	}
	res, err := s.WriteCounted(ctx, b)
	if err != nil {
		t.Fatal(err)
	}
	if res.Inserted != 12000 || res.Duplicates != 0 {
		t.Fatalf("result %+v", res)
	}
	if res, err = s.WriteCounted(ctx, b); err != nil || res.Inserted != 0 || res.Duplicates != 12000 {
		t.Fatalf("re-delivery: %+v, %v", res, err)
	}
	if n := count(t, s, "SELECT COUNT(*) FROM connection_history WHERE reason = ?", reason); n != 3000 {
		t.Fatalf("%d events with the full reason, want 3000", n)
	}
}

func TestConnectionLostMidBatchIsUnavailable(t *testing.T) {
	s := openStore(t, "", Options{})
	ctx := context.Background()
	real := s.loadData
	s.loadData = func(ctx context.Context, tx *sql.Tx, stmt string) (sql.Result, error) {
		// The server ends this session, as on a restart or a network cut.
		tx.ExecContext(ctx, "KILL CONNECTION_ID()")
		return real(ctx, tx, stmt)
	}
	err := s.Write(ctx, testBatch(baseTS()))
	if err == nil || !IsUnavailable(err) {
		t.Fatalf("Write on a killed connection: %v (unavailable %v)", err, IsUnavailable(err))
	}
	t.Logf("error: %v", err)
	s.loadData = real
	if err := s.Write(ctx, testBatch(baseTS())); err != nil {
		t.Fatalf("Write after reconnecting: %v", err)
	}
	if n := count(t, s, "SELECT COUNT(*) FROM data"); n != 3 {
		t.Fatalf("data has %d rows, want 3", n)
	}
}
