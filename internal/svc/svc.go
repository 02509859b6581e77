// Package svc runs the common part of a VoltEdge service process: flags,
// configuration (of the service's own type), logging, the memory limit, the
// Redis client, the Lua library check, /metrics and shutdown on
// SIGINT/SIGTERM.
package svc

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"
	"time"

	"github.com/redis/rueidis"

	"github.com/voltedge/voltedge/internal/conf"
	"github.com/voltedge/voltedge/internal/logging"
	"github.com/voltedge/voltedge/internal/lualib"
	"github.com/voltedge/voltedge/internal/metrics"
	"github.com/voltedge/voltedge/internal/redisconn"
)

// Settings are what the common start-up needs from a service's configuration.
type Settings struct {
	// RedisURL points at the configuration's Redis URL, which -redis overrides.
	RedisURL *string
	// LogFile and LogLevel set up the service's logger (see logging.New).
	LogFile, LogLevel string
	// MetricsListen, if not empty, is where Env.Metrics is served as
	// /metrics. A service that serves its metrics itself leaves it empty.
	MetricsListen string
}

// Common is the Settings of a configuration that embeds
// conf.ServiceConfig, without a metrics endpoint.
func Common(c *conf.ServiceConfig) Settings {
	return Settings{RedisURL: &c.RedisURL, LogFile: c.LogFile, LogLevel: c.LogLevel}
}

// Service describes a service process: its configuration type C, how to
// load it and what to run once everything is set up.
type Service[C any] struct {
	// Name is the service's name: the default configuration file is
	// config/Name.toml, and logs and metrics carry it.
	Name string
	// Load reads and validates the configuration file (required).
	Load func(path string) (*C, error)
	// Settings picks the common settings out of a loaded configuration (required).
	Settings func(*C) Settings
	// Summary, if set, enables -check: it describes a valid configuration
	// in a few words ("3 templates, 12 channels").
	Summary func(*C) string
	// Flags, if set, adds the service's own flags; it is called before the
	// flags are parsed.
	Flags func(*flag.FlagSet)
	// RedisConnections is the number of pipelined Redis connections (default 1).
	RedisConnections int
	// BlockingConnections bounds the Redis connections kept for blocking
	// commands (XREADGROUP BLOCK, …): one per loop that blocks at the same
	// time (default 2).
	BlockingConnections int
	// MemoryLimit, if positive, is the Go runtime's soft memory limit
	// unless GOMEMLIMIT is set: the GC works harder before the heap grows
	// past it.
	MemoryLimit int64
	// StartAttrs, if set, adds key-value pairs to the "started" log line.
	StartAttrs func(*C) []any
	// Serve runs the service until ctx ends (required).
	Serve func(ctx context.Context, env *Env[C]) error
}

// Env is what a service's Serve function gets.
type Env[C any] struct {
	Name   string
	Config *C
	Log    *slog.Logger
	Redis  rueidis.Client
	// Metrics is the base registry (BaseMetrics), served on
	// Settings.MetricsListen if that is set; a service may add its own.
	Metrics *metrics.Registry
	// Started is when the process started.
	Started time.Time
}

// Args are the values of the standard flags.
type Args struct {
	Config string // -config: the configuration file
	Redis  string // -redis: overrides the configuration's Redis URL
	Check  bool   // -check: validate the configuration and exit
}

// Main runs a service that has only the common settings
// (conf.ServiceConfig), serving /metrics on its listen address.
func Main(name string, serve func(ctx context.Context, env *Env[conf.ServiceConfig]) error) {
	Run(basic(name, serve))
}

// basic is the Service of Main.
func basic(name string, serve func(ctx context.Context, env *Env[conf.ServiceConfig]) error) Service[conf.ServiceConfig] {
	return Service[conf.ServiceConfig]{
		Name: name,
		Load: conf.LoadService,
		Settings: func(c *conf.ServiceConfig) Settings {
			s := Common(c)
			s.MetricsListen = c.Listen
			return s
		},
		Serve: serve,
	}
}

// Run parses the standard flags (-config, -redis, -check if the service
// has a Summary, and the service's own), sets everything up and serves
// until SIGINT or SIGTERM. It exits the process on error.
func Run[C any](s Service[C]) {
	fs := flag.NewFlagSet(s.Name, flag.ExitOnError)
	var a Args
	fs.StringVar(&a.Config, "config", "config/"+s.Name+".toml", s.Name+" configuration file")
	fs.StringVar(&a.Redis, "redis", "", "Redis URL, overriding redis_url of the configuration")
	if s.Summary != nil {
		fs.BoolVar(&a.Check, "check", false, "validate the configuration and exit")
	}
	if s.Flags != nil {
		s.Flags(fs)
	}
	_ = fs.Parse(os.Args[1:])
	ctx, cancel := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := Start(ctx, s, a)
	cancel()
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", s.Name, err)
		os.Exit(1)
	}
}

// Start is Run without flags, signals and exit: it loads the configuration
// a names, sets everything up and serves until ctx ends.
func Start[C any](ctx context.Context, s Service[C], a Args) error {
	started := time.Now()
	cfg, err := s.Load(a.Config)
	if err != nil {
		return err
	}
	set := s.Settings(cfg)
	if a.Redis != "" {
		*set.RedisURL = a.Redis
	}
	if a.Check {
		fmt.Printf("%s: ok (%s)\n", a.Config, s.Summary(cfg))
		return nil
	}
	log, closer, err := logging.New(s.Name, set.LogFile, set.LogLevel)
	if err != nil {
		return err
	}
	defer closer.Close()
	if s.MemoryLimit > 0 && os.Getenv("GOMEMLIMIT") == "" {
		debug.SetMemoryLimit(s.MemoryLimit)
	}
	client, err := ConnectRedis(ctx, s.Name, *set.RedisURL, redisconn.Options{Connections: max(s.RedisConnections, 1), BlockingPool: s.BlockingConnections}, log)
	if err != nil {
		return err
	}
	defer client.Close()
	reg := BaseMetrics(s.Name, client, started)
	attrs := []any{"redis", *set.RedisURL, "metrics", set.MetricsListen}
	if s.StartAttrs != nil {
		attrs = append(attrs, s.StartAttrs(cfg)...)
	}
	log.Info(s.Name+" started", attrs...)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	merr := make(chan error, 1)
	if set.MetricsListen != "" {
		go func() {
			err := metrics.Serve(ctx, set.MetricsListen, reg, nil)
			if err != nil {
				cancel() // the service stops with its metrics endpoint
			}
			merr <- err
		}()
	} else {
		merr <- nil
	}
	err = s.Serve(ctx, &Env[C]{Name: s.Name, Config: cfg, Log: log, Redis: client, Metrics: reg, Started: started})
	cancel()
	if e := <-merr; err == nil {
		err = e
	}
	log.Info(s.Name + " stopped")
	return err
}

// pingTimeout bounds the Redis check of a metrics scrape.
const pingTimeout = time.Second

// BaseMetrics is every service's registry: the Go runtime, uptime and
// whether Redis answers a PING at scrape time (name_uptime_seconds,
// name_redis_up).
func BaseMetrics(name string, client rueidis.Client, started time.Time) *metrics.Registry {
	reg := metrics.NewRegistry()
	metrics.RegisterRuntime(reg)
	reg.GaugeFunc(name+"_uptime_seconds", "Seconds since "+name+" started.", func() float64 {
		return time.Since(started).Seconds()
	})
	reg.GaugeFunc(name+"_redis_up", "1 when Redis answered a PING at this scrape, else 0.", func() float64 {
		ctx, cancel := context.WithTimeout(context.Background(), pingTimeout)
		defer cancel()
		if client.Do(ctx, client.B().Ping().Build()).Error() != nil {
			return 0
		}
		return 1
	})
	return reg
}

// ConnectRedis opens the service's lean Redis client (o sets its pipelined
// and blocking connections; name becomes the client name) and makes sure
// the Lua library is loaded, logging the version in use. While Redis cannot be reached (a box whose Redis starts
// later, or restarts), it retries with back-off until ctx is cancelled.
func ConnectRedis(ctx context.Context, name, url string, o redisconn.Options, log *slog.Logger) (rueidis.Client, error) {
	backoff := redisconn.Backoff{Min: 500 * time.Millisecond, Max: 10 * time.Second}
	for {
		client, err := connectOnce(ctx, name, url, o, log)
		if err == nil {
			return client, nil
		}
		d := backoff.Next()
		log.Warn("redis not ready, retrying", "redis", url, "err", err, "retry_in", d)
		if !redisconn.Sleep(ctx, d) {
			return nil, fmt.Errorf("%w (gave up: %v)", err, ctx.Err())
		}
	}

}

func connectOnce(ctx context.Context, name, url string, o redisconn.Options, log *slog.Logger) (rueidis.Client, error) {
	o.ClientName = name
	client, err := redisconn.New(url, o)
	if err != nil {
		return nil, err
	}
	info, err := lualib.Ensure(ctx, client)
	if err != nil {
		client.Close()
		return nil, fmt.Errorf("lua library: %w", err)
	}
	log.Info("lua library", "name", info.Name, "loaded", info.Loaded, "embedded", info.Embedded, "action", info.Action)
	return client, nil
}
