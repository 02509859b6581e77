// Package svc runs the common part of a VoltEdge service process: flags,
// configuration, logging, the Redis client, the Lua library check and
// shutdown on SIGINT/SIGTERM.
package svc

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/redis/rueidis"

	"github.com/voltedge/voltedge/internal/conf"
	"github.com/voltedge/voltedge/internal/logging"
	"github.com/voltedge/voltedge/internal/lualib"
	"github.com/voltedge/voltedge/internal/metrics"
	"github.com/voltedge/voltedge/internal/redisconn"
)

// Env is what a service's serve function gets.
type Env struct {
	Name   string
	Config *conf.ServiceConfig
	Log    *slog.Logger
	Redis  rueidis.Client
	// Metrics is served as /metrics on Config.Listen; a service may add its own.
	Metrics *metrics.Registry
}

// Main parses the standard flags (-config, -redis), sets everything up and
// calls serve until a signal arrives. It exits the process on error.
func Main(name string, serve func(ctx context.Context, env *Env) error) {
	fs := flag.NewFlagSet(name, flag.ExitOnError)
	cfgPath := fs.String("config", "config/"+name+".toml", name+" configuration file")
	redisURL := fs.String("redis", "", "Redis URL, overriding redis_url of the configuration")
	_ = fs.Parse(os.Args[1:])
	ctx, cancel := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, name, *cfgPath, *redisURL, serve)
	cancel()
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", name, err)
		os.Exit(1)
	}
}

func run(ctx context.Context, name, cfgPath, redisURL string, serve func(context.Context, *Env) error) error {
	cfg, err := conf.LoadService(cfgPath)
	if err != nil {
		return err
	}
	if redisURL != "" {
		cfg.RedisURL = redisURL
	}
	log, closer, err := logging.New(name, cfg.LogFile, cfg.LogLevel)
	if err != nil {
		return err
	}
	defer closer.Close()
	client, err := ConnectRedis(ctx, name, cfg.RedisURL, 1, log)
	if err != nil {
		return err
	}
	defer client.Close()
	reg := BaseMetrics(name, client, time.Now())
	log.Info(name+" started", "redis", cfg.RedisURL, "metrics", cfg.Listen)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	merr := make(chan error, 1)
	if cfg.Listen != "" {
		go func() {
			err := metrics.Serve(ctx, cfg.Listen, reg, nil)
			if err != nil {
				cancel() // the service stops with its metrics endpoint
			}
			merr <- err
		}()
	} else {
		merr <- nil
	}
	err = serve(ctx, &Env{Name: name, Config: cfg, Log: log, Redis: client, Metrics: reg})
	cancel()
	if e := <-merr; err == nil {
		err = e
	}
	log.Info(name + " stopped")
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

// ConnectRedis opens the service's lean Redis client (conns pipelined
// connections) and makes sure the Lua library is loaded, logging the
// version in use. While Redis cannot be reached (a box whose Redis starts
// later, or restarts), it retries with back-off until ctx is cancelled.
func ConnectRedis(ctx context.Context, name, url string, conns int, log *slog.Logger) (rueidis.Client, error) {
	backoff := redisconn.Backoff{Min: 500 * time.Millisecond, Max: 10 * time.Second}
	for {
		client, err := connectOnce(ctx, name, url, conns, log)
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

func connectOnce(ctx context.Context, name, url string, conns int, log *slog.Logger) (rueidis.Client, error) {
	client, err := redisconn.New(url, redisconn.Options{ClientName: name, Connections: conns})
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
