package service

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"
	"github.com/redis/rueidis"

	"github.com/voltedge/voltedge/internal/history/historytest"
	"github.com/voltedge/voltedge/internal/keys"
	"github.com/voltedge/voltedge/internal/metrics"
	"github.com/voltedge/voltedge/internal/redisconn"
	"github.com/voltedge/voltedge/internal/redistest"
	"github.com/voltedge/voltedge/internal/wait"
	"github.com/voltedge/voltedge/netsrv/config"
	"github.com/voltedge/voltedge/scripts"
)

// proxy forwards TCP connections to a target until cut: then it closes
// every connection and refuses new ones, as a database that went away.
type proxy struct {
	ln     net.Listener
	target string
	mu     sync.Mutex
	cut    bool
	conns  map[net.Conn]bool
}

func newProxy(t *testing.T, target string) *proxy {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &proxy{ln: ln, target: target, conns: map[net.Conn]bool{}}
	t.Cleanup(func() { ln.Close(); p.setCut(true) })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			p.mu.Lock()
			if p.cut {
				p.mu.Unlock()
				c.Close()
				continue
			}
			up, err := net.Dial("tcp", target)
			if err != nil {
				p.mu.Unlock()
				c.Close()
				continue
			}
			p.conns[c], p.conns[up] = true, true
			p.mu.Unlock()
			go func() { io.Copy(up, c); up.Close(); c.Close() }()
			go func() { io.Copy(c, up); up.Close(); c.Close() }()
		}
	}()
	return p
}

func (p *proxy) setCut(cut bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cut = cut
	if cut {
		for c := range p.conns {
			c.Close()
		}
		p.conns = map[net.Conn]bool{}
	}
}

// rig is a private Redis with the Lua library, a database of the test's own
// behind a proxy, and netsrv's configuration.
type rig struct {
	t      *testing.T
	redis  *redistest.Server
	rc     rueidis.Client
	db     *sql.DB // direct, for counting
	proxy  *proxy
	cfg    *config.Config
	addr   chan net.Addr
	stop   func()
	health string
}

func newRig(t *testing.T, extra string) *rig {
	srv := redistest.Start(t)
	// netsrv blocks on one connection per stream, as in main.go.
	rc, err := redisconn.New(srv.URL(), redisconn.Options{ClientName: "netsrv", BlockingPool: len(config.AllStreams) + 1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(rc.Close)
	redistest.Do(t, rc, "FUNCTION", "LOAD", scripts.Source())
	dsn := historytest.DSN(t)
	var mc *mysql.Config
	mc, err = mysql.ParseDSN(dsn)
	if err != nil {
		t.Fatal(err)
	}
	db, err := sql.Open("mysql", dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	p := newProxy(t, mc.Addr)
	mc.Addr = p.ln.Addr().String()
	mc.Timeout = time.Second
	doc := fmt.Sprintf(`site = "t1"
listen = "127.0.0.1:0"
[mysql]
dsn = %q
[spool]
dir = %q
sync_every = "50ms"
[upload]
batch_entries = 100
retry_every = "200ms"
trim_every = "1s"
%s`, mc.FormatDSN(), t.TempDir(), extra)
	cfg, err := config.Parse("netsrv.toml", []byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	return &rig{t: t, redis: srv, rc: rc, db: db, proxy: p, cfg: cfg}
}

// start runs netsrv until stop (or the test's end).
func (r *rig) start() {
	ctx, cancel := context.WithCancel(context.Background())
	addr := make(chan net.Addr, 1)
	done := make(chan error, 1)
	go func() {
		log := slog.New(slog.DiscardHandler)
		if testing.Verbose() {
			log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
		}
		done <- Run(ctx, r.cfg, Deps{Redis: r.rc, Log: log, Metrics: metrics.NewRegistry(),
			Ready: func(a net.Addr) { addr <- a }})
	}()
	select {
	case a := <-addr:
		r.health = "http://" + a.String() + "/health"
	case err := <-done:
		r.t.Fatalf("netsrv stopped: %v", err)
	case <-time.After(10 * time.Second):
		r.t.Fatal("netsrv did not listen")
	}
	var once sync.Once
	r.stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				r.t.Errorf("netsrv: %v", err)
			}
		})
	}
	r.t.Cleanup(r.stop)
	until(r.t, "the data stream's group", 10*time.Second, func() bool {
		n, _ := r.rc.Do(context.Background(), r.rc.B().Exists().Key(keys.DataSamples).Build()).AsInt64()
		return n == 1
	})
}

// sync sends n responses of channel ch with 3 points each, from ts0 on.
func (r *rig) sync(ch string, ts0, n int) {
	for i := 0; i < n; i++ {
		ts := strconv.Itoa(ts0 + i)
		err := r.rc.Do(context.Background(), r.rc.B().Fcall().Function(scripts.FnSyncBatch).Numkeys(0).
			Arg(ch, ts, "3", "1", strconv.Itoa(i), "2", "2.5", "3", "-1").Build()).Error()
		if err != nil {
			r.t.Fatal(err)
		}
	}
}

func (r *rig) count(q string) int {
	var n int
	if err := r.db.QueryRow(q).Scan(&n); err != nil {
		return -1
	}
	return n
}

func (r *rig) getHealth() Health {
	var h Health
	resp, err := http.Get(r.health)
	if err != nil {
		r.t.Fatal(err)
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(&h); err != nil {
		r.t.Fatal(err)
	}
	return h
}

// TestUploadThroughOutage: values and events reach MySQL; while MySQL is
// gone they go to the spool (and Redis's backlog stays small); when it is
// back everything arrives, once.
func TestUploadThroughOutage(t *testing.T) {
	r := newRig(t, "")
	redistest.Do(t, r.rc, "HSET", keys.Mapping, "1001:1", "meter:voltage")
	r.start()
	r.sync("1001", 1_700_000_000_000, 200)
	redistest.Do(t, r.rc, "XADD", keys.ConnectionEvents, "*", "event", "online", "channel", "1001", "registration", "DTU1",
		"remote", "10.0.0.1:5000", "ts", "1700000000000")
	until(t, "600 rows", 20*time.Second, func() bool { return r.count("SELECT COUNT(*) FROM data WHERE site='t1'") == 600 })
	until(t, "the event", 10*time.Second, func() bool {
		return r.count("SELECT COUNT(*) FROM connection_history WHERE site='t1'") == 1 &&
			r.count("SELECT COUNT(*) FROM channels WHERE site='t1' AND state='online'") == 1
	})
	if n := r.count("SELECT COUNT(*) FROM data WHERE model='meter' AND point_name='voltage'"); n != 200 {
		t.Fatalf("%d mapped rows, want 200", n)
	}

	r.proxy.setCut(true)
	r.sync("1001", 1_700_000_001_000, 1000)
	until(t, "the rows in the spool", 20*time.Second, func() bool {
		h := r.getHealth()
		return h.MySQL == "down" && h.Upload.Spooled >= 3000 && h.Streams["data"].Lag == 0 && h.Streams["data"].Pending == 0
	})
	if h := r.getHealth(); h.Status != "degraded" || h.Spool.Pending == 0 {
		t.Fatalf("health during the outage: %+v", h)
	}
	until(t, "netsrv:status says MySQL is down", 10*time.Second, func() bool {
		m, _ := r.rc.Do(context.Background(), r.rc.B().Hgetall().Key(keys.NetsrvStatus).Build()).AsStrMap()
		return m["mysql"] == "down" && m["spool_pending"] != "0" && m["backlog_data"] == "0 0"
	})
	r.proxy.setCut(false)
	until(t, "3,600 rows", 30*time.Second, func() bool { return r.count("SELECT COUNT(*) FROM data WHERE site='t1'") == 3600 })
	until(t, "an empty spool", 10*time.Second, func() bool { h := r.getHealth(); return h.Spool.Pending == 0 && h.MySQL == "up" })
	ev, err := r.rc.Do(context.Background(), r.rc.B().Xrange().Key(keys.NetsrvEvents).Start("-").End("+").Build()).AsXRange()
	if err != nil || len(ev) != 2 || ev[0].FieldValues["event"] != "db_unreachable" || ev[1].FieldValues["event"] != "db_back" {
		t.Fatalf("netsrv:events %v %v, want db_unreachable then db_back", ev, err)
	}
	// The data stream is trimmed to what the group acknowledged.
	until(t, "the data stream trimmed", 10*time.Second, func() bool {
		n, _ := r.rc.Do(context.Background(), r.rc.B().Xlen().Key(keys.DataSamples).Build()).AsInt64()
		return n == 0
	})
}

// TestRestartDuringCatchUp: netsrv stops while it uploads its spool; started
// again it goes on from where it stopped, and no row is lost or doubled.
func TestRestartDuringCatchUp(t *testing.T) {
	r := newRig(t, "")
	r.start()
	r.proxy.setCut(true)
	r.sync("1001", 1_700_000_000_000, 3000)
	until(t, "everything spooled", 30*time.Second, func() bool {
		h := r.getHealth()
		return h.Upload.Spooled == 9000
	})
	r.proxy.setCut(false)
	until(t, "the upload under way", 30*time.Second, func() bool { return r.count("SELECT COUNT(*) FROM data") > 0 })
	r.stop()
	before := r.count("SELECT COUNT(*) FROM data")
	r.start()
	until(t, "9,000 rows", 30*time.Second, func() bool { return r.count("SELECT COUNT(*) FROM data") == 9000 })
	h := r.getHealth()
	if h.Upload.Drained > uint64(9000-before)+2000 {
		t.Fatalf("after the restart %d rows were uploaded again, %d were left: a full re-send", h.Upload.Drained, 9000-before)
	}
	t.Logf("%d rows uploaded before the stop, %d after", before, h.Upload.Drained)
}

// TestRedisRestart: Redis comes back empty; netsrv creates its groups again
// (so the data stream exists again) and uploads what follows.
func TestRedisRestart(t *testing.T) {
	r := newRig(t, "")
	r.start()
	r.sync("1001", 1_700_000_000_000, 10)
	until(t, "30 rows", 20*time.Second, func() bool { return r.count("SELECT COUNT(*) FROM data") == 30 })
	r.redis.Restart(t)
	until(t, "Redis back", 10*time.Second, func() bool {
		return r.rc.Do(context.Background(), r.rc.B().Ping().Build()).Error() == nil
	})
	redistest.Do(t, r.rc, "FUNCTION", "LOAD", "REPLACE", scripts.Source())
	until(t, "the data stream again", 20*time.Second, func() bool {
		n, _ := r.rc.Do(context.Background(), r.rc.B().Exists().Key(keys.DataSamples).Build()).AsInt64()
		return n == 1
	})
	r.sync("1001", 1_700_000_001_000, 10)
	until(t, "60 rows", 20*time.Second, func() bool { return r.count("SELECT COUNT(*) FROM data") == 60 })
}

// until waits up to within for cond.
func until(t *testing.T, what string, within time.Duration, cond func() bool) {
	t.Helper()
	wait.For(t, within, what, func() error { return wait.Check(cond(), "not yet") })
}

// TestSpoolCap: MySQL is gone for longer than the spool holds: the oldest
// segment is dropped, and that is reported in netsrv:events, /health and
// netsrv:status; what was not dropped is uploaded when MySQL is back.
func TestSpoolCap(t *testing.T) {
	r := newRig(t, "")
	r.cfg.Spool.SegmentBytes, r.cfg.Spool.MaxBytes = 64<<10, 256<<10
	r.start()
	r.proxy.setCut(true)
	r.sync("1001", 1_700_000_000_000, 6000) // 18,000 rows, several times the cap
	until(t, "a dropped segment", 30*time.Second, func() bool { return r.getHealth().Spool.DroppedRecords > 0 })
	ev, err := r.rc.Do(context.Background(), r.rc.B().Xrange().Key(keys.NetsrvEvents).Start("-").End("+").Build()).AsXRange()
	if err != nil {
		t.Fatal(err)
	}
	dropped := 0
	for _, e := range ev {
		if e.FieldValues["event"] == "spool_dropped" {
			dropped++
		}
	}
	if dropped == 0 {
		t.Fatalf("no spool_dropped event in %v", ev)
	}
	until(t, "everything read from Redis", 30*time.Second, func() bool { return r.getHealth().Upload.Spooled == 18000 })
	h := r.getHealth()
	r.proxy.setCut(false)
	until(t, "the spool uploaded", 30*time.Second, func() bool { return r.getHealth().Spool.Pending == 0 })
	stored := r.count("SELECT COUNT(*) FROM data")
	if stored <= 0 || stored >= 18000 {
		t.Fatalf("%d rows stored of 18,000 with the spool capped", stored)
	}
	t.Logf("spool capped at %d bytes: %d of 18,000 rows stored, %d spool records dropped (%d events)", r.cfg.Spool.MaxBytes, stored, h.Spool.DroppedRecords, dropped)
}

// TestDamagedSpoolStarts: a spool with a torn segment (a power cut) does not
// stop netsrv: the damage is reported and what is readable is uploaded.
func TestDamagedSpoolStarts(t *testing.T) {
	r := newRig(t, "")
	r.start()
	r.proxy.setCut(true)
	r.sync("1001", 1_700_000_000_000, 100)
	until(t, "300 rows spooled", 20*time.Second, func() bool { return r.getHealth().Upload.Spooled == 300 })
	r.stop()
	segs, _ := filepath.Glob(filepath.Join(r.cfg.Spool.Dir, "*.seg"))
	if len(segs) == 0 {
		t.Fatal("no segment")
	}
	f, err := os.OpenFile(segs[len(segs)-1], os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.Write([]byte{0x13, 0x37, 0, 0, 0xff, 0xff, 0xff}) // a record torn by the power cut
	f.Close()
	r.proxy.setCut(false)
	r.start()
	until(t, "300 rows", 20*time.Second, func() bool { return r.count("SELECT COUNT(*) FROM data") == 300 })
	ev, err := r.rc.Do(context.Background(), r.rc.B().Xrange().Key(keys.NetsrvEvents).Start("-").End("+").Build()).AsXRange()
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, e := range ev {
		found = found || e.FieldValues["event"] == "spool_damaged"
	}
	if !found {
		t.Fatalf("no spool_damaged event in %v", ev)
	}
}
