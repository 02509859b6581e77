package api

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"log/slog"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	_ "github.com/go-sql-driver/mysql"
	"github.com/xuri/excelize/v2"

	"github.com/voltedge/voltedge/internal/history"
	"github.com/voltedge/voltedge/internal/history/historytest"
)

// histEnv is an API on a test database of its own, with a writable store
// to seed it.
type histEnv struct {
	*env
	w    *history.Store
	base int64 // an hour into today (UTC), Unix ms
}

// newHistEnv creates a database with the history tables and an API whose
// [history] reads it as site "box1"; extra is added to [history].
func newHistEnv(t *testing.T, extra string) *histEnv {
	t.Helper()
	dsn := historytest.DSN(t)
	w, err := history.Open(context.Background(), dsn, history.Options{Site: "box1", Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { w.Close() })
	e := newEnv(t, "[history]\nmysql_dsn = "+strconv.Quote(dsn)+"\nsite = \"box1\"\n"+extra)
	t.Cleanup(func() { e.app.Shutdown() })
	now := time.Now().UTC()
	base := time.Date(now.Year(), now.Month(), now.Day(), 0, 0, 0, 0, time.UTC).UnixMilli() + 3_600_000
	return &histEnv{env: e, w: w, base: base}
}

func (h *histEnv) write(t *testing.T, b *history.Batch) {
	t.Helper()
	if err := h.w.Write(context.Background(), b); err != nil {
		t.Fatal(err)
	}
}

// seed writes pcs1/p (numeric, one sample a second for 10 minutes:
// 0.5, 1.5, …), pcs1/s (text) and a sample of another site.
func (h *histEnv) seed(t *testing.T) {
	t.Helper()
	var b history.Batch
	for i := range 600 {
		b.Samples = append(b.Samples, history.Sample{Channel: "1001", Point: "T1", Model: "pcs1", PointName: "p",
			Value: strconv.FormatFloat(float64(i)+0.5, 'f', -1, 64), TS: h.base + int64(i)*1000})
	}
	b.Samples = append(b.Samples,
		history.Sample{Channel: "1001", Point: "S1", Model: "pcs1", PointName: "s", Value: "on", TS: h.base},
		history.Sample{Channel: "1001", Point: "S1", Model: "pcs1", PointName: "s", Value: `say "hi", bye`, TS: h.base + 1000},
		history.Sample{Channel: "1001", Point: "Q1", Model: "pcs1", PointName: "q", Value: "00012.50", TS: h.base + 2000},
	)
	h.write(t, &b)
}

func (h *histEnv) get(t *testing.T, path string) reply {
	t.Helper()
	return h.do(t, "GET", path, "")
}

func TestHistoryRaw(t *testing.T) {
	h := newHistEnv(t, "")
	h.seed(t)
	r := h.get(t, fmt.Sprintf("/history?model=pcs1&point=p&from=%d&to=%d", h.base, h.base+5000)).ok(t, 200)
	rows := r.list(t, "rows")
	if len(rows) != 5 || r.body["truncated"] != false || r.body["step_ms"] != 0.0 || r.body["site"] != "box1" {
		t.Fatalf("raw: %s", r.raw)
	}
	first := rows[0].(map[string]any)
	if first["ts"] != float64(h.base) || first["value"] != "0.5" || first["count"] != 1.0 || first["min"] != nil {
		t.Fatalf("first row %v", first)
	}
	r = h.get(t, fmt.Sprintf("/history?model=pcs1&point=p&from=%d&to=%d&limit=3", h.base, h.base+5000)).ok(t, 200)
	if len(r.list(t, "rows")) != 3 || r.body["truncated"] != true {
		t.Fatalf("limit: %s", r.raw)
	}
	// The exact text, leading zeros and all.
	r = h.get(t, fmt.Sprintf("/history?model=pcs1&point=q&from=%d&to=%d", h.base, h.base+5000)).ok(t, 200)
	if v := r.list(t, "rows")[0].(map[string]any)["value"]; v != "00012.50" {
		t.Fatalf("value %v", v)
	}
	// Another site's rows are not shown.
	h2 := history.Batch{Samples: []history.Sample{{Channel: "1001", Point: "T1", Model: "pcs1", PointName: "p", Value: "99", TS: h.base + 500}}}
	o, err := history.Open(context.Background(), mustDSN(t, h), history.Options{Site: "box2", Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer o.Close()
	if err := o.Write(context.Background(), &h2); err != nil {
		t.Fatal(err)
	}
	r = h.get(t, fmt.Sprintf("/history?model=pcs1&point=p&from=%d&to=%d", h.base, h.base+1000)).ok(t, 200)
	if rows := r.list(t, "rows"); len(rows) != 1 {
		t.Fatalf("another site's sample shows: %s", r.raw)
	}
	// Default range: the last 24 h.
	r = h.get(t, "/history?model=pcs1&point=p").ok(t, 200)
	if to, from := r.body["to"].(float64), r.body["from"].(float64); to-from != 24*3600*1000 || to < float64(time.Now().Add(-time.Minute).UnixMilli()) {
		t.Fatalf("default range %v..%v", from, to)
	}
}

func mustDSN(t *testing.T, h *histEnv) string {
	return h.deps.Config.History.MySQLDSN
}

func TestHistoryDownsampled(t *testing.T) {
	h := newHistEnv(t, "")
	h.seed(t)
	r := h.get(t, fmt.Sprintf("/history?model=pcs1&point=p&from=%d&to=%d&step=1m", h.base, h.base+600_000)).ok(t, 200)
	rows := r.list(t, "rows")
	if len(rows) != 10 || r.body["step_ms"] != 60000.0 {
		t.Fatalf("buckets: %s", r.raw)
	}
	for i, x := range rows {
		b := x.(map[string]any)
		lo := float64(i*60) + 0.5
		if b["ts"] != float64(h.base+int64(i)*60_000) || b["min"] != lo || b["max"] != lo+59 || b["avg"] != lo+29.5 || b["count"] != 60.0 || b["value"] != nil {
			t.Fatalf("bucket %d: %v", i, b)
		}
	}
	// Text samples have no numeric aggregate.
	r = h.get(t, fmt.Sprintf("/history?model=pcs1&point=s&from=%d&to=%d&step=1h", h.base, h.base+600_000)).ok(t, 200)
	if len(r.list(t, "rows")) != 0 {
		t.Fatalf("text buckets: %s", r.raw)
	}
}

func TestHistoryParameters(t *testing.T) {
	h := newHistEnv(t, "")
	long := strconv.FormatInt(401*24*3600*1000, 10)
	for _, tc := range []struct{ path, msg string }{
		{"/history?point=p", "model is required"},
		{"/history?model=pcs1", "point is required"},
		{"/history?model=a:b&point=p", `invalid model "a:b"`},
		{"/history?model=pcs1&point=a%20b", `invalid point "a b"`},
		{"/history?model=pcs1&point=p&from=x", `from "x" must be a time in Unix milliseconds`},
		{"/history?model=pcs1&point=p&to=-5", `to "-5" must be a time in Unix milliseconds`},
		{"/history?model=pcs1&point=p&from=10&to=10", "from (10) must be before to (10)"},
		{"/history?model=pcs1&point=p&from=0&to=" + long, "spans more than 400 days"},
		{"/history?model=pcs1&point=p&step=500ms", `step "500ms" must be a duration from 1s`},
		{"/history?model=pcs1&point=p&step=5", `step "5" must be a duration`},
		{"/history?model=pcs1&point=p&limit=0", `limit "0" must be an integer from 1 to 50000`},
		{"/history?model=pcs1&point=p&limit=50001", `limit "50001"`},
		{"/history/events?channel=a*b", `invalid channel "a*b"`},
		{"/history/events?limit=10001", `limit "10001" must be an integer from 1 to 10000`},
		{"/history/alarms?from=2&to=1", "from (2) must be before to (1)"},
		{"/export?format=pdf&model=pcs1", `format "pdf" must be csv or xlsx`},
		{"/export?format=csv", "model is required"},
		{"/export?model=pcs1&point=a/b", `invalid point "a/b"`},
		{"/export?model=pcs1&from=0&to=" + long, "spans more than 400 days"},
	} {
		h.get(t, tc.path).fails(t, 400, "bad_request", tc.msg)
	}
}

func TestHistoryEventsAndAlarms(t *testing.T) {
	h := newHistEnv(t, "")
	var b history.Batch
	for i := range 5 {
		ch := "1001"
		if i%2 == 1 {
			ch = "1002"
		}
		b.ConnEvents = append(b.ConnEvents, history.ConnEvent{EventID: fmt.Sprintf("%d-0", h.base+int64(i)), Event: "online",
			Channel: ch, Listener: "tcp-502", Registration: "REG", Remote: "10.0.0.7:4000", Reason: "<b>x</b>", TS: h.base + int64(i)*1000})
	}
	b.Alarms = []history.Alarm{
		{Event: history.AlarmRaise, Model: "pcs1", Point: "temp", Kind: "high", Level: "major", Value: "81.5", Limit: "80", RaisedTS: h.base},
		{Event: history.AlarmClear, Model: "pcs1", Point: "temp", RaisedTS: h.base, TS: h.base + 5000},
		{Event: history.AlarmAck, Model: "pcs1", Point: "temp", RaisedTS: h.base, TS: h.base + 7000, User: "alice"},
		{Event: history.AlarmRaise, Model: "pcs2", Point: "soc", Kind: "low", Level: "minor", Value: "4", Limit: "5", RaisedTS: h.base + 9000},
	}
	h.write(t, &b)

	r := h.get(t, "/history/events?limit=2").ok(t, 200)
	evs := r.list(t, "events")
	if len(evs) != 2 || r.body["more"] != true {
		t.Fatalf("events: %s", r.raw)
	}
	e0 := evs[0].(map[string]any)
	if e0["ts"] != float64(h.base+4000) || e0["channel"] != "1001" || e0["reason"] != "<b>x</b>" || e0["id"] != fmt.Sprintf("%d-0", h.base+4) {
		t.Fatalf("newest event %v", e0)
	}
	// The next page: older than the oldest seen.
	last := evs[1].(map[string]any)["ts"].(float64)
	r = h.get(t, fmt.Sprintf("/history/events?to=%d&limit=10", int64(last))).ok(t, 200)
	if len(r.list(t, "events")) != 3 || r.body["more"] != false {
		t.Fatalf("older page: %s", r.raw)
	}
	r = h.get(t, "/history/events?channel=1002").ok(t, 200)
	if len(r.list(t, "events")) != 2 {
		t.Fatalf("channel 1002: %s", r.raw)
	}

	r = h.get(t, "/history/alarms").ok(t, 200)
	al := r.list(t, "alarms")
	if len(al) != 2 {
		t.Fatalf("alarms: %s", r.raw)
	}
	a1 := al[1].(map[string]any)
	if a1["model"] != "pcs1" || a1["value"] != "81.5" || a1["limit"] != "80" || a1["cleared_ts"] != float64(h.base+5000) ||
		a1["acknowledged_by"] != "alice" || a1["acknowledged_ts"] != float64(h.base+7000) || al[0].(map[string]any)["cleared_ts"] != 0.0 {
		t.Fatalf("alarms: %s", r.raw)
	}
	r = h.get(t, fmt.Sprintf("/history/alarms?from=%d&to=%d", h.base+1, h.base+10000)).ok(t, 200)
	if len(r.list(t, "alarms")) != 1 {
		t.Fatalf("alarm range: %s", r.raw)
	}
}

// readCSV parses an export.
func readCSV(t *testing.T, raw string) [][]string {
	t.Helper()
	recs, err := csv.NewReader(strings.NewReader(raw)).ReadAll()
	if err != nil {
		t.Fatalf("CSV: %v\n%s", err, raw)
	}
	return recs
}

func TestExportCSV(t *testing.T) {
	h := newHistEnv(t, "")
	h.seed(t)
	path := fmt.Sprintf("/export?model=pcs1&from=%d&to=%d", h.base, h.base+600_000)
	r := h.get(t, path).ok(t, 200)
	if ct := r.resp.Header.Get("Content-Type"); ct != "text/csv; charset=utf-8" {
		t.Fatalf("content type %q", ct)
	}
	cd := r.resp.Header.Get("Content-Disposition")
	if !strings.HasPrefix(cd, `attachment; filename="voltedge_box1_pcs1_`) || !strings.HasSuffix(cd, `.csv"`) {
		t.Fatalf("disposition %q", cd)
	}
	recs := readCSV(t, r.raw)
	if !slices.Equal(recs[0], ExportColumns) || len(recs) != 1+603 {
		t.Fatalf("header %v, %d records", recs[0], len(recs))
	}
	// Ordered by point name and time: p (600), q, s (2).
	wantFirst := []string{time.UnixMilli(h.base).UTC().Format("2006-01-02T15:04:05.000Z"), strconv.FormatInt(h.base, 10), "pcs1", "p", "0.5", "1001", "T1"}
	if !slices.Equal(recs[1], wantFirst) {
		t.Fatalf("first row %q, want %q", recs[1], wantFirst)
	}
	if recs[601][4] != "00012.50" || recs[603][4] != `say "hi", bye` || recs[603][3] != "s" {
		t.Fatalf("rows %q %q", recs[601], recs[603])
	}
	// Python's csv module reads the same records.
	if py, err := exec.LookPath("python3"); err == nil {
		cmd := exec.Command(py, "-c", "import csv, json, sys; print(json.dumps(list(csv.reader(sys.stdin))))")
		cmd.Stdin = strings.NewReader(r.raw)
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("python3: %v", err)
		}
		var pyRecs [][]string
		if err := json.Unmarshal(out, &pyRecs); err != nil {
			t.Fatal(err)
		}
		if !slices.EqualFunc(pyRecs, recs, slices.Equal) {
			t.Fatalf("python3 reads other records: %d vs %d", len(pyRecs), len(recs))
		}
	} else {
		t.Log("python3 not found: the export is not read back with Python's csv module")
	}
	// One point.
	r = h.get(t, fmt.Sprintf("/export?format=csv&model=pcs1&point=s&from=%d&to=%d", h.base, h.base+600_000)).ok(t, 200)
	if recs := readCSV(t, r.raw); len(recs) != 3 || recs[2][4] != `say "hi", bye` {
		t.Fatalf("point s: %q", recs)
	}
	if cd := r.resp.Header.Get("Content-Disposition"); !strings.Contains(cd, "_pcs1_s_") {
		t.Fatalf("disposition %q", cd)
	}
	// HEAD says an export can be made, without making one.
	hd := h.do(t, "HEAD", path+"&format=xlsx", "").ok(t, 200)
	if hd.raw != "" || hd.resp.Header.Get("Content-Type") != xlsxType || !strings.HasSuffix(hd.resp.Header.Get("Content-Disposition"), `.xlsx"`) {
		t.Fatalf("HEAD: %q %v", hd.raw, hd.resp.Header)
	}
	// Nothing in range: the header only.
	r = h.get(t, "/export?model=nothing").ok(t, 200)
	if recs := readCSV(t, r.raw); len(recs) != 1 {
		t.Fatalf("empty export: %q", recs)
	}
}

func TestExportCut(t *testing.T) {
	h := newHistEnv(t, "export_max_rows = 10\n")
	h.seed(t)
	path := fmt.Sprintf("/export?model=pcs1&from=%d&to=%d", h.base, h.base+600_000)
	recs := readCSV(t, h.get(t, path).ok(t, 200).raw)
	if len(recs) != 12 || recs[10][4] != "9.5" || !strings.HasPrefix(recs[11][0], "# cut: more than 10 rows") {
		t.Fatalf("cut export: %d records, last %q", len(recs), recs[len(recs)-1])
	}
	// Exactly the cap: not cut.
	recs = readCSV(t, h.get(t, fmt.Sprintf("/export?model=pcs1&point=p&from=%d&to=%d", h.base, h.base+10_000)).ok(t, 200).raw)
	if len(recs) != 11 || strings.HasPrefix(recs[10][0], "#") {
		t.Fatalf("export of exactly export_max_rows: %q", recs[len(recs)-1])
	}
	f := xlsxOf(t, h.get(t, path+"&format=xlsx").ok(t, 200).raw)
	rows, err := f.GetRows(sheetName)
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != 12 || !strings.HasPrefix(rows[11][0], "# cut: more than 10 rows") {
		t.Fatalf("cut xlsx: %d rows, last %q", len(rows), rows[len(rows)-1])
	}
}

func xlsxOf(t *testing.T, raw string) *excelize.File {
	t.Helper()
	f, err := excelize.OpenReader(bytes.NewReader([]byte(raw)))
	if err != nil {
		t.Fatalf("xlsx: %v", err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

func TestExportXLSX(t *testing.T) {
	h := newHistEnv(t, "")
	h.seed(t)
	r := h.get(t, fmt.Sprintf("/export?format=xlsx&model=pcs1&from=%d&to=%d", h.base, h.base+600_000)).ok(t, 200)
	if ct := r.resp.Header.Get("Content-Type"); ct != xlsxType {
		t.Fatalf("content type %q", ct)
	}
	if cd := r.resp.Header.Get("Content-Disposition"); !strings.HasSuffix(cd, `.xlsx"`) {
		t.Fatalf("disposition %q", cd)
	}
	f := xlsxOf(t, r.raw)
	rows, err := f.GetRows(sheetName)
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != 604 || !slices.Equal(rows[0], ExportColumns) {
		t.Fatalf("%d rows, header %q", len(rows), rows[0])
	}
	want := []string{time.UnixMilli(h.base).UTC().Format("2006-01-02T15:04:05.000Z"), strconv.FormatInt(h.base, 10), "pcs1", "p", "0.5", "1001", "T1"}
	if !slices.Equal(rows[1], want) || rows[603][4] != `say "hi", bye` {
		t.Fatalf("rows %q %q", rows[1], rows[603])
	}
	// Numeric values are numbers (a cell without a type), text stays text.
	for cell, typ := range map[string]excelize.CellType{"E2": excelize.CellTypeUnset, "B2": excelize.CellTypeUnset,
		"E604": excelize.CellTypeInlineString, "A2": excelize.CellTypeInlineString} {
		got, err := f.GetCellType(sheetName, cell)
		if err != nil || got != typ {
			t.Errorf("%s: type %v, want %v (%v)", cell, got, typ, err)
		}
	}
	if v, _ := f.GetCellValue(sheetName, "E602"); v != "12.5" {
		t.Errorf("E602 = %q, want the number 12.5", v)
	}
}

func TestHistoryUnavailableStore(t *testing.T) {
	// Not configured: 503 before any parameter is looked at.
	e := newEnv(t, "")
	for _, p := range []string{"/history", "/history/events", "/history/alarms", "/export?format=bogus"} {
		e.do(t, "GET", p, "").fails(t, 503, "unavailable", "history needs netsrv's MySQL store, which is not configured")
	}
	// Unreachable: 503 naming the cause, without the password.
	u := newEnv(t, "[history]\nmysql_dsn = \"modsrv:s3cret-pw@tcp(127.0.0.1:1)/voltedge\"\n")
	for _, p := range []string{"/history?model=m&point=p", "/history/events", "/history/alarms", "/export?model=m", "/export?model=m&format=xlsx"} {
		r := u.do(t, "GET", p, "").fails(t, 503, "unavailable", "history store unavailable: connect")
		if strings.Contains(r.raw, "s3cret") {
			t.Fatalf("the password shows: %s", r.raw)
		}
	}
	if r := u.do(t, "HEAD", "/export?model=m", ""); r.code != 503 {
		t.Fatalf("HEAD while unreachable: %d", r.code)
	}
	// Parameters are still checked first.
	u.do(t, "GET", "/history?model=m", "").fails(t, 400, "bad_request", "point is required")
}

func TestHistoryRecovers(t *testing.T) {
	dsn := historytest.DSN(t)
	e := newEnv(t, "[history]\nmysql_dsn = "+strconv.Quote(dsn)+"\nsite = \"box1\"\n")
	t.Cleanup(func() { e.app.Shutdown() })
	path := "/history?model=m&point=p"
	e.do(t, "GET", path, "").fails(t, 503, "unavailable", "no history tables yet (netsrv creates them")
	// netsrv creates the tables: modsrv reads them once it tries again.
	w, err := history.Open(context.Background(), dsn, history.Options{Site: "box1", Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	deadline := time.Now().Add(patience)
	for {
		r := e.do(t, "GET", path, "")
		if r.code == 200 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("still %d: %s", r.code, r.raw)
		}
		time.Sleep(200 * time.Millisecond)
	}
	// A table gone later is 503 again, not 500.
	db, err := sql.Open("mysql", dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Exec("DROP TABLE data"); err != nil {
		t.Fatal(err)
	}
	e.do(t, "GET", path, "").fails(t, 503, "unavailable", "history store unavailable")
}
