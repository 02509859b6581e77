package api

import (
	"archive/zip"
	"bufio"
	"context"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/xuri/excelize/v2"

	"github.com/voltedge/voltedge/internal/history"
)

// ExportColumns are the columns of an export, in order.
var ExportColumns = []string{"time", "unix_ms", "model", "point", "value", "channel", "channel_point"}

// Export formats.
const (
	xlsxType  = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
	csvType   = "text/csv; charset=utf-8"
	timeRFC   = "2006-01-02T15:04:05.000Z07:00"
	sheetName = "history"
)

// An Excel export collects garbage every xlsxGCRows rows and returns
// memory to the system every xlsxFreeRows.
const (
	xlsxGCRows   = 2048
	xlsxFreeRows = 65536
)

// errExportCut stops an export at export_max_rows.
var errExportCut = errors.New("export cut")

// exportTime formats a sample time as UTC RFC 3339 with milliseconds.
func exportTime(ms int64) string { return time.UnixMilli(ms).UTC().Format(timeRFC) }

// cutNote is the text of the last row of an export cut at n rows.
func cutNote(n int) string {
	return fmt.Sprintf("# cut: more than %d rows (export_max_rows); narrow the range or choose a point", n)
}

// exportName is the attachment's file name: only [A-Za-z0-9_.-].
func exportName(site, model, point string, from, to int64, ext string) string {
	safe := func(s string) string {
		return strings.Map(func(r rune) rune {
			if r < 128 && (r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_' || r == '-') {
				return r
			}
			return '_'
		}, s)
	}
	day := func(ms int64) string { return time.UnixMilli(ms).UTC().Format("20060102T1504Z") }
	parts := []string{"voltedge", safe(site), safe(model)}
	if point != "" {
		parts = append(parts, safe(point))
	}
	parts = append(parts, day(from), day(to))
	return strings.Join(parts, "_") + "." + ext
}

func (s *server) export(c *fiber.Ctx) error {
	if s.hist == nil {
		return Errorf(http.StatusServiceUnavailable, notConfigured)
	}
	format := c.Query("format", "csv")
	if format != "csv" && format != "xlsx" {
		return Errorf(http.StatusBadRequest, "format %q must be csv or xlsx", clip(format))
	}
	model, err := idQuery(c, "model", "model id", true)
	if err != nil {
		return err
	}
	point, err := idQuery(c, "point", "point name within the model; empty: every point of the model", false)
	if err != nil {
		return err
	}
	from, to, err := timeRange(c, time.Now(), DefaultHistorySpan)
	if err != nil {
		return err
	}
	pctx, cancel := context.WithTimeout(c.UserContext(), openTimeout)
	defer cancel()
	st, err := s.hist.get(pctx)
	if err != nil {
		return err
	}
	if err := st.Ping(pctx); err != nil {
		return s.hist.unavailable(err)
	}
	name := exportName(st.Site(), model, point, from, to, format)
	c.Set(fiber.HeaderContentDisposition, `attachment; filename="`+name+`"`)
	c.Set(fiber.HeaderCacheControl, "no-store")
	// HEAD says whether an export can be made (the console asks before it
	// downloads) without making one.
	if c.Method() == fiber.MethodHead {
		c.Set(fiber.HeaderContentType, map[string]string{"csv": csvType, "xlsx": xlsxType}[format])
		return nil
	}
	select {
	case s.hist.exports <- struct{}{}:
	default:
		return Errorf(http.StatusTooManyRequests, "%d exports are running; try again when one has finished", MaxExports)
	}
	release := func() { <-s.hist.exports }
	maxRows := or(s.d.Config.History.ExportMaxRows, 1_000_000)
	q := history.Query{Model: model, Point: point, From: from, To: to, Limit: maxRows + 1}
	if format == "xlsx" {
		return s.exportXLSX(c, st, q, maxRows, release)
	}
	c.Set(fiber.HeaderContentType, csvType)
	c.Context().SetBodyStreamWriter(func(w *bufio.Writer) {
		defer release()
		ctx, cancel := context.WithTimeout(context.Background(), exportTimeout)
		defer cancel()
		if err := writeCSV(ctx, w, st, q, maxRows); err != nil {
			s.d.Log.Warn("export stopped", "format", "csv", "model", model, "point", point, "err", err)
		}
	})
	return nil
}

// writeCSV writes the header and rows of q to w, at most maxRows, then a
// note when the export was cut or failed. Values are the exact strings
// stored.
func writeCSV(ctx context.Context, w *bufio.Writer, st *history.Store, q history.Query, maxRows int) error {
	cw := csv.NewWriter(w)
	if err := cw.Write(ExportColumns); err != nil {
		return err
	}
	rec := make([]string, len(ExportColumns))
	n := 0
	var werr error
	err := st.ExportRows(ctx, q, func(r history.Row) error {
		if n == maxRows {
			return errExportCut
		}
		n++
		rec[0] = exportTime(r.TS)
		rec[1] = strconv.FormatInt(r.TS, 10)
		rec[2], rec[3], rec[4], rec[5], rec[6] = r.Model, r.PointName, r.Value, r.Channel, r.Point
		if werr = cw.Write(rec); werr != nil {
			return werr
		}
		return nil
	})
	if werr != nil {
		return werr // the client went away
	}
	note := ""
	switch {
	case errors.Is(err, errExportCut):
		note = cutNote(maxRows)
	case err != nil:
		note = "# export failed after " + strconv.Itoa(n) + " rows: " + clipMsg(strings.TrimPrefix(err.Error(), "history: "))
	}
	if note != "" {
		clear(rec)
		rec[0] = note
		cw.Write(rec)
	}
	cw.Flush()
	if e := cw.Error(); e != nil {
		return e
	}
	if errors.Is(err, errExportCut) {
		return nil
	}
	return err
}

// exportXLSX writes the rows of q into a sheet that excelize's stream
// writer keeps in a temporary file (its memory stays at one 16 MiB chunk),
// then zips the workbook straight into the response. The sheet is complete
// before the first byte is sent, so a failed read still answers an error.
// release is called when the export has ended.
func (s *server) exportXLSX(c *fiber.Ctx, st *history.Store, q history.Query, maxRows int, release func()) error {
	ok := false
	defer func() {
		if !ok {
			release()
		}
	}()
	// excelize keeps the sheet in memory when it cannot create its
	// temporary file: refuse instead.
	if err := tmpDirOK(s.d.Config.History.ExportTmpDir); err != nil {
		s.d.Log.Error("export: temporary directory not writable", "err", err)
		return Errorf(http.StatusInternalServerError, "the Excel export cannot write its temporary file (export_tmp_dir): %s", clipMsg(err.Error()))
	}
	ctx, cancel := context.WithTimeout(context.Background(), exportTimeout)
	defer cancel()
	f := excelize.NewFile(excelize.Options{TmpDir: s.d.Config.History.ExportTmpDir})
	defer func() {
		if !ok {
			f.Close()
		}
	}()
	if err := f.SetSheetName("Sheet1", sheetName); err != nil {
		return err
	}
	sw, err := f.NewStreamWriter(sheetName)
	if err != nil {
		return err
	}
	for i, w := range []float64{26, 15, 16, 16, 14, 12, 14} {
		if err := sw.SetColWidth(i+1, i+1, w); err != nil {
			return err
		}
	}
	if err := sw.SetPanes(&excelize.Panes{Freeze: true, YSplit: 1, TopLeftCell: "A2", ActivePane: "bottomLeft"}); err != nil {
		return err
	}
	header := make([]any, len(ExportColumns))
	for i, h := range ExportColumns {
		header[i] = h
	}
	if err := sw.SetRow("A1", header); err != nil {
		return err
	}
	row := 1
	vals := make([]any, len(ExportColumns))
	cell := make([]byte, 0, 16)
	n := 0
	var serr error
	err = st.ExportRows(ctx, q, func(r history.Row) error {
		if n == maxRows {
			return errExportCut
		}
		n++
		row++
		vals[0] = exportTime(r.TS)
		vals[1] = r.TS
		vals[2], vals[3] = r.Model, r.PointName
		vals[4] = xlsxValue(r.Value)
		vals[5], vals[6] = r.Channel, r.Point
		cell = append(cell[:0], 'A')
		cell = strconv.AppendInt(cell, int64(row), 10)
		if serr = sw.SetRow(string(cell), vals); serr != nil {
			return serr
		}
		// The stream writer buffers 16 MiB of sheet XML in a bytes.Buffer
		// (which grows to 32 MiB, leaving the 16 MiB one behind) between
		// writes to its temporary file, and each row leaves garbage: left
		// to GOGC the heap would grow to twice that buffer. Collecting
		// every few MiB of rows, and giving the freed memory back now and
		// then, keeps modsrv's memory near the buffer's size.
		switch {
		case n%xlsxFreeRows == 0:
			debug.FreeOSMemory()
		case n%xlsxGCRows == 0:
			runtime.GC()
		}
		return nil
	})
	if serr != nil {
		return fmt.Errorf("export: sheet: %w", serr)
	}
	switch {
	case errors.Is(err, errExportCut):
		if err := sw.SetRow("A"+strconv.Itoa(row+1), []any{cutNote(maxRows)}); err != nil {
			return err
		}
	case err != nil:
		return s.hist.fail(err)
	}
	if err := sw.Flush(); err != nil {
		return fmt.Errorf("export: sheet: %w", err)
	}
	c.Set(fiber.HeaderContentType, xlsxType)
	ok = true
	log := s.d.Log
	c.Context().SetBodyStreamWriter(func(w *bufio.Writer) {
		defer release()
		defer f.Close()
		// File.Write assembles the whole zip in a bytes.Buffer; a zip
		// writer on the response instead streams it (the buffer stays
		// empty). The sheet stays far below the 4 GiB from which excelize
		// would patch zip64 headers in that buffer.
		f.SetZipWriter(func(io.Writer) excelize.ZipWriter { return zip.NewWriter(w) })
		if err := f.Write(w); err != nil {
			log.Warn("export stopped", "format", "xlsx", "model", q.Model, "point", q.Point, "err", err)
			return
		}
		w.Flush()
	})
	return nil
}

// xlsxValue is a stored value as a number when it is one, else the text.
func xlsxValue(v string) any {
	f, err := strconv.ParseFloat(v, 64)
	if err != nil || math.IsInf(f, 0) || math.IsNaN(f) {
		return v
	}
	return f
}

// tmpDirOK reports whether dir (empty: the system's) is a writable directory.
func tmpDirOK(dir string) error {
	if dir == "" {
		dir = os.TempDir()
	}
	f, err := os.CreateTemp(dir, "modsrv-export-check-")
	if err != nil {
		return err
	}
	name := f.Name()
	f.Close()
	return os.Remove(name)
}
