// Command modsrv serves the model API of VoltEdge: REST, WebSocket and the
// web console over the model hashes in Redis, with Prometheus metrics.
//
// It reads modsrv.toml (-config), connects to Redis (-redis overrides
// redis_url) and makes sure the Lua library is loaded, then serves HTTP on
// listen until SIGINT or SIGTERM, when it stops accepting requests and
// lets those in flight finish.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/gofiber/fiber/v2"

	"github.com/voltedge/voltedge/internal/contract"
	"github.com/voltedge/voltedge/internal/logging"
	"github.com/voltedge/voltedge/internal/svc"
	"github.com/voltedge/voltedge/modsrv/api"
	"github.com/voltedge/voltedge/modsrv/auth"
	"github.com/voltedge/voltedge/modsrv/config"
)

// shutdownTimeout bounds how long requests in flight may take after a stop signal.
const shutdownTimeout = 10 * time.Second

// redisConnections is the size of modsrv's Redis connection pool.
const redisConnections = 2

func main() {
	cfgPath := flag.String("config", "config/modsrv.toml", "modsrv configuration file")
	redisURL := flag.String("redis", "", "Redis URL, overriding redis_url of the configuration")
	check := flag.Bool("check", false, "validate the configuration and exit")
	flag.Parse()
	ctx, cancel := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, *cfgPath, *redisURL, *check, nil)
	cancel()
	if err != nil {
		fmt.Fprintln(os.Stderr, "modsrv:", err)
		os.Exit(1)
	}
}

// run loads the configuration and serves until ctx ends; ready (if not
// nil) is called with the listening address.
func run(ctx context.Context, cfgPath, redisURL string, check bool, ready func(net.Addr)) error {
	cfg, err := config.Load(cfgPath)
	if err != nil {
		return err
	}
	if redisURL != "" {
		cfg.RedisURL = redisURL
	}
	if check {
		fmt.Printf("%s: ok (%d tokens, %d users)\n", cfgPath, len(cfg.Tokens), len(cfg.Users))
		return nil
	}
	log, closer, err := logging.New("modsrv", cfg.LogFile, cfg.LogLevel)
	if err != nil {
		return err
	}
	defer closer.Close()
	started := time.Now()
	client, err := svc.ConnectRedis(ctx, "modsrv", cfg.RedisURL, redisConnections, log)
	if err != nil {
		return err
	}
	defer client.Close()

	a, err := auth.New(authOptions(cfg))
	if err != nil {
		return err
	}
	// One watcher of the control outcomes serves REST and the WebSocket; it
	// outlives ctx so that requests in flight at shutdown still get theirs.
	results := contract.NewResults(client, log)
	rctx, stopResults := context.WithCancel(context.WithoutCancel(ctx))
	resultsDone := make(chan struct{})
	go func() { defer close(resultsDone); results.Run(rctx) }()
	defer func() { stopResults(); <-resultsDone }()
	deps := api.Deps{Redis: client, Auth: a, Log: log, Metrics: svc.BaseMetrics("modsrv", client, started), Config: cfg,
		Results: results, Started: started}
	app, err := api.New(deps)
	if err != nil {
		return err
	}
	bg, err := mountExtras(ctx, app, deps)
	if err != nil {
		return err
	}
	log.Info("modsrv started", "redis", cfg.RedisURL, "listen", cfg.Listen, "read_open", cfg.ReadOpen,
		"tokens", len(cfg.Tokens), "users", len(cfg.Users))
	err = serve(ctx, app, cfg.Listen, log, ready)
	bg.Wait()
	log.Info("modsrv stopped")
	return err
}

// authOptions translates the access settings of the configuration.
func authOptions(cfg *config.Config) auth.Options {
	o := auth.Options{
		ReadOpen:    cfg.ReadOpen,
		LoginRate:   cfg.LoginRate,
		SessionTTL:  cfg.SessionTTL.Duration,
		MaxSessions: cfg.MaxSessions,
	}
	for _, t := range cfg.Tokens {
		o.Tokens = append(o.Tokens, auth.Token{Name: t.Name, Secret: t.Token})
	}
	for _, u := range cfg.Users {
		o.Users = append(o.Users, auth.User{Name: u.Name, Hash: u.Bcrypt})
	}
	return o
}

// serve runs app on addr until ctx ends, then shuts it down gracefully.
func serve(ctx context.Context, app *fiber.App, addr string, log *slog.Logger, ready func(net.Addr)) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("listen %s: %w", addr, err)
	}
	log.Info("http listening", "addr", ln.Addr().String())
	if ready != nil {
		ready(ln.Addr())
	}
	errc := make(chan error, 1)
	go func() { errc <- app.Listener(ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("http server: %w", err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
	defer cancel()
	if err := app.ShutdownWithContext(sctx); err != nil && !errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("http shutdown: %w", err)
	}
	if err := <-errc; err != nil {
		return fmt.Errorf("http server: %w", err)
	}
	return nil
}
