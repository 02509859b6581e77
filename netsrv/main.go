// Command netsrv uploads VoltEdge values, connection events, alarms and
// control outcomes from the Redis streams to MySQL or MariaDB, through a
// disk spool while the database is unreachable (see netsrv/service).
//
// It reads netsrv.toml (-config), connects to Redis (-redis overrides
// redis_url), serves /health and /metrics on listen and runs until SIGINT
// or SIGTERM.
package main

import (
	"context"
	"fmt"

	"github.com/voltedge/voltedge/internal/svc"
	"github.com/voltedge/voltedge/netsrv/config"
	"github.com/voltedge/voltedge/netsrv/service"
)

// memoryLimit is netsrv's soft Go memory limit: its RSS does not grow with
// the spool.
const memoryLimit = 48 << 20

func main() {
	svc.Run(svc.Service[config.Config]{
		Name:             "netsrv",
		Load:             config.Load,
		Settings:         func(c *config.Config) svc.Settings { return svc.Common(&c.ServiceConfig) },
		RedisConnections: 2,
		// One blocking XREADGROUP per uploaded stream, and one to spare.
		BlockingConnections: len(config.AllStreams) + 1,
		MemoryLimit:         memoryLimit,
		Summary: func(c *config.Config) string {
			return fmt.Sprintf("site %s, %d streams, %d sampling rules", c.Site, len(c.Upload.Streams), len(c.Sample))
		},
		StartAttrs: func(c *config.Config) []any { return []any{"site", c.Site, "listen", c.Listen} },
		Serve: func(ctx context.Context, env *svc.Env[config.Config]) error {
			return service.Run(ctx, env.Config, service.Deps{Redis: env.Redis, Log: env.Log, Metrics: env.Metrics})
		},
	})
}
