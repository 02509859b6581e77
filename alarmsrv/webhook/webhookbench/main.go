// Command webhookbench measures alarmsrv's webhook engine against a
// Redis it is given (never use a production Redis: it writes
// webhook:* keys and deletes the targets bench-*).
//
//	webhookbench -redis redis://127.0.0.1:6391 -mode throughput -rate 5000 -duration 20s [-dead hang|refuse]
//	webhookbench -redis redis://127.0.0.1:6391 -mode fill -n 100000
//	webhookbench -redis redis://127.0.0.1:6391 -mode backlog -wait 60s
//
// throughput: a local receiver, events queued at -rate for -duration (4
// producers, each queueing what is due in one EnqueueBatch); it
// prints events/s delivered and the latency from Enqueue to the
// receiver's handler (p50, p99, max), with optionally a second target that
// gets every event too and never answers (hang) or refuses connections.
// fill: queues -n deliveries for a dead target (bench-dead). backlog: runs
// the engine with what fill left and prints the process's RSS each
// second.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"log"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"runtime"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/redis/rueidis"

	"github.com/voltedge/voltedge/alarmsrv/webhook"
	"github.com/voltedge/voltedge/internal/alerting"
	"github.com/voltedge/voltedge/internal/keys"
	"github.com/voltedge/voltedge/internal/redisconn"
)

func main() {
	url := flag.String("redis", "", "Redis URL (required; a Redis for tests)")
	mode := flag.String("mode", "throughput", "throughput, fill or backlog")
	rate := flag.Int("rate", 5000, "events per second (throughput)")
	duration := flag.Duration("duration", 20*time.Second, "how long events are queued (throughput)")
	dead := flag.String("dead", "", "a second target that gets every event: hang (never answers) or refuse (throughput)")
	conc := flag.Int("concurrency", 16, "the healthy target's concurrency")
	n := flag.Int("n", 100000, "deliveries to queue (fill)")
	wait := flag.Duration("wait", time.Minute, "how long the engine runs (backlog)")
	bodySize := flag.Int("body", 300, "body bytes")
	cpuprofile := flag.String("cpuprofile", "", "write a CPU profile to this file")
	flag.Parse()
	if *cpuprofile != "" {
		f, err := os.Create(*cpuprofile)
		if err != nil {
			log.Fatal(err)
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			log.Fatal(err)
		}
		defer pprof.StopCPUProfile()
	}
	if *url == "" {
		log.Fatal("-redis is required")
	}
	c, err := redisconn.New(*url, redisconn.Options{ClientName: "webhookbench"})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	quiet := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError}))
	switch *mode {
	case "throughput":
		err = throughput(ctx, c, quiet, *rate, *duration, *dead, *conc, *bodySize)
	case "fill":
		err = fill(ctx, c, *n, *bodySize)
	case "backlog":
		err = backlog(ctx, c, quiet, *wait)
	default:
		err = fmt.Errorf("unknown mode %q", *mode)
	}
	if err != nil {
		pprof.StopCPUProfile()
		log.Fatal(err)
	}
}

func putTarget(ctx context.Context, c rueidis.Client, t alerting.Target) error {
	if err := t.Validate(); err != nil {
		return err
	}
	js, _ := json.Marshal(t)
	return c.Do(ctx, c.B().Hset().Key(keys.WebhookTargets).FieldValue().FieldValue(t.ID, string(js)).Build()).Error()
}

// clean removes the bench targets and their keys.
func clean(ctx context.Context, c rueidis.Client, ids ...string) error {
	for _, id := range ids {
		for _, cmd := range []rueidis.Completed{
			c.B().Hdel().Key(keys.WebhookTargets).Field(id).Build(),
			c.B().Del().Key(keys.WebhookQueue(id), keys.WebhookRetry(id), keys.WebhookStats(id)).Build(),
		} {
			if err := c.Do(ctx, cmd).Error(); err != nil {
				return err
			}
		}
	}
	return c.Do(ctx, c.B().Del().Key(keys.WebhookDead).Build()).Error()
}

func body(size int, sent time.Time, seq int) []byte {
	b := fmt.Appendf(nil, `{"sent":%d,"seq":%d,"pad":"`, sent.UnixNano(), seq)
	for len(b) < size-2 {
		b = append(b, 'x')
	}
	return append(b, `"}`...)
}

func throughput(ctx context.Context, c rueidis.Client, log *slog.Logger, rate int, duration time.Duration, dead string, conc, size int) error {
	if err := clean(ctx, c, "bench-ok", "bench-dead"); err != nil {
		return err
	}
	var mu sync.Mutex
	var lat []time.Duration
	var got atomic.Int64
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var b struct{ Sent int64 }
		_ = json.NewDecoder(r.Body).Decode(&b)
		d := time.Since(time.Unix(0, b.Sent))
		mu.Lock()
		lat = append(lat, d)
		mu.Unlock()
		got.Add(1)
	})}
	go func() { _ = srv.Serve(l) }()
	defer srv.Close()
	sec, _ := alerting.GenerateSecret()
	ok := alerting.Target{ID: "bench-ok", URL: "http://" + l.Addr().String() + "/hook", Secrets: []string{sec}, Concurrency: conc, Enabled: true}
	if err := putTarget(ctx, c, ok); err != nil {
		return err
	}
	targets := []string{"bench-ok"}
	switch dead {
	case "":
	case "hang", "refuse":
		u := "http://127.0.0.1:1/hook"
		if dead == "hang" {
			hl, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				return err
			}
			hang := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { <-r.Context().Done() })}
			go func() { _ = hang.Serve(hl) }()
			defer hang.Close()
			u = "http://" + hl.Addr().String() + "/hook"
		}
		if err := putTarget(ctx, c, alerting.Target{ID: "bench-dead", URL: u, Enabled: true}); err != nil {
			return err
		}
		targets = append(targets, "bench-dead")
	default:
		return fmt.Errorf("-dead %q: hang or refuse", dead)
	}
	e := webhook.New(c, webhook.Options{Log: log})
	ectx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); _ = e.Run(ectx) }()
	defer func() { cancel(); <-done }()
	time.Sleep(300 * time.Millisecond) // workers start

	const producers = 4
	total := int(float64(rate) * duration.Seconds())
	cpu0 := cpuTime()
	start := time.Now()
	var wg sync.WaitGroup
	var errs atomic.Int64
	for p := range producers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// Each producer queues what is due: one event when on time,
			// a batch (up to 100) when behind, as alarmsrv does with the
			// events it reads.
			var batch []webhook.Delivery
			for i := p; i < total; {
				at := start.Add(time.Duration(float64(i) / float64(rate) * float64(time.Second)))
				if d := time.Until(at); d > 0 {
					time.Sleep(d)
				}
				now := time.Now()
				batch = batch[:0]
				for ; i < total && len(batch) < 100*len(targets); i += producers {
					if start.Add(time.Duration(float64(i) / float64(rate) * float64(time.Second))).After(now) {
						break
					}
					for _, t := range targets {
						batch = append(batch, webhook.Delivery{ID: "bench-" + strconv.Itoa(i), Target: t, Key: "k" + strconv.Itoa(i%500), Body: body(size, now, i), TS: now.UnixMilli()})
					}
				}
				if len(batch) == 0 {
					continue
				}
				if err := e.EnqueueBatch(ctx, batch); err != nil {
					errs.Add(int64(len(batch)))
				}
			}
		}()
	}
	wg.Wait()
	queued := time.Since(start)
	for deadline := time.Now().Add(30 * time.Second); got.Load() < int64(total) && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
	}
	elapsed := time.Since(start)
	cpu := cpuTime() - cpu0
	mu.Lock()
	slices.Sort(lat)
	mu.Unlock()
	if len(lat) == 0 {
		return fmt.Errorf("nothing delivered")
	}
	q := func(p float64) time.Duration { return lat[min(len(lat)-1, int(p*float64(len(lat))))] }
	fmt.Printf("mode throughput rate %d/s for %v, dead target %q, healthy concurrency %d, body %d B, %s, %d CPUs\n",
		rate, duration, dead, conc, size, runtime.Version(), runtime.NumCPU())
	fmt.Printf("queued %d in %v (enqueue errors %d); delivered %d in %v: %.0f events/s\n",
		total, queued.Round(time.Millisecond), errs.Load(), got.Load(), elapsed.Round(time.Millisecond), float64(got.Load())/elapsed.Seconds())
	fmt.Printf("latency enqueue→receiver: p50 %v p99 %v p99.9 %v max %v\n", q(0.50).Round(10*time.Microsecond), q(0.99).Round(10*time.Microsecond), q(0.999).Round(10*time.Microsecond), lat[len(lat)-1].Round(10*time.Microsecond))
	fmt.Printf("process CPU %v (%.0f %% of one core): %v per event, producers and receiver included\n",
		cpu.Round(time.Millisecond), 100*cpu.Seconds()/elapsed.Seconds(), (cpu / time.Duration(max(got.Load(), 1))).Round(time.Microsecond))
	for _, t := range targets {
		s, err := alerting.ReadStats(ctx, c, t)
		if err != nil {
			return err
		}
		fmt.Printf("%s: %+v reconciles=%v\n", t, s, s.Reconciles())
	}
	fmt.Println(rss())
	return nil
}

// cpuTime is the process's user and system CPU time.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func fill(ctx context.Context, c rueidis.Client, n, size int) error {
	if err := clean(ctx, c, "bench-ok", "bench-dead"); err != nil {
		return err
	}
	if err := putTarget(ctx, c, alerting.Target{ID: "bench-dead", URL: "http://127.0.0.1:1/hook", Enabled: true}); err != nil {
		return err
	}
	var wg sync.WaitGroup
	var failed atomic.Int64
	const workers = 16
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < n; i += workers {
				now := time.Now()
				_, err := alerting.Enqueue(ctx, c, "bench-dead", alerting.QueueEntry{ID: "fill-" + strconv.Itoa(i), Key: "k" + strconv.Itoa(i%500), Body: body(size, now, i), TS: now.UnixMilli()})
				if err != nil {
					failed.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	s, err := alerting.ReadStats(ctx, c, "bench-dead")
	if err != nil {
		return err
	}
	fmt.Printf("queued %d for bench-dead (errors %d): %+v\n", n, failed.Load(), s)
	return nil
}

func backlog(ctx context.Context, c rueidis.Client, log *slog.Logger, wait time.Duration) error {
	e := webhook.New(c, webhook.Options{Log: log})
	ectx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	done := make(chan struct{})
	go func() { defer close(done); _ = e.Run(ectx) }()
	fmt.Printf("mode backlog for %v, %s, %d CPUs\n", wait, runtime.Version(), runtime.NumCPU())
	t := time.NewTicker(5 * time.Second)
	defer t.Stop()
	for {
		select {
		case <-done:
			s, err := alerting.ReadStats(ctx, c, "bench-dead")
			if err != nil {
				return err
			}
			fmt.Printf("bench-dead: %+v reconciles=%v\n%s\n", s, s.Reconciles(), rss())
			return nil
		case <-t.C:
			s, _ := alerting.ReadStats(ctx, c, "bench-dead")
			var m runtime.MemStats
			runtime.ReadMemStats(&m)
			fmt.Printf("queued %d failed %d inflight %d | %s heap %.1f MiB, goroutines %d\n", s.Queued, s.Failed, s.InFlight, rss(), float64(m.HeapInuse)/(1<<20), runtime.NumGoroutine())
		}
	}
}

// rss reads the process's resident set (now and its peak).
func rss() string {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return "rss unknown"
	}
	var cur, peak string
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			cur = strings.TrimSpace(v)
		}
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			peak = strings.TrimSpace(v)
		}
	}
	return "RSS " + cur + " (peak " + peak + ")"
}
