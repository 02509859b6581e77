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
	"fmt"
	"log/slog"
	"net"
	"time"

	"github.com/gofiber/fiber/v2"

	"github.com/voltedge/voltedge/internal/contract"
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
	svc.Run(service(nil))
}

// service is modsrv for svc; ready (if not nil) is called with the
// listening address.
func service(ready func(net.Addr)) svc.Service[config.Config] {
	return svc.Service[config.Config]{
		Name: "modsrv",
		Load: config.Load,
		Settings: func(c *config.Config) svc.Settings {
			return svc.Common(&c.ServiceConfig) // the API serves /metrics on its own listener
		},

		Summary: func(c *config.Config) string {
			return fmt.Sprintf("%d tokens, %d users", len(c.Tokens), len(c.Users))
		},
		RedisConnections: redisConnections,
		StartAttrs: func(c *config.Config) []any {
			return []any{"listen", c.Listen, "read_open", c.ReadOpen, "tokens", len(c.Tokens), "users", len(c.Users)}
		},
		Serve: func(ctx context.Context, env *svc.Env[config.Config]) error { return run(ctx, env, ready) },
	}
}

// run serves the API until ctx ends.
func run(ctx context.Context, env *svc.Env[config.Config], ready func(net.Addr)) error {
	cfg := env.Config
	a, err := auth.New(authOptions(cfg))
	if err != nil {
		return err
	}
	// One watcher of the control outcomes serves REST and the WebSocket; it
	// outlives ctx so that requests in flight at shutdown still get theirs.
	results := contract.NewResults(env.Redis, env.Log)
	rctx, stopResults := context.WithCancel(context.WithoutCancel(ctx))
	resultsDone := make(chan struct{})
	go func() { defer close(resultsDone); results.Run(rctx) }()
	defer func() { stopResults(); <-resultsDone }()
	deps := api.Deps{Redis: env.Redis, Auth: a, Log: env.Log, Metrics: env.Metrics, Config: cfg, Results: results, Started: env.Started}
	app, err := api.New(deps)
	if err != nil {
		return err
	}
	bg, err := mountExtras(ctx, app, deps)
	if err != nil {
		return err
	}
	err = serve(ctx, app, cfg.Listen, cfg.HTTPMaxConnsPerIP, env.Log, ready)
	bg.Wait()
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
func serve(ctx context.Context, app *fiber.App, addr string, perAddr int, log *slog.Logger, ready func(net.Addr)) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("listen %s: %w", addr, err)
	}
	ln = api.LimitPerAddr(ln, perAddr)
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
