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
	"os"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/redis/rueidis"

	"github.com/voltedge/voltedge/internal/keys"
	"github.com/voltedge/voltedge/internal/mappings"
	"github.com/voltedge/voltedge/internal/rig"
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
	redisPort, err := rig.FreePort()
	if err != nil {
		return err
	}
	dtuPort, err := rig.FreePort()
	if err != nil {
		return err
	}
	redis := rig.NewRedis(dir, redisPort)
	if err := redis.Start(); err != nil {
		return err
	}
	defer redis.Stop(10 * time.Second)
	ctx := context.Background()
	if err := redis.WaitReady(ctx, 5*time.Second); err != nil {
		return err
	}
	client, err := redis.Client("benchrun")
	if err != nil {
		return err
	}
	defer client.Close()

	cfg := rig.Config{Dir: dir, Templates: o.templates, Template: o.template, N: o.n, DTUPort: dtuPort,
		RedisURL: redis.URL(), Frames: o.frames}
	if err := rig.WriteConfig(cfg); err != nil {
		return err
	}
	set, err := mappings.Load(cfg.Mappings())
	if err != nil {
		return err
	}
	if _, err := set.Apply(ctx, client, true); err != nil {
		return err
	}

	var comsrvArgs []string
	if o.pprof != "" {
		comsrvArgs = append(comsrvArgs, "-pprof", o.pprof)
	}
	comsrv := rig.Comsrv(o.bin, cfg, comsrvArgs...)
	if err := comsrv.Start(); err != nil {
		return err
	}
	defer comsrv.Stop(10 * time.Second)
	time.Sleep(500 * time.Millisecond)
	sim := rig.Dtusim(o.bin, dir, dtuPort, o.n, o.ramp)
	if err := sim.Start(); err != nil {
		return err
	}
	defer sim.Stop(10 * time.Second)

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

	procs := map[string]int{"comsrv": comsrv.Pid(), "redis": redis.Pid(), "dtusim": sim.Pid()}
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
	rss, hwm := memory(comsrv.Pid())
	simRSS, _ := memory(sim.Pid())
	host, _ := os.Hostname()
	fmt.Printf("\n## comsrv, %d links, %s window\n\n", o.n, o.duration)
	fmt.Printf("machine: %s, %d cores, %s/%s, %s\n\n", host, runtime.NumCPU(), runtime.GOOS, runtime.GOARCH, rig.CPUModel())
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

func stats(ctx context.Context, c rueidis.Client) map[string]int64 {
	m, _ := c.Do(ctx, c.B().Hgetall().Key(keys.ComsrvStats).Build()).AsStrMap()
	out := make(map[string]int64, len(m))
	for k, v := range m {
		n, _ := strconv.ParseInt(v, 10, 64)
		out[k] = n
	}
	return out
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

// memory returns VmRSS and VmHWM of pid in MB (0 when it cannot be read).
func memory(pid int) (rss, hwm float64) {
	rss, hwm, _ = rig.Memory(pid)
	return rss, hwm
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
