package main

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/voltedge/voltedge/internal/rig"
)

type rssOptions struct {
	spoolBytes int64
	duration   time.Duration
}

// runRSS fills a spool to -rss-spool bytes, starts the real netsrv binary
// on it (with a private redis-server and its own database) and samples its
// VmRSS and VmHWM while it drains.
func runRSS(o options) error {
	var peak, hwm, rate span
	for r := 0; r < o.repeat; r++ {
		res, err := rssOnce(o, r)
		if err != nil {
			return err
		}
		fmt.Printf("rss run %d: spool %d MB, netsrv drained %d rows in %.1fs (%.0f rows/s), peak VmRSS %.1f MB, VmHWM %.1f MB\n",
			r+1, res.spoolBytes>>20, res.drained, res.took.Seconds(), float64(res.drained)/res.took.Seconds(), res.peakRSS, res.hwm)
		peak.add(res.peakRSS)
		hwm.add(res.hwm)
		rate.add(float64(res.drained) / res.took.Seconds())
	}
	fmt.Printf("RSS spool=%dMB: netsrv peak VmRSS %s MB, VmHWM %s MB (target < 40 MB), drain %s rows/s\n",
		o.rss.spoolBytes>>20, peak, hwm, rate)
	return nil
}

type rssResult struct {
	spoolBytes, drained int64
	took                time.Duration
	peakRSS, hwm        float64
}

func rssOnce(o options, run int) (rssResult, error) {
	var res rssResult
	bin, err := filepath.Abs(filepath.Join(o.bin, "netsrv"))
	if err != nil {
		return res, err
	}
	if _, err := os.Stat(bin); err != nil {
		return res, fmt.Errorf("%s: %w (go build -o %s/ ./netsrv)", bin, err, o.bin)
	}
	db, err := createDB(o.server)
	if err != nil {
		return res, err
	}
	defer db.drop()
	dir := filepath.Join(o.work, fmt.Sprintf("rss-%d", run))
	os.RemoveAll(dir)
	defer os.RemoveAll(dir)
	spoolDir := filepath.Join(dir, "spool")
	if err := os.MkdirAll(spoolDir, 0o755); err != nil {
		return res, err
	}

	// Rows of the last two hours until the spool holds spoolBytes.
	f := newFleet(1000, 21, time.Now().Add(-2*time.Hour).UnixMilli())
	st, err := fillSpool(spoolDir, f, 1<<40, 1<<30, o.rss.spoolBytes)
	if err != nil {
		return res, err
	}
	res.spoolBytes = st.Bytes

	rd := rig.NewRedis(dir, mustPort())
	if err := rd.Start(); err != nil {
		return res, err
	}
	defer rd.Stop(5 * time.Second)
	ctx := context.Background()
	if err := rd.WaitReady(ctx, 10*time.Second); err != nil {
		return res, err
	}
	port := mustPort()
	cfg := filepath.Join(dir, "netsrv.toml")
	toml := fmt.Sprintf(`redis_url = %q
listen = "127.0.0.1:%d"
site = %q
log_level = "warn"
[mysql]
dsn = %q
[spool]
dir = %q
max_size = "1GiB"
`, rd.URL(), port, o.site, db.dsn, spoolDir)
	if err := os.WriteFile(cfg, []byte(toml), 0o644); err != nil {
		return res, err
	}
	p := &rig.Proc{Name: "netsrv", Path: bin, Args: []string{"-config", cfg}, Log: filepath.Join(o.work, fmt.Sprintf("netsrv-rss-%d.log", run))}
	if err := p.Start(); err != nil {
		return res, err
	}
	defer p.Stop(10 * time.Second)
	start := time.Now()
	metrics := fmt.Sprintf("http://127.0.0.1:%d/metrics", port)
	lastCheck := time.Time{}
	for time.Since(start) < o.rss.duration {
		if p.Exited() {
			return res, fmt.Errorf("netsrv exited; see %s", p.Log)
		}
		rss, hwm, err := rig.Memory(p.Pid())
		if err == nil {
			res.peakRSS, res.hwm = max(res.peakRSS, rss), max(res.hwm, hwm)
		}
		if time.Since(lastCheck) > time.Second {
			lastCheck = time.Now()
			m := scrape(metrics)
			res.drained = int64(m["netsrv_rows_drained_total"])
			if pend, ok := m["netsrv_spool_pending_records"]; ok && pend == 0 && res.drained > 0 {
				break
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	res.took = time.Since(start)
	m := scrape(metrics)
	res.drained = int64(m["netsrv_rows_drained_total"])
	if rss, hwm, err := rig.Memory(p.Pid()); err == nil {
		res.peakRSS, res.hwm = max(res.peakRSS, rss), max(res.hwm, hwm)
	}
	return res, nil
}

func mustPort() int {
	p, err := rig.FreePort()
	if err != nil {
		panic(err)
	}
	return p
}

// scrape reads the unlabelled samples of a Prometheus text page.
func scrape(url string) map[string]float64 {
	out := map[string]float64{}
	c := http.Client{Timeout: 2 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		return out
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "#") {
			continue
		}
		k, v, ok := strings.Cut(line, " ")
		if !ok {
			continue
		}
		if x, err := strconv.ParseFloat(strings.TrimSpace(v), 64); err == nil {
			out[k] = x
		}
	}
	return out
}
