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
	"errors"
	"fmt"

	"github.com/voltedge/voltedge/alarmsrv/config"
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
		// One blocking XREADGROUP per stream, the rule subscription, one to spare.
		BlockingConnections: len(service.Streams) + 2,
		MemoryLimit:         memoryLimit,
		Summary: func(c *config.Config) string {
			return fmt.Sprintf("site %s, %d rules, %d targets, %d included files", c.Site, len(c.Rules), len(c.Targets), len(c.Included))
		},
		StartAttrs: func(c *config.Config) []any { return []any{"site", c.Site, "listen", c.Listen} },
		Serve: func(ctx context.Context, env *svc.Env[config.Config]) error {
			return service.Run(ctx, env.Config, service.Deps{Redis: env.Redis, Log: env.Log, Metrics: env.Metrics, Enqueuer: noEngine{}})
		},
	})
}

// noEngine stands in for the webhook engine until it is wired in: every
// Enqueue fails, so entries that would notify stay unacknowledged and are
// delivered once an engine is there.
type noEngine struct{}

// errNoEngine is noEngine's error.
var errNoEngine = errors.New("no webhook engine in this build")

// Enqueue refuses the delivery.
func (noEngine) Enqueue(context.Context, webhook.Delivery) error { return errNoEngine }
