// Command chaos runs faults against a VoltEdge rig and reports what was
// lost or wrong afterwards and how long recovery took. It starts, on
// loopback only, a private redis-server (without persistence, as
// docker-compose.edge.yml runs it), comsrv with a generated configuration
// (channels 1..N of the demo's power_meter template) and dtusim with N+1
// simulated DTUs (DTU1..DTUN, and DTU{N+1}, served through the run-time
// device registry), loads a mapping of every channel, a control mapping
// and alarm limits, then runs one fault after the other:
//
//  1. redis: the redis-server is killed and started again on the same port,
//     empty;
//  2. links: dtusim is killed, dropping every DTU link at once, and started
//     again;
//  3. comsrv: comsrv is killed (SIGKILL) while controls queued with
//     send_control are being executed, and started again.
//
// Each fault prints a small table and "lost/wrong: N" and "recovery: X s";
// the last line is "chaos: N wrong states, M unanswered commands", and the
// exit status is 1 when either is non-zero.
//
//	make build && bin/chaos -n 1000
//	bin/chaos -n 100 -faults links,comsrv -timeout 20s
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"
)

func main() {
	o, err := parseFlags(os.Args[1:])
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(2)
		}
		fmt.Fprintln(os.Stderr, "chaos:", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	failed, err := run(ctx, o)
	if err != nil {
		fmt.Fprintln(os.Stderr, "chaos:", err)
		os.Exit(1)
	}
	if failed {
		os.Exit(1)
	}
}

// options are the command-line settings.
type options struct {
	n         int
	bin       string
	templates string
	workdir   string
	faults    []string
	timeout   time.Duration
	commands  int
	ttl       time.Duration
	ramp      int
	delay     time.Duration
}

func parseFlags(args []string) (options, error) {
	fs := flag.NewFlagSet("chaos", flag.ContinueOnError)
	var o options
	fs.IntVar(&o.n, "n", 1000, "number of simulated DTU links (channels 1..n; one more DTU comes from the device registry)")
	fs.StringVar(&o.bin, "bin", "bin", "directory with the comsrv and dtusim binaries")
	fs.StringVar(&o.templates, "templates", "config/templates", "template directory (its power_meter template is used)")
	fs.StringVar(&o.workdir, "workdir", "", "keep configs and logs in this directory (default: a temporary one, removed)")
	faults := fs.String("faults", "all", "faults to run: all, or a comma-separated subset of 1 redis, 2 links, 3 comsrv")
	fs.DurationVar(&o.timeout, "timeout", 30*time.Second, "bound per fault: how long recovery may take before what is still wrong is reported")
	fs.IntVar(&o.commands, "commands", 200, "controls queued in the comsrv fault, spread over the channels")
	fs.DurationVar(&o.ttl, "ttl", 20*time.Second, "lifetime (ttl_ms) of those controls")
	fs.IntVar(&o.ramp, "ramp", 2000, "simulator connections per second")
	fs.DurationVar(&o.delay, "delay", 100*time.Millisecond, "response delay of the simulated slaves, as over a cellular link (controls are in flight that long)")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	var err error
	if o.faults, err = parseFaults(*faults); err != nil {
		return o, fmt.Errorf("-faults: %w", err)
	}
	switch {
	case o.n < 1 || o.n > 100000:
		return o, fmt.Errorf("-n %d: want 1..100000", o.n)
	case o.timeout < time.Second || o.timeout > time.Hour:
		return o, fmt.Errorf("-timeout %s: want 1s..1h", o.timeout)
	case o.commands < 1 || o.commands > 100000:
		return o, fmt.Errorf("-commands %d: want 1..100000", o.commands)
	case o.ttl < time.Second || o.ttl > time.Hour:
		return o, fmt.Errorf("-ttl %s: want 1s..1h", o.ttl)
	case o.ramp < 1:
		return o, fmt.Errorf("-ramp %d: want at least 1", o.ramp)
	case o.delay < 0 || o.delay > 500*time.Millisecond:
		return o, fmt.Errorf("-delay %s: want 0..500ms (comsrv's request timeout is 1s)", o.delay)
	}
	return o, nil
}

// run sets the rig up, runs the faults, prints their reports and the
// summary line, and reports whether anything was lost or wrong.
func run(ctx context.Context, o options) (failed bool, err error) {
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	e, err := setup(ctx, o, log)
	if e != nil {
		defer e.close()
	}
	if err != nil {
		return false, err
	}
	fmt.Printf("chaos: %d DTU links (+1 from the registry), faults %v, bound %s per fault, work dir %s\n",
		o.n, o.faults, o.timeout, e.dir)
	var reports []report
	for i, f := range o.faults {
		if ctx.Err() != nil {
			return false, fmt.Errorf("interrupted: %w", ctx.Err())
		}
		log.Info("fault", "n", i+1, "name", f)
		var r report
		switch f {
		case faultRedis:
			r = e.redisRestart(ctx)
		case faultLinks:
			r = e.linksDropped(ctx)
		case faultComsrv:
			r = e.comsrvKilled(ctx)
		}
		r.write(os.Stdout)
		reports = append(reports, r)
	}
	line, failed := summary(reports)
	fmt.Println()
	fmt.Println(line)
	return failed, nil
}

// ms is t in Unix milliseconds as Redis hashes hold it.
func ms(t time.Time) string { return strconv.FormatInt(t.UnixMilli(), 10) }
