// Command alarmsrv turns VoltEdge events (device online/offline, alarms,
// data rules, control outcomes, upload warnings, custom events) into
// webhook deliveries, as its rules say (see alarmsrv/service).
//
// It reads alarmsrv.toml (-config), connects to Redis (-redis overrides
// redis_url), serves /health and /metrics on listen and runs until SIGINT
// or SIGTERM.
package main

import (
	"context"
	"fmt"

	"github.com/voltedge/voltedge/alarmsrv/config"
	"github.com/voltedge/voltedge/alarmsrv/notify"
	"github.com/voltedge/voltedge/alarmsrv/service"
	"github.com/voltedge/voltedge/alarmsrv/webhook"
	"github.com/voltedge/voltedge/internal/svc"
)

// memoryLimit is alarmsrv's soft Go memory limit.
const memoryLimit = 32 << 20

func main() {
	svc.Run(svc.Service[config.Config]{
		Name:     "alarmsrv",
		Load:     config.Load,
		Settings: func(c *config.Config) svc.Settings { return svc.Common(&c.ServiceConfig) },
		// One blocking XREADGROUP per stream, the rule subscription, and
		// the webhook engine's queue readers beside them.
		BlockingConnections: len(service.Streams) + 6,
		MemoryLimit:         memoryLimit,
		Summary: func(c *config.Config) string {
			return fmt.Sprintf("site %s, %d rules, %d targets, %d included files", c.Site, len(c.Rules), len(c.Targets), len(c.Included))
		},
		StartAttrs: func(c *config.Config) []any { return []any{"site", c.Site, "listen", c.Listen} },
		Serve:      serve,
	})
}

// serve writes the file's targets, starts the webhook engine and runs the
// rules service on it until ctx ends.
func serve(ctx context.Context, env *svc.Env[config.Config]) error {
	cfg := env.Config
	n, err := notify.SeedTargets(ctx, env.Redis, cfg.Targets)
	if err != nil {
		return fmt.Errorf("alarmsrv: webhook targets of %s: %w", cfg.File, err)
	}
	var note *notify.Notifier
	eng := webhook.New(env.Redis, webhook.Options{Consumer: cfg.Site, Log: env.Log,
		OnEvent: func(ev webhook.OperatorEvent) { note.OperatorEvent(ev) }})
	note = notify.New(env.Redis, eng, env.Log)
	note.Register(env.Metrics, eng.Stats)
	env.Log.Info("webhook targets from the configuration written", "targets", n)
	ectx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- eng.Run(ectx) }()
	err = service.Run(ctx, cfg, service.Deps{Redis: env.Redis, Log: env.Log, Metrics: env.Metrics, Enqueuer: note})
	cancel()
	if e := <-done; err == nil && e != nil && ectx.Err() == nil {
		err = e
	}
	return err
}
