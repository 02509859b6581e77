// Command benchrun measures comsrv against a simulated DTU fleet: it starts a
// private redis-server, comsrv and dtusim as separate processes, waits until
// every link is online, then reports responses/s, points/s into model hashes,
// the latency from response received to value visible in Redis (p50/p99),
// and the CPU and memory of comsrv, Redis and the simulator.
//
//	make build && bin/benchrun -n 1000 -duration 30s
package main

import (
	"context"
	"flag"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/BurntSushi/toml"
	"github.com/redis/rueidis"

	"github.com/voltedge/voltedge/internal/keys"
	"github.com/voltedge/voltedge/internal/mappings"
	"github.com/voltedge/voltedge/internal/redisconn"
)

func main() {
	var o options
	flag.StringVar(&o.bin, "bin", "bin", "directory with the comsrv and dtusim binaries")
	flag.StringVar(&o.templates, "templates", "config/templates", "template directory (the demo's power_meter template is used)")
	flag.StringVar(&o.template, "template", "power_meter", "template of every simulated link")
	flag.IntVar(&o.n, "n", 1000, "number of DTU links")
	flag.DurationVar(&o.duration, "duration", 30*time.Second, "measurement window")
	flag.DurationVar(&o.warmup, "warmup", 5*time.Second, "time between all links online and the window")
	flag.IntVar(&o.ramp, "ramp", 2000, "simulator connections per second")
	flag.StringVar(&o.pprof, "pprof", "", "pass -pprof ADDR to comsrv (profiling while the benchmark runs)")
	flag.StringVar(&o.keep, "workdir", "", "keep configs and logs in this directory (default: a temporary one, removed)")
	flag.IntVar(&o.frames, "frames", -1, "frames.keep of comsrv (-1: comsrv's default; 0: no frame log)")
	flag.Parse()
	if err := run(o); err != nil {
		fmt.Fprintln(os.Stderr, "benchrun:", err)
		os.Exit(1)
	}
}

type options struct {
	bin, templates, template, keep, pprof string
	n, ramp, frames                       int
	duration, warmup                      time.Duration
}

func run(o options) error {
	dir := o.keep
	if dir != "" {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return err
		}
	} else {
		d, err := os.MkdirTemp("", "voltedge-bench-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(d)
		dir = d
	}
	tmplDir, err := filepath.Abs(o.templates)
	if err != nil {
		return err
	}
	redisPort, dtuPort := freePort(), freePort()
	redisURL := fmt.Sprintf("redis://127.0.0.1:%d", redisPort)

	redis := exec.Command("redis-server", "--port", strconv.Itoa(redisPort), "--bind", "127.0.0.1",
		"--save", "", "--appendonly", "no", "--dir", dir, "--logfile", filepath.Join(dir, "redis.log"))
	if err := redis.Start(); err != nil {
		return fmt.Errorf("start redis-server: %w", err)
	}
	defer stop(redis)
	client, err := waitRedis(redisURL)
	if err != nil {
		return err
	}
	defer client.Close()

	if err := writeConfig(dir, tmplDir, o, dtuPort, redisURL); err != nil {
		return err
	}
	ctx := context.Background()
	set, err := mappings.Load(filepath.Join(dir, "mappings.toml"))
	if err != nil {
		return err
	}
	if _, err := set.Apply(ctx, client, true); err != nil {
		return err
	}

	comsrvArgs := []string{"-config", filepath.Join(dir, "comsrv.toml")}
	if o.pprof != "" {
		comsrvArgs = append(comsrvArgs, "-pprof", o.pprof)
	}
	comsrv := exec.Command(filepath.Join(o.bin, "comsrv"), comsrvArgs...)
	comsrv.Stderr, _ = os.Create(filepath.Join(dir, "comsrv.stderr"))
	if err := comsrv.Start(); err != nil {
		return fmt.Errorf("start comsrv: %w", err)
	}
	defer stop(comsrv)
	time.Sleep(500 * time.Millisecond)
	sim := exec.Command(filepath.Join(o.bin, "dtusim"), "-addr", fmt.Sprintf("127.0.0.1:%d", dtuPort),
		"-n", strconv.Itoa(o.n), "-prefix", "DTU", "-start", "1", "-ramp", strconv.Itoa(o.ramp),
		"-heartbeat-interval", "30s", "-stats", "0s")
	sim.Stderr, _ = os.Create(filepath.Join(dir, "dtusim.stderr"))
	if err := sim.Start(); err != nil {
		return fmt.Errorf("start dtusim: %w", err)
	}
	defer stop(sim)

	fmt.Printf("waiting for %d links online…\n", o.n)
	deadline := time.Now().Add(time.Duration(o.n/max(o.ramp, 1))*time.Second + 60*time.Second)
	for {
		st := stats(ctx, client)
		if st["online"] >= int64(o.n) {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("only %d of %d links online (see %s)", st["online"], o.n, dir)
		}
		time.Sleep(500 * time.Millisecond)
	}
	time.Sleep(o.warmup)

	procs := map[string]int{"comsrv": comsrv.Process.Pid, "redis": redis.Process.Pid, "dtusim": sim.Process.Pid}
	cpu0 := cpuTimes(procs)
	st0 := stats(ctx, client)
	t0 := time.Now()
	var p50s, p99s []int64
	lastUpdate := st0["updated_at"]
	for time.Since(t0) < o.duration {
		time.Sleep(250 * time.Millisecond)
		st := stats(ctx, client)
		if st["updated_at"] != lastUpdate && st["latency_samples"] > 0 {
			lastUpdate = st["updated_at"]
			p50s = append(p50s, st["latency_p50_us"])
			p99s = append(p99s, st["latency_p99_us"])
		}
	}
	elapsed := time.Since(t0).Seconds()
	st1 := stats(ctx, client)
	cpu1 := cpuTimes(procs)

	rate := func(k string) float64 { return float64(st1[k]-st0[k]) / elapsed }
	cpu := func(name string) float64 { return (cpu1[name] - cpu0[name]) / elapsed * 100 }
	rss, hwm := memory(comsrv.Process.Pid)
	simRSS, _ := memory(sim.Process.Pid)
	host, _ := os.Hostname()
	fmt.Printf("\n## comsrv, %d links, %s window\n\n", o.n, o.duration)
	fmt.Printf("machine: %s, %d cores, %s/%s, %s\n\n", host, runtime.NumCPU(), runtime.GOOS, runtime.GOARCH, cpuModel())
	fmt.Printf("| metric | value |\n|---|---|\n")
	fmt.Printf("| links online | %d |\n", st1["online"])
	fmt.Printf("| responses/s | %.0f |\n", rate("responses"))
	fmt.Printf("| points/s written (comsrv:*:m) | %.0f |\n", rate("points"))
	fmt.Printf("| points/s into model hashes (modsrv:*) | %.0f |\n", rate("mapped"))
	fmt.Printf("| FCALL sync_batch/s | %.0f |\n", rate("calls"))
	fmt.Printf("| latency response→Redis p50 (median of %d 1-s windows) | %s |\n", len(p50s), us(median(p50s)))
	fmt.Printf("| latency response→Redis p99 (median / worst window) | %s / %s |\n", us(median(p99s)), us(maxOf(p99s)))
	fmt.Printf("| samples dropped / sync errors | %d / %d |\n", st1["dropped"]-st0["dropped"], st1["sync_errors"]-st0["sync_errors"])
	fmt.Printf("| comsrv CPU | %.0f %% of one core |\n", cpu("comsrv"))
	fmt.Printf("| comsrv RSS (now / peak) | %.0f MB / %.0f MB |\n", rss, hwm)
	fmt.Printf("| Redis CPU | %.0f %% of one core |\n", cpu("redis"))
	fmt.Printf("| dtusim CPU / RSS | %.0f %% / %.0f MB |\n", cpu("dtusim"), simRSS)
	if info, err := client.Do(ctx, client.B().Info().Section("memory").Build()).ToString(); err == nil {
		for _, line := range strings.Split(info, "\n") {
			for _, c := range []string{"used_memory_human:", "used_memory_vm_functions:"} {
				if strings.HasPrefix(line, c) {
					fmt.Println("Redis " + strings.TrimSpace(line))
				}
			}
		}
	}
	if info, err := client.Do(ctx, client.B().Info().Section("commandstats").Build()).ToString(); err == nil {
		fmt.Printf("\nRedis command stats (whole run):\n")
		for _, line := range strings.Split(info, "\n") {
			for _, c := range []string{"cmdstat_fcall:", "cmdstat_hset:", "cmdstat_publish:"} {
				if strings.HasPrefix(line, c) {
					fmt.Println("  " + strings.TrimSpace(line))
				}
			}
		}
	}
	if st1["failures"] > st0["failures"] {
		fmt.Printf("\nwarning: %d failed Redis calls during the window\n", st1["failures"]-st0["failures"])
	}
	return nil
}

func writeConfig(dir, tmplDir string, o options, dtuPort int, redisURL string) error {
	comsrv := fmt.Sprintf(`redis_url = %q
log_file = %q
log_level = "warn"
templates = [%q]
channels = ["channels/*.toml"]

[dtu]
listen = "127.0.0.1:%d"
max_connections = %d

[redis]
flush_interval = "1s"
`, redisURL, filepath.Join(dir, "comsrv.log"), filepath.Join(tmplDir, "*.toml"), dtuPort, o.n+100)
	if o.frames >= 0 {
		comsrv += fmt.Sprintf("\n[frames]\nkeep = %d\n", o.frames)
	}
	channels := fmt.Sprintf(`[[range]]
first = 1
last = %d
id = "{n}"
registration = "DTU{n}"
template = %q
`, o.n, o.template)
	if err := os.MkdirAll(filepath.Join(dir, "channels"), 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "comsrv.toml"), []byte(comsrv), 0o644); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "channels", "bench.toml"), []byte(channels), 0o644); err != nil {
		return err
	}
	points, err := templatePoints(tmplDir, o.template)
	if err != nil {
		return err
	}
	var b strings.Builder
	fmt.Fprintf(&b, "[[map_range]]\nfirst = 1\nlast = %d\nchannel = \"{n}\"\nmodel = \"meter{n}\"\npoints = { ", o.n)
	for i, p := range points {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "%q = %q", p[0], p[1])
	}
	b.WriteString(" }\n")
	return os.WriteFile(filepath.Join(dir, "mappings.toml"), []byte(b.String()), 0o644)
}

// templatePoints returns the (id, name) of each point of the template named
// name in dir: a file whose name (or "name" setting) is name. comsrv itself
// validates the template when it starts.
func templatePoints(dir, name string) ([][2]string, error) {
	files, err := filepath.Glob(filepath.Join(dir, "*.toml"))
	if err != nil {
		return nil, fmt.Errorf("templates in %s: %w", dir, err)
	}
	for _, f := range files {
		var t struct {
			Name   string `toml:"name"`
			Points []struct {
				ID   string `toml:"id"`
				Name string `toml:"name"`
			} `toml:"point"`
		}
		if _, err := toml.DecodeFile(f, &t); err != nil {
			return nil, fmt.Errorf("template %s: %w", f, err)
		}
		if t.Name == "" {
			t.Name = strings.TrimSuffix(filepath.Base(f), filepath.Ext(f))
		}
		if t.Name != name {
			continue
		}
		points := make([][2]string, 0, len(t.Points))
		for _, p := range t.Points {
			if p.Name == "" {
				p.Name = p.ID
			}
			points = append(points, [2]string{p.ID, p.Name})
		}
		return points, nil
	}
	return nil, fmt.Errorf("template %q not found in %s", name, dir)
}

func stats(ctx context.Context, c rueidis.Client) map[string]int64 {
	m, _ := c.Do(ctx, c.B().Hgetall().Key(keys.ComsrvStats).Build()).AsStrMap()
	out := make(map[string]int64, len(m))
	for k, v := range m {
		n, _ := strconv.ParseInt(v, 10, 64)
		out[k] = n
	}
	return out
}

func waitRedis(url string) (rueidis.Client, error) {
	var last error
	for i := 0; i < 100; i++ {
		c, err := redisconn.New(url, redisconn.Options{ClientName: "benchrun"})
		if err == nil {
			return c, nil
		}
		last = err
		time.Sleep(50 * time.Millisecond)
	}
	return nil, last
}

func stop(c *exec.Cmd) {
	if c.Process == nil {
		return
	}
	_ = c.Process.Signal(os.Interrupt)
	done := make(chan struct{})
	go func() { _ = c.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		_ = c.Process.Kill()
		<-done
	}
}

func freePort() int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// cpuTimes returns user+system CPU seconds of each process from /proc.
func cpuTimes(pids map[string]int) map[string]float64 {
	out := map[string]float64{}
	for name, pid := range pids {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			continue
		}
		s := string(b)
		f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
		if len(f) < 13 {
			continue
		}
		ut, _ := strconv.ParseFloat(f[11], 64)
		st, _ := strconv.ParseFloat(f[12], 64)
		out[name] = (ut + st) / 100 // USER_HZ
	}
	return out
}

// memory returns VmRSS and VmHWM in MB.
func memory(pid int) (rss, hwm float64) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		v, _ := strconv.ParseFloat(f[1], 64)
		switch f[0] {
		case "VmRSS:":
			rss = v / 1024
		case "VmHWM:":
			hwm = v / 1024
		}
	}
	return rss, hwm
}

func cpuModel() string {
	b, _ := os.ReadFile("/proc/cpuinfo")
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, "model name") {
			_, v, _ := strings.Cut(line, ":")
			return strings.TrimSpace(v)
		}
	}
	return "unknown cpu"
}

func median(v []int64) int64 {
	if len(v) == 0 {
		return 0
	}
	s := append([]int64(nil), v...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[len(s)/2]
}

func maxOf(v []int64) int64 {
	var m int64
	for _, x := range v {
		m = max(m, x)
	}
	return m
}

func us(v int64) string {
	if v >= 1000 {
		return fmt.Sprintf("%.2f ms", float64(v)/1000)
	}
	return fmt.Sprintf("%d µs", v)
}
