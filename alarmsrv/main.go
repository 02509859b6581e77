// Command alarmsrv turns VoltEdge events (device online/offline, alarms, data rules) into webhook calls.
//
// This build starts, connects to Redis, makes sure the Lua library is
// loaded, serves /metrics on its listen address and waits for a stop signal.
package main

import (
	"context"

	"github.com/voltedge/voltedge/internal/conf"
	"github.com/voltedge/voltedge/internal/svc"
)

func main() {
	svc.Main("alarmsrv", func(ctx context.Context, env *svc.Env[conf.ServiceConfig]) error {
		<-ctx.Done()
		return nil
	})
}
