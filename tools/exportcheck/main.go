// Command exportcheck measures modsrv's memory while it exports a large
// history: it fills a MySQL/MariaDB database with -rows samples of one model
// (through internal/history, as netsrv writes them; an existing fill of the
// same size is reused), starts a private redis-server and the modsrv binary
// on it, downloads GET /export as CSV and as Excel, and reports for each the
// rows or bytes received, the wall time and modsrv's peak resident memory
// (VmHWM of /proc/<pid>/status; modsrv is started afresh for each format).
//
//	make build && go run ./tools/exportcheck -rows 1000000
package main

import (
	"bufio"
	"bytes"
	"context"
	"database/sql"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/go-sql-driver/mysql"

	"github.com/voltedge/voltedge/internal/history"
	"github.com/voltedge/voltedge/internal/rig"
)

const (
	site  = "exportcheck"
	model = "plant"
)

func main() {
	var o options
	flag.StringVar(&o.bin, "bin", "bin", "directory with the modsrv binary")
	flag.StringVar(&o.server, "dsn", "root@tcp(127.0.0.1:3306)/", "MySQL/MariaDB server (the database name is -db)")
	flag.StringVar(&o.db, "db", "voltedge_exportcheck", "database to fill (created when absent; its site "+site+" is replaced)")
	flag.IntVar(&o.rows, "rows", 1_000_000, "samples to export")
	flag.IntVar(&o.points, "points", 10, "points of the model the samples are spread over")
	flag.StringVar(&o.formats, "formats", "csv,xlsx", "export formats to measure")
	flag.Parse()
	if err := run(o); err != nil {
		fmt.Fprintln(os.Stderr, "exportcheck:", err)
		os.Exit(1)
	}
}

type options struct {
	bin, server, db, formats string
	rows, points             int
}

func run(o options) error {
	ctx := context.Background()
	cfg, err := mysql.ParseDSN(o.server)
	if err != nil {
		return fmt.Errorf("-dsn: %w", err)
	}
	cfg.DBName = ""
	admin, err := sql.Open("mysql", cfg.FormatDSN())
	if err != nil {
		return err
	}
	defer admin.Close()
	if _, err := admin.ExecContext(ctx, "CREATE DATABASE IF NOT EXISTS `"+o.db+"` CHARACTER SET utf8mb4"); err != nil {
		return err
	}
	cfg.DBName = o.db
	dsn := cfg.FormatDSN()
	from, to, err := fill(ctx, dsn, o.rows, o.points)
	if err != nil {
		return err
	}

	dir, err := os.MkdirTemp("", "voltedge-exportcheck-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	redisPort, err := rig.FreePort()
	if err != nil {
		return err
	}
	redis := rig.NewRedis(dir, redisPort)
	if err := redis.Start(); err != nil {
		return err
	}
	defer redis.Stop(10 * time.Second)
	if err := redis.WaitReady(ctx, 5*time.Second); err != nil {
		return err
	}
	httpPort, err := rig.FreePort()
	if err != nil {
		return err
	}
	conf := filepath.Join(dir, "modsrv.toml")
	doc := fmt.Sprintf("redis_url = %q\nlisten = \"127.0.0.1:%d\"\nlog_level = \"warn\"\n[history]\nmysql_dsn = %q\nsite = %q\nexport_max_rows = %d\n",
		redis.URL(), httpPort, dsn, site, max(o.rows, 1))
	if err := os.WriteFile(conf, []byte(doc), 0o600); err != nil {
		return err
	}

	fmt.Printf("%s, %d cores, %s/%s; %d samples of %d points\n", rig.CPUModel(), runtime.NumCPU(), runtime.GOOS, runtime.GOARCH, o.rows, o.points)
	fmt.Printf("%-6s %10s %12s %9s %12s %12s %12s\n", "format", "rows", "bytes", "wall", "idle RSS MB", "peak RSS MB", "RSS after MB")
	for _, format := range strings.Split(o.formats, ",") {
		p := &rig.Proc{Name: "modsrv", Path: filepath.Join(o.bin, "modsrv"), Args: []string{"-config", conf}, Log: filepath.Join(dir, "modsrv.log")}
		if err := p.Start(); err != nil {
			return err
		}
		base := fmt.Sprintf("http://127.0.0.1:%d", httpPort)
		if err := waitHTTP(base+"/health", 15*time.Second); err != nil {
			p.Stop(5 * time.Second)
			log, _ := os.ReadFile(filepath.Join(dir, "modsrv.log"))
			return fmt.Errorf("modsrv did not start: %v\n%s", err, log)
		}
		// The history store opens on first use.
		if r, err := http.Get(base + "/history/alarms?limit=1"); err == nil {
			r.Body.Close()
		}
		time.Sleep(time.Second)
		idle, _ := memory(p.Pid())
		start := time.Now()
		rows, n, err := download(fmt.Sprintf("%s/export?format=%s&model=%s&from=%d&to=%d", base, format, model, from, to), format)
		wall := time.Since(start)
		rss, hwm := memory(p.Pid())
		p.Stop(10 * time.Second)
		if err != nil {
			return fmt.Errorf("%s export: %w", format, err)
		}
		rowText := strconv.Itoa(rows)
		if format != "csv" {
			rowText = "-"
		}
		fmt.Printf("%-6s %10s %12d %9s %12.1f %12.1f %12.1f\n", format, rowText, n, wall.Round(100*time.Millisecond), idle, hwm, rss)
		if format == "csv" && rows != o.rows {
			return fmt.Errorf("csv export has %d rows, want %d", rows, o.rows)
		}
	}
	return nil
}

// fill makes the database hold exactly rows samples of site, one per second
// per point ending an hour ago, and returns the range that covers them.
func fill(ctx context.Context, dsn string, rows, points int) (from, to int64, err error) {
	st, err := history.Open(ctx, dsn, history.Options{Site: site, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		return 0, 0, err
	}
	defer st.Close()
	db, err := sql.Open("mysql", dsn)
	if err != nil {
		return 0, 0, err
	}
	defer db.Close()
	perPoint := (rows + points - 1) / points
	end := (time.Now().Add(-time.Hour).UnixMilli() / 1000) * 1000
	var have int
	var lo, hi sql.NullInt64
	if err := db.QueryRowContext(ctx, "SELECT COUNT(*), MIN(ts), MAX(ts) FROM data WHERE site = ?", site).Scan(&have, &lo, &hi); err != nil {
		return 0, 0, err
	}
	if have == rows && lo.Valid && end-lo.Int64 < 300*24*3600*1000 {
		fmt.Printf("reusing %d samples\n", have)
		return lo.Int64, hi.Int64 + 1, nil
	}
	fmt.Printf("writing %d samples…\n", rows)
	if _, err := db.ExecContext(ctx, "DELETE FROM data WHERE site = ?", site); err != nil {
		return 0, 0, err
	}
	first := end - int64(perPoint)*1000
	b := &history.Batch{}
	n := 0
	t0 := time.Now()
	for i := 0; i < perPoint && n < rows; i++ {
		for p := 0; p < points && n < rows; p++ {
			v := 230 + float64((i*7+p*13)%1000)/100
			b.Samples = append(b.Samples, history.Sample{Channel: "1001", Point: "P" + strconv.Itoa(p), Model: model,
				PointName: "point_" + strconv.Itoa(p), Value: strconv.FormatFloat(v, 'f', 2, 64), TS: first + int64(i)*1000})
			n++
			if len(b.Samples) == 20_000 {
				if err := st.Write(ctx, b); err != nil {
					return 0, 0, err
				}
				b.Samples = b.Samples[:0]
			}
		}
	}
	if len(b.Samples) > 0 {
		if err := st.Write(ctx, b); err != nil {
			return 0, 0, err
		}
	}
	fmt.Printf("written in %s\n", time.Since(t0).Round(time.Second))
	return first, end, nil
}

func waitHTTP(url string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		r, err := http.Get(url)
		if err == nil {
			r.Body.Close()
			return nil
		}
		if time.Now().After(deadline) {
			return err
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// download reads the export; for CSV it counts the data rows.
func download(url, format string) (rows int, n int64, err error) {
	resp, err := http.Get(url)
	if err != nil {
		return 0, 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		b, _ := io.ReadAll(resp.Body)
		return 0, 0, fmt.Errorf("status %d: %s", resp.StatusCode, b)
	}
	if format != "csv" {
		n, err = io.Copy(io.Discard, resp.Body)
		return 0, n, err
	}
	br := bufio.NewReaderSize(resp.Body, 64<<10)
	for {
		line, err := br.ReadSlice('\n')
		n += int64(len(line))
		if len(line) > 0 && line[len(line)-1] == '\n' && !bytes.HasPrefix(line, []byte("time,")) {
			rows++
		}
		if err == io.EOF {
			return rows, n, nil
		}
		if err != nil && err != bufio.ErrBufferFull {
			return rows, n, err
		}
	}
}

// memory returns VmRSS and VmHWM of pid in MB (0 when it cannot be read).
func memory(pid int) (rss, hwm float64) {
	rss, hwm, _ = rig.Memory(pid)
	return rss, hwm
}
