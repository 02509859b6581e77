// Command modsrv serves the model API of VoltEdge: REST, WebSocket and the
// web console over the model hashes in Redis, with Prometheus metrics.
//
// It reads modsrv.toml (-config), connects to Redis (-redis overrides
// redis_url) and makes sure the Lua library is loaded, then serves HTTP on
// listen until SIGINT or SIGTERM, when it stops accepting requests and
// lets those in flight finish.
//
// A configured user whose password is a well-known demo password stops it
// at start unless it runs with -demo. modsrv -hash-password reads a
// password line from standard input and prints its bcrypt hash for a
// [[user]] of modsrv.toml.
package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strings"
	"time"

	"github.com/gofiber/fiber/v2"
	"golang.org/x/crypto/bcrypt"

	"github.com/voltedge/voltedge/internal/contract"
	"github.com/voltedge/voltedge/internal/history"
	"github.com/voltedge/voltedge/internal/svc"
	"github.com/voltedge/voltedge/modsrv/api"
	"github.com/voltedge/voltedge/modsrv/auth"
	"github.com/voltedge/voltedge/modsrv/config"
	"github.com/voltedge/voltedge/modsrv/links"
)

// shutdownTimeout bounds how long requests in flight may take after a stop signal.
const shutdownTimeout = 10 * time.Second

// redisConnections is the size of modsrv's Redis connection pool.
const redisConnections = 2

func main() {
	svc.Run(service(nil, &options{}))
}

// options are modsrv's own flags.
type options struct {
	// demo (-demo) accepts users with a well-known demo password.
	demo bool
}

// flags adds modsrv's own flags to fs: -demo, and -hash-password, which
// prints the bcrypt hash of a password read from standard input and exits.
func (o *options) flags(fs *flag.FlagSet) {
	fs.BoolVar(&o.demo, "demo", false, "accept users whose password is a well-known demo password (\"demo\", \"admin\", …): for demonstrations only")
	fs.BoolFunc("hash-password", "read a password line from standard input, print its bcrypt hash for a [[user]] of modsrv.toml and exit", func(string) error {
		if err := hashPassword(os.Stdin, os.Stdout); err != nil {
			fmt.Fprintf(os.Stderr, "modsrv: %v\n", err)
			os.Exit(1)
		}
		os.Exit(0)
		return nil
	})
}

// hashPassword writes the bcrypt hash (default cost) of the first line of r to w.
func hashPassword(r io.Reader, w io.Writer) error {
	line, err := bufio.NewReader(r).ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("read password: %w", err)
	}
	pw := strings.TrimRight(line, "\r\n")
	if pw == "" {
		return errors.New("empty password: write it as one line on standard input")
	}
	hash, err := bcrypt.GenerateFromPassword([]byte(pw), bcrypt.DefaultCost)
	if err != nil {
		return fmt.Errorf("hash password: %w", err)
	}
	_, err = fmt.Fprintln(w, string(hash))
	return err
}

// service is modsrv for svc with the flags of o; ready (if not nil) is
// called with the listening address.
func service(ready func(net.Addr), o *options) svc.Service[config.Config] {
	return svc.Service[config.Config]{
		Name:  "modsrv",
		Flags: o.flags,
		Load: func(path string) (*config.Config, error) {
			return config.Options{Demo: o.demo}.Load(path)
		},
		Settings: func(c *config.Config) svc.Settings {
			return svc.Common(&c.ServiceConfig) // the API serves /metrics on its own listener
		},

		Summary: func(c *config.Config) string {
			return fmt.Sprintf("%d tokens, %d users", len(c.Tokens), len(c.Users))
		},
		RedisConnections: redisConnections,
		StartAttrs: func(c *config.Config) []any {
			hist := "off"
			if c.History.MySQLDSN != "" {
				hist = history.RedactDSN(c.History.MySQLDSN) + " site " + c.History.Site
			}
			return []any{"listen", c.Listen, "read_open", c.ReadOpen, "tokens", len(c.Tokens), "users", len(c.Users), "demo", o.demo, "history", hist}
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
	deps := api.Deps{Redis: env.Redis, Auth: a, Log: env.Log, Metrics: env.Metrics, Config: cfg, Results: results, Started: env.Started,
		Links: links.New(env.Redis, links.DefaultInterval, env.Log)}
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
