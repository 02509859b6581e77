// Command netbench measures the upload path of netsrv on this machine
// against the local MariaDB/MySQL and a private redis-server:
//
//	ingest   rows/s into MySQL through history.Store.Write (batch size, writers)
//	catchup  drain rate of a spool holding an outage while new rows arrive
//	rss      peak RSS of the real netsrv binary draining a full spool
//	redis    Redis CPU per synced response with and without the data stream
//
// Every run creates its own database (ve_bench_<hex>) on -server and drops
// it at the end, and its own redis-server; nothing else is touched.
//
//	go build -o bin/ ./netsrv ./netsrv/netbench && bin/netbench -mode ingest,catchup,rss,redis
package main

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/go-sql-driver/mysql"

	"github.com/voltedge/voltedge/internal/history"
)

type options struct {
	modes   string
	server  string
	work    string
	bin     string
	repeat  int
	site    string
	ingest  ingestOptions
	catchup catchupOptions
	rss     rssOptions
	redis   redisOptions
}

func main() {
	var o options
	flag.StringVar(&o.modes, "mode", "ingest,catchup,rss,redis", "comma-separated measurements: ingest, catchup, rss, redis")
	flag.StringVar(&o.server, "server", "root@tcp(127.0.0.1:3306)/", "MySQL/MariaDB server DSN (no database: each run creates and drops its own)")
	flag.StringVar(&o.work, "workdir", "", "directory for spools and redis files (default: a temporary one under /tmp, removed)")
	flag.StringVar(&o.bin, "bin", "bin", "directory with the netsrv binary (rss)")
	flag.IntVar(&o.repeat, "repeat", 3, "repeats of each measurement")
	flag.StringVar(&o.site, "site", "bench", "site id of the rows")
	flag.StringVar(&o.ingest.batches, "ingest-batch", "2000,10000,20000", "ingest: rows per Write, comma-separated")
	flag.StringVar(&o.ingest.writers, "ingest-writers", "1,2,4", "ingest: concurrent writers, comma-separated")
	flag.IntVar(&o.ingest.rows, "ingest-rows", 1_000_000, "ingest: rows per run (each run starts with an empty database)")
	flag.DurationVar(&o.catchup.outage, "outage", 10*time.Minute, "catchup: outage spooled before MySQL comes back")
	flag.IntVar(&o.catchup.dtus, "dtus", 1000, "catchup: DTUs, one response of -points points per second each")
	flag.IntVar(&o.catchup.points, "points", 21, "catchup: points per response")
	flag.IntVar(&o.catchup.writers, "drain-writers", 0, "catchup: Uploader DrainWriters (0: its default)")
	flag.IntVar(&o.catchup.drainRows, "drain-rows", 0, "catchup: Uploader DrainRows (0: its default)")
	flag.DurationVar(&o.catchup.timeout, "catchup-timeout", 30*time.Minute, "catchup: give up when the spool is not drained by then")
	flag.Int64Var(&o.rss.spoolBytes, "rss-spool", 1000<<20, "rss: bytes of spool to fill before netsrv starts")
	flag.DurationVar(&o.rss.duration, "rss-duration", 90*time.Second, "rss: how long netsrv drains (it stops earlier when the spool is empty)")
	flag.IntVar(&o.redis.rate, "redis-rate", 2000, "redis: synced responses per second")
	flag.IntVar(&o.redis.groups, "redis-groups", 20, "redis: responses (21-point groups) per sync_batch call")
	flag.DurationVar(&o.redis.phase, "redis-phase", 10*time.Second, "redis: length of each A or B phase")
	flag.Parse()
	if err := run(o); err != nil {
		fmt.Fprintln(os.Stderr, "netbench:", err)
		os.Exit(1)
	}
}

func run(o options) error {
	if o.work == "" {
		d, err := os.MkdirTemp("", "netbench-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(d)
		o.work = d
	}
	fmt.Printf("netbench: %s, GOMAXPROCS from %d CPUs, workdir %s\n", time.Now().UTC().Format(time.RFC3339), numCPU(), o.work)
	for _, m := range strings.Split(o.modes, ",") {
		var err error
		switch strings.TrimSpace(m) {
		case "ingest":
			err = runIngest(o)
		case "catchup":
			err = runCatchup(o)
		case "rss":
			err = runRSS(o)
		case "redis":
			err = runRedis(o)
		default:
			err = fmt.Errorf("unknown mode %q", m)
		}
		if err != nil {
			return fmt.Errorf("%s: %w", m, err)
		}
	}
	return nil
}

// ---- databases ----

// benchDB is a database created for one run.
type benchDB struct {
	admin *sql.DB
	name  string
	dsn   string
}

func createDB(server string) (*benchDB, error) {
	cfg, err := mysql.ParseDSN(server)
	if err != nil {
		return nil, fmt.Errorf("-server: %w", err)
	}
	cfg.DBName = ""
	conn, err := mysql.NewConnector(cfg)
	if err != nil {
		return nil, err
	}
	admin := sql.OpenDB(conn)
	var raw [6]byte
	rand.Read(raw[:])
	name := "ve_bench_" + hex.EncodeToString(raw[:])
	if _, err := admin.Exec("CREATE DATABASE `" + name + "` CHARACTER SET utf8mb4"); err != nil {
		admin.Close()
		return nil, err
	}
	cfg.DBName = name
	return &benchDB{admin: admin, name: name, dsn: cfg.FormatDSN()}, nil
}

func (d *benchDB) drop() {
	if _, err := d.admin.Exec("DROP DATABASE IF EXISTS `" + d.name + "`"); err != nil {
		fmt.Fprintf(os.Stderr, "netbench: drop database %s: %v\n", d.name, err)
	}
	d.admin.Close()
}

func (d *benchDB) count() (int64, error) {
	var n int64
	err := d.admin.QueryRow("SELECT COUNT(*) FROM `" + d.name + "`.data").Scan(&n)
	return n, err
}

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func openStore(ctx context.Context, dsn, site string, conns int) (*history.Store, error) {
	return history.Open(ctx, dsn, history.Options{Site: site, MaxOpenConns: conns, Logger: quiet()})
}

// ---- rows ----

// pointNames are the 21 points of a simulated three-phase meter response.
var pointNames = []string{"ua", "ub", "uc", "ia", "ib", "ic", "pa", "pb", "pc", "p", "qa", "qb", "qc", "q",
	"pf", "f", "ep_imp", "ep_exp", "eq_imp", "eq_exp", "temp"}

// fleet generates the rows of dtus DTUs answering with points points every
// second: row i is point i%points of DTU (i/points)%dtus at second
// i/(points*dtus) after base, the order they arrive in.
type fleet struct {
	dtus, points int
	base         int64 // Unix ms of second 0
	channels     []string
	models       []string
	ids          []string
	names        []string
}

func newFleet(dtus, points int, base int64) *fleet {
	f := &fleet{dtus: dtus, points: points, base: base}
	for c := 0; c < dtus; c++ {
		f.channels = append(f.channels, strconv.Itoa(1000+c))
		f.models = append(f.models, "pm"+strconv.Itoa(1000+c))
	}
	for p := 0; p < points; p++ {
		f.ids = append(f.ids, strconv.Itoa(40001+2*p))
		f.names = append(f.names, pointNames[p%len(pointNames)]+suffix(p/len(pointNames)))
	}
	return f
}

func suffix(n int) string {
	if n == 0 {
		return ""
	}
	return "_" + strconv.Itoa(n)
}

func (f *fleet) perSecond() int { return f.dtus * f.points }

// sample returns row i.
func (f *fleet) sample(i int64) history.Sample {
	p := int(i % int64(f.points))
	c := int(i / int64(f.points) % int64(f.dtus))
	sec := i / int64(f.perSecond())
	v := float64((i*7919)%100000) / 100
	return history.Sample{Channel: f.channels[c], Point: f.ids[p], Model: f.models[c], PointName: f.names[p],
		Value: strconv.FormatFloat(v, 'f', 2, 64), TS: f.base + sec*1000 + int64(c)}
}

// fill appends rows [from, to) to b.
func (f *fleet) fill(b *history.Batch, from, to int64) {
	for i := from; i < to; i++ {
		b.Samples = append(b.Samples, f.sample(i))
	}
}

// ---- helpers ----

func intList(s string) ([]int, error) {
	var out []int
	for _, x := range strings.Split(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(x))
		if err != nil || n <= 0 {
			return nil, fmt.Errorf("%q is not a list of positive numbers", s)
		}
		out = append(out, n)
	}
	return out, nil
}

// span is the range of repeated measurements.
type span struct{ vals []float64 }

func (s *span) add(v float64) { s.vals = append(s.vals, v) }

func (s span) String() string {
	if len(s.vals) == 0 {
		return "-"
	}
	lo, hi, sum := s.vals[0], s.vals[0], 0.0
	for _, v := range s.vals {
		lo, hi, sum = min(lo, v), max(hi, v), sum+v
	}
	return fmt.Sprintf("%s-%s (mean %s, n=%d)", human(lo), human(hi), human(sum/float64(len(s.vals))), len(s.vals))
}

func human(v float64) string {
	switch {
	case v >= 100:
		return strconv.FormatFloat(v, 'f', 0, 64)
	case v >= 10:
		return strconv.FormatFloat(v, 'f', 1, 64)
	default:
		return strconv.FormatFloat(v, 'f', 2, 64)
	}
}
